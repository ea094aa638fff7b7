//! The collector's side: readings in, sealed files out.
//!
//! Connectors write through [`CollectorSink`]. A batch is acknowledged once it
//! is in the collector's own write-ahead log ([`headroom_wal`]), so a reading
//! acknowledged to a connector survives a crash. One thread then seals what the
//! log holds into files of at most `batch_max_readings`, or whatever is there
//! once the oldest reading is `batch_max_age_ms` old.
//!
//! **Sealing, crash by crash.** Every reading logged gets the next serial
//! number of the log (a readings record carries its first). A seal is a log
//! record `(sequence, created, count, first)`: readings `first..first + count`
//! belong to file `sequence`, created then. The record is made durable before
//! the file is written, so a number is claimed exactly when the log says so,
//! and never twice. The file is then written (both algorithms sign
//! deterministically, so writing it again after a crash gives the same bytes
//! and the inbox sees a duplicate, not a conflict) to `sent/` under the state
//! folder, and from there to the outbox.
//! Log segments are deleted only once every seal and reading in them is in the
//! outbox, after the `sequence` file records the last number used. A file's
//! readings may span segments, so a kept segment can begin with the tail of a
//! file whose head went with an older one: its seal names the serials, and a
//! replay drops that tail instead of taking the readings after it for the file.
//!
//! **Back-pressure.** While the outbox holds `outbox_max_files` files the device
//! has not taken, or cannot be written, nothing is delivered: readings stay in
//! the log (which is the buffer), `status.json` says `buffering` and why, and
//! delivery resumes by itself.
//!
//! **Resending.** Sent files stay in `sent/` for `keep_sent_hours`;
//! [`resend`] puts a range of them in the outbox again, for the gaps a
//! receiver reports.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use headroom_readings::{Interner, Reading, ReadingSink, WriteReply, WriteSummary, WriteTicket};
use headroom_wal::Wal;
use headroom_wal::codec::{Reader, put_reading};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{is_visible_file, write_durably};
use crate::keys::SigningKey;
use crate::sealed::{self, Kind, valid_stream_name};

/// The log's record kinds. Kinds 1 and 2 are those of logs written before
/// readings carried serial numbers: still replayed, in order, never written.
const RECORD_READINGS_UNNUMBERED: u8 = 1;
const RECORD_SEAL_UNNUMBERED: u8 = 2;
/// `first: u64, count: u32`, then the readings.
const RECORD_READINGS: u8 = 3;
/// `sequence: u64, created_ms: i64, count: u32, first: u64`.
const RECORD_SEAL: u8 = 4;

/// The `[collector]` table of `collector.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSettings {
    /// The stream's name: part of every file's name and header; the receiver
    /// trusts keys per stream.
    pub stream: String,
    /// The private key that signs the files (its algorithm is the key's).
    pub key: PathBuf,
    /// The collector's own folder: its log, `sent/`, `sequence`, `status.json`.
    pub state_dir: PathBuf,
    /// A file holds at most this many readings.
    #[serde(default = "default_batch_max_readings")]
    pub batch_max_readings: usize,
    /// A file is sealed once its oldest reading waited this long, ms.
    #[serde(default = "default_batch_max_age_ms")]
    pub batch_max_age_ms: u64,
    /// Sent files are kept for resending this long, hours.
    #[serde(default = "default_keep_sent_hours")]
    pub keep_sent_hours: u64,
    /// Delivery pauses while the outbox holds this many files.
    #[serde(default = "default_outbox_max_files")]
    pub outbox_max_files: usize,
    /// With no file sealed for this long, what is logged is sealed, even
    /// nothing (an empty file), s: a receiver sees the stream alive, and a lost
    /// last file becomes a gap it reports.
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: u64,
}

const fn default_batch_max_readings() -> usize {
    10_000
}
const fn default_batch_max_age_ms() -> u64 {
    5_000
}
const fn default_keep_sent_hours() -> u64 {
    72
}
const fn default_outbox_max_files() -> usize {
    10_000
}
const fn default_heartbeat_s() -> u64 {
    60
}

impl CollectorSettings {
    /// Settings with the defaults.
    pub fn new(stream: &str, key: PathBuf, state_dir: PathBuf) -> Self {
        Self {
            stream: stream.to_owned(),
            key,
            state_dir,
            batch_max_readings: default_batch_max_readings(),
            batch_max_age_ms: default_batch_max_age_ms(),
            keep_sent_hours: default_keep_sent_hours(),
            outbox_max_files: default_outbox_max_files(),
            heartbeat_s: default_heartbeat_s(),
        }
    }

