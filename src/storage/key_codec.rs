//! Primary keys as RocksDB keys: the `memcomparable` encoding of the key columns, so keys sort
//! like the values they encode and equal values always give equal bytes.

use crate::error::{Error, Result};
use crate::storage::row_codec::ColumnValues;
use serde::Serializer as _;

/// Encodes the primary key of `row`, given the key columns in key order.
/// Key columns are NOT NULL; a NULL here is a bug of the caller.
pub fn encode_key(key_columns: &[ColumnValues], row: usize) -> Result<Vec<u8>> {
    let mut serializer = memcomparable::Serializer::new(Vec::new());
    for column in key_columns {
        if column.is_null(row) {
            return Err(Error::Internal("NULL in a primary key column".into()));
        }
        let written = match column {
            ColumnValues::Text(a) => serializer.serialize_str(a.value(row)),
            ColumnValues::SmallInt(a) => serializer.serialize_i16(a.value(row)),
            ColumnValues::Int(a) => serializer.serialize_i32(a.value(row)),
            ColumnValues::BigInt(a) => serializer.serialize_i64(a.value(row)),
            ColumnValues::Real(a) => serializer.serialize_f32(a.value(row)),
            ColumnValues::Double(a) => serializer.serialize_f64(a.value(row)),
            ColumnValues::Boolean(a) => serializer.serialize_bool(a.value(row)),
            ColumnValues::Timestamp(a) => serializer.serialize_i64(a.value(row)),
            ColumnValues::Date(a) => serializer.serialize_i32(a.value(row)),
            ColumnValues::Vector(..) => {
                return Err(Error::FeatureNotSupported(
                    "a vector cannot be a key".into(),
                ));
            }
        };
        written.map_err(|e| Error::Internal(format!("cannot encode key: {e}")))?;
    }
    Ok(serializer.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnType;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn keys_sort_like_their_values() {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![-3, 0, 2, 10]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["b", "a", "ab", "a"]));
        let columns = [
            ColumnValues::new(ColumnType::BigInt, &ids).unwrap(),
            ColumnValues::new(ColumnType::Text, &names).unwrap(),
        ];
        let keys: Vec<_> = (0..4).map(|r| encode_key(&columns, r).unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let text_only = [ColumnValues::new(ColumnType::Text, &names).unwrap()];
        let a = encode_key(&text_only, 1).unwrap();
        let ab = encode_key(&text_only, 2).unwrap();
        assert!(a < ab);
        assert_eq!(a, encode_key(&text_only, 3).unwrap());
    }
}
