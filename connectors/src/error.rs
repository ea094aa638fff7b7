//! Errors of the connectors.

/// What can go wrong configuring or running a connector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A connector configuration that breaks a rule; `field` names where, e.g.
    /// `connector[1].devices[0].points[3].address`.
    #[error("bad connector config: `{field}` {message}")]
    BadConfig {
        /// The path of the offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// The configuration is not valid TOML, or a field has the wrong type.
    #[error("bad connector config: {0}")]
    Toml(#[from] toml::de::Error),

    /// A folder or file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl Error {
    /// A configuration error at `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadConfig {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether the caller's input is at fault (CLI exit 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::BadConfig { .. } | Error::Toml(_))
    }
}

/// Result with the connectors' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
