//! Models through the embedding API and the wire: a trained model is served after a restart
//! without retraining, and TRAIN reports every iteration as a NOTICE.

use crate::common::{connect_with_notices, start};
use datafusion::arrow::array::{AsArray, RecordBatch};
use tastedb::Engine;

const EVENTS: &str = "CREATE TABLE events (user_id BIGINT, item_id BIGINT, weight DOUBLE);
    INSERT INTO events SELECT u, CASE WHEN u <= 10 THEN i ELSE i + 5 END, 1.0
    FROM generate_series(1, 20) AS users(u) CROSS JOIN generate_series(1, 5) AS items(i)
    WHERE i <> u % 5 + 1";

fn ranking(batches: &[RecordBatch]) -> Vec<(i64, f64)> {
    batches
        .iter()
        .flat_map(|b| {
            let ids = b
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let scores = b
                .column(1)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            (0..b.num_rows())
                .map(|i| (ids.value(i), scores.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn models_are_served_after_a_restart_with_integer_ids() {
    let dir = tempfile::tempdir().unwrap();
    let query = "SELECT item_id, score FROM recommend('recs', 5, 3)";
    let before = {
        let engine = Engine::open(dir.path()).unwrap();
        engine.sql(EVENTS).await.unwrap();
        engine
            .sql("TRAIN MODEL recs USING als FROM events WITH (factors = 4, iterations = 10, regularization = 0.01, alpha = 10, seed = 7, holdout = 0)")
            .await
            .unwrap();
        ranking(&engine.sql(query).await.unwrap())
    };
    assert_eq!(before.len(), 3);
    assert_eq!(before[0].0, 1, "user 5 has not seen item 1 of their group");
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(ranking(&engine.sql(query).await.unwrap()), before);
    // the scalar form gives the same items, as BIGINT like the source column
    let listed = engine
        .sql("SELECT unnest(recommend_items('recs', 5, 3)) AS item_id")
        .await
        .unwrap();
    let items: Vec<i64> = listed
        .iter()
        .flat_map(|b| {
            let ids = b
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            (0..b.num_rows()).map(|i| ids.value(i)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(items, before.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    let versions = engine
        .sql("SELECT count(*) FROM tastedb_model_versions WHERE model = 'recs'")
        .await
        .unwrap();
    assert_eq!(
        versions[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0),
        1
    );
    // the phases of the TRAIN, the write's own included, are kept too
    let phases = engine
        .sql(
            "SELECT count(*) FROM tastedb_training_phases WHERE model = 'recs' AND phase = 'write'",
        )
        .await
        .unwrap();
    assert_eq!(
        phases[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_reports_each_iteration_as_a_notice() {
    let server = start(4).await;
    let (client, mut notices) = connect_with_notices(server.addr).await;
    client.batch_execute(EVENTS).await.unwrap();
    // graphs of models with more items than the threshold are built after TRAIN, not in it
    (client.batch_execute("SET tastedb.ann_threshold = 0").await).unwrap();
    let rows = client
        .query(
            "TRAIN MODEL recs USING als FROM events WITH (factors = 4, iterations = 4, \
             regularization = 0.01, alpha = 10, seed = 7, holdout = 0.2)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>("model"), "recs");
    assert_eq!(rows[0].get::<_, i64>("version"), 1);
    let mut received = Vec::new();
    while let Ok((_, message)) = notices.try_recv() {
        received.push(message);
    }
    assert_eq!(received.len(), 5, "{received:?}");
    assert!(
        received[3].starts_with("als iteration 4/4: loss "),
        "{received:?}"
    );
    // the last NOTICE times every phase of the statement, as tastedb_training_phases keeps them
    let phases = [
        "read source",
        "aggregate",
        "split",
        "fit",
        "evaluate",
        "refit",
        "encode",
        "write",
    ];
    let last = &received[4];
    assert!(last.starts_with("recs version 1 trained in "), "{last}");
    let mut rest = last.as_str();
    for phase in phases {
        let at = rest
            .find(&format!(" {phase} "))
            .unwrap_or_else(|| panic!("{phase}: {last}"));
        rest = &rest[at + phase.len()..];
    }
    let kept = client
        .query(
            "SELECT phase FROM tastedb_training_phases WHERE model = 'recs' AND seconds >= 0 \
             ORDER BY position",
            &[],
        )
        .await
        .unwrap();
    let kept: Vec<String> = kept.iter().map(|r| r.get(0)).collect();
    assert_eq!(kept, phases);
    // the graphs are built after the statement; tastedb_model_versions says when they are ready
    let started = std::time::Instant::now();
    loop {
        let graphs: Option<String> = client
            .query_one(
                "SELECT graphs FROM tastedb_model_versions WHERE model = 'recs' AND version = 1",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        match graphs.as_deref() {
            Some("ready") => break,
            Some("building") => {}
            other => panic!("graphs of a version above the threshold: {other:?}"),
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "never ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let recommended = client
        .query("SELECT item_id, rank FROM recommend('recs', 5, 2)", &[])
        .await
        .unwrap();
    let ranks: Vec<i64> = recommended.iter().map(|r| r.get("rank")).collect();
    assert_eq!(ranks, [1, 2]);
    // the serving query of a driver: prepared once, parameters bound at every execution
    let serving = client
        .prepare("SELECT item_id, rank FROM recommend('recs', $1, $2)")
        .await
        .unwrap();
    assert_eq!(
        serving.params(),
        [
            tokio_postgres::types::Type::INT8,
            tokio_postgres::types::Type::INT8
        ]
    );
    // a cast gives its parameter the type, as PostgreSQL's `$1::text` does
    let cast = client
        .prepare("SELECT item_id FROM recommend('recs', $1::text, 2)")
        .await
        .unwrap();
    assert_eq!(cast.params(), [tokio_postgres::types::Type::TEXT]);
    assert_eq!(client.query(&cast, &[&"5"]).await.unwrap().len(), 2);
    let first: Vec<i64> = client
        .query(&serving, &[&5i64, &2i64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("item_id"))
        .collect();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], 1, "user 5 has not seen item 1 of their group");
    let three = client.query(&serving, &[&12i64, &3i64]).await.unwrap();
    assert_eq!(three.len(), 3);
    assert_eq!(three[0].get::<_, i64>("item_id"), 8);
    let error = client.query(&serving, &[&5i64, &0i64]).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE),
        "{error:?}"
    );
}

/// The prediction cache against no cache: two engines take the same seeded sequence of
/// writes, retrains, version switches and `recommend` calls, one serving from its cache and
/// one computing every answer; every answer must be the same.
#[tokio::test]
async fn cached_answers_equal_uncached_ones_through_writes_and_versions() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let cached = Engine::open(dirs[0].path()).unwrap();
    let uncached = Engine::open(dirs[1].path()).unwrap();
    uncached
        .sql("SET tastedb.cache_ttl_seconds = 0")
        .await
        .unwrap();
    let train = "TRAIN MODEL recs USING als FROM events \
                 WITH (factors = 4, iterations = 5, seed = 3, threads = 1, holdout = 0)";
    for engine in [&cached, &uncached] {
        engine.sql(EVENTS).await.unwrap();
        engine.sql(train).await.unwrap();
    }
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    };
    let mut versions = 1;
    for step in 0..300 {
        let statement = match next(20) {
            0..=3 => format!(
                "INSERT INTO events VALUES ({}, {}, 1.0)",
                1 + next(25),
                1 + next(12)
            ),
            4 if versions < 4 => {
                versions += 1;
                train.to_string()
            }
            5 => format!("ALTER MODEL recs SET ACTIVE VERSION {}", 1 + next(versions)),
            _ => format!(
                "SELECT item_id, score FROM recommend('recs', {}, {})",
                1 + next(25),
                1 + next(6)
            ),
        };
        let answers = [
            cached.sql(&statement).await.unwrap(),
            uncached.sql(&statement).await.unwrap(),
        ];
        if statement.starts_with("SELECT") {
            assert_eq!(
                ranking(&answers[0]),
                ranking(&answers[1]),
                "step {step}: {statement}"
            );
        }
    }
    let hits = cached
        .sql("SELECT hits FROM tastedb_cache_stats")
        .await
        .unwrap();
    let hits = hits[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0);
    assert!(hits > 0, "the cached engine answered from its cache");
}

/// Users 1-20 like kitchen items k1-k5, users 21-40 films f1-f5, each missing one item of
/// their group; `x` (written after training) has one film and one kitchen item.
const TWO_TASTES: &str = "CREATE TABLE events (user_id TEXT, item_id TEXT, weight DOUBLE);
    INSERT INTO events SELECT 'u' || u, CASE WHEN u <= 20 THEN 'k' ELSE 'f' END || i, 1.0
    FROM generate_series(1, 40) AS users(u) CROSS JOIN generate_series(1, 5) AS items(i)
    WHERE i <> u % 5 + 1";

fn reasons(batches: &[RecordBatch]) -> Vec<(String, f64, f64)> {
    let mut rows = Vec::new();
    for b in batches {
        let ids = b.column(0).as_string::<i32>();
        let shares = b
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let score = b
            .column(4)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        for i in 0..b.num_rows() {
            rows.push((ids.value(i).to_string(), shares.value(i), score.value(i)));
        }
    }
    rows
}

#[tokio::test]
async fn explanations_name_the_items_behind_a_score_and_add_up_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.sql(TWO_TASTES).await.unwrap();
    engine
        .sql(
            "TRAIN MODEL als USING als FROM events WITH (factors = 8, iterations = 15, \
             regularization = 10, alpha = 5, seed = 3, holdout = 0);
             TRAIN MODEL knn USING item_knn FROM events WITH (holdout = 0);
             TRAIN MODEL pop USING popularity FROM events WITH (holdout = 0);
             INSERT INTO events VALUES ('x', 'f1', 1.0), ('x', 'k1', 1.0)",
        )
        .await
        .unwrap();
    // a kitchen item is recommended to x because of x's kitchen item more than its film
    let explained = reasons(
        &engine
            .sql("SELECT * FROM explain_recommendation('als', 'x', 'k3')")
            .await
            .unwrap(),
    );
    let order: Vec<&str> = explained.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(order, ["k1", "f1"], "{explained:?}");
    assert!(explained[0].1 > explained[1].1, "{explained:?}");
    // the contributions add up to the score recommend gives (x is folded in exactly)
    let sum: f64 = explained.iter().map(|r| r.1).sum();
    let served = engine
        .sql("SELECT score FROM recommend('als', 'x', 10) WHERE item_id = 'k3'")
        .await
        .unwrap();
    let served = served[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    assert!(
        (sum - served.value(0)).abs() < 1e-4,
        "{sum} vs {}",
        served.value(0)
    );
    assert!((explained[0].2 - sum).abs() < 1e-9);
    // a trained user: the contributions add up to the trained vector's score within the
    // conjugate gradient's tolerance
    let trained = reasons(
        &engine
            .sql("SELECT * FROM explain_recommendation('als', 'u2', 'k3', 2)")
            .await
            .unwrap(),
    );
    assert_eq!(trained.len(), 2);
    let predicted = engine
        .sql("SELECT predict('als', 'u2', 'k3')")
        .await
        .unwrap();
    let predicted = predicted[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let gap = (trained[0].2 - predicted.value(0)).abs();
    assert!(
        gap < 0.05 * predicted.value(0).abs().max(0.1),
        "{trained:?} vs {}",
        predicted.value(0)
    );
    // item k-NN: the neighbour weights, film weights none
    let knn = reasons(
        &engine
            .sql("SELECT * FROM explain_recommendation('knn', 'x', 'k3')")
            .await
            .unwrap(),
    );
    assert!(knn[0].0.starts_with('k') && knn[0].1 > 0.0, "{knn:?}");
    assert!(knn.iter().any(|r| r.0 == "f1" && r.1 == 0.0), "{knn:?}");
    // popularity: the item's own count
    let pop = reasons(
        &engine
            .sql("SELECT * FROM explain_recommendation('pop', 'x', 'k3')")
            .await
            .unwrap(),
    );
    assert_eq!(pop.len(), 1);
    assert_eq!(pop[0].0, "k3");
    assert!(pop[0].1 > 0.0);
    for (sql, code) in [
        (
            "SELECT * FROM explain_recommendation('als', 'x', 'nothing')",
            "22023",
        ),
        (
            "SELECT * FROM explain_recommendation('none', 'x', 'k3')",
            "42704",
        ),
        (
            "SELECT * FROM explain_recommendation('als', 'x', 'k3', 0)",
            "22023",
        ),
        ("SELECT * FROM explain_recommendation('als', 'x')", "22023"),
    ] {
        let code_seen = engine.sql(sql).await.unwrap_err().sqlstate().to_string();
        assert_eq!(code_seen, code, "{sql}");
    }
    // recommend(…, explain => true): each row names the user's item that contributed most,
    // explain_recommendation's first reason; x's kitchen items because of k1, films of f1
    let listed = |sql: &str| {
        let engine = &engine;
        let sql = sql.to_string();
        async move {
            let mut rows: Vec<(String, Option<String>)> = Vec::new();
            for b in engine.sql(&sql).await.unwrap() {
                let (ids, because) = (b.column(0).as_string::<i32>(), b.column(1));
                let nulls = because.logical_nulls();
                let because = because.as_string::<i32>();
                for i in 0..b.num_rows() {
                    let null = nulls.as_ref().is_some_and(|n| n.is_null(i));
                    let reason = (!null).then(|| because.value(i).to_string());
                    rows.push((ids.value(i).to_string(), reason));
                }
            }
            rows
        }
    };
    let explained =
        listed("SELECT item_id, because FROM recommend('als', 'x', 10, explain => true)").await;
    assert_eq!(explained.len(), 8, "{explained:?}");
    for (item, because) in &explained {
        let sql = format!("SELECT * FROM explain_recommendation('als', 'x', '{item}', 1)");
        let first = reasons(&engine.sql(&sql).await.unwrap());
        let expected = (first[0].1 > 0.0).then(|| first[0].0.clone());
        assert_eq!(because, &expected, "{item}");
        let group = &item[..1];
        assert_eq!(
            because.as_deref(),
            Some(format!("{group}1").as_str()),
            "{item}"
        );
    }
    // the list is recommend's own, in its order
    let plain = listed("SELECT item_id, item_id AS again FROM recommend('als', 'x', 10)").await;
    let order =
        |rows: &[(String, Option<String>)]| rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    assert_eq!(order(&explained), order(&plain));
    // item k-NN names the neighbour; no item of a user without events, nor of popularity
    let knn = listed("SELECT item_id, because FROM recommend('knn', 'x', 10, explain => true) WHERE item_id = 'k3'").await;
    assert_eq!(knn, [("k3".to_string(), Some("k1".to_string()))]);
    for sql in [
        "SELECT item_id, because FROM recommend('als', 'nobody', 3, explain => true)",
        "SELECT item_id, because FROM recommend('pop', 'x', 3, explain => true)",
    ] {
        let rows = listed(sql).await;
        assert!(
            rows.len() == 3 && rows.iter().all(|r| r.1.is_none()),
            "{sql}: {rows:?}"
        );
    }
    engine
        .sql(
            "TRAIN MODEL bpr USING bpr FROM events WITH (factors = 4, iterations = 2, holdout = 0)",
        )
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM similar_items('als', 'k1', 3, explain => true)",
        "SELECT * FROM recommend('bpr', 'x', 3, explain => true)",
    ] {
        let code_seen = engine.sql(sql).await.unwrap_err().sqlstate().to_string();
        assert_eq!(code_seen, "0A000", "{sql}");
    }
    let code_seen = (engine
        .sql("SELECT * FROM recommend('als', 'x', 3, explain => 'yes')")
        .await)
        .unwrap_err()
        .sqlstate()
        .to_string();
    assert_eq!(code_seen, "22023");
}
