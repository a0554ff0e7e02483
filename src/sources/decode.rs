//! A batch of messages as rows of the source's table, and the reason for each message that
//! cannot be, so that it alone goes to the dead letters. JSON is read as the HTTP ingest reads
//! it (`sql::json_rows`), CSV as `COPY … (FORMAT csv)` reads a line (`sql::copy_from`). The
//! columns a message leaves out take their DEFAULTs, as with `COPY t (columns)`.
//!
//! Neighbouring messages that give the same columns (a run) are read, defaulted and checked
//! together — one decoder, one evaluation of the defaults, one check — and only a run that
//! fails somewhere is read again one message at a time to find the culprits.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::sources::{Format, Source};
use crate::sql::copy_from::load_reader;
use crate::sql::json_rows::{self, JsonRows};
use crate::sql::parser::{CopyFormat, CopyFrom, CopyOptions, CopySourceKind};
use crate::storage::writer::check_fits;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use serde_json::{Map, Value};

/// Fills in the defaults of the columns not listed, for rows that give only those listed.
pub type FillDefaults<'a> = dyn FnMut(&[String], RecordBatch) -> Result<RecordBatch> + 'a;

/// What a batch of messages comes to.
#[derive(Default)]
pub struct Decoded {
    /// The rows to insert, full width, checked to fit the table.
    pub rows: Vec<RecordBatch>,
    /// The messages (by index in the batch) set aside, and why.
    pub failed: Vec<(usize, Error)>,
}

/// A message read as far as its columns.
struct Parsed<'a> {
    index: usize,
    listed: Vec<String>,
    object: Option<Map<String, Value>>,
    payload: &'a [u8],
}

/// The rows of `payloads` (each at most `source.max_message_bytes`), the columns they leave
/// out filled in by `fill_defaults`. An `Err` of the whole is a default that cannot be
/// evaluated: the table's fault, not a message's.
pub fn messages(
    def: &TableDef,
    source: &Source,
    payloads: &[&[u8]],
    fill_defaults: &mut FillDefaults<'_>,
) -> Result<Decoded> {
    let mut decoded = Decoded::default();
    let mut run: Vec<Parsed> = Vec::new();
    for (index, payload) in payloads.iter().enumerate() {
        let parsed = match parse(source, index, payload) {
            Ok(parsed) => parsed,
            Err(error) => {
                decoded.failed.push((index, error));
                continue;
            }
        };
        if run.first().is_some_and(|r| r.listed != parsed.listed) {
            read_run(
                def,
                source,
                std::mem::take(&mut run),
                fill_defaults,
                &mut decoded,
            )?;
        }
        run.push(parsed);
    }
    read_run(def, source, run, fill_defaults, &mut decoded)?;
    decoded.failed.sort_by_key(|(index, _)| *index);
    Ok(decoded)
}

/// Checks a message's size and, for JSON, that it is an object, and finds its columns.
fn parse<'a>(source: &Source, index: usize, payload: &'a [u8]) -> Result<Parsed<'a>> {
    if payload.len() > source.max_message_bytes {
        return Err(Error::ProgramLimitExceeded(format!(
            "message of {} bytes, more than max_message_bytes = {}",
            payload.len(),
            source.max_message_bytes
        )));
    }
    let (listed, object) = match source.format {
        Format::Json => {
            let object = json_object(payload)?;
            let listed = match source.columns.is_empty() {
                true => json_rows::keys_of(&object),
                false => source.columns.clone(),
            };
            (listed, Some(object))
        }
        Format::Csv => (source.columns.clone(), None),
    };
    Ok(Parsed {
        index,
        listed,
        object,
        payload,
    })
}

fn json_object(payload: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Error::InvalidText(
            "the message is not a JSON object".into(),
        )),
        Err(e) => Err(Error::InvalidText(format!("the message is not JSON: {e}"))),
    }
}

