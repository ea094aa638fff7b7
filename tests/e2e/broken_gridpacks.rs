//! Every rule of `shared/spec/gridpack.md` broken once: the exit code the spec gives,
//! and a message that names the feature id or line and the rule.

use serde_json::{Value, json};

use crate::support::headroom;

fn base_network() -> Value {
    let point = |lon: f64, lat: f64| json!({"type": "Point", "coordinates": [lon, lat]});
    let line = |a: [f64; 2], b: [f64; 2]| json!({"type": "LineString", "coordinates": [a, b]});
    let feature = |geometry: Value, props: Value| json!({"type": "Feature", "geometry": geometry, "properties": props});
    json!({
        "type": "FeatureCollection",
        "features": [
            feature(point(117.20, 31.80), json!({"kind": "substation", "id": "SUB", "name": "Sub"})),
            feature(Value::Null, json!({"kind": "substation_transformer", "id": "TR1",
                "substation": "SUB", "rated_kva": 40000, "bus": "BB"})),
            feature(point(117.20, 31.80), json!({"kind": "node", "id": "BB", "kv": 10,
                "node_type": "busbar", "substation": "SUB", "spare_bays": 1})),
            feature(point(117.201, 31.80), json!({"kind": "node", "id": "N1", "kv": 10, "node_type": "ring_main_unit"})),
            feature(point(117.202, 31.80), json!({"kind": "node", "id": "N2", "kv": 10, "node_type": "pole"})),
            feature(point(117.203, 31.80), json!({"kind": "node", "id": "N3", "kv": 10, "node_type": "pole"})),
            feature(line([117.20, 31.80], [117.201, 31.80]), json!({"kind": "segment", "id": "L1",
                "from": "BB", "to": "N1", "kv": 10, "r_ohm_per_km": 0.1, "x_ohm_per_km": 0.08, "rated_a": 400})),
            feature(line([117.201, 31.80], [117.202, 31.80]), json!({"kind": "segment", "id": "L2",
                "from": "N1", "to": "N2", "kv": 10, "r_ohm_per_km": 0.1, "x_ohm_per_km": 0.08, "rated_a": 300,
                "length_m": 120})),
            feature(Value::Null, json!({"kind": "switch", "id": "SW1", "from": "N2", "to": "N3", "normally_open": false})),
            feature(Value::Null, json!({"kind": "feeder", "id": "F1", "head_node": "BB", "first_node": "N1", "rated_a": 400})),
            feature(point(117.2021, 31.8001), json!({"kind": "transformer", "id": "T1", "node": "N2", "rated_kva": 400})),
        ]
    })
}

const GOOD_READINGS: &str = "ts,asset,quantity,value\n\
2026-07-01T00:00:00Z,F1,p_kw,120.5\n\
2026-07-01T00:00:00Z,T1,q_kvar,30\n\
2026-07-01T00:15:00+08:00,TR1,u_kv,10.4\n";

/// Sets `properties[key]` of the feature with this id (`Value::Null` removes it).
fn set(network: &mut Value, id: &str, key: &str, value: Value) {
    let feature = network["features"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["properties"]["id"] == id)
        .unwrap_or_else(|| panic!("no feature {id}"));
    let props = feature["properties"].as_object_mut().unwrap();
    if value.is_null() {
        props.remove(key);
    } else {
        props.insert(key.to_owned(), value);
    }
}

fn set_geometry(network: &mut Value, id: &str, geometry: Value) {
    let feature = network["features"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["properties"]["id"] == id)
        .unwrap();
    feature["geometry"] = geometry;
}

fn push(network: &mut Value, feature: Value) {
    network["features"].as_array_mut().unwrap().push(feature);
}

struct Case {
    name: &'static str,
    network: Box<dyn Fn() -> String>,
    readings: Option<&'static str>,
    exit: i32,
    /// Each must appear in the output.
    says: &'static [&'static str],
}

fn edited(edit: impl Fn(&mut Value) + 'static) -> Box<dyn Fn() -> String> {
    Box::new(move || {
        let mut n = base_network();
        edit(&mut n);
        serde_json::to_string_pretty(&n).unwrap()
    })
}

