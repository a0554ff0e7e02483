#!/usr/bin/env bash
# Kafka sources (issue 23), on one `tastedb serve` (release build):
#  (a) ingest: rows/s from a topic of EVENTS (1,000,000) JSON events into a table through
#      CREATE SOURCE, until all are in, next to COPY … FROM STDIN (CSV) of the same rows and
#      to a plain librdkafka consumer reading the topic and doing nothing with it (the
#      broker's ceiling);
#  (b) lag under load: a source consuming RATE (2,000) events a second while 16 pgbench
#      clients run the soak's serving mix (recommend ×4 : INSERT ×1, prepared) for
#      SOAK_SECONDS (60), into the table the model reads: the source's lag sampled every
#      second (median, p95, max), the rows it consumed against those produced, and the
#      clients' tps next to the same mix without a source.
# The topics live in librdkafka's mock cluster (examples/kafka_mock.rs, in processes of their
# own on loopback), so the figures are TasteDB's consumer and commit path, not a real
# broker's disks.
#
#   bash benches/sources.sh          # TASTEDB_BIN=path skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1000000}
# librdkafka's mock keeps at most 100,000 messages or 5 MB per partition (older ones are
# deleted, as by retention), so 1M events of about 85 bytes need 24 partitions to stay whole
PARTITIONS=${PARTITIONS:-24}
RATE=${RATE:-2000}
SOAK_SECONDS=${SOAK_SECONDS:-60}
TASTE_PORT=${TASTE_PORT:-55473}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tastedb-target}"
command -v pgbench >/dev/null || { echo "pgbench is needed (postgresql-contrib / postgresql-15)" >&2; exit 1; }

work=$(mktemp -d /tmp/tastedb-sources-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  exec 3>&- 4>&- 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

source benches/common/binary.sh
echo "== building the mock cluster (examples/kafka_mock.rs, release)"
cargo build --release --quiet --example kafka_mock
taste_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$TASTE_PORT" -U tastedb -d tastedb "$@"; }
value() { taste_psql -t -A -c "$1"; }
now() { date +%s.%N; }

mock() { # $1 name, $2 topic, $3 partitions, $4 events produced first, $5 rate after ("": none),
  # $6 fd to hold its standard input open with; sets mock_brokers
  mkfifo "$work/$1.in"
  "$CARGO_TARGET_DIR/release/examples/kafka_mock" "$2" "$3" "$4" ${5:+"$5"} \
    < "$work/$1.in" > "$work/$1.brokers" 2> "$work/$1.log" &
  pids+=($!)
  eval "exec $6> \"$work/$1.in\""   # the mock serves while this stays open
  for _ in $(seq 1200); do [ -s "$work/$1.brokers" ] && break; sleep 0.5; done
  [ -s "$work/$1.brokers" ] || { echo "the mock cluster did not start" >&2; cat "$work/$1.log" >&2; exit 1; }
  for _ in $(seq 1200); do [ "$(wc -l < "$work/$1.brokers")" -ge 2 ] && break; sleep 0.5; done
  mock_brokers=$(head -1 "$work/$1.brokers")
  mock_read_s=$(sed -n 2p "$work/$1.brokers")
}

echo "== (a) producing $EVENTS events to a mock cluster ($PARTITIONS partitions)"
mock bulk clicks "$PARTITIONS" "$EVENTS" "" 3
brokers=$mock_brokers
read_s=$mock_read_s
"$tastedb" --data "$work/taste" serve --auth trust --listen "127.0.0.1:$TASTE_PORT" >"$work/taste.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  taste_psql -c "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.2
done
taste_psql -c "CREATE USER tastedb SUPERUSER" >/dev/null
python3 - "$EVENTS" > "$work/events.csv" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"{i % 10000},i{i % 5000},view,1.0")
PY
taste_psql -c "CREATE TABLE copied (user_id TEXT, item_id TEXT, event_type TEXT, weight DOUBLE PRECISION)" \
  -c "CREATE TABLE consumed (user_id TEXT, item_id TEXT, event_type TEXT, weight DOUBLE PRECISION)"
start=$(now)
taste_psql -c "\\copy copied FROM '$work/events.csv' CSV"
copy_s=$(echo "$(now) - $start" | bc -l)
start=$(now)
taste_psql -c "CREATE SOURCE clicks FROM KAFKA (brokers = '$brokers', topic = 'clicks') INTO consumed"
# the stored offsets (cheap to read, noted as each batch commits), not a count of the table
while [ "$(value "SELECT coalesce(sum(committed_offset), 0) FROM tastedb_sources")" -lt "$EVENTS" ]; do
  sleep 0.1
