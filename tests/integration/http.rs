//! The HTTP API with a real HTTP client (curl): every endpoint, its JSON errors on bad input
//! (nothing stored, the server goes on), API keys and privileges, limits, timeouts, graceful
//! shutdown, TLS; the OpenAPI document checked by `openapi-spec-validator`, `/metrics` by the
//! Prometheus client's parsers, and the web console in headless Chromium.

use datafusion::arrow::array::AsArray;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use tastedb::Engine;
use tastedb::http::{HttpOptions, HttpServer};
use tokio::sync::oneshot;

/// A running HTTP server over a temporary data directory with a trained model.
struct Http {
    base: String,
    engine: Engine,
    stop: Option<oneshot::Sender<()>>,
    ended: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Http {
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(ended) = self.ended.take() {
            ended.await.unwrap();
        }
    }
}

/// What curl got.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: String,
    pub(crate) body: Value,
    text: String,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Runs curl with `args` (after `-sS`), on a blocking thread.
pub(crate) async fn curl(args: &[&str]) -> Reply {
    curl_with_input(args, None).await
}

async fn curl_with_input(args: &[&str], input: Option<Vec<u8>>) -> Reply {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("curl")
            .args(["-sS", "-D", "-", "-w", "\n%{http_code}"])
            .args(&args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl is installed");
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(&input).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        parse_reply(&String::from_utf8_lossy(&out.stdout))
    })
    .await
    .unwrap()
}

fn parse_reply(out: &str) -> Reply {
    let (rest, status) = out.rsplit_once('\n').unwrap_or(("", out));
    // with redirects or 100-continue there may be several header blocks: take the last
    let mut headers = String::new();
    let mut body = rest;
    while let Some((head, tail)) = body.split_once("\r\n\r\n") {
        if !head.starts_with("HTTP/") {
            break;
        }
        headers = head.to_string();
        body = tail;
    }
    Reply {
        status: status.trim().parse().unwrap_or(0),
        headers,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        text: body.to_string(),
    }
}

fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}")
}

/// The secret of a new API key `name` for `user`.
async fn api_key(engine: &Engine, name: &str, user: &str) -> String {
    let batches = engine
        .sql(&format!("CREATE API KEY {name} FOR USER {user}"))
        .await
        .unwrap();
    batches[0].column(2).as_string::<i32>().value(0).to_string()
}

async fn count(engine: &Engine, sql: &str) -> i64 {
    let batches = engine.sql(sql).await.unwrap();
    batches[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0)
}

