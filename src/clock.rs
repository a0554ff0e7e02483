//! The wall clock as TasteDB stores times: microseconds since the Unix epoch.

/// Now, in microseconds since the Unix epoch (0 for a clock set before 1970).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
