//! Cancelling a running statement: the protocol's CancelRequest (as drivers send it) and
//! `pg_cancel_backend(pid)`, both answered with `57014 canceling statement due to user
//! request` while the session goes on; `pg_stat_activity` showing who runs what; and who may
//! see and cancel whom. Every runaway query here would run for hours: the outer limits only
//! keep a broken cancel from hanging the suite.

use crate::common::{PASSWORD, connect, connect_as, rows, start};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const RUNAWAY: &str = "SELECT count(*) FROM generate_series(1, 100000000000)";
const LIMIT: Duration = Duration::from_secs(60);

/// A client of `user` whose `application_name` is `name`.
async fn connect_named(addr: SocketAddr, user: &str, password: &str, name: &str) -> Client {
    let config = format!(
        "host={} port={} user={user} password='{password}' dbname=tastedb application_name={name}",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Starts the runaway query on `client` (through the extended protocol when `prepared`).
fn run_away(client: &std::sync::Arc<Client>, prepared: bool) -> JoinHandle<tokio_postgres::Error> {
    let client = client.clone();
    tokio::spawn(async move {
        let run = async {
            if prepared {
                client.query(RUNAWAY, &[]).await.map(|_| ())
            } else {
                client.simple_query(RUNAWAY).await.map(|_| ())
            }
        };
        match tokio::time::timeout(LIMIT, run).await {
            Ok(Err(error)) => error,
            Ok(Ok(())) => panic!("the runaway query finished"),
            Err(_) => panic!("the runaway query was not stopped within {LIMIT:?}"),
        }
    })
}

/// Asserts that `error` is a cancel by user request.
fn assert_cancelled(error: &tokio_postgres::Error) {
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert_eq!(
        message.as_deref(),
        Some("canceling statement due to user request")
    );
}

/// The pid of the session whose `application_name` is `name`, once it runs a statement.
async fn running_pid(admin: &Client, name: &str) -> i32 {
    let query = format!(
        "SELECT pid FROM pg_stat_activity WHERE application_name = '{name}' AND state = 'active'"
    );
    for _ in 0..200 {
        if let Some(row) = admin.query_opt(&query, &[]).await.unwrap() {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no active session named {name}");
}

/// The SQLSTATE `sql` fails with, or its one value as text.
async fn answer(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(messages) => rows(messages)[0][0].clone().unwrap_or_default(),
        Err(e) => e
            .code()
            .map_or_else(|| e.to_string(), |c| c.code().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_the_running_statement_and_the_session_goes_on() {
    let server = start(8).await;
    let client = std::sync::Arc::new(connect(server.addr).await);
    for prepared in [false, true] {
        let running = run_away(&client, prepared);
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.cancel_token().cancel_query(NoTls).await.unwrap();
        assert_cancelled(&running.await.unwrap());
    }
    // a cancel that arrives while nothing runs is ignored, and stops nothing later. The
    // request travels on a connection of its own and tokio-postgres does not wait for the
    // server to read it: give it time to arrive before the next statement (PostgreSQL has the
    // same race: a late cancel may hit the statement after the one it was meant for).
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counted = client
        .simple_query("SELECT count(*) FROM generate_series(1, 1000)")
        .await
        .unwrap_or_else(|e| panic!("the query after an idle cancel failed: {e:?}"));
    let counted = rows(counted);
    assert_eq!(counted[0][0].as_deref(), Some("1000"));
}

/// A CancelRequest with the right pid but a wrong secret key cancels nothing: the statement
/// runs on until its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_with_a_wrong_key_cancels_nothing() {
    let server = start(8).await;
    let admin = connect(server.addr).await;
    let victim =
        std::sync::Arc::new(connect_named(server.addr, "tastedb", PASSWORD, "victim").await);
    victim
        .batch_execute("SET statement_timeout = '2s'")
        .await
        .unwrap();
    let running = run_away(&victim, false);
    let pid = running_pid(&admin, "victim").await;
    let mut request = Vec::new();
    request.extend_from_slice(&16i32.to_be_bytes());
    request.extend_from_slice(&80_877_102i32.to_be_bytes());
    request.extend_from_slice(&pid.to_be_bytes());
    request.extend_from_slice(&0x5eed_i32.to_be_bytes());
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(&request).await.unwrap();
    drop(socket);
    let error = running.await.unwrap();
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert_eq!(
        message.as_deref(),
        Some("canceling statement due to statement timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stat_activity_and_pg_cancel_backend_follow_privileges() {
    let server = start(16).await;
    let admin = connect_named(server.addr, "tastedb", PASSWORD, "admin_app").await;
    admin
        .batch_execute(
            "CREATE USER bob PASSWORD 'bob'; CREATE USER carol PASSWORD 'carol';
             CREATE USER sig PASSWORD 'sig'; GRANT pg_signal_backend TO sig;",
        )
        .await
        .unwrap();
    let bob = std::sync::Arc::new(connect_named(server.addr, "bob", "bob", "bob_app").await);
    let bob_again = connect_as(server.addr, "bob", "bob").await.unwrap();
    let carol = connect_as(server.addr, "carol", "carol").await.unwrap();
    let sig = connect_as(server.addr, "sig", "sig").await.unwrap();

    // a superuser sees every session and what it runs
    let running = run_away(&bob, false);
    let bob_pid = running_pid(&admin, "bob_app").await;
    let shown = admin
        .query_one(
            "SELECT usename, client_addr, query, query_start IS NOT NULL, backend_start <= now()
             FROM pg_stat_activity WHERE pid = $1",
            &[&bob_pid],
        )
        .await
        .unwrap();
    assert_eq!(shown.get::<_, String>(0), "bob");
    assert_eq!(shown.get::<_, String>(1), "127.0.0.1");
    assert_eq!(shown.get::<_, String>(2), RUNAWAY);
    assert!(shown.get::<_, bool>(3) && shown.get::<_, bool>(4));
    let sessions = admin
        .query_one(
            "SELECT count(*), count(DISTINCT pid) FROM pg_stat_activity",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(sessions.get::<_, i64>(0), 5);
    assert_eq!(sessions.get::<_, i64>(1), 5);
    let admin_pid: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'admin_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // others may not read it, nor cancel what they may not
    assert_eq!(
        answer(&bob_again, "SELECT * FROM pg_stat_activity").await,
        "42501"
    );
    let cancel_bob = format!("SELECT pg_cancel_backend({bob_pid})");
    assert_eq!(answer(&carol, &cancel_bob).await, "42501");
    assert_eq!(
        answer(&sig, &format!("SELECT pg_cancel_backend({admin_pid})")).await,
        "42501"
    );
    assert_eq!(
        answer(&carol, "SELECT pg_cancel_backend(CAST(random() AS INT))").await,
        "42501"
    );

    // the same role may, from another session
    assert_eq!(answer(&bob_again, &cancel_bob).await, "t");
    assert_cancelled(&running.await.unwrap());

    // so may a member of pg_signal_backend, and a superuser
    for canceller in [&sig, &admin] {
        let mut running = run_away(&bob, true);
        running_pid(&admin, "bob_app").await;
        assert_eq!(answer(canceller, &cancel_bob).await, "t");
        // bob's previous statement may still be shown running for a moment after its client
        // saw it fail, and take this cancel: cancel again until the new one stops
        let stopped = loop {
            tokio::select! {
                stopped = &mut running => break stopped.unwrap(),
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    assert_eq!(answer(canceller, &cancel_bob).await, "t");
                }
            }
        };
        assert_cancelled(&stopped);
    }
    assert_eq!(answer(&admin, "SELECT pg_cancel_backend(7)").await, "f");

    // the session ended is gone from the view
    drop(carol);
    for _ in 0..200 {
        let left = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'carol'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("carol's ended session is still listed");
}

/// TRAIN is stopped between iterations, and a cancelled TRAIN registers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_train_stops_and_registers_nothing() {
    let server = start(8).await;
    let client = std::sync::Arc::new(connect(server.addr).await);
    client
        .batch_execute(
            "CREATE TABLE ev (user_id TEXT, item_id TEXT);
             INSERT INTO ev SELECT 'u' || CAST(u.value AS TEXT), 'i' || CAST((u.value * i.value) % 97 AS TEXT)
                 FROM generate_series(1, 300) u, generate_series(1, 12) i;",
        )
        .await
        .unwrap();
    let training = {
        let client = client.clone();
        tokio::spawn(async move {
            let train = client.batch_execute(
                "TRAIN MODEL m USING als FROM ev WITH (factors = 32, iterations = 10000, holdout = 0)",
            );
            tokio::time::timeout(LIMIT, train)
                .await
                .expect("TRAIN was not stopped")
                .unwrap_err()
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    assert_cancelled(&training.await.unwrap());
    let models = client
        .query_one("SELECT count(*) FROM tastedb_models", &[])
        .await
        .unwrap();
    assert_eq!(models.get::<_, i64>(0), 0);
}

/// A COPY FROM STDIN cancelled while its data arrives fails and inserts nothing; the session
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_copy_from_stdin_inserts_nothing() {
    use futures::SinkExt;
    let server = start(8).await;
    let client = connect(server.addr).await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT, name TEXT)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY t FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let chunk = |from: i64| -> bytes::Bytes {
        (from..from + 1000)
            .map(|i| format!("{i}\tname {i}\n"))
            .collect::<String>()
            .into()
    };
    sink.send(chunk(0)).await.unwrap();
    sink.flush().await.unwrap();
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    let mut failed = None;
    for from in (1000..200_000).step_by(1000) {
        if let Err(e) = sink.send(chunk(from)).await {
            failed = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let error = match failed {
        Some(error) => error,
        None => sink.finish().await.unwrap_err(),
    };
    assert_cancelled(&error);
    let count = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 0);
}
