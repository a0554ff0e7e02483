//! Freshness: what a live model gains and what it costs.
//!
//! - **Quality** on MovieLens 100K by time: ALS (the quality bench's options) is trained on
//!   the first 80 % of ratings by timestamp; the rest are inserted one by one in time order,
//!   and before each is inserted its user's next item is ranked by (a) the stale model (a
//!   copy trained on the same rows from a table that receives no writes), (b) the stale model
//!   with the items the user interacted with since training removed (its top 10 + n, minus
//!   those n items) and (c) the live model (fold-in, new items, live seen items). Prints
//!   NDCG@10 and HR@10 for each.
//! - **Cost** on a synthetic power-law set of 10,000,000 events: `recommend` latency (in
//!   process, SQL included, cache off) for users with 0, 10 and 100 events newer than the
//!   version, each new event being the user's current first recommendation; and staleness:
//!   how many answers right after an acknowledged INSERT still held the inserted item.
//!
//! ```sh
//! cargo bench --bench freshness                      # both parts
//! TASTEDB_FRESHNESS=quality cargo bench --bench freshness
//! TASTEDB_FRESHNESS=cost TASTEDB_SYNTHETIC_EVENTS=1000000 cargo bench --bench freshness
//! ```

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tastedb::Engine;

mod common;

const K: usize = 10;
const ALS: &str = "factors = 64, iterations = 15, regularization = 20, alpha = 1, holdout = 0";

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

