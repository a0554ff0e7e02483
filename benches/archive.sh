#!/usr/bin/env bash
# Parquet archives (issue 19), on one `tastedb serve` (release build):
#   EVENTS (10,000,000) synthetic events (user int(1e6·r²), item int(1e5·r³), weight 1 + int(5·r),
#   a time in November 2026; awk's srand(1)) copied into a table without key, then archived by
#   `ALTER TABLE events SET (archive = 'file://…', partition_by = 'day(ts)')` until
#   tastedb_archives counts every row: rows/s, files and bytes. The anchor, in the same run: the
#   same rows written by DataFusion's Parquet writer in one statement, `COPY (SELECT …, day) TO
#   'dir' (FORMAT parquet, PARTITION BY (day))`, from the same table on the same server.
#   Both read the table and write zstd Parquet under the same 30 day directories.
#
#   bash benches/archive.sh          # TASTEDB_BIN=path skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-10000000}
TASTE_PORT=${TASTE_PORT:-55483}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tastedb-target}"

work=$(mktemp -d /tmp/tastedb-archive-bench.XXXXXX)
taste_pid=""
cleanup() {
  [ -n "$taste_pid" ] && kill "$taste_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
source benches/common/binary.sh
source benches/common/timed_events.sh
now() { date +%s.%N; }

echo "== $EVENTS synthetic events"
serve_with_events "$EVENTS"

echo "== anchor: COPY … TO (FORMAT parquet, PARTITION BY (day))"
start=$(now)
taste_psql -c "COPY (SELECT user_id, item_id, weight, ts, CAST(CAST(ts AS DATE) AS TEXT) AS day \
  FROM events) TO '$work/export/' (FORMAT parquet, PARTITION BY (day))" >/dev/null
copy_s=$(echo "$(now) - $start" | bc -l)
copy_files=$(find "$work/export" -name '*.parquet' | wc -l)
copy_bytes=$(du -sb "$work/export" | cut -f1)

echo "== archive: ALTER TABLE … SET (archive = …, partition_by = 'day(ts)')"
start=$(now)
taste_psql -c "ALTER TABLE events SET (archive = 'file://$work/archive/events', \
  archive_every = '1 second', partition_by = 'day(ts)')"
while :; do
  archived=$(taste_psql -A -t -c "SELECT rows FROM tastedb_archives")
  [ "$archived" = "$EVENTS" ] && break
  error=$(taste_psql -A -t -c "SELECT coalesce(last_error, '') FROM tastedb_archives")
  [ -z "$error" ] || { echo "archive failed: $error" >&2; exit 1; }
  sleep 0.1
done
archive_s=$(echo "$(now) - $start" | bc -l)
read -r batches files bytes < <(taste_psql -A -t -F ' ' -c "SELECT batches, files, bytes FROM tastedb_archives")
read_back=$(taste_psql -A -t -c "SELECT count(*) FROM archive('events')")
[ "$read_back" = "$EVENTS" ] || { echo "archive('events') has $read_back rows" >&2; exit 1; }

printf '\n%-52s %10s %12s %8s %10s\n' "$EVENTS events, 30 days" "seconds" "rows/s" "files" "MB"
printf '%-52s %10.2f %12.0f %8d %10.1f\n' "archive (ALTER TABLE … SET (archive …), $batches batches)" \
  "$archive_s" "$(echo "$EVENTS / $archive_s" | bc -l)" "$files" "$(echo "$bytes / 1048576" | bc -l)"
printf '%-52s %10.2f %12.0f %8d %10.1f\n' "anchor: COPY … TO (FORMAT parquet, PARTITION BY)" \
  "$copy_s" "$(echo "$EVENTS / $copy_s" | bc -l)" "$copy_files" "$(echo "$copy_bytes / 1048576" | bc -l)"
printf 'archive / anchor: %.2f× the rows/s\n' "$(echo "$copy_s / $archive_s" | bc -l)"
