//! Cluster execution on Ballista, against a real cluster of `tastedb scheduler` and `tastedb
//! executor` processes on loopback: a query over an archive gives the same rows on the
//! cluster as over the table here; `TRAIN MODEL … FROM (query over an archive)` on the cluster
//! gives the same model as from the table; a feature view's definition runs there too;
//! `EXPLAIN` says where a plan runs; an unreachable cluster is 08001, one that lost its
//! executor 08006, one without executors stopped at `tastedb.cluster_timeout_seconds` (57014):
//! never a hang; only superusers set `tastedb.cluster`.

use crate::common::{free_port, printed_address, query};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tastedb::Engine;

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port whose next port is free too (an executor listens on both).
fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// `tastedb scheduler` on a free port, and its `df://` URL.
fn scheduler(no_executor_grace: &str) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .args([
            "scheduler",
            "--listen",
            "127.0.0.1:0",
            "--executor-timeout",
            "3s",
        ])
        .args(["--no-executor-grace", no_executor_grace])
        .stderr(Stdio::piped())
        .spawn()
        .expect("tastedb scheduler starts");
    let addr = printed_address(&mut child, "TasteDB cluster scheduler listening on ");
    (Killed(child), format!("df://{addr}"))
}

/// `tastedb executor` of the scheduler at `url`, with one core.
fn executor(url: &str) -> Killed {
    let listen = format!("127.0.0.1:{}", free_port_pair());
    let child = Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .args(["executor", "--scheduler", url, "--listen", &listen])
        .args(["--cores", "1", "--heartbeat", "1s"])
        .stderr(Stdio::null())
        .spawn()
        .expect("tastedb executor starts");
    Killed(child)
}

