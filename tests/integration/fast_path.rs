//! Fast paths against the general path: the same random point reads, UPDATEs, DELETEs and
//! INSERTs (with NULLs, values of other types, duplicate keys, moved keys, in and out of
//! transaction blocks), prepared or written with their values, run on two engines, one with
//! `tastedb.fast_path` off; every outcome, error and final row agrees. Statements written
//! with their values share one preparation per shape (`tastedb_statement_shapes`), and once
//! one is known, the others of its text but for their literals are read by its template
//! without being parsed.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::{ParamValues, ScalarValue};
use futures::TryStreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tastedb::Engine;
use tastedb::engine::transaction::within;
use tastedb::engine::{self, Outcome, Prepared, Spoken, Template};
use tastedb::sql::notices::Notices;
use tastedb::storage::Transaction;

const SCHEMA: &str =
    "CREATE TABLE acct (id INT PRIMARY KEY, balance INT NOT NULL, label TEXT UNIQUE, note TEXT);
    CREATE INDEX acct_balance ON acct (balance);
    CREATE TABLE hist (id INT, delta INT, at TIMESTAMP)";

/// The statements, the fast path each should take, and how to draw its parameters.
const STATEMENTS: [(&str, &str); 7] = [
    (
        "UPDATE acct SET balance = balance + $1 WHERE id = $2",
        "point write",
    ),
    (
        "UPDATE acct SET label = $1, note = upper($2) WHERE id = $3",
        "point write",
    ),
    ("UPDATE acct SET id = $1 WHERE id = $2", "point write"),
    ("DELETE FROM acct WHERE id = $1", "point write"),
    (
        "INSERT INTO acct (id, balance, label) VALUES ($1, $2, $3)",
        "point write",
    ),
    (
        "INSERT INTO hist (id, delta, at) VALUES ($1, $2, CURRENT_TIMESTAMP)",
        "point write",
    ),
    (
        "SELECT balance, label, note FROM acct WHERE id = $1",
        "point read",
    ),
];

fn id(rng: &mut StdRng) -> ScalarValue {
    match rng.random_range(0..20) {
        0 => ScalarValue::Int32(None),
        // a value of another type: cast when nothing is lost, the general path otherwise
        1 => ScalarValue::Int64(Some(rng.random_range(0..30))),
        2 => ScalarValue::Int64(Some(5_000_000_000)),
        _ => ScalarValue::Int32(Some(rng.random_range(0..30))),
    }
}

fn amount(rng: &mut StdRng) -> ScalarValue {
    match rng.random_range(0..15) {
        0 => ScalarValue::Int32(None),
        1 => ScalarValue::Int32(Some(i32::MAX)),
        _ => ScalarValue::Int32(Some(rng.random_range(-50..50))),
    }
}

fn label(rng: &mut StdRng) -> ScalarValue {
    match rng.random_range(0..6) {
        0 => ScalarValue::Utf8(None),
        _ => ScalarValue::Utf8(Some(format!("l{}", rng.random_range(0..25)))),
    }
}

fn parameters(statement: usize, rng: &mut StdRng) -> Vec<ScalarValue> {
    match statement {
        0 => vec![amount(rng), id(rng)],
        1 => vec![label(rng), label(rng), id(rng)],
        2 => vec![id(rng), id(rng)],
        3 | 6 => vec![id(rng)],
        4 => vec![id(rng), amount(rng), label(rng)],
        _ => vec![id(rng), amount(rng)],
    }
}

/// `sql` with its parameters replaced by `values` as literals.
fn written(sql: &str, values: &[ScalarValue]) -> String {
    let mut sql = sql.to_string();
    for (i, value) in values.iter().enumerate().rev() {
        let literal = match value {
            ScalarValue::Int32(Some(n)) => n.to_string(),
            ScalarValue::Int64(Some(n)) => n.to_string(),
            ScalarValue::Utf8(Some(s)) => format!("'{s}'"),
            _ => "NULL".to_string(),
        };
        sql = sql.replace(&format!("${}", i + 1), &literal);
    }
    sql
}

/// An outcome (or error) as text that two engines must agree on.
async fn result(outcome: tastedb::Result<Outcome>) -> String {
    match outcome {
        Ok(outcome @ (Outcome::Rows(_) | Outcome::Batch { .. })) => {
            let stream = outcome.into_stream().unwrap();
            let schema = stream.schema();
            let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
            let rows: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
            format!("{schema:?}\n{}", pretty_format_batches(&rows).unwrap())
        }
        Ok(Outcome::Done(tag)) => tag.to_string(),
        Ok(other) => format!("{other:?}"),
        Err(error) => format!("error {}", error.sqlstate()),
    }
}

