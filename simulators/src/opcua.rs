//! An OPC UA server standing in for the SCADA front-end: per feeder and
//! transformer of a gridpack, one folder with a `Double` variable per quantity,
//! values replayed from the gridpack or set by a test, and faults to inject.
//!
//! **Address space** (namespace [`NAMESPACE_URI`], usually index 2):
//!
//! | node id | value |
//! |---|---|
//! | `ns=2;s=<asset>` | folder under `Objects` for a feeder or transformer id |
//! | `ns=2;s=<asset>.p_kw` | active power, kW |
//! | `ns=2;s=<asset>.q_kvar` | reactive power, kvar |
//! | `ns=2;s=<asset>.i_a` | current, A |
//! | `ns=2;s=<asset>.u_kv` | voltage, kV |
//!
//! **Endpoints.** Always security None with anonymous and user-name login
//! ([`SIM_USER`] / [`SIM_PASSWORD`]); with a PKI folder also Basic256Sha256
//! Sign and SignAndEncrypt (the server's key pair is made there on first use
//! and client certificates are trusted).
//!
//! **Faults.** Clients reach the server through a [`FaultProxy`], so a test can
//! close every connection, stall them, or restart the server (connections
//! refused while it is down, a new server with no sessions after). A variable
//! can be given a bad status or a NaN value like any other.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::opcua::crypto::SecurityPolicy;
use ::opcua::server::address_space::Variable;
use ::opcua::server::diagnostics::NamespaceMetadata;
use ::opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use ::opcua::server::{ANONYMOUS_USER_TOKEN_ID, ServerBuilder, ServerHandle, ServerUserToken};
use ::opcua::types::{DataValue, DateTime, MessageSecurityMode, NodeId, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::fault_proxy::FaultProxy;
use crate::replay::{Timeline, every_second};

pub use ::opcua::types::StatusCode as OpcUaStatus;

/// The simulator's namespace.
pub const NAMESPACE_URI: &str = "urn:headroom:simulator";
/// Quantities exposed per asset.
pub const QUANTITIES: [&str; 4] = ["p_kw", "q_kvar", "i_a", "u_kv"];
/// User name accepted by the user-name endpoint.
pub const SIM_USER: &str = "headroom";
/// Its password.
pub const SIM_PASSWORD: &str = "simulator";

const USER_TOKEN_ID: &str = "headroom_user";

/// The string identifier of an asset's variable (`F_1.p_kw`).
pub fn variable_name(asset: &str, quantity: &str) -> String {
    format!("{asset}.{quantity}")
}

/// How to start the simulator.
#[derive(Clone, Debug, Default)]
pub struct OpcUaSimulatorConfig {
    /// Assets (feeder or transformer ids) to expose, each with [`QUANTITIES`].
    pub assets: Vec<String>,
    /// Where the server keeps its key pair and trusted certificates; `None`
    /// serves security None only, with a key pair in a private temporary
    /// folder (the library wants one even then).
    pub pki_dir: Option<PathBuf>,
}

/// What a restart must rebuild: the variables and their last values.
struct Model {
    assets: Vec<String>,
    values: BTreeMap<String, DataValue>,
}

struct Running {
    handle: ServerHandle,
    manager: Arc<SimpleNodeManager>,
    namespace: u16,
    task: JoinHandle<Result<(), String>>,
}

/// A running OPC UA server behind a fault proxy.
pub struct OpcUaSimulator {
    config: OpcUaSimulatorConfig,
    /// `config.pki_dir`, or `_own_pki`'s.
    pki_dir: PathBuf,
    /// Without `config.pki_dir`: a private folder, removed with the simulator.
    _own_pki: Option<tempfile::TempDir>,
    proxy: FaultProxy,
    model: Mutex<Model>,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for OpcUaSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpcUaSimulator")
            .field("address", &self.proxy.address())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OpcUaSimulator {
    /// Serves the assets' variables (all 0, good) to clients connecting to
    /// `listener`.
    pub async fn start(listener: TcpListener, config: OpcUaSimulatorConfig) -> io::Result<Self> {
        let public = listener.local_addr()?;
        // Placeholder upstream until the first server is up.
        let proxy = FaultProxy::start(listener, public)?;
        let mut values = BTreeMap::new();
        for asset in &config.assets {
            for quantity in QUANTITIES {
                values.insert(
                    variable_name(asset, quantity),
                    DataValue::new_now_status(0.0f64, StatusCode::Good),
                );
            }
        }
        // The library reads the server's certificate and key at start and for
        // every secure channel, security None included, and logs an ERROR each
        // time they are missing; without a folder of its own it would use one
        // in the working directory.
        let (pki_dir, own_pki) = match &config.pki_dir {
            Some(pki) => (pki.clone(), None),
            None => {
                let own = tempfile::Builder::new()
                    .prefix("headroom-opcua-simulator-")
                    .tempdir()?;
                (own.path().to_owned(), Some(own))
            }
        };
        let simulator = Self {
            model: Mutex::new(Model {
                assets: config.assets.clone(),
                values,
            }),
            config,
            pki_dir,
            _own_pki: own_pki,
            proxy,
            running: Mutex::new(None),
        };
        simulator.launch().await?;
        Ok(simulator)
    }

    /// The URL clients connect to (`opc.tcp://127.0.0.1:PORT/`).
    pub fn endpoint_url(&self) -> String {
        let address = self.proxy.address();
        format!("opc.tcp://{}:{}/", address.ip(), address.port())
    }

    /// The address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.proxy.address()
    }

    /// The node id of an asset's variable, as text (`ns=2;s=F_1.p_kw`).
    pub fn node_id(&self, asset: &str, quantity: &str) -> String {
        let namespace = lock(&self.running).as_ref().map_or(2, |r| r.namespace);
        format!("ns={namespace};s={}", variable_name(asset, quantity))
    }

    /// Sets a variable, good, with source timestamp `ts_ms` (ms since the epoch).
    pub fn set(&self, asset: &str, quantity: &str, value: f64, ts_ms: i64) {
        self.set_with_status(asset, quantity, value, ts_ms, StatusCode::Good);
    }

    /// Sets a variable with a status (a bad status is a fault a test injects).
    pub fn set_with_status(
        &self,
        asset: &str,
        quantity: &str,
        value: f64,
        ts_ms: i64,
        status: StatusCode,
    ) {
        self.set_many([(asset, quantity, value, ts_ms, status)]);
    }

    /// Sets many variables at once (one lock of the address space).
    pub fn set_many<'a>(
        &self,
        updates: impl IntoIterator<Item = (&'a str, &'a str, f64, i64, StatusCode)>,
    ) {
        let mut model = lock(&self.model);
        let mut changed = Vec::new();
        for (asset, quantity, value, ts_ms, status) in updates {
            let name = variable_name(asset, quantity);
            let Some(slot) = model.values.get_mut(&name) else {
                continue;
            };
            let at =
                DateTime::from(chrono::DateTime::from_timestamp_millis(ts_ms).unwrap_or_default());
            *slot = DataValue::new_at_status(value, at, status);
            changed.push((name, slot.clone()));
        }
        drop(model);
        if let Some(running) = lock(&self.running).as_ref() {
            let ids: Vec<(NodeId, DataValue)> = changed
                .into_iter()
                .map(|(name, value)| (NodeId::new(running.namespace, name), value))
                .collect();
            // A variable the server does not have is a test's mistake, not a fault.
            let _ = running.manager.set_values(
                running.handle.subscriptions(),
                ids.iter().map(|(id, value)| (id, None, value.clone())),
            );
        }
    }

    /// Closes every client connection (the server keeps running and its
    /// sessions wait for a client to come back).
    pub fn close_connections(&self) {
        self.proxy.close_connections();
    }

    /// Stalls (or releases) every connection: open, but silent.
    pub fn set_stalled(&self, stalled: bool) {
        self.proxy.set_stalled(stalled);
    }

    /// Stops the server (connections dropped, new ones refused) for `downtime`,
    /// then starts a new one with the same variables and values: sessions and
    /// subscriptions are gone, as after a real restart.
    pub async fn restart(&self, downtime: Duration) -> io::Result<()> {
        self.proxy.set_refusing(true);
        self.shutdown_server().await;
        self.proxy.close_connections();
        tokio::time::sleep(downtime).await;
        self.launch().await?;
        self.proxy.set_refusing(false);
        Ok(())
    }

    /// Stops the server for good.
    pub async fn stop(&self) {
        self.proxy.set_refusing(true);
        self.shutdown_server().await;
        self.proxy.close_connections();
    }

    async fn shutdown_server(&self) {
        let running = lock(&self.running).take();
        if let Some(running) = running {
            running.handle.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), running.task).await;
        }
    }

    async fn launch(&self) -> io::Result<()> {
        let inner = TcpListener::bind("127.0.0.1:0").await?;
        let upstream = inner.local_addr()?;
        let public = self.proxy.address();
        let user_tokens = [ANONYMOUS_USER_TOKEN_ID, USER_TOKEN_ID];
        let mut builder = ServerBuilder::new()
            .application_name("Headroom SCADA simulator")
            .application_uri("urn:headroom:simulator:server")
            .product_uri("urn:headroom:simulator")
            // Clients see the proxy's address in the endpoints they are given.
            .host(public.ip().to_string())
            .port(public.port())
            .discovery_urls(vec![format!(
                "opc.tcp://{}:{}/",
                public.ip(),
                public.port()
            )])
            .add_user_token(
                USER_TOKEN_ID,
                ServerUserToken::user_pass(SIM_USER, SIM_PASSWORD),
            )
            .add_endpoint(
                "none",
                (
                    "/",
                    SecurityPolicy::None,
                    MessageSecurityMode::None,
                    &user_tokens as &[&str],
                ),
            )
            .with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: NAMESPACE_URI.to_owned(),
                    ..Default::default()
                },
                "headroom",
            ));
        builder = builder
            .pki_dir(self.pki_dir.clone())
            .create_sample_keypair(true);
        if self.config.pki_dir.is_some() {
            builder = builder
                .trust_client_certs(true)
                .add_endpoint(
                    "basic256sha256_sign",
                    (
                        "/",
                        SecurityPolicy::Basic256Sha256,
                        MessageSecurityMode::Sign,
                        &user_tokens as &[&str],
                    ),
                )
                .add_endpoint(
                    "basic256sha256_sign_encrypt",
                    (
                        "/",
                        SecurityPolicy::Basic256Sha256,
                        MessageSecurityMode::SignAndEncrypt,
                        &user_tokens as &[&str],
                    ),
                );
        }
        // Bench clients monitor tens of thousands of items.
        let limits = builder.limits_mut();
        limits.max_array_length = 1_000_000;
        limits.max_message_size = 256 * 1024 * 1024;
        limits.max_chunk_count = 4_096;
        limits.subscriptions.max_monitored_items_per_sub = 0;
        limits.subscriptions.max_queued_notifications = 1_000_000;
        limits.operational.max_monitored_items_per_call = 100_000;
        let (server, handle) = builder.build().map_err(io::Error::other)?;
        let manager = handle
            .node_managers()
            .get_of_type::<SimpleNodeManager>()
            .ok_or_else(|| io::Error::other("the simple node manager is missing"))?;
        let namespace = handle
            .get_namespace_index(NAMESPACE_URI)
            .ok_or_else(|| io::Error::other("the simulator's namespace is missing"))?;
        {
            let model = lock(&self.model);
            let mut space = manager.address_space().write();
            for asset in &model.assets {
                let folder = NodeId::new(namespace, asset.clone());
                space.add_folder(
                    &folder,
                    asset.as_str(),
                    asset.as_str(),
                    &NodeId::objects_folder_id(),
                );
                let variables = QUANTITIES
                    .iter()
                    .map(|quantity| {
                        let name = variable_name(asset, quantity);
                        let mut variable = Variable::new(
                            &NodeId::new(namespace, name.clone()),
                            *quantity,
                            *quantity,
                            0.0f64,
                        );
                        if let Some(value) = model.values.get(&name) {
                            variable.set_data_value(value.clone());
                        }
                        variable
                    })
                    .collect();
                space.add_variables(variables, &folder);
            }
        }
        let task = tokio::spawn(server.run_with(inner));
        self.proxy.set_upstream(upstream);
        *lock(&self.running) = Some(Running {
            handle,
            manager,
            namespace,
            task,
        });
        Ok(())
    }
}

