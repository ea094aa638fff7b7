//! `headroom serve --demo` on a free port: the simulators' readings arrive
//! through the connectors, and a workflow system registers, ranks, reserves,
//! releases and follows the events over HTTP; SIGTERM stops it cleanly.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::service_process::ServiceProcess;

struct Service {
    process: ServiceProcess,
    url: String,
    planner: String,
    workflow: String,
}

fn start_demo() -> Service {
    let process = ServiceProcess::start(
        env!("CARGO_BIN_EXE_headroom"),
        &["--demo"],
        &[
            ("HEADROOM_LISTEN", "127.0.0.1:0"),
            ("HEADROOM_READINGS__REFRESH_INTERVAL_S", "2"),
        ],
    );
    Service {
        url: process.url.clone(),
        planner: process.banner_value("planner token: "),
        workflow: process.banner_value("workflow token: "),
        process,
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_system_drives_the_demo_service_over_http() {
    let service = start_demo();
    let client = reqwest::Client::new();
    let base = service.url.clone();
    let get = reqwest::Method::GET;
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    // Live readings from the simulated OPC UA server and Modbus gateway, through
    // the demo's collector and isolation device into the service's relay inbox.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, sources) = call(
            &client,
            get.clone(),
            format!("{base}/v1/sources"),
            &service.planner,
            None,
        )
        .await;
        assert_eq!(status, 200, "{sources}");
        let durable = |kind: &str| {
            sources["connectors"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["kind"] == kind)
                .map(|c| c["durable"].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        if durable("opcua") > 0 && durable("modbus") > 0 && durable("relay_inbox") > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no live readings: {sources}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // An application near the first feeder.
    let (status, map) = call(
        &client,
        get.clone(),
        format!("{base}/v1/capacity"),
        &service.planner,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let first = &map["features"][0]["geometry"]["coordinates"][0][0];
    let app = json!({
        "id": "E2E-1", "lon": first[0], "lat": first[1], "demand_kw": 300,
        "power_factor": 0.95, "customer_class": "commercial"
    });
    let (status, ranking) = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/schemes"),
        &service.planner,
        Some(app.clone()),
    )
    .await;
    assert_eq!(status, 200, "{ranking}");
    assert!(
        !ranking["schemes"].as_array().unwrap().is_empty(),
        "{ranking}"
    );

    let (status, registered) = call(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/applications/E2E-1"),
        &service.workflow,
        Some(app),
    )
    .await;
    assert_eq!(status, 200, "{registered}");
    let reservation_url = format!("{base}/v1/applications/E2E-1/reservation");
    let (status, reservation) = call(
        &client,
        reqwest::Method::POST,
        reservation_url.clone(),
        &service.workflow,
        Some(json!({"scheme": 1})),
    )
    .await;
    assert_eq!(status, 201, "{reservation}");
    assert_eq!(
        reservation["supplies"],
        registered["schemes"][0]["supplies"]
    );
    let (status, _) = call(
        &client,
        reqwest::Method::DELETE,
        reservation_url,
        &service.workflow,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, events) = call(
        &client,
        get.clone(),
        format!("{base}/v1/events"),
        &service.workflow,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reservation_made", "reservation_released"]);
    // The planner may not read the workflow's events.
    let (status, _) = call(
        &client,
        get,
        format!("{base}/v1/events"),
        &service.planner,
        None,
    )
    .await;
    assert_eq!(status, 403);

    // SIGTERM: connectors stop, the store is flushed, exit 0.
    let mut service = service;
    let pid = service.process.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = service.process.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
