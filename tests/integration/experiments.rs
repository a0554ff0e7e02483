//! Aliases and experiments through the embedding API: `recs@alias` serves the alias's
//! version; an experiment splits users between arms by a hash of their id, serves each the
//! arm's version and logs every answer in `tastedb_impressions` with the version that
//! answered and each item's probability of being shown; `experiment_results` counts the
//! successes that followed on constructed data with a known answer; STOP and PROMOTE end it.

use crate::common::query;
use datafusion::arrow::array::RecordBatch;
use std::collections::{BTreeMap, HashMap};
use tastedb::Engine;

const EVENTS: &str = "CREATE TABLE events (user_id TEXT, item_id TEXT, event_type TEXT, \
    weight DOUBLE, ts TIMESTAMP);
    INSERT INTO events SELECT 'u' || u, 'i' || ((u * 7 + j * 3) % 30), 'view', 1.0,
        TIMESTAMP '2026-01-01 00:00:00'
    FROM generate_series(1, 40) AS users(u) CROSS JOIN generate_series(1, 6) AS views(j)";

const TRAIN_TWO_VERSIONS: &str = "
    TRAIN MODEL recs USING als FROM events WITH (factors = 4, iterations = 5, seed = 1, holdout = 0);
    TRAIN MODEL recs USING als FROM events WITH (factors = 8, iterations = 5, seed = 2, holdout = 0);
    ALTER MODEL recs SET ALIAS champion = 1;
    ALTER MODEL recs SET ALIAS challenger = 2";

async fn sqlstate(engine: &Engine, sql: &str) -> String {
    match engine.sql(sql).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => e.sqlstate().to_string(),
    }
}

async fn items(engine: &Engine, model: &str, user: &str) -> Vec<String> {
    let sql = format!("SELECT item_id FROM recommend('{model}', '{user}', 3)");
    query(engine, &sql)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

async fn trained(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(dir).unwrap();
    engine.sql(EVENTS).await.unwrap();
    engine.sql(TRAIN_TWO_VERSIONS).await.unwrap();
    engine
}

#[tokio::test]
async fn aliases_serve_their_versions_and_are_listed_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let engine = trained(dir.path()).await;
    // version 2 is active: `recs` and `recs@challenger` agree; `recs@champion` is version 1
    let users: Vec<String> = (1..=10).map(|u| format!("u{u}")).collect();
    let mut differ = 0;
    for user in &users {
        let active = items(&engine, "recs", user).await;
        assert_eq!(items(&engine, "recs@challenger", user).await, active);
        assert_eq!(items(&engine, "recs@active", user).await, active);
        if items(&engine, "recs@champion", user).await != active {
            differ += 1;
        }
    }
    assert!(differ > 0, "the two versions rank alike for every user");
    engine
        .sql("ALTER MODEL recs SET ACTIVE VERSION 1")
        .await
        .unwrap();
    for user in &users {
        let active = items(&engine, "recs", user).await;
        assert_eq!(items(&engine, "recs@champion", user).await, active);
    }
    let listed = "SELECT version, active, aliases FROM tastedb_model_versions \
                  WHERE model = 'recs' ORDER BY version";
    let expected = [["1", "true", "[champion]"], ["2", "false", "[challenger]"]];
    assert_eq!(
        query(&engine, listed).await,
        expected.map(|r| r.map(String::from))
    );
    // moving an alias moves what it serves, at once
    engine
        .sql("ALTER MODEL recs SET ALIAS challenger = 1")
        .await
        .unwrap();
    for user in &users {
        let active = items(&engine, "recs", user).await;
        assert_eq!(items(&engine, "recs@challenger", user).await, active);
    }
    let errors = [
        ("SELECT * FROM recommend('recs@nobody', 'u1', 3)", "42704"),
        ("ALTER MODEL recs SET ALIAS active = 1", "42939"),
        ("ALTER MODEL recs SET ALIAS other = 9", "42704"),
        ("ALTER MODEL recs DROP ALIAS nobody", "42704"),
        ("ALTER MODEL nothing SET ALIAS a = 1", "42704"),
    ];
    for (sql, code) in errors {
        assert_eq!(sqlstate(&engine, sql).await, code, "{sql}");
    }
    engine
        .sql("ALTER MODEL recs DROP ALIAS IF EXISTS nobody")
        .await
        .unwrap();
    engine
        .sql("ALTER MODEL recs DROP ALIAS champion")
        .await
        .unwrap();
    drop(engine);
    // aliases are stored with the model
    let engine = Engine::open(dir.path()).unwrap();
    let listed = query(
        &engine,
        "SELECT version, aliases FROM tastedb_model_versions",
    )
    .await;
    assert_eq!(
        listed,
        [["1", "[challenger]"], ["2", "[]"]].map(|r| r.map(String::from))
    );
    assert_eq!(
        sqlstate(&engine, "SELECT * FROM recommend('recs@champion', 'u1', 3)").await,
        "42704"
    );
}

