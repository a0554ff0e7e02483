//! The engine's memory budget: one limit for every statement of a data directory (every
//! session of a server), enforced by DataFusion's memory pool. Sorts, aggregations and
//! sort-merge joins spill to temporary files when the pool runs short; what cannot spill (a
//! hash join's build side, TRAIN's factors) fails with `53200 out of memory` and the engine
//! goes on.

use crate::error::{Error, Result};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use std::num::NonZeroUsize;
use std::sync::Arc;

/// The share of the machine's memory that statements may use unless told otherwise.
pub const DEFAULT_FRACTION: f64 = 0.5;

/// The machine's memory when it cannot be read.
const ASSUMED_MACHINE_BYTES: usize = 8 << 30;

/// Parses a memory size as PostgreSQL writes them (`512MB`, `4GB`, `1TB`, `64kB`, a number of
/// bytes) or a share of the machine's memory (`50%`); 22023 otherwise.
pub fn parse_size(text: &str) -> Result<usize> {
    let bad = || {
        Error::InvalidParameter(format!(
            "invalid memory size \"{text}\": use a number with kB, MB, GB or TB, or a percentage \
             of the machine's memory such as 50%"
        ))
    };
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        let share: f64 = percent.trim().parse().map_err(|_| bad())?;
        if !(share > 0.0 && share <= 100.0) {
            return Err(bad());
        }
        return Ok((machine_memory() as f64 * share / 100.0) as usize);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = number.checked_mul(scale).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(bad());
    }
    usize::try_from(bytes).map_err(|_| bad())
}

/// The default budget: [`DEFAULT_FRACTION`] of the machine's memory.
pub fn default_limit() -> usize {
    (machine_memory() as f64 * DEFAULT_FRACTION) as usize
}

/// The machine's physical memory, from `/proc/meminfo` (Linux); a fixed 8 GiB elsewhere.
fn machine_memory() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kb| kb.trim().parse::<usize>().ok())
                .map(|kb| kb * 1024)
        });
    total.unwrap_or(ASSUMED_MACHINE_BYTES)
}

/// A runtime whose statements share `limit` bytes, spilling to the system's temporary
/// directory.
pub fn runtime(limit: usize, stores: Arc<dyn ObjectStoreRegistry>) -> Result<Arc<RuntimeEnv>> {
    let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
        FairSpillPool::new(limit),
        NonZeroUsize::MIN.saturating_add(4),
    ));
    // file listings are never cached: archives grow while they are read
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .with_object_store_registry(stores)
        .with_cache_manager(caches)
        .build_arc()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_postgres_writes_them() {
        assert_eq!(parse_size("64kB").unwrap(), 64 << 10);
        assert_eq!(parse_size("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_size(" 4 GB").unwrap(), 4 << 30);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("50%").unwrap() > 0);
        for bad in [
            "",
            "0",
            "abc",
            "5 weeks",
            "-1GB",
            "0%",
            "150%",
            "99999999999TB",
        ] {
            assert_eq!(parse_size(bad).unwrap_err().sqlstate(), "22023", "{bad}");
        }
    }
}
