//! A small radial grid with readings, and an engine over it.

use headroom_engine::{
    Application, Engine, EngineConfig, InMemoryReadings, RankingResult, ReservedLoad,
};
use headroom_geodata::{LonLat, Network, NetworkBuilder, NodeType, Quantity, ReadingRow};
use serde_json::json;

/// Start of the test data, 2026-07-06T00:00:00Z.
pub(crate) const T0: i64 = 1_783_296_000_000;
pub(crate) const STEP: i64 = 15 * 60 * 1000;

pub(crate) fn at(east_m: f64, north_m: f64) -> LonLat {
    LonLat::new(117.2 + east_m / 94_600.0, 31.8 + north_m / 111_000.0)
}

/// Substation S (one 40 MVA transformer TR on busbar B, one spare bay), feeder F
/// with rated_a 400: B -L1- N1 (ring-main unit, one spare bay) -L2- N2 (pole)
/// -L3- N3 (pole), segments 1 km of 0.1 + j0.1 ohm/km rated 300 A, a 400 kVA
/// transformer at each node. Nodes are 100 m apart going east.
pub(crate) fn feeder() -> NetworkBuilder {
    let mut b = NetworkBuilder::new();
    b.substation("S", at(0.0, 0.0))
        .node("B", NodeType::Busbar, at(0.0, 0.0))
        .with_node(|n| n.spare_bays = 1)
        .substation_transformer("TR", "S", "B", 40_000.0)
        .node("N1", NodeType::RingMainUnit, at(100.0, 0.0))
        .with_node(|n| n.spare_bays = 1)
        .node("N2", NodeType::Pole, at(200.0, 0.0))
        .node("N3", NodeType::Pole, at(300.0, 0.0))
        .segment("L1", "B", "N1", 0.1, 0.1, 300.0, 1_000.0)
        .segment("L2", "N1", "N2", 0.1, 0.1, 300.0, 1_000.0)
        .segment("L3", "N2", "N3", 0.1, 0.1, 300.0, 1_000.0)
        .feeder("F", "B", "N1", Some(400.0))
        .transformer("T1", "N1", 400.0)
        .transformer("T2", "N2", 400.0)
        .transformer("T3", "N3", 400.0);
    b
}

/// Readings: `(asset id, quantity, value per step)`.
pub(crate) type Series<'a> = Vec<(&'a str, Quantity, Vec<f64>)>;

/// Constant loads on every transformer and a head at 10.5 kV, over `steps` steps.
pub(crate) fn flat_readings<'a>(kw: f64, kvar: f64, steps: usize) -> Series<'a> {
    let mut s = vec![("F", Quantity::UKv, vec![10.5; steps])];
    for t in ["T1", "T2", "T3"] {
        s.push((t, Quantity::PKw, vec![kw; steps]));
        s.push((t, Quantity::QKvar, vec![kvar; steps]));
    }
    s
}

pub(crate) fn rows(network: &Network, series: &Series<'_>) -> Vec<ReadingRow> {
    let mut rows = Vec::new();
    for (id, quantity, values) in series {
        let asset = network
            .lookup(id)
            .unwrap_or_else(|| panic!("no asset {id}"));
        for (k, v) in values.iter().enumerate() {
            rows.push(ReadingRow {
                ts_ms: T0 + k as i64 * STEP,
                asset,
                quantity: *quantity,
                value: *v,
            });
        }
    }
    rows
}

pub(crate) fn engine_with(
    builder: &NetworkBuilder,
    series: &Series<'_>,
    reservations: &[(&str, f64)],
) -> Engine {
    let network = builder.build().expect("valid test grid");
    let readings = std::sync::Arc::new(InMemoryReadings::from_rows(&rows(&network, series)));
    let reservations = reservations
        .iter()
        .map(|(node, kw)| ReservedLoad {
            application: format!("R-{node}"),
            kind: headroom_engine::ApplicationKind::Load,
            node: network.node_ix(node).unwrap(),
            demand_kw: *kw,
            power_factor: 0.95,
            profile: None,
            transformer: None,
        })
        .collect();
    Engine::new(network, readings, EngineConfig::default(), reservations)
}

pub(crate) fn engine(builder: &NetworkBuilder, series: &Series<'_>) -> Engine {
    engine_with(builder, series, &[])
}

