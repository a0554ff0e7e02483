//! Statements larger than `tastedb.write_buffer_mb` (COPY from a file or from STDIN, INSERT …
//! SELECT) stage their rows in files and publish them at once: every row arrives, with its
//! index entries and in the freshness of served models; a bad row, a CopyFail or a connection
//! lost mid-COPY leaves nothing behind, and no staged file outlives its statement.

use crate::common::{self, PASSWORD, connect, start_in};
use futures::SinkExt;
use std::path::Path;
use tokio_postgres::Client;

/// Rows per statement: about 3 MB encoded with the bookkeeping, three times the 1 MB budget.
const ROWS: i64 = 30_000;

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// `ROWS` event lines `user,item,weight` for users `{prefix}0…{prefix}99`.
fn events(prefix: &str, delimiter: char) -> String {
    (0..ROWS)
        .map(|i| format!("{prefix}{}{delimiter}i{}{delimiter}1\n", i % 100, i % 700))
        .collect()
}

/// Files left in the data directory's staging folder.
fn staged_files(dir: &Path) -> usize {
    match std::fs::read_dir(dir.join("staging")) {
        Ok(folders) => folders
            .filter_map(Result::ok)
            .map(|folder| std::fs::read_dir(folder.path()).map_or(0, |files| files.count()))
            .sum(),
        Err(_) => 0,
    }
}

