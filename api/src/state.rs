//! What every request shares: the engine of the moment (swapped whole when
//! readings are refreshed, reservations change or the network is replaced;
//! requests in flight finish on the one they started with), the store, the
//! ledger, the tokens and the connectors' status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use headroom_engine::store::{Store, StoreReadings};
use headroom_engine::{
    Application, CapacityRow, CustomerClass, Engine, Importance, Level, ReservedLoad,
};
use headroom_geodata::Network;
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
    tokens: Tokens,
    current: RwLock<Current>,
    versions: AtomicU64,
    /// Serialises engine swaps (refresh, reservations, network) so that none
    /// undoes another.
    swapping: tokio::sync::Mutex<()>,
    store: Arc<Store>,
    ledger: Ledger,
    sources: Arc<dyn SourcesHandler>,
    metrics: PrometheusHandle,
    capacity: Mutex<Vec<CachedCapacity>>,
    started_ms: i64,
}

/// Capacity rows of a level, by engine version.
type CachedCapacity = (u64, LevelKey, Arc<Vec<CapacityRow>>);

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

/// The reservations of the ledger as loads the engine counts; supplies no
/// longer in the network are skipped (said in the log).
pub fn reserved_loads(engine: &Engine, records: &[ReservationRecord]) -> Vec<ReservedLoad> {
    records
        .iter()
        .flat_map(|r| {
            let held = Application {
                id: r.application.clone(),
                lon: 0.0,
                lat: 0.0,
                demand_kw: r.reserved_kw,
                power_factor: r.power_factor,
                voltage_kv: None,
                customer_class: CustomerClass::Other,
                importance: Importance::Normal,
                profile: r.profile.clone(),
                max_distance_m: None,
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
            tokens,
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

    /// Capacity rows of a level for the engine of the moment (computed once
    /// per engine: a city's feeders take seconds).
    pub(crate) async fn capacity(&self, level: LevelKey) -> Result<Arc<Vec<CapacityRow>>> {
        let (engine, version) = self.engine_and_version();
        if let Some((_, _, rows)) = self
            .0
            .capacity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(v, l, _)| *v == version && *l == level)
        {
            return Ok(rows.clone());
        }
        let started = std::time::Instant::now();
        let rows = tokio::task::spawn_blocking(move || {
            let now_ms = chrono::Utc::now().timestamp_millis();
            Arc::new(engine.capacity(level.level(), engine.readings(), now_ms))
        })
        .await
        .map_err(|e| Error::Internal(format!("capacity failed: {e}")))?;
        metrics::histogram!("headroom_engine_capacity_seconds")
            .record(started.elapsed().as_secs_f64());
        let mut cache = self.0.capacity.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(v, _, _)| *v == version);
        cache.push((version, level, rows.clone()));
        Ok(rows)
    }
}
