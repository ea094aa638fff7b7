//! Benches of the decision engine:
//!
//! - `rank/fixture_one_application`: one application on the public fixture
//!   `1-MV-semiurb` (12 applications, ~100 candidates each), the full result with
//!   headroom for every candidate, on a warm engine (load model and base power
//!   flows built once, as the service keeps them). Target p50 < 5 ms; the ratio to
//!   pandapower's `timing.per_application_s_median` in `expected.json` is printed.
//! - `rank/fixture_one_application_n1_enforced`: the same applications with
//!   `"n1": true` (the N-1 checks decide); target p50 < 10 ms. Every load
//!   ranking reports N-1 (the default `report` mode), so the bench above
//!   includes its cost too.
//! - `rank/fixture_one_generation_application`: the same for generation (PV
//!   of 1 MW at each application's place, the default PV profile, every
//!   exporting step judged); target p50 < 5 ms.
//! - `capacity/fixture_feeders`: `capacity --level feeder` on the fixture, with
//!   the open capacity for generation.
//! - With `HEADROOM_BENCH_CITY` naming a gridpack of the default synthetic city
//!   (`headroom synth DIR`: 200 substations, 3,000 feeders, 7 days of readings):
//!   one application at random points of the city, timed one by one, cold (feeders
//!   built on first use) and warm (the same applications again); target p50 < 20 ms,
//!   p99 < 50 ms warm; then the same places as PV generators, warm (target p50 <
//!   20 ms); then with N-1 enforced, warm (target p50 < 40 ms). And
//!   `capacity --level feeder` for the whole city, once, with the open capacity
//!   for generation and the N-1 figures (targets < 6 s and, with N-1, < 10 s
//!   on 2 cores). Loading the city's
//!   73 million readings takes a minute first. Each city pass prints its p50,
//!   its p99 and the process's CPU time per application: on a shared machine
//!   neither time is steady, so two builds are compared in alternating runs.
//!
//! Run: `cargo bench --bench engine`; with `HEADROOM_BENCH_CITY_ONLY=1` as well,
//! only the city runs (`HEADROOM_BENCH_CITY_PART=rank|generation|n1|capacity` one
//! part of it, `generation` the generation passes alone and `n1` the N-1
//! enforced ones, warm
//! `HEADROOM_BENCH_CITY_WARM_PASSES` times; `HEADROOM_BENCH_CITY_CACHE_MB=N` sets
//! the feeder caches' budget; `HEADROOM_BENCH_CITY_CAPACITY_PASSES=N`
//! the capacity sweep N times, to profile past the load; `HEADROOM_BENCH_CITY_N1=off`
//! without the N-1 checks). `HEADROOM_BENCH_CITY_CHECK=1` then compares every
//! capacity row's weakest node with every node of its feeder judged, and the
//! row with the one a full base (every step solved exactly) gives, a few
//! hundred feeders at a time, and audits every candidate's headroom (and N-1
//! headroom) of the generation and N-1 passes at every step (minutes; not
//! timed); `HEADROOM_BENCH_CITY_APPS=C0,C3` keeps those applications alone.
//! `HEADROOM_BENCH_CITY_ANSWERS=DIR`
//! writes every ranking to `DIR/ID.json` and the capacity rows to
//! `DIR/capacity.json`, to compare answers before and after a change.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use headroom_engine::{Application, Engine, EngineConfig, InMemoryReadings, Level};
use headroom_geodata::Gridpack;

#[path = "support.rs"]
mod support;
use support::{process_cpu_s, process_resident_bytes};

#[path = "../src/allocator.rs"]
mod allocator;

fn fixture_engine(config: EngineConfig) -> (Engine, Vec<Application>, f64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/1-MV-semiurb");
    let gridpack = Gridpack::read(&dir).expect("fixture");
    let readings = Arc::new(InMemoryReadings::from_rows(&gridpack.readings));
    let apps: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("applications.json")).unwrap()).unwrap();
    let apps = Application::list_from_json(&apps).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let pandapower_s = expected["timing"]["per_application_s_median"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let start = Instant::now();
    let engine = Engine::new(gridpack.network, readings, config, Vec::new());
    // Warm: every feeder's load model and base power flows built, as in service.
    for f in 0..engine.network.feeders.len() {
        engine.feeder(f);
    }
    eprintln!("fixture engine built in {:?}", start.elapsed());
    (engine, apps, pandapower_s)
}

