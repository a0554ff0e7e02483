//! The one error type of TasteDB. Every failure maps to a Postgres SQLSTATE code so that clients
//! (psql, drivers, the embedding API) can react to the class of error, not to its wording.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use std::path::PathBuf;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Postgres SQLSTATE codes used by TasteDB (see the Postgres manual, appendix A).
pub mod sqlstate {
    /// Feature not supported.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// Program limit exceeded (a model too large for its memory limit).
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// Division by zero.
    pub const DIVISION_BY_ZERO: &str = "22012";
    /// Numeric value out of range.
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    /// Invalid parameter value (bad option of a statement).
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    /// A value that cannot be used (e.g. vectors of different dimensions).
    pub const DATA_EXCEPTION: &str = "22000";
    /// An interval or date/time text that does not parse.
    pub const INVALID_DATETIME_FORMAT: &str = "22007";
    /// Invalid text representation (a value that does not parse as its column's type).
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    /// NOT NULL violation.
    pub const NOT_NULL_VIOLATION: &str = "23502";
    /// Unique (primary key) violation.
    pub const UNIQUE_VIOLATION: &str = "23505";
    /// Generic syntax error or access rule violation (semantic errors of a query).
    pub const SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION: &str = "42000";
    /// Syntax error.
    pub const SYNTAX_ERROR: &str = "42601";
    /// Ambiguous column reference.
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    /// Bad COPY file format.
    pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
    /// Undefined column.
    pub const UNDEFINED_COLUMN: &str = "42703";
    /// Duplicate column.
    pub const DUPLICATE_COLUMN: &str = "42701";
    /// Insufficient privilege.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// A name PostgreSQL reserves (`public`, `pg_…` role names).
    pub const RESERVED_NAME: &str = "42939";
    /// A GRANT or REVOKE that cannot be done (a privilege the object does not have, a
    /// membership that would make a circle).
    pub const INVALID_GRANT_OPERATION: &str = "0LP01";
    /// A statement stopped by `statement_timeout` (or a cancel request).
    pub const QUERY_CANCELED: &str = "57014";
    /// Duplicate object (e.g. a user that exists).
    pub const DUPLICATE_OBJECT: &str = "42710";
    /// Dependent objects still exist.
    pub const DEPENDENT_OBJECTS_STILL_EXIST: &str = "2BP01";
    /// Undefined object (e.g. an unknown configuration parameter).
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// Undefined function.
    pub const UNDEFINED_FUNCTION: &str = "42883";
    /// Datatype mismatch.
    pub const DATATYPE_MISMATCH: &str = "42804";
    /// Undefined table.
    pub const UNDEFINED_TABLE: &str = "42P01";
    /// Duplicate table.
    pub const DUPLICATE_TABLE: &str = "42P07";
    /// Invalid table definition.
    pub const INVALID_TABLE_DEFINITION: &str = "42P16";
    /// Out of memory / resources.
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const DISK_FULL: &str = "53100";
    /// Statement too complex (recursion limit of the parser).
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    /// Object in use (data directory locked by another process).
    pub const OBJECT_IN_USE: &str = "55006";
    /// I/O error.
    pub const IO_ERROR: &str = "58030";
    /// Internal error.
    pub const INTERNAL_ERROR: &str = "XX000";
    /// Data corrupted.
    pub const DATA_CORRUPTED: &str = "XX001";
    /// A statement that needs a transaction block outside one.
    pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
    /// A statement that cannot run inside a transaction block inside one.
    pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
    /// A savepoint that does not exist.
    pub const INVALID_SAVEPOINT_SPECIFICATION: &str = "3B001";
    /// A prepared statement that does not exist.
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    /// A cursor that does not exist.
    pub const INVALID_CURSOR_NAME: &str = "34000";
    /// A cursor name already in use.
    pub const DUPLICATE_CURSOR: &str = "42P03";
    /// A prepared statement name already in use.
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
    /// A transaction that cannot commit under its isolation level.
    pub const SERIALIZATION_FAILURE: &str = "40001";
    /// Transactions that wait for each other's rows.
    pub const DEADLOCK_DETECTED: &str = "40P01";
    /// An object not in the state the statement needs.
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    /// A write on a read-only server (a replica), as PostgreSQL's standbys answer it.
    pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    /// A connection to another system (a Kafka cluster) that could not be made or broke.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// A connection to another system (a Ballista cluster) that could not be made at all.
    pub const CONNECTION_NOT_ESTABLISHED: &str = "08001";
    /// invalid_password
    pub const INVALID_PASSWORD: &str = "28P01";
    /// invalid_authorization_specification
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// A statement inside a transaction block that an earlier error aborted.
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
}

