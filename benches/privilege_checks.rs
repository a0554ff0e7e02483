//! The cost of privilege checks on the serving path, in process (no network, so the run-to-run
//! noise of `benches/security.sh`'s pgbench figures does not hide a few per cent): a prepared
//! point SELECT and a prepared `recommend` executed as the embedding superuser (no checks) and
//! as a role holding only SELECT (checked at every execution), in interleaved blocks; prints
//! microseconds per execution and the ratio. The prediction cache is off, so that both sides
//! compute every ranking (with it, whichever side runs second would be served the first
//! side's answers).
//!
//!   cargo bench --bench privilege_checks

use datafusion::common::{ParamValues, ScalarValue};
use std::time::Instant;
use tastedb::Engine;
use tastedb::engine::{self, Outcome, Prepared};
use tastedb::roles::Actor;
use tastedb::sql::notices::Notices;

const BLOCKS: usize = 10;
const PER_BLOCK: usize = 2_000;

async fn run(engine: &Engine, prepared: &Prepared, actor: &Actor, key: i64) {
    let values = ParamValues::List(vec![ScalarValue::Int64(Some(key)).into()]);
    let (notices, _received) = Notices::channel();
    let outcome = engine
        .execute_prepared_as(prepared, values, actor, &notices)
        .await
        .expect("execute");
    if let Outcome::Rows(stream) = outcome {
        let batches: Vec<_> = futures::TryStreamExt::try_collect(stream)
            .await
            .expect("rows");
        assert!(!batches.is_empty());
    }
}

async fn prepare(engine: &Engine, sql: &str, actor: &Actor) -> Prepared {
    let statement = engine::parse(sql).expect("parse").remove(0);
    engine.prepare_as(statement, actor).await.expect("prepare")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("dir");
    let engine = Engine::open(dir.path()).expect("open");
    engine
        .sql(
            "CREATE TABLE users (user_id BIGINT PRIMARY KEY, name TEXT);
             INSERT INTO users SELECT value, 'user ' || CAST(value AS TEXT) FROM generate_series(1, 100000);
             CREATE TABLE ev (user_id BIGINT, item_id BIGINT);
             INSERT INTO ev SELECT (value * 7919) % 5000, (value * 104729) % 2000 FROM generate_series(1, 200000);
             TRAIN MODEL m USING als FROM ev WITH (factors = 32, iterations = 3, holdout = 0);
             CREATE USER reader PASSWORD 'reader';
             GRANT SELECT ON users TO reader; GRANT SELECT ON MODEL m TO reader;
             SET tastedb.cache_ttl_seconds = 0;",
        )
        .await
        .expect("setup");
    let superuser = Actor::Embedder;
    let reader = Actor::Role("reader".into());
    println!("statement\tsuperuser µs\treader µs\treader/superuser time");
    for (name, sql) in [
        (
            "point SELECT",
            "SELECT user_id, name FROM users WHERE user_id = $1",
        ),
        ("recommend", "SELECT item_id FROM recommend('m', $1, 10)"),
    ] {
        let as_superuser = prepare(&engine, sql, &superuser).await;
        let as_reader = prepare(&engine, sql, &reader).await;
        let mut seconds = [0.0f64; 2];
        for block in 0..BLOCKS {
            for (side, (prepared, actor)) in [(&as_superuser, &superuser), (&as_reader, &reader)]
                .into_iter()
                .enumerate()
            {
                let started = Instant::now();
                for i in 0..PER_BLOCK {
                    let key = ((block * PER_BLOCK + i) * 37 % 5000) as i64 + 1;
                    run(&engine, prepared, actor, key).await;
                }
                seconds[side] += started.elapsed().as_secs_f64();
            }
        }
        let per = |s: f64| s * 1e6 / (BLOCKS * PER_BLOCK) as f64;
        println!(
            "{name}\t{:.1}\t{:.1}\t{:.3}",
            per(seconds[0]),
            per(seconds[1]),
            seconds[1] / seconds[0]
        );
    }
}
