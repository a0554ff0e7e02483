//! Transaction blocks over the wire: atomic COMMIT, ROLLBACK and savepoints that undo writes,
//! one snapshot per block plus its own writes, 40001 for the second of two blocks writing one
//! row, 25P02 after a failed statement, catalog statements inside a block, concurrent blocks
//! whose commits overlap; READ COMMITTED blocks that wait for each other's rows instead of
//! failing, and deadlocks (40P01).

use crate::common::{connect, rows, start, start_in};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

async fn scalar(client: &Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.unwrap();
    rows(messages)[0][0].clone().unwrap_or_default()
}

async fn setup(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance DOUBLE NOT NULL);
             INSERT INTO accounts VALUES (1, 100), (2, 100);
             CREATE TABLE history (id BIGINT, delta DOUBLE)",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn rollback_and_savepoints_undo_writes_and_commit_keeps_them() {
    let server = start(8).await;
    let client = connect(server.addr).await;
    setup(&client).await;
    client
        .batch_execute(
            "BEGIN;
             UPDATE accounts SET balance = balance - 30 WHERE id = 1;
             INSERT INTO history VALUES (1, -30);
             ROLLBACK",
        )
        .await
        .unwrap();
    assert_eq!(
        scalar(&client, "SELECT balance FROM accounts WHERE id = 1").await,
        "100"
    );
    assert_eq!(scalar(&client, "SELECT count(*) FROM history").await, "0");

    client
        .batch_execute(
            "BEGIN;
             UPDATE accounts SET balance = balance - 30 WHERE id = 1;
             SAVEPOINT before_delete;
             DELETE FROM accounts;
             INSERT INTO history VALUES (9, 9)",
        )
        .await
        .unwrap();
    // the block sees its own writes
    assert_eq!(scalar(&client, "SELECT count(*) FROM accounts").await, "0");
    client
        .batch_execute(
            "ROLLBACK TO SAVEPOINT before_delete; INSERT INTO history VALUES (1, -30); COMMIT",
        )
        .await
        .unwrap();
    assert_eq!(
        scalar(&client, "SELECT balance FROM accounts WHERE id = 1").await,
        "70"
    );
    assert_eq!(scalar(&client, "SELECT count(*) FROM accounts").await, "2");
    assert_eq!(
        scalar(&client, "SELECT sum(delta) FROM history").await,
        "-30"
    );
}

#[tokio::test]
async fn a_block_reads_one_snapshot_and_the_second_writer_of_a_row_gets_40001() {
    let server = start(8).await;
    let first = connect(server.addr).await;
    let second = connect(server.addr).await;
    setup(&first).await;
    first.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        scalar(&first, "SELECT balance FROM accounts WHERE id = 1").await,
        "100"
    );
    // a commit made after the block began is not seen by it
    second
        .batch_execute("UPDATE accounts SET balance = 500 WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(
        scalar(&first, "SELECT balance FROM accounts WHERE id = 2").await,
        "100"
    );
    // both write row 1; the first to commit wins (optimistic: neither waits)
    second
        .batch_execute("BEGIN; UPDATE accounts SET balance = 1 WHERE id = 1")
        .await
        .unwrap();
    first
        .batch_execute("UPDATE accounts SET balance = 2 WHERE id = 1")
        .await
        .unwrap();
    second.batch_execute("COMMIT").await.unwrap();
    let error = first.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE));
    // the failed COMMIT ended the block: the connection goes on outside one
    assert_eq!(
        scalar(&first, "SELECT balance FROM accounts WHERE id = 1").await,
        "1"
    );
    assert_eq!(
        scalar(&first, "SELECT balance FROM accounts WHERE id = 2").await,
        "500"
    );
    // blocks writing different rows both commit
    first
        .batch_execute("BEGIN; UPDATE accounts SET balance = 3 WHERE id = 1")
        .await
        .unwrap();
    second
        .batch_execute("BEGIN; UPDATE accounts SET balance = 4 WHERE id = 2")
        .await
        .unwrap();
    first.batch_execute("COMMIT").await.unwrap();
    second.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        scalar(&first, "SELECT sum(balance) FROM accounts").await,
        "7"
    );
}

#[tokio::test]
async fn a_failed_statement_aborts_the_block_until_rollback() {
    let server = start(8).await;
    let client = connect(server.addr).await;
    setup(&client).await;
    client
        .batch_execute("BEGIN; INSERT INTO history VALUES (1, 1)")
        .await
        .unwrap();
    let error = client
        .batch_execute("INSERT INTO accounts VALUES (1, 0)")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION));
    for sql in [
        "SELECT 1",
        "INSERT INTO history VALUES (2, 2)",
        "SAVEPOINT s",
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
            "{sql}"
        );
    }
    // an error while rows stream (division by zero) aborts the block too
    let messages = client.simple_query("COMMIT").await.unwrap();
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(_))),
        "COMMIT of a failed block answers ROLLBACK"
    );
    assert_eq!(scalar(&client, "SELECT count(*) FROM history").await, "0");
    client.batch_execute("BEGIN").await.unwrap();
    let error = client.simple_query("SELECT 1 / 0").await.unwrap_err();
    assert!(error.code().is_some());
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    client.batch_execute("ROLLBACK").await.unwrap();

    // ROLLBACK TO a savepoint recovers the block, keeping what came before it
    client
        .batch_execute("BEGIN; INSERT INTO history VALUES (1, 1); SAVEPOINT s")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO accounts VALUES (2, 0)")
        .await
        .unwrap_err();
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s; INSERT INTO history VALUES (2, 2); COMMIT")
        .await
        .unwrap();
    assert_eq!(scalar(&client, "SELECT sum(delta) FROM history").await, "3");
}

