//! What the crate's unit tests share.

use std::path::Path;
use std::sync::Arc;

use crate::{Engine, EngineConfig, InMemoryReadings};

/// The public fixture grid with its readings, default settings and no
/// reservations.
pub(crate) fn fixture_engine() -> Engine {
    fixture_engine_with(EngineConfig::default())
}

/// The fixture grid of [`fixture_engine`] with `config`.
pub(crate) fn fixture_engine_with(config: EngineConfig) -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/1-MV-semiurb");
    let gridpack = headroom_geodata::Gridpack::read(&dir).expect("fixture gridpack");
    let readings = Arc::new(InMemoryReadings::from_rows(&gridpack.readings));
    Engine::new(gridpack.network, readings, config, Vec::new())
}

/// A feeder whose line is mostly poles: busbar B, ring-main unit N1 with
/// transformer T1, poles P1 to P8 (the segment into P3 rated 90 A, the
/// others 300 A; transformer T5 at P5) and N9 with transformer T9 at the
/// end, over 8 steps of loads that differ from step to step; with
/// `thermal_pct` the segments' loading limit.
pub(crate) fn pole_line_engine(thermal_pct: f64) -> Engine {
    use headroom_geodata::{LonLat, NetworkBuilder, NodeType, Quantity, ReadingRow};
    let at = |east_m: f64| LonLat::new(117.2 + east_m / 94_600.0, 31.8);
    let mut grid = NetworkBuilder::new();
    grid.substation("S", at(0.0))
        .node("B", NodeType::Busbar, at(0.0))
        .substation_transformer("TR", "S", "B", 40_000.0)
        .node("N1", NodeType::RingMainUnit, at(100.0))
        .segment("L1", "B", "N1", 0.1, 0.1, 300.0, 1_000.0);
    let mut above = "N1".to_string();
    for i in 1..=9 {
        let name = if i == 9 {
            "N9".to_string()
        } else {
            format!("P{i}")
        };
        let rated_a = if i == 3 { 90.0 } else { 300.0 };
        grid.node(&name, NodeType::Pole, at(100.0 + 100.0 * f64::from(i)))
            .segment(
                &format!("L{}", i + 1),
                &above,
                &name,
                0.3,
                0.35,
                rated_a,
                1_500.0,
            );
        above = name;
    }
    grid.feeder("F", "B", "N1", Some(400.0))
        .transformer("T1", "N1", 400.0)
        .transformer("T5", "P5", 400.0)
        .transformer("T9", "N9", 400.0);
    let network = grid.build().expect("valid test grid");
    let steps = 8;
    let mut rows = Vec::new();
    let mut series = |id: &str, quantity: Quantity, value: &dyn Fn(usize) -> f64| {
        let asset = network.lookup(id).expect("asset of the test grid");
        for k in 0..steps {
            rows.push(ReadingRow {
                ts_ms: 1_783_296_000_000 + k as i64 * 15 * 60 * 1000,
                asset,
                quantity,
                value: value(k),
            });
        }
    };
    series("F", Quantity::UKv, &|_| 10.5);
    for (t, kw) in [("T1", 150.0), ("T5", 60.0), ("T9", 120.0)] {
        let swing = |k: usize| kw * (0.7 + 0.05 * ((k * 5) % 8) as f64);
        series(t, Quantity::PKw, &swing);
        series(t, Quantity::QKvar, &|k| swing(k) / 3.0);
    }
    let readings = Arc::new(InMemoryReadings::from_rows(&rows));
    let mut config = EngineConfig::default();
    config.limits.thermal_pct = thermal_pct;
    Engine::new(network, readings, config, Vec::new())
}
