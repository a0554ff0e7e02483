#!/usr/bin/env bash
# Cluster execution on Ballista (issue 19), all on this machine (release build): the 10M
# synthetic events of benches/archive.sh archived by day, then one aggregation over the archive,
#   SELECT user_id, count(*), sum(weight), max(ts) FROM archive('events') GROUP BY user_id
# (every group sent back, to /dev/null with COPY … TO STDOUT), run
#   - here (TasteDB's own DataFusion, both cores): the anchor;
#   - on a `tastedb scheduler` with one `tastedb executor` of one core;
#   - on the same scheduler with two executors of one core each;
# best of RUNS runs each, as a ratio to the anchor. A scaling simulation: two executors on two
# cores can show whether the work splits, not what more machines would bring.
#
#   bash benches/cluster.sh          # TASTEDB_BIN=path skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-10000000}
RUNS=${RUNS:-3}
TASTE_PORT=${TASTE_PORT:-55484}
SCHEDULER_PORT=${SCHEDULER_PORT:-55485}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tastedb-target}"

work=$(mktemp -d /tmp/tastedb-cluster-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
source benches/common/binary.sh
source benches/common/timed_events.sh
now() { date +%s.%N; }

echo "== $EVENTS synthetic events, archived by day"
serve_with_events "$EVENTS"
pids+=("$taste_pid")
taste_psql -c "ALTER TABLE events SET (archive = 'file://$work/archive/events', \
  archive_every = '1 second', partition_by = 'day(ts)')"
while [ "$(taste_psql -A -t -c "SELECT rows FROM tastedb_archives")" != "$EVENTS" ]; do sleep 0.2; done

query="SELECT user_id, count(*), sum(weight), max(ts) FROM archive('events') GROUP BY user_id"
# best of RUNS, in seconds, of the query under the cluster setting $1 ('' for here)
best() {
  local best_s=""
  for _ in $(seq "$RUNS"); do
    local start end s
    start=$(now)
    taste_psql -c "SET tastedb.cluster = '$1'" -c "COPY ($query) TO STDOUT" > /dev/null
    end=$(now)
    s=$(echo "$end - $start" | bc -l)
    if [ -z "$best_s" ] || (( $(echo "$s < $best_s" | bc -l) )); then best_s=$s; fi
  done
  echo "$best_s"
}
groups=$(taste_psql -A -t -c "SELECT count(DISTINCT user_id) FROM events")

echo "== here"
here_s=$(best '')

echo "== a scheduler and one executor (one core)"
"$tastedb" scheduler --listen "127.0.0.1:$SCHEDULER_PORT" >"$work/scheduler.log" 2>&1 &
pids+=($!)
cluster="df://127.0.0.1:$SCHEDULER_PORT"
executor() {
  "$tastedb" executor --scheduler "$cluster" --listen "127.0.0.1:$1" --cores 1 \
    >"$work/executor-$1.log" 2>&1 &
  pids+=($!)
}
executor $((SCHEDULER_PORT + 1))
sleep 2
one_s=$(best "$cluster")

echo "== two executors (one core each)"
executor $((SCHEDULER_PORT + 3))
sleep 2
two_s=$(best "$cluster")
taste_psql -c "SET tastedb.cluster = '$cluster'" -c "EXPLAIN $query" | grep -E "runs|Distributed" | head -3

printf '\n%-58s %10s %10s\n' "GROUP BY user_id over archive('events'): $EVENTS rows, $groups groups" "seconds" "× here"
printf '%-58s %10.2f %10.2f\n' "here (TasteDB's DataFusion, 2 cores): anchor" "$here_s" 1
printf '%-58s %10.2f %10.2f\n' "Ballista, 1 executor × 1 core" "$one_s" "$(echo "$here_s / $one_s" | bc -l)"
printf '%-58s %10.2f %10.2f\n' "Ballista, 2 executors × 1 core" "$two_s" "$(echo "$here_s / $two_s" | bc -l)"
printf 'two executors / one: %.2f× the speed\n' "$(echo "$one_s / $two_s" | bc -l)"