#[tokio::test]
async fn an_experiment_serves_each_user_their_arm_and_logs_what_it_served() {
    let dir = tempfile::tempdir().unwrap();
    let engine = trained(dir.path()).await;
    engine
        .sql("CREATE EXPERIMENT homepage ON MODEL recs (champion 50, challenger 50)")
        .await
        .unwrap();
    let users: Vec<String> = (1..=40).map(|u| format!("u{u}")).collect();
    let mut arms = HashMap::new();
    let mut lists = HashMap::new();
    for user in &users {
        let sql = format!("SELECT experiment_arm('homepage', '{user}')");
        let arm = query(&engine, &sql).await[0][0].clone();
        let served = items(&engine, "homepage", user).await;
        assert_eq!(
            served,
            items(&engine, &format!("recs@{arm}"), user).await,
            "{user}"
        );
        // the same user, the same arm
        assert_eq!(items(&engine, "homepage", user).await, served);
        arms.insert(user.clone(), arm);
        lists.insert(user.clone(), served);
    }
    let champions = arms.values().filter(|a| *a == "champion").count();
    assert!(
        (10..=30).contains(&champions),
        "{champions} of 40 users are champions"
    );
    // every answer was logged: two requests per user, k rows each, all of one version and arm
    engine.impressions().flush().await.unwrap();
    let logged = query(
        &engine,
        "SELECT request_id, user_id, arm, version, item_id, rank, propensity, experiment, model \
         FROM tastedb_impressions ORDER BY request_id, rank",
    )
    .await;
    let mut requests: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for row in logged {
        requests.entry(row[0].clone()).or_default().push(row);
    }
    assert_eq!(requests.len(), 2 * users.len());
    for rows in requests.values() {
        let user = &rows[0][1];
        let arm = &arms[user];
        let version = if arm == "champion" { "1" } else { "2" };
        let other = if arm == "champion" {
            "challenger"
        } else {
            "champion"
        };
        let other_list = items(&engine, &format!("recs@{other}"), user).await;
        let shown: Vec<String> = rows.iter().map(|r| r[4].clone()).collect();
        assert_eq!(&shown, &lists[user]);
        for (rank, row) in rows.iter().enumerate() {
            assert_eq!(&row[1], user);
            assert_eq!(&row[2], arm);
            assert_eq!(row[3], version);
            assert_eq!(row[5], (rank + 1).to_string());
            assert_eq!((row[7].as_str(), row[8].as_str()), ("homepage", "recs"));
            // the probability of being shown: both arms' lists hold it, or only this one's
            let both = other_list.contains(&row[4]);
            let expected: f64 = if both { 1.0 } else { 0.5 };
            let propensity: f64 = row[6].parse().unwrap();
            assert!((propensity - expected).abs() < 1e-9, "{row:?}");
        }
    }
    // the version that answered is logged: move the alias, and the next answers say so
    engine
        .sql("ALTER MODEL recs SET ALIAS challenger = 1")
        .await
        .unwrap();
    let challenger = arms.iter().find(|(_, a)| *a == "challenger").unwrap().0;
    let served = items(&engine, "homepage", challenger).await;
    assert_eq!(served, items(&engine, "recs@champion", challenger).await);
    engine.impressions().flush().await.unwrap();
    let sql = format!(
        "SELECT DISTINCT version FROM tastedb_impressions WHERE user_id = '{challenger}' \
         AND shown_at = (SELECT max(shown_at) FROM tastedb_impressions \
         WHERE user_id = '{challenger}')"
    );
    assert_eq!(query(&engine, &sql).await, [["1"]]);
    // and the propensities follow it: both arms now serve version 1, so whatever a champion
    // is shown (their list was served, and kept, before the move) it was certain to be shown
    let uncertain = "SELECT count(*) FROM tastedb_impressions \
                     WHERE arm = 'champion' AND propensity < 1";
    assert_ne!(query(&engine, uncertain).await, [["0"]]);
    let before = "SELECT max(shown_at) FROM tastedb_impressions";
    let moved = query(&engine, before).await[0][0].clone();
    for (user, _) in arms.iter().filter(|(_, a)| *a == "champion") {
        items(&engine, "homepage", user).await;
    }
    engine.impressions().flush().await.unwrap();
    let after = format!(
        "SELECT min(propensity), count(*) > 0 FROM tastedb_impressions \
         WHERE arm = 'champion' AND shown_at > '{moved}'"
    );
    assert_eq!(query(&engine, &after).await, [["1.0", "true"]]);
    // `log => true` logs a plain call, as the active version with certainty
    engine
        .sql("SELECT * FROM recommend('recs', 'u3', 2, log => true)")
        .await
        .unwrap();
    engine.impressions().flush().await.unwrap();
    let plain = "SELECT arm, version, propensity, experiment IS NULL FROM tastedb_impressions \
                 WHERE experiment IS NULL";
    let expected = ["active", "2", "1.0", "true"].map(String::from);
    assert_eq!(query(&engine, plain).await, [expected.clone(), expected]);
}

