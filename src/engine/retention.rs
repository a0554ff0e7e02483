//! A table's storage parameters: `ALTER TABLE [IF EXISTS] name SET (ttl = '180 days',
//! ttl_column = ts)` gives it a retention (rows older than the ttl by that column are never
//! read again and are dropped by compaction, `storage::retention`), `RESET (ttl)` takes it
//! away. `archive`, `archive_every` and `partition_by` set up the table's Parquet archive
//! (`archive::set`). Parameters that do not apply to TasteDB (`fillfactor`, …) are accepted and ignored with
//! a NOTICE, as in `CREATE TABLE … WITH (…)`.

use crate::archive;
use crate::engine::command::Family;
use crate::engine::{Command, Context, Outcome};
use crate::error::{Error, Result};
use crate::roles::Object;
use crate::schema::{ColumnType, Retention, TableDef};
use crate::sql::names;
use crate::sql::notices::Notice;
use async_trait::async_trait;
use datafusion::arrow::compute::kernels::cast_utils::{
    IntervalParseConfig, IntervalUnit, parse_interval_month_day_nano_config,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{Expr, Ident, SqlOption, Value};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use std::sync::Arc;

/// The `ALTER TABLE … SET (…)` / `RESET (…)` statement family.
pub const STATEMENTS: Family = Family {
    name: "storage parameters",
    parse: |parser| Ok(parse(parser)?.map(|s| Arc::new(s) as Arc<dyn Command>)),
};

/// `ALTER TABLE … SET (…)` or `… RESET (…)`.
#[derive(Debug)]
struct StorageParameters {
    table: String,
    if_exists: bool,
    change: Change,
}

#[derive(Debug)]
enum Change {
    /// `SET (name = value, …)`
    Set(Vec<(String, Expr)>),
    /// `RESET (name, …)`
    Reset(Vec<String>),
}

const TTL: &str = "ttl";
const TTL_COLUMN: &str = "ttl_column";
const MICROS_PER_DAY: i64 = 86_400_000_000;

fn parse(parser: &mut Parser) -> Result<Option<StorageParameters>> {
    if !is_storage_parameters(parser) {
        return Ok(None);
    }
    parser.expect_keywords(&[Keyword::ALTER, Keyword::TABLE])?;
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let _only = parser.parse_keyword(Keyword::ONLY);
    let table = names::table_name(&parser.parse_object_name(false)?)?;
    let set = parser.parse_keyword(Keyword::SET);
    if !set {
        parser.expect_keyword(Keyword::RESET)?;
    }
    parser.expect_token(&Token::LParen)?;
    let change = if set {
        let options = parser.parse_comma_separated(Parser::parse_sql_option)?;
        Change::Set(
            options
                .into_iter()
                .map(|option| match option {
                    SqlOption::KeyValue { key, value } => Ok((names::ident(&key), value)),
                    other => Err(Error::Syntax(format!(
                        "expected name = value in SET (…), found {other}"
                    ))),
                })
                .collect::<Result<_>>()?,
        )
    } else {
        let idents = parser.parse_comma_separated(|p| p.parse_identifier())?;
        Change::Reset(idents.iter().map(names::ident).collect())
    };
    parser.expect_token(&Token::RParen)?;
    Ok(Some(StorageParameters {
        table,
        if_exists,
        change,
    }))
}

/// Whether the statement at the parser is `ALTER TABLE [IF EXISTS] [ONLY] name SET|RESET (`,
/// looked at without consuming anything.
fn is_storage_parameters(parser: &Parser) -> bool {
    let token = move |n: usize| &parser.peek_nth_token_ref(n).token;
    let keyword = |n: usize| match token(n) {
        Token::Word(word) => Some(word.keyword),
        _ => None,
    };
    if keyword(0) != Some(Keyword::ALTER) || keyword(1) != Some(Keyword::TABLE) {
        return false;
    }
    let mut n = 2;
    if keyword(n) == Some(Keyword::IF) && keyword(n + 1) == Some(Keyword::EXISTS) {
        n += 2;
    }
    if keyword(n) == Some(Keyword::ONLY) {
        n += 1;
    }
    if !matches!(token(n), Token::Word(_)) {
        return false;
    }
    n += 1;
    while token(n) == &Token::Period && matches!(token(n + 1), Token::Word(_)) {
        n += 2;
    }
    matches!(keyword(n), Some(Keyword::SET | Keyword::RESET)) && token(n + 1) == &Token::LParen
}

#[async_trait]
impl Command for StorageParameters {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let engine = cx.engine;
        if engine.catalog().get(&self.table).is_none() {
            if self.if_exists {
                cx.notices.send(Notice::info(format!(
                    "relation \"{}\" does not exist, skipping",
                    self.table
                )));
                return Ok(Outcome::done("ALTER TABLE"));
            }
            return Err(match engine.is_user_table(&self.table) {
                true => Error::FeatureNotSupported(format!(
                    "\"{}\" is not a stored table: only stored tables have storage parameters",
                    self.table
                )),
                false => Error::UndefinedTable(self.table.clone()),
            });
        }
        engine
            .users()
            .check_owner(cx.actor, &Object::table(self.table.clone()))?;
        let stored = engine.stored_table(&self.table)?;
        let (new, ignored) = match &self.change {
            Change::Set(options) => {
                let (archive, table): (Vec<_>, Vec<_>) = (options.iter().cloned())
                    .partition(|(name, _)| archive::PARAMETERS.contains(&name.as_str()));
                archive::set(cx, &stored, &archive).await?;
                set(&stored.def, &table)?
            }
            Change::Reset(names) => {
                let (archive, table): (Vec<_>, Vec<_>) = (names.iter().cloned())
                    .partition(|name| archive::PARAMETERS.contains(&name.as_str()));
                archive::reset(cx, &stored, &archive).await?;
                reset(&stored.def, &table)?
            }
        };
        if !ignored.is_empty() {
            cx.notices.send(Notice::with_code(
                "00000",
                format!(
                    "storage parameters do not apply to TasteDB's tables and are ignored: {}",
                    ignored.join(", ")
                ),
            ));
        }
        if new != stored.def {
            let catalog = engine.catalog().clone();
            crate::blocking::run("ALTER TABLE", move |stopped| {
                stopped.check()?;
                catalog.alter(&stored, new, None)
            })
            .await?;
        }
        Ok(Outcome::done("ALTER TABLE"))
    }
}

