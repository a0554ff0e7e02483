//! Running the model statements: TRAIN MODEL reads its source through DataFusion, trains on a
//! blocking thread (reporting every iteration as a notice) and registers a new version; the
//! others read or change the registry.

use crate::blocking;
use crate::clock::now_micros;
use crate::engine::{Command, Context, Engine, Outcome};
use crate::error::{Error, Result};
use crate::ml::model::Scorer;
use crate::ml::{Algorithm, Interactions, TrainOptions, model_bytes, train};
use crate::models::events::EventColumns;
use crate::models::experiments::replay::{replay, replay_schema};
use crate::models::parser::{ModelStatement, TrainModel, TrainSource};
use crate::models::policy::{Promote, RetrainPolicy};
use crate::models::registry::{
    Dependencies, IdType, LogLine, ModelEntry, ModelVersion, Phase, Pin,
};
use crate::models::search::Search;
use crate::models::system_tables::{models_batch, models_schema, versions_batch, versions_schema};
use crate::roles::{Actor, Object, Privilege, Users};
use crate::sql::notices::Notice;
use crate::sql::parser::parse_query;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::logical_expr::LogicalPlan;
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[async_trait]
impl Command for ModelStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        match self {
            ModelStatement::Show => Some(models_schema()),
            ModelStatement::Evaluate {
                impressions_of: Some(_),
                ..
            } => Some(replay_schema()),
            ModelStatement::Train(_) | ModelStatement::Evaluate { .. } => Some(versions_schema()),
            ModelStatement::Drop { .. }
            | ModelStatement::SetActiveVersion { .. }
            | ModelStatement::SetAlias { .. }
            | ModelStatement::DropAlias { .. }
            | ModelStatement::SetOptions { .. }
            | ModelStatement::ResetOptions { .. } => None,
        }
    }

    fn read_only(&self) -> bool {
        matches!(self, ModelStatement::Show)
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let (engine, notices) = (cx.engine, cx.notices);
        let registry = engine.models();
        let users = engine.users();
        match self {
            ModelStatement::Train(train) => train_model(cx, train, Start::Statement).await,
            ModelStatement::Drop { name, if_exists } => {
                let object = Object::model(name);
                if registry.contains(name) {
                    users.check_owner(cx.actor, &object)?;
                    let experiments = engine.experiments().on_model(name);
                    if let Some(experiment) = experiments.first() {
                        return Err(Error::DependentObjects(format!(
                            "cannot drop model {name} because experiment {} depends on it",
                            experiment.name
                        )));
                    }
                }
                let dropped = registry.drop_model(name, *if_exists)?;
                users.grants().dropped(&object)?;
                if !dropped {
                    notices.send(Notice::info(format!(
                        "model \"{name}\" does not exist, skipping"
                    )));
                }
                Ok(Outcome::done("DROP MODEL"))
            }
            ModelStatement::Show => Outcome::batch(models_batch(registry)?),
            ModelStatement::Evaluate {
                name,
                version,
                impressions_of,
            } => {
                let entry = registry.get(name)?;
                users.check(cx.actor, &Object::model(name), Privilege::Select)?;
                let chosen = match version {
                    Some(number) => vec![entry.require(&Pin::Version(*number))?.clone()],
                    None => entry.active().cloned().into_iter().collect::<Vec<_>>(),
                };
                if let (Some(experiment), Some(version)) = (impressions_of, chosen.first()) {
                    return Outcome::batch(replay(cx, version, experiment).await?);
                }
                if chosen.first().is_some_and(|v| v.metrics.is_none()) {
                    notices.send(Notice::info(format!(
                        "model \"{name}\" was trained with holdout = 0: it has no metrics"
                    )));
                }
                Outcome::batch(versions_batch(&chosen, &entry.record, registry)?)
            }
            ModelStatement::SetActiveVersion { name, version } => {
                registry.get(name)?;
                users.check(cx.actor, &Object::model(name), Privilege::Train)?;
                registry.set_active(name, *version)?;
                Ok(Outcome::done("ALTER MODEL"))
            }
            ModelStatement::SetAlias {
                name,
                alias,
                version,
            } => {
                registry.get(name)?;
                users.check(cx.actor, &Object::model(name), Privilege::Train)?;
                registry.set_alias(name, alias, *version)?;
                Ok(Outcome::done("ALTER MODEL"))
            }
            ModelStatement::DropAlias {
                name,
                alias,
                if_exists,
            } => {
                registry.get(name)?;
                users.check(cx.actor, &Object::model(name), Privilege::Train)?;
                let running = engine.experiments().running_on(name);
                if let Some(experiment) = running
                    .into_iter()
                    .find(|e| e.arms.iter().any(|a| &a.alias == alias))
                {
                    return Err(Error::DependentObjects(format!(
                        "cannot drop alias {alias} of model {name} because running experiment {} \
                         serves it",
                        experiment.name
                    )));
                }
                if !registry.drop_alias(name, alias, *if_exists)? {
                    notices.send(Notice::info(format!(
                        "model \"{name}\" has no alias \"{alias}\", skipping"
                    )));
                }
                Ok(Outcome::done("ALTER MODEL"))
            }
            ModelStatement::SetOptions { name, options } => {
                let entry = registry.get(name)?;
                users.check(cx.actor, &Object::model(name), Privilege::Train)?;
                let policy = entry.record.policy.set(options)?;
                set_policy(cx, &entry, policy)
            }
            ModelStatement::ResetOptions { name, options } => {
                let entry = registry.get(name)?;
                users.check(cx.actor, &Object::model(name), Privilege::Train)?;
                let policy = entry.record.policy.reset(options)?;
                set_policy(cx, &entry, policy)
            }
        }
    }
}