struct Side {
    engine: Engine,
    prepared: Vec<Prepared>,
    txn: Option<Arc<Transaction>>,
    /// Templates of the statements written with their values, by their keys.
    templates: Mutex<HashMap<String, Template>>,
}

impl Side {
    async fn new(fast: bool) -> (Side, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        engine.sql(SCHEMA).await.unwrap();
        if !fast {
            engine.sql("SET tastedb.fast_path = false").await.unwrap();
        }
        let mut prepared = Vec::new();
        for (sql, _) in STATEMENTS {
            let statement = engine::parse(sql).unwrap().remove(0);
            prepared.push(engine.prepare(statement).await.unwrap());
        }
        let side = Side {
            engine,
            prepared,
            txn: None,
            templates: Mutex::default(),
        };
        (side, dir)
    }

    async fn run(&self, statement: usize, values: &[ScalarValue]) -> String {
        let values = ParamValues::List(values.iter().cloned().map(Into::into).collect());
        let notices = Notices::tracing();
        let run = self
            .engine
            .execute_prepared(&self.prepared[statement], values, &notices);
        match &self.txn {
            Some(txn) => result(within(txn.clone(), run).await).await,
            None => result(run.await).await,
        }
    }

    /// Runs the statement written with `values` (as the simple query protocol sends it).
    async fn run_written(&self, statement: usize, values: &[ScalarValue]) -> String {
        let sql = written(STATEMENTS[statement].0, values);
        let statement = engine::parse(&sql).unwrap().remove(0);
        let notices = Notices::tracing();
        let run = self.engine.execute(statement, &notices);
        match &self.txn {
            Some(txn) => result(within(txn.clone(), run).await).await,
            None => result(run.await).await,
        }
    }

    /// Runs the statement written with `values`, read by the template of its key when one
    /// is known (as `tastedb serve` reads simple-protocol queries), parsed otherwise (and its
    /// template learned).
    async fn run_spoken(&self, statement: usize, values: &[ScalarValue]) -> (String, bool) {
        let sql = written(STATEMENTS[statement].0, values);
        let spoken = Spoken::read(&sql).unwrap();
        let key = spoken.key().to_string();
        let known = (self.templates.lock().unwrap().get(&key))
            .and_then(|template| template.read(&sql, &spoken));
        let read = known.is_some();
        let statement = match known {
            Some(shaped) => shaped.statement(),
            None => {
                let statement = engine::parse(&sql).unwrap().remove(0);
                if let Some(template) = Template::learn(&spoken, statement.sql().unwrap()) {
                    self.templates.lock().unwrap().insert(key, template);
                }
                statement
            }
        };
        let notices = Notices::tracing();
        let run = self.engine.execute(statement, &notices);
        let answer = match &self.txn {
            Some(txn) => result(within(txn.clone(), run).await).await,
            None => result(run.await).await,
        };
        (answer, read)
    }

