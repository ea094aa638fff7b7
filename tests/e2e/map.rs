//! The capacity map in a real browser: Debian's chromium, headless, driven by
//! `tests/browser/map.mjs` (playwright-core, installed by scripts/test) against
//! `headroom serve` on a free port. What the page drew and showed is checked
//! here against the API and `headroom rank`; screenshots are kept under
//! `target/browser-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::{external_tools, fixture, get_ok, headroom, serve_gridpack, test_tool};

/// What the browser driver runs on (`scripts/test` installs both).
const BROWSER: [&str; 2] = ["HEADROOM_NODE", "HEADROOM_CHROMIUM"];

fn screenshots(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../browser-screenshots")
        .join(test)
}

/// Runs the browser driver on `task` and returns its report.
fn drive(task: Value, dir: &Path) -> Value {
    let file = dir.join("task.json");
    std::fs::write(&file, task.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/map.mjs");
    let out = Command::new(test_tool("HEADROOM_NODE"))
        .arg(&script)
        .arg(&file)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "the browser driver failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the driver's report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The page loaded nothing from anywhere but the service.
fn only_the_service(report: &Value, service: &str) {
    let requested = report["requested"].as_array().unwrap();
    assert!(!requested.is_empty());
    let elsewhere: Vec<&str> = requested
        .iter()
        .filter_map(Value::as_str)
        .filter(|u| !u.starts_with(&format!("{service}/")) && !u.starts_with("data:"))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests to other hosts: {elsewhere:?}"
    );
    assert_eq!(
        report["console_errors"],
        json!([]),
        "the page logged errors"
    );
}

/// A figure as the panel shows it ("1,234.5 kW") as a number.
fn shown_number(text: &Value) -> f64 {
    let text = text.as_str().unwrap_or_else(|| panic!("no figure: {text}"));
    let digits: String = text
        .split_whitespace()
        .next()
        .unwrap()
        .chars()
        .filter(|c| *c != ',')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("`{text}` is not a figure"))
}

