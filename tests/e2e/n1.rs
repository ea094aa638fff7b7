//! N-1 (`shared/spec/planning.md` §2) end to end: `headroom rank` of the
//! applications in `tests/n1/` on the fixture against the independent
//! pandapower cross-check beside them (`tests/n1/oracle.py`, written from the
//! specs and the gridpack files alone): for every candidate on a feeder, the
//! transfer check's verdict, the N-1 headroom (within 3 % or 20 kW), the case
//! that allows most and its loading at the demand.

use crate::support::{candidates_by_node, cross_check};

#[test]
fn n1_transfer_agrees_with_an_independent_power_flow_on_the_fixture() {
    let (expected, results) = cross_check("n1");
    let (mut compared, mut failing) = (0, 0);
    let mut failures = Vec::new();
    for app in expected["applications"].as_array().unwrap() {
        let id = app["id"].as_str().unwrap();
        let demand = app["demand_kw"].as_f64().unwrap();
        let ours = candidates_by_node(&results, id);
        for theirs in app["candidates"].as_array().unwrap() {
            let node = theirs["node"].as_str().unwrap();
            let Some(c) = ours.get(node) else {
                failures.push(format!("{id} at {node}: not a candidate of ours"));
                continue;
            };
            let transfer = c["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == "n1_transfer")
                .unwrap_or_else(|| panic!("{id} at {node}: no n1_transfer check"));
            // Never above the normal headroom, which the fixture oracle checks.
            let expected_h = theirs["n1_case_headroom_kw"]
                .as_f64()
                .unwrap()
                .min(c["headroom_kw"].as_f64().unwrap());
            let h = c["n1_headroom_kw"].as_f64().unwrap();
            if (h - expected_h).abs() > (0.03 * expected_h).max(20.0) {
                failures.push(format!(
                    "{id} at {node}: N-1 headroom {h} kW against {expected_h} kW"
                ));
            }
            let expected_ok = demand <= expected_h;
            if transfer["ok"] != expected_ok {
                failures.push(format!(
                    "{id} at {node}: n1_transfer ok {} against {expected_ok} ({demand} kW, {expected_h} kW)",
                    transfer["ok"]
                ));
            }
            // The case that allows most, where it is one (equal headrooms are
            // broken by the loading at the demand).
            let best = theirs["best_case"].as_str().unwrap_or_default();
            let tied = theirs["cases"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|k| {
                    (k["headroom_kw"].as_f64().unwrap()
                        - theirs["n1_case_headroom_kw"].as_f64().unwrap())
                    .abs()
                        <= 20.0
                })
                .count();
            if tied == 1 && transfer["element"] != best {
                failures.push(format!(
                    "{id} at {node}: best case {} against {best}",
                    transfer["element"]
                ));
            }
            if tied == 1
                && let (Some(value), Some(loading)) = (
                    transfer["value"].as_f64(),
                    theirs["best_case_loading_pct"].as_f64(),
                )
                && (value - loading).abs() > 0.5
            {
                failures.push(format!(
                    "{id} at {node}: loading at the demand {value} % against {loading} %"
                ));
            }
            failing += usize::from(!expected_ok);
            compared += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared >= 400, "only {compared} candidates compared");
    // Both verdicts occur: the comparison is not of a grid where all pass.
    assert!(
        failing > 50 && failing < compared,
        "{failing} of {compared} fail N-1"
    );
}