fn text(edit: impl Fn(String) -> String + 'static) -> Box<dyn Fn() -> String> {
    Box::new(move || edit(serde_json::to_string_pretty(&base_network()).unwrap()))
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "the base gridpack is valid",
            network: edited(|_| {}),
            readings: Some(GOOD_READINGS),
            exit: 0,
            says: &["network.geojson: valid", "3 rows taken, 0 rejected"],
        },
        Case {
            name: "segment from names no feature",
            network: edited(|n| set(n, "L2", "from", json!("N9"))),
            readings: None,
            exit: 2,
            says: &["feature L2", "dangling_reference", "`from`", "N9"],
        },
        Case {
            name: "dangling switch",
            network: edited(|n| set(n, "SW1", "to", json!("GONE"))),
            readings: None,
            exit: 2,
            says: &["feature SW1", "dangling_reference", "`to`", "GONE"],
        },
        Case {
            name: "transformer node names a segment",
            network: edited(|n| set(n, "T1", "node", json!("L1"))),
            readings: None,
            exit: 2,
            says: &["feature T1", "wrong_reference_kind", "`node`", "segment"],
        },
        Case {
            name: "substation transformer bus names no feature",
            network: edited(|n| set(n, "TR1", "bus", json!("BB9"))),
            readings: None,
            exit: 2,
            says: &["feature TR1", "dangling_reference", "`bus`"],
        },
        Case {
            name: "substation transformer substation names a node",
            network: edited(|n| set(n, "TR1", "substation", json!("N1"))),
            readings: None,
            exit: 2,
            says: &["feature TR1", "wrong_reference_kind", "`substation`"],
        },
        Case {
            name: "feeder head_node is not a busbar",
            network: edited(|n| set(n, "F1", "head_node", json!("N2"))),
            readings: None,
            exit: 2,
            says: &[
                "feature F1",
                "wrong_reference_kind",
                "`head_node`",
                "not a busbar",
            ],
        },
        Case {
            name: "feeder first_node names no feature",
            network: edited(|n| set(n, "F1", "first_node", json!("X"))),
            readings: None,
            exit: 2,
            says: &["feature F1", "dangling_reference", "`first_node`"],
        },
        Case {
            name: "duplicate id",
            network: edited(|n| {
                push(
                    n,
                    json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [117.2, 31.8]},
                        "properties": {"kind": "node", "id": "N2", "kv": 10, "node_type": "pole"}}),
                )
            }),
            readings: None,
            exit: 2,
            says: &["feature N2", "duplicate_id"],
        },
        Case {
            name: "missing required property",
            network: edited(|n| set(n, "L1", "rated_a", Value::Null)),
            readings: None,
            exit: 2,
            says: &["feature L1", "missing_property", "`rated_a`"],
        },
        Case {
            name: "negative rating",
            network: edited(|n| set(n, "T1", "rated_kva", json!(-400))),
            readings: None,
            exit: 2,
            says: &["feature T1", "negative_value", "`rated_kva`"],
        },
        Case {
            name: "negative impedance",
            network: edited(|n| set(n, "L2", "x_ohm_per_km", json!(-0.08))),
            readings: None,
            exit: 2,
            says: &["feature L2", "negative_value", "`x_ohm_per_km`"],
        },
        Case {
            name: "negative length",
            network: edited(|n| set(n, "L2", "length_m", json!(-5))),
            readings: None,
            exit: 2,
            says: &["feature L2", "negative_value", "`length_m`"],
        },
        Case {
            name: "non-finite rating written as a string",
            network: edited(|n| set(n, "L1", "rated_a", json!("NaN"))),
            readings: None,
            exit: 2,
            says: &["feature L1", "non_finite", "`rated_a`"],
        },
        Case {
            name: "NaN literal, which JSON does not allow",
            network: text(|t| t.replace("\"rated_a\": 300", "\"rated_a\": NaN")),
            readings: None,
            exit: 2,
            says: &["network.geojson: line", "`NaN` is not a JSON number"],
        },
        Case {
            name: "coordinates out of range",
            network: edited(|n| {
                set_geometry(
                    n,
                    "N3",
                    json!({"type": "Point", "coordinates": [200.0, 31.8]}),
                )
            }),
            readings: None,
            exit: 2,
            says: &["feature N3", "coordinates_out_of_range", "200"],
        },
        Case {
            name: "latitude out of range in a line",
            network: edited(|n| {
                set_geometry(
                    n,
                    "L1",
                    json!({"type": "LineString", "coordinates": [[117.2, 31.8], [117.2, 95.0]]}),
                )
            }),
            readings: None,
            exit: 2,
            says: &["feature L1", "coordinates_out_of_range", "95"],
        },
        Case {
            name: "node without a geometry",
            network: edited(|n| set_geometry(n, "N1", Value::Null)),
            readings: None,
            exit: 2,
            says: &["feature N1", "bad_geometry", "Point"],
        },
        Case {
            name: "segment with a point geometry",
            network: edited(|n| {
                set_geometry(
                    n,
                    "L1",
                    json!({"type": "Point", "coordinates": [117.2, 31.8]}),
                )
            }),
            readings: None,
            exit: 2,
            says: &["feature L1", "bad_geometry", "LineString"],
        },
        Case {
            name: "unknown kind",
            network: edited(|n| set(n, "N3", "kind", json!("tower"))),
            readings: None,
            exit: 2,
            says: &["feature N3", "unknown_kind", "tower"],
        },
        Case {
            name: "a generator on an unknown node",
            network: edited(|n| {
                push(
                    n,
                    json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [117.2, 31.8]},
                           "properties": {"id": "PV1", "kind": "generator", "node": "N99", "rated_kw": 500}}),
                )
            }),
            readings: None,
            exit: 2,
            says: &["feature PV1", "dangling_reference", "`node`", "N99"],
        },
        Case {
            name: "a generator on a segment",
            network: edited(|n| {
                push(
                    n,
                    json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [117.2, 31.8]},
                           "properties": {"id": "PV1", "kind": "generator", "node": "L1", "rated_kw": 500}}),
                )
            }),
            readings: None,
            exit: 2,
            says: &["feature PV1", "wrong_reference_kind", "node or transformer"],
        },
        Case {
            name: "a generator without a rating, of an unknown source and status",
            network: edited(|n| {
                push(
                    n,
                    json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [117.2, 31.8]},
                           "properties": {"id": "PV1", "kind": "generator", "node": "N1",
                                          "source": "coal", "status": "planned"}}),
                )
            }),
            readings: None,
            exit: 2,
            says: &[
                "feature PV1",
                "`rated_kw`",
                "`source` \"coal\"",
                "`status` \"planned\"",
            ],
        },
        Case {
            name: "a negative generator rating",
            network: edited(|n| {
                push(
                    n,
                    json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [117.2, 31.8]},
                           "properties": {"id": "PV1", "kind": "generator", "node": "N1", "rated_kw": -5}}),
                )
            }),
            readings: None,
            exit: 2,
            says: &["feature PV1", "`rated_kw`"],
        },
        Case {
            name: "a connected and a queued generator are valid",
            network: edited(|n| {
                push(
                    n,
                    json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [117.2, 31.8]},
                           "properties": {"id": "PV1", "kind": "generator", "node": "N1", "rated_kw": 500}}),
                );
                push(
                    n,
                    json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [117.2, 31.8]},
                           "properties": {"id": "PV2", "kind": "generator", "node": "T1", "rated_kw": 50,
                                          "source": "storage", "status": "queued"}}),
                );
            }),
            readings: Some(GOOD_READINGS),
            exit: 0,
            says: &["network.geojson: valid", "generator", "2"],
        },
        Case {
            name: "unknown node type",
            network: edited(|n| set(n, "N3", "node_type", json!("pylon"))),
            readings: None,
            exit: 2,
            says: &["feature N3", "invalid_value", "`node_type`", "pylon"],
        },
        Case {
            name: "feature without an id",
            network: edited(|n| set(n, "N3", "id", Value::Null)),
            readings: None,
            exit: 2,
            says: &["feature #5", "missing_id"],
        },
        Case {
            name: "a number where a boolean belongs",
            network: edited(|n| set(n, "SW1", "normally_open", json!(1))),
            readings: None,
            exit: 2,
            says: &["feature SW1", "invalid_value", "`normally_open`"],
        },
        Case {
            name: "every problem is listed, not just the first",
            network: edited(|n| {
                set(n, "L1", "rated_a", json!(-1));
                set(n, "T1", "node", json!("NOWHERE"));
                set(n, "N1", "kv", Value::Null);
            }),
            readings: None,
            exit: 2,
            says: &[
                "3 problem(s)",
                "feature L1: [negative_value]",
                "feature T1: [dangling_reference]",
                "feature N1: [missing_property]",
            ],
        },
        Case {
            name: "truncated JSON",
            network: text(|t| t[..t.len() / 2].to_owned()),
            readings: None,
            exit: 2,
            says: &["network.geojson: line", "truncated"],
        },
        Case {
            name: "not a FeatureCollection",
            network: Box::new(|| r#"{"type": "Feature", "features": []}"#.to_owned()),
            readings: None,
            exit: 2,
            says: &["network.geojson", "FeatureCollection"],
        },
        Case {
            name: "wrong CSV header",
            network: edited(|_| {}),
            readings: Some("time,asset,quantity,value\n2026-07-01T00:00:00Z,F1,p_kw,1\n"),
            exit: 2,
            says: &[
                "readings.csv: line 1",
                "header",
                "time,asset,quantity,value",
            ],
        },
        Case {
            name: "NaN value in a readings row",
            network: edited(|_| {}),
            readings: Some(
                "ts,asset,quantity,value\n2026-07-01T00:00:00Z,F1,p_kw,1\n2026-07-01T00:00:00Z,F1,q_kvar,NaN\n",
            ),
            exit: 0,
            says: &["1 rows taken, 1 rejected", "line 3: [non_finite]"],
        },
        Case {
            name: "bad readings rows are listed by line and reason, the rest loads",
            network: edited(|_| {}),
            readings: Some(
                "ts,asset,quantity,value\n\
                 2026-07-01T00:00:00Z,F1,p_kw,1\n\
                 yesterday,F1,p_kw,1\n\
                 2026-07-01T00:00:00Z,NOPE,p_kw,1\n\
                 2026-07-01T00:00:00Z,N1,p_kw,1\n\
                 2026-07-01T00:00:00Z,F1,volts,1\n\
                 2026-07-01T00:00:00Z,F1,p_kw,abc\n\
                 2026-07-01T00:00:00Z,F1,p_kw\n\
                 2026-07-01T00:15:00Z,T1,p_kw,-3.5\n",
            ),
            exit: 0,
            says: &[
                "2 rows taken, 6 rejected",
                "line 3: [bad_timestamp]",
                "line 4: [unknown_asset]",
                "line 5: [not_measurable]",
                "line 6: [unknown_quantity]",
                "line 7: [bad_value]",
                "line 8: [wrong_column_count]",
            ],
        },
    ]
}

