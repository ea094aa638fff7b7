//! A service over the fixture `1-MV-semiurb`, in a temporary data folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use headroom_api::auth::{Role, Tokens, new_token};
use headroom_api::ledger::Ledger;
use headroom_api::{AppState, NoSources, ServiceConfig, ServiceParts};
use headroom_geodata::{GridpackPaths, read_network};
use headroom_store::{DataLocation, Store, StoreConfig, import_gridpack};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub(crate) use crate::external_tools::external_tools;

pub(crate) fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/1-MV-semiurb")
}

/// The fixture's applications.
pub(crate) fn fixture_applications() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture().join("applications.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub(crate) struct TestService {
    pub(crate) state: AppState,
    pub(crate) router: Router,
    pub(crate) tokens: HashMap<Role, String>,
    _dir: tempfile::TempDir,
}

impl TestService {
    /// On SQLite in the data folder.
    pub(crate) async fn start() -> Self {
        Self::with_database(None).await
    }

    /// On the database at `url` (SQLite in the data folder when `None`).
    pub(crate) async fn with_database(url: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let location = DataLocation::Local(data.clone());
        let (network, store) = tokio::task::spawn_blocking({
            let location = location.clone();
            move || {
                let paths = GridpackPaths::locate(&fixture()).unwrap();
                let network = read_network(&paths.network).unwrap();
                import_gridpack(&paths, &network, &location, StoreConfig::default()).unwrap();
                let store = Store::open_at(&location, &network, StoreConfig::default()).unwrap();
                (network, store)
            }
        })
        .await
        .unwrap();
        let config = ServiceConfig {
            data_dir: data.display().to_string(),
            database_url: url,
            ..ServiceConfig::default()
        };
        let ledger = Ledger::open(&config.database_url(), &config.ledger)
            .await
            .unwrap();
        let mut tokens = Tokens::default();
        let mut by_role = HashMap::new();
        for role in Role::ALL {
            let token = new_token(role);
            tokens.add(&format!("test-{role}"), role, &token);
            by_role.insert(role, token);
        }
        let state = AppState::new(ServiceParts {
            config,
            tokens,
            network,
            store: Arc::new(store),
            ledger,
            sources: Arc::new(NoSources),
            metrics: headroom_api::metrics_handle(),
        })
        .await
        .unwrap();
        Self {
            router: headroom_api::router(state.clone()),
            state,
            tokens: by_role,
            _dir: dir,
        }
    }

    /// Sends one request as `role` (none: no Authorization header).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        role: Option<Role>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(role) = role {
            request = request.header("authorization", format!("Bearer {}", self.tokens[&role]));
        }
        let request = match body {
            Some((content_type, bytes)) => request
                .header("content-type", content_type)
                .body(Body::from(bytes)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Sends JSON.
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        role: Role,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.call(
            method,
            path,
            Some(role),
            Some(("application/json", serde_json::to_vec(body).unwrap())),
        )
        .await
    }
}

/// The error's `field`, for assertions.
pub(crate) fn error_field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or_default()
}

/// The error's `code`.
pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Each query of `cases` appended to `path` (after `?` or `&`) is answered 400
/// naming its field.
pub(crate) async fn assert_bad_queries(
    service: &TestService,
    path: &str,
    role: Role,
    cases: &[(&str, &str)],
) {
    let joiner = if path.contains('?') { '&' } else { '?' };
    for (query, field) in cases {
        let (status, body) = service
            .call(
                Method::GET,
                &format!("{path}{joiner}{query}"),
                Some(role),
                None,
            )
            .await;
        assert_eq!(
            (status, error_field(&body)),
            (StatusCode::BAD_REQUEST, *field),
            "{path} {query}: {body}"
        );
    }
}
