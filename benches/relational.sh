#!/usr/bin/env bash
# Relational basics: TasteDB's wire server next to a throwaway PostgreSQL 15 on loopback, in
# one run, both with their defaults (fsync on):
#  (a) pgbench's own TPC-B-like workload, unmodified: `pgbench -i -s $SCALE`, then
#      `pgbench -c 8 -j 2 -T $BENCH_SECONDS` (BEGIN; UPDATE accounts; SELECT; UPDATE tellers;
#      UPDATE branches; INSERT history; END), each server at each isolation level: its default
#      (PostgreSQL READ COMMITTED, TasteDB REPEATABLE READ), then both at READ COMMITTED (row
#      locks, no retries) and both at REPEATABLE READ (snapshot isolation: 40001 on a
#      write-write conflict, which pgbench retries with --max-tries; failed and retried counts
#      are printed). The level is set by PGOPTIONS, pgbench's script is the same;
#  (b) the same with -M prepared and a point UPDATE by key only (pgbench_accounts);
#  (c) a secondary index: `SELECT count(*) FROM events WHERE user_id = $1` on an $EVENTS-row
#      events table, latency with the index and (index dropped) with a scan.
# Prints transactions/s, latencies and the ratios TasteDB / PostgreSQL.
#
#   bash benches/relational.sh   # SCALE=10 BENCH_SECONDS=30 EVENTS=10000000 by default;
#                                # TASTEDB_BIN=path skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-10}
SECONDS_PER_RUN=${BENCH_SECONDS:-30}
EVENTS=${EVENTS:-10000000}
USERS=${USERS:-100000}
PG_PORT=${PG_PORT:-55442}
TASTE_PORT=${TASTE_PORT:-55443}
source benches/common/side_by_side.sh

start_servers
pg_bench() { pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@" postgres; }
taste_bench() { pgbench -h 127.0.0.1 -p "$TASTE_PORT" -U tastedb "$@" tastedb; }

# A field of pgbench's report: tps, failed, retried, latency (ms).
field() {
  case "$2" in
    tps) awk '/^tps/ { print $3 }' "$1" ;;
    failed) awk '/^number of failed transactions/ { print $5 }' "$1" ;;
    retried) awk '/^number of transactions retried/ { print $5 }' "$1" ;;
    latency) awk '/^latency average/ { print $4 }' "$1" ;;
  esac
}
rate() { echo "$1 / $2" | bc -l; }

echo "== (a) pgbench -i -s $SCALE, then -c 8 -j 2 -T $SECONDS_PER_RUN (TPC-B-like)"
pg_init=$(timed pg_bench -i -s "$SCALE")
taste_init=$(timed taste_bench -i -s "$SCALE")
tpcb() { "$@" -n -c 8 -j 2 -T "$SECONDS_PER_RUN" --max-tries 100 --failures-detailed; }
rc='-c default_transaction_isolation=read\ committed'
rr='-c default_transaction_isolation=repeatable\ read'
tpcb pg_bench > "$work/pg_tpcb.txt" 2>&1 || true
tpcb taste_bench > "$work/taste_tpcb.txt" 2>&1 || true
PGOPTIONS="$rc" tpcb pg_bench > "$work/pg_tpcb_rc.txt" 2>&1 || true
PGOPTIONS="$rc" tpcb taste_bench > "$work/taste_tpcb_rc.txt" 2>&1 || true
PGOPTIONS="$rr" tpcb pg_bench > "$work/pg_tpcb_rr.txt" 2>&1 || true
PGOPTIONS="$rr" tpcb taste_bench > "$work/taste_tpcb_rr.txt" 2>&1 || true
for f in "$work"/pg_tpcb*.txt "$work"/taste_tpcb*.txt; do
  [ -n "$(field "$f" tps)" ] || { echo "pgbench failed:" >&2; cat "$f" >&2; exit 1; }
done

echo "== (b) pgbench -M prepared -c 8 -j 2 -T $SECONDS_PER_RUN, point UPDATE by key"
cat > "$work/point_update.sql" <<SQL
\set aid random(1, 100000 * $SCALE)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SQL
chmod 644 "$work/point_update.sql"
update() { "$@" -n -M prepared -c 8 -j 2 -T "$SECONDS_PER_RUN" --max-tries 100 -f "$work/point_update.sql"; }
update pg_bench > "$work/pg_update.txt" 2>&1 || true
update taste_bench > "$work/taste_update.txt" 2>&1 || true

