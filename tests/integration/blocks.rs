//! Append-only tables (`tastedb_impressions`, stored one block of rows per statement): every
//! read sees their rows as it sees an ordinary table's — scans, filters, limits, row keys,
//! after a restart (row ids never reused), under retention and VACUUM, in transaction blocks
//! (savepoints, statements too large for memory), to live models, incremental feature views
//! and backups — while UPDATE, DELETE, indexes and rewriting ALTERs answer 0A000.

use crate::common::{connect, query, rows, start_in};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use std::sync::Arc;
use tastedb::Engine;
use tastedb::storage::backup;

const TABLE: &str = "tastedb_impressions";

async fn one(engine: &Engine, sql: &str) -> String {
    query(engine, sql).await[0][0].clone()
}

/// Impressions `first..first + n`: user `u{n % 7}`, item `i{n}`, rank n, `shown_at` now minus
/// `age` (an SQL interval).
fn inserted(first: i64, n: i64, age: &str) -> String {
    format!(
        "INSERT INTO {TABLE} SELECT 'r' || g, NULL, 'active', 'm', 1, 'u' || (g % 7), 'i' || g, \
         g, g * 0.5, 1.0, CAST(now() AS TIMESTAMP) - INTERVAL '{age}' \
         FROM generate_series({first}, {}) AS t(g)",
        first + n - 1
    )
}

