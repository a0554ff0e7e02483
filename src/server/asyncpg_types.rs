//! asyncpg's type introspection (`INTRO_LOOKUP_TYPES_13`, sent the first time a result or a
//! parameter has a type outside its built-in codecs, such as an array), answered by a query
//! DataFusion can run. asyncpg's walks domains, composites and ranges with recursive CTEs and
//! correlated subqueries; TasteDB's types are base types and one-dimensional arrays of them,
//! so the answer is the asked types (depth 0) and their element types (depth 1), with the
//! same columns and values PostgreSQL 15 gives for those types. `attrtypoids` (always NULL
//! here) is typed `text[]`, an array asyncpg decodes without introspecting it (an `int4[]`
//! would send asyncpg into introspecting its own introspection).

/// The query that answers asyncpg's introspection `query`, if it is that query.
pub fn substitute(query: &str) -> Option<String> {
    let introspection = query.contains("WITH RECURSIVE typeinfo_tree(")
        && query.contains("range_subtype, attrtypoids, attrnames, depth)");
    introspection.then(|| ANSWER.to_string())
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
}