#[tokio::test]
async fn ten_thousand_users_split_ninety_ten() {
    let dir = tempfile::tempdir().unwrap();
    let engine = trained(dir.path()).await;
    engine
        .sql("CREATE EXPERIMENT split ON MODEL recs (champion 90, challenger 10) SALT 'x1'")
        .await
        .unwrap();
    let count = "SELECT count(*) FROM generate_series(1, 10000) AS u(u) \
                 WHERE experiment_arm('split', 'user_' || u) = 'challenger'";
    let challengers: f64 = query(&engine, count).await[0][0].parse().unwrap();
    assert!(
        (challengers / 10_000.0 - 0.10).abs() <= 0.02,
        "{challengers}"
    );
    // determined by the salt and the user alone: the same after a restart
    let arms = "SELECT experiment_arm('split', 'user_' || u) FROM generate_series(1, 200) AS u(u)";
    let before = query(&engine, arms).await;
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(query(&engine, arms).await, before);
}

#[tokio::test]
async fn results_count_the_successes_within_the_window_per_arm() {
    let dir = tempfile::tempdir().unwrap();
    let engine = trained(dir.path()).await;
    engine
        .sql(
            "CREATE EXPERIMENT checkout ON MODEL recs (champion 50, challenger 50) \
             WITH (window = '1 hour', success = 'purchase')",
        )
        .await
        .unwrap();
    // constructed impressions: each arm shows two items to four users at 10:00 (in the
    // future: the log keeps 30 days)
    engine
        .sql(
            "INSERT INTO tastedb_impressions (request_id, experiment, arm, model, version, \
             user_id, item_id, rank, score, propensity, shown_at) \
             SELECT arm || '-' || u, 'checkout', arm, 'recs', 1, arm || u, 'i' || r, r, 1.0, 0.5, \
             TIMESTAMP '2027-02-01 10:00:00' \
             FROM (SELECT 'champion' AS arm UNION ALL SELECT 'challenger') AS arms \
             CROSS JOIN generate_series(1, 4) AS users(u) \
             CROSS JOIN generate_series(1, 2) AS ranks(r)",
        )
        .await
        .unwrap();
    // what followed: champion1 bought both items in time; champion2 bought too late, before,
    // and viewed; challenger1..3 bought one item each in time; challenger4 bought an item
    // it was not shown
    engine
        .sql(
            "INSERT INTO events VALUES
             ('champion1', 'i1', 'purchase', 1, TIMESTAMP '2027-02-01 10:10:00'),
             ('champion1', 'i2', 'purchase', 1, TIMESTAMP '2027-02-01 10:59:00'),
             ('champion2', 'i1', 'purchase', 1, TIMESTAMP '2027-02-01 11:30:00'),
             ('champion2', 'i2', 'purchase', 1, TIMESTAMP '2027-02-01 09:30:00'),
             ('champion2', 'i1', 'view', 1, TIMESTAMP '2027-02-01 10:05:00'),
             ('challenger1', 'i1', 'purchase', 1, TIMESTAMP '2027-02-01 10:01:00'),
             ('challenger1', 'i1', 'purchase', 1, TIMESTAMP '2027-02-01 10:02:00'),
             ('challenger2', 'i2', 'purchase', 1, TIMESTAMP '2027-02-01 10:20:00'),
             ('challenger3', 'i1', 'purchase', 1, TIMESTAMP '2027-02-01 10:40:00'),
             ('challenger4', 'i9', 'purchase', 1, TIMESTAMP '2027-02-01 10:40:00')",
        )
        .await
        .unwrap();
    let results = query(
        &engine,
        "SELECT arm, share, impressions, users, successes, ctr, converted_users, conversion \
         FROM experiment_results('checkout')",
    )
    .await;
    let expected = [
        ["champion", "0.5", "8", "4", "2", "0.25", "1", "0.25"],
        ["challenger", "0.5", "8", "4", "3", "0.375", "3", "0.75"],
    ];
    assert_eq!(results, expected.map(|r| r.map(String::from)));
    let compared = query(
        &engine,
        "SELECT difference, ci_low, ci_high, p_value FROM experiment_results('checkout') \
         WHERE arm = 'challenger'",
    )
    .await;
    let [difference, low, high, p]: [f64; 4] =
        std::array::from_fn(|i| compared[0][i].parse().unwrap());
    // 3/4 against 1/4: pooled p = 0.5, z = 0.5 / sqrt(0.25 * 0.5) = sqrt(2), two-sided
    // p = erfc(1) = 0.157299; Wald se = sqrt(2 * 0.1875 / 4) = 0.306186
    assert!((difference - 0.5).abs() < 1e-12);
    assert!((p - 0.157_299_207).abs() < 1e-6, "{p}");
    assert!(
        (low - (0.5 - 1.959_964 * 0.306_186_2)).abs() < 1e-5,
        "{low}"
    );
    assert!(
        (high - (0.5 + 1.959_964 * 0.306_186_2)).abs() < 1e-5,
        "{high}"
    );
    let control = "SELECT difference IS NULL FROM experiment_results('checkout') LIMIT 1";
    assert_eq!(query(&engine, control).await, [["true"]]);
    assert_eq!(
        sqlstate(&engine, "SELECT * FROM experiment_results('nothing')").await,
        "42704"
    );
}

