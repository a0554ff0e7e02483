//! Crash consistency: a child process inserts numbered batches and prints the number of each
//! batch once its INSERT has returned; the parent kills it with SIGKILL at a random moment and
//! checks the reopened directory. Every acknowledged batch must be there exactly once and
//! complete; the one batch in flight at the kill may be there (complete) or absent; nothing
//! else may be.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tastedb::Engine;

const ROWS_PER_BATCH: i64 = 50;
const RUNS: u64 = 10;
const CHILD_DIR: &str = "TASTEDB_CRASH_CHILD_DIR";

/// The child: runs only when the parent starts this test binary with `CHILD_DIR` set.
#[tokio::test]
#[ignore = "helper process of crash_keeps_every_acknowledged_batch"]
async fn crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("started by the crash test");
    let engine = Engine::open(&dir).expect("open");
    engine
        .sql("CREATE TABLE IF NOT EXISTS acks (batch BIGINT NOT NULL, seq BIGINT NOT NULL, pad TEXT)")
        .await
        .expect("create");
    for batch in 0.. {
        let values: Vec<String> = (0..ROWS_PER_BATCH)
            .map(|seq| format!("({batch}, {seq}, '{}')", "x".repeat(64)))
            .collect();
        engine
            .sql(&format!("INSERT INTO acks VALUES {}", values.join(", ")))
            .await
            .expect("insert");
        println!("ack {batch}");
    }
}

/// xorshift64*: a seeded generator, so that each run's kill moment can be replayed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_keeps_every_acknowledged_batch() {
    for run in 0..RUNS {
        let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (run + 1);
        let dir = tempfile::tempdir().unwrap();
        let wait_for_acks = 1 + next_random(&mut seed) % 25;
        let extra_delay = Duration::from_micros(next_random(&mut seed) % 20_000);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest writes "test crash_child ... " before the first line of the child
                if let Some((_, n)) = line.split_once("ack ") {
                    let _ = ack_tx.send(n.trim().parse::<i64>().unwrap());
                }
            }
        });
        // wait for some acknowledgements, then kill at a random moment
        let mut acked = Vec::new();
        while (acked.len() as u64) < wait_for_acks {
            let ack = ack_rx.recv_timeout(Duration::from_secs(120));
            acked
                .push(ack.unwrap_or_else(|_| panic!("run {run}: the child stopped acknowledging")));
        }
        std::thread::sleep(extra_delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(ack_rx.try_iter());

        let engine = Engine::open(dir.path()).unwrap();
        let found = engine
            .sql("SELECT batch, count(*), count(DISTINCT seq) FROM acks GROUP BY batch")
            .await
            .unwrap();
        let mut stored = BTreeMap::new();
        for batch in &found {
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let rows = batch.column(1).as_primitive::<Int64Type>();
            let distinct = batch.column(2).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                assert_eq!(
                    rows.value(i),
                    ROWS_PER_BATCH,
                    "run {run}: batch {} partial",
                    ids.value(i)
                );
                assert_eq!(
                    distinct.value(i),
                    ROWS_PER_BATCH,
                    "run {run}: duplicate rows"
                );
                stored.insert(ids.value(i), rows.value(i));
            }
        }
        for id in &acked {
            assert!(
                stored.contains_key(id),
                "run {run}: acknowledged batch {id} lost"
            );
        }
        let in_flight = acked.len() as i64;
        for id in stored.keys() {
            assert!(*id <= in_flight, "run {run}: batch {id} was never sent");
        }
        assert_eq!(
            acked,
            (0..in_flight).collect::<Vec<_>>(),
            "run {run}: acks out of order"
        );
    }
}
