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
}

impl Error {
    /// Whether the caller's input is at fault (HTTP 400, CLI exit 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::BadApplication { .. } => true,
            Error::Geodata(e) => e.is_bad_input(),
        }
    }
}

/// Results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
