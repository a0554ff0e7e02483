//! The wire server through a real Postgres client (tokio-postgres): both query protocols,
//! SQLSTATEs, SCRAM authentication and the connection limit.

use crate::common::{self, PASSWORD, connect, connect_as, rows, start, start_configured};
use std::net::SocketAddr;
use tastedb::server::AuthMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

#[tokio::test]
async fn simple_protocol_runs_statements_and_reports_tags() {
    let server = start(8).await;
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE items (item_id TEXT PRIMARY KEY, title TEXT NOT NULL, views BIGINT);
             INSERT INTO items VALUES ('i1', 'Alpha', 3), ('i2', 'Beta', NULL)",
        )
        .await
        .unwrap();
    let messages = client
        .simple_query("INSERT INTO items VALUES ('i3', 'Gamma', 7); SELECT item_id, title, views FROM items ORDER BY item_id")
        .await
        .unwrap();
    let inserted = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(inserted, Some(1));
    assert_eq!(
        rows(messages),
        vec![
            vec![Some("i1".into()), Some("Alpha".into()), Some("3".into())],
            vec![Some("i2".into()), Some("Beta".into()), None],
            vec![Some("i3".into()), Some("Gamma".into()), Some("7".into())],
        ]
    );
}

#[tokio::test]
async fn extended_protocol_binds_typed_parameters() {
    let server = start(8).await;
    let client = connect(server.addr).await;
    client
        .batch_execute("CREATE TABLE users (user_id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, active BOOLEAN)")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO users VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    for (id, name, score, active) in [(1i64, "ann", 0.5f64, true), (2, "bob", 1.5, false)] {
        let n = client
            .execute(&insert, &[&id, &name, &score, &active])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let row = client
        .query_one(
            "SELECT name, score, active FROM users WHERE user_id = $1",
            &[&2i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "bob");
    assert_eq!(row.get::<_, f64>(1), 1.5);
    assert!(!row.get::<_, bool>(2));
    let statement = client
        .prepare("SELECT user_id, name FROM users WHERE score > $1")
        .await
        .unwrap();
    assert_eq!(statement.columns().len(), 2);
    assert_eq!(
        statement.columns()[0].type_(),
        &tokio_postgres::types::Type::INT8
    );
    let high: Vec<i64> = client
        .query(&statement, &[&1.0f64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(high, vec![2]);
}

#[tokio::test]
async fn errors_carry_sqlstate_and_keep_the_connection() {
    let server = start(8).await;
    let client = connect(server.addr).await;
    let error = client
        .simple_query("SELECT * FROM missing")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_TABLE));
    let error = client.simple_query("SELECT 1;\nSELEC 2").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::SYNTAX_ERROR));
    let position = error.as_db_error().and_then(|e| e.position()).cloned();
    assert!(
        matches!(
            position,
            Some(tokio_postgres::error::ErrorPosition::Original(11))
        ),
        "{position:?}"
    );
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let error = client
        .execute("INSERT INTO t VALUES ($1)", &[&1i64])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let error = client.query("SELECT nope FROM t", &[]).await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_COLUMN));
    // the connection still works after every error
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn scram_rejects_wrong_passwords_and_unknown_users_alike() {
    let server = start(8).await;
    let wrong = connect_as(server.addr, "tastedb", "nope")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(&SqlState::INVALID_PASSWORD));
    let unknown = connect_as(server.addr, "mallory", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some(&SqlState::INVALID_PASSWORD));
    connect(server.addr)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn one_connection_over_the_limit_gets_53300() {
    let server = start(2).await;
    let first = connect(server.addr).await;
    let second = connect(server.addr).await;
    let third = connect_as(server.addr, "tastedb", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(third.code(), Some(&SqlState::TOO_MANY_CONNECTIONS));
    drop(first);
    second.simple_query("SELECT 1").await.unwrap();
    // the slot of a closed connection is free again
    let mut again = None;
    for _ in 0..50 {
        if let Ok(client) = connect_as(server.addr, "tastedb", PASSWORD).await {
            again = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a freed slot was not reused");
}

/// COPY FROM STDIN with the data in two CopyData messages, so that a row crosses them.
async fn copy_in(
    client: &Client,
    statement: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    common::copy_in(client, statement, data, data.len().div_ceil(2)).await
}

#[tokio::test]
async fn copy_from_stdin_is_all_or_nothing() {
    let server = start(8).await;
    let client = connect(server.addr).await;
    client
        .batch_execute("CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT, weight DOUBLE, ts TIMESTAMP)")
        .await
        .unwrap();
    let text = "u1\ti1\t1.5\t2024-01-01 10:00:00\nu2\t\\N\t2\t\\N\nu3\ttab\\there\t3\t2024-01-02 00:00:00\n";
    assert_eq!(
        copy_in(&client, "COPY events FROM STDIN", text)
            .await
            .unwrap(),
        3
    );
    let csv = "user_id,item_id,weight\nu4,i4,4\nu5,,5\n";
    let rows = copy_in(
        &client,
        "COPY events (user_id, item_id, weight) FROM STDIN (FORMAT csv, HEADER true)",
        csv,
    )
    .await
    .unwrap();
    assert_eq!(rows, 2);
    let item: String = client
        .query_one("SELECT item_id FROM events WHERE user_id = 'u3'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(item, "tab\there");

    // a value that is no number: 22P02, and none of the rows is inserted
    let bad = "u6\ti6\t1\t\\N\nu7\ti7\theavy\t\\N\n";
    let error = copy_in(&client, "COPY events FROM STDIN", bad)
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{error:?}"
    );
    let message = error
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("\"heavy\" (row 2)"), "{message}");
    // a NULL in a NOT NULL column: 23502
    let null = "\\N\ti8\t1\t\\N\n";
    let error = copy_in(&client, "COPY events FROM STDIN", null)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::NOT_NULL_VIOLATION));
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 5);
    // unknown tables fail before any data is sent
    let error = copy_in(&client, "COPY missing FROM STDIN", "x\n")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_TABLE));
}

