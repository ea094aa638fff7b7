//! Benches of the grid model on the default synthetic city (200 substations, 3,000
//! feeders, about 60,000 distribution transformers and 300,000 nodes):
//!
//! - `import/network_geojson`: reading and validating `network.geojson` (target < 5 s);
//! - `spatial/radius_2km`: nodes within 2 km of random points in the city (target
//!   p50 < 20 µs); the per-query p50 and p99 are also printed, timed one by one;
//! - `topology/trace_all_feeders`: tracing every feeder's radial tree (target < 1 s).
//!
//! Run: `cargo bench --bench geodata`. The city is generated into a temporary folder
//! first (network only), or read from `HEADROOM_BENCH_GRIDPACK` when that names a
//! gridpack folder. Peak memory of an import is measured outside criterion:
//! `/usr/bin/time -v target/release/headroom import DIR` on a network-only folder.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use headroom_geodata::{Filter, LonLat, SpatialIndex, Topology, read_network, write_network};
use headroom_simulators::synth::{SynthConfig, synthetic_grid};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn city_network_file() -> (PathBuf, Option<tempfile::TempDir>) {
    if let Ok(dir) = std::env::var("HEADROOM_BENCH_GRIDPACK") {
        return (PathBuf::from(dir).join("network.geojson"), None);
    }
    let tmp = tempfile::tempdir().expect("temporary folder");
    let grid = synthetic_grid(&SynthConfig::default()).expect("the default city generates");
    let path = tmp.path().join("network.geojson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    write_network(&grid.network, &mut out).expect("write network");
    drop(out);
    (path, Some(tmp))
}

fn benches(c: &mut Criterion) {
    let (path, _keep) = city_network_file();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "network file: {} ({:.0} MB)",
        path.display(),
        bytes as f64 / 1e6
    );

    let mut group = c.benchmark_group("import");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(40));
    group.bench_function("network_geojson", |b| {
        b.iter(|| black_box(read_network(&path).expect("valid")))
    });
    group.finish();

    let network = read_network(&path).expect("valid");
    eprintln!(
        "city: {} nodes, {} segments, {} feeders, {} transformers",
        network.nodes.len(),
        network.segments.len(),
        network.feeders.len(),
        network.transformers.len()
    );

    let index = SpatialIndex::build(&network);
    let (min_lon, max_lon, min_lat, max_lat) = network.nodes.iter().fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), n| {
            (
                a.min(n.position.lon),
                b.max(n.position.lon),
                c.min(n.position.lat),
                d.max(n.position.lat),
            )
        },
    );
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let points: Vec<LonLat> = (0..10_000)
        .map(|_| {
            LonLat::new(
                rng.random_range(min_lon..max_lon),
                rng.random_range(min_lat..max_lat),
            )
        })
        .collect();
    let filter = Filter::in_service_at(10.0);
    for (what, radius_m, lv) in [
        ("nodes within 2 km", 2_000.0, false),
        ("transformers within 500 m", 500.0, true),
    ] {
        let mut timings: Vec<Duration> = Vec::with_capacity(points.len());
        let mut hits = 0usize;
        for p in &points {
            let start = Instant::now();
            let found = if lv {
                black_box(index.transformers_within(*p, radius_m, &Filter::in_service_at(0.4)))
                    .len()
            } else {
                black_box(index.nodes_within(*p, radius_m, &filter)).len()
            };
            timings.push(start.elapsed());
            hits += found;
        }
        timings.sort();
        eprintln!(
            "{what}, one by one over {} random points: p50 {:?}, p99 {:?}, mean hits {:.0}",
            points.len(),
            timings[timings.len() / 2],
            timings[timings.len() * 99 / 100],
            hits as f64 / points.len() as f64
        );
    }
    let mut group = c.benchmark_group("spatial");
    let mut i = 0;
    group.bench_function("radius_2km", |b| {
        b.iter(|| {
            i = (i + 1) % points.len();
            black_box(index.nodes_within(points[i], 2_000.0, &filter))
        })
    });
    group.bench_function("nearest_10", |b| {
        b.iter(|| {
            i = (i + 1) % points.len();
            black_box(index.nearest_nodes(points[i], 10, &filter))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("topology");
    group.sample_size(10);
    group.bench_function("trace_all_feeders", |b| {
        b.iter(|| black_box(Topology::trace(&network)))
    });
    group.finish();
}

criterion_group!(geodata, benches);
criterion_main!(geodata);