/// Stores `policy` for `entry`'s model, to run as the role that set it, after checking that
/// the model's newest version can follow it.
fn set_policy(cx: &Context<'_>, entry: &ModelEntry, mut policy: RetrainPolicy) -> Result<Outcome> {
    let name = &entry.record.name;
    let newest = entry.versions.last();
    if policy.after_events.is_some() && newest.is_none_or(|v| v.depends_on.watermarks.is_empty()) {
        return Err(Error::FeatureNotSupported(format!(
            "retrain_after_events counts the rows written to a source table without primary \
             key, and the source of model \"{name}\" has none"
        )));
    }
    if policy.promote == Promote::IfBetter && newest.is_some_and(|v| v.metrics.is_none()) {
        return Err(Error::InvalidParameter(format!(
            "promote = 'if_better' compares holdout metrics, and model \"{name}\" is trained \
             with holdout = 0"
        )));
    }
    policy.run_as = Users::owner_for(cx.actor).map(str::to_string);
    cx.engine.models().set_policy(name, policy)?;
    Ok(Outcome::done("ALTER MODEL"))
}

/// What started a training run, which decides whether its version becomes active.
pub enum Start<'a> {
    /// A `TRAIN MODEL` statement: its `activate` option decides.
    Statement,
    /// The model's retraining policy, for the reason given.
    Policy {
        /// Why the run is due, in words.
        trigger: String,
        /// The policy (its `promote` decides).
        policy: &'a RetrainPolicy,
    },
}

/// TRAIN MODEL: reads the source, trains on a blocking thread (a notice per iteration),
/// builds the item graphs of factor models, and registers the new version. Training a model
/// that exists takes its TRAIN privilege; whoever trains a new one owns it.
pub async fn train_model(
    cx: &Context<'_>,
    statement: &TrainModel,
    start: Start<'_>,
) -> Result<Outcome> {
    let started = Instant::now();
    let trained = Box::pin(train_version(cx, statement, start)).await;
    let seconds = started.elapsed().as_secs_f64();
    cx.engine
        .metrics()
        .training(&statement.name, trained.is_ok(), seconds);
    trained
}

