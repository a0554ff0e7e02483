//! What a cluster's failures become: a cluster that cannot be reached is 08001, one lost while a
//! query runs on it (its scheduler gone, every executor lost) is 08006, anything else keeps the
//! class DataFusion's error has here, with the cluster's words.

use crate::error::Error;
use datafusion::error::DataFusionError;

/// Words of Ballista's and tonic's errors when a connection broke or the work lost its
/// executors.
const LOST: &[&str] = &[
    "transport error",
    "connection refused",
    "broken pipe",
    "connection reset",
    "status: unavailable",
    "all executors were lost",
    "no executors remain",
    "h2 protocol error",
];

/// The error of a query on the cluster at `url`.
pub fn from_cluster(url: &str, error: DataFusionError) -> Error {
    let text = error.to_string();
    let lower = text.to_lowercase();
    // "Task failure due to Executor <id> lost"
    let executor_lost = lower.contains("executor ") && lower.contains(" lost");
    if executor_lost || LOST.iter().any(|words| lower.contains(words)) {
        return Error::ConnectionFailure(format!("lost the cluster at {url}: {text}"));
    }
    Error::from(error)
}

/// The error of a cluster at `url` that did not answer a connection.
pub fn unreachable(url: &str, why: impl std::fmt::Display) -> Error {
    Error::ConnectionNotEstablished(format!("could not connect to the cluster at {url}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_work_and_broken_connections_are_08006_others_keep_their_class() {
        let lost = DataFusionError::Execution(
            "Job abc failed: Task failure due to Executor e1 lost".into(),
        );
        assert_eq!(from_cluster("df://h:1", lost).sqlstate(), "08006");
        let broken = DataFusionError::Execution(
            "Status { code: Unavailable, message: \"tcp connect error\" } transport error".into(),
        );
        assert_eq!(from_cluster("df://h:1", broken).sqlstate(), "08006");
        let plan = DataFusionError::Plan("no such column".into());
        assert_ne!(from_cluster("df://h:1", plan).sqlstate(), "08006");
        assert_eq!(unreachable("df://h:1", "refused").sqlstate(), "08001");
    }
}
