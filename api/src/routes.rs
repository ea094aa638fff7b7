//! The routes of `shared/spec/api.md`, each with its OpenAPI description.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use headroom_engine::{Application, CapacityRow, RankingResult};
use headroom_geodata::{
    AssetKind, FieldError, LineFields, LineRules, LonLat, ReadingLines, rfc3339,
};
use headroom_readings::{Quality, Reading};
use headroom_store::AssetStats;
use headroom_store::StoreCounts;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Permission};
use crate::drawing::{asset_name, bounds, drawn, extent, map_coordinates};
use crate::error::{Error, ErrorBody, Result};
use crate::ledger::{ApplicationRecord, Event, NewReservation, ReservationRecord};
use crate::state::{AppState, LevelKey, Ranked, reserved_loads};

/// A query string, rejected in the API's error form (axum's own rejection is
/// plain text).
pub(crate) struct Query<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| Error::bad("query", e.body_text()))
    }
}

/// A path parameter, rejected in the API's error form.
pub(crate) struct Path<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| Error::bad("path", e.body_text()))
    }
}

fn parse_json(body: &Bytes) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| Error::bad("body", format!("is not valid JSON: {e}")))
}

fn application_from(body: &Bytes, path_id: Option<&str>) -> Result<Application> {
    let mut value = parse_json(body)?;
    if let (Some(id), Value::Object(map)) = (path_id, &mut value) {
        match map.get("id") {
            None => {
                map.insert("id".into(), Value::String(id.to_owned()));
            }
            Some(Value::String(given)) if given == id => {}
            Some(_) => {
                return Err(Error::bad(
                    "id",
                    format!("must be the application id of the path, `{id}`"),
                ));
            }
        }
    }
    Ok(Application::from_json(&value)?)
}

/// Runs CPU work (power flows) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("a worker failed: {e}")))
}

/// A ranking's JSON as answered.
fn ranking_response(ranked: &Ranked) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ranked.json.clone(),
    )
        .into_response()
}

