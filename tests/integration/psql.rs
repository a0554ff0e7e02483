//! psql, the real client, against `tastedb serve`: its catalog commands and error display.

use std::path::{Path, PathBuf};
use std::process::Command;
use tastedb::Engine;
use tastedb::server::{AuthMode, ServeOptions, Server};

pub(crate) const PASSWORD: &str = "psql-test";

/// Runs psql with `args` against `port`; returns (success, stdout, stderr).
fn psql(port: u16, args: &[String]) -> (bool, String, String) {
    psql_with_ssl(port, "prefer", args)
}

fn psql_with_ssl(port: u16, sslmode: &str, args: &[String]) -> (bool, String, String) {
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "tastedb",
            "-d",
            "tastedb",
        ])
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", sslmode)
        .output()
        .expect("psql is installed (.ci/setup installs postgresql-client)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts a server on a fresh data directory; returns its port and the sender that stops it.
pub(crate) async fn serve(
    dir: &Path,
    tls: Option<(PathBuf, PathBuf)>,
) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let engine = Engine::open(dir.join("data")).unwrap();
    engine.users().set_password("tastedb", PASSWORD).unwrap();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: AuthMode::Scram,
        max_connections: 8,
        tls_required: tls.is_some(),
        tls,
        statement_timeout: "0".into(),
        checkpoints: None,
        follow: None,
    };
    let server = Server::bind(engine, options).await.unwrap();
    let port = server.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (port, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_and_describes_tables_and_points_at_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (port, stop) = serve(dir.path(), None).await;

    let run = move |args: Vec<&str>| {
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        tokio::task::spawn_blocking(move || psql(port, &args))
    };
    let (ok, out, err) = run(vec![
        "-c",
        "CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT, weight DOUBLE)",
        "-c",
        "INSERT INTO events VALUES ('u1', 'i1', 1.5), ('u2', NULL, 2.25)",
    ])
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("CREATE TABLE") && out.contains("INSERT 0 2"),
        "{out}"
    );

    let (ok, out, err) = run(vec!["-c", "\\dt"]).await.unwrap();
    assert!(ok && out.contains("public | events | table"), "{out}{err}");

    let (ok, out, err) = run(vec!["-c", "\\l", "-c", "\\dn", "-c", "\\df"])
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("List of databases") && out.contains(" tastedb "),
        "{out}"
    );
    assert!(
        out.contains("List of schemas") && out.contains(" public "),
        "{out}"
    );
    assert!(out.contains("List of functions"), "{out}");

    let (ok, out, err) = run(vec!["-c", "\\d events"]).await.unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("user_id | text") && out.contains("not null"),
        "{out}"
    );
    assert!(out.contains("weight  | double precision"), "{out}");

    let (ok, out, err) = run(vec![
        "-A",
        "-t",
        "-c",
        "SELECT user_id, weight FROM events ORDER BY 1",
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "u1|1.5\nu2|2.25\n");

    let csv = dir.path().join("more.csv");
    std::fs::write(&csv, "user_id,item_id,weight\nu3,i3,3.5\nu4,,4.5\n").unwrap();
    let copy: &'static str =
        Box::leak(format!("\\copy events from '{}' csv header", csv.display()).into_boxed_str());
    let (ok, out, err) = run(vec!["-c", copy]).await.unwrap();
    assert!(ok && out.contains("COPY 2"), "{out}{err}");
    let (ok, out, err) = run(vec![
        "-A",
        "-t",
        "-c",
        "SELECT count(*), sum(weight) FROM events",
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "4|11.75\n");

    let (ok, _, err) = run(vec!["-c", "SELECT user_id FROM events WHERE weight > > 1"])
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        err.contains("ERROR:") && err.contains("LINE 1:") && err.contains('^'),
        "{err}"
    );

    // \du and \dp show roles, memberships and privileges as PostgreSQL's psql shows them.
    let (ok, out, err) = run(vec![
        "-c",
        "CREATE ROLE readers; CREATE USER bob; GRANT readers TO bob",
        "-c",
        "GRANT SELECT ON events TO bob; GRANT SELECT, INSERT ON events TO PUBLIC",
        "-c",
        "\\du",
        "-c",
        "\\dp events",
    ])
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(" bob       |                        | {readers}"),
        "{out}"
    );
    assert!(out.contains(" readers   | Cannot login"), "{out}");
    assert!(
        out.contains(" tastedb   | Superuser, Create role |"),
        "{out}"
    );
    assert!(
        out.contains("public | events | table | tastedb=arwdDxt/tastedb+")
            && out.contains("bob=r/tastedb")
            && out.contains("=ar/tastedb"),
        "{out}"
    );
    let _ = stop.send(());
}

/// A cursor and a savepoint in one transaction block sent as one query: psql prints exactly
/// what it prints against PostgreSQL 15 (captured there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_cursors_and_savepoints_as_postgresql_does() {
    let dir = tempfile::tempdir().unwrap();
    let (port, stop) = serve(dir.path(), None).await;
    let args: Vec<String> = [
        "-c",
        "begin; declare c cursor for select x from generate_series(1,3) as s(x) order by x; \
         fetch 2 from c; fetch all from c; close c; savepoint a; release a; commit;",
    ]
    .map(str::to_string)
    .to_vec();
    let (ok, out, err) = tokio::task::spawn_blocking(move || psql(port, &args))
        .await
        .unwrap();
    assert!(ok, "{err}");
    let postgres = "BEGIN\nDECLARE CURSOR\n x \n---\n 1\n 2\n(2 rows)\n\n x \n---\n 3\n(1 row)\n\n\
                    CLOSE CURSOR\nSAVEPOINT\nRELEASE\nCOMMIT\n";
    assert_eq!(out, postgres);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_and_can_be_required() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::common::self_signed_certificate(dir.path());
    let (port, stop) = serve(dir.path(), Some((cert, key))).await;
    // sslmode=require refuses to go on without TLS, so success proves the TLS handshake
    let query = vec![
        "-A".to_string(),
        "-t".into(),
        "-c".into(),
        "SELECT 1".into(),
    ];
    let (ok, out, err) = tokio::task::spawn_blocking({
        let query = query.clone();
        move || psql_with_ssl(port, "require", &query)
    })
    .await
    .unwrap();
    assert!(ok && out.trim() == "1", "{out}{err}");
    let (ok, _, err) = tokio::task::spawn_blocking(move || psql_with_ssl(port, "disable", &query))
        .await
        .unwrap();
    assert!(!ok && err.contains("requires TLS"), "{err}");
    let _ = stop.send(());
}
