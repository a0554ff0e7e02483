//! Crash consistency. A child process inserts numbered batches and prints the number of each
//! batch once its INSERT has returned; the parent kills it with SIGKILL at a random moment and
//! checks the reopened directory. Every acknowledged batch must be there exactly once and
//! complete; the one batch in flight at the kill may be there (complete) or absent; nothing
//! else may be. Then the same for `tastedb serve` killed under a mixed load of sixteen
//! clients, with a backup taken meanwhile; a third of the inserters write each batch as a
//! transaction block (two INSERTs and an UPDATE of their running total, then COMMIT, and
//! every third block rolled back instead), so every acknowledged COMMIT must be whole and no
//! rolled-back or unacknowledged block partly there.

use crate::common::{serve_process, trust_client};
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

/// The mixed workload of [`a_killed_server_keeps_every_acknowledged_write`].
const INSERTERS: i64 = 12;
/// Inserters from this one on write in transaction blocks.
const FIRST_IN_BLOCKS: i64 = 8;
const TRAINERS: usize = 2;
const READERS: usize = 1;
const ROWS_PER_INSERT: i64 = 10;

/// What the clients of one run were told had succeeded.
#[derive(Default)]
struct Acknowledged {
    /// Per inserter, the batches whose INSERT returned.
    inserts: Vec<Vec<i64>>,
    /// Model versions whose TRAIN returned.
    versions: Vec<i64>,
    /// Whether the backup returned.
    backup: bool,
}

/// Runs the workload on `clients` (one per role of the workload, connected before the
/// clock starts) until the server dies; what was acknowledged.
async fn workload(
    clients: Vec<tokio_postgres::Client>,
    backup_dir: std::path::PathBuf,
) -> Acknowledged {
    let mut clients = clients.into_iter();
    let mut next = || clients.next().expect("a client for every role");
    let mut tasks = Vec::new();
    for inserter in 0..INSERTERS {
        let client = next();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let rows = |batch: i64, range: std::ops::Range<i64>| {
                let values: Vec<String> = range
                    .map(|row| format!("({inserter}, {batch}, {row})"))
                    .collect();
                format!("INSERT INTO acks VALUES {}", values.join(", "))
            };
            let half = ROWS_PER_INSERT / 2;
            for batch in 0.. {
                let written = if inserter < FIRST_IN_BLOCKS {
                    client.batch_execute(&rows(batch, 0..ROWS_PER_INSERT)).await
                } else {
                    // a block rolled back first: none of it may ever be seen
                    let rolled_back = format!(
                        "BEGIN; {}; UPDATE totals SET n = n + 1000 WHERE inserter = {inserter}; ROLLBACK",
                        rows(-1 - batch, 0..ROWS_PER_INSERT)
                    );
                    if batch % 3 == 0 && client.batch_execute(&rolled_back).await.is_err() {
                        break;
                    }
                    let block = format!(
                        "BEGIN; {}; {}; UPDATE totals SET n = n + {ROWS_PER_INSERT} WHERE inserter = {inserter}",
                        rows(batch, 0..half),
                        rows(batch, half..ROWS_PER_INSERT),
                    );
                    match client.batch_execute(&block).await {
                        Ok(()) => client.batch_execute("COMMIT").await,
                        Err(e) => Err(e),
                    }
                };
                if written.is_err() {
                    break;
                }
                acked.push(batch);
            }
            (Some(acked), Vec::new(), false)
        }));
    }
    for _ in 0..TRAINERS {
        let client = next();
        tasks.push(tokio::spawn(async move {
            let mut versions: Vec<i64> = Vec::new();
            let train =
                "TRAIN MODEL m USING als FROM ev WITH (factors = 4, iterations = 3, holdout = 0)";
            while let Ok(messages) = client.simple_query(train).await {
                for message in messages {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                        let version = row.get("version").and_then(|v| v.parse().ok());
                        versions.push(version.expect("TRAIN returns the new version"));
                    }
                }
            }
            (None, versions, false)
        }));
    }
    for _ in 0..READERS {
        let client = next();
        tasks.push(tokio::spawn(async move {
            while client
                .simple_query("SELECT count(*) FROM acks; SELECT * FROM tastedb_models")
                .await
                .is_ok()
            {}
            (None, Vec::new(), false)
        }));
    }
    let client = next();
    tasks.push(tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sql = format!("BACKUP TO '{}'", backup_dir.display());
        let backed_up = client.simple_query(&sql).await.is_ok();
        (None, Vec::new(), backed_up)
    }));
    let mut acknowledged = Acknowledged::default();
    for task in tasks {
        let (inserts, versions, backup) = task.await.unwrap();
        if let Some(inserts) = inserts {
            acknowledged.inserts.push(inserts);
        }
        acknowledged.versions.extend(versions);
        acknowledged.backup |= backup;
    }
    acknowledged
}

