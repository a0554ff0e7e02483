//! Protocol details through real clients: every mapped type in text and binary format,
//! NOTICE messages, and Bind messages that do not fit their statement.

use crate::common::{connect, connect_with_notices, rows, start, start_with};
use chrono::{NaiveDate, TimeZone, Utc};
use std::net::SocketAddr;
use tastedb::server::AuthMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::types::{FromSql, Type};

/// One value of every type the server maps, with Postgres' own name for it.
const ALL_TYPES: &str = "SELECT CAST(1 AS SMALLINT) AS i2, CAST(2 AS INT) AS i4, \
    CAST(3 AS BIGINT) AS i8, CAST(1.5 AS REAL) AS f4, CAST(2.25 AS DOUBLE) AS f8, \
    true AS b, 'héllo' AS t, CAST('12.50' AS DECIMAL(10,2)) AS n, DATE '2024-02-29' AS d, \
    TIMESTAMP '2024-02-29 13:14:15.123456' AS ts, \
    arrow_cast('2024-02-29T13:14:15Z', 'Timestamp(Microsecond, Some(\"UTC\"))') AS tz, \
    CAST('abc' AS BYTEA) AS by, [1, 2, 3] AS arr, make_array('a', NULL) AS tarr";

#[tokio::test]
async fn every_mapped_type_round_trips_in_text_format() {
    let server = start(4).await;
    let client = connect(server.addr).await;
    let text = rows(client.simple_query(ALL_TYPES).await.unwrap());
    let expected = [
        "1",
        "2",
        "3",
        "1.5",
        "2.25",
        "t",
        "héllo",
        "12.50",
        "2024-02-29",
        "2024-02-29 13:14:15.123456",
        "2024-02-29 13:14:15+00",
        "\\x616263",
        "{1,2,3}",
        "{a,NULL}",
    ];
    let expected: Vec<Option<String>> = expected.iter().map(|v| Some(v.to_string())).collect();
    assert_eq!(text, vec![expected]);
}

/// Floats and timestamps in the text PostgreSQL 15 prints for them (checked with psql).
#[tokio::test]
async fn floats_and_timestamps_read_as_postgresql_prints_them() {
    let server = start(4).await;
    let client = connect(server.addr).await;
    let text = rows(
        client
            .simple_query(
                "SELECT CAST(2 AS DOUBLE), CAST('inf' AS DOUBLE), CAST('-inf' AS DOUBLE), \
                 CAST('NaN' AS DOUBLE), -CAST(0 AS DOUBLE), CAST(1e20 AS DOUBLE), \
                 CAST(1.5e-7 AS DOUBLE), CAST(1234567 AS REAL), \
                 TIMESTAMP '2026-01-03 12:00:00', TIMESTAMP '2026-01-03 12:00:00.5'",
            )
            .await
            .unwrap(),
    );
    let expected = [
        "2",
        "Infinity",
        "-Infinity",
        "NaN",
        "-0",
        "1e+20",
        "1.5e-07",
        "1.234567e+06",
        "2026-01-03 12:00:00",
        "2026-01-03 12:00:00.5",
    ];
    let expected: Vec<Option<String>> = expected.iter().map(|v| Some(v.to_string())).collect();
    assert_eq!(text, vec![expected]);
}

