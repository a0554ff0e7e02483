//! Helpers shared by the wire-server tests: a server on `127.0.0.1:0` over a temporary data
//! directory, and tokio-postgres clients for it.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use std::net::SocketAddr;
use tastedb::Engine;
use tastedb::server::{AuthMode, ServeOptions, Server};
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The admin password of servers from [`start`].
pub const PASSWORD: &str = "s3cret pässword";

/// A running server; dropping it shuts the server down.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A server with SCRAM authentication (user `tastedb`, [`PASSWORD`]).
pub async fn start(max_connections: usize) -> Running {
    start_with(AuthMode::Scram, max_connections).await
}

/// A server with the authentication `auth`.
pub async fn start_with(auth: AuthMode, max_connections: usize) -> Running {
    start_configured(auth, max_connections, "0").await
}

/// A server with the authentication `auth` and the default statement `timeout`.
pub async fn start_configured(auth: AuthMode, max_connections: usize, timeout: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut running = serve(dir.path(), auth, max_connections, timeout).await;
    running._dir = Some(dir);
    running
}

/// A server with SCRAM authentication over the data directory `dir`, which outlives it.
pub async fn start_in(dir: &std::path::Path) -> Running {
    serve(dir, AuthMode::Scram, 8, "0").await
}

async fn serve(
    dir: &std::path::Path,
    auth: AuthMode,
    max_connections: usize,
    timeout: &str,
) -> Running {
    // A server just stopped over the same directory may still be letting go of it.
    let mut engine = Engine::open(dir);
    for _ in 0..50 {
        if engine.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        engine = Engine::open(dir);
    }
    let engine = engine.unwrap();
    engine.users().set_password("tastedb", PASSWORD).unwrap();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth,
        max_connections,
        tls: None,
        tls_required: false,
        statement_timeout: timeout.to_string(),
        checkpoints: None,
        follow: None,
    };
    let server = Server::bind(engine, options).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        _dir: None,
    }
}

/// A client logged in as `user`.
pub async fn connect_as(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let config = format!(
        "host={} port={} user={user} password='{password}' dbname=tastedb",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A client logged in as the admin user, with the (SQLSTATE, message) of every NOTICE the
/// server sends it.
pub async fn connect_with_notices(
    addr: SocketAddr,
) -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    use futures::StreamExt;
    let config = format!(
        "host={} port={} user=tastedb password='{PASSWORD}' dbname=tastedb",
        addr.ip(),
        addr.port()
    );
    let (client, mut connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
    let (sender, notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let _ = sender.send((
                    notice.code().code().to_string(),
                    notice.message().to_string(),
                ));
            }
        }
    });
    (client, notices)
}

/// Runs the COPY FROM STDIN `statement`, sending `data` as CopyData messages of `piece`
/// bytes (rows and characters may cross messages), then ends it; the rows copied.
pub async fn copy_in(
    client: &Client,
    statement: &str,
    data: &str,
    piece: usize,
) -> Result<u64, tokio_postgres::Error> {
    use futures::SinkExt;
    let sink = client.copy_in::<_, bytes::Bytes>(statement).await?;
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(piece.max(1)) {
        sink.send(bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

/// A client logged in as the admin user.
pub async fn connect(addr: SocketAddr) -> Client {
    connect_as(addr, "tastedb", PASSWORD).await.unwrap()
}

/// The rows among simple-query messages, as text.
pub fn rows(messages: Vec<SimpleQueryMessage>) -> Vec<Vec<Option<String>>> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The rows of `batches` as text (NULL as `NULL`).
pub fn texts(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let columns = batch.columns().iter();
            rows.push(
                columns
                    .map(|c| match c.is_null(row) {
                        true => "NULL".to_string(),
                        false => array_value_to_string(c, row).unwrap(),
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// The rows `sql` returns as text; panics, naming the statement, when it fails.
pub async fn query(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    match engine.sql(sql).await {
        Ok(batches) => texts(&batches),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 and its key, made by `openssl` in
/// `dir` (`server.crt`, `server.key`), valid for a day.
pub fn self_signed_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

/// Starts `tastedb serve` (trust, loopback) on `data` as a child process, with the environment
/// variables `env` added; the child and its address.
pub async fn serve_process(
    data: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, SocketAddr) {
    serve_process_with(data, &[], env).await
}

/// Like [`serve_process`], with the options `args` added to `tastedb serve`.
pub async fn serve_process_with(
    data: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, SocketAddr) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .arg("--data")
        .arg(data)
        .args(["serve", "--auth", "trust", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tastedb serve starts");
    let addr = printed_address(&mut child, "TasteDB listening on ");
    (child, addr.parse().unwrap())
}

/// The address a child process prints on standard error (piped) after `prefix`, waited for up
/// to two minutes; the rest of its standard error is read and dropped.
pub fn printed_address(child: &mut std::process::Child, prefix: &'static str) -> String {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("standard error is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("the process prints its address")
}

/// A free loopback port (for an option that takes an address with a fixed port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client of a `--auth trust` server, as user `tastedb`.
pub async fn trust_client(addr: SocketAddr) -> Client {
    let config = format!(
        "host={} port={} user=tastedb dbname=tastedb",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// An S3-compatible store for tests: moto's server (`TASTEDB_MOTO`, or `moto_server` on the
/// path, which `.ci/setup` installs) on a loopback port, stopped when dropped.
pub struct MotoS3 {
    child: std::process::Child,
    endpoint: String,
}

impl MotoS3 {
    /// Starts the server and creates `buckets` (waiting up to 30 s for it to listen).
    pub fn start(buckets: &[&str]) -> MotoS3 {
        let port = free_port();
        let moto = std::env::var("TASTEDB_MOTO").unwrap_or_else(|_| "moto_server".into());
        let child = std::process::Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{moto} starts (.ci/setup installs it): {e}"));
        let s3 = MotoS3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        for bucket in buckets {
            create_bucket(port, bucket);
        }
        s3
    }

    /// The AWS environment variables that reach it.
    pub fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
    }

    /// The keys in `bucket` under `prefix` (S3's ListObjectsV2; moto takes unsigned requests).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let listing = std::process::Command::new("curl")
            .args([
                "-sf",
                &format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint),
            ])
            .output()
            .expect("curl runs");
        assert!(listing.status.success(), "{listing:?}");
        let text = String::from_utf8_lossy(&listing.stdout);
        text.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(String::from)
            .collect()
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `bucket` on the S3 server at `port` (waiting up to 30 s for it to listen).
fn create_bucket(port: u16, bucket: &str) {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let request = format!(
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
