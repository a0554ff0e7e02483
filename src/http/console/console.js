// uPlot 1.6.32, MIT, vendored from npm (uPlot.iife.min.js, uPlot.min.css, uPlot.LICENSE).
// TasteDB web console: plain JavaScript, no build step. All data goes into the
// DOM through textContent; innerHTML is never used.
"use strict";

(function () {
  const KEY_STORAGE = "tastedb.key";
  const app = document.getElementById("app");
  const errorBox = document.getElementById("error");
  const loginBox = document.getElementById("login");
  const loginForm = document.getElementById("login-form");
  const loginInput = document.getElementById("login-key");
  const logoutLink = document.getElementById("logout");

  // Each navigation bumps this; replies that arrive for an older page are dropped.
  let generation = 0;
  // The uPlot instance on the model page, destroyed when leaving it.
  let chart = null;
  // The query text survives navigation within the tab.
  let lastQuery = sessionStorage.getItem("tastedb.query") || "SELECT * FROM tastedb_models";

  // ---------- small DOM helpers ----------

  // el("td", {className: "num"}, "text", childNode, ...)
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "dataset") Object.assign(node.dataset, v);
        else if (k in node) node[k] = v;
        else node.setAttribute(k, v);
      }
    }
    for (const child of children) {
      if (child == null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setReady(ready) {
    document.body.dataset.ready = ready ? "true" : "false";
  }

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
  }

  function errorText(err) {
    return err.code ? `${err.message} (${err.code})` : err.message;
  }

  // ---------- formatting ----------

  const NUMERIC_TYPE = /^(u?int|float|decimal|double|real|numeric)/i;

  // Floats to 4 significant digits; integers as they are.
  function fmtNumber(v) {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    if (Math.abs(v) >= 1000) return String(Math.round(v));
    return String(Number(v.toPrecision(4)));
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return "NULL";
    if (typeof v === "number") return fmtNumber(v);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  // "2024-05-01T12:00:00.123456Z" -> "2024-05-01 12:00:00" (full value in a tooltip).
  function fmtTime(v) {
    if (v == null) return el("span", { className: "muted" }, "NULL");
    const m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)/.exec(String(v));
    return el("span", { title: String(v) }, m ? `${m[1]} ${m[2]}` : String(v));
  }

  // params arrive as JSON text ({"factors":"32"}); shown as "factors=32, …".
  function fmtParams(v) {
    let obj = null;
    try { obj = JSON.parse(v); } catch (e) { /* not JSON: show as is */ }
    if (!obj || typeof obj !== "object" || Array.isArray(obj)) return fmtValue(v);
    const text = Object.entries(obj).map(([k, x]) => `${k}=${typeof x === "string" ? x : JSON.stringify(x)}`).join(", ");
    return el("span", { title: v }, text || "—");
  }

  function pct(part, whole) {
    return whole > 0 ? `${(100 * part / whole).toFixed(1)}%` : "—";
  }

  // A table cell for any JSON value: NULL greyed, numbers right-aligned.
  function cell(v, extraClass) {
    const cls = [];
    if (v === null || v === undefined) cls.push("null");
    else if (typeof v === "number") cls.push("num");
    if (extraClass) cls.push(extraClass);
    return el("td", { className: cls.join(" ") }, fmtValue(v));
  }

  // cols: [{key, label, num?, className?, render?(row) -> Node|string}]
  function dataTable(cols, rows, rowClass) {
    const head = el("tr", null, ...cols.map(c => el("th", { className: c.num ? "num" : "" }, c.label || c.key)));
    const body = rows.map(row => {
      const tr = el("tr", { className: rowClass ? rowClass(row) : "" });
      for (const c of cols) {
        if (c.render) tr.append(el("td", { className: c.className || "" }, c.render(row)));
        else tr.append(cell(row[c.key], c.className));
      }
      return tr;
    });
    return el("div", { className: "table-wrap" }, el("table", null, el("thead", null, head), el("tbody", null, ...body)));
  }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(message, code, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  function getKey() {
    return sessionStorage.getItem(KEY_STORAGE);
  }

  async function api(path, body) {
    const init = { headers: { Authorization: `Bearer ${getKey()}` } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(`network error: ${e.message}`, "", 0);
    }
    let data = null;
    try { data = await res.json(); } catch (e) { /* non-JSON body */ }
    if (!res.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(e.message || `HTTP ${res.status} ${res.statusText}`, e.code || "", res.status);
    }
    return data;
  }

  // Runs SQL and returns {command, columns, rows, objects} where objects maps column names.
  async function sql(text) {
    const r = await api("/v1/sql", { sql: text });
    const names = r.columns.map(c => c.name);
    r.objects = r.rows.map(row => Object.fromEntries(names.map((n, i) => [n, row[i]])));
    return r;
  }

  function quote(s) {
    return `'${String(s).replace(/'/g, "''")}'`;
  }

  // ---------- key handling and login ----------

  // Parses "#/models/recs?key=x" into {path: "/models/recs", params}.
  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const q = raw.indexOf("?");
    const path = q < 0 ? raw : raw.slice(0, q);
    const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
    return { path: path || "/", params };
  }

  // Moves a key=... from the hash into sessionStorage and out of the URL.
  function takeKeyFromHash() {
    const { path, params } = parseHash();
    const key = params.get("key");
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + "#" + path + (rest ? "?" + rest : ""));
  }

  function showLogin(message) {
    sessionStorage.removeItem(KEY_STORAGE);
    destroyChart();
    app.replaceChildren();
    app.hidden = true;
    logoutLink.hidden = true;
    loginBox.hidden = false;
    if (message) showError(message);
    loginInput.value = "";
    loginInput.focus();
    setReady(true);
  }

  loginForm.addEventListener("submit", ev => {
    ev.preventDefault();
    const key = loginInput.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    route();
  });

  logoutLink.addEventListener("click", ev => {
    ev.preventDefault();
    showError("");
    showLogin();
  });

  // Shows a failed request: 401 goes back to the login form.
  function handleError(err) {
    if (err.status === 401) showLogin(`API key rejected: ${errorText(err)}`);
    else showError(errorText(err));
  }

  // ---------- routing ----------

  function destroyChart() {
    if (chart) { chart.destroy(); chart = null; }
  }

  async function route() {
    const gen = ++generation;
    setReady(false);
    showError("");
    destroyChart();
    takeKeyFromHash();
    if (!getKey()) { showLogin(); return; }

    loginBox.hidden = true;
    app.hidden = false;
    logoutLink.hidden = false;
    app.replaceChildren(el("p", { className: "muted" }, "loading…"));

    const { path } = parseHash();
    const parts = path.split("/").filter(Boolean);
    let page = "overview";
    let render;
    if (parts.length === 0) render = () => renderOverview(gen);
    else if (parts[0] === "models" && parts.length >= 2) {
      page = "model";
      render = () => renderModel(gen, decodeURIComponent(parts.slice(1).join("/")));
    } else if (parts[0] === "query") {
      page = "query";
      render = () => renderQuery();
    } else {
      render = async () => { app.replaceChildren(el("h1", null, "Not found"), el("p", null, el("a", { href: "#/" }, "back to the overview"))); };
    }
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("current", a.dataset.nav === page);

    try {
      await render();
    } catch (err) {
      if (gen !== generation) return;
      handleError(err);
    }
    if (gen === generation && getKey()) setReady(true);
  }

  // Runs the loaders of a page together; a 401 from any of them shows the login form,
  // the first other error goes to #error. Returns [{ok, value|error}].
  async function loadAll(gen, loaders) {
    const results = await Promise.allSettled(loaders.map(f => f()));
    if (gen !== generation) return null;
    const failures = results.filter(r => r.status === "rejected").map(r => r.reason);
    const unauthorized = failures.find(e => e.status === 401);
    if (unauthorized) { handleError(unauthorized); return null; }
    if (failures.length) showError([...new Set(failures.map(errorText))].join("\n"));
    return results.map(r => r.status === "fulfilled" ? { ok: true, value: r.value } : { ok: false, error: r.reason });
  }

  // A section whose body is a table, an "empty" line or the error.
  function section(id, title, result, build, emptyText) {
    const sec = el("section", { id }, el("h2", null, title));
    if (!result.ok) sec.append(el("p", { className: "inline-error" }, errorText(result.error)));
    else {
      const body = build(result.value);
      sec.append(body || el("p", { className: "empty" }, emptyText));
    }
    return sec;
  }

  // ---------- overview ----------

  async function renderOverview(gen) {
    const res = await loadAll(gen, [
      () => api("/v1/tables"),
      () => sql("SELECT * FROM tastedb_models"),
      () => sql("SELECT * FROM tastedb_cache_stats"),
      () => sql("SELECT * FROM tastedb_feature_views"),
      () => sql("SELECT * FROM tastedb_indexes"),
    ]);
    if (!res) return;
    const [tables, models, cache, features, indexes] = res;

    const tablesSec = section("tables", "Tables", tables, v => v.tables.length && dataTable([
      { key: "name", label: "name" },
      { key: "rows", label: "rows", num: true },
      { key: "columns", label: "columns", className: "wrap",
        render: t => el("span", null, ...t.columns.flatMap((c, i) => [
          i ? ", " : "", c.name, " ", el("span", { className: "type" }, c.type)])) },
    ], v.tables), "no tables yet — CREATE TABLE …");

    const modelsSec = section("models", "Models", models, v => v.objects.length && dataTable([
      { key: "name", label: "name", render: m => el("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name) },
      { key: "active_version", label: "active version", num: true },
      { key: "versions", num: true },
      { key: "algorithm" },
      { key: "users", num: true },
      { key: "items", num: true },
      { key: "ndcg_at_k", label: "ndcg@k", num: true },
      { key: "trained_at", label: "trained at", render: m => fmtTime(m.trained_at) },
      { key: "retrain_policy", label: "retrain policy" },
    ], v.objects), "no models yet — TRAIN MODEL … USING als FROM …");

    const cacheSec = section("cache", "Recommendation cache", cache, v => {
      const c = v.objects[0];
      if (!c) return null;
      const stat = (label, value) => el("div", { className: "stat" },
        el("div", { className: "label" }, label), el("div", { className: "value" }, value));
      return el("div", { className: "stats" },
        stat("hit rate", pct(c.hits, c.hits + c.misses)),
        stat("hits", fmtValue(c.hits)),
        stat("misses", fmtValue(c.misses)),
        stat("entries", fmtValue(c.entries)),
        stat("evictions", fmtValue(c.evictions)),
        stat("invalidations", fmtValue(c.invalidations)));
    }, "no cache statistics");

    const featuresSec = section("features", "Feature views", features, v => v.objects.length && dataTable([
      { key: "name" },
      { key: "entity" },
      { key: "timestamp_column", label: "timestamp" },
      { key: "ttl" },
      { key: "rows", num: true },
      { key: "last_materialized", label: "last materialized" },
      { key: "last_mode", label: "mode" },
      { key: "created_at", label: "created at" },
      { key: "definition", className: "wrap code" },
    ], v.objects), "no feature views yet — CREATE FEATURE VIEW …");

    const indexesSec = section("indexes", "Vector indexes", indexes, v => v.objects.length && dataTable([
      { key: "name" },
      { key: "table_name", label: "table" },
      { key: "column_name", label: "column" },
      { key: "metric" },
      { key: "m", num: true },
      { key: "ef_construction", label: "ef_construction", num: true },
      { key: "indexed_rows", label: "indexed rows", num: true },
      { key: "pending_rows", label: "pending rows", num: true },
    ], v.objects), "no vector indexes yet — CREATE INDEX … USING hnsw");

    app.replaceChildren(el("h1", null, "Overview"), tablesSec, modelsSec, cacheSec, featuresSec, indexesSec);
  }

  // ---------- model page ----------

  async function renderModel(gen, name) {
    const q = quote(name);
    const res = await loadAll(gen, [
      () => sql(`SELECT * FROM tastedb_models WHERE name = ${q}`),
      () => sql(`SELECT * FROM tastedb_model_versions WHERE model = ${q} ORDER BY version`),
      () => sql(`SELECT version, iteration, loss, seconds FROM tastedb_training_log WHERE model = ${q} ORDER BY version, iteration`),
    ]);
    if (!res) return;
    const [model, versions, log] = res;

    const m = model.ok ? model.value.objects[0] : null;
    const facts = el("div", { className: "facts" });
    if (m) {
      const fact = (label, v) => el("span", null, label, " ", el("b", null, v == null ? "—" : fmtValue(v)));
      facts.append(fact("algorithm", m.algorithm), fact("active version", m.active_version),
        fact("users", m.users), fact("items", m.items), el("span", null, "trained at ", el("b", null, fmtTime(m.trained_at))),
        fact("retrain policy", m.retrain_policy), fact("retrain failures", m.retrain_failures));
      if (m.retrain_error) facts.append(el("span", { className: "inline-error" }, "last retrain error: ", m.retrain_error));
    } else if (model.ok && versions.ok && versions.value.objects.length === 0) {
      facts.append(el("span", { className: "empty" }, `no model named ${name}`));
    }

    const versionsSec = section("versions", "Versions", versions, v => v.objects.length && dataTable([
      { key: "version", render: r => el("span", null, `v${r.version} `,
          r.active ? el("span", { className: "badge", title: "active version" }, "active") : "") },
      { key: "algorithm" },
      { key: "params", className: "params", render: r => fmtParams(r.params) },
      { key: "events", num: true },
      { key: "users", num: true },
      { key: "items", num: true },
      { key: "train_seconds", label: "train s", num: true },
      { key: "k", num: true },
      { key: "precision_at_k", label: "prec@k", num: true },
      { key: "recall_at_k", label: "recall@k", num: true },
      { key: "ndcg_at_k", label: "ndcg@k", num: true },
      { key: "map_at_k", label: "map@k", num: true },
      { key: "coverage", num: true },
      { key: "created_at", label: "created at", className: "wrap-narrow", render: r => fmtTime(r.created_at) },
      { key: "trigger", className: "wrap-narrow" },
      { key: "promotion", className: "wrap-wide" },
    ], v.objects, r => r.active ? "active" : ""), "no versions");

    // Build the chart section now; the chart is drawn once it is in the DOM (it needs a width).
    const chartBox = el("div", { id: "loss-chart" });
    const chartSec = el("section", null, el("h2", null, "Training loss"), chartBox);
    let series = null;
    if (!log.ok) chartBox.append(el("p", { className: "inline-error" }, errorText(log.error)));
    else {
      series = lossSeries(log.value.objects, versions.ok ? versions.value.objects : [], m);
      if (!series) chartBox.append(el("p", { className: "empty" }, "no training curve recorded"));
    }

    app.replaceChildren(el("h1", null, name), facts, versionsSec, chartSec);
    if (series) drawLossChart(chartBox, series);
  }

  // Turns training-log rows into uPlot's columnar data: one x array (the union of
  // iterations) and one y array per version, null where a version has no point.
  function lossSeries(rows, versions, model) {
    if (!rows.length) return null;
    const byVersion = new Map();
    const iterations = new Set();
    for (const r of rows) {
      if (!byVersion.has(r.version)) byVersion.set(r.version, new Map());
      byVersion.get(r.version).set(r.iteration, r.loss);
      iterations.add(r.iteration);
    }
    const xs = [...iterations].sort((a, b) => a - b);
    const activeRow = versions.find(v => v.active);
    const active = activeRow ? activeRow.version : model && model.active_version;
    const order = [...byVersion.keys()].sort((a, b) => a - b);
    return {
      data: [xs, ...order.map(v => xs.map(x => byVersion.get(v).has(x) ? byVersion.get(v).get(x) : null))],
      versions: order,
      active,
    };
  }

  const PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#bc4c00", "#6e7781"];

  function drawLossChart(box, s) {
    const width = () => Math.max(320, box.clientWidth);
    const opts = {
      width: width(),
      height: 320,
      scales: { x: { time: false } },
      // uPlot's own tick labels: they keep the digits that tell close ticks apart
      axes: [{ label: "iteration", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, { label: "loss", size: 80 }],
      series: [
        { label: "iteration" },
        ...s.versions.map((v, i) => ({
          label: `v${v}`,
          stroke: PALETTE[i % PALETTE.length],
          width: v === s.active ? 3 : 1.5,
          spanGaps: true,
          value: (u, y) => y == null ? "—" : fmtNumber(y),
        })),
      ],
    };
    chart = new uPlot(opts, s.data, box);
    // Follow the page width.
    const u = chart;
    const ro = new ResizeObserver(() => { if (chart === u) u.setSize({ width: width(), height: 320 }); });
    ro.observe(box);
    const destroy = u.destroy.bind(u);
    u.destroy = () => { ro.disconnect(); destroy(); };
  }

  // ---------- query page ----------

  // "#/query?sql=…" opens the page with that query and runs it (links, browser tests).
  function renderQuery() {
    const linked = parseHash().params.get("sql");
    if (linked) lastQuery = linked;
    const input = el("textarea", { id: "query-input", spellcheck: false, value: lastQuery });
    const run = el("button", { id: "query-run", type: "button" }, "Run");
    const result = el("div", { id: "query-result" });

    async function execute() {
      const text = input.value.trim();
      if (!text) return;
      lastQuery = input.value;
      sessionStorage.setItem("tastedb.query", lastQuery);
      const gen = generation;
      setReady(false);
      showError("");
      run.disabled = true;
      result.replaceChildren(el("p", { className: "muted" }, "running…"));
      const t0 = performance.now();
      try {
        const r = await api("/v1/sql", { sql: text });
        if (gen !== generation) return;
        const ms = performance.now() - t0;
        const numeric = r.columns.map(c => NUMERIC_TYPE.test(c.type));
        const parts = [];
        if (r.columns.length) {
          const head = el("tr", null, ...r.columns.map((c, i) =>
            el("th", { className: numeric[i] ? "num" : "", title: c.type }, c.name)));
          const body = r.rows.map(row => el("tr", null, ...row.map(v => cell(v))));
          parts.push(el("div", { className: "table-wrap" },
            el("table", null, el("thead", null, head), el("tbody", null, ...body))));
        }
        parts.push(el("p", { className: "query-meta" }, `${r.command} · ${ms.toFixed(0)} ms`));
        result.replaceChildren(...parts);
      } catch (err) {
        if (gen !== generation) return;
        result.replaceChildren();
        handleError(err);
      } finally {
        run.disabled = false;
        if (gen === generation && getKey()) setReady(true);
      }
    }

    run.addEventListener("click", execute);
    input.addEventListener("keydown", ev => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); execute(); }
    });

    app.replaceChildren(el("h1", null, "Query"),
      input,
      el("div", { className: "query-bar" }, run, el("span", { className: "muted" }, "Ctrl+Enter runs")),
      result);
    input.focus();
    if (linked) return execute();
  }

  window.addEventListener("hashchange", route);
  route();
})();
