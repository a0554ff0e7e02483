# Sourced by the benchmark scripts (from the repository's root): sets `tastedb` to
# TASTEDB_BIN, or to a release build of the binary made now.
tastedb=${TASTEDB_BIN:-}
if [ -z "$tastedb" ]; then
  echo "== building tastedb (release)"
  cargo build --release --quiet --bin tastedb
  tastedb="$CARGO_TARGET_DIR/release/tastedb"
fi
