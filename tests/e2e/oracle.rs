//! Agreement with an independent power flow: `headroom rank --json` on the public
//! fixture against pandapower's answers in `expected.json`, with the tolerances of
//! `shared/tools/oracle_compare.py` (the engine evaluates every step where the
//! independent tool took four, so it may find a slightly worse step, nothing more).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::support::{fixture, headroom};

const LOADING_TOL: f64 = 2.0;
const LOADING_EXTRA: f64 = 1.0;
const VOLTAGE_TOL: f64 = 0.005;
const VOLTAGE_EXTRA: f64 = 0.005;
const HEADROOM_REL: f64 = 0.03;
const HEADROOM_ABS: f64 = 20.0;
const HEADROOM_EXTRA: f64 = 0.05;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[test]
fn rank_agrees_with_pandapower_on_every_fixture_candidate() {
    let dir = fixture("1-MV-semiurb");
    let run = headroom(["rank".as_ref(), dir.as_os_str(), "--json".as_ref()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_agrees(&run.stdout);
}

#[test]
fn rank_agrees_with_pandapower_with_readings_read_through_the_store() {
    let dir = fixture("1-MV-semiurb");
    let data = tempfile::tempdir().unwrap();
    let import = headroom([
        "import".as_ref(),
        dir.as_os_str(),
        "--data-dir".as_ref(),
        data.path().as_os_str(),
    ]);
    assert_eq!(import.code, 0, "{}", import.all_output());
    assert!(import.stdout.contains("stored in"), "{}", import.stdout);
    let run = headroom([
        "rank".as_ref(),
        "--data-dir".as_ref(),
        data.path().as_os_str(),
        "--applications".as_ref(),
        dir.join("applications.json").as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_agrees(&run.stdout);
}

pub(crate) fn assert_agrees(stdout: &str) {
    let dir = fixture("1-MV-semiurb");
    let got: Vec<Value> = serde_json::from_str(stdout).expect("rank --json prints an array");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let network: Value =
        serde_json::from_slice(&std::fs::read(dir.join("network.geojson")).unwrap()).unwrap();
    // expected.json models electrical limits only; the bay rule sits on top.
    let no_bay: HashSet<String> = network["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["properties"])
        .filter(|p| {
            p["kind"] == "node"
                && matches!(
                    p["node_type"].as_str(),
                    Some("ring_main_unit" | "switching_station" | "busbar")
                )
                && p["spare_bays"].as_u64().unwrap_or(0) < 1
        })
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    let by_app: HashMap<&str, &Value> = got
        .iter()
        .map(|r| (r["application"].as_str().unwrap(), r))
        .collect();

    let mut disagreements = Vec::new();
    let (mut total, mut binding_ok) = (0usize, 0usize);
    for app in expected["applications"].as_array().unwrap() {
        let id = app["id"].as_str().unwrap();
        let result = by_app
            .get(id)
            .unwrap_or_else(|| panic!("no result for {id}"));
        let mine: HashMap<&str, &Value> = result["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["node"].as_str().unwrap(), c))
            .collect();
        for c in app["candidates"].as_array().unwrap() {
            total += 1;
            let node = c["node"].as_str().unwrap();
            let at = format!("{id}/{node}");
            let Some(m) = mine.get(node) else {
                disagreements.push(format!("{at}: candidate missing"));
                continue;
            };
            let bay = no_bay.contains(node);
            let want_feasible = c["feasible"].as_bool().unwrap() && !bay;
            let want_binding = if bay {
                "no_spare_bay"
            } else {
                c["binding_constraint"].as_str().unwrap()
            };
            let borderline = c["utilization"]
                .as_object()
                .is_some_and(|u| u.values().any(|v| (0.97..=1.03).contains(&f(v))));
            let feasible = m["feasible"].as_bool().unwrap();
            if feasible != want_feasible && !(borderline && want_feasible && !feasible) {
                disagreements.push(format!("{at}: feasible {feasible} vs {want_feasible}"));
            }
            let alternatives: Vec<&str> = if bay {
                Vec::new()
            } else {
                c["binding_alternatives"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default()
            };
            let binding = m["binding_constraint"].as_str().unwrap();
            if binding == want_binding || alternatives.contains(&binding) {
                binding_ok += 1;
            } else {
                disagreements.push(format!("{at}: binding {binding} vs {want_binding}"));
            }
            let base = &expected["baseline"]["feeders"][c["feeder"].as_str().unwrap()];
            let (lo, lm) = (
                f(&m["after"]["max_loading_pct"]),
                f(&c["after"]["max_loading_pct"]),
            );
            let l_hi = lm.max(base["max_loading_pct"].as_f64().unwrap_or(lm))
                + LOADING_TOL
                + LOADING_EXTRA;
            if !(lm - LOADING_TOL <= lo && lo <= l_hi) {
                disagreements.push(format!("{at}: max_loading_pct {lo} vs {lm}"));
            }
            let (vo, vm) = (
                f(&m["after"]["min_voltage_pu"]),
                f(&c["after"]["min_voltage_pu"]),
            );
            let v_lo =
                vm.min(base["min_voltage_pu"].as_f64().unwrap_or(vm)) - VOLTAGE_TOL - VOLTAGE_EXTRA;
            if !(v_lo <= vo && vo <= vm + VOLTAGE_TOL) {
                disagreements.push(format!("{at}: min_voltage_pu {vo} vs {vm}"));
            }
            if let Some(hm) = c["headroom_kw"].as_f64() {
                let ho = f(&m["headroom_kw"]);
                let tol = (HEADROOM_REL * hm).max(HEADROOM_ABS);
                if !(-(tol + HEADROOM_EXTRA * hm) <= ho - hm && ho - hm <= tol) {
                    disagreements.push(format!("{at}: headroom_kw {ho} vs {hm}"));
                }
            }
        }
    }
    assert_eq!(total, 1200);
    // The oracle accepts 90 % on binding; we hold ourselves to every one but near ties.
    assert!(binding_ok * 10 >= total * 9);
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(30)].join("\n")
    );
}
