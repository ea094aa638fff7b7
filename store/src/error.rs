//! Errors of the readings store.

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What the system said.
        source: std::io::Error,
    },

    /// The store found its own files inconsistent, could not start a thread or
    /// runtime, or was stopped.
    #[error("readings store: {0}")]
    Internal(String),

    /// A write that did not become durable.
    #[error(transparent)]
    Write(#[from] headroom_readings::Error),

    /// A query that the read-only SQL interface refuses, or that does not plan.
    #[error("bad query: {0}")]
    BadQuery(String),

    /// A data location that names no usable folder or bucket.
    #[error("{0}")]
    BadLocation(String),

    /// A gridpack to import that does not read.
    #[error(transparent)]
    Geodata(#[from] headroom_geodata::Error),

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
            Error::BadQuery(_) | Error::BadLocation(_) => true,
            Error::Geodata(e) => e.is_bad_input(),
            Error::Io { .. }
            | Error::Internal(_)
            | Error::Write(_)
            | Error::Query(_)
            | Error::ObjectStore(_) => false,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<headroom_wal::Error> for Error {
    fn from(e: headroom_wal::Error) -> Self {
        Error::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Results of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