/// `def` with the parameters `options` set; and the names of those that do not apply.
fn set(def: &TableDef, options: &[(String, Expr)]) -> Result<(TableDef, Vec<String>)> {
    let mut ttl = def
        .retention
        .as_ref()
        .map(|r| (r.ttl.clone(), r.ttl_micros));
    let mut column = def.retention.as_ref().map(|r| r.column);
    let mut ignored = Vec::new();
    for (name, value) in options {
        match name.as_str() {
            TTL => ttl = Some(parse_ttl(value)?),
            TTL_COLUMN => column = Some(time_column(def, value)?),
            _ => ignored.push(format!("{name}={value}")),
        }
    }
    let mut new = def.clone();
    new.retention = match (ttl, column) {
        (Some((ttl, ttl_micros)), Some(column)) => Some(Retention {
            column,
            ttl_micros,
            ttl,
        }),
        (None, None) => None,
        (Some(_), None) => return Err(needs_both("ttl needs ttl_column")),
        (None, Some(_)) => return Err(needs_both("ttl_column needs ttl")),
    };
    Ok((new, ignored))
}

/// `def` with the parameters `names` back at their defaults; and the names that do not apply.
fn reset(def: &TableDef, names: &[String]) -> Result<(TableDef, Vec<String>)> {
    let mut new = def.clone();
    let mut ignored = Vec::new();
    for name in names {
        match name.as_str() {
            // without a ttl the column has nothing to measure: both go
            TTL | TTL_COLUMN => new.retention = None,
            _ => ignored.push(name.clone()),
        }
    }
    Ok((new, ignored))
}

