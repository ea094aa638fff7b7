//! The decision engine of Headroom (filled by the engine and store issues): the
//! readings store (Arrow and DataFusion, with a write-ahead log and Parquet history),
//! the load model built from measured readings, the power flow on each feeder's
//! radial tree, the connection checks, the ranking of supply schemes, and the
//! reservations ledger that keeps two customers from being promised the same headroom.