#[tokio::test]
async fn stop_and_promote_end_an_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let engine = trained(dir.path()).await;
    engine
        .sql("ALTER MODEL recs SET ACTIVE VERSION 1")
        .await
        .unwrap();
    engine
        .sql(
            "CREATE EXPERIMENT homepage ON MODEL recs (champion 50, challenger 50);
             CREATE EXPERIMENT IF NOT EXISTS homepage ON MODEL recs (champion 1)",
        )
        .await
        .unwrap();
    let errors = [
        (
            "CREATE EXPERIMENT homepage ON MODEL recs (champion 1)",
            "42710",
        ),
        ("CREATE EXPERIMENT recs ON MODEL recs (champion 1)", "42710"),
        ("CREATE EXPERIMENT e2 ON MODEL recs (nobody 1)", "42704"),
        (
            "CREATE EXPERIMENT e2 ON MODEL recs (champion 1, champion 2)",
            "42710",
        ),
        (
            "CREATE EXPERIMENT e2 ON MODEL nothing (champion 1)",
            "42704",
        ),
        (
            "CREATE EXPERIMENT e2 ON MODEL recs (champion 1) WITH (window = 'soon')",
            "22023",
        ),
        (
            "CREATE EXPERIMENT e2 ON MODEL recs (champion 1) WITH (colour = 'red')",
            "22023",
        ),
        (
            "CREATE EXPERIMENT e2 ON MODEL recs (champion 1) WITH (events = 'nope')",
            "42P01",
        ),
        ("TRAIN MODEL homepage USING popularity FROM events", "42710"),
        ("ALTER MODEL recs DROP ALIAS challenger", "2BP01"),
        ("DROP MODEL recs", "2BP01"),
        ("PROMOTE EXPERIMENT homepage ARM nobody", "42704"),
        ("STOP EXPERIMENT nothing", "42704"),
    ];
    for (sql, code) in errors {
        assert_eq!(sqlstate(&engine, sql).await, code, "{sql}");
    }
    let user = "u7";
    engine.sql("STOP EXPERIMENT homepage").await.unwrap();
    // ended: the name serves the active version, and nothing more is logged
    engine.impressions().flush().await.unwrap();
    let count = "SELECT count(*) FROM tastedb_impressions";
    let before = query(&engine, count).await;
    assert_eq!(
        items(&engine, "homepage", user).await,
        items(&engine, "recs", user).await
    );
    engine.impressions().flush().await.unwrap();
    assert_eq!(query(&engine, count).await, before);
    assert_eq!(sqlstate(&engine, "STOP EXPERIMENT homepage").await, "55000");
    assert_eq!(
        sqlstate(&engine, "PROMOTE EXPERIMENT homepage ARM challenger").await,
        "55000"
    );
    // PROMOTE makes the arm's version the active one
    engine
        .sql("CREATE EXPERIMENT second ON MODEL recs (champion 50, challenger 50)")
        .await
        .unwrap();
    engine
        .sql("PROMOTE EXPERIMENT second ARM challenger")
        .await
        .unwrap();
    let active = "SELECT active_version FROM tastedb_models WHERE name = 'recs'";
    assert_eq!(query(&engine, active).await, [["2"]]);
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    let listed = "SELECT name, state, promoted_arm, arms, window FROM tastedb_experiments \
                  ORDER BY name";
    let expected = [
        [
            "homepage",
            "stopped",
            "NULL",
            "champion 50, challenger 50",
            "1 hour",
        ],
        [
            "second",
            "promoted",
            "challenger",
            "champion 50, challenger 50",
            "1 hour",
        ],
    ];
    assert_eq!(
        query(&engine, listed).await,
        expected.map(|r| r.map(String::from))
    );
    engine
        .sql("DROP EXPERIMENT homepage; DROP EXPERIMENT second; DROP EXPERIMENT IF EXISTS x")
        .await
        .unwrap();
    engine.sql("DROP MODEL recs").await.unwrap();
}