#[test]
fn the_map_draws_the_fixture_opens_a_feeder_and_tries_a_connection() {
    if external_tools(BROWSER).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gridpack = fixture("1-MV-semiurb");
    // The fixture's readings are months old: a year's staleness keeps the
    // screenshots in colour.
    let (service, token) = serve_gridpack(
        dir.path(),
        &gridpack,
        "planner",
        "[map]\nstale_after_s = 31536000",
    );
    let url = service.url.clone();

    let feeders = get_ok(&format!("{url}/v1/capacity?level=feeder"), &token);
    let features = feeders["features"].as_array().unwrap();
    assert!(!features.is_empty());
    // The feeder with the most segments: the easiest to hit with a click.
    let feeder = features
        .iter()
        .max_by_key(|f| f["geometry"]["coordinates"].as_array().unwrap().len())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // An application of the fixture as the form can enter it (no profile),
    // with a scheme.
    let ranked = headroom(["rank".as_ref(), gridpack.as_os_str(), "--json".as_ref()]);
    assert_eq!(ranked.code, 0, "{}", ranked.stderr);
    let rankings: Vec<Value> = serde_json::from_str(&ranked.stdout).unwrap();
    let applications: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(gridpack.join("applications.json")).unwrap())
            .unwrap();
    let (application, ranking) = applications
        .iter()
        .filter(|a| a.get("profile").is_none())
        .find_map(|a| {
            let r = rankings.iter().find(|r| r["application"] == a["id"])?;
            (!r["schemes"].as_array()?.is_empty()).then_some((a, r))
        })
        .expect("a fixture application with a scheme");

    let report = drive(
        json!({
            "url": url,
            "token": token,
            "mode": "fixture",
            "chromium": test_tool("HEADROOM_CHROMIUM"),
            "screenshots": screenshots("fixture"),
            "feeder": feeder,
            "application": application,
        }),
        dir.path(),
    );

    // Every feeder of the network drawn, and the substations.
    assert_eq!(report["drawn"]["feeders"], json!(features.len()));
    let substations = get_ok(&format!("{url}/v1/capacity?level=substation"), &token);
    assert_eq!(
        report["drawn"]["substations"],
        json!(substations["features"].as_array().unwrap().len())
    );
    assert_eq!(report["token_kept"], json!(true));

    // The clicked feeder's panel shows the API's figures.
    let asset = get_ok(&format!("{url}/v1/assets/{feeder}"), &token);
    let panel = &report["panel"];
    assert!(
        panel["title"].as_str().unwrap().contains(&feeder),
        "{panel}"
    );
    for field in ["headroom_kw", "loading_pct", "peak_kva"] {
        let api = asset["capacity"][field].as_f64().unwrap();
        let shown = shown_number(&panel[field]);
        assert!(
            (shown - api).abs() <= 0.051,
            "{field}: the panel shows {shown}, the API says {api}"
        );
    }
    assert_eq!(
        panel["binding_constraint"],
        asset["capacity"]["binding_constraint"]
    );
    assert_eq!(panel["chart_drawn"], json!(true));
    assert!(
        report["url_after_click"]
            .as_str()
            .unwrap()
            .contains(&format!("asset={feeder}")),
        "the selection is kept in the URL: {}",
        report["url_after_click"]
    );

    // Trying the application on the map gives `headroom rank`'s top scheme.
    let tried = &report["tried"];
    assert_eq!(tried["error"], Value::Null, "{tried}");
    assert_eq!(tried["top_supplies"], ranking["schemes"][0]["supplies"]);
    // ...with the conductor of each new line and the scheme's cost.
    let top = &ranking["schemes"][0];
    let conductors: Vec<Value> = top["service_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["conductor"]["name"].clone())
        .collect();
    assert!(conductors.iter().all(Value::is_string), "{top}");
    assert_eq!(tried["top_conductors"], json!(conductors), "{tried}");
    // A click lands on a pixel, a few metres from the application's point: the
    // route, and so the cost, differs by as much.
    let (shown, ranked) = (
        shown_number(&tried["top_cost"]),
        top["cost"].as_f64().unwrap(),
    );
    assert!(
        (shown - ranked).abs() <= 0.005 * ranked,
        "the page shows a cost of {shown}, rank {ranked}: {tried}"
    );
    assert_eq!(
        tried["candidates_listed"],
        json!(ranking["candidates"].as_array().unwrap().len())
    );

    only_the_service(&report, &url);
}

/// A synthetic city (`headroom synth` with `synth_args`) in `dir`, served to a
/// viewer. A debug build computes a city's figures slower than the default
/// request timeout, and its readings are months old by the test's clock.
fn serve_synthetic_city(
    dir: &std::path::Path,
    synth_args: &[&str],
) -> (crate::service_process::ServiceProcess, String) {
    let city = dir.join("city");
    let made = headroom(
        ["synth", city.to_str().unwrap()]
            .into_iter()
            .chain(synth_args.iter().copied()),
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    serve_gridpack(
        dir,
        &city,
        "viewer",
        "[http]\nrequest_timeout_ms = 900000\n[map]\nstale_after_s = 31536000",
    )
}

/// The default synthetic city (3,000 feeders, about 60,000 transformers; one day of
/// readings at the feeder heads, which is all the map's figures need to be
/// computed): the page's time to its first full render is printed, and every
/// feeder and substation is drawn.
#[test]
fn the_map_renders_the_synthetic_city() {
    if external_tools(BROWSER).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, token) =
        serve_synthetic_city(dir.path(), &["--days", "1", "--metered-share", "0"]);
    let url = service.url.clone();

    // The service computes the figures once per engine; this is the server's part.
    let started = Instant::now();
    let feeders = get_ok(&format!("{url}/v1/capacity?level=feeder"), &token);
    get_ok(&format!("{url}/v1/capacity?level=substation"), &token);
    let computed_s = started.elapsed().as_secs_f64();
    let overview = get_ok(&format!("{url}/v1/map"), &token);
    assert_eq!(overview["feeders"], json!(3000));
    assert!(
        overview["transformers"].as_u64().unwrap() >= 60_000,
        "{overview}"
    );

    let report = drive(
        json!({
            "url": url,
            "token": token,
            "mode": "render",
            "chromium": test_tool("HEADROOM_CHROMIUM"),
            "screenshots": screenshots("city"),
        }),
        dir.path(),
    );
    eprintln!(
        "city map: figures computed by the service in {computed_s:.1} s (debug build); \
         first full render {:.0} ms after navigation, zoom {:.0} ms, pan {:.0} ms",
        report["rendered_ms"].as_f64().unwrap(),
        report["zoom_ms"].as_f64().unwrap(),
        report["pan_ms"].as_f64().unwrap()
    );
    assert_eq!(
        report["drawn"]["feeders"],
        json!(feeders["features"].as_array().unwrap().len())
    );
    assert_eq!(report["drawn"]["feeders"], json!(3000));
    assert_eq!(report["drawn"]["substations"], json!(200));
    only_the_service(&report, &url);
}

