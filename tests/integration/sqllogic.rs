//! Golden SQL tests: every `tests/slt/*.slt` file runs twice on a fresh data directory: through
//! the embedding API (`Engine::execute`), and over the wire through `tastedb serve` with
//! tokio-postgres and the extended protocol (each statement prepared, described, then run).
//! They are the specification of the SQL surface. Errors are matched by SQLSTATE with
//! `statement error (42P01)`. Both runs format rows the same way (the wire's values are turned
//! back into Arrow arrays of their types), so a difference between them is a bug, or a record
//! marked `skipif tastedb-wire` / `onlyif tastedb-wire` with the reason.
//!
//! `TASTEDB_SLT_COMPLETE=1 cargo test --test integration sqllogic` rewrites the expected
//! results in place from what the embedded run returns (like DataFusion's `--complete`);
//! review the diff before committing.

use crate::common::{self, Running};
use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float32Array, Float32Builder, Float64Array, Int16Array,
    Int32Array, Int64Array, Int64Builder, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tastedb::engine::{self, Outcome};
use tastedb::sql::notices::Notices;
use tastedb::{Engine, Error};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};

/// The embedded run.
struct Embedded {
    engine: Engine,
}

#[async_trait]
impl AsyncDB for Embedded {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let mut last = None;
        for statement in engine::parse(sql)? {
            let outcome = self.engine.execute(statement, &Notices::tracing()).await?;
            last = Some(match outcome {
                Outcome::Rows(stream) => {
                    let batches: Vec<RecordBatch> = stream.try_collect().await?;
                    rows_output(&batches)
                }
                Outcome::Done(tag) => DBOutput::StatementComplete(tag.rows.unwrap_or(0)),
                Outcome::Batch { rows, .. } | Outcome::Returned { rows, .. } => {
                    rows_output(&[rows])
                }
            });
        }
        Ok(last.unwrap_or(DBOutput::StatementComplete(0)))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tastedb"
    }

    fn error_sql_state(error: &Error) -> Option<String> {
        Some(error.sqlstate().to_string())
    }
}

/// The run over the wire.
struct Wire {
    client: Client,
}

/// A client error shown as the server's message (tokio-postgres shows "db error"), so that
/// records matching an error's text match it over the wire too.
#[derive(Debug)]
struct WireError(tokio_postgres::Error);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => f.write_str(db.message()),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for WireError {}

impl From<tokio_postgres::Error> for WireError {
    fn from(error: tokio_postgres::Error) -> Self {
        WireError(error)
    }
}

#[async_trait]
impl AsyncDB for Wire {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        // A prepared statement holds one command: scripts go through the simple protocol.
        if engine::parse(sql).is_ok_and(|statements| statements.len() > 1) {
            self.client.batch_execute(sql).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let statement = self.client.prepare(sql).await?;
        if statement.columns().is_empty() {
            let count = self.client.execute(&statement, &[]).await?;
            return Ok(DBOutput::StatementComplete(count));
        }
        let rows = self.client.query(&statement, &[]).await?;
        let types: Vec<Type> = statement
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        let fields: Vec<Field> = statement
            .columns()
            .iter()
            .zip(&types)
            .map(|(c, t)| Field::new(c.name(), arrow_type(t), true))
            .collect();
        let columns = types
            .iter()
            .enumerate()
            .map(|(i, t)| column(&rows, i, t))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .expect("columns of the described types");
        Ok(rows_output(&[batch]))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tastedb-wire"
    }

    fn error_sql_state(error: &WireError) -> Option<String> {
        error.0.code().map(|code| code.code().to_string())
    }
}

/// The Arrow type a Postgres type came from.
fn arrow_type(pg: &Type) -> DataType {
    match *pg {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::TIMESTAMP => {
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)
        }
        Type::DATE => DataType::Date32,
        Type::FLOAT4_ARRAY => {
            DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
        }
        Type::INT8_ARRAY => DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => {
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
        }
        _ => DataType::Utf8,
    }
}

