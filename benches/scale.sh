#!/usr/bin/env bash
# Speed at scale, side by side with the anchors in one run (issue 22):
#  serving  MovieLens 100K ALS model: pgbench -M prepared -c 8 -j 2, PostgreSQL 15 answering the
#           model's precomputed top-10 lists (`SELECT item_id FROM recs WHERE user_id = $1 ORDER
#           BY rank`) next to TasteDB's `SELECT item_id FROM recommend('m', $1, 10)` with the
#           prediction cache and without it; transactions/s, ratios and p50/p99 latency.
#  train    MovieLens 100K, factors 64, 15 iterations, holdout 0: TasteDB's whole TRAIN statement
#           next to implicit's fit alone (`pip install implicit threadpoolctl`).
#  big      EVENTS synthetic events (user int(1e6·r²), item int(1e5·r³), weight 1 + int(5·r),
#           awk's srand(1)): COPY, TRAIN and serving, the peak RSS of the server in each phase,
#           the first recommend after a restart, recommend p50/p99 over the wire; implicit's fit
#           and peak RSS on the same pairs.
#  ingest   EVENTS synthetic events (the generator of `big`, with a row number as id): COPY into
#           a table without key, into a table with a PRIMARY KEY on the id, and into the keyless
#           table inside BEGIN … COMMIT; seconds and the server's peak RSS of each (TasteDB's
#           budget, tastedb.write_buffer_mb, is 64 MB), PostgreSQL 15's COPY times beside them.
#  batch    batch scoring: 1,000,000 synthetic events of 10,000 users over 20,000 items, ALS 64
#           factors; the top 10 of every user by `recommend_items` in one statement (COPY … TO a
#           file, over the wire) next to implicit's batched `recommend` of every user.
#
#   bash benches/scale.sh                    # PARTS="serving train" by default
#   PARTS=big EVENTS=10000000 bash benches/scale.sh
#   PARTS=ingest EVENTS=10000000 bash benches/scale.sh
#   TASTEDB_BIN=path skips the release build; BENCH_SECONDS (20) is each pgbench run's length.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-serving train}
EVENTS=${EVENTS:-10000000}
SECONDS_PER_RUN=${BENCH_SECONDS:-20}
PG_PORT=${PG_PORT:-55442}
TASTE_PORT=${TASTE_PORT:-55443}
source benches/common/side_by_side.sh
source benches/common/movielens.sh

has_part() { [[ " $PARTS " == *" $1 "* ]]; }
rate() { echo "$1 / $2" | bc -l; }

# Runs pgbench with one script for BENCH_SECONDS, logging every transaction; prints
# "tps p50_ms p99_ms" (latencies from the per-transaction log).
pgbench_run() {
  local name=$1 script=$2; shift 2
  local logs="$work/logs/$name"
  mkdir -p "$logs"
  pgbench -n -M prepared -c 8 -j 2 -T "$SECONDS_PER_RUN" -f "$script" \
    -l --log-prefix="$logs/tx" -h 127.0.0.1 "$@" > "$logs/out" 2>&1 || true
  local tps
  tps=$(awk '/^tps/ { print $3 }' "$logs/out")
  [ -n "$tps" ] || { echo "pgbench $name failed:" >&2; tail -5 "$logs/out" >&2; exit 1; }
  cat "$logs"/tx.* | awk '{ print $3 }' | sort -n > "$logs/latencies"
  local n p50 p99
  n=$(wc -l < "$logs/latencies")
  p50=$(sed -n "$(( (n * 50 + 99) / 100 ))p" "$logs/latencies")
  p99=$(sed -n "$(( (n * 99 + 99) / 100 ))p" "$logs/latencies")
  echo "$tps $(echo "$p50 / 1000" | bc -l) $(echo "$p99 / 1000" | bc -l)"
}

# Peak resident memory of the TasteDB server since the last `reset_peak`, in MB.
reset_peak() { echo 5 > "/proc/$taste_pid/clear_refs"; }
peak_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$taste_pid/status"; }

restart_tastedb() {
  kill "$taste_pid"
  wait "$taste_pid" 2>/dev/null || true
  "$tastedb" --data "$work/taste" serve --auth trust --listen "127.0.0.1:$TASTE_PORT" \
    >>"$work/taste.log" 2>&1 &
  taste_pid=$!
  for _ in $(seq 100); do
    taste_psql -c "SELECT 1" >/dev/null 2>&1 && return
    sleep 0.1
  done
}

