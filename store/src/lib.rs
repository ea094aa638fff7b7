//! The readings store: every measurement Headroom rests on, durable once
//! acknowledged, queryable with SQL, and handed to the engine.
//!
//! **Data model.** A reading is `(ts, asset, quantity, value, quality, source)`:
//! UTC milliseconds, the id of a feeder, distribution transformer or substation
//! transformer, one of `p_kw q_kvar s_kva i_a u_kv energy_kwh`, a finite value, the
//! source's quality (`good uncertain bad`, kept as delivered) and the connector
//! that delivered it. (asset, quantity, ts) is the key: a later write of a key
//! replaces the earlier one. A reading for an unknown asset, with a non-finite
//! value, or stamped further ahead than the allowed clock skew is not a reading:
//! it goes to `rejected` with the reason.
//!
//! **Write path.** [`ReadingSink::write`] validates a batch and queues it for the
//! write-ahead log. A committer thread appends everything queued as CRC-checked
//! records and fsyncs once per group (at most every `wal_flush_interval_ms`, or
//! as soon as [`COMMIT_AT_BYTES`] of records wait: a bulk import is not held to
//! the interval's pace), then
//! moves the rows into the in-memory buffer and acknowledges every write of the
//! group: an acknowledgement means the batch survives a crash. When the buffer
//! passes its size or age, the committer flushes it: the log rotates, each day's
//! rows are merged into that day's Parquet file (written new, sorted by asset and
//! time, zstd), and the manifest naming the live files and the log segments they
//! hold is replaced; only then are those segments deleted. The replaced files are
//! listed in the manifest as superseded and deleted by a flush at least
//! `superseded_files_kept_s` later, since readers in other processes or on a
//! cluster may have planned on the manifest before.
//! On start the manifest is read, orphan files are removed and the log segments
//! after the manifest's are replayed into the buffer. Day partitions older than
//! the retention are dropped at each flush and on start.
//!
//! **Query.** One DataFusion `SessionContext` holds `readings` (buffer and files as
//! one view, see [`tables`]), `rejected` (its files and the rejected rows not yet
//! flushed) and `assets` (the grid model's metered assets). [`Store::sql`] runs
//! read-only queries.
//!
//! **Location.** Files go through `object_store`: a local folder (the log in its
//! `wal/`), or an S3 prefix with the log in a local folder ([`DataLocation`]).
//!
//! **For the engine.** [`StoreReadings`] hands the engine a window of readings a
//! feeder at a time, one query per feeder, cached until one of the feeder's assets
//! is written; [`Store::asset_stats`] gives the map's per-asset figures, cached the
//! same way.

pub mod buffer;
pub mod error;
pub mod files;
pub mod history;
pub mod record;
pub mod source;
pub mod stats;
pub mod tables;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Float64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::datasource::TableProvider;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use headroom_geodata::{AssetKind, AssetRef, Network, Quality, Topology};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use buffer::{Buffer, DAY_MS};
/// Arrow, whose batches [`Store::sql`] and the history answer with.
pub use datafusion::arrow;
/// Arrow arrays of query results, for readers of [`Store::sql`].
pub use datafusion::arrow::array as arrays;
pub use datafusion::arrow::array::RecordBatch;
pub use error::{Error, Result};
pub use files::DataLocation;
use files::{Files, Manifest, day_name, day_number};
use headroom_readings::{
    InMemoryReadings, Interner, Reading, ReadingSink, WriteReply, WriteSummary, WriteTicket,
};
pub use history::{History, with_day_file_reading};
pub use record::column;
pub use record::{RejectReason, Rejected};
use record::{
    readings_batch, readings_from_batch, readings_schema, rejected_batch, rejected_schema,
};
pub use source::StoreReadings;
pub use stats::{AssetStats, Latest};
use wal::{Entry, Wal};

/// Settings of the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Longest a write waits for the fsync of its group, ms: the group commit's
    /// interval. Shorter acknowledges sooner; longer makes fewer, larger fsyncs.
    pub wal_flush_interval_ms: u64,
    /// Flush the buffer to Parquet once it holds this much, bytes.
    pub buffer_max_bytes: usize,
    /// Flush the buffer to Parquet once its oldest reading is this old, seconds.
    pub buffer_max_age_s: u64,
    /// Readings stamped more than this ahead of the clock are rejected, seconds.
    pub max_future_skew_s: i64,
    /// Raw readings older than this are dropped by day partition, days.
    pub retention_days: u32,
    /// Memory for the feeders' readings the engine asked for, bytes.
    pub group_cache_bytes: u64,
    /// A day file a flush rewrote (or the retention dropped) is deleted this
    /// long after, seconds, not at once: queries that other processes or a
    /// cluster planned on the manifest before may still be reading it. Longer
    /// than the longest history query (`[history] timeout_s`, `headroom sql
    /// --timeout-s`).
    pub superseded_files_kept_s: u64,
}

