//! Retraining on policy, run by the server: by new events and by time, `if_better` keeping
//! the old version when the new one is worse, a failed run retried until it succeeds, and the
//! schedule kept across a restart.

use crate::common::{connect, connect_as, start, start_in};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Two groups of users with five items each (as in `freshness`).
const EVENTS: &str = "CREATE TABLE ev (user_id TEXT, item_id TEXT);
    INSERT INTO ev SELECT 'a' || u, 'x' || i
    FROM generate_series(1, 12) AS users(u) CROSS JOIN generate_series(1, 5) AS items(i)
    WHERE i <> u % 5 + 1;
    INSERT INTO ev SELECT 'b' || u, 'y' || i
    FROM generate_series(1, 6) AS users(u) CROSS JOIN generate_series(1, 5) AS items(i)
    WHERE i <> u % 5 + 1";

const TRAIN: &str = "TRAIN MODEL m USING als FROM ev WITH (factors = 2, iterations = 5, \
    seed = 7, holdout = 0)";

/// (version, active, trigger, promotion) of model m's versions.
async fn versions(client: &Client) -> Vec<(i64, bool, String, String)> {
    client
        .query(
            "SELECT version, active, trigger, promotion FROM tastedb_model_versions \
             WHERE model = 'm' ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

/// Waits (at most a minute) until model m has `count` versions; returns them.
async fn wait_for_versions(client: &Client, count: usize) -> Vec<(i64, bool, String, String)> {
    let started = Instant::now();
    loop {
        let found = versions(client).await;
        if found.len() >= count {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still {found:?} after a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (retrain_policy, retrain_failures, retrain_error) of model m.
async fn policy_state(client: &Client) -> (Option<String>, i64, Option<String>) {
    let row = client
        .query_one(
            "SELECT retrain_policy, retrain_failures, retrain_error FROM tastedb_models \
             WHERE name = 'm'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn insert_events(client: &Client, count: usize) {
    for n in 0..count {
        client
            .execute("INSERT INTO ev VALUES ($1, 'x1')", &[&format!("new{n}")])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_events_trigger_a_run_and_the_schedule_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = start_in(dir.path()).await;
        let client = connect(server.addr).await;
        client.batch_execute(EVENTS).await.unwrap();
        client.batch_execute(TRAIN).await.unwrap();
        client
            .batch_execute("ALTER MODEL m SET (retrain_after_events = 3)")
            .await
            .unwrap();
        insert_events(&client, 2).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(versions(&client).await.len(), 1, "two rows are not three");
    }
    let server = start_in(dir.path()).await;
    let client = connect(server.addr).await;
    assert_eq!(
        policy_state(&client).await,
        (
            Some("retrain_after_events = 3, promote = 'always'".into()),
            0,
            None
        )
    );
    insert_events(&client, 1).await;
    let found = wait_for_versions(&client, 2).await;
    assert_eq!(found[0].2, "TRAIN");
    let (number, active, trigger, promotion) = &found[1];
    assert_eq!((*number, *active), (2, true), "{found:?}");
    assert_eq!(
        trigger,
        "retrain_after_events: 3 rows written since version 1"
    );
    assert_eq!(promotion, "promoted: promote = always");
    // the new version counts from its own watermark: no run without new rows
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(versions(&client).await.len(), 2);
    let count: i64 = client
        .query_one("SELECT count(*) FROM recommend('m', 'new0', 3)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3, "the retrained version serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_retrains_by_time_until_it_is_reset() {
    let server = start(16).await;
    let client = connect(server.addr).await;
    client.batch_execute(EVENTS).await.unwrap();
    client.batch_execute(TRAIN).await.unwrap();
    client
        .batch_execute("ALTER MODEL m SET (retrain_every = '1 second', promote = 'manual')")
        .await
        .unwrap();
    let found = wait_for_versions(&client, 3).await;
    assert!(
        found[1..]
            .iter()
            .all(|(_, active, trigger, promotion)| !active
                && trigger.starts_with("retrain_every: version")
                && trigger.ends_with("is older than 1 second")
                && promotion == "not promoted: promote = manual"),
        "{found:?}"
    );
    client
        .batch_execute("ALTER MODEL m RESET (retrain_every)")
        .await
        .unwrap();
    let after_reset = versions(&client).await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // a run that had started before the RESET may still land
    assert!(versions(&client).await.len() <= after_reset + 1);
    assert_eq!(policy_state(&client).await.0, None);
    for (sql, state) in [
        ("ALTER MODEL m SET (retrain_every = 'soon')", "22023"),
        ("ALTER MODEL m SET (factors = 3)", "22023"),
        ("ALTER MODEL m SET (promote = 'if_better')", "22023"),
        ("ALTER MODEL nope SET (retrain_every = '1 hour')", "42704"),
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(error.code().unwrap().code(), state, "{sql}: {error}");
    }
}

/// `if_better` compares the holdout metric: events that make the data noise give a worse
/// version, which is kept inactive, with the comparison as the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_better_keeps_the_active_version_when_the_new_one_is_worse() {
    let server = start(16).await;
    let client = connect(server.addr).await;
    client.batch_execute(EVENTS).await.unwrap();
    client
        .batch_execute(
            "TRAIN MODEL m USING als FROM ev WITH (factors = 2, iterations = 10, seed = 7, \
             holdout = 0.2, k = 3);
             ALTER MODEL m SET (retrain_after_events = 200, promote = 'if_better', \
             promote_metric = 'ndcg_at_k', tolerance = 0.01)",
        )
        .await
        .unwrap();
    // every user buys ten items nobody else buys: held-out pairs become unpredictable
    client
        .batch_execute(
            "INSERT INTO ev SELECT user_id, 'noise' || user_id || '_' || n FROM \
             (SELECT DISTINCT user_id FROM ev) AS users CROSS JOIN generate_series(1, 12) AS s(n)",
        )
        .await
        .unwrap();
    let found = wait_for_versions(&client, 2).await;
    let (number, active, _, promotion) = &found[1];
    assert_eq!((*number, *active), (2, false), "{found:?}");
    assert!(
        promotion.starts_with("not promoted: ndcg_at_k") && promotion.contains("of version 1"),
        "{promotion}"
    );
    let active: i64 = client
        .query_one(
            "SELECT active_version FROM tastedb_models WHERE name = 'm'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(active, 1);
}

/// A run that fails (its role lost SELECT on the source) is shown, retried with backoff,
/// and succeeds once the privilege is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_retried_until_it_succeeds() {
    let server = start(16).await;
    let admin = connect(server.addr).await;
    admin.batch_execute(EVENTS).await.unwrap();
    admin.batch_execute(TRAIN).await.unwrap();
    admin
        .batch_execute(
            "CREATE USER bob PASSWORD 'bob'; GRANT SELECT ON ev TO bob; \
             GRANT ALL ON MODEL m TO bob",
        )
        .await
        .unwrap();
    let bob = connect_as(server.addr, "bob", "bob").await.unwrap();
    bob.batch_execute("ALTER MODEL m SET (retrain_after_events = 1)")
        .await
        .unwrap();
    admin
        .batch_execute("REVOKE SELECT ON ev FROM bob")
        .await
        .unwrap();
    insert_events(&admin, 1).await;
    let started = Instant::now();
    let (failures, error) = loop {
        let (_, failures, error) = policy_state(&admin).await;
        if failures >= 2 {
            break (failures, error);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no retry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("permission denied"),
        "{failures} {error:?}"
    );
    assert_eq!(versions(&admin).await.len(), 1);
    admin
        .batch_execute("GRANT SELECT ON ev TO bob")
        .await
        .unwrap();
    let found = wait_for_versions(&admin, 2).await;
    assert!(found[1].1, "{found:?}");
    assert_eq!(policy_state(&admin).await.1, 0);
}