# Milliseconds of one statement over the wire, by psql's \timing.
statement_ms() {
  taste_psql -c '\timing on' -c "$1" 2>/dev/null | awk '/^Time:/ { print $2 }' | tail -1
}

start_servers
movielens "$work/ml.csv"
taste_psql -c "CREATE TABLE ml (user_id TEXT, item_id TEXT, weight DOUBLE PRECISION)" >/dev/null
taste_psql -c "\\copy ml FROM '$work/ml.csv' CSV" >/dev/null
als="factors = 64, iterations = 15, regularization = 20, alpha = 1, threads = 2, holdout = 0"

if has_part train; then
  echo "== train: MovieLens 100K, TRAIN statement (3 runs) next to implicit's fit (3 runs)"
  for run in 1 2 3; do
    taste_ms=$(statement_ms "TRAIN MODEL t USING als FROM ml WITH ($als)")
    awk -F, '{ print $1 "," $2 }' "$work/ml.csv" > "$work/ml_pairs.csv"
    implicit_s=$(OPENBLAS_NUM_THREADS=1 python3 benches/implicit_als.py "$work/ml_pairs.csv" "$work/ml_pairs.csv" \
      64 15 2 20 1 | python3 -c "import json, sys; print(json.load(sys.stdin)['train_seconds'])")
    printf 'run %d: TasteDB TRAIN statement %.3f s, implicit fit %.3f s, ratio %.2fx (goal <= 1.0x)\n' \
      "$run" "$(echo "$taste_ms / 1000" | bc -l)" "$implicit_s" \
      "$(echo "$taste_ms / 1000 / $implicit_s" | bc -l)"
  done
  taste_psql -A -c "SELECT phase, round(seconds::numeric, 4) AS seconds FROM tastedb_training_phases
    WHERE model = 't' AND version = 3 ORDER BY position" || true
fi

if has_part serving; then
  echo "== serving: MovieLens 100K ALS, precomputed lists in PostgreSQL vs recommend()"
  taste_psql -c "TRAIN MODEL m USING als FROM ml WITH ($als)" >/dev/null 2>&1
  # The model's own top-10 lists, as PostgreSQL stores them in the precomputed design.
  taste_psql -c "\\copy (SELECT user_id, recommend_items('m', user_id, 10) AS items FROM (SELECT DISTINCT user_id FROM ml) u) TO '$work/lists.txt'"
  pg_psql >/dev/null <<SQL
CREATE TABLE lists (user_id TEXT, items TEXT[]);
\\copy lists FROM '$work/lists.txt'
CREATE TABLE recs (user_id TEXT, item_id TEXT, rank INT, PRIMARY KEY (user_id, rank));
INSERT INTO recs SELECT user_id, item, ord FROM lists, unnest(items) WITH ORDINALITY AS t(item, ord);
VACUUM ANALYZE recs;
SQL
  pg_rows=$(pg_psql -A -t -c "SELECT count(*) FROM recs")
  echo "PostgreSQL holds $pg_rows precomputed rows"
  cat > "$work/pg_lists.sql" <<'SQL'
\set u random(1, 943)
SELECT item_id FROM recs WHERE user_id = :u ORDER BY rank;
SQL
  cat > "$work/taste_recommend.sql" <<'SQL'
