//! Backups: `BACKUP TO 'dir'` from the open engine (online), incremental backups in one
//! directory, and `storage::backup::restore` (what `tastedb restore` runs) giving a data
//! directory with every table, model version, index, feature view and role of the backup's
//! moment; only superusers back up.

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use tastedb::Engine;
use tastedb::storage::backup;

fn first_i64(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    batch.column(0).as_primitive::<Int64Type>().value(0)
}

async fn count(engine: &Engine, sql: &str) -> i64 {
    first_i64(&engine.sql(sql).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_has_everything_of_its_moment() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let engine = Engine::open(&data).unwrap();
    engine
        .sql(
            "CREATE TABLE ev (user_id BIGINT, item_id BIGINT, ts TIMESTAMP);
             INSERT INTO ev SELECT value % 40, value % 23, CAST(now() AS TIMESTAMP)
                 FROM generate_series(1, 400);
             CREATE TABLE docs (id BIGINT PRIMARY KEY, v REAL[2]);
             INSERT INTO docs VALUES (1, '[0.1, 0.9]'), (2, '[0.8, 0.2]');
             CREATE INDEX docs_v ON docs USING hnsw (v);
             TRAIN MODEL m USING als FROM ev WITH (factors = 4, iterations = 2, holdout = 0);
             CREATE FEATURE VIEW fv ENTITY (user_id) TIMESTAMP last AS
                 SELECT user_id, max(ts) AS last FROM ev GROUP BY user_id;
             MATERIALIZE FEATURE VIEW fv;
             CREATE USER bob PASSWORD 'bob';",
        )
        .await
        .unwrap();
    let query = format!("BACKUP TO '{}'", backups.display());
    let first = engine.sql(&query).await.unwrap();
    assert_eq!(first_i64(&first), 1);
    // what happens after the backup is in the next one only
    engine
        .sql(
            "INSERT INTO ev VALUES (999, 1, CAST(now() AS TIMESTAMP));
             TRAIN MODEL m USING als FROM ev WITH (factors = 4, iterations = 2, holdout = 0);",
        )
        .await
        .unwrap();
    assert_eq!(first_i64(&engine.sql(&query).await.unwrap()), 2);
    let listed = backup::list(&backups).unwrap();
    assert_eq!(listed.iter().map(|b| b.id).collect::<Vec<_>>(), [1, 2]);

    // only superusers back up
    let error = engine.sql_as("bob", &query).await.unwrap_err();
    assert_eq!(error.sqlstate(), "42501");

    let restored = dir.path().join("restored-1");
    assert_eq!(backup::restore(&backups, &restored, Some(1)).unwrap().id, 1);
    let old = Engine::open(&restored).unwrap();
    assert_eq!(count(&old, "SELECT count(*) FROM ev").await, 400);
    assert_eq!(
        count(
            &old,
            "SELECT count(*) FROM tastedb_model_versions WHERE model = 'm'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&old, "SELECT count(*) FROM recommend('m', 3, 5)").await,
        5
    );
    assert_eq!(
        count(&old, "SELECT count(*) FROM online_features('fv', 1, 2, 3)").await,
        3
    );
    assert_eq!(
        count(&old, "SELECT id FROM nearest('docs', 'v', [0.9, 0.1], 1)").await,
        2
    );
    assert_eq!(
        count(
            &old,
            "SELECT count(*) FROM tastedb_indexes WHERE name = 'docs_v'"
        )
        .await,
        1
    );
    assert!(old.users().get("bob").unwrap().unwrap().has_password());

    let latest = dir.path().join("restored-latest");
    assert_eq!(backup::restore(&backups, &latest, None).unwrap().id, 2);
    let new = Engine::open(&latest).unwrap();
    assert_eq!(count(&new, "SELECT count(*) FROM ev").await, 401);
    assert_eq!(
        count(
            &new,
            "SELECT count(*) FROM tastedb_model_versions WHERE model = 'm'"
        )
        .await,
        2
    );

    // a restore never writes over a directory in use or with anything in it
    let error = backup::restore(&backups, &latest, None).unwrap_err();
    assert_eq!(error.sqlstate(), "22023", "{error}");
    let error =
        backup::restore(&dir.path().join("nothing"), &dir.path().join("x"), None).unwrap_err();
    assert_eq!(error.sqlstate(), "22023", "{error}");
}
