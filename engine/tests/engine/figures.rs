//! A candidate's `after` figures are the worst over every step of the window of
//! a plain power flow with the application's load connected: checked here by
//! sweeping every step from a flat start and reading the figures off the raw
//! solution, on random radial feeders and on the fixture.

use headroom_engine::{Application, Engine, EngineConfig, RankingResult};
use headroom_geodata::{NetworkBuilder, NodeType, Quantity};
use proptest::prelude::*;
use serde_json::json;

use crate::support::{Series, application, at, engine, plain_flow};

/// The worst figures over every step with `app`'s load at `node`: (highest
/// loading of segments and head %, head loading %, lowest voltage pu,
/// substation loading %); `None` where a power flow collapses (the engine then
/// reports the collapse, not figures).
fn every_step_figures(
    engine: &Engine,
    node: &str,
    app: &Application,
) -> Option<(f64, f64, f64, f64)> {
    let ix = engine.network.node_ix(node).unwrap();
    let placement = engine.topology.placement(ix).unwrap();
    let base = engine.feeder(placement.feeder.get());
    let e = &base.electrical;
    let n = e.len();
    let tan = (1.0 / (app.power_factor * app.power_factor) - 1.0).sqrt();
    let rated_group = engine.group_rated_kva(base.group);
    let solve = |k: usize, kw: f64| {
        let s = plain_flow(engine, &base, k, placement.local, kw, tan);
        s.converged.then_some(s)
    };
    let (mut loading, mut head, mut v_min, mut substation) =
        (0.0f64, 0.0f64, f64::INFINITY, 0.0f64);
    for k in 0..base.loads.step_count() {
        let factor = app.profile_factor(engine.quarter_of_day(base.loads.steps[k]));
        let with = solve(k, app.demand_kw * factor)?;
        let without = solve(k, 0.0)?;
        for i in 1..n {
            if e.rated_a[i].is_finite() {
                loading = loading.max(with.i_a[i].norm() / e.rated_a[i] * 100.0);
            }
        }
        for i in 0..n {
            v_min = v_min.min(with.v_kv[i].norm() / e.nominal_kv[i]);
        }
        if let Some(rated) = e.head_rated_a {
            head = head.max(with.i_a[0].norm() / rated * 100.0);
        }
        if rated_group > 0.0 {
            let added = with.head_power_kva() - without.head_power_kva();
            substation = substation.max((base.group_kva[k] + added).norm() / rated_group * 100.0);
        }
    }
    Some((loading.max(head), head, v_min, substation))
}

/// Asserts every candidate of `result` on a feeder has the figures of
/// [`every_step_figures`], to the results' rounding; returns how many.
fn assert_after_is_every_step(engine: &Engine, app: &Application, result: &RankingResult) -> usize {
    let mut compared = 0;
    for c in result.candidates.iter().filter(|c| c.feeder.is_some()) {
        let Some((loading, head, v_min, substation)) = every_step_figures(engine, &c.node, app)
        else {
            continue;
        };
        let head_check = c
            .checks
            .iter()
            .find(|check| check.name == headroom_engine::CheckName::HeadThermal)
            .expect("a head check");
        let context = format!(
            "{} at {} ({} kW, profile {}): after {:?}, head check {}; every step: loading {loading}, \
             head {head}, voltage {v_min}, substation {substation}",
            app.id,
            c.node,
            app.demand_kw,
            app.profile.is_some(),
            c.after,
            head_check.value
        );
        assert!(
            (c.after.max_loading_pct - loading).abs() <= 0.01,
            "{context}"
        );
        assert!((head_check.value - head).abs() <= 0.01, "{context}");
        assert!(
            (c.after.min_voltage_pu - v_min).abs() <= 0.0001,
            "{context}"
        );
        assert!(
            (c.after.substation_transformer_loading_pct - substation).abs() <= 0.01,
            "{context}"
        );
        compared += 1;
    }
    compared
}

#[test]
fn the_fixtures_after_figures_are_those_of_a_power_flow_at_every_step() {
    let (engine, apps) = crate::shortcut::fixture_engine(EngineConfig::default());
    let mut compared = 0;
    for app in &apps {
        compared += assert_after_is_every_step(&engine, app, &engine.rank(app));
    }
    assert!(compared >= 1000, "only {compared} candidates compared");
}

/// A random radial feeder: node `i` hangs on node `parents[i - 1]` (an earlier
/// one), and where `loaded[i]`, with a transformer whose net load per step is
/// `loads[i]`. A node without one that feeds one branch is a pole on a line,
/// which the engine's path walks take with the branch below it.
#[derive(Clone, Debug)]
struct RandomFeeder {
    parents: Vec<usize>,
    loaded: Vec<bool>,
    /// Per segment: (ohm per km, length m, rated A).
    segments: Vec<(f64, f64, f64)>,
    head_rated_a: f64,
    /// Per node and step, (kW, kvar): negative kW exports.
    loads: Vec<Vec<(f64, f64)>>,
    head_kv: Vec<f64>,
}

