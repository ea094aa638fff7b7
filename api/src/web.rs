//! The capacity map's files: our page (`api/web/`) and the libraries `build.rs`
//! installed, all built into the binary so the map needs no set-up and no
//! outside host.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::Error;
use crate::state::AppState;

/// One file of the page.
struct File {
    /// Under `/map/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Libraries change only with the binary; our own files are checked each load.
    immutable: bool,
}

macro_rules! vendor {
    ($path:literal, $module:literal, $content_type:literal) => {
        File {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("OUT_DIR"), "/web/node_modules/", $module)),
            immutable: true,
        }
    };
}

macro_rules! own {
    ($path:literal, $content_type:literal) => {
        File {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../web/", $path)),
            immutable: false,
        }
    };
}

const FILES: &[File] = &[
    own!("app.js", "text/javascript; charset=utf-8"),
    own!("app.css", "text/css; charset=utf-8"),
    vendor!(
        "vendor/leaflet.js",
        "leaflet/dist/leaflet.js",
        "text/javascript; charset=utf-8"
    ),
    vendor!(
        "vendor/leaflet.css",
        "leaflet/dist/leaflet.css",
        "text/css; charset=utf-8"
    ),
    // leaflet.css names its images relative to itself.
    vendor!(
        "vendor/images/layers.png",
        "leaflet/dist/images/layers.png",
        "image/png"
    ),
    vendor!(
        "vendor/images/layers-2x.png",
        "leaflet/dist/images/layers-2x.png",
        "image/png"
    ),
    vendor!(
        "vendor/images/marker-icon.png",
        "leaflet/dist/images/marker-icon.png",
        "image/png"
    ),
    vendor!(
        "vendor/images/marker-icon-2x.png",
        "leaflet/dist/images/marker-icon-2x.png",
        "image/png"
    ),
    vendor!(
        "vendor/images/marker-shadow.png",
        "leaflet/dist/images/marker-shadow.png",
        "image/png"
    ),
    vendor!(
        "vendor/uPlot.iife.min.js",
        "uplot/dist/uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    vendor!(
        "vendor/uPlot.min.css",
        "uplot/dist/uPlot.min.css",
        "text/css; charset=utf-8"
    ),
];

const INDEX: &[u8] = include_bytes!("../web/index.html");

/// The page may load nothing from another host and send nothing elsewhere;
/// Leaflet and uPlot set inline styles.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";

fn respond(content_type: &'static str, body: &'static [u8], immutable: bool) -> Response {
    let cache = if immutable {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    respond("text/html; charset=utf-8", INDEX, false)
}

async fn file(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|f| f.path == path) {
        Some(f) => respond(f.content_type, f.body, f.immutable),
        None => Error::NotFound(format!("no map file {path}")).into_response(),
    }
}

/// `/` (the page) and `/map/...` (its scripts, styles and images); no token:
/// the page asks for one and sends it with each API call.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/map/{*path}", get(file))
}
