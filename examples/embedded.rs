//! TasteDB embedded in a Rust program: create a table, insert events, query them, train a
//! model and ask it for recommendations (also through a prepared statement), then search a
//! vector column through an HNSW index.
//!
//! Run with `cargo run --example embedded [DATA_DIR]`; without a directory it uses a fresh
//! temporary one, so it can be run again and again.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::{ParamValues, ScalarValue};
use futures::TryStreamExt;
use tastedb::Engine;
use tastedb::engine::{self, Outcome};
use tastedb::sql::notices::Notices;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temporary = tempfile::tempdir()?;
    let (dir, note) = match std::env::args().nth(1) {
        Some(dir) => (std::path::PathBuf::from(dir), ""),
        None => (
            temporary.path().join("tastedb-data"),
            " (temporary, removed at exit)",
        ),
    };
    let engine = Engine::open(&dir)?;
    println!("data directory: {}{note}", dir.display());

    engine
        .sql(
            "CREATE TABLE IF NOT EXISTS events (
                 user_id TEXT NOT NULL, item_id TEXT NOT NULL, event_type TEXT,
                 weight DOUBLE, ts TIMESTAMP);
             CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, title TEXT)",
        )
        .await?;
    // Re-running on the same directory must not insert the same keys twice.
    engine
        .sql(
            "INSERT INTO items
             SELECT * FROM (VALUES ('i1', 'The Matrix'), ('i2', 'Amélie'), ('i3', 'Alien'))
               AS v(item_id, title)
             WHERE item_id NOT IN (SELECT item_id FROM items)",
        )
        .await?;
    engine
        .sql(
            "INSERT INTO events VALUES
               ('u1', 'i1', 'view', 1, '2024-05-01 10:00:00'),
               ('u1', 'i2', 'purchase', 5, '2024-05-01 10:03:00'),
               ('u2', 'i1', 'view', 1, '2024-05-02 18:30:00'),
               ('u2', 'i3', 'cart', 3, '2024-05-02 18:31:00'),
               ('u3', 'i1', 'purchase', 5, '2024-05-03 08:00:00')",
        )
        .await?;

    let popular = engine
        .sql(
            "SELECT i.title, count(*) AS events, sum(e.weight) AS weight
             FROM events e JOIN items i USING (item_id)
             GROUP BY i.title ORDER BY weight DESC, i.title",
        )
        .await?;
    println!("most popular items:\n{}", pretty_format_batches(&popular)?);

    let one = engine
        .sql("SELECT title FROM items WHERE item_id = 'i2'")
        .await?;
    println!("point lookup by key:\n{}", pretty_format_batches(&one)?);

    // Each run trains a new version of the model; the newest is the one served.
    engine
        .sql("TRAIN MODEL demo USING als FROM events WITH (factors = 8, iterations = 5, holdout = 0)")
        .await?;
    let versions = engine
        .sql("SELECT model, version, algorithm, users, items, train_seconds FROM tastedb_model_versions")
        .await?;
    println!("model versions:\n{}", pretty_format_batches(&versions)?);
    let recommended = engine
        .sql(
            "SELECT r.rank, i.title, r.score
             FROM recommend('demo', 'u3', 2) AS r JOIN items i USING (item_id)
             ORDER BY r.rank",
        )
        .await?;
    println!(
        "recommended for u3:\n{}",
        pretty_format_batches(&recommended)?
    );

    // A prepared statement: planned once, then run with a value for each user.
    let statement = engine::parse("SELECT item_id, rank FROM recommend('demo', $1, 2)")?.remove(0);
    let prepared = engine.prepare(statement).await?;
    for user in ["u1", "u2"] {
        let values = ParamValues::List(vec![ScalarValue::from(user).into()]);
        let outcome = engine
            .execute_prepared(&prepared, values, &Notices::tracing())
            .await?;
        let Outcome::Rows(stream) = outcome else {
            return Err("a query returns rows".into());
        };
        let rows: Vec<RecordBatch> = stream.try_collect().await?;
        println!("prepared, for {user}:\n{}", pretty_format_batches(&rows)?);
    }

    // Vectors: a column of embeddings, an HNSW index over it, and the nearest rows to a query.
    engine
        .sql(
            "CREATE TABLE IF NOT EXISTS item_embeddings (item_id TEXT PRIMARY KEY, embedding REAL[3]);
             CREATE INDEX IF NOT EXISTS item_embeddings_hnsw ON item_embeddings
               USING hnsw (embedding) WITH (metric = 'cosine')",
        )
        .await?;
    engine
        .sql(
            "INSERT INTO item_embeddings
             SELECT item_id, make_array(length(title)::REAL, 1.0, ascii(title)::REAL / 100)
             FROM items WHERE item_id NOT IN (SELECT item_id FROM item_embeddings)",
        )
        .await?;
    let nearest = engine
        .sql(
            "SELECT n.item_id, i.title, round(n.distance, 4) AS distance
             FROM nearest('item_embeddings', 'embedding', [5.0, 1.0, 0.8], 3) AS n
             JOIN items i USING (item_id) ORDER BY distance",
        )
        .await?;
    println!(
        "nearest to [5, 1, 0.8]:\n{}",
        pretty_format_batches(&nearest)?
    );
    Ok(())
}
