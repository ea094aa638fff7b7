//! Every route: what each role may do, the shapes answered, and the errors.

use axum::http::{Method, StatusCode};
use headroom_api::auth::Role;
use serde_json::{Value, json};

use crate::support::{
    TestService, assert_bad_queries, error_code, error_field, fixture, fixture_applications,
};

/// Each `/v1` route, a body it accepts, and the roles the spec admits (admin
/// may do everything).
fn routes() -> Vec<(Method, &'static str, Option<Value>, Vec<Role>)> {
    let app = fixture_applications()[1].clone();
    vec![
        (
            Method::POST,
            "/v1/schemes",
            Some(app.clone()),
            vec![Role::Planner, Role::Workflow],
        ),
        (
            Method::PUT,
            "/v1/applications/A02",
            Some(app),
            vec![Role::Workflow],
        ),
        (
            Method::GET,
            "/v1/applications/A02",
            None,
            vec![Role::Planner, Role::Workflow],
        ),
        (
            Method::GET,
            "/v1/capacity",
            None,
            vec![Role::Viewer, Role::Planner, Role::Workflow],
        ),
        (
            Method::GET,
            "/v1/map",
            None,
            vec![Role::Viewer, Role::Planner, Role::Workflow],
        ),
        (
            Method::GET,
            "/v1/assets/nope",
            None,
            vec![Role::Viewer, Role::Planner, Role::Workflow],
        ),
        (
            Method::GET,
            "/v1/assets/nope/readings",
            None,
            vec![Role::Viewer, Role::Planner, Role::Workflow],
        ),
        (Method::GET, "/v1/events", None, vec![Role::Workflow]),
        (
            Method::GET,
            "/v1/sources",
            None,
            vec![Role::Viewer, Role::Planner, Role::Workflow],
        ),
        (Method::POST, "/v1/readings", None, vec![Role::Ingest]),
        (Method::PUT, "/v1/network", None, vec![]),
        (
            Method::POST,
            "/v1/applications/A02/reservation",
            Some(json!({"scheme": 1})),
            vec![Role::Workflow],
        ),
        (
            Method::DELETE,
            "/v1/applications/A02/reservation",
            None,
            vec![Role::Workflow],
        ),
    ]
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_unknown_token_and_a_role_that_may_not() {
    let service = TestService::start().await;
    for (method, path, body, admitted) in routes() {
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
        let (status, answer) = service.call(method.clone(), path, None, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {answer}"
        );
        assert_eq!(error_code(&answer), "unauthorized");
        let mut request = axum::http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header("authorization", "Bearer not-a-token");
        request = request.header("content-type", "application/json");
        let response = tower::ServiceExt::oneshot(
            service.router.clone(),
            request.body(axum::body::Body::empty()).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} bad token"
        );
        for role in Role::ALL {
            let (status, answer) = service
                .call(method.clone(), path, Some(role), body.clone())
                .await;
            let may = role == Role::Admin || admitted.contains(&role);
            if may {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{role} may {method} {path}: {status} {answer}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} may not {method} {path}: {answer}"
                );
                assert_eq!(error_code(&answer), "forbidden");
            }
        }
    }
}

