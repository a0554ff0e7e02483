//! The embedding API: reopening, streaming, concurrent use, bulk inserts, opening directories
//! that cannot be used, typed outcomes and prepared statements.

use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::{ParamValues, ScalarValue};
use futures::StreamExt;
use std::sync::Arc;
use tastedb::Engine;
use tastedb::engine::{self, Outcome};
use tastedb::sql::notices::Notices;

fn single_i64(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    batch.column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn tables_and_rows_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql("CREATE TABLE items (item_id TEXT PRIMARY KEY, title TEXT NOT NULL, views BIGINT)")
            .await
            .unwrap();
        engine
            .sql("CREATE TABLE log (n BIGINT); INSERT INTO log VALUES (1), (2)")
            .await
            .unwrap();
        engine
            .sql("INSERT INTO items VALUES ('a', 'Alpha', 10), ('b', 'Beta', NULL)")
            .await
            .unwrap();
    }
    let engine = Engine::open(dir.path()).unwrap();
    let rows = engine
        .sql("SELECT item_id, title, views FROM items ORDER BY item_id")
        .await
        .unwrap();
    let text = pretty_format_batches(&rows).unwrap().to_string();
    assert!(text.contains("| a       | Alpha | 10    |"), "{text}");
    assert!(text.contains("| b       | Beta  |       |"), "{text}");
    // the key and the NOT NULL survive too
    let dup = engine
        .sql("INSERT INTO items VALUES ('a', 'Again', 1)")
        .await
        .unwrap_err();
    assert_eq!(dup.sqlstate(), "23505");
    let null = engine
        .sql("INSERT INTO items VALUES ('c', NULL, 1)")
        .await
        .unwrap_err();
    assert_eq!(null.sqlstate(), "23502");
    // row ids continue after the stored ones instead of overwriting them
    engine.sql("INSERT INTO log VALUES (3)").await.unwrap();
    let count = engine.sql("SELECT count(*) FROM log").await.unwrap();
    assert_eq!(single_i64(&count), 3);
}

/// The ids a query returns, in order.
async fn ids(engine: &Engine, sql: &str) -> Vec<i64> {
    let batches = engine.sql(sql).await.unwrap();
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[tokio::test]
async fn secondary_indexes_survive_reopening_and_explain_shows_their_scans() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql(
                "CREATE TABLE ev (id BIGINT, user_id TEXT);
                 INSERT INTO ev SELECT value, 'u' || (value % 100) FROM generate_series(1, 5000);
                 CREATE INDEX ev_user ON ev (user_id);
                 CREATE UNIQUE INDEX ev_id ON ev (id)",
            )
            .await
            .unwrap();
    }
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql("INSERT INTO ev VALUES (5001, 'u7')")
        .await
        .unwrap();
    let found = ids(
        &engine,
        "SELECT id FROM ev WHERE user_id = 'u7' ORDER BY id",
    )
    .await;
    assert_eq!(found.len(), 51);
    assert_eq!((found[0], found[50]), (7, 5001));
    let last = ids(&engine, "SELECT id FROM ev ORDER BY id DESC LIMIT 3").await;
    assert_eq!(last, [5001, 5000, 4999]);
    let duplicate = engine
        .sql("INSERT INTO ev VALUES (7, 'x')")
        .await
        .unwrap_err();
    assert_eq!(duplicate.sqlstate(), "23505");
    for (query, scan) in [
        (
            "SELECT id FROM ev WHERE user_id = 'u7'",
            "index_scan=ev_user, ranges=1",
        ),
        (
            "SELECT id FROM ev WHERE id BETWEEN 10 AND 20",
            "index_scan=ev_id, ranges=1",
        ),
        (
            "SELECT id FROM ev WHERE user_id IN ('u1', 'u2')",
            "index_scan=ev_user, ranges=2",
        ),
        ("SELECT id FROM ev WHERE id + 1 = 5", "full_scan"),
        (
            "SELECT id, user_id FROM ev ORDER BY user_id LIMIT 3",
            "index_order=ev_user, limit=3",
        ),
        (
            "SELECT id FROM ev ORDER BY id DESC LIMIT 5",
            "index_order=ev_id desc, limit=5",
        ),
        // NULLs first in ascending order is not the index's order
        (
            "SELECT id FROM ev ORDER BY id NULLS FIRST LIMIT 5",
            "full_scan",
        ),
    ] {
        let plan = engine.sql(&format!("EXPLAIN {query}")).await.unwrap();
        let text = pretty_format_batches(&plan).unwrap().to_string();
        assert!(text.contains(scan), "{query}: {text}");
    }
}