#[tokio::test]
async fn prepared_writes_join_the_block_and_commits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = start_in(dir.path()).await;
        let client = connect(server.addr).await;
        setup(&client).await;
        let update = client
            .prepare("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
            .await
            .unwrap();
        let insert = client
            .prepare("INSERT INTO history VALUES ($1, $2)")
            .await
            .unwrap();
        client.batch_execute("BEGIN").await.unwrap();
        for (id, delta) in [(1i64, 5.0f64), (2, -5.0), (1, 1.0)] {
            assert_eq!(client.execute(&update, &[&delta, &id]).await.unwrap(), 1);
            client.execute(&insert, &[&id, &delta]).await.unwrap();
        }
        // the prepared key lookup sees the block's writes
        let row = client
            .query_one("SELECT balance FROM accounts WHERE id = $1", &[&1i64])
            .await
            .unwrap();
        assert_eq!(row.get::<_, f64>(0), 106.0);
        client.batch_execute("COMMIT").await.unwrap();
        // rolled back: never seen again
        client
            .batch_execute("BEGIN; DELETE FROM history; UPDATE accounts SET balance = 0; ROLLBACK")
            .await
            .unwrap();
    }
    let server = start_in(dir.path()).await;
    let client = connect(server.addr).await;
    assert_eq!(
        scalar(&client, "SELECT sum(balance) FROM accounts").await,
        "201"
    );
    assert_eq!(scalar(&client, "SELECT count(*) FROM history").await, "3");
}

#[tokio::test]
async fn catalog_statements_in_a_block_take_effect_at_once() {
    let server = start(8).await;
    let client = connect(server.addr).await;
    setup(&client).await;
    client
        .batch_execute(
            "BEGIN;
             CREATE TABLE made_in_block (x BIGINT);
             INSERT INTO made_in_block VALUES (1);
             ROLLBACK",
        )
        .await
        .unwrap();
    // the table stays (definitions are not transactional); its row went with the block
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM made_in_block").await,
        "0"
    );
}

#[tokio::test]
async fn the_snapshot_is_taken_at_the_first_statement_and_conflicts_are_found_early() {
    let server = start(16).await;
    let first = connect(server.addr).await;
    let second = connect(server.addr).await;
    setup(&first).await;
    // as PostgreSQL's REPEATABLE READ: what commits between BEGIN and the block's first
    // statement is seen, what commits after it is not
    first.batch_execute("BEGIN").await.unwrap();
    second
        .batch_execute("UPDATE accounts SET balance = 500 WHERE id = 2")
        .await
        .unwrap();
    let read = "SELECT balance FROM accounts WHERE id = 2";
    assert_eq!(scalar(&first, read).await, "500");
    second
        .batch_execute("UPDATE accounts SET balance = 600 WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(scalar(&first, read).await, "500");
    // writing a row committed after the snapshot fails at once, and aborts the block
    let error = first
        .batch_execute("UPDATE accounts SET balance = 7 WHERE id = 2")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE));
    let error = first.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    first.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(scalar(&first, read).await, "600");

    // eight clients add 1 to one row in blocks that also insert a row, retrying on 40001
    // (as pgbench does):
    // their commits overlap, and every committed one counts once
    const CLIENTS: usize = 8;
    const COMMITS: usize = 25;
    let mut clients = Vec::new();
    for number in 0..CLIENTS {
        let client = connect(server.addr).await;
        clients.push(tokio::spawn(async move {
            let block = format!(
                "BEGIN;
                 UPDATE accounts SET balance = balance + 1 WHERE id = 1;
                 INSERT INTO history VALUES ({number}, 1);
                 COMMIT"
            );
            let (mut committed, mut updated) = (0, 0);
            while committed < COMMITS {
                // outside a block, the server runs a clashing UPDATE again itself
                client
                    .batch_execute("UPDATE accounts SET balance = balance + 1 WHERE id = 2")
                    .await
                    .unwrap();
                updated += 1;
                match client.batch_execute(&block).await {
                    Ok(()) => committed += 1,
                    Err(e) => {
                        assert_eq!(e.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE), "{e}");
                        // at an UPDATE the block is aborted; after COMMIT it is over already
                        client.batch_execute("ROLLBACK").await.unwrap();
                    }
                }
            }
            updated
        }));
    }
    let mut updated = 0;
    for client in clients {
        updated += client.await.unwrap();
    }
    let total = CLIENTS * COMMITS;
    assert_eq!(
        scalar(&first, "SELECT balance FROM accounts WHERE id = 1").await,
        (100 + total).to_string()
    );
    assert_eq!(
        scalar(&first, "SELECT count(*) FROM history").await,
        total.to_string()
    );
    assert_eq!(
        scalar(&first, "SELECT balance FROM accounts WHERE id = 2").await,
        (600 + updated).to_string()
    );
}

