//! TasteDB's ALS next to the Python library `implicit` (PyPI), in one run, on the same splits:
//! MovieLens 100K and a synthetic power-law set of 5,000,000 events; factors 64, 15
//! iterations, 2 threads, the same regularisation and confidence. Prints the training times and
//! their ratio, both NDCG@10 (random 80/20 split, binary gain, training items excluded; test
//! users with ids below 10,000), top-10 recommendations per second for those users, and this
//! process's peak memory.
//!
//! ```sh
//! pip install implicit            # once; the bench calls benches/implicit_als.py
//! cargo bench --bench als_speed   # TASTEDB_SYNTHETIC_EVENTS=N to change the synthetic size
//! ```

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;
use tastedb::Engine;

mod common;

const FACTORS: usize = 64;
const ITERATIONS: usize = 15;
const THREADS: usize = 2;
const REGULARIZATION: f64 = 20.0;
const ALPHA: f64 = 1.0;

/// Distinct (user, item) pairs split 80/20 at random.
struct Dataset {
    name: String,
    train: Vec<(i64, i64)>,
    test: Vec<(i64, i64)>,
}

/// Test users evaluated at most (the lowest ids): scoring every item for every user of the
/// synthetic set would time the evaluation, not the training.
const MAX_TEST_USERS: i64 = 10_000;

fn split(name: String, mut pairs: Vec<(i64, i64)>) -> Dataset {
    pairs.sort_unstable();
    pairs.dedup();
    pairs.shuffle(&mut StdRng::seed_from_u64(42));
    let mut test = pairs.split_off(pairs.len() * 4 / 5);
    test.retain(|(user, _)| *user < MAX_TEST_USERS);
    Dataset {
        name,
        train: pairs,
        test,
    }
}

fn movielens() -> Dataset {
    let pairs = common::ratings()
        .into_iter()
        .map(|(u, i, _)| (u, i))
        .collect();
    split("MovieLens 100K".into(), pairs)
}

/// `events` draws of (user, item), both skewed towards low ids (power law), de-duplicated.
fn synthetic(events: usize) -> Dataset {
    let (users, items) = ((events / 50).max(10) as f64, (events / 250).max(10) as f64);
    let mut rng = StdRng::seed_from_u64(7);
    let pairs = (0..events)
        .map(|_| {
            let u: f64 = rng.random();
            let i: f64 = rng.random();
            ((users * u.powi(2)) as i64, (items * i.powi(3)) as i64)
        })
        .collect();
    split(format!("synthetic {events} events"), pairs)
}

fn batch(rows: &[(i64, i64)]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .expect("batch")
}

fn ndcg(ranked: &[i64], relevant: &HashSet<i64>) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .enumerate()
        .filter(|(_, item)| relevant.contains(item))
        .map(|(rank, _)| 1.0 / ((rank + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(10))
        .map(|rank| 1.0 / ((rank + 2) as f64).log2())
        .sum();
    dcg / ideal
}

struct Measured {
    train_seconds: f64,
    ndcg: f64,
    recs_per_second: f64,
}

async fn tastedb(data: &Dataset) -> Measured {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(dir.path()).expect("engine");
    engine
        .sql("CREATE TABLE train (user_id BIGINT, item_id BIGINT); CREATE TABLE test_users (user_id BIGINT)")
        .await
        .expect("create");
    for chunk in data.train.chunks(1_000_000) {
        engine
            .insert_batches("train", vec![batch(chunk)])
            .await
            .expect("insert");
    }
    let mut relevant: BTreeMap<i64, HashSet<i64>> = BTreeMap::new();
    for (user, item) in &data.test {
        relevant.entry(*user).or_default().insert(*item);
    }
    let users: Vec<(i64, i64)> = relevant.keys().map(|u| (*u, 0)).collect();
    let users_batch = batch(&users).project(&[0]).expect("project");
    engine
        .insert_batches("test_users", vec![users_batch])
        .await
        .expect("insert users");
    engine
        .sql(&format!(
            "TRAIN MODEL m USING als FROM train WITH (factors = {FACTORS}, iterations = {ITERATIONS}, \
             regularization = {REGULARIZATION}, alpha = {ALPHA}, threads = {THREADS}, holdout = 0)"
        ))
        .await
        .expect("train");
    let seconds = engine
        .sql("SELECT train_seconds FROM tastedb_model_versions WHERE model = 'm'")
        .await
        .expect("registry");
    let train_seconds = seconds[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
        .value(0);
    let started = Instant::now();
    let batches = engine
        .sql("SELECT user_id, recommend_items('m', user_id, 10) FROM test_users")
        .await
        .expect("recommend");
    let recommend_seconds = started.elapsed().as_secs_f64();
    let mut total = 0.0;
    let mut evaluated = 0;
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let lists = b.column(1).as_list::<i32>();
        for row in 0..b.num_rows() {
            let items = lists.value(row);
            let ranked: Vec<i64> = items.as_primitive::<Int64Type>().values().to_vec();
            total += ndcg(&ranked, &relevant[&ids.value(row)]);
            evaluated += 1;
        }
    }
    Measured {
        train_seconds,
        ndcg: total / evaluated as f64,
        recs_per_second: evaluated as f64 / recommend_seconds,
    }
}

fn write_csv(path: &Path, rows: &[(i64, i64)]) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("csv"));
    for (u, i) in rows {
        writeln!(file, "{u},{i}").expect("write");
    }
}

fn implicit(data: &Dataset) -> Measured {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    write_csv(&train, &data.train);
    write_csv(&test, &data.test);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/implicit_als.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&train)
        .arg(&test)
        .args([FACTORS, ITERATIONS, THREADS].map(|v| v.to_string()))
        .args([REGULARIZATION, ALPHA].map(|v| v.to_string()))
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "implicit failed (pip install implicit?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let number = |key: &str| json[key].as_f64().expect(key);
    Measured {
        train_seconds: number("train_seconds"),
        ndcg: number("ndcg"),
        recs_per_second: number("recs_per_second"),
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let events = std::env::var("TASTEDB_SYNTHETIC_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    println!(
        "ALS, factors {FACTORS}, {ITERATIONS} iterations, {THREADS} threads, regularization \
         {REGULARIZATION}, confidence 1 + {ALPHA}·weight"
    );
    println!(
        "{:<28} {:>9} {:>11} {:>11} {:>7} {:>8} {:>8} {:>10} {:>10} {:>9}",
        "data",
        "pairs",
        "tastedb s",
        "implicit s",
        "ratio",
        "NDCG td",
        "NDCG im",
        "recs/s td",
        "recs/s im",
        "peak MiB"
    );
    for data in [movielens(), synthetic(events)] {
        let ours = tastedb(&data).await;
        let theirs = implicit(&data);
        println!(
            "{:<28} {:>9} {:>11.2} {:>11.2} {:>6.2}x {:>8.4} {:>8.4} {:>10.0} {:>10.0} {:>9.0}",
            data.name,
            data.train.len(),
            ours.train_seconds,
            theirs.train_seconds,
            ours.train_seconds / theirs.train_seconds,
            ours.ndcg,
            theirs.ndcg,
            ours.recs_per_second,
            theirs.recs_per_second,
            peak_rss_mib()
        );
    }
}
