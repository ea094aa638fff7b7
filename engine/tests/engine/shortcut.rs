//! The engine's shortcuts give the answers of the long way round: a flat load
//! judged at the steps its node ranks nearest a limit, as if judged at every
//! step of the window (and as bisection over full flows finds); the weakest node of a feeder found among the nodes with
//! the least room, as if every node were tried.

use std::path::Path;
use std::sync::Arc;

use headroom_engine::base::FeederBase;
use headroom_engine::evaluate::AddedLoad;
use headroom_engine::{Application, Engine, EngineConfig, InMemoryReadings};
use headroom_geodata::Gridpack;

/// The fixture's feeders whose bases break no limit without a new load (the
/// others have no headroom to find), with their indices.
fn unbroken_feeders(engine: &Engine) -> impl Iterator<Item = (usize, Arc<FeederBase>)> + '_ {
    (0..engine.network.feeders.len())
        .map(|f| (f, engine.feeder(f)))
        .filter(|(_, base)| base.summary.already_broken.is_none())
}

pub(crate) fn fixture_engine(config: EngineConfig) -> (Engine, Vec<Application>) {
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
fn feeder_capacity_from_the_steps_that_can_bind_equals_the_full_bases() {
    // A capacity sweep builds each feeder touched by reservations over the
    // steps where a flat load can meet a limit; a cached (full) base has
    // every step. Under the fixture's
    // limits and under tighter ones (so that each check binds somewhere, and
    // some feeders break a limit already), the rows agree in every field.
    let with_limits = |v_min_pu: f64, thermal_pct: f64, substation_transformer_pct: f64| {
        let mut config = EngineConfig::default();
        config.limits.v_min_pu = v_min_pu;
        config.limits.thermal_pct = thermal_pct;
        config.limits.substation_transformer_pct = substation_transformer_pct;
        config
    };
    let mut bindings = std::collections::BTreeSet::new();
    let mut broken = false;
    for config in [
        EngineConfig::default(),
        with_limits(0.985, 100.0, 100.0),
        with_limits(0.93, 100.0, 45.0),
        with_limits(0.97, 50.0, 100.0),
        // Above the busbar's voltage: broken at every step.
        EngineConfig {
            limits: headroom_engine::Limits {
                v_max_pu: 1.0,
                ..EngineConfig::default().limits
            },
            ..EngineConfig::default()
        },
    ] {
        let (engine, _) = fixture_engine(config);
        // A feeder no reservation touches takes its capacity from the full
        // base its open capacity for generation needs anyway; a reservation at
        // the busbar (a new bay) touches every feeder of the group without
        // sitting on any, which is where a sweep screens steps.
        let busbar = engine.network.node_ix("N2").expect("the fixture's busbar");
        let engine = engine.with_reservations(vec![headroom_engine::ReservedLoad {
            application: "BAY".to_owned(),
            kind: headroom_engine::ApplicationKind::Load,
            node: busbar,
            demand_kw: 10.0,
            power_factor: 0.95,
            profile: None,
            transformer: None,
        }]);
        let screened = engine.capacity(headroom_engine::Level::Feeder, engine.readings(), 0);
        for f in 0..engine.network.feeders.len() {
            engine.feeder(f);
        }
        let full = engine.capacity(headroom_engine::Level::Feeder, engine.readings(), 0);
        assert_eq!(screened, full);
        // What binds at each row's weakest node.
        let load = AddedLoad::flat(engine.config.capacity_power_factor);
        for (f, row) in full.iter().enumerate() {
            let base = engine.feeder(f);
            let tree = engine.topology.tree(base.loads.feeder);
            let worst = row.worst_node.as_deref().expect("a weakest node");
            let local = (1..tree.nodes.len())
                .find(|&l| engine.network.node(tree.nodes[l]).id.to_string() == worst)
                .expect("the weakest node is on its feeder");
            let (headroom, binding) = engine.headroom_at(&base, local as u32, &load);
            assert_eq!(Some(headroom), row.worst_node_headroom_kw);
            bindings.insert(format!("{binding:?}"));
            bindings.insert(format!("{:?}", row.binding_constraint));
            broken |= row.headroom_kw == 0.0;
        }
    }
    // Thermal, voltage and a limit broken already (every node at zero).
    assert!(bindings.len() >= 2 && broken, "{bindings:?}");
}

#[test]
fn a_load_lagging_past_the_load_room_has_exact_headrooms_on_its_margin() {
    // At 0.7 lagging the load's current may lie outside the directions the
    // base's load room holds for: judged on the margin at every step, its
    // headroom holds at every step and breaks a check 1 kW above.
    let (engine, _) = fixture_engine(EngineConfig::default());
    let load = AddedLoad::flat(0.7);
    let mut audited = 0;
    for (f, base) in unbroken_feeders(&engine) {
        for local in (1..base.electrical.len() as u32).step_by(3) {
            let (headroom, binding) = engine.headroom_at(&base, local, &load);
            let audit = engine.audit_load_headroom(&base, local, headroom, &load);
            assert!(
                audit.exact(),
                "feeder {f} node {local}: {headroom} kW ({binding:?}): {audit:?}"
            );
            audited += 1;
        }
    }
    assert!(audited > 30, "{audited}");
}

#[test]
fn every_node_has_a_headroom_within_the_slack_of_its_room() {
    // What the weakest-node search stops on: a node whose room, less the
    // slack, lies above the least headroom found cannot be weaker. At 5 %, a
    // fixture node lay 8.3 % under its room.
    let (engine, _) = fixture_engine(EngineConfig::default());
    let load = AddedLoad::flat(engine.config.capacity_power_factor);
    let per_kw_kva = (1.0 + load.tan_phi * load.tan_phi).sqrt();
    let mut judged = 0;
    for (f, base) in unbroken_feeders(&engine) {
        for local in 1..base.electrical.len() as u32 {
            let room_kw = base.least_room_kva[local as usize] / per_kw_kva;
            let (headroom, binding) = engine.headroom_at(&base, local, &load);
            judged += 1;
            assert!(
                headroom >= room_kw * (1.0 - headroom_engine::capacity::ROOM_SLACK) - 1.0,
                "feeder {f} node {local}: {headroom} kW ({binding:?}) against a room of {room_kw:.0} kW"
            );
        }
    }
    assert!(judged > 100, "{judged}");
}

#[test]
fn a_headroom_under_a_ceiling_is_the_headroom_or_lies_past_it() {
    // What the weakest-node search passes over unsolved: a node whose
    // estimates all lie past the ceiling. A ceiling a per cent past the
    // headroom gives the headroom itself; one under it, the headroom or
    // nothing.
    let (engine, _) = fixture_engine(EngineConfig::default());
    let load = AddedLoad::flat(engine.config.capacity_power_factor);
    let (mut judged, mut passed_over) = (0, 0);
    for (f, base) in unbroken_feeders(&engine) {
        for local in 1..base.electrical.len() as u32 {
            let (headroom, binding) = engine.headroom_at(&base, local, &load);
            let above = engine.headroom_under(&base, local, &load, headroom * 1.03 + 1.0);
            assert_eq!(above, Some((headroom, binding)), "feeder {f} node {local}");
            for share in [0.99, 0.9] {
                let ceiling = (headroom * share - 1.0).max(0.0);
                match engine.headroom_under(&base, local, &load, ceiling) {
                    Some(under) => {
                        assert_eq!(under, (headroom, binding), "feeder {f} node {local}")
                    }
                    None => passed_over += 1,
                }
            }
            judged += 1;
        }
    }
    assert!(
        judged > 100 && passed_over > judged,
        "{judged} nodes, {passed_over} passed over"
    );
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

#[test]
fn headroom_never_rises_going_out_along_a_feeder() {
    // What the weakest-node search leans on to pass over a node whose
    // descendants all take more than the least found.
    let (engine, _) = fixture_engine(EngineConfig::default());
    let load = AddedLoad::flat(engine.config.capacity_power_factor);
    let mut pairs = 0;
    for f in 0..engine.network.feeders.len() {
        let base = engine.feeder(f);
        let n = base.electrical.len();
        let headroom: Vec<f64> = (0..n as u32)
            .map(|local| {
                if local == 0 {
                    f64::INFINITY
                } else {
                    engine.headroom_at(&base, local, &load).0
                }
            })
            .collect();
        for child in 2..n {
            let parent = base.electrical.parent[child] as usize;
            assert!(
                headroom[parent] >= headroom[child],
                "feeder {f}: {} kW at node {parent}, {} kW at its child {child}",
                headroom[parent],
                headroom[child]
            );
            pairs += 1;
        }
    }
    assert!(pairs >= 100, "only {pairs} parent-child pairs");
}

#[test]
fn a_nodes_headroom_does_not_depend_on_what_was_judged_before_it() {
    // The search for a root starts from guesses that earlier evaluations
    // sharpen; a guess may make it faster, never change the answer: the same
    // grid, reading for reading, must give the same kW whatever a planner, the
    // map or a sweep asked first. Every node of every feeder, judged in order,
    // in reverse order and each on a thread of its own, under limits where each
    // check binds somewhere.
    let tight = |v_min_pu: f64, thermal_pct: f64| {
        let mut config = EngineConfig::default();
        config.limits.v_min_pu = v_min_pu;
        config.limits.thermal_pct = thermal_pct;
        config
    };
    let mut judged = 0;
    for config in [
        EngineConfig::default(),
        tight(0.985, 100.0),
        tight(0.97, 50.0),
    ] {
        let (engine, _) = fixture_engine(config);
        let load = AddedLoad::flat(engine.config.capacity_power_factor);
        for f in 0..engine.network.feeders.len() {
            let base = engine.feeder(f);
            let nodes: Vec<u32> = (1..base.electrical.len() as u32).collect();
            let forward: Vec<(f64, String)> = nodes
                .iter()
                .map(|&l| {
                    let (h, b) = engine.headroom_at(&base, l, &load);
                    (h, format!("{b:?}"))
                })
                .collect();
            let mut backward: Vec<(f64, String)> = nodes
                .iter()
                .rev()
                .map(|&l| {
                    let (h, b) = engine.headroom_at(&base, l, &load);
                    (h, format!("{b:?}"))
                })
                .collect();
            backward.reverse();
            let alone: Vec<(f64, String)> = std::thread::scope(|s| {
                nodes
                    .iter()
                    .map(|&l| {
                        let (engine, base, load) = (&engine, &base, &load);
                        s.spawn(move || {
                            let (h, b) = engine.headroom_at(base, l, load);
                            (h, format!("{b:?}"))
                        })
                        .join()
                        .expect("the evaluation")
                    })
                    .collect()
            });
            for (i, &l) in nodes.iter().enumerate() {
                assert_eq!(
                    (&forward[i], &forward[i]),
                    (&backward[i], &alone[i]),
                    "feeder {f}, local node {l}: in order, in reverse, alone"
                );
            }
            judged += nodes.len();
        }
    }
    assert!(judged > 300, "only {judged} nodes judged");
}
