//! Field connectors under load, against the simulators on this machine. Each
//! part runs alone when named: `cargo bench --bench connectors -- opcua|modbus|meter_file`;
//! with no name, all. The simulators run in a child process (this bench binary
//! started again with `HEADROOM_BENCH_ROLE`), so the CPU measured is the
//! connector's own.
//!
//! - `opcua`: one client session with 10,000 monitored items (2,500 simulated
//!   assets x P, Q, I, U) sampled and published every second; the server sets
//!   every variable to the next number of a sequence every second. After the
//!   subscription is up and a first full round has arrived, for 60 s
//!   (`HEADROOM_BENCH_SECS`): updates lost (a skipped sequence number of an
//!   item, or an item short of the rounds the server made), and the client
//!   process's CPU (user + system) per second of wall time. Targets: zero lost
//!   updates, CPU under half a core.
//! - `modbus`: 500 monitoring terminals (5 simulated gateways x 100 unit ids, 20
//!   registers each, read in one request) polled every second for 60 s. A poll
//!   cycle's time is from the poll's start (its readings' timestamp) to the
//!   moment its readings reach the sink. Printed: p50, p99 and max cycle time and
//!   polls missed. Target: p99 under 1 s (every cycle completes within its
//!   second).
//! - `meter_file`: one wide-form metering file of 100,000 meters x 96
//!   quarter-hours (19.2 million readings: energy and average power) dropped in
//!   the connector's folder, to the store (write-ahead log on) on a synthetic city
//!   whose transformers the meters map to. Timed from the drop to the file moved
//!   to `done/` (every reading acknowledged durable). Target under 10 s.
//!
//! Run: `cargo bench --bench connectors` (release build).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headroom_connectors::meter_files::MeterFilesConfig;
use headroom_connectors::modbus::{
    DataType, ModbusConfig, ModbusDevice, ModbusPoint, Order, RegisterKind,
};
use headroom_connectors::opcua::{
    Deadband, Identity, OpcUaConfig, OpcUaItem, SecurityModeName, SecurityPolicyName,
    TimestampSource,
};
use headroom_connectors::{ConnectorConfig, ConnectorContext, StatusRegistry};
use headroom_readings::{Reading, ReadingSink, WriteSummary, WriteTicket};
use headroom_store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;

#[path = "support.rs"]
mod support;
use support::{process_cpu_s, quantile};

#[path = "../src/allocator.rs"]
mod allocator;

const ROLE: &str = "HEADROOM_BENCH_ROLE";
const OPCUA_ASSETS: usize = 2_500;
const GATEWAYS: usize = 5;
const UNITS_PER_GATEWAY: u8 = 100;

fn main() {
    allocator::keep_freed_memory();
    match std::env::var(ROLE).as_deref() {
        Ok("opcua-server") => return opcua_server(),
        Ok("modbus-server") => return modbus_servers(),
        _ => {}
    }
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if wanted("opcua") {
        opcua();
    }
    if wanted("modbus") {
        modbus();
    }
    if wanted("meter_file") {
        meter_file();
    }
}

