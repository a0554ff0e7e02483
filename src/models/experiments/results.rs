//! `experiment_results('homepage')`: per arm, the impressions logged, the users shown them,
//! the successes that followed (an event of the same user on the same item within the
//! experiment's window after the impression, of the `success` type when one is set), the
//! click-through rate (successes per impression), the users converted (with at least one
//! success) and the conversion rate; and for every arm after the first, its difference in
//! conversion from the first (the control) with a 95 % confidence interval (Wald, unpooled)
//! and the two-sided p-value of a two-proportion z-test (pooled). The unit is the user, as
//! the split assigns users, not impressions, to arms. `experiment_arm('homepage', user)`
//! says which arm a user gets.

use crate::error::{Error, Result};
use crate::models::experiments::Experiment;
use crate::models::experiments::impressions::TABLE;
use crate::models::ranking_table::Serving;
use crate::sql::arguments;
use crate::sql::config::TasteConfig;
use crate::sql::execution_table::{Answer, ExecutionTable, Planning};
use crate::sql::names::{quote_literal, quoted_ident};
use crate::sql::query_arguments::run_plan;
use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use std::collections::HashMap;
use std::sync::Arc;

/// Registers `experiment_results` and `experiment_arm` on `ctx`.
pub fn register_functions(ctx: &SessionContext, serving: &Serving) {
    ctx.register_udtf(
        "experiment_results",
        Arc::new(ResultsFunction {
            serving: serving.clone(),
        }),
    );
    ctx.register_udf(ScalarUDF::from(ArmFunction {
        serving: serving.clone(),
        signature: Signature::any(2, Volatility::Volatile),
    }));
}

#[derive(Debug)]
struct ResultsFunction {
    serving: Serving,
}

impl TableFunctionImpl for ResultsFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let run = || -> Result<Arc<dyn TableProvider>> {
            let [name] = args.exprs() else {
                return Err(Error::InvalidParameter(
                    "experiment_results() takes the experiment's name".into(),
                ));
            };
            let name = arguments::constant("experiment_results", name)?;
            let name = arguments::text("experiment_results", "experiment", &name)?;
            experiment(&self.serving, &name)?;
            Ok(ExecutionTable::of(Results {
                serving: self.serving.clone(),
                name,
            }))
        };
        run().map_err(Error::into_datafusion)
    }
}

fn experiment(serving: &Serving, name: &str) -> Result<Experiment> {
    (serving.experiments.get(name))
        .ok_or_else(|| Error::UndefinedObject(format!("experiment \"{name}\" does not exist")))
}

/// The results of one experiment, computed when the query runs.
#[derive(Debug)]
struct Results {
    serving: Serving,
    name: String,
}

/// What the log holds for one arm.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    impressions: i64,
    users: i64,
    successes: i64,
    converted: i64,
}

#[async_trait]
impl Answer for Results {
    fn schema(&self) -> SchemaRef {
        let count = |name: &str| Field::new(name, DataType::Int64, false);
        let rate = |name: &str| Field::new(name, DataType::Float64, true);
        Arc::new(Schema::new(vec![
            Field::new("arm", DataType::Utf8, false),
            Field::new("share", DataType::Float64, false),
            count("impressions"),
            count("users"),
            count("successes"),
            rate("ctr"),
            count("converted_users"),
            rate("conversion"),
            rate("difference"),
            rate("ci_low"),
            rate("ci_high"),
            rate("p_value"),
        ]))
    }

    fn parameter_types(&self) -> Vec<(String, DataType)> {
        Vec::new()
    }

    fn answers_without_planning(&self) -> bool {
        false
    }

    async fn answer(&self, _: &TasteConfig, planning: Planning<'_>) -> Result<RecordBatch> {
        let experiment = experiment(&self.serving, &self.name)?;
        self.serving.impressions.flush().await?;
        let sql = counts_query(&experiment);
        let state = planning.state();
        let plan = state.create_logical_plan(&sql).await?;
        let mut counts: HashMap<String, Counts> = HashMap::new();
        for batch in run_plan(&*state, &plan).await? {
            let arms = cast(batch.column(0), &DataType::Utf8)?;
            let arms = arms.as_string::<i32>();
            let number = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let [impressions, users, successes, converted] = [1, 2, 3, 4].map(number);
            for row in 0..batch.num_rows() {
                counts.insert(
                    arms.value(row).to_string(),
                    Counts {
                        impressions: impressions.value(row),
                        users: users.value(row),
                        successes: successes.value(row),
                        converted: converted.value(row),
                    },
                );
            }
        }
        let rows: Vec<Counts> = (experiment.arms.iter())
            .map(|arm| counts.get(&arm.alias).copied().unwrap_or_default())
            .collect();
        let control = rows.first().copied().unwrap_or_default();
        let compared: Vec<Option<Comparison>> = (rows.iter().enumerate())
            .map(|(i, arm)| (i > 0).then(|| compare(&control, arm)).flatten())
            .collect();
        let ratio = |num: i64, den: i64| (den > 0).then(|| num as f64 / den as f64);
        let count = |f: fn(&Counts) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let compared_column = |f: fn(&Comparison) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter(
                compared.iter().map(|c| c.as_ref().map(f)),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                experiment.arms.iter().map(|a| &a.alias),
            )),
            Arc::new(Float64Array::from_iter_values(
                experiment.arms.iter().map(|a| experiment.share(a)),
            )),
            count(|c| c.impressions),
            count(|c| c.users),
            count(|c| c.successes),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|c| ratio(c.successes, c.impressions)),
            )),
            count(|c| c.converted),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|c| ratio(c.converted, c.users)),
            )),
            compared_column(|c| c.difference),
            compared_column(|c| c.ci_low),
            compared_column(|c| c.ci_high),
            compared_column(|c| c.p_value),
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// The query counting, per arm, the impressions of `experiment`, their users, the successes
/// that followed within the window, and the users with one.
fn counts_query(experiment: &Experiment) -> String {
    let judged = judged_impressions(experiment, "arm");
    format!(
        "{judged} SELECT arm, count(*) AS impressions, count(DISTINCT user_id) AS users, \
         sum(CASE WHEN success THEN 1 ELSE 0 END) AS successes, \
         count(DISTINCT CASE WHEN success THEN user_id END) AS converted \
         FROM judged GROUP BY arm"
    )
}