    /// Checks the settings; errors name the field under `collector.`.
    pub fn validate(&self) -> Result<()> {
        if !valid_stream_name(&self.stream) {
            return Err(Error::config(
                "collector.stream",
                format!("\"{}\" must be 1 to 64 of A-Z a-z 0-9 _ -", self.stream),
            ));
        }
        for (field, empty) in [
            ("collector.key", self.key.as_os_str().is_empty()),
            ("collector.state_dir", self.state_dir.as_os_str().is_empty()),
        ] {
            if empty {
                return Err(Error::config(field, "is empty"));
            }
        }
        for (field, zero) in [
            ("collector.batch_max_readings", self.batch_max_readings == 0),
            ("collector.batch_max_age_ms", self.batch_max_age_ms == 0),
            ("collector.outbox_max_files", self.outbox_max_files == 0),
            ("collector.heartbeat_s", self.heartbeat_s == 0),
        ] {
            if zero {
                return Err(Error::config(field, "must be above 0"));
            }
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether the collector is delivering or holding readings back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Files reach the outbox as they are sealed.
    Delivering,
    /// The outbox is full or cannot be written: readings wait in the log.
    Buffering,
    /// Stopped (cleanly); what was not delivered waits in the log.
    Stopped,
}

/// What `status.json` says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectorStatus {
    /// The stream.
    pub stream: String,
    /// Delivering or buffering.
    pub state: DeliveryState,
    /// Why it is buffering.
    pub reason: Option<String>,
    /// The number the next file will get.
    pub next_sequence: u64,
    /// The last file put in the outbox.
    pub last_delivered: Option<u64>,
    /// Readings logged and not yet sealed.
    pub unsealed_readings: usize,
    /// Files sealed and not yet in the outbox.
    pub undelivered_files: usize,
    /// Readings waiting in the log, sealed or not.
    pub buffered_readings: usize,
    /// Readings logged since this process started.
    pub logged_readings: u64,
    /// Files put in the outbox since this process started (again after a
    /// restart, where the outbox's copy may not have been made durable).
    pub delivered_files: u64,
    /// Bytes of a torn last log record dropped at start (never acknowledged).
    pub torn_bytes: usize,
    /// When this was written, ms since the epoch.
    pub updated_ms: i64,
}

/// A sealed file not yet in the outbox.
struct Sealed {
    sequence: u64,
    created_ms: i64,
    readings: Vec<Reading>,
    /// The log segment of its first reading: the oldest it needs kept.
    first_segment: u64,
}

enum Message {
    Write(Vec<Reading>, WriteReply),
    Stop,
}

/// Where connectors write in a collector: the log, then sealed files.
#[derive(Clone, Debug)]
pub struct CollectorSink {
    sender: mpsc::Sender<Message>,
}

impl ReadingSink for CollectorSink {
    fn write(&self, readings: Vec<Reading>) -> WriteTicket {
        let (reply, ticket) = WriteTicket::channel();
        // A stopped collector drops the reply: the ticket reports it stopped.
        let _ = self.sender.send(Message::Write(readings, reply));
        ticket
    }
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    sink: CollectorSink,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Collector {
    /// Opens the state folder, replays the log and starts sealing into `outbox`.
    pub fn start(settings: CollectorSettings, key: SigningKey, outbox: &Path) -> Result<Self> {
        settings.validate()?;
        let mut sealer = Sealer::open(settings, key, outbox)?;
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || sealer.run(&receiver))
            .map_err(|e| Error::Stopped(format!("cannot start the collector's thread: {e}")))?;
        Ok(Self {
            sink: CollectorSink { sender },
            thread: Some(thread),
        })
    }

    /// Where connectors write.
    pub fn sink(&self) -> CollectorSink {
        self.sink.clone()
    }

    /// Seals what is logged, delivers what the outbox takes and stops; what it
    /// does not take stays in the log for the next start.
    pub fn stop(mut self) -> Result<()> {
        let _ = self.sink.sender.send(Message::Stop);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Stopped("the collector's thread panicked".into())),
            None => Ok(()),
        }
    }
}

/// The thread that logs, seals and delivers.
struct Sealer {
    settings: CollectorSettings,
    key: SigningKey,
    outbox: PathBuf,
    sent_dir: PathBuf,
    wal: Wal,
    unsealed: Unsealed,
    /// Arrival time of the oldest unsealed reading.
    oldest_unsealed: Option<Instant>,
    /// When the last file was sealed (or the collector started).
    last_sealed: Instant,
    undelivered: VecDeque<Sealed>,
    next_sequence: u64,
    /// The last number the `sequence` file records.
    recorded_sequence: u64,
    /// Files in the outbox the device has not taken, as last counted.
    outbox_files: usize,
    /// The oldest log segment not yet deleted.
    oldest_segment: u64,
    blocked: Option<String>,
    retry_at: Option<Instant>,
    status: CollectorStatus,
    status_written: Option<Instant>,
    pruned: Option<Instant>,
}

fn sequence_path(state_dir: &Path) -> PathBuf {
    state_dir.join("sequence")
}

/// The last sequence number the `sequence` file records (0: none yet).
fn read_recorded_sequence(state_dir: &Path) -> Result<u64> {
    crate::files::read_sequence(&sequence_path(state_dir))
}

