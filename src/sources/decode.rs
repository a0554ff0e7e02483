//! One message's payload as rows of the source's table — or the reason it cannot be, so that
//! the message alone goes to the dead letters. JSON is read as the HTTP ingest reads it
//! (`sql::json_rows`), CSV as `COPY … (FORMAT csv)` reads a line (`sql::copy_from`).

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::sources::{Format, Source};
use crate::sql::copy_from::load_reader;
use crate::sql::json_rows::{self, JsonRows};
use crate::sql::parser::{CopyFormat, CopyFrom, CopyOptions, CopySourceKind};
use crate::storage::writer::check_fits;
use datafusion::arrow::array::RecordBatch;

/// The rows of `payload` (every column of `def`; those the message does not give are NULL),
/// checked to fit the table.
pub fn rows(def: &TableDef, source: &Source, payload: &[u8]) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let mut emit = |batch: RecordBatch| {
        batches.push(batch);
        Ok(())
    };
    match source.format {
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
        }
    }
    for batch in &batches {
        check_fits(def, batch)?;
    }
    Ok(batches)
}
