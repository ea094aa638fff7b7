//! Readings that crossed an isolation device as signed relay files
//! ([`headroom_relay`]): the service's end of a collector in the production
//! zone.
//!
//! Each scan takes the files waiting in `folder` as one group: every file is
//! checked (name, header, trusted key of its stream, signature, body digest,
//! and the inbox's ledger), the new ones' readings are written together, and
//! once the store has made all of them durable the group is settled (ledger,
//! then `done/`). A file that fails any check, or has a bad row, goes to
//! `rejected/` beside a `.reason`; nothing of it is written. Gaps in a stream's
//! numbers are in this connector's status (`streams[].gaps`) until the files
//! arrive, which an operator asks for with `headroom relay resend`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use headroom_readings::{Interner, Reading};
use headroom_relay::Error as RelayError;
use headroom_relay::inbox::{Checked, Inbox, Outcome};
use headroom_relay::sealed::{Kind, Trust};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::output::{MAX_WRITE, Output};
use crate::status::{LinkState, StatusHandle};

/// The readings a scan writes at most before it settles its group.
const GROUP_READINGS: usize = 500_000;

/// A stream the inbox accepts: its trusted keys and first number.
pub use headroom_relay::inbox::TrustedStream as RelayStream;

/// A folder an isolation device delivers readings files into.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayInboxConfig {
    /// Unique among the connectors.
    pub name: String,
    /// The folder the device writes into; `done/`, `rejected/` and the ledger
    /// (`.ledger`) are kept inside it.
    pub folder: PathBuf,
    /// The streams accepted, by name, with their trusted keys.
    pub streams: BTreeMap<String, RelayStream>,
    /// How often the folder is looked at, ms.
    #[serde(default = "default_scan_interval_ms")]
    pub scan_interval_ms: u64,
}

const fn default_scan_interval_ms() -> u64 {
    200
}

impl RelayInboxConfig {
    /// Checks the configuration and reads the keys; `field` is its path.
    pub fn validate(&self, field: &str) -> Result<()> {
        self.trust(field).map(|_| ())
    }

    /// The trusted keys, read from their files, and each stream's first number.
    fn trust(&self, field: &str) -> Result<(Trust, BTreeMap<String, u64>)> {
        if self.folder.as_os_str().is_empty() {
            return Err(Error::config(format!("{field}.folder"), "is empty"));
        }
        if self.scan_interval_ms == 0 {
            return Err(Error::config(
                format!("{field}.scan_interval_ms"),
                "must be above 0",
            ));
        }
        headroom_relay::inbox::trust_streams(&self.streams, field).map_err(|e| match e {
            RelayError::Config { field, message } => Error::config(field, message),
            other => Error::config(format!("{field}.streams"), other.to_string()),
        })
    }

    /// Opens the inbox folder with its ledger.
    pub fn open(&self, field: &str) -> Result<Inbox> {
        let (trust, first) = self.trust(field)?;
        Inbox::open(&self.folder, Kind::Readings, trust, &first)
            .map_err(|e| relay_error(&self.folder, e))
    }
}

