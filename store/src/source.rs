//! The store as the engine's [`ReadingsSource`]: a window of readings fetched a
//! feeder at a time, with one query per feeder, and cached.
//!
//! The window is fixed when the source is made (the last days before the latest
//! reading). Feeder heads and substation transformers, which the engine reads for
//! every busbar group when it starts, are fetched together up front; a feeder's
//! transformers are fetched when the engine first builds that feeder's load
//! matrix. Fetched groups stay in the store's cache until a write for one of their
//! assets arrives: each asset has a write generation, and a cached group is used
//! only while the sum of its assets' generations is the one it was read at (they
//! only grow, so an equal sum means no asset was written).

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, StringArray, TimestampMillisecondArray};
use headroom_geodata::{AssetKind, AssetRef, Quantity, ReadingRow};

use rustc_hash::FxHashSet;

use super::buffer::DAY_MS;
use super::record::column;
use super::stats::quote;
use super::{AssetIndex, Shared, Store, lock};
use crate::error::Result;
use headroom_readings::{InMemoryReadings, ReadingsSource};

/// Key of a cached group: the network generation, its assets and the window
/// `[from_ms, to_ms)`.
pub(crate) type GroupKey = (u64, Arc<[AssetRef]>, i64, i64);

/// A group's readings and the write generation they were read at.
pub(crate) struct CachedGroup {
    generation: u64,
    pub(crate) readings: Arc<InMemoryReadings>,
}

impl CachedGroup {
    /// Bytes the cache charges for it.
    pub(crate) fn weight(&self) -> u32 {
        (self.readings.len() * 16 + 64).min(u32::MAX as usize) as u32
    }
}

impl Shared {
    /// Sum of the write generations of `assets` (see the module doc).
    fn generation_of(&self, ids: &[&Arc<str>]) -> u64 {
        let generation = lock(&self.generation);
        ids.iter()
            .map(|id| generation.get(*id).copied().unwrap_or(0))
            .sum()
    }
}

impl Store {
    /// Every good or uncertain reading of `assets` in `[from_ms, to_ms)`, from the
    /// cache unless one of the assets was written since it was read.
    pub fn group_readings(
        &self,
        assets: &[AssetRef],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Arc<InMemoryReadings>> {
        self.group_readings_in(&self.shared.index(), assets, from_ms, to_ms)
    }

    /// [`Store::group_readings`] with the asset references of `index`'s network.
    pub(crate) fn group_readings_in(
        &self,
        index: &AssetIndex,
        assets: &[AssetRef],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Arc<InMemoryReadings>> {
        let shared = &self.shared;
        let ids: Vec<&Arc<str>> = assets.iter().filter_map(|a| index.ids.get(a)).collect();
        let key: GroupKey = (index.generation, assets.into(), from_ms, to_ms);
        shared
            .caches_used
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let generation = shared.generation_of(&ids);
        if let Some(cached) = shared.groups.get(&key)
            && cached.generation == generation
        {
            return Ok(cached.readings.clone());
        }
        let readings = Arc::new(self.query_group(index, &ids, from_ms, to_ms)?);
        // A write that arrived while querying makes the result unfit to keep.
        if shared.generation_of(&ids) == generation {
            shared.groups.insert(
                key,
                Arc::new(CachedGroup {
                    generation,
                    readings: readings.clone(),
                }),
            );
        }
        Ok(readings)
    }

    fn query_group(
        &self,
        index: &AssetIndex,
        ids: &[&Arc<str>],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<InMemoryReadings> {
        if ids.is_empty() {
            return Ok(InMemoryReadings::default());
        }
        // A range on `asset` lets the Parquet scan skip row groups and pages by
        // their statistics (files are sorted by asset); the assets in the range
        // that are not the group's are dropped here: an IN list of a feeder's
        // hundred ids cost a query a quarter of its time.
        let lowest = ids.iter().min().map(|id| quote(id)).unwrap_or_default();
        let highest = ids.iter().max().map(|id| quote(id)).unwrap_or_default();
        let batches = self.sql(&format!(
            "SELECT ts, asset, quantity, value FROM readings \
             WHERE asset >= {lowest} AND asset <= {highest} \
             AND ts >= to_timestamp_millis({from_ms}) AND ts < to_timestamp_millis({to_ms}) \
             AND quality <> 'bad'"
        ))?;
        let wanted: FxHashSet<&str> = ids.iter().map(|id| &***id).collect();
        self.rows_of(index, &batches, Some(&wanted))
    }

    /// Batches of `(ts, asset, quantity, value)` as the engine's readings.
    /// Only the assets in `wanted`, when given.
    pub(super) fn rows_of(
        &self,
        index: &AssetIndex,
        batches: &[super::RecordBatch],
        wanted: Option<&FxHashSet<&str>>,
    ) -> Result<InMemoryReadings> {
        let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
        for batch in batches {
            let ts = column::<TimestampMillisecondArray>(batch, "ts")?;
            let asset = column::<StringArray>(batch, "asset")?;
            let quantity = column::<StringArray>(batch, "quantity")?;
            let value = column::<Float64Array>(batch, "value")?;
            let mut last: Option<(&str, Option<AssetRef>)> = None;
            for i in 0..batch.num_rows() {
                if ts.is_null(i) || value.is_null(i) {
                    continue;
                }
                let id = asset.value(i);
                // Rows come grouped by asset: look each up once per run.
                let found = match last {
                    Some((previous, found)) if previous == id => found,
                    _ => {
                        let found = index
                            .by_id
                            .get(id)
                            .copied()
                            .filter(|_| wanted.is_none_or(|w| w.contains(id)));
                        last = Some((id, found));
                        found
                    }
                };
                let (Some(asset), Some(quantity)) = (found, Quantity::parse(quantity.value(i)))
                else {
                    continue;
                };
                rows.push(ReadingRow {
                    ts_ms: ts.value(i),
                    asset,
                    quantity,
                    value: value.value(i),
                });
            }
        }
        Ok(InMemoryReadings::from_rows(&rows))
    }

    /// Empties the feeder and statistics caches (benches measure the queries).
    pub fn clear_caches(&self) {
        self.shared.groups.invalidate_all();
        self.shared.stats_cache.invalidate_all();
    }

    /// The latest reading's time, ms, or `None` for an empty store.
    pub fn latest_ms(&self) -> Result<Option<i64>> {
        Ok(timestamp_at(&self.sql("SELECT max(ts) FROM readings")?, 0))
    }
}

/// The timestamp in column `i` of a one-row answer, unless null or absent.
fn timestamp_at(batches: &[super::RecordBatch], i: usize) -> Option<i64> {
    let batch = batches.first().filter(|b| b.num_rows() > 0)?;
    batch
        .column(i)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .filter(|c| !c.is_null(0))
        .map(|c| c.value(0))
}

/// The last days of a store's readings, as the engine's [`ReadingsSource`].
pub struct StoreReadings {
    store: Arc<Store>,
    from_ms: i64,
    to_ms: i64,
    /// First and last active-power or voltage reading in the window.
    span: Option<(i64, i64)>,
    /// Feeder heads and substation transformers, read up front.
    heads: InMemoryReadings,
    /// The network's assets when the source was made.
    index: Arc<AssetIndex>,
}

impl std::fmt::Debug for StoreReadings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReadings")
            .field("from_ms", &self.from_ms)
            .field("to_ms", &self.to_ms)
            .finish_non_exhaustive()
    }
}

/// The usable readings of `[from_ms, to_ms)`, as an SQL condition.
fn window_filter(from_ms: i64, to_ms: i64) -> String {
    format!(
        "ts >= to_timestamp_millis({from_ms}) AND ts < to_timestamp_millis({to_ms}) \
         AND quality <> 'bad'"
    )
}

impl StoreReadings {
    /// The `days` of readings up to the latest one in `store`.
    pub fn recent(store: Arc<Store>, days: i64) -> Result<Self> {
        let (from_ms, to_ms) = match store.latest_ms()? {
            Some(latest) => (latest - days * DAY_MS, latest + 1),
            None => (0, 0),
        };
        Self::window(store, from_ms, to_ms)
    }