impl StoreConfig {
    /// Default group-commit interval, ms.
    pub const fn default_wal_flush_interval_ms() -> u64 {
        1_000
    }

    /// Default buffer size that triggers a flush, bytes.
    pub const fn default_buffer_max_bytes() -> usize {
        256 << 20
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            wal_flush_interval_ms: Self::default_wal_flush_interval_ms(),
            buffer_max_bytes: Self::default_buffer_max_bytes(),
            buffer_max_age_s: 3_600,
            max_future_skew_s: 300,
            retention_days: 400,
            group_cache_bytes: 512 << 20,
            superseded_files_kept_s: 900,
        }
    }
}

/// Log records waiting that make the committer fsync at once instead of at
/// the end of its interval.
pub const COMMIT_AT_BYTES: usize = 4 << 20;

/// Counts since the store opened (rows replayed from the log included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    /// Readings acknowledged.
    pub accepted: u64,
    /// Readings rejected, by reason in [`RejectReason::ALL`] order.
    pub rejected: [u64; 3],
    /// Readings in the buffer.
    pub buffered: u64,
    /// Day files live.
    pub day_files: u64,
    /// Flushes done.
    pub flushes: u64,
    /// Bytes of torn log records dropped at replay.
    pub torn_bytes: u64,
}

#[derive(Default)]
struct Queue {
    records: Vec<u8>,
    entries: Vec<Entry>,
    /// Each write's (or flush request's) reply, its summary, and whether it asked
    /// for a flush (and so hears how the flush went).
    waiters: Vec<(WriteReply, WriteSummary, bool)>,
    first_at: Option<Instant>,
    flush_now: bool,
    stop: bool,
}

struct State {
    buffer: Buffer,
    /// The buffer being flushed: still read by queries until the manifest swaps.
    flushing: Option<Arc<Vec<Reading>>>,
    /// The same as a batch, less keys written again since (built on first query).
    flushing_batch: Option<RecordBatch>,
    rejected: Vec<Rejected>,
    rejected_flushing: Vec<Rejected>,
    manifest: Manifest,
    /// Whether buffered rows may replace rows of the files.
    shadowing: bool,
    counts: StoreCounts,
}

/// One asset's cached statistics, by `(from_ms, to_ms)`.
type StatsByWindow = FxHashMap<(i64, i64), stats::AssetStats>;

struct Shared {
    config: StoreConfig,
    /// The network's measurable assets; replaced whole when the network is.
    index: std::sync::RwLock<Arc<AssetIndex>>,
    files: Files,
    wal_dir: PathBuf,
    runtime: QueryRuntime,
    ctx: SessionContext,
    queue: Mutex<Queue>,
    queue_changed: Condvar,
    state: Arc<Mutex<State>>,
    interned: Mutex<Interner>,
    /// Per asset, statistics by window; a write for the asset removes its entry.
    stats_cache: moka::sync::Cache<Arc<str>, Arc<StatsByWindow>>,
    /// Readings of asset groups (a feeder's) for the engine: see [`source`].
    groups: moka::sync::Cache<source::GroupKey, Arc<source::CachedGroup>>,
    /// Whether anything was ever cached (writes skip the caches until then).
    caches_used: std::sync::atomic::AtomicBool,
    /// Writes seen per asset since a cache was first used: a result computed
    /// while a write arrived is not cached.
    generation: Mutex<FxHashMap<Arc<str>, u64>>,
}

/// The measurable assets of one network (feeders, transformers, substation
/// transformers) by id and by reference. References are positions in that
/// network: readings sources keep the index they were made with, so a network
/// swapped in meanwhile cannot make them read another asset's readings.
pub(crate) struct AssetIndex {
    pub(crate) by_id: FxHashMap<Arc<str>, AssetRef>,
    pub(crate) ids: FxHashMap<AssetRef, Arc<str>>,
    /// Counts network swaps: part of the keys of cached groups.
    pub(crate) generation: u64,
}

impl AssetIndex {
    fn of(network: &Network, generation: u64) -> Self {
        let mut by_id = FxHashMap::default();
        for kind in [
            AssetKind::Feeder,
            AssetKind::Transformer,
            AssetKind::SubstationTransformer,
        ] {
            let count = match kind {
                AssetKind::Feeder => network.feeders.len(),
                AssetKind::Transformer => network.transformers.len(),
                _ => network.substation_transformers.len(),
            };
            for index in 0..count as u32 {
                let r = AssetRef { kind, index };
                by_id.insert(Arc::<str>::from(network.id_of(r)), r);
            }
        }
        let ids = by_id.iter().map(|(id, r)| (*r, id.clone())).collect();
        Self {
            by_id,
            ids,
            generation,
        }
    }
}

