//! asyncpg's type introspection (`INTRO_LOOKUP_TYPES_13`, sent the first time a result or a
//! parameter has a type outside its built-in codecs, such as an array), answered by a query
//! DataFusion can run. asyncpg's walks domains, composites and ranges with recursive CTEs and
//! correlated subqueries; TasteDB's types are base types and one-dimensional arrays of them,
//! so the answer is the asked types (depth 0) and their element types (depth 1), with the
//! same columns and values PostgreSQL 15 gives for those types.
//!
//! asyncpg encodes and decodes only `oid[]` and `text[]` among arrays without introspecting
//! them, so its query's `$1` is described and read as `oid[]`, and `attrtypoids` (always NULL
//! here) is typed `text[]`; an `int4[]` would send asyncpg into introspecting its own
//! introspection.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// Whether `query` is asyncpg's introspection query.
pub fn is_introspection(query: &str) -> bool {
    query.contains("WITH RECURSIVE typeinfo_tree(")
        && query.contains("range_subtype, attrtypoids, attrnames, depth)")
}

/// The query that answers asyncpg's introspection `query`, if it is that query.
pub fn substitute(query: &str) -> Option<String> {
    is_introspection(query).then(|| ANSWER.to_string())
}

/// The parameter types the server describes for the introspection query: `oid[]`.
pub fn parameter_types() -> Vec<Type> {
    vec![Type::OID_ARRAY]
}

/// The introspection query's `$1`, an `oid[]` in binary or text format, as the list of
/// int4 OIDs the answer compares with.
pub fn parameters<S>(portal: &Portal<S>) -> PgWireResult<ParamValues> {
    let oids = match portal.parameters.first() {
        Some(Some(bytes)) if portal.parameter_format.is_binary(0) => binary_oids(bytes),
        Some(Some(bytes)) => text_oids(bytes),
        _ => Some(Vec::new()),
    }
    .ok_or_else(|| {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "22P02".into(),
            "malformed oid[] parameter".into(),
        )))
    })?;
    let values: Vec<ScalarValue> = oids
        .into_iter()
        .map(|o| ScalarValue::Int32(Some(o)))
        .collect();
    let list = ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Int32));
    Ok(ParamValues::List(vec![list.into()]))
}

/// A one-dimensional binary array of 4-byte elements: ndim, flags, element type, then per
/// dimension its length and lower bound, then each element's length and bytes.
fn binary_oids(bytes: &[u8]) -> Option<Vec<i32>> {
    let word = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let dimensions = word(0)?;
    if dimensions == 0 {
        return Some(Vec::new());
    }
    if dimensions != 1 {
        return None;
    }
    let length = usize::try_from(word(12)?).ok()?;
    let mut oids = Vec::with_capacity(length.min(1024));
    let mut at = 20;
    for _ in 0..length {
        if word(at)? != 4 {
            return None;
        }
        oids.push(word(at + 4)?);
        at += 8;
    }
    Some(oids)
}

/// `{20,1016}`.
fn text_oids(bytes: &[u8]) -> Option<Vec<i32>> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    inner
        .split(',')
        .map(|oid| oid.trim().parse::<u32>().ok().map(|o| o as i32))
        .collect()
}

const ANSWER: &str = "SELECT t.oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind, \
    CAST(NULL AS INT) AS basetype, t.typelem AS elemtype, elem_t.typdelim AS elemdelim, \
    CAST(NULL AS INT) AS range_subtype, CAST(NULL AS TEXT[]) AS attrtypoids, \
    CAST(NULL AS TEXT[]) AS attrnames, t.depth, CAST(NULL AS TEXT) AS basetype_name, \
    CASE WHEN t.typelem = 0 THEN '-' ELSE format_type(t.typelem, NULL) END AS elemtype_name, \
    CAST(NULL AS TEXT) AS range_subtype_name \
    FROM (SELECT oid, typname, typtype, typelem, typnamespace, typlen, 0 AS depth FROM pg_type \
          WHERE array_has(CAST($1 AS INT[]), oid) \
          UNION ALL \
          SELECT oid, typname, typtype, typelem, typnamespace, typlen, 1 AS depth FROM pg_type \
          WHERE oid IN (SELECT typelem FROM pg_type WHERE array_has(CAST($1 AS INT[]), oid))) t \
    JOIN pg_namespace ns ON ns.oid = t.typnamespace \
    LEFT JOIN pg_type elem_t ON t.typlen = -1 AND t.typelem <> 0 AND t.typelem = elem_t.oid \
    ORDER BY t.depth DESC";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asyncpgs_introspection_is_answered() {
        let asked = "WITH RECURSIVE typeinfo_tree(\n    oid, ns, name, kind, basetype, elemtype, \
                     elemdelim,\n    range_subtype, attrtypoids, attrnames, depth)\nAS (SELECT 1)";
        assert!(substitute(asked).is_some_and(|q| q.contains("$1")));
        assert_eq!(substitute("SELECT 1"), None);
    }

    #[test]
    fn oid_arrays_are_read_in_both_formats() {
        let mut binary = Vec::new();
        for word in [1i32, 0, 26, 2, 1, 4, 20, 4, 1016] {
            binary.extend_from_slice(&word.to_be_bytes());
        }
        assert_eq!(binary_oids(&binary), Some(vec![20, 1016]));
        assert_eq!(binary_oids(&binary[..30]), None);
        assert_eq!(binary_oids(&0i32.to_be_bytes()), Some(vec![]));
        assert_eq!(text_oids(b"{20,1016}"), Some(vec![20, 1016]));
        assert_eq!(text_oids(b"{}"), Some(vec![]));
        assert_eq!(text_oids(b"20"), None);
    }
}