impl Drop for OpcUaSimulator {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.running).take() {
            running.handle.cancel();
            running.task.abort();
        }
    }
}

/// A gridpack's feeder and transformer readings replayed into the simulator,
/// time compressed and looping over the readings' span. Source timestamps are
/// wall-clock time (a replay is live data to its clients).
#[derive(Clone, Debug)]
pub struct OpcUaReplay {
    /// Per asset id: its values of [`QUANTITIES`].
    timeline: Timeline<String>,
}

impl OpcUaReplay {
    /// The feeders and transformers of a gridpack that have readings.
    pub fn from_gridpack(
        network: &headroom_geodata::Network,
        readings: &[headroom_geodata::ReadingRow],
    ) -> Self {
        use headroom_geodata::AssetKind;
        let rows = readings.iter().filter_map(|row| {
            let slot = QUANTITIES
                .iter()
                .position(|q| *q == row.quantity.as_str())?;
            let id = match row.asset.kind {
                AssetKind::Feeder => network.feeders[row.asset.index as usize].id.to_string(),
                AssetKind::Transformer => network.transformers[row.asset.index as usize]
                    .id
                    .to_string(),
                _ => return None,
            };
            Some((id, slot, row.ts_ms, row.value))
        });
        Self {
            timeline: Timeline::build(rows, QUANTITIES.len()),
        }
    }

    /// The assets replayed, to start the simulator with.
    pub fn assets(&self) -> Vec<String> {
        self.timeline.keys().cloned().collect()
    }

    /// Sets every variable to the reading in force `elapsed_ms` of simulated
    /// time after the first reading (looping), stamped `now_ms`.
    pub fn apply(&self, simulator: &OpcUaSimulator, elapsed_ms: i64, now_ms: i64) {
        let assets: Vec<&String> = self.timeline.keys().collect();
        simulator.set_many(self.timeline.at(elapsed_ms).map(|(k, slot, value)| {
            (
                assets[k].as_str(),
                QUANTITIES[slot],
                value,
                now_ms,
                StatusCode::Good,
            )
        }));
    }

    /// Replays until the task is dropped: every second of wall time moves
    /// simulated time by `speed` seconds.
    pub fn run(self, simulator: Arc<OpcUaSimulator>, speed: f64) -> JoinHandle<()> {
        every_second(speed, move |elapsed_ms| {
            self.apply(
                &simulator,
                elapsed_ms,
                chrono::Utc::now().timestamp_millis(),
            );
        })
    }
}
