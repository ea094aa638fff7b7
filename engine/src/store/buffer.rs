//! Acknowledged readings not yet in Parquet, last write wins per
//! (asset, quantity, ts), ready as one Arrow batch sorted by asset then time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use headroom_geodata::Quantity;
use rustc_hash::FxHashMap;

use super::record::{Quality, Reading, readings_batch};

/// Milliseconds in a day: Parquet partitions are UTC days.
pub const DAY_MS: i64 = 86_400_000;

/// Rough memory per buffered reading: the value, its key and the tree's share.
const BYTES_PER_READING: usize = 64;

type Series = BTreeMap<i64, (f64, Quality, Arc<str>)>;

/// The buffer.
#[derive(Debug, Default)]
pub struct Buffer {
    series: FxHashMap<(Arc<str>, Quantity), Series>,
    readings: usize,
    since: Option<Instant>,
    batch: Option<RecordBatch>,
}

impl Buffer {
    /// Adds a reading; one already held for its key is replaced.
    pub fn insert(&mut self, r: Reading) {
        self.batch = None;
        self.since.get_or_insert_with(Instant::now);
        let series = self.series.entry((r.asset, r.quantity)).or_default();
        if series
            .insert(r.ts_ms, (r.value, r.quality, r.source))
            .is_none()
        {
            self.readings += 1;
        }
    }

    /// Readings held.
    pub fn len(&self) -> usize {
        self.readings
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.readings == 0
    }

    /// Estimated memory held, bytes.
    pub fn bytes(&self) -> usize {
        self.readings * BYTES_PER_READING
    }

    /// How long since the oldest reading held arrived.
    pub fn age(&self) -> Option<std::time::Duration> {
        self.since.map(|t| t.elapsed())
    }

    /// The UTC days (ms / DAY_MS) with readings.
    pub fn days(&self) -> std::collections::BTreeSet<i64> {
        self.series
            .values()
            .flat_map(|s| s.keys().map(|ts| ts.div_euclid(DAY_MS)))
            .collect()
    }

    /// Every reading, sorted by asset, quantity and time.
    pub fn sorted(&self) -> Vec<Reading> {
        let mut keys: Vec<&(Arc<str>, Quantity)> = self.series.keys().collect();
        keys.sort();
        let mut out = Vec::with_capacity(self.readings);
        for key in keys {
            for (ts, (value, quality, source)) in &self.series[key] {
                out.push(Reading {
                    ts_ms: *ts,
                    asset: key.0.clone(),
                    quantity: key.1,
                    value: *value,
                    quality: *quality,
                    source: source.clone(),
                });
            }
        }
        out
    }

    /// The whole buffer as one batch (kept until the next insert).
    pub fn batch(&mut self) -> RecordBatch {
        if let Some(batch) = &self.batch {
            return batch.clone();
        }
        let rows = self.sorted();
        let batch = readings_batch(rows.iter());
        self.batch = Some(batch.clone());
        batch
    }

    /// One series, by time.
    pub fn series(&self, asset: &str, quantity: Quantity) -> Option<&Series> {
        self.series.get(&(Arc::<str>::from(asset), quantity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_of_a_key_wins() {
        let mut b = Buffer::default();
        let r = |ts, value| Reading {
            ts_ms: ts,
            asset: "T1".into(),
            quantity: Quantity::PKw,
            value,
            quality: Quality::Good,
            source: "s".into(),
        };
        b.insert(r(DAY_MS + 5, 1.0));
        b.insert(r(5, 2.0));
        b.insert(r(DAY_MS + 5, 3.0));
        assert_eq!(b.len(), 2);
        let rows = b.sorted();
        assert_eq!(
            rows.iter().map(|r| (r.ts_ms, r.value)).collect::<Vec<_>>(),
            [(5, 2.0), (DAY_MS + 5, 3.0)]
        );
        assert_eq!(b.days().into_iter().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(b.batch().num_rows(), 2);
    }
}
