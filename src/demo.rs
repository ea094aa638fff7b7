//! `headroom serve --demo`: a generated city whose week of readings ends now,
//! imported into a fresh data folder, with the three field-hardware simulators
//! running in-process, so readings arrive live while planners try the API and
//! the map. They arrive as they would in a utility: the connectors run in a
//! collector (the production zone's side), whose signed files a simulated
//! isolation device carries into the service's relay inbox.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use headroom_api::ServiceConfig;
use headroom_api::auth::{Role, new_token};
use headroom_connectors::{ConnectorContext, ConnectorsConfig, StatusRegistry};
use headroom_geodata::{AssetKind, Gridpack};
use headroom_relay::Algorithm;
use headroom_relay::collector::{Collector, CollectorSettings};
use headroom_simulators::SynthConfig;
use headroom_simulators::isolation_device::{Faults, IsolationDevice};
use headroom_simulators::modbus::{MAP, ModbusSimulator, Replay};
use headroom_simulators::opcua::{OpcUaReplay, OpcUaSimulator, OpcUaSimulatorConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commands::Failure;

/// Substations of the demo city (15 feeders each): starts in seconds.
const DEMO_SUBSTATIONS: usize = 2;
/// Terminals on the demo's Modbus gateway.
const DEMO_MODBUS_UNITS: u8 = 40;
/// Wall-clock seconds between the demo's metering files (one simulated day each).
const DEMO_METER_FILE_EVERY_S: u64 = 30;

/// Where the demo's files cross: the collector's stream.
const DEMO_STREAM: &str = "demo-production";

/// What the demo started.
pub(crate) struct Demo {
    /// The production side's connectors report here; the service's sources
    /// list them beside its own relay inbox.
    pub(crate) registry: StatusRegistry,
    collector: Option<Collector>,
    connectors: Vec<JoinHandle<()>>,
    /// The grid in words.
    pub(crate) summary: String,
    /// Tokens made for this run.
    pub(crate) planner_token: String,
    pub(crate) workflow_token: String,
    pub(crate) admin_token: String,
    opcua: Arc<OpcUaSimulator>,
    modbus: Arc<ModbusSimulator>,
    tasks: Vec<JoinHandle<()>>,
}

impl Demo {
    /// Stops the simulators, the collector's connectors (already told by the
    /// shutdown token) and the collector.
    pub(crate) async fn stop(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.connectors.drain(..) {
            let _ = task.await;
        }
        if let Some(collector) = self.collector.take() {
            let stopped = tokio::task::spawn_blocking(move || collector.stop()).await;
            if let Ok(Err(e)) = stopped {
                tracing::warn!("demo: the collector stopped badly: {e}");
            }
        }
        self.opcua.stop().await;
        self.modbus.stop().await;
    }
}

/// Removes the folders of earlier demos whose process is gone (each run
/// generates its grid afresh; a folder is kept after Ctrl-C for inspection).
fn remove_stale_demos() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("headroom-demo-") else {
            continue;
        };
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure {
        exit_code: 1,
        message: format!("demo: {what}: {e}"),
    }
}

