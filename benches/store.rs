//! Benches of the readings store. Each part runs alone when named:
//! `cargo bench --bench store -- ingest|load_matrix|history`; with no name, all.
//!
//! - `ingest`: readings written through the `ReadingSink` with the write-ahead log
//!   on, in batches of 10,000, 32 batches in flight (as many connectors and HTTP
//!   clients would have), 30 million readings into a synthetic city of 10
//!   substations (3,000 transformers). The log's group commit runs every 10 ms with
//!   one `fdatasync` per group; buffer flushes to Parquet (every 256 MB) happen
//!   during the run and count. Printed: readings per second, sustained. Target at
//!   least 1,000,000 readings/s on 2 cores.
//! - `load_matrix`: one feeder's load matrix (100 distribution transformers, 80 of
//!   them metered, 7 days of 15-minute P and Q plus the head's P, Q and U) from a
//!   store of 40 such feeders whose readings are in Parquet day files: the engine
//!   asks the store for the feeder's readings and builds the matrix (allocation of
//!   the unmetered residual by power flow included). Measured twice with criterion:
//!   `query` reads the files each time (the operating system's cache warm), `cached`
//!   is served by the store's feeder cache. Target under 10 ms.
//! - `history`: a year of 15-minute readings of 10,000 transformers (350,400,000
//!   rows) written as the store's day files (generated once into
//!   `target/bench-history`, or `HEADROOM_BENCH_HISTORY`), then per asset the peak
//!   and 95th percentile (t-digest estimate in both engines) through the store's
//!   SQL, timed against DuckDB on the same files in the same run (median of 3 each;
//!   both on 2 threads). DuckDB runs from the Python in `HEADROOM_BENCH_PYTHON`
//!   (default `python3`), which needs `pip install duckdb`. Target: the store no
//!   slower than 1.5 x DuckDB.
//!
//! - `cluster`: the same year of readings, per-asset peak and p95 on a Ballista
//!   scheduler with two executors (processes of this build's `headroom`, one task
//!   at a time each, so the two cores) against local DataFusion (two partitions)
//!   in the same run, both through `headroom_history::query` (the path of
//!   `headroom sql` and `GET /v1/history`), alternating, median of 3 each; a
//!   one-day query on the cluster gives the fixed price of a job. Printed: both
//!   times and their ratio (target: the cluster within 1.5 x local), the
//!   cluster's CPU time per row (executors and scheduler), and from it the scaling model: executors a
//!   province's year (350.4 billion rows) needs for a 60 s answer.
//!
//! Run: `cargo bench --bench store` (release build; the history data take about
//! 3 GB of disk).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use headroom_engine::{Engine, EngineConfig};
use headroom_geodata::{FeederIx, LonLat, Network, NetworkBuilder, NodeType, Quantity};
use headroom_readings::{Quality, Reading, ReadingSink, WriteTicket};
use headroom_simulators::{SynthConfig, synthetic_grid};
use headroom_store::files::{DataLocation, Files, Manifest};
use headroom_store::record::readings_schema;
use headroom_store::{Store, StoreConfig, StoreReadings};
use rand::{Rng, SeedableRng};

#[path = "../src/allocator.rs"]
mod allocator;
#[path = "support.rs"]
mod support;

const DAY_MS: i64 = 86_400_000;
const STEP_MS: i64 = 900_000;

fn main() {
    allocator::keep_freed_memory();
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if wanted("ingest") {
        ingest();
    }
    if wanted("load_matrix") {
        load_matrix();
    }
    if wanted("history") {
        history();
    }
    if wanted("cluster") {
        cluster();
    }
}

/// A recent midnight: the store keeps 400 days.
fn midnight_days_ago(days: i64) -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(DAY_MS) - days * DAY_MS
}

