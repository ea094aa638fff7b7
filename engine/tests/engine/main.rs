//! Tests of the decision engine on small hand-built grids, one binary:
//!
//! - `support`: building a grid with readings and an engine over it;
//! - `checks`: each check firing alone, with headroom exact to a few kW;
//! - `figures`: the `after` figures against a power flow at every step;
//! - `schemes`: dual supplies for important and critical customers;
//! - `load_model`: unmetered allocation and profiles;
//! - `shortcut`: the engine's shortcuts against the long way round, on the fixture;
//! - `generation`: headroom for export against bisection, and each check alone;
//! - `n1`: restoration cases against the switched network, each case the spec
//!   names, report and enforce;
//! - `from_store`: the engine over the readings store, as over the same readings
//!   in memory.

mod checks;
mod figures;
mod from_store;
mod generation;
mod load_model;
mod n1;
mod schemes;
mod shortcut;
mod support;