#[tokio::test]
async fn experiments_take_the_privileges_of_their_model() {
    let dir = tempfile::tempdir().unwrap();
    let engine = trained(dir.path()).await;
    engine
        .sql(
            "CREATE ROLE analyst LOGIN; CREATE ROLE app LOGIN; CREATE ROLE stranger LOGIN;
             GRANT SELECT ON MODEL recs TO app;
             GRANT TRAIN ON MODEL recs TO analyst;
             CREATE EXPERIMENT homepage ON MODEL recs (champion 50, challenger 50)",
        )
        .await
        .unwrap();
    let serve = "SELECT * FROM recommend('homepage', 'u1', 3)";
    engine.sql_as("app", serve).await.unwrap();
    engine
        .sql_as("app", "SELECT * FROM recommend('recs@champion', 'u1', 3)")
        .await
        .unwrap();
    engine
        .sql_as("app", "SELECT * FROM experiment_results('homepage')")
        .await
        .unwrap();
    let refused = [
        ("stranger", serve),
        (
            "stranger",
            "SELECT * FROM recommend('recs@champion', 'u1', 3)",
        ),
        ("stranger", "SELECT experiment_arm('homepage', 'u1')"),
        ("app", "STOP EXPERIMENT homepage"),
        ("app", "CREATE EXPERIMENT e2 ON MODEL recs (champion 1)"),
        ("app", "ALTER MODEL recs SET ALIAS x = 1"),
        ("analyst", "DROP EXPERIMENT homepage"),
    ];
    for (role, sql) in refused {
        let code = engine
            .sql_as(role, sql)
            .await
            .unwrap_err()
            .sqlstate()
            .to_string();
        assert_eq!(code, "42501", "{role}: {sql}");
    }
    engine
        .sql_as(
            "analyst",
            "CREATE EXPERIMENT mine ON MODEL recs (challenger 1)",
        )
        .await
        .unwrap();
    engine
        .sql_as("analyst", "STOP EXPERIMENT homepage")
        .await
        .unwrap();
    engine
        .sql_as("analyst", "DROP EXPERIMENT mine")
        .await
        .unwrap();
}

