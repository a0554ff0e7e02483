//! The feature store beyond the golden file: the point-in-time join against a brute-force SQL
//! formulation on generated data (ties, late rows, expired rows), MATERIALIZE's counts in full
//! and incremental runs, and online rows after a restart (lookups over the wire are in the
//! golden files' run through the server).

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::util::display::array_value_to_string;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tastedb::Engine;

/// Every row of `batches` as text cells.
fn table(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows())
                .map(|row| {
                    b.columns()
                        .iter()
                        .map(|c| {
                            if c.is_null(row) {
                                "NULL".to_string()
                            } else {
                                array_value_to_string(c, row).unwrap()
                            }
                        })
                        .collect()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `INSERT INTO name VALUES …` of `rows`, each already a parenthesised tuple.
fn insert(name: &str, rows: &[String]) -> String {
    format!("INSERT INTO {name} VALUES {}", rows.join(", "))
}

#[tokio::test]
async fn point_in_time_join_matches_brute_force_sql() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .sql(
            "CREATE TABLE feats (user_id BIGINT, ts TIMESTAMP, value BIGINT);
             CREATE TABLE spine (id BIGINT, user_id BIGINT, ts TIMESTAMP)",
        )
        .await
        .unwrap();
    // Feature rows on a grid of hours (unique per user and hour), inserted out of time
    // order in three statements: late rows arrive after newer ones.
    let mut rng = StdRng::seed_from_u64(11);
    let hour = |h: i64| format!("TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{h} hours'");
    let mut feature_rows = Vec::new();
    for user in 0..30 {
        let mut hours: Vec<i64> = (0..400).filter(|_| rng.random_bool(0.05)).collect();
        hours.shuffle(&mut rng);
        for h in hours {
            feature_rows.push(format!("({user}, {}, {})", hour(h), user * 1000 + h));
        }
    }
    feature_rows.shuffle(&mut rng);
    for part in feature_rows.chunks(feature_rows.len() / 3 + 1) {
        engine.sql(&insert("feats", part)).await.unwrap();
    }
    // Spine rows on the same grid, so many fall exactly on a feature row's time; users 30
    // and 31 have no features at all.
    let spine_rows: Vec<String> = (0..600)
        .map(|id| {
            let user = rng.random_range(0..32);
            format!("({id}, {user}, {})", hour(rng.random_range(0..420)))
        })
        .collect();
    engine.sql(&insert("spine", &spine_rows)).await.unwrap();
    engine
        .sql(
            "CREATE FEATURE VIEW f ENTITY (user_id) TIMESTAMP ts TTL '3 days' AS
             SELECT user_id, ts, value FROM feats",
        )
        .await
        .unwrap();

    let joined = engine
        .sql(
            "SELECT id, value FROM historical_features('f', (SELECT user_id, ts, id FROM spine))
             ORDER BY id",
        )
        .await
        .unwrap();
    let brute_force = engine
        .sql(
            "WITH candidates AS (
               SELECT s.id, f.ts AS feature_ts, f.value FROM spine s JOIN feats f
               ON f.user_id = s.user_id AND f.ts <= s.ts AND f.ts >= s.ts - INTERVAL '3 days'),
             newest AS (SELECT id, max(feature_ts) AS feature_ts FROM candidates GROUP BY id)
             SELECT s.id, c.value FROM spine s
             LEFT JOIN newest n ON n.id = s.id
             LEFT JOIN candidates c ON c.id = n.id AND c.feature_ts = n.feature_ts
             ORDER BY s.id",
        )
        .await
        .unwrap();
    let (joined, brute_force) = (table(&joined), table(&brute_force));
    assert_eq!(joined.len(), 600);
    assert_eq!(joined, brute_force);
    // the data exercises every case: exact ties, matches, expired and missing rows
    let ties = engine
        .sql("SELECT count(*) FROM spine s JOIN feats f ON f.user_id = s.user_id AND f.ts = s.ts")
        .await
        .unwrap();
    assert!(ties[0].column(0).as_primitive::<Int64Type>().value(0) > 5);
    let matched = joined.iter().filter(|r| r[1] != "NULL").count();
    assert!(matched > 100 && matched < 550, "{matched} of 600 matched");
}

fn materialized(batches: &[RecordBatch]) -> (String, i64, i64) {
    let row = &table(batches)[0];
    (
        row[1].clone(),
        row[2].parse().unwrap(),
        row[3].parse().unwrap(),
    )
}

#[tokio::test]
async fn materialize_counts_and_online_rows_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .sql(
                "CREATE TABLE events (user_id BIGINT, item_id BIGINT, ts TIMESTAMP);
                 INSERT INTO events SELECT u % 50, u, CAST(now() AS TIMESTAMP)
                   - CAST(u || ' minutes' AS INTERVAL) FROM generate_series(1, 500) AS t(u);
                 CREATE FEATURE VIEW activity ENTITY (user_id) TIMESTAMP last_seen TTL '1 day' AS
                 SELECT user_id, max(ts) AS last_seen, count(*) AS events
                 FROM events GROUP BY user_id",
            )
            .await
            .unwrap();
        let run = engine
            .sql("MATERIALIZE FEATURE VIEW activity")
            .await
            .unwrap();
        assert_eq!(materialized(&run), ("full".into(), 50, 50));
    }
    // After a restart: the rows are there, and new events make an incremental run that
    // recomputes only the users they touch.
    let engine = Engine::open(dir.path()).unwrap();
    let lookup = "SELECT user_id, events FROM online_features('activity', 7, 8, 99)";
    assert_eq!(
        table(&engine.sql(lookup).await.unwrap()),
        [["7", "10"], ["8", "10"], ["99", "NULL"]]
    );
    engine
        .sql("INSERT INTO events VALUES (7, 1, CAST(now() AS TIMESTAMP)), (99, 2, CAST(now() AS TIMESTAMP))")
        .await
        .unwrap();
    let run = engine
        .sql("MATERIALIZE FEATURE VIEW activity")
        .await
        .unwrap();
    assert_eq!(materialized(&run), ("incremental".into(), 2, 51));
    assert_eq!(
        table(&engine.sql(lookup).await.unwrap()),
        [["7", "11"], ["8", "10"], ["99", "1"]]
    );
}
