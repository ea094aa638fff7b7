//! The public fixture `1-MV-semiurb` imports, and our topology matches the one the
//! independent power-flow tool used for `expected.json`.

use std::collections::BTreeMap;

use headroom_geodata::{AssetKind, Gridpack, Topology};
use serde_json::Value;

use crate::support::{fixture, headroom};

#[test]
fn the_fixture_imports_with_exit_0_and_its_summary() {
    let dir = fixture("1-MV-semiurb");
    let run = headroom(["import".as_ref(), dir.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(
        run.stdout.contains("network.geojson: valid"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("178752 rows taken, 0 rejected"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("topology warnings (0)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("F_L0") && run.stdout.contains("23 nodes"),
        "{}",
        run.stdout
    );
}

#[test]
fn counts_and_feeder_node_sets_match_the_independent_tool() {
    let dir = fixture("1-MV-semiurb");
    let gridpack = Gridpack::read(&dir).expect("the fixture is valid");
    let network = &gridpack.network;
    let expected: Value = serde_json::from_slice(
        &std::fs::read(dir.join("expected.json")).expect("expected.json is readable"),
    )
    .expect("expected.json parses");

    let counts: BTreeMap<AssetKind, usize> = AssetKind::ALL
        .into_iter()
        .map(|k| (k, network.count(k)))
        .collect();
    assert_eq!(counts[&AssetKind::Substation], 1);
    assert_eq!(counts[&AssetKind::SubstationTransformer], 2);
    assert_eq!(counts[&AssetKind::Node], 123);
    assert_eq!(counts[&AssetKind::Segment], 121);
    assert_eq!(counts[&AssetKind::Switch], 9);
    assert_eq!(counts[&AssetKind::Feeder], 9);
    assert_eq!(counts[&AssetKind::Transformer], 113);

    let topology = Topology::trace(network);
    assert!(topology.warnings.is_empty(), "{:?}", topology.warnings);

    // Every candidate the tool evaluated names its feeder.
    let mut checked = 0;
    for app in expected["applications"].as_array().expect("applications") {
        for candidate in app["candidates"].as_array().expect("candidates") {
            let node = candidate["node"].as_str().expect("node id");
            let feeder = candidate["feeder"].as_str().expect("feeder id");
            let ix = network.node_ix(node).expect("candidate node exists");
            let ours = topology
                .feeder_of(ix)
                .map(|f| network.feeder(f).id.to_string());
            assert_eq!(ours.as_deref(), Some(feeder), "node {node}");
            checked += 1;
        }
    }
    assert_eq!(checked, 1200);

    // Per feeder, the tool's node, segment and transformer counts.
    let baseline = expected["baseline"]["feeders"]
        .as_object()
        .expect("baseline");
    assert_eq!(baseline.len(), network.feeders.len());
    for (feeder_id, b) in baseline {
        let fx = network.feeder_ix(feeder_id).expect("feeder exists");
        let tree = topology.tree(fx);
        assert_eq!(
            tree.node_count() as u64,
            b["nodes"].as_u64().unwrap(),
            "nodes of {feeder_id}"
        );
        assert_eq!(
            tree.segments().count() as u64,
            b["segments"].as_u64().unwrap(),
            "segments of {feeder_id}"
        );
        let on_feeder = network
            .transformers
            .iter()
            .filter(|t| topology.feeder_of(t.node) == Some(fx))
            .count();
        assert_eq!(
            on_feeder as u64,
            b["transformers"].as_u64().unwrap(),
            "transformers of {feeder_id}"
        );
    }
    // The union of the feeders' node sets is every non-busbar node.
    let fed: usize = topology.feeders.iter().map(|t| t.node_count()).sum();
    let busbars = network
        .nodes
        .iter()
        .filter(|n| n.node_type == headroom_geodata::NodeType::Busbar)
        .count();
    assert_eq!(fed + busbars, network.nodes.len());
}

#[test]
fn inspect_prints_a_feeder_tree_and_a_node_path() {
    let dir = fixture("1-MV-semiurb");
    let run = headroom(["inspect".as_ref(), dir.as_os_str(), "F_L45".as_ref()]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(run.stdout.starts_with("feeder F_L45"), "{}", run.stdout);
    assert!(run.stdout.contains("15 nodes"), "{}", run.stdout);

    let run = headroom(["inspect".as_ref(), dir.as_os_str(), "N57_L113".as_ref()]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    let path: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert!(path[0].contains("N2 [busbar"), "{}", run.stdout);
    assert!(path.last().unwrap().contains("N57_L113"), "{}", run.stdout);
    assert_eq!(path.len(), 11, "{}", run.stdout);

    let run = headroom(["inspect".as_ref(), dir.as_os_str(), "NOPE".as_ref()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("NOPE"), "{}", run.stderr);
}
