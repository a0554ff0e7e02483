//! Kafka sources against librdkafka's in-process mock cluster: every message of a topic of
//! several partitions lands in the table once — through pauses, restarts of the engine (which
//! resumes from the stored offsets) and bad messages (set aside in `tastedb_source_errors`
//! while the stream goes on); `tastedb_sources` shows the progress; CSV with a column list
//! and `start = 'latest'`; the options' errors and the privileges CREATE SOURCE needs.

use crate::common::query;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};
use tastedb::Engine;

/// Produces each (partition, payload) to `topic`, waiting until all are delivered.
pub fn produce(brokers: &str, topic: &str, messages: &[(i32, String)]) {
    produce_with(
        ClientConfig::new().set("bootstrap.servers", brokers),
        topic,
        messages,
    );
}

/// As [`produce`], with a producer made from `config` (TLS, SASL, …).
pub fn produce_with(config: &ClientConfig, topic: &str, messages: &[(i32, String)]) {
    let producer: BaseProducer = config.create().unwrap();
    for (partition, payload) in messages {
        let record = BaseRecord::<(), str>::to(topic)
            .payload(payload.as_str())
            .partition(*partition);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// JSON clicks `first..first + n`, spread over 3 partitions: click `i` is user `u{i % 5}`'s, of
/// item `i{i}`, with `n = i`.
pub fn clicks(first: i64, n: i64) -> Vec<(i32, String)> {
    (first..first + n)
        .map(|i| {
            let payload = format!(
                r#"{{"user_id": "u{}", "item_id": "i{i}", "n": {i}}}"#,
                i % 5
            );
            ((i % 3) as i32, payload)
        })
        .collect()
}

/// Waits (up to 30 s) until `sql`'s first value is `expected`.
pub async fn until(engine: &Engine, sql: &str, expected: &str) {
    let started = Instant::now();
    loop {
        let got = query(engine, sql).await;
        if got.first().and_then(|r| r.first()).map(String::as_str) == Some(expected) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{sql}: still {got:?}, waiting for {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const COUNT: &str = "SELECT count(*) FROM events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_lands_once_through_bad_messages_pauses_and_restarts() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("clicks", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut messages = clicks(0, 30);
    messages.extend([
        (0, "not json".to_string()),
        (1, r#"{"user_id": "u1", "n": "many"}"#.to_string()),
        (2, r#"{"user_id": "u1", "colour": "red"}"#.to_string()),
        (0, r#"{"item_id": "i1"}"#.to_string()),
        (
            1,
            format!(r#"{{"user_id": "u1", "item_id": "{}"}}"#, "x".repeat(300)),
        ),
    ]);
    produce(&brokers, "clicks", &messages);
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql(&format!(
                "CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT, n BIGINT, \
                 kind TEXT NOT NULL DEFAULT 'click', seq BIGSERIAL);
                 CREATE SOURCE clicks FROM KAFKA (brokers = '{brokers}', topic = 'clicks', \
                 format = 'json', \"fetch.wait.max.ms\" = 10, max_message_bytes = 200) \
                 INTO events"
            ))
            .await
            .unwrap();
        until(&engine, COUNT, "30").await;
        let errors = "SELECT count(*) FROM tastedb_source_errors";
        until(&engine, errors, "5").await;
        let sums = "SELECT count(DISTINCT n), sum(n), count(DISTINCT user_id) FROM events";
        assert_eq!(query(&engine, sums).await, [["30", "435", "5"]]);
        // the columns the messages leave out take their defaults, a sequence numbering them
        let defaults = "SELECT min(kind), max(kind), count(DISTINCT seq) FROM events";
        assert_eq!(query(&engine, defaults).await, [["click", "click", "30"]]);
        let letters = query(
            &engine,
            "SELECT source, kafka_partition, error LIKE '%(' || 'XX' || '%' \
             FROM tastedb_source_errors ORDER BY kafka_partition, kafka_offset",
        )
        .await;
        assert_eq!(letters.len(), 5);
        assert!(letters.iter().all(|l| l[0] == "clicks" && l[2] == "false"));
        // the progress shows a moment after the rows: it is noted once the commit returns
        until(
            &engine,
            "SELECT sum(committed_offset) FROM tastedb_sources",
            "35",
        )
        .await;
        let states =
            "SELECT count(*), min(state), max(dead_letters), max(rows) FROM tastedb_sources";
        assert_eq!(query(&engine, states).await, [["3", "running", "5", "30"]]);
        until(&engine, "SELECT sum(lag) FROM tastedb_sources", "0").await;

        // paused, it reads nothing; resumed, it catches up
        engine.sql("ALTER SOURCE clicks PAUSE").await.unwrap();
        until(&engine, "SELECT min(state) FROM tastedb_sources", "paused").await;
        produce(&brokers, "clicks", &clicks(30, 6));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(query(&engine, COUNT).await, [["30"]]);
        engine.sql("ALTER SOURCE clicks RESUME").await.unwrap();
        until(&engine, COUNT, "36").await;
    }
    // a restart resumes from the stored offsets: what came meanwhile, nothing twice
    produce(&brokers, "clicks", &clicks(36, 9));
    let engine = Engine::open(dir.path()).unwrap();
    until(&engine, COUNT, "45").await;
    let distinct = "SELECT count(DISTINCT n), sum(n), count(DISTINCT seq) FROM events";
    assert_eq!(query(&engine, distinct).await, [["45", "990", "45"]]);
    // dropped, it reads no more and its progress is gone
    engine.sql("DROP SOURCE clicks").await.unwrap();
    assert!(
        query(&engine, "SELECT * FROM tastedb_sources")
            .await
            .is_empty()
    );
    produce(&brokers, "clicks", &clicks(45, 3));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(query(&engine, COUNT).await, [["45"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_a_column_list_from_the_latest_offset_and_the_errors_of_create_source() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("views", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql("CREATE TABLE events (user_id TEXT, item_id TEXT, n BIGINT DEFAULT 7)")
        .await
        .unwrap();
    // sent before the source exists: `start = 'latest'` skips them
    produce(
        &brokers,
        "views",
        &[(0, "i0,u0".into()), (1, "i0,u0".into())],
    );
    let create = |extra: &str| {
        format!(
            "CREATE SOURCE views FROM KAFKA (brokers = '{brokers}', topic = 'views', \
             format = 'csv', start = 'latest', fetch_wait_max_ms = 10{extra}) \
             INTO events (item_id, user_id)"
        )
    };
    engine.sql(&create("")).await.unwrap();
    produce(
        &brokers,
        "views",
        &[
            (0, "i1,u1".into()),
            (1, "i2,u2".into()),
            (1, "\"i,3\",u3".into()),
        ],
    );
    until(&engine, COUNT, "3").await;
    let rows = "SELECT item_id, user_id, n FROM events ORDER BY item_id";
    assert_eq!(
        query(&engine, rows).await,
        [["i,3", "u3", "7"], ["i1", "u1", "7"], ["i2", "u2", "7"]]
    );

    let sqlstate = |sql: String| {
        let engine = engine.clone();
        async move { engine.sql(&sql).await.unwrap_err().sqlstate().to_string() }
    };
    assert_eq!(sqlstate(create("")).await, "42710");
    engine
        .sql(&create("").replace("SOURCE views", "SOURCE IF NOT EXISTS views"))
        .await
        .unwrap();
    let other = |option: &str| create(option).replace("SOURCE views", "SOURCE other");
    assert_eq!(sqlstate(other(", colour = 'red'")).await, "22023");
    assert_eq!(
        sqlstate(other(", plugin_library_paths = '/x.so'")).await,
        "22023"
    );
    assert_eq!(sqlstate(other(", batch_rows = 0")).await, "22023");
    assert_eq!(sqlstate(other(", format = 'avro'")).await, "22023");
    assert_eq!(
        sqlstate(other("").replace("INTO events (item_id, user_id)", "INTO missing")).await,
        "42P01"
    );
    assert_eq!(
        sqlstate(other("").replace("(item_id, user_id)", "(item_id, colour)")).await,
        "42703"
    );
    assert_eq!(
        sqlstate("CREATE SOURCE s FROM PULSAR (topic = 't') INTO events".into()).await,
        "0A000"
    );
    assert_eq!(sqlstate("ALTER SOURCE missing PAUSE".into()).await, "42704");

    // a role needs INSERT on the table and membership of pg_create_subscription
    engine
        .sql("CREATE USER bob PASSWORD 'bob'; CREATE TABLE bobs (user_id TEXT, item_id TEXT, n BIGINT)")
        .await
        .unwrap();
    let as_bob = |sql: String| {
        let engine = engine.clone();
        async move {
            engine
                .sql_as("bob", &sql)
                .await
                .map(|_| ())
                .map_err(|e| e.sqlstate().to_string())
        }
    };
    let bobs = other("").replace("INTO events", "INTO bobs");
    assert_eq!(as_bob(bobs.clone()).await, Err("42501".into()));
    engine
        .sql("GRANT pg_create_subscription TO bob")
        .await
        .unwrap();
    assert_eq!(as_bob(bobs.clone()).await, Err("42501".into()));
    engine.sql("GRANT INSERT ON bobs TO bob").await.unwrap();
    assert_eq!(as_bob(bobs).await, Ok(()));
    assert_eq!(
        as_bob("DROP SOURCE views".into()).await,
        Err("42501".into())
    );
    assert_eq!(as_bob("DROP SOURCE other".into()).await, Ok(()));
}

/// `tastedb serve` killed with SIGKILL three times while it consumes a topic that is being
/// produced to: reopened, the directory has every produced message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_consuming_keeps_every_message_once() {
    const MESSAGES: i64 = 3_000;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("stream", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql(&format!(
                "CREATE TABLE ev (n BIGINT NOT NULL);
                 CREATE SOURCE s FROM KAFKA (brokers = '{brokers}', topic = 'stream', \
                 fetch_wait_max_ms = 10, batch_rows = 50, batch_ms = 20) INTO ev"
            ))
            .await
            .unwrap();
    }
    let producing = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
                let messages: Vec<(i32, String)> = (chunk.iter())
                    .map(|n| ((n % 3) as i32, format!(r#"{{"n": {n}}}"#)))
                    .collect();
                produce(&brokers, "stream", &messages);
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    for round in 0..3u64 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tastedb"))
            .arg("--data")
            .arg(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--auth", "trust"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tastedb serve starts");
        std::thread::sleep(Duration::from_millis(700 + 250 * round));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    producing.join().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let count = "SELECT count(*) FROM ev";
    until(&engine, count, &MESSAGES.to_string()).await;
    let once = "SELECT count(DISTINCT n), sum(n) FROM ev";
    let sum = MESSAGES * (MESSAGES - 1) / 2;
    assert_eq!(
        query(&engine, once).await,
        [[MESSAGES.to_string(), sum.to_string()]]
    );
}

/// A click that arrives through a source changes the next answer of a trained model at once, as
/// an INSERT does: the item leaves the user's list (also when that list was cached), and the
/// user's answers are folded in with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_from_a_source_changes_the_next_recommendation() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("live", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.sql(crate::freshness::EVENTS).await.unwrap();
    engine.sql(crate::freshness::TRAIN).await.unwrap();
    let recommend = "SELECT item_id, folded_in FROM recommend('m', 'a1', 3) ORDER BY rank";
    // a1 misses x2, so it comes first; asked twice, the answer is cached
    for _ in 0..2 {
        assert_eq!(query(&engine, recommend).await[0], ["x2", "false"]);
    }
    engine
        .sql(&format!(
            "CREATE SOURCE live FROM KAFKA (brokers = '{brokers}', topic = 'live', \
             fetch_wait_max_ms = 10) INTO ev"
        ))
        .await
        .unwrap();
    let click = r#"{"user_id": "a1", "item_id": "x2", "kind": "buy"}"#;
    produce(&brokers, "live", &[(0, click.to_string())]);
    let arrived = "SELECT count(*) FROM ev WHERE user_id = 'a1' AND item_id = 'x2'";
    until(&engine, arrived, "1").await;
    let after = query(&engine, recommend).await;
    assert!(
        after.iter().all(|row| row[0] != "x2" && row[1] == "true"),
        "{after:?}"
    );
}