#[tokio::test]
async fn transactions_and_settings_work_for_drivers() {
    let server = start(8).await;
    let mut client = connect(server.addr).await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    // drivers wrap statements in transactions; each statement commits on its own
    let transaction = client.transaction().await.unwrap();
    transaction
        .execute("INSERT INTO t VALUES ($1)", &[&1i64])
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (2); COMMIT; START TRANSACTION; ROLLBACK")
        .await
        .unwrap();
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);

    client
        .batch_execute(
            "SET application_name = 'recs-job'; SET extra_float_digits = 3; SET TIME ZONE 'UTC'",
        )
        .await
        .unwrap();
    let shown = rows(client.simple_query("SHOW application_name").await.unwrap());
    assert_eq!(shown, vec![vec![Some("recs-job".to_string())]]);
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, "16.6");
    let error = client
        .simple_query("SHOW no_such_setting")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_OBJECT));
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("PostgreSQL 16.6 (TasteDB"), "{version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn currval_belongs_to_the_connection_that_drew_the_value() {
    let server = start(8).await;
    let (first, second) = (connect(server.addr).await, connect(server.addr).await);
    first
        .batch_execute("CREATE TABLE notes (id BIGSERIAL PRIMARY KEY, body TEXT)")
        .await
        .unwrap();
    // a prepared INSERT … RETURNING draws the key in the connection that runs it
    let made: i64 = first
        .query_one("INSERT INTO notes (body) VALUES ($1) RETURNING id", &[&"a"])
        .await
        .unwrap()
        .get(0);
    let made_too: i64 = second
        .query_one("INSERT INTO notes (body) VALUES ($1) RETURNING id", &[&"b"])
        .await
        .unwrap()
        .get(0);
    assert_eq!((made, made_too), (1, 2));
    for (client, expected) in [(&first, 1i64), (&second, 2)] {
        let current: i64 = client
            .query_one("SELECT currval('notes_id_seq')", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(current, expected);
    }
    let third = connect(server.addr).await;
    let error = third.query("SELECT lastval()", &[]).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_mixing_inserts_and_selects_lose_nothing() {
    let server = start(32).await;
    let setup = connect(server.addr).await;
    setup
        .batch_execute("CREATE TABLE hits (client BIGINT NOT NULL, n BIGINT NOT NULL)")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let tasks: Vec<_> = (0..16i64)
        .map(|id| {
            let addr = server.addr;
            tokio::spawn(async move {
                let client = connect(addr).await;
                let insert = client
                    .prepare("INSERT INTO hits VALUES ($1, $2)")
                    .await
                    .unwrap();
                let mut acknowledged = 0u64;
                while tokio::time::Instant::now() < deadline {
                    client
                        .execute(&insert, &[&id, &(acknowledged as i64)])
                        .await
                        .unwrap();
                    acknowledged += 1;
                    let mine: i64 = client
                        .query_one("SELECT count(*) FROM hits WHERE client = $1", &[&id])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(mine as u64, acknowledged);
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = 0;
    for task in tasks {
        acknowledged += task.await.unwrap();
    }
    let stored: i64 = setup
        .query_one("SELECT count(*) FROM hits", &[])
        .await
        .unwrap()
        .get(0);
    assert!(acknowledged > 16);
    assert_eq!(stored as u64, acknowledged);
}

/// Sends raw bytes on a fresh connection and reads until the server answers or closes.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = socket.write_all(bytes).await;
    let mut buffer = [0u8; 1024];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), socket.read(&mut buffer)).await;
}

fn startup_message() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes()); // protocol 3.0
    for part in ["user", "tastedb", "database", "tastedb"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_end_only_their_own_connection() {
    let server = start(8).await;
    let survivor = connect(server.addr).await;
    let mut huge_startup = (0x7fff_fff0u32).to_be_bytes().to_vec();
    huge_startup.extend_from_slice(&[0u8; 16]);
    let mut short_password = startup_message();
    short_password.extend_from_slice(&[b'p', 0, 0, 0, 1]); // length below its own header
    let mut unknown_type = startup_message();
    unknown_type.extend_from_slice(&[b'!', 0, 0, 0, 8, 1, 2, 3, 4]);
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0, 0, 0, 2],
        huge_startup,
        startup_message()[..10].to_vec(),
        short_password,
        unknown_type,
        vec![0xff; 4096],
    ];
    for case in &cases {
        send_raw(server.addr, case).await;
    }
    // the server still serves new and existing clients
    survivor.simple_query("SELECT 1").await.unwrap();
    connect(server.addr)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn users_are_managed_in_sql() {
    let server = start(8).await;
    let admin = connect(server.addr).await;
    admin
        .batch_execute("CREATE USER analyst WITH PASSWORD 'first'")
        .await
        .unwrap();
    let analyst = connect_as(server.addr, "analyst", "first").await.unwrap();
    analyst.simple_query("SELECT 1").await.unwrap();
    let error = admin
        .batch_execute("CREATE USER analyst PASSWORD 'x'")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::DUPLICATE_OBJECT));
    admin
        .batch_execute("ALTER USER analyst PASSWORD 'second'")
        .await
        .unwrap();
    let old = connect_as(server.addr, "analyst", "first")
        .await
        .unwrap_err();
    assert_eq!(old.code(), Some(&SqlState::INVALID_PASSWORD));
    connect_as(server.addr, "analyst", "second").await.unwrap();
    admin.batch_execute("DROP USER analyst").await.unwrap();
    let gone = connect_as(server.addr, "analyst", "second")
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some(&SqlState::INVALID_PASSWORD));
    let error = admin.batch_execute("DROP USER analyst").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_OBJECT));
    admin
        .batch_execute("DROP USER IF EXISTS analyst")
        .await
        .unwrap();
    // as in PostgreSQL, the role of the session cannot be dropped
    let error = admin.batch_execute("DROP USER tastedb").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::OBJECT_IN_USE));
}