impl Sealer {
    fn open(settings: CollectorSettings, key: SigningKey, outbox: &Path) -> Result<Self> {
        let state_dir = settings.state_dir.clone();
        let sent_dir = state_dir.join("sent");
        let wal_dir = state_dir.join("wal");
        for dir in [&state_dir, &sent_dir, &wal_dir] {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let recorded_sequence = read_recorded_sequence(&state_dir)?;
        let mut unsealed = Unsealed::default();
        let mut undelivered = VecDeque::new();
        let mut last_sealed = recorded_sequence;
        let mut torn_bytes = 0;
        let mut interned = Interner::default();
        let segments = headroom_wal::segments(&wal_dir)?;
        for &segment in &segments {
            let bytes = headroom_wal::read_segment(&wal_dir, segment)?;
            let (records, torn) = headroom_wal::records(&bytes);
            torn_bytes += torn;
            for payload in records {
                let mut reader = Reader::new(payload);
                let undecodable = |what| damaged(&wal_dir, segment, what);
                match reader.u8() {
                    Some(kind @ (RECORD_READINGS | RECORD_READINGS_UNNUMBERED)) => {
                        let next = unsealed.next();
                        let first = if kind == RECORD_READINGS {
                            reader
                                .u64()
                                .ok_or_else(|| undecodable("a readings record does not decode"))?
                        } else {
                            next
                        };
                        let count = reader.u32().unwrap_or(0) as usize;
                        // A write reported as failed may still have reached the
                        // log whole; the write after it took the same serials.
                        if first < next {
                            unsealed.forget_newest((next - first) as usize);
                        }
                        if unsealed.is_empty() {
                            unsealed.first = first;
                        } else if first != unsealed.next() {
                            return Err(undecodable("readings records skip serial numbers"));
                        }
                        let readings = (0..count)
                            .map(|_| reader.reading(&mut interned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| undecodable("a readings record does not decode"))?;
                        unsealed.push(segment, readings);
                    }
                    Some(kind @ (RECORD_SEAL | RECORD_SEAL_UNNUMBERED)) => {
                        let (Some(sequence), Some(created_ms), Some(count)) =
                            (reader.u64(), reader.i64(), reader.u32())
                        else {
                            return Err(undecodable("a seal record does not decode"));
                        };
                        let first = if kind == RECORD_SEAL {
                            reader
                                .u64()
                                .ok_or_else(|| undecodable("a seal record does not decode"))?
                        } else {
                            unsealed.first
                        };
                        let count = count as usize;
                        let end = first + count as u64;
                        // Readings before the file's first are a failed write's
                        // that no seal took (the write after it replaced them).
                        unsealed.take_before(first);
                        let head_kept = unsealed.first == first && !unsealed.is_empty();
                        if count == 0 || head_kept {
                            if count > unsealed.len() {
                                return Err(undecodable(
                                    "a seal claims more readings than the log holds",
                                ));
                            }
                            undelivered.push_back(Sealed {
                                sequence,
                                created_ms,
                                first_segment: unsealed.oldest_segment().unwrap_or(segment),
                                readings: unsealed.take(count).collect(),
                            });
                        } else {
                            // Its head went with a deleted segment, which only
                            // happens once the file is in the outbox: its tail
                            // is dropped, not sealed again.
                            unsealed.take_before(end);
                        }
                        if unsealed.is_empty() {
                            unsealed.first = unsealed.first.max(end);
                        }
                        last_sealed = last_sealed.max(sequence);
                    }
                    _ => return Err(undecodable("a record of no known kind")),
                }
            }
        }
        let last_segment = segments.last().copied().unwrap_or(0);
        let wal = Wal::create(&wal_dir, last_segment)?;
        let next_sequence = last_sealed + 1;
        let status = CollectorStatus {
            stream: settings.stream.clone(),
            state: DeliveryState::Delivering,
            reason: None,
            next_sequence,
            last_delivered: None,
            unsealed_readings: unsealed.len(),
            undelivered_files: undelivered.len(),
            buffered_readings: 0,
            logged_readings: 0,
            delivered_files: 0,
            torn_bytes,
            updated_ms: now_ms(),
        };
        let oldest_unsealed = (!unsealed.is_empty()).then(Instant::now);
        Ok(Self {
            settings,
            key,
            outbox: outbox.to_owned(),
            sent_dir,
            wal,
            unsealed,
            oldest_unsealed,
            last_sealed: Instant::now(),
            undelivered,
            next_sequence,
            recorded_sequence,
            outbox_files: 0,
            oldest_segment: segments.first().copied().unwrap_or(last_segment + 1),
            blocked: None,
            retry_at: None,
            status,
            status_written: None,
            pruned: None,
        })
    }

    fn run(&mut self, messages: &mpsc::Receiver<Message>) -> Result<()> {
        let mut stopping = false;
        loop {
            let wait = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            let mut writes = Vec::new();
            match messages.recv_timeout(wait) {
                Ok(Message::Write(readings, reply)) => writes.push((readings, reply)),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Group commit: everything waiting shares one fsync.
            while let Ok(message) = messages.try_recv() {
                match message {
                    Message::Write(readings, reply) => writes.push((readings, reply)),
                    Message::Stop => stopping = true,
                }
            }
            if !writes.is_empty() {
                self.log(writes);
            }
            self.seal_due(stopping)?;
            self.deliver()?;
            self.forget_delivered()?;
            self.prune_sent();
            self.write_status(stopping, false);
            if stopping {
                self.write_status(stopping, true);
                return Ok(());
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut deadline = now + Duration::from_secs(1);
        if let Some(oldest) = self.oldest_unsealed {
            deadline = deadline.min(oldest + Duration::from_millis(self.settings.batch_max_age_ms));
        }
        if let Some(retry) = self.retry_at {
            deadline = deadline.min(retry);
        }
        deadline = deadline.min(self.last_sealed + Duration::from_secs(self.settings.heartbeat_s));
        deadline.max(now)
    }

    /// Logs the writes durably and acknowledges them (or fails them all: their
    /// connectors keep the readings and write again).
    fn log(&mut self, writes: Vec<(Vec<Reading>, WriteReply)>) {
        let mut records = Vec::new();
        let mut first = self.unsealed.next();
        for (readings, _) in &writes {
            headroom_wal::frame(&mut records, |out| {
                out.push(RECORD_READINGS);
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&(readings.len() as u32).to_le_bytes());
                for r in readings {
                    put_reading(out, r);
                }
            });
            first += readings.len() as u64;
        }
        if let Err(e) = self.wal.append_durably(&records) {
            let message = format!("the collector's log: {e}");
            tracing::error!("{message}");
            for (_, reply) in writes {
                let _ = reply.send(Err(message.clone()));
            }
            return;
        }
        let segment = self.wal.segment();
        for (readings, reply) in writes {
            let accepted = readings.len();
            self.unsealed.push(segment, readings);
            self.status.logged_readings += accepted as u64;
            let _ = reply.send(Ok(WriteSummary {
                accepted,
                rejected: 0,
            }));
        }
        if self.oldest_unsealed.is_none() && !self.unsealed.is_empty() {
            self.oldest_unsealed = Some(Instant::now());
        }
    }

    /// Seals full files, the rest once old enough (or at a stop), and an empty
    /// one after a quiet heartbeat period.
    fn seal_due(&mut self, stopping: bool) -> Result<()> {
        loop {
            let full = self.unsealed.len() >= self.settings.batch_max_readings;
            let old = self.oldest_unsealed.is_some_and(|t| {
                t.elapsed() >= Duration::from_millis(self.settings.batch_max_age_ms)
            });
            let heartbeat =
                self.last_sealed.elapsed() >= Duration::from_secs(self.settings.heartbeat_s);
            if !heartbeat && (self.unsealed.is_empty() || !(full || old || stopping)) {
                return Ok(());
            }
            let count = self.unsealed.len().min(self.settings.batch_max_readings);
            let sequence = self.next_sequence;
            let created_ms = now_ms();
            let mut record = Vec::new();
            headroom_wal::frame(&mut record, |out| {
                out.push(RECORD_SEAL);
                out.extend_from_slice(&sequence.to_le_bytes());
                out.extend_from_slice(&created_ms.to_le_bytes());
                out.extend_from_slice(&(count as u32).to_le_bytes());
                out.extend_from_slice(&self.unsealed.first.to_le_bytes());
            });
            // The claim on the number: durable before any file bears it.
            self.wal.append_durably(&record)?;
            self.next_sequence += 1;
            self.undelivered.push_back(Sealed {
                sequence,
                created_ms,
                first_segment: self.unsealed.oldest_segment().unwrap_or(self.wal.segment()),
                readings: self.unsealed.take(count).collect(),
            });
            // What follows goes to a new segment, so the sealed ones can go.
            self.wal.rotate()?;
            self.oldest_unsealed = (!self.unsealed.is_empty()).then(Instant::now);
            self.last_sealed = Instant::now();
            if heartbeat {
                return Ok(());
            }
        }
    }

    /// The file's bytes: the copy in `sent/` where there is one, else sealed
    /// from the log (the same bytes).
    fn file_bytes(&self, sealed: &Sealed, name: &str) -> Result<Vec<u8>> {
        let archived = self.sent_dir.join(name);
        match fs::read(&archived) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(archived, e)),
        }
        let body = crate::body::encode(&sealed.readings);
        let bytes = sealed::seal(
            &self.settings.stream,
            sealed.sequence,
            Kind::Readings,
            sealed.created_ms,
            sealed.readings.len() as u64,
            &body,
            &self.key,
        );
        write_durably(&archived, &bytes, false)?;
        Ok(bytes)
    }

    fn count_outbox(&self) -> std::io::Result<usize> {
        let mut count = 0;
        for entry in fs::read_dir(&self.outbox)? {
            if is_visible_file(&entry?) {
                count += 1;
            }
        }
        Ok(count)
    }

    fn deliver(&mut self) -> Result<()> {
        if self.undelivered.is_empty() {
            self.blocked = None;
            return Ok(());
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        match self.count_outbox() {
            Ok(count) => self.outbox_files = count,
            Err(e) => return self.block(format!("the outbox {}: {e}", self.outbox.display())),
        }
        while let Some(sealed) = self.undelivered.front() {
            if self.outbox_files >= self.settings.outbox_max_files {
                let reason = format!(
                    "the outbox holds {} files (outbox_max_files), waiting for the device to take them",
                    self.outbox_files
                );
                return self.block(reason);
            }
            let name = sealed::file_name(&self.settings.stream, sealed.sequence);
            // A failing `sent/` is the collector's own fault: it stops there.
            let bytes = self.file_bytes(sealed, &name)?;
            if let Err(e) = write_durably(&self.outbox.join(&name), &bytes, false) {
                return self.block(format!("cannot write the outbox: {e}"));
            }
            self.outbox_files += 1;
            self.status.delivered_files += 1;
            self.status.last_delivered = Some(sealed.sequence);
            self.undelivered.pop_front();
        }
        self.blocked = None;
        self.retry_at = None;
        Ok(())
    }

    /// Stops delivering until a retry; the readings wait in the log.
    fn block(&mut self, reason: String) -> Result<()> {
        if self.blocked.as_ref() != Some(&reason) {
            tracing::warn!(stream = %self.settings.stream, "buffering in the log: {reason}");
        }
        self.blocked = Some(reason);
        self.retry_at = Some(Instant::now() + Duration::from_millis(500));
        Ok(())
    }

    /// Records the last number used, then deletes the log segments whose
    /// readings and seals are all in the outbox.
    fn forget_delivered(&mut self) -> Result<()> {
        let needed = self
            .undelivered
            .front()
            .map(|s| s.first_segment)
            .or_else(|| self.unsealed.oldest_segment())
            .unwrap_or(self.wal.segment())
            .min(self.wal.segment());
        if self.oldest_segment >= needed {
            return Ok(());
        }
        let last_used = self.next_sequence - 1;
        if last_used > self.recorded_sequence {
            write_durably(
                &sequence_path(&self.settings.state_dir),
                format!("{last_used}\n").as_bytes(),
                false,
            )?;
            self.recorded_sequence = last_used;
        }
        self.wal.delete_through(needed - 1)?;
        self.oldest_segment = needed;
        Ok(())
    }

    /// Deletes sent files older than `keep_sent_hours`, once a minute.
    fn prune_sent(&mut self) {
        if self
            .pruned
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.pruned = Some(Instant::now());
        let keep = Duration::from_secs(self.settings.keep_sent_hours * 3600);
        let Ok(entries) = fs::read_dir(&self.sent_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > keep));
            if old && is_visible_file(&entry) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Writes `status.json` once a second, at a change of state, and at a stop.
    fn write_status(&mut self, stopping: bool, last: bool) {
        let state = if last {
            DeliveryState::Stopped
        } else if self.blocked.is_some() {
            DeliveryState::Buffering
        } else {
            DeliveryState::Delivering
        };
        let changed = state != self.status.state || self.blocked != self.status.reason;
        let due = self
            .status_written
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if !(changed || due || stopping) {
            return;
        }
        self.status.state = state;
        self.status.reason = self.blocked.clone();
        self.status.next_sequence = self.next_sequence;
        self.status.unsealed_readings = self.unsealed.len();
        self.status.undelivered_files = self.undelivered.len();
        self.status.buffered_readings = self.unsealed.len()
            + self
                .undelivered
                .iter()
                .map(|s| s.readings.len())
                .sum::<usize>();
        self.status.updated_ms = now_ms();
        self.status_written = Some(Instant::now());
        let path = self.settings.state_dir.join("status.json");
        let text = serde_json::to_string_pretty(&self.status).unwrap_or_default();
        if let Err(e) = write_durably(&path, text.as_bytes(), false) {
            tracing::warn!("cannot write the collector's status: {e}");
        }
    }
}

fn damaged(dir: &Path, segment: u64, what: &str) -> Error {
    Error::Stopped(format!(
        "{}: segment {segment}: {what}: the collector's log is damaged",
        dir.display()
    ))
}

/// Readings logged and not yet sealed, oldest first, with their serial
/// numbers (which follow without gaps) and the log segment of each.
#[derive(Default)]
struct Unsealed {
    readings: VecDeque<Reading>,
    /// The serial of the oldest (of the next logged, while there is none).
    first: u64,
    /// Runs of readings logged in one segment: (segment, readings), oldest first.
    runs: VecDeque<(u64, usize)>,
}

impl Unsealed {
    fn len(&self) -> usize {
        self.readings.len()
    }

    fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }

    /// The serial the next reading logged takes.
    fn next(&self) -> u64 {
        self.first + self.readings.len() as u64
    }

    /// The segment of the oldest: the oldest that must be kept for them.
    fn oldest_segment(&self) -> Option<u64> {
        self.runs.front().map(|r| r.0)
    }

    /// Adds readings logged in `segment`.
    fn push(&mut self, segment: u64, readings: Vec<Reading>) {
        let count = readings.len();
        match self.runs.back_mut() {
            Some((s, n)) if *s == segment => *n += count,
            _ if count == 0 => {}
            _ => self.runs.push_back((segment, count)),
        }
        self.readings.extend(readings);
    }

    /// Takes the oldest `count` (all there are, if fewer).
    fn take(&mut self, count: usize) -> std::collections::vec_deque::Drain<'_, Reading> {
        let count = count.min(self.readings.len());
        shorten_runs(&mut self.runs, count, false);
        self.first += count as u64;
        self.readings.drain(..count)
    }

    /// Drops those whose serial comes before `serial`.
    fn take_before(&mut self, serial: u64) {
        self.take(serial.saturating_sub(self.first) as usize);
    }

    /// Forgets the newest `count` (a write that was replaced).
    fn forget_newest(&mut self, count: usize) {
        let count = count.min(self.readings.len());
        shorten_runs(&mut self.runs, count, true);
        self.readings.truncate(self.readings.len() - count);
    }
}

/// Takes `count` readings off the runs' oldest end, or their newest.
fn shorten_runs(runs: &mut VecDeque<(u64, usize)>, mut count: usize, newest: bool) {
    while count > 0 {
        let end = if newest {
            runs.back_mut()
        } else {
            runs.front_mut()
        };
        let Some(run) = end else {
            return;
        };
        if run.1 > count {
            run.1 -= count;
            return;
        }
        count -= run.1;
        if newest {
            runs.pop_back();
        } else {
            runs.pop_front();
        }
    }
}

/// The collector's status as its file says, if it has written one.
pub fn read_status(state_dir: &Path) -> Option<CollectorStatus> {
    serde_json::from_slice(&fs::read(state_dir.join("status.json")).ok()?).ok()
}

/// What [`resend`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resent {
    /// Files put in the outbox again.
    pub copied: Vec<u64>,
    /// Numbers with no file in `sent/` (expired, or not yet sealed).
    pub missing: Vec<u64>,
}

