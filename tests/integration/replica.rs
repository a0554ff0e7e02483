//! Checkpoints for read replicas: `CHECKPOINT TO 'dir'` and `tastedb serve --checkpoint-to`
//! add consistent copies of a live data directory to a checkpoint directory (the newest three
//! kept); `tastedb serve --read-only` (and an engine opened read-only) serves one — the rows and
//! the model as they were at the checkpoint — and refuses every write with 25006; with
//! `--follow DIR` it moves to each newer checkpoint, keeping its connections; checkpoints
//! uploaded to an S3 prefix are followed the same way, downloaded first.

use crate::common::{MotoS3, free_port, query, rows, serve_process_with, trust_client};
use crate::freshness::{EVENTS, TRAIN};
use std::time::{Duration, Instant};
use tastedb::{Engine, EngineOptions};

/// The checkpoints in `dir`, oldest first.
fn checkpoints(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".partial"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_serves_its_rows_and_model_read_only_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Engine::open(dir.path().join("primary")).unwrap();
    primary.sql(EVENTS).await.unwrap();
    primary.sql(TRAIN).await.unwrap();
    let store = dir.path().join("checkpoints");
    let made = query(&primary, &format!("CHECKPOINT TO '{}'", store.display())).await;
    let checkpoint = std::path::PathBuf::from(&made[0][0]);
    assert_eq!(checkpoints(&store).len(), 1);
    // what the primary does after the checkpoint is not in it
    primary
        .sql("INSERT INTO ev VALUES ('a1', 'x9', 'buy'); CREATE TABLE later (n BIGINT)")
        .await
        .unwrap();
    let recommend = "SELECT item_id FROM recommend('m', 'a1', 3) ORDER BY rank";

    let replica = Engine::open_with(
        &checkpoint,
        &EngineOptions {
            read_only: true,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    assert!(replica.is_read_only());
    assert_eq!(query(&replica, "SELECT count(*) FROM ev").await, [["72"]]);
    assert_eq!(query(&primary, "SELECT count(*) FROM ev").await, [["73"]]);
    assert_eq!(
        query(&replica, "SELECT name, active_version FROM tastedb_models").await,
        query(&primary, "SELECT name, active_version FROM tastedb_models").await
    );
    assert_eq!(query(&replica, "SHOW MODELS").await.len(), 1);
    // the same model, serving
    assert_eq!(query(&replica, recommend).await.len(), 3);
    for write in [
        "INSERT INTO ev VALUES ('a1', 'x1', 'buy')",
        "UPDATE ev SET kind = 'view'",
        "DELETE FROM ev",
        "CREATE TABLE t (n BIGINT)",
        "DROP TABLE ev",
        "ALTER TABLE ev ADD COLUMN n BIGINT",
        "TRAIN MODEL m2 USING popularity FROM ev",
        "DROP MODEL m",
        "CREATE ROLE bob LOGIN",
        "CREATE VIEW v AS SELECT 1",
        "VACUUM",
    ] {
        let error = replica.sql(write).await.unwrap_err();
        assert_eq!(error.sqlstate(), "25006", "{write}: {error}");
    }
    // worded as PostgreSQL words it with default_transaction_read_only
    let insert = replica
        .sql("INSERT INTO ev VALUES ('a', 'b', 'c')")
        .await
        .unwrap_err();
    assert!(
        insert
            .to_string()
            .starts_with("cannot execute INSERT in a read-only transaction"),
        "{insert}"
    );
    let create = replica.sql("CREATE TABLE t2 (n BIGINT)").await.unwrap_err();
    assert!(
        create
            .to_string()
            .starts_with("cannot execute CREATE TABLE in a read-only transaction"),
        "{create}"
    );
    let missing = replica.sql("SELECT * FROM later").await.unwrap_err();
    assert_eq!(missing.sqlstate(), "42P01", "{missing}");
    assert_eq!(query(&replica, "SELECT count(*) FROM ev").await, [["72"]]);
    drop(replica);

    // the checkpoint directory keeps the newest three
    for n in 0..4 {
        primary
            .sql(&format!("INSERT INTO ev VALUES ('c{n}', 'x1', 'buy')"))
            .await
            .unwrap();
        primary
            .sql(&format!("CHECKPOINT TO '{}'", store.display()))
            .await
            .unwrap();
    }
    let kept = checkpoints(&store);
    assert_eq!(kept.len(), 3, "{kept:?}");
    // only superusers take one
    primary.sql("CREATE ROLE bob LOGIN").await.unwrap();
    let refused = primary
        .sql_as("bob", &format!("CHECKPOINT TO '{}'", store.display()))
        .await
        .unwrap_err();
    assert_eq!(refused.sqlstate(), "42501");
}

/// `tastedb serve --checkpoint-to` adds checkpoints while clients write; `tastedb serve
/// --read-only` on the newest serves it over the wire and answers writes with 25006.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_checkpoints_as_it_goes_and_a_read_only_server_serves_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("primary");
    let store = dir.path().join("checkpoints");
    let store_arg = store.display().to_string();
    let (mut primary, addr) = serve_process_with(
        &data,
        &["--checkpoint-to", &store_arg, "--checkpoint-every", "100ms"],
        &[],
    )
    .await;
    let client = trust_client(addr).await;
    client
        .batch_execute("CREATE TABLE ev (n BIGINT)")
        .await
        .unwrap();
    for n in 0..20 {
        client
            .batch_execute(&format!("INSERT INTO ev VALUES ({n})"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let newest = loop {
        let found = checkpoints(&store);
        let complete = found.last().map(|last| store.join(last));
        if let Some(last) = complete.filter(|_| found.len() >= 2) {
            break last;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{found:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(checkpoints(&store).len() <= 3);
    let _ = primary.kill();
    let _ = primary.wait();

    let (mut replica, addr) = serve_process_with(&newest, &["--read-only"], &[]).await;
    let client = trust_client(addr).await;
    let count = rows(
        client
            .simple_query("SELECT count(*) FROM ev")
            .await
            .unwrap(),
    );
    let count: u64 = count[0][0].as_deref().unwrap().parse().unwrap();
    assert!(count <= 20);
    let error = client
        .batch_execute("INSERT INTO ev VALUES (99)")
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("25006"), "{error:?}");
    // prepared, as PostgreSQL's standbys allow; refused when it runs
    let statement = client.prepare("INSERT INTO ev VALUES ($1)").await.unwrap();
    let error = client.execute(&statement, &[&5i64]).await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("25006"), "{error:?}");
    let again = rows(
        client
            .simple_query("SELECT count(*) FROM ev")
            .await
            .unwrap(),
    );
    assert_eq!(again[0][0].as_deref(), Some(count.to_string().as_str()));
    let _ = replica.kill();
    let _ = replica.wait();
}

/// `tastedb serve --read-only --follow DIR` serves the newest checkpoint of a primary and moves
/// to each newer one: rows, a model and an API key made on the primary after the replica
/// started reach it over the connections it already has (a statement prepared before a move
/// runs after it), also once the checkpoints it opened first have been pruned; a transaction
/// block keeps the checkpoint it began on; writes get 25006 throughout, and `--data` is not
/// touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_moves_to_newer_checkpoints_keeping_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("checkpoints");
    let store_arg = store.display().to_string();
    let (mut primary, addr) = serve_process_with(
        &dir.path().join("primary"),
        &["--checkpoint-to", &store_arg, "--checkpoint-every", "1h"],
        &[],
    )
    .await;
    let writer = trust_client(addr).await;
    writer.batch_execute(EVENTS).await.unwrap();
    writer.batch_execute(TRAIN).await.unwrap();
    let checkpoint = format!("CHECKPOINT TO '{store_arg}'");
    writer.batch_execute(&checkpoint).await.unwrap();

    let http = format!("127.0.0.1:{}", free_port());
    let unused = dir.path().join("unused");
    let (mut replica, addr) = serve_process_with(
        &unused,
        &[
            "--read-only",
            "--follow",
            &store_arg,
            "--follow-every",
            "50ms",
            "--http",
            &http,
        ],
        &[],
    )
    .await;
    let reader = trust_client(addr).await;
    let count = z1_count(&reader).await;
    assert_eq!(count_of_z1(&reader, &count).await, 0);

    // a row, a model and a login made on the primary reach the replica at its next checkpoint
    writer
        .batch_execute(
            "INSERT INTO ev VALUES ('z1', 'x1', 'buy'); \
             TRAIN MODEL m2 USING als FROM ev WITH (factors = 2, iterations = 5, seed = 3, \
             holdout = 0); CREATE ROLE tastedb LOGIN SUPERUSER",
        )
        .await
        .unwrap();
    let key = rows(
        writer
            .simple_query("CREATE API KEY follower FOR USER tastedb")
            .await
            .unwrap(),
    );
    let secret = key[0][2].clone().unwrap();
    writer.batch_execute(&checkpoint).await.unwrap();
    reached(&reader, &count, 1).await;
    let recommend = "SELECT item_id FROM recommend('m2', 'a1', 3) ORDER BY rank";
    let on_primary = rows(writer.simple_query(recommend).await.unwrap());
    assert_eq!(
        rows(reader.simple_query(recommend).await.unwrap()),
        on_primary
    );
    let answer = crate::http::curl(&[
        "-H",
        &format!("Authorization: Bearer {secret}"),
        &format!("http://{http}/v1/models/m2/recommend?user=a1&k=3"),
    ])
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let items: Vec<Option<String>> = answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["item"].as_str().map(String::from))
        .collect();
    let expected: Vec<Option<String>> = on_primary.iter().map(|row| row[0].clone()).collect();
    assert_eq!(items, expected);

    // a transaction block stays on the checkpoint it began on until it ends
    let pinned = trust_client(addr).await;
    let pinned_count = z1_count(&pinned).await;
    pinned.batch_execute("BEGIN").await.unwrap();
    assert_eq!(count_of_z1(&pinned, &pinned_count).await, 1);

    // more moves than the checkpoints kept: the ones opened first are pruned meanwhile
    for n in 2..=6 {
        move_with_row(&writer, &checkpoint, &reader, &count, n).await;
    }
    assert_eq!(checkpoints(&store).len(), 3);
    assert_eq!(count_of_z1(&pinned, &pinned_count).await, 1);
    pinned.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count_of_z1(&pinned, &pinned_count).await, 6);
    // the connections that began on earlier checkpoints are still the replica's
    let activity = "SELECT count(*) FROM pg_stat_activity";
    let listed = rows(reader.simple_query(activity).await.unwrap());
    assert_eq!(listed[0][0].as_deref(), Some("2"));
    assert!(!unused.exists());
    for child in [&mut primary, &mut replica] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `--checkpoint-to s3://…` uploads checkpoints and `--follow s3://…` downloads each newer one
/// into `--data` and serves it: rows and a model made on the primary reach the replica over the
/// connection it had, and writes get 25006. The bucket and the downloads keep the newest three
/// (with no file of a pruned checkpoint left), a download links the files an earlier one
/// fetched, and a `--data` that holds a data directory is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_of_an_s3_prefix_downloads_each_newer_checkpoint() {
    let s3 = MotoS3::start(&["replicas"]);
    let env = s3.env();
    let dir = tempfile::tempdir().unwrap();
    let url = "s3://replicas/prod";
    let primary_data = dir.path().join("primary");
    let (mut primary, addr) = serve_process_with(
        &primary_data,
        &["--checkpoint-to", url, "--checkpoint-every", "1h"],
        &env,
    )
    .await;
    let writer = trust_client(addr).await;
    writer.batch_execute(EVENTS).await.unwrap();
    writer.batch_execute(TRAIN).await.unwrap();
    let checkpoint = format!("CHECKPOINT TO '{url}'");
    let made = rows(writer.simple_query(&checkpoint).await.unwrap());
    let first = made[0][0].clone().unwrap();
    assert!(first.starts_with("s3://replicas/prod/0"), "{first}");

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tastedb"))
        .arg("--data")
        .arg(&primary_data)
        .args(["serve", "--auth", "trust", "--listen", "127.0.0.1:0"])
        .args(["--read-only", "--follow", url])
        .envs(env)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("holds a data directory"),
        "{said}"
    );

    let downloads = dir.path().join("downloads");
    let follow = ["--read-only", "--follow", url, "--follow-every", "50ms"];
    let (mut replica, addr) = serve_process_with(&downloads, &follow, &env).await;
    let reader = trust_client(addr).await;
    let count = z1_count(&reader).await;
    assert_eq!(count_of_z1(&reader, &count).await, 0);
    let train = "TRAIN MODEL m2 USING als FROM ev WITH (factors = 2, iterations = 5, seed = 3, \
                 holdout = 0)";
    writer.batch_execute(train).await.unwrap();
    for n in 1..=5 {
        move_with_row(&writer, &checkpoint, &reader, &count, n).await;
    }
    let recommend = "SELECT item_id, score FROM recommend('m2', 'a1', 3) ORDER BY rank";
    assert_eq!(
        rows(reader.simple_query(recommend).await.unwrap()),
        rows(writer.simple_query(recommend).await.unwrap())
    );

    // the newest three are kept in the bucket, and nothing of the others
    let listings: Vec<String> = s3
        .keys("replicas", "prod/checkpoints/")
        .iter()
        .map(|key| {
            key.trim_start_matches("prod/checkpoints/")
                .replace(".json", "")
        })
        .collect();
    assert_eq!(listings.len(), 3, "{listings:?}");
    let own_files = s3.keys("replicas", "prod/");
    for key in &own_files {
        let folder = key.split('/').nth(1).unwrap();
        assert!(
            ["checkpoints", "shared"].contains(&folder) || listings.iter().any(|l| l == folder),
            "{key} is left of a pruned checkpoint"
        );
    }
    // and in the downloads, where a later download links what an earlier one fetched
    let downloaded = checkpoints(&downloads);
    assert_eq!(downloaded, listings);
    let linked = downloaded.iter().any(|name| {
        let files = std::fs::read_dir(downloads.join(name).join("rocksdb")).unwrap();
        files.flatten().any(|file| {
            use std::os::unix::fs::MetadataExt;
            file.file_name().to_string_lossy().ends_with(".sst")
                && file.metadata().unwrap().nlink() > 1
        })
    });
    assert!(linked, "no table file is shared between downloads");
    // the primary keeps only the checkpoint it uploaded last
    let outgoing = checkpoints(&primary_data.join("outgoing-checkpoints"));
    assert_eq!(outgoing.last(), listings.last());
    assert_eq!(outgoing.len(), 1, "{outgoing:?}");
    for child in [&mut primary, &mut replica] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Inserts row `n` of user `z1` on the primary behind `writer`, makes a checkpoint, waits until
/// the replica behind `reader` serves it, and checks that the replica still refuses writes.
async fn move_with_row(
    writer: &tokio_postgres::Client,
    checkpoint: &str,
    reader: &tokio_postgres::Client,
    count: &tokio_postgres::Statement,
    n: i64,
) {
    writer
        .batch_execute(&format!("INSERT INTO ev VALUES ('z1', 'x{n}', 'buy')"))
        .await
        .unwrap();
    writer.batch_execute(checkpoint).await.unwrap();
    reached(reader, count, n).await;
    let error = reader
        .batch_execute("INSERT INTO ev VALUES ('z2', 'x1', 'buy')")
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("25006"), "{error:?}");
}

/// The statement that counts the rows of user `z1`, prepared on `client`.
async fn z1_count(client: &tokio_postgres::Client) -> tokio_postgres::Statement {
    client
        .prepare("SELECT count(*) FROM ev WHERE user_id = $1")
        .await
        .unwrap()
}

/// The rows of user `z1`, by the prepared `count`.
async fn count_of_z1(reader: &tokio_postgres::Client, count: &tokio_postgres::Statement) -> i64 {
    reader.query_one(count, &[&"z1"]).await.unwrap().get(0)
}

/// Waits (up to a minute) until the replica behind `reader` has `expected` rows of user `z1`.
async fn reached(
    reader: &tokio_postgres::Client,
    count: &tokio_postgres::Statement,
    expected: i64,
) {
    let started = Instant::now();
    while count_of_z1(reader, count).await != expected {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not moved to {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
