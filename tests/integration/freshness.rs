//! Freshness over the wire: `recommend` sees every acknowledged write — an item the user just
//! interacted with is gone from their next answer, a user the model never saw gets a
//! personalised list after their first events, an item it never saw is recommended and has
//! neighbours once users interact with it — also after a restart and with writers and
//! readers at once; a source that is not live serves its snapshot.

use crate::common::{PASSWORD, connect, start, start_in};
use std::net::SocketAddr;
use tokio_postgres::Client;

/// Group A (users a1…a12) likes items x1…x5, group B (b1…b6) items y1…y5; user n misses item
/// n % 5 + 1 of their group. Group A is larger, so x items are the popular ones.
pub const EVENTS: &str = "CREATE TABLE ev (user_id TEXT, item_id TEXT, kind TEXT);
    INSERT INTO ev SELECT 'a' || u, 'x' || i, 'buy'
    FROM generate_series(1, 12) AS users(u) CROSS JOIN generate_series(1, 5) AS items(i)
    WHERE i <> u % 5 + 1;
    INSERT INTO ev SELECT 'b' || u, 'y' || i, 'buy'
    FROM generate_series(1, 6) AS users(u) CROSS JOIN generate_series(1, 5) AS items(i)
    WHERE i <> u % 5 + 1";

/// Trains model `m` on [`EVENTS`], deterministically.
pub const TRAIN: &str = "TRAIN MODEL m USING als FROM ev WITH (factors = 2, iterations = 20, \
    regularization = 0.1, alpha = 10, seed = 7, holdout = 0)";

