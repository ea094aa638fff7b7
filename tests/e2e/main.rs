//! End-to-end tests of the `headroom` binary: one test binary, a module per area.
//!
//! - `support`: running the binary and writing gridpacks into temporary folders;
//! - `service_process`: `headroom serve` as a child process (shared with the
//!   HTTP bench);
//! - `external_tools`: the tools `scripts/test` installs, or the test skipped
//!   by name (shared with the API's tests);
//! - `bad_applications`: every application rule broken once: exit 2 naming the field;
//! - `capacity`: capacity per feeder, transformer and substation;
//! - `crash`: the store keeps every acknowledged reading through SIGKILLs;
//! - `interop`: the connectors against servers we did not write (pymodbus);
//! - `map`: the capacity map in headless chromium: the fixture drawn, a feeder's
//!   panel, a connection tried as `rank` would; the synthetic city's render time;
//! - `meter_files`: metering files dropped in a folder to the store, taken once,
//!   bad ones explained;
//! - `modbus`: simulated terminals to the Modbus connector to the store, with
//!   every fault the simulator injects;
//! - `opcua`: the simulated SCADA server to the OPC UA connector to the store,
//!   with every fault the simulator injects, and a secure session;
//! - `fixture`: the public fixture imports and traces as the independent tool saw it;
//! - `generation`: generation headroom against an independent pandapower
//!   cross-check, open capacity as CSV and GeoJSON, a generation reservation
//!   over HTTP;
//! - `history`: SQL over the flushed history on a Ballista scheduler and two
//!   executors with the store in S3: the local answers, a lost executor;
//! - `broken_gridpacks`: every rule of the gridpack spec broken once, with the exit
//!   code and message the spec asks for;
//! - `n1`: the N-1 transfer check against an independent pandapower
//!   cross-check of every restoration case of the fixture;
//! - `openapi`: the OpenAPI document validates and schemathesis finds no 5xx
//!   and no response breaking it;
//! - `oracle`: `rank` agrees with an independent power flow on the fixture, from
//!   the gridpack and from a store it was imported into;
//! - `relay`: collector, a faulty isolation device and the service's relay
//!   inbox, through SIGKILLs: every collected reading stored exactly once;
//! - `readings_lines`: `headroom ingest` and `POST /v1/readings` take and refuse
//!   the same lines alike (one parser);
//! - `s3`: a store whose history lives in S3 (a local moto server);
//! - `service`: `serve --demo` on a free port driven over HTTP as a workflow
//!   system would, with the simulators' readings arriving live;
//! - `synth`: the synthetic city grid is valid, deterministic and imports.

mod bad_applications;
mod broken_gridpacks;
mod capacity;
mod crash;
#[path = "../external_tools.rs"]
mod external_tools;
mod fixture;
mod generation;
mod history;
mod interop;
// The browser test needs the map built in; without it `/` only says how to get it.
#[cfg(feature = "map")]
mod map;
mod meter_files;
mod modbus;
mod n1;
mod opcua;
mod openapi;
mod oracle;
mod readings_lines;
mod relay;
mod s3;
mod service;
#[path = "../service_process.rs"]
mod service_process;
mod support;
mod synth;
