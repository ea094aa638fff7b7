//! The HTTP service's tests, one binary:
//!
//! - `support`: a service over the public fixture with a token per role, and a
//!   helper that sends one request through the router (`oneshot`);
//! - `routes`: every route, each role it admits and refuses, and its errors;
//! - `ledger`: reservations on SQLite and PostgreSQL, 50 at once on one feeder;
//! - `external_tools`: the tools `scripts/test` installs (here PostgreSQL), or
//!   the test skipped by name (shared with the end-to-end tests).

#[path = "../../../tests/external_tools.rs"]
mod external_tools;
mod ledger;
mod routes;
mod support;