fn bench_secs() -> u64 {
    std::env::var("HEADROOM_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// This bench binary again, as a simulator; it prints its address lines first.
struct Simulator {
    child: Child,
    lines: Vec<String>,
}

impl Simulator {
    fn start(role: &str, lines: usize) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("bench binary"))
            .env(ROLE, role)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("simulator process");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let lines = (0..lines)
            .map(|_| {
                let mut line = String::new();
                out.read_line(&mut line).expect("simulator prints");
                line.trim().to_owned()
            })
            .collect();
        Self { child, lines }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sink that answers at once and hands each batch to a closure.
struct Probe<F: Fn(Vec<Reading>) + Send + Sync>(F);

impl<F: Fn(Vec<Reading>) + Send + Sync> ReadingSink for Probe<F> {
    fn write(&self, readings: Vec<Reading>) -> WriteTicket {
        let accepted = readings.len();
        (self.0)(readings);
        let (reply, ticket) = WriteTicket::channel();
        let _ = reply.send(Ok(WriteSummary {
            accepted,
            ..WriteSummary::default()
        }));
        ticket
    }
}

fn context(sink: Arc<dyn ReadingSink>) -> ConnectorContext {
    ConnectorContext {
        sink,
        known_asset: Arc::new(|_: &str| true),
        shutdown: CancellationToken::new(),
        registry: StatusRegistry::default(),
    }
}

fn opcua_asset(i: usize) -> String {
    format!("F_{i}")
}

/// The OPC UA server: every variable to the next sequence number each second.
fn opcua_server() {
    use headroom_simulators::opcua::{
        OpcUaSimulator, OpcUaSimulatorConfig, OpcUaStatus, QUANTITIES,
    };
    let runtime = runtime();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let assets: Vec<String> = (0..OPCUA_ASSETS).map(opcua_asset).collect();
        let sim = OpcUaSimulator::start(
            listener,
            OpcUaSimulatorConfig {
                assets: assets.clone(),
                pki_dir: None,
            },
        )
        .await
        .unwrap();
        println!("{}", sim.endpoint_url());
        println!("{}", sim.node_id("X", "p_kw").split(';').next().unwrap());
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut sequence = 0.0;
        loop {
            tick.tick().await;
            sequence += 1.0;
            let now = chrono::Utc::now().timestamp_millis();
            sim.set_many(assets.iter().flat_map(|asset| {
                QUANTITIES
                    .iter()
                    .map(move |q| (asset.as_str(), *q, sequence, now, OpcUaStatus::Good))
            }));
        }
    });
}

fn opcua() {
    use headroom_simulators::opcua::QUANTITIES;
    let simulator = Simulator::start("opcua-server", 2);
    let (url, namespace) = (simulator.lines[0].clone(), simulator.lines[1].clone());
    let mut items = Vec::new();
    for i in 0..OPCUA_ASSETS {
        for quantity in QUANTITIES {
            items.push(OpcUaItem {
                node_id: format!("{namespace};s={}.{quantity}", opcua_asset(i)),
                sampling_interval_ms: 1_000.0,
                queue_size: 10,
                deadband: Deadband::None,
                scale: 1.0,
                offset: 0.0,
                asset: opcua_asset(i),
                quantity: quantity.into(),
            });
        }
    }
    let item_count = items.len();
    // Per (asset, quantity): the sequence numbers seen, as (first, last, lost).
    type Seen = HashMap<(Arc<str>, headroom_geodata::Quantity), (f64, f64, u64)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let recorder = seen.clone();
    let sink = Arc::new(Probe(move |readings: Vec<Reading>| {
        let mut seen = recorder.lock().unwrap();
        for r in readings {
            let entry =
                seen.entry((r.asset.clone(), r.quantity))
                    .or_insert((r.value, r.value - 1.0, 0));
            if r.value > entry.1 + 1.0 {
                entry.2 += (r.value - entry.1 - 1.0) as u64;
            }
            entry.1 = entry.1.max(r.value);
        }
    }));
    let config = ConnectorConfig::Opcua(OpcUaConfig {
        name: "scada".into(),
        endpoint_url: url,
        security_policy: SecurityPolicyName::None,
        security_mode: SecurityModeName::None,
        identity: Identity::Anonymous,
        pki_dir: None,
        trust_server_certs: false,
        publishing_interval_ms: 1_000,
        timestamps: TimestampSource::Source,
        request_timeout_ms: 30_000,
        keep_alive_interval_ms: 5_000,
        retry_min_ms: 1_000,
        retry_max_ms: 10_000,
        items,
    });
    let runtime = runtime();
    let context = context(sink);
    let started = Instant::now();
    let running = {
        let _entered = runtime.enter();
        config.spawn(&context).unwrap()
    };
    while seen.lock().unwrap().len() < item_count {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {item_count} items answered in 120 s; status {:?}",
            seen.lock().unwrap().len(),
            running.status.snapshot()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "opcua: {item_count} items subscribed, first round in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Start counting from here: what each item had.
    let baseline: HashMap<_, _> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), (v.1, v.2)))
        .collect();
    let cpu_start = process_cpu_s();
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(bench_secs()));
    let cpu = process_cpu_s() - cpu_start;
    let seconds = wall.elapsed().as_secs_f64();
    // The server's sequence now: the highest number any item reached.
    let seen = seen.lock().unwrap().clone();
    let newest = seen.values().map(|v| v.1).fold(f64::MIN, f64::max);
    let (mut received, mut skipped, mut behind) = (0u64, 0u64, 0u64);
    for (key, (_, last, lost)) in &seen {
        let (base_last, base_lost) = baseline[key];
        received += (last - base_last) as u64;
        skipped += lost - base_lost;
        // An item more than one round behind the newest lost its last updates
        // (one round may be in flight).
        behind += (newest - last - 1.0).max(0.0) as u64;
    }
    println!(
        "opcua: {seconds:.0} s, {item_count} items: {received} updates ({:.0}/s), lost {} \
         ({skipped} skipped, {behind} behind), client CPU {:.3} cores ({cpu:.1} s); link {:?}",
        received as f64 / seconds,
        skipped + behind,
        cpu / seconds,
        running.status.snapshot().link
    );
    context.shutdown.cancel();
    let _ = runtime.block_on(running.task);
}