/// Rank one application; nothing is stored.
#[utoipa::path(
    post, path = "/v1/schemes", tag = "schemes",
    request_body(content = Application, description = "The application", content_type = "application/json"),
    responses(
        (status = 200, description = "Candidates and schemes", body = RankingResult),
        (status = 400, description = "A field breaks a rule", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_schemes(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    caller.require(Permission::Plan, "rank applications")?;
    let app = application_from(&body, None)?;
    Ok(ranking_response(&*state.rank(app).await?))
}

/// Register or update an application; returns its ranking.
#[utoipa::path(
    put, path = "/v1/applications/{id}", tag = "applications",
    params(("id" = String, Path, description = "The workflow system's application id")),
    request_body(content = Application, description = "The application (its `id` may be left out)", content_type = "application/json"),
    responses(
        (status = 200, description = "Registered; its ranking", body = RankingResult),
        (status = 400, description = "A field breaks a rule", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 409, description = "It holds a reservation for another request", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_application(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    caller.require(Permission::Workflow, "register applications")?;
    let app = application_from(&body, Some(&id))?;
    let ranked = state.rank(app.clone()).await?;
    state
        .ledger()
        .register(&app, &ranked.result, &caller.name)
        .await?;
    Ok(ranking_response(&ranked))
}

/// An application's status, last ranking, reservation and audit trail.
#[utoipa::path(
    get, path = "/v1/applications/{id}", tag = "applications",
    params(("id" = String, Path, description = "The application id")),
    responses(
        (status = 200, description = "The application", body = ApplicationRecord),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "Not registered", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_application(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApplicationRecord>> {
    caller.require(Permission::Plan, "read applications")?;
    state
        .ledger()
        .application(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("application {id} is not registered")))
}

/// Which scheme to reserve: a rank of the application's last ranking, or the
/// supplies themselves.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReservationRequest {
    /// The rank of a scheme in the application's last ranking.
    scheme: Option<i64>,
    /// Connection points (node or transformer ids), instead of `scheme`.
    supplies: Option<Vec<String>>,
}

/// Reserve capacity for the chosen scheme; 409 if it no longer fits.
#[utoipa::path(
    post, path = "/v1/applications/{id}/reservation", tag = "applications",
    params(("id" = String, Path, description = "The application id")),
    request_body(content = ReservationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Reserved", body = ReservationRecord),
        (status = 200, description = "Already reserved for these supplies", body = ReservationRecord),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "Not registered", body = ErrorBody),
        (status = 409, description = "The scheme no longer fits; `field` is the binding constraint", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_reservation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    caller.require(Permission::Workflow, "reserve capacity")?;
    let request: ReservationRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::bad(
            "body",
            format!("must be {{\"scheme\": RANK}} or {{\"supplies\": [IDS]}}: {e}"),
        )
    })?;
    let ledger = state.ledger();
    let app = ledger
        .application_request(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("application {id} is not registered")))?;
    let (scheme, supplies) = match (request.scheme, request.supplies) {
        (Some(rank), None) => {
            let ranking = ledger.last_ranking(&id).await?.unwrap_or(Value::Null);
            let supplies = ranking["schemes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["rank"].as_i64() == Some(rank))
                .and_then(|s| serde_json::from_value::<Vec<String>>(s["supplies"].clone()).ok())
                .ok_or_else(|| {
                    Error::bad(
                        "scheme",
                        format!("the last ranking of {id} has no scheme {rank}"),
                    )
                })?;
            (Some(rank), supplies)
        }
        (None, Some(supplies)) if !supplies.is_empty() && supplies.len() <= 2 => (None, supplies),
        (None, Some(_)) => {
            return Err(Error::bad(
                "supplies",
                "must name one or two connection points",
            ));
        }
        _ => return Err(Error::bad("scheme", "give either `scheme` or `supplies`")),
    };
    let engine = state.engine();
    let lock_keys = engine.supply_lock_keys(&supplies)?;
    // Feeders not yet built read the store: off the async workers.
    let checked = {
        let (engine, app, supplies) = (engine.clone(), app.clone(), supplies.clone());
        blocking(move || engine.evaluate_supplies(&app, &supplies)).await??
    };
    let feeders = checked.iter().filter_map(|c| c.feeder.clone()).collect();
    let new = NewReservation {
        scheme,
        supplies: supplies.clone(),
        feeders,
        lock_keys,
    };
    let fits = {
        let engine = engine.clone();
        let app = app.clone();
        move |others: Vec<ReservationRecord>| -> Result<()> {
            let loads = reserved_loads(&engine, &others);
            let judged = engine.with_reservations(loads);
            let candidates = judged.evaluate_supplies(&app, &supplies)?;
            let short: Vec<_> = candidates.iter().filter(|c| !c.feasible).collect();
            if short.is_empty() {
                return Ok(());
            }
            let message = short
                .iter()
                .map(|c| {
                    format!(
                        "{} fits {:.0} kW of the {:.0} kW asked ({})",
                        c.node, c.headroom_kw, app.demand_kw, c.binding_constraint
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            Err(Error::Conflict {
                code: "no_longer_fits",
                message: format!("the scheme no longer fits: {message}"),
                field: Some(short[0].binding_constraint.to_string()),
            })
        }
    };
    let started = std::time::Instant::now();
    let outcome = ledger.reserve(&app, new, &caller.name, fits).await;
    metrics::histogram!("headroom_reservation_seconds").record(started.elapsed().as_secs_f64());
    let (record, created) = match outcome {
        Ok(done) => done,
        Err(e @ Error::Conflict { .. }) => {
            metrics::counter!("headroom_reservations_refused_total").increment(1);
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if created {
        metrics::counter!("headroom_reservations_made_total").increment(1);
        state.reload_reservations().await?;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)).into_response())
}

/// Release the application's reservation.
#[utoipa::path(
    delete, path = "/v1/applications/{id}/reservation", tag = "applications",
    params(("id" = String, Path, description = "The application id")),
    responses(
        (status = 200, description = "Released", body = ReservationRecord),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No reservation held", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete_reservation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ReservationRecord>> {
    caller.require(Permission::Workflow, "release reservations")?;
    let released = state
        .ledger()
        .release(&id, &caller.name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("application {id} holds no reservation")))?;
    state.reload_reservations().await?;
    Ok(Json(released))
}

/// Query of `GET /v1/capacity`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CapacityQuery {
    /// `feeder` (default), `transformer` or `substation`.
    level: Option<String>,
    /// `W,S,E,N` in degrees: only assets with a point inside.
    bbox: Option<String>,
    /// `geojson` (default) or `csv`: one line per asset, for publication.
    format: Option<String>,
}

/// A GeoJSON feature collection of assets with their capacity (the schema of
/// what `get_capacity` writes out directly).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct CapacityCollection {
    /// `FeatureCollection`.
    #[serde(rename = "type")]
    kind: String,
    /// The end of the readings the figures are computed from, RFC 3339: the end
    /// of the last 15-minute step, or the time of the answer while that step
    /// is still filling (never in the future).
    data_to: String,
    /// One feature per asset; `properties` holds the capacity row.
    #[schema(value_type = Vec<Object>)]
    features: Vec<Value>,
}

fn parse_bbox(text: &str) -> Result<[f64; 4]> {
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::bad("bbox", "must be four numbers W,S,E,N"))?;
    let [w, s, e, n]: [f64; 4] = parts
        .try_into()
        .map_err(|_| Error::bad("bbox", "must be four numbers W,S,E,N"))?;
    if !(w.is_finite() && s.is_finite() && e.is_finite() && n.is_finite()) || w > e || s > n {
        return Err(Error::bad("bbox", "must be W,S,E,N with W <= E and S <= N"));
    }
    Ok([w, s, e, n])
}

fn level_of(text: Option<&str>) -> Result<LevelKey> {
    match text.unwrap_or("feeder") {
        "feeder" => Ok(LevelKey::Feeder),
        "transformer" => Ok(LevelKey::Transformer),
        "substation" => Ok(LevelKey::Substation),
        other => Err(Error::bad(
            "level",
            format!("`{other}` is not one of feeder, transformer, substation"),
        )),
    }
}

/// Assets with headroom, loading, reserved load and data age, as GeoJSON.
#[utoipa::path(
    get, path = "/v1/capacity", tag = "capacity",
    params(CapacityQuery),
    responses(
        (status = 200, description = "A GeoJSON FeatureCollection; with `format=csv`, CSV: one line per asset, a header first",
            content(
                (CapacityCollection = "application/json"),
                (String = "text/csv"),
            )),
        (status = 400, description = "Bad level or bbox", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_capacity(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<CapacityQuery>,
) -> Result<Response> {
    caller.require(Permission::View, "read capacity")?;
    let level = level_of(query.level.as_deref())?;
    let bbox = query.bbox.as_deref().map(parse_bbox).transpose()?;
    let csv = match query.format.as_deref().unwrap_or("geojson") {
        "geojson" => false,
        "csv" => true,
        other => {
            return Err(Error::bad(
                "format",
                format!("`{other}` is not one of geojson, csv"),
            ));
        }
    };
    let capacity = state.capacity(level).await?;
    let engine = state.engine();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let inside = |p: &LonLat| {
        bbox.is_none_or(|[w, s, e, n]| p.lon >= w && p.lon <= e && p.lat >= s && p.lat <= n)
    };
    if csv {
        let rows: Vec<_> = capacity
            .rows
            .iter()
            .filter(|row| {
                bbox.is_none()
                    || drawn(&state, &engine, &row.id).is_some_and(|d| d.points.iter().any(inside))
            })
            .map(|row| capacity.aged(row, now_ms))
            .collect();
        let body = headroom_engine::publish::capacity_csv(&engine, &rows);
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    // The last step ends up to 15 minutes after its latest reading: while live
    // readings fill it, its end lies ahead, and the map read that as a negative
    // age.
    let to = (engine.window.steps.last().copied().unwrap_or(0)
        + headroom_engine::load_model::STEP_MS)
        .min(now_ms);
    // Written out here rather than through `CapacityCollection`: each feature's
    // geometry is kept serialised (see `AppState::drawing`) and only its
    // properties are serialised per request.
    let mut body = format!(
        r#"{{"type":"FeatureCollection","data_to":{},"features":["#,
        json!(rfc3339(to))
    );
    let mut first = true;
    for row in capacity.rows.iter() {
        let Some(drawn) = drawn(&state, &engine, &row.id) else {
            continue;
        };
        if !drawn.points.iter().any(inside) {
            continue;
        }
        let mut properties = json!(capacity.aged(row, now_ms));
        properties["name"] = json!(asset_name(&engine, &row.id));
        if !first {
            body.push(',');
        }
        first = false;
        body.push_str(r#"{"type":"Feature","id":"#);
        body.push_str(&json!(row.id).to_string());
        body.push_str(r#","geometry":"#);
        body.push_str(&drawn.geometry_json);
        body.push_str(r#","properties":"#);
        body.push_str(&properties.to_string());
        body.push('}');
    }
    body.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// What the capacity map draws besides capacity: its colour thresholds, the
/// network's extent and size, and the tie switches between feeders.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct MapOverview {
    /// Loading from which an asset is drawn amber, %.
    amber_loading_pct: f64,
    /// Loading from which an asset is drawn red, %.
    red_loading_pct: f64,
    /// Readings older than this make an asset grey, seconds.
    stale_after_s: f64,
    /// The network's extent, `[W, S, E, N]` in degrees (absent for an empty network).
    bbox: Option<[f64; 4]>,
    /// Feeders in the network.
    feeders: usize,
    /// Distribution transformers.
    transformers: usize,
    /// Substations.
    substations: usize,
    /// Normally-open switches as a GeoJSON FeatureCollection of lines between
    /// their two nodes; `properties`: `id`, `name`, `feeders` (the ones it ties).
    #[schema(value_type = Object)]
    ties: Value,
}

/// The map's thresholds, the network's extent and its tie switches.
#[utoipa::path(
    get, path = "/v1/map", tag = "capacity",
    responses(
        (status = 200, description = "Thresholds, extent and ties", body = MapOverview),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_map(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<MapOverview>> {
    caller.require(Permission::View, "read the map")?;
    let engine = state.engine();
    let network = &engine.network;
    let feeder_of = |node| {
        engine
            .topology
            .placement(node)
            .map(|p| network.feeders[p.feeder.get()].id.as_str())
    };
    let ties: Vec<Value> = network
        .switches
        .iter()
        .filter(|s| s.normally_open)
        .map(|s| {
            let (from, to) = (network.node(s.from), network.node(s.to));
            let feeders: Vec<&str> = [feeder_of(s.from), feeder_of(s.to)]
                .into_iter()
                .flatten()
                .collect();
            json!({
                "type": "Feature",
                "id": s.id.as_str(),
                "geometry": {"type": "LineString",
                    "coordinates": [map_coordinates(from.position), map_coordinates(to.position)]},
                "properties": {"id": s.id.as_str(), "name": s.name, "feeders": feeders},
            })
        })
        .collect();
    let positions = network
        .nodes
        .iter()
        .map(|n| n.position)
        .chain(network.substations.iter().map(|s| s.position))
        .chain(network.transformers.iter().map(|t| t.position));
    let bbox = bounds(positions);
    let map = &state.config().map;
    Ok(Json(MapOverview {
        amber_loading_pct: map.amber_loading_pct,
        red_loading_pct: map.red_loading_pct,
        stale_after_s: map.stale_after_s,
        bbox,
        feeders: network.feeders.len(),
        transformers: network.transformers.len(),
        substations: network.substations.len(),
        ties: json!({"type": "FeatureCollection", "features": ties}),
    }))
}

/// An asset's ratings, topology, latest readings, peak and typical day.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct AssetDetail {
    /// The id.
    id: String,
    /// `feeder`, `transformer`, `substation`, `node`, ...
    kind: String,
    /// Its properties as the network has them (ratings, type, service state).
    #[schema(value_type = Object)]
    properties: Value,
    /// Where it sits: its feeder, substation and path to the busbar.
    #[schema(value_type = Object)]
    topology: Value,
    /// Readings over the engine's data window (feeders and transformers).
    #[serde(skip_serializing_if = "Option::is_none")]
    readings: Option<AssetStats>,
    /// Its capacity row, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<CapacityRow>,
    /// Reservations on it (a feeder's, a transformer's), kW.
    reserved_kw: f64,
    /// Where it lies, `[W, S, E, N]` in degrees (the map zooms to it).
    bbox: Option<[f64; 4]>,
    /// Its display name.
    name: Option<String>,
}

/// Ratings, topology, latest readings, peak and typical day of an asset.
#[utoipa::path(
    get, path = "/v1/assets/{id}", tag = "assets",
    params(("id" = String, Path, description = "Any asset id of the network")),
    responses(
        (status = 200, description = "The asset", body = AssetDetail),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such asset", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_asset(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AssetDetail>> {
    caller.require(Permission::View, "read assets")?;
    let engine = state.engine();
    let asset = engine
        .network
        .lookup(&id)
        .ok_or_else(|| Error::NotFound(format!("no asset {id} in the network")))?;
    let network = &engine.network;
    let i = asset.index as usize;
    let (properties, topology, level) = match asset.kind {
        AssetKind::Feeder => {
            let f = &network.feeders[i];
            let tree = engine
                .topology
                .tree(headroom_geodata::FeederIx::from_usize(i));
            (
                json!({"name": f.name, "rated_a": f.rated_a, "head_node": network.node(f.head_node).id.as_str()}),
                json!({"nodes": tree.node_count(), "length_m": tree.total_length_m,
                       "busbar": network.node(tree.head()).id.as_str(), "ties": tree.ties.len()}),
                Some(LevelKey::Feeder),
            )
        }
        AssetKind::Transformer => {
            let t = &network.transformers[i];
            let placement = engine.topology.placement(t.node);
            (
                json!({"name": t.name, "rated_kva": t.rated_kva, "public": t.public, "lv_kv": t.lv_kv,
                       "in_service": t.in_service}),
                json!({"node": network.node(t.node).id.as_str(),
                       "feeder": placement.map(|p| network.feeders[p.feeder.get()].id.as_str())}),
                Some(LevelKey::Transformer),
            )
        }
        AssetKind::Substation => {
            let s = &network.substations[i];
            (
                json!({"name": s.name, "hv_kv": s.hv_kv, "mv_kv": s.mv_kv}),
                json!({"transformers": network.substation_transformers.iter()
                    .filter(|t| t.substation.get() == i).map(|t| t.id.as_str()).collect::<Vec<_>>()}),
                Some(LevelKey::Substation),
            )
        }
        AssetKind::Node => {
            let n = &network.nodes[i];
            let placement = engine
                .topology
                .placement(headroom_geodata::NodeIx::from_usize(i));
            (
                json!({"name": n.name, "node_type": n.node_type.as_str(), "kv": n.kv,
                       "spare_bays": n.spare_bays, "in_service": n.in_service}),
                json!({"feeder": placement.map(|p| network.feeders[p.feeder.get()].id.as_str())}),
                None,
            )
        }
        AssetKind::Segment => {
            let s = &network.segments[i];
            (
                json!({"name": s.name, "kv": s.kv, "rated_a": s.rated_a, "length_m": s.length_m,
                       "r_ohm_per_km": s.r_ohm_per_km, "x_ohm_per_km": s.x_ohm_per_km, "in_service": s.in_service}),
                json!({"from": network.node(s.from).id.as_str(), "to": network.node(s.to).id.as_str()}),
                None,
            )
        }
        AssetKind::Switch => {
            let s = &network.switches[i];
            (
                json!({"name": s.name, "normally_open": s.normally_open}),
                json!({"from": network.node(s.from).id.as_str(), "to": network.node(s.to).id.as_str()}),
                None,
            )
        }
        AssetKind::SubstationTransformer => {
            let t = &network.substation_transformers[i];
            (
                json!({"name": t.name, "rated_kva": t.rated_kva, "in_service": t.in_service}),
                json!({"substation": network.substations[t.substation.get()].id.as_str(),
                       "busbar": network.node(t.bus).id.as_str()}),
                None,
            )
        }
        AssetKind::Generator => {
            let g = &network.generators[i];
            let point = match g.point {
                headroom_geodata::GeneratorPoint::Node(n) => network.node(n).id.as_str(),
                headroom_geodata::GeneratorPoint::Transformer(t) => {
                    network.transformers[t.get()].id.as_str()
                }
            };
            (
                json!({"name": g.name, "rated_kw": g.rated_kw, "source": g.source.as_str(),
                       "status": g.status.as_str(), "in_service": g.in_service}),
                json!({"node": point}),
                None,
            )
        }
    };
    let measurable = matches!(
        asset.kind,
        AssetKind::Feeder | AssetKind::Transformer | AssetKind::SubstationTransformer
    );
    let readings = if measurable {
        let store = state.store().clone();
        let from = engine.window.steps.first().copied().unwrap_or(0);
        let to =
            engine.window.steps.last().copied().unwrap_or(0) + headroom_engine::load_model::STEP_MS;
        let asset_id = id.clone();
        Some(blocking(move || store.asset_stats(&asset_id, from, to)).await??)
    } else {
        None
    };
    let capacity = match level {
        Some(level) => {
            let capacity = state.capacity(level).await?;
            let now_ms = chrono::Utc::now().timestamp_millis();
            capacity
                .rows
                .iter()
                .find(|r| r.id == id)
                .map(|row| capacity.aged(row, now_ms))
        }
        None => None,
    };
    Ok(Json(AssetDetail {
        bbox: extent(&state, &engine, &id),
        name: asset_name(&engine, &id),
        id,
        kind: asset.kind.as_str().to_owned(),
        properties,
        topology,
        readings,
        reserved_kw: capacity.as_ref().map_or(0.0, |c| c.reserved_kw),
        capacity,
    }))
}

/// Query of `GET /v1/assets/{id}/readings`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadingsQuery {
    /// `p_kw` (default), `q_kvar`, `s_kva`, `i_a`, `u_kv` or `energy_kwh`.
    quantity: Option<String>,
    /// Start, RFC 3339 (default: 7 days before `to`).
    from: Option<String>,
    /// End, exclusive, RFC 3339 (default: now).
    to: Option<String>,
}

/// A time series.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct Series {
    /// The asset.
    asset: String,
    /// The quantity.
    quantity: String,
    /// `[RFC 3339 time, value, quality]` in time order.
    #[schema(value_type = Vec<Vec<Object>>)]
    points: Vec<(String, f64, String)>,
}

fn parse_time(field: &str, text: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| Error::bad(field, format!("`{text}` is not an RFC 3339 time: {e}")))
}

/// An asset's readings of one quantity.
#[utoipa::path(
    get, path = "/v1/assets/{id}/readings", tag = "assets",
    params(("id" = String, Path, description = "A feeder, transformer or substation transformer id"), ReadingsQuery),
    responses(
        (status = 200, description = "The series", body = Series),
        (status = 400, description = "Bad quantity or time", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 404, description = "No such asset", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_asset_readings(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ReadingsQuery>,
) -> Result<Json<Series>> {
    caller.require(Permission::View, "read readings")?;
    let quantity_name = query.quantity.unwrap_or_else(|| "p_kw".into());
    let quantity = LineRules::INGEST
        .quantity(&quantity_name)
        .map_err(|e| Error::bad("quantity", e.message))?;
    if state.engine().network.lookup(&id).is_none() {
        return Err(Error::NotFound(format!("no asset {id} in the network")));
    }
    let to = match &query.to {
        Some(t) => parse_time("to", t)?,
        None => chrono::Utc::now().timestamp_millis() + 1,
    };
    let from = match &query.from {
        Some(t) => parse_time("from", t)?,
        None => to - 7 * 86_400_000,
    };
    if from > to {
        return Err(Error::bad("from", "must not be after `to`"));
    }
    let store = state.store().clone();
    let asset = id.clone();
    let quantity_text = quantity.as_str().to_owned();
    let points = blocking(move || -> Result<Vec<(String, f64, String)>> {
        use headroom_store::{arrays, column};
        use headroom_store::RecordBatch;
        let sql = format!(
            "SELECT CAST(ts AS BIGINT) AS ts_ms, value, quality FROM readings WHERE asset = '{}' AND quantity = '{}' \
             AND ts >= to_timestamp_millis({from}) AND ts < to_timestamp_millis({to}) ORDER BY ts",
            asset.replace('\'', "''"),
            quantity_text
        );
        let batches: Vec<RecordBatch> = store.sql(&sql)?;
        let mut out = Vec::new();
        for batch in &batches {
            let ts = column::<arrays::Int64Array>(batch, "ts_ms")?;
            let value = column::<arrays::Float64Array>(batch, "value")?;
            let quality = column::<arrays::StringArray>(batch, "quality")?;
            for i in 0..batch.num_rows() {
                out.push((rfc3339(ts.value(i)), value.value(i), quality.value(i).to_owned()));
            }
        }
        Ok(out)
    })
    .await??;
    Ok(Json(Series {
        asset: id,
        quantity: quantity.as_str().to_owned(),
        points,
    }))
}

/// What the store took of a readings batch.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct IngestSummary {
    /// Readings stored (durable).
    accepted: usize,
    /// Readings the store refused (unknown asset, non-finite, in the future),
    /// kept in its `rejected` table.
    rejected: usize,
}

/// Readings from CSV (`ts,asset,quantity,value[,quality]`, a header line) or
/// JSON lines (`{"ts", "asset", "quantity", "value", "quality"?}`), under the
/// same rules as `headroom ingest` ([`LineRules::INGEST`]).
fn parse_readings(body: &[u8], json_lines: bool, source: &Arc<str>) -> Result<Vec<Reading>> {
    const RULES: LineRules = LineRules::INGEST;
    let text = std::str::from_utf8(body).map_err(|_| Error::bad("body", "is not UTF-8"))?;
    let refused = |line: usize| move |e: FieldError| Error::bad(e.at_line(line as u64), e.message);
    let reading = |fields: LineFields<'_>| Reading::from_line(fields, source);
    let mut out = Vec::new();
    if json_lines {
        for (i, line) in text.lines().enumerate() {
            let line_number = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line).map_err(|e| {
                Error::bad(format!("line {line_number}"), format!("is not JSON: {e}"))
            })?;
            let field = |name: &str| -> Result<&Value> {
                value
                    .get(name)
                    .ok_or_else(|| Error::bad(format!("line {line_number}.{name}"), "is required"))
            };
            let text_of = |name: &str| -> Result<&str> {
                field(name)?.as_str().ok_or_else(|| {
                    Error::bad(format!("line {line_number}.{name}"), "must be a string")
                })
            };
            let ts_ms = match field("ts")? {
                Value::String(s) => RULES.ts(s).map_err(refused(line_number))?,
                Value::Number(n) => RULES.ts(&n.to_string()).map_err(refused(line_number))?,
                _ => {
                    return Err(Error::bad(
                        format!("line {line_number}.ts"),
                        "must be RFC 3339 or ms since the epoch",
                    ));
                }
            };
            let value_number = field("value")?.as_f64().ok_or_else(|| {
                Error::bad(format!("line {line_number}.value"), "must be a number")
            })?;
            let quality = match value.get("quality") {
                None | Some(Value::Null) => Quality::Good,
                Some(Value::String(q)) => LineRules::quality(q).map_err(refused(line_number))?,
                Some(_) => {
                    return Err(Error::bad(
                        format!("line {line_number}.quality"),
                        "must be a string",
                    ));
                }
            };
            out.push(reading(LineFields {
                ts_ms,
                asset: text_of("asset")?.trim(),
                quantity: RULES
                    .quantity(text_of("quantity")?)
                    .map_err(refused(line_number))?,
                value: value_number,
                quality,
            }));
        }
        return Ok(out);
    }
    let mut lines = ReadingLines::new(RULES);
    for (i, line) in text.lines().enumerate() {
        if let Some(fields) = lines.feed(line).map_err(refused(i + 1))? {
            out.push(reading(fields));
        }
    }
    lines.finish().map_err(refused(1))?;
    Ok(out)
}

/// Store readings; answered once they are durable.
#[utoipa::path(
    post, path = "/v1/readings", tag = "readings",
    request_body(content = String, description = "CSV with header `ts,asset,quantity,value[,quality]` (text/csv) or JSON lines (application/x-ndjson)", content_type = "text/csv"),
    responses(
        (status = 202, description = "Durable", body = IngestSummary),
        (status = 400, description = "A line breaks a rule (nothing stored)", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_readings(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    caller.require(Permission::Ingest, "deliver readings")?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/csv");
    let json_lines = content_type.contains("json");
    let source: Arc<str> = format!("http:{}", caller.name).into();
    let readings = parse_readings(&body, json_lines, &source)?;
    let count = readings.len();
    use headroom_readings::ReadingSink;
    let summary = state.store().write(readings).durable().await?;
    metrics::counter!("headroom_ingest_readings_total", "route" => "http").increment(count as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestSummary {
            accepted: summary.accepted,
            rejected: summary.rejected,
        }),
    )
        .into_response())
}

/// The network swapped in.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct NetworkSummary {
    /// Assets by kind.
    #[schema(value_type = Object)]
    pub(crate) counts: Value,
    /// Feeders traced.
    pub(crate) feeders: usize,
    /// Topology warnings, in words.
    pub(crate) warnings: Vec<String>,
}

/// Replace the network with a gridpack's network.geojson.
#[utoipa::path(
    put, path = "/v1/network", tag = "network",
    request_body(content = Object, description = "network.geojson of the gridpack spec", content_type = "application/geo+json"),
    responses(
        (status = 200, description = "Swapped in", body = NetworkSummary),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 422, description = "The network breaks a rule (the old one stays)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_network(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<NetworkSummary>> {
    caller.require(Permission::Admin, "replace the network")?;
    crate::network::replace(&state, body.to_vec(), &caller.name)
        .await
        .map(Json)
}

/// Query of `GET /v1/events`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// The `cursor` of the last event seen (default: from the start).
    after: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

/// Events after a cursor.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct EventPage {
    /// In order.
    events: Vec<Event>,
    /// Pass as `after` next time.
    next: String,
}

/// Reservations made, released, expired; reserved schemes that no longer fit.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Events in order", body = EventPage),
        (status = 400, description = "Bad cursor", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<EventsQuery>,
) -> Result<Json<EventPage>> {
    caller.require(Permission::Workflow, "read events")?;
    let after = match query.after.as_deref() {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| Error::bad("after", format!("`{text}` is not a cursor")))?,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::bad("limit", "must be 1 to 1000"));
    }
    let events = state.ledger().events_after(after, limit).await?;
    let next = events
        .last()
        .map_or_else(|| after.to_string(), |e| e.cursor.clone());
    Ok(Json(EventPage { events, next }))
}

/// Each connector's state, counters, last success and errors.
#[utoipa::path(
    get, path = "/v1/sources", tag = "sources",
    responses(
        (status = 200, description = "Connectors and the store", body = Object),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_sources(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>> {
    caller.require(Permission::View, "read sources")?;
    let counts: StoreCounts = state.store().counts();
    Ok(Json(json!({
        "connectors": state.sources(),
        "store": counts,
    })))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "Alive", body = Object)))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the engine has a network and the ledger answers.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, description = "Ready", body = Object),
    (status = 503, description = "Not ready", body = Object),
))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let ledger_ok = state.ledger().events_after(i64::MAX - 1, 1).await.is_ok();
    let engine = state.engine();
    let body = json!({
        "ledger": ledger_ok,
        "feeders": engine.network.feeders.len(),
        "data_to": rfc3339(engine.window.steps.last().copied().unwrap_or(0)),
        "started": rfc3339(state.started_ms()),
    });
    let status = if ledger_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics: the recorder's (requests, engine and ledger timings)
