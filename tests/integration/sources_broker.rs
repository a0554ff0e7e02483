//! Kafka sources against a real Kafka-protocol broker, not a mock: tansu, a broker written in
//! Rust (`cargo install tansu --features dynostore,libsql`, which `.ci/setup` does), started by
//! the test on loopback. With its in-memory storage: messages produced to a topic of three
//! partitions land once, across a restart of the engine, and the source's consumer-group
//! offsets reach the broker, where Kafka's own tools read a group's lag. With its SQLite
//! storage and authentication on: SASL/SCRAM lets a source in with the right password only.
//! And TLS, through a TLS-terminating proxy (socat) that the broker advertises as itself (tansu
//! 0.6 takes a certificate but does not serve TLS): a source that trusts the certificate's
//! authority gets in, one that does not is refused.

use crate::common::query;
use crate::sources::{clicks, produce, produce_with, until};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tastedb::Engine;

/// A child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on loopback.
fn free_port() -> u16 {
    (TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()))
        .unwrap()
        .port()
}

/// Waits (up to 20 s) until something listens on `address`.
fn wait_for(address: &str) {
    let started = Instant::now();
    while TcpStream::connect(address).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing listens on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tansu broker on loopback; killed when dropped.
struct Tansu {
    _child: Running,
    url: String,
    brokers: String,
    port: u16,
}

impl Tansu {
    /// Starts a broker on a free loopback port, keeping its state in `storage` (a SQLite path
    /// is relative to `dir`, its working directory), requiring SASL when `authentication`.
    fn start(dir: &Path, storage: &str, authentication: bool) -> Tansu {
        let port = free_port();
        Tansu::start_on(port, port, dir, storage, authentication)
    }

    /// Starts a broker listening on `port` that tells clients to connect to `advertised`.
    fn start_on(
        port: u16,
        advertised: u16,
        dir: &Path,
        storage: &str,
        authentication: bool,
    ) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(tansu_binary());
        command
            .args(["broker", "--listener-url", &url])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
            ])
            .args(["--storage-engine", storage])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if authentication {
            command.arg("--authentication");
        }
        let child = Running(command.spawn().expect("tansu starts"));
        wait_for(&format!("127.0.0.1:{port}"));
        Tansu {
            _child: child,
            url,
            brokers: format!("127.0.0.1:{advertised}"),
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

/// An engine in a new directory (dropped with it) with a table `events` for clicks.
async fn events_engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql("CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT, n BIGINT)")
        .await
        .unwrap();
    (dir, engine)
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
        assert_eq!(query(&engine, all).await, [["300", "44850", "5", "300"]]);
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
    let broker = Tansu::start_on(port, port, state.path(), storage, true);
    let brokers = broker.brokers.clone();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &brokers)
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "SCRAM-SHA-256")
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-secret");
    produce_with(&config, "secure", &clicks(0, 40));

    let (_dir, engine) = events_engine().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_broker_whose_certificate_authority_the_source_is_given() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = crate::common::self_signed_certificate(certs.path());
    // clients reach the broker only through the proxy: it is the address the broker advertises
    let tls_port = free_port();
    let broker = Tansu::start_on(
        free_port(),
        tls_port,
        &std::env::temp_dir(),
        "memory://tansu/",
        false,
    );
    broker.create_topic("private", 3);
    let listen = format!(
        "OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
        cert.display(),
        key.display()
    );
    let _proxy = Running(
        Command::new("socat")
            .args([listen, format!("TCP:127.0.0.1:{}", broker.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is installed (.ci/setup)"),
    );
    wait_for(&broker.brokers);
    let brokers = broker.brokers.clone();
    let ca = cert.to_str().unwrap();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &brokers)
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", ca);
    produce_with(&config, "private", &clicks(0, 30));

    let (_dir, engine) = events_engine().await;
    let create = |name: &str, trust: &str| {
        format!(
            "CREATE SOURCE {name} FROM KAFKA (brokers = '{brokers}', topic = 'private', \
             security_protocol = 'ssl'{trust}, fetch_wait_max_ms = 10) INTO events"
        )
    };
    // without the authority the broker's certificate is not trusted
    let refused = engine.sql(&create("untrusting", "")).await.unwrap_err();
    assert_eq!(refused.sqlstate(), "08006", "{refused}");
    let trusting = create("private", &format!(", ssl_ca_location = '{ca}'"));
    engine.sql(&trusting).await.unwrap();
    until(&engine, "SELECT count(*) FROM events", "30").await;
    let all = "SELECT count(DISTINCT n), sum(n) FROM events";
    assert_eq!(query(&engine, all).await, [["30", "435"]]);
}