async fn train_version(
    cx: &Context<'_>,
    statement: &TrainModel,
    start: Start<'_>,
) -> Result<Outcome> {
    let engine = cx.engine;
    let object = Object::model(&statement.name);
    let existed = engine.models().contains(&statement.name);
    if existed {
        engine.users().check(cx.actor, &object, Privilege::Train)?;
    } else if engine.experiments().get(&statement.name).is_some() {
        return Err(Error::DuplicateObject(format!(
            "\"{}\" is an experiment: recommend() takes its name in place of a model's",
            statement.name
        )));
    }
    let algorithm = Algorithm::named(&statement.algorithm)?;
    let search = Search::new(&statement.options, &statement.lists)?;
    let trials = match &search {
        Some(search) => search.trials.clone(),
        None => vec![statement.options.clone()],
    };
    let options: Vec<TrainOptions> = (trials.iter())
        .map(|given| TrainOptions::parse(algorithm, given))
        .collect::<Result<_>>()?;
    if let Some(searched) = statement
        .lists
        .iter()
        .find(|(o, _)| SOURCE_OPTIONS.contains(&o.as_str()))
    {
        return Err(Error::InvalidParameter(format!(
            "{} says how the source's rows are read, which all trials share: it cannot be searched",
            searched.0
        )));
    }
    if search.is_some() && options.iter().any(|o| o.holdout <= 0.0) {
        return Err(Error::InvalidParameter(
            "a search compares the trials' holdout metrics: holdout must be above 0".into(),
        ));
    }
    let planning = Instant::now();
    let (mut rows, tables, watermarks) = training_rows(engine, &statement.source, cx.actor).await?;
    let (data, user_type, item_type, aggregating) = interactions(&mut rows, &options[0]).await?;
    drop(rows);
    let read = Read {
        user_type,
        item_type,
        tables,
        watermarks,
        // planning the source, and waiting for its rows
        phases: vec![
            Phase {
                name: "read source".into(),
                seconds: planning.elapsed().as_secs_f64() - aggregating,
            },
            Phase {
                name: "aggregate".into(),
                seconds: aggregating,
            },
        ],
    };
    let registry = engine.models();
    let numbers = match search {
        None => {
            let options = (options.into_iter().next())
                .ok_or_else(|| Error::Internal("TRAIN without options".into()))?;
            let fitted = fit(cx, statement, data, options, &read, &start, None).await;
            if fitted.is_ok() && !existed {
                let owner = Users::owner_for(cx.actor);
                engine.users().grants().created(object, owner)?;
            }
            vec![fitted?.0]
        }
        Some(search) => {
            let found = search_trials(cx, statement, &search, data, options, &read).await;
            if !existed && registry.contains(&statement.name) {
                let owner = Users::owner_for(cx.actor);
                engine.users().grants().created(object, owner)?;
            }
            found?
        }
    };
    let entry = registry.get(&statement.name)?;
    let trained: Vec<_> = (numbers.iter())
        .filter_map(|n| entry.versions.iter().find(|v| v.version == *n).cloned())
        .collect();
    if let [version] = trained.as_slice() {
        cx.notices.send(Notice::info(phases_notice(version)));
    }
    Outcome::batch(versions_batch(&trained, &entry.record, registry)?)
}

/// Options that say how the source's rows become events: read once, for every trial.
const SOURCE_OPTIONS: [&str; 5] = [
    "user_column",
    "item_column",
    "weight_column",
    "time_column",
    "event_weights",
];

/// What reading the source gave, besides the events.
struct Read {
    user_type: IdType,
    item_type: IdType,
    tables: Vec<String>,
    watermarks: BTreeMap<String, u64>,
    phases: Vec<Phase>,
}

