//! What connectors deliver and what the engine reads: the contract between the
//! field, the readings store and the engine, without the store's query engine.
//!
//! **Data model.** A [`Reading`] is `(ts, asset, quantity, value, quality,
//! source)` as a connector or the HTTP ingest delivers it: UTC milliseconds, the
//! id of a feeder, distribution transformer or substation transformer, a
//! [`Quantity`], the value in its unit, the source's [`Quality`] and the
//! connector's name.
//!
//! - **In:** a [`ReadingSink`] takes batches of readings and answers each with a
//!   [`WriteTicket`] that resolves once the batch is durable (the store's
//!   write-ahead log), with a [`WriteSummary`] of what it took.
//! - **Out:** a [`ReadingsSource`] hands the engine time series by asset and
//!   quantity; [`InMemoryReadings`] is the one that holds them in memory (a
//!   gridpack's rows, a window fetched from the store).
//!
//! Connectors depend on this crate and not on the store: the store, with
//! DataFusion and Parquet, is one implementation of the sink and the source.

use std::borrow::Cow;
use std::sync::Arc;

use tokio::sync::oneshot;

use headroom_geodata::{AssetRef, LineFields, ReadingRow};
pub use headroom_geodata::{Quality, Quantity};
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

/// One shared copy of each asset id and source name, for readers that build
/// many readings from bytes (a log replay, a Parquet file, a relay file).
#[derive(Debug, Default)]
pub struct Interner {
    names: rustc_hash::FxHashSet<Arc<str>>,
}

impl Interner {
    /// The shared copy of `name`.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(found) = self.names.get(name) {
            return found.clone();
        }
        let shared: Arc<str> = name.into();
        self.names.insert(shared.clone());
        shared
    }
}

/// One measurement as a connector or the HTTP ingest delivers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// Timestamp, milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// Id of the feeder, transformer or substation transformer measured.
    pub asset: Arc<str>,
    /// What was measured.
    pub quantity: Quantity,
    /// The value in the quantity's unit.
    pub value: f64,
    /// As the source reported it.
    pub quality: Quality,
    /// The connector (or import) that delivered it.
    pub source: Arc<str>,
}

impl Reading {
    /// The reading a parsed line ([`headroom_geodata::ReadingLines`]) delivers
    /// from `source`.
    pub fn from_line(fields: LineFields<'_>, source: &Arc<str>) -> Self {
        Self {
            ts_ms: fields.ts_ms,
            asset: fields.asset.into(),
            quantity: fields.quantity,
            value: fields.value,
            quality: fields.quality,
            source: source.clone(),
        }
    }
}

/// What became of a written batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Readings stored.
    pub accepted: usize,
    /// Readings refused (kept apart with the reason, not lost).
    pub rejected: usize,
}

/// Why a write did not become durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The sink stopped (or was dropped) before the write was durable.
    #[error("readings store: the store stopped before the write was durable")]
    Stopped,
    /// The sink refused or failed the write: a log that cannot be written, a
    /// store that is stopping.
    #[error("readings store: {0}")]
    Failed(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a sink answers a write: the summary once durable, or why not.
pub type WriteReply = oneshot::Sender<std::result::Result<WriteSummary, String>>;

/// A write in flight: resolves once the batch is durable.
#[derive(Debug)]
pub struct WriteTicket(oneshot::Receiver<std::result::Result<WriteSummary, String>>);

impl WriteTicket {
    /// A ticket and the sender that resolves it, for a sink to answer with.
    pub fn channel() -> (WriteReply, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self(rx))
    }

    /// Blocks until the batch is durable (not from within an async task).
    pub fn wait(self) -> Result<WriteSummary> {
        self.0
            .blocking_recv()
            .map_err(|_| Error::Stopped)?
            .map_err(Error::Failed)
    }

    /// Waits until the batch is durable.
    pub async fn durable(self) -> Result<WriteSummary> {
        self.0
            .await
            .map_err(|_| Error::Stopped)?
            .map_err(Error::Failed)
    }
}

/// Where connectors and the HTTP ingest deliver readings.
pub trait ReadingSink: Send + Sync {
    /// Validates a batch and logs it; the ticket resolves when it is durable.
    fn write(&self, readings: Vec<Reading>) -> WriteTicket;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_tells_durable_failed_and_stopped_apart() {
        let (reply, ticket) = WriteTicket::channel();
        let summary = WriteSummary {
            accepted: 3,
            rejected: 1,
        };
        reply.send(Ok(summary)).unwrap();
        assert_eq!(ticket.wait(), Ok(summary));

        let (reply, ticket) = WriteTicket::channel();
        reply.send(Err("disk full".into())).unwrap();
        let failed = ticket.wait().unwrap_err();
        assert_eq!(failed.to_string(), "readings store: disk full");

        let (reply, ticket) = WriteTicket::channel();
        drop(reply);
        assert_eq!(ticket.wait(), Err(Error::Stopped));
    }

    #[test]
    fn in_memory_readings_keep_the_last_row_of_a_timestamp() {
        let asset = AssetRef {
            kind: headroom_geodata::AssetKind::Feeder,
            index: 0,
        };
        let row = |ts_ms, value| ReadingRow {
            ts_ms,
            asset,
            quantity: Quantity::PKw,
            value,
        };
        let readings = InMemoryReadings::from_rows(&[row(900, 1.0), row(0, 2.0), row(900, 3.0)]);
        assert_eq!(
            &*readings.series(asset, Quantity::PKw),
            &[(0, 2.0), (900, 3.0)]
        );
        assert!(!readings.has(asset, Quantity::QKvar));
    }
}
