//! `tastedb sql`: runs statements and prints each result as an aligned table.

use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;
use tastedb::engine;
use tastedb::sql::notices::Notices;
use tastedb::{Engine, Error, Result};

/// What `tastedb sql` prints besides errors and notices.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Each statement's run time, to standard error.
    pub timing: bool,
    /// No results.
    pub quiet: bool,
}

/// Runs the SQL from `command`, `file` or standard input, printing every statement's result.
pub async fn run(
    engine: &Engine,
    command: Option<String>,
    file: Option<PathBuf>,
    output: Output,
) -> Result<()> {
    let text = match (command, file) {
        (Some(command), _) => command,
        (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            ))
        })?,
        (None, None) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
    };
    // Statements run one by one so that each result is printed, as psql does.
    for statement in engine::parse(&text)? {
        let (notices, mut received) = Notices::channel();
        let started = Instant::now();
        let result = async {
            let stream = engine.execute(statement, &notices).await?.into_stream()?;
            Ok::<Vec<_>, Error>(stream.try_collect().await?)
        }
        .await;
        let elapsed = started.elapsed();
        drop(notices);
        while let Some(notice) = received.recv().await {
            eprintln!("NOTICE:  {}", notice.message);
        }
        let batches = result?;
        if output.timing {
            eprintln!("Time: {:.3} ms", elapsed.as_secs_f64() * 1000.0);
        }
        if output.quiet {
            continue;
        }
        let has_columns = batches.first().is_some_and(|b| b.num_columns() > 0);
        if has_columns {
            println!("{}", pretty_format_batches(&batches)?);
        } else {
            println!("OK");
        }
    }
    Ok(())
}