/// Runs the trials of `search` on `data`, as many at once as `threads` allows (each trial
/// with its share of the threads), a NOTICE as each ends; makes the best one active when
/// TRAIN's `activate` says so. Returns the versions in trial order.
async fn search_trials(
    cx: &Context<'_>,
    statement: &TrainModel,
    search: &Search,
    data: Interactions,
    options: Vec<TrainOptions>,
    read: &Read,
) -> Result<Vec<u32>> {
    let total = options.len();
    let threads = match options.first().map_or(0, |o| o.threads) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let at_once = threads.clamp(1, total.max(1));
    let activate = options.first().is_none_or(|o| o.activate);
    let data = &data;
    let fits = (options.into_iter().enumerate()).map(|(i, mut trial)| {
        trial.threads = (threads / at_once).max(1);
        async move {
            let started = Instant::now();
            let start = Start::Statement;
            let (number, metrics) = fit(
                cx,
                statement,
                data.clone(),
                trial,
                read,
                &start,
                Some((i + 1, total)),
            )
            .await?;
            let value = metrics.as_ref().map_or(f64::NAN, |m| search.score(m));
            cx.notices.send(Notice::info(format!(
                "trial {}/{total} ({}): {} {value:.4}, version {number}, {:.2} s",
                i + 1,
                Search::describe(&search.trials[i], &statement.lists),
                search.metric,
                started.elapsed().as_secs_f64()
            )));
            Ok::<_, Error>((i, number, value))
        }
    });
    let mut done: Vec<(usize, u32, f64)> = futures::stream::iter(fits)
        .buffer_unordered(at_once)
        .try_collect()
        .await?;
    done.sort_by_key(|&(i, _, _)| i);
    let best = done
        .iter()
        .filter(|(_, _, value)| value.is_finite())
        .max_by(|a, b| a.2.total_cmp(&b.2).then(b.0.cmp(&a.0)));
    if let Some(&(i, number, value)) = best {
        let registry = cx.engine.models();
        let had_active = registry.active_stamp(&statement.name);
        if activate || had_active.is_none() {
            registry.set_active(&statement.name, number)?;
        }
        cx.notices.send(Notice::info(format!(
            "best of {total} trials ({} search): trial {} ({}), version {number}, {} {value:.4}{}",
            search.kind,
            i + 1,
            Search::describe(&search.trials[i], &statement.lists),
            search.metric,
            match activate {
                true => ", now active",
                false => "",
            }
        )));
    }
    Ok(done.into_iter().map(|(_, number, _)| number).collect())
}

/// Fits one version on `data` with `options` on a blocking thread (a notice per iteration)
/// and registers it; a trial of a search (`trial`: its number and the count) is registered
/// inactive. Returns the version's number and holdout metrics.
async fn fit(
    cx: &Context<'_>,
    statement: &TrainModel,
    data: Interactions,
    options: TrainOptions,
    read: &Read,
    start: &Start<'_>,
    trial: Option<(usize, usize)>,
) -> Result<(u32, Option<crate::ml::Metrics>)> {
    let (engine, notices) = (cx.engine, cx.notices);
    let algorithm = options.algorithm;
    // The model's parameters count against the engine's memory budget while it trains.
    let pool = engine.session_context().runtime_env().memory_pool.clone();
    let reservation =
        MemoryConsumer::new(format!("TRAIN MODEL {}", statement.name)).register(&pool);
    reservation.try_grow(usize::try_from(model_bytes(&data, &options)).unwrap_or(usize::MAX))?;
    let progress_notices = notices.clone();
    let total = match algorithm {
        Algorithm::Als | Algorithm::Bpr => options.iterations,
        _ => 1,
    };
    let algorithm_name = algorithm.name();
    let training_options = options.clone();
    let ann_threshold = engine.taste_config().ann_threshold;
    let prefix = trial.map_or(String::new(), |(i, n)| format!("trial {i}/{n}: "));
    let (outcome, [events, users, items, pairs]) = blocking::run("training", move |stopped| {
        let counts = [
            data.events,
            data.users.len() as u64,
            data.items.len() as u64,
            data.pairs.len() as u64,
        ];
        // the pairs go into the model's matrices, the ids into the model
        let outcome = train(
            data,
            &training_options,
            |line| {
                progress_notices.send(Notice::info(format!(
                    "{prefix}{algorithm_name} iteration {}/{total}: loss {:.6} ({:.2} s)",
                    line.iteration, line.loss, line.seconds
                )));
            },
            &|| stopped.is_set(),
        )?;
        stopped.check()?;
        Ok::<_, Error>((outcome, counts))
    })
    .await?;
    let active = engine
        .models()
        .get(&statement.name)
        .ok()
        .and_then(|entry| entry.active().cloned());
    let (activate, trigger, promotion) = match (start, trial) {
        (_, Some((i, n))) => (false, "TRAIN".to_string(), format!("trial {i} of {n}")),
        (Start::Statement, None) => {
            let activate = options.activate || active.is_none();
            let promotion = match activate {
                true => "promoted: TRAIN",
                false => "not promoted: activate = false",
            };
            (activate, "TRAIN".to_string(), promotion.to_string())
        }
        (Start::Policy { trigger, policy }, None) => {
            let active = active.as_ref().map(|v| (v.version, v.metrics.as_ref()));
            let (activate, promotion) = policy.decide(outcome.metrics.as_ref(), active);
            (activate, trigger.clone(), promotion)
        }
    };
    let metrics = outcome.metrics;
    let version = ModelVersion {
        model: statement.name.clone(),
        version: 0,
        algorithm: algorithm.name().into(),
        params: options.given.clone(),
        source: statement.source.to_sql(),
        events,
        users,
        items,
        pairs,
        train_seconds: outcome.seconds,
        metrics,
        created_micros: now_micros(),
        user_type: read.user_type,
        item_type: read.item_type,
        depends_on: Dependencies {
            tables: read.tables.clone(),
            user_column: options.user_column.clone(),
            item_column: options.item_column.clone(),
            watermarks: read.watermarks.clone(),
        },
        trigger,
        promotion,
        phases: (read.phases.iter().cloned())
            .chain(outcome.phases.iter().map(|&(name, seconds)| Phase {
                name: name.to_string(),
                seconds,
            }))
            .collect(),
        log: outcome
            .log
            .iter()
            .map(|p| LogLine {
                iteration: p.iteration,
                loss: p.loss,
                seconds: p.seconds,
            })
            .collect(),
    };
    // A factor model version with more items than tastedb.ann_threshold is served through HNSW
    // graphs over its items, built after this statement and stored with it (exact scoring
    // answers until then); smaller ones are scored exactly (models::graphs).
    let graphs = matches!(outcome.model.scorer, Scorer::Factors { .. })
        && outcome.model.item_ids.len() > ann_threshold;
    let number = engine
        .models()
        .add_version(version, outcome.model, graphs, activate)?;
    Ok((number, metrics))
}