/// Every error TasteDB returns. [`Error::sqlstate`] gives the Postgres code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A table that does not exist.
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// CREATE TABLE of a name already taken.
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    /// A column that does not exist.
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    /// A column named twice in a definition.
    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),
    /// SQL that does not parse.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// An object that exists already (other than a table).
    #[error("{0}")]
    DuplicateObject(String),
    /// An object that others depend on.
    #[error("{0}")]
    DependentObjects(String),
    /// An object that does not exist (other than a table or column).
    #[error("{0}")]
    UndefinedObject(String),
    /// A statement stopped before it finished (`statement_timeout`).
    #[error("canceling statement due to {0}")]
    QueryCanceled(String),
    /// A statement nested deeper than TasteDB plans (`engine::depth`).
    #[error("statement too complex: {0}")]
    StatementTooComplex(String),
    /// An object in use that the statement would remove (e.g. the role of the session).
    #[error("{0}")]
    ObjectInUse(String),
    /// The role running a statement may not do what it asks.
    #[error("permission denied {0}")]
    InsufficientPrivilege(String),
    /// A statement only the owner of an object may run (42501).
    #[error("must be owner of {0}")]
    MustBeOwner(String),
    /// A name that is reserved (42939).
    #[error("{0}")]
    ReservedName(String),
    /// A GRANT or REVOKE that cannot be done (0LP01).
    #[error("{0}")]
    InvalidGrantOperation(String),
    /// A value that cannot be read as its column's type.
    #[error("{0}")]
    InvalidText(String),
    /// A NULL in a NOT NULL column; `row` counts from 1 within the statement.
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint{}",
        row_suffix(*row)
    )]
    NotNullViolation {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// 1-based row number within the statement's input; 0 when unknown.
        row: u64,
    },
    /// A primary key or unique index value that exists already (in the table or earlier in
    /// the same statement).
    #[error(
        "duplicate key value violates unique constraint \"{constraint}\": key ({key}) already exists (row {row})"
    )]
    UniqueViolation {
        /// The primary key (`table_pkey`) or unique index.
        constraint: String,
        /// The key, rendered as text.
        key: String,
        /// 1-based row number within the statement's input.
        row: u64,
    },
    /// A COPY input file that cannot be read in its format.
    #[error("{0}")]
    BadCopyFile(String),
    /// A table definition that TasteDB cannot store.
    #[error("{0}")]
    InvalidTableDefinition(String),
    /// A statement option with a bad value.
    #[error("{0}")]
    InvalidParameter(String),
    /// Valid SQL that TasteDB does not support.
    #[error("{0}")]
    FeatureNotSupported(String),
    /// A date, time or interval text that does not parse (22007).
    #[error("{0}")]
    InvalidDatetimeFormat(String),
    /// A value whose type does not fit where it is used.
    #[error("{0}")]
    DatatypeMismatch(String),
    /// A value that breaks a rule of its type, e.g. a vector with NaN or of the wrong dimension.
    #[error("{0}")]
    DataException(String),
    /// A request beyond a configured limit (e.g. a model's memory).
    #[error("{0}")]
    ProgramLimitExceeded(String),
    /// The data directory is held by another process.
    #[error("data directory {} is in use by another TasteDB process", path.display())]
    DirectoryLocked {
        /// The directory.
        path: PathBuf,
    },
    /// The path exists but is not a TasteDB data directory.
    #[error("{} is not a TasteDB data directory: {reason}", path.display())]
    NotADataDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Operating-system I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Failure reported by the storage engine (`storage` converts RocksDB's errors).
    #[error("storage error: {0}")]
    Storage(String),
    /// A write failed for lack of space on the data directory's file system: nothing of it
    /// was kept; reads go on, and writes work again once space is freed.
    #[error("could not write to the data directory: no space left on device ({0})")]
    DiskFull(String),
    /// Stored bytes that do not decode: a bug or disk corruption.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// An error of the query engine, classified by [`Error::sqlstate`].
    #[error("{0}")]
    Query(DataFusionError),
    /// A statement that only runs inside a transaction block, outside one.
    #[error("{0} can only be used in transaction blocks")]
    NoActiveTransaction(String),
    /// A statement that cannot run inside a transaction block, inside one.
    #[error("{0} cannot run inside a transaction block")]
    ActiveTransaction(String),
    /// `SET TRANSACTION ISOLATION LEVEL` to another level once the block read or wrote.
    #[error("SET TRANSACTION ISOLATION LEVEL must be called before any query")]
    IsolationAfterQuery,
    /// A savepoint that does not exist.
    #[error("savepoint \"{0}\" does not exist")]
    UndefinedSavepoint(String),
    /// A prepared statement that does not exist.
    #[error("prepared statement \"{0}\" does not exist")]
    UndefinedPreparedStatement(String),
    /// A cursor that is not open.
    #[error("cursor \"{0}\" does not exist")]
    UndefinedCursor(String),
    /// A cursor name already in use.
    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),
    /// EXECUTE with more or fewer arguments than its statement has parameters.
    #[error("wrong number of parameters for prepared statement \"{0}\"")]
    WrongParameterCount(String),
    /// A prepared statement name already in use.
    #[error("prepared statement \"{0}\" already exists")]
    DuplicatePreparedStatement(String),
    /// A transaction whose writes clash with a transaction that committed after it began.
    #[error("could not serialize access due to concurrent update: {0}")]
    SerializationFailure(String),
    /// A transaction that would wait for a row held by one that waits for it.
    #[error("deadlock detected: {0}")]
    DeadlockDetected(String),
    /// A statement in a transaction block that an earlier error aborted.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    /// An object not in the state the statement needs (e.g. changing the rows of a view).
    #[error("{0}")]
    ObjectNotInPrerequisiteState(String),
    /// A connection to another system (a Kafka cluster) that could not be made or broke.
    #[error("{0}")]
    ConnectionFailure(String),
    /// A connection to another system (a Ballista cluster) that could not be made at all.
    #[error("{0}")]
    ConnectionNotEstablished(String),
    /// A write on a read-only server (a replica).
    #[error("{0}")]
    ReadOnlySqlTransaction(String),
    /// Credentials that prove nothing: a wrong password or API key (28P01).
    #[error("{0}")]
    InvalidPassword(String),
    /// A login that is not allowed (28000), e.g. of a role without LOGIN.
    #[error("{0}")]
    InvalidAuthorization(String),
    /// A bug in TasteDB.
    #[error("internal error: {0}")]
    Internal(String),
}

