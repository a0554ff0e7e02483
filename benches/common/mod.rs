//! Helpers shared by the benchmarks: MovieLens 100K, fetched from PyPI on first use.
#![allow(dead_code)] // each bench uses its own part

use std::path::PathBuf;
use std::process::Command;

/// (user, item, timestamp) rows of ml-100k.inter.
pub fn ratings() -> Vec<(i64, i64, i64)> {
    let path = data_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let user = fields.next()?.parse().ok()?;
            let item = fields.next()?.parse().ok()?;
            let _rating = fields.next()?;
            let ts = fields.next()?.parse::<f64>().ok()? as i64;
            Some((user, item, ts))
        })
        .collect()
}

/// The MovieLens 100K interactions file: `TASTEDB_ML100K`, or fetched from PyPI (the
/// recbole 1.2.1 wheel carries it) into the cargo target directory.
pub fn data_file() -> PathBuf {
    if let Ok(path) = std::env::var("TASTEDB_ML100K") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = PathBuf::from(target).join("movielens");
    let file = dir.join("ml-100k.inter");
    if file.exists() {
        return file;
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"])
        .arg(&dir)
        .arg("recbole==1.2.1")
        .status()
        .expect("python3 -m pip");
    assert!(status.success(), "pip download recbole==1.2.1 failed");
    let script = "import glob, sys, zipfile\n\
        wheel = glob.glob(sys.argv[1] + '/recbole-1.2.1-*.whl')[0]\n\
        data = zipfile.ZipFile(wheel).read('recbole/dataset_example/ml-100k/ml-100k.inter')\n\
        open(sys.argv[2], 'wb').write(data)\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&dir)
        .arg(&file)
        .status()
        .expect("python3");
    assert!(status.success(), "extracting ml-100k.inter failed");
    file
}