/// A server with events of 40 users over 30 items, the model `recs`, items with stock, the
/// filter `in_stock`, the feature view `activity`, and the roles `tastedb` (superuser) and
/// `reader` (no privileges).
async fn start(options: impl FnOnce(HttpOptions) -> HttpOptions) -> Http {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.users().set_password("tastedb", "pw").unwrap();
    let mut events = Vec::new();
    for u in 0..40 {
        for j in 0..8 {
            events.push(format!("('u{u}', 'i{}', 1.0)", (u * 7 + j * 3) % 30));
        }
    }
    let items: Vec<String> = (0..30).map(|i| format!("('i{i}', {})", i % 3)).collect();
    for sql in [
        "CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT NOT NULL, weight DOUBLE NOT NULL, \
         ts TIMESTAMP NOT NULL DEFAULT now())"
            .to_string(),
        format!("INSERT INTO events (user_id, item_id, weight) VALUES {}", events.join(", ")),
        "TRAIN MODEL recs USING als FROM events WITH (factors = 8, iterations = 5)".into(),
        "CREATE TABLE items (item_id TEXT PRIMARY KEY, stock BIGINT NOT NULL)".into(),
        format!("INSERT INTO items VALUES {}", items.join(", ")),
        "CREATE FILTER in_stock AS SELECT item_id FROM items WHERE stock > 0".into(),
        "CREATE FEATURE VIEW activity ENTITY (user_id) TIMESTAMP last_seen AS \
         SELECT user_id, max(ts) AS last_seen, count(*) AS events FROM events GROUP BY user_id"
            .into(),
        "MATERIALIZE FEATURE VIEW activity".into(),
        "CREATE USER reader".into(),
        "CREATE ROLE nologin".into(),
    ] {
        engine.sql(&sql).await.unwrap();
    }
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = HttpServer::bind(engine.clone(), options(HttpOptions::new(listen)))
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let ended = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Http {
        base,
        engine,
        stop: Some(stop),
        ended: Some(ended),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_similar_items_models_and_features_answer_json() {
    let http = start(|o| o).await;
    let key = api_key(&http.engine, "admin", "tastedb").await;
    let auth = bearer(&key);
    let base = &http.base;

    let r = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/recs/recommend?user=u1&k=5"),
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["model"], "recs");
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["cold_start"], false);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["rank"], 1);
    assert!(items[0]["score"].as_f64().unwrap() >= items[4]["score"].as_f64().unwrap());
    // the same answer as SQL gives
    let sql = http
        .engine
        .sql("SELECT item_id FROM recommend('recs', 'u1', 5) ORDER BY rank")
        .await
        .unwrap();
    let expected: Vec<String> = sql[0]
        .column(0)
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    let got: Vec<String> = items
        .iter()
        .map(|i| i["item"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);

    // a named filter: only items in stock
    let r = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/recs/recommend?user=u1&k=10&filter=in_stock"),
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    for item in r.body["items"].as_array().unwrap() {
        let id: i64 = item["item"].as_str().unwrap()[1..].parse().unwrap();
        assert_ne!(id % 3, 0, "{item} is out of stock");
    }
    // a user never seen: cold start
    let r = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/recs/recommend?user=nobody"),
    ])
    .await;
    assert_eq!(
        (r.status, &r.body["cold_start"]),
        (200, &json!(true)),
        "{r:?}"
    );
    assert_eq!(r.body["items"].as_array().unwrap().len(), 10);

    // many users at once
    let r = curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"users": ["u1", "u2", "nobody"], "k": 3}"#,
        &format!("{base}/v1/models/recs/recommend"),
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["user"], "u2");
    assert_eq!(results[1]["items"].as_array().unwrap().len(), 3);

    let r = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/recs/similar?item=i3&k=4"),
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 4);
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["item"] != "i3")
    );

    let r = curl(&["-H", &auth, &format!("{base}/v1/models")]).await;
    assert_eq!(r.body["models"][0]["name"], "recs", "{r:?}");
    assert_eq!(r.body["models"][0]["active_version"], 1);
    let r = curl(&["-H", &auth, &format!("{base}/v1/models/recs/versions")]).await;
    let version = &r.body["versions"][0];
    assert_eq!(version["version"], 1, "{r:?}");
    assert!(
        version["metrics"]["ndcg_at_k"].as_f64().is_some(),
        "{version}"
    );
    assert_eq!(version["log"].as_array().unwrap().len(), 5);

    let r = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/features/activity?key=u1&key=nobody"),
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["rows"][0]["events"], 8);
    assert_eq!(r.body["rows"][1]["events"], Value::Null);

    let r = curl(&["-H", &auth, &format!("{base}/v1/tables")]).await;
    let tables = r.body["tables"].as_array().unwrap();
    assert_eq!(tables[0]["name"], "events");
    assert_eq!(tables[0]["rows"], 320);

    let r = curl(&[
        "-H", &auth, "-H", "Content-Type: application/json", "-d",
        r#"{"sql": "SELECT user_id, count(*) AS n FROM events WHERE user_id IN ('u1', 'u2') GROUP BY user_id ORDER BY user_id"}"#,
        &format!("{base}/v1/sql"),
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["command"], "SELECT 2");
    assert_eq!(r.body["rows"], json!([["u1", 8], ["u2", 8]]));
    assert_eq!(r.body["columns"][1]["name"], "n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_store_nothing_and_the_server_goes_on() {
    let http = start(|o| HttpOptions {
        body_bytes: 4096,
        stream_bytes: 64 * 1024,
        ..o
    })
    .await;
    let key = api_key(&http.engine, "admin", "tastedb").await;
    let auth = bearer(&key);
    let base = &http.base;
    let json_type = "Content-Type: application/json";
    let rows_url = format!("{base}/v1/tables/events/rows");
    let cases: Vec<(Vec<String>, u16, &str)> = vec![
        (vec![format!("{base}/v1/models/nope/recommend?user=u1")], 404, "42704"),
        (vec![format!("{base}/v1/models/recs/recommend")], 400, "22023"),
        (vec![format!("{base}/v1/models/recs/recommend?user=u1&k=0")], 400, "22023"),
        (vec![format!("{base}/v1/models/recs/recommend?user=u1&k=many")], 400, "22023"),
        (vec![format!("{base}/v1/models/recs/recommend?user=u1&filter=nope")], 404, "42704"),
        // a filter is a name, never SQL from the request
        (
            vec![format!("{base}/v1/models/recs/recommend?user=u1&filter=SELECT%20item_id%20FROM%20items")],
            404,
            "42704",
        ),
        (vec![format!("{base}/v1/features/nope?key=u1")], 404, "42704"),
        (vec![format!("{base}/v1/features/activity")], 400, "22023"),
        (vec![format!("{base}/v1/nowhere")], 404, "42704"),
        (vec!["-X".into(), "POST".into(), "-H".into(), json_type.into(), "-d".into(), "{\"users\": [".into(), format!("{base}/v1/models/recs/recommend")], 400, "22P02"),
        (vec!["-X".into(), "POST".into(), "-H".into(), json_type.into(), "-d".into(), "{\"users\": 5}".into(), format!("{base}/v1/models/recs/recommend")], 400, "42804"),
        (vec!["-X".into(), "POST".into(), "-d".into(), "{\"users\": []}".into(), format!("{base}/v1/models/recs/recommend")], 415, "22023"),
        (vec!["-H".into(), json_type.into(), "-d".into(), "{\"sql\": \"SELEC 1\"}".into(), format!("{base}/v1/sql")], 400, "42601"),
        (vec!["-H".into(), json_type.into(), "-d".into(), "{\"sql\": \"SELECT * FROM missing\"}".into(), format!("{base}/v1/sql")], 404, "42P01"),
        // no session over HTTP: SET would change the engine's defaults for everyone
        (vec!["-H".into(), json_type.into(), "-d".into(), "{\"sql\": \"SELECT 1; SET tastedb.cache_ttl_seconds = 0\"}".into(), format!("{base}/v1/sql")], 501, "0A000"),
        (vec!["-H".into(), json_type.into(), "-d".into(), "{\"sql\": \"BEGIN\"}".into(), format!("{base}/v1/sql")], 501, "0A000"),
        // rows: malformed JSON, not an array, a value of the wrong type, an unknown column,
        // a NOT NULL column left out, a table that does not exist, an unknown content type
        (vec!["-H".into(), json_type.into(), "-d".into(), "[{\"user_id\": \"x\",".into(), rows_url.clone()], 400, "22P02"),
        (vec!["-H".into(), json_type.into(), "-d".into(), "{\"user_id\": \"x\"}".into(), rows_url.clone()], 400, "42804"),
        (vec!["-H".into(), json_type.into(), "-d".into(), "[{\"user_id\": \"x\", \"item_id\": \"i1\", \"weight\": 1}, {\"user_id\": \"y\", \"item_id\": \"i1\", \"weight\": \"heavy\"}]".into(), rows_url.clone()], 400, "22P02"),
        (vec!["-H".into(), json_type.into(), "-d".into(), "[{\"user_id\": \"x\", \"itemid\": \"i1\", \"weight\": 1}]".into(), rows_url.clone()], 400, "42703"),
        (vec!["-H".into(), json_type.into(), "-d".into(), "[{\"user_id\": \"x\", \"weight\": 1}]".into(), rows_url.clone()], 400, "23502"),
        (vec!["-H".into(), json_type.into(), "-d".into(), "[{\"a\": 1}]".into(), format!("{base}/v1/tables/missing/rows")], 404, "42P01"),
        (vec!["-H".into(), "Content-Type: text/csv".into(), "-d".into(), "a,b".into(), rows_url.clone()], 415, "22023"),
    ];
    for (args, status, code) in cases {
        let mut all: Vec<&str> = vec!["-H", &auth];
        all.extend(args.iter().map(String::as_str));
        let r = curl(&all).await;
        assert_eq!((r.status, r.code()), (status, code), "{args:?}: {r:?}");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // bodies over the limits: 413, nothing stored
    let big = format!(
        "[{}]",
        vec![r#"{"user_id": "big", "item_id": "i1", "weight": 1}"#; 200].join(",")
    );
    let r = curl(&["-H", &auth, "-H", json_type, "-d", &big, &rows_url]).await;
    assert_eq!((r.status, r.code()), (413, "54000"), "{r:?}");
    let line = "{\"user_id\": \"stream\", \"item_id\": \"i1\", \"weight\": 1}\n";
    let r = curl_with_input(
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            "@-",
            &rows_url,
        ],
        Some(line.repeat(5000).into_bytes()),
    )
    .await;
    assert_eq!((r.status, r.code()), (413, "54000"), "{r:?}");
    // an NDJSON stream with a bad line far into it: nothing of it stored
    let mut lines = line.repeat(500);
    lines.push_str("{\"user_id\": \"stream\", \"item_id\": \"i1\", \"weight\": [1]}\n");
    let r = curl_with_input(
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            "@-",
            &rows_url,
        ],
        Some(lines.into_bytes()),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        count(&http.engine, "SELECT count(*) FROM events").await,
        320
    );
    // the server goes on
    let r = curl(&[&format!("{base}/healthz")]).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("ok")));
    let r = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/recs/recommend?user=u1&k=2"),
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_posted_are_durable_and_change_the_next_recommendation() {
    let http = start(|o| o).await;
    let key = api_key(&http.engine, "tracker", "tastedb").await;
    let auth = bearer(&key);
    let base = &http.base;
    let before = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/recs/recommend?user=u1&k=5"),
    ])
    .await;
    assert_eq!(before.body["folded_in"], false);
    let rows_url = format!("{base}/v1/tables/events/rows");
    let r = curl(&[
        "-H", &auth, "-H", "Content-Type: application/json", "-d",
        r#"[{"user_id": "u1", "item_id": "i29", "weight": 5}, {"user_id": "u1", "item_id": "i28", "weight": 5}]"#,
        &rows_url,
    ])
    .await;
    assert_eq!((r.status, &r.body["rows"]), (200, &json!(2)), "{r:?}");
    // the DEFAULT of the column left out (ts) is filled in
    assert_eq!(
        count(
            &http.engine,
            "SELECT count(*) FROM events WHERE user_id = 'u1' AND ts IS NOT NULL"
        )
        .await,
        10
    );
    let after = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/recs/recommend?user=u1&k=5"),
    ])
    .await;
    assert_eq!(after.body["folded_in"], true, "{after:?}");
    assert!(
        after.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["item"] != "i29")
    );
    // 10,000 rows as NDJSON, streamed
    let lines: String = (0..10_000)
        .map(|i| {
            format!(
                "{{\"user_id\": \"n{}\", \"item_id\": \"i{}\", \"weight\": 1.5}}\n",
                i % 100,
                i % 30
            )
        })
        .collect();
    let r = curl_with_input(
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            "@-",
            &rows_url,
        ],
        Some(lines.into_bytes()),
    )
    .await;
    assert_eq!((r.status, &r.body["rows"]), (200, &json!(10_000)), "{r:?}");
    // durable: in a fresh engine over the same directory
    let mut http = http;
    http.stop().await;
    let dir = http._dir.path().to_path_buf();
    let engine = http.engine.clone();
    drop(http.engine);
    drop(engine);
    let reopened = reopen(&dir).await;
    assert_eq!(
        count(&reopened, "SELECT count(*) FROM events").await,
        320 + 2 + 10_000
    );
}

