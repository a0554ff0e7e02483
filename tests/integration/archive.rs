//! Continuous Parquet archives (`ALTER TABLE … SET (archive = …)`): every row archived once,
//! under its day's directory, read back by `archive('t')` as the same rows as the table; the
//! archive survives restarts and `tastedb serve` killed with SIGKILL while it archives; an
//! S3-compatible store (moto's server) works as the local file system does; and the errors and
//! privileges of setting one up.

use crate::common::{MotoS3, query, rows, serve_process, trust_client};
use std::path::Path;
use std::time::{Duration, Instant};
use tastedb::Engine;

/// The rows of `table` in the order of every column.
const COLUMNS: &str = "user_id, item_id, weight, ts";

/// Waits (up to 60 s) until `table`'s archive holds `rows` rows, and returns its
/// `tastedb_archives` row as text.
async fn until_archived(engine: &Engine, table: &str, rows: u64) -> Vec<String> {
    let sql = format!(
        "SELECT rows, state, batches, files, bytes, row_id_watermark, last_error \
         FROM tastedb_archives WHERE table_name = '{table}'"
    );
    let started = Instant::now();
    loop {
        let found = query(engine, &sql).await;
        if found.first().is_some_and(|r| r[0] == rows.to_string()) {
            return found[0].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{table} was not archived up to {rows} rows: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` events from number `first` on, over three days (every 7th without a time).
fn events(first: u64, n: u64) -> String {
    let values: Vec<String> = (first..first + n)
        .map(|i| {
            let ts = match i % 7 {
                0 => "NULL".to_string(),
                _ => format!("TIMESTAMP '2026-12-0{} {:02}:00:00'", 5 + i % 3, i % 24),
            };
            format!("('u{}', 'i{}', {}.5, {ts})", i % 13, i, i)
        })
        .collect();
    format!("INSERT INTO events VALUES {}", values.join(", "))
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            match path.is_dir() {
                true => stack.push(path),
                false => found.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                ),
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_is_archived_once_by_day_and_reads_back_as_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = dir.path().join("archive");
    let url = format!("file://{}/events", root.display());
    {
        let engine = Engine::open(&data).unwrap();
        engine
            .sql("CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE, ts TIMESTAMP)")
            .await
            .unwrap();
        engine.sql(&events(0, 700)).await.unwrap();
        engine
            .sql(&format!(
                "ALTER TABLE events SET (archive = '{url}', archive_every = '50 milliseconds', \
                 partition_by = 'day(ts)')"
            ))
            .await
            .unwrap();
        let status = until_archived(&engine, "events", 700).await;
        assert_eq!(status[1], "running");
        assert_eq!(status[6], "NULL", "no error: {status:?}");

        // one directory per day, NULL times in Hive's default partition, nothing left staged
        let files = files_under(&root.join("events"));
        let directories: std::collections::BTreeSet<&str> = (files.iter())
            .map(|f| f.split('/').next().unwrap())
            .collect();
        assert_eq!(
            directories.into_iter().collect::<Vec<_>>(),
            [
                "day=2026-12-05",
                "day=2026-12-06",
                "day=2026-12-07",
                "day=__HIVE_DEFAULT_PARTITION__"
            ]
        );
        assert!(files.iter().all(|f| f.ends_with(".parquet")), "{files:?}");

        // the same rows as the table, and the partition column
        let ordered = format!("ORDER BY {COLUMNS}");
        assert_eq!(
            query(
                &engine,
                &format!("SELECT {COLUMNS} FROM archive('events') {ordered}")
            )
            .await,
            query(&engine, &format!("SELECT {COLUMNS} FROM events {ordered}")).await
        );
        assert_eq!(
            query(
                &engine,
                "SELECT day, count(*) FROM archive('events') WHERE day BETWEEN '2026-12-06' \
                 AND '2026-12-07' GROUP BY day ORDER BY day"
            )
            .await,
            [["2026-12-06", "200"], ["2026-12-07", "200"]]
        );

        // rows written later go in later batches, and reads see them (no stale listing)
        engine.sql(&events(700, 300)).await.unwrap();
        let status = until_archived(&engine, "events", 1000).await;
        assert!(status[2].parse::<u64>().unwrap() >= 2, "{status:?}");
        assert_eq!(
            query(
                &engine,
                "SELECT count(*), count(DISTINCT item_id) FROM archive('events')"
            )
            .await,
            [["1000", "1000"]]
        );
    }
    // reopened, the archive goes on from its watermark: nothing archived twice
    let engine = Engine::open(&data).unwrap();
    engine.sql(&events(1000, 50)).await.unwrap();
    until_archived(&engine, "events", 1050).await;
    assert_eq!(
        query(
            &engine,
            "SELECT count(*), count(DISTINCT item_id), sum(weight) FROM archive('events')"
        )
        .await,
        query(
            &engine,
            "SELECT count(*), count(DISTINCT item_id), sum(weight) FROM events"
        )
        .await
    );

    // a one-off export with PostgreSQL's option list, read back through an external table
    let export = dir.path().join("export");
    engine
        .sql(&format!(
            "COPY (SELECT user_id, item_id, weight FROM events) TO '{}/' \
             (FORMAT parquet, PARTITION BY (user_id))",
            export.display()
        ))
        .await
        .unwrap();
    assert!(export.join("user_id=u3").is_dir());
    engine
        .sql(&format!(
            "CREATE EXTERNAL TABLE exported (item_id TEXT, weight DOUBLE, user_id TEXT) \
             STORED AS PARQUET PARTITIONED BY (user_id) LOCATION '{}/'",
            export.display()
        ))
        .await
        .unwrap();
    assert_eq!(
        query(
            &engine,
            "SELECT count(*), count(DISTINCT user_id), sum(weight) FROM exported"
        )
        .await,
        query(
            &engine,
            "SELECT count(*), count(DISTINCT user_id), sum(weight) FROM events"
        )
        .await
    );

    // a changed interval keeps the archive; a moved one needs RESET first
    engine
        .sql("ALTER TABLE events SET (archive_every = '1 minute')")
        .await
        .unwrap();
    let error = engine
        .sql("ALTER TABLE events SET (partition_by = 'month(ts)')")
        .await
        .unwrap_err();
    assert_eq!(error.sqlstate(), "55000", "{error}");
    assert_eq!(
        query(
            &engine,
            "SELECT archive_every, partition_by FROM tastedb_archives"
        )
        .await,
        [["1 minute", "day(ts)"]]
    );

    // changes the archive cannot follow wait for RESET (archive); added columns are read back
    for change in [
        "RENAME TO ev",
        "RENAME COLUMN ts TO at",
        "DROP COLUMN ts",
        "ADD PRIMARY KEY (item_id)",
    ] {
        let error = engine
            .sql(&format!("ALTER TABLE events {change}"))
            .await
            .unwrap_err();
        assert_eq!(error.sqlstate(), "55000", "{change}: {error}");
    }
    engine
        .sql("ALTER TABLE events ADD COLUMN kind TEXT DEFAULT 'view'")
        .await
        .unwrap();
    assert_eq!(
        query(
            &engine,
            "SELECT count(*), count(kind) FROM archive('events')"
        )
        .await,
        [["1050", "0"]]
    );

    // RESET (archive) ends it, and the files stay: a new archive needs an empty place
    engine
        .sql("ALTER TABLE events RESET (archive)")
        .await
        .unwrap();
    let again = format!("ALTER TABLE events SET (archive = '{url}')");
    assert_eq!(engine.sql(&again).await.unwrap_err().sqlstate(), "55000");
    assert!(
        query(&engine, "SELECT * FROM tastedb_archives")
            .await
            .is_empty()
    );
    assert_eq!(
        engine
            .sql("SELECT * FROM archive('events')")
            .await
            .unwrap_err()
            .sqlstate(),
        "42704"
    );
    assert!(!files_under(&root.join("events")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_up_an_archive_checks_the_table_the_values_and_the_privileges() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().join("data")).unwrap();
    let url = format!("file://{}/a", dir.path().display());
    engine
        .sql(
            "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE, ts TIMESTAMP);
             CREATE TABLE items (item_id TEXT PRIMARY KEY, ts TIMESTAMP);
             CREATE ROLE bob LOGIN; CREATE ROLE writer LOGIN;
             GRANT pg_write_server_files TO writer",
        )
        .await
        .unwrap();
    let create = "CREATE TABLE owned (n BIGINT)";
    engine.sql_as("writer", create).await.unwrap();
    engine
        .sql_as("bob", &create.replace("owned", "bobs"))
        .await
        .unwrap();
    let error = |sql: String| {
        let engine = engine.clone();
        async move { engine.sql(&sql).await.unwrap_err().sqlstate().to_string() }
    };
    let set = |table: &str, options: &str| format!("ALTER TABLE {table} SET ({options})");
    assert_eq!(
        error(set("items", &format!("archive = '{url}'"))).await,
        "0A000"
    );
    assert_eq!(
        error(set("events", "archive = 'http://example.com/x'")).await,
        "22023"
    );
    assert_eq!(
        error(set("events", "archive = 's3:///no-bucket'")).await,
        "22023"
    );
    assert_eq!(
        error(set("events", "archive_every = '1 hour'")).await,
        "22023"
    );
    let with = |options: &str| set("events", &format!("archive = '{url}', {options}"));
    assert_eq!(error(with("partition_by = 'day(user_id)'")).await, "42804");
    assert_eq!(error(with("partition_by = 'day(nope)'")).await, "42703");
    assert_eq!(error(with("partition_by = 'week(ts)'")).await, "22023");
    assert_eq!(error(with("archive_every = '-5 minutes'")).await, "22023");
    assert_eq!(error(with("archive_every = 'often'")).await, "22007");
    assert!(
        query(&engine, "SELECT * FROM tastedb_archives")
            .await
            .is_empty()
    );

    // the owner, only if it may also write the server's files
    let as_role = |role: &'static str, sql: String| {
        let engine = engine.clone();
        async move {
            engine
                .sql_as(role, &sql)
                .await
                .map(|_| ())
                .map_err(|e| e.sqlstate().to_string())
        }
    };
    let bobs = set("bobs", &format!("archive = '{url}/bobs'"));
    assert_eq!(as_role("bob", bobs).await, Err("42501".into()));
    assert_eq!(
        as_role("writer", with("archive_every = '1 hour'")).await,
        Err("42501".into())
    );
    let owned = set(
        "owned",
        &format!("archive = '{url}/owned', archive_every = '1 hour'"),
    );
    assert_eq!(as_role("writer", owned).await, Ok(()));
    assert_eq!(
        query(
            &engine,
            "SELECT table_name, archive_every, owner FROM tastedb_archives"
        )
        .await,
        [["owned", "1 hour", "writer"]]
    );
    // reading an archive takes SELECT on its table
    let read = || "SELECT count(*) FROM archive('owned')".to_string();
    assert_eq!(as_role("bob", read()).await, Err("42501".into()));
    engine.sql("GRANT SELECT ON owned TO bob").await.unwrap();
    assert_eq!(as_role("bob", read()).await, Ok(()));
    // DROP TABLE ends its archive
    engine.sql("DROP TABLE owned").await.unwrap();
    assert!(
        query(&engine, "SELECT * FROM tastedb_archives")
            .await
            .is_empty()
    );
}

/// `tastedb serve` killed with SIGKILL four times while clients insert and the archive runs
/// every 20 ms: in the end the archive holds every row of the table exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_archiving_archives_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = dir.path().join("archive");
    {
        let engine = Engine::open(&data).unwrap();
        engine
            .sql(&format!(
                "CREATE TABLE log (n BIGINT, ts TIMESTAMP);
                 ALTER TABLE log SET (archive = 'file://{}/log', archive_every = '20 milliseconds', \
                 partition_by = 'hour(ts)')",
                root.display()
            ))
            .await
            .unwrap();
    }
    let mut next = 0u64;
    for round in 0..4u64 {
        let (mut child, addr) = serve_process(&data, &[]).await;
        let client = trust_client(addr).await;
        let until = Instant::now() + Duration::from_millis(400 + 150 * round);
        while Instant::now() < until {
            let values: Vec<String> = (next..next + 50)
                .map(|n| format!("({n}, TIMESTAMP '2026-12-07 00:00:00' + INTERVAL '{n} minutes')"))
                .collect();
            let insert = format!("INSERT INTO log VALUES {}", values.join(", "));
            if client.simple_query(&insert).await.is_err() {
                break;
            }
            next += 50;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let engine = Engine::open(&data).unwrap();
    let table = query(
        &engine,
        "SELECT count(*), count(DISTINCT n), sum(n) FROM log",
    )
    .await;
    let rows: u64 = table[0][0].parse().unwrap();
    assert!(rows > 0);
    until_archived(&engine, "log", rows).await;
    assert_eq!(
        query(
            &engine,
            "SELECT count(*), count(DISTINCT n), sum(n) FROM archive('log')"
        )
        .await,
        table
    );
    let files = files_under(&root.join("log"));
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("hour=") && f.ends_with(".parquet"))
    );
}

/// An S3-compatible store (moto's server on loopback), reached with the AWS environment
/// variables of the server process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_in_an_s3_bucket_reads_back_as_the_table() {
    let s3 = MotoS3::start(&["lake"]);
    let dir = tempfile::tempdir().unwrap();
    let env = s3.env();
    let (mut server, addr) = serve_process(dir.path(), &env).await;
    let client = trust_client(addr).await;
    client
        .batch_execute(
            "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE, ts TIMESTAMP);
             ALTER TABLE events SET (archive = 's3://lake/events', archive_every = '50 ms', \
             partition_by = 'day(ts)')",
        )
        .await
        .unwrap();
    client.batch_execute(&events(0, 500)).await.unwrap();
    let started = Instant::now();
    loop {
        let status = rows(
            client
                .simple_query("SELECT rows, last_error FROM tastedb_archives")
                .await
                .unwrap(),
        );
        if status[0][0].as_deref() == Some("500") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ordered = format!("ORDER BY {COLUMNS}");
    let archived = client
        .simple_query(&format!(
            "SELECT {COLUMNS} FROM archive('events') {ordered}"
        ))
        .await
        .unwrap();
    let local = client
        .simple_query(&format!("SELECT {COLUMNS} FROM events {ordered}"))
        .await
        .unwrap();
    assert_eq!(rows(archived), rows(local));
    // COPY TO and external tables reach the same bucket
    client
        .batch_execute(
            "COPY events TO 's3://lake/export/' (FORMAT parquet, PARTITION BY (user_id));
             CREATE EXTERNAL TABLE exported (item_id TEXT, weight DOUBLE, ts TIMESTAMP, \
             user_id TEXT) STORED AS PARQUET PARTITIONED BY (user_id) \
             LOCATION 's3://lake/export/'",
        )
        .await
        .unwrap();
    let count = "SELECT count(*), sum(weight) FROM ";
    let exported = client
        .simple_query(&format!("{count} exported"))
        .await
        .unwrap();
    let local = client
        .simple_query(&format!("{count} events"))
        .await
        .unwrap();
    assert_eq!(rows(exported), rows(local));
    let _ = server.kill();
    let _ = server.wait();
}
