//! One message's payload as rows of the source's table — or the reason it cannot be, so that
//! the message alone goes to the dead letters. JSON is read as the HTTP ingest reads it
//! (`sql::json_rows`), CSV as `COPY … (FORMAT csv)` reads a line (`sql::copy_from`). The
//! columns a message leaves out take their DEFAULTs, as with `COPY t (columns)`.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::sources::{Format, Source};
use crate::sql::copy_from::load_reader;
use crate::sql::json_rows::{self, JsonRows};
use crate::sql::parser::{CopyFormat, CopyFrom, CopyOptions, CopySourceKind};
use crate::storage::writer::check_fits;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;

/// A message's rows, every column of the table; those it does not give (`listed` names the
/// ones it gives, empty when it gives all) are NULL until their defaults are filled in.
pub struct Decoded {
    /// The columns the message gives values for.
    pub listed: Vec<String>,
    /// Its rows.
    pub rows: RecordBatch,
}

/// The rows of `payload`, or why they cannot be read.
pub fn rows(def: &TableDef, source: &Source, payload: &[u8]) -> Result<Decoded> {
    let mut batches = Vec::new();
    let mut emit = |batch: RecordBatch| {
        batches.push(batch);
        Ok(())
    };
    let listed = match source.format {
        Format::Json => {
            let object = match serde_json::from_slice(payload) {
                Ok(serde_json::Value::Object(object)) => object,
                Ok(_) => {
                    return Err(Error::InvalidText(
                        "the message is not a JSON object".into(),
                    ));
                }
                Err(e) => return Err(Error::InvalidText(format!("the message is not JSON: {e}"))),
            };
            let listed = match source.columns.is_empty() {
                true => json_rows::keys_of(&object),
                false => source.columns.clone(),
            };
            json_rows::load(def, &listed, JsonRows::Objects(vec![object]), &mut emit)?;
            listed
        }
        Format::Csv => {
            let copy = CopyFrom {
                table: def.name.clone(),
                columns: source.columns.clone(),
                source: CopySourceKind::Stdin,
                options: CopyOptions {
                    format: Some(CopyFormat::Csv),
                    header: false,
                    delimiter: None,
                },
            };
            load_reader(def, &copy, payload, &mut emit)?;
            source.columns.clone()
        }
    };
    let rows = concat_batches(&def.input_schema(), &batches)?;
    Ok(Decoded { listed, rows })
}

/// Each message's rows with the defaults of the columns it leaves out filled in by
/// `fill_defaults` (given the columns listed and the rows), checked to fit the table: a
/// message whose rows do not fit gets its own error, to be set aside alone. Neighbouring
/// messages that list the same columns have their defaults filled in one call. An `Err` of
/// the whole (a default that cannot be evaluated) is the table's fault, not a message's.
pub fn complete(
    def: &TableDef,
    messages: Vec<Result<Decoded>>,
    fill_defaults: &mut dyn FnMut(&[String], RecordBatch) -> Result<RecordBatch>,
) -> Result<Vec<Result<RecordBatch>>> {
    let mut completed = Vec::with_capacity(messages.len());
    let mut run: Vec<Decoded> = Vec::new();
    for message in messages {
        let ends_run = match &message {
            Ok(decoded) => run.first().is_some_and(|r| r.listed != decoded.listed),
            Err(_) => true,
        };
        if ends_run {
            complete_run(def, std::mem::take(&mut run), fill_defaults, &mut completed)?;
        }
        match message {
            Ok(decoded) => run.push(decoded),
            Err(error) => completed.push(Err(error)),
        }
    }
    complete_run(def, run, fill_defaults, &mut completed)?;
    Ok(completed)
}

