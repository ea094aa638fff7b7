//! The grid model of Headroom: what the distribution network is, where it is, and
//! how it is connected. No async, no storage engine: everything here is plain data
//! and pure functions, shared by the engine, the API and the simulators.
//!
//! # Data model
//!
//! A [`Network`] holds the assets of one gridpack (`shared/spec/gridpack.md`):
//! substations, their main transformers, MV nodes (busbars, poles, ring-main units,
//! switching stations, ...), segments, switches, feeders and distribution
//! transformers. Each asset has a string id from the GIS ([`ids`]) and is stored in
//! a vector per kind; references between assets are dense indices ([`NodeIx`], ...)
//! resolved once, when the network is read and validated.
//!
//! On top of the network:
//! - [`Topology`]: each feeder's radial tree, traced from its first node through
//!   in-service segments and closed switches, with ties, busbar groups and warnings;
//! - [`restoration`]: each feeder's ties, split switches and the cases that
//!   restore it when its head is lost (N-1);
//! - [`SpatialIndex`]: radius and nearest-neighbour queries over nodes and
//!   transformers, with geodesic distances in metres;
//! - [`readings`]: the gridpack's measured loads as plain rows.

pub mod builder;
pub mod error;
pub mod geodesy;
pub mod gridpack;
pub mod ids;
pub mod model;
pub mod network_file;
pub mod readings;
pub mod restoration;
pub mod spatial;
pub mod summary;
pub mod topology;

pub use builder::NetworkBuilder;
pub use error::{Error, Problem, Result, Rule};
pub use gridpack::{Gridpack, GridpackPaths};
pub use ids::*;
pub use model::*;
pub use network_file::{parse_network, read_network, write_network};
pub use readings::{
    FieldError, LineFields, LineRules, Quality, Quantity, ReadingLines, ReadingRow, ReadingsReport,
    read_readings, rfc3339,
};
pub use restoration::{FeederRestoration, FeederTie, RestorationCase, RestoredPart, TieSupply};
pub use spatial::{Filter, Hit, SpatialIndex};
pub use summary::{FeederSummary, NetworkSummary};
pub use topology::{Branch, FeederTree, Topology, TopologyWarning};
