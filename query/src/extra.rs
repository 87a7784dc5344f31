//! Tables a caller hands to a query beside `events` and the views: the
//! governance projections (`servers`, `pins`, `grants`, `policies`), which
//! the gateway's crate folds from the log (this crate does not know the
//! governance model). They are built from plain values, so the caller needs
//! no Arrow.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::Error;

/// A column's values, one per row; `None` is NULL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Values {
    Text(Vec<Option<String>>),
    Count(Vec<Option<u64>>),
    /// Nanoseconds since the epoch, UTC.
    Time(Vec<Option<i64>>),
    Flag(Vec<Option<bool>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Text(v) => v.len(),
            Values::Count(v) => v.len(),
            Values::Time(v) => v.len(),
            Values::Flag(v) => v.len(),
        }
    }
}

/// A named table of columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<(String, Values)>,
}

impl Table {
    /// The table as one Arrow batch; every column must have as many values.
    pub fn batch(&self) -> Result<RecordBatch, Error> {
        let rows = self.columns.first().map_or(0, |(_, v)| v.len());
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (name, values) in &self.columns {
            if values.len() != rows {
                return Err(Error::Arrow {
                    context: format!("table {}", self.name),
                    message: format!("column {name} has {} values, the first has {rows}", values.len()),
                });
            }
            let (kind, array): (DataType, ArrayRef) = match values {
                Values::Text(v) => (DataType::Utf8, Arc::new(StringArray::from(v.clone()))),
                Values::Count(v) => (DataType::UInt64, Arc::new(UInt64Array::from(v.clone()))),
                Values::Time(v) => (
                    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                    Arc::new(TimestampNanosecondArray::from(v.clone()).with_timezone("UTC")),
                ),
                Values::Flag(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone()))),
            };
            fields.push(Field::new(name, kind, true));
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| Error::Arrow {
            context: format!("table {}", self.name),
            message: e.to_string(),
        })
    }
}