/// One batch of `n` impressions of user `user`, ranks from `first`, shown now.
fn batch(user: &str, first: i64, n: usize) -> RecordBatch {
    let text = |value: &str| Arc::new(StringArray::from(vec![value; n])) as ArrayRef;
    let ranks: Vec<i64> = (first..first + n as i64).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    RecordBatch::try_from_iter(vec![
        ("request_id", text("big")),
        (
            "experiment",
            Arc::new(StringArray::from(vec![None::<&str>; n])) as ArrayRef,
        ),
        ("arm", text("active")),
        ("model", text("m")),
        (
            "version",
            Arc::new(Int64Array::from(vec![1; n])) as ArrayRef,
        ),
        ("user_id", text(user)),
        (
            "item_id",
            Arc::new(StringArray::from_iter_values(
                ranks.iter().map(|r| format!("i{r}")),
            )) as ArrayRef,
        ),
        ("rank", Arc::new(Int64Array::from(ranks)) as ArrayRef),
        (
            "score",
            Arc::new(Float64Array::from(vec![0.5; n])) as ArrayRef,
        ),
        (
            "propensity",
            Arc::new(Float64Array::from(vec![1.0; n])) as ArrayRef,
        ),
        (
            "shown_at",
            Arc::new(TimestampMicrosecondArray::from(vec![now; n])) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// The row ids (`ctid`) of the table, in order.
async fn row_ids(engine: &Engine) -> Vec<String> {
    let sql = format!("SELECT ctid FROM tastedb_row_keys('{TABLE}')");
    query(engine, &sql)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[tokio::test]
async fn blocks_read_like_rows_and_keep_their_row_ids_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine.impressions().table().unwrap();
        for (first, n) in [(1, 100), (101, 5), (106, 1)] {
            engine.sql(&inserted(first, n, "1 minute")).await.unwrap();
        }
        // one batch larger than a block (16,384 rows) becomes several blocks
        (engine.insert_batches(TABLE, vec![batch("big", 1_000, 40_000)]))
            .await
            .unwrap();
        let count = format!("SELECT count(*), sum(rank), count(DISTINCT rank) FROM {TABLE}");
        let sum: i64 = (1..=106).sum::<i64>() + (1_000..41_000).sum::<i64>();
        assert_eq!(
            query(&engine, &count).await,
            [["40106".to_string(), sum.to_string(), "40106".to_string()]]
        );
        let filtered = format!(
            "SELECT rank, item_id FROM {TABLE} WHERE user_id = 'u3' AND rank < 30 ORDER BY rank"
        );
        assert_eq!(
            query(&engine, &filtered).await,
            [["3", "i3"], ["10", "i10"], ["17", "i17"], ["24", "i24"]]
        );
        // in storage order, a limit stops inside the first block
        let first = format!("SELECT rank FROM {TABLE} LIMIT 2");
        assert_eq!(query(&engine, &first).await, [["1"], ["2"]]);
        let boundary = format!("SELECT rank FROM {TABLE} WHERE rank IN (17383, 17384, 17385)");
        assert_eq!(query(&engine, &boundary).await.len(), 3);
        let ids = row_ids(&engine).await;
        assert_eq!(ids.len(), 40_106);
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len(), "every row has its own row id");
    }
    // after a restart, new rows get new ids: none of an earlier block's is used again
    let engine = Engine::open(dir.path()).unwrap();
    let before = row_ids(&engine).await;
    engine.sql(&inserted(200, 3, "1 minute")).await.unwrap();
    let mut after = row_ids(&engine).await;
    assert_eq!(after.len(), before.len() + 3);
    after.sort();
    after.dedup();
    assert_eq!(after.len(), before.len() + 3);
    let newest = format!("SELECT rank FROM tastedb_row_keys('{TABLE}') ORDER BY ctid DESC LIMIT 1");
    assert_eq!(one(&engine, &newest).await, "202");
}

#[tokio::test]
async fn rows_of_blocks_cannot_change_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.impressions().table().unwrap();
    engine.sql(&inserted(1, 10, "1 minute")).await.unwrap();
    for sql in [
        format!("UPDATE {TABLE} SET rank = 0"),
        format!("UPDATE {TABLE} SET rank = 0 WHERE rank = 1 RETURNING rank"),
        format!("DELETE FROM {TABLE}"),
        format!("DELETE FROM {TABLE} WHERE rank = 1 RETURNING rank"),
        format!("CREATE INDEX by_user ON {TABLE} (user_id)"),
        format!("ALTER TABLE {TABLE} ADD UNIQUE (request_id, rank)"),
        format!("ALTER TABLE {TABLE} ADD COLUMN note TEXT"),
        format!("ALTER TABLE {TABLE} DROP COLUMN score"),
        format!("ALTER TABLE {TABLE} ADD PRIMARY KEY (request_id, rank)"),
    ] {
        let error = engine.sql(&sql).await.expect_err(&sql);
        assert_eq!(error.sqlstate(), "0A000", "{sql}: {error}");
    }
    let count = format!("SELECT count(*), sum(rank) FROM {TABLE}");
    assert_eq!(query(&engine, &count).await, [["10", "55"]]);
    // appending, renaming and emptying work
    let returned = format!(
        "INSERT INTO {TABLE} VALUES ('x', NULL, 'active', 'm', 1, 'u', 'i', 11, 0.1, 1.0, \
         CAST(now() AS TIMESTAMP)) RETURNING rank, item_id"
    );
    assert_eq!(query(&engine, &returned).await, [["11", "i"]]);
    for sql in [
        format!("ALTER TABLE {TABLE} RENAME COLUMN rank TO position"),
        format!("ALTER TABLE {TABLE} SET (ttl = '3650 days')"),
    ] {
        engine.sql(&sql).await.unwrap();
    }
    let renamed = format!("SELECT sum(position) FROM {TABLE}");
    assert_eq!(one(&engine, &renamed).await, "66");
    engine.sql(&format!("TRUNCATE {TABLE}")).await.unwrap();
    assert_eq!(
        one(&engine, &format!("SELECT count(*) FROM {TABLE}")).await,
        "0"
    );
    engine.sql(&inserted(1, 4, "1 minute")).await.unwrap();
    assert_eq!(one(&engine, &renamed).await, "10");
}

#[tokio::test]
async fn expired_rows_are_never_read_and_vacuum_keeps_the_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.impressions().table().unwrap();
    // one block all expired (the ttl is 30 days), one mixing expired and live rows
    engine.sql(&inserted(1, 50, "40 days")).await.unwrap();
    let mixed = format!(
        "INSERT INTO {TABLE} SELECT 'r', NULL, 'active', 'm', 1, 'u', 'i', g, 0.0, 1.0, \
         CAST(now() AS TIMESTAMP) - CASE WHEN g % 2 = 0 THEN INTERVAL '40 days' \
         ELSE INTERVAL '1 day' END FROM generate_series(100, 109) AS t(g)"
    );
    engine.sql(&mixed).await.unwrap();
    engine.sql(&inserted(200, 5, "2 days")).await.unwrap();
    let live = format!("SELECT count(*), sum(rank) FROM {TABLE}");
    let expected = [[
        "10".to_string(),
        (101 + 103 + 105 + 107 + 109 + 1010).to_string(),
    ]];
    assert_eq!(query(&engine, &live).await, expected);
    engine.sql(&format!("VACUUM {TABLE}")).await.unwrap();
    assert_eq!(query(&engine, &live).await, expected);
    let ids = row_ids(&engine).await;
    assert_eq!(ids.len(), 10);
    // a shorter ttl hides more at once; no row comes back when it grows again
    engine
        .sql(&format!("ALTER TABLE {TABLE} SET (ttl = '36 hours')"))
        .await
        .unwrap();
    assert_eq!(
        one(&engine, &format!("SELECT count(*) FROM {TABLE}")).await,
        "5"
    );
}

