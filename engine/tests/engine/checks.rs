//! Each check firing alone: a grid where only that limit is tight.

use headroom_geodata::Quantity;
use serde_json::json;

use crate::support::*;

#[test]
fn segment_thermal_binds_on_a_weak_segment() {
    let mut grid = feeder();
    grid.with_segment(|s| s.rated_a = 60.0); // L3, beyond N2
    let engine = engine(&grid, &flat_readings(100.0, 30.0, 8));
    let h = assert_headroom_matches_brute_force(&engine, "N3", at(300.0, 0.0), "segment_thermal");
    // About 60 A at 10.5 kV, less what T3 draws: ~0.95 * 1.09 MVA - 100 kW.
    assert!((900.0..1_050.0).contains(&h), "{h}");
    let result = engine.rank(&application("A", at(300.0, 0.0), h + 50.0, json!({})));
    let c = candidate(&result, "N3");
    let check = c
        .checks
        .iter()
        .find(|c| c.name.as_str() == "segment_thermal")
        .unwrap();
    assert!(
        !check.ok && check.element.as_deref() == Some("L3"),
        "{check:?}"
    );
    // Upstream of the weak segment there is far more room.
    let (_, upstream, _) = probe(&engine, "N2", at(200.0, 0.0), 1.0, json!({}));
    assert!(upstream > 3.0 * h);
}

#[test]
fn head_thermal_binds_on_a_small_head_breaker() {
    let mut grid = feeder();
    grid.with_feeder(|f| f.rated_a = Some(80.0));
    let engine = engine(&grid, &flat_readings(100.0, 30.0, 8));
    assert_headroom_matches_brute_force(&engine, "N2", at(200.0, 0.0), "head_thermal");
}

#[test]
fn voltage_binds_at_the_end_of_a_long_weak_line() {
    let mut grid = feeder();
    // A 25 km overhead tail of thin conductor: the voltage falls before it heats.
    grid.with_segment(|s| {
        s.length_m = 25_000.0;
        s.r_ohm_per_km = 0.45;
        s.x_ohm_per_km = 0.38;
        s.rated_a = 400.0;
    });
    let engine = engine(&grid, &flat_readings(100.0, 30.0, 8));
    assert_headroom_matches_brute_force(&engine, "N3", at(300.0, 0.0), "voltage");
}

/// A 2,500 kVA transformer (one spare bay on its busbar) whose measured ~1,550 kVA
/// includes loads beyond its one short feeder.
fn small_substation() -> (headroom_geodata::NetworkBuilder, Series<'static>) {
    let mut b = headroom_geodata::NetworkBuilder::new();
    b.substation("S", at(0.0, 0.0))
        .node("B", headroom_geodata::NodeType::Busbar, at(0.0, 0.0))
        .with_node(|n| n.spare_bays = 1)
        .substation_transformer("TR", "S", "B", 2_500.0)
        .node(
            "N1",
            headroom_geodata::NodeType::RingMainUnit,
            at(100.0, 0.0),
        )
        .with_node(|n| n.spare_bays = 1)
        .segment("L1", "B", "N1", 0.1, 0.1, 300.0, 1_000.0)
        .feeder("F", "B", "N1", Some(400.0))
        .transformer("T1", "N1", 400.0);
    let series = vec![
        ("F", Quantity::UKv, vec![10.5; 8]),
        ("T1", Quantity::PKw, vec![200.0; 8]),
        ("T1", Quantity::QKvar, vec![50.0; 8]),
        ("TR", Quantity::PKw, vec![1_500.0; 8]),
        ("TR", Quantity::QKvar, vec![400.0; 8]),
    ];
    (b, series)
}

#[test]
fn substation_transformer_binds_when_the_main_transformer_is_small() {
    let (grid, series) = small_substation();
    let engine = engine(&grid, &series);
    let h = assert_headroom_matches_brute_force(
        &engine,
        "N1",
        at(100.0, 0.0),
        "substation_transformer",
    );
    // 2,500 kVA less ~1,550 kVA measured: under a megawatt.
    assert!((800.0..1_000.0).contains(&h), "{h}");
}

