use headroom_geodata::geodesy::distance_m;
use headroom_geodata::*;
use proptest::prelude::*;

fn grid_of_nodes(seed_points: &[(f64, f64)]) -> Network {
    let mut b = NetworkBuilder::new();
    for (i, (dlon, dlat)) in seed_points.iter().enumerate() {
        b.node(
            &format!("N{i}"),
            NodeType::Pole,
            LonLat::new(117.2 + dlon, 31.8 + dlat),
        );
        if i % 5 == 0 {
            b.with_node(|n| n.in_service = false);
        }
        if i % 7 == 0 {
            b.with_node(|n| n.kv = 20.0);
        }
        if i % 3 == 0 {
            b.transformer(&format!("T{i}"), &format!("N{i}"), 400.0);
        }
    }
    b.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn radius_and_nearest_queries_agree_with_brute_force(
        points in prop::collection::vec((-0.05f64..0.05, -0.05f64..0.05), 1..300),
        centre in (-0.05f64..0.05, -0.05f64..0.05),
        radius in 10.0f64..5_000.0,
        k in 1usize..20,
    ) {
        let network = grid_of_nodes(&points);
        let index = SpatialIndex::build(&network);
        let at = LonLat::new(117.2 + centre.0, 31.8 + centre.1);
        let filter = Filter::in_service_at(10.0);
        let keep = |n: &Node| n.in_service && (n.kv - 10.0).abs() < 0.1;

        let mut found: Vec<u32> = index.nodes_within(at, radius, &filter).iter().map(|h| h.index.0).collect();
        found.sort();
        let expected: Vec<u32> = network.nodes.iter().enumerate()
            .filter(|(_, n)| keep(n) && distance_m(at, n.position) <= radius)
            .map(|(i, _)| i as u32)
            .collect();
        prop_assert_eq!(found, expected);

        let nearest = index.nearest_nodes(at, k, &filter);
        let mut all: Vec<f64> = network.nodes.iter().filter(|n| keep(n)).map(|n| distance_m(at, n.position)).collect();
        all.sort_by(f64::total_cmp);
        let want: Vec<f64> = all.into_iter().take(k).collect();
        let got: Vec<f64> = nearest.iter().map(|h| h.distance_m).collect();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            // Nearest hits are reported with exact geodesic distances.
            prop_assert!((g - w).abs() < 1e-6, "{:?} vs {:?}", got, want);
        }

        let any = Filter::default();
        let mut transformers: Vec<u32> = index.transformers_within(at, radius, &any).iter().map(|h| h.index.0).collect();
        transformers.sort();
        let expected: Vec<u32> = network.transformers.iter().enumerate()
            .filter(|(_, t)| distance_m(at, t.position) <= radius)
            .map(|(i, _)| i as u32)
            .collect();
        prop_assert_eq!(transformers, expected);
    }
}

#[test]
fn distances_are_geodesic_metres() {
    let network = grid_of_nodes(&[(0.0, 0.0), (0.01, 0.0)]);
    let index = SpatialIndex::build(&network);
    // N0 is out of service (every fifth), N1 is 0.01 degrees east at 31.8 N.
    let hits = index.nearest_nodes(LonLat::new(117.2, 31.8), 1, &Filter::in_service_at(10.0));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].index, NodeIx(1));
    assert!(
        (hits[0].distance_m - 946.9).abs() < 0.5,
        "{}",
        hits[0].distance_m
    );
}
