//! The engine's shortcuts give the answers of the long way round: a flat load
//! judged at the steps its node ranks nearest a limit, as if judged at every
//! step of the window (and as bisection over full flows finds); the weakest node of a feeder found among the nodes with
//! the least room, as if every node were tried.

use std::path::Path;
use std::sync::Arc;

use headroom_engine::evaluate::AddedLoad;
use headroom_engine::{Application, Engine, EngineConfig, InMemoryReadings};
use headroom_geodata::Gridpack;

fn fixture_engine(config: EngineConfig) -> (Engine, Vec<Application>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/1-MV-semiurb");
    let gridpack = Gridpack::read(&dir).expect("fixture gridpack");
    let readings = Arc::new(InMemoryReadings::from_rows(&gridpack.readings));
    let apps: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("applications.json")).unwrap()).unwrap();
    let apps = Application::list_from_json(&apps).unwrap();
    (
        Engine::new(gridpack.network, readings, config, Vec::new()),
        apps,
    )
}

#[test]
fn ranked_steps_give_the_answers_of_every_step() {
    let (fast, apps) = fixture_engine(EngineConfig::default());
    let (audit, _) = fixture_engine(EngineConfig {
        judge_every_step: true,
        ..EngineConfig::default()
    });
    let mut compared = 0;
    for app in &apps {
        let quick = fast.rank(app);
        let every = audit.rank(app);
        assert_eq!(quick.candidates.len(), every.candidates.len());
        for (q, e) in quick.candidates.iter().zip(&every.candidates) {
            assert_eq!(q.node, e.node);
            assert!(
                (q.headroom_kw - e.headroom_kw).abs() <= 1.0,
                "{} at {}: {} kW against {} kW judging every step",
                app.id,
                q.node,
                q.headroom_kw,
                e.headroom_kw
            );
            assert_eq!(
                q.binding_constraint, e.binding_constraint,
                "{} at {}",
                app.id, q.node
            );
            assert_eq!(q.feasible, e.feasible, "{} at {}", app.id, q.node);
            assert!(
                (q.after.max_loading_pct - e.after.max_loading_pct).abs() <= 0.5,
                "{} at {}: after loading {} against {}",
                app.id,
                q.node,
                q.after.max_loading_pct,
                e.after.max_loading_pct
            );
            assert!(
                (q.after.min_voltage_pu - e.after.min_voltage_pu).abs() <= 0.001,
                "{} at {}: after voltage {} against {}",
                app.id,
                q.node,
                q.after.min_voltage_pu,
                e.after.min_voltage_pu
            );
            compared += 1;
        }
    }
    assert!(compared >= 1000, "only {compared} candidates compared");
}

#[test]
fn the_weakest_node_search_finds_what_trying_every_node_finds() {
    let (engine, _) = fixture_engine(EngineConfig::default());
    let rows = engine.capacity(headroom_engine::Level::Feeder, engine.readings(), 0);
    let load = AddedLoad::flat(engine.config.capacity_power_factor);
    for (f, row) in rows.iter().enumerate() {
        let base = engine.feeder(f);
        let every_node = (1..base.electrical.len() as u32)
            .map(|local| engine.headroom_at(&base, local, &load).0)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(row.worst_node_headroom_kw, Some(every_node), "{}", row.id);
    }
}

#[test]
fn a_flat_load_judged_at_its_ranked_steps_has_the_headroom_of_bisection_at_every_step() {
    // The fixture's window is longer than the steps a node ranks, so this runs
    // the ranked path: estimates at the path's bottleneck, root finding told
    // 1 kW past the root by the slope; bisection knows none of that.
    let (engine, _) = fixture_engine(EngineConfig::default());
    let load = AddedLoad::flat(0.95);
    let mut compared = 0;
    for f in 0..engine.network.feeders.len() {
        let base = engine.feeder(f);
        assert!(base.loads.step_count() > base.flat_stride);
        let n = base.electrical.len() as u32;
        // Near the busbar, mid-feeder and at the far end.
        for local in [1, n / 2, n - 1] {
            if base.summary.already_broken.is_some() {
                continue;
            }
            let (headroom, _) = engine.headroom_at(&base, local, &load);
            let node = engine
                .network
                .node(engine.topology.tree(base.loads.feeder).nodes[local as usize]);
            let reference = crate::support::brute_force_headroom(&engine, node.id.as_ref(), 0.95);
            assert!(
                (headroom - reference).abs() <= 1.5,
                "{}: engine {headroom} kW, bisection {reference} kW",
                node.id
            );
            compared += 1;
        }
    }
    assert!(compared >= 3, "only {compared} points compared");
}
