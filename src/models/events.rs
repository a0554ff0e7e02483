//! Reading events from a training source's rows: which columns hold the user, the item, the
//! weight, the time and the event type (per the TRAIN options), and one (user, item, weight,
//! time) per row that is an event. TRAIN reads its snapshot through it, and live serving the
//! rows written since.

use crate::error::{Error, Result};
use crate::ml::TrainOptions;
use crate::models::registry::IdType;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema, TimeUnit};

/// One event of a source row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// The user id, as text.
    pub user: &'a str,
    /// The item id, as text.
    pub item: &'a str,
    /// The weight (the event type's, with `event_weights`).
    pub weight: f32,
    /// Microseconds since the epoch, 0 without a time column.
    pub time: i64,
}

/// Where a source's rows keep the parts of an event.
#[derive(Debug, Clone)]
pub struct EventColumns {
    user: usize,
    item: usize,
    weight: Option<usize>,
    time: Option<usize>,
    event_type: Option<usize>,
}

impl EventColumns {
    /// The columns of `schema` that `options` name (or the defaults `weight`, `ts`); 42703
    /// naming the option when a named column is missing.
    pub fn find(schema: &Schema, options: &TrainOptions) -> Result<EventColumns> {
        Ok(EventColumns {
            user: required(schema, &options.user_column, "user_column")?,
            item: required(schema, &options.item_column, "item_column")?,
            weight: optional(
                schema,
                options.weight_column.as_deref(),
                "weight",
                "weight_column",
            )?,
            time: optional(schema, options.time_column.as_deref(), "ts", "time_column")?,
            event_type: match &options.event_weights {
                Some(_) => Some(required(schema, "event_type", "event_weights")?),
                None => None,
            },
        })
    }

    /// The SQL types of the user and item ids.
    pub fn id_types(&self, schema: &Schema, options: &TrainOptions) -> Result<(IdType, IdType)> {
        Ok((
            id_type(schema, self.user, &options.user_column)?,
            id_type(schema, self.item, &options.item_column)?,
        ))
    }

    /// Calls `each` with the event of every row of `batch` that has one: rows without a user
    /// or an item, or whose event type `event_weights` does not list, are skipped; a weight
    /// that is not finite is 22023.
    pub fn for_each(
        &self,
        batch: &RecordBatch,
        options: &TrainOptions,
        mut each: impl FnMut(Event<'_>),
    ) -> Result<()> {
        let users = text_column(batch.column(self.user))?;
        let items = text_column(batch.column(self.item))?;
        let weights = match self.weight {
            Some(i) => Some(cast(batch.column(i), &DataType::Float64)?),
            None => None,
        };
        let weights = weights.as_ref().map(|w| w.as_primitive::<Float64Type>());
        let times = match self.time {
            Some(i) => Some(cast(
                batch.column(i),
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?),
            None => None,
        };
        let times = times
            .as_ref()
            .and_then(|t| t.as_any().downcast_ref::<TimestampMicrosecondArray>());
        let types = match self.event_type {
            Some(i) => Some(text_column(batch.column(i))?),
            None => None,
        };
        for row in 0..batch.num_rows() {
            if users.is_null(row) || items.is_null(row) {
                continue;
            }
            let mut weight = match weights {
                Some(w) if w.is_valid(row) => w.value(row) as f32,
                _ => 1.0,
            };
            if let (Some(types), Some(map)) = (&types, &options.event_weights) {
                match types
                    .is_valid(row)
                    .then(|| map.get(types.value(row)))
                    .flatten()
                {
                    Some(w) => weight = *w,
                    None => continue,
                }
            }
            if !weight.is_finite() {
                return Err(Error::InvalidParameter(format!(
                    "weight of user \"{}\" and item \"{}\" is {weight}; weights must be finite",
                    users.value(row),
                    items.value(row)
                )));
            }
            let time = times
                .filter(|t| t.is_valid(row))
                .map_or(0, |t| t.value(row));
            each(Event {
                user: users.value(row),
                item: items.value(row),
                weight,
                time,
            });
        }
        Ok(())
    }
}

fn required(schema: &Schema, name: &str, option: &str) -> Result<usize> {
    schema.index_of(name).map_err(|_| {
        Error::UndefinedColumn(format!(
            "column \"{name}\" does not exist in the training source (set it with {option} = '…')"
        ))
    })
}

fn optional(
    schema: &Schema,
    given: Option<&str>,
    default: &str,
    option: &str,
) -> Result<Option<usize>> {
    match given {
        Some(name) => required(schema, name, option).map(Some),
        None => Ok(schema.index_of(default).ok()),
    }
}

fn id_type(schema: &Schema, index: usize, name: &str) -> Result<IdType> {
    match schema.field(index).data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(IdType::Text),
        t if t.is_integer() => Ok(IdType::BigInt),
        other => Err(Error::DatatypeMismatch(format!(
            "column \"{name}\" is {other}; ids must be text or integers"
        ))),
    }
}

fn text_column(array: &ArrayRef) -> Result<StringArray> {
    let text = cast(array, &DataType::Utf8)?;
    Ok(text.as_string::<i32>().clone())
}
