//! Kafka sources against a real Kafka-protocol broker, not a mock: tansu (a broker written in
//! Rust, `cargo install tansu --features dynostore`, which `.ci/setup` does), started by the
//! test on loopback with its in-memory storage. Messages produced to a topic of three
//! partitions land once, across a restart of the engine; the source's consumer-group offsets
//! reach the broker, where Kafka's own tools read a group's lag.

use crate::common::query;
use crate::sources::{produce, until};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tastedb::Engine;

/// A tansu broker on a free loopback port; killed when dropped.
struct Tansu {
    child: Child,
    url: String,
    brokers: String,
}

impl Tansu {
    fn start() -> Tansu {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
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
        }
    }

    /// Creates `topic` with `partitions`, through tansu's own command line.
    fn create_topic(&self, topic: &str, partitions: u32) {
        let made = Command::new(tansu_binary())
            .args(["topic", "create", topic, "--broker", &self.url])
            .args(["--partitions", &partitions.to_string()])
            .output()
            .expect("tansu runs");
        assert!(made.status.success(), "{made:?}");
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
            "tansu is installed: `bash .ci/setup` runs `cargo install tansu --features dynostore`",
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
    let broker = Tansu::start();
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