/// Sends `data` as COPY data in chunks of 64 KiB, then ends the COPY.
async fn copy_in(
    client: &Client,
    statement: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    common::copy_in(client, statement, data, 64 << 10).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_over_the_write_buffer_publish_every_row_at_once_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_in(&data).await;
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "SET tastedb.write_buffer_mb = 1;
             CREATE TABLE ev (user_id TEXT, item_id TEXT, weight DOUBLE);
             CREATE INDEX ev_user ON ev (user_id)",
        )
        .await
        .unwrap();

    // COPY from a server file
    let csv = dir.path().join("events.csv");
    std::fs::write(&csv, events("u", ',')).unwrap();
    let copied = client
        .execute(
            &format!("COPY ev FROM '{}' (FORMAT csv)", csv.display()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(copied, ROWS as u64);
    assert_eq!(count(&client, "SELECT count(*) FROM ev").await, ROWS);
    // the index has an entry for every row
    let of_u7 = client
        .query("SELECT item_id FROM ev WHERE user_id = $1", &[&"u7"])
        .await
        .unwrap();
    assert_eq!(of_u7.len() as i64, ROWS / 100);
    assert_eq!(staged_files(&data), 0);

    // a bad value near the end: nothing of the statement is kept
    let mut bad = events("v", ',');
    bad.push_str("v1,i1,heavy\n");
    std::fs::write(&csv, bad).unwrap();
    let error = client
        .execute(
            &format!("COPY ev FROM '{}' (FORMAT csv)", csv.display()),
            &[],
        )
        .await
        .unwrap_err();
    let error = error.as_db_error().expect("a database error");
    assert_eq!(error.code().code(), "22P02", "{}", error.message());
    assert!(error.message().contains("heavy"), "{}", error.message());
    assert_eq!(count(&client, "SELECT count(*) FROM ev").await, ROWS);
    assert_eq!(staged_files(&data), 0);

    // INSERT … SELECT
    let inserted = client
        .execute(
            &format!(
                "INSERT INTO ev SELECT 'g' || (value % 100), 'i' || (value % 700), 1.0 \
                 FROM generate_series(1, {ROWS})"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, ROWS as u64);
    assert_eq!(count(&client, "SELECT count(*) FROM ev").await, 2 * ROWS);

    // a model served from ev sees the rows of a staged COPY FROM STDIN (freshness)
    client
        .batch_execute(
            "TRAIN MODEL m USING als FROM ev WITH (factors = 4, iterations = 2, holdout = 0)",
        )
        .await
        .unwrap();
    let before = client
        .query_one(
            "SELECT cold_start FROM recommend('m', 'w7', 5) LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert!(before.get::<_, bool>(0), "w7 is new to the model");
    let copied = copy_in(&client, "COPY ev FROM STDIN", &events("w", '\t'))
        .await
        .unwrap();
    assert_eq!(copied, ROWS as u64);
    assert_eq!(count(&client, "SELECT count(*) FROM ev").await, 3 * ROWS);
    let after = client
        .query_one(
            "SELECT cold_start, folded_in FROM recommend('m', 'w7', 5) LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert!(!after.get::<_, bool>(0) && after.get::<_, bool>(1));

    // a bad row in the middle of COPY FROM STDIN: an error, nothing kept, the session goes on
    let mut bad = events("x", '\t');
    let line_start = bad[bad.len() / 2..].find('\n').unwrap() + bad.len() / 2 + 1;
    bad.insert_str(line_start, "x1\ti1\tnot a number\n");
    let error = copy_in(&client, "COPY ev FROM STDIN", &bad)
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("22P02"), "{error}");
    assert_eq!(count(&client, "SELECT count(*) FROM ev").await, 3 * ROWS);

    // a connection lost in the middle of a COPY: nothing kept
    let (lost, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=tastedb password='{PASSWORD}' dbname=tastedb",
            server.addr.port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    lost.batch_execute("SET tastedb.write_buffer_mb = 1")
        .await
        .unwrap();
    let sink = lost
        .copy_in::<_, bytes::Bytes>("COPY ev FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let half = events("y", '\t');
    for chunk in half.as_bytes().chunks(64 << 10) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    for _ in 0..200 {
        if staged_files(&data) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        staged_files(&data) > 0,
        "the COPY staged a file before the connection is lost"
    );
    connection.abort();
    for _ in 0..100 {
        if staged_files(&data) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(staged_files(&data), 0);
    assert_eq!(count(&client, "SELECT count(*) FROM ev").await, 3 * ROWS);
    assert_eq!(
        count(&client, "SELECT count(*) FROM ev WHERE user_id LIKE 'y%'").await,
        0
    );
}

/// `ROWS` item lines `id,title,sku` for ids `{prefix}0…`: titles repeat, skus do not.
fn items(prefix: &str) -> String {
    (0..ROWS)
        .map(|i| format!("{prefix}{i},t{},s{prefix}{i}\n", i % 50))
        .collect()
}

/// The SQLSTATE and message of a failed statement.
fn failure(error: tokio_postgres::Error) -> (String, String) {
    let db = error.as_db_error().expect("a database error");
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_statements_over_the_write_buffer_check_every_key_and_publish_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_in(&data).await;
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "SET tastedb.write_buffer_mb = 1;
             CREATE TABLE items (item_id TEXT PRIMARY KEY, title TEXT, sku TEXT);
             CREATE UNIQUE INDEX items_sku ON items (sku);
             CREATE INDEX items_title ON items (title)",
        )
        .await
        .unwrap();
    let copied = copy_in(&client, "COPY items FROM STDIN (FORMAT csv)", &items("a"))
        .await
        .unwrap();
    assert_eq!(copied, ROWS as u64);
    assert_eq!(count(&client, "SELECT count(*) FROM items").await, ROWS);
    let titled = client
        .query("SELECT item_id FROM items WHERE title = $1", &[&"t7"])
        .await
        .unwrap();
    assert_eq!(titled.len() as i64, ROWS / 50);
    let by_sku = client
        .query_one("SELECT item_id FROM items WHERE sku = $1", &[&"sa123"])
        .await
        .unwrap();
    assert_eq!(by_sku.get::<_, String>(0), "a123");
    assert_eq!(staged_files(&data), 0);

    // the last row repeats the statement's first key, long since out of memory
    let mut repeated = items("b");
    repeated.push_str("b0,t0,sb-other\n");
    let (code, message) = failure(
        copy_in(&client, "COPY items FROM STDIN (FORMAT csv)", &repeated)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "23505", "{message}");
    assert!(
        message.contains("items_pkey") && message.contains("item_id=b0"),
        "{message}"
    );
    assert!(
        message.contains(&format!("(row {})", ROWS + 1)),
        "{message}"
    );
    // a key stored by the first COPY, near the end of another
    let mut stored = items("c");
    stored.push_str("a5,t0,sc-other\n");
    let (code, message) = failure(
        copy_in(&client, "COPY items FROM STDIN (FORMAT csv)", &stored)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "23505", "{message}");
    assert!(message.contains("item_id=a5"), "{message}");
    // a unique-index value repeated within the statement
    let mut sku = items("d");
    sku.push_str("d-last,t0,sd1\n");
    let (code, message) = failure(
        copy_in(&client, "COPY items FROM STDIN (FORMAT csv)", &sku)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "23505", "{message}");
    assert!(message.contains("items_sku"), "{message}");
    assert_eq!(count(&client, "SELECT count(*) FROM items").await, ROWS);
    assert_eq!(staged_files(&data), 0);

    // INSERT … SELECT into the keyed table
    let inserted = client
        .execute(
            &format!(
                "INSERT INTO items SELECT 'e' || value, 't' || (value % 50), 'se' || value \
                 FROM generate_series(1, {ROWS})"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, ROWS as u64);
    assert_eq!(count(&client, "SELECT count(*) FROM items").await, 2 * ROWS);

    // a vector index over a keyed table gets a staged COPY's rows (read back by key)
    client
        .batch_execute(
            "CREATE TABLE docs (id BIGINT PRIMARY KEY, v REAL[2]);
             CREATE INDEX docs_v ON docs USING hnsw (v);
             INSERT INTO docs VALUES (-1, '[-1, 0]')",
        )
        .await
        .unwrap();
    // the index is loaded before the COPY: the COPY's rows must reach it as observed writes
    let first = "SELECT id FROM nearest('docs', 'v', '[0.33, 0.94]', 1)";
    let only: i64 = client.query_one(first, &[]).await.unwrap().get(0);
    assert_eq!(only, -1);
    let vectors: String = (0..ROWS)
        .map(|i| {
            let angle = i as f64 * 1e-4;
            format!("{i},\"[{:.6}, {:.6}]\"\n", angle.cos(), angle.sin())
        })
        .collect();
    let copied = copy_in(&client, "COPY docs FROM STDIN (FORMAT csv)", &vectors)
        .await
        .unwrap();
    assert_eq!(copied, ROWS as u64);
    let near: i64 = client
        .query_one(
            &format!(
                "SELECT id FROM nearest('docs', 'v', '[{:.6}, {:.6}]', 1)",
                1.2345f64.cos(),
                1.2345f64.sin()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((near - 12_345).abs() <= 5, "nearest to row 12345: {near}");
    assert_eq!(staged_files(&data), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_over_the_write_buffer_inside_a_block_are_its_writes_until_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_in(&data).await;
    let client = connect(server.addr).await;
    let other = connect(server.addr).await;
    client
        .batch_execute(
            "SET tastedb.write_buffer_mb = 1;
             CREATE TABLE ev (user_id TEXT, item_id TEXT, weight DOUBLE);
             CREATE INDEX ev_user ON ev (user_id);
             INSERT INTO ev SELECT 'u' || (value % 100), 'i' || (value % 700), 1.0
               FROM generate_series(1, 5000);
             TRAIN MODEL m USING als FROM ev WITH (factors = 4, iterations = 2, holdout = 0)",
        )
        .await
        .unwrap();
    let cold = "SELECT cold_start, folded_in FROM recommend('m', 'w7', 5) LIMIT 1";
    assert!(client.query_one(cold, &[]).await.unwrap().get::<_, bool>(0));

    client.batch_execute("BEGIN").await.unwrap();
    let copied = copy_in(&client, "COPY ev FROM STDIN", &events("w", '\t'))
        .await
        .unwrap();
    assert_eq!(copied, ROWS as u64);
    assert!(
        staged_files(&data) > 0,
        "the block's rows are out of memory"
    );
    // the block reads its rows, by scan and by index; no one else does
    assert_eq!(count(&client, "SELECT count(*) FROM ev").await, 5000 + ROWS);
    let of_w7 = client
        .query("SELECT item_id FROM ev WHERE user_id = $1", &[&"w7"])
        .await
        .unwrap();
    assert_eq!(of_w7.len() as i64, ROWS / 100);
    assert_eq!(count(&other, "SELECT count(*) FROM ev").await, 5000);
    // its later writes win over the segment's rows
    let updated = client
        .execute("UPDATE ev SET weight = 5 WHERE user_id = 'w8'", &[])
        .await
        .unwrap();
    assert_eq!(updated as i64, ROWS / 100);
    let deleted = client
        .execute("DELETE FROM ev WHERE user_id = 'w9'", &[])
        .await
        .unwrap();
    assert_eq!(deleted as i64, ROWS / 100);
    // a savepoint rolls a second large COPY back
    client.batch_execute("SAVEPOINT s").await.unwrap();
    copy_in(&client, "COPY ev FROM STDIN", &events("x", '\t'))
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM ev").await,
        5000 + 2 * ROWS - ROWS / 100
    );
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM ev").await,
        5000 + ROWS - ROWS / 100
    );
    client.batch_execute("COMMIT").await.unwrap();

    let expected = 5000 + ROWS - ROWS / 100;
    assert_eq!(count(&other, "SELECT count(*) FROM ev").await, expected);
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM ev WHERE user_id = 'w8' AND weight = 5"
        )
        .await,
        ROWS / 100
    );
    assert_eq!(
        count(&other, "SELECT count(*) FROM ev WHERE user_id = 'w9'").await,
        0
    );
    assert_eq!(
        count(&other, "SELECT count(*) FROM ev WHERE user_id = 'x1'").await,
        0
    );
    let of_w7 = other
        .query("SELECT item_id FROM ev WHERE user_id = $1", &[&"w7"])
        .await
        .unwrap();
    assert_eq!(
        of_w7.len() as i64,
        ROWS / 100,
        "the index entries were published too"
    );
    assert_eq!(staged_files(&data), 0);
    // the model's live source got the committed rows
    let fresh = other.query_one(cold, &[]).await.unwrap();
    assert!(!fresh.get::<_, bool>(0) && fresh.get::<_, bool>(1));

    // keyed: a key of the block's large COPY, inserted again in the block, is a duplicate
    client
        .batch_execute(
            "CREATE TABLE items (item_id TEXT PRIMARY KEY, title TEXT, sku TEXT);
             CREATE UNIQUE INDEX items_sku ON items (sku);
             BEGIN",
        )
        .await
        .unwrap();
    copy_in(&client, "COPY items FROM STDIN (FORMAT csv)", &items("a"))
        .await
        .unwrap();
    let (code, message) = failure(
        client
            .batch_execute("INSERT INTO items VALUES ('a77', 't', 'fresh')")
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "23505", "{message}");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM items").await, 0);
    assert_eq!(staged_files(&data), 0);
    client.batch_execute("BEGIN").await.unwrap();
    copy_in(&client, "COPY items FROM STDIN (FORMAT csv)", &items("a"))
        .await
        .unwrap();
    let (code, message) = failure(
        client
            .batch_execute("INSERT INTO items VALUES ('new', 't', 'sa5')")
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "23505", "{message}");
    assert!(message.contains("items_sku"), "{message}");
    client.batch_execute("ROLLBACK").await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    copy_in(&client, "COPY items FROM STDIN (FORMAT csv)", &items("a"))
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count(&other, "SELECT count(*) FROM items").await, ROWS);
    let by_sku = other
        .query_one("SELECT item_id FROM items WHERE sku = $1", &[&"sa123"])
        .await
        .unwrap();
    assert_eq!(by_sku.get::<_, String>(0), "a123");
}