#[test]
fn the_distribution_transformer_binds_a_low_voltage_request() {
    let engine = engine(&feeder(), &flat_readings(300.0, 90.0, 8));
    let near = at(300.0, 20.0);
    let result = engine.rank(&application(
        "LV",
        near,
        90.0,
        json!({"voltage_kv": 0.4, "max_distance_m": 60}),
    ));
    let c = candidate(&result, "T3");
    assert_eq!(c.node_type, "transformer");
    assert_eq!(c.binding_constraint.as_str(), "transformer");
    // 400 kVA less 313 kVA drawn: about 85 kW at 0.95.
    assert!((75.0..95.0).contains(&c.headroom_kw), "{}", c.headroom_kw);
    assert!(!c.feasible);
    let fits = engine.rank(&application(
        "LV",
        near,
        50.0,
        json!({"voltage_kv": 0.4, "max_distance_m": 60}),
    ));
    assert!(candidate(&fits, "T3").feasible);
    // Without voltage_kv, 90 kW goes to 0.4 kV by default.
    let auto = engine.rank(&application(
        "LV",
        near,
        90.0,
        json!({"voltage_kv": null, "max_distance_m": 60}),
    ));
    assert!(auto.candidates.iter().all(|c| c.node_type == "transformer"));
}

#[test]
fn a_ring_main_unit_without_a_free_bay_is_ruled_out_but_reports_its_headroom() {
    let mut grid = feeder();
    grid.node(
        "N4",
        headroom_geodata::NodeType::RingMainUnit,
        at(400.0, 0.0),
    )
    .segment("L4", "N3", "N4", 0.1, 0.1, 300.0, 1_000.0);
    let engine = engine(&grid, &flat_readings(100.0, 30.0, 8));
    let result = engine.rank(&application("A", at(400.0, 0.0), 500.0, json!({})));
    let c = candidate(&result, "N4");
    assert!(!c.feasible);
    assert_eq!(c.binding_constraint.as_str(), "no_spare_bay");
    assert!(c.headroom_kw > 1_000.0, "{}", c.headroom_kw);
    // A pole takes a tee; the ring-main unit with a bay is fine.
    assert!(candidate(&result, "N3").feasible);
    assert!(candidate(&result, "N1").feasible);
}

#[test]
fn an_out_of_service_node_is_ruled_out() {
    let mut grid = feeder();
    grid.node("N9", headroom_geodata::NodeType::Pole, at(250.0, 10.0))
        .with_node(|n| n.in_service = false);
    let engine = engine(&grid, &flat_readings(100.0, 30.0, 8));
    let result = engine.rank(&application("A", at(250.0, 10.0), 100.0, json!({})));
    let c = candidate(&result, "N9");
    assert!(!c.feasible);
    assert_eq!(c.binding_constraint.as_str(), "out_of_service");
    assert_eq!(result.candidates[0].node, "N9", "nearest first");
    assert_eq!(result.schemes[0].supplies.len(), 1);
    assert_ne!(result.schemes[0].supplies[0], "N9");
}

#[test]
fn capacity_promised_to_the_queue_is_not_promised_again() {
    let grid = feeder();
    let series = flat_readings(100.0, 30.0, 8);
    let free = engine(&grid, &series);
    let (_, free_headroom, _) = probe(&free, "N3", at(300.0, 0.0), 1.0, json!({}));
    let queued = engine_with(&grid, &series, &[("N2", 2_000.0)]);
    let (_, queued_headroom, _) = probe(&queued, "N3", at(300.0, 0.0), 1.0, json!({}));
    // The reservation takes about its own size.
    let taken = free_headroom - queued_headroom;
    assert!(
        (1_900.0..2_100.0).contains(&taken),
        "{free_headroom} -> {queued_headroom}"
    );
    // An application that would fit on the free grid is refused for the queue.
    let demand = queued_headroom + 500.0;
    let result = queued.rank(&application("A", at(300.0, 0.0), demand, json!({})));
    let c = candidate(&result, "N3");
    assert!(!c.feasible);
    assert_eq!(c.binding_constraint.as_str(), "reserved");
    let reserved = c
        .checks
        .iter()
        .find(|c| c.name.as_str() == "reserved")
        .unwrap();
    assert!(!reserved.ok && reserved.value == 2_000.0, "{reserved:?}");
    // One that fits both ways is held by its physical limit as usual.
    let (fits, _, binding) = probe(&queued, "N3", at(300.0, 0.0), 100.0, json!({}));
    assert!(fits && binding == "segment_thermal", "{binding}");
}

