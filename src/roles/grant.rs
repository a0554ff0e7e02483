//! `GRANT` and `REVOKE`: privileges on tables, views, models and feature views, and
//! membership in roles, in PostgreSQL's syntax (plus `ON MODEL` / `ON FEATURE VIEW` and the
//! model privilege `TRAIN`).

use crate::engine::{Command, Context, Outcome};
use crate::error::{Error, Result};
use crate::roles::grants::{Object, ObjectKind, PUBLIC, Privilege};
use crate::roles::privileges::PREDEFINED_ROLES;
use crate::roles::users::missing;
use crate::roles::{Actor, Users};
use crate::sql::names;
use crate::sql::notices::Notice;
use crate::sql::words::parse_words;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A `GRANT` or `REVOKE`.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantStatement {
    /// `GRANT` (true) or `REVOKE`.
    pub grant: bool,
    /// What is granted or revoked.
    pub what: Granted,
    /// The roles (or `public`) that receive or lose it.
    pub grantees: Vec<String>,
}

/// What a `GRANT` or `REVOKE` is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Granted {
    /// Privileges (`None`: `ALL`) on objects.
    Privileges {
        /// The privileges named, or `None` for `ALL [PRIVILEGES]`.
        privileges: Option<Vec<Privilege>>,
        /// The objects' kind.
        kind: ObjectKind,
        /// The objects' names; `None` for `ALL TABLES IN SCHEMA public`.
        names: Option<Vec<String>>,
    },
    /// Membership in roles.
    Roles(Vec<String>),
}

/// Parses `GRANT …` / `REVOKE …`; `None` (nothing consumed) for any other statement.
pub fn grant_statement(parser: &mut Parser) -> Result<Option<GrantStatement>> {
    let grant = match parser.peek_token_ref().token {
        Token::Word(ref w) if w.keyword == Keyword::GRANT => true,
        Token::Word(ref w) if w.keyword == Keyword::REVOKE => false,
        _ => return Ok(None),
    };
    parser.next_token();
    if !grant && parser.parse_keywords(&[Keyword::GRANT, Keyword::OPTION, Keyword::FOR]) {
        return Err(unsupported("GRANT OPTION"));
    }
    let words = if parser.parse_keyword(Keyword::ALL) {
        let _ = parser.parse_keyword(Keyword::PRIVILEGES);
        vec!["all".to_string()]
    } else {
        comma_words(parser)?
    };
    let what = if parser.parse_keyword(Keyword::ON) {
        let (kind, names) = objects(parser)?;
        Granted::Privileges {
            privileges: privileges(&words)?,
            kind,
            names,
        }
    } else {
        Granted::Roles(words)
    };
    parser.expect_keyword(if grant { Keyword::TO } else { Keyword::FROM })?;
    let grantees = comma_words(parser)?;
    if parser.parse_keyword(Keyword::WITH) {
        return Err(unsupported("WITH GRANT OPTION and WITH ADMIN OPTION"));
    }
    if parser.parse_keywords(&[Keyword::GRANTED, Keyword::BY]) {
        return Err(unsupported("GRANTED BY"));
    }
    let _ = parser.parse_one_of_keywords(&[Keyword::CASCADE, Keyword::RESTRICT]);
    Ok(Some(GrantStatement {
        grant,
        what,
        grantees,
    }))
}

fn unsupported(what: &str) -> Error {
    Error::FeatureNotSupported(format!(
        "{what} is not supported: owners and superusers grant and revoke"
    ))
}

/// `word [, word …]`, names folded as identifiers.
fn comma_words(parser: &mut Parser) -> Result<Vec<String>> {
    let mut words = Vec::new();
    loop {
        words.push(names::ident(&parser.parse_identifier()?));
        if parser.peek_token_ref().token == Token::LParen {
            return Err(Error::FeatureNotSupported(
                "column privileges are not supported; grant on the whole table or a view".into(),
            ));
        }
        if !parser.consume_token(&Token::Comma) {
            return Ok(words);
        }
    }
}