pub(crate) fn application(
    id: &str,
    near: LonLat,
    demand_kw: f64,
    extra: serde_json::Value,
) -> Application {
    let mut v = json!({
        "id": id, "lon": near.lon, "lat": near.lat, "demand_kw": demand_kw,
        "power_factor": 0.95, "voltage_kv": 10, "customer_class": "industrial",
        "max_distance_m": 1000
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    Application::from_json(&v).expect("valid test application")
}

pub(crate) fn candidate<'a>(
    result: &'a RankingResult,
    node: &str,
) -> &'a headroom_engine::Candidate {
    result
        .candidates
        .iter()
        .find(|c| c.node == node)
        .unwrap_or_else(|| {
            panic!(
                "no candidate {node} in {:?}",
                result
                    .candidates
                    .iter()
                    .map(|c| &c.node)
                    .collect::<Vec<_>>()
            )
        })
}

/// Ranks `node` at `demand_kw` and returns (feasible, headroom, binding).
pub(crate) fn probe(
    engine: &Engine,
    node: &str,
    near: LonLat,
    demand_kw: f64,
    extra: serde_json::Value,
) -> (bool, f64, String) {
    let result = engine.rank(&application("P", near, demand_kw, extra));
    let c = candidate(&result, node);
    (c.feasible, c.headroom_kw, c.binding_constraint.to_string())
}

/// A plain power flow of step `k` of `base` from a flat start, with `kw` at
/// `kw * tan` kvar added at local node `local`: the tests' reference, which
/// knows none of the engine's shortcuts.
pub(crate) fn plain_flow(
    engine: &Engine,
    base: &headroom_engine::FeederBase,
    k: usize,
    local: u32,
    kw: f64,
    tan: f64,
) -> headroom_engine::powerflow::Solution {
    use headroom_engine::powerflow::{Solution, SweepSettings, sweep};
    let n = base.electrical.len();
    let (mut p, mut q) = (vec![0.0; n], vec![0.0; n]);
    engine.base_node_loads(base, k, &mut p, &mut q);
    p[local as usize] += kw;
    q[local as usize] += kw * tan;
    let mut s = Solution::default();
    sweep(
        &base.electrical,
        &p,
        &q,
        base.loads.source_kv[k],
        SweepSettings::default(),
        &mut s,
    );
    s
}

/// Headroom at `node` by plain bisection over full power flows at every step,
/// with the limits checked here from the raw solution: an independent reference
/// for the engine's screened search.
pub(crate) fn brute_force_headroom(engine: &Engine, node: &str, power_factor: f64) -> f64 {
    let ix = engine.network.node_ix(node).unwrap();
    let placement = engine.topology.placement(ix).unwrap();
    let base = engine.feeder(placement.feeder.get());
    let e = &base.electrical;
    let limits = engine.config.limits;
    let tan = (1.0 / (power_factor * power_factor) - 1.0).sqrt();
    let rated_group = engine.group_rated_kva(base.group);
    let n = e.len();
    let fits = |k: usize, x: f64| {
        let s = plain_flow(engine, &base, k, placement.local, x, tan);
        if !s.converged {
            return false;
        }
        for i in 1..n {
            if s.i_a[i].norm() > e.rated_a[i] * limits.thermal_pct / 100.0 {
                return false;
            }
            let v = s.v_kv[i].norm() / e.nominal_kv[i];
            if v < limits.v_min_pu || v > limits.v_max_pu {
                return false;
            }
        }
        if let Some(rated) = e.head_rated_a
            && s.head_current_a() > rated * limits.thermal_pct / 100.0
        {
            return false;
        }
        let added = s.head_power_kva() - base.solutions[k].head_power_kva();
        (base.group_kva[k] + added).norm()
            <= rated_group * limits.substation_transformer_pct / 100.0
    };
    let mut best = f64::INFINITY;
    for k in 0..base.loads.step_count() {
        let (mut lo, mut hi) = (0.0, 1.0e5);
        if !fits(k, lo) {
            return 0.0;
        }
        while hi - lo > 0.05 {
            let mid = 0.5 * (lo + hi);
            if fits(k, mid) { lo = mid } else { hi = mid }
        }
        best = best.min(lo);
    }
    best
}

/// The engine's headroom at `node` agrees with bisection over full power flows,
/// and the binding check is the one named; returns the headroom.
pub(crate) fn assert_headroom_matches_brute_force(
    engine: &Engine,
    node: &str,
    near: LonLat,
    binding: &str,
) -> f64 {
    let (_, headroom, found) = probe(engine, node, near, 1.0, serde_json::json!({}));
    let reference = brute_force_headroom(engine, node, 0.95);
    assert!(
        (headroom - reference).abs() <= 1.5,
        "{node}: engine {headroom} kW, bisection {reference} kW"
    );
    assert_eq!(found, binding, "{node}: binding");
    headroom
}