/// SQL PREPARE / EXECUTE / DEALLOCATE belong to the connection, take `$n` in table
/// functions, and fail with PostgreSQL's SQLSTATEs (checked against PostgreSQL 15).
#[tokio::test]
async fn sql_prepared_statements_belong_to_their_connection() {
    let server = start(4).await;
    let client = connect(server.addr).await;
    let other = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE ev (user_id TEXT, item_id TEXT);
             INSERT INTO ev VALUES ('u1', 'a'), ('u1', 'b'), ('u2', 'a'), ('u2', 'c'), ('u3', 'b');
             TRAIN MODEL m USING popularity FROM ev WITH (holdout = 0)",
        )
        .await
        .unwrap();
    let answer = |sql: &'static str| {
        let client = &client;
        async move { rows(client.simple_query(sql).await.unwrap()) }
    };
    assert_eq!(
        answer("PREPARE p(int) AS SELECT $1 + 1 AS n; EXECUTE p(41)").await,
        [[Some("42".to_string())]]
    );
    assert_eq!(
        answer(
            "PREPARE r(text) AS SELECT item_id FROM recommend('m', $1, 5) ORDER BY rank; \
             EXECUTE r('u3')"
        )
        .await,
        [[Some("a".to_string())], [Some("c".to_string())]]
    );
    let code = |e: tokio_postgres::Error| e.code().unwrap().code().to_string();
    for (connection, sql, state) in [
        (&client, "PREPARE p AS SELECT 1", "42P05"),
        (&client, "EXECUTE p(1, 2)", "42601"),
        (&other, "EXECUTE p(1)", "26000"),
        (&client, "DEALLOCATE nope", "26000"),
    ] {
        let error = connection.batch_execute(sql).await.unwrap_err();
        assert_eq!(code(error), state, "{sql}");
    }
    client.batch_execute("DEALLOCATE p").await.unwrap();
    let error = client.batch_execute("EXECUTE p(1)").await.unwrap_err();
    assert_eq!(code(error), "26000");
}

/// The raw binary form of a NUMERIC (tokio-postgres has no decimal type of its own).
struct RawNumeric(Vec<u8>);

impl<'a> FromSql<'a> for RawNumeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawNumeric(raw.to_vec()))
    }

    fn accepts(ty: &Type) -> bool {
        ty == &Type::NUMERIC
    }
}

#[tokio::test]
async fn every_mapped_type_round_trips_in_binary_format() {
    let server = start(4).await;
    let client = connect(server.addr).await;
    let statement = client.prepare(ALL_TYPES).await.unwrap();
    let types: Vec<&Type> = statement.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(
        types,
        [
            &Type::INT2,
            &Type::INT4,
            &Type::INT8,
            &Type::FLOAT4,
            &Type::FLOAT8,
            &Type::BOOL,
            &Type::TEXT,
            &Type::NUMERIC,
            &Type::DATE,
            &Type::TIMESTAMP,
            &Type::TIMESTAMPTZ,
            &Type::BYTEA,
            &Type::INT8_ARRAY,
            &Type::TEXT_ARRAY,
        ]
    );
    let row = client.query_one(&statement, &[]).await.unwrap();
    assert_eq!(row.get::<_, i16>("i2"), 1);
    assert_eq!(row.get::<_, i32>("i4"), 2);
    assert_eq!(row.get::<_, i64>("i8"), 3);
    assert_eq!(row.get::<_, f32>("f4"), 1.5);
    assert_eq!(row.get::<_, f64>("f8"), 2.25);
    assert!(row.get::<_, bool>("b"));
    assert_eq!(row.get::<_, String>("t"), "héllo");
    // 12.50: 2 base-10000 digits (12, 5000), weight 0, positive, display scale 2
    let numeric = row.get::<_, RawNumeric>("n").0;
    assert_eq!(numeric, [0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88]);
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    assert_eq!(row.get::<_, NaiveDate>("d"), date);
    let time = date.and_hms_micro_opt(13, 14, 15, 123_456).unwrap();
    assert_eq!(row.get::<_, chrono::NaiveDateTime>("ts"), time);
    let utc = Utc.with_ymd_and_hms(2024, 2, 29, 13, 14, 15).unwrap();
    assert_eq!(row.get::<_, chrono::DateTime<Utc>>("tz"), utc);
    assert_eq!(row.get::<_, Vec<u8>>("by"), b"abc");
    assert_eq!(row.get::<_, Vec<i64>>("arr"), [1, 2, 3]);
    assert_eq!(
        row.get::<_, Vec<Option<String>>>("tarr"),
        [Some("a".to_string()), None]
    );
}

