use headroom_geodata::topology::{NO_PARENT, TopologyWarning};
use headroom_geodata::*;
use proptest::prelude::*;

fn at(i: usize) -> LonLat {
    LonLat::new(117.0 + i as f64 * 0.001, 31.0 + (i % 7) as f64 * 0.0005)
}

/// Substation S with busbar BB, feeder F1: BB - A - B - C, and B - D.
fn small() -> NetworkBuilder {
    let mut b = NetworkBuilder::new();
    b.substation("S", at(0))
        .node("BB", NodeType::Busbar, at(0))
        .substation_transformer("TR", "S", "BB", 40_000.0);
    for (i, n) in ["A", "B", "C", "D"].iter().enumerate() {
        b.node(n, NodeType::Pole, at(i + 1));
    }
    b.segment("L1", "BB", "A", 0.1, 0.1, 400.0, 100.0)
        .segment("L2", "A", "B", 0.1, 0.1, 300.0, 200.0)
        .segment("L3", "B", "C", 0.1, 0.1, 300.0, 300.0)
        .segment("L4", "B", "D", 0.1, 0.1, 300.0, 50.0)
        .feeder("F1", "BB", "A", Some(400.0));
    b
}

fn ids(network: &Network, nodes: &[NodeIx]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| network.node(*n).id.to_string())
        .collect()
}

#[test]
fn a_radial_feeder_is_traced_in_breadth_first_order() {
    let network = small().build().unwrap();
    let topology = Topology::trace(&network);
    assert!(topology.warnings.is_empty(), "{:?}", topology.warnings);
    let tree = topology.tree(FeederIx(0));
    assert_eq!(ids(&network, &tree.nodes), ["BB", "A", "B", "C", "D"]);
    assert_eq!(tree.parent, [NO_PARENT, 0, 1, 2, 2]);
    assert_eq!(tree.distance_m, [0.0, 100.0, 300.0, 600.0, 350.0]);
    assert_eq!(tree.total_length_m, 650.0);
    let c = network.node_ix("C").unwrap();
    assert_eq!(
        ids(&network, &topology.path_to_busbar(c).unwrap()),
        ["BB", "A", "B", "C"]
    );
    assert_eq!(topology.busbar_groups.len(), 1);
    assert_eq!(topology.busbar_groups[0].rated_kva, 40_000.0);
}

#[test]
fn out_of_service_segments_and_open_switches_are_not_crossed() {
    let mut b = small();
    b.with_segment(|s| s.in_service = false); // L4: D is cut off
    b.node("E", NodeType::Pole, at(9))
        .switch("SW", "C", "E", true);
    let network = b.build().unwrap();
    let topology = Topology::trace(&network);
    let tree = topology.tree(FeederIx(0));
    assert_eq!(ids(&network, &tree.nodes), ["BB", "A", "B", "C"]);
    let islands: Vec<_> = topology
        .warnings
        .iter()
        .filter_map(|w| match w {
            TopologyWarning::Island { nodes } => Some(ids(&network, nodes)),
            _ => None,
        })
        .collect();
    assert_eq!(islands, [vec!["D".to_owned()], vec!["E".to_owned()]]);
    // The open switch is a tie, with no feeder on its far side.
    assert_eq!(topology.ties.len(), 1);
    assert_eq!(topology.ties[0].from_feeder, Some(FeederIx(0)));
    assert_eq!(topology.ties[0].to_feeder, None);
}

#[test]
fn a_loop_within_a_feeder_is_a_warning_not_a_crash() {
    let mut b = small();
    b.segment("L5", "C", "D", 0.1, 0.1, 300.0, 10.0);
    let network = b.build().unwrap();
    let topology = Topology::trace(&network);
    assert_eq!(topology.tree(FeederIx(0)).node_count(), 4);
    assert!(
        matches!(
            topology.warnings.as_slice(),
            [TopologyWarning::Loop { branch: Branch::Segment(s), .. }] if network.segment(*s).id.as_str() == "L5"
        ),
        "{:?}",
        topology.warnings
    );
}

#[test]
fn a_node_reached_by_two_feeders_is_reported_and_stays_on_the_first() {
    let mut b = small();
    b.node("BB2", NodeType::Busbar, at(20))
        .node("X", NodeType::Pole, at(21))
        .segment("L6", "BB2", "X", 0.1, 0.1, 300.0, 100.0)
        .switch("SWX", "X", "C", false) // closed: a loop between feeders
        .feeder("F2", "BB2", "X", None);
    let network = b.build().unwrap();
    let topology = Topology::trace(&network);
    let c = network.node_ix("C").unwrap();
    assert_eq!(topology.feeder_of(c), Some(FeederIx(0)));
    // F1, traced first, runs on through the closed switch to X and on to BB2; F2
    // then finds its own first node taken.
    let x = network.node_ix("X").unwrap();
    assert_eq!(topology.feeder_of(x), Some(FeederIx(0)));
    let warning = topology
        .warnings
        .iter()
        .find(|w| matches!(
            w,
            TopologyWarning::ReachedByTwoFeeders { node, first: FeederIx(0), second: FeederIx(1) } if *node == x
        ))
        .unwrap_or_else(|| panic!("{:?}", topology.warnings));
    assert!(
        topology
            .warnings
            .iter()
            .any(|w| matches!(w, TopologyWarning::ReachesBusbar { .. }))
    );
    let text = warning.describe(&network).to_string();
    assert!(text.contains("F1") && text.contains("F2"), "{text}");
}