/// Column `i` of `rows` as the Arrow array its Postgres type came from.
fn column(rows: &[Row], i: usize, pg: &Type) -> ArrayRef {
    fn values<'a, T: tokio_postgres::types::FromSql<'a>>(
        rows: &'a [Row],
        i: usize,
    ) -> Vec<Option<T>> {
        rows.iter().map(|row| row.get::<_, Option<T>>(i)).collect()
    }
    match *pg {
        Type::BOOL => Arc::new(BooleanArray::from(values::<bool>(rows, i))),
        Type::INT2 => Arc::new(Int16Array::from(values::<i16>(rows, i))),
        Type::INT4 => Arc::new(Int32Array::from(values::<i32>(rows, i))),
        Type::INT8 => Arc::new(Int64Array::from(values::<i64>(rows, i))),
        Type::FLOAT4 => Arc::new(Float32Array::from(values::<f32>(rows, i))),
        Type::FLOAT8 => Arc::new(Float64Array::from(values::<f64>(rows, i))),
        Type::TIMESTAMP => Arc::new(TimestampMicrosecondArray::from(
            values::<chrono::NaiveDateTime>(rows, i)
                .into_iter()
                .map(|t| t.map(|t| t.and_utc().timestamp_micros()))
                .collect::<Vec<_>>(),
        )),
        Type::DATE => {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch");
            Arc::new(Date32Array::from(
                values::<chrono::NaiveDate>(rows, i)
                    .into_iter()
                    .map(|d| d.map(|d| (d - epoch).num_days() as i32))
                    .collect::<Vec<_>>(),
            ))
        }
        Type::FLOAT4_ARRAY => {
            let mut list = ListBuilder::new(Float32Builder::new());
            for value in values::<Vec<Option<f32>>>(rows, i) {
                list.append_option(value);
            }
            Arc::new(list.finish())
        }
        Type::INT8_ARRAY => {
            let mut list = ListBuilder::new(Int64Builder::new());
            for value in values::<Vec<Option<i64>>>(rows, i) {
                list.append_option(value);
            }
            Arc::new(list.finish())
        }
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => {
            let mut list = ListBuilder::new(StringBuilder::new());
            for value in values::<Vec<Option<String>>>(rows, i) {
                list.append_option(value);
            }
            Arc::new(list.finish())
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            Arc::new(StringArray::from(values::<String>(rows, i)))
        }
        Type::NUMERIC => Arc::new(StringArray::from(
            values::<Numeric>(rows, i)
                .into_iter()
                .map(|n| n.map(|n| n.0))
                .collect::<Vec<_>>(),
        )),
        ref other => panic!("column {i} has type {other}, which this harness does not read"),
    }
}

/// A `numeric` in its text form, read from Postgres' binary format (a sign, a weight and
/// base-10000 digits, shown with `dscale` decimals), which is how Arrow shows a decimal too.
struct Numeric(String);

impl<'a> tokio_postgres::types::FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
            let bytes = raw.get(2 * i..2 * i + 2).ok_or("numeric too short")?;
            Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
        };
        let (count, weight, sign, scale) = (word(0)?, word(1)?, word(2)?, word(3)?);
        if sign as u16 == 0xC000 {
            return Ok(Numeric("NaN".into()));
        }
        let digits = (0..count as usize)
            .map(|i| word(4 + i))
            .collect::<Result<Vec<_>, _>>()?;
        let group = |g: i32| -> i16 {
            usize::try_from(g)
                .ok()
                .and_then(|g| digits.get(g).copied())
                .unwrap_or(0)
        };
        let mut text = String::new();
        if sign as u16 == 0x4000 {
            text.push('-');
        }
        let whole: String = (0..=i32::from(weight).max(0))
            .map(|g| format!("{:04}", group(g)))
            .collect();
        let whole = if weight < 0 {
            "0"
        } else {
            whole.trim_start_matches('0')
        };
        text.push_str(if whole.is_empty() { "0" } else { whole });
        if scale > 0 {
            let fraction: String = (1..=(i32::from(scale) + 3) / 4)
                .map(|g| format!("{:04}", group(i32::from(weight) + g)))
                .collect();
            text.push('.');
            text.push_str(&fraction[..scale as usize]);
        }
        Ok(Numeric(text))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// Rows as sqllogictest compares them: every value as Arrow displays it, NULL as `NULL`, an
/// empty string as `(empty)`.
fn rows_output(batches: &[RecordBatch]) -> DBOutput<DefaultColumnType> {
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return DBOutput::StatementComplete(0);
    };
    if schema.fields().is_empty() {
        return DBOutput::StatementComplete(0);
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

/// Each file starts from an empty data directory; `$TMP` (with `control substitution on`) is
/// a scratch folder for the files a test writes and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_sql_files_embedded() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for file in &files {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = Engine::open(&data);
            async move { Ok(Embedded { engine: engine? }) }
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
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_sql_files_over_the_wire() {
    let mut failures = Vec::new();
    for file in &slt_files() {
        let scratch = tempfile::tempdir().expect("temp dir");
        let server: Running = common::start(8).await;
        let addr = server.addr;
        let mut runner = sqllogictest::Runner::new(move || async move {
            let client = common::connect_as(addr, "tastedb", common::PASSWORD).await?;
            Ok::<_, WireError>(Wire { client })
        });
        runner.set_var("TMP".to_string(), scratch.path().display().to_string());
        if let Err(error) = runner.run_file_async(file).await {
            failures.push(format!("{}:\n{error}", file.display()));
        }
    }
    assert_no_failures(&failures);
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