#[tokio::test]
async fn typed_parameters_of_every_scalar_type_bind() {
    let server = start(4).await;
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE typed (id BIGINT PRIMARY KEY, small SMALLINT, medium INT, ratio REAL, \
             flag BOOLEAN, day DATE, stamp TIMESTAMP, name TEXT)",
        )
        .await
        .unwrap();
    let day = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
    let at = day.and_hms_micro_opt(23, 59, 59, 999_999).unwrap();
    let inserted = client
        .execute(
            "INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&7i64, &-2i16, &40_000i32, &0.25f32, &false, &day, &at, &"ü"],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let row = client
        .query_one(
            "SELECT small, medium, ratio, flag, day, stamp, name FROM typed WHERE id = $1 AND day = $2",
            &[&7i64, &day],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i16>(0), -2);
    assert_eq!(row.get::<_, i32>(1), 40_000);
    assert_eq!(row.get::<_, f32>(2), 0.25);
    assert!(!row.get::<_, bool>(3));
    assert_eq!(row.get::<_, NaiveDate>(4), day);
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(5), at);
    assert_eq!(row.get::<_, String>(6), "ü");
}

#[tokio::test]
async fn notices_reach_the_client_as_statements_run() {
    let server = start(4).await;
    let (client, mut notices) = connect_with_notices(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT); CREATE TABLE IF NOT EXISTS t (id BIGINT); \
             DROP TABLE IF EXISTS missing; DROP USER IF EXISTS nobody",
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(notices.recv().await.unwrap());
    }
    assert_eq!(
        received,
        [
            (
                "42P07".into(),
                "relation \"t\" already exists, skipping".into()
            ),
            (
                "00000".into(),
                "table \"missing\" does not exist, skipping".into()
            ),
            (
                "00000".into(),
                "role \"nobody\" does not exist, skipping".into()
            ),
        ]
    );
    // a statement that skips nothing sends no notice
    client
        .batch_execute("DROP TABLE IF EXISTS t")
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert!(notices.try_recv().is_err());
}

/// A raw protocol-3 connection with trust authentication, for messages no driver would send.
struct RawConnection {
    socket: TcpStream,
}

impl RawConnection {
    async fn open(addr: SocketAddr) -> RawConnection {
        let mut connection = RawConnection::start(addr).await;
        connection.read_until_ready().await;
        connection
    }

    /// Sends the startup message, nothing more.
    async fn start(addr: SocketAddr) -> RawConnection {
        let mut body = 196608u32.to_be_bytes().to_vec(); // protocol 3.0
        for part in ["user", "tastedb", "database", "tastedb"] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        let mut connection = RawConnection {
            socket: TcpStream::connect(addr).await.unwrap(),
        };
        connection.socket.write_all(&startup).await.unwrap();
        connection
    }

    /// Reads one message: its type and body.
    async fn read_message(&mut self) -> (u8, Vec<u8>) {
        let kind = self.socket.read_u8().await.unwrap();
        let length = self.socket.read_u32().await.unwrap() as usize;
        let mut body = vec![0; length - 4];
        self.socket.read_exact(&mut body).await.unwrap();
        (kind, body)
    }

    async fn send(&mut self, kind: u8, body: &[u8]) {
        let mut message = vec![kind];
        message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        message.extend_from_slice(body);
        self.socket.write_all(&message).await.unwrap();
    }

    /// Reads messages up to ReadyForQuery; returns their type bytes and the SQLSTATE of any
    /// ErrorResponse.
    async fn read_until_ready(&mut self) -> (Vec<u8>, Vec<String>) {
        let (mut kinds, mut codes) = (Vec::new(), Vec::new());
        loop {
            let kind = self.socket.read_u8().await.unwrap();
            let length = self.socket.read_u32().await.unwrap() as usize;
            let mut body = vec![0; length - 4];
            self.socket.read_exact(&mut body).await.unwrap();
            kinds.push(kind);
            if kind == b'E' {
                codes.extend(body.split(|b| *b == 0).filter_map(|field| {
                    field
                        .strip_prefix(b"C")
                        .map(|code| String::from_utf8_lossy(code).into_owned())
                }));
            }
            if kind == b'Z' {
                return (kinds, codes);
            }
        }
    }
}

/// A SASLInitialResponse body: mechanism, then the length-prefixed client-first message.
fn sasl_initial(mechanism: &str, client_first: &str) -> Vec<u8> {
    let mut body = mechanism.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
    body.extend_from_slice(client_first.as_bytes());
    body
}