fn needs_both(what: &str) -> Error {
    Error::InvalidParameter(format!(
        "{what}: SET (ttl = '180 days', ttl_column = ts) gives a table its retention"
    ))
}

/// The interval text of `ttl = '…'` and its length in microseconds (a month counts 30 days, as
/// PostgreSQL's `extract(epoch from interval)` counts it); a bare number is seconds.
fn parse_ttl(value: &Expr) -> Result<(String, i64)> {
    let text = match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            _ => return Err(bad_ttl(value)),
        },
        _ => return Err(bad_ttl(value)),
    };
    match interval_micros(&text) {
        Ok(micros) if micros > 0 => Ok((text, micros)),
        Ok(_) => Err(Error::InvalidParameter(format!(
            "ttl '{text}' must be a positive interval"
        ))),
        Err(Error::InvalidDatetimeFormat(message)) => {
            Err(Error::InvalidDatetimeFormat(format!("ttl {message}")))
        }
        Err(other) => Err(other),
    }
}

/// The length of the interval `text` in microseconds (a month counts 30 days, as PostgreSQL's
/// `extract(epoch from interval)` counts it; a bare number is seconds); 22007 when it is not an
/// interval, 22023 when it is too long.
pub(crate) fn interval_micros(text: &str) -> Result<i64> {
    let config = IntervalParseConfig::new(IntervalUnit::Second);
    let interval = parse_interval_month_day_nano_config(text, config)
        .map_err(|e| Error::InvalidDatetimeFormat(format!("'{text}': {e}")))?;
    i64::from(interval.months)
        .checked_mul(30 * MICROS_PER_DAY)
        .and_then(|m| m.checked_add(i64::from(interval.days).checked_mul(MICROS_PER_DAY)?))
        .and_then(|m| m.checked_add(interval.nanoseconds / 1000))
        .ok_or_else(|| Error::InvalidParameter(format!("interval '{text}' is too long")))
}

fn bad_ttl(value: &Expr) -> Error {
    Error::InvalidParameter(format!(
        "ttl takes an interval such as '180 days', not {value}"
    ))
}

/// The position of the TIMESTAMP or DATE column `value` names.
fn time_column(def: &TableDef, value: &Expr) -> Result<usize> {
    let name = match value {
        Expr::Identifier(ident) => names::ident(ident),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => names::ident(&Ident::new(s)),
            _ => return Err(bad_column(value)),
        },
        _ => return Err(bad_column(value)),
    };
    let position = (def.columns.iter().position(|c| c.name == name))
        .ok_or_else(|| Error::UndefinedColumn(name.clone()))?;
    match def.columns[position].column_type {
        ColumnType::Timestamp | ColumnType::Date => Ok(position),
        other => Err(Error::DatatypeMismatch(format!(
            "ttl_column \"{name}\" is {}: it must be a timestamp or date column",
            other.sql_name()
        ))),
    }
}

fn bad_column(value: &Expr) -> Error {
    Error::InvalidParameter(format!("ttl_column takes a column name, not {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_intervals_count_months_as_thirty_days_and_numbers_as_seconds() {
        let ttl = |sql: &str| {
            let expr = Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_expr())
                .unwrap();
            parse_ttl(&expr).map(|(_, micros)| micros)
        };
        assert_eq!(ttl("'180 days'").unwrap(), 180 * MICROS_PER_DAY);
        assert_eq!(
            ttl("'1 month 2 hours'").unwrap(),
            30 * MICROS_PER_DAY + 7_200_000_000
        );
        assert_eq!(ttl("3600").unwrap(), 3_600_000_000);
        assert_eq!(ttl("'-1 day'").unwrap_err().sqlstate(), "22023");
        assert_eq!(ttl("'soon'").unwrap_err().sqlstate(), "22007");
        assert_eq!(ttl("true").unwrap_err().sqlstate(), "22023");
    }
}