fn ingest() {
    const BATCH: usize = 10_000;
    const IN_FLIGHT: usize = 32;
    const TOTAL: usize = 30_000_000;
    let grid = synthetic_grid(&SynthConfig::city(10, 1)).expect("synthetic city");
    let network = grid.network;
    let assets: Vec<Arc<str>> = network
        .transformers
        .iter()
        .map(|t| Arc::from(t.id.as_str()))
        .collect();
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = StoreConfig {
        wal_flush_interval_ms: 10,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), &network, config).expect("store opens");
    let source: Arc<str> = Arc::from("bench");
    let start_ms = midnight_days_ago(120);
    // Readings are made before the clock starts: the bench measures the store.
    let batches: Vec<Vec<Reading>> = (0..TOTAL / BATCH)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    let asset = &assets[n % assets.len()];
                    let step = (n / assets.len()) as i64;
                    Reading {
                        ts_ms: start_ms + step * STEP_MS,
                        asset: asset.clone(),
                        quantity: if n.is_multiple_of(2) {
                            Quantity::PKw
                        } else {
                            Quantity::QKvar
                        },
                        value: (n % 1000) as f64 * 0.5,
                        quality: Quality::Good,
                        source: source.clone(),
                    }
                })
                .collect()
        })
        .collect();
    let began = Instant::now();
    let mut in_flight: VecDeque<WriteTicket> = VecDeque::new();
    let mut accepted = 0;
    for batch in batches {
        if in_flight.len() == IN_FLIGHT {
            let ticket = in_flight.pop_front().expect("in flight");
            accepted += ticket.wait().expect("durable").accepted;
        }
        in_flight.push_back(store.write(batch));
    }
    for ticket in in_flight {
        accepted += ticket.wait().expect("durable").accepted;
    }
    let elapsed = began.elapsed();
    let counts = store.counts();
    eprintln!(
        "ingest: {accepted} readings in {elapsed:?}: {:.0} readings/s sustained \
         (group commit every 10 ms, fdatasync per group; {} flushes to Parquet during the run)",
        accepted as f64 / elapsed.as_secs_f64(),
        counts.flushes
    );
}

fn at(east_m: f64, north_m: f64) -> LonLat {
    LonLat::new(117.2 + east_m / 94_600.0, 31.8 + north_m / 111_000.0)
}

/// `feeders` feeders of 100 nodes (a trunk of 20 with a lateral of 4 at each),
/// a 400 kVA transformer at every node, on one substation.
fn feeders_of_100_transformers(feeders: usize) -> Network {
    let mut b = NetworkBuilder::new();
    b.substation("S", at(0.0, 0.0));
    b.node("B", NodeType::Busbar, at(0.0, 0.0))
        .with_node(|n| n.spare_bays = 1);
    b.substation_transformer("TR1", "S", "B", 63_000.0);
    b.substation_transformer("TR2", "S", "B", 63_000.0);
    for f in 0..feeders {
        let north = f as f64 * 500.0;
        let mut previous = "B".to_owned();
        let mut first = None;
        for trunk in 0..20 {
            let id = format!("F{f:02}-N{trunk:02}");
            b.node(&id, NodeType::RingMainUnit, at(trunk as f64 * 150.0, north));
            b.segment(
                &format!("F{f:02}-L{trunk:02}"),
                &previous,
                &id,
                0.16,
                0.08,
                420.0,
                150.0,
            );
            b.transformer(&format!("F{f:02}-T{trunk:02}-0"), &id, 400.0);
            let mut lateral_previous = id.clone();
            for k in 1..5 {
                let lateral = format!("{id}-{k}");
                b.node(
                    &lateral,
                    NodeType::Pole,
                    at(trunk as f64 * 150.0, north + k as f64 * 60.0),
                );
                b.segment(
                    &format!("{lateral}-L"),
                    &lateral_previous,
                    &lateral,
                    0.4,
                    0.09,
                    200.0,
                    60.0,
                );
                b.transformer(&format!("F{f:02}-T{trunk:02}-{k}"), &lateral, 400.0);
                lateral_previous = lateral;
            }
            first.get_or_insert_with(|| id.clone());
            previous = id;
        }
        b.feeder(
            &format!("F{f:02}"),
            "B",
            first.as_deref().expect("a trunk"),
            Some(400.0),
        );
    }
    b.build().expect("bench grid")
}

