//! Who owns each table, model and feature view, and the privileges granted on it: PostgreSQL's
//! `relowner` and `relacl`. Kept in memory (read at every privilege check) and written
//! through to the store.

use crate::error::{Error, Result};
use crate::storage::{Scan, Store, WriteSet, keys};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, RwLock};

/// The kinds of objects that have owners and privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectKind {
    /// A table, view or external table (one namespace).
    Table,
    /// A model.
    Model,
    /// A feature view.
    FeatureView,
}

impl ObjectKind {
    /// The word PostgreSQL's messages use for it.
    pub fn word(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Model => "model",
            ObjectKind::FeatureView => "feature view",
        }
    }

    fn tag(self) -> u8 {
        match self {
            ObjectKind::Table => b't',
            ObjectKind::Model => b'm',
            ObjectKind::FeatureView => b'f',
        }
    }

    /// The privileges an object of this kind has, in PostgreSQL's order (what `ALL` means).
    pub fn privileges(self) -> &'static [Privilege] {
        use Privilege::*;
        match self {
            ObjectKind::Table => &[
                Insert, Select, Update, Delete, Truncate, References, Trigger,
            ],
            ObjectKind::Model => &[Select, Train],
            ObjectKind::FeatureView => &[Select],
        }
    }
}

/// A table, model or feature view, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Object {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
}

impl Object {
    /// The table (or view) `name`.
    pub fn table(name: impl Into<String>) -> Object {
        Object {
            kind: ObjectKind::Table,
            name: name.into(),
        }
    }

    /// The model `name`.
    pub fn model(name: impl Into<String>) -> Object {
        Object {
            kind: ObjectKind::Model,
            name: name.into(),
        }
    }

    /// The feature view `name`.
    pub fn feature_view(name: impl Into<String>) -> Object {
        Object {
            kind: ObjectKind::FeatureView,
            name: name.into(),
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.word(), self.name)
    }
}

/// A privilege on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Privilege {
    /// Read rows; on a model, serve it (recommend, similar_items, predict, EVALUATE).
    Select,
    /// Add rows.
    Insert,
    /// Change rows.
    Update,
    /// Remove rows.
    Delete,
    /// Empty the table.
    Truncate,
    /// Refer to it from a foreign key (kept for PostgreSQL's `ALL`).
    References,
    /// Create triggers on it (kept for PostgreSQL's `ALL`).
    Trigger,
    /// Train a model again and choose its active version.
    Train,
}

impl Privilege {
    /// The privilege named `word` (any case).
    pub fn parse(word: &str) -> Option<Privilege> {
        use Privilege::*;
        Some(match word.to_uppercase().as_str() {
            "SELECT" => Select,
            "INSERT" => Insert,
            "UPDATE" => Update,
            "DELETE" => Delete,
            "TRUNCATE" => Truncate,
            "REFERENCES" => References,
            "TRIGGER" => Trigger,
            "TRAIN" => Train,
            _ => return None,
        })
    }

    /// Its SQL name.
    pub fn name(self) -> &'static str {
        use Privilege::*;
        match self {
            Select => "SELECT",
            Insert => "INSERT",
            Update => "UPDATE",
            Delete => "DELETE",
            Truncate => "TRUNCATE",
            References => "REFERENCES",
            Trigger => "TRIGGER",
            Train => "TRAIN",
        }
    }

    /// Its letter in PostgreSQL's `aclitem` text (`bob=r/alice`); `T` is TasteDB's TRAIN.
    pub fn letter(self) -> char {
        use Privilege::*;
        match self {
            Select => 'r',
            Insert => 'a',
            Update => 'w',
            Delete => 'd',
            Truncate => 'D',
            References => 'x',
            Trigger => 't',
            Train => 'T',
        }
    }
}

/// The grantee that stands for every role.
pub const PUBLIC: &str = "public";

/// The owner of an object and what was granted on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The owning role; `None` for objects made by the embedding program or before TasteDB
    /// had owners, which only superusers own.
    pub owner: Option<String>,
    /// Privileges granted, by grantee (a role, or [`PUBLIC`]).
    pub grants: BTreeMap<String, BTreeSet<Privilege>>,
}

impl Acl {
    /// PostgreSQL's `aclitem[]` text of this ACL for an object of `kind`: the owner's
    /// implicit privileges first, then each grantee's (`=r/owner` for PUBLIC).
    pub fn items(&self, kind: ObjectKind) -> Vec<String> {
        let grantor = self.owner.clone().unwrap_or_default();
        let letters = |privileges: &mut dyn Iterator<Item = Privilege>| -> String {
            privileges.map(Privilege::letter).collect()
        };
        let mut items = Vec::new();
        if let Some(owner) = &self.owner {
            let all = letters(&mut kind.privileges().iter().copied());
            items.push(format!("{owner}={all}/{grantor}"));
        }
        for (grantee, privileges) in &self.grants {
            let name = if grantee == PUBLIC { "" } else { grantee };
            let mut ordered = kind
                .privileges()
                .iter()
                .copied()
                .filter(|p| privileges.contains(p));
            items.push(format!("{name}={}/{grantor}", letters(&mut ordered)));
        }
        items
    }
}

/// The ownership and privileges of every object of one data directory.
#[derive(Debug)]
pub struct Grants {
    store: Arc<Store>,
    acls: RwLock<BTreeMap<Object, Acl>>,
}

