//! The start-up and introspection queries of BI tools (`tests/clients/startup/*.sql`)
//! replayed over the wire: every one must run, and the catalog queries must show the
//! user's tables and columns.

use crate::common::{connect, rows, start};
use std::path::Path;

type Rows = Vec<Vec<Option<String>>>;

/// The queries of `tool`, in the order the tool sends them.
fn queries(tool: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/startup")
        .join(format!("{tool}.sql"));
    let text = std::fs::read_to_string(&path).unwrap();
    let body: String = text
        .lines()
        .skip_while(|line| line.starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    body.split("\n;\n")
        .map(str::trim)
        .filter(|query| !query.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs every query of `tool` on a server holding the table `games`; returns their rows.
async fn replay(tool: &str) -> Vec<Rows> {
    let server = start(4).await;
    let client = connect(server.addr).await;
    client
        .batch_execute("CREATE TABLE games (id BIGINT PRIMARY KEY, title TEXT NOT NULL)")
        .await
        .unwrap();
    let mut results = Vec::new();
    for query in queries(tool) {
        let messages = client
            .simple_query(&query)
            .await
            .unwrap_or_else(|e| panic!("{tool} query failed: {e:?}\n{query}"));
        results.push(rows(messages));
    }
    results
}

fn mentions(rows: &Rows, text: &str) -> bool {
    rows.iter().flatten().flatten().any(|value| value == text)
}

#[tokio::test]
async fn dbeaver_connects_and_reads_the_catalog() {
    let results = replay("dbeaver").await;
    assert_eq!(results.len(), 19);
    assert!(results.iter().any(|rows| mentions(rows, "public")));
    assert!(results.iter().any(|rows| mentions(rows, "on")));
}

#[tokio::test]
async fn grafana_lists_tables_and_their_columns() {
    let results = replay("grafana").await;
    // Postgres shows "games" (public is on the search path); TasteDB qualifies it
    assert_eq!(results[0], [[Some("public.games".to_string())]]);
    let columns: Vec<_> = results[1].iter().map(|row| row[0].clone()).collect();
    assert_eq!(columns, [Some("id".into()), Some("title".into())]);
}

#[tokio::test]
async fn metabase_connects_and_syncs_tables() {
    let results = replay("metabase").await;
    assert_eq!(results.len(), 10);
    assert!(results.iter().any(|rows| mentions(rows, "games")));
    assert!(results.iter().any(|rows| mentions(rows, "repeatable read")));
}
