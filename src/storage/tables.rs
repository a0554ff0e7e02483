//! [`StoredTable`]: a table's definition and the state its writers share (row ids handed out,
//! rows not yet written, the turn of writers of keyed tables).

use crate::error::{Error, Result};
use crate::schema::TableDef;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A stored table: its definition plus the state its writers share.
#[derive(Debug)]
pub struct StoredTable {
    /// The definition.
    pub def: TableDef,
    /// Next row id to hand out (tables without primary key).
    next_row_id: AtomicU64,
    /// Row ids handed out whose rows are not written yet: first id → count.
    unwritten: Mutex<BTreeMap<u64, u64>>,
    /// Held by a writer of a keyed table from its duplicate check until its commit.
    pub write_lock: Mutex<()>,
    /// Shared by writers while they encode and write rows of this definition; held alone by a
    /// statement that replaces the definition (CREATE INDEX).
    changing: RwLock<()>,
    /// Set once another definition replaced this one: writes made for this one are refused.
    superseded: AtomicBool,
}

impl StoredTable {
    /// A table defined by `def` whose next row id is `next_row_id`.
    pub fn new(def: TableDef, next_row_id: u64) -> StoredTable {
        StoredTable {
            def,
            next_row_id: AtomicU64::new(next_row_id),
            unwritten: Mutex::new(BTreeMap::new()),
            write_lock: Mutex::new(()),
            changing: RwLock::new(()),
            superseded: AtomicBool::new(false),
        }
    }

    /// Reserves `count` consecutive row ids for rows about to be written; the reservation
    /// counts as unwritten until it is dropped (after the write, or its failure).
    pub fn reserve_row_ids(self: &Arc<Self>, count: u64) -> RowIdReservation {
        let mut unwritten = self.unwritten();
        let first = self.next_row_id.fetch_add(count, Ordering::Relaxed);
        unwritten.insert(first, count);
        RowIdReservation {
            table: self.clone(),
            first,
            count,
        }
    }

    /// Every row with a smaller row id is written (or was never going to be): the point up to
    /// which a reader of "rows added since" can trust a scan.
    pub fn written_row_ids(&self) -> u64 {
        let unwritten = self.unwritten();
        match unwritten.keys().next() {
            Some(&first) => first,
            None => self.next_row_id.load(Ordering::Relaxed),
        }
    }

    /// Lets a writer of rows of this definition go on until the guard drops; 40001 once
    /// another definition replaced it (the statement or block is to be run again).
    pub fn writing(&self) -> Result<RwLockReadGuard<'_, ()>> {
        let guard = self.changing.read().unwrap_or_else(|p| p.into_inner());
        if self.superseded.load(Ordering::Acquire) {
            return Err(Error::SerializationFailure(format!(
                "the definition of table \"{}\" changed while the rows were written",
                self.def.name
            )));
        }
        Ok(guard)
    }

    /// Waits for the writers of this definition, and keeps new ones waiting until the guard
    /// drops; call [`StoredTable::supersede`] before dropping it when the definition changed.
    pub fn change(&self) -> RwLockWriteGuard<'_, ()> {
        self.changing.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks this definition as replaced.
    pub fn supersede(&self) {
        self.superseded.store(true, Ordering::Release);
    }

    /// The next row id this table hands out.
    pub fn next_row_id(&self) -> u64 {
        self.next_row_id.load(Ordering::Relaxed)
    }

    fn unwritten(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u64>> {
        self.unwritten.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Row ids reserved by a writer; see [`StoredTable::reserve_row_ids`].
#[derive(Debug)]
pub struct RowIdReservation {
    table: Arc<StoredTable>,
    first: u64,
    count: u64,
}

impl RowIdReservation {
    /// The first reserved id.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// How many ids are reserved.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Drop for RowIdReservation {
    fn drop(&mut self) {
        self.table.unwritten().remove(&self.first);
    }
}