/// What the NOTICE at the end of TRAIN says: each phase's seconds, and the whole
/// statement's (`tastedb_training_phases` keeps them).
fn phases_notice(version: &ModelVersion) -> String {
    let phases: Vec<String> = (version.phases.iter())
        .map(|p| format!("{} {:.3} s", p.name, p.seconds))
        .collect();
    let total: f64 = version.phases.iter().map(|p| p.seconds).sum();
    format!(
        "{} version {} trained in {total:.3} s: {}",
        version.model,
        version.version,
        phases.join(", ")
    )
}

/// The rows of a training source as a stream, the relations it reads, and the row-id
/// watermarks of the stored tables among them that have no primary key (taken before the
/// rows are read).
async fn training_rows(
    engine: &Engine,
    source: &TrainSource,
    actor: &Actor,
) -> Result<(
    SendableRecordBatchStream,
    Vec<String>,
    BTreeMap<String, u64>,
)> {
    let query = match source {
        TrainSource::Table(name) => {
            parse_query(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))?
        }
        TrainSource::Query(query) => query.clone(),
    };
    let plan = engine.plan_query(query, actor).await?;
    let mut tables = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.table().to_string();
            if !tables.contains(&name) {
                tables.push(name);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    let watermarks = tables
        .iter()
        .filter_map(|name| engine.catalog().get(name))
        .filter(|table| !table.def.has_primary_key())
        .map(|table| (table.def.name.clone(), table.written_row_ids()))
        .collect();
    let stream = engine.execute_plan(plan).await?;
    Ok((stream, tables, watermarks))
}

/// Gathers (user, item, weight, time) from the source rows per the column options, batch by
/// batch as the source produces them (only the events are kept, not the rows), and sums
/// them per pair. Also returns the seconds spent aggregating.
async fn interactions(
    rows: &mut SendableRecordBatchStream,
    options: &TrainOptions,
) -> Result<(Interactions, IdType, IdType, f64)> {
    let schema = rows.schema();
    let columns = EventColumns::find(&schema, options)?;
    let (user_type, item_type) = columns.id_types(&schema, options)?;
    let mut data = Interactions::default();
    let mut aggregating = Duration::ZERO;
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        let adding = Instant::now();
        columns.for_each(&batch, options, |e| {
            data.add(e.user, e.item, e.weight, e.time)
        })?;
        aggregating += adding.elapsed();
    }
    let merging = Instant::now();
    data.merge();
    aggregating += merging.elapsed();
    Ok((data, user_type, item_type, aggregating.as_secs_f64()))
}