fn relay_error(folder: &Path, e: RelayError) -> Error {
    match e {
        RelayError::Io { path, source } => Error::Io { path, source },
        other => Error::Io {
            path: folder.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// One scan's files, checked: the outcome each will be settled with, and the
/// readings of the new ones.
struct Group {
    settled: Vec<(PathBuf, Outcome)>,
    readings: Vec<Vec<Reading>>,
}

/// Checks the files waiting, up to [`GROUP_READINGS`] readings' worth.
fn check_group(inbox: &mut Inbox, interned: &mut Interner) -> Result<Group> {
    let folder = inbox.folder().to_owned();
    let mut group = Group {
        settled: Vec::new(),
        readings: Vec::new(),
    };
    let mut count = 0;
    for path in inbox.waiting().map_err(|e| relay_error(&folder, e))? {
        if count >= GROUP_READINGS {
            break;
        }
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Taken away meanwhile, or unreadable: looked at again next scan.
            Err(_) => continue,
        };
        let outcome = match inbox.check(&path, &bytes) {
            Checked::New(opened) => {
                match headroom_relay::body::decode(opened.body, opened.header.rows, interned) {
                    Ok(readings) => {
                        count += readings.len();
                        group.readings.push(readings);
                        Outcome::Taken(opened.header)
                    }
                    Err(rejection) => Outcome::Rejected(rejection),
                }
            }
            Checked::Duplicate(_) => Outcome::Duplicate,
            Checked::Rejected(rejection) => Outcome::Rejected(rejection),
        };
        group.settled.push((path, outcome));
    }
    Ok(group)
}

/// Runs the connector until `shutdown`.
pub async fn run(
    config: RelayInboxConfig,
    output: Output,
    status: StatusHandle,
    shutdown: CancellationToken,
) {
    let field = format!("connector `{}`", config.name);
    let mut inbox = match config.open(&field) {
        Ok(inbox) => Some(inbox),
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    };
    let mut interned = Interner::default();
    let mut ticker = tokio::time::interval(Duration::from_millis(config.scan_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let Some(mut open) = inbox.take().or_else(|| config.open(&field).ok()) else {
            status.error("folder");
            continue;
        };
        // Checking is CPU (digests, signatures, parsing): off the async threads.
        let checked = tokio::task::spawn_blocking(move || {
            let group = check_group(&mut open, &mut interned);
            (open, interned, group)
        })
        .await;
        let Ok((mut open, returned, group)) = checked else {
            status.error("panic");
            break;
        };
        interned = returned;
        let group = match group {
            Ok(group) => group,
            Err(e) => {
                tracing::warn!("{e}");
                folder_down(&status, &config, e.to_string());
                inbox = Some(open);
                continue;
            }
        };
        if group.settled.is_empty() {
            connected(&status, &open);
            inbox = Some(open);
            continue;
        }
        // Every new file's readings queued at once and awaited together: the
        // store makes them durable in one group commit, not one per file.
        let writes = group.readings.into_iter().map(|readings| {
            let parts: Vec<Vec<Reading>> = if readings.len() > MAX_WRITE {
                readings
                    .chunks(MAX_WRITE)
                    .map(<[Reading]>::to_vec)
                    .collect()
            } else {
                vec![readings]
            };
            output.send_durable_parts(parts)
        });
        let durable = futures::future::join_all(writes).await;
        if !durable.iter().all(|d| *d) {
            // Shutting down: the files stay and are taken at the next start.
            open.abandon();
            break;
        }
        for (path, outcome) in &group.settled {
            match outcome {
                Outcome::Taken(_) => {}
                Outcome::Duplicate => status.error("duplicate_file"),
                Outcome::Rejected(rejection) => {
                    tracing::warn!("{}: rejected: {rejection}", path.display());
                    status.error(&format!(
                        "rejected_{}",
                        rejection.rule.as_str().replace('-', "_")
                    ));
                }
            }
        }
        let settled = tokio::task::spawn_blocking(move || {
            let result = open.settle(group.settled);
            (open, result)
        })
        .await;
        let Ok((open, result)) = settled else {
            status.error("panic");
            break;
        };
        match result {
            Ok(()) => {
                let now = chrono::Utc::now().timestamp_millis();
                status.update(|s| s.last_success_ms = Some(now));
                connected(&status, &open);
                inbox = Some(open);
            }
            Err(e) => {
                // The ledger or a move failed: reopen from the ledger on disk
                // next scan, which knows exactly what was settled.
                tracing::warn!("{e}");
                folder_down(&status, &config, e.to_string());
            }
        }
    }
    status.update(|s| s.link = LinkState::Stopped);
}

fn connected(status: &StatusHandle, inbox: &Inbox) {
    let streams = inbox.streams();
    status.update(|s| {
        s.link = LinkState::Connected;
        s.streams = streams;
    });
}

fn folder_down(status: &StatusHandle, config: &RelayInboxConfig, reason: String) {
    status.error("folder");
    let now = chrono::Utc::now().timestamp_millis();
    status.update(|s| {
        s.link = LinkState::Disconnected {
            since_ms: s.last_success_ms.unwrap_or(now),
            retry_at_ms: now + config.scan_interval_ms as i64,
            reason,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_readings::{Quality, Quantity, ReadingSink, WriteSummary, WriteTicket};
    use headroom_relay::collector::{Collector, CollectorSettings};
    use headroom_relay::{Algorithm, SigningKey};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Reading>>);

    impl ReadingSink for Recorder {
        fn write(&self, readings: Vec<Reading>) -> WriteTicket {
            let (reply, ticket) = WriteTicket::channel();
            let accepted = readings.len();
            self.0.lock().unwrap().extend(readings);
            let _ = reply.send(Ok(WriteSummary {
                accepted,
                rejected: 0,
            }));
            ticket
        }
    }

    fn reading(i: usize) -> Reading {
        Reading {
            ts_ms: 1_780_000_000_000 + i as i64 * 60_000,
            asset: "T_2".into(),
            quantity: Quantity::QKvar,
            value: i as f64 * 1.5,
            quality: Quality::Good,
            source: "gateway".into(),
        }
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let began = std::time::Instant::now();
        while !check() {
            assert!(began.elapsed() < Duration::from_secs(20), "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn sealed_files_reach_the_sink_once_and_a_gap_closes_when_its_file_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir(&inbox).unwrap();
        let key = SigningKey::from_seed(Algorithm::Ed25519, [9; 32]).unwrap();
        let public = dir.path().join("scada.pub");
        std::fs::write(&public, key.verifying_key().to_pem().unwrap()).unwrap();

        let mut settings =
            CollectorSettings::new("scada", public.clone(), dir.path().join("state"));
        settings.batch_max_readings = 10;
        let collector = Collector::start(settings, key, &inbox).unwrap();
        let sink = collector.sink();
        tokio::task::spawn_blocking(move || sink.write((0..25).map(reading).collect()).wait())
            .await
            .unwrap()
            .unwrap();
        collector.stop().unwrap();
        // The device loses file 2 for now.
        let second = inbox.join(headroom_relay::sealed::file_name("scada", 2));
        let held = std::fs::read(&second).unwrap();
        std::fs::remove_file(&second).unwrap();

        let config = RelayInboxConfig {
            name: "from-production".into(),
            folder: inbox.clone(),
            streams: [(
                "scada".to_owned(),
                RelayStream {
                    keys: vec![public],
                    first_sequence: 1,
                },
            )]
            .into(),
            scan_interval_ms: 20,
        };
        let text = toml::to_string(&crate::ConnectorsConfig {
            connector: vec![crate::ConnectorConfig::RelayInbox(config.clone())],
        })
        .unwrap();
        assert_eq!(
            crate::ConnectorsConfig::from_toml(&text).unwrap().connector,
            [crate::ConnectorConfig::RelayInbox(config.clone())]
        );
        let recorder = Arc::new(Recorder::default());
        let status = StatusHandle::new("from-production", "relay_inbox", 1);
        let shutdown = CancellationToken::new();
        let (output, forwarder) = Output::start(recorder.clone(), status.clone(), shutdown.clone());
        let task = tokio::spawn(run(config, output, status.clone(), shutdown.clone()));

        until("files 1 and 3 are taken, 2 is a gap", || {
            status
                .snapshot()
                .streams
                .first()
                .is_some_and(|s| s.taken == 2)
        })
        .await;
        let stream = &status.snapshot().streams[0];
        assert_eq!(stream.highest, Some(3));
        assert_eq!(stream.gaps, [headroom_relay::inbox::Gap { from: 2, to: 2 }]);

        // File 2 arrives, and a corrupted copy of file 3.
        let third = inbox.join(headroom_relay::sealed::file_name("scada", 3));
        let mut corrupted =
            std::fs::read(inbox.join("done").join(third.file_name().unwrap())).unwrap();
        let last = corrupted.len() - 2;
        corrupted[last] ^= 0x20;
        std::fs::write(&third, corrupted).unwrap();
        std::fs::write(&second, held).unwrap();
        until("the gap closes", || {
            status.snapshot().streams[0].gaps.is_empty()
                && status.snapshot().errors.contains_key("rejected_digest")
        })
        .await;
        shutdown.cancel();
        task.await.unwrap();
        drop(forwarder);
        let mut received = recorder.0.lock().unwrap().clone();
        received.sort_by_key(|r| r.ts_ms);
        assert_eq!(received, (0..25).map(reading).collect::<Vec<_>>());
        let reason = std::fs::read_to_string(inbox.join("rejected").join(format!(
            "{}.reason",
            third.file_name().unwrap().to_string_lossy()
        )))
        .unwrap();
        assert!(reason.starts_with("digest: "), "{reason}");
    }
}
