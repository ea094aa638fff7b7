//! Where the load model gets its measurements: a small interface that the gridpack
//! rows serve today and the readings store will serve later.

use headroom_geodata::{AssetRef, Quantity, ReadingRow};
use rustc_hash::FxHashMap;

/// Time series of measurements by asset and quantity.
pub trait ReadingsSource: Send + Sync {
    /// The readings of one asset and quantity as `(ts_ms, value)`, sorted by time,
    /// one per timestamp (the last written wins).
    fn series(&self, asset: AssetRef, quantity: Quantity) -> Vec<(i64, f64)>;

    /// Whether the asset has any reading of the quantity.
    fn has(&self, asset: AssetRef, quantity: Quantity) -> bool {
        !self.series(asset, quantity).is_empty()
    }
}

/// Readings held in memory, indexed by asset and quantity.
#[derive(Clone, Debug, Default)]
pub struct InMemoryReadings {
    series: FxHashMap<(AssetRef, Quantity), Vec<(i64, f64)>>,
}

impl InMemoryReadings {
    /// Indexes rows; for a repeated (asset, quantity, ts) the later row wins.
    pub fn from_rows(rows: &[ReadingRow]) -> Self {
        let mut series: FxHashMap<(AssetRef, Quantity), Vec<(i64, f64)>> = FxHashMap::default();
        for row in rows {
            series
                .entry((row.asset, row.quantity))
                .or_default()
                .push((row.ts_ms, row.value));
        }
        for values in series.values_mut() {
            // Stable: among equal timestamps the later row stays last.
            values.sort_by_key(|(ts, _)| *ts);
            let mut deduplicated: Vec<(i64, f64)> = Vec::with_capacity(values.len());
            for &(ts, v) in values.iter() {
                match deduplicated.last_mut() {
                    Some(last) if last.0 == ts => last.1 = v,
                    _ => deduplicated.push((ts, v)),
                }
            }
            *values = deduplicated;
        }
        Self { series }
    }
}

impl ReadingsSource for InMemoryReadings {
    fn series(&self, asset: AssetRef, quantity: Quantity) -> Vec<(i64, f64)> {
        self.series
            .get(&(asset, quantity))
            .cloned()
            .unwrap_or_default()
    }

    fn has(&self, asset: AssetRef, quantity: Quantity) -> bool {
        self.series
            .get(&(asset, quantity))
            .is_some_and(|s| !s.is_empty())
    }
}
