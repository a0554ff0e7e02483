//! The memory budget (`EngineOptions::memory_limit`, `--memory-limit`): a GROUP BY and an
//! ORDER BY over more than the budget spill and finish with the right answer; what cannot
//! spill (a hash join's build side, a model's factors) fails with 53200; the engine goes on.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use tastedb::{Engine, EngineOptions};

const BUDGET: usize = 24 << 20;

fn small_engine(dir: &std::path::Path) -> Engine {
    Engine::open_with(
        dir,
        &EngineOptions {
            memory_limit: BUDGET,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

async fn one_i64(engine: &Engine, sql: &str) -> i64 {
    let batches = engine.sql(sql).await.unwrap();
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    batch.column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_the_budget_spill_or_fail_with_53200_and_the_engine_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let engine = small_engine(dir.path());
    // 3 million groups hold far more than 24 MiB in a hash table: the aggregation spills.
    let groups = one_i64(
        &engine,
        "SELECT count(*) FROM (SELECT value % 3000000 AS k, count(*) AS n \
         FROM generate_series(1, 6000000) GROUP BY value % 3000000) WHERE n = 2",
    )
    .await;
    assert_eq!(groups, 3_000_000);
    // so does a sort of 4 million rows
    let sorted = one_i64(
        &engine,
        "SELECT sum(CASE WHEN rn = 4000001 - value THEN 1 ELSE 0 END) FROM \
         (SELECT value, row_number() OVER (ORDER BY value DESC) AS rn \
          FROM generate_series(1, 4000000))",
    )
    .await;
    assert_eq!(sorted, 4_000_000);
    // a hash join's build side does not spill
    let error = engine
        .sql(
            "SELECT count(*) FROM generate_series(1, 5000000) a \
             JOIN generate_series(1, 5000000) b ON a.value = b.value * 2",
        )
        .await
        .unwrap_err();
    assert_eq!(error.sqlstate(), "53200", "{error}");
    assert_eq!(
        one_i64(&engine, "SELECT count(*) FROM generate_series(1, 10)").await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_larger_than_the_budget_is_refused_with_53200() {
    let dir = tempfile::tempdir().unwrap();
    let engine = small_engine(dir.path());
    engine
        .sql(
            "CREATE TABLE ev (user_id BIGINT, item_id BIGINT);
             INSERT INTO ev SELECT value, value % 1000 FROM generate_series(1, 200000)",
        )
        .await
        .unwrap();
    // 201,000 vectors × 65 floats ≈ 52 MB of factors
    let error = engine
        .sql("TRAIN MODEL m USING als FROM ev WITH (factors = 64, iterations = 1, holdout = 0)")
        .await
        .unwrap_err();
    assert_eq!(error.sqlstate(), "53200", "{error}");
    engine
        .sql("TRAIN MODEL m USING als FROM ev WITH (factors = 4, iterations = 1, holdout = 0)")
        .await
        .unwrap();
}
