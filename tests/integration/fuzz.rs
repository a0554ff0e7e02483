//! Fuzzing, bounded in time: mutated SQL (queries and TasteDB's own statements with their
//! options) and mutated wire frames (startup, SASL, Parse/Bind/Execute, COPY) against a
//! running server; random bytes where stored rows and model versions are read back. The
//! property: no panic, no hang, and the server answers the next client.
//!
//! Each target runs for `TASTEDB_FUZZ_SECONDS` (10 by default, so CI stays short; set it
//! higher for a longer search) from seed `TASTEDB_FUZZ_SEED` (a fixed one by default; `random`
//! picks one, printed so that a failure can be replayed).

use crate::common::{connect, rows, start, start_with};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tastedb::Engine;
use tastedb::server::AuthMode;
use tastedb::storage::{WriteSet, keys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long each target runs.
fn budget() -> Duration {
    let seconds = std::env::var("TASTEDB_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(seconds)
}

/// The generator of a target, from `TASTEDB_FUZZ_SEED` or a random seed, printed.
fn generator(target: &str) -> StdRng {
    let seed = match std::env::var("TASTEDB_FUZZ_SEED").ok().as_deref() {
        Some("random") => rand::random::<u64>(),
        Some(given) => given
            .parse()
            .expect("TASTEDB_FUZZ_SEED is a number or `random`"),
        None => 20_261_203,
    };
    eprintln!("fuzz {target}: TASTEDB_FUZZ_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// Statements the SQL mutations start from.
const STATEMENTS: &[&str] = &[
    "SELECT user_id, count(*) FROM ev WHERE weight > 0.5 GROUP BY user_id ORDER BY 2 DESC LIMIT 3",
    "SELECT * FROM recommend('m', 'u1', 5)",
    "SELECT * FROM recommend('m', 'u2', 3, filter => (SELECT item_id FROM ev WHERE user_id = 'u3'))",
    "SELECT * FROM similar_items('m', 'i1', 4)",
    "SELECT predict('m', user_id, item_id) FROM ev LIMIT 5",
    "TRAIN MODEL m2 USING als FROM ev WITH (factors = 4, iterations = 2, holdout = 0.2, alpha = 10)",
    "TRAIN MODEL m3 USING bpr FROM (SELECT user_id, item_id FROM ev) WITH (factors = 3, learning_rate = 0.05)",
    "TRAIN MODEL m4 USING ease FROM ev WITH (lambda = 100, holdout = 0)",
    "ALTER MODEL m SET ACTIVE VERSION 1",
    "EVALUATE MODEL m",
    "SHOW MODELS",
    "CREATE FEATURE VIEW fv ENTITY (user_id) TIMESTAMP ts AS SELECT user_id, max(ts) AS ts FROM ev GROUP BY user_id",
    "MATERIALIZE FEATURE VIEW fv",
    "SELECT * FROM online_features('fv', 'u1', 'u2')",
    "INSERT INTO ev VALUES ('u9', 'i9', 1.5, TIMESTAMP '2024-01-01 00:00:00')",
    "CREATE TABLE t (id BIGINT PRIMARY KEY, v REAL[3], name TEXT NOT NULL)",
    "CREATE INDEX t_v ON t USING hnsw (v) WITH (metric = 'cosine', m = 8)",
    "SELECT id FROM nearest('t', 'v', [0.1, 0.2, 0.3], 3)",
    "COPY ev TO '/tmp/tastedb-fuzz.csv' (FORMAT csv, HEADER)",
    "COPY ev FROM '/etc/hostname' (FORMAT csv)",
    "GRANT SELECT ON ev TO PUBLIC",
    "CREATE USER fuzzed PASSWORD 'x'",
    "SELECT CAST('2024-02-30' AS DATE), 1 / 0, 'a' || NULL, [1, 2][3], abs(-9223372036854775807 - 1)",
    "WITH r AS (SELECT generate_series(1, 50) AS n) SELECT sum(n) FILTER (WHERE n % 2 = 0) OVER () FROM r",
    "SELECT has_table_privilege('ev', 'SELECT'), current_user, version()",
    "SELECT * FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid",
];

/// Tokens mutations put in.
const TOKENS: &[&str] = &[
    "(",
    ")",
    ",",
    "'",
    "''",
    "\"",
    ";",
    "*",
    "+",
    "-",
    "/",
    "%",
    "=",
    "<>",
    "::",
    "[",
    "]",
    "NULL",
    "SELECT",
    "FROM",
    "WHERE",
    "WITH",
    "AS",
    "TRAIN",
    "MODEL",
    "USING",
    "ALTER",
    "VERSION",
    "ACTIVE",
    "0",
    "-1",
    "1e308",
    "9223372036854775807",
    "-9223372036854775808",
    "1e-400",
    "NaN",
    "'inf'",
    "0.0",
    "99999999999999999999999",
    "'é🦀'",
    "$1",
    "recommend",
    "iterations",
    "factors",
    "holdout",
    "(SELECT 1)",
    "generate_series(1, 3)",
    "ev",
    "m",
    "DEFAULT",
    "ARRAY[1, 2]",
    "CAST(",
    "TIMESTAMP",
    "INTERVAL '1 day'",
    "NOT",
    "OR",
    "AND",
];

/// Splits a statement into words and punctuation, keeping quoted text whole.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in sql.chars() {
        if c == '\'' {
            current.push(c);
            if quoted {
                out.push(std::mem::take(&mut current));
            }
            quoted = !quoted;
        } else if quoted || c.is_alphanumeric() || c == '_' || c == '.' {
            current.push(c);
        } else {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A mutation of one of [`STATEMENTS`]: tokens deleted, repeated, replaced or inserted.
fn mutated_sql(rng: &mut StdRng) -> String {
    let mut words = tokens(STATEMENTS[rng.random_range(0..STATEMENTS.len())]);
    for _ in 0..rng.random_range(0..4) {
        if words.is_empty() {
            break;
        }
        let at = rng.random_range(0..words.len());
        match rng.random_range(0..4) {
            0 => {
                words.remove(at);
            }
            1 => {
                let word = words[at].clone();
                words.insert(at, word);
            }
            2 => words[at] = TOKENS[rng.random_range(0..TOKENS.len())].to_string(),
            _ => words.insert(at, TOKENS[rng.random_range(0..TOKENS.len())].to_string()),
        }
    }
    words.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_sql_is_answered_and_the_server_goes_on() {
    let server = start(8).await;
    let admin = connect(server.addr).await;
    admin
        .batch_execute(
            "CREATE USER fuzzer PASSWORD 'fuzzer';
             CREATE TABLE ev (user_id TEXT, item_id TEXT, weight DOUBLE, ts TIMESTAMP);
             INSERT INTO ev SELECT 'u' || CAST(value % 13 AS TEXT), 'i' || CAST(value % 17 AS TEXT),
                 CAST(value % 5 AS DOUBLE) / 4, TIMESTAMP '2024-01-01 00:00:00'
                 FROM generate_series(1, 400);
             TRAIN MODEL m USING als FROM ev WITH (factors = 4, iterations = 2, holdout = 0);
             GRANT SELECT, INSERT ON ev TO fuzzer; GRANT ALL ON MODEL m TO fuzzer;",
        )
        .await
        .unwrap();
    // A role without superuser powers: mutations cannot reach the server's files.
    let client = crate::common::connect_as(server.addr, "fuzzer", "fuzzer")
        .await
        .unwrap();
    client
        .batch_execute("SET statement_timeout = '5s'")
        .await
        .unwrap();
    let mut rng = generator("sql");
    let started = Instant::now();
    let (mut statements, mut failed) = (0, 0);
    while started.elapsed() < budget() {
        let sql = mutated_sql(&mut rng);
        let answer = tokio::time::timeout(Duration::from_secs(30), client.simple_query(&sql))
            .await
            .unwrap_or_else(|_| panic!("no answer within 30 s to: {sql}"));
        statements += 1;
        if let Err(e) = answer {
            let error = e
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: the connection failed: {e}"));
            // a caught panic is answered as XX000 "the statement failed unexpectedly"
            assert!(
                !error.message().contains("failed unexpectedly"),
                "{sql}: {e}"
            );
            failed += 1;
        }
    }
    eprintln!("fuzz sql: {statements} statements, {failed} refused");
    let next = connect(server.addr).await;
    assert_eq!(
        rows(next.simple_query("SELECT 1").await.unwrap())[0][0].as_deref(),
        Some("1")
    );
}

/// A frontend message: type byte, then length and body.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A startup packet for user `tastedb`.
fn startup() -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0tastedb\0database\0tastedb\0\0");
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Messages the frame mutations start from.
fn frames() -> Vec<Vec<u8>> {
    let mut sasl = b"SCRAM-SHA-256\0".to_vec();
    sasl.extend_from_slice(&11i32.to_be_bytes());
    sasl.extend_from_slice(b"n,,n=,r=abc");
    let mut bind = vec![0, 0, 0, 1, 0, 0, 0, 1];
    bind.extend_from_slice(&1i32.to_be_bytes());
    bind.extend_from_slice(b"7");
    bind.extend_from_slice(&[0, 1, 0, 1]);
    vec![
        startup(),
        vec![0, 0, 0, 8, 4, 210, 22, 47], // SSLRequest
        vec![0, 0, 0, 16, 4, 210, 22, 46, 0, 1, 134, 160, 0, 0, 0, 1], // CancelRequest
        frame(b'p', &sasl),
        frame(b'p', b"c=biws,r=abc,p=AAAA"),
        frame(b'Q', b"SELECT 1\0"),
        frame(b'Q', b"COPY t FROM STDIN\0"),
        frame(b'P', b"s1\0SELECT CAST($1 AS BIGINT) + 1\0\0\x01\0\0\0\x14"),
        frame(b'B', &bind),
        frame(b'D', b"Ss1\0"),
        frame(b'E', b"\0\0\0\0\0"),
        frame(b'S', b""),
        frame(b'H', b""),
        frame(b'd', b"1\tone\n2\ttwo\n"),
        frame(b'c', b""),
        frame(b'f', b"client gave up\0"),
        frame(b'C', b"Ss1\0"),
        frame(b'X', b""),
    ]
}

/// A mutation of a message: bytes flipped, cut, or its length field changed.
fn mutated_frame(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    match rng.random_range(0..5) {
        0 if !bytes.is_empty() => {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random();
        }
        1 if bytes.len() > 1 => bytes.truncate(rng.random_range(1..bytes.len())),
        2 if bytes.len() >= 5 => {
            let length: i32 = match rng.random_range(0..3) {
                0 => rng.random_range(-8..64),
                1 => i32::MAX,
                _ => rng.random(),
            };
            let at = if bytes[0].is_ascii_alphabetic() { 1 } else { 0 };
            bytes[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
        3 => bytes.extend((0..rng.random_range(1..32)).map(|_| rng.random::<u8>())),
        _ => {}
    }
    bytes
}

/// Sends a few (mutated) messages on a fresh connection and reads what comes back for a
/// moment; whatever the server answers, it must not stop serving.
async fn poke(addr: SocketAddr, rng: &mut StdRng, bases: &[Vec<u8>]) {
    let Ok(mut socket) = TcpStream::connect(addr).await else {
        panic!("the server stopped accepting connections");
    };
    let mut messages = Vec::new();
    if rng.random_bool(0.8) {
        messages.push(startup());
    }
    for _ in 0..rng.random_range(1..6) {
        let base = &bases[rng.random_range(0..bases.len())];
        messages.push(if rng.random_bool(0.6) {
            mutated_frame(rng, base)
        } else {
            base.clone()
        });
    }
    for message in messages {
        if socket.write_all(&message).await.is_err() {
            return;
        }
    }
    let mut buffer = vec![0; 4096];
    let deadline = Instant::now() + Duration::from_millis(200);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, socket.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => continue,
            _ => break,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_wire_frames_never_stop_the_server() {
    let scram = start(64).await;
    let trust = start_with(AuthMode::Trust, 64).await;
    trust_setup(trust.addr).await;
    let bases = frames();
    let mut rng = generator("wire");
    let started = Instant::now();
    let mut connections = 0;
    while started.elapsed() < budget() {
        for server in [scram.addr, trust.addr] {
            poke(server, &mut rng, &bases).await;
            connections += 1;
        }
        if connections % 50 == 0 {
            answers(scram.addr).await;
        }
    }
    eprintln!("fuzz wire: {connections} connections");
    answers(scram.addr).await;
    let trusted = crate::common::connect_as(trust.addr, "tastedb", "")
        .await
        .unwrap();
    assert_eq!(
        rows(
            trusted
                .simple_query("SELECT count(*) FROM t")
                .await
                .unwrap()
        )
        .len(),
        1
    );
}

async fn trust_setup(addr: SocketAddr) {
    let client = crate::common::connect_as(addr, "tastedb", "")
        .await
        .unwrap();
    client
        .batch_execute("CREATE TABLE t (id BIGINT, name TEXT)")
        .await
        .unwrap();
}

/// A fresh client is answered within 30 s.
async fn answers(addr: SocketAddr) {
    let check = async {
        let client = connect(addr).await;
        rows(client.simple_query("SELECT 1").await.unwrap())
    };
    let answered = tokio::time::timeout(Duration::from_secs(30), check)
        .await
        .expect("the server answers the next client");
    assert_eq!(answered[0][0].as_deref(), Some("1"));
}

/// Random damage to stored rows and to a stored model version: reading them back fails
/// with an error (or reads what decodes), never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_rows_and_model_versions_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = generator("stored");
    let (table_id, model_bytes) = {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql(
                "CREATE TABLE r (id BIGINT, name TEXT, w DOUBLE, v REAL[2], ts TIMESTAMP);
                 INSERT INTO r VALUES (1, 'one', 1.5, '[1, 2]', TIMESTAMP '2024-01-01 00:00:00');
                 CREATE TABLE ev (user_id BIGINT, item_id BIGINT);
                 INSERT INTO ev SELECT value % 7, value % 11 FROM generate_series(1, 300);
                 TRAIN MODEL m USING als FROM ev WITH (factors = 3, iterations = 2, holdout = 0);",
            )
            .await
            .unwrap();
        let store = engine.catalog().store().clone();
        let table_id = engine.table_def("r").unwrap().id;
        (
            table_id,
            store.get(&keys::model_data("m", 1)).unwrap().unwrap(),
        )
    };
    let started = Instant::now();
    let mut cases = 0;
    while started.elapsed() < budget() {
        let engine = Engine::open(dir.path()).unwrap();
        let store = engine.catalog().store().clone();
        let row: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
        let mut model = model_bytes.clone();
        match rng.random_range(0..3) {
            0 => model.truncate(rng.random_range(0..model.len())),
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..model.len());
                    model[at] = rng.random();
                }
            }
            _ => model = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        }
        let mut write = WriteSet::default();
        write.put(
            keys::row(table_id, &keys::row_id(rng.random_range(2..5))),
            row,
        );
        write.put(keys::model_data("m", 1), model);
        store.write(write).unwrap();
        drop(store);
        let _ = engine.sql("SELECT * FROM r").await;
        let _ = engine.sql("SELECT * FROM recommend('m', 1, 3)").await;
        drop(engine);
        cases += 1;
    }
    eprintln!("fuzz stored: {cases} cases");
}
