//! Benches of the decision engine:
//!
//! - `rank/fixture_one_application`: one application on the public fixture
//!   `1-MV-semiurb` (12 applications, ~100 candidates each), the full result with
//!   headroom for every candidate, on a warm engine (load model and base power
//!   flows built once, as the service keeps them). Target p50 < 5 ms; the ratio to
//!   pandapower's `timing.per_application_s_median` in `expected.json` is printed.
//! - `capacity/fixture_feeders`: `capacity --level feeder` on the fixture.
//!
//! Run: `cargo bench --bench engine`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use headroom_engine::{Application, Engine, EngineConfig, InMemoryReadings, Level};
use headroom_geodata::Gridpack;

fn fixture_engine() -> (Engine, Vec<Application>, f64) {
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
    let engine = Engine::new(
        gridpack.network,
        readings,
        EngineConfig::default(),
        Vec::new(),
    );
    // Warm: every feeder's load model and base power flows built, as in service.
    for f in 0..engine.network.feeders.len() {
        engine.feeder(f);
    }
    eprintln!("fixture engine built in {:?}", start.elapsed());
    (engine, apps, pandapower_s)
}

fn benches(c: &mut Criterion) {
    let (engine, apps, pandapower_s) = fixture_engine();
    // Per-application timings one by one, for p50 and the ratio to pandapower.
    let mut timings: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        for app in &apps {
            let start = Instant::now();
            black_box(engine.rank(app));
            timings.push(start.elapsed());
        }
    }
    timings.sort();
    let p50 = timings[timings.len() / 2];
    eprintln!(
        "fixture, one application: p50 {:?}, p99 {:?}; pandapower median {:.1} s per application: {:.0}x faster",
        p50,
        timings[timings.len() * 99 / 100],
        pandapower_s,
        pandapower_s / p50.as_secs_f64()
    );
    let mut group = c.benchmark_group("rank");
    let mut i = 0;
    group.bench_function("fixture_one_application", |b| {
        b.iter(|| {
            i = (i + 1) % apps.len();
            black_box(engine.rank(&apps[i]))
        })
    });
    group.finish();
    let mut group = c.benchmark_group("capacity");
    group.bench_function("fixture_feeders", |b| {
        b.iter(|| black_box(engine.capacity(Level::Feeder, engine.readings(), 0)))
    });
    group.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