async fn copy_out(client: &Client, statement: &str) -> String {
    use futures::TryStreamExt;
    let stream = client.copy_out(statement).await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

#[tokio::test]
async fn copy_to_stdout_streams_text_and_csv() {
    let server = start(8).await;
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE items (item_id TEXT PRIMARY KEY, title TEXT, views BIGINT);
             INSERT INTO items VALUES ('i1', 'tab\there', 3), ('i2', NULL, 4)",
        )
        .await
        .unwrap();
    let text = copy_out(&client, "COPY items TO STDOUT").await;
    assert_eq!(text, "i1\ttab\\there\t3\ni2\t\\N\t4\n");
    let csv = copy_out(
        &client,
        "COPY (SELECT item_id, views FROM items WHERE views > 3) TO STDOUT WITH (FORMAT csv, HEADER true)",
    )
    .await;
    assert_eq!(csv, "item_id,views\ni2,4\n");
    let columns = copy_out(
        &client,
        "COPY items (views, item_id) TO STDOUT (FORMAT csv)",
    )
    .await;
    assert_eq!(columns, "3,i1\n4,i2\n");
}

/// A statement nested as deep as ORMs write them is answered; one too deep for any stack is
/// refused with 54001; neither takes the server down (it runs statements on threads with
/// the stack `engine::depth` asks for, whatever runtime the test runs).
#[tokio::test]
async fn deep_statements_are_answered_or_refused_and_the_server_goes_on() {
    let server = start(4).await;
    let client = connect(server.addr).await;
    client
        .batch_execute("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1), (1999), (5000)")
        .await
        .unwrap();
    let chain = |op: &str, terms: usize| {
        (0..terms)
            .map(|i| format!("x = {i}"))
            .collect::<Vec<_>>()
            .join(&format!(" {op} "))
    };
    let ors = format!("SELECT count(*) FROM t WHERE {}", chain("OR", 2_000));
    assert_eq!(
        rows(client.simple_query(&ors).await.unwrap())[0][0].as_deref(),
        Some("2")
    );
    let plus = format!("SELECT {} AS n", vec!["1"; 2_000].join(" + "));
    assert_eq!(
        rows(client.simple_query(&plus).await.unwrap())[0][0].as_deref(),
        Some("2000")
    );
    let parens = format!("SELECT {}7{} AS n", "(".repeat(500), ")".repeat(500));
    assert_eq!(
        rows(client.simple_query(&parens).await.unwrap())[0][0].as_deref(),
        Some("7")
    );
    for too_deep in [
        format!("SELECT count(*) FROM t WHERE {}", chain("OR", 20_000)),
        format!("SELECT {}", vec!["1"; 20_000].join(" + ")),
    ] {
        let error = client.simple_query(&too_deep).await.unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::STATEMENT_TOO_COMPLEX));
        // also through the extended protocol
        let error = client.prepare(&too_deep).await.unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::STATEMENT_TOO_COMPLEX));
    }
    let fresh = connect(server.addr).await;
    assert_eq!(
        rows(fresh.simple_query("SELECT count(*) FROM t").await.unwrap())[0][0].as_deref(),
        Some("3")
    );
}

