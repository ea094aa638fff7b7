//! Supply schemes: one circuit for normal customers, two for important (different
//! busbars and feeders) and critical ones (different substations).

use headroom_geodata::{NetworkBuilder, NodeType, Quantity};
use serde_json::json;

use crate::support::*;

/// Two substations 600 m apart. S1 has two busbar sections (open coupler), each
/// with a feeder ending 40 m north and south of (300, 0); S2 has one feeder ending
/// at (450, 0).
fn three_feeders() -> NetworkBuilder {
    let mut b = NetworkBuilder::new();
    b.substation("S1", at(0.0, 0.0))
        .node("B1", NodeType::Busbar, at(0.0, 0.0))
        .node("B2", NodeType::Busbar, at(0.0, 10.0))
        .substation_transformer("TR1", "S1", "B1", 40_000.0)
        .substation_transformer("TR2", "S1", "B2", 40_000.0)
        .switch("BC", "B1", "B2", true)
        .substation("S2", at(600.0, 0.0))
        .node("B3", NodeType::Busbar, at(600.0, 0.0))
        .substation_transformer("TR3", "S2", "B3", 40_000.0);
    for (feeder, busbar, east, north) in [
        ("F1", "B1", 300.0, 40.0),
        ("F2", "B2", 300.0, -40.0),
        ("F3", "B3", 450.0, 0.0),
    ] {
        let n = format!("{feeder}N");
        b.node(&n, NodeType::Pole, at(east, north))
            .segment(&format!("{feeder}L"), busbar, &n, 0.1, 0.1, 300.0, 500.0)
            .feeder(feeder, busbar, &n, Some(400.0))
            .transformer(&format!("{feeder}T"), &n, 400.0);
    }
    b
}

fn readings<'a>() -> Series<'a> {
    let mut s = Vec::new();
    for f in ["F1", "F2", "F3"] {
        s.push((f, Quantity::UKv, vec![10.5; 4]));
    }
    for t in ["F1T", "F2T", "F3T"] {
        s.push((t, Quantity::PKw, vec![150.0; 4]));
        s.push((t, Quantity::QKvar, vec![40.0; 4]));
    }
    s
}

fn feeders_of(result: &headroom_engine::RankingResult, scheme: usize) -> Vec<String> {
    result.schemes[scheme]
        .supplies
        .iter()
        .map(|node| candidate(result, node).feeder.clone().unwrap_or_default())
        .collect()
}

