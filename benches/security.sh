#!/usr/bin/env bash
# Security and reliability figures of `tastedb serve` (release build), in one run:
#  (a) the cost of privilege checks on the serving path: pgbench -M prepared -c 8 -j 2, a
#      prepared point SELECT and a prepared recommend(), as the superuser and as a role with
#      only SELECT granted, runs interleaved (super, role, super, role), tps and the ratio;
#  (b) a soak: 16 clients of a mixed load (inserts, point SELECTs, recommend, aggregates over
#      a growing table) for SOAK_SECONDS (600 by default): transactions,
#      unexpected errors (aborted clients), p99 latency, the server's peak RSS;
#  (c) backups of a data directory of EVENTS events (10,000,000 by default): a full backup,
#      then an incremental one after 100,000 more events: seconds and bytes each.
#
#   bash benches/security.sh      # BENCH_SECONDS=20 SOAK_SECONDS=600 EVENTS=10000000;
#                                 # TASTEDB_BIN=path skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${BENCH_SECONDS:-20}
SOAK_SECONDS=${SOAK_SECONDS:-600}
EVENTS=${EVENTS:-10000000}
USERS=100000
PORT=${TASTE_PORT:-55443}
PASSWORD=bench-password
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tastedb-target}"

work=$(mktemp -d /tmp/tastedb-security.XXXXXX)
taste_pid=""
cleanup() {
  [ -n "$taste_pid" ] && kill "$taste_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

source benches/common/binary.sh

serve() {
  TASTEDB_PASSWORD=$PASSWORD "$tastedb" --data "$1" serve --listen "127.0.0.1:$PORT" \
    >"$work/serve.log" 2>&1 &
  taste_pid=$!
  for _ in $(seq 100); do
    PGPASSWORD=$PASSWORD psql -X -q -h 127.0.0.1 -p "$PORT" -U tastedb -d tastedb -c "SELECT 1" \
      >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "the server did not start" >&2; cat "$work/serve.log" >&2; exit 1
}
stop() { kill "$taste_pid"; wait "$taste_pid" 2>/dev/null || true; taste_pid=""; }
as() { local role=$1 password=$2; shift 2; PGPASSWORD=$password psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$role" -d tastedb "$@"; }
admin() { as tastedb "$PASSWORD" "$@"; }

events_csv() { # $1 rows, $2 seed: deterministic power-law-ish events
  awk -v n="$1" -v seed="$2" -v users="$USERS" 'BEGIN { srand(seed);
    for (i = 0; i < n; i++) printf "%d,i%d,%.2f\n", int(users * rand() ^ 2), int(20000 * rand() ^ 2), 1 + 4 * rand() }'
}

echo "== (a) privilege checks: serving as the superuser and as a granted role"
serve "$work/serve-data"
awk -v n="$USERS" 'BEGIN { srand(7); for (i = 1; i <= n; i++) printf "%d,user %d,%.3f\n", i, i, 100 * rand() }' > "$work/users.csv"
events_csv 1000000 42 > "$work/events.csv"
admin -c "CREATE TABLE users (user_id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION)" \
  -c "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE PRECISION)" >/dev/null
admin -c "\\copy users FROM '$work/users.csv' CSV" -c "\\copy events FROM '$work/events.csv' CSV" >/dev/null
admin -c "TRAIN MODEL m USING als FROM events WITH (factors = 32, iterations = 5, holdout = 0)" >/dev/null 2>&1
admin -c "CREATE USER reader PASSWORD 'reader'" -c "GRANT SELECT ON users TO reader" \
  -c "GRANT SELECT ON MODEL m TO reader" >/dev/null
cat > "$work/point.sql" <<SQL
\set uid random(1, $USERS)
SELECT user_id, name, score FROM users WHERE user_id = :uid;
SQL
cat > "$work/recommend.sql" <<SQL
\set uid random(1, 2000)
SELECT item_id FROM recommend('m', :uid, 10);
SQL
bench() { # $1 script, $2 role, $3 password
  PGPASSWORD=$3 pgbench -n -M prepared -c 8 -j 2 -T "$SECONDS_PER_RUN" -f "$1" \
    -h 127.0.0.1 -p "$PORT" -U "$2" tastedb 2>&1 | awk '/^tps/ { print $3 }'
}
declare -A tps
for script in point recommend; do
  for round in 1 2; do
    tps[$script-super-$round]=$(bench "$work/$script.sql" tastedb "$PASSWORD")
    tps[$script-role-$round]=$(bench "$work/$script.sql" reader reader)
  done
done
stop

echo "== (b) soak: 16 clients, mixed load, $SOAK_SECONDS s"
serve "$work/soak-data"
admin -c "CREATE TABLE users (user_id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION)" \
  -c "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE PRECISION)" >/dev/null
admin -c "\\copy users FROM '$work/users.csv' CSV" -c "\\copy events FROM '$work/events.csv' CSV" >/dev/null
admin -c "TRAIN MODEL m USING als FROM events WITH (factors = 32, iterations = 5, holdout = 0)" >/dev/null 2>&1
cat > "$work/soak_insert.sql" <<'SQL'
\set u random(1, 100000)
\set i random(1, 20000)
INSERT INTO events VALUES (CAST(:u AS TEXT), 'i' || CAST(:i AS TEXT), 1.0);
SQL
cat > "$work/soak_aggregate.sql" <<'SQL'
\set u random(1, 2000)
SELECT item_id, count(*) FROM events WHERE user_id = CAST(:u AS TEXT) GROUP BY item_id;
SQL
rss_log="$work/rss.log"
( while kill -0 "$taste_pid" 2>/dev/null; do
    awk '/VmHWM/ { print $2 }' "/proc/$taste_pid/status" 2>/dev/null >> "$rss_log" || true
    sleep 5
  done ) &
rss_pid=$!
(cd "$work" && PGPASSWORD=$PASSWORD pgbench -n -M prepared -c 16 -j 2 -T "$SOAK_SECONDS" \
  -f point.sql@4 -f recommend.sql@4 -f soak_insert.sql@1 -f soak_aggregate.sql@1 \
  --log --log-prefix=soaklog -h 127.0.0.1 -p "$PORT" -U tastedb tastedb > soak.out 2>&1) || true
kill "$rss_pid" 2>/dev/null || true
soak_tx=$(awk '/number of transactions actually processed/ { print $NF }' "$work/soak.out")
soak_failed=$(awk '/number of failed transactions/ { print $5; exit }' "$work/soak.out")
soak_aborted=$(grep -c "client [0-9]* aborted" "$work/soak.out" || true)
soak_p99=$(cat "$work"/soaklog.* 2>/dev/null | awk '{ print $3 }' | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", v[int(NR * 0.99)] / 1000 }')
soak_rss=$(sort -n "$rss_log" | tail -1)
stop

echo "== (c) backups of $EVENTS events"
events_csv "$EVENTS" 11 > "$work/big.csv"
"$tastedb" --data "$work/big-data" sql -q -c "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE)"
"$tastedb" --data "$work/big-data" import --table events --header false "$work/big.csv" >/dev/null
timed() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
full_s=$(timed "$tastedb" --data "$work/big-data" backup --to "$work/backups")
full_bytes=$(du -sb "$work/backups" | cut -f1)
events_csv 100000 12 > "$work/more.csv"
"$tastedb" --data "$work/big-data" import --table events --header false "$work/more.csv" >/dev/null
incr_s=$(timed "$tastedb" --data "$work/big-data" backup --to "$work/backups")
incr_bytes=$(( $(du -sb "$work/backups" | cut -f1) - full_bytes ))
data_bytes=$(du -sb "$work/big-data" | cut -f1)

ratio() { echo "scale=3; $1 / $2" | bc -l; }
mean() { echo "($1 + $2) / 2" | bc -l; }
printf '\n(a) privilege checks, pgbench -M prepared -c 8 -j 2 -T %s, tps (two rounds each)\n' "$SECONDS_PER_RUN"
for script in point recommend; do
  s=$(mean "${tps[$script-super-1]}" "${tps[$script-super-2]}")
  r=$(mean "${tps[$script-role-1]}" "${tps[$script-role-2]}")
  printf '%-12s superuser %8.0f  reader %8.0f  reader/superuser %.3f\n' "$script" "$s" "$r" "$(ratio "$r" "$s")"
done
printf '\n(b) soak, 16 clients, %s s: %s transactions, %s failed, %s clients aborted, p99 %s ms, peak RSS %s MiB\n' \
  "$SOAK_SECONDS" "$soak_tx" "${soak_failed:-0}" "$soak_aborted" "$soak_p99" "$(( ${soak_rss:-0} / 1024 ))"
printf '\n(c) backups: data directory %s MiB; full %.1f s, %s MiB; incremental (+100,000 events) %.1f s, %s MiB\n' \
  "$(( data_bytes >> 20 ))" "$full_s" "$(( full_bytes >> 20 ))" "$incr_s" "$(( incr_bytes >> 20 ))"