/// `statement_timeout` stops a runaway query in either protocol with 57014, and the
/// connection goes on (a query that would run for hours otherwise; the outer limit only keeps
/// a broken timeout from hanging the suite).
#[tokio::test]
async fn statement_timeout_stops_a_runaway_query() {
    let server = start(4).await;
    let client = connect(server.addr).await;
    let runaway = "SELECT count(*) FROM generate_series(1, 100000000000)";
    let limit = std::time::Duration::from_secs(60);
    client
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    let error = tokio::time::timeout(limit, client.simple_query(runaway))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    let error = tokio::time::timeout(limit, client.query(runaway, &[]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    assert_eq!(
        rows(client.simple_query("SELECT 1").await.unwrap()),
        [[Some("1".to_string())]]
    );
    let shown = rows(client.simple_query("SHOW statement_timeout").await.unwrap());
    assert_eq!(shown[0][0].as_deref(), Some("300ms"));
    let error = client
        .batch_execute("SET statement_timeout = 'soon'")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    assert_finishes(&client).await;
}

/// A short query runs to its end.
async fn assert_finishes(client: &Client) {
    let counted = rows(
        client
            .simple_query("SELECT count(*) FROM generate_series(1, 1000)")
            .await
            .unwrap(),
    );
    assert_eq!(counted[0][0].as_deref(), Some("1000"));
}

/// The server's `--statement-timeout` holds for sessions that do not set their own, and
/// `SHOW` reports it.
#[tokio::test]
async fn the_server_default_statement_timeout_applies_until_a_session_sets_its_own() {
    let server = start_configured(AuthMode::Scram, 4, "300ms").await;
    let client = connect(server.addr).await;
    let shown = rows(client.simple_query("SHOW statement_timeout").await.unwrap());
    assert_eq!(shown[0][0].as_deref(), Some("300ms"));
    let runaway = "SELECT count(*) FROM generate_series(1, 100000000000)";
    let limit = std::time::Duration::from_secs(60);
    let error = tokio::time::timeout(limit, client.query(runaway, &[]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    assert_finishes(&client).await;
}

/// `idle_in_transaction_session_timeout`: a session that sits in a transaction block longer
/// is ended by the server with FATAL 25P03 while its client waits (so its connection slot is
/// free again); idle outside a block, running a statement longer than the limit, or with the
/// setting off, it goes on.
#[tokio::test]
async fn a_session_idle_in_a_transaction_block_is_ended() {
    let server = start(4).await;
    let config = format!(
        "host={} port={} user=tastedb password='{PASSWORD}' dbname=tastedb",
        server.addr.ip(),
        server.addr.port()
    );
    let limit = std::time::Duration::from_millis(300);
    for extended in [false, true] {
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        client
            .batch_execute("SET idle_in_transaction_session_timeout = '300ms'")
            .await
            .unwrap();
        tokio::time::sleep(limit * 2).await;
        assert_finishes(&client).await; // idle, but not in a block
        client.batch_execute("BEGIN").await.unwrap();
        // a statement that runs longer than the limit is not idle
        let long = "SELECT count(*) FROM generate_series(1, 30000000)";
        let started = std::time::Instant::now();
        match extended {
            false => drop(client.simple_query(long).await.unwrap()),
            true => drop(client.query(long, &[]).await.unwrap()),
        }
        assert!(
            started.elapsed() > limit,
            "the statement ran {:?}",
            started.elapsed()
        );
        let ended = tokio::time::timeout(limit * 10, connection)
            .await
            .expect("the server ends the connection while the client waits")
            .unwrap();
        let error = ended.unwrap_err();
        assert_eq!(error.code().map(|c| c.code()), Some("25P03"), "{error}");
        assert!(client.simple_query("SELECT 1").await.is_err(), "closed");
    }
    let error = connect(server.addr)
        .await
        .batch_execute("SET idle_in_transaction_session_timeout = 'later'")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    // off: a block may stay open
    let client = connect(server.addr).await;
    client.batch_execute("BEGIN").await.unwrap();
    tokio::time::sleep(limit * 2).await;
    assert_finishes(&client).await;
    // the ended sessions are gone (the one that set 'later' leaves when its client is dropped)
    let mut sessions = 0;
    for _ in 0..50 {
        let row = client
            .query_one("SELECT count(*) FROM pg_stat_activity", &[])
            .await
            .unwrap();
        sessions = row.get::<_, i64>(0);
        if sessions == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sessions, 1);
}