/// Five Modbus gateways of 100 terminals each.
fn modbus_servers() {
    use headroom_simulators::modbus::ModbusSimulator;
    let runtime = runtime();
    runtime.block_on(async {
        let mut simulators = Vec::new();
        for _ in 0..GATEWAYS {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let sim = ModbusSimulator::start(listener, UNITS_PER_GATEWAY)
                .await
                .unwrap();
            for unit in 1..=UNITS_PER_GATEWAY {
                for (slot, value) in [230.0f32, 40.0, 234.0, 13.5, 10.4].iter().enumerate() {
                    sim.set(unit, slot as u16 * 2, *value);
                }
            }
            println!("{}", sim.address().port());
            simulators.push(sim);
        }
        std::future::pending::<()>().await;
    });
}

fn modbus() {
    let simulator = Simulator::start("modbus-server", GATEWAYS);
    let ports: Vec<u16> = simulator.lines.iter().map(|l| l.parse().unwrap()).collect();
    // All 20 registers of the map in one request: its five f32 values and the
    // ten reserved registers as u16.
    let points = |unit: u8| -> Vec<ModbusPoint> {
        let asset = format!("T_{unit}");
        let mut points: Vec<ModbusPoint> = ["p_kw", "q_kvar", "s_kva", "i_a", "u_kv"]
            .iter()
            .enumerate()
            .map(|(i, q)| ModbusPoint {
                address: i as u16 * 2,
                register: RegisterKind::Input,
                data_type: DataType::F32,
                word_order: Order::Big,
                byte_order: Order::Big,
                scale: 1.0,
                offset: 0.0,
                asset: asset.clone(),
                quantity: (*q).into(),
            })
            .collect();
        points.extend((10..20).map(|address| ModbusPoint {
            address,
            register: RegisterKind::Input,
            data_type: DataType::U16,
            word_order: Order::Big,
            byte_order: Order::Big,
            scale: 1.0,
            offset: 0.0,
            asset: asset.clone(),
            quantity: "i_a".into(),
        }));
        points
    };
    // Cycle time per poll: arrival at the sink minus the poll's start.
    let cycles: Arc<Mutex<Vec<f64>>> = Arc::default();
    type PollKey = (Arc<str>, Arc<str>, i64);
    let polls: Arc<Mutex<std::collections::HashSet<PollKey>>> = Arc::default();
    let counting = Arc::new(Mutex::new(false));
    let (recorder, poll_recorder, counting_now) = (cycles.clone(), polls.clone(), counting.clone());
    let sink = Arc::new(Probe(move |readings: Vec<Reading>| {
        if !*counting_now.lock().unwrap() {
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut cycles = recorder.lock().unwrap();
        let mut polls = poll_recorder.lock().unwrap();
        for r in readings {
            // One poll of one device: its first reading stands for all.
            if polls.insert((r.source.clone(), r.asset.clone(), r.ts_ms)) {
                cycles.push((now - r.ts_ms) as f64);
            }
        }
    }));
    let runtime = runtime();
    let context = context(sink);
    let mut running = Vec::new();
    for (g, port) in ports.iter().enumerate() {
        let devices = (1..=UNITS_PER_GATEWAY)
            .map(|unit| ModbusDevice {
                unit_id: unit,
                poll_interval_ms: 1_000,
                points: points(unit),
            })
            .collect();
        // One connector per gateway, as a utility would configure them.
        let config = ConnectorConfig::Modbus(ModbusConfig {
            name: format!("gw{g}"),
            host: "127.0.0.1".into(),
            port: *port,
            timeout_ms: 1_000,
            retry_min_ms: 1_000,
            retry_max_ms: 10_000,
            devices,
        });
        let _entered = runtime.enter();
        running.push(config.spawn(&context).unwrap());
    }
    std::thread::sleep(Duration::from_secs(3));
    *counting.lock().unwrap() = true;
    let cpu_start = process_cpu_s();
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(bench_secs()));
    *counting.lock().unwrap() = false;
    let cpu = process_cpu_s() - cpu_start;
    let seconds = wall.elapsed().as_secs_f64();
    let mut cycles = cycles.lock().unwrap().clone();
    let expected = (GATEWAYS * UNITS_PER_GATEWAY as usize) as f64 * seconds;
    println!(
        "modbus: {} devices x {seconds:.0} s: {} polls of {expected:.0} due; cycle p50 {:.0} ms, \
         p99 {:.0} ms, max {:.0} ms; client CPU {:.3} cores",
        GATEWAYS * UNITS_PER_GATEWAY as usize,
        cycles.len(),
        quantile(&mut cycles, 0.5),
        quantile(&mut cycles, 0.99),
        quantile(&mut cycles, 1.0),
        cpu / seconds
    );
    context.shutdown.cancel();
    for r in running {
        let _ = runtime.block_on(r.task);
    }
}

