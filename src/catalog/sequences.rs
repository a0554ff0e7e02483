//! Sequences (`SERIAL`, `BIGSERIAL`, `GENERATED … AS IDENTITY` columns make one named
//! `table_column_seq`; there is no `CREATE SEQUENCE` yet): `nextval('name')` hands out 1, 2,
//! 3, … and `setval('name', n)` makes the next one n + 1; `currval('name')` and `lastval()`
//! answer what this session's last `nextval` (or `setval`) of it gave. As in PostgreSQL,
//! values are never handed out twice and never rolled back (a rolled-back INSERT leaves a
//! gap), and they are logged ahead in blocks of [`CACHE`]: after a crash numbering goes on
//! past the block (a gap of at most `CACHE`).

use crate::error::{Error, Result};
use crate::storage::{Store, WriteSet, keys};
use datafusion::arrow::array::{Array, AsArray, Int64Builder};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Values logged ahead per synced write.
pub const CACHE: i64 = 32;

/// The sequences of a data directory.
#[derive(Debug)]
pub struct Sequences {
    store: Arc<Store>,
    /// Loaded sequences: (next value, highest value logged).
    loaded: Mutex<HashMap<String, (i64, i64)>>,
}

impl Sequences {
    /// The sequences of `store`.
    pub fn new(store: Arc<Store>) -> Sequences {
        Sequences {
            store,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// Sequence `name` was just created (its key written with 0): its first value is 1.
    pub fn created(&self, name: &str) {
        self.lock().insert(name.to_string(), (1, 0));
    }

    /// Sequence `name` was just dropped (its key deleted).
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// The next value of sequence `name`; 42P01 when there is none.
    pub fn next(&self, name: &str) -> Result<i64> {
        let mut loaded = self.lock();
        let (next, logged) = match loaded.get(name) {
            Some(&state) => state,
            None => {
                let logged = self.stored(name)?;
                (logged + 1, logged)
            }
        };
        let logged = if next > logged {
            self.log(name, next + CACHE - 1)?;
            next + CACHE - 1
        } else {
            logged
        };
        loaded.insert(name.to_string(), (next + 1, logged));
        Ok(next)
    }

    /// Makes `value` the last value of sequence `name` (the next is `value + 1`).
    pub fn set(&self, name: &str, value: i64) -> Result<i64> {
        let mut loaded = self.lock();
        self.stored(name)?;
        self.log(name, value)?;
        loaded.insert(name.to_string(), (value + 1, value));
        Ok(value)
    }

    /// The highest value logged for `name`; 42P01 when it does not exist.
    fn stored(&self, name: &str) -> Result<i64> {
        let bytes = self
            .store
            .get(&keys::sequence(name))?
            .ok_or_else(|| Error::UndefinedTable(name.to_string()))?;
        let array: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::Corrupt(format!("sequence \"{name}\" is not 8 bytes")))?;
        Ok(i64::from_be_bytes(array))
    }

    fn log(&self, name: &str, value: i64) -> Result<()> {
        let mut write = WriteSet::default();
        write.put(keys::sequence(name), value.to_be_bytes());
        self.store.write(write)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, i64)>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The name a `SERIAL` or identity column's sequence gets.
pub fn sequence_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_seq")
}

/// The default of a column that takes its values from sequence `name`.
pub fn nextval_of(name: &str) -> String {
    format!("nextval('{}')", name.replace('\'', "''"))
}

/// The values one session's `currval` and `lastval` answer.
#[derive(Debug, Default)]
pub struct SessionValues(Mutex<LastValues>);

#[derive(Debug, Default)]
struct LastValues {
    /// The last value each sequence gave this session.
    by_sequence: HashMap<String, i64>,
    /// The sequence `nextval` last gave a value from.
    last_used: Option<String>,
}

impl SessionValues {
    fn lock(&self) -> std::sync::MutexGuard<'_, LastValues> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, name: &str, value: i64, by_nextval: bool) {
        let mut last = self.lock();
        last.by_sequence.insert(name.to_string(), value);
        if by_nextval {
            last.last_used = Some(name.to_string());
        }
    }

