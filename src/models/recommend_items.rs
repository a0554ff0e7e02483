//! `recommend_items(model, user, k)`: the scalar form of `recommend` for many users in one
//! statement (the counterpart of BigQuery's ML.RECOMMEND over a table). It returns each row's
//! ranked item ids as a list, which `unnest` expands:
//!
//! ```sql
//! SELECT user_id, unnest(recommend_items('recs', user_id, 10)) AS item_id FROM active_users;
//! ```
//!
//! A scalar rather than a table function because it takes a column: DataFusion plans table
//! function arguments without a row context, and a scalar composes with joins and filters.

use crate::error::{Error, Result};
use crate::ml::TrainedModel;
use crate::models::ModelRegistry;
use crate::models::registry::IdType;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Builder, ListBuilder, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

/// The `recommend_items` function over `registry`.
#[derive(Debug)]
pub struct RecommendItems {
    registry: Arc<ModelRegistry>,
    signature: Signature,
}

impl RecommendItems {
    /// `recommend_items` serving the active versions of `registry`.
    pub fn new(registry: Arc<ModelRegistry>) -> Self {
        RecommendItems {
            registry,
            signature: Signature::any(3, Volatility::Volatile),
        }
    }

    /// The item id type of the model named by a constant first argument (text otherwise).
    fn item_type(&self, model: Option<&ScalarValue>) -> DataType {
        let name = match model {
            Some(ScalarValue::Utf8(Some(name))) | Some(ScalarValue::Utf8View(Some(name))) => name,
            _ => return DataType::Utf8,
        };
        match self
            .registry
            .get(name)
            .ok()
            .and_then(|m| m.active().map(|v| v.item_type))
        {
            Some(IdType::BigInt) => DataType::Int64,
            _ => DataType::Utf8,
        }
    }
}

impl PartialEq for RecommendItems {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for RecommendItems {}

impl std::hash::Hash for RecommendItems {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "recommend_items".hash(state);
    }
}

impl ScalarUDFImpl for RecommendItems {
    fn name(&self) -> &str {
        "recommend_items"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(list_of(DataType::Utf8))
    }

    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> datafusion::common::Result<FieldRef> {
        let item_type = self.item_type(args.scalar_arguments.first().copied().flatten());
        Ok(Arc::new(Field::new(self.name(), list_of(item_type), true)))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let integer_items = matches!(
            args.return_field.data_type(),
            DataType::List(field) if field.data_type() == &DataType::Int64
        );
        let run = || -> Result<ColumnarValue> {
            let arrays: Vec<ArrayRef> = args
                .args
                .iter()
                .map(|a| a.to_array(rows))
                .collect::<datafusion::common::Result<_>>()?;
            let models = cast(&arrays[0], &DataType::Utf8)?;
            let users = cast(&arrays[1], &DataType::Utf8)?;
            let ks = cast(&arrays[2], &DataType::Int64)?;
            let (models, users) = (models.as_string::<i32>(), users.as_string::<i32>());
            let ks = ks.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            // each row's model (by position in `models_used`), user index and k
            let mut models_used: Vec<(String, Arc<TrainedModel>)> = Vec::new();
            let mut requests: Vec<Option<(usize, Option<usize>, usize)>> = Vec::with_capacity(rows);
            for row in 0..rows {
                if models.is_null(row) || users.is_null(row) || ks.is_null(row) {
                    requests.push(None);
                    continue;
                }
                let k = ks.value(row);
                if k <= 0 {
                    return Err(Error::InvalidParameter(format!(
                        "recommend_items(): k must be a positive integer, not {k}"
                    )));
                }
                let name = models.value(row);
                let at = match models_used.iter().position(|(n, _)| n == name) {
                    Some(at) => at,
                    None => {
                        models_used.push((name.to_string(), self.registry.active(name)?.1));
                        models_used.len() - 1
                    }
                };
                let user = models_used[at].1.user_index(users.value(row));
                requests.push(Some((at, user, k as usize)));
            }
            // scored a model at a time, many users at once
            let mut ranked: Vec<Vec<(usize, f32)>> = vec![Vec::new(); rows];
            for (at, (_, model)) in models_used.iter().enumerate() {
                let (positions, asked): (Vec<usize>, Vec<(Option<usize>, usize)>) =
                    (requests.iter().enumerate())
                        .filter_map(|(row, r)| r.filter(|r| r.0 == at).map(|r| (row, (r.1, r.2))))
                        .unzip();
                for (row, list) in positions.into_iter().zip(model.recommend_many(&asked)) {
                    ranked[row] = list;
                }
            }
            let mut text = ListBuilder::new(StringBuilder::new());
            let mut integers = ListBuilder::new(Int64Builder::new());
            for (request, list) in requests.iter().zip(ranked) {
                let Some((at, _, _)) = request else {
                    text.append_null();
                    integers.append_null();
                    continue;
                };
                let model = &models_used[*at].1;
                for (item, _) in list {
                    let id = &model.item_ids[item];
                    text.values().append_value(id);
                    integers.values().append_option(id.parse::<i64>().ok());
                }
                text.append(true);
                integers.append(true);
            }
            let list: ArrayRef = if integer_items {
                Arc::new(integers.finish())
            } else {
                Arc::new(text.finish())
            };
            Ok(ColumnarValue::Array(list))
        };
        run().map_err(Error::into_datafusion)
    }
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}
