//! Real Postgres clients against the server: psycopg 3, psycopg2, SQLAlchemy 2, pandas and
//! asyncpg (PyPI),
//! node-postgres with pg-copy-streams (npm) and
//! pgJDBC (Debian's libpostgresql-jdbc-java), each driving a script in `tests/clients/` that
//! exits non-zero on any mismatch. `.ci/setup` installs them.

use crate::common::{PASSWORD, start};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// Runs `program` with `args` from the crate root, connected to `addr` as the admin user,
/// and fails with its output unless it succeeds.
async fn run_client(addr: SocketAddr, program: &'static str, args: &'static [&'static str]) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PGHOST", addr.ip().to_string())
            .env("PGPORT", addr.port().to_string())
            .env("PGUSER", "tastedb")
            .env("PGPASSWORD", PASSWORD)
            .env("PGDATABASE", "tastedb")
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run {program} (run `bash .ci/setup`): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_parameters_executemany_and_copy() {
    let server = start(8).await;
    run_client(server.addr, "python3", &["tests/clients/psycopg_client.py"]).await;
}

/// SQLAlchemy 2 + psycopg 3 and pandas: savepoints, DEALLOCATE ALL after psycopg's prepared
/// statements, typed parameters in casts, the catalog helpers drivers call, `to_sql` and
/// `read_sql` (the same script passes against PostgreSQL 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stack_sqlalchemy_pandas_savepoints_and_casts() {
    let server = start(8).await;
    run_client(
        server.addr,
        "python3",
        &["tests/clients/python_stack_client.py"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_metadata_and_prepared_statements() {
    const JAR: &str = "/usr/share/java/postgresql.jar";
    assert!(
        Path::new(JAR).exists(),
        "{JAR} is missing: run `bash .ci/setup`"
    );
    let server = start(8).await;
    run_client(
        server.addr,
        "java",
        &["-cp", JAR, "tests/clients/JdbcClient.java"],
    )
    .await;
}

/// node-postgres and pg-copy-streams (npm): parameters, parsed types, named prepared
/// statements, COPY both ways, SQLSTATEs (the same script passes against PostgreSQL 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_queries_types_and_copy_streams() {
    let server = start(8).await;
    run_client(server.addr, "node", &["tests/clients/node_client.js"]).await;
}

/// asyncpg (PyPI): binary parameters, dates to 9999-12-31, prepared statements, SQLSTATEs
/// (the same script passes against PostgreSQL 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_binary_parameters_dates_and_prepared_statements() {
    let server = start(8).await;
    run_client(server.addr, "python3", &["tests/clients/asyncpg_client.py"]).await;
}

/// psycopg2 and SQLAlchemy's `postgresql+psycopg2` dialect: parameters, `copy_expert` both
/// ways, its implicit transactions, SQLSTATEs, reflection (passes against PostgreSQL 15 too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_and_its_sqlalchemy_dialect() {
    let server = start(8).await;
    run_client(
        server.addr,
        "python3",
        &["tests/clients/psycopg2_client.py"],
    )
    .await;
}
