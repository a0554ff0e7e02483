# Shared by the benchmarks that run TasteDB's wire server next to a throwaway PostgreSQL 15 on
# loopback (sourced, not run). Before sourcing, set PG_PORT and TASTE_PORT. It makes `$work`
# (removed at exit with both servers), picks the TasteDB binary (TASTEDB_BIN, or a release
# build), and gives `start_servers`, `pg_psql`, `taste_psql` and `timed`.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tastedb-target}"

work=$(mktemp -d /tmp/tastedb-bench.XXXXXX)
chmod 755 "$work"
pg_pid="" taste_pid=""
cleanup() {
  [ -n "$taste_pid" ] && kill "$taste_pid" 2>/dev/null || true
  [ -n "$pg_pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# initdb refuses to run as root: PostgreSQL runs as the `postgres` user then.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

source benches/common/binary.sh

# Starts PostgreSQL 15 (initdb defaults, fsync on) and `tastedb serve` (trust auth).
start_servers() {
  echo "== starting PostgreSQL 15 on port $PG_PORT and TasteDB on port $TASTE_PORT"
  mkdir "$work/pg" && chown postgres "$work/pg" 2>/dev/null || true
  as_postgres "$PG_BIN/initdb" -D "$work/pg" -U postgres --auth=trust >/dev/null
  as_postgres "$PG_BIN/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
    -o "-p $PG_PORT -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
  pg_pid=started
  "$tastedb" --data "$work/taste" serve --auth trust --listen "127.0.0.1:$TASTE_PORT" \
    >"$work/taste.log" 2>&1 &
  taste_pid=$!
  for _ in $(seq 50); do
    psql -X -q -h 127.0.0.1 -p "$TASTE_PORT" -U tastedb -d tastedb -c "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.2
  done
}

pg_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }
taste_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$TASTE_PORT" -U tastedb -d tastedb "$@"; }

# Seconds that `$@` takes, to the millisecond.
timed() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
