//! Where the load model gets its measurements: a small interface that gridpack rows
//! in memory and the readings store ([`crate::store::StoreReadings`]) both serve.

use std::borrow::Cow;
use std::sync::Arc;

use headroom_geodata::{AssetRef, Quantity, ReadingRow};
use rustc_hash::FxHashMap;

/// Time series of measurements by asset and quantity.
pub trait ReadingsSource: Send + Sync {
    /// The readings of one asset and quantity as `(ts_ms, value)`, sorted by time,
    /// one per timestamp (the last written wins); borrowed where the source
    /// holds them in memory (a capacity sweep reads every series of a city).
    fn series(&self, asset: AssetRef, quantity: Quantity) -> Cow<'_, [(i64, f64)]>;

    /// Whether the asset has any reading of the quantity.
    fn has(&self, asset: AssetRef, quantity: Quantity) -> bool {
        !self.series(asset, quantity).is_empty()
    }

    /// First and last timestamp of the active-power and voltage readings, where
    /// the source knows them without reading every series (`None`: look).
    fn span(&self) -> Option<(i64, i64)> {
        None
    }

    /// Every reading of these assets fetched at once, for a source where one
    /// lookup per series is costly (a query each); `None` where it is not.
    fn group(&self, _assets: &[AssetRef]) -> Option<Arc<InMemoryReadings>> {
        None
    }

    /// Every reading of the window fetched at once, for a computation over the
    /// whole network (capacity of every feeder or transformer), where one scan
    /// costs far less than a fetch per feeder; `None` where the source holds
    /// them in memory anyway.
    fn everything(&self) -> Option<Arc<InMemoryReadings>> {
        None
    }
}

/// Every reading of a source fetched up front (see
/// [`ReadingsSource::everything`]), with the source's span.
pub(crate) struct Prefetched {
    pub(crate) readings: Arc<InMemoryReadings>,
    pub(crate) span: Option<(i64, i64)>,
}

impl ReadingsSource for Prefetched {
    fn series(&self, asset: AssetRef, quantity: Quantity) -> Cow<'_, [(i64, f64)]> {
        self.readings.series(asset, quantity)
    }

    fn span(&self) -> Option<(i64, i64)> {
        self.span
    }

    fn group(&self, _assets: &[AssetRef]) -> Option<Arc<InMemoryReadings>> {
        Some(self.readings.clone())
    }
}

/// Readings held in memory, indexed by asset and quantity.
#[derive(Clone, Debug, Default)]
pub struct InMemoryReadings {
    series: FxHashMap<(AssetRef, Quantity), Vec<(i64, f64)>>,
}

impl InMemoryReadings {
    /// The readings of one asset and quantity, in place.
    pub fn series_slice(&self, asset: AssetRef, quantity: Quantity) -> &[(i64, f64)] {
        self.series
            .get(&(asset, quantity))
            .map_or(&[], Vec::as_slice)
    }

    /// Number of readings held.
    pub fn len(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }

    /// Whether no reading is held.
    pub fn is_empty(&self) -> bool {
        self.series.values().all(Vec::is_empty)
    }

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
    fn series(&self, asset: AssetRef, quantity: Quantity) -> Cow<'_, [(i64, f64)]> {
        Cow::Borrowed(self.series_slice(asset, quantity))
    }

    fn has(&self, asset: AssetRef, quantity: Quantity) -> bool {
        self.series
            .get(&(asset, quantity))
            .is_some_and(|s| !s.is_empty())
    }
}