async fn recommend(engine: &Engine, model: &str, user: i64, k: usize) -> Vec<i64> {
    let sql = format!("SELECT item_id FROM recommend('{model}', {user}, {k}) ORDER BY rank");
    let batches = engine.sql(&sql).await.expect("recommend");
    batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>();
            (0..ids.len()).map(|i| ids.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

/// Sums of NDCG@10 and HR@10 over ranked lists, each with one relevant item.
#[derive(Default)]
struct Hits {
    ndcg: f64,
    hits: f64,
    lists: usize,
}

impl Hits {
    fn add(&mut self, ranked: &[i64], next: i64) {
        if let Some(rank) = ranked.iter().take(K).position(|&i| i == next) {
            self.ndcg += 1.0 / ((rank + 2) as f64).log2();
            self.hits += 1.0;
        }
        self.lists += 1;
    }

    fn line(&self, name: &str) {
        let n = self.lists.max(1) as f64;
        println!("{name:<28} {:>9.4} {:>9.4}", self.ndcg / n, self.hits / n);
    }
}

async fn quality() {
    let mut rows = common::ratings();
    assert_eq!(rows.len(), 100_000, "unexpected MovieLens 100K file");
    rows.sort_by_key(|&(user, item, ts)| (ts, user, item));
    let later = rows.split_off(80_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(dir.path()).expect("engine");
    engine
        .sql(
            "CREATE TABLE events (user_id BIGINT, item_id BIGINT); \
             CREATE TABLE snapshot (user_id BIGINT, item_id BIGINT); \
             SET tastedb.cache_ttl_seconds = 0",
        )
        .await
        .expect("create");
    let first: Vec<(i64, i64)> = rows.iter().map(|&(u, i, _)| (u, i)).collect();
    for table in ["events", "snapshot"] {
        engine
            .insert_batches(table, vec![batch(&first)])
            .await
            .expect("insert");
    }
    for (model, table) in [("live", "events"), ("stale", "snapshot")] {
        engine
            .sql(&format!(
                "TRAIN MODEL {model} USING als FROM {table} WITH ({ALS})"
            ))
            .await
            .expect("train");
    }
    let known: HashSet<i64> = first.iter().map(|r| r.0).collect();
    let mut since: HashMap<i64, Vec<i64>> = HashMap::new();
    let (mut stale, mut seen, mut live) = (Hits::default(), Hits::default(), Hits::default());
    let (mut new_users, mut new_live) = (Hits::default(), Hits::default());
    let started = Instant::now();
    for &(user, item, _) in &later {
        let newer = since.entry(user).or_default();
        let a = recommend(&engine, "stale", user, K).await;
        let wider = recommend(&engine, "stale", user, K + newer.len()).await;
        let b: Vec<i64> = wider.into_iter().filter(|i| !newer.contains(i)).collect();
        let c = recommend(&engine, "live", user, K).await;
        stale.add(&a, item);
        seen.add(&b, item);
        live.add(&c, item);
        if !known.contains(&user) {
            new_users.add(&a, item);
            new_live.add(&c, item);
        }
        engine
            .insert_batches("events", vec![batch(&[(user, item)])])
            .await
            .expect("insert");
        newer.push(item);
    }
    println!(
        "MovieLens 100K by time: trained on the first 80,000 ratings, {} later events \
         ranked before each is inserted ({:.0} s)",
        later.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{:<28} {:>9} {:>9}", "", "NDCG@10", "HR@10");
    stale.line("(a) stale model");
    seen.line("(b) live seen items");
    live.line("(c) fold-in (live)");
    println!(
        "of which users new after training ({} events):",
        new_users.lists
    );
    new_users.line("    (a) and (b): popularity");
    new_live.line("    (c) fold-in");
}

/// `events` draws of (user, item), both skewed towards low ids, as the ALS speed bench.
fn synthetic(events: usize) -> Vec<(i64, i64)> {
    let (users, items) = ((events / 50).max(10) as f64, (events / 250).max(10) as f64);
    let mut rng = StdRng::seed_from_u64(7);
    (0..events)
        .map(|_| {
            let u: f64 = rng.random();
            let i: f64 = rng.random();
            ((users * u.powi(2)) as i64, (items * i.powi(3)) as i64)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or(f64::NAN)
}

async fn cost() {
    let events: usize = std::env::var("TASTEDB_SYNTHETIC_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    let rows = synthetic(events);
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(dir.path()).expect("engine");
    engine
        .sql("CREATE TABLE events (user_id BIGINT, item_id BIGINT); SET tastedb.cache_ttl_seconds = 0")
        .await
        .expect("create");
    let started = Instant::now();
    for chunk in rows.chunks(1_000_000) {
        engine
            .insert_batches("events", vec![batch(chunk)])
            .await
            .expect("insert");
    }
    let loaded = started.elapsed().as_secs_f64();
    let started = Instant::now();
    engine
        .sql(&format!("TRAIN MODEL m USING als FROM events WITH ({ALS})"))
        .await
        .expect("train");
    println!(
        "synthetic {events} events: loaded in {loaded:.0} s, trained in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // users in the middle of the power law (a few dozen events each), 100 per group
    let users = (events / 50) as i64;
    let group = |g: i64| (0..100).map(move |n| users / 8 + g * 1_000 + n * 7);
    let mut stale_answers = 0;
    let mut writes = 0;
    for (g, newer) in [(1, 10), (2, 100)] {
        for user in group(g) {
            for _ in 0..newer {
                let Some(&next) = recommend(&engine, "m", user, 1).await.first() else {
                    break;
                };
                engine
                    .insert_batches("events", vec![batch(&[(user, next)])])
                    .await
                    .expect("insert");
                writes += 1;
                if recommend(&engine, "m", user, K).await.contains(&next) {
                    stale_answers += 1;
                }
            }
        }
    }
    println!(
        "staleness: {stale_answers} of {writes} answers right after an acknowledged INSERT \
         held the inserted item"
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "recommend, k = 10", "p50 ms", "p99 ms", "calls"
    );
    let mut p50s = Vec::new();
    for (g, label) in [
        (0, "0 new events"),
        (1, "10 new events"),
        (2, "100 new events"),
    ] {
        let mut times = Vec::new();
        for round in 0..5 {
            for user in group(g) {
                let started = Instant::now();
                let ranked = recommend(&engine, "m", user, K).await;
                times.push(started.elapsed().as_secs_f64() * 1e3);
                assert!(round > 0 || !ranked.is_empty());
            }
        }
        times.sort_by(f64::total_cmp);
        let p50 = percentile(&times, 0.5);
        p50s.push(p50);
        println!(
            "{label:<22} {p50:>10.3} {:>10.3} {:>10}",
            percentile(&times, 0.99),
            times.len()
        );
    }
    println!(
        "fold-in adds at p50: {:.3} ms (10 new events), {:.3} ms (100 new events)",
        p50s[1] - p50s[0],
        p50s[2] - p50s[0]
    );
}

#[tokio::main]
async fn main() {
    let part = std::env::var("TASTEDB_FRESHNESS").unwrap_or_default();
    if part.is_empty() || part == "quality" {
        quality().await;
    }
    if part.is_empty() || part == "cost" {
        cost().await;
    }
}
