//! TasteDB's HNSW (`models::item_index::ItemIndex`, `ann::hnsw`) next to `hnswlib` (PyPI) on the same
//! vectors, in one run: the item factors of an ALS model of MovieLens 100K (queried with its
//! user factors) and 100,000 synthetic 64-dimensional vectors (1,000 random queries).
//! Recall@10 against exact inner product and single-thread queries/s at several `ef`, side by
//! side, with the same M and ef_construction. Then
//! `recommend` latency (p50, p99), cached and uncached, in process and over the wire.
//!
//! ```sh
//! pip install hnswlib    # once; the bench calls benches/hnswlib_ann.py
//! cargo bench --bench ann_speed
//! ```

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tastedb::Engine;
use tastedb::ml::kernels::dot;
use tastedb::ml::model::Scorer;
use tastedb::models::item_index::ItemIndex;
use tastedb::server::{AuthMode, ServeOptions, Server};

mod common;

const DIM: usize = 64;

/// Graph links per point on both sides (TasteDB's item graphs use 16; hnswlib's default).
const M: usize = 16;
/// The `ef` values searched with, on both sides.
const EFS: [usize; 5] = [50, 100, 200, 400, 800];

/// One side's build time and, per `ef`, recall@10 and single-thread queries/s.
struct Side {
    build_seconds: f64,
    /// (ef, recall, queries/s)
    runs: Vec<(usize, f64, f64)>,
}

fn exact_top10(items: &[f32], query: &[f32], dim: usize) -> Vec<u32> {
    let mut scored: Vec<(u32, f32)> = items
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, y)| (i as u32, dot(query, y)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().take(10).map(|(i, _)| i).collect()
}

fn tastedb_side(items: &[f32], queries: &[f32], dim: usize) -> Side {
    let started = Instant::now();
    let index = ItemIndex::build(items, dim, 1, &Default::default()).expect("index");
    let build_seconds = started.elapsed().as_secs_f64();
    let exact: Vec<Vec<u32>> = queries
        .chunks_exact(dim)
        .map(|q| exact_top10(items, q, dim))
        .collect();
    let count = queries.len() / dim;
    let runs = EFS
        .iter()
        .map(|&ef| {
            let started = Instant::now();
            let found: Vec<Vec<u32>> = queries
                .chunks_exact(dim)
                .map(|q| index.by_inner_product(q, ef).into_iter().take(10).collect())
                .collect();
            let seconds = started.elapsed().as_secs_f64();
            let hits: usize = exact
                .iter()
                .zip(&found)
                .map(|(e, f)| e.iter().filter(|i| f.contains(i)).count())
                .sum();
            (
                ef,
                hits as f64 / (count * 10) as f64,
                count as f64 / seconds,
            )
        })
        .collect();
    Side {
        build_seconds,
        runs,
    }
}

fn write_f32(path: &Path, values: &[f32]) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("file"));
    for v in values {
        file.write_all(&v.to_le_bytes()).expect("write");
    }
}

fn hnswlib_side(items: &[f32], queries: &[f32], dim: usize) -> Side {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (items_path, queries_path) = (dir.path().join("items.f32"), dir.path().join("q.f32"));
    write_f32(&items_path, items);
    write_f32(&queries_path, queries);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/hnswlib_ann.py");
    let efs: Vec<String> = EFS.iter().map(|e| e.to_string()).collect();
    let output = Command::new("python3")
        .arg(script)
        .arg(&items_path)
        .arg(&queries_path)
        .arg(dim.to_string())
        .arg(M.to_string())
        .arg(efs.join(","))
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "hnswlib failed (pip install hnswlib?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let runs = json["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| {
            let number = |key: &str| run[key].as_f64().expect(key);
            (
                number("ef") as usize,
                number("recall"),
                number("queries_per_second"),
            )
        })
        .collect();
    Side {
        build_seconds: json["build_seconds"].as_f64().expect("build_seconds"),
        runs,
    }
}

