//! Headroom's HTTP service: the workflow API of `shared/spec/api.md`, its
//! bearer-token roles, the reservations ledger and the OpenAPI document.
//!
//! # Data model
//!
//! - [`state::AppState`] holds the engine of the moment (network, readings
//!   window, reservations counted), the readings store, the [`ledger::Ledger`]
//!   and the tokens. The engine is replaced whole when readings are refreshed,
//!   reservations change or the network is replaced.
//! - The ledger keeps applications (as submitted), the rankings returned,
//!   reservations (supplies, kW and kvar with the profile, expiry) and an
//!   append-only audit trail; events for the workflow system are the audit
//!   entries of reservations made, released, expired and no longer fitting.
//! - Protocol front-ends stay apart from storage: connectors' status reaches
//!   `GET /v1/sources` through [`state::SourcesHandler`].
//! - The capacity map (`api/web/`) is a static page built into the binary with
//!   its libraries (Leaflet, uPlot; installed from npm by `build.rs`); it reads
//!   the same routes as any other client, with a token the user enters.

pub mod auth;
pub mod background;
pub mod config;
mod drawing;
pub mod error;
pub mod ledger;
mod network;
pub mod relay;
mod routes;
pub mod state;
mod web;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::ServiceConfig;
pub use error::{Error, Result};
pub use state::{AppState, NoSources, ServiceParts, SourcesHandler};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Headroom API",
        description = "Where a new customer can be connected to the distribution grid, and how (shared/spec/api.md).",
        version = "1"
    ),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody, auth::Role))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The process's Prometheus recorder (installed once: tests start many
/// services in one process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::post_schemes))
        .routes(routes!(routes::put_application, routes::get_application))
        .routes(routes!(
            routes::post_reservation,
            routes::delete_reservation
        ))
        .routes(routes!(routes::get_capacity))
        .routes(routes!(routes::get_map))
        .routes(routes!(routes::get_asset))
        .routes(routes!(routes::get_asset_readings))
        .routes(routes!(routes::post_readings))
        .routes(routes!(routes::put_network))
        .routes(routes!(routes::get_events))
        .routes(routes!(routes::get_history))
        .routes(routes!(routes::get_sources))
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::readyz))
}

/// Request counts and latencies by route.
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("headroom_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!("headroom_http_request_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The service's router: every route, the OpenAPI document, metrics, and the
/// body limit, timeout and tracing of the config.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api_router().split_for_parts();
    let openapi = std::sync::Arc::new(openapi);
    let http = state.config().http.clone();
    api.route(
        "/openapi.json",
        get(move || {
            let openapi = openapi.clone();
            async move { axum::Json((*openapi).clone()) }
        }),
    )
    .route("/metrics", get(routes::metrics_text))
    .merge(web::router())
    .fallback(|| async { Error::NotFound("no such route".into()) })
    .layer(axum::middleware::from_fn(track))
    .layer(DefaultBodyLimit::max(http.body_limit_bytes))
    .layer(TimeoutLayer::with_status_code(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_millis(http.request_timeout_ms),
    ))
    .layer(TraceLayer::new_for_http())
    // A bug in one handler answers 500 instead of dropping the connection.
    .layer(tower_http::catch_panic::CatchPanicLayer::new())
    .with_state(state)
}

/// Serves until `shutdown`, on a listener the caller bound (tests bind port 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