#[test]
fn a_normal_customer_gets_single_circuits_best_first() {
    let engine = engine(&three_feeders(), &readings());
    let result = engine.rank(&application("N", at(440.0, 0.0), 500.0, json!({})));
    assert!(!result.schemes.is_empty());
    assert!(result.schemes.iter().all(|s| s.supplies.len() == 1));
    assert!(result.schemes.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(result.schemes[0].rank, 1);
    // The nearest feasible pole scores best on distance.
    assert_eq!(result.schemes[0].supplies, ["F3N"]);
}

#[test]
fn an_important_customer_gets_two_circuits_from_different_busbars() {
    let engine = engine(&three_feeders(), &readings());
    let result = engine.rank(&application(
        "I",
        at(310.0, 0.0),
        500.0,
        json!({"importance": "important"}),
    ));
    assert!(!result.schemes.is_empty());
    for (i, scheme) in result.schemes.iter().enumerate() {
        assert_eq!(scheme.supplies.len(), 2);
        let feeders = feeders_of(&result, i);
        assert_ne!(feeders[0], feeders[1]);
    }
    // F1 and F2 share a substation but not a busbar section: a valid pair.
    let pairs: Vec<Vec<String>> = (0..result.schemes.len())
        .map(|i| {
            let mut f = feeders_of(&result, i);
            f.sort();
            f
        })
        .collect();
    assert!(
        pairs.contains(&vec!["F1".to_owned(), "F2".to_owned()]),
        "{pairs:?}"
    );
}

#[test]
fn a_critical_customer_gets_two_independent_substations() {
    let engine = engine(&three_feeders(), &readings());
    let result = engine.rank(&application(
        "C",
        at(310.0, 0.0),
        500.0,
        json!({"importance": "critical"}),
    ));
    assert!(!result.schemes.is_empty());
    for scheme in &result.schemes {
        let substations: Vec<_> = scheme
            .supplies
            .iter()
            .map(|n| candidate(&result, n).substation.clone())
            .collect();
        assert_ne!(substations[0], substations[1], "{scheme:?}");
    }
    assert!(
        result.schemes[0]
            .summary
            .contains("two independent sources")
    );
}

#[test]
fn without_a_second_source_the_result_says_why_and_what_to_reinforce() {
    // Only S1's feeders are in reach.
    let engine = engine(&three_feeders(), &readings());
    let result = engine.rank(&application(
        "C",
        at(300.0, 0.0),
        500.0,
        json!({"importance": "critical", "max_distance_m": 100}),
    ));
    assert!(result.schemes.is_empty());
    let why = result.explanation.as_ref().expect("an explanation");
    assert!(
        why.reason.contains("different substations"),
        "{}",
        why.reason
    );

    // And a request beyond what their segments carry.
    let result = engine.rank(&application(
        "N",
        at(300.0, 40.0),
        9_000.0,
        json!({"max_distance_m": 100}),
    ));
    assert!(result.schemes.is_empty());
    let why = result.explanation.as_ref().expect("an explanation");
    assert_eq!(why.reinforce_feeder.as_deref(), Some("F1"));
    assert_eq!(why.nearest[0].node, "F1N");
}

#[test]
fn a_schemes_score_is_the_weighted_mean_of_its_parts_and_names_its_line() {
    let engine = engine(&three_feeders(), &readings());
    let result = engine.rank(&application("N", at(440.0, 0.0), 500.0, json!({})));
    let w = engine.config.weights;
    let total = w.distance + w.cost + w.loading + w.voltage + w.headroom;
    for scheme in &result.schemes {
        let p = scheme.score_parts;
        let mean = (w.distance * p.distance
            + w.cost * p.cost
            + w.loading * p.loading
            + w.voltage * p.voltage
            + w.headroom * p.headroom)
            / total;
        assert!((scheme.score - mean).abs() <= 1e-3, "{scheme:?}");
        assert_eq!(scheme.service_lines.len(), scheme.supplies.len());
        let line = &scheme.service_lines[0];
        assert_eq!(line.supply, scheme.supplies[0]);
        assert!(line.route_estimated);
        let c = candidate(&result, &line.supply);
        assert!((line.route_length_m - c.distance_m * engine.config.route_factor).abs() <= 0.1);
        let conductor = line.conductor.as_ref().expect("500 kW fits a cable");
        assert!(
            scheme.summary.contains(&conductor.name),
            "{}",
            scheme.summary
        );
        assert_eq!(scheme.cost, line.cost);
    }
    // The cheapest scheme's cost part is 1.
    assert!(result.schemes.iter().any(|s| s.score_parts.cost == 1.0));
}

#[test]
fn a_long_line_where_the_thinnest_cable_breaks_voltage_is_built_thicker() {
    // F3N is 12 km from the customer: the thinnest cable of the catalogue
    // carries 2 MW but drops the terminal below 0.93 pu over that route.
    let engine = engine(&three_feeders(), &readings());
    let result = engine.rank(&application(
        "L",
        at(12_450.0, 0.0),
        2_000.0,
        json!({"max_distance_m": 13_000}),
    ));
    let scheme = result
        .schemes
        .iter()
        .find(|s| s.supplies == ["F3N"])
        .expect("a scheme at F3N");
    let line = &scheme.service_lines[0];
    let chosen = line.conductor.as_ref().expect("a conductor fits");
    let thinnest = engine
        .config
        .conductors
        .iter()
        .min_by(|a, b| a.rated_a.total_cmp(&b.rated_a))
        .unwrap();
    assert!(line.peak_current_a < thinnest.rated_a, "{line:?}");
    assert_ne!(chosen.name, thinnest.name, "{line:?}");
    assert!(chosen.terminal_min_voltage_pu >= 0.93, "{line:?}");

    // A demand beyond every conductor of the catalogue: the scheme says so.
    let mut config = engine.config.clone();
    config.conductors.retain(|c| c.rated_a < 250.0);
    let network = three_feeders().build().unwrap();
    let rows = rows(&network, &readings());
    let small = headroom_engine::Engine::new(
        network,
        std::sync::Arc::new(headroom_engine::InMemoryReadings::from_rows(&rows)),
        config,
        Vec::new(),
    );
    let result = small.rank(&application("H", at(440.0, 0.0), 4_000.0, json!({})));
    let scheme = result.schemes.first().expect("a feasible point");
    assert!(scheme.cost.is_none(), "{scheme:?}");
    let problem = scheme.service_lines[0].problem.as_deref().unwrap();
    assert!(problem.contains("carries"), "{problem}");
    assert_eq!(scheme.score_parts.cost, 0.0);
}

#[test]
fn the_fixtures_first_three_schemes_take_three_routes() {
    let (engine, apps) = crate::shortcut::fixture_engine(headroom_engine::EngineConfig::default());
    let mut checked = 0;
    for app in &apps {
        let result = engine.rank(app);
        let mut feasible_feeders: Vec<&str> = result
            .candidates
            .iter()
            .filter(|c| c.feasible)
            .filter_map(|c| c.feeder.as_deref())
            .collect();
        feasible_feeders.sort_unstable();
        feasible_feeders.dedup();
        if feasible_feeders.len() < 3 {
            continue;
        }
        // A scheme's route: its supplies' feeders, or the busbar of a new bay.
        let route = |node: &String| {
            let c = candidate(&result, node);
            c.feeder.clone().unwrap_or_else(|| format!("bay at {node}"))
        };
        let routes: Vec<Vec<String>> = result.schemes[..3]
            .iter()
            .map(|s| s.supplies.iter().map(route).collect())
            .collect();
        assert!(
            routes[0] != routes[1] && routes[1] != routes[2] && routes[0] != routes[2],
            "{}: {routes:?}",
            app.id
        );
        if app.importance == headroom_engine::Importance::Normal {
            let mut flat: Vec<&String> = routes.iter().flatten().collect();
            flat.sort();
            flat.dedup();
            assert_eq!(flat.len(), 3, "{}: {routes:?}", app.id);
        }
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} applications had three feasible feeders"
    );
}

#[test]
fn a_load_held_back_by_a_voltage_too_high_is_not_told_to_reinforce() {
    // The busbars run at 10.5 kV: with 1.04 pu the highest allowed, every node
    // breaks it without the new load, and a thicker conductor would not help.
    let network = three_feeders().build().expect("valid test grid");
    let readings = std::sync::Arc::new(headroom_readings::InMemoryReadings::from_rows(&rows(
        &network,
        &readings(),
    )));
    let mut config = headroom_engine::EngineConfig::default();
    config.limits.v_max_pu = 1.04;
    let engine = headroom_engine::Engine::new(network, readings, config, Vec::new());
    let result = engine.rank(&application(
        "N",
        at(300.0, 40.0),
        500.0,
        json!({"max_distance_m": 100}),
    ));
    assert!(result.schemes.is_empty());
    let why = result.explanation.as_ref().expect("an explanation");
    assert_eq!(
        why.nearest[0].binding_constraint,
        headroom_engine::CheckName::Voltage,
        "{why:?}"
    );
    assert_eq!(why.reinforce_feeder, None, "{why:?}");
}
