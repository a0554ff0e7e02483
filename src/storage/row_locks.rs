//! [`RowLocks`]: which open transaction holds the right to write each row key, so that a
//! second writer of a row waits for the first to end instead of both writing from the same
//! old version (PostgreSQL's row locks, taken by UPDATE and DELETE). A waiter that would wait
//! for itself, through a chain of waiters, gets 40P01 at once: the wait-for graph has one edge
//! per waiting transaction, so a cycle is found by following it.
//!
//! Hand-written: RocksDB's `TransactionDB` locks rows, but it is another database type (every
//! read, backup and write path would change with it) and its waits block a thread, where a
//! waiter here is a future the connection's task can drop (statement_timeout, cancel).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// Ends a transaction's hold on its rows when dropped (see [`RowLocks::release`]).
#[derive(Debug)]
pub(super) struct Holder {
    /// Dropped when the transaction ends: waiters for its rows wake.
    ended: watch::Sender<()>,
}

impl Holder {
    /// A holder for a transaction that has not ended.
    pub(super) fn new() -> Holder {
        Holder {
            ended: watch::channel(()).0,
        }
    }

    /// What waiters for the transaction's rows wait on.
    pub(super) fn ended(&self) -> watch::Receiver<()> {
        self.ended.subscribe()
    }
}

#[derive(Default)]
struct Held {
    /// Row key → the transaction holding it and how to wait for its end.
    rows: HashMap<Vec<u8>, (u64, watch::Receiver<()>)>,
    /// Waiting transaction → the transaction it waits for.
    waits_for: HashMap<u64, u64>,
}

/// The row locks of a store.
#[derive(Default)]
pub(super) struct RowLocks(Mutex<Held>);

/// Removes a waiter's edge from the wait-for graph, however its wait ends.
struct Waiting<'l> {
    locks: &'l RowLocks,
    waiter: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.locks.held().waits_for.remove(&self.waiter);
    }
}

impl RowLocks {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `key` for transaction `owner` (`ended` from its [`Holder`]), waiting while
    /// another transaction holds it; 40P01 when that one waits, through others, for `owner`.
    pub(super) async fn acquire(
        &self,
        owner: u64,
        ended: &watch::Receiver<()>,
        key: &[u8],
    ) -> Result<()> {
        loop {
            let mut ended = {
                let mut held = self.held();
                let (other, ended) = match held.rows.get(key) {
                    None => {
                        held.rows.insert(key.to_vec(), (owner, ended.clone()));
                        return Ok(());
                    }
                    Some((other, _)) if *other == owner => return Ok(()),
                    // a holder that ended without freeing the row (cannot happen while every
                    // end releases): the row is free
                    Some((_, dead)) if dead.has_changed().is_err() => {
                        held.rows.insert(key.to_vec(), (owner, ended.clone()));
                        return Ok(());
                    }
                    Some((other, ended)) => (*other, ended.clone()),
                };
                if waits_for(&held.waits_for, other, owner) {
                    return Err(Error::DeadlockDetected(format!(
                        "transaction {owner} waits for transaction {other}, \
                         which waits for transaction {owner}"
                    )));
                }
                held.waits_for.insert(owner, other);
                ended
            };
            let _waiting = Waiting {
                locks: self,
                waiter: owner,
            };
            // an error is the end this waits for: the holder dropped its sender
            let _ = ended.changed().await;
        }
    }

    /// Takes `key` for transaction `owner` (`ended` from its [`Holder`]) when no other
    /// transaction holds it; whether it did.
    pub(super) fn try_acquire(&self, owner: u64, ended: &watch::Receiver<()>, key: &[u8]) -> bool {
        let mut held = self.held();
        match held.rows.get(key) {
            Some((other, live)) if *other != owner && live.has_changed().is_ok() => false,
            _ => {
                held.rows.insert(key.to_vec(), (owner, ended.clone()));
                true
            }
        }
    }

    /// Frees the rows `owner` holds among `keys` and wakes their waiters.
    pub(super) fn release(
        &self,
        owner: u64,
        keys: impl IntoIterator<Item = Vec<u8>>,
        holder: Holder,
    ) {
        let mut held = self.held();
        for key in keys {
            if held.rows.get(&key).is_some_and(|(at, _)| *at == owner) {
                held.rows.remove(&key);
            }
        }
        drop(held);
        drop(holder);
    }
}

/// Whether `from` waits, directly or through other waiters, for `to`.
fn waits_for(edges: &HashMap<u64, u64>, from: u64, to: u64) -> bool {
    let mut at = from;
    // every waiter has one edge: a walk longer than the edges is a cycle not through `to`
    for _ in 0..=edges.len() {
        match edges.get(&at) {
            Some(&next) if next == to => return true,
            Some(&next) => at = next,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_writer_waits_for_the_first_to_end() {
        let locks = Arc::new(RowLocks::default());
        let (first, second) = (Holder::new(), Holder::new());
        locks.acquire(1, &first.ended(), b"k").await.unwrap();
        locks.acquire(1, &first.ended(), b"k").await.unwrap();
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move {
                locks
                    .acquire(2, &second.ended(), b"k")
                    .await
                    .map(|()| second)
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        locks.release(1, [b"k".to_vec()], first);
        let second = waiting.await.unwrap().unwrap();
        assert_eq!(locks.held().rows.get(&b"k"[..]).map(|h| h.0), Some(2));
        assert!(locks.held().waits_for.is_empty());
        locks.release(2, [b"k".to_vec()], second);
        assert!(locks.held().rows.is_empty());
    }

    #[tokio::test]
    async fn a_wait_that_closes_a_cycle_is_a_deadlock() {
        let locks = Arc::new(RowLocks::default());
        let (one, two) = (Holder::new(), Holder::new());
        locks.acquire(1, &one.ended(), b"a").await.unwrap();
        locks.acquire(2, &two.ended(), b"b").await.unwrap();
        let first_waits = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.acquire(1, &one.ended(), b"b").await.map(|()| one) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let deadlock = locks.acquire(2, &two.ended(), b"a").await;
        assert!(
            matches!(deadlock, Err(Error::DeadlockDetected(_))),
            "{deadlock:?}"
        );
        // the one that found the cycle gives up: the other goes on
        locks.release(2, [b"b".to_vec()], two);
        let one = first_waits.await.unwrap().unwrap();
        locks.release(1, [b"a".to_vec(), b"b".to_vec()], one);
        assert!(locks.held().rows.is_empty());
    }

    #[test]
    fn trying_takes_only_free_rows() {
        let locks = RowLocks::default();
        let (one, two) = (Holder::new(), Holder::new());
        assert!(locks.try_acquire(1, &one.ended(), b"a"));
        assert!(locks.try_acquire(1, &one.ended(), b"a"));
        assert!(!locks.try_acquire(2, &two.ended(), b"a"));
        locks.release(1, [b"a".to_vec()], one);
        assert!(locks.try_acquire(2, &two.ended(), b"a"));
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_no_edge() {
        let locks = RowLocks::default();
        let (one, two) = (Holder::new(), Holder::new());
        locks.acquire(1, &one.ended(), b"a").await.unwrap();
        let ended = two.ended();
        let cut = tokio::time::timeout(Duration::from_millis(20), locks.acquire(2, &ended, b"a"));
        assert!(cut.await.is_err());
        assert!(locks.held().waits_for.is_empty());
    }
}