#[test]
fn each_broken_rule_gets_the_spec_exit_code_and_a_named_message() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("network.geojson"), (case.network)()).unwrap();
        if let Some(readings) = case.readings {
            std::fs::write(dir.path().join("readings.csv"), readings).unwrap();
        }
        let run = headroom(["import".as_ref(), dir.path().as_os_str()]);
        let output = run.all_output();
        if run.code != case.exit {
            failures.push(format!(
                "{}: exit {} (expected {})\n{output}",
                case.name, run.code, case.exit
            ));
            continue;
        }
        for needle in case.says {
            if !output.contains(needle) {
                failures.push(format!("{}: output lacks {needle:?}\n{output}", case.name));
            }
        }
        if case.exit == 2 && !run.stdout.is_empty() {
            failures.push(format!(
                "{}: a failed import printed a summary\n{output}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn a_missing_folder_or_network_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-gridpack");
    let run = headroom(["import".as_ref(), missing.as_os_str()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no-such-gridpack"), "{}", run.stderr);

    let run = headroom(["import".as_ref(), dir.path().as_os_str()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("network.geojson"), "{}", run.stderr);
}

#[test]
fn gzip_readings_are_read_like_plain_ones() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("network.geojson"),
        serde_json::to_string(&base_network()).unwrap(),
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(GOOD_READINGS.as_bytes()).unwrap();
    std::fs::write(dir.path().join("readings.csv.gz"), gz.finish().unwrap()).unwrap();
    let run = headroom(["import".as_ref(), dir.path().as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(
        run.stdout
            .contains("readings.csv.gz: 3 rows taken, 0 rejected"),
        "{}",
        run.stdout
    );

    // A corrupt archive is an unreadable file: exit 2, nothing taken.
    std::fs::write(
        dir.path().join("readings.csv.gz"),
        b"\x1f\x8b\x08\x00garbage",
    )
    .unwrap();
    let run = headroom(["import".as_ref(), dir.path().as_os_str()]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("readings.csv.gz"), "{}", run.stderr);
}
