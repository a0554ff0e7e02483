//! PostgreSQL side by side: every script under `tests/side_by_side/` runs through psql against
//! a throwaway PostgreSQL 15 (initdb'd here) and against `tastedb serve`, and the two outputs
//! are compared chunk by chunk (chunks are separated by blank lines). A chunk that starts
//! with `-- differs:` must differ (the reason follows, and docs/compatibility.md lists it);
//! every other chunk must print exactly what PostgreSQL prints, errors as their SQLSTATE.

use crate::psql::{PASSWORD, serve};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where PostgreSQL 15's server programs are (Debian's postgresql-15; `.ci/setup` installs
/// it); `TASTEDB_PG_BIN` overrides.
fn postgres_bin() -> PathBuf {
    std::env::var_os("TASTEDB_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// A PostgreSQL server in a temporary directory, stopped when dropped. PostgreSQL refuses to
/// run as root, so as root its programs run as the `postgres` user.
struct Postgres {
    dir: PathBuf,
    port: u16,
}

impl Postgres {
    fn start(dir: &Path) -> Postgres {
        let dir = dir.join("postgres");
        std::fs::create_dir_all(&dir).unwrap();
        let mut permissions = std::fs::metadata(&dir).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o777);
        std::fs::set_permissions(&dir, permissions.clone()).unwrap();
        if let Some(parent) = dir.parent() {
            std::fs::set_permissions(parent, permissions).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let bin = postgres_bin();
        let data = dir.join("data");
        run_as_postgres(&format!(
            "{} -D {} -A trust -U tastedb --no-sync >/dev/null",
            bin.join("initdb").display(),
            data.display()
        ));
        run_as_postgres(&format!(
            "{} -D {} -w -l {} -o '-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off' start >/dev/null",
            bin.join("pg_ctl").display(),
            data.display(),
            dir.join("log").display(),
            dir.display()
        ));
        let postgres = Postgres { dir, port };
        let created = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "tastedb"])
            .args([
                "-d",
                "postgres",
                "-X",
                "-q",
                "-c",
                "CREATE DATABASE tastedb",
            ])
            .status()
            .unwrap();
        assert!(created.success(), "CREATE DATABASE on PostgreSQL");
        postgres
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        run_as_postgres(&format!(
            "{} -D {} -m immediate stop >/dev/null",
            postgres_bin().join("pg_ctl").display(),
            self.dir.join("data").display()
        ));
    }
}

/// Runs `command` in a shell, as the `postgres` user when this process is root.
fn run_as_postgres(command: &str) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let status = if root {
        Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", command])
            .status()
    } else {
        Command::new("sh").args(["-c", command]).status()
    };
    assert!(
        status.is_ok_and(|s| s.success()),
        "`{command}` failed: PostgreSQL 15 is needed (.ci/setup installs postgresql-15)"
    );
}

/// One chunk of a script: its text, and whether it is known to differ.
struct Chunk {
    text: String,
    differs: bool,
}

fn chunks(script: &str) -> Vec<Chunk> {
    script
        .split("\n\n")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|text| Chunk {
            differs: text.starts_with("-- differs:"),
            text: text.to_string(),
        })
        .collect()
}

const MARK: &str = "@@@ chunk";

/// The script's chunks with a marker echoed before each, so outputs split the same way.
fn marked(chunks: &[Chunk]) -> String {
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| format!("\\echo '{MARK} {i}'\n{}\n", c.text))
        .collect()
}

/// psql's output (stdout and stderr in the order written) of `script` against `port`, split
/// at the markers.
fn run_psql(port: u16, script: &str, dir: &Path, name: &str) -> Vec<String> {
    let input = dir.join(format!("{name}.sql"));
    std::fs::write(&input, script).unwrap();
    let output_path = dir.join(format!("{name}.out"));
    let output = File::create(&output_path).unwrap();
    let status = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "tastedb"])
        .args(["-d", "tastedb", "-X", "-v", "VERBOSITY=sqlstate", "-f"])
        .arg(&input)
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .status()
        .expect("psql is installed");
    assert!(status.success(), "psql ran {name}");
    let text = std::fs::read_to_string(&output_path).unwrap();
    let text = text.replace(&format!("psql:{}:", input.display()), "psql:");
    text.split(MARK)
        .skip(1)
        .map(|part| {
            part.split_once('\n')
                .map_or("", |(_, rest)| rest)
                .to_string()
        })
        .collect()
}

/// Strips psql's `psql:LINE:` prefix of error lines (the markers move line numbers).
fn without_line_numbers(output: &str) -> String {
    output
        .lines()
        .map(|line| match line.strip_prefix("psql:") {
            Some(rest) => rest.split_once(": ").map_or(rest, |(_, r)| r).to_string(),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_scripts_print_what_postgresql_prints() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = Postgres::start(dir.path());
    let (tastedb, _stop) = serve(&dir.path().join("tastedb"), None).await;
    let scripts = std::fs::read_dir("tests/side_by_side").unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    for script in scripts {
        let path = script.unwrap().path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let chunks = chunks(&std::fs::read_to_string(&path).unwrap());
        let script = marked(&chunks);
        let work = dir.path().to_path_buf();
        let port = postgres.port;
        let expected = {
            let (script, work, name) = (script.clone(), work.clone(), format!("{name}.postgres"));
            tokio::task::spawn_blocking(move || run_psql(port, &script, &work, &name))
                .await
                .unwrap()
        };
        let got = {
            let name = format!("{name}.tastedb");
            tokio::task::spawn_blocking(move || run_psql(tastedb, &script, &work, &name))
                .await
                .unwrap()
        };
        assert_eq!(
            expected.len(),
            chunks.len(),
            "{name}: PostgreSQL ran every chunk"
        );
        assert_eq!(got.len(), chunks.len(), "{name}: TasteDB ran every chunk");
        for ((chunk, expected), got) in chunks.iter().zip(&expected).zip(&got) {
            compared += 1;
            let (expected, got) = (without_line_numbers(expected), without_line_numbers(got));
            match (chunk.differs, expected == got) {
                (false, false) => failures.push(format!(
                    "{name}: {}\n--- PostgreSQL 15\n{expected}\n--- TasteDB\n{got}",
                    chunk.text
                )),
                (true, true) => failures.push(format!(
                    "{name}: marked as differing but prints the same now; drop the mark \
                     (and its line in docs/compatibility.md):\n{}",
                    chunk.text
                )),
                _ => {}
            }
        }
    }
    assert!(compared > 0, "no scripts under tests/side_by_side");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn scripts_split_into_marked_chunks() {
    let chunks = chunks("SELECT 1;\n\n-- differs: sizes\n\\dt+\n\n\n");
    assert_eq!(chunks.len(), 2);
    assert!(!chunks[0].differs && chunks[1].differs);
    assert_eq!(
        marked(&chunks[..1]),
        format!("\\echo '{MARK} 0'\nSELECT 1;\n")
    );
}