#[test]
fn a_feeder_never_passes_through_a_busbar() {
    let mut b = small();
    b.node("BB2", NodeType::Busbar, at(20))
        .segment("L7", "C", "BB2", 0.1, 0.1, 300.0, 100.0);
    let network = b.build().unwrap();
    let topology = Topology::trace(&network);
    assert_eq!(topology.tree(FeederIx(0)).node_count(), 4);
    assert!(
        matches!(
            topology.warnings.as_slice(),
            [TopologyWarning::ReachesBusbar { .. }]
        ),
        "{:?}",
        topology.warnings
    );
}

#[test]
fn a_feeder_whose_first_node_is_not_joined_to_its_head_is_detached() {
    let mut b = small();
    b.node("Z", NodeType::Pole, at(30))
        .feeder("F2", "BB", "Z", None);
    let network = b.build().unwrap();
    let topology = Topology::trace(&network);
    assert_eq!(topology.tree(FeederIx(1)).node_count(), 0);
    assert!(topology.warnings.iter().any(|w| matches!(
        w,
        TopologyWarning::Detached {
            feeder: FeederIx(1)
        }
    )));
}

#[test]
fn busbars_joined_by_a_closed_coupler_form_one_group() {
    let mut b = small();
    b.node("BB2", NodeType::Busbar, at(0))
        .substation_transformer("TR2", "S", "BB2", 31_500.0)
        .switch("BC", "BB", "BB2", false);
    let network = b.build().unwrap();
    let topology = Topology::trace(&network);
    assert_eq!(topology.busbar_groups.len(), 1);
    assert_eq!(topology.busbar_groups[0].rated_kva, 71_500.0);
    assert!(topology.ties.is_empty());
    let bb2 = network.node_ix("BB2").unwrap();
    assert_eq!(topology.busbar_group_index(bb2), Some(0));
}

/// A random network: feeders as random trees, ties between feeders, optionally a
/// closed loop between two feeders and some unfed chains.
#[derive(Clone, Debug)]
struct RandomGrid {
    /// Per feeder, the parent (index into that feeder's nodes; None = first node) of
    /// each node after the first, and the segment lengths.
    feeders: Vec<(Vec<usize>, Vec<f64>)>,
    ties: Vec<(usize, usize, usize, usize)>,
    closed_loop: Option<(usize, usize, usize, usize)>,
    islands: Vec<usize>,
}

fn random_grid() -> impl Strategy<Value = RandomGrid> {
    let feeder = (1usize..25).prop_flat_map(|n| {
        (
            (0..n).map(|i| 0..=i).collect::<Vec<_>>(),
            prop::collection::vec(1.0f64..2_000.0, n + 1),
        )
    });
    (
        prop::collection::vec(feeder, 1..6),
        prop::collection::vec((0usize..6, 0usize..30, 0usize..6, 0usize..30), 0..6),
        prop::option::weighted(0.3, (0usize..6, 0usize..30, 0usize..6, 0usize..30)),
        prop::collection::vec(1usize..5, 0..3),
    )
        .prop_map(|(feeders, ties, closed_loop, islands)| RandomGrid {
            feeders,
            ties,
            closed_loop,
            islands,
        })
}

/// Node id of node `i` of feeder `f` (the first node is 0).
fn node_name(f: usize, i: usize) -> String {
    format!("F{f}N{i}")
}