fn compare(name: &str, items: &[f32], queries: &[f32], dim: usize) {
    let ours = tastedb_side(items, queries, dim);
    let theirs = hnswlib_side(items, queries, dim);
    println!(
        "{name}: {} vectors, {} queries, M {M}, ef_construction 200, one thread",
        items.len() / dim,
        queries.len() / dim
    );
    println!(
        "  build s: TasteDB {:.2}, hnswlib {:.2}",
        ours.build_seconds, theirs.build_seconds
    );
    println!(
        "  {:>5} {:>16} {:>16} {:>16} {:>16} {:>8}",
        "ef", "TasteDB recall", "hnswlib recall", "TasteDB q/s", "hnswlib q/s", "ratio"
    );
    for ((ef, recall, qps), (_, their_recall, their_qps)) in ours.runs.iter().zip(&theirs.runs) {
        println!(
            "  {ef:>5} {recall:>16.4} {their_recall:>16.4} {qps:>16.0} {their_qps:>16.0} {:>7.2}x",
            qps / their_qps
        );
    }
    println!("  goal: recall@10 >= 0.95 at >= 0.8x hnswlib's queries/s");
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    (at(0.5), at(0.99))
}

async fn latency(engine: &Engine, addr: std::net::SocketAddr, users: &[String]) {
    let sql = |u: &String| format!("SELECT * FROM recommend('m', '{u}', 10)");
    let (client, connection) = tokio_postgres::connect(
        &format!("host={} port={} user=tastedb", addr.ip(), addr.port()),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    for (label, ttl) in [("uncached", 0), ("cached", 300)] {
        engine
            .sql(&format!("SET tastedb.cache_ttl_seconds = {ttl}"))
            .await
            .expect("set");
        // one pass to fill the cache (and warm up), then the measured pass
        for u in users {
            engine.sql(&sql(u)).await.expect("recommend");
        }
        let mut in_process = Vec::new();
        for u in users {
            let started = Instant::now();
            engine.sql(&sql(u)).await.expect("recommend");
            in_process.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let mut wire = Vec::new();
        for u in users {
            let started = Instant::now();
            client.simple_query(&sql(u)).await.expect("recommend");
            wire.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let (p50, p99) = percentiles(in_process);
        let (w50, w99) = percentiles(wire);
        println!(
            "  recommend, {label:<8} in process p50 {p50:.3} ms p99 {p99:.3} ms; \
             over the wire p50 {w50:.3} ms p99 {w99:.3} ms"
        );
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(dir.path()).expect("engine");
    engine
        .sql("CREATE TABLE ratings (user_id TEXT, item_id TEXT)")
        .await
        .expect("create");
    let values: Vec<String> = common::ratings()
        .iter()
        .map(|(u, i, _)| format!("('u{u}', 'i{i}')"))
        .collect();
    for chunk in values.chunks(10_000) {
        engine
            .sql(&format!("INSERT INTO ratings VALUES {}", chunk.join(", ")))
            .await
            .expect("insert");
    }
    engine
        .sql("TRAIN MODEL m USING als FROM ratings WITH (factors = 64, holdout = 0)")
        .await
        .expect("train");
    let (_, trained) = engine.models().active("m").expect("model");
    let Scorer::Factors { users, items, .. } = &trained.scorer else {
        panic!("ALS has factors");
    };
    compare("MovieLens 100K ALS item factors", items, users, DIM);

    let mut rng = StdRng::seed_from_u64(42);
    let mut vectors = |n: usize| -> Vec<f32> {
        (0..n * DIM)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect()
    };
    let (synthetic, queries) = (vectors(100_000), vectors(1_000));
    compare("synthetic uniform [-1, 1)^64", &synthetic, &queries, DIM);

    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        auth: AuthMode::Trust,
        max_connections: 4,
        tls: None,
        tls_required: false,
        statement_timeout: "0".into(),
        checkpoints: None,
        follow: None,
    };
    let server = Server::bind(engine.clone(), options).await.expect("bind");
    let addr = server.local_addr().expect("address");
    tokio::spawn(server.run(std::future::pending::<()>()));
    let user_ids: Vec<String> = trained.user_ids.iter().take(500).cloned().collect();
    println!("recommend latency, 500 users, k = 10 (MovieLens model, exact scoring):");
    latency(&engine, addr, &user_ids).await;
}