/// The generation view on the demo's grid (two substations, PV behind some
/// transformers and queued at some feeders): every asset coloured by its
/// open-capacity grade, all three grades on the map, the legend saying what
/// each means; screenshot `generation.png`.
#[test]
fn the_generation_view_shows_every_grade_on_the_demo_grid() {
    if external_tools(BROWSER).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, token) = serve_synthetic_city(dir.path(), &["--substations", "2"]);
    let url = service.url.clone();
    let mut grades = std::collections::BTreeMap::new();
    for level in ["substation", "feeder", "transformer"] {
        let rows = get_ok(&format!("{url}/v1/capacity?level={level}"), &token);
        for f in rows["features"].as_array().unwrap() {
            *grades
                .entry(f["properties"]["grade"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    assert_eq!(grades.len(), 3, "every grade on the grid: {grades:?}");
    let report = drive(
        json!({
            "url": url,
            "token": token,
            "mode": "generation",
            "chromium": test_tool("HEADROOM_CHROMIUM"),
            "screenshots": screenshots("generation"),
        }),
        dir.path(),
    );
    let colours = &report["generation_colours"];
    let drawn = |colour: &str| {
        ["feeders", "substations", "transformers"]
            .iter()
            .map(|layer| colours[layer][colour].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    // Yellow is drawn amber, the map's middle colour.
    for colour in ["green", "amber", "red"] {
        assert!(drawn(colour) > 0, "no {colour} asset drawn: {report}");
    }
    // Grey: transformers without readings of their own, as in the load view.
    assert_eq!(
        drawn("green") + drawn("amber") + drawn("red") + drawn("grey"),
        grades.values().sum::<u64>(),
        "each asset in its grade's colour: {report}"
    );
    assert_eq!(
        report["generation_colours"]["transformers"]["grey"],
        report["load_colours"]["transformers"]["grey"]
    );
    // The N-1 view: each feeder red where no restoration case carries it as
    // it stands, green or amber where one does; nothing else coloured.
    let feeders = get_ok(&format!("{url}/v1/capacity?level=feeder"), &token);
    let failing = feeders["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["properties"]["n1_ok"] == json!(false))
        .count() as u64;
    let n1 = &report["n1_colours"];
    let count = |layer: &str, colour: &str| n1[layer][colour].as_u64().unwrap_or(0);
    assert_eq!(count("feeders", "red"), failing, "{report}");
    assert_eq!(
        count("feeders", "green") + count("feeders", "amber") + failing,
        feeders["features"].as_array().unwrap().len() as u64,
        "{report}"
    );
    assert_eq!(
        count("substations", "green") + count("transformers", "green"),
        0
    );
    assert!(
        report["n1_hash"].as_str().unwrap().contains("view=n1"),
        "{report}"
    );
    let legend = report["legend"].as_str().unwrap();
    for word in ["green", "yellow", "red", "C1", "C2"] {
        assert!(legend.contains(word), "the legend lacks {word}: {legend}");
    }
    assert!(report["hash"].as_str().unwrap().contains("view=generation"));
    assert_ne!(report["load_colours"], report["generation_colours"]);
    only_the_service(&report, &url);
}
