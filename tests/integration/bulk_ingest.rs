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
