//! What every request shares: the engine of the moment (swapped whole when
//! readings are refreshed, reservations change or the network is replaced;
//! requests in flight finish on the one they started with), the store, the
//! ledger, the tokens and the connectors' status.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use headroom_engine::{
    Application, CapacityRow, CustomerClass, Engine, Importance, Level, RankingResult, ReservedLoad,
};
use headroom_geodata::Network;
use headroom_store::{Store, StoreReadings};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;

use crate::auth::Tokens;
use crate::config::ServiceConfig;
use crate::error::{Error, Result};
use crate::ledger::{Ledger, ReservationRecord};

/// Serves the field connectors' state (`GET /v1/sources`): the binary wires the
/// connectors' registry in, so this crate needs no connector code.
pub trait SourcesHandler: Send + Sync {
    /// Each connector's state, counters, last success and errors, as JSON.
    fn sources(&self) -> Vec<Value>;
}

/// No connectors.
#[derive(Debug, Default)]
pub struct NoSources;

impl SourcesHandler for NoSources {
    fn sources(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// The engine of the moment and its number (capacity figures are cached per
/// number).
struct Current {
    engine: Arc<Engine>,
    version: u64,
}

struct Inner {
    config: ServiceConfig,
    tokens: Arc<Tokens>,
    current: RwLock<Current>,
    versions: AtomicU64,
    /// Serialises engine swaps (refresh, reservations, network) so that none
    /// undoes another.
    swapping: tokio::sync::Mutex<()>,
    store: Arc<Store>,
    ledger: Ledger,
    sources: Arc<dyn SourcesHandler>,
    metrics: PrometheusHandle,
    capacity: Mutex<Vec<(u64, LevelKey, Capacity)>>,
    /// One computation of capacity at a time: a map opened by several people
    /// at once asks for the same rows, which take seconds on a city.
    computing_capacity: tokio::sync::Mutex<()>,
    /// As many rankings at once as there are cores: more would only share
    /// them, and a queue in order keeps the slowest answer short.
    ranking_slots: tokio::sync::Semaphore,
    /// Rankings by engine version and application: a workflow system and the
    /// map ask again for the same application, and any change of readings,
    /// reservations or network makes a new version.
    rankings: moka::sync::Cache<(u64, Vec<u8>), Arc<Ranked>>,
    /// The map's geometry of each asset drawn so far, for the network (by
    /// address) it was drawn from: a city's feeders are most of the capacity
    /// document and change only with the network.
    drawings: Mutex<(usize, HashMap<String, Arc<Drawn>>)>,
    started_ms: i64,
}

/// An asset as the map draws it.
pub(crate) struct Drawn {
    /// Its GeoJSON geometry, serialised.
    pub(crate) geometry_json: String,
    /// Its points, for the bounding-box filter.
    pub(crate) points: Vec<headroom_geodata::LonLat>,
}

/// A ranking and its JSON, as answered.
pub(crate) struct Ranked {
    pub(crate) result: RankingResult,
    pub(crate) json: axum::body::Bytes,
}

/// How much JSON of rankings the service keeps.
const RANKINGS_KEPT_BYTES: u64 = 64 << 20;

/// Capacity rows of a level for one engine version, and when they were computed
/// (their `data_age_s` count from then).
#[derive(Clone)]
pub(crate) struct Capacity {
    pub(crate) rows: Arc<Vec<CapacityRow>>,
    pub(crate) computed_ms: i64,
}

impl Capacity {
    /// A row with its data age counted to `now_ms` rather than to when it was
    /// computed.
    pub(crate) fn aged(&self, row: &CapacityRow, now_ms: i64) -> CapacityRow {
        let since_s = (now_ms - self.computed_ms).max(0) as f64 / 1000.0;
        CapacityRow {
            data_age_s: row.data_age_s.map(|age| (age + since_s).round()),
            ..row.clone()
        }
    }
}

/// A [`Level`] as a cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LevelKey {
    Feeder,
    Transformer,
    Substation,
}

impl LevelKey {
    pub(crate) fn level(self) -> Level {
        match self {
            LevelKey::Feeder => Level::Feeder,
            LevelKey::Transformer => Level::Transformer,
            LevelKey::Substation => Level::Substation,
        }
    }
}

/// The service's shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState::new`] is made from.
pub struct ServiceParts {
    /// Settings.
    pub config: ServiceConfig,
    /// Tokens (from the config, plus any the caller adds).
    pub tokens: Tokens,
    /// The network.
    pub network: Network,
    /// The readings store, opened for that network.
    pub store: Arc<Store>,
    /// The ledger, migrated.
    pub ledger: Ledger,
    /// Connectors' status.
    pub sources: Arc<dyn SourcesHandler>,
    /// The Prometheus recorder's handle.
    pub metrics: PrometheusHandle,
}

/// The engine to rank `application` with: its own reservation, where it
/// holds one, is not counted against itself.
fn engine_without_own_reservation(engine: Arc<Engine>, application: &str) -> Arc<Engine> {
    if engine
        .reservations
        .iter()
        .any(|r| r.application == application)
    {
        let others = engine
            .reservations
            .iter()
            .filter(|r| r.application != application)
            .cloned()
            .collect();
        Arc::new(engine.with_reservations(others))
    } else {
        engine
    }
}

/// The reservations of the ledger as loads the engine counts; supplies no
/// longer in the network are skipped (said in the log).
pub fn reserved_loads(engine: &Engine, records: &[ReservationRecord]) -> Vec<ReservedLoad> {
    records
        .iter()
        .flat_map(|r| {
            let held = Application {
                id: r.application.clone(),
                kind: r.kind,
                source: None,
                lon: 0.0,
                lat: 0.0,
                demand_kw: r.reserved_kw,
                power_factor: r.power_factor,
                voltage_kv: None,
                customer_class: CustomerClass::Other,
                importance: Importance::Normal,
                profile: r.profile.clone(),
                max_distance_m: None,
                n1: false,
            };
            match engine.reserved_loads(&held, &r.supplies) {
                Ok(loads) => loads,
                Err(e) => {
                    tracing::warn!(application = %r.application, error = %e, "a reservation's supply is not in the network");
                    Vec::new()
                }
            }
        })
        .collect()
}

impl AppState {
    /// Builds the engine over the store's recent readings and the ledger's
    /// reservations.
    pub async fn new(parts: ServiceParts) -> Result<Self> {
        let ServiceParts {
            config,
            tokens,
            network,
            store,
            ledger,
            sources,
            metrics,
        } = parts;
        let reservations = ledger.active_reservations().await?;
        let window_days = config.readings.window_days;
        let engine_config = config.engine.clone();
        let engine = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || -> Result<Engine> {
                let readings = StoreReadings::recent(store, window_days)?;
                let engine = Engine::new(network, Arc::new(readings), engine_config, Vec::new());
                let loads = reserved_loads(&engine, &reservations);
                Ok(engine.with_reservations(loads))
            })
            .await
            .map_err(|e| Error::Internal(format!("building the engine failed: {e}")))??
        };
        Ok(Self(Arc::new(Inner {
            config,
            tokens: Arc::new(tokens),
            current: RwLock::new(Current {
                engine: Arc::new(engine),
                version: 1,
            }),
            versions: AtomicU64::new(1),
            swapping: tokio::sync::Mutex::new(()),
            store,
            ledger,
            sources,
            metrics,
            capacity: Mutex::new(Vec::new()),
            computing_capacity: tokio::sync::Mutex::new(()),
            ranking_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, usize::from),
            ),
            rankings: moka::sync::Cache::builder()
                .max_capacity(RANKINGS_KEPT_BYTES)
                .weigher(|key: &(u64, Vec<u8>), ranked: &Arc<Ranked>| {
                    u32::try_from(key.1.len() + ranked.json.len()).unwrap_or(u32::MAX)
                })
                .build(),
            drawings: Mutex::new((0, HashMap::new())),
            started_ms: chrono::Utc::now().timestamp_millis(),
        })))
    }

    /// Settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.0.config
    }

    /// Tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    /// The engine of the moment.
    pub fn engine(&self) -> Arc<Engine> {
        self.0
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .engine
            .clone()
    }

    fn engine_and_version(&self) -> (Arc<Engine>, u64) {
        let current = self.0.current.read().unwrap_or_else(|p| p.into_inner());
        (current.engine.clone(), current.version)
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.0.store
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    /// Connectors' status.
    pub fn sources(&self) -> Vec<Value> {
        self.0.sources.sources()
    }

    /// Prometheus text.
    pub fn metrics_text(&self) -> String {
        self.0.metrics.render()
    }

    /// When the service started, ms since the epoch.
    pub fn started_ms(&self) -> i64 {
        self.0.started_ms
    }

    /// Holds engine swaps off while the guard lives.
    pub(crate) async fn swapping(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.swapping.lock().await
    }

    /// Replaces the engine (call with [`AppState::swapping`] held).
    pub(crate) fn install(&self, engine: Engine) {
        let version = self.0.versions.fetch_add(1, Ordering::SeqCst) + 1;
        *self.0.current.write().unwrap_or_else(|p| p.into_inner()) = Current {
            engine: Arc::new(engine),
            version,
        };
        metrics::counter!("headroom_engine_swaps_total").increment(1);
    }

    /// The engine again with the ledger's reservations of now.
    pub async fn reload_reservations(&self) -> Result<()> {
        let _guard = self.swapping().await;
        let records = self.ledger().active_reservations().await?;
        let engine = self.engine();
        let derived = tokio::task::spawn_blocking(move || {
            let loads = reserved_loads(&engine, &records);
            engine.with_reservations(loads)
        })
        .await
        .map_err(|e| Error::Internal(format!("deriving the engine failed: {e}")))?;
        self.install(derived);
        Ok(())
    }

    /// The engine over the readings that arrived since it was built.
    pub async fn refresh_readings(&self) -> Result<()> {
        let _guard = self.swapping().await;
        let engine = self.engine();
        let store = self.store().clone();
        let days = self.config().readings.window_days;
        let started = std::time::Instant::now();
        let refreshed = tokio::task::spawn_blocking(move || -> Result<Engine> {
            let readings = StoreReadings::recent(store, days)?;
            Ok(engine.with_readings(Arc::new(readings)))
        })
        .await
        .map_err(|e| Error::Internal(format!("refreshing the engine failed: {e}")))??;
        metrics::histogram!("headroom_engine_refresh_seconds")
            .record(started.elapsed().as_secs_f64());
        self.install(refreshed);
        Ok(())
    }

    /// The ranking of `app` by the engine of the moment, from the cache when
    /// the same application was ranked by the same engine.
    pub(crate) async fn rank(&self, app: Application) -> Result<Arc<Ranked>> {
        let (engine, version) = self.engine_and_version();
        let key = (
            version,
            serde_json::to_vec(&app)
                .map_err(|e| Error::Internal(format!("an application as a key: {e}")))?,
        );
        if let Some(ranked) = self.0.rankings.get(&key) {
            metrics::counter!("headroom_rankings_cached_total").increment(1);
            return Ok(ranked);
        }
        let _slot = self
            .0
            .ranking_slots
            .acquire()
            .await
            .map_err(|e| Error::Internal(format!("ranking slots closed: {e}")))?;
        // The same application may have been ranked while this one waited.
        if let Some(ranked) = self.0.rankings.get(&key) {
            metrics::counter!("headroom_rankings_cached_total").increment(1);
            return Ok(ranked);
        }
        let engine = engine_without_own_reservation(engine, &app.id);
        let started = std::time::Instant::now();
        let ranked = tokio::task::spawn_blocking(move || -> Result<Ranked> {
            let result = engine.rank(&app);
            let json = serde_json::to_vec(&result)
                .map_err(|e| Error::Internal(format!("a ranking as JSON: {e}")))?;
            Ok(Ranked {
                result,
                json: json.into(),
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("ranking failed: {e}")))??;
        metrics::histogram!("headroom_engine_rank_seconds").record(started.elapsed().as_secs_f64());
        let ranked = Arc::new(ranked);
        self.0.rankings.insert(key, ranked.clone());
        Ok(ranked)
    }

    /// The drawing of asset `id` of `network`, made by `draw` the first time.
    pub(crate) fn drawing(
        &self,
        network: &Arc<Network>,
        id: &str,
        draw: impl FnOnce() -> Option<Drawn>,
    ) -> Option<Arc<Drawn>> {
        let mut drawings = self.0.drawings.lock().unwrap_or_else(|p| p.into_inner());
        let address = Arc::as_ptr(network) as usize;
        if drawings.0 != address {
            *drawings = (address, HashMap::new());
        }
        if let Some(drawn) = drawings.1.get(id) {
            return Some(drawn.clone());
        }
        let drawn = Arc::new(draw()?);
        drawings.1.insert(id.to_owned(), drawn.clone());
        Some(drawn)
    }

    /// Computes the figures the capacity map opens with (feeders and
    /// substations) for the engine of the moment, ahead of the first request.
    pub async fn warm_map(&self) -> Result<()> {
        self.capacity(LevelKey::Feeder).await?;
        self.capacity(LevelKey::Substation).await?;
        Ok(())
    }

    /// Capacity rows of a level for the engine of the moment (computed once
    /// per engine: a city's feeders take seconds).
    pub(crate) async fn capacity(&self, level: LevelKey) -> Result<Capacity> {
        let (engine, version) = self.engine_and_version();
        let cached = || {
            self.0
                .capacity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|(v, l, _)| *v == version && *l == level)
                .map(|(_, _, c)| c.clone())
        };
        if let Some(capacity) = cached() {
            return Ok(capacity);
        }
        let _computing = self.0.computing_capacity.lock().await;
        if let Some(capacity) = cached() {
            return Ok(capacity);
        }
        let started = std::time::Instant::now();
        let capacity = tokio::task::spawn_blocking(move || {
            let now_ms = chrono::Utc::now().timestamp_millis();
            Capacity {
                rows: Arc::new(engine.capacity(level.level(), engine.readings(), now_ms)),
                computed_ms: now_ms,
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("capacity failed: {e}")))?;
        metrics::histogram!("headroom_engine_capacity_seconds")
            .record(started.elapsed().as_secs_f64());
        let mut cache = self.0.capacity.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(v, _, _)| *v == version);
        cache.push((version, level, capacity.clone()));
        Ok(capacity)
    }
}

/// What authenticates a request ([`crate::auth::Caller`]) takes from the state.
impl axum::extract::FromRef<AppState> for Arc<Tokens> {
    fn from_ref(state: &AppState) -> Self {
        state.0.tokens.clone()
    }
}
