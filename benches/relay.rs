//! Readings across the isolation device, sustained: what one collector, the
//! device and the service's inbox carry into the store per second.
//!
//! In one process, as the three would run on three machines, but sharing this
//! machine's cores: a producer writes readings into a collector
//! (`headroom-relay`: its write-ahead log, 10,000-reading files, signed); the
//! device simulator moves each file from the outbox to the inbox; the
//! `relay_inbox` connector verifies, parses and writes them to the store (its
//! write-ahead log on, default settings) on a synthetic city of 10 substations.
//! Timed from the first reading written to the moment the store has made the
//! last one durable. Printed per algorithm: readings/s end to end and the
//! process's CPU (user + system) per second. Target: at least 200,000
//! readings/s with Ed25519 on 2 cores; SM2 reported.
//!
//! Run: `cargo bench --bench relay` (release build); `HEADROOM_BENCH_READINGS`
//! sets how many (default 3,000,000); a name (`ed25519` or `sm2`) runs one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use headroom_connectors::relay_inbox::{RelayInboxConfig, RelayStream};
use headroom_connectors::{ConnectorConfig, ConnectorContext, StatusRegistry};
use headroom_readings::{Quality, Quantity, Reading, ReadingSink};
use headroom_relay::collector::{Collector, CollectorSettings};
use headroom_relay::{Algorithm, SigningKey};
use headroom_simulators::isolation_device::{Faults, IsolationDevice};
use headroom_simulators::{SynthConfig, synthetic_grid};
use headroom_store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;

#[path = "support.rs"]
mod support;
use support::process_cpu_s;

#[path = "../src/allocator.rs"]
mod allocator;

/// Readings per producer write, as a busy connector hands them over.
const WRITE: usize = 5_000;
/// Writes awaiting their acknowledgement at once.
const IN_FLIGHT: usize = 16;

fn main() {
    allocator::keep_freed_memory();
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let total: usize = std::env::var("HEADROOM_BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000_000);
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let grid = synthetic_grid(&SynthConfig::city(10, 1)).expect("synthetic city");
    let assets: Vec<Arc<str>> = grid
        .network
        .transformers
        .iter()
        .map(|t| Arc::from(t.id.to_string()))
        .collect();
    for algorithm in [Algorithm::Ed25519, Algorithm::Sm2] {
        if only.as_deref().is_none_or(|o| o == algorithm.as_str()) {
            run(algorithm, &grid.network, &assets, total);
        }
    }
}

fn run(
    algorithm: Algorithm,
    network: &headroom_geodata::Network,
    assets: &[Arc<str>],
    total: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    for folder in ["outbox", "inbox"] {
        std::fs::create_dir_all(path(folder)).unwrap();
    }
    let key = SigningKey::from_seed(algorithm, [7; 32]).unwrap();
    std::fs::write(path("collector.pub"), key.verifying_key().to_pem().unwrap()).unwrap();

    let store = Arc::new(Store::open(&path("store"), network, StoreConfig::default()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let inbox = ConnectorConfig::RelayInbox(RelayInboxConfig {
        name: "from-production".into(),
        folder: path("inbox"),
        streams: [(
            "scada".to_owned(),
            RelayStream {
                keys: vec![path("collector.pub")],
                first_sequence: 1,
            },
        )]
        .into(),
        scan_interval_ms: 20,
    });
    let sink: Arc<dyn ReadingSink> = store.clone();
    let context = ConnectorContext {
        sink,
        known_asset: Arc::new(|_: &str| true),
        shutdown: CancellationToken::new(),
        registry: StatusRegistry::default(),
    };
    let running = {
        let _entered = runtime.enter();
        inbox.spawn(&context).unwrap()
    };
    let settings = CollectorSettings::new("scada", path("unused.key"), path("collector-state"));
    let collector = Collector::start(settings, key, &path("outbox")).unwrap();
    let device_running = Arc::new(AtomicBool::new(true));
    let device = {
        let (from, to, running) = (path("outbox"), path("inbox"), device_running.clone());
        std::thread::spawn(move || {
            let mut device = IsolationDevice::new(&from, &to, Faults::NONE, 1);
            while running.load(Ordering::Relaxed) {
                device.step(false).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let accepted_before = store.counts().accepted;
    let cpu_start = process_cpu_s();
    let started = Instant::now();
    let sink = collector.sink();
    let source: Arc<str> = Arc::from("bench");
    let start_ms = 1_780_000_000_000i64;
    let mut tickets = std::collections::VecDeque::new();
    for write in 0..total.div_ceil(WRITE) {
        let readings: Vec<Reading> = (write * WRITE..((write + 1) * WRITE).min(total))
            .map(|i| Reading {
                // Distinct keys: one asset after another, a second apart.
                ts_ms: start_ms + (i / assets.len()) as i64 * 1000,
                asset: assets[i % assets.len()].clone(),
                quantity: Quantity::PKw,
                value: (i % 997) as f64 * 0.5,
                quality: Quality::Good,
                source: source.clone(),
            })
            .collect();
        tickets.push_back(sink.write(readings));
        if tickets.len() == IN_FLIGHT {
            tickets.pop_front().unwrap().wait().unwrap();
        }
    }
    for ticket in tickets {
        ticket.wait().unwrap();
    }
    let collected = started.elapsed();
    wait_until(
        &store,
        accepted_before + total as u64,
        Duration::from_secs(600),
    );
    let elapsed = started.elapsed();
    let cpu = process_cpu_s() - cpu_start;
    device_running.store(false, Ordering::Relaxed);
    device.join().unwrap();
    collector.stop().unwrap();
    let files = headroom_relay::collector::read_status(&path("collector-state"))
        .map_or(0, |s| s.next_sequence - 1);
    println!(
        "relay/{algorithm}: {total} readings in {files} files end to end in {:.2} s: {:.0} readings/s (the collector acknowledged all in {:.2} s); CPU {:.2} cores; {} inbox errors",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        collected.as_secs_f64(),
        cpu / elapsed.as_secs_f64(),
        running.status.snapshot().errors.values().sum::<u64>(),
    );
    context.shutdown.cancel();
    runtime.block_on(running.task).unwrap();
    drop(runtime);
    remove(dir.path());
}

fn wait_until(store: &Store, accepted: u64, limit: Duration) {
    let began = Instant::now();
    while store.counts().accepted < accepted {
        assert!(began.elapsed() < limit, "the store never took them all");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
