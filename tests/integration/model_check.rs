//! A randomized model test of stored tables: random INSERTs, UPDATEs and DELETEs, alone or in
//! transaction blocks that commit, roll back or go back to a savepoint, against a `BTreeMap`
//! reference. After every step the table, its secondary-index lookups (a plain and a unique
//! index) and its primary-key lookups agree with the reference. Fixed seeds run in CI;
//! `TASTEDB_MODEL_STEPS=20000 cargo test --test integration model_check` runs longer.

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use tastedb::Engine;
use tastedb::engine::transaction::within;
use tastedb::storage::Transaction;

/// Key → (group, label): the table `kv (k BIGINT PRIMARY KEY, g BIGINT, v TEXT)`, with an
/// index on `g` and a unique index on `v`.
type Rows = BTreeMap<i64, (i64, Option<String>)>;

const KEYS: i64 = 60;
const GROUPS: i64 = 6;
const LABELS: i64 = 40;

fn label(rng: &mut StdRng) -> Option<String> {
    (rng.random_range(0..5) > 0).then(|| format!("v{}", rng.random_range(0..LABELS)))
}

fn literal(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or("NULL".to_string(), |v| format!("'{v}'"))
}

/// One random statement and what it does to `rows`: the SQL, and the rows after it (`None`
/// when it must fail with a unique violation and change nothing).
fn statement(rng: &mut StdRng, rows: &Rows) -> (String, Option<Rows>) {
    let mut after = rows.clone();
    let taken = |rows: &Rows, v: &Option<String>, except: Option<i64>| {
        v.is_some() && rows.iter().any(|(k, (_, w))| w == v && Some(*k) != except)
    };
    match rng.random_range(0..5) {
        0 => {
            let (k, g, v) = (
                rng.random_range(0..KEYS),
                rng.random_range(0..GROUPS),
                label(rng),
            );
            let sql = format!("INSERT INTO kv VALUES ({k}, {g}, {})", literal(&v));
            if rows.contains_key(&k) || taken(rows, &v, None) {
                return (sql, None);
            }
            after.insert(k, (g, v));
            (sql, Some(after))
        }
        1 => {
            let (k, v) = (rng.random_range(0..KEYS), label(rng));
            let sql = format!("UPDATE kv SET v = {} WHERE k = {k}", literal(&v));
            if rows.contains_key(&k) && taken(rows, &v, Some(k)) {
                return (sql, None);
            }
            if let Some(row) = after.get_mut(&k) {
                row.1 = v;
            }
            (sql, Some(after))
        }
        2 => {
            let g = rng.random_range(0..GROUPS);
            for row in after.values_mut().filter(|row| row.0 == g) {
                row.0 = (g + 1) % GROUPS;
            }
            (
                format!("UPDATE kv SET g = ({g} + 1) % {GROUPS} WHERE g = {g}"),
                Some(after),
            )
        }
        3 => {
            let k = rng.random_range(0..KEYS);
            after.remove(&k);
            (format!("DELETE FROM kv WHERE k = {k}"), Some(after))
        }
        _ => {
            let g = rng.random_range(0..GROUPS);
            after.retain(|_, row| row.0 != g);
            (format!("DELETE FROM kv WHERE g = {g}"), Some(after))
        }
    }
}

fn ints(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

async fn run(engine: &Engine, txn: Option<&Arc<Transaction>>, sql: &str) -> tastedb::Result<()> {
    match txn {
        Some(txn) => within(txn.clone(), engine.sql(sql)).await.map(drop),
        None => engine.sql(sql).await.map(drop),
    }
}

/// Checks the table as `txn` (or the latest commits) sees it against `rows`.
async fn check(engine: &Engine, txn: Option<&Arc<Transaction>>, rows: &Rows, rng: &mut StdRng) {
    let query = |sql: String| async move {
        match txn {
            Some(txn) => within(txn.clone(), engine.sql(&sql)).await.unwrap(),
            None => engine.sql(&sql).await.unwrap(),
        }
    };
    let all = query("SELECT k, g FROM kv ORDER BY k".into()).await;
    let expected: Vec<i64> = rows.keys().copied().collect();
    assert_eq!(ints(&all, 0), expected, "keys");
    let groups: Vec<i64> = rows.values().map(|row| row.0).collect();
    assert_eq!(ints(&all, 1), groups, "groups");
    let g = rng.random_range(0..GROUPS);
    let by_group = query(format!("SELECT k FROM kv WHERE g = {g} ORDER BY k")).await;
    let expected: Vec<i64> = (rows.iter())
        .filter(|(_, row)| row.0 == g)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(ints(&by_group, 0), expected, "index on g = {g}");
    let v = format!("v{}", rng.random_range(0..LABELS));
    let by_label = query(format!("SELECT k FROM kv WHERE v = '{v}'")).await;
    let expected: Vec<i64> = (rows.iter())
        .filter(|(_, row)| row.1.as_deref() == Some(v.as_str()))
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(ints(&by_label, 0), expected, "unique index on v = {v}");
    let k = rng.random_range(0..KEYS);
    let point = query(format!("SELECT g FROM kv WHERE k = {k}")).await;
    assert_eq!(
        ints(&point, 0),
        rows.get(&k)
            .map(|row| row.0)
            .into_iter()
            .collect::<Vec<_>>()
    );
}

async fn model_run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql(
            "CREATE TABLE kv (k BIGINT PRIMARY KEY, g BIGINT, v TEXT);
             CREATE INDEX kv_g ON kv (g);
             CREATE UNIQUE INDEX kv_v ON kv (v)",
        )
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut committed = Rows::new();
    let mut step = 0;
    while step < steps {
        if rng.random_range(0..3) > 0 {
            let (sql, after) = statement(&mut rng, &committed);
            let result = run(&engine, None, &sql).await;
            match after {
                Some(after) => {
                    result.unwrap_or_else(|e| panic!("seed {seed} step {step}: {sql}: {e}"));
                    committed = after;
                }
                None => assert_eq!(result.unwrap_err().sqlstate(), "23505", "{sql}"),
            }
            step += 1;
        } else {
            // a block: statements, maybe a savepoint gone back to, then COMMIT or ROLLBACK
            let txn = engine.begin();
            let mut block = committed.clone();
            let mut saved = None;
            for _ in 0..rng.random_range(1..6) {
                if saved.is_none() && rng.random_range(0..4) == 0 {
                    txn.savepoint("s");
                    saved = Some(block.clone());
                }
                let (sql, after) = statement(&mut rng, &block);
                let result = run(&engine, Some(&txn), &sql).await;
                match after {
                    Some(after) => {
                        result.unwrap_or_else(|e| panic!("seed {seed} step {step}: {sql}: {e}"));
                        block = after;
                    }
                    None => assert_eq!(result.unwrap_err().sqlstate(), "23505", "{sql}"),
                }
                step += 1;
            }
            check(&engine, Some(&txn), &block, &mut rng).await;
            if let Some(earlier) = saved.take().filter(|_| rng.random_range(0..2) == 0) {
                txn.rollback_to("s").unwrap();
                block = earlier;
            }
            if rng.random_range(0..4) > 0 {
                txn.commit().unwrap();
                committed = block;
            }
        }
        check(&engine, None, &committed, &mut rng).await;
    }
    // and after reopening the directory
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    check(&engine, None, &committed, &mut rng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_and_blocks_agree_with_a_reference() {
    let steps = std::env::var("TASTEDB_MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in [1, 2, 3] {
        model_run(seed, steps).await;
    }
}