/// Messages that list the same columns: their defaults filled in together (when the table
/// has any for the columns they leave out), then each checked on its own.
fn complete_run(
    def: &TableDef,
    run: Vec<Decoded>,
    fill_defaults: &mut dyn FnMut(&[String], RecordBatch) -> Result<RecordBatch>,
    completed: &mut Vec<Result<RecordBatch>>,
) -> Result<()> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let defaulted = !first.listed.is_empty()
        && (def.columns.iter()).any(|c| c.default.is_some() && !first.listed.contains(&c.name));
    let filled: Vec<RecordBatch> = match defaulted {
        false => run.into_iter().map(|d| d.rows).collect(),
        true => {
            let sizes: Vec<usize> = run.iter().map(|d| d.rows.num_rows()).collect();
            let listed = first.listed.clone();
            let rows: Vec<RecordBatch> = run.into_iter().map(|d| d.rows).collect();
            let all = fill_defaults(&listed, concat_batches(&def.input_schema(), &rows)?)?;
            let mut at = 0;
            (sizes.into_iter())
                .map(|n| {
                    at += n;
                    all.slice(at - n, n)
                })
                .collect()
        }
    };
    for rows in filled {
        completed.push(check_fits(def, &rows).map(|()| rows));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnType;
    use datafusion::arrow::array::{Array, Int64Array};

    fn source() -> Source {
        Source {
            name: "s".into(),
            table: "t".into(),
            columns: vec![],
            topic: "topic".into(),
            format: Format::Json,
            client: Default::default(),
            batch_rows: 10,
            batch_ms: 10,
            max_message_bytes: 1 << 20,
            paused: false,
            owner: None,
            created_micros: 0,
        }
    }

    #[test]
    fn defaults_fill_runs_of_messages_and_each_message_keeps_its_own_verdict() {
        let mut def = TableDef::with_columns(
            1,
            "t",
            &[("a", ColumnType::BigInt), ("b", ColumnType::BigInt)],
        );
        def.columns[1].default = Some("7".into());
        def.columns[1].nullable = false;
        let payloads = [
            r#"{"a": 1}"#,
            r#"{"a": 2}"#,
            "not json",
            r#"{"a": 3, "b": 30}"#,
            r#"{"a": 4}"#,
            r#"{"a": "four"}"#,
        ];
        let decoded = payloads.iter().map(|p| rows(&def, &source(), p.as_bytes()));
        let mut calls = Vec::new();
        let completed = complete(&def, decoded.collect(), &mut |listed, rows| {
            calls.push((listed.to_vec(), rows.num_rows()));
            let b = Int64Array::from(vec![7; rows.num_rows()]);
            let columns = vec![rows.column(0).clone(), std::sync::Arc::new(b) as _];
            Ok(RecordBatch::try_new(rows.schema(), columns)?)
        })
        .unwrap();
        // one call for the first two messages, none for the one that gives b, one for the 4th
        assert_eq!(
            calls,
            [(vec!["a".to_string()], 2), (vec!["a".to_string()], 1)]
        );
        let b_of = |i: usize| {
            let rows = completed[i].as_ref().unwrap();
            let b = rows
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            (rows.num_rows(), b.value(0))
        };
        assert_eq!(
            [b_of(0), b_of(1), b_of(3), b_of(4)],
            [(1, 7), (1, 7), (1, 30), (1, 7)]
        );
        assert!(completed[2].is_err() && completed[5].is_err());
        assert_eq!(completed.len(), payloads.len());
    }

    #[test]
    fn without_defaults_a_null_in_a_not_null_column_is_the_message_s_error() {
        let mut def = TableDef::with_columns(
            1,
            "t",
            &[("a", ColumnType::BigInt), ("b", ColumnType::BigInt)],
        );
        def.columns[1].nullable = false;
        let decoded = vec![rows(&def, &source(), br#"{"a": 1}"#)];
        let completed = complete(&def, decoded, &mut |_, _| panic!("no defaults")).unwrap();
        assert_eq!(completed[0].as_ref().unwrap_err().sqlstate(), "23502");
    }
}
