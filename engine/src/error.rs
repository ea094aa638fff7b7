//! Errors of the engine.

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An application that breaks a rule of the API spec.
    #[error("bad application: `{field}` {message}")]
    BadApplication {
        /// The field, e.g. `demand_kw` or `[3].profile`.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// Reading the grid model failed.
    #[error(transparent)]
    Geodata(#[from] headroom_geodata::Error),

    /// A file of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What the system said.
        source: std::io::Error,
    },

    /// The store found its own files inconsistent, or was stopped.
    #[error("readings store: {0}")]
    Store(String),

    /// A query that the read-only SQL interface refuses, or that does not plan.
    #[error("bad query: {0}")]
    BadQuery(String),

    /// A data location that names no usable folder or bucket.
    #[error("{0}")]
    BadLocation(String),

    /// DataFusion failed while running a query.
    #[error("query engine: {0}")]
    Query(#[from] datafusion::error::DataFusionError),

    /// Object storage failed.
    #[error("object storage: {0}")]
    ObjectStore(#[from] datafusion::object_store::Error),
}

impl Error {
    /// Whether the caller's input is at fault (HTTP 400, CLI exit 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::BadApplication { .. } => true,
            Error::Geodata(e) => e.is_bad_input(),
            Error::BadQuery(_) | Error::BadLocation(_) => true,
            Error::Io { .. } | Error::Store(_) | Error::Query(_) | Error::ObjectStore(_) => false,
        }
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
