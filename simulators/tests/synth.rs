//! The synthetic city is a plausible distribution grid: valid, radial, tied to its
//! neighbours, with realistic ratings, and loaded so that a realistic tail of feeders
//! runs close to its limit.

use std::collections::HashMap;

use headroom_geodata::readings::read_readings;
use headroom_geodata::*;
use headroom_simulators::synth::{SynthConfig, synthetic_grid, write_synthetic_gridpack};

fn config() -> SynthConfig {
    SynthConfig {
        days: 2,
        ..SynthConfig::city(6, 3)
    }
}

#[test]
fn the_city_is_valid_radial_and_tied() {
    let grid = synthetic_grid(&config()).unwrap();
    let network = &grid.network;
    assert_eq!(network.substations.len(), 6);
    assert_eq!(network.substation_transformers.len(), 12);
    assert_eq!(network.feeders.len(), 90);
    let per_feeder = network.transformers.len() as f64 / 90.0;
    assert!(
        (16.0..=24.0).contains(&per_feeder),
        "{per_feeder} transformers per feeder"
    );
    let nodes_per_feeder = network.nodes.len() as f64 / 90.0;
    assert!(
        (85.0..=120.0).contains(&nodes_per_feeder),
        "{nodes_per_feeder} nodes per feeder"
    );

    let topology = Topology::trace(network);
    assert!(
        topology.warnings.is_empty(),
        "{:?}",
        &topology.warnings[..3.min(topology.warnings.len())]
    );
    // Every feeder ends in a tie to another feeder; most ties join two substations.
    let feeder_ties: Vec<_> = topology
        .ties
        .iter()
        .filter(|t| t.from_feeder.is_some() && t.to_feeder.is_some())
        .collect();
    assert_eq!(feeder_ties.len(), 90);
    for tree in &topology.feeders {
        assert!(
            !tree.ties.is_empty(),
            "feeder {} has no tie",
            network.feeder(tree.feeder).id
        );
    }
    let substation_of = |f: FeederIx| network.node(network.feeder(f).head_node).substation;
    let across = feeder_ties
        .iter()
        .filter(|t| substation_of(t.from_feeder.unwrap()) != substation_of(t.to_feeder.unwrap()))
        .count();
    assert!(
        across * 2 > feeder_ties.len(),
        "{across} of {} ties cross substations",
        feeder_ties.len()
    );

    // Both cable and overhead feeders, spare bays on some ring-main units only.
    let types: HashMap<NodeType, usize> = network.nodes.iter().fold(HashMap::new(), |mut m, n| {
        *m.entry(n.node_type).or_default() += 1;
        m
    });
    assert!(types[&NodeType::Pole] > 0 && types[&NodeType::RingMainUnit] > 0);
    assert!(types[&NodeType::SwitchingStation] > 0 && types[&NodeType::CableBranchBox] > 0);
    let rmus: Vec<_> = network
        .nodes
        .iter()
        .filter(|n| n.node_type == NodeType::RingMainUnit)
        .collect();
    let with_bay = rmus.iter().filter(|n| n.spare_bays > 0).count();
    assert!(
        with_bay > 0 && with_bay < rmus.len() / 2,
        "{with_bay} of {} RMUs",
        rmus.len()
    );

    // Ratings and impedances of real 10 kV conductors; feeders a few km long.
    for s in &network.segments {
        assert!((200.0..=600.0).contains(&s.rated_a), "{}", s.id);
        assert!(s.r_ohm_per_km > 0.05 && s.r_ohm_per_km < 0.5, "{}", s.id);
        assert!(s.x_ohm_per_km > 0.06 && s.x_ohm_per_km < 0.4, "{}", s.id);
    }
    for tree in &topology.feeders {
        assert!(
            (1_500.0..20_000.0).contains(&tree.total_length_m),
            "{}",
            tree.total_length_m
        );
    }
}

#[test]
fn readings_load_a_realistic_tail_of_feeders_near_their_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let summary = write_synthetic_gridpack(dir.path(), &config).unwrap();
    let gridpack = GridpackPaths::locate(dir.path()).unwrap();
    let network = read_network(&gridpack.network).unwrap();

    let mut head: HashMap<(u32, i64), (f64, f64)> = HashMap::new();
    let mut metered = std::collections::HashSet::new();
    let mut u_kv = Vec::new();
    let report = read_readings(&summary.readings_file, &network, |row| {
        match row.asset.kind {
            AssetKind::Feeder => {
                let e = head.entry((row.asset.index, row.ts_ms)).or_default();
                match row.quantity {
                    Quantity::PKw => e.0 = row.value,
                    Quantity::QKvar => e.1 = row.value,
                    Quantity::UKv => u_kv.push(row.value),
                    _ => {}
                }
            }
            AssetKind::Transformer => {
                metered.insert(row.asset.index);
            }
            _ => {}
        }
    })
    .unwrap();
    assert_eq!(report.rejected, 0);
    assert_eq!(report.taken, summary.readings_rows);

    let share = metered.len() as f64 / network.transformers.len() as f64;
    assert!((0.7..=0.9).contains(&share), "metered share {share}");
    assert!(u_kv.iter().all(|u| (10.0..=10.8).contains(u)));

    // The load's peak: power into the feeder. PV makes some export at noon,
    // each substation's first feeder past its head's rating (the red case of
    // the generation view, by design).
    let mut peak = vec![0.0f64; network.feeders.len()];
    let mut export = vec![0.0f64; network.feeders.len()];
    for ((f, _), (p, q)) in &head {
        let f = *f as usize;
        if *p >= 0.0 {
            peak[f] = peak[f].max(p.hypot(*q));
        } else {
            export[f] = export[f].max(p.hypot(*q));
        }
    }
    for (f, feeder) in network.feeders.iter().enumerate() {
        if feeder.id.as_str().ends_with("-F01") {
            assert!(export[f] > 0.0, "{} does not export: {export:?}", feeder.id);
        }
    }
    let past_rating = export
        .iter()
        .zip(&network.feeders)
        .filter(|(s, f)| **s > 3f64.sqrt() * 10.5 * f.rated_a.unwrap())
        .count();
    assert!(past_rating >= 1, "{export:?}");
    let loading: Vec<f64> = peak
        .iter()
        .zip(&network.feeders)
        .map(|(s, f)| s / (3f64.sqrt() * 10.0 * f.rated_a.unwrap()))
        .collect();
    let near_limit = loading.iter().filter(|l| **l > 0.75).count() as f64 / loading.len() as f64;
    assert!(
        (0.04..=0.4).contains(&near_limit),
        "{near_limit} of feeders above 75 %: {loading:?}"
    );
    assert!(loading.iter().all(|l| *l > 0.1 && *l < 1.3), "{loading:?}");
}
