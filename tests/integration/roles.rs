//! Roles over the wire: what an ordinary login, a role with CREATEROLE and a superuser may do
//! with roles and with the server's files. PostgreSQL answers each refusal with 42501.

use crate::common::{PASSWORD, connect, connect_as, start, start_with};
use tastedb::server::AuthMode;
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

#[tokio::test]
async fn an_ordinary_login_cannot_take_the_server_over() {
    let server = start(8).await;
    let admin = connect(server.addr).await;
    let scratch = tempfile::tempdir().unwrap();
    let secret = scratch.path().join("secret.csv");
    std::fs::write(&secret, "id\n42\n").unwrap();
    let written = scratch.path().join("by_bob.csv");
    admin
        .batch_execute(
            "CREATE TABLE pub (id BIGINT);
             CREATE USER bob WITH PASSWORD 'bob pw'",
        )
        .await
        .unwrap();
    let bob = connect_as(server.addr, "bob", "bob pw").await.unwrap();
    let secret = secret.display();
    let written_path = written.display();
    let refused = [
        format!("COPY pub FROM '{secret}' (FORMAT csv, HEADER true)"),
        format!("COPY (SELECT 1) TO '{written_path}'"),
        format!("COPY pub TO '{written_path}'"),
        format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{written_path}'"),
        format!("CREATE EXTERNAL TABLE leak (id BIGINT) STORED AS CSV LOCATION '{secret}'"),
        "CREATE USER mallory WITH PASSWORD 'm'".to_string(),
        "CREATE ROLE boss SUPERUSER".to_string(),
        "ALTER USER tastedb WITH PASSWORD 'taken'".to_string(),
        "ALTER USER bob SUPERUSER".to_string(),
        "ALTER USER bob CREATEROLE".to_string(),
        "DROP USER tastedb".to_string(),
    ];
    for sql in &refused {
        assert_eq!(outcome(&bob, sql).await, "42501", "{sql}");
    }
    assert!(!written.exists(), "bob wrote a file on the server");
    assert_eq!(outcome(&bob, "DROP USER bob").await, "55006");
    // What bob may do: change his own password; the admin's table is not his
    // (`privileges.rs` has the whole matrix).
    assert_eq!(outcome(&bob, "INSERT INTO pub VALUES (1)").await, "42501");
    assert_eq!(
        outcome(&bob, "ALTER USER bob PASSWORD 'new pw'").await,
        "ok"
    );
    assert!(connect_as(server.addr, "bob", "new pw").await.is_ok());
    assert!(connect_as(server.addr, "bob", "bob pw").await.is_err());
    // The admin is untouched and, as a superuser, reaches the files.
    let admin_again = connect_as(server.addr, "tastedb", PASSWORD).await.unwrap();
    assert_eq!(
        outcome(
            &admin_again,
            &format!("COPY pub FROM '{secret}' (FORMAT csv, HEADER true)")
        )
        .await,
        "ok"
    );
    assert_eq!(
        outcome(&admin, &format!("COPY pub TO '{written_path}'")).await,
        "ok"
    );
    assert!(written.exists());
}

#[tokio::test]
async fn createrole_manages_ordinary_roles_only() {
    let server = start(8).await;
    let admin = connect(server.addr).await;
    admin
        .batch_execute("CREATE ROLE carol WITH CREATEROLE LOGIN PASSWORD 'c'")
        .await
        .unwrap();
    let carol = connect_as(server.addr, "carol", "c").await.unwrap();
    for (sql, expected) in [
        ("CREATE USER dave PASSWORD 'd'", "ok"),
        ("ALTER USER dave NOLOGIN", "ok"),
        ("CREATE USER eve SUPERUSER PASSWORD 'e'", "42501"),
        ("ALTER USER dave SUPERUSER", "42501"),
        ("ALTER USER tastedb PASSWORD 'taken'", "42501"),
        ("DROP USER tastedb", "42501"),
        ("DROP USER dave", "ok"),
    ] {
        assert_eq!(outcome(&carol, sql).await, expected, "{sql}");
    }
    // A superuser makes another superuser, who may then do what superusers do.
    admin
        .batch_execute("CREATE USER root2 SUPERUSER PASSWORD 'r'; ALTER USER carol NOCREATEROLE")
        .await
        .unwrap();
    let root2 = connect_as(server.addr, "root2", "r").await.unwrap();
    assert_eq!(outcome(&root2, "ALTER USER carol CREATEROLE").await, "ok");
    assert_eq!(outcome(&carol, "CREATE USER frank").await, "ok");
}

#[tokio::test]
async fn roles_without_login_or_password_cannot_log_in() {
    let server = start(8).await;
    let admin = connect(server.addr).await;
    admin
        .batch_execute(
            "CREATE ROLE readers PASSWORD 'r';
             CREATE USER nopass;
             CREATE USER later PASSWORD 'l'; ALTER USER later NOLOGIN",
        )
        .await
        .unwrap();
    for (user, password) in [("readers", "r"), ("nopass", ""), ("later", "l")] {
        let error = connect_as(server.addr, user, password).await.unwrap_err();
        assert_eq!(
            error.code().map(|c| c.code()),
            Some("28P01"),
            "{user}: {error}"
        );
    }
}

#[tokio::test]
async fn trust_logs_in_as_the_role_the_client_names() {
    let server = start_with(AuthMode::Trust, 8).await;
    let admin = connect_as(server.addr, "tastedb", "").await.unwrap();
    admin
        .batch_execute("CREATE USER bob; CREATE ROLE readers")
        .await
        .unwrap();
    let bob = connect_as(server.addr, "bob", "").await.unwrap();
    assert_eq!(outcome(&bob, "CREATE USER mallory").await, "42501");
    for (user, expected) in [("nobody", "28000"), ("readers", "28000")] {
        let error = connect_as(server.addr, user, "").await.unwrap_err();
        assert_eq!(error.code().map(|c| c.code()), Some(expected), "{user}");
    }
}
