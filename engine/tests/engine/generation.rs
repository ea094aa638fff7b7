//! Generation: headroom for export (`shared/spec/planning.md` §1) against
//! bisection over full power flows at every exporting step, and each check
//! binding alone on a small grid.

use headroom_engine::base::FeederBase;
use headroom_engine::checks::Observed;
use headroom_engine::evaluate::AddedGeneration;
use headroom_engine::powerflow::{Solution, SweepSettings, sweep};
use headroom_engine::{Application, CheckName, Engine, EngineConfig, Limits};
use headroom_geodata::{GenerationSource, GeneratorStatus};
use serde_json::json;

use crate::shortcut::fixture_engine;
use crate::support::{engine_with, feeder, flat_readings};

/// Each check's value over its limit, written from the spec: segment and head
/// current either way, highest and lowest voltage, the substation
/// transformers forward and, while power flows back, in reverse.
fn ratios(o: &Observed, limits: &Limits) -> [f64; 6] {
    if !o.converged {
        return [f64::INFINITY; 6];
    }
    let (forward, reverse) = if o.substation_export {
        (0.0, o.substation_pct / limits.reverse_pct)
    } else {
        (o.substation_pct / limits.substation_transformer_pct, 0.0)
    };
    [
        o.segment_pct / limits.thermal_pct,
        o.head_pct / limits.thermal_pct,
        o.v_max_pu / limits.v_max_pu,
        limits.v_min_pu / o.v_min_pu,
        forward,
        reverse,
    ]
}

const NAMES: [CheckName; 6] = [
    CheckName::SegmentThermal,
    CheckName::HeadThermal,
    CheckName::Voltage,
    CheckName::Voltage,
    CheckName::SubstationTransformer,
    CheckName::ReversePower,
];

/// A flow of step `k` with `export_kw` injected at `local`, from a flat start.
fn flow(
    engine: &Engine,
    base: &FeederBase,
    k: usize,
    local: u32,
    export_kw: f64,
    absorbed: f64,
) -> Observed {
    let n = base.electrical.len();
    let (mut p, mut q) = (vec![0.0; n], vec![0.0; n]);
    engine.base_node_loads(base, k, &mut p, &mut q);
    p[local as usize] -= export_kw;
    q[local as usize] += export_kw * absorbed;
    let mut solution = Solution::default();
    sweep(
        &base.electrical,
        &p,
        &q,
        base.loads.source_kv[k],
        SweepSettings::default(),
        &mut solution,
    );
    let added = solution.head_power_kva() - base.solutions[k].head_power_kva();
    engine.observe(base, k, &solution, added)
}

