//! psql's `\du` and `\dp` (also `\z`) queries, answered from TasteDB's role tables: psql builds
//! them on `pg_auth_members` and `pg_class.relacl`, which the pg_catalog TasteDB serves does
//! not fill. The query psql sends is recognised by its text (psql 10 to 17 send these
//! shapes), and a name pattern (`\du bob`, `\dp t*`) is kept. `\d+`'s table query loses
//! the options of the table's TOAST table (TasteDB has none), a correlated `unnest` that
//! DataFusion cannot run.

/// The query that answers psql's `\du` or `\dp` in `query`, if it is one of them.
pub fn substitute(query: &str) -> Option<String> {
    if query.contains("pg_catalog.pg_auth_members m") && query.contains("as memberof") {
        let pattern = pattern(query, "r.rolname")
            .map(|p| format!(" AND r.rolname ~ '{p}'"))
            .unwrap_or_default();
        return Some(format!(
            "SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, \
             r.rolcanlogin, r.rolconnlimit, r.rolvaliduntil, t.member_of AS memberof, \
             r.rolreplication, r.rolbypassrls \
             FROM pg_catalog.pg_roles r JOIN tastedb_roles t ON t.name = r.rolname \
             WHERE r.rolname !~ '^pg_'{pattern} ORDER BY 1"
        ));
    }
    if query.contains("AS \"Access privileges\"") && query.contains("pg_catalog.pg_policy") {
        let pattern = pattern(query, "c.relname")
            .map(|p| format!(" WHERE name ~ '{p}'"))
            .unwrap_or_default();
        return Some(format!(
            "SELECT 'public' AS \"Schema\", name AS \"Name\", type AS \"Type\", \
             access_privileges AS \"Access privileges\", '' AS \"Column privileges\", \
             '' AS \"Policies\" FROM tastedb_privileges{pattern} ORDER BY 1, 2"
        ));
    }
    let toast =
        "c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)";
    if query.contains(toast) {
        return Some(query.replace(toast, "c.reloptions"));
    }
    None
}

/// The regular expression psql compares `column` with (`column OPERATOR(pg_catalog.~)
/// '^(bob)$'`), still quoted for SQL.
fn pattern<'a>(query: &'a str, column: &str) -> Option<&'a str> {
    let after = query
        .split(&format!("{column} OPERATOR(pg_catalog.~) '"))
        .nth(1)?;
    let mut end = 0;
    let bytes = after.as_bytes();
    while end < bytes.len() {
        if bytes[end] == b'\'' {
            if bytes.get(end + 1) == Some(&b'\'') {
                end += 2;
                continue;
            }
            return Some(&after[..end]);
        }
        end += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns_are_kept() {
        let du = "SELECT r.rolname FROM pg_catalog.pg_roles r, pg_catalog.pg_auth_members m \
                  as memberof WHERE r.rolname OPERATOR(pg_catalog.~) '^(bob''s)$' COLLATE x";
        assert!(
            substitute(du)
                .unwrap()
                .contains("AND r.rolname ~ '^(bob''s)$' ORDER BY 1")
        );
        assert_eq!(substitute("SELECT 1"), None);
    }
}
