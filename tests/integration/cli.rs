//! The `tastedb` binary: `sql` with -c, a file and stdin; `import` of CSV; errors with SQLSTATE.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn tastedb(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tastedb starts");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("tastedb finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn sql_runs_commands_files_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/demo.sql");
    let output = tastedb(&data, &["sql", demo.to_str().unwrap()], None);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("| Amélie     | 1      | 5.0    |"), "{text}");

    let output = tastedb(
        &data,
        &["sql", "-c", "SELECT count(*) AS n FROM demo_events"],
        None,
    );
    assert!(stdout(&output).contains("| 4 |"), "{output:?}");

    // --timing prints one line per statement to stderr; -q leaves stdout empty
    let output = tastedb(
        &data,
        &["sql", "--timing", "-q", "-c", "SELECT 1; SELECT 2"],
        None,
    );
    let timings = String::from_utf8_lossy(&output.stderr);
    assert_eq!(timings.matches("Time: ").count(), 2, "{output:?}");
    assert!(stdout(&output).is_empty(), "{output:?}");

    let output = tastedb(
        &data,
        &["sql"],
        Some("SELECT title FROM demo_items WHERE item_id = 'i3';"),
    );
    assert!(stdout(&output).contains("| Alien |"), "{output:?}");
}

#[test]
fn errors_print_sqlstate_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let output = tastedb(
        &dir.path().join("data"),
        &["sql", "-c", "SELECT * FROM nowhere"],
        None,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ERROR 42P01"), "{stderr}");
}

#[test]
fn import_loads_a_csv_file_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let create = "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE)";
    assert!(
        tastedb(&data, &["sql", "-c", create], None)
            .status
            .success()
    );
    let good = dir.path().join("good.csv");
    let mut csv = String::from("user_id,item_id,weight\n");
    for i in 0..2500 {
        csv.push_str(&format!("u{},i{},{}\n", i % 7, i % 13, i % 5));
    }
    std::fs::write(&good, csv).unwrap();
    let output = tastedb(
        &data,
        &["import", "--table", "events", good.to_str().unwrap()],
        None,
    );
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout(&output).contains("imported 2500 rows into events"),
        "{output:?}"
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "user_id,item_id,weight\nu1,i1,1\nu2,i2,heavy\n").unwrap();
    let output = tastedb(
        &data,
        &["import", "--table", "events", bad.to_str().unwrap()],
        None,
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("ERROR 22P02"),
        "{output:?}"
    );

    let output = tastedb(
        &data,
        &["sql", "-c", "SELECT count(*) AS n FROM events"],
        None,
    );
    assert!(stdout(&output).contains("| 2500 |"), "{output:?}");
}

#[test]
fn a_directory_held_by_another_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _held = tastedb::Engine::open(&data).unwrap();
    let output = tastedb(&data, &["sql", "-c", "SELECT 1"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ERROR 55006") && stderr.contains("in use by another"),
        "{stderr}"
    );
}

/// `tastedb serve --password-file` creates the admin from the file's first line; a failed
/// login is logged with the client's address; a panic-free SIGTERM stops the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_the_admin_password_from_a_file_and_logs_failed_logins_and_statements() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "from a file\nignored line\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0", "--password-file"])
        .arg(&password_file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("tastedb serve starts");
    let (lines_out, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_out.send(line);
        }
    });
    let addr = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.recv())
            .await
            .expect("the server starts within a minute")
            .expect("the server prints where it listens");
        if let Some(rest) = line.strip_prefix("TasteDB listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let client = crate::common::connect_as(addr, "tastedb", "from a file")
        .await
        .expect("the file's first line is the password");
    let one = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(one.get::<_, i64>(0), 1);
    let refused = crate::common::connect_as(addr, "tastedb", "ignored line")
        .await
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("28P01"), "{refused}");
    let logged = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.recv())
            .await
            .expect("the failed login is logged")
            .expect("stderr stays open");
        if line.contains("password authentication failed") {
            break line;
        }
    };
    assert!(
        logged.contains("127.0.0.1") && logged.contains("tastedb"),
        "{logged}"
    );
    // failed statements are logged with their SQLSTATE and text: one that fails at Parse
    // (extended protocol), one whose rows fail while they stream
    let missing = client.query("SELECT * FROM no_such_table", &[]).await;
    assert!(missing.is_err());
    let streamed = client
        .simple_query("SELECT 1 / (x - 1) FROM (VALUES (1)) AS t(x)")
        .await;
    assert!(streamed.is_err());
    for (sqlstate, text) in [("42P01", "no_such_table"), ("22012", "1 / (x - 1)")] {
        loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.recv())
                .await
                .unwrap_or_else(|_| panic!("the failed {text} is logged"))
                .expect("stderr stays open");
            if line.contains(sqlstate) && line.contains(text) {
                assert!(
                    line.contains("WARN") && line.contains("127.0.0.1"),
                    "{line}"
                );
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs `tastedb --memory-limit <limit> sql -c <sql>` on `data` and returns its peak resident
/// memory in bytes (VmHWM, sampled until it exits), checking that it succeeded.
fn peak_memory(data: &Path, limit: &str, sql: &str) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .arg("--data")
        .arg(data)
        .args(["--memory-limit", limit, "sql", "-q", "-c", sql])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tastedb starts");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb * 1024);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{sql}: {output:?}");
    peak
}

/// `--memory-limit`: a GROUP BY over 4 million scattered keys, which holds far more without a
/// limit, stays within the process's baseline plus the limit plus 64 MiB (the margin
/// docs/security.md states) by spilling. (`memory.rs` checks the answers of spilled queries.)
#[test]
fn a_memory_limit_bounds_the_resident_memory_of_a_big_aggregation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let group_by = "SELECT count(*) FROM (SELECT (value * 7919) % 4000037 AS k, count(*) \
                    FROM generate_series(1, 4000000) GROUP BY (value * 7919) % 4000037)";
    let baseline = peak_memory(&data, "64MB", "SELECT 1");
    let bound = baseline + (64 << 20) + (64 << 20);
    let unlimited = peak_memory(&data, "90%", group_by);
    let limited = peak_memory(&data, "64MB", group_by);
    assert!(
        unlimited > bound,
        "the query needs more than the bound without a limit: {unlimited} <= {bound}"
    );
    assert!(limited <= bound, "{limited} bytes > {bound}");
}

/// `tastedb backup --to` and `tastedb restore --from`: the restored directory answers as the
/// original did; a restore over a directory with anything in it is refused.
#[test]
fn backup_and_restore_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backups, restored) = (
        dir.path().join("data"),
        dir.path().join("backups"),
        dir.path().join("restored"),
    );
    let created = tastedb(
        &data,
        &[
            "sql",
            "-c",
            "CREATE TABLE t (id BIGINT PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)",
        ],
        None,
    );
    assert!(created.status.success(), "{created:?}");
    let backed_up = tastedb(&data, &["backup", "--to", backups.to_str().unwrap()], None);
    assert!(backed_up.status.success(), "{backed_up:?}");
    assert!(
        String::from_utf8_lossy(&backed_up.stderr).contains("backup 1 of"),
        "{backed_up:?}"
    );
    let restore = ["restore", "--from", backups.to_str().unwrap()];
    let output = tastedb(&restored, &restore, None);
    assert!(output.status.success(), "{output:?}");
    let counted = tastedb(
        &restored,
        &["sql", "-c", "SELECT count(*) AS n FROM t"],
        None,
    );
    assert!(stdout(&counted).contains("| 3 |"), "{counted:?}");
    let again = tastedb(&restored, &restore, None);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("ERROR 22023"),
        "{again:?}"
    );
}
