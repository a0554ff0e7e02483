//! API keys: secrets that stand for a role over HTTP (`Authorization: Bearer …`).
//! `CREATE API KEY name [FOR USER role]` shows the secret once; only its SHA-256 digest is
//! stored (a key is 32 random bytes, so a slow password hash would add nothing); `DROP API
//! KEY [IF EXISTS] name`; `tastedb_api_keys` lists them without secrets.

use crate::catalog::system_tables::timestamp_type;
use crate::clock::now_micros;
use crate::engine::{Command, Context, Outcome};
use crate::error::{Error, Result};
use crate::roles::privileges::Actor;
use crate::roles::users::{RoleOptions, Users};
use crate::sql::names;
use crate::sql::words::{expect_word, parse_words};
use crate::storage::{Named, NamedRecords, Store, keys};
use async_trait::async_trait;
use base64::Engine as _;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What every secret starts with, so that a leaked one is recognisable.
const SECRET_PREFIX: &str = "tdb_";

/// An API key as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The key's name.
    pub name: String,
    /// The role it logs in as.
    pub user: String,
    /// Hex SHA-256 of the secret.
    pub digest: String,
    /// The secret's first characters, to tell keys apart.
    pub shown: String,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: i64,
}

impl Named for ApiKey {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Every API key of a data directory.
#[derive(Debug)]
pub struct ApiKeys {
    records: NamedRecords<ApiKey>,
}

impl ApiKeys {
    /// The keys stored in `store`.
    pub fn load(store: Arc<Store>) -> Result<Self> {
        Ok(ApiKeys {
            records: NamedRecords::load(store, keys::API_KEY, "API key")?,
        })
    }

    /// The role `secret` stands for; 28P01 when no key has it.
    pub fn authenticate(&self, secret: &str) -> Result<String> {
        let digest = digest(secret);
        self.records
            .find(|key| constant_time_eq(key.digest.as_bytes(), digest.as_bytes()))
            .map(|key| key.user)
            .ok_or_else(|| Error::InvalidPassword("invalid API key".into()))
    }

    /// Makes a key `name` for `user` and returns its secret (shown once).
    pub fn create(&self, name: &str, user: &str) -> Result<String> {
        let secret = format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        let key = ApiKey {
            name: name.to_string(),
            user: user.to_string(),
            digest: digest(&secret),
            shown: secret.chars().take(SECRET_PREFIX.len() + 6).collect(),
            created_micros: now_micros(),
        };
        self.records.create(key, false)?;
        Ok(secret)
    }

    /// Drops the key `name` after `allowed` accepted it.
    pub fn drop_key(
        &self,
        name: &str,
        if_exists: bool,
        allowed: impl FnOnce(&ApiKey) -> Result<()>,
    ) -> Result<bool> {
        self.records.drop_checked(name, if_exists, allowed)
    }

    /// Drops every key of `user` (whose role is being dropped).
    pub fn drop_keys_of(&self, user: &str) -> Result<()> {
        for key in self.records.list().into_iter().filter(|k| k.user == user) {
            self.records.drop_checked(&key.name, true, |_| Ok(()))?;
        }
        Ok(())
    }

    /// `tastedb_api_keys`: name, user_name, key_prefix, created_at.
    pub fn rows(&self) -> Result<RecordBatch> {
        let list = self.records.list();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(list.iter().map(|k| &k.name))),
            Arc::new(StringArray::from_iter_values(list.iter().map(|k| &k.user))),
            Arc::new(StringArray::from_iter_values(list.iter().map(|k| &k.shown))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                list.iter().map(|k| k.created_micros),
            )),
        ];
        let schema = Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("user_name", DataType::Utf8, false),
            Field::new("key_prefix", DataType::Utf8, false),
            Field::new("created_at", timestamp_type(), false),
        ]);
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
}

/// The hex SHA-256 of `secret` (checked at every request: no formatting per byte).
fn digest(secret: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `CREATE API KEY name [FOR USER role]` or `DROP API KEY [IF EXISTS] name`.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyStatement {
    /// Makes a key; `user` `None` is the role running the statement.
    Create {
        /// Key name.
        name: String,
        /// The role it stands for.
        user: Option<String>,
    },
    /// Drops a key.
    Drop {
        /// Key name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

/// Parses an API key statement; `None` (nothing consumed) for any other statement.
pub fn api_key_statement(parser: &mut Parser) -> Result<Option<ApiKeyStatement>> {
    let create = parse_words(parser, &["create", "api", "key"]);
    if !create && !parse_words(parser, &["drop", "api", "key"]) {
        return Ok(None);
    }
    if create {
        let name = names::ident(&parser.parse_identifier()?);
        let user = match parser.parse_keyword(Keyword::FOR) {
            true => {
                if !parser.parse_keyword(Keyword::USER) {
                    expect_word(parser, "role")?;
                }
                Some(names::ident(&parser.parse_identifier()?))
            }
            false => None,
        };
        return Ok(Some(ApiKeyStatement::Create { name, user }));
    }
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = names::ident(&parser.parse_identifier()?);
    Ok(Some(ApiKeyStatement::Drop { name, if_exists }))
}

/// Whether `actor` may make or drop keys of `user`: for itself, or as a role that may manage
/// `user` (a superuser, or CREATEROLE for roles that are not superusers).
fn check_manage(users: &Users, actor: &Actor, user: &str) -> Result<()> {
    if *actor == Actor::Role(user.to_string()) {
        return Ok(());
    }
    users
        .check_alter_role(actor, user, &RoleOptions::default())
        .map_err(|_| {
            Error::InsufficientPrivilege(format!(
                "permission denied to manage the API keys of role \"{user}\""
            ))
        })
}

fn created_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("user_name", DataType::Utf8, false),
        Field::new("api_key", DataType::Utf8, false),
    ]))
}

#[async_trait]
impl Command for ApiKeyStatement {
    fn rows_schema(&self) -> Option<SchemaRef> {
        matches!(self, ApiKeyStatement::Create { .. }).then(created_schema)
    }

    async fn execute(&self, cx: &Context<'_>) -> Result<Outcome> {
        let users = cx.engine.users();
        match self {
            ApiKeyStatement::Create { name, user } => {
                let user = match (user, cx.actor) {
                    (Some(user), _) => user.clone(),
                    (None, Actor::Role(role)) => role.clone(),
                    (None, Actor::Embedder) => {
                        return Err(Error::InvalidParameter(
                            "CREATE API KEY needs FOR USER role here".into(),
                        ));
                    }
                };
                if users.get(&user)?.is_none() {
                    return Err(Error::UndefinedObject(format!(
                        "role \"{user}\" does not exist"
                    )));
                }
                check_manage(users, cx.actor, &user)?;
                let secret = users.api_keys().create(name, &user)?;
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from(vec![name.as_str()])),
                    Arc::new(StringArray::from(vec![user.as_str()])),
                    Arc::new(StringArray::from(vec![secret])),
                ];
                Outcome::batch(RecordBatch::try_new(created_schema(), columns)?)
            }
            ApiKeyStatement::Drop { name, if_exists } => {
                let dropped = users.api_keys().drop_key(name, *if_exists, |key| {
                    check_manage(users, cx.actor, &key.user)
                })?;
                if !dropped {
                    cx.notices.send(crate::sql::notices::Notice::info(format!(
                        "API key \"{name}\" does not exist, skipping"
                    )));
                }
                Ok(Outcome::done("DROP API KEY"))
            }
        }
    }
}