done
source_s=$(echo "$(now) - $start" | bc -l)
same=$(value "SELECT (SELECT count(*) FROM consumed) = (SELECT count(*) FROM copied)
  AND (SELECT count(DISTINCT user_id || ' ' || item_id) FROM consumed)
    = (SELECT count(DISTINCT user_id || ' ' || item_id) FROM copied)")
taste_psql -c "DROP SOURCE clicks" -c "DROP TABLE consumed"

echo "== (b) lag while 16 clients serve and insert, $SOAK_SECONDS s each"
taste_psql -c "TRAIN MODEL m USING als FROM copied WITH (factors = 32, iterations = 5, holdout = 0)" >/dev/null 2>&1
cat > "$work/recommend.sql" <<'SQL'
\set uid random(0, 9999)
SELECT item_id FROM recommend('m', CAST(:uid AS TEXT), 10);
SQL
cat > "$work/insert.sql" <<'SQL'
\set u random(0, 9999)
\set i random(0, 4999)
INSERT INTO copied VALUES (CAST(:u AS TEXT), 'i' || CAST(:i AS TEXT), 'view', 1.0);
SQL
soak() { # $1 output name: tps of the serving mix
  (cd "$work" && pgbench -n -M prepared -c 16 -j 2 -T "$SOAK_SECONDS" -f recommend.sql@4 -f insert.sql@1 \
    -h 127.0.0.1 -p "$TASTE_PORT" -U tastedb tastedb > "$1.out" 2>&1) || true
  awk '/^tps/ { print $3 }' "$work/$1.out"
}
plain_tps=$(soak plain)
mock live live 3 0 "$RATE" 4
live=$mock_brokers
taste_psql -c "CREATE SOURCE live FROM KAFKA (brokers = '$live', topic = 'live', start = 'latest') INTO copied"
before=$(value "SELECT count(*) FROM copied")
( while :; do value "SELECT coalesce(sum(lag), 0) FROM tastedb_sources" >> "$work/lag" 2>/dev/null || true; sleep 1; done ) &
sampler=$!
pids+=($sampler)
source_tps=$(soak with-source)
kill "$sampler" 2>/dev/null || true
consumed=$(value "SELECT max(rows) FROM tastedb_sources")
exec 4>&-   # the producer stops
sleep 2
produced=$(awk -v r="$RATE" -v s="$SOAK_SECONDS" 'BEGIN { printf "%d", r * s }')
read -r lag_p50 lag_p95 lag_max < <(sort -n "$work/lag" | awk '{ v[NR] = $1 } END {
  printf "%d %d %d\n", v[int((NR + 1) * 0.5)], v[int((NR + 1) * 0.95)], v[NR] }')
taste_psql -c "DROP SOURCE live"

printf '\n%-44s %10s %12s\n' "(a) 1M events" "seconds" "rows/s"
printf '%-44s %10.2f %12.0f\n' "COPY … FROM STDIN (CSV)" "$copy_s" "$(echo "$EVENTS / $copy_s" | bc -l)"
printf '%-44s %10.2f %12.0f\n' "CREATE SOURCE (JSON), until all are in" "$source_s" "$(echo "$EVENTS / $source_s" | bc -l)"
printf '%-44s %10.2f %12.0f\n' "librdkafka consumer alone (reads, no writes)" "$read_s" "$(echo "$EVENTS / $read_s" | bc -l)"
printf 'source / COPY rows/s: %.2fx; source / consumer alone: %.2fx; same rows as COPY: %s\n' \
  "$(echo "$copy_s / $source_s" | bc -l)" "$(echo "$read_s / $source_s" | bc -l)" "$same"
printf '\n(b) %s events/s produced for %s s while 16 clients serve (recommend 4 : INSERT 1)\n' "$RATE" "$SOAK_SECONDS"
printf 'lag in messages, sampled each second: median %s, p95 %s, max %s (%.2f s of production at the p95)\n' \
  "$lag_p50" "$lag_p95" "$lag_max" "$(echo "$lag_p95 / $RATE" | bc -l)"
printf 'consumed during the run: %s of about %s produced\n' "$consumed" "$produced"
printf 'clients tps: %.0f without a source, %.0f with it (%.2fx)\n' "$plain_tps" "$source_tps" "$(echo "$source_tps / $plain_tps" | bc -l)"
