use std::path::Path;

use headroom_geodata::*;

#[test]
fn a_written_network_reads_back_equal() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/1-MV-semiurb/network.geojson");
    let fixture = if fixture.exists() {
        fixture
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/1-MV-semiurb/network.geojson")
    };
    let original = read_network(&fixture).expect("fixture is valid");
    let mut bytes = Vec::new();
    write_network(&original, &mut bytes).unwrap();
    let again =
        parse_network(&bytes, Path::new("written.geojson")).expect("written network is valid");
    assert_eq!(original.nodes, again.nodes);
    assert_eq!(original.segments, again.segments);
    assert_eq!(original.switches, again.switches);
    assert_eq!(original.feeders, again.feeders);
    assert_eq!(original.transformers, again.transformers);
    assert_eq!(original.substations, again.substations);
    assert_eq!(
        original.substation_transformers,
        again.substation_transformers
    );
}

#[test]
fn a_segment_without_length_takes_its_geodesic_length() {
    let text = r#"{"type":"FeatureCollection","features":[
      {"type":"Feature","geometry":{"type":"Point","coordinates":[117.2,31.8]},"properties":{"kind":"node","id":"A","kv":10,"node_type":"pole"}},
      {"type":"Feature","geometry":{"type":"Point","coordinates":[117.21,31.8]},"properties":{"kind":"node","id":"B","kv":10,"node_type":"pole"}},
      {"type":"Feature","geometry":{"type":"LineString","coordinates":[[117.2,31.8],[117.205,31.801],[117.21,31.8]]},
       "properties":{"kind":"segment","id":"L","from":"A","to":"B","kv":10,"r_ohm_per_km":0.1,"x_ohm_per_km":0.1,"rated_a":100,"owner":"grid co"}}
    ]}"#;
    let network = parse_network(text.as_bytes(), Path::new("t.geojson")).unwrap();
    let seg = &network.segments[0];
    assert!(!seg.length_given);
    let straight = geodesy::distance_m(LonLat::new(117.2, 31.8), LonLat::new(117.21, 31.8));
    assert!(
        seg.length_m > straight && seg.length_m < straight * 1.05,
        "{}",
        seg.length_m
    );
    // Unknown properties are kept.
    assert_eq!(seg.extra.as_ref().unwrap()["owner"], "grid co");
}
