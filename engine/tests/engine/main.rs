//! Tests of the decision engine on small hand-built grids, one binary:
//!
//! - `support`: building a grid with readings and an engine over it;
//! - `checks`: each check firing alone, with headroom exact to a few kW;
//! - `figures`: the `after` figures against a power flow at every step;
//! - `schemes`: dual supplies for important and critical customers;
//! - `load_model`: unmetered allocation and profiles;
//! - `shortcut`: the engine's shortcuts against the long way round, on the fixture;
//! - `store`: the readings store's write path, queries, replay and retention.

mod checks;
mod figures;
mod load_model;
mod schemes;
mod shortcut;
mod store;
mod support;
