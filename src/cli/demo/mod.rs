//! `tastedb demo`: the product on a generated shop. Creates the demo tables (items, users,
//! events) in the data directory at its first start, trains the model `shop`, defines a
//! named filter and a feature view, then serves the wire protocol (trust on loopback) and the
//! HTTP API with its console, and prints how to reach them and one sample list.

mod catalogue;

use catalogue::{Size, TABLES};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Float64Type;
use std::net::SocketAddr;
use std::time::Instant;
use tastedb::http::{HttpOptions, HttpServer};
use tastedb::server::{AuthMode, ServeOptions, Server};
use tastedb::{Engine, Error, Result};

/// The role the demo logs in as, over the wire and through its API key.
const DEMO_USER: &str = "tastedb";
/// The demo's model.
const MODEL: &str = "shop";
/// The user whose recommendations are printed.
const SAMPLE_USER: &str = "u00042";
/// The shop's size: a few thousand users and items.
const SIZE: Size = Size {
    users: 3000,
    items_per_category: 250,
    events_per_user: 30,
};

/// Where the demo listens.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// The wire protocol's address (loopback: logins are trusted).
    pub listen: SocketAddr,
    /// The HTTP API's address.
    pub http: SocketAddr,
}

/// Sets the demo up in `engine`'s data directory (once) and serves it until Ctrl-C.
pub async fn run(engine: Engine, options: DemoOptions) -> Result<()> {
    if engine.models().get(MODEL).is_err() {
        set_up(&engine).await?;
    } else {
        eprintln!("the demo's data is already in this data directory: serving it");
    }
    if engine.users().get(DEMO_USER)?.is_none() {
        let password: [u8; 16] = rand::random();
        let password: String = password.iter().map(|b| format!("{b:02x}")).collect();
        engine.users().set_password(DEMO_USER, &password)?;
    }
    engine.sql("DROP API KEY IF EXISTS demo").await?;
    let created = engine
        .sql(&format!("CREATE API KEY demo FOR USER {DEMO_USER}"))
        .await?;
    let key = first_text(&created, 2).unwrap_or_default();
    let signalled = super::serve::shutdown_signal();
    let server = Server::bind(
        engine.clone(),
        ServeOptions {
            listen: options.listen,
            auth: AuthMode::Trust,
            max_connections: 100,
            tls: None,
            tls_required: false,
            statement_timeout: "0".into(),
            checkpoints: None,
            follow: None,
        },
    )
    .await?;
    let http = HttpServer::bind(engine.clone(), HttpOptions::new(options.http)).await?;
    let (wire, web) = (server.local_addr()?, http.local_addr()?);
    print_sample(&engine).await?;
    println!();
    println!(
        "psql:    psql -h {} -p {} -U {DEMO_USER} tastedb",
        wire.ip(),
        wire.port()
    );
    println!("console: http://{web}/#/models/{MODEL}?key={key}");
    println!(
        "curl:    curl -H 'Authorization: Bearer {key}' \
         'http://{web}/v1/models/{MODEL}/recommend?user={SAMPLE_USER}&k=5&filter=in_stock'"
    );
    println!("Ctrl-C stops it.");
    super::serve::run_until(server, Some(http), signalled).await
}

/// Creates, fills and trains the demo.
async fn set_up(engine: &Engine) -> Result<()> {
    if engine.table_def("events").is_some() {
        return Err(Error::DuplicateTable(
            "events (this data directory has tables of its own: give the demo another one \
             with --data)"
                .into(),
        ));
    }
    let started = Instant::now();
    let shop = catalogue::generate(SIZE, 42, tastedb::clock::now_micros())?;
    for sql in TABLES {
        engine.sql(sql).await?;
    }
    engine.insert_batches("items", vec![shop.items]).await?;
    engine.insert_batches("users", vec![shop.users]).await?;
    engine.insert_batches("events", shop.events).await?;
    eprintln!(
        "generated {} users, {} items and {} events in {:.1} s; training the model \"{MODEL}\"…",
        SIZE.users,
        SIZE.items_per_category * 8,
        shop.event_count,
        started.elapsed().as_secs_f64()
    );
    let training = Instant::now();
    engine
        .sql(&format!(
            "TRAIN MODEL {MODEL} USING als FROM events \
             WITH (factors = 32, iterations = 12, regularization = 5)"
        ))
        .await?;
    eprintln!("trained in {:.1} s", training.elapsed().as_secs_f64());
    engine
        .sql("CREATE FILTER in_stock AS SELECT item_id FROM items WHERE stock > 0")
        .await?;
    engine
        .sql(
            "CREATE FEATURE VIEW user_activity ENTITY (user_id) TIMESTAMP last_seen AS \
             SELECT user_id, max(ts) AS last_seen, count(*) AS events, \
             sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases \
             FROM events GROUP BY user_id",
        )
        .await?;
    engine.sql("MATERIALIZE FEATURE VIEW user_activity").await?;
    Ok(())
}

/// Prints what the sample user likes and what the model recommends to them.
async fn print_sample(engine: &Engine) -> Result<()> {
    let versions = engine
        .sql(&format!(
            "SELECT ndcg_at_k FROM tastedb_model_versions WHERE model = '{MODEL}' AND active"
        ))
        .await?;
    let ndcg = versions.first().filter(|b| b.num_rows() > 0).and_then(|b| {
        b.column(0)
            .as_primitive_opt::<Float64Type>()
            .map(|a| a.value(0))
    });
    if let Some(ndcg) = ndcg {
        println!("model \"{MODEL}\" (ALS): NDCG@10 on held-out events {ndcg:.3}");
    }
    let likes = engine
        .sql(&format!(
            "SELECT favourite_category, second_category FROM users WHERE user_id = '{SAMPLE_USER}'"
        ))
        .await?;
    if let (Some(first), Some(second)) = (first_text(&likes, 0), first_text(&likes, 1)) {
        println!("{SAMPLE_USER} mostly looks at {first}, then {second}; in stock for them:");
    }
    let list = engine
        .sql(&format!(
            "SELECT r.rank, i.title, i.category, i.price, round(r.score, 3) \
             FROM recommend('{MODEL}', '{SAMPLE_USER}', 5, filter => 'in_stock') r \
             JOIN items i USING (item_id) ORDER BY r.rank"
        ))
        .await?;
    for batch in &list {
        for row in 0..batch.num_rows() {
            let text = |c: usize| {
                datafusion::arrow::util::display::array_value_to_string(batch.column(c), row)
                    .unwrap_or_default()
            };
            println!(
                "  {}. {} ({}, {}) score {}",
                text(0),
                text(1),
                text(2),
                text(3),
                text(4)
            );
        }
    }
    Ok(())
}

/// The text in column `column` of the first row.
fn first_text(batches: &[RecordBatch], column: usize) -> Option<String> {
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let values = batch.column(column).as_string_opt::<i32>()?;
    values.is_valid(0).then(|| values.value(0).to_string())
}
