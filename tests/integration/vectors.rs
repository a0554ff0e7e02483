//! Vector columns and HNSW indexes beyond the golden file: the graph extended in the background
//! once enough rows wait, rows written after the last extension found again after a restart,
//! recall against an exact scan on random vectors (vectors over the wire are in the golden
//! files' run through the server).

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tastedb::Engine;

const DIM: usize = 8;

fn vector_literal(rng: &mut StdRng) -> String {
    let values: Vec<String> = (0..DIM)
        .map(|_| format!("{:.4}", rng.random::<f32>() * 2.0 - 1.0))
        .collect();
    format!("[{}]", values.join(", "))
}

/// Inserts rows `from..to` with random vectors.
async fn insert_rows(engine: &Engine, rng: &mut StdRng, from: usize, to: usize) {
    let values: Vec<String> = (from..to)
        .map(|id| format!("({id}, {})", vector_literal(rng)))
        .collect();
    engine
        .sql(&format!("INSERT INTO items VALUES {}", values.join(", ")))
        .await
        .unwrap();
}

fn int64s(batches: &[RecordBatch], column: usize) -> Vec<i64> {
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

/// (indexed_rows, pending_rows) of the only index.
async fn index_counts(engine: &Engine) -> (i64, i64) {
    let batches = engine
        .sql("SELECT indexed_rows, pending_rows FROM tastedb_indexes")
        .await
        .unwrap();
    (int64s(&batches, 0)[0], int64s(&batches, 1)[0])
}

/// Fraction of the exact top 10 that `nearest` returns, over `queries` random queries.
async fn recall_at_10(engine: &Engine, rng: &mut StdRng, queries: usize) -> f64 {
    let mut found = 0;
    for _ in 0..queries {
        let query = vector_literal(rng);
        let approximate = engine
            .sql(&format!(
                "SELECT id FROM nearest('items', 'v', {query}, 10)"
            ))
            .await
            .unwrap();
        let exact = engine
            .sql(&format!(
                "SELECT id FROM items ORDER BY cosine_distance(v, {query}), id LIMIT 10"
            ))
            .await
            .unwrap();
        let approximate: HashSet<i64> = int64s(&approximate, 0).into_iter().collect();
        found += int64s(&exact, 0)
            .iter()
            .filter(|id| approximate.contains(id))
            .count();
    }
    found as f64 / (queries * 10) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_is_extended_in_the_background_and_pending_rows_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql("CREATE TABLE items (id BIGINT PRIMARY KEY, v REAL[8])")
            .await
            .unwrap();
        insert_rows(&engine, &mut rng, 0, 500).await;
        engine
            .sql("CREATE INDEX items_v ON items USING hnsw (v) WITH (metric = 'cosine')")
            .await
            .unwrap();
        assert_eq!(index_counts(&engine).await, (500, 0));
        // 1,200 more rows: past the extension threshold (1,000 pending rows).
        insert_rows(&engine, &mut rng, 500, 1_700).await;
        let started = Instant::now();
        loop {
            let (indexed, pending) = index_counts(&engine).await;
            assert_eq!(indexed + pending, 1_700, "every row indexed or pending");
            if indexed == 1_700 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "graph not extended: {indexed} indexed, {pending} pending"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let recall = recall_at_10(&engine, &mut rng, 20).await;
        assert!(recall >= 0.95, "recall@10 {recall} after extension");
        // A few rows after the extension stay pending.
        insert_rows(&engine, &mut rng, 1_700, 1_710).await;
        assert_eq!(index_counts(&engine).await, (1_700, 10));
    }
    // After a restart the graph is read back and the table scanned for the rows it lacks.
    let engine = Engine::open(dir.path()).unwrap();
    let before = engine
        .sql("SELECT indexed_rows, pending_rows FROM tastedb_indexes")
        .await
        .unwrap();
    assert!(
        before[0].column(0).is_null(0),
        "not loaded before first use"
    );
    let newest = engine
        .sql("SELECT v FROM items WHERE id = 1705")
        .await
        .unwrap();
    let newest = newest[0].column(0).as_list::<i32>().value(0);
    let values: Vec<String> = newest
        .as_primitive::<datafusion::arrow::datatypes::Float32Type>()
        .values()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let hit = engine
        .sql(&format!(
            "SELECT id, distance FROM nearest('items', 'v', [{}], 1)",
            values.join(", ")
        ))
        .await
        .unwrap();
    assert_eq!(
        int64s(&hit, 0),
        vec![1705],
        "a pending row is found after restart"
    );
    assert_eq!(index_counts(&engine).await, (1_700, 10));
    let recall = recall_at_10(&engine, &mut rng, 20).await;
    assert!(recall >= 0.95, "recall@10 {recall} after restart");
}

/// The ids `nearest` returns for `query`, nearest first.
async fn nearest_ids(engine: &Engine, query: &str, k: usize) -> Vec<i64> {
    let batches = engine
        .sql(&format!(
            "SELECT id FROM nearest('items', 'v', '{query}', {k})"
        ))
        .await
        .unwrap();
    int64s(&batches, 0)
}

#[tokio::test]
async fn updated_and_deleted_rows_leave_the_index_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let far = format!("[{}]", ["-1"; DIM].join(", "));
    let near = format!("[{}]", ["1"; DIM].join(", "));
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql("CREATE TABLE items (id BIGINT PRIMARY KEY, v REAL[8])")
            .await
            .unwrap();
        insert_rows(&engine, &mut rng, 0, 300).await;
        engine
            .sql(&format!(
                "INSERT INTO items VALUES (1000, '{near}'), (1001, '{near}')"
            ))
            .await
            .unwrap();
        engine
            .sql("CREATE INDEX items_v ON items USING hnsw (v)")
            .await
            .unwrap();
        assert_eq!(nearest_ids(&engine, &near, 2).await, vec![1000, 1001]);
        // row 1000 moves away, row 1001 goes: neither is the nearest any more
        engine
            .sql(&format!("UPDATE items SET v = '{far}' WHERE id = 1000"))
            .await
            .unwrap();
        engine
            .sql("DELETE FROM items WHERE id = 1001")
            .await
            .unwrap();
        let found = nearest_ids(&engine, &near, 5).await;
        assert_eq!(found.len(), 5);
        assert!(
            !found.contains(&1000) && !found.contains(&1001),
            "{found:?}"
        );
        assert_eq!(nearest_ids(&engine, &far, 1).await, vec![1000]);
    }
    // after a restart the graph still holds both points: the table says which are current
    let engine = Engine::open(dir.path()).unwrap();
    let found = nearest_ids(&engine, &near, 5).await;
    assert!(
        !found.contains(&1000) && !found.contains(&1001),
        "{found:?}"
    );
    assert_eq!(nearest_ids(&engine, &far, 1).await, vec![1000]);
    assert_eq!(
        index_counts(&engine).await,
        (302, 1),
        "the moved row is pending"
    );
}
