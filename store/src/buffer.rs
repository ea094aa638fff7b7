//! Acknowledged readings not yet in Parquet, last write wins per
//! (asset, quantity, ts), ready as one Arrow batch sorted by asset then time.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use headroom_geodata::{Quality, Quantity};
use headroom_readings::Reading;
use rustc_hash::{FxHashMap, FxHashSet};

use super::record::readings_batch;

/// Milliseconds in a day: Parquet partitions are UTC days.
pub const DAY_MS: i64 = 86_400_000;

/// Rough memory per buffered reading: the row and the batch built from it.
const BYTES_PER_READING: usize = 64;

/// A buffered reading, its asset and source numbered.
#[derive(Clone, Copy, Debug)]
struct Row {
    ts_ms: i64,
    value: f64,
    asset: u32,
    source: u32,
    quantity: Quantity,
    quality: Quality,
}

/// Strings numbered in order of first sight.
#[derive(Debug, Default)]
struct Names {
    names: Vec<Arc<str>>,
    numbers: FxHashMap<Arc<str>, u32>,
}

impl Names {
    fn number(&mut self, name: Arc<str>) -> u32 {
        if let Some(n) = self.numbers.get(&*name) {
            return *n;
        }
        let n = self.names.len() as u32;
        self.names.push(name.clone());
        self.numbers.insert(name, n);
        n
    }
}

/// The buffer: readings appended as they come (the committer applies a group's
/// rows in a few hundred nanoseconds each); the last write of a key is found
/// when the rows are sorted for a query or a flush.
#[derive(Debug, Default)]
pub struct Buffer {
    rows: Vec<Row>,
    assets: Names,
    sources: Names,
    days: FxHashSet<i64>,
    since: Option<Instant>,
    batch: Option<RecordBatch>,
}

impl Buffer {
    /// Adds a reading; it replaces one held for its key when sorted.
    pub fn insert(&mut self, r: Reading) {
        self.batch = None;
        self.since.get_or_insert_with(Instant::now);
        let day = r.ts_ms.div_euclid(DAY_MS);
        if self
            .rows
            .last()
            .is_none_or(|last| last.ts_ms.div_euclid(DAY_MS) != day)
        {
            self.days.insert(day);
        }
        let row = Row {
            ts_ms: r.ts_ms,
            value: r.value,
            asset: self.assets.number(r.asset),
            source: self.sources.number(r.source),
            quantity: r.quantity,
            quality: r.quality,
        };
        self.rows.push(row);
    }

    /// Readings held (a key written again counts again until sorted out).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Estimated memory held, bytes.
    pub fn bytes(&self) -> usize {
        self.rows.len() * BYTES_PER_READING
    }

    /// How long since the oldest reading held arrived.
    pub fn age(&self) -> Option<std::time::Duration> {
        self.since.map(|t| t.elapsed())
    }

    /// The UTC days (ms / DAY_MS) with readings.
    pub fn days(&self) -> std::collections::BTreeSet<i64> {
        self.days.iter().copied().collect()
    }

    /// Every reading once (the last written of each key), sorted by asset,
    /// quantity and time.
    pub fn sorted(&self) -> Vec<Reading> {
        // Assets ranked by name once, so rows sort on numbers.
        let mut by_name: Vec<u32> = (0..self.assets.names.len() as u32).collect();
        by_name.sort_unstable_by(|a, b| {
            self.assets.names[*a as usize].cmp(&self.assets.names[*b as usize])
        });
        let mut rank = vec![0u32; by_name.len()];
        for (r, a) in by_name.iter().enumerate() {
            rank[*a as usize] = r as u32;
        }
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        // The position breaks ties: among equal keys the last written sorts last.
        order.sort_unstable_by_key(|i| {
            let row = &self.rows[*i as usize];
            (rank[row.asset as usize], row.quantity, row.ts_ms, *i)
        });
        let mut out: Vec<Reading> = Vec::with_capacity(order.len());
        let mut previous: Option<&Row> = None;
        for i in order {
            let row = &self.rows[i as usize];
            let reading = Reading {
                ts_ms: row.ts_ms,
                asset: self.assets.names[row.asset as usize].clone(),
                quantity: row.quantity,
                value: row.value,
                quality: row.quality,
                source: self.sources.names[row.source as usize].clone(),
            };
            match previous {
                Some(p)
                    if p.asset == row.asset
                        && p.quantity == row.quantity
                        && p.ts_ms == row.ts_ms =>
                {
                    *out.last_mut().expect("a previous row") = reading;
                }
                _ => out.push(reading),
            }
            previous = Some(row);
        }
        out
    }

    /// Those of `rows` whose key the buffer does not hold.
    pub fn without_keys_held<'a>(&self, rows: &'a [Reading]) -> Vec<&'a Reading> {
        let held: FxHashSet<(u32, Quantity, i64)> = self
            .rows
            .iter()
            .map(|r| (r.asset, r.quantity, r.ts_ms))
            .collect();
        rows.iter()
            .filter(|r| {
                self.assets
                    .numbers
                    .get(&*r.asset)
                    .is_none_or(|a| !held.contains(&(*a, r.quantity, r.ts_ms)))
            })
            .collect()
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
        assert_eq!(b.len(), 3);
        let rows = b.sorted();
        assert_eq!(
            rows.iter().map(|r| (r.ts_ms, r.value)).collect::<Vec<_>>(),
            [(5, 2.0), (DAY_MS + 5, 3.0)]
        );
        assert_eq!(b.days().into_iter().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(b.batch().num_rows(), 2);
        let flushing = [r(5, 9.0), r(7, 1.0)];
        let kept = b.without_keys_held(&flushing);
        assert_eq!(
            kept.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
            [7],
            "a key the buffer holds again is not read from the rows being flushed"
        );
    }
}