/// An engine whose table `events` (600 rows, 20 users, 15 items) is archived whole by day
/// under `dir`.
async fn archived(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(dir.join("data")).unwrap();
    engine
        .sql(
            "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE, ts TIMESTAMP); \
             INSERT INTO events SELECT 'u' || (n % 20), 'i' || ((n * 7) % 15), \
             (n % 5) + 0.5, CAST('2026-12-0' || (1 + n % 4) || ' 00:00:00' AS TIMESTAMP) \
             FROM generate_series(1, 600) AS t(n)",
        )
        .await
        .unwrap();
    let url = format!("file://{}/events", dir.join("archive").display());
    engine
        .sql(&format!(
            "ALTER TABLE events SET (archive = '{url}', archive_every = '50ms', \
             partition_by = 'day(ts)')"
        ))
        .await
        .unwrap();
    let started = Instant::now();
    let sql = "SELECT rows FROM tastedb_archives WHERE table_name = 'events'";
    while query(&engine, sql).await != vec![vec!["600".to_string()]] {
        assert!(started.elapsed() < Duration::from_secs(60), "not archived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine
}

/// Where EXPLAIN says `sql` runs.
async fn runs(engine: &Engine, sql: &str) -> String {
    let rows = query(engine, &format!("EXPLAIN {sql}")).await;
    let runs: Vec<&Vec<String>> = rows.iter().filter(|row| row[0] == "runs").collect();
    assert_eq!(runs.len(), 1, "{rows:?}");
    runs[0][1].clone()
}

const PER_USER: &str = "SELECT user_id, count(*) AS n, sum(weight) AS w, min(ts) AS first \
    FROM {source} GROUP BY user_id ORDER BY user_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_queries_feature_views_and_training_run_on_the_cluster_with_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let engine = archived(dir.path()).await;
    let (_scheduler, url) = scheduler("30s");
    let _executor = executor(&url);
    let here = query(&engine, &PER_USER.replace("{source}", "events")).await;
    assert_eq!(here.len(), 20);
    engine
        .sql(&format!("SET tastedb.cluster = '{url}'"))
        .await
        .unwrap();
    let over_archive = PER_USER.replace("{source}", "archive('events')");
    assert_eq!(
        runs(&engine, &over_archive).await,
        format!("on the cluster at {url}")
    );
    assert_eq!(query(&engine, &over_archive).await, here);
    // filters on the partition level, joins and subqueries of archives run there too
    let pruned = "SELECT count(*) FROM archive('events') WHERE day = '2026-12-02' \
        AND user_id IN (SELECT user_id FROM archive('events') WHERE weight > 4)";
    assert!(runs(&engine, pruned).await.starts_with("on the cluster"));
    let local_pruned = "SELECT count(*) FROM events WHERE ts >= TIMESTAMP '2026-12-02' \
        AND ts < TIMESTAMP '2026-12-03' AND user_id IN (SELECT user_id FROM events WHERE weight > 4)";
    assert_eq!(
        query(&engine, pruned).await,
        query(&engine, local_pruned).await
    );
    // what reads a stored table, or calls a function of ours, runs here
    let mixed = "SELECT count(*) FROM archive('events') a JOIN events e USING (user_id)";
    assert_eq!(
        runs(&engine, mixed).await,
        "here: it reads events, which is stored here"
    );
    let ours = "SELECT pg_get_userbyid(10) FROM archive('events') LIMIT 1";
    assert_eq!(
        runs(&engine, ours).await,
        "here: it calls pg_get_userbyid(), which only this server has"
    );

    // TRAIN from a query over the archive on the cluster: the model trained from the table
    let source = "SELECT user_id, item_id, sum(weight) AS weight FROM {source} \
        GROUP BY user_id, item_id ORDER BY user_id, item_id";
    let train = |model: &str, from: &str| {
        format!(
            "TRAIN MODEL {model} USING als FROM ({}) WITH (factors = 4, iterations = 5, \
             seed = 11, holdout = 0)",
            source.replace("{source}", from)
        )
    };
    engine
        .sql(&train("on_cluster", "archive('events')"))
        .await
        .unwrap();
    engine.sql("SET tastedb.cluster = ''").await.unwrap();
    engine.sql(&train("here", "events")).await.unwrap();
    for user in ["u1", "u7", "u13"] {
        let recommend = |model: &str| {
            format!("SELECT item_id, score FROM recommend('{model}', '{user}', 5) ORDER BY rank")
        };
        assert_eq!(
            query(&engine, &recommend("on_cluster")).await,
            query(&engine, &recommend("here")).await
        );
    }

    // a feature view over the archive, materialized on the cluster
    engine
        .sql(&format!("SET tastedb.cluster = '{url}'"))
        .await
        .unwrap();
    engine
        .sql(
            "CREATE FEATURE VIEW activity ENTITY (user_id) TIMESTAMP ts AS \
             SELECT user_id, max(ts) AS ts, count(*) AS n FROM archive('events') \
             GROUP BY user_id; MATERIALIZE FEATURE VIEW activity",
        )
        .await
        .unwrap();
    let features = query(
        &engine,
        "SELECT user_id, n FROM online_features('activity') ORDER BY user_id",
    )
    .await;
    let counted = query(
        &engine,
        "SELECT user_id, count(*) FROM events GROUP BY user_id ORDER BY user_id",
    )
    .await;
    assert_eq!(features, counted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_lost_cluster_is_a_clean_error_and_only_superusers_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = archived(dir.path()).await;
    let over_archive = PER_USER.replace("{source}", "archive('events')");

    // nobody listens
    let closed = format!("df://127.0.0.1:{}", free_port());
    engine
        .sql(&format!("SET tastedb.cluster = '{closed}'"))
        .await
        .unwrap();
    let started = Instant::now();
    let error = engine.sql(&over_archive).await.unwrap_err();
    assert_eq!(error.sqlstate(), "08001", "{error}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // what runs here is not touched
    assert_eq!(
        query(&engine, "SELECT count(*) FROM events").await[0][0],
        "600"
    );

    // a scheduler without executors queues the job: stopped at tastedb.cluster_timeout_seconds
    let (_idle, idle_url) = scheduler("30s");
    engine
        .sql(&format!(
            "SET tastedb.cluster = '{idle_url}'; SET tastedb.cluster_timeout_seconds = 2"
        ))
        .await
        .unwrap();
    let started = Instant::now();
    let error = engine.sql(&over_archive).await.unwrap_err();
    assert_eq!(error.sqlstate(), "57014", "{error}");
    assert!(started.elapsed() < Duration::from_secs(30));
    engine
        .sql("SET tastedb.cluster_timeout_seconds = 600")
        .await
        .unwrap();

    // the only executor is killed: the job fails once the scheduler gives up on it
    let (_scheduler, url) = scheduler("2s");
    let mut lost = executor(&url);
    engine
        .sql(&format!("SET tastedb.cluster = '{url}'"))
        .await
        .unwrap();
    assert_eq!(query(&engine, &over_archive).await.len(), 20);
    let _ = lost.0.kill();
    let _ = lost.0.wait();
    let started = Instant::now();
    let error = engine.sql(&over_archive).await.unwrap_err();
    assert_eq!(error.sqlstate(), "08006", "{error}");
    assert!(started.elapsed() < Duration::from_secs(120));

    // an executor whose port is taken says so, and fails
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let refused = Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .args(["executor", "--scheduler", &url, "--listen", &listen])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("cannot listen on"),
        "{said}"
    );

    // the setting
    for bad in ["http://127.0.0.1:1", "df://", "nonsense"] {
        let error = engine
            .sql(&format!("SET tastedb.cluster = '{bad}'"))
            .await
            .unwrap_err();
        assert_eq!(error.sqlstate(), "22023", "{bad}: {error}");
    }
    engine
        .sql("CREATE ROLE reader LOGIN; GRANT SELECT ON events TO reader")
        .await
        .unwrap();
    let error = engine
        .sql_as("reader", &format!("SET tastedb.cluster = '{url}'"))
        .await
        .unwrap_err();
    assert_eq!(error.sqlstate(), "42501", "{error}");
}