/// and, read at scrape time, the connectors' states and counters and the
/// store's counts (rates are Prometheus's `rate()` of these totals).
pub(crate) async fn metrics_text(State(state): State<AppState>) -> Response {
    for source in state.sources() {
        let name = source["name"].as_str().unwrap_or_default().to_owned();
        let kind = source["kind"].as_str().unwrap_or_default().to_owned();
        let up = source["link"]["state"] == "connected";
        metrics::gauge!("headroom_connector_up", "name" => name.clone(), "kind" => kind.clone())
            .set(if up { 1.0 } else { 0.0 });
        for counter in ["readings", "durable", "points"] {
            metrics::gauge!(format!("headroom_connector_{counter}"), "name" => name.clone(), "kind" => kind.clone())
                .set(source[counter].as_f64().unwrap_or(0.0));
        }
        if let Some(errors) = source["errors"].as_object() {
            for (error, count) in errors {
                metrics::gauge!("headroom_connector_errors", "name" => name.clone(), "error" => error.clone())
                    .set(count.as_f64().unwrap_or(0.0));
            }
        }
    }
    let counts = state.store().counts();
    metrics::gauge!("headroom_store_readings_accepted_total").set(counts.accepted as f64);
    metrics::gauge!("headroom_store_readings_rejected_total")
        .set(counts.rejected.iter().sum::<u64>() as f64);
    metrics::gauge!("headroom_store_readings_buffered").set(counts.buffered as f64);
    metrics::gauge!("headroom_store_flushes_total").set(counts.flushes as f64);
    metrics::gauge!("headroom_ledger_reservations").set(state.engine().reservations.len() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics_text(),
    )
        .into_response()
}