#[tokio::test]
async fn transaction_blocks_see_their_own_appends_and_undo_them() {
    let dir = tempfile::tempdir().unwrap();
    Engine::open(dir.path())
        .unwrap()
        .impressions()
        .table()
        .unwrap();
    let server = start_in(dir.path()).await;
    let client = connect(server.addr).await;
    let other = connect(server.addr).await;
    let count = format!("SELECT count(*) FROM {TABLE}");
    let counted = |messages| rows(messages)[0][0].clone().unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&inserted(1, 10, "1 minute"))
        .await
        .unwrap();
    assert_eq!(counted(client.simple_query(&count).await.unwrap()), "10");
    client.batch_execute("SAVEPOINT s").await.unwrap();
    client
        .batch_execute(&inserted(11, 5, "1 minute"))
        .await
        .unwrap();
    assert_eq!(counted(client.simple_query(&count).await.unwrap()), "15");
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    assert_eq!(counted(client.simple_query(&count).await.unwrap()), "10");
    assert_eq!(counted(other.simple_query(&count).await.unwrap()), "0");
    // a statement larger than the write buffer goes to a segment of the block
    client
        .batch_execute("SET tastedb.write_buffer_mb = 1")
        .await
        .unwrap();
    client
        .batch_execute(&inserted(100, 60_000, "1 minute"))
        .await
        .unwrap();
    assert_eq!(counted(client.simple_query(&count).await.unwrap()), "60010");
    client.batch_execute("COMMIT").await.unwrap();
    let sums = format!("SELECT count(*), sum(rank) FROM {TABLE}");
    let sum: i64 = (1..=10).sum::<i64>() + (100..60_100).sum::<i64>();
    assert_eq!(
        rows(other.simple_query(&sums).await.unwrap()),
        [[Some("60010".to_string()), Some(sum.to_string())]]
    );
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&inserted(1, 3, "1 minute"))
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(counted(other.simple_query(&count).await.unwrap()), "60010");
}

/// Items `i1`…`i6`; users `a1`…`a8` were shown all of them but one.
const SHOWN: &str = "INSERT INTO tastedb_impressions SELECT 'r', NULL, 'active', 'm', 1, \
    'a' || u, 'i' || i, i, 0.0, 1.0, CAST(now() AS TIMESTAMP) \
    FROM generate_series(1, 8) AS users(u) CROSS JOIN generate_series(1, 6) AS items(i) \
    WHERE i <> u % 6 + 1";

#[tokio::test]
async fn live_models_feature_views_and_backups_see_appended_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine = Engine::open(&data).unwrap();
    engine.impressions().table().unwrap();
    engine.sql(SHOWN).await.unwrap();
    engine
        .sql(&format!(
            "TRAIN MODEL shown USING als FROM {TABLE} WITH (factors = 2, iterations = 10, \
             seed = 3, holdout = 0);
             CREATE FEATURE VIEW seen ENTITY (user_id) TIMESTAMP last AS
                 SELECT user_id, max(shown_at) AS last, count(*) AS shown
                 FROM {TABLE} GROUP BY user_id;
             MATERIALIZE FEATURE VIEW seen"
        ))
        .await
        .unwrap();
    let recommended = |user: &str| format!("SELECT item_id FROM recommend('shown', '{user}', 6)");
    let items = |rows: Vec<Vec<String>>| rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>();
    // a1 was not shown i2: it is recommended, until a new impression shows it
    assert_eq!(items(query(&engine, &recommended("a1")).await), ["i2"]);
    let again = format!(
        "INSERT INTO {TABLE} VALUES ('r2', NULL, 'active', 'm', 1, 'a1', 'i2', 1, 0.0, 1.0, \
         CAST(now() AS TIMESTAMP))"
    );
    engine.sql(&again).await.unwrap();
    assert!(items(query(&engine, &recommended("a1")).await).is_empty());
    // the incremental run recomputes the one user the new row touched
    let run = query(&engine, "MATERIALIZE FEATURE VIEW seen").await;
    assert_eq!(
        (run[0][1].as_str(), run[0][2].as_str()),
        ("incremental", "1")
    );
    let online = "SELECT user_id, shown FROM online_features('seen', 'a1', 'a2')";
    assert_eq!(query(&engine, online).await, [["a1", "6"], ["a2", "5"]]);

    let backups = dir.path().join("backups");
    engine
        .sql(&format!("BACKUP TO '{}'", backups.display()))
        .await
        .unwrap();
    drop(engine);
    let restored = dir.path().join("restored");
    backup::restore(&backups, &restored, None).unwrap();
    let engine = Engine::open(&restored).unwrap();
    let count = format!("SELECT count(*) FROM {TABLE}");
    assert_eq!(one(&engine, &count).await, "41");
    assert!(items(query(&engine, &recommended("a1")).await).is_empty());
    engine.sql(&inserted(1, 2, "1 minute")).await.unwrap();
    assert_eq!(one(&engine, &count).await, "43");
}