fn meter_file() {
    use headroom_simulators::meter_files::{MeterDay, drop_file};
    use headroom_simulators::{SynthConfig, synthetic_grid};
    const METERS: usize = 100_000;
    let grid = synthetic_grid(&SynthConfig::city(10, 1)).expect("synthetic city");
    let network = grid.network;
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::open(&dir.path().join("store"), &network, StoreConfig::default()).unwrap());
    let folder = dir.path().join("drop");
    std::fs::create_dir_all(&folder).unwrap();
    let transformers: Vec<String> = network
        .transformers
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    let meters: BTreeMap<String, String> = (0..METERS)
        .map(|i| {
            (
                format!("M-{i:06}"),
                transformers[i % transformers.len()].clone(),
            )
        })
        .collect();
    let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let days: Vec<MeterDay> = meters
        .keys()
        .enumerate()
        .map(|(i, meter)| MeterDay {
            meter: meter.clone(),
            date,
            kwh: std::array::from_fn(|q| Some(((i + q) % 50) as f64 * 0.25 + 1.0)),
        })
        .collect();
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let file = drop_file(&staging, "meters-100k.csv", &days).unwrap();
    let bytes = std::fs::metadata(&file).unwrap().len();
    let config = ConnectorConfig::MeterFiles(MeterFilesConfig {
        name: "ami".into(),
        folder: folder.clone(),
        meters,
        scan_interval_ms: 50,
        settle_ms: 0,
        utc_offset_min: 0,
    });
    let runtime = runtime();
    let sink: Arc<dyn ReadingSink> = store.clone();
    let context = ConnectorContext {
        sink,
        known_asset: Arc::new(|_: &str| true),
        shutdown: CancellationToken::new(),
        registry: StatusRegistry::default(),
    };
    let running = {
        let _entered = runtime.enter();
        config.spawn(&context).unwrap()
    };
    std::thread::sleep(Duration::from_millis(200));
    let cpu_start = process_cpu_s();
    let started = Instant::now();
    std::fs::rename(&file, folder.join("meters-100k.csv")).unwrap();
    let done = folder.join("done").join("meters-100k.csv");
    while !done.exists() {
        assert!(
            !folder.join("failed").join("meters-100k.csv").exists(),
            "the file failed: {:?}",
            std::fs::read_to_string(folder.join("failed").join("meters-100k.csv.reason"))
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no result in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let seconds = started.elapsed().as_secs_f64();
    let readings = running.status.snapshot().durable;
    println!(
        "meter_file: {METERS} meters x 96 ({:.0} MB): {readings} readings durable in {seconds:.2} s \
         ({:.2} M readings/s, CPU {:.2} cores)",
        bytes as f64 / 1e6,
        readings as f64 / seconds / 1e6,
        (process_cpu_s() - cpu_start) / seconds
    );
    context.shutdown.cancel();
    let _ = runtime.block_on(running.task);
}