#[tokio::test]
async fn views_survive_reopening_and_drop_view_forgets_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, x DOUBLE PRECISION); \
                 INSERT INTO t VALUES (1, 1.5), (2, 2.5), (3, 0.5)",
            )
            .await
            .unwrap();
        engine
            .sql("CREATE VIEW big AS SELECT id FROM t WHERE x > 2")
            .await
            .unwrap();
        // stored before the view it reads (names sort so): defined after it at the next start
        engine
            .sql("CREATE VIEW a_scaled AS SELECT id * 10 AS id10 FROM big")
            .await
            .unwrap();
        engine
            .sql("CREATE VIEW gone AS SELECT 1 AS one")
            .await
            .unwrap();
        engine.sql("DROP VIEW gone").await.unwrap();
        engine
            .sql("CREATE OR REPLACE VIEW big AS SELECT id FROM t WHERE x > 1")
            .await
            .unwrap();
    }
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(
        ids(&engine, "SELECT id FROM big ORDER BY id").await,
        vec![1, 2]
    );
    assert_eq!(
        ids(&engine, "SELECT id10 FROM a_scaled ORDER BY id10").await,
        vec![10, 20]
    );
    let gone = engine.sql("SELECT * FROM gone").await.unwrap_err();
    assert_eq!(gone.sqlstate(), "42P01", "{gone}");
    engine.sql("DROP VIEW a_scaled").await.unwrap();
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    let dropped = engine.sql("SELECT * FROM a_scaled").await.unwrap_err();
    assert_eq!(dropped.sqlstate(), "42P01", "{dropped}");
    assert_eq!(
        ids(&engine, "SELECT id FROM big ORDER BY id").await,
        vec![1, 2]
    );
}

#[tokio::test]
async fn storage_parameters_are_accepted_and_ignored_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let (notices, mut received) = Notices::channel();
    let mut statements =
        engine::parse("CREATE TABLE filled (id BIGINT PRIMARY KEY) WITH (fillfactor = 70)")
            .unwrap();
    let outcome = engine
        .execute(statements.remove(0), &notices)
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Done(_)));
    let notice = received.try_recv().expect("a notice");
    assert!(notice.message.contains("fillfactor"), "{}", notice.message);
    assert_eq!(ids(&engine, "SELECT count(*) FROM filled").await, vec![0]);
}

#[tokio::test]
async fn scans_stream_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.sql("CREATE TABLE n (v BIGINT)").await.unwrap();
    engine
        .sql("INSERT INTO n SELECT value FROM generate_series(1, 20000)")
        .await
        .unwrap();
    engine
        .sql("SET datafusion.execution.batch_size = 1000")
        .await
        .unwrap();
    let mut stream = engine.sql_stream("SELECT v FROM n").await.unwrap();
    let mut batches = 0;
    let mut sum = 0i64;
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        assert!(batch.num_rows() <= 1000);
        batches += 1;
        sum += batch
            .column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .sum::<i64>();
    }
    assert!(batches >= 20, "expected many batches, got {batches}");
    assert_eq!(sum, 20000 * 20001 / 2);
}

#[tokio::test]
async fn key_filters_become_point_reads() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql("CREATE TABLE users (user_id TEXT PRIMARY KEY, age INT)")
        .await
        .unwrap();
    let explain = |sql: &str| {
        let engine = engine.clone();
        let sql = format!("EXPLAIN {sql}");
        async move {
            let batches = engine.sql(&sql).await.unwrap();
            pretty_format_batches(&batches).unwrap().to_string()
        }
    };
    let point = explain("SELECT age FROM users WHERE user_id = 'u1'").await;
    assert!(point.contains("point_lookup=1 keys"), "{point}");
    let many = explain("SELECT * FROM users WHERE user_id IN ('a', 'b', 'c')").await;
    assert!(many.contains("point_lookup=3 keys"), "{many}");
    let scan = explain("SELECT * FROM users WHERE age = 3").await;
    assert!(scan.contains("full_scan"), "{scan}");
    let projected = explain("SELECT age FROM users").await;
    assert!(projected.contains("projection=[age]"), "{projected}");
}