/// Query of `GET /v1/history`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// A read-only query over `readings` (flushed history) and `assets`.
    sql: String,
}

/// A history query's answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct HistoryAnswer {
    /// Column names, in order.
    columns: Vec<String>,
    /// The rows: numbers as numbers, everything else as text, nulls as null.
    #[schema(value_type = Vec<Vec<Object>>)]
    rows: Vec<Vec<Value>>,
    /// `local`, or the cluster (`df://host:port`) that ran it.
    ran_on: String,
    /// The history covers readings flushed by then, RFC 3339 (null: nothing
    /// flushed yet); later ones are in the ingesting process's buffer.
    history_to: Option<String>,
}

fn json_rows(
    batches: &[headroom_store::arrow::record_batch::RecordBatch],
) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
    use headroom_store::arrow::datatypes::DataType;
    use headroom_store::arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        if columns.is_empty() {
            columns = schema.fields().iter().map(|f| f.name().clone()).collect();
        }
        let options = FormatOptions::default();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(format!("history answer: {e}")))?;
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| {
                    if column.is_null(row) {
                        return Value::Null;
                    }
                    let text = formatter.value(row).to_string();
                    let numeric = matches!(
                        column.data_type(),
                        DataType::Int8
                            | DataType::Int16
                            | DataType::Int32
                            | DataType::Int64
                            | DataType::UInt8
                            | DataType::UInt16
                            | DataType::UInt32
                            | DataType::UInt64
                            | DataType::Float32
                            | DataType::Float64
                    );
                    if numeric && let Ok(number) = serde_json::from_str::<serde_json::Number>(&text)
                    {
                        return Value::Number(number);
                    }
                    Value::String(text)
                })
                .collect();
            rows.push(values);
        }
    }
    Ok((columns, rows))
}

