//! What the store keeps: a reading, its quality and source, and the rows it
//! refuses, with their Arrow schemas.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use headroom_geodata::{Quality, Quantity};
use headroom_readings::{Interner, Reading};

use crate::error::{Error, Result};

/// Why a reading went to the `rejected` table instead of `readings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The asset id is not in the network.
    UnknownAsset,
    /// The value is NaN or infinite.
    NonFinite,
    /// The timestamp lies further in the future than the allowed clock skew.
    FutureTimestamp,
}

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 3] = [
        RejectReason::UnknownAsset,
        RejectReason::NonFinite,
        RejectReason::FutureTimestamp,
    ];

    /// The name used in the `rejected` table and the counts.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownAsset => "unknown_asset",
            RejectReason::NonFinite => "non_finite_value",
            RejectReason::FutureTimestamp => "timestamp_in_future",
        }
    }

    /// The reason with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A refused reading, why, and when it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// The reading as delivered.
    pub reading: Reading,
    /// Why it was refused.
    pub reason: RejectReason,
    /// When the store received it, ms since the epoch.
    pub received_ms: i64,
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Columns of the `readings` table.
pub fn readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts", timestamp_type(), false),
        Field::new("asset", DataType::Utf8, false),
        Field::new("quantity", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("quality", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
    ]))
}

/// Columns of the `rejected` table: a reading's, the reason and the arrival time.
pub fn rejected_schema() -> SchemaRef {
    let mut fields: Vec<Field> = readings_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("reason", DataType::Utf8, false));
    fields.push(Field::new("received", timestamp_type(), false));
    Arc::new(Schema::new(fields))
}

fn reading_columns<'a>(rows: impl Iterator<Item = &'a Reading> + Clone) -> Vec<ArrayRef> {
    let ts = TimestampMillisecondArray::from(rows.clone().map(|r| r.ts_ms).collect::<Vec<i64>>());
    let asset: StringArray = rows.clone().map(|r| Some(&*r.asset)).collect();
    let quantity: StringArray = rows.clone().map(|r| Some(r.quantity.as_str())).collect();
    let value: Float64Array = rows.clone().map(|r| r.value).collect();
    let quality: StringArray = rows.clone().map(|r| Some(r.quality.as_str())).collect();
    let source: StringArray = rows.map(|r| Some(&*r.source)).collect();
    vec![
        Arc::new(ts.with_timezone("UTC")),
        Arc::new(asset),
        Arc::new(quantity),
        Arc::new(value),
        Arc::new(quality),
        Arc::new(source),
    ]
}

/// Readings as one batch of the `readings` schema.
pub fn readings_batch<'a>(rows: impl Iterator<Item = &'a Reading> + Clone) -> RecordBatch {
    RecordBatch::try_new(readings_schema(), reading_columns(rows))
        .expect("columns follow the readings schema")
}

/// Rejected rows as one batch of the `rejected` schema.
pub fn rejected_batch(rows: &[Rejected]) -> RecordBatch {
    let mut columns = reading_columns(rows.iter().map(|r| &r.reading));
    let reason: StringArray = rows.iter().map(|r| Some(r.reason.as_str())).collect();
    let received =
        TimestampMillisecondArray::from(rows.iter().map(|r| r.received_ms).collect::<Vec<i64>>());
    columns.push(Arc::new(reason));
    columns.push(Arc::new(received.with_timezone("UTC")));
    RecordBatch::try_new(rejected_schema(), columns).expect("columns follow the rejected schema")
}

/// A column of a batch by name, as its array type.
pub fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            Error::Internal(format!(
                "stored batch lacks column {name} of the expected type"
            ))
        })
}

/// Readings back from a batch of the `readings` schema (a Parquet file being merged).
pub fn readings_from_batch(batch: &RecordBatch, interned: &mut Interner) -> Result<Vec<Reading>> {
    let ts = column::<TimestampMillisecondArray>(batch, "ts")?;
    let asset = column::<StringArray>(batch, "asset")?;
    let quantity = column::<StringArray>(batch, "quantity")?;
    let value = column::<Float64Array>(batch, "value")?;
    let quality = column::<StringArray>(batch, "quality")?;
    let source = column::<StringArray>(batch, "source")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Reading {
                ts_ms: ts.value(i),
                asset: interned.get(asset.value(i)),
                quantity: Quantity::parse_stored(quantity.value(i)).ok_or_else(|| {
                    Error::Internal(format!("stored quantity {:?} unknown", quantity.value(i)))
                })?,
                value: value.value(i),
                quality: Quality::parse(quality.value(i)).ok_or_else(|| {
                    Error::Internal(format!("stored quality {:?} unknown", quality.value(i)))
                })?,
                source: interned.get(source.value(i)),
            })
        })
        .collect()
}