#[tokio::test]
async fn an_engine_is_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Engine>();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql("CREATE TABLE hits (task BIGINT, n BIGINT)")
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for n in 0..10 {
                    engine
                        .sql(&format!("INSERT INTO hits VALUES ({task}, {n})"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let count = engine
        .sql("SELECT count(DISTINCT task * 100 + n) FROM hits")
        .await
        .unwrap();
    assert_eq!(single_i64(&count), 80);
}

#[tokio::test]
async fn insert_batches_is_atomic_and_names_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql("CREATE TABLE events (user_id TEXT NOT NULL, weight DOUBLE)")
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("weight", DataType::Float64, true),
    ]));
    let batch = |users: Vec<Option<&str>>, weights: Vec<f64>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(users)),
                Arc::new(Float64Array::from(weights)),
            ],
        )
        .unwrap()
    };
    let good = batch(vec![Some("u1"), Some("u2")], vec![1.0, 2.0]);
    let bad = batch(vec![Some("u3"), None], vec![3.0, 4.0]);
    let error = engine
        .insert_batches("events", vec![good.clone(), bad])
        .await
        .unwrap_err();
    assert_eq!(error.sqlstate(), "23502");
    assert!(error.to_string().contains("(row 4)"), "{error}");
    let inserted = engine.insert_batches("events", vec![good]).await.unwrap();
    assert_eq!(inserted, 2);
    let count = engine.sql("SELECT count(*) FROM events").await.unwrap();
    assert_eq!(single_i64(&count), 2);

    // columns are matched by position and cast; text that is no number is named
    let text_weights = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["u5", "u6"])),
            Arc::new(StringArray::from(vec!["1.5", "lots"])),
        ],
    )
    .unwrap();
    let error = engine
        .insert_batches("events", vec![text_weights])
        .await
        .unwrap_err();
    assert_eq!(error.sqlstate(), "22P02");
    assert!(error.to_string().contains("\"lots\" (row 2)"), "{error}");
    let missing = engine.insert_batches("nope", vec![]).await.unwrap_err();
    assert_eq!(missing.sqlstate(), "42P01");
}

#[tokio::test]
async fn copy_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().join("data")).unwrap();
    let csv = dir.path().join("events.csv");
    std::fs::write(&csv, "user_id,n\nu1,1\nu2,2\nu3,three\nu4,4\n").unwrap();
    engine
        .sql("CREATE TABLE events (user_id TEXT, n BIGINT)")
        .await
        .unwrap();
    let error = engine
        .sql(&format!(
            "COPY events FROM '{}' (FORMAT csv, HEADER true)",
            csv.display()
        ))
        .await
        .unwrap_err();
    assert_eq!(error.sqlstate(), "22P02");
    let message = error.to_string();
    assert!(
        message.contains("three") && message.contains("line"),
        "{message}"
    );
    let count = engine.sql("SELECT count(*) FROM events").await.unwrap();
    assert_eq!(single_i64(&count), 0);
}

#[test]
fn unusable_directories_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // held by another engine (RocksDB's lock is per process and per path)
    let data = dir.path().join("held");
    let _first = Engine::open(&data).unwrap();
    let error = Engine::open(&data).unwrap_err();
    assert_eq!(error.sqlstate(), "55006", "{error}");
    assert!(error.to_string().contains("in use"), "{error}");

    // a directory with other files in it
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let error = Engine::open(&foreign).unwrap_err();
    assert!(
        error.to_string().contains("not a TasteDB data directory"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "mine"
    );

    // a file, not a directory
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let error = Engine::open(&file).unwrap_err();
    assert!(error.to_string().contains("not a directory"), "{error}");

    // a marker of another format version
    let future = dir.path().join("future");
    std::fs::create_dir(&future).unwrap();
    std::fs::write(
        future.join("TASTEDB"),
        "TasteDB data directory, format 99\n",
    )
    .unwrap();
    let error = Engine::open(&future).unwrap_err();
    assert!(error.to_string().contains("format 99"), "{error}");

    // a directory of format 1 opens, and from then on says format 2 (which format-1 builds
    // refuse, as they would misread its append-only tables)
    let older = dir.path().join("older");
    drop(Engine::open(&older).unwrap());
    let marker = older.join("TASTEDB");
    std::fs::write(&marker, "TasteDB data directory, format 1\n").unwrap();
    drop(Engine::open(&older).unwrap());
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "TasteDB data directory, format 2\n"
    );
}

#[tokio::test]
async fn integer_results_keep_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.sql("CREATE TABLE t (a BIGINT)").await.unwrap();
    engine
        .sql("INSERT INTO t VALUES (NULL), (7)")
        .await
        .unwrap();
    let batches = engine.sql("SELECT a FROM t").await.unwrap();
    let column = batches[0].column(0);
    let ints = column.as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(ints.null_count(), 1);
    assert_eq!(ints.value(1), 7);
}