echo "== (c) $EVENTS events, SELECT … WHERE user_id = \$1: index and scan"
# Deterministic events: user ids skewed by squaring a uniform draw.
awk -v n="$EVENTS" -v users="$USERS" 'BEGIN {
  srand(42);
  for (i = 0; i < n; i++) {
    printf "u%d,i%d,%.2f,2024-01-%02d 10:00:00\n", int(users * rand() ^ 2), int(20000 * rand() ^ 2),
      1 + 4 * rand(), 1 + int(28 * rand());
  }
}' > "$work/events.csv"
chmod 644 "$work/events.csv"
schema="CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE PRECISION, ts TIMESTAMP)"
pg_psql -c "$schema" >/dev/null
taste_psql -c "$schema" >/dev/null
pg_psql -c "\\copy events FROM '$work/events.csv' CSV" >/dev/null
taste_psql -c "\\copy events FROM '$work/events.csv' CSV" >/dev/null
rm "$work/events.csv"
pg_index=$(timed pg_psql -c "CREATE INDEX events_user ON events (user_id)")
taste_index=$(timed taste_psql -c "CREATE INDEX events_user ON events (user_id)")
pg_psql -c "VACUUM ANALYZE events" >/dev/null
cat > "$work/by_user.sql" <<SQL
\set u random(0, $USERS - 1)
SELECT count(*) FROM events WHERE user_id = 'u' || :u;
SQL
chmod 644 "$work/by_user.sql"
lookup() { "$@" -n -M prepared -c 1 -f "$work/by_user.sql"; }
lookup pg_bench -T 10 > "$work/pg_indexed.txt" 2>&1
lookup taste_bench -T 10 > "$work/taste_indexed.txt" 2>&1
pg_psql -c "DROP INDEX events_user" >/dev/null
taste_psql -c "DROP INDEX events_user" >/dev/null
lookup pg_bench -t 5 > "$work/pg_scan.txt" 2>&1
lookup taste_bench -t 5 > "$work/taste_scan.txt" 2>&1

row() {
  printf '%-46s %14s %14s %8s\n' "$1" "$2" "$3" "$4"
}
ratio() { printf '%.2fx' "$(rate "$1" "$2")"; }
echo
row "" "PostgreSQL 15" "TasteDB" "ratio"
row "pgbench -i -s $SCALE, seconds" "$(printf '%.1f' "$pg_init")" "$(printf '%.1f' "$taste_init")" \
  "$(ratio "$pg_init" "$taste_init")"
for run in tpcb tpcb_rc tpcb_rr update; do
  pg="$work/pg_$run.txt" taste="$work/taste_$run.txt"
  label="TPC-B-like -c 8, tps, each at its default"
  [ "$run" = tpcb_rc ] && label="  the same, both at READ COMMITTED"
  [ "$run" = tpcb_rr ] && label="  the same, both at REPEATABLE READ"
  [ "$run" = update ] && label="prepared point UPDATE -c 8, tps"
  row "$label" "$(printf '%.0f' "$(field "$pg" tps)")" "$(printf '%.0f' "$(field "$taste" tps)")" \
    "$(ratio "$(field "$taste" tps)" "$(field "$pg" tps)")"
  row "  transactions failed / retried (40001)" \
    "$(field "$pg" failed)/$(field "$pg" retried)" "$(field "$taste" failed)/$(field "$taste" retried)" ""
done
row "CREATE INDEX on $EVENTS rows, seconds" "$(printf '%.1f' "$pg_index")" \
  "$(printf '%.1f' "$taste_index")" "$(ratio "$pg_index" "$taste_index")"
row "user_id = \$1 with the index, ms" "$(field "$work/pg_indexed.txt" latency)" \
  "$(field "$work/taste_indexed.txt" latency)" \
  "$(ratio "$(field "$work/taste_indexed.txt" latency)" "$(field "$work/pg_indexed.txt" latency)")"
row "user_id = \$1 by a scan, ms" "$(field "$work/pg_scan.txt" latency)" \
  "$(field "$work/taste_scan.txt" latency)" \
  "$(ratio "$(field "$work/taste_scan.txt" latency)" "$(field "$work/pg_scan.txt" latency)")"
echo "(goals: TPC-B-like tps >= 0.5x PostgreSQL, no failed transactions; latency ratios are TasteDB / PostgreSQL)"
