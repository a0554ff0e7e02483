# Sourced by benchmark scripts (after common/binary.sh, with `work` and TASTE_PORT set):
#   timed_events N FILE   writes N synthetic events as CSV (user int(1e6·r²), item int(1e5·r³),
#                         weight 1 + int(5·r), a time in November 2026; awk's srand(1), so every
#                         run writes the same rows): the generator of scale.sh's `big`, with times;
#   serve_with_events N   starts `tastedb serve` (trust) on $work/taste and TASTE_PORT, its pid in
#                         `taste_pid`, with those N events in table `events` (no key).
taste_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$TASTE_PORT" -U tastedb -d tastedb "$@"; }

timed_events() {
  awk -v n="$1" 'BEGIN { srand(1);
    for (i = 0; i < n; i++) {
      u = int(1e6 * rand() ^ 2); it = int(1e5 * rand() ^ 3); w = 1 + int(5 * rand());
      printf "%d,%d,%d,2026-11-%02d %02d:%02d:%02d\n", u, it, w,
        1 + int(30 * rand()), int(24 * rand()), int(60 * rand()), int(60 * rand());
    } }' > "$2"
}

serve_with_events() {
  timed_events "$1" "$work/events.csv"
  "$tastedb" --data "$work/taste" serve --auth trust --listen "127.0.0.1:$TASTE_PORT" \
    >"$work/taste.log" 2>&1 &
  taste_pid=$!
  for _ in $(seq 50); do taste_psql -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
  taste_psql -c "CREATE TABLE events (user_id BIGINT, item_id BIGINT, weight DOUBLE PRECISION, ts TIMESTAMP)"
  taste_psql -c "\\copy events FROM '$work/events.csv' CSV"
  rm "$work/events.csv"
}
