//! `COPY table FROM 'file'`: reading CSV and Parquet files into rows of a stored table.
//! The CLI's `tastedb import` uses the same code with a progress callback.

use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::sql::copy_binary::read_binary;
use crate::sql::copy_text::read_text;
use crate::sql::parser::{CopyFormat, CopyFrom};
use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

const BATCH_SIZE: usize = 8192;
const PARQUET_FROM_CLIENT: &str =
    "COPY FROM STDIN takes text, csv or binary; load Parquet with COPY FROM 'file'";

/// Reads the file named by `copy` into full-width rows of `table` (columns the COPY does not
/// list are NULL), handing each batch to `emit` as it is read. `progress` is called with the
/// fraction of the file read so far, 0 to 1.
pub fn load(
    table: &TableDef,
    copy: &CopyFrom,
    path: &Path,
    progress: &mut dyn FnMut(f64),
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let format = match copy.options.format {
        Some(format) => format,
        None => format_from_extension(path)?,
    };
    let listed = listed_columns(table, &copy.columns)?;
    let input_schema = table.input_schema();
    let file_schema = Arc::new(input_schema.project(&listed)?);
    let emit = &mut |batch| emit(widen(&input_schema, &listed, batch)?);
    if format == CopyFormat::Parquet {
        return read_parquet(path, &file_schema, progress, emit);
    }
    let file = open(path)?;
    let size = file.metadata()?.len().max(1) as f64;
    let counting = CountingRead {
        inner: file,
        read: 0,
        report: &mut |read| progress(read as f64 / size),
    };
    read_format(format, counting, &file_schema, copy, emit)
}

/// Reads COPY data that a client sends (`COPY … FROM STDIN`), in text (the default), CSV or
/// binary format, from `reader` into full-width rows of `table`, handing each batch to `emit`.
pub fn load_reader(
    table: &TableDef,
    copy: &CopyFrom,
    reader: impl Read,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let listed = listed_columns(table, &copy.columns)?;
    let input_schema = table.input_schema();
    let file_schema = Arc::new(input_schema.project(&listed)?);
    let format = copy.options.format.unwrap_or(CopyFormat::Text);
    if format == CopyFormat::Parquet {
        return Err(Error::FeatureNotSupported(PARQUET_FROM_CLIENT.into()));
    }
    let emit = &mut |batch| emit(widen(&input_schema, &listed, batch)?);
    read_format(format, reader, &file_schema, copy, emit)
}

/// Reads `reader` in a streaming format (every one but Parquet).
fn read_format(
    format: CopyFormat,
    reader: impl Read,
    schema: &SchemaRef,
    copy: &CopyFrom,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    match format {
        CopyFormat::Csv => read_csv(reader, schema.clone(), copy, emit),
        CopyFormat::Text => {
            let delimiter = copy.options.delimiter.unwrap_or(b'\t');
            let reader = std::io::BufReader::new(reader);
            read_text(reader, schema, copy.options.header, delimiter, emit)
        }
        CopyFormat::Binary => read_binary(reader, schema, emit),
        CopyFormat::Parquet => Err(Error::FeatureNotSupported(PARQUET_FROM_CLIENT.into())),
    }
}

/// How many columns the input of `copy` has; refuses Parquet, which cannot come from a client.
pub fn input_width(table: &TableDef, copy: &CopyFrom) -> Result<usize> {
    if copy.options.format == Some(CopyFormat::Parquet) {
        return Err(Error::FeatureNotSupported(PARQUET_FROM_CLIENT.into()));
    }
    Ok(listed_columns(table, &copy.columns)?.len())
}

/// Indexes of the table columns the input provides, in input order.
pub(crate) fn listed_columns(table: &TableDef, names: &[String]) -> Result<Vec<usize>> {
    if names.is_empty() {
        return Ok((0..table.columns.len()).collect());
    }
    let mut indexes = Vec::with_capacity(names.len());
    for name in names {
        let index = table
            .columns
            .iter()
            .position(|c| &c.name == name)
            .ok_or_else(|| Error::UndefinedColumn(name.clone()))?;
        if indexes.contains(&index) {
            return Err(Error::DuplicateColumn(name.clone()));
        }
        indexes.push(index);
    }
    Ok(indexes)
}

fn format_from_extension(path: &Path) -> Result<CopyFormat> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase);
    match extension.as_deref() {
        Some("csv") => Ok(CopyFormat::Csv),
        Some("parquet") | Some("pq") => Ok(CopyFormat::Parquet),
        _ => Err(Error::InvalidParameter(format!(
            "cannot tell the format of {} from its name; add WITH (FORMAT csv) or (FORMAT parquet)",
            path.display()
        ))),
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| open_error(path, e))
}

fn open_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!(
            "could not open file \"{}\" for reading: {e}",
            path.display()
        ),
    ))
}