#[test]
fn a_limit_broken_without_the_new_load_binds_with_no_headroom() {
    let mut grid = feeder();
    grid.with_segment(|s| s.rated_a = 5.0); // L3 already carries more
    let engine = engine(&grid, &flat_readings(100.0, 30.0, 8));
    let (fits, headroom, binding) = probe(&engine, "N1", at(100.0, 0.0), 10.0, json!({}));
    assert!(!fits);
    assert_eq!(headroom, 0.0);
    assert_eq!(binding, "segment_thermal");
}

#[test]
fn reservations_count_against_the_substation_transformers_too() {
    // 400 kW reserved for a customer at a new bay of the busbar.
    let (grid, series) = small_substation();
    let free = engine(&grid, &series);
    let free_headroom =
        assert_headroom_matches_brute_force(&free, "N1", at(100.0, 0.0), "substation_transformer");
    let queued = engine_with(&grid, &series, &[("B", 400.0)]);
    let queued_headroom = assert_headroom_matches_brute_force(
        &queued,
        "N1",
        at(100.0, 0.0),
        "substation_transformer",
    );
    let taken = free_headroom - queued_headroom;
    assert!(
        (380.0..=420.0).contains(&taken),
        "{free_headroom} -> {queued_headroom}"
    );
}

#[test]
fn an_engine_derived_with_reservations_answers_as_a_fresh_one() {
    let grid = feeder();
    let series = flat_readings(100.0, 30.0, 8);
    let free = engine(&grid, &series);
    let fresh = engine_with(&grid, &series, &[("N2", 2_000.0)]);
    let reservations = fresh.reservations.clone();
    let derived = free.with_reservations(reservations);
    let app = application("A", at(300.0, 0.0), 100.0, json!({}));
    assert_eq!(derived.rank(&app), fresh.rank(&app));
    // Back to none: the free answer again (its bases were kept).
    assert_eq!(
        derived.with_reservations(Vec::new()).rank(&app),
        free.rank(&app)
    );
}

#[test]
fn supplies_of_a_scheme_are_evaluated_as_the_ranking_does() {
    let grid = feeder();
    let series = flat_readings(100.0, 30.0, 8);
    let engine = engine(&grid, &series);
    let app = application("A", at(300.0, 0.0), 100.0, json!({}));
    let ranked = engine.rank(&app);
    let supplies = vec!["N3".to_owned(), "N2".to_owned()];
    let checked = engine.evaluate_supplies(&app, &supplies).unwrap();
    assert_eq!(&checked[0], candidate(&ranked, "N3"));
    assert_eq!(&checked[1], candidate(&ranked, "N2"));
    let loads = engine.reserved_loads(&app, &supplies).unwrap();
    assert_eq!(loads.len(), 2);
    assert!(
        loads
            .iter()
            .all(|l| l.demand_kw == 100.0 && l.application == "A")
    );
    assert_eq!(
        engine.supply_lock_keys(&supplies).unwrap(),
        vec!["substation:S"]
    );
    let unknown = engine
        .evaluate_supplies(&app, &["N3".to_owned(), "NOPE".to_owned()])
        .unwrap_err();
    assert!(unknown.to_string().contains("supplies[1]"), "{unknown}");
    assert!(engine.evaluate_supplies(&app, &["L1".to_owned()]).is_err());
}

#[test]
fn a_reservation_on_a_distribution_transformer_counts_against_its_loading() {
    let grid = feeder();
    let series = flat_readings(100.0, 30.0, 8);
    let engine = engine(&grid, &series);
    let app = application("LV", at(300.0, 0.0), 50.0, json!({"voltage_kv": 0.4}));
    let ranked = engine.rank(&app);
    let first = &ranked.candidates[0];
    assert_eq!(first.node_type, "transformer");
    let supply = vec![first.node.clone()];
    let queued = engine.with_reservations(engine.reserved_loads(&app, &supply).unwrap());
    let again = &queued.evaluate_supplies(&app, &supply).unwrap()[0];
    let taken = first.headroom_kw - again.headroom_kw;
    assert!(
        (45.0..=55.0).contains(&taken),
        "{} -> {}",
        first.headroom_kw,
        again.headroom_kw
    );
}

