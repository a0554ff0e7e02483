//! [`NamedRecords`]: small named definitions (named filters, API keys) kept as JSON records
//! under one key prefix and in memory, created and dropped one at a time.

use crate::error::{Error, Result};
use crate::storage::{Store, WriteSet};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A record that has a name.
pub trait Named {
    /// Its name, unique among the records of its kind.
    fn name(&self) -> &str;
}

/// Every record of one kind, by name: read from the store at open, written through.
#[derive(Debug)]
pub struct NamedRecords<T> {
    store: Arc<Store>,
    prefix: u8,
    /// What one is called in errors (`filter`, `API key`).
    what: &'static str,
    records: RwLock<BTreeMap<String, Arc<T>>>,
    /// Serialises CREATE and DROP so that their existence checks hold.
    write: Mutex<()>,
}

impl<T: Named + Clone + Serialize + DeserializeOwned> NamedRecords<T> {
    /// Loads the records under the key prefix `prefix` (one byte of `storage::keys`).
    pub fn load(store: Arc<Store>, prefix: u8, what: &'static str) -> Result<Self> {
        let stored: Vec<T> = store.records(&[prefix], what)?;
        let records = stored
            .into_iter()
            .map(|record| (record.name().to_string(), Arc::new(record)))
            .collect();
        Ok(NamedRecords {
            store,
            prefix,
            what,
            records: RwLock::new(records),
            write: Mutex::new(()),
        })
    }

    /// Every record, by name.
    pub fn list(&self) -> Vec<T> {
        self.read().values().map(|r| T::clone(r)).collect()
    }

    /// The record `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<T> {
        self.read().get(name).map(|r| T::clone(r))
    }

    /// The record `name`, shared rather than copied (for readers on a hot path).
    pub fn shared(&self, name: &str) -> Option<Arc<T>> {
        self.read().get(name).cloned()
    }

    /// The first record that `matches`.
    pub fn find(&self, matches: impl Fn(&T) -> bool) -> Option<T> {
        self.read()
            .values()
            .find(|r| matches(r))
            .map(|r| T::clone(r))
    }

    /// Stores `record` durably. False, changing nothing, when its name exists and
    /// `if_not_exists`; 42710 when it exists otherwise.
    pub fn create(&self, record: T, if_not_exists: bool) -> Result<bool> {
        let _write = self.lock();
        if self.read().contains_key(record.name()) {
            return match if_not_exists {
                true => Ok(false),
                false => Err(Error::DuplicateObject(format!(
                    "{} \"{}\" already exists",
                    self.what,
                    record.name()
                ))),
            };
        }
        self.put(record)?;
        Ok(true)
    }

    /// Removes the record `name` durably, after `allowed` accepted it. False when it does not
    /// exist and `if_exists`; 42704 when it does not exist otherwise.
    pub fn drop_checked(
        &self,
        name: &str,
        if_exists: bool,
        allowed: impl FnOnce(&T) -> Result<()>,
    ) -> Result<bool> {
        let _write = self.lock();
        let Some(record) = self.get(name) else {
            return match if_exists {
                true => Ok(false),
                false => Err(Error::UndefinedObject(format!(
                    "{} \"{name}\" does not exist",
                    self.what
                ))),
            };
        };
        allowed(&record)?;
        let mut writes = WriteSet::default();
        writes.delete(self.key(name));
        self.store.write(writes)?;
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(true)
    }

    /// Changes the record `name` with `change` and stores it durably; 42704 when it does not
    /// exist. Returns the changed record.
    pub fn update(&self, name: &str, change: impl FnOnce(&mut T) -> Result<()>) -> Result<T> {
        let _write = self.lock();
        let mut record = self.get(name).ok_or_else(|| {
            Error::UndefinedObject(format!("{} \"{name}\" does not exist", self.what))
        })?;
        change(&mut record)?;
        self.put(record.clone())?;
        Ok(record)
    }

    /// Stores `record` durably and keeps it (the caller holds `self.write`).
    fn put(&self, record: T) -> Result<()> {
        let value = serde_json::to_vec(&record)
            .map_err(|e| Error::Internal(format!("{} as JSON: {e}", self.what)))?;
        let mut writes = WriteSet::default();
        writes.put(self.key(record.name()), value);
        self.store.write(writes)?;
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.name().to_string(), Arc::new(record));
        Ok(())
    }

    fn key(&self, name: &str) -> Vec<u8> {
        let mut key = vec![self.prefix];
        key.extend_from_slice(name.as_bytes());
        key
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<T>>> {
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }
}