async fn reopen(dir: &std::path::Path) -> Engine {
    for _ in 0..100 {
        if let Ok(engine) = Engine::open(dir) {
            return engine;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Engine::open(dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_stand_for_their_role_with_its_privileges() {
    let http = start(|o| o).await;
    let base = &http.base;
    let recommend = format!("{base}/v1/models/recs/recommend?user=u1&k=3");
    let rows_url = format!("{base}/v1/tables/events/rows");
    let row = r#"[{"user_id": "r", "item_id": "i1", "weight": 1}]"#;
    // no key, a malformed header, a wrong key
    let r = curl(&[&recommend]).await;
    assert_eq!((r.status, r.code()), (401, "28000"), "{r:?}");
    assert!(
        r.headers
            .to_lowercase()
            .contains("www-authenticate: bearer"),
        "{}",
        r.headers
    );
    let r = curl(&["-H", "Authorization: Basic abc", &recommend]).await;
    assert_eq!(r.status, 401);
    let r = curl(&["-H", "Authorization: Bearer tdb_wrong", &recommend]).await;
    assert_eq!((r.status, r.code()), (401, "28P01"), "{r:?}");
    // a role without privileges
    let reader = api_key(&http.engine, "reader_key", "reader").await;
    let r = curl(&["-H", &bearer(&reader), &recommend]).await;
    assert_eq!((r.status, r.code()), (403, "42501"), "{r:?}");
    let r = curl(&[
        "-H",
        &bearer(&reader),
        "-H",
        "Content-Type: application/json",
        "-d",
        row,
        &rows_url,
    ])
    .await;
    assert_eq!((r.status, r.code()), (403, "42501"), "{r:?}");
    let r = curl(&[
        "-H",
        &bearer(&reader),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"sql": "SELECT count(*) FROM events"}"#,
        &format!("{base}/v1/sql"),
    ])
    .await;
    assert_eq!((r.status, r.code()), (403, "42501"), "{r:?}");
    assert_eq!(
        count(
            &http.engine,
            "SELECT count(*) FROM events WHERE user_id = 'r'"
        )
        .await,
        0
    );
    // the same privileges as over the wire: granted, it may
    http.engine
        .sql("GRANT SELECT ON MODEL recs TO reader")
        .await
        .unwrap();
    http.engine
        .sql("GRANT INSERT ON events TO reader")
        .await
        .unwrap();
    let r = curl(&["-H", &bearer(&reader), &recommend]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = curl(&[
        "-H",
        &bearer(&reader),
        "-H",
        "Content-Type: application/json",
        "-d",
        row,
        &rows_url,
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // a key is listed without its secret, and stops working when dropped
    let listed = http
        .engine
        .sql("SELECT name, user_name, key_prefix FROM tastedb_api_keys ORDER BY name")
        .await
        .unwrap();
    let prefixes = listed[0].column(2).as_string::<i32>();
    assert_eq!(listed[0].num_rows(), 1);
    assert!(reader.starts_with(prefixes.value(0)) && prefixes.value(0).len() < reader.len());
    http.engine.sql("DROP API KEY reader_key").await.unwrap();
    let r = curl(&["-H", &bearer(&reader), &recommend]).await;
    assert_eq!((r.status, r.code()), (401, "28P01"), "{r:?}");
    // a role that may not log in
    let nologin = api_key(&http.engine, "nologin_key", "nologin").await;
    let r = curl(&["-H", &bearer(&nologin), &recommend]).await;
    assert_eq!((r.status, r.code()), (403, "28000"), "{r:?}");
    // only the role itself or a role manager makes keys for it
    let err = http
        .engine
        .sql_as("reader", "CREATE API KEY sneaky FOR USER tastedb")
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), "42501");
    let own = http
        .engine
        .sql_as("reader", "CREATE API KEY mine")
        .await
        .unwrap();
    assert_eq!(own[0].column(1).as_string::<i32>().value(0), "reader");
    // dropping the role drops its keys
    let mine = own[0].column(2).as_string::<i32>().value(0).to_string();
    http.engine
        .sql("REVOKE ALL ON MODEL recs FROM reader")
        .await
        .unwrap();
    http.engine
        .sql("REVOKE ALL ON events FROM reader")
        .await
        .unwrap();
    http.engine.sql("DROP USER reader").await.unwrap();
    let r = curl(&["-H", &bearer(&mine), &recommend]).await;
    assert_eq!(r.status, 401, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_filters_work_in_sql_and_are_listed() {
    let http = start(|o| o).await;
    let engine = &http.engine;
    let in_stock = engine
        .sql("SELECT count(*) FROM recommend('recs', 'u1', 30, filter => 'in_stock') r JOIN items i USING (item_id) WHERE i.stock = 0")
        .await
        .unwrap();
    assert_eq!(
        in_stock[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0),
        0
    );
    let listed = engine
        .sql("SELECT name, definition FROM tastedb_filters")
        .await
        .unwrap();
    assert_eq!(listed[0].column(0).as_string::<i32>().value(0), "in_stock");
    let err = engine
        .sql("SELECT * FROM recommend('recs', 'u1', 3, filter => 'missing')")
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), "42704");
    let err = engine
        .sql("CREATE FILTER in_stock AS SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), "42710");
    let err = engine
        .sql("CREATE FILTER bad AS SELECT item_id FROM nowhere")
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), "42P01");
    // a filter runs as the role that uses it: the reader may not read items
    engine
        .sql("GRANT SELECT ON MODEL recs TO reader")
        .await
        .unwrap();
    let err = engine
        .sql_as(
            "reader",
            "SELECT * FROM recommend('recs', 'u1', 3, filter => 'in_stock')",
        )
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), "42501");
    // only its owner (or a superuser) drops it
    engine.sql("CREATE USER maker").await.unwrap();
    engine.sql("GRANT SELECT ON items TO maker").await.unwrap();
    engine
        .sql_as(
            "maker",
            "CREATE FILTER cheap AS SELECT item_id FROM items WHERE stock > 1",
        )
        .await
        .unwrap();
    let err = engine
        .sql_as("reader", "DROP FILTER cheap")
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), "42501");
    engine.sql_as("maker", "DROP FILTER cheap").await.unwrap();
    engine.sql("DROP FILTER IF EXISTS cheap").await.unwrap();
    // filters survive a restart
    let mut http = http;
    http.stop().await;
    let dir = http._dir.path().to_path_buf();
    drop(http.engine);
    let reopened = reopen(&dir).await;
    let listed = reopened
        .sql("SELECT count(*) FROM tastedb_filters")
        .await
        .unwrap();
    assert_eq!(
        listed[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_is_valid_and_metrics_parse_as_prometheus_text() {
    let http = start(|o| o).await;
    let key = api_key(&http.engine, "admin", "tastedb").await;
    let base = &http.base;
    for _ in 0..3 {
        curl(&[
            "-H",
            &bearer(&key),
            &format!("{base}/v1/models/recs/recommend?user=u1"),
        ])
        .await;
    }
    curl(&[&format!("{base}/v1/models/recs/recommend?user=u1")]).await;
    let r = curl(&[&format!("{base}/openapi.json")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");
    for path in [
        "/v1/models/{model}/recommend",
        "/v1/models/{model}/similar",
        "/v1/tables/{table}/rows",
        "/v1/features/{view}",
        "/v1/models",
        "/v1/models/{model}/versions",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(r.body["paths"][path].is_object(), "{path} missing");
    }
    let check = python(
        "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.loads(sys.stdin.read()))\nprint('valid')",
        &r.text,
    )
    .await;
    assert_eq!(check.trim(), "valid");
    let r = curl(&[&format!("{base}/metrics")]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers.contains("application/openmetrics-text"),
        "{}",
        r.headers
    );
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as om\n\
        from prometheus_client.parser import text_string_to_metric_families as prom\n\
        text = sys.stdin.read()\n\
        list(prom(text))\n\
        for f in om(text):\n\
        \x20   for s in f.samples:\n\
        \x20       print(s.name, sorted(s.labels.items()), s.value)\n";
    let samples = python(script, &r.text).await;
    let has = |needle: &str| samples.lines().any(|l| l.contains(needle));
    assert!(
        has(
            "tastedb_http_requests_total [('endpoint', '/v1/models/{model}/recommend'), ('method', 'GET'), ('status', '200')] 3"
        ),
        "{samples}"
    );
    assert!(has("('status', '401')"), "{samples}");
    assert!(
        has("tastedb_http_request_duration_seconds_bucket"),
        "{samples}"
    );
    assert!(
        has("tastedb_model_active_version [('model', 'recs')] 1"),
        "{samples}"
    );
    assert!(has("tastedb_cache_misses_total"), "{samples}");
    assert!(
        has("tastedb_training_runs_total [('model', 'recs'), ('outcome', 'ok')] 1"),
        "{samples}"
    );
    assert!(has("tastedb_storage_pending_compaction_bytes"), "{samples}");
}

/// Runs a Python script with `input` on its standard input and returns what it printed.
async fn python(script: &str, input: &str) -> String {
    let (script, input) = (script.to_string(), input.to_string());
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_and_shutdown_lets_requests_in_flight_finish() {
    let mut http = start(|o| HttpOptions {
        request_timeout: Duration::from_secs(2),
        ..o
    })
    .await;
    let key = api_key(&http.engine, "admin", "tastedb").await;
    let rows_url = format!("{}/v1/tables/events/rows", http.base);
    let line = "{\"user_id\": \"slow\", \"item_id\": \"i1\", \"weight\": 1}\n";
    // a client that sends half its rows and then stalls past the timeout: 503, nothing stored
    let mut child = spawn_curl_stream(&key, &rows_url);
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(line.repeat(100).as_bytes()).unwrap();
    pipe.flush().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = pipe.write_all(line.as_bytes());
    drop(pipe);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let r = parse_reply(&String::from_utf8_lossy(&out.stdout));
    assert_eq!((r.status, r.code()), (503, "57014"), "{r:?}");
    assert_eq!(
        count(
            &http.engine,
            "SELECT count(*) FROM events WHERE user_id = 'slow'"
        )
        .await,
        0
    );

    // shutdown while a request streams: no new connections, the request completes (on a
    // server with the default timeout, so that a slow machine does not time it out)
    http.stop().await;
    let mut http = start(|o| o).await;
    let key = api_key(&http.engine, "admin", "tastedb").await;
    let rows_url = format!("{}/v1/tables/events/rows", http.base);
    let mut child = spawn_curl_stream(&key, &rows_url);
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(line.repeat(100).as_bytes()).unwrap();
    pipe.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = http.stop.take().unwrap();
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = curl(&["--max-time", "2", &format!("{}/healthz", http.base)]).await;
    assert_eq!(
        refused.status, 0,
        "a new connection is refused once stopping: {refused:?}"
    );
    pipe.write_all(line.repeat(50).as_bytes()).unwrap();
    drop(pipe);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let r = parse_reply(&String::from_utf8_lossy(&out.stdout));
    assert_eq!((r.status, &r.body["rows"]), (200, &json!(150)), "{r:?}");
    http.stop().await;
    assert_eq!(
        count(
            &http.engine,
            "SELECT count(*) FROM events WHERE user_id = 'slow'"
        )
        .await,
        150
    );
}

/// curl posting NDJSON read from its standard input as it comes (chunked).
fn spawn_curl_stream(key: &str, url: &str) -> std::process::Child {
    Command::new("curl")
        .args(["-sS", "-D", "-", "-w", "\n%{http_code}", "-H", &bearer(key)])
        .args([
            "-H",
            "Content-Type: application/x-ndjson",
            "-H",
            "Transfer-Encoding: chunked",
        ])
        .args(["-T", "-", "-X", "POST", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl is installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_servers_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key_file) = crate::common::self_signed_certificate(certs.path());
    let tls = (cert.clone(), key_file.clone());
    let http = start(move |o| HttpOptions {
        tls: Some(tls),
        ..o
    })
    .await;
    let key = api_key(&http.engine, "admin", "tastedb").await;
    let https = http.base.replace("http://", "https://");
    let r = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        "-H",
        &bearer(&key),
        &format!("{https}/v1/models/recs/recommend?user=u1&k=2"),
    ])
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    // plain HTTP to the TLS port gets no answer
    let r = curl(&["--max-time", "3", &format!("{}/healthz", http.base)]).await;
    assert_ne!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_renders_models_and_queries_in_headless_chromium() {
    let http = start(|o| o).await;
    let key = api_key(&http.engine, "console", "tastedb").await;
    let base = &http.base;
    let model_page = chromium(&format!("{base}/#/models/recs?key={key}"), None).await;
    assert!(model_page.contains("data-ready=\"true\""), "{model_page}");
    assert!(model_page.contains("id=\"versions\""), "{model_page}");
    assert!(
        model_page.contains("<canvas"),
        "the loss chart is drawn: {model_page}"
    );
    assert!(
        !model_page.contains("id=\"error\" class=\"error\" role=\"alert\">"),
        "{model_page}"
    );
    let overview = chromium(&format!("{base}/#/?key={key}"), None).await;
    for id in ["tables", "models", "cache", "features", "indexes"] {
        assert!(
            overview.contains(&format!("id=\"{id}\"")),
            "{id}: {overview}"
        );
    }
    assert!(
        overview.contains("activity") && overview.contains(">320<"),
        "{overview}"
    );
    let query = "SELECT user_id, count(*) AS n FROM events WHERE user_id = 'u7' GROUP BY user_id";
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let query_page = chromium(&format!("{base}/#/query?key={key}&sql={encoded}"), None).await;
    assert!(query_page.contains("SELECT 1"), "{query_page}");
    assert!(query_page.contains(">u7<"), "{query_page}");
    // a key that is not one shows the login form
    let login = chromium(&format!("{base}/#/?key=tdb_nope"), None).await;
    assert!(login.contains("id=\"login\" class=\"login\">"), "{login}");
    // the model page as a picture, kept as a test artifact
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("console-model.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&format!("{base}/#/models/recs?key={key}"), Some(&shot)).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        shot.display()
    );
    eprintln!("console screenshot: {}", shot.display());
}

/// Loads `url` in headless Chromium (Debian's package) and returns the DOM once its scripts
/// are done, or takes a screenshot into `screenshot`.
async fn chromium(url: &str, screenshot: Option<&std::path::Path>) -> String {
    let (url, screenshot) = (url.to_string(), screenshot.map(|p| p.to_path_buf()));
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()));
        match &screenshot {
            Some(path) => command.arg(format!("--screenshot={}", path.display())),
            None => command.arg("--dump-dom"),
        };
        let out = command
            .arg(&url)
            .stderr(Stdio::null())
            .output()
            .expect("chromium is installed (.ci/setup)");
        assert!(out.status.success(), "chromium failed on {url}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// Lines a child process prints, as they come.
fn lines_of(
    output: impl std::io::Read + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::{BufRead, BufReader};
    let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    lines
}

/// The first line of `lines` that contains `needle`, within `seconds`.
async fn line_with(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
    seconds: u64,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(seconds), lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no line with {needle} within {seconds} s"))
            .unwrap_or_else(|| panic!("the output ended before a line with {needle}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    child.wait().unwrap()
}

/// `tastedb serve --http`: both servers on one engine — a statement over the wire shows in
/// `/metrics` per statement kind — and SIGTERM stops both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_http_counts_wire_statements_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .arg("--data")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("TASTEDB_PASSWORD", "pw")
        .stderr(Stdio::piped())
        .spawn()
        .expect("tastedb serve starts");
    let mut lines = lines_of(child.stderr.take().unwrap());
    let wire = line_with(&mut lines, "TasteDB listening on ", 60).await;
    let wire: std::net::SocketAddr = wire
        .trim_start_matches("TasteDB listening on ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let web = line_with(&mut lines, "HTTP API and console on ", 10).await;
    let base = web
        .trim_start_matches("HTTP API and console on ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let client = crate::common::connect_as(wire, "tastedb", "pw")
        .await
        .unwrap();
    client
        .batch_execute("CREATE TABLE t (a BIGINT); INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    let _ = client.query("SELECT * FROM missing", &[]).await;
    let r = curl(&[&format!("{base}/metrics")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    for sample in [
        "tastedb_statements_total{kind=\"CREATE\",outcome=\"ok\"} 1",
        "tastedb_statements_total{kind=\"SELECT\",outcome=\"error\"} 1",
        "tastedb_rows_written_total 3",
        "tastedb_connections 1",
    ] {
        assert!(r.text.contains(sample), "{sample} in {}", r.text);
    }
    let status = tokio::task::spawn_blocking(move || terminate(&mut child))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    line_with(&mut lines, "stopped", 10).await;
}

/// `tastedb demo`: a generated shop, trained and served over both protocols; its lists lean
/// to each user's favourite categories; a second start serves the same data at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_sensible_recommendations_over_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_tastedb"))
            .arg("--data")
            .arg(dir.path())
            .args(["demo", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tastedb demo starts")
    };
    let mut child = start();
    let mut lines = lines_of(child.stdout.take().unwrap());
    let psql_line = line_with(&mut lines, "psql:", 600)
        .await
        .replace("psql:", "");
    let curl_line = line_with(&mut lines, "curl:", 10).await;
    let key = curl_line
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let url = curl_line.rsplit('\'').nth(1).unwrap().to_string();
    let base = url.split("/v1/").next().unwrap().to_string();
    let auth = bearer(&key);
    // the printed curl line works, and its items are in stock
    let r = curl(&["-H", &auth, &url]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 5);
    // sensible: most recommended items are in the user's two favourite categories
    let mut liked = 0;
    let mut all = 0;
    for user in ["u00007", "u00100", "u00999", "u02500"] {
        let r = curl(&[
            "-H",
            &auth,
            &format!("{base}/v1/models/shop/recommend?user={user}&k=10"),
        ])
        .await;
        let items: Vec<String> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| format!("'{}'", i["item"].as_str().unwrap()))
            .collect();
        let query = format!(
            "{{\"sql\": \"SELECT count(*) FROM items i, users u WHERE u.user_id = '{user}' AND i.item_id IN ({}) AND i.category IN (u.favourite_category, u.second_category)\"}}",
            items.join(", ")
        );
        let counted = curl(&[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            &query,
            &format!("{base}/v1/sql"),
        ])
        .await;
        assert_eq!(counted.status, 200, "{counted:?}");
        liked += counted.body["rows"][0][0].as_i64().unwrap();
        all += items.len() as i64;
    }
    assert!(
        liked * 10 >= all * 7,
        "{liked} of {all} in the users' favourite categories"
    );
    // psql, with the line the demo printed (trust on loopback)
    let mut psql_args: Vec<String> = psql_line
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    psql_args.extend(["-XAtc".into(), "SELECT count(*) FROM items".into()]);
    let out = Command::new("psql").args(&psql_args).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2000",
        "{out:?}"
    );
    assert!(terminate(&mut child).success());
    // a second start reuses the data: no generation, no training
    let mut again = start();
    let mut lines = lines_of(again.stdout.take().unwrap());
    let started = std::time::Instant::now();
    line_with(&mut lines, "curl:", 120).await;
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(terminate(&mut again).success());
}

/// `{model}` may be `model@alias` or an experiment: the answer says the version that served
/// it, and an experiment's answers are logged.
#[tokio::test]
async fn aliases_and_experiments_answer_with_the_version_that_served() {
    let http = start(|o| o).await;
    let key = api_key(&http.engine, "admin", "tastedb").await;
    let auth = bearer(&key);
    let base = &http.base;
    http.engine
        .sql(
            "TRAIN MODEL recs USING als FROM events WITH (factors = 4, iterations = 3, \
             activate = false);
             ALTER MODEL recs SET ALIAS next = 2;
             CREATE EXPERIMENT homepage ON MODEL recs (active 50, next 50)",
        )
        .await
        .unwrap();
    let r = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/recs@next/recommend?user=u1&k=3"),
    ])
    .await;
    assert_eq!((r.status, &r.body["version"]), (200, &json!(2)), "{r:?}");
    for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
        let arm = http
            .engine
            .sql(&format!("SELECT experiment_arm('homepage', '{user}')"))
            .await
            .unwrap();
        let arm = arm[0].column(0).as_string::<i32>().value(0).to_string();
        let r = curl(&[
            "-H",
            &auth,
            &format!("{base}/v1/models/homepage/recommend?user={user}&k=3"),
        ])
        .await;
        let version = if arm == "next" { 2 } else { 1 };
        assert_eq!(
            (r.status, &r.body["version"]),
            (200, &json!(version)),
            "{user}: {r:?}"
        );
    }
    http.engine.impressions().flush().await.unwrap();
    let logged = http
        .engine
        .sql("SELECT count(DISTINCT request_id) FROM tastedb_impressions")
        .await
        .unwrap();
    let logged = logged[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    assert_eq!(logged.value(0), 6);
    let r = curl(&[
        "-H",
        &auth,
        &format!("{base}/v1/models/nothing@next/recommend?user=u1"),
    ])
    .await;
    assert_eq!(r.status, 404, "{r:?}");
}
