//! `tastedb import`: loads a file into a table with a progress bar.

use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Instant;
use tastedb::sql::parser::{CopyFormat, CopyFrom, CopyOptions, CopySourceKind};
use tastedb::{Engine, Error, Result};

/// Options of `tastedb import`, as given on the command line.
pub struct ImportOptions {
    /// `csv` or `parquet`; `None` lets the extension decide.
    pub format: Option<String>,
    /// CSV header line present.
    pub header: bool,
    /// CSV delimiter.
    pub delimiter: Option<char>,
}

/// Imports `file` into `table`: all rows, or none if any row is bad.
pub async fn run(engine: &Engine, table: &str, file: &Path, options: ImportOptions) -> Result<()> {
    let format = match options.format.as_deref().map(str::to_lowercase).as_deref() {
        None => None,
        Some("csv") => Some(CopyFormat::Csv),
        Some("parquet") => Some(CopyFormat::Parquet),
        Some(other) => {
            return Err(Error::InvalidParameter(format!(
                "unknown format {other}; use csv or parquet"
            )));
        }
    };
    let delimiter = match options.delimiter {
        None => None,
        Some(c) if c.is_ascii() => Some(c as u8),
        Some(_) => {
            return Err(Error::InvalidParameter(
                "the delimiter must be one ASCII character".into(),
            ));
        }
    };
    let copy = CopyFrom {
        table: table.to_string(),
        columns: Vec::new(),
        source: CopySourceKind::File(file.display().to_string()),
        options: CopyOptions {
            format,
            header: options.header,
            delimiter,
        },
    };
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {percent}% ({elapsed})")
            .map_err(|e| Error::Internal(e.to_string()))?
            .progress_chars("=> "),
    );
    bar.set_message(format!("reading {}", file.display()));
    let reporter = bar.clone();
    let started = Instant::now();
    let result = engine
        .copy_from_file(copy, move |fraction| {
            reporter.set_position((fraction * 1000.0) as u64);
            if fraction >= 1.0 {
                reporter.set_message("writing".to_string());
            }
        })
        .await;
    bar.finish_and_clear();
    let rows = result?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {rows} rows into {table} in {seconds:.1} s ({:.0} rows/s)",
        rows as f64 / seconds.max(1e-9)
    );
    Ok(())
}