#[tokio::test]
async fn health_readiness_metrics_and_the_openapi_document_need_no_token() {
    let service = TestService::start().await;
    let (status, body) = service.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = service.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ledger"], json!(true));
    let (status, doc) = service.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path, _, _) in routes() {
        let template = path.replace("A02", "{id}").replace("nope", "{id}");
        let entry = paths
            .get(&template)
            .unwrap_or_else(|| panic!("{template} not documented"));
        assert!(
            entry.get(method.as_str().to_lowercase()).is_some(),
            "{method} {template} not documented"
        );
    }
    for schema in [
        "RankingResult",
        "Candidate",
        "Application",
        "ErrorBody",
        "ReservationRecord",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    // A request counted under its route.
    service.call(Method::GET, "/healthz", None, None).await;
    let (status, text) = service.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("headroom_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/healthz\""), "{text}");
    assert!(
        text.contains("headroom_store_readings_accepted_total"),
        "{text}"
    );
    let (status, body) = service.call(Method::GET, "/v2/nothing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn schemes_rank_as_the_engine_does_and_name_a_bad_field() {
    let service = TestService::start().await;
    let app = fixture_applications()[0].clone();
    let (status, ranked) = service
        .json(Method::POST, "/v1/schemes", Role::Planner, &app)
        .await;
    assert_eq!(status, StatusCode::OK, "{ranked}");
    let engine = service.state.engine();
    let expected = engine.rank(&headroom_engine::Application::from_json(&app).unwrap());
    assert_eq!(ranked, serde_json::to_value(&expected).unwrap());
    assert!(!ranked["candidates"].as_array().unwrap().is_empty());

    let mut bad = app.clone();
    bad["demand_kw"] = json!(-5);
    let (status, body) = service
        .json(Method::POST, "/v1/schemes", Role::Planner, &bad)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&body), "demand_kw");
    let mut bad = app.clone();
    bad["profile"] = json!([0.5, 2.0]);
    let (status, body) = service
        .json(Method::POST, "/v1/schemes", Role::Workflow, &bad)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&body), "profile");
    let (status, body) = service
        .call(
            Method::POST,
            "/v1/schemes",
            Some(Role::Planner),
            Some(("application/json", b"{".to_vec())),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&body), "body");
    // Nothing was stored.
    let (status, _) = service
        .call(
            Method::GET,
            "/v1/applications/A01",
            Some(Role::Planner),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_application_is_registered_reserved_released_and_its_events_listed_in_order() {
    let service = TestService::start().await;
    let mut app = fixture_applications()[1].clone();
    app.as_object_mut().unwrap().remove("id");
    let (status, ranking) = service
        .json(Method::PUT, "/v1/applications/A02", Role::Workflow, &app)
        .await;
    assert_eq!(status, StatusCode::OK, "{ranking}");
    assert_eq!(ranking["application"], "A02");
    let first_scheme = ranking["schemes"][0]["supplies"].clone();
    assert!(first_scheme.is_array(), "{ranking}");
    // Idempotent.
    let (status, again) = service
        .json(Method::PUT, "/v1/applications/A02", Role::Workflow, &app)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["schemes"], ranking["schemes"]);
    let mut other_id = app.clone();
    other_id["id"] = json!("A99");
    let (status, body) = service
        .json(
            Method::PUT,
            "/v1/applications/A02",
            Role::Workflow,
            &other_id,
        )
        .await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, "id")
    );

    let (status, record) = service
        .call(
            Method::GET,
            "/v1/applications/A02",
            Some(Role::Planner),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["status"], "registered");
    assert_eq!(record["ranking"]["schemes"], ranking["schemes"]);
    assert_eq!(record["audit"][0]["action"], "registered");
    assert_eq!(record["audit"][0]["actor"], "test-workflow");

    let reserve = "/v1/applications/A02/reservation";
    let (status, reservation) = service
        .json(Method::POST, reserve, Role::Workflow, &json!({"scheme": 1}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reservation}");
    assert_eq!(reservation["supplies"], first_scheme);
    assert_eq!(reservation["reserved_kw"], app["demand_kw"]);
    let (status, same) = service
        .json(Method::POST, reserve, Role::Workflow, &json!({"scheme": 1}))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same scheme again is the same reservation"
    );
    assert_eq!(same["id"], reservation["id"]);
    // The engine counts it for later rankings.
    assert_eq!(
        service.state.engine().reservations.len(),
        first_scheme.as_array().unwrap().len()
    );
    // A reserved application cannot change its request.
    let mut bigger = app.clone();
    bigger["demand_kw"] = json!(500);
    let (status, body) = service
        .json(Method::PUT, "/v1/applications/A02", Role::Workflow, &bigger)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "reserved")
    );

    let (status, record) = service
        .call(
            Method::GET,
            "/v1/applications/A02",
            Some(Role::Workflow),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["status"], "reserved");
    assert_eq!(record["reservation"]["id"], reservation["id"]);

    let (status, released) = service
        .call(Method::DELETE, reserve, Some(Role::Workflow), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["release_reason"], "released");
    assert!(service.state.engine().reservations.is_empty());
    let (status, _) = service
        .call(Method::DELETE, reserve, Some(Role::Workflow), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, page) = service
        .call(Method::GET, "/v1/events", Some(Role::Workflow), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reservation_made", "reservation_released"]);
    let first = page["events"][0]["cursor"].as_str().unwrap();
    let (_, later) = service
        .call(
            Method::GET,
            &format!("/v1/events?after={first}"),
            Some(Role::Workflow),
            None,
        )
        .await;
    assert_eq!(later["events"].as_array().unwrap().len(), 1);
    assert_eq!(later["events"][0]["kind"], "reservation_released");
    let next = later["next"].as_str().unwrap();
    let (_, none) = service
        .call(
            Method::GET,
            &format!("/v1/events?after={next}"),
            Some(Role::Workflow),
            None,
        )
        .await;
    assert!(none["events"].as_array().unwrap().is_empty());
    assert_eq!(none["next"], next);
    let (status, body) = service
        .call(
            Method::GET,
            "/v1/events?after=x",
            Some(Role::Workflow),
            None,
        )
        .await;
    assert_eq!(
        (status, error_field(&body)),
        (StatusCode::BAD_REQUEST, "after")
    );
}