fn row_suffix(row: u64) -> String {
    if row == 0 {
        String::new()
    } else {
        format!(" (row {row})")
    }
}

impl Error {
    /// The Postgres SQLSTATE code of this error.
    pub fn sqlstate(&self) -> &'static str {
        use sqlstate::*;
        match self {
            Error::UndefinedTable(_) => UNDEFINED_TABLE,
            Error::DuplicateTable(_) => DUPLICATE_TABLE,
            Error::UndefinedColumn(_) => UNDEFINED_COLUMN,
            Error::DuplicateColumn(_) => DUPLICATE_COLUMN,
            Error::UndefinedObject(_) => UNDEFINED_OBJECT,
            Error::InvalidPassword(_) => INVALID_PASSWORD,
            Error::InvalidAuthorization(_) => INVALID_AUTHORIZATION,
            Error::NoActiveTransaction(_) => NO_ACTIVE_SQL_TRANSACTION,
            Error::ActiveTransaction(_) | Error::IsolationAfterQuery => ACTIVE_SQL_TRANSACTION,
            Error::UndefinedSavepoint(_) => INVALID_SAVEPOINT_SPECIFICATION,
            Error::UndefinedPreparedStatement(_) => INVALID_SQL_STATEMENT_NAME,
            Error::UndefinedCursor(_) => INVALID_CURSOR_NAME,
            Error::DuplicateCursor(_) => DUPLICATE_CURSOR,
            Error::DuplicatePreparedStatement(_) => DUPLICATE_PREPARED_STATEMENT,
            Error::WrongParameterCount(_) => SYNTAX_ERROR,
            Error::InsufficientPrivilege(_) | Error::MustBeOwner(_) => INSUFFICIENT_PRIVILEGE,
            Error::ObjectInUse(_) => OBJECT_IN_USE,
            Error::ReservedName(_) => RESERVED_NAME,
            Error::InvalidGrantOperation(_) => INVALID_GRANT_OPERATION,
            Error::StatementTooComplex(_) => STATEMENT_TOO_COMPLEX,
            Error::DiskFull(_) => DISK_FULL,
            Error::QueryCanceled(_) => QUERY_CANCELED,
            Error::DuplicateObject(_) => DUPLICATE_OBJECT,
            Error::DependentObjects(_) => DEPENDENT_OBJECTS_STILL_EXIST,
            Error::Syntax(_) => SYNTAX_ERROR,
            Error::InvalidText(_) => INVALID_TEXT_REPRESENTATION,
            Error::NotNullViolation { .. } => NOT_NULL_VIOLATION,
            Error::UniqueViolation { .. } => UNIQUE_VIOLATION,
            Error::BadCopyFile(_) => BAD_COPY_FILE_FORMAT,
            Error::InvalidTableDefinition(_) => INVALID_TABLE_DEFINITION,
            Error::InvalidParameter(_) => INVALID_PARAMETER_VALUE,
            Error::FeatureNotSupported(_) => FEATURE_NOT_SUPPORTED,
            Error::InvalidDatetimeFormat(_) => INVALID_DATETIME_FORMAT,
            Error::DatatypeMismatch(_) => DATATYPE_MISMATCH,
            Error::DataException(_) => DATA_EXCEPTION,
            Error::ProgramLimitExceeded(_) => PROGRAM_LIMIT_EXCEEDED,
            Error::DirectoryLocked { .. } => OBJECT_IN_USE,
            Error::NotADataDirectory { .. } | Error::Io(_) | Error::Storage(_) => IO_ERROR,
            Error::Corrupt(_) => DATA_CORRUPTED,
            Error::Query(e) => datafusion_sqlstate(e),
            Error::Internal(_) => INTERNAL_ERROR,
            Error::SerializationFailure(_) => SERIALIZATION_FAILURE,
            Error::DeadlockDetected(_) => DEADLOCK_DETECTED,
            Error::InFailedTransaction => IN_FAILED_SQL_TRANSACTION,
            Error::ObjectNotInPrerequisiteState(_) => OBJECT_NOT_IN_PREREQUISITE_STATE,
            Error::ConnectionFailure(_) => CONNECTION_FAILURE,
            Error::ConnectionNotEstablished(_) => CONNECTION_NOT_ESTABLISHED,
            Error::ReadOnlySqlTransaction(_) => READ_ONLY_SQL_TRANSACTION,
        }
    }

    /// Wraps this error for returning it through DataFusion's traits; [`From<DataFusionError>`]
    /// unwraps it again, so the SQLSTATE survives the trip.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => match other.downcast::<std::io::Error>() {
                    Ok(io) => Error::Io(*io),
                    Err(other) => Error::Query(DataFusionError::External(other)),
                },
            },
            // Our errors surface from under DataFusion's wrappers; DataFusion's keep them.
            DataFusionError::Context(context, inner) => match Error::from(*inner) {
                Error::Query(q) => Error::Query(DataFusionError::Context(context, Box::new(q))),
                ours => ours,
            },
            DataFusionError::Diagnostic(diagnostic, inner) => match Error::from(*inner) {
                Error::Query(q) => {
                    Error::Query(DataFusionError::Diagnostic(diagnostic, Box::new(q)))
                }
                ours => ours,
            },
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Error::from(inner),
                Err(shared) => Error::Query(DataFusionError::Shared(shared)),
            },
            DataFusionError::Collection(mut errors) if !errors.is_empty() => {
                Error::from(errors.swap_remove(0))
            }
            DataFusionError::IoError(io) => Error::Io(io),
            DataFusionError::Plan(message) => match missing_table(&message) {
                Some(table) => Error::UndefinedTable(table),
                None => Error::Query(DataFusionError::Plan(message)),
            },
            other => Error::Query(other),
        }
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        Error::Query(DataFusionError::ArrowError(Box::new(e), None))
    }
}