impl Grants {
    /// The grants stored in `store`.
    pub fn load(store: Arc<Store>) -> Result<Grants> {
        let mut acls = BTreeMap::new();
        let prefix = keys::acl(&[]);
        store.scan(
            &prefix,
            &keys::prefix_end(&prefix),
            Scan::Cached,
            |_, value| {
                let (object, acl): (Object, Acl) = serde_json::from_slice(value)
                    .map_err(|e| Error::Corrupt(format!("privileges: {e}")))?;
                acls.insert(object, acl);
                Ok(true)
            },
        )?;
        Ok(Grants {
            store,
            acls: RwLock::new(acls),
        })
    }

    /// The ACL of `object`; objects without one are owned by superusers, with nothing granted.
    pub fn acl(&self, object: &Object) -> Acl {
        self.read().get(object).cloned().unwrap_or_default()
    }

    /// Calls `f` with the ACL of `object` (or `None`), without copying it.
    pub fn with_acl<T>(&self, object: &Object, f: impl FnOnce(Option<&Acl>) -> T) -> T {
        f(self.read().get(object))
    }

    /// Records that `owner` (`None`: the embedding program) made `object`: it owns it, and
    /// nothing is granted on it yet (grants left by an object of the same name go).
    pub fn created(&self, object: Object, owner: Option<&str>) -> Result<()> {
        self.put(
            object,
            Acl {
                owner: owner.map(str::to_string),
                grants: BTreeMap::new(),
            },
        )
    }

    /// Forgets `object`, which was dropped.
    pub fn dropped(&self, object: &Object) -> Result<()> {
        if !self.read().contains_key(object) {
            return Ok(());
        }
        let mut write = WriteSet::default();
        write.delete(key(object));
        self.store.write(write)?;
        self.acls
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(object);
        Ok(())
    }

    /// Moves the owner and privileges of `from` to `to` (a renamed table).
    pub fn renamed(&self, from: &Object, to: Object) -> Result<()> {
        if !self.read().contains_key(from) {
            return Ok(());
        }
        self.put(to, self.acl(from))?;
        self.dropped(from)
    }

    /// Changes the ACL of `object` with `change`, durably.
    pub fn change(&self, object: &Object, change: impl FnOnce(&mut Acl)) -> Result<()> {
        let mut acl = self.acl(object);
        change(&mut acl);
        self.put(object.clone(), acl)
    }

    /// The objects `role` owns.
    pub fn owned_by(&self, role: &str) -> Vec<Object> {
        self.read()
            .iter()
            .filter(|(_, acl)| acl.owner.as_deref() == Some(role))
            .map(|(object, _)| object.clone())
            .collect()
    }

    /// Takes every privilege granted to `role` away (the role is being dropped).
    pub fn remove_grantee(&self, role: &str) -> Result<()> {
        let holding: Vec<Object> = self
            .read()
            .iter()
            .filter(|(_, acl)| acl.grants.contains_key(role))
            .map(|(object, _)| object.clone())
            .collect();
        for object in holding {
            self.change(&object, |acl| {
                acl.grants.remove(role);
            })?;
        }
        Ok(())
    }

    /// Every object with an ACL, and the ACL.
    pub fn all(&self) -> Vec<(Object, Acl)> {
        self.read()
            .iter()
            .map(|(object, acl)| (object.clone(), acl.clone()))
            .collect()
    }

    fn put(&self, object: Object, acl: Acl) -> Result<()> {
        let json =
            serde_json::to_vec(&(&object, &acl)).map_err(|e| Error::Internal(e.to_string()))?;
        let mut write = WriteSet::default();
        write.put(key(&object), json);
        self.store.write(write)?;
        self.acls
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(object, acl);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Object, Acl>> {
        self.acls.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(object: &Object) -> Vec<u8> {
    let mut rest = vec![object.kind.tag()];
    rest.extend_from_slice(object.name.as_bytes());
    keys::acl(&rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_items_read_like_postgres() {
        let mut acl = Acl {
            owner: Some("alice".into()),
            grants: BTreeMap::new(),
        };
        acl.grants.insert(
            "bob".into(),
            [Privilege::Insert, Privilege::Select].into_iter().collect(),
        );
        acl.grants
            .insert(PUBLIC.into(), [Privilege::Select].into_iter().collect());
        assert_eq!(
            acl.items(ObjectKind::Table),
            ["alice=arwdDxt/alice", "bob=ar/alice", "=r/alice"]
        );
    }

    #[test]
    fn grants_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let object = Object::model("recs");
        {
            let grants = Grants::load(Arc::new(Store::open(dir.path()).unwrap())).unwrap();
            grants.created(object.clone(), Some("alice")).unwrap();
            grants
                .change(&object, |acl| {
                    acl.grants
                        .insert("bob".into(), [Privilege::Train].into_iter().collect());
                })
                .unwrap();
        }
        let grants = Grants::load(Arc::new(Store::open(dir.path()).unwrap())).unwrap();
        assert_eq!(grants.owned_by("alice"), std::slice::from_ref(&object));
        assert_eq!(
            grants.acl(&object).items(ObjectKind::Model),
            ["alice=rT/alice", "bob=T/alice"]
        );
        grants.dropped(&object).unwrap();
        assert_eq!(grants.acl(&object), Acl::default());
    }
}
