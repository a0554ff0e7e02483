# Sourced by benchmark scripts: `timed_events N FILE` writes N synthetic events as CSV
# (user int(1e6·r²), item int(1e5·r³), weight 1 + int(5·r), a time in November 2026; awk's
# srand(1), so every run writes the same rows): the generator of scale.sh's `big`, with times.
timed_events() {
  awk -v n="$1" 'BEGIN { srand(1);
    for (i = 0; i < n; i++) {
      u = int(1e6 * rand() ^ 2); it = int(1e5 * rand() ^ 3); w = 1 + int(5 * rand());
      printf "%d,%d,%d,2026-11-%02d %02d:%02d:%02d\n", u, it, w,
        1 + int(30 * rand()), int(24 * rand()), int(60 * rand()), int(60 * rand());
    } }' > "$2"
}