/// Generates and imports the demo grid, starts the simulators and points the
/// config's data dir and connectors at them.
pub(crate) async fn prepare(
    config: &mut ServiceConfig,
    shutdown: CancellationToken,
) -> Result<Demo, Failure> {
    let root = std::env::temp_dir().join(format!("headroom-demo-{}", std::process::id()));
    remove_stale_demos();
    let gridpack_dir = root.join("gridpack");
    let data_dir = root.join("data");
    let meter_drop = root.join("meter-drop");
    std::fs::create_dir_all(&meter_drop).map_err(|e| failure("folder", e))?;

    // A week of readings ending now, so live readings continue the history.
    let now = chrono::Utc::now();
    let step = 15 * 60;
    let end = now.timestamp() / step * step;
    let mut synth = SynthConfig::city(DEMO_SUBSTATIONS, 7);
    synth.days = 7;
    synth.start = chrono::DateTime::from_timestamp(end - 7 * 86_400, 0).unwrap_or(now);
    synth.compress_readings = Some(false);
    let gridpack = {
        let gridpack_dir = gridpack_dir.clone();
        let data_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<Gridpack, Failure> {
            headroom_simulators::write_synthetic_gridpack(&gridpack_dir, &synth)
                .map_err(|e| failure("grid", e))?;
            crate::serve::import_into(&gridpack_dir, &data_dir)?;
            Ok(Gridpack::read(&gridpack_dir)?)
        })
        .await
        .map_err(|e| failure("grid", e))??
    };
    let network = &gridpack.network;

    // SCADA: feeder heads over OPC UA.
    let feeder_rows: Vec<_> = gridpack
        .readings
        .iter()
        .filter(|r| r.asset.kind == AssetKind::Feeder)
        .cloned()
        .collect();
    let opcua_replay = OpcUaReplay::from_gridpack(network, &feeder_rows);
    let feeders = opcua_replay.assets();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| failure("OPC UA listener", e))?;
    let opcua = Arc::new(
        OpcUaSimulator::start(
            listener,
            OpcUaSimulatorConfig {
                assets: feeders.clone(),
                pki_dir: None,
            },
        )
        .await
        .map_err(|e| failure("OPC UA simulator", e))?,
    );
    let mut tasks = vec![opcua_replay.run(opcua.clone(), 1.0)];

    // Monitoring terminals: transformers behind one Modbus gateway.
    let transformer_rows: Vec<_> = gridpack
        .readings
        .iter()
        .filter(|r| r.asset.kind == AssetKind::Transformer)
        .cloned()
        .collect();
    let (modbus_replay, units) =
        Replay::from_gridpack(network, &transformer_rows, DEMO_MODBUS_UNITS);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| failure("Modbus listener", e))?;
    let modbus = Arc::new(
        ModbusSimulator::start(listener, modbus_replay.unit_count())
            .await
            .map_err(|e| failure("Modbus simulator", e))?,
    );
    tasks.push(modbus_replay.run(modbus.clone(), 1.0));

    // Metering head-end: the week's days again, one file every half minute.
    let days = headroom_simulators::meter_files::days_from_gridpack(network, &gridpack.readings, 0);
    let mut meters = toml::Table::new();
    for (_, day) in days.iter().take(1) {
        for meter in day {
            let transformer = meter.meter.trim_start_matches("M-").to_owned();
            meters.insert(meter.meter.clone(), toml::Value::String(transformer));
        }
    }
    {
        let folder = meter_drop.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            for (round, (date, day)) in days.iter().cycle().enumerate() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(DEMO_METER_FILE_EVERY_S)) => {}
                }
                let name = format!("meters-{}-r{round}.csv", date.format("%Y-%m-%d"));
                if let Err(e) = headroom_simulators::meter_files::drop_file(&folder, &name, day) {
                    tracing::warn!(error = %e, "demo: cannot drop a metering file");
                }
            }
        }));
    }

    // The connectors, as an operator would write them.
    let mut text = String::new();
    let endpoint = opcua.endpoint_url();
    let _ = writeln!(
        text,
        "[[connector]]\nname = \"demo-scada\"\ntype = \"opcua\"\nendpoint_url = \"{endpoint}\"\nsecurity_policy = \"none\"\nsecurity_mode = \"none\"\npublishing_interval_ms = 1000\n"
    );
    for feeder in &feeders {
        for quantity in ["p_kw", "q_kvar", "u_kv"] {
            let _ = writeln!(
                text,
                "[[connector.items]]\nnode_id = \"{}\"\nasset = \"{feeder}\"\nquantity = \"{quantity}\"\n",
                opcua.node_id(feeder, quantity)
            );
        }
    }
    let gateway = modbus.address();
    let _ = writeln!(
        text,
        "[[connector]]\nname = \"demo-terminals\"\ntype = \"modbus\"\nhost = \"{}\"\nport = {}\n",
        gateway.ip(),
        gateway.port()
    );
    for (unit, transformer) in &units {
        let _ = writeln!(
            text,
            "[[connector.devices]]\nunit_id = {unit}\npoll_interval_ms = 5000\n"
        );
        for (slot, quantity) in MAP.iter().enumerate() {
            if !matches!(*quantity, "p_kw" | "q_kvar") {
                continue;
            }
            let _ = writeln!(
                text,
                "[[connector.devices.points]]\naddress = {}\nregister = \"input\"\ndata_type = \"f32\"\nasset = \"{transformer}\"\nquantity = \"{quantity}\"\n",
                slot * 2
            );
        }
    }
    let _ = writeln!(
        text,
        "[[connector]]\nname = \"demo-meters\"\ntype = \"meter_files\"\nfolder = \"{}\"\n",
        meter_drop.display()
    );
    let mut parsed: toml::Table =
        toml::from_str(&text).map_err(|e| failure("connector config", e))?;
    if let Some(toml::Value::Array(list)) = parsed.get_mut("connector")
        && let Some(toml::Value::Table(meter_files)) = list.last_mut()
    {
        meter_files.insert("meters".into(), toml::Value::Table(meters));
    }
    let field_connectors: ConnectorsConfig = parsed
        .try_into()
        .map_err(|e| failure("connector config", e))?;

    // The production zone: the connectors feed a collector.
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| failure("folder", e))?;
    let key = headroom_relay::keys::write_key_pair(Algorithm::Ed25519, &keys.join("collector"))
        .map_err(|e| failure("collector key", e))?;
    let (outbox, inbox) = (root.join("outbox"), root.join("inbox"));
    for folder in [&outbox, &inbox] {
        std::fs::create_dir_all(folder).map_err(|e| failure("folder", e))?;
    }
    let mut settings = CollectorSettings::new(
        DEMO_STREAM,
        keys.join("collector.key"),
        root.join("collector"),
    );
    settings.batch_max_age_ms = 2_000;
    let collector = {
        let outbox = outbox.clone();
        tokio::task::spawn_blocking(move || Collector::start(settings, key, &outbox))
            .await
            .map_err(|e| failure("collector", e))?
            .map_err(|e| failure("collector", e))?
    };
    let measurable = Arc::new(crate::serve::measurable_ids(network));
    let registry = StatusRegistry::default();
    let context = ConnectorContext {
        sink: Arc::new(collector.sink()),
        known_asset: Arc::new(move |id: &str| measurable.contains(id)),
        shutdown: shutdown.clone(),
        registry: registry.clone(),
    };
    let mut connectors = Vec::new();
    for connector in &field_connectors.connector {
        let running = connector
            .spawn(&context)
            .map_err(|e| failure("connector", e))?;
        connectors.push(running.task);
    }

    // The forward isolation device, faultless: from the outbox to the inbox.
    {
        let (outbox, inbox) = (outbox.clone(), inbox.clone());
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let mut device = IsolationDevice::new(&outbox, &inbox, Faults::NONE, 1);
            let mut ticker = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                if let Err(e) = device.step(false) {
                    tracing::warn!(error = %e, "demo: the isolation device failed a step");
                }
            }
        }));
    }

    // The management zone: the service's relay inbox trusts the collector.
    let inbox_text = format!(
        "name = \"from-production\"\ntype = \"relay_inbox\"\nfolder = \"{}\"\nscan_interval_ms = 200\n[streams.{DEMO_STREAM}]\nkeys = [\"{}\"]\n",
        inbox.display(),
        keys.join("collector.pub").display()
    );
    config.connector =
        vec![toml::from_str(&inbox_text).map_err(|e| failure("relay inbox config", e))?];
    config.data_dir = data_dir.display().to_string();
    config.readings.refresh_interval_s = config.readings.refresh_interval_s.min(30);

    let summary = format!(
        "{} substations, {} feeders, {} distribution transformers in {}; live: {} feeders over OPC UA at {endpoint}, {} terminals over Modbus at {gateway}, metering files into {}, through a collector (outbox {}) and a simulated isolation device into the relay inbox {}",
        network.substations.len(),
        network.feeders.len(),
        network.transformers.len(),
        PathBuf::from(&root).display(),
        feeders.len(),
        units.len(),
        meter_drop.display(),
        outbox.display(),
        inbox.display()
    );
    Ok(Demo {
        registry,
        collector: Some(collector),
        connectors,
        summary,
        planner_token: new_token(Role::Planner),
        workflow_token: new_token(Role::Workflow),
        admin_token: new_token(Role::Admin),
        opcua,
        modbus,
        tasks,
    })
}