/// Puts files `from..=to` of `stream` from `sent/` in the outbox again.
pub fn resend(state_dir: &Path, outbox: &Path, stream: &str, from: u64, to: u64) -> Result<Resent> {
    if from == 0 || from > to {
        return Err(Error::config(
            "--from",
            format!(
                "the range {from}..={to} must start at 1 or later and not end before it starts"
            ),
        ));
    }
    let mut resent = Resent::default();
    for sequence in from..=to {
        let name = sealed::file_name(stream, sequence);
        let archived = state_dir.join("sent").join(&name);
        match fs::read(&archived) {
            Ok(bytes) => {
                write_durably(&outbox.join(&name), &bytes, false)?;
                resent.copied.push(sequence);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => resent.missing.push(sequence),
            Err(e) => return Err(Error::io(archived, e)),
        }
    }
    Ok(resent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Algorithm;
    use crate::sealed::{Trust, open};
    use headroom_readings::{Quality, Quantity};

    fn reading(i: usize) -> Reading {
        Reading {
            ts_ms: 1_780_000_000_000 + i as i64 * 1000,
            asset: "T_2".into(),
            quantity: Quantity::PKw,
            value: i as f64 / 3.0,
            quality: Quality::Good,
            source: "gateway".into(),
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        settings: CollectorSettings,
        outbox: PathBuf,
        key_seed: [u8; 32],
    }

    fn setup(batch_max_readings: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        fs::create_dir(&outbox).unwrap();
        let mut settings = CollectorSettings::new(
            "scada",
            dir.path().join("unused.key"),
            dir.path().join("state"),
        );
        settings.batch_max_readings = batch_max_readings;
        settings.batch_max_age_ms = 60_000;
        Setup {
            _dir: dir,
            settings,
            outbox,
            key_seed: [3; 32],
        }
    }

    impl Setup {
        fn key(&self) -> SigningKey {
            SigningKey::from_seed(Algorithm::Ed25519, self.key_seed).unwrap()
        }
        fn start(&self) -> Collector {
            Collector::start(self.settings.clone(), self.key(), &self.outbox).unwrap()
        }
        /// Every file in the outbox, opened: (sequence, readings), by sequence.
        fn outbox_files(&self) -> Vec<(u64, Vec<Reading>)> {
            let mut trust = Trust::default();
            trust.add("scada", [self.key().verifying_key().clone()]);
            let mut files: Vec<(u64, Vec<Reading>)> = fs::read_dir(&self.outbox)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(is_visible_file)
                .map(|e| {
                    let bytes = fs::read(e.path()).unwrap();
                    let opened = open(&bytes, &trust).unwrap();
                    let name = e.file_name().into_string().unwrap();
                    assert_eq!(
                        sealed::parse_file_name(&name),
                        Some(("scada", opened.header.sequence))
                    );
                    let readings = crate::body::decode(
                        opened.body,
                        opened.header.rows,
                        &mut Interner::default(),
                    )
                    .unwrap();
                    (opened.header.sequence, readings)
                })
                .collect();
            files.sort_by_key(|f| f.0);
            files
        }
    }

    fn write(sink: &CollectorSink, from: usize, to: usize) {
        let summary = sink
            .write((from..to).map(reading).collect())
            .wait()
            .unwrap();
        assert_eq!(summary.accepted, to - from);
    }

    #[test]
    fn readings_leave_in_sealed_files_numbered_without_reuse_across_restarts() {
        let setup = setup(4);
        let collector = setup.start();
        write(&collector.sink(), 0, 6);
        write(&collector.sink(), 6, 10);
        collector.stop().unwrap();
        let files = setup.outbox_files();
        let sequences: Vec<u64> = files.iter().map(|f| f.0).collect();
        assert_eq!(sequences, [1, 2, 3]);
        assert!(files.iter().all(|f| f.1.len() <= 4));
        let all: Vec<Reading> = files.into_iter().flat_map(|f| f.1).collect();
        assert_eq!(all, (0..10).map(reading).collect::<Vec<_>>());

        // The device takes them; the next run goes on from 4.
        for entry in fs::read_dir(&setup.outbox).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let collector = setup.start();
        write(&collector.sink(), 10, 11);
        collector.stop().unwrap();
        let files = setup.outbox_files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, 4);
        let status = read_status(&setup.settings.state_dir).unwrap();
        assert_eq!(status.next_sequence, 5);
        assert_eq!(status.state, DeliveryState::Stopped);
        // Everything delivered: the log keeps only the segment being written.
        let segments = headroom_wal::segments(&setup.settings.state_dir.join("wal")).unwrap();
        assert_eq!(segments.len(), 1, "{segments:?}");
        assert_eq!(
            read_recorded_sequence(&setup.settings.state_dir).unwrap(),
            4
        );

        // Resending puts the kept copies back, byte for byte.
        let before = fs::read(setup.outbox.join(sealed::file_name("scada", 4))).unwrap();
        fs::remove_file(setup.outbox.join(sealed::file_name("scada", 4))).unwrap();
        let resent = resend(&setup.settings.state_dir, &setup.outbox, "scada", 2, 6).unwrap();
        assert_eq!(resent.copied, [2, 3, 4]);
        assert_eq!(resent.missing, [5, 6]);
        assert_eq!(
            fs::read(setup.outbox.join(sealed::file_name("scada", 4))).unwrap(),
            before
        );
        assert!(resend(&setup.settings.state_dir, &setup.outbox, "scada", 3, 2).is_err());
    }

    /// A crash is the sealer dropped between two rounds, as a SIGKILL leaves it:
    /// only what it made durable remains. The second write makes files whose
    /// readings span two log segments, and the older segment is deleted once
    /// they are in the outbox.
    #[test]
    fn a_crash_after_files_spanning_log_segments_neither_loses_nor_repeats_a_reading() {
        for second_write in [8, 20, 25] {
            let setup = setup(10);
            let mut sealer =
                Sealer::open(setup.settings.clone(), setup.key(), &setup.outbox).unwrap();
            let round = |sealer: &mut Sealer, from: usize, to: usize| {
                let (reply, _ticket) = WriteTicket::channel();
                sealer.log(vec![((from..to).map(reading).collect(), reply)]);
                sealer.seal_due(false).unwrap();
                sealer.deliver().unwrap();
                sealer.forget_delivered().unwrap();
            };
            round(&mut sealer, 0, 13);
            round(&mut sealer, 13, 13 + second_write);
            let wal_dir = setup.settings.state_dir.join("wal");
            assert!(
                !headroom_wal::segments(&wal_dir).unwrap().contains(&1),
                "the first segment is deleted: the case under test"
            );
            drop(sealer);

            let total = 13 + second_write + 2;
            let collector = setup.start();
            write(&collector.sink(), 13 + second_write, total);
            collector.stop().unwrap();
            // One file per number in the outbox (a repeat has the same name):
            // in number order they hold every reading once.
            let files = setup.outbox_files();
            let sizes: Vec<(u64, usize)> = files.iter().map(|f| (f.0, f.1.len())).collect();
            let all: Vec<Reading> = files.into_iter().flat_map(|f| f.1).collect();
            assert_eq!(
                all,
                (0..total).map(reading).collect::<Vec<_>>(),
                "second write of {second_write}: files (number, readings) {sizes:?}"
            );
        }
    }

    /// A log written before readings carried serials still replays, and a
    /// write reported failed that reached the log whole gives way to the write
    /// that took its serials after it.
    #[test]
    fn unnumbered_records_and_a_replaced_write_replay_as_they_were_acknowledged() {
        let setup = setup(10);
        let wal_dir = setup.settings.state_dir.join("wal");
        let mut wal = Wal::create(&wal_dir, 0).unwrap();
        let readings_record = |out: &mut Vec<u8>, first: Option<u64>, rows: &[usize]| {
            headroom_wal::frame(out, |out| {
                match first {
                    Some(first) => {
                        out.push(RECORD_READINGS);
                        out.extend_from_slice(&first.to_le_bytes());
                    }
                    None => out.push(RECORD_READINGS_UNNUMBERED),
                }
                out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
                for &i in rows {
                    put_reading(out, &reading(i));
                }
            });
        };
        let mut log = Vec::new();
        readings_record(&mut log, None, &[0, 1, 2, 3]);
        headroom_wal::frame(&mut log, |out| {
            out.push(RECORD_SEAL_UNNUMBERED);
            out.extend_from_slice(&1u64.to_le_bytes());
            out.extend_from_slice(&1_780_000_000_000i64.to_le_bytes());
            out.extend_from_slice(&3u32.to_le_bytes());
        });
        // Serials 0..4 so far; the failed write took 4..6, its replacement 4..7.
        readings_record(&mut log, Some(4), &[50, 51]);
        readings_record(&mut log, Some(4), &[100, 101, 102]);
        wal.append_durably(&log).unwrap();
        drop(wal);

        setup.start().stop().unwrap();
        let files = setup.outbox_files();
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(files[0].0, 1);
        assert_eq!(files[0].1, [0, 1, 2].map(reading));
        assert_eq!(files[1].0, 2);
        assert_eq!(files[1].1, [3, 100, 101, 102].map(reading));
    }

    #[test]
    fn a_full_or_missing_outbox_buffers_in_the_log_until_it_takes_files_again() {
        let mut setup = setup(2);
        setup.settings.outbox_max_files = 2;
        let collector = setup.start();
        write(&collector.sink(), 0, 10);
        // Delivery runs after the acknowledgement: wait for the status to say so.
        let status = wait_for(&setup, |s| s.state == DeliveryState::Buffering);
        assert!(status.reason.unwrap().contains("outbox_max_files"));
        assert_eq!(setup.outbox_files().len(), 2);
        collector.stop().unwrap();

        // Restarted on an outbox that is gone: still buffering, nothing lost.
        let taken: Vec<_> = setup.outbox_files();
        fs::remove_dir_all(&setup.outbox).unwrap();
        setup.settings.outbox_max_files = 100;
        let collector = setup.start();
        write(&collector.sink(), 10, 11);
        let status = wait_for(&setup, |s| {
            s.state == DeliveryState::Buffering
                && s.reason
                    .as_deref()
                    .is_some_and(|r| !r.contains("outbox_max_files"))
        });
        assert!(
            status
                .reason
                .unwrap()
                .contains(&setup.outbox.display().to_string())
        );
        // Files 1 and 2 shared a log segment with 3 to 5, so the log still has
        // them: they go out again (the same bytes; the inbox acknowledges them
        // as duplicates).
        assert_eq!(status.buffered_readings, 11);
        // It comes back: everything arrives, numbered on from the first run's.
        fs::create_dir(&setup.outbox).unwrap();
        wait_for(&setup, |s| {
            s.state == DeliveryState::Delivering && s.undelivered_files == 0
        });
        collector.stop().unwrap();
        let rest = setup.outbox_files();
        let sequences: Vec<u64> = rest.iter().map(|f| f.0).collect();
        assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
        assert_eq!(rest[..2], taken[..]);
        let all: Vec<Reading> = rest.into_iter().flat_map(|f| f.1).collect();
        assert_eq!(all, (0..11).map(reading).collect::<Vec<_>>());
    }

    fn wait_for(setup: &Setup, until: impl Fn(&CollectorStatus) -> bool) -> CollectorStatus {
        let began = Instant::now();
        loop {
            if let Some(status) = read_status(&setup.settings.state_dir)
                && until(&status)
            {
                return status;
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "the status never came"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_quiet_stream_seals_empty_files_so_a_lost_last_file_shows_as_a_gap() {
        let mut setup = setup(100);
        setup.settings.heartbeat_s = 1;
        let collector = setup.start();
        write(&collector.sink(), 0, 3);
        std::thread::sleep(Duration::from_millis(2300));
        collector.stop().unwrap();
        let files = setup.outbox_files();
        // The readings sealed by the first heartbeat, well before their age
        // (60 s), then an empty file; numbered in one sequence.
        assert_eq!(files[0].1.len(), 3);
        assert!(
            files.iter().any(|f| f.1.is_empty()),
            "{:?}",
            files.iter().map(|f| (f.0, f.1.len())).collect::<Vec<_>>()
        );
        assert_eq!(files.iter().map(|f| f.1.len()).sum::<usize>(), 3);
        let sequences: Vec<u64> = files.iter().map(|f| f.0).collect();
        assert_eq!(sequences, (1..=files.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let mut settings = CollectorSettings::new("a.b", "k".into(), "s".into());
        assert!(
            settings
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("collector.stream")
        );
        settings.stream = "ok".into();
        settings.batch_max_age_ms = 0;
        assert!(
            settings
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("collector.batch_max_age_ms")
        );
    }
}
