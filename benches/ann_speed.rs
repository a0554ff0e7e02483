//! TasteDB's HNSW (`ann::ItemIndex`, instant-distance) next to `hnswlib` (PyPI) on the same
//! vectors, in one run: the item factors of an ALS model of MovieLens 100K (queried with its
//! user factors) and 100,000 synthetic 64-dimensional vectors (1,000 random queries).
//! Recall@10 against exact inner product and single-thread queries/s, side by side. Then
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
use tastedb::ann::ItemIndex;
use tastedb::ml::kernels::dot;
use tastedb::ml::model::Scorer;
use tastedb::server::{AuthMode, ServeOptions, Server};

mod common;

const DIM: usize = 64;

struct Side {
    build_seconds: f64,
    queries_per_second: f64,
    recall: f64,
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
    let index = ItemIndex::build(items, dim, 1);
    let build_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let found: Vec<Vec<u32>> = queries
        .chunks_exact(dim)
        .map(|q| index.by_inner_product(q).into_iter().take(10).collect())
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let hits: usize = queries
        .chunks_exact(dim)
        .zip(&found)
        .map(|(q, f)| {
            exact_top10(items, q, dim)
                .iter()
                .filter(|i| f.contains(i))
                .count()
        })
        .sum();
    let count = queries.len() / dim;
    Side {
        build_seconds,
        queries_per_second: count as f64 / seconds,
        recall: hits as f64 / (count * 10) as f64,
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
    let output = Command::new("python3")
        .arg(script)
        .arg(&items_path)
        .arg(&queries_path)
        .arg(dim.to_string())
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "hnswlib failed (pip install hnswlib?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let number = |key: &str| json[key].as_f64().expect(key);
    Side {
        build_seconds: number("build_seconds"),
        queries_per_second: number("queries_per_second"),
        recall: number("recall"),
    }
}

fn compare(name: &str, items: &[f32], queries: &[f32], dim: usize) {
    let ours = tastedb_side(items, queries, dim);
    let theirs = hnswlib_side(items, queries, dim);
    println!(
        "{name}: {} vectors, {} queries",
        items.len() / dim,
        queries.len() / dim
    );
    println!(
        "  {:<10} {:>10} {:>12} {:>10}",
        "", "recall@10", "queries/s", "build s"
    );
    for (label, side) in [("TasteDB", &ours), ("hnswlib", &theirs)] {
        println!(
            "  {label:<10} {:>10.4} {:>12.0} {:>10.2}",
            side.recall, side.queries_per_second, side.build_seconds
        );
    }
    println!(
        "  queries/s ratio {:.2}x (goal: recall >= 0.95 at >= 0.8x)",
        ours.queries_per_second / theirs.queries_per_second
    );
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
    };
    let server = Server::bind(engine.clone(), options).await.expect("bind");
    let addr = server.local_addr().expect("address");
    tokio::spawn(server.run(std::future::pending::<()>()));
    let user_ids: Vec<String> = trained.user_ids.iter().take(500).cloned().collect();
    println!("recommend latency, 500 users, k = 10 (MovieLens model, exact scoring):");
    latency(&engine, addr, &user_ids).await;
}
