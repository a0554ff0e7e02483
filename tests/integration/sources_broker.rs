//! Kafka sources against a real Kafka-protocol broker, not a mock: tansu, a broker written in
//! Rust (`cargo install tansu --features dynostore,libsql`, which `.ci/setup` does), started by
//! the test on loopback. With its in-memory storage: messages produced to a topic of three
//! partitions land once, across a restart of the engine, and the source's consumer-group
//! offsets reach the broker, where Kafka's own tools read a group's lag. With its SQLite
//! storage and authentication on: SASL/SCRAM lets a source in with the right password only.

use crate::common::query;
use crate::sources::{produce, produce_with, until};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tastedb::Engine;

/// A tansu broker on a free loopback port; killed when dropped.
struct Tansu {
    child: Child,
    url: String,
    brokers: String,
    port: u16,
}

impl Tansu {
    /// Starts a broker on a free loopback port, keeping its state in `storage` (a SQLite path
    /// is relative to `dir`, its working directory), requiring SASL when `authentication`.
    fn start(dir: &Path, storage: &str, authentication: bool) -> Tansu {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        Tansu::start_on(port, dir, storage, authentication)
    }

    fn start_on(port: u16, dir: &Path, storage: &str, authentication: bool) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(tansu_binary());
        command
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", storage])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if authentication {
            command.arg("--authentication");
        }
        let child = command.spawn().expect("tansu starts");
        let brokers = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while TcpStream::connect(&brokers).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not listen on {brokers}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Tansu {
            child,
            url,
            brokers,
            port,
        }
    }

    /// Runs tansu's own command line against this broker (`--broker` is added).
    fn run(&self, args: &[&str]) {
        let done = Command::new(tansu_binary())
            .args(args)
            .args(["--broker", &self.url])
            .output()
            .expect("tansu runs");
        assert!(done.status.success(), "tansu {args:?}: {done:?}");
    }

    /// Creates `topic` with `partitions`.
    fn create_topic(&self, topic: &str, partitions: u32) {
        self.run(&[
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ]);
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `TASTEDB_TANSU`, or `tansu` on the PATH, or in cargo's binaries.
fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TASTEDB_TANSU") {
        return path.into();
    }
    let cargo_home = (std::env::var_os("CARGO_HOME").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let mut places: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    places.extend(cargo_home.map(|home| home.join("bin")));
    (places.into_iter().map(|dir| dir.join("tansu")))
        .find(|path| path.is_file())
        .expect(
            "tansu is installed: `bash .ci/setup` runs `cargo install tansu --features dynostore,libsql`",
        )
}

/// The offsets the consumer group `group` has committed on the broker, summed over the
/// partitions of `topic` (a partition without any counts 0).
fn group_offsets(brokers: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (committed.elements().iter())
        .map(|e| match e.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        })
        .sum()
}

/// JSON clicks `first..first + n` over 3 partitions; click `i` has `n = i`.
fn clicks(first: i64, n: i64) -> Vec<(i32, String)> {
    (first..first + n)
        .map(|i| {
            let payload = format!(
                r#"{{"user_id": "u{}", "item_id": "i{i}", "n": {i}}}"#,
                i % 7
            );
            ((i % 3) as i32, payload)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_broker_feeds_a_source_exactly_once_and_holds_its_group_offsets() {
    let broker = Tansu::start(&std::env::temp_dir(), "memory://tansu/", false);
    broker.create_topic("clicks", 3);
    let brokers = broker.brokers.clone();
    let mut messages = clicks(0, 300);
    messages.push((1, "{not json".to_string()));
    produce(&brokers, "clicks", &messages);
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql(&format!(
                "CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT, n BIGINT, \
                 ts TIMESTAMP NOT NULL DEFAULT now());
                 CREATE SOURCE clicks FROM KAFKA (brokers = '{brokers}', topic = 'clicks', \
                 fetch_wait_max_ms = 10) INTO events"
            ))
            .await
            .unwrap();
        until(&engine, "SELECT count(*) FROM events", "300").await;
        let all =
            "SELECT count(DISTINCT n), sum(n), count(DISTINCT user_id), count(ts) FROM events";
        assert_eq!(query(&engine, all).await, [["300", "44850", "7", "300"]]);
        let letters = "SELECT kafka_partition, payload FROM tastedb_source_errors";
        until(&engine, "SELECT count(*) FROM tastedb_source_errors", "1").await;
        assert_eq!(query(&engine, letters).await, [["1", "{not json"]]);
        until(
            &engine,
            "SELECT sum(committed_offset) FROM tastedb_sources",
            "301",
        )
        .await;
        until(&engine, "SELECT sum(lag) FROM tastedb_sources", "0").await;
        // the group's offsets on the broker follow the stored ones (sent after each batch)
        let started = Instant::now();
        while group_offsets(&brokers, "tastedb-source-clicks", "clicks", 3) != 301 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the group's offsets"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // what comes while the engine is closed is read once it opens again, nothing twice
    produce(&brokers, "clicks", &clicks(300, 150));
    let engine = Engine::open(dir.path()).unwrap();
    until(&engine, "SELECT count(*) FROM events", "450").await;
    let all = "SELECT count(DISTINCT n), sum(n) FROM events";
    assert_eq!(query(&engine, all).await, [["450", "101025"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_credentials_let_a_source_into_a_broker_that_requires_them() {
    // tansu makes a user only over a connection that is already authenticated (or with
    // authentication off), so the user is made first without it, in storage that outlives a
    // restart (SQLite); then the broker starts again requiring SASL
    let state = tempfile::tempdir().unwrap();
    let storage = "sqlite://tansu.db";
    let port = {
        let open = Tansu::start(state.path(), storage, false);
        open.create_topic("secure", 3);
        let user = [
            "user",
            "create",
            "alice",
            "alice-secret",
            "--mechanism",
            "scram256",
        ];
        open.run(&user);
        open.port
    };
    let broker = Tansu::start_on(port, state.path(), storage, true);
    let brokers = broker.brokers.clone();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &brokers)
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "SCRAM-SHA-256")
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-secret");
    produce_with(&config, "secure", &clicks(0, 40));

    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql("CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT, n BIGINT)")
        .await
        .unwrap();
    let create = |name: &str, password: &str| {
        format!(
            "CREATE SOURCE {name} FROM KAFKA (brokers = '{brokers}', topic = 'secure', \
             security_protocol = 'sasl_plaintext', sasl_mechanism = 'SCRAM-SHA-256', \
             sasl_username = 'alice', sasl_password = '{password}', fetch_wait_max_ms = 10) \
             INTO events"
        )
    };
    let refused = engine.sql(&create("intruder", "guess")).await.unwrap_err();
    assert_eq!(refused.sqlstate(), "08006", "{refused}");
    engine.sql(&create("secure", "alice-secret")).await.unwrap();
    until(&engine, "SELECT count(*) FROM events", "40").await;
    let all = "SELECT count(DISTINCT n), sum(n) FROM events";
    assert_eq!(query(&engine, all).await, [["40", "780"]]);
    let options = query(&engine, "SELECT options FROM tastedb_sources LIMIT 1").await;
    assert!(
        options[0][0].contains("********") && !options[0][0].contains("alice-secret"),
        "{options:?}"
    );
}
