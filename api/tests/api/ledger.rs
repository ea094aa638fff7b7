//! No two applications are promised the same capacity: 50 reservations at once
//! on one feeder, each fitting alone and together more than the headroom, on
//! SQLite and on PostgreSQL.

use axum::http::{Method, StatusCode};
use headroom_api::auth::Role;
use serde_json::{Value, json};

use crate::support::{TestService, external_tools, fixture_applications};

const CONCURRENT: usize = 50;

async fn fifty_reservations_at_once_never_oversubscribe(service: TestService) {
    // A candidate with room, near a fixture application.
    let base = fixture_applications()[1].clone();
    let (status, ranking) = service
        .json(Method::POST, "/v1/schemes", Role::Planner, &base)
        .await;
    assert_eq!(status, StatusCode::OK);
    let candidate = ranking["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["feasible"] == json!(true) && c["headroom_kw"].as_f64().unwrap() > 500.0)
        .expect("a candidate with room")
        .clone();
    let node = candidate["node"].as_str().unwrap().to_owned();
    let headroom_kw = candidate["headroom_kw"].as_f64().unwrap();
    // Each fits alone; all together take five times the headroom.
    let demand_kw = (headroom_kw / 10.0).floor();
    for i in 0..CONCURRENT {
        let mut app = base.clone();
        app["id"] = json!(format!("C{i:02}"));
        app["demand_kw"] = json!(demand_kw);
        let (status, _) = service
            .json(
                Method::PUT,
                &format!("/v1/applications/C{i:02}"),
                Role::Workflow,
                &app,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let service = std::sync::Arc::new(service);
    let requests: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let service = service.clone();
            let node = node.clone();
            tokio::spawn(async move {
                service
                    .json(
                        Method::POST,
                        &format!("/v1/applications/C{i:02}/reservation"),
                        Role::Workflow,
                        &json!({"supplies": [node]}),
                    )
                    .await
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for (i, request) in requests.into_iter().enumerate() {
        let (status, body): (StatusCode, Value) = request.await.unwrap();
        match status {
            StatusCode::CREATED => accepted.push(format!("C{i:02}")),
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "no_longer_fits", "{body}");
                refused += 1;
            }
            other => panic!("C{i:02}: {other} {body}"),
        }
    }
    assert_eq!(accepted.len() + refused, CONCURRENT);
    assert!(
        !accepted.is_empty() && refused > 0,
        "{} accepted",
        accepted.len()
    );
    assert!(
        accepted.len() as f64 * demand_kw <= headroom_kw * 1.05,
        "{} x {demand_kw} kW accepted against {headroom_kw} kW of headroom",
        accepted.len()
    );

    // The accepted ones fit together: each, judged with all the others held.
    let ledger = service.state.ledger();
    let held = ledger.active_reservations().await.unwrap();
    assert_eq!(held.len(), accepted.len());
    let engine = service.state.engine();
    for id in &accepted {
        let others: Vec<_> = held
            .iter()
            .filter(|r| &r.application != id)
            .cloned()
            .collect();
        let judged =
            engine.with_reservations(headroom_api::state::reserved_loads(&engine, &others));
        let app = ledger.application_request(id).await.unwrap().unwrap();
        let checked = judged
            .evaluate_supplies(&app, std::slice::from_ref(&node))
            .unwrap();
        assert!(
            checked[0].feasible,
            "{id} does not fit with the others: {:?}",
            checked[0]
        );
    }
    // The ledger's total is the sum of what was accepted.
    let total = ledger.total_reserved_kw().await.unwrap();
    assert_eq!(total, accepted.len() as f64 * demand_kw);
    // One more is refused now.
    let (status, _) = service
        .json(
            Method::POST,
            "/v1/applications/C00/reservation",
            Role::Workflow,
            &json!({"supplies": [node]}),
        )
        .await;
    let c00_held = accepted.iter().any(|id| id == "C00");
    assert_eq!(
        status,
        if c00_held {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_oversubscription_on_sqlite() {
    fifty_reservations_at_once_never_oversubscribe(TestService::start().await).await;
}

/// A fresh database on the PostgreSQL server `scripts/test` starts; `None`
/// when the test is skipped for want of one.
async fn postgres_database() -> Option<String> {
    let [url] = external_tools(["HEADROOM_TEST_POSTGRES_URL"])?;
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let name = format!(
        "headroom_test_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_oversubscription_on_postgresql() {
    let Some(url) = postgres_database().await else {
        return;
    };
    fifty_reservations_at_once_never_oversubscribe(TestService::with_database(Some(url)).await)
        .await;
}