/// The replay estimators on simulated logs whose value is known: a logging policy that
/// shows 3 of the 30 items uniformly at random (propensity 0.1 each), and successes drawn
/// with a known probability per (user, item); the version's value is the sum of those
/// probabilities over its list. Over ten seeds the IPS estimates centre on it.
#[tokio::test]
async fn replay_estimates_a_known_policy_value_without_bias() {
    use datafusion::arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use rand::rngs::StdRng;
    use rand::seq::index::sample;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let engine = trained(dir.path()).await;
    // what the evaluated version (2) shows each user, before any outcome is written
    let mut lists = HashMap::new();
    for u in 1..=40 {
        let user = format!("u{u}");
        lists.insert(user.clone(), items(&engine, "recs@2", &user).await);
    }
    let chance = |user: &str, item: &str| {
        let u: usize = user[1..].parse().unwrap();
        let i: usize = item[1..].parse().unwrap();
        if (u + i).is_multiple_of(4) { 0.6 } else { 0.1 }
    };
    let text = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
    let (seeds, requests) = (10u64, 1_000usize);
    let hour = 3_600_000_000i64;
    let mut estimates = Vec::new();
    let mut truths = Vec::new();
    for seed in 0..seeds {
        let experiment = format!("sim{seed}");
        engine
            .sql(&format!(
                "CREATE EXPERIMENT {experiment} ON MODEL recs (champion 1) \
                 WITH (window = '1 hour', success = 'purchase')"
            ))
            .await
            .unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut shown = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut bought = (Vec::new(), Vec::new(), Vec::new());
        let mut truth = 0.0;
        for r in 0..requests {
            let user = format!("u{}", rng.random_range(1..=40));
            truth += lists[&user].iter().map(|i| chance(&user, i)).sum::<f64>();
            // requests two hours apart: an outcome belongs to its own request only
            let at = 1_800_000_000_000_000 + (seed as i64 * 10_000 + r as i64) * 2 * hour;
            for (rank, item) in sample(&mut rng, 30, 3).into_iter().enumerate() {
                let item = format!("i{item}");
                if rng.random_bool(chance(&user, &item)) {
                    bought.0.push(user.clone());
                    bought.1.push(item.clone());
                    bought.2.push(at + hour / 6);
                }
                shown.0.push(format!("{seed}-{r}"));
                shown.1.push(user.clone());
                shown.2.push(item);
                shown.3.push(rank as i64 + 1);
                shown.4.push(at);
            }
        }
        truths.push(truth / requests as f64);
        let rows = shown.0.len();
        let impressions = RecordBatch::try_from_iter(vec![
            ("request_id", text(shown.0)),
            ("experiment", text(vec![experiment.clone(); rows])),
            ("arm", text(vec!["champion".into(); rows])),
            ("model", text(vec!["recs".into(); rows])),
            (
                "version",
                Arc::new(Int64Array::from(vec![1; rows])) as ArrayRef,
            ),
            ("user_id", text(shown.1)),
            ("item_id", text(shown.2)),
            ("rank", Arc::new(Int64Array::from(shown.3)) as ArrayRef),
            (
                "score",
                Arc::new(Float64Array::from(vec![0.0; rows])) as ArrayRef,
            ),
            (
                "propensity",
                Arc::new(Float64Array::from(vec![0.1; rows])) as ArrayRef,
            ),
            (
                "shown_at",
                Arc::new(TimestampMicrosecondArray::from(shown.4)) as ArrayRef,
            ),
        ])
        .unwrap();
        engine
            .insert_batches("tastedb_impressions", vec![impressions])
            .await
            .unwrap();
        let purchases = bought.0.len();
        let outcomes = RecordBatch::try_from_iter(vec![
            ("user_id", text(bought.0)),
            ("item_id", text(bought.1)),
            ("event_type", text(vec!["purchase".into(); purchases])),
            (
                "weight",
                Arc::new(Float64Array::from(vec![1.0; purchases])) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(bought.2)) as ArrayRef,
            ),
        ])
        .unwrap();
        engine
            .insert_batches("events", vec![outcomes])
            .await
            .unwrap();
        let replayed = query(
            &engine,
            &format!("EVALUATE MODEL recs VERSION 2 ON IMPRESSIONS OF {experiment}"),
        )
        .await;
        let row = &replayed[0];
        assert_eq!(
            (row[0].as_str(), row[1].as_str(), row[2].as_str()),
            ("recs", "2", experiment.as_str())
        );
        assert_eq!(row[3], requests.to_string());
        assert_eq!(row[4], (3 * requests).to_string());
        assert_eq!(row[5], (3 * requests).to_string(), "every list has 3 slots");
        let [ips, snips]: [f64; 2] = [8, 9].map(|i| row[i].parse().unwrap());
        estimates.push((ips, snips));
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let truth = mean(&truths);
    let ips: Vec<f64> = estimates.iter().map(|e| e.0).collect();
    let snips: Vec<f64> = estimates.iter().map(|e| e.1).collect();
    let spread =
        (ips.iter().map(|v| (v - mean(&ips)).powi(2)).sum::<f64>() / (ips.len() - 1) as f64).sqrt();
    let error = spread / (ips.len() as f64).sqrt();
    assert!(
        error < 0.1 * truth,
        "too noisy to tell: {error} against {truth}"
    );
    assert!(
        (mean(&ips) - truth).abs() < 4.0 * error,
        "ips {ips:?} against {truth}"
    );
    assert!(
        (mean(&snips) - truth).abs() < 4.0 * error,
        "snips {snips:?} against {truth}"
    );
    let unknown = sqlstate(&engine, "EVALUATE MODEL recs ON IMPRESSIONS OF nothing").await;
    assert_eq!(unknown, "42704");
}