/// The store over one data folder.
pub struct Store {
    shared: Arc<Shared>,
    committer: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// The current network's asset index.
    pub(crate) fn index(&self) -> Arc<AssetIndex> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not make the store unusable: the data behind the
    // lock is consistent between statements.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Name of the network kept beside the readings.
pub const NETWORK_FILE: &str = "network.geojson";

/// The store's own query runtime. Dropped without waiting for its threads, so
/// that the last handle on a store may go away inside an async context (a
/// service shutting down, an async test ending) without tokio's panic there.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for QueryRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0
            .as_ref()
            .expect("the runtime lives until the store is dropped")
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn small_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start a runtime: {e}")))
}

/// The `network.geojson` kept at a data location, or `None` when there is none.
pub fn stored_network(location: &DataLocation) -> Result<Option<Vec<u8>>> {
    match location {
        // Read directly: looking must not create the folder.
        DataLocation::Local(dir) => {
            let path = dir.join(NETWORK_FILE);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(path, e)),
            }
        }
        DataLocation::S3 { .. } => {
            let files = Files::open(location)?;
            small_runtime()?.block_on(files.get(NETWORK_FILE))
        }
    }
}

/// Keeps `network.geojson` at a data location, replacing the one there whole.
pub fn keep_network(location: &DataLocation, geojson: Vec<u8>) -> Result<()> {
    let files = Files::open(location)?;
    small_runtime()?.block_on(files.put(NETWORK_FILE, geojson))
}

/// Keeps a validated gridpack in a data location: its network (replacing the
/// one kept there whole) and its readings, flushed; returns what the store took.
pub fn import_gridpack(
    paths: &headroom_geodata::GridpackPaths,
    network: &Network,
    location: &DataLocation,
    config: StoreConfig,
) -> Result<WriteSummary> {
    let geojson = std::fs::read(&paths.network).map_err(|e| Error::io(&paths.network, e))?;
    keep_network(location, geojson)?;
    let store = Store::open_at(location, network, config)?;
    let mut stored = WriteSummary::default();
    if let Some(path) = &paths.readings {
        let source: Arc<str> = "import".into();
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        let mut tickets = Vec::new();
        headroom_geodata::read_readings(path, network, |row| {
            batch.push(Reading {
                ts_ms: row.ts_ms,
                asset: network.id_of(row.asset).into(),
                quantity: row.quantity,
                value: row.value,
                quality: Quality::Good,
                source: source.clone(),
            });
            if batch.len() == IMPORT_BATCH {
                tickets.push(store.write(std::mem::take(&mut batch)));
            }
        })?;
        tickets.push(store.write(batch));
        for ticket in tickets {
            let summary = ticket.wait()?;
            stored.accepted += summary.accepted;
            stored.rejected += summary.rejected;
        }
    }
    store.flush()?;
    store.close()?;
    Ok(stored)
}

/// Readings per write while importing.
const IMPORT_BATCH: usize = 100_000;

/// Columns of the `assets` table.
pub fn assets_schema() -> datafusion::arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("feeder", DataType::Utf8, true),
        Field::new("substation", DataType::Utf8, true),
        Field::new("rating", DataType::Float64, true),
        Field::new("lon", DataType::Float64, false),
        Field::new("lat", DataType::Float64, false),
    ]))
}

/// Rows of the `assets` table.
fn assets_batch(network: &Network) -> RecordBatch {
    let topology = Topology::trace(network);
    let mut id = Vec::new();
    let mut kind = Vec::new();
    let mut feeder = Vec::new();
    let mut substation = Vec::new();
    let mut rating = Vec::new();
    let mut lon = Vec::new();
    let mut lat = Vec::new();
    let substation_of_node = |n: headroom_geodata::NodeIx| {
        let node = network.node(n);
        node.substation
            .map(|s| network.substations[s.get()].id.to_string())
    };
    for f in &network.feeders {
        id.push(f.id.to_string());
        kind.push("feeder");
        feeder.push(Some(f.id.to_string()));
        substation.push(substation_of_node(f.head_node));
        rating.push(f.rated_a);
        let at = f.position.unwrap_or(network.node(f.head_node).position);
        lon.push(at.lon);
        lat.push(at.lat);
    }
    for t in &network.transformers {
        id.push(t.id.to_string());
        kind.push("transformer");
        let on = topology.feeder_of(t.node);
        feeder.push(on.map(|f| network.feeders[f.get()].id.to_string()));
        substation.push(on.and_then(|f| substation_of_node(network.feeders[f.get()].head_node)));
        rating.push(Some(t.rated_kva));
        lon.push(t.position.lon);
        lat.push(t.position.lat);
    }
    for t in &network.substation_transformers {
        id.push(t.id.to_string());
        kind.push("substation_transformer");
        feeder.push(None);
        substation.push(Some(network.substations[t.substation.get()].id.to_string()));
        rating.push(Some(t.rated_kva));
        let at = t
            .position
            .unwrap_or(network.substations[t.substation.get()].position);
        lon.push(at.lon);
        lat.push(at.lat);
    }
    RecordBatch::try_new(
        assets_schema(),
        vec![
            Arc::new(StringArray::from(id)),
            Arc::new(StringArray::from(kind)),
            Arc::new(StringArray::from(feeder)),
            Arc::new(StringArray::from(substation)),
            Arc::new(Float64Array::from(rating)),
            Arc::new(Float64Array::from(lon)),
            Arc::new(Float64Array::from(lat)),
        ],
    )
    .expect("columns follow the assets schema")
}

