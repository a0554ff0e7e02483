#!/usr/bin/env bash
# The feature store on 1,000,000 events, with the release binary:
#  (a) MATERIALIZE of per-user features (full), then again after 10,000 new events
#      (incremental): seconds and source rows/s;
#  (b) online_features latency for one key, p50/p99: in process (`tastedb sql --timing`, every
#      statement parsed, planned and run by the embedded engine) and over the wire (pgbench,
#      simple protocol, one client); next to SELECT … WHERE user_id = … on a table whose
#      primary key is user_id, measured the same ways.
#
#   bash benches/features.sh    # EVENTS=1000000 USERS=100000 LOOKUPS=5000 BENCH_SECONDS=10;
#                               # TASTEDB_BIN=path skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1000000}
USERS=${USERS:-100000}
LOOKUPS=${LOOKUPS:-5000}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
PORT=${TASTE_PORT:-55434}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tastedb-target}"

work=$(mktemp -d /tmp/tastedb-features.XXXXXX)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

source benches/common/binary.sh
sql() { "$tastedb" --data "$work/data" sql "$@"; }

echo "== $EVENTS events of $USERS users over the last 30 days"
sql -q -c "
CREATE TABLE events (user_id TEXT, item_id TEXT, event_type TEXT, weight DOUBLE, ts TIMESTAMP);
INSERT INTO events
SELECT 'u' || (v * 7919 % $USERS), 'i' || (v * 104729 % 20000),
       CASE WHEN v % 10 = 0 THEN 'purchase' ELSE 'view' END, 1.0 + v % 5,
       to_timestamp_seconds(CAST(extract(epoch FROM now()) AS BIGINT) - v * 2591 % 2592000)
FROM generate_series(1, $EVENTS) AS t(v);
CREATE FEATURE VIEW user_activity ENTITY (user_id) TIMESTAMP last_seen TTL '30 days' AS
SELECT user_id, max(ts) AS last_seen, count(*) AS events,
       sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
       sum(weight) AS weight
FROM events GROUP BY user_id;
CREATE TABLE user_stats (user_id TEXT PRIMARY KEY, last_seen TIMESTAMP, events BIGINT,
                         purchases BIGINT, weight DOUBLE);"

# MATERIALIZE prints feature_view | mode | entities | rows | seconds
materialize() {
  sql -c "MATERIALIZE FEATURE VIEW user_activity" | awk -F'|' '/user_activity/ {
    gsub(/ /, ""); print $3, $4, $5, $6 }'
}
echo "== (a) MATERIALIZE, full"
read -r full_mode full_entities full_rows full_seconds <<<"$(materialize)"
echo "== (a) 10,000 new events, then MATERIALIZE again"
sql -q -c "INSERT INTO events
SELECT 'u' || (v * 7 % $USERS), 'i' || (v % 20000), 'view', 1.0, CAST(now() AS TIMESTAMP)
FROM generate_series(1, 10000) AS t(v)"
read -r inc_mode inc_entities inc_rows inc_seconds <<<"$(materialize)"
sql -q -c "INSERT INTO user_stats SELECT * FROM online_features('user_activity')"

# p50 and p99 (ms) of the numbers on standard input
percentiles() {
  sort -n | awk '{ v[NR] = $1 } END {
    p50 = int(NR * 0.50); if (p50 < 1) p50 = 1
    p99 = int(NR * 0.99); if (p99 < 1) p99 = 1
    printf "%.3f %.3f", v[p50], v[p99] }'
}
awk -v n="$LOOKUPS" -v users="$USERS" 'BEGIN { srand(3); for (i = 0; i < n; i++)
  printf "SELECT * FROM online_features('"'"'user_activity'"'"', '"'"'u%d'"'"');\n", int(users * rand()) }' \
  > "$work/online.sql"
awk -v n="$LOOKUPS" -v users="$USERS" 'BEGIN { srand(3); for (i = 0; i < n; i++)
  printf "SELECT * FROM user_stats WHERE user_id = '"'"'u%d'"'"';\n", int(users * rand()) }' \
  > "$work/table.sql"
echo "== (b) $LOOKUPS lookups of one key in process"
in_online=$(sql --timing -q "$work/online.sql" 2>&1 >/dev/null | awk '/^Time:/ { print $2 }' | percentiles)
in_table=$(sql --timing -q "$work/table.sql" 2>&1 >/dev/null | awk '/^Time:/ { print $2 }' | percentiles)

echo "== (b) pgbench -M simple -c 1 -T $SECONDS_PER_RUN over the wire"
"$tastedb" --data "$work/data" serve --auth trust --listen "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
  psql -X -q -h 127.0.0.1 -p "$PORT" -U tastedb -d tastedb -c "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.2
done
cat > "$work/online.pgbench" <<SQL
\set uid random(0, $((USERS - 1)))
SELECT * FROM online_features('user_activity', 'u:uid');
SQL
cat > "$work/table.pgbench" <<SQL
\set uid random(0, $((USERS - 1)))
SELECT * FROM user_stats WHERE user_id = 'u:uid';
SQL
wire() {
  (cd "$work" && rm -f pgbench_log.* &&
    pgbench -n -M simple -c 1 -j 1 -T "$SECONDS_PER_RUN" -f "$1" -l -h 127.0.0.1 -p "$PORT" \
      -U tastedb tastedb >/dev/null 2>&1 &&
    cat pgbench_log.* | awk '{ print $3 / 1000 }' | percentiles)
}
wire_online=$(wire online.pgbench)
wire_table=$(wire table.pgbench)

rate() { echo "$1 / $2" | bc -l; }
printf '\nMATERIALIZE FEATURE VIEW user_activity (%s events, %s users)\n' "$EVENTS" "$USERS"
printf '  %-12s %6.2f s  %10.0f source rows/s  %7s entities  %7s online rows\n' \
  "$full_mode" "$full_seconds" "$(rate "$EVENTS" "$full_seconds")" "$full_entities" "$full_rows"
printf '  %-12s %6.2f s  %10.0f new rows/s     %7s entities  %7s online rows\n' \
  "$inc_mode" "$inc_seconds" "$(rate 10000 "$inc_seconds")" "$inc_entities" "$inc_rows"
printf '\nlookup of one key, ms            %12s %12s\n' "p50" "p99"
read -r a b <<<"$in_online";   printf '  online_features, in process    %12s %12s\n' "$a" "$b"
read -r a b <<<"$in_table";    printf '  primary-key SELECT, in process %12s %12s\n' "$a" "$b"
read -r a b <<<"$wire_online"; printf '  online_features, over the wire %12s %12s\n' "$a" "$b"
read -r a b <<<"$wire_table";  printf '  primary-key SELECT, wire       %12s %12s\n' "$a" "$b"