/// SQL over the flushed history, on the configured cluster or locally.
#[utoipa::path(
    get, path = "/v1/history", tag = "history",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The answer", body = HistoryAnswer),
        (status = 400, description = "Not a query, an unknown table or column, past the row or time limit", body = ErrorBody),
        (status = 401, description = "No or an unknown token", body = ErrorBody),
        (status = 403, description = "The role may not", body = ErrorBody),
        (status = 503, description = "The cluster cannot be reached or failed the query", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_history(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryAnswer>> {
    caller.require(Permission::Plan, "query history")?;
    let config = state.config();
    let location = headroom_store::DataLocation::parse(&config.data_dir, None)?;
    let limits = headroom_history::Limits {
        max_rows: config.history.max_rows,
        timeout: std::time::Duration::from_secs(config.history.timeout_s),
    };
    let answer = headroom_history::query(
        &location,
        config.history.cluster.as_deref(),
        &query.sql,
        limits,
    )
    .await
    .map_err(|e| {
        if e.is_unavailable() {
            Error::Unavailable(e.to_string())
        } else if e.is_bad_input() {
            Error::bad("sql", e.to_string())
        } else {
            Error::Internal(e.to_string())
        }
    })?;
    let (columns, rows) = json_rows(&answer.batches)?;
    Ok(Json(HistoryAnswer {
        columns,
        rows,
        ran_on: answer.ran_on,
        history_to: (answer.flushed_ms > 0).then(|| rfc3339(answer.flushed_ms)),
    }))
}