impl Store {
    /// Opens (or creates) the store in the local folder `dir` for `network`.
    pub fn open(dir: &Path, network: &Network, config: StoreConfig) -> Result<Self> {
        Self::open_at(&DataLocation::Local(dir.to_path_buf()), network, config)
    }

    /// Opens (or creates) the store at `location` for `network`: replays the log
    /// and starts the committer.
    pub fn open_at(
        location: &DataLocation,
        network: &Network,
        config: StoreConfig,
    ) -> Result<Self> {
        let files = Files::open(location)?;
        let wal_dir = location.wal_dir();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("headroom-store")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the query runtime: {e}")))?;
        let session = with_day_file_reading(
            SessionConfig::new()
                .with_target_partitions(2)
                .with_information_schema(true),
        );
        let ctx = SessionContext::new_with_config(session);
        files.register(&ctx);
        let group_cache_bytes = config.group_cache_bytes;
        let manifest = runtime.block_on(files.manifest())?;
        let shared = Arc::new(Shared {
            index: std::sync::RwLock::new(Arc::new(AssetIndex::of(network, 0))),
            files,
            wal_dir,
            runtime: QueryRuntime(Some(runtime)),
            ctx,
            config,
            queue: Mutex::new(Queue::default()),
            queue_changed: Condvar::new(),
            state: Arc::new(Mutex::new(State {
                buffer: Buffer::default(),
                flushing: None,
                flushing_batch: None,
                rejected: Vec::new(),
                rejected_flushing: Vec::new(),
                manifest,
                shadowing: false,
                counts: StoreCounts::default(),
            })),
            interned: Mutex::new(Interner::default()),
            stats_cache: moka::sync::Cache::new(100_000),
            groups: moka::sync::Cache::builder()
                .max_capacity(group_cache_bytes)
                .weigher(|_, group: &Arc<source::CachedGroup>| group.weight())
                .build(),
            caches_used: std::sync::atomic::AtomicBool::new(false),
            generation: Mutex::new(FxHashMap::default()),
        });
        shared.register_static_tables(network)?;
        shared.remove_orphans()?;
        let wal = shared.replay()?;
        shared.apply_retention()?;
        shared.refresh_tables()?;
        let committer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("headroom-wal".into())
                .spawn(move || shared.commit_loop(wal))
                .map_err(|e| Error::Internal(format!("cannot start the log committer: {e}")))?
        };
        Ok(Self {
            shared,
            committer: Mutex::new(Some(committer)),
        })
    }

    /// Takes readings for another network's assets from now on (the network
    /// swapped in over the API): the `assets` table and the index of measurable
    /// assets are replaced; readings already stored stay, under their ids.
    pub fn set_network(&self, network: &Network) -> Result<()> {
        let shared = &self.shared;
        let generation = shared.index().generation + 1;
        shared.ctx.deregister_table("assets")?;
        shared.register_static_tables(network)?;
        *shared
            .index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Arc::new(AssetIndex::of(network, generation));
        Ok(())
    }

    /// Keeps `network.geojson` beside the readings, replacing the one there
    /// whole (what [`Store::set_network`] switched to, for the next start).
    pub fn keep_network(&self, geojson: Vec<u8>) -> Result<()> {
        let shared = &self.shared;
        shared
            .runtime
            .block_on(shared.files.put(NETWORK_FILE, geojson))
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Counts so far.
    pub fn counts(&self) -> StoreCounts {
        let state = lock(&self.shared.state);
        let mut counts = state.counts;
        counts.buffered = state.buffer.len() as u64;
        counts.day_files = state.manifest.readings.len() as u64;
        counts
    }

    /// Flushes the buffer to Parquet now and waits for it.
    pub fn flush(&self) -> Result<()> {
        let done = {
            let mut queue = lock(&self.shared.queue);
            queue.flush_now = true;
            let (tx, done) = WriteTicket::channel();
            queue.waiters.push((tx, WriteSummary::default(), true));
            queue.first_at.get_or_insert_with(Instant::now);
            done
        };
        self.shared.queue_changed.notify_all();
        done.wait().map(|_| ()).map_err(Error::from)
    }

    /// Runs a read-only SQL query; anything but a query is refused.
    pub fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        let shared = &self.shared;
        shared.runtime.block_on(async {
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let frame = shared
                .ctx
                .sql_with_options(query, options)
                .await
                .map_err(|e| Error::BadQuery(e.to_string()))?;
            Ok(frame.collect().await?)
        })
    }

    /// Readings of known assets from `since_ms` on, good and uncertain ones, for
    /// the engine (all in memory: for sweeps over the whole grid).
    pub fn readings_since(&self, since_ms: i64) -> Result<InMemoryReadings> {
        let batches = self.sql(&format!(
            "SELECT ts, asset, quantity, value FROM readings \
             WHERE ts >= to_timestamp_millis({since_ms}) AND quality <> 'bad'"
        ))?;
        self.rows_of(&self.shared.index(), &batches, None)
    }

    /// The last `days` of readings before the latest one stored (see
    /// [`Store::readings_since`]).
    pub fn recent_readings(&self, days: i64) -> Result<InMemoryReadings> {
        match self.latest_ms()? {
            Some(latest_ms) => self.readings_since(latest_ms - days * DAY_MS),
            None => Ok(InMemoryReadings::default()),
        }
    }

    /// Stops the committer after it has logged and acknowledged what is queued.
    pub fn close(&self) -> Result<()> {
        lock(&self.shared.queue).stop = true;
        self.shared.queue_changed.notify_all();
        if let Some(handle) = lock(&self.committer).take() {
            handle
                .join()
                .map_err(|_| Error::Internal("the log committer panicked".into()))?;
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl ReadingSink for Store {
    fn write(&self, readings: Vec<Reading>) -> WriteTicket {
        self.shared.write(readings)
    }
}

impl Shared {
    fn write(&self, readings: Vec<Reading>) -> WriteTicket {
        let (tx, ticket) = WriteTicket::channel();
        let received_ms = now_ms();
        let latest_allowed = received_ms.saturating_add(self.config.max_future_skew_s * 1_000);
        let mut accepted = Vec::with_capacity(readings.len());
        let mut rejected = Vec::new();
        let index = self.index();
        for reading in readings {
            let reason = if !index.by_id.contains_key(&*reading.asset) {
                Some(RejectReason::UnknownAsset)
            } else if !reading.value.is_finite() {
                Some(RejectReason::NonFinite)
            } else if reading.ts_ms > latest_allowed {
                Some(RejectReason::FutureTimestamp)
            } else {
                None
            };
            match reason {
                Some(reason) => rejected.push(Rejected {
                    reading,
                    reason,
                    received_ms,
                }),
                None => accepted.push(reading),
            }
        }
        let summary = WriteSummary {
            accepted: accepted.len(),
            rejected: rejected.len(),
        };
        let mut queue = lock(&self.queue);
        if queue.stop {
            let _ = tx.send(Err("the store is stopping".into()));
            return ticket;
        }
        for entry in [Entry::Readings(accepted), Entry::Rejected(rejected)] {
            let empty = match &entry {
                Entry::Readings(r) => r.is_empty(),
                Entry::Rejected(r) => r.is_empty(),
            };
            if !empty {
                wal::encode(&entry, &mut queue.records);
                queue.entries.push(entry);
            }
        }
        queue.waiters.push((tx, summary, false));
        queue.first_at.get_or_insert_with(Instant::now);
        drop(queue);
        self.queue_changed.notify_all();
        ticket
    }

    fn commit_loop(&self, mut wal: Wal) {
        let interval = Duration::from_millis(self.config.wal_flush_interval_ms);
        loop {
            let mut queue = lock(&self.queue);
            // Wait for the group to fill its interval (or for a stop or flush).
            loop {
                let due = queue.first_at.map(|t| {
                    t.elapsed() >= interval
                            || queue.stop
                            || queue.flush_now
                            // A group this large gains nothing from waiting.
                            || queue.records.len() >= COMMIT_AT_BYTES
                });
                match due {
                    Some(true) => break,
                    Some(false) => {
                        let left = interval
                            .saturating_sub(queue.first_at.map_or(Duration::ZERO, |t| t.elapsed()));
                        queue = self
                            .queue_changed
                            .wait_timeout(queue, left)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    None if queue.stop => return,
                    None => {
                        // Idle: wake at least every interval to honour the buffer's age.
                        let (q, timeout) = self
                            .queue_changed
                            .wait_timeout(queue, interval.max(Duration::from_millis(100)))
                            .unwrap_or_else(|p| p.into_inner());
                        queue = q;
                        if timeout.timed_out() && queue.first_at.is_none() {
                            drop(queue);
                            if let Err(e) = self.flush_if_due(&mut wal, false) {
                                eprintln!("headroom store: flush failed, will retry: {e}");
                            }
                            queue = lock(&self.queue);
                        }
                    }
                }
            }
            let records = std::mem::take(&mut queue.records);
            let entries = std::mem::take(&mut queue.entries);
            let waiters = std::mem::take(&mut queue.waiters);
            queue.first_at = None;
            let flush_now = std::mem::take(&mut queue.flush_now);
            drop(queue);
            let logged = if records.is_empty() {
                Ok(())
            } else {
                wal.append_durably(&records)
            };
            let (logged, flushed) = match logged {
                Ok(()) => {
                    self.apply(entries);
                    let flushed = self
                        .flush_if_due(&mut wal, flush_now)
                        .map_err(|e| format!("flush to Parquet: {e}"));
                    if let Err(e) = &flushed {
                        eprintln!(
                            "headroom store: {e}; the rows stay logged and the next flush retries"
                        );
                    }
                    (Ok(()), flushed)
                }
                Err(e) => {
                    let e = format!("write-ahead log: {e}");
                    (Err(e.clone()), Err(e))
                }
            };
            for (tx, summary, asked_flush) in waiters {
                let outcome = if asked_flush { &flushed } else { &logged };
                let _ = tx.send(outcome.clone().map(|()| summary));
            }
        }
    }

    fn apply(&self, entries: Vec<Entry>) {
        let mut state = lock(&self.state);
        // Day numbers, not names: this runs for every ingested reading.
        let days = stored_days(&state.manifest);
        let mut shadowing = state.shadowing;
        for entry in entries {
            match entry {
                Entry::Readings(rows) => {
                    state.counts.accepted += rows.len() as u64;
                    self.forget_stats(&rows);
                    for r in rows {
                        if !shadowing && days.contains(&r.ts_ms.div_euclid(DAY_MS)) {
                            shadowing = true;
                        }
                        state.buffer.insert(r);
                    }
                }
                Entry::Rejected(rows) => {
                    for r in &rows {
                        let i = RejectReason::ALL
                            .iter()
                            .position(|x| *x == r.reason)
                            .unwrap_or(0);
                        state.counts.rejected[i] += 1;
                    }
                    state.rejected.extend(rows);
                }
            }
        }
        if state.flushing.is_some() {
            state.flushing_batch = None;
        }
        let changed = shadowing != state.shadowing;
        state.shadowing = shadowing;
        drop(state);
        if changed && let Err(e) = self.refresh_tables() {
            eprintln!("headroom store: cannot rebuild the readings view: {e}");
        }
    }

    /// Makes the cached statistics and groups of the assets these rows are for stale.
    fn forget_stats(&self, rows: &[Reading]) {
        if !self.caches_used.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let assets: rustc_hash::FxHashSet<&Arc<str>> = rows.iter().map(|r| &r.asset).collect();
        let mut generation = lock(&self.generation);
        for asset in assets {
            *generation.entry(asset.clone()).or_default() += 1;
            self.stats_cache.invalidate(asset);
        }
    }

    /// Flushes when asked to or when the buffer is full or old. A failed flush
    /// loses nothing: the rows stay in the buffer and the log, and the next retries.
    fn flush_if_due(&self, wal: &mut Wal, forced: bool) -> Result<()> {
        let due = {
            let state = lock(&self.state);
            let buffer = &state.buffer;
            forced
                || buffer.bytes() >= self.config.buffer_max_bytes
                || buffer
                    .age()
                    .is_some_and(|age| age.as_secs() >= self.config.buffer_max_age_s)
        };
        if due { self.flush(wal) } else { Ok(()) }
    }

    /// Moves the buffer into the day files; see the module doc for the order of steps.
    fn flush(&self, wal: &mut Wal) -> Result<()> {
        let closed = wal.rotate()?;
        let (rows, rejected, manifest) = {
            let mut state = lock(&self.state);
            let rows = Arc::new(std::mem::take(&mut state.buffer).sorted());
            state.flushing = Some(rows.clone());
            state.rejected_flushing = std::mem::take(&mut state.rejected);
            (
                rows,
                state.rejected_flushing.clone(),
                state.manifest.clone(),
            )
        };
        let mut next = manifest.clone();
        next.wal_flushed_through = closed;
        next.flushed_ms = now_ms();
        let mut replaced = Vec::new();
        let mut due = Vec::new();
        let result: Result<()> = self.runtime.block_on(async {
            let mut by_day: std::collections::BTreeMap<i64, Vec<Reading>> = Default::default();
            for r in rows.iter() {
                by_day
                    .entry(r.ts_ms.div_euclid(DAY_MS))
                    .or_default()
                    .push(r.clone());
            }
            for (day, fresh) in by_day {
                let name = day_name(day);
                let mut merged: Vec<Reading> = Vec::new();
                if let Some(existing) = manifest.readings.get(&name) {
                    let batches = self.files.read_parquet(existing).await?;
                    let mut interned = lock(&self.interned);
                    for b in &batches {
                        merged.extend(readings_from_batch(b, &mut interned)?);
                    }
                    replaced.push(existing.clone());
                }
                // Fresh rows win: a stable sort keeps them after the stored ones
                // of the same key, and the dedup keeps the last.
                merged.extend(fresh);
                merged.sort_by(|a, b| {
                    (&a.asset, a.quantity, a.ts_ms).cmp(&(&b.asset, b.quantity, b.ts_ms))
                });
                let mut unique: Vec<Reading> = Vec::with_capacity(merged.len());
                for r in merged {
                    match unique.last_mut() {
                        Some(last)
                            if last.asset == r.asset
                                && last.quantity == r.quantity
                                && last.ts_ms == r.ts_ms =>
                        {
                            *last = r;
                        }
                        _ => unique.push(r),
                    }
                }
                let path = format!("readings/date={name}/part-{:08}.parquet", next.next_file);
                next.next_file += 1;
                let batches: Vec<RecordBatch> = unique
                    .chunks(256 * 1024)
                    .map(|chunk| readings_batch(chunk.iter()))
                    .collect();
                self.files.write_parquet(&path, &batches).await?;
                next.readings.insert(name, path);
            }
            if !rejected.is_empty() {
                let path = format!("rejected/part-{:08}.parquet", next.next_file);
                next.next_file += 1;
                self.files
                    .write_parquet(&path, &[rejected_batch(&rejected)])
                    .await?;
                next.rejected.push(path);
            }
            due = next.supersede(replaced, next.flushed_ms, self.superseded_kept_ms());
            self.files.save_manifest(&next).await
        });
        if let Err(e) = result {
            // Put the rows back in front of what arrived since: nothing is lost, and
            // the log still holds them.
            let mut state = lock(&self.state);
            let newer = std::mem::take(&mut state.buffer).sorted();
            for r in rows.iter().cloned().chain(newer) {
                state.buffer.insert(r);
            }
            let mut rejected = std::mem::take(&mut state.rejected_flushing);
            rejected.append(&mut state.rejected);
            state.rejected = rejected;
            state.flushing = None;
            state.flushing_batch = None;
            return Err(e);
        }
        {
            let mut state = lock(&self.state);
            state.manifest = next;
            state.flushing = None;
            state.flushing_batch = None;
            state.rejected_flushing.clear();
            state.counts.flushes += 1;
            let days = stored_days(&state.manifest);
            state.shadowing = state.buffer.days().into_iter().any(|d| days.contains(&d));
        }
        self.refresh_tables()?;
        wal.delete_through(closed)?;
        self.delete_files(&due)?;
        self.apply_retention()
    }

    fn superseded_kept_ms(&self) -> i64 {
        i64::try_from(self.config.superseded_files_kept_s.saturating_mul(1_000)).unwrap_or(i64::MAX)
    }

    /// Deletes files the saved manifest no longer names.
    fn delete_files(&self, paths: &[String]) -> Result<()> {
        self.runtime.block_on(async {
            for path in paths {
                self.files.delete(path).await?;
            }
            Ok(())
        })
    }

    fn register_static_tables(&self, network: &Network) -> Result<()> {
        let assets = assets_batch(network);
        self.runtime.block_on(
            self.files
                .write_parquet(files::ASSETS_FILE, std::slice::from_ref(&assets)),
        )?;
        let table = MemTable::try_new(assets.schema(), vec![vec![assets]])?;
        self.ctx.register_table("assets", Arc::new(table))?;
        Ok(())
    }

    /// Deletes Parquet files the manifest does not name (an interrupted flush's).
    fn remove_orphans(&self) -> Result<()> {
        let live: std::collections::BTreeSet<String> = {
            let state = lock(&self.state);
            state
                .manifest
                .readings
                .values()
                .chain(&state.manifest.rejected)
                .chain(state.manifest.superseded.iter().map(|s| &s.path))
                .cloned()
                .chain([files::ASSETS_FILE.to_owned()])
                .collect()
        };
        self.runtime.block_on(async {
            for path in self.files.parquet_files().await? {
                if !live.contains(&path) {
                    self.files.delete(&path).await?;
                }
            }
            Ok(())
        })
    }

    /// Replays the log segments after the manifest's into the buffer; returns the
    /// log, writing a fresh segment.
    fn replay(&self) -> Result<Wal> {
        std::fs::create_dir_all(&self.wal_dir).map_err(|e| Error::io(&self.wal_dir, e))?;
        let flushed = lock(&self.state).manifest.wal_flushed_through;
        let segments = wal::segments(&self.wal_dir)?;
        let mut torn_total = 0;
        for &segment in &segments {
            if segment <= flushed {
                continue;
            }
            let bytes = wal::read_segment(&self.wal_dir, segment)?;
            let (entries, torn) = {
                let mut interned = lock(&self.interned);
                wal::decode(&bytes, &mut interned)
            };
            torn_total += torn as u64;
            self.apply(entries);
        }
        let last = segments.last().copied().unwrap_or(0).max(flushed);
        let wal = Wal::create(&self.wal_dir, last)?;
        // Segments up to the manifest's are in Parquet already.
        wal.delete_through(flushed)?;
        lock(&self.state).counts.torn_bytes = torn_total;
        Ok(wal)
    }

    /// Drops day files older than the retention, and deletes superseded files
    /// kept long enough.
    fn apply_retention(&self) -> Result<()> {
        let oldest_kept =
            (now_ms() - i64::from(self.config.retention_days) * DAY_MS).div_euclid(DAY_MS);
        let mut next = lock(&self.state).manifest.clone();
        let mut expired = Vec::new();
        next.readings.retain(|day, path| {
            let keep = day_number(day).is_none_or(|d| d >= oldest_kept);
            if !keep {
                expired.push(path.clone());
            }
            keep
        });
        let readings_changed = !expired.is_empty();
        let due = next.supersede(expired, now_ms(), self.superseded_kept_ms());
        if !readings_changed && due.is_empty() {
            return Ok(());
        }
        self.runtime.block_on(self.files.save_manifest(&next))?;
        lock(&self.state).manifest = next;
        // Deleting superseded files alone leaves the live tables as they are.
        if readings_changed {
            self.refresh_tables()?;
        }
        self.delete_files(&due)
    }

    /// Registers `readings` and `rejected` over the present files and buffers.
    fn refresh_tables(&self) -> Result<()> {
        let (reading_urls, rejected_urls, shadowing) = {
            let state = lock(&self.state);
            (
                state
                    .manifest
                    .readings
                    .values()
                    .map(|p| self.files.url(p))
                    .collect::<Vec<_>>(),
                state
                    .manifest
                    .rejected
                    .iter()
                    .map(|p| self.files.url(p))
                    .collect::<Vec<_>>(),
                state.shadowing,
            )
        };
        let buffer: Arc<dyn TableProvider> = {
            let state = self.state.clone();
            Arc::new(tables::LiveTable::new(readings_schema(), move || {
                buffer_batches(&state)
            }))
        };
        let shadow = shadowing.then(|| buffer.clone());
        let rejected_buffer: Arc<dyn TableProvider> = {
            let state = self.state.clone();
            Arc::new(tables::LiveTable::new(rejected_schema(), move || {
                let state = lock(&state);
                let rows: Vec<Rejected> = state
                    .rejected_flushing
                    .iter()
                    .chain(&state.rejected)
                    .cloned()
                    .collect();
                vec![rejected_batch(&rows)]
            }))
        };
        self.runtime.block_on(async {
            let files = tables::files_table(readings_schema(), &reading_urls)?;
            let view = tables::readings_view(&self.ctx, buffer, files, shadow)?;
            let rejected_files = tables::files_table(rejected_schema(), &rejected_urls)?;
            let rejected = self
                .ctx
                .read_table(rejected_buffer)?
                .union(self.ctx.read_table(rejected_files)?)?
                .into_view();
            self.ctx.deregister_table("readings")?;
            self.ctx.register_table("readings", view)?;
            self.ctx.deregister_table("rejected")?;
            self.ctx.register_table("rejected", rejected)?;
            Ok(())
        })
    }
}

/// The UTC day numbers that have a file.
fn stored_days(manifest: &Manifest) -> rustc_hash::FxHashSet<i64> {
    manifest
        .readings
        .keys()
        .filter_map(|d| day_number(d))
        .collect()
}

/// Query results as a text table.
pub fn pretty(batches: &[RecordBatch]) -> Result<String> {
    Ok(
        datafusion::arrow::util::pretty::pretty_format_batches(batches)
            .map_err(datafusion::error::DataFusionError::from)?
            .to_string(),
    )
}

/// What the `readings` view takes from memory: the buffer, and the rows being
/// flushed less the keys written again since.
fn buffer_batches(state: &Mutex<State>) -> Vec<RecordBatch> {
    let mut state = lock(state);
    let mut batches = vec![state.buffer.batch()];
    if state.flushing_batch.is_none()
        && let Some(rows) = state.flushing.clone()
    {
        let kept = state.buffer.without_keys_held(&rows);
        state.flushing_batch = Some(readings_batch(kept.into_iter()));
    }
    batches.extend(state.flushing_batch.clone());
    batches
}
