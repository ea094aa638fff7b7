//! Errors of the relay.

use std::path::{Path, PathBuf};

/// What can go wrong in the relay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },

    /// A key that does not read, or that may not be used.
    #[error("{0}")]
    Key(String),

    /// A setting that is wrong, named by its path in the config.
    #[error("{field}: {message}")]
    Config {
        /// Where, e.g. `collector.batch_max_readings`.
        field: String,
        /// What is wrong.
        message: String,
    },

    /// The collector's log failed.
    #[error(transparent)]
    Wal(#[from] headroom_wal::Error),

    /// The collector or inbox stopped.
    #[error("relay: {0}")]
    Stopped(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A config error at `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Names the file a key error came from.
    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            Error::Key(message) => Error::Key(format!("{}: {message}", path.display())),
            other => other,
        }
    }

    /// Whether the caller's input is at fault (CLI exit 2, HTTP 400).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Key(_) | Error::Config { .. })
    }
}

/// Results of the relay.
pub type Result<T, E = Error> = std::result::Result<T, E>;
