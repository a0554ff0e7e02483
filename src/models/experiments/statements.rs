//! Running CREATE, DROP, STOP and PROMOTE EXPERIMENT. Creating, stopping and promoting change
//! what a model's users are served, so they take the model's TRAIN privilege (as ALTER MODEL
//! does); dropping takes the experiment's owner or a superuser.

use crate::clock::now_micros;
use crate::engine::{Command, Context, Outcome};
use crate::error::{Error, Result};
use crate::models::experiments::parser::{CreateExperiment, ExperimentStatement};
use crate::models::experiments::{Arm, Experiment, Outcome as Events, State};
use crate::models::policy::interval_millis;
use crate::models::registry::{ModelEntry, Pin};
use crate::roles::{Actor, Object, Privilege, Users};
use crate::schema::TableDef;
use crate::sql::notices::Notice;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use std::collections::HashSet;

#[async_trait]
impl Command for ExperimentStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let experiments = cx.engine.experiments();
        match self {
            ExperimentStatement::Create(create) => {
                let experiment = new_experiment(cx, create)?;
                cx.engine.impressions().table()?;
                if !experiments
                    .records
                    .create(experiment, create.if_not_exists)?
                {
                    cx.notices.send(Notice::with_code(
                        "42710",
                        format!("experiment \"{}\" already exists, skipping", create.name),
                    ));
                }
                Ok(Outcome::done("CREATE EXPERIMENT"))
            }
            ExperimentStatement::Drop { name, if_exists } => {
                let users = cx.engine.users();
                let dropped = experiments.records.drop_checked(name, *if_exists, |e| {
                    let owner = e.owner.as_deref().map(|o| Actor::Role(o.to_string()));
                    match users.is_superuser(cx.actor) || owner.as_ref() == Some(cx.actor) {
                        true => Ok(()),
                        false => Err(Error::MustBeOwner(format!("experiment {name}"))),
                    }
                })?;
                if !dropped {
                    cx.notices.send(Notice::info(format!(
                        "experiment \"{name}\" does not exist, skipping"
                    )));
                }
                Ok(Outcome::done("DROP EXPERIMENT"))
            }
            ExperimentStatement::Stop { name } => {
                end(cx, name, None)?;
                Ok(Outcome::done("STOP EXPERIMENT"))
            }
            ExperimentStatement::Promote { name, arm } => {
                end(cx, name, Some(arm))?;
                Ok(Outcome::done("PROMOTE EXPERIMENT"))
            }
        }
    }
}

/// Ends the running experiment `name`: with `promote`, the version of that arm becomes the
/// model's active one first.
fn end(cx: &Context<'_>, name: &str, promote: Option<&str>) -> Result<()> {
    let experiments = cx.engine.experiments();
    let found = experiments.get(name);
    let experiment = found
        .ok_or_else(|| Error::UndefinedObject(format!("experiment \"{name}\" does not exist")))?;
    let model = &experiment.model;
    cx.engine
        .users()
        .check(cx.actor, &Object::model(model), Privilege::Train)?;
    experiments.records.update(name, |experiment| {
        if experiment.state != State::Running {
            return Err(Error::ObjectNotInPrerequisiteState(format!(
                "experiment \"{name}\" has ended"
            )));
        }
        if let Some(arm) = promote {
            let found = experiment.arms.iter().find(|a| a.alias == arm);
            let arm = found.ok_or_else(|| {
                Error::UndefinedObject(format!("experiment \"{name}\" has no arm \"{arm}\""))
            })?;
            let registry = cx.engine.models();
            let version = registry.get(model)?.require(&Experiment::pin(arm))?.version;
            registry.set_active(model, version)?;
            experiment.promoted = Some(arm.alias.clone());
        }
        experiment.state = match promote {
            Some(_) => State::Promoted,
            None => State::Stopped,
        };
        experiment.ended_micros = Some(now_micros());
        Ok(())
    })?;
    Ok(())
}

