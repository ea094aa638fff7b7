//! The capacity map's files: our page (`api/web/`) and the libraries `build.rs`
//! installed, all built into the binary so the map needs no set-up and no
//! outside host. Without the `map` feature (a build without npm) `/` says how
//! to get the map instead.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::Error;
use crate::state::AppState;

/// One file of the page.
#[cfg(feature = "map")]
struct File {
    /// Under `/map/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Libraries change only with the binary; our own files are checked each load.
    immutable: bool,
}

#[cfg(feature = "map")]
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

#[cfg(feature = "map")]
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

#[cfg(feature = "map")]
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

#[cfg(feature = "map")]
const INDEX: &[u8] = include_bytes!("../web/index.html");

/// What `/` shows when the map's libraries were not built in, so whoever opens
/// it learns why and what to do rather than finding a blank page.
#[cfg(not(feature = "map"))]
const INDEX: &[u8] = br#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Headroom: no capacity map in this build</title>
  <link rel="icon" href="data:,">
</head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto; line-height: 1.4">
  <h1>Headroom</h1>
  <p>The service is running: its API is under <code>/v1</code>, described by
  <a href="/openapi.json">/openapi.json</a>.</p>
  <p>This binary was built without the capacity map (without the cargo feature
  <code>map</code>). The map's libraries, Leaflet and uPlot, are installed by
  Node.js's <code>npm</code> from the npm registry when Headroom is built, and
  built into the binary. To get the map, install Node.js (with npm) and build
  with the default features, for example <code>cargo build --release</code>
  (without <code>--no-default-features</code>), or add <code>--features map</code>.</p>
</body>
</html>
"#;

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

#[cfg(feature = "map")]
async fn file(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|f| f.path == path) {
        Some(f) => respond(f.content_type, f.body, f.immutable),
        None => Error::NotFound(format!("no map file {path}")).into_response(),
    }
}

#[cfg(not(feature = "map"))]
async fn file(Path(path): Path<String>) -> Response {
    Error::NotFound(format!(
        "no map file {path}: this build has no capacity map (cargo feature `map`)"
    ))
    .into_response()
}

/// `/` (the page) and `/map/...` (its scripts, styles and images); no token:
/// the page asks for one and sends it with each API call.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/map/{*path}", get(file))
}

#[cfg(all(test, not(feature = "map")))]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    async fn text(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn without_the_map_the_page_says_how_to_get_it() {
        let response = index().await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let (status, page) = text(response).await;
        assert_eq!(status, StatusCode::OK);
        for needle in [
            "without the capacity map",
            "<code>map</code>",
            "npm",
            "cargo build",
        ] {
            assert!(page.contains(needle), "the page lacks {needle:?}:\n{page}");
        }
        // Nothing of the map is served, so the page cannot half-load.
        let (status, answer) = text(file(Path("app.js".to_owned())).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        assert!(answer.contains("no capacity map"), "{answer}");
    }
}