fn benches(c: &mut Criterion) {
    allocator::keep_freed_memory();
    if std::env::var_os("HEADROOM_BENCH_CITY_ONLY").is_some() {
        city();
        return;
    }
    let (engine, apps, pandapower_s) = fixture_engine(EngineConfig::default());
    // Per-application timings one by one, for p50 and the ratio to pandapower.
    let timings = one_by_one(&engine, &apps, 20);
    let p50 = timings[timings.len() / 2];
    eprintln!(
        "fixture, one application: p50 {:?}, p99 {:?}; pandapower median {:.1} s per application: {:.0}x faster",
        p50,
        timings[timings.len() * 99 / 100],
        pandapower_s,
        pandapower_s / p50.as_secs_f64()
    );
    let generators = as_generators(&apps);
    let timings = one_by_one(&engine, &generators, 20);
    report_fixture("one generation application", &timings);
    // What the N-1 report costs every load ranking: the same without it.
    let (without_n1, ..) = fixture_engine(EngineConfig {
        n1: headroom_engine::N1Config {
            mode: headroom_engine::N1Mode::Off,
            ..Default::default()
        },
        ..EngineConfig::default()
    });
    let timings = one_by_one(&without_n1, &apps, 20);
    report_fixture("one application, N-1 off", &timings);
    drop(without_n1);
    let n1_apps = with_n1(&apps);
    let timings = one_by_one(&engine, &n1_apps, 20);
    report_fixture("one application with N-1 enforced", &timings);
    let mut group = c.benchmark_group("rank");
    let mut i = 0;
    group.bench_function("fixture_one_application", |b| {
        b.iter(|| {
            i = (i + 1) % apps.len();
            black_box(engine.rank(&apps[i]))
        })
    });
    group.bench_function("fixture_one_application_n1_enforced", |b| {
        b.iter(|| {
            i = (i + 1) % n1_apps.len();
            black_box(engine.rank(&n1_apps[i]))
        })
    });
    group.bench_function("fixture_one_generation_application", |b| {
        b.iter(|| {
            i = (i + 1) % generators.len();
            black_box(engine.rank(&generators[i]))
        })
    });
    group.finish();
    let mut group = c.benchmark_group("capacity");
    group.bench_function("fixture_feeders", |b| {
        b.iter(|| black_box(engine.capacity(Level::Feeder, engine.readings(), 0)))
    });
    group.finish();
    city();
}

/// Each application ranked alone, `rounds` times over: the times, sorted.
fn one_by_one(engine: &Engine, apps: &[Application], rounds: usize) -> Vec<Duration> {
    let mut timings: Vec<Duration> = Vec::new();
    for _ in 0..rounds {
        for app in apps {
            let start = Instant::now();
            black_box(engine.rank(app));
            timings.push(start.elapsed());
        }
    }
    timings.sort();
    timings
}

/// Prints a fixture run's p50 and p99 (`timings` sorted) under `what`.
fn report_fixture(what: &str, timings: &[Duration]) {
    eprintln!(
        "fixture, {what}: p50 {:?}, p99 {:?}",
        timings[timings.len() / 2],
        timings[timings.len() * 99 / 100],
    );
}

/// The same applications asking for N-1 to be enforced (`"n1": true`).
fn with_n1(apps: &[Application]) -> Vec<Application> {
    apps.iter()
        .map(|a| Application {
            n1: true,
            ..a.clone()
        })
        .collect()
}

/// The applications' places as PV generators of 1 MW (default PV profile,
/// unity power factor) at their voltage.
fn as_generators(apps: &[Application]) -> Vec<Application> {
    apps.iter()
        .map(|a| {
            let mut v = serde_json::json!({
                "id": format!("{}-PV", a.id),
                "kind": "generation",
                "lon": a.lon,
                "lat": a.lat,
                "demand_kw": 1_000.0,
            });
            if let Some(kv) = a.voltage_kv {
                v["voltage_kv"] = kv.into();
            }
            Application::from_json(&v).expect("valid")
        })
        .collect()
}