#[tokio::test]
async fn a_reservation_that_does_not_fit_is_refused_with_its_binding_constraint() {
    let service = TestService::start().await;
    let app = fixture_applications()[0].clone();
    let (status, ranking) = service
        .json(Method::PUT, "/v1/applications/A01", Role::Workflow, &app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let Some(short) = ranking["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["feasible"] == json!(false) && c["binding_constraint"] != "out_of_service")
    else {
        panic!("the fixture's A01 has an infeasible candidate: {ranking}");
    };
    let (status, body) = service
        .json(
            Method::POST,
            "/v1/applications/A01/reservation",
            Role::Workflow,
            &json!({"supplies": [short["node"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "no_longer_fits");
    assert_eq!(body["error"]["field"], short["binding_constraint"]);
    for (request, field) in [
        (json!({"scheme": 99}), "scheme"),
        (json!({}), "scheme"),
        (json!({"supplies": ["NOT-A-NODE"]}), "supplies[0]"),
        (json!({"supplies": []}), "supplies"),
    ] {
        let (status, body) = service
            .json(
                Method::POST,
                "/v1/applications/A01/reservation",
                Role::Workflow,
                &request,
            )
            .await;
        assert_eq!(
            (status, error_field(&body)),
            (StatusCode::BAD_REQUEST, field),
            "{request}: {body}"
        );
    }
    let (status, _) = service
        .json(
            Method::POST,
            "/v1/applications/NONE/reservation",
            Role::Workflow,
            &json!({"scheme": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_ranking_asked_again_reflects_reservations_made_in_between() {
    let service = TestService::start().await;
    let applications = fixture_applications();
    let asked = applications[1].clone();
    let rank = || async {
        let (status, ranking) = service
            .json(Method::POST, "/v1/schemes", Role::Planner, &asked)
            .await;
        assert_eq!(status, StatusCode::OK, "{ranking}");
        ranking
    };
    let before = rank().await;
    assert_eq!(rank().await, before, "asked twice, answered the same");
    let top = before["schemes"][0]["supplies"][0].clone();
    let headroom_at = |ranking: &Value| {
        ranking["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"] == top)
            .unwrap()["headroom_kw"]
            .as_f64()
            .unwrap()
    };
    // Another application takes some of that node's headroom.
    let mut other = applications[0].clone();
    other["demand_kw"] = json!((headroom_at(&before) / 4.0).floor());
    let (status, body) = service
        .json(Method::PUT, "/v1/applications/A01", Role::Workflow, &other)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = service
        .json(
            Method::POST,
            "/v1/applications/A01/reservation",
            Role::Workflow,
            &json!({"supplies": [top]}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let after = rank().await;
    assert!(
        headroom_at(&after) < headroom_at(&before) - 1.0,
        "the reservation counts in the next ranking: {} then {}",
        headroom_at(&before),
        headroom_at(&after)
    );
}

#[tokio::test]
async fn capacity_is_geojson_of_every_asset_filtered_by_level_and_box() {
    let service = TestService::start().await;
    let feeders = service.state.engine().network.feeders.len();
    let (status, map) = service
        .call(Method::GET, "/v1/capacity", Some(Role::Viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{map}");
    assert_eq!(map["type"], "FeatureCollection");
    let features = map["features"].as_array().unwrap();
    assert_eq!(features.len(), feeders);
    let first = &features[0];
    assert_eq!(first["geometry"]["type"], "MultiLineString");
    // Each feeder's segments are joined into lines: every segment drawn once
    // (a line of k pieces has one point more than k), in fewer parts.
    let engine = service.state.engine();
    for feature in features {
        let f = engine
            .network
            .lookup(feature["id"].as_str().unwrap())
            .unwrap();
        let tree = engine
            .topology
            .tree(headroom_geodata::FeederIx::from_usize(f.index as usize));
        let pieces: usize = tree
            .segments()
            .map(|s| engine.network.segment(s).geometry.len() - 1)
            .sum();
        let lines = feature["geometry"]["coordinates"].as_array().unwrap();
        let points: usize = lines.iter().map(|l| l.as_array().unwrap().len()).sum();
        assert_eq!(points - lines.len(), pieces, "{}", feature["id"]);
        assert!(lines.len() < tree.segments().count(), "{}", feature["id"]);
    }
    for field in [
        "rated",
        "peak_kva",
        "loading_pct",
        "headroom_kw",
        "binding_constraint",
        "reserved_kw",
        "data_age_s",
        "metered_share",
    ] {
        assert!(first["properties"].get(field).is_some(), "{field}: {first}");
    }
    let (status, transformers) = service
        .call(
            Method::GET,
            "/v1/capacity?level=transformer",
            Some(Role::Planner),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        transformers["features"].as_array().unwrap().len(),
        service.state.engine().network.transformers.len()
    );
    // A box around one transformer holds it.
    let one = &transformers["features"][0];
    let [lon, lat] = [
        one["geometry"]["coordinates"][0].as_f64().unwrap(),
        one["geometry"]["coordinates"][1].as_f64().unwrap(),
    ];
    let path = format!(
        "/v1/capacity?level=transformer&bbox={},{},{},{}",
        lon - 1e-6,
        lat - 1e-6,
        lon + 1e-6,
        lat + 1e-6
    );
    let (_, boxed) = service
        .call(Method::GET, &path, Some(Role::Viewer), None)
        .await;
    let ids: Vec<&str> = boxed["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&one["id"].as_str().unwrap())
            && ids.len() < transformers["features"].as_array().unwrap().len()
    );
    assert_bad_queries(
        &service,
        "/v1/capacity",
        Role::Viewer,
        &[
            ("level=street", "level"),
            ("bbox=1,2,3", "bbox"),
            ("bbox=5,5,1,1", "bbox"),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_map_overview_holds_the_configured_thresholds_the_extent_and_the_ties() {
    let service = TestService::start().await;
    let engine = service.state.engine();
    let network = &engine.network;
    let (status, overview) = service
        .call(Method::GET, "/v1/map", Some(Role::Viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{overview}");
    let map = &service.state.config().map;
    assert_eq!(overview["amber_loading_pct"], json!(map.amber_loading_pct));
    assert_eq!(overview["red_loading_pct"], json!(map.red_loading_pct));
    assert_eq!(overview["stale_after_s"], json!(map.stale_after_s));
    assert_eq!(overview["feeders"], json!(network.feeders.len()));
    assert_eq!(overview["transformers"], json!(network.transformers.len()));
    assert_eq!(overview["substations"], json!(network.substations.len()));
    let bbox: Vec<f64> = serde_json::from_value(overview["bbox"].clone()).unwrap();
    for t in &network.transformers {
        let p = t.position;
        assert!(
            p.lon >= bbox[0] && p.lat >= bbox[1] && p.lon <= bbox[2] && p.lat <= bbox[3],
            "{} outside {bbox:?}",
            t.id
        );
    }
    let open: Vec<&str> = network
        .switches
        .iter()
        .filter(|s| s.normally_open)
        .map(|s| s.id.as_str())
        .collect();
    let ties = overview["ties"]["features"].as_array().unwrap();
    let tie_ids: Vec<&str> = ties.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(tie_ids, open);
    for tie in ties {
        assert_eq!(tie["geometry"]["type"], "LineString");
        assert_eq!(tie["geometry"]["coordinates"].as_array().unwrap().len(), 2);
    }
}

// Without the `map` feature `/` is a page saying how to get the map (a unit
// test of `web.rs`).
#[cfg(feature = "map")]
#[tokio::test]
async fn the_capacity_map_page_and_its_libraries_are_served_without_a_token() {
    let service = TestService::start().await;
    for (path, content_type, needle) in [
        ("/", "text/html", "Headroom"),
        ("/map/app.js", "text/javascript", "/v1/capacity"),
        ("/map/app.css", "text/css", "#map"),
        ("/map/vendor/leaflet.js", "text/javascript", "Leaflet"),
        ("/map/vendor/leaflet.css", "text/css", ".leaflet-"),
        ("/map/vendor/uPlot.iife.min.js", "text/javascript", "uPlot"),
        ("/map/vendor/uPlot.min.css", "text/css", ".uplot"),
        ("/map/vendor/images/layers.png", "image/png", "PNG"),
    ] {
        let response = tower::ServiceExt::oneshot(
            service.router.clone(),
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}: {:?}",
            headers["content-type"]
        );
        // The page may talk to no host but this one.
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'self'"),
            "{path}"
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            body.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{path} lacks {needle}"
        );
    }
    let (status, answer) = service
        .call(Method::GET, "/map/vendor/nothing.js", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(error_code(&answer), "not_found");
}

#[tokio::test]
async fn assets_show_ratings_readings_and_series_and_readings_arrive_over_http() {
    let service = TestService::start().await;
    let engine = service.state.engine();
    let feeder = engine.network.feeders[0].id.as_str().to_owned();
    let transformer = engine.network.transformers[0].id.as_str().to_owned();
    let (status, asset) = service
        .call(
            Method::GET,
            &format!("/v1/assets/{feeder}"),
            Some(Role::Viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asset}");
    assert_eq!(asset["kind"], "feeder");
    assert!(
        asset["readings"]["peak_kva"].as_f64().unwrap() > 0.0,
        "{asset}"
    );
    assert_eq!(
        asset["readings"]["typical_weekday_kw"]
            .as_array()
            .unwrap()
            .len(),
        96
    );
    assert_eq!(asset["capacity"]["id"], feeder.as_str());
    // Where it lies, for the map to zoom to: around every point of its segments.
    let bbox: Vec<f64> = serde_json::from_value(asset["bbox"].clone()).unwrap();
    let (_, map) = service
        .call(Method::GET, "/v1/capacity", Some(Role::Viewer), None)
        .await;
    let drawn = map["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == feeder.as_str())
        .unwrap();
    for line in drawn["geometry"]["coordinates"].as_array().unwrap() {
        for point in line.as_array().unwrap() {
            let (lon, lat) = (point[0].as_f64().unwrap(), point[1].as_f64().unwrap());
            assert!(
                lon >= bbox[0] - 1e-6
                    && lat >= bbox[1] - 1e-6
                    && lon <= bbox[2] + 1e-6
                    && lat <= bbox[3] + 1e-6,
                "{point} outside {bbox:?}"
            );
        }
    }
    assert_eq!(
        drawn["properties"]["name"],
        json!(engine.network.feeders[0].name)
    );
    let (status, _) = service
        .call(Method::GET, "/v1/assets/NOPE", Some(Role::Viewer), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let series_path = format!(
        "/v1/assets/{transformer}/readings?quantity=p_kw&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
    );
    let (status, series) = service
        .call(Method::GET, &series_path, Some(Role::Viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{series}");
    let before = series["points"].as_array().unwrap().len();
    assert!(before > 0);
    assert_bad_queries(
        &service,
        &format!("/v1/assets/{transformer}/readings"),
        Role::Viewer,
        &[
            ("quantity=volts", "quantity"),
            ("from=yesterday", "from"),
            ("from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", "from"),
        ],
    )
    .await;

    // CSV, with an unknown asset the store rejects, then JSON lines.
    let csv = format!(
        "ts,asset,quantity,value\n2026-11-01T00:00:00Z,{transformer},p_kw,12.5\n2026-11-01T00:00:00Z,NOPE,p_kw,1\n"
    );
    let (status, taken) = service
        .call(
            Method::POST,
            "/v1/readings",
            Some(Role::Ingest),
            Some(("text/csv", csv.into_bytes())),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{taken}");
    assert_eq!(
        (taken["accepted"].as_u64(), taken["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let lines = format!(
        "{{\"ts\":\"2026-11-01T00:15:00Z\",\"asset\":\"{transformer}\",\"quantity\":\"p_kw\",\"value\":13.5,\"quality\":\"uncertain\"}}\n"
    );
    let (status, taken) = service
        .call(
            Method::POST,
            "/v1/readings",
            Some(Role::Ingest),
            Some(("application/x-ndjson", lines.into_bytes())),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{taken}");
    let (_, series) = service
        .call(Method::GET, &series_path, Some(Role::Viewer), None)
        .await;
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), before + 2);
    assert!(
        points
            .iter()
            .any(|p| p[1] == json!(13.5) && p[2] == "uncertain")
    );
    for (body, field) in [
        (
            "ts,asset,quantity,value\n2026-11-01T00:00:00Z,T,p_kw,abc\n",
            "line 2.value",
        ),
        ("time,asset,quantity,value\n", "line 1"),
        (
            "ts,asset,quantity,value\n2026-11-01T00:00:00Z,T,watts,1\n",
            "line 2.quantity",
        ),
        (
            "ts,asset,quantity,value\nnot-a-time,T,p_kw,1\n",
            "line 2.ts",
        ),
    ] {
        let (status, answer) = service
            .call(
                Method::POST,
                "/v1/readings",
                Some(Role::Ingest),
                Some(("text/csv", body.as_bytes().to_vec())),
            )
            .await;
        assert_eq!(
            (status, error_field(&answer)),
            (StatusCode::BAD_REQUEST, field),
            "{body}: {answer}"
        );
    }
    let (status, sources) = service
        .call(Method::GET, "/v1/sources", Some(Role::Viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sources["connectors"], json!([]));
    assert!(sources["store"]["accepted"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_new_network_is_validated_before_it_replaces_the_old_and_reservations_are_rejudged() {
    let service = TestService::start().await;
    let app = fixture_applications()[1].clone();
    let (status, _) = service
        .json(Method::PUT, "/v1/applications/A02", Role::Workflow, &app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reservation) = service
        .json(
            Method::POST,
            "/v1/applications/A02/reservation",
            Role::Workflow,
            &json!({"scheme": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reservation}");
    let feeders = service.state.engine().network.feeders.len();

    // Invalid: refused, the old network stays.
    for bad in [b"{".to_vec(), br#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":null,"properties":{"kind":"pole"}}]}"#.to_vec()] {
        let (status, body) = service
            .call(Method::PUT, "/v1/network", Some(Role::Admin), Some(("application/geo+json", bad)))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    assert_eq!(service.state.engine().network.feeders.len(), feeders);

    // The same network with every segment rated at 1 A: valid, swapped in, and
    // the reserved scheme no longer fits.
    let mut network: Value =
        serde_json::from_slice(&std::fs::read(fixture().join("network.geojson")).unwrap()).unwrap();
    for feature in network["features"].as_array_mut().unwrap() {
        if feature["properties"]["kind"] == "segment" {
            feature["properties"]["rated_a"] = json!(1.0);
        }
    }
    let (status, summary) = service
        .call(
            Method::PUT,
            "/v1/network",
            Some(Role::Admin),
            Some((
                "application/geo+json",
                serde_json::to_vec(&network).unwrap(),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["feeders"].as_u64(), Some(feeders as u64));
    let changed = headroom_api::background::check_fits(&service.state)
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let (_, page) = service
        .call(Method::GET, "/v1/events", Some(Role::Workflow), None)
        .await;
    let last = page["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "reservation_no_longer_fits");
    assert_eq!(last["application"], "A02");
    // Told once, not at every check.
    assert_eq!(
        headroom_api::background::check_fits(&service.state)
            .await
            .unwrap(),
        0
    );
    let (_, record) = service
        .call(
            Method::GET,
            "/v1/applications/A02",
            Some(Role::Workflow),
            None,
        )
        .await;
    assert!(record["no_longer_fits_since"].is_string(), "{record}");
}

#[tokio::test]
async fn reservations_expire_with_an_event_and_stop_counting() {
    let service = TestService::start().await;
    let app = fixture_applications()[1].clone();
    service
        .json(Method::PUT, "/v1/applications/A02", Role::Workflow, &app)
        .await;
    let (status, _) = service
        .json(
            Method::POST,
            "/v1/applications/A02/reservation",
            Role::Workflow,
            &json!({"scheme": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ledger = service.state.ledger();
    assert!(
        ledger
            .expire_due(chrono::Utc::now().timestamp_millis())
            .await
            .unwrap()
            .is_empty()
    );
    let in_200_days = chrono::Utc::now().timestamp_millis() + 200 * 86_400_000;
    assert_eq!(ledger.expire_due(in_200_days).await.unwrap(), ["A02"]);
    service.state.reload_reservations().await.unwrap();
    assert!(service.state.engine().reservations.is_empty());
    let (_, record) = service
        .call(
            Method::GET,
            "/v1/applications/A02",
            Some(Role::Workflow),
            None,
        )
        .await;
    assert_eq!(record["status"], "expired");
    assert!(record["reservation"].is_null());
    let (_, page) = service
        .call(Method::GET, "/v1/events", Some(Role::Workflow), None)
        .await;
    assert_eq!(
        page["events"].as_array().unwrap().last().unwrap()["kind"],
        "reservation_expired"
    );
}

#[tokio::test]
async fn capacity_data_never_ends_in_the_future_while_live_readings_fill_the_last_step() {
    let service = TestService::start().await;
    let feeder = service.state.engine().network.feeders[0].id.to_string();
    // A reading a second old: its 15-minute step ends up to 15 minutes ahead.
    let at = chrono::Utc::now() - chrono::Duration::seconds(1);
    let csv = format!(
        "ts,asset,quantity,value\n{},{feeder},p_kw,100\n",
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let (status, taken) = service
        .call(
            Method::POST,
            "/v1/readings",
            Some(Role::Ingest),
            Some(("text/csv", csv.into_bytes())),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{taken}");
    service.state.refresh_readings().await.unwrap();
    let (status, capacity) = service
        .call(
            Method::GET,
            "/v1/capacity?level=feeder",
            Some(Role::Viewer),
            None,
        )
        .await;
    let answered = chrono::Utc::now();
    assert_eq!(status, StatusCode::OK, "{capacity}");
    let to = chrono::DateTime::parse_from_rfc3339(capacity["data_to"].as_str().unwrap()).unwrap();
    assert!(
        to >= at && to <= answered,
        "data_to {to}, reading {at}, answered {answered}"
    );
}