/// The experiment `create` describes, checked: the model and its aliases exist, the caller
/// may change what the model serves, and the outcome table has the columns named.
fn new_experiment(cx: &Context<'_>, create: &CreateExperiment) -> Result<Experiment> {
    let name = &create.name;
    let registry = cx.engine.models();
    if registry.contains(name) {
        return Err(Error::DuplicateObject(format!(
            "\"{name}\" is a model: an experiment takes the place of a model's name in recommend()"
        )));
    }
    let entry = registry.get(&create.model)?;
    let users = cx.engine.users();
    users.check(cx.actor, &Object::model(&create.model), Privilege::Train)?;
    let mut seen = HashSet::new();
    let mut arms = Vec::new();
    for (alias, weight) in &create.arms {
        if !seen.insert(alias.clone()) {
            return Err(Error::DuplicateObject(format!(
                "arm \"{alias}\" is listed twice"
            )));
        }
        let arm = Arm {
            alias: alias.clone(),
            weight: *weight,
        };
        entry.require(&Experiment::pin(&arm))?;
        arms.push(arm);
    }
    let mut options = Options::default();
    for (option, value) in &create.options {
        match option.as_str() {
            "window" => options.window = Some(value.clone()),
            "success" => options.success = Some(value.clone()),
            "events" => options.events = Some(value.clone()),
            "user_column" => options.user_column = Some(value.clone()),
            "item_column" => options.item_column = Some(value.clone()),
            "time_column" => options.time_column = Some(value.clone()),
            "event_column" => options.event_column = Some(value.clone()),
            other => {
                return Err(Error::InvalidParameter(format!(
                    "unrecognized experiment option \"{other}\" (window, success, events, \
                     user_column, item_column, time_column, event_column)"
                )));
            }
        }
    }
    let window = options.window.clone().unwrap_or_else(|| "1 hour".into());
    let window_millis = interval_millis("window", &window)?
        .ok_or_else(|| Error::InvalidParameter("window must be longer than zero".into()))?;
    let outcome = outcome(cx, &entry, &options)?;
    Ok(Experiment {
        name: name.clone(),
        model: create.model.clone(),
        arms,
        salt: create.salt.clone().unwrap_or_else(|| name.clone()),
        window_micros: (window_millis as i64).saturating_mul(1000),
        window,
        success: options.success,
        outcome,
        state: State::Running,
        promoted: None,
        owner: Users::owner_for(cx.actor).map(str::to_string),
        created_micros: now_micros(),
        ended_micros: None,
    })
}

#[derive(Default)]
struct Options {
    window: Option<String>,
    success: Option<String>,
    events: Option<String>,
    user_column: Option<String>,
    item_column: Option<String>,
    time_column: Option<String>,
    event_column: Option<String>,
}

/// Where the events that follow impressions are: the `events` table or, by default, the
/// source table of the model's active version, with its user and item columns.
fn outcome(cx: &Context<'_>, entry: &ModelEntry, options: &Options) -> Result<Events> {
    let version = entry.require(&Pin::Active)?;
    let depends = &version.depends_on;
    let table = match (&options.events, depends.tables.as_slice()) {
        (Some(table), _) => table.clone(),
        (None, [table]) => table.clone(),
        (None, _) => {
            return Err(Error::InvalidParameter(format!(
                "model \"{}\" is trained from a query: name the table of outcome events with \
                 events = 'table'",
                entry.record.name
            )));
        }
    };
    let def = cx
        .engine
        .table_def(&table)
        .ok_or_else(|| Error::UndefinedTable(table.clone()))?;
    let same_table = options.events.is_none();
    let default = |given: &Option<String>, from_model: &str, fallback: &str| {
        given.clone().unwrap_or_else(|| match same_table {
            true => from_model.to_string(),
            false => fallback.to_string(),
        })
    };
    let time_default = version
        .params
        .get("time_column")
        .map_or("ts", |c| c.as_str());
    let outcome = Events {
        table,
        user_column: default(&options.user_column, &depends.user_column, "user_id"),
        item_column: default(&options.item_column, &depends.item_column, "item_id"),
        time_column: default(&options.time_column, time_default, "ts"),
        event_column: match &options.event_column {
            Some(column) => Some(column.clone()),
            None => has_column(&def, "event_type").then(|| "event_type".to_string()),
        },
    };
    let required = [
        Some(&outcome.user_column),
        Some(&outcome.item_column),
        Some(&outcome.time_column),
        outcome.event_column.as_ref(),
    ];
    for column in required.into_iter().flatten() {
        if !has_column(&def, column) {
            return Err(Error::UndefinedColumn(format!("{}.{column}", def.name)));
        }
    }
    if options.success.is_some() && outcome.event_column.is_none() {
        return Err(Error::InvalidParameter(format!(
            "success names an event type, and \"{}\" has no event_type column: name it with \
             event_column = 'column'",
            def.name
        )));
    }
    Ok(outcome)
}

fn has_column(def: &TableDef, name: &str) -> bool {
    def.columns.iter().any(|c| c.name == name)
}