/// Checks a data directory after the workload: every acknowledged insert there exactly once
/// and complete, batches only of what was sent, every model version readable. With
/// `acknowledged` = `None` (a backup), only that it is consistent: complete batches, each
/// inserter's a gapless prefix.
async fn check(run: u64, dir: &std::path::Path, acknowledged: Option<&Acknowledged>) {
    let engine = Engine::open(dir).unwrap();
    let found = engine
        .sql("SELECT inserter, batch, count(*), count(DISTINCT row) FROM acks GROUP BY inserter, batch")
        .await
        .unwrap();
    let mut stored: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for batch in &found {
        let column = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
        let (inserters, batches, rows, distinct) = (column(0), column(1), column(2), column(3));
        for i in 0..batch.num_rows() {
            assert_eq!(
                rows.value(i),
                ROWS_PER_INSERT,
                "run {run}: partial or doubled batch"
            );
            assert_eq!(
                distinct.value(i),
                ROWS_PER_INSERT,
                "run {run}: duplicate rows"
            );
            stored
                .entry(inserters.value(i))
                .or_default()
                .push(batches.value(i));
        }
    }
    for (inserter, batches) in stored.iter_mut() {
        batches.sort_unstable();
        let expected: Vec<i64> = (0..batches.len() as i64).collect();
        assert_eq!(
            *batches, expected,
            "run {run}: inserter {inserter} has gaps"
        );
    }
    // a block's UPDATE of its inserter's total committed with its rows, or neither did
    let totals = engine
        .sql("SELECT inserter, n FROM totals ORDER BY inserter")
        .await
        .unwrap();
    for batch in &totals {
        let column = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
        let (inserters, totals) = (column(0), column(1));
        for i in 0..batch.num_rows() {
            let kept = stored.get(&inserters.value(i)).map_or(0, Vec::len) as i64;
            assert_eq!(
                totals.value(i),
                kept * ROWS_PER_INSERT,
                "run {run}: inserter {}: total and rows disagree",
                inserters.value(i)
            );
        }
    }
    if let Some(acknowledged) = acknowledged {
        for (inserter, acked) in acknowledged.inserts.iter().enumerate() {
            let kept = stored.get(&(inserter as i64)).map_or(0, Vec::len);
            // every acknowledged batch, plus at most the one in flight at the kill
            assert!(
                kept == acked.len() || kept == acked.len() + 1,
                "run {run}: inserter {inserter}: {} acknowledged, {kept} stored",
                acked.len()
            );
        }
    }
    let versions = engine
        .sql("SELECT version FROM tastedb_model_versions WHERE model = 'm' ORDER BY version")
        .await
        .unwrap();
    let versions: Vec<i64> = versions
        .iter()
        .flat_map(|b| {
            let column = datafusion::arrow::compute::cast(
                b.column(0),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .unwrap();
            column.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect();
    if let Some(acknowledged) = acknowledged {
        for version in &acknowledged.versions {
            assert!(
                versions.contains(version),
                "run {run}: version {version} lost"
            );
        }
    }
    for version in versions {
        engine
            .sql(&format!("ALTER MODEL m SET ACTIVE VERSION {version}"))
            .await
            .unwrap();
        let ranked = engine
            .sql("SELECT * FROM recommend('m', 1, 3)")
            .await
            .unwrap();
        let rows: usize = ranked.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 3, "run {run}: version {version} does not serve");
    }
}

/// kill -9 of `tastedb serve` at random moments of a mixed workload (12 clients inserting,
/// 2 training, 1 reading, 1 taking a backup): after a restart, every acknowledged write is
/// there exactly once, every model version serves, and the backup restores to a consistent
/// state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_keeps_every_acknowledged_write() {
    for run in 0..3u64 {
        let mut seed = 0xD1B5_4A32_D192_ED03 ^ (run + 1);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let backups = dir.path().join("backups");
        {
            let engine = Engine::open(&data).unwrap();
            engine
                .sql(
                    "CREATE TABLE acks (inserter BIGINT, batch BIGINT, row BIGINT);
                     CREATE TABLE ev (user_id BIGINT, item_id BIGINT);
                     INSERT INTO ev SELECT value % 50, value % 37 FROM generate_series(1, 600);
                     CREATE TABLE totals (inserter BIGINT PRIMARY KEY, n BIGINT NOT NULL);",
                )
                .await
                .unwrap();
        }
        {
            let engine = Engine::open(&data).unwrap();
            let totals: Vec<String> = (FIRST_IN_BLOCKS..INSERTERS)
                .map(|inserter| format!("({inserter}, 0)"))
                .collect();
            engine
                .sql(&format!("INSERT INTO totals VALUES {}", totals.join(", ")))
                .await
                .unwrap();
        }
        let (mut server, addr) = serve_process(&data, &[]).await;
        let mut clients = Vec::new();
        for _ in 0..INSERTERS as usize + TRAINERS + READERS + 1 {
            clients.push(trust_client(addr).await);
        }
        let load = tokio::spawn(workload(clients, backups.clone()));
        let kill_after = Duration::from_millis(800 + next_random(&mut seed) % 2500);
        tokio::time::sleep(kill_after).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        let acknowledged = tokio::time::timeout(Duration::from_secs(60), load)
            .await
            .expect("clients see the server die")
            .unwrap();
        let blocks = &acknowledged.inserts[FIRST_IN_BLOCKS as usize..];
        assert!(
            blocks.iter().all(|acked| !acked.is_empty()),
            "run {run}: a block inserter had no COMMIT acknowledged"
        );
        let inserts: usize = acknowledged.inserts.iter().map(Vec::len).sum();
        assert!(
            inserts > 0,
            "run {run}: nothing was acknowledged before the kill"
        );
        eprintln!(
            "run {run}: killed after {kill_after:?}: {inserts} inserts, versions {:?}, backup {}",
            acknowledged.versions, acknowledged.backup
        );
        check(run, &data, Some(&acknowledged)).await;
        if acknowledged.backup {
            let restored = dir.path().join("restored");
            tastedb::storage::backup::restore(&backups, &restored, None).unwrap();
            check(run, &restored, None).await;
        }
    }
}

/// A COPY larger than `tastedb.write_buffer_mb` stages its rows in files: `tastedb serve`
/// killed while it does keeps none of them, and no staged file survives the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_a_staged_copy_keeps_none_of_it() {
    use futures::SinkExt;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_process(dir.path(), &[]).await;
    let client = trust_client(addr).await;
    client
        .batch_execute(
            "SET tastedb.write_buffer_mb = 1;
             CREATE TABLE ev (user_id TEXT, item_id TEXT);
             INSERT INTO ev VALUES ('kept', 'row')",
        )
        .await
        .unwrap();
    let staged = || {
        std::fs::read_dir(dir.path().join("staging")).map_or(0, |folders| {
            (folders.filter_map(Result::ok))
                .map(|f| std::fs::read_dir(f.path()).map_or(0, |files| files.count()))
                .sum::<usize>()
        })
    };
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY ev FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let mut sent = 0;
    while staged() == 0 {
        assert!(sent < 2_000_000, "nothing was staged");
        let chunk: String = (sent..sent + 5_000)
            .map(|i| format!("user {i}\titem {}\n", i % 977))
            .collect();
        sink.send(chunk.into()).await.unwrap();
        sent += 5_000;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let batches = engine.sql("SELECT count(*) FROM ev").await.unwrap();
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 1);
    assert!(!dir.path().join("staging").exists());
}
