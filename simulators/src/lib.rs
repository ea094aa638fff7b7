//! Stand-ins for what Headroom meets in the field, for tests, demos and benches.
//!
//! - [`synth`]: a synthetic city distribution grid written as a gridpack, with
//!   measured loads from daily shapes per customer class.
//!
//! - [`modbus`]: a Modbus TCP gateway of monitoring terminals, with faults to
//!   inject.
//!
//! - [`meter_files`]: a metering head-end dropping wide-form interval files.
//!
//! - [`replay`]: a gridpack's readings looped in compressed time, which both
//!   protocol simulators serve.
//!
//! - [`isolation_device`]: a one-way isolation device between two folders,
//!   dropping, duplicating, reordering, delaying and corrupting files.
//!
//! - [`opcua`]: an OPC UA server standing in for the SCADA front-end, behind a
//!   [`fault_proxy`] that closes, stalls or refuses connections on demand.
//!
//! This crate never depends on `headroom-connectors`: simulators
//! must stay independent of the code they test.

pub mod fault_proxy;
pub mod isolation_device;
pub mod load_shapes;
pub mod meter_files;
pub mod modbus;
pub mod opcua;
pub mod replay;
pub mod synth;

pub use synth::{
    SynthConfig, SynthSummary, SyntheticGrid, synthetic_grid, write_synthetic_gridpack,
};