/// Malformed SCRAM messages, before any login, are each a FATAL 08P01 (never a panic), and
/// the server serves the next client.
#[tokio::test]
async fn malformed_sasl_messages_get_08p01_and_the_server_goes_on() {
    let server = start(8).await;
    let mut length_too_long = sasl_initial("SCRAM-SHA-256", "n,,n=,r=abc");
    length_too_long.truncate(length_too_long.len() - 2);
    let initial = [
        b"SCRAM-SHA-256\0\0\0".to_vec(), // the length cut short
        b"SCRAM-SHA-256".to_vec(),       // no NUL after the mechanism
        length_too_long,
        sasl_initial("SCRAM-SHA-1", "n,,n=,r=abc"),
        sasl_initial("SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc"),
        sasl_initial("SCRAM-SHA-256", "n,,n=,"),
        sasl_initial("SCRAM-SHA-256", "garbage"),
    ];
    for body in &initial {
        assert_eq!(
            sasl_exchange(server.addr, body, None).await,
            "08P01",
            "{body:?}"
        );
    }
    let good = sasl_initial("SCRAM-SHA-256", "n,,n=,r=abc");
    for last in [
        b"c=biws,r=abc,p=AAAA".to_vec(),        // not the server's nonce
        b"c=eSws,r=abc,p=AAAA".to_vec(),        // wrong binding flag
        b"c=biws,r=abc".to_vec(),               // no proof
        b"c=biws,r=abc,p=not base64!".to_vec(), // undecodable proof
        vec![0xff, 0xfe],                       // not UTF-8
    ] {
        assert_eq!(
            sasl_exchange(server.addr, &good, Some(&last)).await,
            "08P01",
            "{last:?}"
        );
    }
    let client = connect(server.addr).await;
    assert_eq!(
        rows(client.simple_query("SELECT 1").await.unwrap())[0][0].as_deref(),
        Some("1")
    );
}

/// Runs a SCRAM login with `initial` and, when the server answers it, `last` as the
/// client-final message (the server nonce it sent is kept as given); the SQLSTATE of the
/// error that ends the connection.
async fn sasl_exchange(addr: SocketAddr, initial: &[u8], last: Option<&[u8]>) -> String {
    let mut connection = RawConnection::start(addr).await;
    let (kind, body) = connection.read_message().await;
    assert_eq!(
        (kind, &body[..4]),
        (b'R', &10i32.to_be_bytes()[..]),
        "SASL offered"
    );
    connection.send(b'p', initial).await;
    let mut sent_last = false;
    loop {
        let (kind, body) = connection.read_message().await;
        match kind {
            b'E' => {
                let fields = body.split(|b| *b == 0);
                let code = fields
                    .filter_map(|f| f.strip_prefix(b"C"))
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .next();
                return code.unwrap_or_default();
            }
            b'R' if !sent_last => {
                let last = last.expect("the server continued the exchange");
                connection.send(b'p', last).await;
                sent_last = true;
            }
            other => panic!("unexpected message {}", other as char),
        }
    }
}

/// A Bind body for the unnamed statement and portal.
fn bind(parameter_formats: &[i16], parameters: &[&str], result_formats: &[i16]) -> Vec<u8> {
    let mut body = vec![0, 0]; // portal "", statement ""
    body.extend_from_slice(&(parameter_formats.len() as i16).to_be_bytes());
    for format in parameter_formats {
        body.extend_from_slice(&format.to_be_bytes());
    }
    body.extend_from_slice(&(parameters.len() as i16).to_be_bytes());
    for parameter in parameters {
        body.extend_from_slice(&(parameter.len() as i32).to_be_bytes());
        body.extend_from_slice(parameter.as_bytes());
    }
    body.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for format in result_formats {
        body.extend_from_slice(&format.to_be_bytes());
    }
    body
}