/// A `WITH` clause whose `judged` holds the impressions of `experiment` (request_id,
/// user_id, item_id, shown_at and `columns`), each with `success`: whether an event of the
/// same user on the same item (of the success type, if set) came within the window after it.
pub(super) fn judged_impressions(experiment: &Experiment, columns: &str) -> String {
    let outcome = &experiment.outcome;
    let column = |name: &str| format!("e.{}", quoted_ident(name));
    let success = match (&experiment.success, &outcome.event_column) {
        (Some(kind), Some(event_column)) => {
            format!(" AND {} = {}", column(event_column), quote_literal(kind))
        }
        _ => String::new(),
    };
    let time = column(&outcome.time_column);
    format!(
        "WITH shown AS (SELECT request_id, user_id, item_id, shown_at, {columns} FROM {TABLE} \
         WHERE experiment = {name}), \
         hits AS (SELECT DISTINCT s.request_id, s.item_id FROM shown s JOIN {events} e \
         ON CAST({user} AS TEXT) = s.user_id AND CAST({item} AS TEXT) = s.item_id \
         AND {time} > s.shown_at AND {time} <= s.shown_at + INTERVAL '{window} microseconds'\
         {success}), \
         judged AS (SELECT s.*, h.request_id IS NOT NULL AS success FROM shown s \
         LEFT JOIN hits h ON h.request_id = s.request_id AND h.item_id = s.item_id)",
        name = quote_literal(&experiment.name),
        events = quoted_ident(&outcome.table),
        user = column(&outcome.user_column),
        item = column(&outcome.item_column),
        window = experiment.window_micros,
    )
}

/// An arm's conversion against the control's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Comparison {
    difference: f64,
    ci_low: f64,
    ci_high: f64,
    p_value: f64,
}

/// The z of a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// `arm`'s conversion minus `control`'s, with the Wald interval and the pooled z-test's
/// p-value; `None` when either arm has no users.
fn compare(control: &Counts, arm: &Counts) -> Option<Comparison> {
    if control.users == 0 || arm.users == 0 {
        return None;
    }
    let (na, nb) = (control.users as f64, arm.users as f64);
    let (pa, pb) = (control.converted as f64 / na, arm.converted as f64 / nb);
    let difference = pb - pa;
    let se = (pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb).sqrt();
    let pooled = (control.converted + arm.converted) as f64 / (na + nb);
    let se0 = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    let p_value = match se0 > 0.0 {
        true => libm::erfc((difference / se0).abs() / std::f64::consts::SQRT_2),
        false => 1.0,
    };
    Some(Comparison {
        difference,
        ci_low: difference - Z_95 * se,
        ci_high: difference + Z_95 * se,
        p_value,
    })
}

/// `experiment_arm('homepage', user)`: the arm the user gets (NULL for a NULL user).
#[derive(Debug)]
struct ArmFunction {
    serving: Serving,
    signature: Signature,
}

impl PartialEq for ArmFunction {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ArmFunction {}

impl std::hash::Hash for ArmFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "experiment_arm".hash(state);
    }
}

impl ScalarUDFImpl for ArmFunction {
    fn name(&self) -> &str {
        "experiment_arm"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let run = || -> Result<ColumnarValue> {
            let arrays: Vec<ArrayRef> = (args.args.iter())
                .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Utf8)?))
                .collect::<Result<_>>()?;
            let [names, users] = [&arrays[0], &arrays[1]].map(|a| a.as_string::<i32>());
            let mut current: Option<Experiment> = None;
            let mut arms = Vec::with_capacity(rows);
            for row in 0..rows {
                if names.is_null(row) || users.is_null(row) {
                    arms.push(None);
                    continue;
                }
                let name = names.value(row);
                if current.as_ref().is_none_or(|e| e.name != name) {
                    current = Some(experiment(&self.serving, name)?);
                }
                let arm = current.as_ref().map(|e| e.arm_for(users.value(row)));
                arms.push(arm.map(|a| a.alias.clone()));
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(arms))))
        };
        run().map_err(Error::into_datafusion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_difference_has_its_interval_and_p_value() {
        // 1,000 users each: 10 % against 13 % converted
        let control = Counts {
            users: 1000,
            converted: 100,
            ..Counts::default()
        };
        let arm = Counts {
            users: 1000,
            converted: 130,
            ..Counts::default()
        };
        let c = compare(&control, &arm).unwrap();
        assert!((c.difference - 0.03).abs() < 1e-12);
        // se = sqrt(.1 * .9 / 1000 + .13 * .87 / 1000) = 0.0142513;
        // pooled: sqrt(.115 * .885 * 2 / 1000) = 0.0142671, z = 2.10274, p = 0.035488
        assert!(
            (c.ci_low - (0.03 - Z_95 * 0.014_251_3)).abs() < 1e-6,
            "{c:?}"
        );
        assert!((c.p_value - 0.035_488).abs() < 1e-5, "{c:?}");
        // the same rates: no difference, p = 1
        let same = compare(&control, &control).unwrap();
        assert_eq!(same.difference, 0.0);
        assert!((same.p_value - 1.0).abs() < 1e-12);
        assert!(compare(&control, &Counts::default()).is_none());
    }
}
