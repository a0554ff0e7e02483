#!/usr/bin/env bash
# The HTTP API next to the wire protocol, on one TasteDB server (issue 21):
#  serving  MovieLens 100K ALS model (the options of scale.sh): GET /v1/models/m/recommend with
#           wrk (8 connections, 2 threads, a random user of 943 per request) next to pgbench
#           -M prepared -c 8 -j 2 running `SELECT item_id, score, rank FROM recommend('m', $u,
#           10)` (both with the prediction cache), alternating; requests/s, the ratio, p50/p99.
#  ingest   POST /v1/tables/ev/rows with batches of 1, 100 and 10,000 rows (a JSON array; wrk,
#           8 connections: every answer is a durable commit) next to one COPY of 1,000,000 rows
#           of the same shape over the wire (psql \copy); rows/s.
#
#   bash benches/http.sh                 # TASTEDB_BIN=path skips the release build
#   BENCH_SECONDS (20) is each run's length.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${BENCH_SECONDS:-20}
TASTE_PORT=${TASTE_PORT:-55453}
HTTP_PORT=${HTTP_PORT:-55454}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tastedb-target}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench is needed (postgresql-contrib / postgresql-15)" >&2; exit 1; }

work=$(mktemp -d /tmp/tastedb-http-bench.XXXXXX)
taste_pid=""
cleanup() {
  [ -n "$taste_pid" ] && kill "$taste_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

source benches/common/binary.sh
source benches/common/movielens.sh
taste_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$TASTE_PORT" -U tastedb -d tastedb "$@"; }

"$tastedb" --data "$work/taste" serve --auth trust --listen "127.0.0.1:$TASTE_PORT" \
  --http "127.0.0.1:$HTTP_PORT" >"$work/taste.log" 2>&1 &
taste_pid=$!
for _ in $(seq 100); do
  taste_psql -c "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.2
done
taste_psql -c "CREATE USER tastedb SUPERUSER" >/dev/null
key=$(taste_psql -A -t -c "CREATE API KEY bench FOR USER tastedb" | cut -d'|' -f3)
base="http://127.0.0.1:$HTTP_PORT"

movielens "$work/ml.csv"
taste_psql -c "CREATE TABLE ml (user_id TEXT, item_id TEXT, weight DOUBLE PRECISION)" >/dev/null
taste_psql -c "\\copy ml FROM '$work/ml.csv' CSV" >/dev/null
taste_psql -c "TRAIN MODEL m USING als FROM ml WITH (factors = 64, iterations = 15, \
  regularization = 20, alpha = 1, threads = 2, holdout = 0)" >/dev/null 2>&1

# wrk: prints "requests/s p50_ms p99_ms"
wrk_run() {
  local script=$1 url=$2
  wrk -t 2 -c 8 -d "${SECONDS_PER_RUN}s" --latency -s "$script" "$url" > "$work/wrk.out" 2>&1
  grep -q "Non-2xx" "$work/wrk.out" && { echo "wrk saw errors:" >&2; cat "$work/wrk.out" >&2; exit 1; }
  awk '/Requests\/sec/ { rps = $2 }
       function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
       $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
       END { printf "%s %.3f %.3f\n", rps, p50, p99 }' "$work/wrk.out"
}

# pgbench: prints "tps p50_ms p99_ms" from the per-transaction log
pgbench_run() {
  local name=$1 script=$2
  local logs="$work/logs/$name"
  mkdir -p "$logs"
  pgbench -n -M prepared -c 8 -j 2 -T "$SECONDS_PER_RUN" -f "$script" -l --log-prefix="$logs/tx" \
    -h 127.0.0.1 -p "$TASTE_PORT" -U tastedb tastedb > "$logs/out" 2>&1 || true
  local tps n
  tps=$(awk '/^tps/ { print $3 }' "$logs/out")
  [ -n "$tps" ] || { echo "pgbench $name failed:" >&2; tail -5 "$logs/out" >&2; exit 1; }
  cat "$logs"/tx.* | awk '{ print $3 }' | sort -n > "$logs/latencies"
  n=$(wc -l < "$logs/latencies")
  printf '%s %.3f %.3f\n' "$tps" \
    "$(echo "$(sed -n "$(( (n * 50 + 99) / 100 ))p" "$logs/latencies") / 1000" | bc -l)" \
    "$(echo "$(sed -n "$(( (n * 99 + 99) / 100 ))p" "$logs/latencies") / 1000" | bc -l)"
}

echo "== serving: MovieLens 100K ALS, GET /v1/models/m/recommend vs recommend() over the wire"
cat > "$work/recommend.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $key"
math.randomseed(1)
request = function()
  return wrk.format("GET", "/v1/models/m/recommend?user=" .. math.random(1, 943) .. "&k=10")
end
LUA
cat > "$work/recommend.sql" <<'SQL'
\set u random(1, 943)
SELECT item_id, score, rank FROM recommend('m', :u, 10);
SQL
chmod 644 "$work"/*.sql
curl -sf -H "Authorization: Bearer $key" "$base/v1/models/m/recommend?user=1&k=10" >/dev/null
printf '%-42s %10s %8s %9s %9s\n' "" "req/s" "ratio" "p50 ms" "p99 ms"
# alternating, twice each, so that neither side gets the machine's better minute
for run in 1 2; do
  read -r w_rps w_p50 w_p99 <<< "$(pgbench_run "wire_$run" "$work/recommend.sql")"
  read -r h_rps h_p50 h_p99 <<< "$(wrk_run "$work/recommend.lua" "$base")"
  printf '%-42s %10.0f %8s %9.3f %9.3f\n' "wire (pgbench -M prepared), run $run" "$w_rps" "" "$w_p50" "$w_p99"
  printf '%-42s %10.0f %7.2fx %9.3f %9.3f\n' "HTTP GET (wrk), run $run" "$h_rps" \
    "$(echo "$h_rps / $w_rps" | bc -l)" "$h_p50" "$h_p99"
done
echo "(goal: HTTP >= 0.8x the wire protocol)"

echo "== ingest: POST /v1/tables/ev/rows in batches vs COPY over the wire"
taste_psql -c "CREATE TABLE ev (user_id TEXT, item_id TEXT, weight DOUBLE PRECISION)" >/dev/null
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
row = lambda i: {"user_id": f"u{i % 50000}", "item_id": f"i{(i * 7) % 20000}", "weight": 1.0 + i % 5}
for n in (1, 100, 10000):
    body = json.dumps([row(i) for i in range(n)])
    with open(f"{work}/rows{n}.json", "w") as f:
        f.write(body)
with open(f"{work}/copy.csv", "w") as f:
    for i in range(1_000_000):
        r = row(i)
        f.write(f"{r['user_id']},{r['item_id']},{r['weight']}\n")
PY
start=$(date +%s.%N)
taste_psql -c "\\copy ev FROM '$work/copy.csv' CSV" >/dev/null
copy_s=$(echo "$(date +%s.%N) - $start" | bc -l)
copy_rate=$(echo "1000000 / $copy_s" | bc -l)
printf '%-42s %12s %8s\n' "" "rows/s" "vs COPY"
printf '%-42s %12.0f %8s\n' "COPY 1,000,000 rows (one statement)" "$copy_rate" ""
for n in 1 100 10000; do
  cat > "$work/post$n.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/rows$n.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
  read -r rps _ _ <<< "$(wrk_run "$work/post$n.lua" "$base/v1/tables/ev/rows")"
  rate=$(echo "$rps * $n" | bc -l)
  printf '%-42s %12.0f %7.2fx\n' "HTTP POST, $n rows per request" "$rate" "$(echo "$rate / $copy_rate" | bc -l)"
done