/// 120 users in 4 groups of 10 items each like 6 items of their group and one other.
const GROUPS: &str = "CREATE TABLE ev (user_id TEXT, item_id TEXT);
    INSERT INTO ev SELECT 'u' || u, 'g' || (u % 4) || '-' || ((u * 3 + j) % 10)
    FROM generate_series(1, 120) AS users(u) CROSS JOIN generate_series(1, 6) AS likes(j);
    INSERT INTO ev SELECT 'u' || u, 'g' || ((u + 1) % 4) || '-' || (u % 10)
    FROM generate_series(1, 120) AS users(u)";

#[tokio::test]
async fn a_search_trains_every_trial_and_activates_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.sql(GROUPS).await.unwrap();
    let common = "iterations = 8, seed = 5, holdout = 0.2";
    let trials = query(
        &engine,
        &format!(
            "TRAIN MODEL tuned USING als FROM ev WITH (factors = [4, 16], \
             regularization = [0.1, 20], {common})"
        ),
    )
    .await;
    assert_eq!(trials.len(), 4);
    let listed = query(
        &engine,
        "SELECT version, params, ndcg_at_k, active, promotion FROM tastedb_model_versions \
         WHERE model = 'tuned' ORDER BY version",
    )
    .await;
    let mut combinations = Vec::new();
    for row in &listed {
        let params: serde_json::Value = serde_json::from_str(&row[1]).unwrap();
        combinations.push((params["factors"].clone(), params["regularization"].clone()));
        assert!(row[4].starts_with("trial "), "{row:?}");
    }
    combinations.sort_by_key(|c| c.0.to_string() + &c.1.to_string());
    let expected = [("16", "0.1"), ("16", "20"), ("4", "0.1"), ("4", "20")]
        .map(|(f, r)| (serde_json::json!(f), serde_json::json!(r)));
    assert_eq!(combinations, expected);
    let ndcg = |row: &Vec<String>| row[2].parse::<f64>().unwrap();
    let best = listed.iter().map(ndcg).fold(f64::MIN, f64::max);
    let active: Vec<&Vec<String>> = listed.iter().filter(|r| r[3] == "true").collect();
    assert_eq!(active.len(), 1);
    assert_eq!(ndcg(active[0]), best);
    // at least as good as the defaults on the same split
    let defaults = query(
        &engine,
        &format!("TRAIN MODEL plain USING als FROM ev WITH ({common})"),
    )
    .await;
    let default_ndcg: f64 = query(
        &engine,
        "SELECT ndcg_at_k FROM tastedb_model_versions WHERE model = 'plain'",
    )
    .await[0][0]
        .parse()
        .unwrap();
    assert_eq!(defaults.len(), 1);
    assert!(
        best >= default_ndcg,
        "best trial {best} against the defaults' {default_ndcg}"
    );
    // random: three of the nine combinations, none twice
    let random = query(
        &engine,
        &format!(
            "TRAIN MODEL sampled USING als FROM ev WITH (factors = [4, 8, 16], \
             regularization = [0.1, 1, 20], trials = 3, search = 'random', \
             metric = 'recall_at_k', {common})"
        ),
    )
    .await;
    assert_eq!(random.len(), 3);
    let params = query(
        &engine,
        "SELECT DISTINCT params FROM tastedb_model_versions WHERE model = 'sampled'",
    )
    .await;
    assert_eq!(params.len(), 3);
    for (sql, code) in [
        ("TRAIN MODEL x USING als FROM ev WITH (trials = 3)", "22023"),
        (
            "TRAIN MODEL x USING als FROM ev WITH (factors = [4, 8], holdout = 0)",
            "22023",
        ),
        (
            "TRAIN MODEL x USING als FROM ev WITH (user_column = ['user_id', 'item_id'])",
            "22023",
        ),
        (
            "TRAIN MODEL x USING als FROM ev WITH (factors = [4, 8], trials = 1)",
            "22023",
        ),
        (
            "TRAIN MODEL x USING als FROM ev WITH (factors = [4, 'many'])",
            "22023",
        ),
        (
            "TRAIN MODEL x USING als FROM ev WITH (factors = [4, 8], metric = 'luck')",
            "22023",
        ),
    ] {
        assert_eq!(sqlstate(&engine, sql).await, code, "{sql}");
    }
    let none = "SELECT count(*) FROM tastedb_models WHERE name = 'x'";
    assert_eq!(query(&engine, none).await, [["0"]]);
}