#[tokio::test]
async fn bind_messages_that_do_not_fit_get_08p01_and_the_connection_goes_on() {
    let server = start_with(AuthMode::Trust, 4).await;
    let mut connection = RawConnection::open(server.addr).await;
    let parse = b"\0SELECT CAST($1 AS BIGINT) + 1 AS a, 2 AS b\0\0\0";
    let bad_binds = [
        bind(&[0, 0, 0], &["5"], &[]), // three parameter formats for one parameter
        bind(&[], &["5"], &[0, 1, 0]), // three result formats for two columns
        bind(&[], &["5", "6"], &[]),   // two parameters for one
        bind(&[7], &["5"], &[]),       // no such format
    ];
    for bad in &bad_binds {
        connection.send(b'P', parse).await;
        connection.send(b'B', bad).await;
        connection.send(b'E', b"\0\0\0\0\0").await;
        connection.send(b'S', b"").await;
        let (_, codes) = connection.read_until_ready().await;
        assert_eq!(codes, ["08P01"]);
    }
    connection.send(b'P', parse).await;
    connection.send(b'B', &bind(&[0], &["41"], &[0, 0])).await;
    connection.send(b'E', b"\0\0\0\0\0").await;
    connection.send(b'S', b"").await;
    let (kinds, codes) = connection.read_until_ready().await;
    assert!(codes.is_empty(), "{codes:?}");
    assert!(kinds.contains(&b'D'), "no row in {kinds:?}");
}

#[tokio::test]
async fn prepared_key_lookups_answer_like_any_query() {
    let server = start(4).await;
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, name TEXT NOT NULL, balance DOUBLE);
             INSERT INTO accounts VALUES (1, 'ann', 10.5), (2, 'bob', NULL), (5, 'eve', -1);
             CREATE TABLE pairs (a TEXT, b INT, v TEXT, PRIMARY KEY (a, b));
             INSERT INTO pairs VALUES ('x', 1, 'x1'), ('x', 2, 'x2'), ('y', 1, 'y1')",
        )
        .await
        .unwrap();
    let by_id = client
        .prepare("SELECT name, balance, id FROM accounts WHERE id = $1")
        .await
        .unwrap();
    for id in 0..7i64 {
        let prepared: Vec<(String, Option<f64>, i64)> = client
            .query(&by_id, &[&id])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let scanned: Vec<(String, Option<f64>, i64)> = client
            .query(
                "SELECT name, balance, id FROM accounts WHERE id + 0 = $1",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(prepared, scanned, "id {id}");
        assert_eq!(prepared.len(), usize::from([1, 2, 5].contains(&id)));
    }
    assert!(
        client
            .query(&by_id, &[&None::<i64>])
            .await
            .unwrap()
            .is_empty()
    );

    let by_pair = client
        .prepare("SELECT v FROM pairs WHERE b = $2 AND a = $1")
        .await
        .unwrap();
    for (a, b, expected) in [("x", 2, Some("x2")), ("y", 1, Some("y1")), ("y", 2, None)] {
        let found: Vec<String> = client
            .query(&by_pair, &[&a, &b])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(found.first().map(String::as_str), expected);
    }

    // a table dropped and created again under the same name is read afresh
    client
        .batch_execute(
            "DROP TABLE accounts;
             CREATE TABLE accounts (id BIGINT PRIMARY KEY, name TEXT NOT NULL, balance DOUBLE);
             INSERT INTO accounts VALUES (1, 'new ann', 0)",
        )
        .await
        .unwrap();
    let row = client.query_one(&by_id, &[&1i64]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "new ann");
}

/// Answers to Parse, Bind and Execute wait for Sync or Flush, as PostgreSQL's do (checked
/// against PostgreSQL 15 with the same bytes): a prepared query costs one write of the
/// socket, not one per message.
#[tokio::test]
async fn extended_query_answers_wait_for_sync_or_flush() {
    let server = start_with(AuthMode::Trust, 4).await;
    let mut connection = RawConnection::open(server.addr).await;
    connection.send(b'P', b"\0SELECT 1 AS one\0\0\0").await;
    connection.send(b'B', &bind(&[], &[], &[])).await;
    connection.send(b'E', b"\0\0\0\0\0").await;
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        connection.socket.peek(&mut byte),
    )
    .await;
    assert!(early.is_err(), "nothing is sent before Sync or Flush");
    connection.send(b'H', b"").await;
    let mut kinds = Vec::new();
    while kinds.last() != Some(&b'C') {
        kinds.push(connection.read_message().await.0);
    }
    assert_eq!(kinds, b"12DC");
    connection.send(b'S', b"").await;
    let (kinds, codes) = connection.read_until_ready().await;
    assert_eq!((kinds, codes), (b"Z".to_vec(), Vec::<String>::new()));
}