fn random_feeder() -> impl Strategy<Value = RandomFeeder> {
    (3usize..14, 80usize..140).prop_flat_map(|(nodes, steps)| {
        (
            proptest::collection::vec(0usize..1000, nodes - 1),
            proptest::collection::vec((0.1f64..0.4, 200.0f64..1500.0, 80.0f64..400.0), nodes),
            200.0f64..500.0,
            proptest::collection::vec(
                (
                    // A base level and a daily swing, some nodes exporting at midday.
                    -100.0f64..300.0,
                    0.0f64..200.0,
                    0.0f64..0.5,
                ),
                nodes,
            ),
            proptest::collection::vec(10.2f64..10.7, steps),
            proptest::collection::vec(proptest::bool::weighted(0.6), nodes),
        )
            .prop_map(
                move |(parents, segments, head_rated_a, shapes, head_kv, loaded)| {
                    let parents = parents
                        .iter()
                        .enumerate()
                        .map(|(i, r)| r % (i + 1))
                        .collect();
                    let loads = shapes
                        .iter()
                        .enumerate()
                        .map(|(node, (level, swing, tan))| {
                            (0..steps)
                                .map(|k| {
                                    let phase = (k as f64 / 96.0 + node as f64 / 7.0)
                                        * std::f64::consts::TAU;
                                    let kw = level + swing * phase.sin();
                                    (kw, kw.abs() * tan)
                                })
                                .collect()
                        })
                        .collect();
                    RandomFeeder {
                        parents,
                        loaded,
                        segments,
                        head_rated_a,
                        loads,
                        head_kv: head_kv.clone(),
                    }
                },
            )
    })
}

impl RandomFeeder {
    fn node_id(i: usize) -> String {
        format!("N{i}")
    }

    fn engine(&self) -> Engine {
        let mut b = NetworkBuilder::new();
        b.substation("S", at(0.0, 0.0))
            .node("B", NodeType::Busbar, at(0.0, 0.0))
            .substation_transformer("TR", "S", "B", 12_000.0);
        let n = self.segments.len();
        for i in 0..n {
            b.node(&Self::node_id(i), NodeType::Pole, at(60.0 * i as f64, 0.0));
        }
        for (i, (ohm_per_km, length_m, rated_a)) in self.segments.iter().enumerate() {
            let from = if i == 0 {
                "B".to_owned()
            } else {
                Self::node_id(self.parents[i - 1])
            };
            b.segment(
                &format!("L{i}"),
                &from,
                &Self::node_id(i),
                *ohm_per_km,
                *ohm_per_km * 0.8,
                *rated_a,
                *length_m,
            );
            if self.loaded[i] {
                b.transformer(&format!("T{i}"), &Self::node_id(i), 630.0);
            }
        }
        b.feeder("F", "B", &Self::node_id(0), Some(self.head_rated_a));
        let ids: Vec<String> = (0..n).map(|i| format!("T{i}")).collect();
        let mut series: Series<'_> = vec![("F", Quantity::UKv, self.head_kv.clone())];
        for ((id, loads), _) in ids
            .iter()
            .zip(&self.loads)
            .zip(&self.loaded)
            .filter(|(_, loaded)| **loaded)
        {
            series.push((id, Quantity::PKw, loads.iter().map(|l| l.0).collect()));
            series.push((id, Quantity::QKvar, loads.iter().map(|l| l.1).collect()));
        }
        engine(&b, &series)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn after_figures_are_those_of_a_power_flow_at_every_step(
        feeder in random_feeder(),
        demand_kw in 20.0f64..1500.0,
        power_factor in 0.8f64..1.0,
        profile in proptest::option::of(proptest::collection::vec(0.0f64..1.0, 96)),
    ) {
        let engine = feeder.engine();
        let mut extra = json!({"power_factor": power_factor, "max_distance_m": 5000});
        if let Some(profile) = &profile {
            extra["profile"] = json!(profile);
        }
        let app = application("P", at(0.0, 0.0), demand_kw, extra);
        let result = engine.rank(&app);
        // A candidate whose load collapses a deep feeder at some step is left
        // out of the comparison; most draws have none.
        let compared = assert_after_is_every_step(&engine, &app, &result);
        prop_assert!(compared * 2 >= feeder.segments.len(), "{} of {}", compared, feeder.segments.len());
    }
}
