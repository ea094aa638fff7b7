//! Generation (`shared/spec/planning.md` §1) end to end: `headroom rank` of
//! generation applications on the fixture against the independent pandapower
//! cross-check in `tests/generation/`, open capacity exported as CSV and
//! GeoJSON, and over HTTP a generation scheme reserved, counted by later
//! generation rankings and by none of the loads.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::support::{candidates_by_node, cross_check, fixture, headroom, serve_gridpack};

/// Every candidate's generation headroom within 3 % or 20 kW of pandapower's,
/// with the same binding constraint and feasibility, for the applications of
/// `tests/generation/` (written by `tests/generation/oracle.py`, from the
/// gridpack files alone).
#[test]
fn generation_headroom_agrees_with_an_independent_power_flow_on_the_fixture() {
    let (expected, results) = cross_check("generation");
    let mut compared = 0;
    let mut failures = Vec::new();
    let mut bindings = HashMap::new();
    for app in expected["applications"].as_array().unwrap() {
        let id = app["id"].as_str().unwrap();
        let ours = candidates_by_node(&results, id);
        for theirs in app["candidates"].as_array().unwrap() {
            let node = theirs["node"].as_str().unwrap();
            let Some(c) = ours.get(node) else {
                failures.push(format!("{id} at {node}: not a candidate of ours"));
                continue;
            };
            let (h, expected_h) = (
                c["headroom_kw"].as_f64().unwrap(),
                theirs["headroom_kw"].as_f64().unwrap(),
            );
            if (h - expected_h).abs() > (0.03 * expected_h).max(20.0) {
                failures.push(format!("{id} at {node}: {h} kW against {expected_h} kW"));
            }
            // Where a ring-main unit has no free bay, that is what we name; the
            // cross-check names the electrical limit beside it.
            let physics = |c: &Value| c["binding_constraint"] != "no_spare_bay";
            if physics(c) && c["binding_constraint"] != theirs["electrical_binding_constraint"] {
                failures.push(format!(
                    "{id} at {node}: binds on {} against {}",
                    c["binding_constraint"], theirs["electrical_binding_constraint"]
                ));
            }
            if c["feasible"] != theirs["feasible"] {
                failures.push(format!(
                    "{id} at {node}: feasible {} against {}",
                    c["feasible"], theirs["feasible"]
                ));
            }
            *bindings
                .entry(
                    theirs["electrical_binding_constraint"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
                .or_insert(0) += 1;
            compared += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared >= 100, "only {compared} candidates compared");
    // Voltage rise, segments in reverse and reverse power through the substation.
    assert!(bindings.len() >= 3, "{bindings:?}");
}

fn capacity(level: &str, format: &str) -> String {
    let run = headroom([
        "capacity",
        fixture("1-MV-semiurb").to_str().unwrap(),
        "--level",
        level,
        "--format",
        format,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

#[test]
fn open_capacity_is_exported_as_csv_and_geojson_with_the_json_rows_figures() {
    for level in ["substation", "feeder", "transformer"] {
        let rows: Vec<Value> = serde_json::from_str(&capacity(level, "json")).unwrap();
        let csv = capacity(level, "csv");
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            header[..3],
            ["id", "name", "kind"],
            "{level}: the columns open with the asset"
        );
        let column = |name: &str| header.iter().position(|h| h == name).unwrap();
        let lines: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(lines.len(), rows.len(), "{level}: one line per asset");
        for (line, row) in lines.iter().zip(&rows) {
            assert_eq!(line[0], row["id"]);
            for field in [
                "generation_headroom_kw",
                "generation_open_kw",
                "headroom_kw",
            ] {
                assert_eq!(
                    line[column(field)].parse::<f64>().unwrap(),
                    row[field].as_f64().unwrap(),
                    "{level} {}: {field}",
                    row["id"]
                );
            }
            assert_eq!(line[column("grade")], row["grade"]);
            let (c1, c2) = (
                row["generation_headroom_kw"].as_f64().unwrap(),
                row["generation_open_kw"].as_f64().unwrap(),
            );
            assert!(c2 <= c1 && c1 >= 0.0, "{row}");
        }
        let geojson: Value = serde_json::from_str(&capacity(level, "geojson")).unwrap();
        let features = geojson["features"].as_array().unwrap();
        assert_eq!(features.len(), rows.len());
        for f in features {
            assert!(f["geometry"]["type"].is_string(), "{level}: {f}");
            assert!(f["properties"]["grade"].is_string(), "{level}: {f}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_generation_scheme_takes_export_room_from_later_generators_only() {
    let dir = tempfile::tempdir().unwrap();
    let (service, token) = serve_gridpack(dir.path(), &fixture("1-MV-semiurb"), "admin", "");
    let base = service.url.clone();
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, text)
        }
    };
    // A 2 MW PV farm near F_L0's first nodes, and the same place asked again.
    let pv = |id: &str, kw: f64| {
        json!({"id": id, "kind": "generation", "lon": 11.821694, "lat": 53.419809,
               "demand_kw": kw, "voltage_kv": 20.0})
    };
    let load = json!({"id": "L1", "lon": 11.821694, "lat": 53.419809, "demand_kw": 500.0,
                      "power_factor": 0.95, "voltage_kv": 20.0});
    let headroom_at = |ranking: &str, node: &str| -> f64 {
        let v: Value = serde_json::from_str(ranking).unwrap();
        v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"] == node)
            .unwrap_or_else(|| panic!("{node} is no candidate: {v}"))["headroom_kw"]
            .as_f64()
            .unwrap()
    };
    let (status, first) = call(
        reqwest::Method::PUT,
        "/v1/applications/PV-1".into(),
        Some(pv("PV-1", 2_000.0)),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let first: Value = serde_json::from_str(&first).unwrap();
    // The best scheme on a feeder (a new bay at the busbar has none).
    let feeder_of = |node: &str| {
        first["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"] == node)
            .and_then(|c| c["feeder"].as_str())
            .map(str::to_owned)
    };
    let (rank, node, feeder) = first["schemes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| {
            let node = s["supplies"][0].as_str()?;
            Some((s["rank"].as_i64()?, node.to_owned(), feeder_of(node)?))
        })
        .expect("a scheme on a feeder");
    let before_pv = headroom_at(&first.to_string(), &node);
    let (_, load_before) = call(
        reqwest::Method::POST,
        "/v1/schemes".into(),
        Some(load.clone()),
    )
    .await;
    let load_before = headroom_at(&load_before, &node);
    let (status, reservation) = call(
        reqwest::Method::POST,
        "/v1/applications/PV-1/reservation".into(),
        Some(json!({"scheme": rank})),
    )
    .await;
    assert_eq!(status, 201, "{reservation}");
    let reservation: Value = serde_json::from_str(&reservation).unwrap();
    assert_eq!(reservation["kind"], "generation", "{reservation}");
    // A second generator at the same point has about 2 MW less; a load the same.
    let (status, second) = call(
        reqwest::Method::POST,
        "/v1/schemes".into(),
        Some(pv("PV-2", 500.0)),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let after_pv = headroom_at(&second, &node);
    assert!(
        (before_pv - after_pv - 2_000.0).abs() < 0.03 * 2_000.0,
        "{before_pv} kW before the reservation, {after_pv} kW after"
    );
    let (_, load_after) = call(reqwest::Method::POST, "/v1/schemes".into(), Some(load)).await;
    assert_eq!(headroom_at(&load_after, &node), load_before);
    // The published open capacity of the feeder counts the reservation (C2),
    // not its headroom today (C1).
    let (status, csv) = call(
        reqwest::Method::GET,
        "/v1/capacity?level=feeder&format=csv".into(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{csv}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let line = reader
        .records()
        .map(Result::unwrap)
        .find(|r| r[0] == *feeder)
        .expect("the feeder's line");
    let c1: f64 = line[column("generation_headroom_kw")].parse().unwrap();
    let c2: f64 = line[column("generation_open_kw")].parse().unwrap();
    assert_eq!(c1 - c2, 2_000.0, "{line:?}");
    let (status, bad) = call(
        reqwest::Method::GET,
        "/v1/capacity?format=xlsx".into(),
        None,
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.contains("format"), "{bad}");
    // A generator asking for a second supply, exporting a negative power or
    // with a short profile: 400 naming the field, and nothing registered.
    for (edit, field) in [
        (json!({"importance": "critical"}), "importance"),
        (json!({"demand_kw": -300.0}), "demand_kw"),
        (json!({"profile": vec![0.5; 95]}), "profile"),
    ] {
        let mut app = pv("PV-BAD", 500.0);
        for (k, v) in edit.as_object().unwrap() {
            app[k] = v.clone();
        }
        let (status, body) = call(
            reqwest::Method::PUT,
            "/v1/applications/PV-BAD".into(),
            Some(app),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(field), "{field}: {body}");
        let (status, _) = call(reqwest::Method::GET, "/v1/applications/PV-BAD".into(), None).await;
        assert_eq!(status, 404, "a refused application is not stored");
    }
}