    async fn rows(&self) -> String {
        let sql = "SELECT * FROM acct ORDER BY id; SELECT id, delta, at IS NOT NULL AS timed FROM hist ORDER BY id, delta";
        let query = self.engine.sql(sql);
        let batches = match &self.txn {
            Some(txn) => within(txn.clone(), query).await.unwrap(),
            None => query.await.unwrap(),
        };
        let by_index = self
            .engine
            .sql("SELECT id FROM acct WHERE balance BETWEEN -20 AND 20 ORDER BY id")
            .await
            .unwrap();
        format!(
            "{}\n{}",
            pretty_format_batches(&batches).unwrap(),
            pretty_format_batches(&by_index).unwrap()
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_paths_agree_with_planning_every_execution() {
    let (fast, _fast_dir) = Side::new(true).await;
    let (mut planned, _planned_dir) = Side::new(false).await;
    let mut fast = fast;
    for (prepared, (sql, kind)) in fast.prepared.iter().zip(STATEMENTS) {
        assert_eq!(prepared.fast_path(), Some(kind), "{sql}");
    }
    let mut rng = StdRng::seed_from_u64(17);
    let mut read_by_template = 0;
    for step in 0..900 {
        if fast.txn.is_none() && rng.random_range(0..25) == 0 {
            fast.txn = Some(fast.engine.begin());
            planned.txn = Some(planned.engine.begin());
        } else if fast.txn.is_some() && rng.random_range(0..6) == 0 {
            let (a, b) = (fast.txn.take().unwrap(), planned.txn.take().unwrap());
            if rng.random_range(0..3) > 0 {
                a.commit().unwrap();
                b.commit().unwrap();
            }
        }
        let statement = rng.random_range(0..STATEMENTS.len());
        let values = parameters(statement, &mut rng);
        let (a, b) = match rng.random_range(0..3) {
            0 => (
                fast.run(statement, &values).await,
                planned.run(statement, &values).await,
            ),
            1 => (
                fast.run_written(statement, &values).await,
                planned.run_written(statement, &values).await,
            ),
            _ => {
                let (a, read) = fast.run_spoken(statement, &values).await;
                read_by_template += usize::from(read);
                (a, planned.run_written(statement, &values).await)
            }
        };
        assert_eq!(
            a, b,
            "step {step}: {} with {values:?}",
            STATEMENTS[statement].0
        );
        if step % 50 == 0 {
            assert_eq!(
                fast.rows().await,
                planned.rows().await,
                "rows after step {step}"
            );
        }
    }
    for side in [&mut fast, &mut planned] {
        if let Some(txn) = side.txn.take() {
            txn.commit().unwrap();
        }
    }
    let rows = fast.rows().await;
    assert_eq!(rows, planned.rows().await);
    assert!(rows.lines().count() > 20, "the table kept rows:\n{rows}");
    assert!(
        read_by_template > 100,
        "{read_by_template} statements read by a template"
    );
}

#[tokio::test]
async fn other_shapes_take_the_general_path() {
    let (side, _dir) = Side::new(true).await;
    for sql in [
        "UPDATE acct SET balance = $1 WHERE balance = $2",
        "UPDATE acct SET balance = $1 WHERE id = $2 RETURNING id",
        "UPDATE acct SET note = random()::text WHERE id = $1",
        "DELETE FROM acct WHERE id = $1 OR id = $2",
        "INSERT INTO acct (id, balance) VALUES ($1, 1), ($2, 2)",
        "INSERT INTO acct (id, balance) SELECT $1, 1",
        "SELECT balance FROM acct WHERE id = $1 AND balance > 0",
    ] {
        let statement = engine::parse(sql).unwrap().remove(0);
        let prepared = side.engine.prepare(statement).await.unwrap();
        assert_eq!(prepared.fast_path(), None, "{sql}");
    }
}

#[tokio::test]
async fn statements_written_with_values_share_one_preparation_per_shape() {
    let (side, _dir) = Side::new(true).await;
    let engine = &side.engine;
    engine
        .sql("INSERT INTO acct VALUES (1, 10, 'a', NULL); INSERT INTO acct VALUES (2, 20, 'b', NULL)")
        .await
        .unwrap();
    for (delta, id) in [(5, 1), (-3, 2), (7, 1)] {
        let sql = format!("UPDATE acct SET balance = balance + {delta} WHERE id = {id}");
        engine.sql(&sql).await.unwrap();
    }
    // a string for an INT key is read as one, as PostgreSQL reads an untyped literal
    engine
        .sql("UPDATE acct SET balance = balance + 100 WHERE id = '2'")
        .await
        .unwrap();
    // values that do not fit the parameters' types run as written, with their own answers
    engine
        .sql("UPDATE acct SET balance = balance + 1 WHERE id = 5000000000")
        .await
        .unwrap();
    let error = engine
        .sql("UPDATE acct SET balance = balance + 1 WHERE id = 'x'")
        .await
        .unwrap_err();
    assert_eq!(error.sqlstate(), "22P02", "{error}");
    let rows = engine
        .sql("SELECT id, balance FROM acct ORDER BY id")
        .await
        .unwrap();
    let rows = pretty_format_batches(&rows).unwrap().to_string();
    assert!(
        rows.contains("| 1  | 22      |") && rows.contains("| 2  | 117     |"),
        "{rows}"
    );
    let shapes = engine
        .sql("SELECT shape, fast_path, executions FROM tastedb_statement_shapes WHERE shape LIKE 'UPDATE%'")
        .await
        .unwrap();
    let shapes = pretty_format_batches(&shapes).unwrap().to_string();
    assert!(
        shapes.contains(
            "| UPDATE acct SET balance = balance + $1 WHERE id = $2 | point write | 4          |"
        ),
        "{shapes}"
    );
    // a statement with no fast path is remembered as such, and planned as written
    engine
        .sql("UPDATE acct SET balance = 0 WHERE note = 'n'")
        .await
        .unwrap();
    let shapes = engine
        .sql("SELECT fast_path, executions FROM tastedb_statement_shapes WHERE shape LIKE '%note = $2'")
        .await
        .unwrap();
    let shapes = pretty_format_batches(&shapes).unwrap().to_string();
    assert!(shapes.contains("|           | 0          |"), "{shapes}");
}

#[tokio::test]
async fn prepared_rankings_answer_as_the_planned_query_does() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql(
            "CREATE TABLE events (user_id BIGINT, item_id BIGINT, weight DOUBLE);
             INSERT INTO events SELECT u, CASE WHEN u <= 10 THEN i ELSE i + 5 END, 1.0
             FROM generate_series(1, 20) AS users(u) CROSS JOIN generate_series(1, 5) AS items(i)
             WHERE i <> u % 5 + 1;
             TRAIN MODEL recs USING als FROM events WITH (factors = 4, iterations = 6, seed = 7, holdout = 0)",
        )
        .await
        .unwrap();
    let prepare = |sql: &str| {
        let statement = engine::parse(sql).unwrap().remove(0);
        engine.prepare(statement)
    };
    let recommend = prepare("SELECT item_id, score FROM recommend('recs', $1, $2) AS r")
        .await
        .unwrap();
    let similar = prepare("SELECT rank, item_id FROM similar_items('recs', $1, 3)")
        .await
        .unwrap();
    // arguments that are constant once the parameters are bound
    let computed = prepare("SELECT item_id, score FROM recommend('recs', $1 + 1, $2 * 2) AS r")
        .await
        .unwrap();
    assert_eq!(recommend.fast_path(), Some("table function"));
    assert_eq!(computed.fast_path(), Some("table function"));
    assert_eq!(similar.fast_path(), Some("table function"));
    let filtered = prepare(
        "SELECT item_id FROM recommend('recs', $1, 3, filter => (SELECT item_id FROM events WHERE item_id > 2))",
    )
    .await
    .unwrap();
    assert_eq!(filtered.fast_path(), None);
    let run = |prepared: &Prepared, values: Vec<ScalarValue>| {
        let values = ParamValues::List(values.into_iter().map(Into::into).collect());
        let notices = Notices::tracing();
        let prepared = prepared.clone();
        let engine = engine.clone();
        async move { result(engine.execute_prepared(&prepared, values, &notices).await).await }
    };
    let planned = |sql: String| {
        let engine = engine.clone();
        async move {
            let statement = engine::parse(&sql).unwrap().remove(0);
            result(engine.execute(statement, &Notices::tracing()).await).await
        }
    };
    for round in 0..2 {
        for user in [1, 7, 15, 99] {
            let fast = run(
                &recommend,
                vec![ScalarValue::Int64(Some(user)), ScalarValue::Int64(Some(4))],
            )
            .await;
            let sql = format!("SELECT item_id, score FROM recommend('recs', {user}, 4) AS r");
            assert_eq!(fast, planned(sql).await, "round {round}, user {user}");
            assert!(fast.contains("item_id"), "{fast}");
            let values = vec![
                ScalarValue::Int64(Some(user - 1)),
                ScalarValue::Int64(Some(2)),
            ];
            assert_eq!(run(&computed, values).await, fast, "user {user} computed");
        }
        let fast = run(&similar, vec![ScalarValue::Int64(Some(2))]).await;
        let sql = "SELECT rank, item_id FROM similar_items('recs', 2, 3)".to_string();
        assert_eq!(fast, planned(sql).await);
        // what a user does next counts on both paths alike
        engine
            .sql("INSERT INTO events VALUES (1, 9, 5.0), (7, 2, 5.0)")
            .await
            .unwrap();
    }
    let error = run(
        &recommend,
        vec![ScalarValue::Int64(Some(1)), ScalarValue::Int64(Some(-1))],
    )
    .await;
    let sql = "SELECT item_id, score FROM recommend('recs', 1, -1) AS r".to_string();
    assert_eq!(error, planned(sql).await);
    assert!(error.starts_with("error"), "{error}");
}

/// `online_features` and `nearest` read when their statement runs: prepared with `$n` keys,
/// query vectors and k, they take the serving fast path, answer as the planned query with the
/// values written in, and each execution sees the rows written since the one before.
#[tokio::test]
async fn prepared_feature_lookups_and_vector_searches_read_at_each_execution() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql(
            "CREATE TABLE events (user_id TEXT, ts TIMESTAMP);
             INSERT INTO events VALUES ('a', '2026-01-01 00:00:00'), ('a', '2026-01-02 00:00:00'),
                                       ('b', '2026-01-03 00:00:00');
             CREATE FEATURE VIEW activity ENTITY (user_id) TIMESTAMP ts AS
               SELECT user_id, max(ts) AS ts, count(*) AS events FROM events GROUP BY user_id;
             MATERIALIZE FEATURE VIEW activity;
             CREATE TABLE docs (id INT PRIMARY KEY, title TEXT, embedding REAL[2]);
             INSERT INTO docs VALUES (1, 'east', [1.0, 0.0]), (2, 'north', [0.0, 1.0]),
                                     (3, 'north-east', [0.7, 0.7]);
             CREATE INDEX docs_embedding ON docs USING hnsw (embedding)",
        )
        .await
        .unwrap();
    let prepare = |sql: &str| {
        let statement = engine::parse(sql).unwrap().remove(0);
        engine.prepare(statement)
    };
    let features = prepare("SELECT user_id, events FROM online_features('activity', $1, 'b')")
        .await
        .unwrap();
    let nearest = prepare("SELECT id, title FROM nearest('docs', 'embedding', $1, $2)")
        .await
        .unwrap();
    assert_eq!(features.fast_path(), Some("table function"));
    assert_eq!(nearest.fast_path(), Some("table function"));
    let run = |prepared: &Prepared, values: Vec<ScalarValue>| {
        let values = ParamValues::List(values.into_iter().map(Into::into).collect());
        let prepared = prepared.clone();
        let engine = engine.clone();
        async move {
            let notices = Notices::tracing();
            result(engine.execute_prepared(&prepared, values, &notices).await).await
        }
    };
    let planned = |sql: &str| {
        let statement = engine::parse(sql).unwrap().remove(0);
        let engine = engine.clone();
        async move { result(engine.execute(statement, &Notices::tracing()).await).await }
    };
    let text = |s: &str| ScalarValue::Utf8(Some(s.into()));
    for round in 0..2 {
        let fast = run(&features, vec![text("a")]).await;
        let sql = "SELECT user_id, events FROM online_features('activity', 'a', 'b')";
        assert_eq!(fast, planned(sql).await, "round {round}");
        let events = if round == 0 {
            "| a       | 2      |"
        } else {
            "| a       | 3      |"
        };
        assert!(fast.contains(events), "round {round}: {fast}");
        let fast = run(
            &nearest,
            vec![text("[0.1, 0.9]"), ScalarValue::Int64(Some(2))],
        )
        .await;
        let sql = "SELECT id, title FROM nearest('docs', 'embedding', '[0.1, 0.9]', 2)";
        assert_eq!(fast, planned(sql).await, "round {round}");
        let first = if round == 0 {
            "| 2  | north "
        } else {
            "| 4  | almost north "
        };
        assert!(fast.contains(first), "round {round}: {fast}");
        // what is written next is read by the next execution of the same preparation
        let doc = match round {
            0 => "(4, 'almost north', [0.1, 0.9])",
            _ => "(5, 'south', [0.0, -1.0])",
        };
        engine
            .sql(&format!(
                "INSERT INTO events VALUES ('a', '2026-01-0{} 00:00:00');
                 MATERIALIZE FEATURE VIEW activity;
                 INSERT INTO docs VALUES {doc}",
                round + 4
            ))
            .await
            .unwrap();
    }
    // an unknown key has NULL features on both paths; a bad k is the same error on both
    let fast = run(&features, vec![text("nobody")]).await;
    let sql = "SELECT user_id, events FROM online_features('activity', 'nobody', 'b')";
    assert_eq!(fast, planned(sql).await);
    let error = run(
        &nearest,
        vec![text("[0.1, 0.9]"), ScalarValue::Int64(Some(0))],
    )
    .await;
    let sql = "SELECT id, title FROM nearest('docs', 'embedding', '[0.1, 0.9]', 0)";
    assert_eq!(error, planned(sql).await);
    assert!(error.starts_with("error 22023"), "{error}");
}

#[tokio::test]
async fn an_engine_that_took_fast_paths_lets_go_of_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let engine = Engine::open(dir.path()).unwrap();
        if round == 0 {
            engine.sql(SCHEMA).await.unwrap();
        }
        engine
            .sql(&format!(
                "INSERT INTO acct (id, balance) VALUES ({round}, 1);
                 UPDATE acct SET balance = balance + 1 WHERE id = {round};
                 SELECT balance FROM acct WHERE id = {round}"
            ))
            .await
            .unwrap();
        let statement = engine::parse("DELETE FROM acct WHERE id = $1")
            .unwrap()
            .remove(0);
        let prepared = engine.prepare(statement).await.unwrap();
        assert_eq!(prepared.fast_path(), Some("point write"));
        drop(prepared);
        drop(engine);
    }
    let engine = Engine::open(dir.path()).unwrap();
    let rows = engine.sql("SELECT count(*) FROM acct").await.unwrap();
    let rows = pretty_format_batches(&rows).unwrap().to_string();
    assert!(rows.contains("| 2 "), "{rows}");
}
