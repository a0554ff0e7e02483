#!/usr/bin/env bash
# TasteDB's wire server next to a throwaway PostgreSQL 15 on loopback, in one run:
#  (a) COPY of 1,000,000 events over the wire (psql \copy, CSV), rows/s;
#  (b) pgbench -M prepared -c 8 -j 2 -T 20: a point SELECT by user id on a 100,000-row table
#      with the same PRIMARY KEY in both, transactions/s.
# Both servers run with their defaults (fsync on; TasteDB syncs every statement). Prints both
# figures and the ratios TasteDB / PostgreSQL.
#
#   bash benches/vs_postgres.sh    # EVENTS=1000000 USERS=100000 BENCH_SECONDS=20 by default;
#                                  # TASTEDB_BIN=path skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1000000}
USERS=${USERS:-100000}
SECONDS_PER_RUN=${BENCH_SECONDS:-20}
PG_PORT=${PG_PORT:-55432}
TASTE_PORT=${TASTE_PORT:-55433}
source benches/common/side_by_side.sh

echo "== generating $EVENTS events and $USERS users"
# Deterministic power-law-ish events: user and item ids skewed by squaring a uniform draw.
awk -v n="$EVENTS" -v users="$USERS" 'BEGIN {
  srand(42); split("view,click,cart,purchase", kinds, ",");
  for (i = 0; i < n; i++) {
    u = int(users * rand() ^ 2); it = int(20000 * rand() ^ 2);
    printf "u%d,i%d,%s,%.2f,2024-01-%02d %02d:%02d:%02d\n", u, it, kinds[1 + int(4 * rand())],
      1 + 4 * rand(), 1 + int(28 * rand()), int(24 * rand()), int(60 * rand()), int(60 * rand());
  }
}' > "$work/events.csv"
awk -v n="$USERS" 'BEGIN { srand(7); for (i = 1; i <= n; i++) printf "%d,user %d,%.3f\n", i, i, 100 * rand() }' > "$work/users.csv"
cat > "$work/point_select.sql" <<SQL
\set uid random(1, $USERS)
SELECT user_id, name, score FROM users WHERE user_id = :uid;
SQL
chmod 644 "$work"/*.csv "$work/point_select.sql"

start_servers
schema="CREATE TABLE events (user_id TEXT, item_id TEXT, event_type TEXT, weight DOUBLE PRECISION, ts TIMESTAMP);
CREATE TABLE users (user_id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION)"
pg_psql -c "$schema" >/dev/null
taste_psql -c "$schema" >/dev/null

echo "== (a) COPY $EVENTS events over the wire"
pg_copy=$(timed pg_psql -c "\\copy events FROM '$work/events.csv' CSV")
taste_copy=$(timed taste_psql -c "\\copy events FROM '$work/events.csv' CSV")
pg_count=$(pg_psql -A -t -c "SELECT count(*) FROM events")
taste_count=$(taste_psql -A -t -c "SELECT count(*) FROM events")
[ "$pg_count" = "$EVENTS" ] && [ "$taste_count" = "$EVENTS" ] || {
  echo "row counts differ: postgres $pg_count, tastedb $taste_count" >&2; exit 1; }

echo "== (b) pgbench -M prepared -c 8 -j 2 -T $SECONDS_PER_RUN, point SELECT on $USERS users"
pg_psql -c "\\copy users FROM '$work/users.csv' CSV" >/dev/null
taste_psql -c "\\copy users FROM '$work/users.csv' CSV" >/dev/null
pg_psql -c "VACUUM ANALYZE users" >/dev/null
bench() {
  pgbench -n -M prepared -c 8 -j 2 -T "$SECONDS_PER_RUN" -f "$work/point_select.sql" \
    -h 127.0.0.1 "$@" 2>&1 | awk '/^tps/ { print $3 }'
}
pg_tps=$(bench -p "$PG_PORT" -U postgres postgres)
taste_tps=$(bench -p "$TASTE_PORT" -U tastedb tastedb)
[ -n "$pg_tps" ] && [ -n "$taste_tps" ] || { echo "pgbench failed" >&2; exit 1; }

rate() { echo "$1 / $2" | bc -l; }
printf '\n%-34s %14s %14s %8s\n' "" "PostgreSQL 15" "TasteDB" "ratio"
printf '%-34s %14.0f %14.0f %7.2fx\n' "COPY $EVENTS events, rows/s" \
  "$(rate "$EVENTS" "$pg_copy")" "$(rate "$EVENTS" "$taste_copy")" \
  "$(rate "$pg_copy" "$taste_copy")"
printf '%-34s %14.0f %14.0f %7.2fx\n' "point SELECT, transactions/s" \
  "$pg_tps" "$taste_tps" "$(rate "$taste_tps" "$pg_tps")"
printf '(COPY took %.2f s on PostgreSQL, %.2f s on TasteDB; goals: COPY >= 1.0x, SELECT >= 0.5x)\n' \
  "$pg_copy" "$taste_copy"