/// A run of messages giving the same columns: all together when every one is good, else each
/// alone.
fn read_run(
    def: &TableDef,
    source: &Source,
    run: Vec<Parsed>,
    fill_defaults: &mut FillDefaults<'_>,
    decoded: &mut Decoded,
) -> Result<()> {
    let Some(listed) = run.first().map(|p| p.listed.clone()) else {
        return Ok(());
    };
    let payloads: Vec<(usize, &[u8])> = run.iter().map(|p| (p.index, p.payload)).collect();
    if let Some(rows) = together(def, source, &listed, run) {
        let rows = with_defaults(def, &listed, rows, fill_defaults)?;
        if check_fits(def, &rows).is_ok() {
            decoded.rows.push(rows);
            return Ok(());
        }
    }
    // one message at a time: those that read go on together to their defaults
    let mut good = Vec::new();
    for (index, payload) in payloads {
        match one(def, source, &listed, payload) {
            Ok(rows) => good.push((index, rows)),
            Err(error) => decoded.failed.push((index, error)),
        }
    }
    let Some(schema) = good.first().map(|(_, rows)| rows.schema()) else {
        return Ok(());
    };
    let all = concat_batches(&schema, good.iter().map(|(_, rows)| rows))?;
    let all = with_defaults(def, &listed, all, fill_defaults)?;
    let mut at = 0;
    for (index, rows) in good {
        let mine = all.slice(at, rows.num_rows());
        at += rows.num_rows();
        match check_fits(def, &mine) {
            Ok(()) => decoded.rows.push(mine),
            Err(error) => decoded.failed.push((index, error)),
        }
    }
    Ok(())
}

/// The rows of a whole run read by one decoder, one row per message — or `None` when any
/// message does not read (or, in CSV, is not exactly one line).
fn together(
    def: &TableDef,
    source: &Source,
    listed: &[String],
    run: Vec<Parsed>,
) -> Option<RecordBatch> {
    let messages = run.len();
    let rows = gathered(def, |emit| match source.format {
        Format::Json => {
            let objects: Vec<Map<String, Value>> =
                run.into_iter().filter_map(|p| p.object).collect();
            json_rows::load(def, listed, JsonRows::Objects(objects), emit)
        }
        Format::Csv => {
            // a message without line breaks is at most one record, so as many rows as
            // messages means one row each
            let one_line = |p: &Parsed| !p.payload.iter().any(|&b| b == b'\n' || b == b'\r');
            if !run.iter().all(one_line) {
                return Err(Error::BadCopyFile("a message of several lines".into()));
            }
            let lines: Vec<&[u8]> = run.iter().map(|p| p.payload).collect();
            let joined = lines.join(&b'\n');
            load_reader(def, &csv_copy(def, source), joined.as_slice(), emit)
        }
    });
    rows.ok().filter(|rows| rows.num_rows() == messages)
}

/// The rows of one message.
fn one(def: &TableDef, source: &Source, listed: &[String], payload: &[u8]) -> Result<RecordBatch> {
    gathered(def, |emit| match source.format {
        Format::Json => {
            let objects = vec![json_object(payload)?];
            json_rows::load(def, listed, JsonRows::Objects(objects), emit)
        }
        Format::Csv => load_reader(def, &csv_copy(def, source), payload, emit),
    })
}

/// The batches `read` emits, as one.
fn gathered(
    def: &TableDef,
    read: impl FnOnce(&mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()>,
) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    read(&mut |batch| {
        batches.push(batch);
        Ok(())
    })?;
    Ok(concat_batches(&def.input_schema(), &batches)?)
}

/// `COPY table (columns) FROM STDIN (FORMAT csv)` for the source's lines.
fn csv_copy(def: &TableDef, source: &Source) -> CopyFrom {
    CopyFrom {
        table: def.name.clone(),
        columns: source.columns.clone(),
        source: CopySourceKind::Stdin,
        options: CopyOptions {
            format: Some(CopyFormat::Csv),
            header: false,
            delimiter: None,
        },
    }
}

