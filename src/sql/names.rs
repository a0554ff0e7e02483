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

/// `text` as a SQL string literal (quotes doubled).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `name` as a double-quoted SQL identifier (quotes doubled), whatever its letters.
pub fn quoted_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
