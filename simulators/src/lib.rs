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
//! The OPC UA server is still to come. This crate never depends on `headroom-connectors`: simulators
//! must stay independent of the code they test.

pub mod load_shapes;
pub mod meter_files;
pub mod modbus;
pub mod synth;

pub use synth::{
    SynthConfig, SynthSummary, SyntheticGrid, synthetic_grid, write_synthetic_gridpack,
};