#[tokio::test]
async fn diversity_reranks_across_categories() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    // 30 items in 3 categories; each user likes 5 items of one category and one of the next
    engine
        .sql(
            "CREATE TABLE items (item_id TEXT, category TEXT);
             INSERT INTO items SELECT 'i' || i, 'c' || (i / 10) FROM generate_series(0, 29) AS t(i);
             CREATE TABLE likes (user_id TEXT, item_id TEXT);
             INSERT INTO likes SELECT 'u' || u, 'i' || ((u % 3) * 10 + (u + j) % 10)
             FROM generate_series(1, 60) AS users(u) CROSS JOIN generate_series(1, 5) AS picks(j);
             INSERT INTO likes SELECT 'u' || u, 'i' || (((u + 1) % 3) * 10 + u % 10)
             FROM generate_series(1, 60) AS users(u);
             TRAIN MODEL m USING als FROM likes WITH (factors = 8, iterations = 10, seed = 1, \
             holdout = 0);
             TRAIN MODEL pop USING popularity FROM likes WITH (holdout = 0)",
        )
        .await
        .unwrap();
    let categories = |sql: String| {
        let engine = &engine;
        async move {
            let wrapped = format!(
                "SELECT i.category FROM ({sql}) AS r JOIN items i ON i.item_id = r.item_id \
                 ORDER BY r.rank"
            );
            let rows = query(engine, &wrapped).await;
            rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>()
        }
    };
    let distinct = |list: &[String]| {
        let mut seen = list.to_vec();
        seen.sort();
        seen.dedup();
        seen.len()
    };
    let mut plain_total = 0;
    let mut diverse_total = 0;
    for user in ["u3", "u4", "u5", "u10"] {
        let plain = categories(format!("SELECT * FROM recommend('m', '{user}', 6)")).await;
        let diverse = categories(format!(
            "SELECT * FROM recommend('m', '{user}', 6, diversity => 0.6, \
             diversity_column => 'category', items => 'items')"
        ))
        .await;
        assert_eq!(diverse.len(), 6);
        // the first item is the most relevant either way
        assert_eq!(plain[0], diverse[0]);
        plain_total += distinct(&plain);
        diverse_total += distinct(&diverse);
        // no diversity is the plain ranking
        let none = categories(format!(
            "SELECT * FROM recommend('m', '{user}', 6, diversity => 0, \
             diversity_column => 'category', items => 'items')"
        ))
        .await;
        assert_eq!(none, plain);
    }
    assert!(
        diverse_total > plain_total,
        "{diverse_total} categories against {plain_total}"
    );
    assert_eq!(
        diverse_total,
        4 * 3,
        "every list spans the three categories"
    );
    // without categories, ALS items are as alike as their vectors
    let by_vectors = query(
        &engine,
        "SELECT item_id FROM recommend('m', 'u3', 6, diversity => 0.9)",
    )
    .await;
    assert_eq!(by_vectors.len(), 6);
    // similar items too
    let similar = categories(
        "SELECT * FROM similar_items('m', 'i1', 6, diversity => 0.6, \
         diversity_column => 'category', items => 'items')"
            .to_string(),
    )
    .await;
    assert!(distinct(&similar) >= 2, "{similar:?}");
    engine
        .sql("CREATE ROLE app LOGIN; GRANT SELECT ON MODEL m TO app")
        .await
        .unwrap();
    let with_items = "SELECT * FROM recommend('m', 'u3', 6, diversity => 0.5, \
                      diversity_column => 'category', items => 'items')";
    let refused = engine.sql_as("app", with_items).await.unwrap_err();
    assert_eq!(
        refused.sqlstate(),
        "42501",
        "the items table is read as the caller"
    );
    engine.sql("GRANT SELECT ON items TO app").await.unwrap();
    engine.sql_as("app", with_items).await.unwrap();
    for (sql, code) in [
        (
            "SELECT * FROM recommend('m', 'u3', 6, diversity => 2)",
            "22023",
        ),
        (
            "SELECT * FROM recommend('m', 'u3', 6, diversity_column => 'category')",
            "22023",
        ),
        (
            "SELECT * FROM recommend('pop', 'u3', 6, diversity => 0.5)",
            "22023",
        ),
        (
            "SELECT * FROM recommend('m', 'u3', 6, diversity => 0.5, diversity_column => 'x', \
             items => 'items')",
            "42703",
        ),
        (
            "SELECT * FROM recommend('m', 'u3', 6, diversity => 0.5, \
             diversity_column => 'category', items => 'nothing')",
            "42P01",
        ),
    ] {
        assert_eq!(sqlstate(&engine, sql).await, code, "{sql}");
    }
}