/// Runs the one statement `sql` and returns its typed outcome.
async fn outcome(engine: &Engine, sql: &str) -> tastedb::Result<Outcome> {
    let mut statements = engine::parse(sql)?;
    assert_eq!(statements.len(), 1, "{sql}");
    engine
        .execute(statements.remove(0), &Notices::tracing())
        .await
}

#[tokio::test]
async fn statements_report_typed_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let tag = |outcome: Outcome| match outcome {
        Outcome::Done(tag) => tag.to_string(),
        Outcome::Rows(stream) => panic!("rows {:?} where a tag was expected", stream.schema()),
        Outcome::Batch { rows, .. } => panic!("rows {:?} where a tag was expected", rows.schema()),
        Outcome::Returned { command, .. } => panic!("rows of {command} where a tag was expected"),
    };
    let cases = [
        (
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)",
            "CREATE TABLE",
        ),
        ("INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT 0 2"),
        ("CREATE TABLE u AS SELECT * FROM t", "SELECT 2"),
        ("CREATE VIEW v AS SELECT id FROM t", "CREATE VIEW"),
        ("SET datafusion.execution.batch_size = 1024", "SET"),
        ("CREATE USER ann PASSWORD 'secret'", "CREATE ROLE"),
        ("CREATE USER bob PASSWORD 'secret'", "CREATE ROLE"),
        ("ALTER USER ann PASSWORD 'other'", "ALTER ROLE"),
        ("DROP USER ann", "DROP ROLE"),
        ("DROP VIEW v", "DROP VIEW"),
        ("DROP TABLE u", "DROP TABLE"),
    ];
    for (sql, expected) in cases {
        assert_eq!(tag(outcome(&engine, sql).await.unwrap()), expected, "{sql}");
    }
    // The last role cannot be dropped: nobody could log in any more.
    let last = outcome(&engine, "DROP USER bob").await.unwrap_err();
    assert_eq!(last.sqlstate(), "2BP01");
    // A query's rows come with their schema, also when there are none.
    let Outcome::Rows(stream) = outcome(&engine, "SELECT name FROM t WHERE id > 5")
        .await
        .unwrap()
    else {
        panic!("a query returns rows");
    };
    assert_eq!(stream.schema().field(0).name(), "name");
    let rows: Vec<RecordBatch> = stream.map(|b| b.unwrap()).collect().await;
    assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    // A TasteDB statement that returns rows, and one that does not.
    let shown = outcome(&engine, "SHOW MODELS").await.unwrap();
    assert!(
        matches!(shown, Outcome::Rows(_) | Outcome::Batch { .. }),
        "SHOW MODELS returns rows"
    );
    assert_eq!(
        outcome(&engine, "DROP MODEL IF EXISTS m")
            .await
            .map(tag)
            .unwrap(),
        "DROP MODEL"
    );
}

#[tokio::test]
async fn prepared_statements_run_with_parameters_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT);
             INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')",
        )
        .await
        .unwrap();
    let statement = engine::parse("SELECT name FROM t WHERE id = $1")
        .unwrap()
        .remove(0);
    let prepared = engine.prepare(statement).await.unwrap();
    assert_eq!(prepared.parameter_types(), [DataType::Int64]);
    assert_eq!(prepared.rows_schema().unwrap().field(0).name(), "name");
    for (id, expected) in [(2, Some("two")), (3, Some("three")), (9, None)] {
        let values = ParamValues::List(vec![ScalarValue::Int64(Some(id)).into()]);
        let outcome = engine
            .execute_prepared(&prepared, values, &Notices::tracing())
            .await
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Rows(_) | Outcome::Batch { .. }),
            "a query returns rows"
        );
        let stream = outcome.into_stream().unwrap();
        let batches: Vec<RecordBatch> = stream.map(|b| b.unwrap()).collect().await;
        let names: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| column.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(names, expected.into_iter().collect::<Vec<_>>(), "id {id}");
    }
    // A table dropped and created again since preparation: planned again, never stale.
    engine
        .sql("DROP TABLE t; CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT); INSERT INTO t VALUES (2, 'new')")
        .await
        .unwrap();
    let values = ParamValues::List(vec![ScalarValue::Int64(Some(2)).into()]);
    let outcome = engine
        .execute_prepared(&prepared, values, &Notices::tracing())
        .await
        .unwrap();
    let batches: Vec<RecordBatch> = outcome
        .into_stream()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
        .await;
    assert_eq!(batches[0].column(0).as_string::<i32>().value(0), "new");
}
