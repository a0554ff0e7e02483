//! [`EncodedAnswers`]: the data rows that answers served again were encoded to. A cached
//! `recommend` answer comes back as the very arrays it was first served as
//! (`Outcome::Batch { reused: true, .. }`); the rows they were encoded to for the wire are
//! kept here, by the arrays' addresses and the columns' types and formats, so that a cache hit
//! is sent as the same bytes without encoding its values again. An entry holds its arrays, so
//! no other array can take their addresses while it is kept; an answer invalidated in the
//! prediction cache is never served again, so its entry is simply never found and ages out.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use pgwire::api::results::FieldInfo;
use pgwire::messages::data::DataRow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Entries of one generation: when the newest is full, the older one is dropped.
const GENERATION: usize = 4096;

/// Encoded rows of reused answers, shared by every connection of a server.
#[derive(Default)]
pub struct EncodedAnswers {
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    newest: HashMap<Key, Entry>,
    older: HashMap<Key, Entry>,
}

/// The arrays (by address) and each column's type and format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    arrays: Vec<usize>,
    columns: Vec<(u32, i16)>,
}

#[derive(Clone)]
struct Entry {
    /// Held so that the addresses in the key stay theirs.
    _arrays: Vec<ArrayRef>,
    rows: Arc<Vec<DataRow>>,
}

impl EncodedAnswers {
    /// The data rows of `rows` described by `fields`: those kept for the same arrays, or
    /// `encode`d now and kept.
    pub fn get_or_encode<E>(
        &self,
        rows: &RecordBatch,
        fields: &[FieldInfo],
        encode: impl FnOnce() -> Result<Vec<DataRow>, E>,
    ) -> Result<Arc<Vec<DataRow>>, E> {
        let key = Key {
            arrays: (rows.columns().iter())
                .map(|array| Arc::as_ptr(array) as *const () as usize)
                .collect(),
            columns: (fields.iter())
                .map(|field| (field.datatype().oid(), field.format().value()))
                .collect(),
        };
        if let Some(found) = self.get(&key) {
            return Ok(found);
        }
        let encoded = Arc::new(encode()?);
        let entry = Entry {
            _arrays: rows.columns().to_vec(),
            rows: encoded.clone(),
        };
        let mut generations = self.lock();
        if generations.newest.len() >= GENERATION {
            generations.older = std::mem::take(&mut generations.newest);
        }
        generations.newest.insert(key, entry);
        Ok(encoded)
    }

    /// The rows kept under `key`; one found in the older generation moves to the newest.
    fn get(&self, key: &Key) -> Option<Arc<Vec<DataRow>>> {
        let mut generations = self.lock();
        if let Some(entry) = generations.newest.get(key) {
            return Some(entry.rows.clone());
        }
        let entry = generations.older.remove(key)?;
        let rows = entry.rows.clone();
        if generations.newest.len() < GENERATION {
            generations.newest.insert(key.clone(), entry);
        }
        Some(rows)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use pgwire::api::Type;
    use pgwire::api::results::FieldFormat;
    use std::cell::Cell;

    fn batch(values: &[&str]) -> RecordBatch {
        let array: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        RecordBatch::try_from_iter([("item_id", array)]).unwrap()
    }

    fn fields(format: FieldFormat) -> Vec<FieldInfo> {
        vec![FieldInfo::new(
            "item_id".into(),
            None,
            None,
            Type::TEXT,
            format,
        )]
    }

    #[test]
    fn the_same_arrays_are_encoded_once_per_type_and_format() {
        let kept = EncodedAnswers::default();
        let encodings = Cell::new(0);
        let encode = |tag: u8| {
            encodings.set(encodings.get() + 1);
            Ok::<_, ()>(vec![DataRow::new(vec![tag].as_slice().into(), 1)])
        };
        let answer = batch(&["i1", "i2"]);
        let text = fields(FieldFormat::Text);
        let first = kept.get_or_encode(&answer, &text, || encode(1)).unwrap();
        let again = kept
            .get_or_encode(&answer.clone(), &text, || encode(2))
            .unwrap();
        assert_eq!(encodings.get(), 1, "a clone shares the arrays");
        assert!(Arc::ptr_eq(&first, &again));
        let binary = fields(FieldFormat::Binary);
        kept.get_or_encode(&answer, &binary, || encode(3)).unwrap();
        assert_eq!(encodings.get(), 2, "another format is encoded again");
        let equal_values = batch(&["i1", "i2"]);
        let other = kept
            .get_or_encode(&equal_values, &text, || encode(4))
            .unwrap();
        assert_eq!(encodings.get(), 3, "other arrays are encoded again");
        assert_eq!(other[0].data.as_ref(), [4]);
    }

    #[test]
    fn entries_age_out_a_generation_at_a_time() {
        let kept = EncodedAnswers::default();
        let text = fields(FieldFormat::Text);
        let first = batch(&["first"]);
        let row = || Ok::<_, ()>(vec![DataRow::new(b"x".as_slice().into(), 1)]);
        kept.get_or_encode(&first, &text, row).unwrap();
        let others: Vec<RecordBatch> = (0..GENERATION).map(|_| batch(&["other"])).collect();
        for other in &others {
            kept.get_or_encode(other, &text, row).unwrap();
        }
        // the first entry moved to the older generation, and is still found
        let mut encoded = false;
        kept.get_or_encode(&first, &text, || {
            encoded = true;
            row()
        })
        .unwrap();
        assert!(!encoded);
        for other in &others {
            kept.get_or_encode(other, &text, row).unwrap();
        }
        for _ in 0..2 * GENERATION {
            kept.get_or_encode(&batch(&["more"]), &text, row).unwrap();
        }
        kept.get_or_encode(&first, &text, || {
            encoded = true;
            row()
        })
        .unwrap();
        assert!(encoded, "two generations later it is gone");
    }
}