/// The largest whole kW every exporting step takes, by bisection at each
/// step over full flows; with the check that 1 kW more breaks at the step
/// that binds.
fn by_bisection(
    engine: &Engine,
    base: &FeederBase,
    local: u32,
    absorbed: f64,
    profile: Option<&[f64]>,
) -> (f64, CheckName) {
    let limits = &engine.config.limits;
    let mut best = (f64::INFINITY, CheckName::SegmentThermal);
    for k in 0..base.loads.step_count() {
        let factor = profile.map_or(1.0, |p| p[engine.quarter_of_day(base.loads.steps[k])]);
        if factor <= 0.0 {
            continue;
        }
        let allowed = ratios(&base.observed[k], limits).map(|r| r.max(1.0));
        let over = |kw: f64| {
            let r = ratios(&flow(engine, base, k, local, kw * factor, absorbed), limits);
            (0..6).find(|&c| r[c] > allowed[c])
        };
        let (mut lo, mut hi) = (0.0f64, 65_536.0f64);
        if over(hi).is_none() {
            continue;
        }
        while hi - lo > 1.0 {
            let mid = ((lo + hi) / 2.0).floor();
            if over(mid).is_some() {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        if lo < best.0 {
            best = (lo, NAMES[over(lo + 1.0).expect("broken above the root")]);
        }
    }
    if !best.0.is_finite() {
        return best;
    }
    // What 1 kW more brings to its limit at any step (within the spec's tie
    // tolerance): the first of those in the spec's order.
    let mut at_limit = [false; 6];
    for k in 0..base.loads.step_count() {
        let factor = profile.map_or(1.0, |p| p[engine.quarter_of_day(base.loads.steps[k])]);
        if factor <= 0.0 {
            continue;
        }
        let allowed = ratios(&base.observed[k], limits).map(|r| r.max(1.0));
        let r = ratios(
            &flow(engine, base, k, local, (best.0 + 1.0) * factor, absorbed),
            limits,
        );
        for c in 0..6 {
            at_limit[c] |= r[c] / allowed[c] >= 1.0 - headroom_engine::checks::TIE_TOLERANCE;
        }
    }
    match at_limit.iter().position(|b| *b) {
        Some(c) => (best.0, NAMES[c]),
        None => best,
    }
}

#[test]
fn export_headroom_is_that_of_bisection_over_every_exporting_step_on_the_fixture() {
    // PV at unity power factor (its default profile), and flat wind absorbing
    // reactive power at 0.95: at every fourth node of every feeder, the
    // screened search finds what bisection at each step finds, to the kW.
    let (engine, _) = fixture_engine(EngineConfig::default());
    let pv = headroom_geodata::pv_shape();
    let tan_95 = (1.0f64 / (0.95 * 0.95) - 1.0).sqrt();
    let mut compared = 0;
    let mut bindings = std::collections::BTreeSet::new();
    for (absorbed, profile) in [(0.0, Some(pv.as_slice())), (tan_95, None)] {
        let generation = AddedGeneration {
            absorbed_kvar_per_kw: absorbed,
            profile,
        };
        for f in 0..engine.network.feeders.len() {
            let base = engine.generation_base(f);
            for local in (1..base.electrical.len() as u32).step_by(4) {
                let found = engine.evaluate_export(&base, local, 100.0, &generation);
                let (kw, binding) = by_bisection(&engine, &base, local, absorbed, profile);
                assert!(
                    (found.point.headroom_kw - kw).abs() <= 1.0,
                    "feeder {f}, node {local}: {} kW ({:?}) against {kw} kW ({binding:?}) by bisection",
                    found.point.headroom_kw,
                    found.point.binding
                );
                assert_eq!(found.point.binding, binding, "feeder {f}, node {local}");
                bindings.insert(format!("{binding:?}"));
                compared += 1;
            }
        }
    }
    assert!(compared >= 50, "only {compared} points compared");
    assert!(bindings.len() >= 2, "{bindings:?}");
}

fn generation(id: &str, node_east_m: f64, kw: f64, extra: serde_json::Value) -> Application {
    let at = crate::support::at(node_east_m, 0.0);
    let mut app = json!({
        "id": id, "kind": "generation", "lon": at.lon, "lat": at.lat,
        "demand_kw": kw, "voltage_kv": 10.0, "max_distance_m": 30.0
    });
    if let (Some(app), Some(extra)) = (app.as_object_mut(), extra.as_object()) {
        app.extend(extra.clone());
    }
    Application::from_json(&app).expect("a valid application")
}

fn only_candidate(engine: &Engine, app: &Application) -> headroom_engine::Candidate {
    let result = engine.rank(app);
    assert_eq!(result.candidates.len(), 1, "{:#?}", result.candidates);
    result.candidates.into_iter().next().unwrap()
}

#[test]
fn voltage_rise_binds_at_the_end_of_a_long_lightly_loaded_feeder() {
    // A 20 km overhead tail of thin conductor with 20 kW per transformer: the
    // end node's voltage rises past 1.07 pu while a few dozen amperes flow.
    let mut b = feeder();
    b.with_segment(|s| {
        s.length_m = 20_000.0;
        s.r_ohm_per_km = 0.45;
        s.x_ohm_per_km = 0.38;
        s.rated_a = 400.0;
    });
    let engine = engine_with(&b, &flat_readings(20.0, 5.0, 8), &[]);
    let wind = json!({"source": "wind"});
    let c = only_candidate(&engine, &generation("G", 300.0, 100.0, wind.clone()));
    assert_eq!(c.binding_constraint, CheckName::Voltage, "{c:#?}");
    assert!((100.0..1_000.0).contains(&c.headroom_kw), "{c:#?}");
    // At the headroom the highest voltage is at the limit.
    let at = only_candidate(
        &engine,
        &generation("G", 300.0, c.headroom_kw, wind.clone()),
    );
    assert!((at.after.max_voltage_pu - 1.07).abs() < 0.0005, "{at:#?}");
    assert!(at.feasible);
    let past = only_candidate(&engine, &generation("G", 300.0, c.headroom_kw + 50.0, wind));
    assert!(
        !past.feasible && past.after.max_voltage_pu > 1.07,
        "{past:#?}"
    );
    let voltage = past
        .checks
        .iter()
        .find(|c| c.name == CheckName::Voltage)
        .unwrap();
    assert!(
        !voltage.ok && voltage.element.as_deref() == Some("N3"),
        "{voltage:?}"
    );
    // Absorbing reactive power holds the rise down: more fits.
    let absorbing = only_candidate(
        &engine,
        &generation(
            "G",
            300.0,
            100.0,
            json!({"source": "wind", "power_factor": 0.9}),
        ),
    );
    assert!(
        absorbing.headroom_kw > c.headroom_kw * 1.3,
        "{absorbing:#?}"
    );
}

/// A 2,500 kVA substation transformer measured at 1,500 + j400 kVA forward,
/// one short feeder to N1.
fn small_substation(extra: impl FnOnce(&mut headroom_geodata::NetworkBuilder)) -> Engine {
    use headroom_geodata::{NetworkBuilder, NodeType, Quantity};
    let at = crate::support::at;
    let mut b = NetworkBuilder::new();
    b.substation("S", at(0.0, 0.0))
        .node("B", NodeType::Busbar, at(0.0, 0.0))
        .substation_transformer("TR", "S", "B", 2_500.0)
        .node("N1", NodeType::Pole, at(100.0, 0.0))
        .segment("L1", "B", "N1", 0.1, 0.1, 600.0, 1_000.0)
        .feeder("F", "B", "N1", Some(800.0))
        .transformer("T1", "N1", 400.0);
    extra(&mut b);
    let series = vec![
        ("F", Quantity::UKv, vec![10.5; 8]),
        ("T1", Quantity::PKw, vec![200.0; 8]),
        ("T1", Quantity::QKvar, vec![50.0; 8]),
        ("TR", Quantity::PKw, vec![1_500.0; 8]),
        ("TR", Quantity::QKvar, vec![400.0; 8]),
    ];
    engine_with(&b, &series, &[])
}

#[test]
fn reverse_power_binds_on_a_small_substation_transformer() {
    // Forward 1,500 kW: the export first cancels it, then flows back until
    // |S| = 80 % of 2,500 kVA: (g - 1,500)^2 + 400^2 = 2,000^2, g ~ 3,459 kW
    // (a little more: the feeder's losses take some).
    let engine = small_substation(|_| {});
    let c = only_candidate(
        &engine,
        &generation("G", 100.0, 100.0, json!({"source": "wind"})),
    );
    assert_eq!(c.binding_constraint, CheckName::ReversePower, "{c:#?}");
    assert!((3_440.0..3_500.0).contains(&c.headroom_kw), "{c:#?}");
    let reverse = c
        .checks
        .iter()
        .find(|c| c.name == CheckName::ReversePower)
        .unwrap();
    assert_eq!(reverse.limit, 80.0);
    assert_eq!(reverse.element.as_deref(), Some("TR"));
    // A load at the same point is held to the forward limit only.
    let load = Application::from_json(&json!({
        "id": "L", "lon": c.lon, "lat": c.lat, "demand_kw": 100.0,
        "voltage_kv": 10.0, "max_distance_m": 30.0
    }))
    .unwrap();
    assert_eq!(
        only_candidate(&engine, &load).binding_constraint,
        CheckName::SubstationTransformer
    );
}

#[test]
fn queued_generators_and_generation_reservations_take_export_room_and_load_reservations_give_none()
{
    let wind = json!({"source": "wind"});
    let alone = only_candidate(
        &small_substation(|_| {}),
        &generation("G", 100.0, 100.0, wind.clone()),
    )
    .headroom_kw;
    // A queued 500 kW wind farm on T1's low-voltage side takes about 500 kW.
    let queued = small_substation(|b| {
        b.generator(
            "Q1",
            "T1",
            500.0,
            GenerationSource::Wind,
            GeneratorStatus::Queued,
        );
    });
    let with_queued =
        only_candidate(&queued, &generation("G", 100.0, 100.0, wind.clone())).headroom_kw;
    assert!(
        (alone - with_queued - 500.0).abs() < 10.0,
        "{alone} against {with_queued}"
    );
    // A connected one is in the readings already: nothing more is taken.
    let connected = small_substation(|b| {
        b.generator(
            "C1",
            "N1",
            500.0,
            GenerationSource::Wind,
            GeneratorStatus::Connected,
        );
    });
    let with_connected =
        only_candidate(&connected, &generation("G", 100.0, 100.0, wind.clone())).headroom_kw;
    assert_eq!(with_connected, alone);
    // Reservations: a generation scheme's takes its export; a load's gives
    // no room (it is not built yet), and the load check ignores the generator.
    let engine = small_substation(|_| {});
    let node = engine.network.node_ix("N1").unwrap();
    let reserved = |kind, kw| headroom_engine::ReservedLoad {
        application: format!("R-{kw}"),
        kind,
        node,
        demand_kw: kw,
        power_factor: 1.0,
        profile: None,
        transformer: None,
    };
    let with_generation = engine.with_reservations(vec![reserved(
        headroom_engine::ApplicationKind::Generation,
        700.0,
    )]);
    let h = only_candidate(
        &with_generation,
        &generation("G", 100.0, 100.0, wind.clone()),
    )
    .headroom_kw;
    assert!((alone - h - 700.0).abs() < 10.0, "{alone} against {h}");
    let with_load = engine.with_reservations(vec![reserved(
        headroom_engine::ApplicationKind::Load,
        700.0,
    )]);
    assert_eq!(
        only_candidate(&with_load, &generation("G", 100.0, 100.0, wind)).headroom_kw,
        alone
    );
    let load = Application::from_json(&json!({
        "id": "L", "lon": crate::support::at(100.0, 0.0).lon, "lat": crate::support::at(100.0, 0.0).lat,
        "demand_kw": 100.0, "voltage_kv": 10.0, "max_distance_m": 30.0
    }))
    .unwrap();
    assert_eq!(
        only_candidate(&with_generation, &load).headroom_kw,
        only_candidate(&engine, &load).headroom_kw
    );
}

#[test]
fn head_and_segment_thermal_bind_in_reverse() {
    // Loads of 100 kW at each node; the head breaker held to 50 A: the export
    // at N3 reverses the head current past 50 A near 300 + 909 kW.
    let mut b = feeder();
    b.with_feeder(|f| f.rated_a = Some(50.0));
    let engine = engine_with(&b, &flat_readings(100.0, 0.0, 8), &[]);
    let c = only_candidate(
        &engine,
        &generation("G", 300.0, 100.0, json!({"source": "wind"})),
    );
    assert_eq!(c.binding_constraint, CheckName::HeadThermal, "{c:#?}");
    assert!((1_150.0..1_260.0).contains(&c.headroom_kw), "{c:#?}");
    // L3 (N2 to N3) held to 30 A: the export less N3's own load flows back in it.
    let mut b = feeder();
    b.with_segment(|s| s.rated_a = 30.0);
    let engine = engine_with(&b, &flat_readings(100.0, 0.0, 8), &[]);
    let c = only_candidate(
        &engine,
        &generation("G", 300.0, 100.0, json!({"source": "wind"})),
    );
    assert_eq!(c.binding_constraint, CheckName::SegmentThermal, "{c:#?}");
    assert!((600.0..700.0).contains(&c.headroom_kw), "{c:#?}");
}

#[test]
fn pv_exports_only_by_day_and_is_judged_by_day() {
    // Readings at night only (00:00 to 02:00): a PV generator exports nothing
    // then, so nothing binds it; wind, flat, is bound as by day.
    let engine = small_substation(|_| {});
    let pv = only_candidate(&engine, &generation("G", 100.0, 100.0, json!({})));
    assert_eq!(
        pv.headroom_kw,
        headroom_engine::evaluate::UNBOUNDED_KW,
        "{pv:#?}"
    );
    // With the profile given, midnight counts.
    let mut profile = vec![0.0; 96];
    profile[0] = 1.0;
    let night = only_candidate(
        &engine,
        &generation("G", 100.0, 100.0, json!({"profile": profile})),
    );
    assert_eq!(
        night.binding_constraint,
        CheckName::ReversePower,
        "{night:#?}"
    );
}

/// A day of readings (every quarter-hour, so that PV exports) with each
/// transformer at `kw`.
fn day(kw: f64) -> crate::support::Series<'static> {
    flat_readings(kw, 0.0, 96)
}

fn rows(engine: &Engine, level: headroom_engine::Level) -> Vec<headroom_engine::CapacityRow> {
    engine.capacity(level, engine.readings(), 0)
}

fn grades(rows: &[headroom_engine::CapacityRow]) -> Vec<(String, headroom_engine::Grade)> {
    rows.iter().map(|r| (r.id.clone(), r.grade)).collect()
}

#[test]
fn open_capacity_is_graded_top_down() {
    use headroom_engine::{Grade, Level};
    // As built: room everywhere, nothing queued: green, and C2 = C1.
    let engine = engine_with(&feeder(), &day(100.0), &[]);
    for level in [Level::Substation, Level::Feeder, Level::Transformer] {
        for r in rows(&engine, level) {
            assert_eq!(r.grade, Grade::Green, "{r:?}");
            assert!(r.generation_headroom_kw > 0.0);
            assert_eq!(r.generation_open_kw, r.generation_headroom_kw);
        }
    }
    let feeder_c1 = rows(&engine, Level::Feeder)[0].generation_headroom_kw;

    // A queued wind farm on N2 larger than the feeder's room: the feeder is
    // yellow (room today, all promised); T2's own figure ignores a generator
    // not behind it, and the substation, far larger, stays green.
    let mut b = feeder();
    b.generator(
        "Q",
        "N2",
        feeder_c1 + 100.0,
        GenerationSource::Wind,
        GeneratorStatus::Queued,
    );
    let queued = engine_with(&b, &day(100.0), &[]);
    let f = &rows(&queued, Level::Feeder)[0];
    assert_eq!(f.generation_headroom_kw, feeder_c1, "C1 ignores the queue");
    assert_eq!(f.generation_open_kw, -100.0);
    assert_eq!(f.grade, Grade::Yellow);
    assert_eq!(rows(&queued, Level::Substation)[0].grade, Grade::Green);

    // The head breaker held to 10 A while the feeder already exports ~300 kW
    // (16 A) at every step: any more export is worse, the feeder is red, and
    // so is every transformer under it, whatever its own room; the substation
    // is not.
    let mut b = feeder();
    b.with_feeder(|f| f.rated_a = Some(10.0));
    let red = engine_with(&b, &day(-100.0), &[]);
    let f = &rows(&red, Level::Feeder)[0];
    assert_eq!(
        (f.generation_headroom_kw, f.grade),
        (0.0, Grade::Red),
        "{f:?}"
    );
    let transformers = rows(&red, Level::Transformer);
    assert_eq!(transformers.len(), 3);
    assert!(
        transformers.iter().all(|t| t.grade == Grade::Red),
        "{:?}",
        grades(&transformers)
    );
    assert_eq!(rows(&red, Level::Substation)[0].grade, Grade::Green);

    // A substation already sending 80 % of its rating back at noon: red, and
    // everything under it red.
    let (mut small, _) = {
        let mut b = feeder();
        b.with_feeder(|f| f.rated_a = Some(400.0));
        (b, ())
    };
    small.substation_transformer("TR2", "S", "B", 1.0);
    let series = {
        let mut s = day(-100.0);
        s.push(("TR", headroom_geodata::Quantity::PKw, vec![-33_000.0; 96]));
        s.push(("TR2", headroom_geodata::Quantity::PKw, vec![0.0; 96]));
        s
    };
    let exporting = engine_with(&small, &series, &[]);
    let s = &rows(&exporting, Level::Substation)[0];
    assert_eq!(
        (s.generation_headroom_kw, s.grade),
        (0.0, Grade::Red),
        "{s:?}"
    );
    for level in [Level::Feeder, Level::Transformer] {
        let under = rows(&exporting, level);
        assert!(
            under.iter().all(|r| r.grade == Grade::Red),
            "{:?}",
            grades(&under)
        );
    }
}

#[test]
fn a_generator_queued_on_another_feeder_of_the_busbar_takes_the_substations_reverse_room() {
    // Reverse power binds at N1 (the small substation); a wind farm queued on
    // a second feeder of the same busbar takes about its size from N1's room,
    // though N1's feeder carries none of it.
    let wind = json!({"source": "wind"});
    let alone = only_candidate(
        &small_substation(|_| {}),
        &generation("G", 100.0, 100.0, wind.clone()),
    );
    assert_eq!(
        alone.binding_constraint,
        CheckName::ReversePower,
        "{alone:#?}"
    );
    let engine = small_substation(|b| {
        b.node(
            "M1",
            headroom_geodata::NodeType::Pole,
            crate::support::at(0.0, 100.0),
        )
        .segment("L9", "B", "M1", 0.1, 0.1, 600.0, 1_000.0)
        .feeder("F2", "B", "M1", Some(800.0))
        .generator(
            "Q",
            "M1",
            600.0,
            GenerationSource::Wind,
            GeneratorStatus::Queued,
        );
    });
    let c = only_candidate(&engine, &generation("G", 100.0, 100.0, wind));
    assert_eq!(c.binding_constraint, CheckName::ReversePower, "{c:#?}");
    assert!(
        (alone.headroom_kw - c.headroom_kw - 600.0).abs() < 15.0,
        "{} kW alone, {} kW with the farm queued on F2",
        alone.headroom_kw,
        c.headroom_kw
    );
}
