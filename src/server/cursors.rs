//! SQL cursors of a connection: `DECLARE name [NO SCROLL] CURSOR [WITH HOLD] FOR query`,
//! `FETCH [NEXT | n | FORWARD [n | ALL] | ALL] [FROM | IN] name`, `MOVE` (the same forms; the
//! rows are skipped) and `CLOSE name | ALL`, as
//! psycopg's named cursors and pandas' `chunksize` use them. A cursor is the query's row
//! stream, read as far as FETCH asks; cursors scan forward only (`FETCH BACKWARD`, `PRIOR`,
//! `ABSOLUTE` … are `0A000`). Without `WITH HOLD` a cursor needs a transaction block and
//! ends with it, as in PostgreSQL.

use crate::engine::Statement;
use crate::error::{Error, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{
    CloseCursor, FetchDirection, Query, Statement as SqlStatement, Value,
};
use futures::StreamExt;
use pgwire::api::ClientInfo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A cursor statement.
#[derive(Debug, Clone)]
pub enum CursorStatement {
    /// `DECLARE name CURSOR [WITH HOLD] FOR query`.
    Declare {
        /// Cursor name.
        name: String,
        /// Its query.
        query: Box<Query>,
        /// `WITH HOLD`: it outlives the transaction block.
        hold: bool,
    },
    /// `FETCH … FROM name`: up to `count` rows (`None`: all that are left).
    Fetch {
        /// Cursor name.
        name: String,
        /// Rows asked for.
        count: Option<usize>,
    },
    /// `MOVE … name`: a FETCH whose rows are skipped and counted.
    Move {
        /// Cursor name.
        name: String,
        /// Rows to skip.
        count: Option<usize>,
    },
    /// `CLOSE name`, or `CLOSE ALL` (`None`).
    Close(Option<String>),
}

/// Recognises a cursor statement; `Err` for a form TasteDB does not offer.
pub fn cursor_statement(statement: &Statement) -> Option<Result<CursorStatement>> {
    if let Statement::Move(fetch) = statement
        && let SqlStatement::Fetch {
            name, direction, ..
        } = fetch.as_ref()
    {
        return Some(fetch_count(direction).map(|count| CursorStatement::Move {
            name: name.value.clone(),
            count,
        }));
    }
    let sql = statement.sql()?;
    Some(match sql {
        SqlStatement::Declare { stmts } => declare(stmts),
        SqlStatement::Fetch {
            name, direction, ..
        } => fetch_count(direction).map(|count| CursorStatement::Fetch {
            name: name.value.clone(),
            count,
        }),
        SqlStatement::Close { cursor } => Ok(CursorStatement::Close(match cursor {
            CloseCursor::All => None,
            CloseCursor::Specific { name } => Some(name.value.clone()),
        })),
        _ => return None,
    })
}

fn declare(stmts: &[datafusion::sql::sqlparser::ast::Declare]) -> Result<CursorStatement> {
    let [declare] = stmts else {
        return Err(Error::Syntax("DECLARE declares one cursor".into()));
    };
    let (Some(query), [name]) = (&declare.for_query, declare.names.as_slice()) else {
        return Err(Error::FeatureNotSupported(
            "DECLARE is for cursors: DECLARE name CURSOR FOR query".into(),
        ));
    };
    if declare.scroll == Some(true) {
        return Err(Error::FeatureNotSupported(
            "SCROLL cursors: TasteDB's cursors scan forward only".into(),
        ));
    }
    Ok(CursorStatement::Declare {
        name: name.value.clone(),
        query: query.clone(),
        hold: declare.hold == Some(true),
    })
}

/// The rows a FETCH direction asks for (`None`: all).
fn fetch_count(direction: &FetchDirection) -> Result<Option<usize>> {
    let number = |value: &Value| match value {
        Value::Number(n, _) => n.parse::<usize>().map_err(|_| {
            Error::FeatureNotSupported(format!("FETCH {n}: cursors scan forward only"))
        }),
        other => Err(Error::Syntax(format!(
            "FETCH count must be a number, not {other}"
        ))),
    };
    match direction {
        FetchDirection::Next => Ok(Some(1)),
        FetchDirection::Count { limit } => number(limit).map(Some),
        FetchDirection::Forward { limit: None } => Ok(Some(1)),
        FetchDirection::Forward { limit: Some(limit) } => number(limit).map(Some),
        FetchDirection::All | FetchDirection::ForwardAll => Ok(None),
        other => Err(Error::FeatureNotSupported(format!(
            "FETCH {other}: TasteDB's cursors scan forward only"
        ))),
    }
}

/// One open cursor.
struct Cursor {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    /// Rows read from the stream but not fetched yet.
    pending: Option<RecordBatch>,
    hold: bool,
}

/// A connection's open cursors, by name.
#[derive(Default)]
pub struct Cursors(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cursor>>>>);

impl Cursors {
    /// `client`'s cursors.
    pub fn of<C: ClientInfo>(client: &C) -> Arc<Cursors> {
        client
            .session_extensions()
            .get_or_insert_with(Cursors::default)
    }

    /// Opens cursor `name` over `stream`; 42P03 when one of that name is open.
    pub fn declare(&self, name: &str, stream: SendableRecordBatchStream, hold: bool) -> Result<()> {
        let mut cursors = lock(&self.0);
        if cursors.contains_key(name) {
            return Err(Error::DuplicateCursor(name.to_string()));
        }
        let cursor = Cursor {
            schema: stream.schema(),
            stream,
            pending: None,
            hold,
        };
        cursors.insert(name.to_string(), Arc::new(tokio::sync::Mutex::new(cursor)));
        Ok(())
    }

    /// The columns of cursor `name`, if it is open.
    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        let cursor = lock(&self.0).get(name)?.clone();
        let cursor = cursor.try_lock().ok()?;
        Some(cursor.schema.clone())
    }

    /// The next `count` rows of cursor `name` (all that are left for `None`); 34000 when it
    /// is not open.
    pub async fn fetch(&self, name: &str, count: Option<usize>) -> Result<RecordBatch> {
        let cursor = lock(&self.0)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UndefinedCursor(name.to_string()))?;
        let mut cursor = cursor.lock().await;
        let wanted = count.unwrap_or(usize::MAX);
        let mut taken: Vec<RecordBatch> = Vec::new();
        let mut rows = 0;
        while rows < wanted {
            let batch = match cursor.pending.take() {
                Some(batch) => batch,
                None => match cursor.stream.next().await {
                    Some(batch) => batch?,
                    None => break,
                },
            };
            let room = wanted - rows;
            if batch.num_rows() > room {
                cursor.pending = Some(batch.slice(room, batch.num_rows() - room));
                taken.push(batch.slice(0, room));
                rows += room;
            } else {
                rows += batch.num_rows();
                taken.push(batch);
            }
        }
        Ok(concat_batches(&cursor.schema, &taken)?)
    }

    /// Closes cursor `name` (34000 when it is not open), or all for `None`.
    pub fn close(&self, name: Option<&str>) -> Result<()> {
        let mut cursors = lock(&self.0);
        match name {
            None => cursors.clear(),
            Some(name) => {
                cursors
                    .remove(name)
                    .ok_or_else(|| Error::UndefinedCursor(name.to_string()))?;
            }
        }
        Ok(())
    }

    /// The transaction block ended: its cursors without `WITH HOLD` close.
    pub fn block_ended(&self) {
        lock(&self.0).retain(|_, cursor| cursor.try_lock().map_or(true, |c| c.hold));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
