//! Errors of the service, each knowing its HTTP status and the JSON form of
//! `shared/spec/api.md`: `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// What can go wrong in the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request breaks a rule; `field` names the part at fault.
    #[error("{message}")]
    BadRequest {
        /// The field, e.g. `demand_kw` or `supplies[1]`.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },

    /// No or an unknown bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,

    /// The token's role may not do this.
    #[error("the {role} role may not {action}")]
    Forbidden {
        /// The caller's role.
        role: &'static str,
        /// What it tried.
        action: &'static str,
    },

    /// No such application, asset or reservation.
    #[error("{0}")]
    NotFound(String),

    /// The request conflicts with the ledger: a scheme that no longer fits, an
    /// application changed while it holds a reservation.
    #[error("{message}")]
    Conflict {
        /// Machine-readable reason, e.g. `no_longer_fits`.
        code: &'static str,
        /// In words.
        message: String,
        /// The binding constraint where capacity is short.
        field: Option<String>,
    },

    /// Well-formed input that cannot be applied (a network that does not
    /// validate, readings with no known asset).
    #[error("{message}")]
    Unprocessable {
        /// The field or feature at fault.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },

    /// The configuration is invalid.
    #[error("config: `{field}` {message}")]
    Config {
        /// The setting, e.g. `tokens[0].sha256`.
        field: String,
        /// What is wrong.
        message: String,
    },

    /// The ledger's database failed.
    #[error("ledger database: {0}")]
    Database(#[from] sqlx::Error),

    /// The ledger's migrations failed.
    #[error("ledger migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// The engine failed, or refused an application.
    #[error(transparent)]
    Engine(#[from] headroom_engine::Error),

    /// The readings store failed, or refused a query.
    #[error(transparent)]
    Store(#[from] headroom_store::Error),

    /// A write of readings that did not become durable.
    #[error(transparent)]
    Write(#[from] headroom_readings::Error),

    /// A service this one relies on is not reachable (the history's cluster).
    #[error("{0}")]
    Unavailable(String),

    /// Anything else on our side.
    #[error("{0}")]
    Internal(String),
}

/// Results of the service.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A bad request naming its field.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A setting that is wrong.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Engine(e) if e.is_bad_input() => StatusCode::BAD_REQUEST,
            Error::Store(e) if e.is_bad_input() => StatusCode::BAD_REQUEST,
            Error::Config { .. }
            | Error::Database(_)
            | Error::Migrate(_)
            | Error::Engine(_)
            | Error::Store(_)
            | Error::Write(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } => "bad_request",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict { code, .. } => code,
            Error::Unprocessable { .. } => "unprocessable",
            Error::Unavailable(_) => "unavailable",
            Error::Engine(e) if e.is_bad_input() => "bad_request",
            Error::Store(e) if e.is_bad_input() => "bad_request",
            _ => "internal",
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            Error::BadRequest { field, .. }
            | Error::Conflict { field, .. }
            | Error::Unprocessable { field, .. } => field.clone(),
            Error::Engine(headroom_engine::Error::BadApplication { field, .. }) => {
                Some(field.clone())
            }
            _ => None,
        }
    }

    /// The JSON body of the error.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            // The application error's text repeats the field; say what is wrong.
            Error::Engine(headroom_engine::Error::BadApplication { message, .. }) => {
                message.clone()
            }
            other => other.to_string(),
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                field: self.field(),
            },
        }
    }
}

/// An error as the API answers it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The parts of an error.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `no_longer_fits`, `reserved`, `unprocessable`,
    /// `unavailable`, `internal`.
    pub code: String,
    /// In words.
    pub message: String,
    /// The field, line or feature at fault, or the binding constraint of a
    /// scheme that no longer fits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, axum::Json(self.body())).into_response()
    }
}
