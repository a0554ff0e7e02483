//! Postgres' text format of COPY: one row per line, fields split by a delimiter (tab), `\N` for
//! NULL, backslash escapes. arrow-csv cannot read it (no backslash escapes, `\N`), hence this.
//! Values come out as text; the writer casts them to the column types and names the row of a
//! value that does not convert.

use crate::error::{Error, Result};
use crate::sql::copy_from::wrong_width;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::io::BufRead;
use std::sync::Arc;

const BATCH_ROWS: usize = 8192;

/// Reads text-format data from `reader` into batches of text columns named after `columns`,
/// handing each to `emit` as it fills.
pub fn read_text(
    mut reader: impl BufRead,
    columns: &Schema,
    header: bool,
    delimiter: u8,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let width = columns.fields().len();
    let schema = Arc::new(Schema::new(
        columns
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let mut builders = new_builders(width);
    let mut rows = 0;
    let mut bytes = Vec::new();
    for index in 0.. {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes)? == 0 {
            break;
        }
        if index == 0 && header {
            continue;
        }
        let line = std::str::from_utf8(&bytes)
            .map_err(|e| Error::InvalidText(format!("COPY data is not valid UTF-8: {e}")))?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        let fields: Vec<&str> = line.split(delimiter as char).collect();
        if fields.len() != width {
            return Err(wrong_width(columns, index + 1, Some(fields.len())));
        }
        for (builder, field) in builders.iter_mut().zip(fields) {
            match field {
                "\\N" => builder.append_null(),
                _ => builder.append_value(unescape(field)),
            }
        }
        rows += 1;
        if rows == BATCH_ROWS {
            emit(finish(&schema, &mut builders)?)?;
            rows = 0;
        }
    }
    if rows > 0 {
        emit(finish(&schema, &mut builders)?)?;
    }
    Ok(())
}

fn new_builders(width: usize) -> Vec<StringBuilder> {
    (0..width).map(|_| StringBuilder::new()).collect()
}

fn finish(schema: &Arc<Schema>, builders: &mut [StringBuilder]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = builders
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Decodes the backslash escapes of one field.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};

    #[test]
    fn nulls_escapes_header_and_end_marker() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let data = b"a\tb\n1\tx\\ty\n\\N\t\\\\N\n3\t\\N\n\\.\n4\tignored\n";
        let mut batches = Vec::new();
        read_text(&data[..], &schema, true, b'\t', &mut |b| {
            batches.push(b);
            Ok(())
        })
        .unwrap();
        let a = batches[0].column(0).as_string::<i32>();
        let b = batches[0].column(1).as_string::<i32>();
        assert_eq!(batches[0].num_rows(), 3);
        assert_eq!(a.value(0), "1");
        assert!(a.is_null(1));
        assert_eq!(b.value(0), "x\ty");
        assert_eq!(b.value(1), "\\N");
        assert!(b.is_null(2));
        let short = read_text(&b"1\n"[..], &schema, false, b'\t', &mut |_| Ok(())).unwrap_err();
        assert_eq!(short.sqlstate(), "22P04");
    }
}