fn load_matrix() {
    const FEEDERS: usize = 40;
    let network = feeders_of_100_transformers(FEEDERS);
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = Store::open(dir.path(), &network, StoreConfig::default()).expect("store opens");
    let start = midnight_days_ago(10);
    let source: Arc<str> = Arc::from("bench");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut tickets = Vec::new();
    for f in 0..FEEDERS {
        let mut batch = Vec::new();
        let mut push = |asset: &str, quantity, ts_ms, value| {
            batch.push(Reading {
                ts_ms,
                asset: asset.into(),
                quantity,
                value,
                quality: Quality::Good,
                source: source.clone(),
            });
        };
        for step in 0..7 * 96 {
            let ts = start + step * STEP_MS;
            let shape = 0.6 + 0.3 * ((step % 96) as f64 / 96.0 * std::f64::consts::TAU).sin();
            let mut metered = 0.0;
            for trunk in 0..20 {
                for k in 0..5 {
                    let kw = 200.0 * shape * rng.random_range(0.7..1.3);
                    // One in five is not metered: its share comes from the head.
                    if (trunk * 5 + k) % 5 != 4 {
                        let id = format!("F{f:02}-T{trunk:02}-{k}");
                        push(&id, Quantity::PKw, ts, kw);
                        push(&id, Quantity::QKvar, ts, kw * 0.3);
                    }
                    metered += kw;
                }
            }
            let head = format!("F{f:02}");
            push(&head, Quantity::PKw, ts, metered * 1.03);
            push(&head, Quantity::QKvar, ts, metered * 0.33);
            push(&head, Quantity::UKv, ts, 10.4);
        }
        tickets.push(store.write(batch));
    }
    for ticket in tickets {
        ticket.wait().expect("durable");
    }
    store.flush().expect("flushed to Parquet");
    let store = Arc::new(store);
    let readings = StoreReadings::recent(store.clone(), 14).expect("window");
    let engine = Engine::new(
        network.clone(),
        Arc::new(readings),
        EngineConfig::default(),
        Vec::new(),
    );
    let feeder = FeederIx::from_usize(FEEDERS / 2);
    let matrix = engine.load_matrix(feeder);
    assert_eq!(matrix.transformers.len(), 100);
    assert_eq!(matrix.step_count(), 7 * 96);
    eprintln!(
        "load_matrix: {} transformers x {} steps, metered share {:.2}",
        matrix.transformers.len(),
        matrix.step_count(),
        matrix.metered_share
    );
    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    criterion.bench_function("load_matrix/query", |b| {
        b.iter(|| {
            store.clear_caches();
            engine.load_matrix(feeder)
        })
    });
    criterion.bench_function("load_matrix/cached", |b| {
        b.iter(|| engine.load_matrix(feeder))
    });
    criterion.final_summary();
}

/// Transformers and days of the history bench.
const HISTORY_ASSETS: usize = 10_000;
const HISTORY_DAYS: i64 = 365;

fn history_dir() -> PathBuf {
    std::env::var_os("HEADROOM_BENCH_HISTORY").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-history"),
        PathBuf::from,
    )
}