impl From<ParserError> for Error {
    fn from(e: ParserError) -> Self {
        Error::Query(DataFusionError::SQL(Box::new(e), None))
    }
}

/// The table named by DataFusion's "table 'tastedb.public.x' not found", without the default
/// catalog and schema.
fn missing_table(message: &str) -> Option<String> {
    let name = message
        .strip_prefix("table '")?
        .strip_suffix("' not found")?;
    let unqualified = name.strip_prefix("tastedb.public.").unwrap_or(name);
    Some(unqualified.to_string())
}

/// Classifies an error of DataFusion. Its error enum says little about the SQL class of a planning
/// error, so a few well-known messages are recognised as well.
fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    use datafusion::common::SchemaError;
    use sqlstate::*;
    match e {
        DataFusionError::SQL(parser, _) => match parser.as_ref() {
            ParserError::RecursionLimitExceeded => STATEMENT_TOO_COMPLEX,
            _ => SYNTAX_ERROR,
        },
        DataFusionError::ArrowError(arrow, _) => arrow_sqlstate(arrow),
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { .. } => UNDEFINED_COLUMN,
            SchemaError::AmbiguousReference { .. } => AMBIGUOUS_COLUMN,
            _ => SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION,
        },
        DataFusionError::Plan(msg) => plan_sqlstate(msg),
        DataFusionError::Execution(msg) => execution_sqlstate(msg),
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::ResourcesExhausted(_) => OUT_OF_MEMORY,
        DataFusionError::Configuration(_) => INVALID_PARAMETER_VALUE,
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => IO_ERROR,
        DataFusionError::ParquetError(_) => INVALID_TEXT_REPRESENTATION,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_sqlstate(inner)
        }
        DataFusionError::Shared(inner) => datafusion_sqlstate(inner),
        DataFusionError::Collection(errors) => errors
            .first()
            .map(datafusion_sqlstate)
            .unwrap_or(INTERNAL_ERROR),
        DataFusionError::External(inner) => {
            if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                arrow_sqlstate(arrow)
            } else if let Some(datafusion) = inner.downcast_ref::<DataFusionError>() {
                datafusion_sqlstate(datafusion)
            } else {
                INTERNAL_ERROR
            }
        }
        _ => INTERNAL_ERROR,
    }
}