/// The default synthetic city, outside criterion: its runs take seconds.
fn city() {
    let Ok(dir) = std::env::var("HEADROOM_BENCH_CITY") else {
        eprintln!("HEADROOM_BENCH_CITY unset: city benches skipped");
        return;
    };
    let start = Instant::now();
    let gridpack = Gridpack::read(Path::new(&dir)).expect("city gridpack");
    let readings = Arc::new(InMemoryReadings::from_rows(&gridpack.readings));
    let rows = gridpack.readings.len();
    drop(gridpack.readings);
    // `HEADROOM_BENCH_CITY_N1=off` leaves the N-1 checks out (`n1.mode =
    // "off"`): the capacity sweep with the generation figures alone.
    let mut config = EngineConfig::default();
    if std::env::var("HEADROOM_BENCH_CITY_N1").is_ok_and(|v| v == "off") {
        config.n1.mode = headroom_engine::N1Mode::Off;
    }
    // `HEADROOM_BENCH_CITY_CACHE_MB=N`: the feeder caches' budget (each of
    // the bases' and the N-1 cases'), to see what eviction costs a pass.
    if let Some(mb) = std::env::var("HEADROOM_BENCH_CITY_CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.feeder_cache_bytes = mb << 20;
    }
    let engine = Engine::new(gridpack.network, readings, config, Vec::new());
    eprintln!(
        "city: {rows} readings loaded and engine prepared in {:?}",
        start.elapsed()
    );
    let (min_lon, max_lon, min_lat, max_lat) = engine.network.substations.iter().fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), s| {
            (
                a.min(s.position.lon),
                b.max(s.position.lon),
                c.min(s.position.lat),
                d.max(s.position.lat),
            )
        },
    );
    let mut seed = 7u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1_000_000) as f64 / 1e6
    };
    let apps: Vec<Application> = (0..30)
        .map(|i| {
            let v = serde_json::json!({
                "id": format!("C{i}"),
                "lon": min_lon + (max_lon - min_lon) * next(),
                "lat": min_lat + (max_lat - min_lat) * next(),
                "demand_kw": 200.0 + 3_000.0 * next(),
                "power_factor": 0.93,
                "voltage_kv": 10,
            });
            Application::from_json(&v).expect("valid")
        })
        .collect();
    // `HEADROOM_BENCH_CITY_APPS=C0,C3` keeps those applications alone (to
    // check a few answers again).
    let apps: Vec<Application> = match std::env::var("HEADROOM_BENCH_CITY_APPS") {
        Ok(ids) => apps
            .into_iter()
            .filter(|a| ids.split(',').any(|i| i == a.id))
            .collect(),
        Err(_) => apps,
    };
    // `HEADROOM_BENCH_CITY_PART=rank|generation|n1|capacity` runs one part; with
    // `HEADROOM_BENCH_CITY_WARM_PASSES=N` the warm pass repeats (for profiling).
    let part = std::env::var("HEADROOM_BENCH_CITY_PART").unwrap_or_default();
    let warm_passes: usize = std::env::var("HEADROOM_BENCH_CITY_WARM_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let passes = std::iter::once("cold").chain(std::iter::repeat_n("warm", warm_passes));
    let loads = !matches!(part.as_str(), "capacity" | "generation" | "n1");
    for pass in passes.filter(|_| loads) {
        let (times, candidates) = city_pass(&engine, &apps);
        report_cache(&engine, pass);
        report_pass(&format!("one application ({pass}"), &times, candidates);
    }
    // N-1 enforced: the first pass builds the restoration cases of the
    // feeders it meets (the load passes above built them too, in report mode).
    // Generation bases are the load bases where nothing is queued: the first
    // pass builds only those of feeders with queued generators.
    let variants = [
        ("one application with N-1 enforced", with_n1(&apps), false),
        ("one generation application", as_generators(&apps), true),
    ];
    let variants = variants
        .iter()
        .filter(|(_, _, generation)| match part.as_str() {
            "capacity" => false,
            "generation" => *generation,
            "n1" => !*generation,
            _ => true,
        });
    for (what, variant, generation) in variants {
        let (later, after) = if part == "generation" || part == "n1" {
            (warm_passes, "")
        } else {
            (1, " after the loads'")
        };
        let passes = std::iter::once("first").chain(std::iter::repeat_n("warm", later));
        for pass in passes {
            let (times, candidates) = city_pass(&engine, variant);
            report_cache(&engine, pass);
            report_pass(&format!("{what} ({pass} pass{after}"), &times, candidates);
        }
        if std::env::var("HEADROOM_BENCH_CITY_CHECK").is_ok() {
            check_at_every_step(&engine, variant, *generation);
        }
    }
    if matches!(part.as_str(), "rank" | "generation" | "n1") {
        return;
    }
    // `HEADROOM_BENCH_CITY_CAPACITY_PASSES=N` repeats the sweep (for profiling
    // past the load); each pass is timed alone.
    let capacity_passes: usize = std::env::var("HEADROOM_BENCH_CITY_CAPACITY_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut rows = Vec::new();
    for _ in 0..capacity_passes.max(1) {
        let start = Instant::now();
        let cpu_start = process_cpu_s();
        rows = black_box(engine.capacity(Level::Feeder, engine.readings(), 0));
        eprintln!(
            "city: capacity --level feeder, {} feeders in {:?} ({:.1} s CPU)",
            rows.len(),
            start.elapsed(),
            process_cpu_s() - cpu_start
        );
    }
    // With `HEADROOM_BENCH_CITY_ANSWERS=DIR`, the rows go to
    // `DIR/capacity.json`, to compare before and after a change.
    if let Some(dir) = std::env::var_os("HEADROOM_BENCH_CITY_ANSWERS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("answers directory");
        let json = serde_json::to_vec_pretty(&rows).expect("rows serialise");
        std::fs::write(dir.join("capacity.json"), json).expect("capacity answers written");
    }
    if std::env::var("HEADROOM_BENCH_CITY_CHECK").is_ok() {
        check_weakest_nodes(&engine, &rows);
        check_capacity_against_full_bases(&engine, &rows);
    }
}

/// Compares each capacity row's weakest node with the least headroom found by
/// judging every node of its feeder, as the capacity sweep's order by room
/// and its stop spare it.
fn check_weakest_nodes(engine: &Engine, rows: &[headroom_engine::CapacityRow]) {
    let load = headroom_engine::evaluate::AddedLoad::flat(engine.config.capacity_power_factor);
    let (mut compared, mut differing) = (0, 0);
    for (f, row) in rows.iter().enumerate() {
        let base = engine.feeder(f);
        let every_node = (1..base.electrical.len() as u32)
            .map(|local| engine.headroom_at(&base, local, &load).0)
            .fold(f64::INFINITY, f64::min);
        compared += 1;
        if row
            .worst_node_headroom_kw
            .is_some_and(|kw| kw != every_node)
        {
            differing += 1;
            eprintln!(
                "weakest node differs: {} {:?} at {:?}, every node {every_node}",
                row.id, row.worst_node_headroom_kw, row.worst_node
            );
        }
    }
    eprintln!(
        "city check: {compared} weakest nodes compared with every node's, {differing} differ"
    );
}

/// What the feeder caches weigh after a pass, beside what the process holds
/// (the readings, the network and the caches as they really are): the budget
/// bounds memory only as far as the weighers count it.
fn report_cache(engine: &Engine, pass: &str) {
    let usage = engine.cache_usage();
    eprintln!(
        "cache after the {pass} pass: {} bases of {} MiB, N-1 cases of {} feeders of {} MiB; \
         the process holds {} MiB",
        usage.bases,
        usage.bases_bytes >> 20,
        usage.n1_feeders,
        usage.n1_bytes >> 20,
        process_resident_bytes() >> 20
    );
}

/// Each application ranked once, in turn: the times, sorted, and the mean
/// number of candidates.
///
/// With `HEADROOM_BENCH_CITY_ANSWERS=DIR`, each ranking is written to
/// `DIR/ID.json` (the last pass's stays): what shows that a change made for
/// speed left every answer as it was.
fn city_pass(engine: &Engine, apps: &[Application]) -> (PassTimes, usize) {
    let cpu_start = process_cpu_s();
    let answers = std::env::var_os("HEADROOM_BENCH_CITY_ANSWERS").map(std::path::PathBuf::from);
    if let Some(dir) = &answers {
        std::fs::create_dir_all(dir).expect("answers directory");
    }
    let mut timings: Vec<Duration> = Vec::new();
    let mut candidates = 0;
    for app in apps {
        let start = Instant::now();
        let result = black_box(engine.rank(app));
        timings.push(start.elapsed());
        candidates += result.candidates.len();
        if let Some(dir) = &answers {
            let json = serde_json::to_vec_pretty(&result).expect("ranking as JSON");
            std::fs::write(dir.join(format!("{}.json", app.id)), json).expect("answer written");
        }
    }
    timings.sort();
    let times = PassTimes {
        cpu_s: process_cpu_s() - cpu_start,
        timings,
    };
    (times, candidates / apps.len().max(1))
}

/// A city pass's times: each application's wall time, sorted, and the
/// process's CPU time over the whole pass.
struct PassTimes {
    timings: Vec<Duration>,
    /// Read beside the wall times: a pass that ran short of a core shows
    /// in the p50 and not here.
    cpu_s: f64,
}

/// Prints a city pass's p50, p99 and CPU time per application under `what`
/// (its opening parenthesis closed here).
fn report_pass(what: &str, times: &PassTimes, candidates: usize) {
    let timings = &times.timings;
    eprintln!(
        "city, {what}, {} applications, mean {candidates} candidates): p50 {:?}, p99 {:?}, \
         CPU {:.1} ms per application",
        timings.len(),
        timings[timings.len() / 2],
        timings[timings.len() - 1],
        times.cpu_s * 1000.0 / timings.len().max(1) as f64
    );
}

/// Audits every candidate's headroom (and, for loads, its N-1 headroom) at
/// every step (each step solved exactly at the headroom and at 1 kW more: see
/// [`headroom_engine::evaluate::HeadroomAudit`]), printing each that does not
/// hold there or holds past it. Slow (minutes): a check, not a timing.
fn check_at_every_step(engine: &Engine, apps: &[Application], generation: bool) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut audited, mut over, mut under) = (0, 0, 0);
    for app in apps {
        // N-1 reported, not enforced: enforced, the headroom is the least of
        // the normal and the N-1 headroom.
        let reported = Application {
            n1: false,
            ..app.clone()
        };
        let ranking = engine.rank(&reported);
        let profile = app.judged_profile();
        let tan_phi = headroom_engine::load_model::power_factor_tan(app.power_factor);
        let load = headroom_engine::evaluate::AddedLoad {
            tan_phi,
            profile: profile.as_deref(),
        };
        let export = headroom_engine::evaluate::AddedGeneration {
            absorbed_kvar_per_kw: tan_phi,
            profile: profile.as_deref(),
        };
        let placed: Vec<_> = ranking
            .candidates
            .iter()
            .filter_map(|c| {
                let node = engine.network.node_ix(&c.node)?;
                let placement = engine.topology.placement(node)?;
                Some((c, placement.feeder.get(), placement.local))
            })
            .collect();
        let audit = |c: &headroom_engine::Candidate, f: usize, local: u32| {
            let mut audits = Vec::new();
            if generation {
                let base = engine.generation_base(f);
                audits.push((
                    "headroom",
                    c.headroom_kw,
                    engine.audit_export_headroom(&base, local, c.headroom_kw, &export),
                ));
            } else {
                let base = engine.feeder(f);
                audits.push((
                    "headroom",
                    c.headroom_kw,
                    engine.audit_load_headroom(&base, local, c.headroom_kw, &load),
                ));
                if let Some(n1) = c.n1_headroom_kw {
                    audits.push((
                        "N-1 headroom",
                        n1,
                        engine.audit_n1_headroom(f, local, n1, c.headroom_kw, &load),
                    ));
                }
            }
            audits
                .into_iter()
                .filter(|(_, _, audit)| !audit.exact())
                .map(|(what, kw, audit)| match audit.broken_at_headroom {
                    Some((k, excess)) => format!(
                        "over: {} at {} (feeder {f}, node {local}): {what} {kw} kW breaks step {k} by {:.3} %",
                        app.id,
                        c.node,
                        excess * 100.0
                    ),
                    None => format!(
                        "under: {} at {} (feeder {f}, node {local}): {what} {kw} kW + 1 holds at every step",
                        app.id, c.node
                    ),
                })
                .collect::<Vec<_>>()
        };
        let findings: Vec<String> = std::thread::scope(|scope| {
            let chunk = placed.len().div_ceil(threads).max(1);
            let workers: Vec<_> = placed
                .chunks(chunk)
                .map(|part| {
                    let audit = &audit;
                    scope.spawn(move || {
                        part.iter()
                            .flat_map(|(c, f, local)| audit(c, *f, *local))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("audit thread"))
                .collect()
        });
        audited += placed.len();
        for finding in &findings {
            eprintln!("{finding}");
            if finding.starts_with("over") {
                over += 1;
            } else {
                under += 1;
            }
        }
    }
    eprintln!(
        "city check: {audited} candidates audited at every step, {over} answers over, {under} under"
    );
}

/// Compares each feeder's row with the row its full base (every step solved
/// exactly, as the cache keeps it) gives: a few hundred feeders are cached at a
/// time, the whole city's capacity worked out again, and the cached feeders'
/// rows compared. Slow (minutes): a check, not a timing.
fn check_capacity_against_full_bases(engine: &Engine, screened: &[headroom_engine::CapacityRow]) {
    let feeders = engine.network.feeders.len();
    let (mut compared, mut differing) = (0, 0);
    for chunk in (0..feeders).collect::<Vec<_>>().chunks(500) {
        for &f in chunk {
            engine.feeder(f);
        }
        let full = engine.capacity(Level::Feeder, engine.readings(), 0);
        for &f in chunk.iter().filter(|f| engine.cached_feeder(**f).is_some()) {
            compared += 1;
            if full[f] != screened[f] {
                differing += 1;
                eprintln!("differs: {:?}\n   full: {:?}", screened[f], full[f]);
            }
        }
    }
    eprintln!("city check: {compared} feeders compared with their full bases, {differing} differ");
}

criterion_group!(engine, benches);
criterion_main!(engine);