/// Reads CSV into `schema`, except that vector columns come out as text: arrow-csv has no list
/// type, and the writer parses `[0.1, 0.2]` itself.
fn read_csv(
    reader: impl Read,
    schema: SchemaRef,
    copy: &CopyFrom,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::List(_) => Field::new(f.name(), DataType::Utf8, true),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let reader = ReaderBuilder::new(schema.clone())
        .with_header(copy.options.header)
        .with_delimiter(copy.options.delimiter.unwrap_or(b','))
        .with_batch_size(BATCH_SIZE)
        .build(reader)?;
    for batch in reader {
        emit(batch.map_err(|e| csv_error(&schema, copy.options.header, e))?)?;
    }
    Ok(())
}

/// arrow-csv's "incorrect number of fields for line L, expected E got [more than] G" as
/// PostgreSQL's 22P04 (see [`wrong_width`]), its line counted in the file as PostgreSQL counts
/// it (arrow-csv does not count a header); other errors as they are.
fn csv_error(schema: &Schema, header: bool, error: ArrowError) -> Error {
    if let ArrowError::CsvError(message) = &error
        && let Some(rest) = message.strip_prefix("incorrect number of fields for line ")
    {
        let line = (rest.split(',').next().and_then(|l| l.parse::<u64>().ok()))
            .map_or("?".to_string(), |l| (l + u64::from(header)).to_string());
        let got = (rest.rsplit(' ').next().and_then(|n| n.parse().ok()))
            .filter(|_| !rest.contains("got more than"));
        return wrong_width(schema, line, got);
    }
    error.into()
}

/// A COPY line with the wrong number of fields, as PostgreSQL words it (22P04): the first
/// column without data when it has `got` fields and `columns` wants more, else extra data
/// (also when `got` is not known).
pub(crate) fn wrong_width(
    columns: &Schema,
    line: impl std::fmt::Display,
    got: Option<usize>,
) -> Error {
    let missing = got.and_then(|got| columns.fields().get(got));
    Error::BadCopyFile(match missing {
        Some(column) => format!(
            "missing data for column \"{}\" (line {line})",
            column.name()
        ),
        None => format!("extra data after last expected column (line {line})"),
    })
}

fn read_parquet(
    path: &Path,
    schema: &Schema,
    progress: &mut dyn FnMut(f64),
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let bad_file = |e: datafusion::parquet::errors::ParquetError| {
        Error::BadCopyFile(format!(
            "{} is not a readable Parquet file: {e}",
            path.display()
        ))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(open(path)?).map_err(bad_file)?;
    let total_rows = builder.metadata().file_metadata().num_rows().max(1) as f64;
    let file_fields = builder.schema().fields().clone();
    let mut roots = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let index = file_fields
            .iter()
            .position(|f| f.name() == field.name())
            .or_else(|| {
                file_fields
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(field.name()))
            })
            .ok_or_else(|| {
                Error::UndefinedColumn(format!("{} (not in {})", field.name(), path.display()))
            })?;
        roots.push((field.clone(), file_fields[index].name().clone(), index));
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().map(|(_, _, i)| *i));
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_SIZE)
        .build()
        .map_err(bad_file)?;
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch?;
        rows += batch.num_rows();
        progress(rows as f64 / total_rows);
        let columns = roots
            .iter()
            .map(|(_, file_name, _)| {
                batch.column_by_name(file_name).cloned().ok_or_else(|| {
                    Error::Internal(format!("parquet reader lost column {file_name}"))
                })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let fields: Vec<Arc<Field>> = roots
            .iter()
            .zip(&columns)
            .map(|((field, _, _), column)| {
                Arc::new(Field::new(field.name(), column.data_type().clone(), true))
            })
            .collect();
        emit(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)?;
    }
    Ok(())
}

/// Puts the listed columns of `batch` in their table positions, NULL elsewhere.
pub(crate) fn widen(
    table_schema: &SchemaRef,
    listed: &[usize],
    batch: RecordBatch,
) -> Result<RecordBatch> {
    let width = table_schema.fields().len();
    if listed.len() == width && listed.iter().enumerate().all(|(i, &c)| i == c) {
        return Ok(batch);
    }
    let mut columns: Vec<ArrayRef> = table_schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), batch.num_rows()))
        .collect();
    for (position, &index) in listed.iter().enumerate() {
        columns[index] = batch.column(position).clone();
    }
    let fields: Vec<Arc<Field>> = table_schema
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| Arc::new(Field::new(f.name(), c.data_type().clone(), true)))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// A reader that reports how many bytes have been read.
struct CountingRead<'a, R> {
    inner: R,
    read: u64,
    report: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for CountingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.report)(self.read);
        Ok(n)
    }
}
