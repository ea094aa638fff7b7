//! Headroom across physical isolation devices.
//!
//! Between a utility's security zones stand devices that pass files one way
//! only; the reverse direction takes only signed plain files. This crate is
//! everything on both sides of such a device:
//!
//! - [`keys`]: Ed25519 (the default) or SM2-over-SM3 key pairs as PEM files.
//! - [`sealed`]: the file format. A file is a signed text header (stream,
//!   sequence, kind, creation time, row count, SHA-256 of the body, algorithm,
//!   key id, signature) followed by its body.
//! - [`body`]: a readings body (the gridpack's columns plus quality and source).
//! - [`files`]: writing a file so it appears whole or not at all.
//! - [`collector`]: the production zone's side: readings acknowledged once in
//!   the collector's log, sealed into numbered files, kept for resending.
//! - [`inbox`]: the receiving side: check, hand on, settle; duplicates,
//!   conflicts and gaps.
//! - [`outbox`]: a stream of files sent one at a time (answers, applications).
//! - [`applications`]: the business hall's requests and the service's answers.
//!
//! **Data model.** A *stream* is one writer's numbered sequence of files
//! (`STREAM.SEQUENCE.relay`, sequence from 1, never reused). A receiver trusts
//! public keys per stream; it takes each (stream, sequence) once, tells a
//! duplicate (same digest) from a conflict (another digest), and reports the
//! sequence numbers it has not seen as gaps.

pub mod applications;
pub mod body;
pub mod collector;
pub mod error;
pub mod files;
pub mod inbox;
pub mod keys;
pub mod outbox;
pub mod sealed;

pub use error::{Error, Result};
pub use keys::{Algorithm, KeyId, SigningKey, VerifyingKey};
