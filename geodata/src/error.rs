//! Errors of the grid model and gridpack reading.

use std::fmt;
use std::path::PathBuf;

/// The rule of the gridpack spec that a feature or row breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A feature without `properties.id`.
    MissingId,
    /// A `kind` that is not one of the spec's.
    UnknownKind,
    /// Two features with the same id.
    DuplicateId,
    /// A required property absent.
    MissingProperty,
    /// A property of the wrong JSON type, or an enum value the spec does not list.
    InvalidValue,
    /// A negative rating, impedance, length or voltage.
    NegativeValue,
    /// A number that is not finite.
    NonFinite,
    /// A reference that names no feature.
    DanglingReference,
    /// A reference that names a feature of another kind.
    WrongReferenceKind,
    /// A geometry missing, of the wrong type or malformed.
    BadGeometry,
    /// Coordinates outside [-180, 180] x [-90, 90].
    CoordinatesOutOfRange,
}

impl Rule {
    /// A short, stable name for messages and tests.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::MissingId => "missing_id",
            Rule::UnknownKind => "unknown_kind",
            Rule::DuplicateId => "duplicate_id",
            Rule::MissingProperty => "missing_property",
            Rule::InvalidValue => "invalid_value",
            Rule::NegativeValue => "negative_value",
            Rule::NonFinite => "non_finite",
            Rule::DanglingReference => "dangling_reference",
            Rule::WrongReferenceKind => "wrong_reference_kind",
            Rule::BadGeometry => "bad_geometry",
            Rule::CoordinatesOutOfRange => "coordinates_out_of_range",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule in a network file, naming the feature.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The feature's id, or `feature #N` (0-based position) when it has none.
    pub feature: String,
    /// The rule broken.
    pub rule: Rule,
    /// What exactly is wrong, naming the property.
    pub detail: String,
}

impl Problem {
    /// A problem of the feature with this id.
    pub fn feature(id: &str, rule: Rule, detail: impl Into<String>) -> Self {
        Self {
            feature: id.to_owned(),
            rule,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "feature {}: [{}] {}",
            self.feature, self.rule, self.detail
        )
    }
}

/// Errors of this crate. All of them but [`Error::Write`] are bad input (CLI exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder that does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// What was looked for.
        path: PathBuf,
    },

    /// A file that exists but cannot be read.
    #[error("{}: cannot be read: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// A network file that is not well-formed JSON, or not a FeatureCollection.
    #[error("{}: line {line}, column {column}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },

    /// A network that breaks rules of the spec; every problem found is listed.
    #[error("{}: invalid network, {} problem(s):\n{}", path.display(), problems.len(), ProblemList(problems))]
    InvalidNetwork {
        /// The file.
        path: PathBuf,
        /// Every problem, in file order.
        problems: Vec<Problem>,
    },

    /// A readings file whose first line is not the spec's header.
    #[error("{}: line 1: the header must be exactly `ts,asset,quantity,value`, found `{found}`", path.display())]
    ReadingsHeader {
        /// The file.
        path: PathBuf,
        /// The first line as found.
        found: String,
    },

    /// Writing a file failed.
    #[error("{}: cannot be written: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Error {
    /// A file that could not be opened or read: missing, or unreadable.
    pub fn reading(path: &std::path::Path, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: path.to_owned(),
            },
            _ => Error::Unreadable {
                path: path.to_owned(),
                source,
            },
        }
    }

    /// Whether the error is the input's fault (CLI exit 2) rather than the system's.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Write { .. })
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