    /// The readings of `store` in `[from_ms, to_ms)`.
    pub fn window(store: Arc<Store>, from_ms: i64, to_ms: i64) -> Result<Self> {
        let window = window_filter(from_ms, to_ms);
        let heads = store.sql(&format!(
            "SELECT ts, asset, quantity, value FROM readings \
             WHERE {window} AND asset IN (SELECT id FROM assets WHERE kind <> 'transformer')"
        ))?;
        let index = store.shared.index();
        let heads = store.rows_of(&index, &heads, None)?;
        let span = store.sql(&format!(
            "SELECT min(ts), max(ts) FROM readings WHERE {window} \
             AND quantity IN ('p_kw', 'u_kv') AND asset IN (SELECT id FROM assets)"
        ))?;
        let span = timestamp_at(&span, 0).zip(timestamp_at(&span, 1));
        Ok(Self {
            store,
            from_ms,
            to_ms,
            span,
            heads,
            index,
        })
    }

    /// The store behind it.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn fetched(&self, assets: &[AssetRef]) -> Arc<InMemoryReadings> {
        self.store
            .group_readings_in(&self.index, assets, self.from_ms, self.to_ms)
            .unwrap_or_else(|e| {
                // The engine's interface has no error path: a failed query leaves
                // the assets unmetered (the load model estimates them), said here.
                eprintln!("headroom store: cannot read readings of {assets:?}: {e}");
                Arc::new(InMemoryReadings::default())
            })
    }
}

impl ReadingsSource for StoreReadings {
    fn series(&self, asset: AssetRef, quantity: Quantity) -> Cow<'_, [(i64, f64)]> {
        match asset.kind {
            AssetKind::Transformer => self
                .fetched(&[asset])
                .series_slice(asset, quantity)
                .to_vec()
                .into(),
            _ => self.heads.series(asset, quantity),
        }
    }

    fn span(&self) -> Option<(i64, i64)> {
        Some(self.span.unwrap_or((0, 0)))
    }

    fn group(&self, assets: &[AssetRef]) -> Option<Arc<InMemoryReadings>> {
        Some(self.fetched(assets))
    }

    fn everything(&self) -> Option<Arc<InMemoryReadings>> {
        let all = self
            .store
            .sql(&format!(
                "SELECT ts, asset, quantity, value FROM readings WHERE {}",
                window_filter(self.from_ms, self.to_ms)
            ))
            .and_then(|batches| self.store.rows_of(&self.index, &batches, None));
        match all {
            Ok(all) => Some(Arc::new(all)),
            Err(e) => {
                // Fetching per feeder still works, only slower.
                eprintln!("headroom store: cannot read the window's readings at once: {e}");
                None
            }
        }
    }
}
