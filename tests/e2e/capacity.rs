//! `headroom capacity` on the fixture: every asset of a level, the spec's fields,
//! and figures consistent with each other and with `rank`.

use serde_json::Value;

use crate::support::{fixture, headroom};

fn capacity(level: &str) -> Vec<Value> {
    let dir = fixture("1-MV-semiurb");
    let run = headroom([
        "capacity".as_ref(),
        dir.as_os_str(),
        "--level".as_ref(),
        level.as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("a JSON array")
}

#[test]
fn feeders_report_headroom_at_the_head_and_at_their_weakest_node() {
    let rows = capacity("feeder");
    assert_eq!(rows.len(), 9);
    for r in &rows {
        for field in [
            "id",
            "kind",
            "rated",
            "peak_kva",
            "p95_kva",
            "loading_pct",
            "reserved_kw",
            "headroom_kw",
            "binding_constraint",
            "data_age_s",
            "metered_share",
        ] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        let head = r["headroom_kw"].as_f64().unwrap();
        let worst = r["worst_node_headroom_kw"].as_f64().unwrap();
        assert!(worst <= head && worst > 0.0, "{r}");
        assert!(r["p95_kva"].as_f64().unwrap() <= r["peak_kva"].as_f64().unwrap());
        assert_eq!(r["metered_share"], 1.0);
    }
    // F_L0 is the fixture's most loaded feeder: 3,078 kVA at peak.
    let f_l0 = rows.iter().find(|r| r["id"] == "F_L0").unwrap();
    assert!(
        (f_l0["peak_kva"].as_f64().unwrap() - 3_077.6).abs() < 5.0,
        "{f_l0}"
    );
}

#[test]
fn feeder_headroom_agrees_with_rank_at_the_first_node() {
    let rows = capacity("feeder");
    let f_l0 = rows.iter().find(|r| r["id"] == "F_L0").unwrap();
    // N4 is F_L0's first node; rank a flat 0.95 load there.
    let dir = fixture("1-MV-semiurb");
    let tmp = tempfile::tempdir().unwrap();
    let apps = tmp.path().join("apps.json");
    std::fs::write(
        &apps,
        r#"[{"id": "C", "lon": 11.8149, "lat": 53.4244, "demand_kw": 100, "power_factor": 0.95, "voltage_kv": 20, "max_distance_m": 1}]"#,
    )
    .unwrap();
    let run = headroom([
        "rank".as_ref(),
        dir.as_os_str(),
        "--applications".as_ref(),
        apps.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ranked: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let n4 = ranked[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node"] == "N4")
        .expect("N4 is a candidate");
    assert_eq!(n4["headroom_kw"], f_l0["headroom_kw"]);
}

#[test]
fn transformers_and_substations_follow_the_spec_formulas() {
    let rows = capacity("transformer");
    assert_eq!(rows.len(), 113);
    for r in &rows {
        let expected =
            ((r["rated"].as_f64().unwrap() - r["peak_kva"].as_f64().unwrap()) * 0.95).max(0.0);
        let got = r["headroom_kw"].as_f64().unwrap();
        // Peak is rounded to 0.1 kVA in the output.
        assert!((got - expected.floor()).abs() <= 1.0, "{r}");
    }
    let rows = capacity("substation");
    assert_eq!(rows.len(), 1);
    let sub = &rows[0];
    // Two 40 MVA transformers: firm capacity is one of them.
    assert_eq!(sub["rated"], 40_000.0);
    let expected = (40_000.0 - sub["peak_kva"].as_f64().unwrap()) * 0.95;
    assert!(
        (sub["headroom_kw"].as_f64().unwrap() - expected.floor()).abs() <= 1.0,
        "{sub}"
    );
}
