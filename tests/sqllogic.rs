//! Golden SQL tests: every `tests/slt/*.slt` file runs through the embedding API on a fresh data
//! directory. They are the specification of the SQL surface. Errors are matched by SQLSTATE
//! with `statement error (42P01)`.
//!
//! `TASTEDB_SLT_COMPLETE=1 cargo test --test sqllogic` rewrites the expected results in place
//! from what TasteDB returns (like DataFusion's `--complete`); review the diff before committing.

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use std::path::{Path, PathBuf};
use tastedb::{Engine, Error};

struct TasteDb {
    engine: Engine,
}

#[async_trait]
impl AsyncDB for TasteDb {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let batches = self.engine.sql(sql).await?;
        Ok(to_output(&batches))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tastedb"
    }

    fn error_sql_state(error: &Error) -> Option<String> {
        Some(error.sqlstate().to_string())
    }
}

fn to_output(batches: &[RecordBatch]) -> DBOutput<DefaultColumnType> {
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return DBOutput::StatementComplete(0);
    };
    if schema.fields().is_empty() {
        return DBOutput::StatementComplete(0);
    }
    // DML results (INSERT, COPY, CREATE TABLE AS) are one `count` row.
    if schema.fields().len() == 1
        && schema.field(0).name() == "count"
        && schema.field(0).data_type() == &DataType::UInt64
    {
        let count = batches
            .iter()
            .filter_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::UInt64Array>()
            })
            .map(|a| a.iter().flatten().sum::<u64>())
            .sum();
        return DBOutput::StatementComplete(count);
    }
    let types = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            t if t.is_integer() => DefaultColumnType::Integer,
            t if t.is_floating() => DefaultColumnType::FloatingPoint,
            _ => DefaultColumnType::Text,
        })
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable column"))
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let text = f.value(row).to_string();
                        if text.is_empty() {
                            "(empty)".to_string()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    DBOutput::Rows { types, rows }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_sql_files() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for file in &files {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        // Each file starts from an empty data directory; `$TMP` (with `control substitution
        // on`) is a scratch folder for the files a test writes and reads back.
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = Engine::open(&data);
            async move { Ok(TasteDb { engine: engine? }) }
        });
        runner.set_var("TMP".to_string(), dir.path().display().to_string());
        if std::env::var_os("TASTEDB_SLT_COMPLETE").is_some() {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("completing {}: {e}", file.display()));
        } else if let Err(error) = runner.run_file_async(file).await {
            failures.push(format!("{}:\n{error}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
