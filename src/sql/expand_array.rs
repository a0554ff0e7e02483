//! `_pg_expandarray(array)`, PostgreSQL's `information_schema._pg_expandarray`: pgJDBC's
//! `getPrimaryKeys` and `getIndexInfo` expand `pg_index.indkey` with it. PostgreSQL's is a
//! set-returning function of `(x, n)` records; this one answers the list of `{x, n}`
//! structs, which the server's client rewrites unnest (`server::set_returning`).

use datafusion::arrow::array::{Array, AsArray, Int32Array, ListArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

/// The function.
pub fn expand_array() -> ScalarUDF {
    ScalarUDF::new_from_impl(ExpandArray {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

/// The `{x, n}` struct of elements of type `item`.
fn element_fields(item: &Field) -> Fields {
    Fields::from(vec![
        Field::new("x", item.data_type().clone(), true),
        Field::new("n", DataType::Int32, false),
    ])
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [DataType::List(item)] => Ok(DataType::new_list(
                DataType::Struct(element_fields(item)),
                true,
            )),
            _ => plan_err!("No function matches _pg_expandarray({args:?}): it takes an array"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let lists = args.args[0].to_array(args.number_rows)?;
        let Some(lists) = lists.as_list_opt::<i32>() else {
            return plan_err!("_pg_expandarray takes an array");
        };
        let offsets = lists.offsets();
        // Each element's position in its own list, from 1; 0 for values no list refers to.
        let mut positions = vec![0; lists.values().len()];
        for window in offsets.windows(2) {
            let (start, end) = (window[0] as usize, window[1] as usize);
            for (n, position) in positions[start..end].iter_mut().enumerate() {
                *position = i32::try_from(n + 1).unwrap_or(i32::MAX);
            }
        }
        let DataType::List(item) = lists.data_type() else {
            return plan_err!("_pg_expandarray takes an array");
        };
        let fields = element_fields(item);
        let elements = StructArray::try_new(
            fields.clone(),
            vec![
                lists.values().clone(),
                Arc::new(Int32Array::from(positions)),
            ],
            None,
        )?;
        let expanded = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Struct(fields), true)),
            offsets.clone(),
            Arc::new(elements),
            lists.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(expanded)))
    }
}