/// `ALL [PRIVILEGES]` (`None`) or a list of privilege names.
fn privileges(words: &[String]) -> Result<Option<Vec<Privilege>>> {
    if words == ["all"] {
        return Ok(None);
    }
    words
        .iter()
        .map(|word| {
            Privilege::parse(word)
                .ok_or_else(|| Error::Syntax(format!("unrecognized privilege type \"{word}\"")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// `[TABLE] name, …` | `ALL TABLES IN SCHEMA public` | `MODEL name, …` | `FEATURE VIEW name, …`.
fn objects(parser: &mut Parser) -> Result<(ObjectKind, Option<Vec<String>>)> {
    if parser.parse_keywords(&[Keyword::ALL, Keyword::TABLES, Keyword::IN, Keyword::SCHEMA]) {
        let schema = names::ident(&parser.parse_identifier()?);
        if schema != names::SCHEMA {
            return Err(Error::UndefinedObject(format!(
                "schema \"{schema}\" does not exist"
            )));
        }
        return Ok((ObjectKind::Table, None));
    }
    let kind = if parse_words(parser, &["MODEL"]) {
        ObjectKind::Model
    } else if parse_words(parser, &["FEATURE", "VIEW"]) {
        ObjectKind::FeatureView
    } else {
        let _ = parser.parse_keyword(Keyword::TABLE);
        ObjectKind::Table
    };
    let mut names = Vec::new();
    loop {
        names.push(names::table_name(&parser.parse_object_name(false)?)?);
        if !parser.consume_token(&Token::Comma) {
            return Ok((kind, Some(names)));
        }
    }
}

#[async_trait]
impl Command for GrantStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        None
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let users = cx.engine.users();
        for grantee in &self.grantees {
            if grantee != PUBLIC && users.get(grantee)?.is_none() {
                return Err(missing(grantee));
            }
        }
        match &self.what {
            Granted::Privileges {
                privileges,
                kind,
                names,
            } => {
                let objects = match names {
                    Some(names) => names
                        .iter()
                        .map(|name| existing(cx, *kind, name))
                        .collect::<Result<Vec<_>>>()?,
                    None => cx
                        .engine
                        .catalog()
                        .names()
                        .into_iter()
                        .map(Object::table)
                        .collect(),
                };
                let privileges = match privileges {
                    Some(list) => valid_for(*kind, list)?,
                    None => kind.privileges().to_vec(),
                };
                for object in &objects {
                    self.change_privileges(users, cx.actor, object, &privileges)?;
                }
            }
            Granted::Roles(roles) => {
                for role in roles {
                    for member in &self.grantees {
                        self.change_membership(cx, role, member)?;
                    }
                }
            }
        }
        Ok(Outcome::done(if self.grant { "GRANT" } else { "REVOKE" }))
    }
}

impl GrantStatement {
    fn change_privileges(
        &self,
        users: &Users,
        actor: &Actor,
        object: &Object,
        privileges: &[Privilege],
    ) -> Result<()> {
        users
            .check_owner(actor, object)
            .map_err(|_| Error::InsufficientPrivilege(format!("for {object}")))?;
        let _ddl = users.lock_ddl();
        users.grants().change(object, |acl| {
            for grantee in &self.grantees {
                let held = acl.grants.entry(grantee.clone()).or_default();
                for privilege in privileges {
                    if self.grant {
                        held.insert(*privilege);
                    } else {
                        held.remove(privilege);
                    }
                }
                if held.is_empty() {
                    acl.grants.remove(grantee);
                }
            }
        })
    }

    fn change_membership(&self, cx: &Context<'_>, role: &str, member: &str) -> Result<()> {
        let users = cx.engine.users();
        let predefined = PREDEFINED_ROLES.contains(&role);
        let target = users.get(role)?;
        if target.is_none() && !predefined {
            return Err(missing(role));
        }
        let mine = users.attributes_of(cx.actor)?;
        let target_is_superuser = target.is_some_and(|r| r.attributes.superuser);
        let allowed = mine.superuser || (mine.createrole && !predefined && !target_is_superuser);
        if !allowed {
            return Err(Error::InsufficientPrivilege(format!(
                "to grant or revoke role \"{role}\": it takes a superuser{}",
                if predefined || target_is_superuser {
                    ""
                } else {
                    " or the CREATEROLE attribute"
                }
            )));
        }
        if member == PUBLIC {
            return Err(Error::InvalidGrantOperation(
                "roles cannot be granted to PUBLIC".into(),
            ));
        }
        if self.grant && users.roles_of(role).contains(member) {
            return Err(Error::InvalidGrantOperation(format!(
                "role \"{member}\" is a member of role \"{role}\""
            )));
        }
        let _ddl = users.lock_ddl();
        let mut stored = users.get(member)?.ok_or_else(|| missing(member))?;
        let changed = if self.grant {
            stored.member_of.insert(role.to_string())
        } else {
            stored.member_of.remove(role)
        };
        match (changed, self.grant) {
            (true, _) => users.put(member, stored),
            (false, true) => {
                cx.notices.send(Notice::info(format!(
                    "role \"{member}\" is already a member of role \"{role}\""
                )));
                Ok(())
            }
            (false, false) => {
                cx.notices.send(Notice::with_code(
                    "01000",
                    format!("role \"{member}\" is not a member of role \"{role}\""),
                ));
                Ok(())
            }
        }
    }
}

/// `object` when it exists: 42P01 for a table, 42704 for a model or feature view.
fn existing(cx: &Context<'_>, kind: ObjectKind, name: &str) -> Result<Object> {
    let engine = cx.engine;
    let exists = match kind {
        ObjectKind::Table => engine.is_user_table(name),
        ObjectKind::Model => engine.models().get(name).is_ok(),
        ObjectKind::FeatureView => engine.features().get(name).is_ok(),
    };
    match (exists, kind) {
        (true, _) => Ok(Object {
            kind,
            name: name.to_string(),
        }),
        (false, ObjectKind::Table) => Err(Error::UndefinedTable(name.to_string())),
        (false, _) => Err(Error::UndefinedObject(format!(
            "{} \"{name}\" does not exist",
            kind.word()
        ))),
    }
}

/// `privileges` when `kind` has each of them (0LP01 otherwise).
fn valid_for(kind: ObjectKind, privileges: &[Privilege]) -> Result<Vec<Privilege>> {
    for privilege in privileges {
        if !kind.privileges().contains(privilege) {
            return Err(Error::InvalidGrantOperation(format!(
                "invalid privilege type {} for {}",
                privilege.name(),
                kind.word()
            )));
        }
    }
    Ok(privileges.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::words::parse_text;

    fn parsed(sql: &str) -> Result<Option<GrantStatement>> {
        parse_text(sql, grant_statement)
    }

    #[test]
    fn grant_and_revoke_use_postgres_syntax() {
        assert_eq!(
            parsed("GRANT SELECT, insert ON TABLE Events, t2 TO bob, PUBLIC").unwrap(),
            Some(GrantStatement {
                grant: true,
                what: Granted::Privileges {
                    privileges: Some(vec![Privilege::Select, Privilege::Insert]),
                    kind: ObjectKind::Table,
                    names: Some(vec!["events".into(), "t2".into()]),
                },
                grantees: vec!["bob".into(), "public".into()],
            })
        );
        assert_eq!(
            parsed("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM bob CASCADE")
                .unwrap()
                .map(|s| s.what),
            Some(Granted::Privileges {
                privileges: None,
                kind: ObjectKind::Table,
                names: None,
            })
        );
        assert_eq!(
            parsed("GRANT train ON MODEL recs TO ann")
                .unwrap()
                .map(|s| s.what),
            Some(Granted::Privileges {
                privileges: Some(vec![Privilege::Train]),
                kind: ObjectKind::Model,
                names: Some(vec!["recs".into()]),
            })
        );
        assert_eq!(
            parsed("GRANT pg_read_server_files, admins TO bob").unwrap(),
            Some(GrantStatement {
                grant: true,
                what: Granted::Roles(vec!["pg_read_server_files".into(), "admins".into()]),
                grantees: vec!["bob".into()],
            })
        );
        assert_eq!(parsed("SELECT 1").unwrap(), None);
        let code = |sql| parsed(sql).unwrap_err().sqlstate();
        assert_eq!(code("GRANT SELECT ON t TO bob WITH GRANT OPTION"), "0A000");
        assert_eq!(code("GRANT SELECT (a) ON t TO bob"), "0A000");
        assert_eq!(code("GRANT FLY ON t TO bob"), "42601");
        assert_eq!(code("GRANT SELECT ON t bob"), "42601");
    }
}