/// Writes the year as the store's day files, unless a complete set is there.
fn generate_history(dir: &Path, first_day_ms: i64) -> Manifest {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let files = Files::open(&DataLocation::Local(dir.to_path_buf())).expect("history folder");
    let existing = runtime.block_on(files.manifest()).expect("manifest");
    let first_name = headroom_store::files::day_name(first_day_ms / DAY_MS);
    if existing.readings.len() == HISTORY_DAYS as usize
        && existing.readings.contains_key(&first_name)
    {
        return existing;
    }
    let began = Instant::now();
    let schema = readings_schema();
    let ids: Vec<String> = (0..HISTORY_ASSETS).map(|i| format!("T{i:05}")).collect();
    // Each transformer's size and its day's shape, fixed by its number.
    let scale: Vec<f64> = (0..HISTORY_ASSETS)
        .map(|i| 50.0 + (i * 7_919 % 600) as f64)
        .collect();
    let days: Vec<(String, String)> = (0..HISTORY_DAYS)
        .map(|d| {
            let day = first_day_ms / DAY_MS + d;
            (
                headroom_store::files::day_name(day),
                format!("part-{d}.parquet"),
            )
        })
        .collect();
    let written = std::sync::atomic::AtomicUsize::new(0);
    let write_day = |d: usize| {
        let day_start = first_day_ms + d as i64 * DAY_MS;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(d as u64);
        let rows = HISTORY_ASSETS * 96;
        let mut ts = Vec::with_capacity(rows);
        let mut asset = Vec::with_capacity(rows);
        let mut value = Vec::with_capacity(rows);
        for (i, id) in ids.iter().enumerate() {
            for q in 0..96 {
                ts.push(day_start + q as i64 * STEP_MS);
                asset.push(id.as_str());
                let shape = 0.55 + 0.35 * (q as f64 / 96.0 * std::f64::consts::TAU).sin();
                value.push(scale[i] * shape * rng.random_range(0.8..1.2));
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
                Arc::new(StringArray::from(asset)),
                Arc::new(StringArray::from(vec!["p_kw"; rows])),
                Arc::new(Float64Array::from(value)),
                Arc::new(StringArray::from(vec!["good"; rows])),
                Arc::new(StringArray::from(vec!["bench"; rows])),
            ],
        )
        .expect("readings batch");
        let (name, file) = &days[d];
        runtime
            .block_on(files.write_parquet(&format!("readings/date={name}/{file}"), &[batch]))
            .expect("day file written");
        let done = written.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if done.is_multiple_of(73) {
            eprintln!("history: {done} of {HISTORY_DAYS} days written");
        }
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let d = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if d >= days.len() {
                        break;
                    }
                    write_day(d);
                }
            });
        }
    });
    let manifest = Manifest {
        next_file: HISTORY_DAYS as u64,
        wal_flushed_through: 0,
        readings: days
            .iter()
            .map(|(name, file)| (name.clone(), format!("readings/date={name}/{file}")))
            .collect(),
        rejected: Vec::new(),
        superseded: Vec::new(),
        flushed_ms: chrono::Utc::now().timestamp_millis(),
    };
    runtime
        .block_on(files.save_manifest(&manifest))
        .expect("manifest");
    eprintln!(
        "history: {} rows in {HISTORY_DAYS} day files written in {:?}",
        HISTORY_ASSETS as i64 * 96 * HISTORY_DAYS,
        began.elapsed()
    );
    manifest
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn history() {
    let dir = history_dir();
    std::fs::create_dir_all(&dir).expect("history folder");
    let first_day = midnight_days_ago(HISTORY_DAYS + 1);
    generate_history(&dir, first_day);
    let bytes: u64 = walk(&dir.join("readings"))
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    eprintln!(
        "history: {:.2} GB of Parquet in {}",
        bytes as f64 / 1e9,
        dir.display()
    );

    // The network only names the assets; the query reads every file listed.
    let network = feeders_of_100_transformers(1);
    let store = Store::open(&dir, &network, StoreConfig::default()).expect("store opens");
    let query = "SELECT asset, max(value) AS peak, \
                 approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS p95 \
                 FROM readings GROUP BY asset";
    let mut store_seconds = Vec::new();
    let mut groups = 0;
    for _ in 0..3 {
        let began = Instant::now();
        let batches = store.sql(query).expect("history query");
        store_seconds.push(began.elapsed().as_secs_f64());
        groups = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    }
    assert_eq!(groups, HISTORY_ASSETS);
    store.close().expect("closed");

    let python = std::env::var("HEADROOM_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/history_duckdb.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(dir.join("readings"))
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{python} {}: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the DuckDB script prints JSON");
    let duckdb_seconds = reply["seconds"].as_f64().expect("seconds");
    assert_eq!(reply["groups"].as_u64(), Some(HISTORY_ASSETS as u64));
    let store_median = median(store_seconds.clone());
    eprintln!(
        "history: per-asset peak and p95 over {} rows: store {store_median:.2} s \
         (runs {store_seconds:.2?}), DuckDB {} {duckdb_seconds:.2} s (runs {}): ratio {:.2}",
        HISTORY_ASSETS as i64 * 96 * HISTORY_DAYS,
        reply["version"],
        reply["runs"],
        store_median / duckdb_seconds
    );
}

/// A cluster role as a child process of this build's binary, killed on drop.
struct Role(std::process::Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start_role(args: &[&str], port: u16, log: &Path) -> Role {
    let log = std::fs::File::create(log).expect("role log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("headroom starts");
    let role = Role(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{args:?}: nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    role
}

fn cluster() {
    let dir = history_dir();
    std::fs::create_dir_all(&dir).expect("history folder");
    generate_history(&dir, midnight_days_ago(HISTORY_DAYS + 1));
    // The store writes `assets.parquet`, which the history's `assets` is over.
    Store::open(
        &dir,
        &feeders_of_100_transformers(1),
        StoreConfig::default(),
    )
    .and_then(|store| store.close())
    .expect("store opens");
    let rows = HISTORY_ASSETS as f64 * 96.0 * HISTORY_DAYS as f64;
    let location = DataLocation::Local(dir.clone());
    let data_dir = dir.display().to_string();
    let scratch = tempfile::tempdir().expect("scratch");

    let scheduler_port = free_port();
    let url = format!("df://127.0.0.1:{scheduler_port}");
    let scheduler = start_role(
        &[
            "cluster",
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{scheduler_port}"),
            "--data-dir",
            &data_dir,
        ],
        scheduler_port,
        &scratch.path().join("scheduler.log"),
    );
    let executors: Vec<Role> = (0..2)
        .map(|i| {
            let port = free_port();
            let work = scratch.path().join(format!("work-{i}"));
            start_role(
                &[
                    "cluster",
                    "executor",
                    "--scheduler",
                    &url,
                    "--bind",
                    &format!("127.0.0.1:{port}"),
                    "--grpc-port",
                    &free_port().to_string(),
                    "--concurrency",
                    "1",
                    "--memory-mb",
                    "2048",
                    "--work-dir",
                    work.to_str().expect("utf-8 path"),
                    "--data-dir",
                    &data_dir,
                ],
                port,
                &scratch.path().join(format!("executor-{i}.log")),
            )
        })
        .collect();
    // The scheduler's share counts: it is part of the price of distribution.
    let cluster_cpu_s = || -> f64 {
        executors
            .iter()
            .chain([&scheduler])
            .map(|role| support::cpu_s_of(&role.0.id().to_string()))
            .sum()
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let limits = headroom_history::Limits {
        max_rows: HISTORY_ASSETS + 1,
        timeout: Duration::from_secs(1_800),
    };
    let run = |on: Option<&str>, sql: &str| {
        let began = Instant::now();
        let answer = runtime
            .block_on(headroom_history::query(&location, on, sql, limits))
            .unwrap_or_else(|e| panic!("{sql} on {on:?}: {e}"));
        (began.elapsed().as_secs_f64(), answer.batches)
    };
    // A day's rows per asset: the job's fixed price (planning, scheduling,
    // shuffles) over little data. The first job also waits for the executors
    // to register.
    let one_day = format!(
        "SELECT asset, max(value) AS peak FROM readings \
         WHERE ts >= to_timestamp_millis({from}) AND ts < to_timestamp_millis({to}) GROUP BY asset",
        from = midnight_days_ago(10),
        to = midnight_days_ago(9)
    );
    run(Some(&url), &one_day);
    let one_day_s: Vec<f64> = (0..3).map(|_| run(Some(&url), &one_day).0).collect();

    let query = "SELECT asset, max(value) AS peak, \
                 approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS p95 \
                 FROM readings GROUP BY asset ORDER BY asset";
    let (mut local_s, mut cluster_s, mut local_cpu, mut cluster_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut answers = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let cpu = support::process_cpu_s();
        let (seconds, batches) = run(None, query);
        local_cpu.push(support::process_cpu_s() - cpu);
        local_s.push(seconds);
        answers.0 = batches;
        let cpu = cluster_cpu_s();
        let (seconds, batches) = run(Some(&url), query);
        cluster_cpu.push(cluster_cpu_s() - cpu);
        cluster_s.push(seconds);
        answers.1 = batches;
    }
    // Peaks are exact in both; the p95 is a t-digest estimate whose merge
    // order differs between the two plans.
    let per_asset = |batches: &[RecordBatch]| -> Vec<(String, f64, f64)> {
        batches
            .iter()
            .flat_map(|b| {
                let column = |i: usize| b.column(i).as_any();
                let asset = column(0).downcast_ref::<StringArray>().expect("asset");
                let peak = column(1).downcast_ref::<Float64Array>().expect("peak");
                let p95 = column(2).downcast_ref::<Float64Array>().expect("p95");
                (0..b.num_rows())
                    .map(|r| (asset.value(r).to_owned(), peak.value(r), p95.value(r)))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (local, distributed) = (per_asset(&answers.0), per_asset(&answers.1));
    assert_eq!(local.len(), HISTORY_ASSETS);
    assert_eq!(distributed.len(), HISTORY_ASSETS);
    let mut p95_gap: f64 = 0.0;
    for (l, d) in local.iter().zip(&distributed) {
        assert_eq!((&l.0, l.1), (&d.0, d.1), "the peaks differ");
        p95_gap = p95_gap.max(((l.2 - d.2) / l.2).abs());
    }

    let (local_median, cluster_median) = (median(local_s.clone()), median(cluster_s.clone()));
    let job_s = median(one_day_s.clone());
    let ns_per_row = median(cluster_cpu.clone()) / rows * 1e9;
    eprintln!(
        "cluster: per-asset peak and p95 over {rows:.0} rows: local DataFusion \
         {local_median:.2} s (runs {local_s:.2?}, CPU {local_cpu:.1?} s), cluster of 2 executors \
         {cluster_median:.2} s (runs {cluster_s:.2?}, the roles' CPU {cluster_cpu:.1?} s): \
         ratio {:.2}; peaks equal, p95 estimates within {:.3} %; a one-day job on the cluster \
         {job_s:.2} s (runs {one_day_s:.2?})",
        cluster_median / local_median,
        p95_gap * 100.0,
    );
    // The model: a province's year (10 M meters x 96 x 365) at the measured
    // executor CPU per row, on executors of two cores like this machine's.
    let province_rows = 10.0e6 * 96.0 * 365.0;
    let budget_s = 60.0 - job_s;
    let cores = province_rows * ns_per_row / 1e9 / budget_s;
    let bytes: u64 = walk(&dir.join("readings"))
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let bytes_per_row = bytes as f64 / rows;
    eprintln!(
        "cluster: model: {ns_per_row:.1} ns of the cluster's CPU and {bytes_per_row:.2} bytes of \
         Parquet per row; {province_rows:.3e} rows in 60 s ({budget_s:.1} s after the job's \
         fixed price) need {cores:.0} cores ({:.0} two-core executors) reading {:.1} GB/s \
         from object storage in all",
        (cores / 2.0).ceil(),
        province_rows * bytes_per_row / budget_s / 1e9,
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