/// A line of unloaded poles between two loaded nodes, with a weak segment
/// half-way: the engine solves a candidate's flows with the poles folded into
/// single branches and the line split at the candidate. Each pole's headroom
/// still agrees with bisection over plain flows of the whole feeder: above the
/// weak segment, which the load does not pass, and below it, where it binds.
#[test]
fn poles_along_a_folded_line_match_plain_flows_of_the_whole_feeder() {
    use headroom_geodata::NodeType;
    let mut grid = headroom_geodata::NetworkBuilder::new();
    grid.substation("S", at(0.0, 0.0))
        .node("B", NodeType::Busbar, at(0.0, 0.0))
        .with_node(|n| n.spare_bays = 1)
        .substation_transformer("TR", "S", "B", 40_000.0)
        .node("N1", NodeType::RingMainUnit, at(100.0, 0.0))
        .segment("L1", "B", "N1", 0.1, 0.1, 300.0, 1_000.0);
    let poles: Vec<String> = (1..=8).map(|i| format!("P{i}")).collect();
    let mut above = "N1".to_string();
    for (i, pole) in poles
        .iter()
        .chain(std::iter::once(&"N9".to_string()))
        .enumerate()
    {
        // The segment into P4 is the weak one.
        let rated_a = if i == 3 { 90.0 } else { 300.0 };
        grid.node(pole, NodeType::Pole, at(200.0 + 100.0 * i as f64, 0.0))
            .segment(
                &format!("L{}", i + 2),
                &above,
                pole,
                0.3,
                0.35,
                rated_a,
                1_500.0,
            );
        above.clone_from(pole);
    }
    grid.feeder("F", "B", "N1", Some(400.0))
        .transformer("T1", "N1", 400.0)
        .transformer("T9", "N9", 400.0);
    let steps = 8;
    let varying = |base: f64| (0..steps).map(|k| base * (0.7 + 0.05 * k as f64)).collect();
    let series: Series<'_> = vec![
        ("F", Quantity::UKv, vec![10.5; steps]),
        ("T1", Quantity::PKw, varying(150.0)),
        ("T1", Quantity::QKvar, varying(50.0)),
        ("T9", Quantity::PKw, varying(120.0)),
        ("T9", Quantity::QKvar, varying(40.0)),
    ];
    let engine = engine(&grid, &series);
    let mut bindings = Vec::new();
    for (i, pole) in poles.iter().enumerate() {
        let near = at(200.0 + 100.0 * i as f64, 0.0);
        let (_, headroom, binding) = probe(&engine, pole, near, 1.0, json!({}));
        let reference = brute_force_headroom(&engine, pole, 0.95);
        assert!(
            (headroom - reference).abs() <= 1.5,
            "{pole}: engine {headroom} kW, bisection {reference} kW"
        );
        let result = engine.rank(&application("A", near, headroom + 50.0, json!({})));
        let element = candidate(&result, pole)
            .checks
            .iter()
            .find(|c| c.name.as_str() == binding)
            .and_then(|c| c.element.clone());
        bindings.push((binding, element));
        // The figures at a demand are the plain flows' worst over the steps.
        let demand_kw = (0.5 * headroom).round();
        let result = engine.rank(&application("A", near, demand_kw, json!({})));
        let after = &candidate(&result, pole).after;
        let placement = engine
            .topology
            .placement(engine.network.node_ix(pole).unwrap())
            .unwrap();
        let base = engine.feeder(placement.feeder.get());
        let e = &base.electrical;
        let tan = (1.0f64 / (0.95 * 0.95) - 1.0).sqrt();
        let (mut loading, mut v_min) = (0.0f64, f64::INFINITY);
        for k in 0..base.loads.step_count() {
            let flow = plain_flow(&engine, &base, k, placement.local, demand_kw, tan);
            for j in 1..e.len() {
                loading = loading.max(flow.i_a[j].norm() / e.rated_a[j] * 100.0);
                v_min = v_min.min(flow.v_kv[j].norm() / e.nominal_kv[j]);
            }
            loading = loading.max(flow.head_current_a() / e.head_rated_a.unwrap() * 100.0);
        }
        assert!(
            (after.max_loading_pct - loading).abs() < 0.002,
            "{pole}: loading {} after, {loading} by plain flows",
            after.max_loading_pct
        );
        assert!(
            (after.min_voltage_pu - v_min).abs() < 2e-6,
            "{pole}: lowest voltage {} after, {v_min} by plain flows",
            after.min_voltage_pu
        );
    }
    // The weak segment binds the poles below it and none above.
    for (i, binding) in bindings.iter().enumerate() {
        let weak = binding.0 == "segment_thermal" && binding.1.as_deref() == Some("L5");
        assert_eq!(weak, i >= 3, "P{}: {binding:?}", i + 1);
    }
}