\set u random(1, 943)
SELECT item_id FROM recommend('m', :u, 10);
SQL
  chmod 644 "$work"/*.sql
  pgbench_run pg "$work/pg_lists.sql" -p "$PG_PORT" -U postgres postgres > "$work/pg.result"
  pgbench_run cached "$work/taste_recommend.sql" -p "$TASTE_PORT" -U tastedb tastedb \
    > "$work/cached.result"
  PGOPTIONS='-c tastedb.cache_ttl_seconds=0' pgbench_run uncached "$work/taste_recommend.sql" \
    -p "$TASTE_PORT" -U tastedb tastedb > "$work/uncached.result"
  read -r pg_tps pg_p50 pg_p99 < "$work/pg.result"
  read -r c_tps c_p50 c_p99 < "$work/cached.result"
  read -r u_tps u_p50 u_p99 < "$work/uncached.result"
  printf '\n%-44s %10s %8s %9s %9s\n' "" "tps" "ratio" "p50 ms" "p99 ms"
  printf '%-44s %10.0f %8s %9.3f %9.3f\n' "PostgreSQL 15, precomputed lists" "$pg_tps" "" "$pg_p50" "$pg_p99"
  printf '%-44s %10.0f %7.2fx %9.3f %9.3f\n' "TasteDB recommend(), prediction cache" \
    "$c_tps" "$(rate "$c_tps" "$pg_tps")" "$c_p50" "$c_p99"
  printf '%-44s %10.0f %7.2fx %9.3f %9.3f\n' "TasteDB recommend(), no cache" \
    "$u_tps" "$(rate "$u_tps" "$pg_tps")" "$u_p50" "$u_p99"
  echo "(goals: >= 0.7x with the cache, >= 0.4x without)"
fi

if has_part batch; then
  echo "== batch: top 10 of every user, 10,000 users x 20,000 items"
  awk 'BEGIN { srand(7); for (i = 0; i < 1000000; i++)
    printf "%d,%d\n", int(10000 * rand()), int(20000 * rand() ^ 2) }' > "$work/batch.csv"
  chmod 644 "$work/batch.csv"
  taste_psql >/dev/null <<SQL
CREATE TABLE bev (user_id BIGINT, item_id BIGINT);
\\copy bev FROM '$work/batch.csv' CSV
TRAIN MODEL bm USING als FROM bev WITH ($als);
CREATE TABLE people AS SELECT DISTINCT user_id FROM bev;
SQL
  people=$(taste_psql -A -t -c "SELECT count(*) FROM people")
  for run in 1 2 3; do
    batch_ms=$(statement_ms "COPY (SELECT user_id, unnest(recommend_items('bm', user_id, 10)) AS item
      FROM people) TO '$work/recs_$run.csv' STORED AS CSV")
    # every user once as a "test" pair, so that implicit recommends for all of them
    awk -F, '!seen[$1]++' "$work/batch.csv" > "$work/batch_users.csv"
    implicit_rate=$(OPENBLAS_NUM_THREADS=1 python3 benches/implicit_als.py "$work/batch.csv" \
      "$work/batch_users.csv" 64 15 2 20 1 | python3 -c "import json, sys; print(json.load(sys.stdin)['recs_per_second'])")
    taste_rate=$(echo "$people / ($batch_ms / 1000)" | bc -l)
    printf 'run %d: TasteDB recommend_items statement %.0f users/s (%.2f s), implicit batched recommend %.0f users/s, ratio %.2fx (goal >= 1.0x)\n' \
      "$run" "$taste_rate" "$(echo "$batch_ms / 1000" | bc -l)" "$implicit_rate" \
      "$(echo "$taste_rate / $implicit_rate" | bc -l)"
  done
fi

if has_part ingest; then
  echo "== ingest: $EVENTS synthetic events, COPY in bounded memory"
  awk -v n="$EVENTS" 'BEGIN { srand(1);
    for (i = 0; i < n; i++) {
      u = int(1e6 * rand() ^ 2); it = int(1e5 * rand() ^ 3); w = 1 + int(5 * rand());
      printf "%d,%d,%d,%d\n", i, u, it, w;
    } }' > "$work/ingest.csv"
  chmod 644 "$work/ingest.csv"
  columns="user_id BIGINT, item_id BIGINT, weight DOUBLE PRECISION"
  for side in taste pg; do
    ${side}_psql >/dev/null <<SQL
CREATE TABLE plain (id BIGINT, $columns);
CREATE TABLE keyed (id BIGINT PRIMARY KEY, $columns);
CREATE TABLE in_block (id BIGINT, $columns);
SQL
  done
  printf '\n%-44s %12s %12s %12s\n' "$EVENTS rows" "TasteDB s" "peak RSS MB" "PostgreSQL s"
  for table in plain keyed in_block; do
    script="$work/copy_$table.sql"
    case $table in
      in_block) printf 'BEGIN;\n\\copy %s FROM %s CSV\nCOMMIT;\n' "$table" "'$work/ingest.csv'" > "$script" ;;
      *) printf '\\copy %s FROM %s CSV\n' "$table" "'$work/ingest.csv'" > "$script" ;;
    esac
    restart_tastedb
    reset_peak
    taste_s=$(timed taste_psql -f "$script")
    taste_mb=$(peak_mb)
    rows=$(taste_psql -A -t -c "SELECT count(*) FROM $table")
    [ "$rows" = "$EVENTS" ] || { echo "COPY into $table kept $rows rows" >&2; exit 1; }
    pg_s=$(timed pg_psql -f "$script")
    printf '%-44s %12.1f %12s %12.1f\n' "COPY into $table" "$taste_s" "$taste_mb" "$pg_s"
  done
fi

if has_part big; then
  echo "== big: $EVENTS synthetic events"
  awk -v n="$EVENTS" 'BEGIN { srand(1);
    for (i = 0; i < n; i++) {
      u = int(1e6 * rand() ^ 2); it = int(1e5 * rand() ^ 3); w = 1 + int(5 * rand());
      printf "%d,%d,%d\n", u, it, w;
    } }' > "$work/big.csv"
  chmod 644 "$work/big.csv"
  taste_psql -c "CREATE TABLE ev (user_id BIGINT, item_id BIGINT, weight DOUBLE PRECISION)" >/dev/null
  restart_tastedb
  reset_peak
  copy_s=$(timed taste_psql -c "\\copy ev FROM '$work/big.csv' CSV")
  copy_mb=$(peak_mb)
  restart_tastedb
  reset_peak
  train_ms=$(statement_ms "TRAIN MODEL big USING als FROM ev WITH ($als)")
  train_mb=$(peak_mb)
  taste_psql -A -c "SELECT phase, round(seconds::numeric, 2) AS seconds FROM tastedb_training_phases
    WHERE model = 'big' ORDER BY position" || true
  # TRAIN returns before the HNSW graphs of its 100k items are built (about 20 s on two
  # threads); serving is measured once they are stored
  for _ in $(seq 600); do
    [ "$(taste_psql -A -t -c "SELECT graphs FROM tastedb_model_versions WHERE model = 'big'")" = ready ] && break
    sleep 1
  done
  restart_tastedb
  first_ms=$(statement_ms "SELECT item_id FROM recommend('big', 1, 10)")
  # the server loads active versions in the background as it starts
  restart_tastedb
  sleep 10
  reset_peak
  warm_ms=$(statement_ms "SELECT item_id FROM recommend('big', 1, 10)")
  cat > "$work/big_recommend.sql" <<'SQL'
\set u random(0, 999999)
SELECT item_id FROM recommend('big', :u, 10);
SQL
  chmod 644 "$work/big_recommend.sql"
  PGOPTIONS='-c tastedb.cache_ttl_seconds=0' pgbench_run big "$work/big_recommend.sql" \
    -p "$TASTE_PORT" -U tastedb tastedb > "$work/big.result"
  read -r b_tps b_p50 b_p99 < "$work/big.result"
  serve_mb=$(peak_mb)
  awk -F, '{ print $1 "," $2 }' "$work/big.csv" > "$work/big_pairs.csv"
  head -1000 "$work/big_pairs.csv" > "$work/big_test.csv"
  OPENBLAS_NUM_THREADS=1 /usr/bin/time -v -o "$work/implicit.time" python3 benches/implicit_als.py \
    "$work/big_pairs.csv" "$work/big_test.csv" 64 15 2 20 1 > "$work/implicit.json"
  implicit_s=$(python3 -c "import json; print(json.load(open('$work/implicit.json'))['train_seconds'])")
  implicit_mb=$(awk '/Maximum resident/ { printf "%.0f", $6 / 1024 }' "$work/implicit.time")
  printf '\n%-48s %12s %12s\n' "$EVENTS events" "seconds" "peak RSS MB"
  printf '%-48s %12.1f %12s\n' "COPY (psql \\copy, CSV)" "$copy_s" "$copy_mb"
  printf '%-48s %12.1f %12s\n' "TRAIN statement (ALS 64 factors, 15 iterations)" \
    "$(echo "$train_ms / 1000" | bc -l)" "$train_mb"
  printf '%-48s %12.1f %12s\n' "implicit fit (process peak includes CSV load)" "$implicit_s" "$implicit_mb"
  printf '%-48s %12.3f %12s\n' "first recommend right after a restart" "$(echo "$first_ms / 1000" | bc -l)" ""
  printf '%-48s %12.3f %12s\n' "first recommend 10 s after a restart" "$(echo "$warm_ms / 1000" | bc -l)" ""
  printf 'recommend without cache over the wire: %.0f tps, p50 %.3f ms, p99 %.3f ms; serving peak RSS %s MB\n' \
    "$b_tps" "$b_p50" "$b_p99" "$serve_mb"
  printf 'TRAIN / implicit fit: %.2fx (goal <= 0.8x); RSS goals: <= implicit, every phase <= 8192 MB\n' \
    "$(echo "$train_ms / 1000 / $implicit_s" | bc -l)"
fi
