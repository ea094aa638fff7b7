//! Every rule an application can break (`shared/spec/api.md`): exit 2, a message
//! naming the field, and no ranking printed.

use serde_json::{Value, json};

use crate::support::{fixture, headroom};

fn valid() -> Value {
    json!({"id": "A1", "lon": 11.82, "lat": 53.42, "demand_kw": 500, "power_factor": 0.95,
           "voltage_kv": 20, "customer_class": "industrial", "importance": "normal"})
}

#[test]
fn each_broken_application_rule_exits_2_naming_the_field() {
    let profile_95: Vec<f64> = vec![0.5; 95];
    let mut profile_high: Vec<f64> = vec![0.5; 96];
    profile_high[40] = 1.2;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("missing demand", json!({"demand_kw": null}), "demand_kw"),
        ("zero demand", json!({"demand_kw": 0}), "demand_kw"),
        ("negative demand", json!({"demand_kw": -5}), "demand_kw"),
        ("demand as text", json!({"demand_kw": "500"}), "demand_kw"),
        (
            "power factor above 1",
            json!({"power_factor": 1.5}),
            "power_factor",
        ),
        (
            "power factor zero",
            json!({"power_factor": 0}),
            "power_factor",
        ),
        ("longitude out of range", json!({"lon": 190}), "lon"),
        ("latitude missing", json!({"lat": null}), "lat"),
        (
            "unknown customer class",
            json!({"customer_class": "farm"}),
            "customer_class",
        ),
        (
            "unknown importance",
            json!({"importance": "vip"}),
            "importance",
        ),
        (
            "profile of 95 values",
            json!({"profile": profile_95.clone()}),
            "profile",
        ),
        (
            "profile value above 1",
            json!({"profile": profile_high}),
            "profile",
        ),
        (
            "profile not an array",
            json!({"profile": "flat"}),
            "profile",
        ),
        ("negative voltage", json!({"voltage_kv": -10}), "voltage_kv"),
        (
            "negative radius",
            json!({"max_distance_m": -1}),
            "max_distance_m",
        ),
        ("missing id", json!({"id": null}), "id"),
        ("unknown kind", json!({"kind": "battery"}), "kind"),
        ("a source on a load", json!({"source": "pv"}), "source"),
        (
            "generation with a dual supply (a load's)",
            json!({"kind": "generation", "importance": "critical"}),
            "importance",
        ),
        (
            "generation as a charging station",
            json!({"kind": "generation", "customer_class": "ev_charging", "importance": null}),
            "customer_class",
        ),
        (
            "a negative export",
            json!({"kind": "generation", "demand_kw": -200, "importance": null}),
            "demand_kw",
        ),
        (
            "generation with a profile of 95 values",
            json!({"kind": "generation", "profile": profile_95.clone(), "importance": null}),
            "profile",
        ),
        (
            "an unknown source",
            json!({"kind": "generation", "source": "coal", "importance": null}),
            "source",
        ),
        ("n1 not a boolean", json!({"n1": "yes"}), "n1"),
        (
            "n1 asked for a generator",
            json!({"kind": "generation", "n1": true, "importance": null}),
            "n1",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let gridpack = fixture("1-MV-semiurb");
    let mut failures = Vec::new();
    for (name, edit, field) in cases {
        let mut app = valid();
        for (k, v) in edit.as_object().unwrap() {
            if v.is_null() {
                app.as_object_mut().unwrap().remove(k);
            } else {
                app[k] = v.clone();
            }
        }
        let file = dir.path().join("apps.json");
        std::fs::write(
            &file,
            serde_json::to_string(&json!([valid(), app])).unwrap(),
        )
        .unwrap();
        let run = headroom([
            "rank".as_ref(),
            gridpack.as_os_str(),
            "--applications".as_ref(),
            file.as_os_str(),
            "--json".as_ref(),
        ]);
        if run.code != 2 || !run.stderr.contains(&format!("[1].{field}`")) || !run.stdout.is_empty()
        {
            failures.push(format!(
                "{name}: exit {}, stderr {}",
                run.code,
                run.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_missing_or_malformed_applications_file_is_named() {
    let gridpack = fixture("1-MV-semiurb");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let run = headroom([
        "rank".as_ref(),
        gridpack.as_os_str(),
        "--applications".as_ref(),
        missing.as_os_str(),
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nope.json"), "{}", run.stderr);

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "[{\"id\": \"A1\",").unwrap();
    let run = headroom([
        "rank".as_ref(),
        gridpack.as_os_str(),
        "--applications".as_ref(),
        broken.as_os_str(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("broken.json") && run.stderr.contains("line 1"),
        "{}",
        run.stderr
    );
}

#[test]
fn rank_prints_readable_schemes_without_json() {
    let gridpack = fixture("1-MV-semiurb");
    let run = headroom(["rank".as_ref(), gridpack.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("application A01:"), "{}", run.stdout);
    assert!(run.stdout.contains("scheme 1 (score"), "{}", run.stdout);
}