fn arrow_sqlstate(e: &ArrowError) -> &'static str {
    use sqlstate::*;
    match e {
        ArrowError::CastError(_) | ArrowError::ParseError(_) | ArrowError::CsvError(_) => {
            INVALID_TEXT_REPRESENTATION
        }
        ArrowError::DivideByZero => DIVISION_BY_ZERO,
        ArrowError::ArithmeticOverflow(_) => NUMERIC_VALUE_OUT_OF_RANGE,
        ArrowError::IoError(..) => IO_ERROR,
        ArrowError::MemoryError(_) => OUT_OF_MEMORY,
        ArrowError::ExternalError(inner) => match inner.downcast_ref::<ArrowError>() {
            Some(arrow) => arrow_sqlstate(arrow),
            None => INTERNAL_ERROR,
        },
        _ => INTERNAL_ERROR,
    }
}

fn plan_sqlstate(msg: &str) -> &'static str {
    use sqlstate::*;
    if msg.contains("already exists") {
        DUPLICATE_TABLE
    } else if msg.starts_with("Invalid function") || msg.contains("No function matches") {
        UNDEFINED_FUNCTION
    } else if msg.contains("Cannot cast") || msg.contains("Cannot coerce") {
        DATATYPE_MISMATCH
    } else {
        SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION
    }
}

fn execution_sqlstate(msg: &str) -> &'static str {
    use sqlstate::*;
    if msg.contains("Cannot cast")
        || msg.contains("Error parsing")
        || msg.contains("Failed to parse")
    {
        INVALID_TEXT_REPRESENTATION
    } else if msg.contains("Overflow") || msg.contains("overflow") {
        NUMERIC_VALUE_OUT_OF_RANGE
    } else if msg.contains("must have the same length") || msg.contains("to have the same length") {
        // DataFusion's vector distances given vectors of different dimensions
        DATA_EXCEPTION
    } else {
        INTERNAL_ERROR
    }
}
