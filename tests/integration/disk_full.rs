//! A full disk: on a small tmpfs, inserts go on until one fails with `53100 disk_full`;
//! reads go on; once space is freed, writes work again; after a restart every acknowledged
//! row is there and nothing of the failed writes.
//!
//! Mounting a tmpfs needs root; on a machine that does not allow it the test says so and
//! checks nothing (CI machines allow it).

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tastedb::Engine;

/// A tmpfs mounted at a temporary directory, unmounted when dropped.
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(megabytes: u32) -> Option<SmallFilesystem> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        mounted.status.success().then_some(SmallFilesystem { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn count(engine: &Engine) -> tastedb::Result<i64> {
    let batches = engine.sql("SELECT count(*) FROM t").await?;
    Ok(batches[0].column(0).as_primitive::<Int64Type>().value(0))
}

async fn insert(engine: &Engine, first: i64, rows: i64) -> tastedb::Result<()> {
    let pad = "x".repeat(400);
    let values: Vec<String> = (first..first + rows)
        .map(|id| format!("({id}, '{pad}{id}')"))
        .collect();
    engine
        .sql(&format!("INSERT INTO t VALUES {}", values.join(", ")))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_with_53100_and_they_work_again_once_space_is_freed() {
    let Some(filesystem) = SmallFilesystem::mount(40) else {
        eprintln!("skipped: this machine does not allow mounting a tmpfs (needs root)");
        return;
    };
    let ballast: PathBuf = filesystem.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 12 << 20]).unwrap();
    let data = filesystem.path().join("data");
    let engine = Engine::open(&data).unwrap();
    engine
        .sql("CREATE TABLE t (id BIGINT PRIMARY KEY, pad TEXT)")
        .await
        .unwrap();
    const ROWS: i64 = 500;
    let mut acknowledged = 0;
    let error = loop {
        match insert(&engine, acknowledged, ROWS).await {
            Ok(()) => acknowledged += ROWS,
            Err(error) => break error,
        }
        assert!(acknowledged < 1_000_000, "the disk never filled up");
    };
    assert_eq!(error.sqlstate(), "53100", "{error}");
    // reads go on
    assert_eq!(count(&engine).await.unwrap(), acknowledged);
    // free space: writes work again (RocksDB recovers from its background error)
    std::fs::remove_file(&ballast).unwrap();
    let started = Instant::now();
    loop {
        match insert(&engine, acknowledged, 10).await {
            Ok(()) => {
                acknowledged += 10;
                break;
            }
            Err(error) => {
                assert_eq!(error.sqlstate(), "53100", "{error}");
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "writes did not work again after space was freed: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    drop(engine);
    let engine = Engine::open(&data).unwrap();
    assert_eq!(count(&engine).await.unwrap(), acknowledged);
}
