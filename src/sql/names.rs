//! Names as SQL writes them: unquoted identifiers fold to lower case, quoted ones are kept.

use crate::error::{Error, Result};
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};

/// Default catalog (database) name.
pub const CATALOG: &str = "tastedb";
/// The one schema.
pub const SCHEMA: &str = "public";

/// The normalised form of an identifier.
pub fn ident(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The table a possibly qualified name (`t`, `public.t`, `tastedb.public.t`) refers to.
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts = name
        .0
        .iter()
        .map(|part| part.as_ident().map(ident))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::Syntax(format!("invalid table name {name}")))?;
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] if schema == SCHEMA => Ok(table.clone()),
        [catalog, schema, table] if catalog == CATALOG && schema == SCHEMA => Ok(table.clone()),
        _ => Err(Error::FeatureNotSupported(format!(
            "table name {name}: only schema \"{SCHEMA}\" of database \"{CATALOG}\" exists"
        ))),
    }
}

/// The tables a training source names: the table itself, or every relation of a
/// parenthesised query (empty when the text does not parse).
pub fn tables_in(source: &str) -> std::collections::HashSet<String> {
    use datafusion::sql::sqlparser::ast::visit_relations;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let text = source.trim();
    if !text.starts_with('(') {
        return std::iter::once(text.to_string()).collect();
    }
    let query = text.trim_start_matches('(').trim_end_matches(')');
    let mut tables = std::collections::HashSet::new();
    if let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, query) {
        let _ = visit_relations(&statements, |name| {
            if let Ok(table) = table_name(name) {
                tables.insert(table);
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_sources_name_their_tables() {
        assert_eq!(tables_in("events"), ["events".to_string()].into());
        assert_eq!(
            tables_in("(SELECT e.user_id FROM events e JOIN public.Items i ON e.x = i.x)"),
            ["events".to_string(), "items".to_string()].into()
        );
    }
}