/// `rows` with the defaults of the columns `listed` leaves out, when the table has any (checked
/// here, so that a batch without defaults needs no runtime for their SQL).
fn with_defaults(
    def: &TableDef,
    listed: &[String],
    rows: RecordBatch,
    fill_defaults: &mut FillDefaults<'_>,
) -> Result<RecordBatch> {
    match !def.defaults_for(listed).is_empty() && rows.num_rows() > 0 {
        true => fill_defaults(listed, rows),
        false => Ok(rows),
    }
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

    fn table(default_b: Option<&str>) -> TableDef {
        let mut def = TableDef::with_columns(
            1,
            "t",
            &[("a", ColumnType::BigInt), ("b", ColumnType::BigInt)],
        );
        def.columns[1].default = default_b.map(String::from);
        def.columns[1].nullable = false;
        def
    }

    fn column(decoded: &Decoded, column: usize) -> Vec<i64> {
        (decoded.rows.iter())
            .flat_map(|rows| {
                let values = rows.column(column).as_any().downcast_ref::<Int64Array>();
                values.unwrap().values().to_vec()
            })
            .collect()
    }

    fn failed(decoded: &Decoded) -> Vec<(usize, String)> {
        (decoded.failed.iter())
            .map(|(index, error)| (*index, error.sqlstate().to_string()))
            .collect()
    }

    #[test]
    fn defaults_fill_runs_of_messages_and_each_bad_message_fails_alone() {
        let def = table(Some("7"));
        let payloads: Vec<&[u8]> = vec![
            br#"{"a": 1}"#,
            br#"{"a": 2}"#,
            b"not json",
            br#"{"a": 3, "b": 30}"#,
            br#"{"a": 4}"#,
            br#"{"a": "four"}"#,
        ];
        let mut calls = Vec::new();
        let decoded = messages(&def, &source(), &payloads, &mut |listed, rows| {
            calls.push((listed.to_vec(), rows.num_rows()));
            let b = Int64Array::from(vec![7; rows.num_rows()]);
            let columns = vec![rows.column(0).clone(), std::sync::Arc::new(b) as _];
            Ok(RecordBatch::try_new(rows.schema(), columns)?)
        })
        .unwrap();
        // the first two together (the bad message between runs breaks none), none for the
        // message that gives b, and the fourth once the fifth is found bad
        assert_eq!(
            calls,
            [(vec!["a".to_string()], 2), (vec!["a".to_string()], 1)]
        );
        assert_eq!(column(&decoded, 0), [1, 2, 3, 4]);
        assert_eq!(column(&decoded, 1), [7, 7, 30, 7]);
        assert_eq!(failed(&decoded), [(2, "22P02".into()), (5, "22P02".into())]);
    }

    #[test]
    fn without_defaults_a_null_in_a_not_null_column_is_the_message_s_error() {
        let def = table(None);
        let payloads: Vec<&[u8]> = vec![br#"{"a": 1, "b": 1}"#, br#"{"a": 2}"#];
        let mut fill = |_: &[String], _| panic!("no defaults");
        let decoded = messages(&def, &source(), &payloads, &mut fill).unwrap();
        assert_eq!(column(&decoded, 0), [1]);
        assert_eq!(failed(&decoded), [(1, "23502".into())]);
    }

    #[test]
    fn csv_lines_read_together_and_alone() {
        let def = table(None);
        let csv = Source {
            format: Format::Csv,
            ..source()
        };
        let mut fill = |_: &[String], _| panic!("no defaults");
        let good: Vec<&[u8]> = vec![b"1,2", b"3,4", b"\"5\",6"];
        let decoded = messages(&def, &csv, &good, &mut fill).unwrap();
        assert_eq!(
            (decoded.rows.len(), column(&decoded, 1)),
            (1, vec![2, 4, 6])
        );
        let mixed: Vec<&[u8]> = vec![b"1,2", b"3", b"x,1", b"4,5\n6,7", b"", b"8,9"];
        let decoded = messages(&def, &csv, &mixed, &mut fill).unwrap();
        assert_eq!(column(&decoded, 0), [1, 4, 6, 8]);
        let errors = [(1, "22P04".to_string()), (2, "22P02".to_string())];
        assert_eq!(failed(&decoded), errors);
        let large = Source {
            max_message_bytes: 3,
            ..csv
        };
        let decoded = messages(&def, &large, &[b"10,20"], &mut fill).unwrap();
        assert_eq!(failed(&decoded), [(0, "54000".into())]);
    }
}