fn build(grid: &RandomGrid) -> (Network, Option<(String, String)>) {
    let mut b = NetworkBuilder::new();
    b.substation("S", at(0))
        .node("BB1", NodeType::Busbar, at(0))
        .node("BB2", NodeType::Busbar, at(1))
        .substation_transformer("TR1", "S", "BB1", 40_000.0)
        .substation_transformer("TR2", "S", "BB2", 40_000.0);
    let mut k = 2;
    let sizes: Vec<usize> = grid.feeders.iter().map(|(p, _)| p.len() + 1).collect();
    for (f, (parents, lengths)) in grid.feeders.iter().enumerate() {
        let busbar = if f % 2 == 0 { "BB1" } else { "BB2" };
        for i in 0..sizes[f] {
            k += 1;
            b.node(&node_name(f, i), NodeType::Pole, at(k));
        }
        b.segment(
            &format!("F{f}L0"),
            busbar,
            &node_name(f, 0),
            0.1,
            0.1,
            300.0,
            lengths[0],
        );
        for (i, parent) in parents.iter().enumerate() {
            b.segment(
                &format!("F{f}L{}", i + 1),
                &node_name(f, *parent),
                &node_name(f, i + 1),
                0.1,
                0.1,
                300.0,
                lengths[i + 1],
            );
        }
        b.feeder(&format!("F{f}"), busbar, &node_name(f, 0), None);
    }
    let pick = |f: usize, i: usize| {
        let f = f % sizes.len();
        (f, i % sizes[f])
    };
    for (t, &(fa, ia, fb, ib)) in grid.ties.iter().enumerate() {
        let (fa, ia) = pick(fa, ia);
        let (fb, ib) = pick(fb, ib);
        b.switch(
            &format!("TIE{t}"),
            &node_name(fa, ia),
            &node_name(fb, ib),
            true,
        );
    }
    let mut loop_between = None;
    if let Some((fa, ia, fb, ib)) = grid.closed_loop {
        let (fa, ia) = pick(fa, ia);
        let (fb, ib) = pick(fb, ib);
        if (fa, ia) != (fb, ib) {
            b.switch("LOOP", &node_name(fa, ia), &node_name(fb, ib), false);
            loop_between = Some((node_name(fa, ia), node_name(fb, ib)));
        }
    }
    for (g, len) in grid.islands.iter().enumerate() {
        for i in 0..*len {
            k += 1;
            b.node(&format!("I{g}N{i}"), NodeType::Junction, at(k));
            if i > 0 {
                b.segment(
                    &format!("I{g}L{i}"),
                    &format!("I{g}N{}", i - 1),
                    &format!("I{g}N{i}"),
                    0.1,
                    0.1,
                    100.0,
                    10.0,
                );
            }
        }
    }
    (b.build().expect("random grid is valid"), loop_between)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_node_is_on_one_feeder_or_reported_and_paths_add_up(grid in random_grid()) {
        let (network, loop_between) = build(&grid);
        let topology = Topology::trace(&network);

        // Every node: a busbar, on exactly one feeder tree, or in exactly one island.
        let mut on_trees = vec![0usize; network.nodes.len()];
        for tree in &topology.feeders {
            for &n in &tree.nodes[1..] {
                on_trees[n.get()] += 1;
            }
        }
        let mut in_islands = vec![0usize; network.nodes.len()];
        for w in &topology.warnings {
            if let TopologyWarning::Island { nodes } = w {
                for n in nodes {
                    in_islands[n.get()] += 1;
                }
            }
        }
        for (i, node) in network.nodes.iter().enumerate() {
            if node.node_type == NodeType::Busbar {
                prop_assert_eq!(on_trees[i] + in_islands[i], 0);
            } else {
                prop_assert_eq!(on_trees[i] + in_islands[i], 1, "node {}", node.id);
                let placed = topology.placement(NodeIx::from_usize(i));
                prop_assert_eq!(placed.is_some(), on_trees[i] == 1);
            }
        }

        for tree in &topology.feeders {
            let feeder = network.feeder(tree.feeder);
            prop_assert_eq!(tree.head(), feeder.head_node);
            for local in 0..tree.nodes.len() as u32 {
                let path = tree.path_from_busbar(local);
                prop_assert_eq!(path[0], 0, "paths start at the busbar");
                prop_assert_eq!(*path.last().unwrap(), local);
                let mut length = 0.0;
                for pair in path.windows(2) {
                    let (parent, child) = (pair[0] as usize, pair[1] as usize);
                    prop_assert!(parent < child, "parents come first");
                    let branch = tree.inbound[child].expect("non-root nodes have a branch");
                    let (a, b, l) = match branch {
                        Branch::Segment(s) => {
                            let seg = network.segment(s);
                            (seg.from, seg.to, seg.length_m)
                        }
                        Branch::Switch(s) => {
                            let sw = network.switch(s);
                            (sw.from, sw.to, 0.0)
                        }
                    };
                    let ends = [tree.nodes[parent], tree.nodes[child]];
                    prop_assert!(ends == [a, b] || ends == [b, a], "the branch joins parent and child");
                    length += l;
                }
                let d = tree.distance_m[local as usize];
                prop_assert!((d - length).abs() <= 1e-9 * length.max(1.0), "{} vs {}", d, length);
            }
        }

        match loop_between {
            None => {
                // Without a closed loop, each feeder is exactly the tree generated.
                for (f, (parents, _)) in grid.feeders.iter().enumerate() {
                    prop_assert_eq!(topology.feeders[f].node_count(), parents.len() + 1);
                }
                let only_islands = topology.warnings.iter().all(|w| matches!(w, TopologyWarning::Island { .. }));
                prop_assert!(only_islands, "{:?}", topology.warnings);
                prop_assert_eq!(topology.ties.len(), grid.ties.len());
                for tie in &topology.ties {
                    prop_assert!(tie.from_feeder.is_some() && tie.to_feeder.is_some());
                }
            }
            Some(_) => {
                let reported = topology.warnings.iter().any(|w| matches!(
                    w,
                    TopologyWarning::Loop { .. } | TopologyWarning::ReachedByTwoFeeders { .. }
                ));
                prop_assert!(reported, "{:?}", topology.warnings);
            }
        }
    }
}
