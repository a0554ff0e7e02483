//! The privilege matrix over the wire: every kind of statement run by a stranger, a grantee,
//! the owner and a superuser, each answered as PostgreSQL would (42501 where the role lacks
//! the privilege); then grants to PUBLIC and through role membership, REVOKE reaching prepared
//! statements, the predefined server-file roles, and the catalog's view of all this.

use crate::common::{PASSWORD, connect, connect_as, start};
use tokio_postgres::Client;

/// The SQLSTATE `sql` fails with, or "ok".
async fn outcome(client: &Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => "ok".into(),
        Err(e) => e
            .code()
            .map_or_else(|| e.to_string(), |c| c.code().to_string()),
    }
}

const OK: &str = "ok";
const DENIED: &str = "42501";

/// Roles in the order of the matrix's columns.
const ROLES: [&str; 4] = ["eve", "bob", "alice", "tastedb"];

async fn clients(addr: std::net::SocketAddr) -> Vec<Client> {
    let mut clients = Vec::new();
    for role in ROLES {
        let password = if role == "tastedb" { PASSWORD } else { role };
        clients.push(connect_as(addr, role, password).await.unwrap());
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_kind_by_stranger_grantee_owner_and_superuser() {
    let server = start(16).await;
    let admin = connect(server.addr).await;
    for role in ["alice", "bob", "eve"] {
        admin
            .batch_execute(&format!("CREATE USER {role} PASSWORD '{role}'"))
            .await
            .unwrap();
    }
    let alice = connect_as(server.addr, "alice", "alice").await.unwrap();
    alice
        .batch_execute(
            "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE, ts TIMESTAMP);
             INSERT INTO events VALUES ('u1', 'i1', 1, '2026-01-01'), ('u1', 'i2', 1, '2026-01-02'),
                 ('u2', 'i2', 1, '2026-01-03'), ('u2', 'i3', 1, '2026-01-04'),
                 ('u3', 'i1', 1, '2026-01-05'), ('u3', 'i3', 1, '2026-01-06');
             CREATE TABLE secret (item_id TEXT);
             INSERT INTO secret VALUES ('i2');
             CREATE TABLE docs (id BIGINT PRIMARY KEY, v REAL[2]);
             INSERT INTO docs VALUES (100, '[0.1, 0.2]');
             CREATE VIEW recent AS SELECT user_id, ts FROM events;
             TRAIN MODEL m USING als FROM events WITH (factors = 2, iterations = 2, holdout = 0);
             CREATE FEATURE VIEW fv ENTITY (user_id) TIMESTAMP ts AS SELECT user_id, ts FROM events;
             GRANT SELECT ON events, recent TO bob;
             GRANT SELECT ON MODEL m TO bob;
             GRANT SELECT ON FEATURE VIEW fv TO bob;
             GRANT INSERT ON docs TO bob",
        )
        .await
        .unwrap();
    let clients = clients(server.addr).await;
    // [stranger, grantee, owner, superuser]; {i} is the column's number.
    let matrix: &[(&str, [&str; 4])] = &[
        ("SELECT count(*) FROM events", [DENIED, OK, OK, OK]),
        ("SELECT * FROM recent", [DENIED, OK, OK, OK]),
        (
            "SELECT * FROM events WHERE item_id IN (SELECT item_id FROM secret)",
            [DENIED, DENIED, OK, OK],
        ),
        (
            "INSERT INTO events VALUES ('u{i}', 'i1', 1, '2026-02-01')",
            [DENIED, DENIED, OK, OK],
        ),
        (
            "INSERT INTO docs VALUES ({i}, '[0.3, 0.1]')",
            [DENIED, OK, OK, OK],
        ),
        (
            "INSERT INTO docs SELECT 10 + {i}, v FROM docs WHERE id = 100",
            [DENIED, DENIED, OK, OK],
        ),
        ("SELECT * FROM docs", [DENIED, DENIED, OK, OK]),
        (
            "CREATE INDEX IF NOT EXISTS docs_v ON docs USING hnsw (v)",
            [DENIED, DENIED, OK, OK],
        ),
        (
            "SELECT * FROM nearest('docs', 'v', '[0.1, 0.2]', 1)",
            [DENIED, DENIED, OK, OK],
        ),
        (
            "SELECT * FROM recommend('m', 'u1', 2)",
            [DENIED, OK, OK, OK],
        ),
        (
            "SELECT * FROM similar_items('m', 'i1', 2)",
            [DENIED, OK, OK, OK],
        ),
        ("SELECT predict('m', 'u1', 'i2')", [DENIED, OK, OK, OK]),
        (
            "SELECT recommend_items('m', user_id, 2) FROM recent",
            [DENIED, OK, OK, OK],
        ),
        (
            "SELECT * FROM recommend('m', 'u1', 2, filter => (SELECT item_id FROM secret))",
            [DENIED, DENIED, OK, OK],
        ),
        (
            "SELECT * FROM historical_features('fv', (SELECT user_id, ts FROM events))",
            [DENIED, OK, OK, OK],
        ),
        (
            "SELECT * FROM online_features('fv', 'u1')",
            [DENIED, OK, OK, OK],
        ),
        ("EVALUATE MODEL m", [DENIED, OK, OK, OK]),
        (
            "TRAIN MODEL m USING als FROM events WITH (factors = 2, iterations = 1, holdout = 0)",
            [DENIED, DENIED, OK, OK],
        ),
        (
            "ALTER MODEL m SET ACTIVE VERSION 1",
            [DENIED, DENIED, OK, OK],
        ),
        ("MATERIALIZE FEATURE VIEW fv", [DENIED, DENIED, OK, OK]),
        ("GRANT SELECT ON secret TO bob", [DENIED, DENIED, OK, OK]),
        ("REVOKE SELECT ON secret FROM bob", [DENIED, DENIED, OK, OK]),
    ];
    for (template, expected) in matrix {
        for (i, (client, want)) in clients.iter().zip(expected).enumerate() {
            let sql = template.replace("{i}", &i.to_string());
            assert_eq!(
                outcome(client, &sql).await,
                *want,
                "{} runs {sql}",
                ROLES[i]
            );
        }
    }
    // What only the owner (or a superuser) may drop: the stranger and the grantee are
    // refused, the owner succeeds.
    for drop in [
        "DROP INDEX docs_v",
        "DROP VIEW recent",
        "DROP FEATURE VIEW fv",
        "DROP MODEL m",
        "DROP TABLE docs",
    ] {
        for (i, want) in [DENIED, DENIED, OK].into_iter().enumerate() {
            assert_eq!(
                outcome(&clients[i], drop).await,
                want,
                "{} runs {drop}",
                ROLES[i]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_reach_public_members_and_prepared_statements() {
    let server = start(16).await;
    let admin = connect(server.addr).await;
    admin
        .batch_execute(
            "CREATE USER alice PASSWORD 'alice'; CREATE USER bob PASSWORD 'bob';
             CREATE USER eve PASSWORD 'eve'; CREATE ROLE readers",
        )
        .await
        .unwrap();
    let [eve, bob, alice, _] = <[Client; 4]>::try_from(clients(server.addr).await)
        .ok()
        .unwrap();
    alice
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT);
             INSERT INTO t VALUES (1, 'one'), (2, 'two');
             GRANT SELECT ON t TO readers",
        )
        .await
        .unwrap();
    // Membership: eve reads through readers until she leaves it.
    assert_eq!(outcome(&eve, "SELECT * FROM t").await, DENIED);
    assert_eq!(outcome(&alice, "GRANT readers TO eve").await, DENIED);
    admin.batch_execute("GRANT readers TO eve").await.unwrap();
    assert_eq!(outcome(&eve, "SELECT * FROM t").await, OK);
    assert_eq!(outcome(&admin, "GRANT eve TO readers").await, "0LP01");
    admin
        .batch_execute("REVOKE readers FROM eve")
        .await
        .unwrap();
    assert_eq!(outcome(&eve, "SELECT * FROM t").await, DENIED);
    // COPY TO STDOUT reads as a query does.
    let copied = eve.copy_out("COPY t TO STDOUT").await.err();
    assert_eq!(
        copied
            .and_then(|e| e.code().cloned())
            .map(|c| c.code().to_string())
            .as_deref(),
        Some(DENIED)
    );
    // PUBLIC: everyone, including roles made later.
    alice
        .batch_execute("GRANT SELECT ON t TO PUBLIC")
        .await
        .unwrap();
    assert_eq!(outcome(&eve, "SELECT * FROM t").await, OK);
    alice
        .batch_execute("REVOKE ALL ON t FROM PUBLIC")
        .await
        .unwrap();
    // A REVOKE reaches a statement prepared while the privilege was held.
    alice
        .batch_execute("GRANT SELECT ON t TO bob")
        .await
        .unwrap();
    let point = bob
        .prepare("SELECT name FROM t WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(bob.query(&point, &[&1i64]).await.unwrap().len(), 1);
    alice
        .batch_execute("REVOKE SELECT ON t FROM bob")
        .await
        .unwrap();
    let error = bob.query(&point, &[&1i64]).await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some(DENIED), "{error}");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert_eq!(message.as_deref(), Some("permission denied for table t"));
    // What bob creates, bob owns: alice cannot read it until bob grants it.
    bob.batch_execute("CREATE TABLE mine (x BIGINT); INSERT INTO mine VALUES (7)")
        .await
        .unwrap();
    assert_eq!(outcome(&alice, "SELECT * FROM mine").await, DENIED);
    assert_eq!(outcome(&alice, "DROP TABLE mine").await, DENIED);
    bob.batch_execute("GRANT SELECT ON mine TO alice")
        .await
        .unwrap();
    assert_eq!(outcome(&alice, "SELECT * FROM mine").await, OK);
    // Privileges a kind of object does not have, and roles that do not exist.
    assert_eq!(outcome(&alice, "GRANT TRAIN ON t TO bob").await, "0LP01");
    assert_eq!(
        outcome(&alice, "GRANT SELECT ON t TO nobody").await,
        "42704"
    );
    assert_eq!(
        outcome(&alice, "GRANT SELECT ON nothing TO bob").await,
        "42P01"
    );
    // A role that owns objects cannot be dropped; one with grants only can.
    assert_eq!(outcome(&admin, "DROP USER bob").await, "2BP01");
    admin
        .batch_execute("GRANT readers TO eve; DROP ROLE readers")
        .await
        .unwrap();
    assert_eq!(outcome(&eve, "SELECT * FROM t").await, DENIED);
}

/// A server, a superuser's connection and one of the user `eve`, made by it.
async fn admin_and_eve() -> (crate::common::Running, Client, Client) {
    let server = start(16).await;
    let admin = connect(server.addr).await;
    admin
        .batch_execute("CREATE USER eve PASSWORD 'eve'")
        .await
        .unwrap();
    let eve = connect_as(server.addr, "eve", "eve").await.unwrap();
    (server, admin, eve)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_files_need_superuser_or_the_predefined_roles() {
    let (server, admin, eve) = admin_and_eve().await;
    eve.batch_execute("CREATE TABLE mine (id BIGINT)")
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let input = scratch.path().join("in.csv");
    std::fs::write(&input, "id\n42\n").unwrap();
    let output = scratch.path().join("out.csv");
    let (input, output) = (input.display(), output.display());
    let reads = [
        format!("COPY mine FROM '{input}' (FORMAT csv, HEADER true)"),
        format!(
            "CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION '{input}' OPTIONS ('format.has_header' 'true')"
        ),
    ];
    let writes = [
        format!("COPY mine TO '{output}'"),
        format!("COPY (SELECT 1) TO '{output}'"),
        format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{output}'"),
    ];
    for sql in reads.iter().chain(&writes) {
        assert_eq!(outcome(&eve, sql).await, DENIED, "{sql}");
    }
    admin
        .batch_execute("GRANT pg_read_server_files TO eve")
        .await
        .unwrap();
    for sql in &reads {
        assert_eq!(outcome(&eve, sql).await, OK, "{sql}");
    }
    for sql in &writes {
        assert_eq!(outcome(&eve, sql).await, DENIED, "{sql}");
    }
    admin
        .batch_execute("GRANT pg_write_server_files TO eve")
        .await
        .unwrap();
    assert_eq!(outcome(&eve, &writes[0]).await, OK);
    // The external table eve made is hers.
    assert_eq!(outcome(&admin, "SELECT * FROM ext").await, OK);
    admin
        .batch_execute("CREATE USER bob PASSWORD 'bob'")
        .await
        .unwrap();
    let bob = connect_as(server.addr, "bob", "bob").await.unwrap();
    assert_eq!(outcome(&bob, "SELECT * FROM ext").await, DENIED);
    // Only a superuser hands out the predefined roles, even with CREATEROLE.
    admin
        .batch_execute("CREATE USER carol CREATEROLE PASSWORD 'carol'")
        .await
        .unwrap();
    let carol = connect_as(server.addr, "carol", "carol").await.unwrap();
    assert_eq!(
        outcome(&carol, "GRANT pg_read_server_files TO bob").await,
        DENIED
    );
}

/// Engine settings are every session's, so only a superuser sets them; SHOW and a
/// connection's own parameters are anyone's, and a refused SET changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_settings_are_set_by_superusers_only() {
    let (_server, admin, eve) = admin_and_eve().await;
    for sql in [
        "SET datafusion.execution.batch_size = 1",
        "SET tastedb.fast_path = false",
        "SET tastedb.cache_ttl_seconds = 0",
        "SET tastedb.cluster = 'df://127.0.0.1:1'",
    ] {
        assert_eq!(outcome(&eve, sql).await, DENIED, "{sql}");
        let error = eve.batch_execute(sql).await.unwrap_err();
        assert!(
            error.as_db_error().is_some_and(|e| e
                .message()
                .starts_with("permission denied to set parameter")),
            "{error:?}"
        );
    }
    for sql in [
        "SET statement_timeout = '5s'",
        "SET search_path = public",
        "SET application_name = 'eve'",
    ] {
        assert_eq!(outcome(&eve, sql).await, OK, "{sql}");
    }
    let shown = eve
        .simple_query("SHOW tastedb.cache_ttl_seconds")
        .await
        .unwrap();
    let value = |messages: Vec<tokio_postgres::SimpleQueryMessage>| {
        messages.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(1).map(String::from),
            _ => None,
        })
    };
    assert_eq!(value(shown).as_deref(), Some("300"));
    assert_eq!(
        outcome(&admin, "SET tastedb.cache_ttl_seconds = 7").await,
        OK
    );
    let shown = eve
        .simple_query("SHOW tastedb.cache_ttl_seconds")
        .await
        .unwrap();
    assert_eq!(value(shown).as_deref(), Some("7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_tells_who_may_do_what() {
    let server = start(16).await;
    let admin = connect(server.addr).await;
    admin
        .batch_execute(
            "CREATE USER bob PASSWORD 'bob'; CREATE ROLE readers;
             GRANT readers TO bob; ALTER ROLE bob SET statement_timeout = '5s';
             CREATE TABLE t (id BIGINT); GRANT SELECT, INSERT ON t TO readers",
        )
        .await
        .unwrap();
    let roles = admin
        .query(
            "SELECT rolname, rolsuper, rolcanlogin FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%' ORDER BY rolname",
            &[],
        )
        .await
        .unwrap();
    let roles: Vec<(String, bool, bool)> = roles
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        roles,
        [
            ("bob".to_string(), false, true),
            ("readers".to_string(), false, false),
            ("tastedb".to_string(), true, true)
        ]
    );
    let users: Vec<String> = admin
        .query("SELECT usename FROM pg_catalog.pg_user ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, ["bob", "tastedb"]);
    let bob = connect_as(server.addr, "bob", "bob").await.unwrap();
    let row = bob
        .query_one(
            "SELECT current_user, has_table_privilege('t', 'INSERT'),
                    has_table_privilege('t', 'DELETE'),
                    has_table_privilege('tastedb', 't', 'DELETE')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "bob");
    assert!(row.get::<_, bool>(1));
    assert!(!row.get::<_, bool>(2));
    assert!(row.get::<_, bool>(3));
    // The role default applies to bob's new sessions.
    let timeout = bob.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(timeout.get::<_, String>(0), "5s");
    assert_eq!(
        outcome(&admin, "ALTER ROLE bob SET statement_timeout = 'soon'").await,
        "22023"
    );
}
