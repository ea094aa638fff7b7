//! What each connector reports: its connection state and counters, shared
//! with whoever serves them (the API's status route, tests, the CLI).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use headroom_relay::inbox::StreamState;
use serde::Serialize;

/// The state of a connector's link to its source.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LinkState {
    /// Not started yet, or connecting for the first time.
    Connecting,
    /// Up: readings are flowing.
    Connected,
    /// Down since `since_ms`; the next attempt is due at `retry_at_ms`.
    Disconnected {
        /// When the link was lost (or first failed), ms since the epoch.
        since_ms: i64,
        /// When the next attempt is due.
        retry_at_ms: i64,
        /// Why, in words.
        reason: String,
    },
    /// Only part of the source answers (some Modbus devices do, some do not).
    Degraded {
        /// How many of the source's parts fail.
        failing: usize,
        /// How many it has.
        total: usize,
    },
    /// Stopped by shutdown.
    Stopped,
}

/// A period without readings from (part of) a source, reported once it ends.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    /// Which part: a device (`unit 7`), a file, or the whole connection.
    pub part: String,
    /// Last success before the gap, ms since the epoch.
    pub from_ms: i64,
    /// First success after it.
    pub to_ms: i64,
}

/// A connector's state and counters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectorStatus {
    /// The connector's name in the config.
    pub name: String,
    /// Its `type`.
    pub kind: &'static str,
    /// The link.
    pub link: LinkState,
    /// Points (Modbus registers, OPC UA items, meters) configured.
    pub points: usize,
    /// Readings handed to the store.
    pub readings: u64,
    /// Readings the store has made durable.
    pub durable: u64,
    /// Errors by kind (`timeout`, `exception`, `connect`, `decode`, `store`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Last successful read or file, ms since the epoch.
    pub last_success_ms: Option<i64>,
    /// The most recent gaps, oldest first (at most [`MAX_GAPS`]).
    pub gaps: Vec<Gap>,
    /// For a relay inbox: each stream's files taken, highest number and the
    /// numbers still missing below it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamState>,
}

/// Gaps kept per connector.
pub const MAX_GAPS: usize = 32;

/// A connector's status, shared between its task and readers.
#[derive(Clone, Debug)]
pub struct StatusHandle(Arc<Mutex<ConnectorStatus>>);

impl StatusHandle {
    /// A fresh status: connecting, nothing counted.
    pub fn new(name: &str, kind: &'static str, points: usize) -> Self {
        Self(Arc::new(Mutex::new(ConnectorStatus {
            name: name.to_owned(),
            kind,
            link: LinkState::Connecting,
            points,
            readings: 0,
            durable: 0,
            errors: BTreeMap::new(),
            last_success_ms: None,
            gaps: Vec::new(),
            streams: Vec::new(),
        })))
    }

    /// A copy of the status now.
    pub fn snapshot(&self) -> ConnectorStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the status under its lock.
    pub fn update<T>(&self, change: impl FnOnce(&mut ConnectorStatus) -> T) -> T {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &str) {
        self.update(|s| *s.errors.entry(kind.to_owned()).or_default() += 1);
    }

    /// Records a gap that just ended.
    pub fn gap(&self, part: String, from_ms: i64, to_ms: i64) {
        self.update(|s| {
            if s.gaps.len() == MAX_GAPS {
                s.gaps.remove(0);
            }
            s.gaps.push(Gap {
                part,
                from_ms,
                to_ms,
            });
        });
    }
}

/// Every connector's status, for the API to serve.
#[derive(Clone, Debug, Default)]
pub struct StatusRegistry(Arc<Mutex<Vec<StatusHandle>>>);

impl StatusRegistry {
    /// Adds a connector's handle.
    pub fn register(&self, handle: StatusHandle) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
    }

    /// Every connector's status now.
    pub fn snapshot(&self) -> Vec<ConnectorStatus> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(StatusHandle::snapshot)
            .collect()
    }
}
