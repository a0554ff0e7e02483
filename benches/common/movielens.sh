# Sourced by the benchmark scripts: `movielens OUT.csv` writes MovieLens 100K as `user,item,1`
# lines (the recbole 1.2.1 wheel on PyPI carries the file; it is kept under CARGO_TARGET_DIR).
movielens() {
  local dir="$CARGO_TARGET_DIR/movielens"
  if [ ! -f "$dir/ml-100k.inter" ]; then
    mkdir -p "$dir"
    python3 -m pip download --quiet --no-deps -d "$dir" recbole==1.2.1
    python3 -c "import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + '/recbole-1.2.1-*.whl')[0]
open(sys.argv[2], 'wb').write(zipfile.ZipFile(wheel).read('recbole/dataset_example/ml-100k/ml-100k.inter'))" \
      "$dir" "$dir/ml-100k.inter"
  fi
  tail -n +2 "$dir/ml-100k.inter" | awk -F'\t' '{ printf "%s,%s,1\n", $1, $2 }' > "$1"
  chmod 644 "$1"
}

# `movielens_genres OUT.csv` writes each MovieLens 100K item with its first genre, `item,genre`.
movielens_genres() {
  local dir="$CARGO_TARGET_DIR/movielens"
  movielens "$dir/ratings.csv"
  if [ ! -f "$dir/ml-100k.item" ]; then
    python3 -c "import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + '/recbole-1.2.1-*.whl')[0]
open(sys.argv[2], 'wb').write(zipfile.ZipFile(wheel).read('recbole/dataset_example/ml-100k/ml-100k.item'))" \
      "$dir" "$dir/ml-100k.item"
  fi
  tail -n +2 "$dir/ml-100k.item" | awk -F'\t' '{ split($4, g, " "); printf "%s,%s\n", $1, (g[1] == "" ? "unknown" : g[1]) }' > "$1"
  chmod 644 "$1"
}