/// Runs `sql` on `client` in a task of its own, and gives it 200 ms to start waiting.
async fn waiting_on(
    client: &std::sync::Arc<Client>,
    sql: &str,
) -> tokio::task::JoinHandle<Result<(), tokio_postgres::Error>> {
    let (client, sql) = (client.clone(), sql.to_string());
    let task = tokio::spawn(async move { client.batch_execute(&sql).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    task
}

#[tokio::test]
async fn read_committed_blocks_see_each_commit_and_wait_for_rows_instead_of_failing() {
    let server = start(16).await;
    let first = std::sync::Arc::new(connect(server.addr).await);
    let second = connect(server.addr).await;
    setup(&first).await;
    assert_eq!(
        scalar(&first, "SHOW transaction_isolation").await,
        "repeatable read"
    );
    first
        .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    assert_eq!(
        scalar(&first, "SHOW transaction_isolation").await,
        "read committed"
    );
    let read = "SELECT balance FROM accounts WHERE id = 2";
    assert_eq!(scalar(&first, read).await, "100");
    second
        .batch_execute("UPDATE accounts SET balance = 500 WHERE id = 2")
        .await
        .unwrap();
    // each statement reads a snapshot of its own
    assert_eq!(scalar(&first, read).await, "500");
    let error = (first.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::ACTIVE_SQL_TRANSACTION));
    first.batch_execute("ROLLBACK").await.unwrap();

    // a row another block wrote is waited for, then updated from its committed version
    second
        .batch_execute("SET default_transaction_isolation = 'read committed'")
        .await
        .unwrap();
    second
        .batch_execute("BEGIN; UPDATE accounts SET balance = balance + 10 WHERE id = 1")
        .await
        .unwrap();
    first
        .batch_execute("BEGIN; SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    let waiting = waiting_on(
        &first,
        "UPDATE accounts SET balance = balance * 2 WHERE id = 1",
    )
    .await;
    assert!(!waiting.is_finished(), "the second writer waits");
    second.batch_execute("COMMIT").await.unwrap();
    waiting.await.unwrap().unwrap();
    first.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        scalar(&second, "SELECT balance FROM accounts WHERE id = 1").await,
        "220"
    );

    // two blocks that each wait for the other's row: one gets 40P01, the other goes on
    first
        .batch_execute(
            "BEGIN ISOLATION LEVEL READ COMMITTED; UPDATE accounts SET balance = 0 WHERE id = 1",
        )
        .await
        .unwrap();
    second
        .batch_execute("BEGIN; UPDATE accounts SET balance = 0 WHERE id = 2")
        .await
        .unwrap();
    let waiting = waiting_on(&first, "UPDATE accounts SET balance = 1 WHERE id = 2").await;
    let error = (second.batch_execute("UPDATE accounts SET balance = 1 WHERE id = 1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::T_R_DEADLOCK_DETECTED));
    second.batch_execute("ROLLBACK").await.unwrap();
    waiting.await.unwrap().unwrap();
    first.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        scalar(&second, "SELECT sum(balance) FROM accounts").await,
        "1"
    );

    // the level a connection's startup options (libpq's PGOPTIONS) choose
    let config = format!(
        "host={} port={} user=tastedb password='{}' dbname=tastedb \
         options='-c default_transaction_isolation=read\\\\ committed'",
        server.addr.ip(),
        server.addr.port(),
        crate::common::PASSWORD
    );
    let (optioned, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    assert_eq!(
        scalar(&optioned, "SHOW transaction_isolation").await,
        "read committed"
    );

    // eight clients add 1 to one row in READ COMMITTED blocks: none ever gets 40001, and
    // every increment counts once
    const CLIENTS: usize = 8;
    const COMMITS: usize = 25;
    let mut clients = Vec::new();
    for number in 0..CLIENTS {
        let client = connect(server.addr).await;
        clients.push(tokio::spawn(async move {
            for _ in 0..COMMITS {
                let block = format!(
                    "BEGIN ISOLATION LEVEL READ COMMITTED;
                     UPDATE accounts SET balance = balance + 1 WHERE id = 1;
                     UPDATE accounts SET balance = balance + 1 WHERE id = 2;
                     INSERT INTO history VALUES ({number}, 1);
                     COMMIT"
                );
                client.batch_execute(&block).await.unwrap();
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let total = CLIENTS * COMMITS;
    assert_eq!(
        scalar(&first, "SELECT balance FROM accounts WHERE id = 1").await,
        total.to_string()
    );
    assert_eq!(
        scalar(&first, "SELECT balance FROM accounts WHERE id = 2").await,
        (1 + total).to_string()
    );
    assert_eq!(
        scalar(&first, "SELECT count(*) FROM history").await,
        total.to_string()
    );
}
