//! Tests of the grid model through its public API, one binary:
//!
//! - `topology`: hand-built networks for each warning, and a property test over
//!   random radial feeders with ties, loops and islands;
//! - `spatial`: radius and nearest queries against brute force;
//! - `roundtrip`: a network written as GeoJSON reads back equal.

mod roundtrip;
mod spatial;
mod topology;