    /// `currval(name)`: 55000 before this session's first `nextval` of it.
    fn current(&self, sequences: &Sequences, name: &str) -> Result<i64> {
        sequences.stored(name)?;
        (self.lock().by_sequence.get(name).copied()).ok_or_else(|| {
            Error::ObjectNotInPrerequisiteState(format!(
                "currval of sequence \"{name}\" is not yet defined in this session"
            ))
        })
    }

    /// `lastval()`: 55000 before this session's first `nextval`.
    fn last(&self) -> Result<i64> {
        let last = self.lock();
        (last.last_used.as_ref())
            .and_then(|name| last.by_sequence.get(name).copied())
            .ok_or_else(|| {
                Error::ObjectNotInPrerequisiteState(
                    "lastval is not yet defined in this session".into(),
                )
            })
    }
}

/// `nextval(name)`, `setval(name, value)`, `currval(name)` and `lastval()` over `sequences`,
/// remembering values for `session`.
pub fn functions(sequences: &Arc<Sequences>, session: &Arc<SessionValues>) -> Vec<ScalarUDF> {
    [
        SequenceFunction::Next,
        SequenceFunction::Set,
        SequenceFunction::Current,
        SequenceFunction::Last,
    ]
    .into_iter()
    .map(|kind| {
        let arity = match kind {
            SequenceFunction::Last => 0,
            SequenceFunction::Next | SequenceFunction::Current => 1,
            SequenceFunction::Set => 2,
        };
        let signature = match arity {
            0 => Signature::nullary(Volatility::Volatile),
            n => Signature::any(n, Volatility::Volatile),
        };
        ScalarUDF::from(SequenceUdf {
            kind,
            sequences: sequences.clone(),
            session: session.clone(),
            signature,
        })
    })
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SequenceFunction {
    Next,
    Set,
    Current,
    Last,
}

#[derive(Debug)]
struct SequenceUdf {
    kind: SequenceFunction,
    sequences: Arc<Sequences>,
    session: Arc<SessionValues>,
    signature: Signature,
}

impl PartialEq for SequenceUdf {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && Arc::ptr_eq(&self.sequences, &other.sequences)
            && Arc::ptr_eq(&self.session, &other.session)
    }
}
impl Eq for SequenceUdf {}
impl std::hash::Hash for SequenceUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state)
    }
}

impl ScalarUDFImpl for SequenceUdf {
    fn name(&self) -> &str {
        match self.kind {
            SequenceFunction::Next => "nextval",
            SequenceFunction::Set => "setval",
            SequenceFunction::Current => "currval",
            SequenceFunction::Last => "lastval",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let usage = || {
            Error::InvalidParameter(
                "nextval('sequence'), setval('sequence', value), currval('sequence') or lastval()"
                    .into(),
            )
            .into_datafusion()
        };
        if self.kind == SequenceFunction::Last {
            let value = self.session.last().map_err(Error::into_datafusion)?;
            return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(value))));
        }
        let mut out = Int64Builder::with_capacity(rows);
        let names = args.args.first().ok_or_else(usage)?.to_array(rows)?;
        let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let values = match args.args.get(1) {
            Some(values) => {
                let values = values.to_array(rows)?;
                Some(datafusion::arrow::compute::cast(&values, &DataType::Int64)?)
            }
            None => None,
        };
        for row in 0..rows {
            if names.is_null(row) {
                out.append_null();
                continue;
            }
            let name = names.value(row).trim_start_matches("public.");
            let value = match (&values, self.kind) {
                (_, SequenceFunction::Next) => self.sequences.next(name).inspect(|&value| {
                    self.session.record(name, value, true);
                }),
                (_, SequenceFunction::Current | SequenceFunction::Last) => {
                    self.session.current(&self.sequences, name)
                }
                (Some(values), SequenceFunction::Set) => {
                    let values = values.as_primitive::<Int64Type>();
                    if values.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    (self.sequences.set(name, values.value(row)))
                        .inspect(|&value| self.session.record(name, value, false))
                }
                (None, SequenceFunction::Set) => return Err(usage()),
            };
            out.append_value(value.map_err(Error::into_datafusion)?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