/// (item, cold_start, folded_in) of `recommend(model, user, k)`, best first.
async fn recommend(client: &Client, model: &str, user: &str, k: i64) -> Vec<(String, bool, bool)> {
    client
        .query(
            &format!(
                "SELECT item_id, cold_start, folded_in FROM recommend('{model}', $1, $2) ORDER BY rank"
            ),
            &[&user, &k],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// The items of `similar_items('m', item, k)`, best first.
async fn similar(client: &Client, item: &str, k: i64) -> Vec<String> {
    client
        .query(
            "SELECT item_id FROM similar_items('m', $1, $2) ORDER BY rank",
            &[&item, &k],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn items(ranked: &[(String, bool, bool)]) -> Vec<&str> {
    ranked.iter().map(|(item, _, _)| item.as_str()).collect()
}

async fn insert(client: &Client, user: &str, item: &str, kind: &str) {
    client
        .execute("INSERT INTO ev VALUES ($1, $2, $3)", &[&user, &item, &kind])
        .await
        .unwrap();
}

/// Checks the three freshness promises on a trained model `m`; `first` tells whether the new
/// events are to be written now (else they were written before a restart).
async fn check_fresh_answers(client: &Client, first: bool) {
    // a1 misses x2: it is their first recommendation until they interact with it
    if first {
        let before = recommend(client, "m", "a1", 3).await;
        assert_eq!(before[0], ("x2".to_string(), false, false), "{before:?}");
        insert(client, "a1", "x2", "buy").await;
    }
    let after = recommend(client, "m", "a1", 3).await;
    assert!(!items(&after).contains(&"x2"), "{after:?}");
    assert!(
        after.iter().all(|(_, cold, folded)| !cold && *folded),
        "{after:?}"
    );
    // a user the model never saw: popularity first, then their own taste
    if first {
        let popular = recommend(client, "m", "newcomer", 3).await;
        assert!(
            popular.iter().all(|(_, cold, folded)| *cold && !folded),
            "{popular:?}"
        );
        assert!(
            items(&popular).iter().all(|i| i.starts_with('x')),
            "{popular:?}"
        );
        insert(client, "newcomer", "y1", "buy").await;
        insert(client, "newcomer", "y2", "buy").await;
    }
    let personal = recommend(client, "m", "newcomer", 3).await;
    assert!(
        personal.iter().all(|(_, cold, folded)| !cold && *folded),
        "{personal:?}"
    );
    assert_eq!(
        {
            let mut top = items(&personal);
            top.sort();
            top
        },
        ["y3", "y4", "y5"],
        "{personal:?}"
    );
    // an item the model never saw, bought by three of group B: b4 (who misses y5) is
    // recommended it, and it has group B's items as its neighbours
    if first {
        let before = recommend(client, "m", "b4", 2).await;
        assert!(!items(&before).contains(&"y9"), "{before:?}");
        for user in ["b1", "b2", "b3"] {
            insert(client, user, "y9", "buy").await;
        }
    }
    // exactly, then through the HNSW graphs (the new items' own beside the version's)
    for threshold in [10_000, 0] {
        client
            .batch_execute(&format!("SET tastedb.ann_threshold = {threshold}"))
            .await
            .unwrap();
        let mut with_new = recommend(client, "m", "b4", 2).await;
        with_new.sort();
        assert_eq!(items(&with_new), ["y5", "y9"], "{with_new:?}");
        let of_new = similar(client, "y9", 3).await;
        assert!(of_new.iter().all(|i| i.starts_with('y')), "{of_new:?}");
        let from_known = similar(client, "y1", 5).await;
        assert!(from_known.contains(&"y9".to_string()), "{from_known:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_see_every_acknowledged_write_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = start_in(dir.path()).await;
        let client = connect(server.addr).await;
        client.batch_execute(EVENTS).await.unwrap();
        client.batch_execute(TRAIN).await.unwrap();
        check_fresh_answers(&client, true).await;
    }
    let server = start_in(dir.path()).await;
    let client = connect(server.addr).await;
    check_fresh_answers(&client, false).await;
}

/// A server with the events of [`EVENTS`] and `sql` run on it, and a client of it.
async fn server_with(sql: &str) -> (crate::common::Running, Client) {
    let server = start(16).await;
    let client = connect(server.addr).await;
    client.batch_execute(EVENTS).await.unwrap();
    client.batch_execute(sql).await.unwrap();
    (server, client)
}

/// A source query that filters and projects one table is live through the same filter: an
/// event it leaves out changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_source_query_is_live_through_its_filter() {
    let (_server, client) = server_with(
        "TRAIN MODEL bought USING als FROM (SELECT user_id AS who, item_id FROM ev \
             WHERE kind = 'buy') WITH (user_column = 'who', factors = 2, iterations = 20, \
             regularization = 0.1, alpha = 10, seed = 7, holdout = 0)",
    )
    .await;
    let before = recommend(&client, "bought", "a1", 3).await;
    insert(&client, "a1", &before[0].0, "view").await;
    assert_eq!(
        recommend(&client, "bought", "a1", 3).await,
        before,
        "a view is not a buy"
    );
    insert(&client, "a1", &before[0].0, "buy").await;
    let after = recommend(&client, "bought", "a1", 3).await;
    assert!(!items(&after).contains(&before[0].0.as_str()), "{after:?}");
}

/// A source that is not live (here a join) serves the snapshot it was trained on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_source_serves_its_snapshot() {
    let (_server, client) = server_with(
        "CREATE TABLE shop (item_id TEXT, open BOOLEAN);
             INSERT INTO shop SELECT 'x' || i, true FROM generate_series(1, 5) AS s(i);
             INSERT INTO shop SELECT 'y' || i, true FROM generate_series(1, 5) AS s(i);
             TRAIN MODEL joined USING als FROM (SELECT ev.user_id, ev.item_id FROM ev \
             JOIN shop ON ev.item_id = shop.item_id WHERE shop.open) WITH (factors = 2, \
             iterations = 20, regularization = 0.1, alpha = 10, seed = 7, holdout = 0)",
    )
    .await;
    let before = recommend(&client, "joined", "a1", 3).await;
    insert(&client, "a1", &before[0].0, "buy").await;
    assert_eq!(recommend(&client, "joined", "a1", 3).await, before);
}

/// Writers and readers at once: once a writer's INSERT is acknowledged, no answer for that
/// user (cached or not) contains the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_see_an_item_they_already_interacted_with() {
    let (server, _client) = server_with(TRAIN).await;
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let addr: SocketAddr = server.addr;
        tasks.push(tokio::spawn(async move {
            let client = crate::common::connect_as(addr, "tastedb", PASSWORD)
                .await
                .unwrap();
            let user = format!("a{}", writer + 1);
            // a reader of the same user on another connection, keeping the cache warm
            let reader = crate::common::connect_as(addr, "tastedb", PASSWORD)
                .await
                .unwrap();
            for _ in 0..6 {
                let next = recommend(&client, "m", &user, 1).await;
                let Some((item, _, _)) = next.first() else {
                    break;
                };
                insert(&client, &user, item, "buy").await;
                for answer in [
                    recommend(&reader, "m", &user, 10).await,
                    recommend(&client, "m", &user, 10).await,
                ] {
                    assert!(
                        !items(&answer).contains(&item.as_str()),
                        "{user}: {item} in {answer:?}"
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_users_new_events_forgets_them_at_once() {
    let (_server, client) = server_with(TRAIN).await;
    // answered (and cached) before and after the events
    assert_eq!(recommend(&client, "m", "a1", 3).await[0].0, "x2");
    insert(&client, "a1", "x2", "buy").await;
    insert(&client, "newcomer", "y1", "buy").await;
    assert!(!items(&recommend(&client, "m", "a1", 3).await).contains(&"x2"));
    let personal = recommend(&client, "m", "newcomer", 3).await;
    assert!(personal.iter().all(|(_, cold, _)| !cold), "{personal:?}");
    client
        .batch_execute(
            "DELETE FROM ev WHERE user_id = 'newcomer' OR (user_id = 'a1' AND item_id = 'x2')",
        )
        .await
        .unwrap();
    let again = recommend(&client, "m", "a1", 3).await;
    assert_eq!(again[0].0, "x2", "{again:?}");
    let forgotten = recommend(&client, "m", "newcomer", 3).await;
    assert!(
        forgotten.iter().all(|(_, cold, folded)| *cold && !folded),
        "{forgotten:?}"
    );
}
