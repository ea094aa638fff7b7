//! The receiving side: a folder the isolation device delivers into.
//!
//! A file is *checked* (name, header, trusted key, signature, digest, kind,
//! and against the ledger), its content handed on by the caller (readings to
//! the store, applications to the ledger of reservations), and once that is
//! durable the file is *settled*: its `(stream, sequence, digest)` appended to
//! the ledger (`.ledger` in the folder, fsynced), then the file moved to
//! `done/`. A refused file moves to `rejected/` beside a `.reason` naming the
//! rule; nothing of it is handed on.
//!
//! **Exactly once.** The ledger line is written after the content is durable
//! and before the file moves. A crash before the line leaves the file in the
//! folder: it is taken again, and what it stores replaces itself (the store's
//! key is asset, quantity and time; an application's register and reserve are
//! idempotent). A crash after the line leaves a file the ledger knows: it moves
//! to `done/` as a duplicate.
//!
//! **Duplicates, conflicts, gaps.** The same stream and sequence with the same
//! body digest is a duplicate: acknowledged (moved to `done/`) and ignored.
//! Another digest is a conflict: rejected. Files may come in any order; the
//! numbers not yet seen between a stream's first (1, or as configured) and its
//! highest taken are its gaps, until they arrive.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::is_visible_file;
use crate::sealed::{self, Header, Kind, Opened, Rejection, Rule, Trust};

/// The ledger's file name, in the inbox folder.
pub const LEDGER_FILE: &str = ".ledger";

/// A stream an inbox accepts, as configured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedStream {
    /// Public key files (SubjectPublicKeyInfo PEM, Ed25519 or SM2) whose
    /// signatures are trusted for this stream.
    pub keys: Vec<PathBuf>,
    /// The stream's first number: gaps are counted from it (1 for a writer
    /// started afresh).
    #[serde(default = "default_first_sequence")]
    pub first_sequence: u64,
}

const fn default_first_sequence() -> u64 {
    1
}

/// The trust and first numbers of configured streams, keys read from their
/// files; errors name the field under `field` (`...streams.NAME.keys[0]`).
pub fn trust_streams(
    streams: &BTreeMap<String, TrustedStream>,
    field: &str,
) -> Result<(Trust, BTreeMap<String, u64>)> {
    if streams.is_empty() {
        return Err(Error::config(format!("{field}.streams"), "names no stream"));
    }
    let mut trust = Trust::default();
    let mut first = BTreeMap::new();
    for (stream, settings) in streams {
        let at = format!("{field}.streams.{stream}");
        if !sealed::valid_stream_name(stream) {
            return Err(Error::config(
                at,
                "a stream's name is 1 to 64 of A-Z a-z 0-9 _ -",
            ));
        }
        if settings.keys.is_empty() {
            return Err(Error::config(format!("{at}.keys"), "lists no key"));
        }
        if settings.first_sequence == 0 {
            return Err(Error::config(format!("{at}.first_sequence"), "starts at 1"));
        }
        let mut keys = Vec::new();
        for (i, path) in settings.keys.iter().enumerate() {
            let key = crate::keys::VerifyingKey::read(path)
                .map_err(|e| Error::config(format!("{at}.keys[{i}]"), e.to_string()))?;
            keys.push(key);
        }
        trust.add(stream, keys);
        first.insert(stream.clone(), settings.first_sequence);
    }
    Ok((trust, first))
}

/// What one stream has delivered.
#[derive(Debug, Default)]
struct StreamLedger {
    first: u64,
    digests: HashMap<u64, [u8; 32]>,
    /// Every number from `first` through this one is taken.
    through: u64,
    /// Numbers taken above `through`.
    above: BTreeSet<u64>,
}

impl StreamLedger {
    fn new(first: u64) -> Self {
        Self {
            first,
            through: first - 1,
            ..Self::default()
        }
    }

    fn insert(&mut self, sequence: u64, digest: [u8; 32]) {
        self.digests.insert(sequence, digest);
        if sequence > self.through {
            self.above.insert(sequence);
            while self.above.first() == Some(&(self.through + 1)) {
                self.above.pop_first();
                self.through += 1;
            }
        }
    }

    fn gaps(&self) -> Vec<Gap> {
        let mut gaps = Vec::new();
        let mut expected = self.through + 1;
        for &n in &self.above {
            if n > expected {
                gaps.push(Gap {
                    from: expected,
                    to: n - 1,
                });
            }
            expected = n + 1;
        }
        gaps
    }
}

/// Sequence numbers `from..=to` of a stream not yet received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The first missing number.
    pub from: u64,
    /// The last.
    pub to: u64,
}

/// A stream as the inbox has received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamState {
    /// The stream.
    pub stream: String,
    /// Files taken (duplicates not counted again).
    pub taken: u64,
    /// The highest number taken.
    pub highest: Option<u64>,
    /// Numbers missing below the highest.
    pub gaps: Vec<Gap>,
}

/// What a checked file is.
#[derive(Debug)]
pub enum Checked<'a> {
    /// New: hand on its body, then settle it as [`Outcome::Taken`].
    New(Opened<'a>),
    /// Taken before (the same digest): settle it as [`Outcome::Duplicate`].
    Duplicate(Header),
    /// Refused: settle it as [`Outcome::Rejected`].
    Rejected(Rejection),
}

/// What became of a file, to settle.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Its content is durable.
    Taken(Header),
    /// A duplicate.
    Duplicate,
    /// Refused, or its content was refused (a bad row).
    Rejected(Rejection),
}

/// An inbox folder with its ledger.
#[derive(Debug)]
pub struct Inbox {
    folder: PathBuf,
    kind: Kind,
    trust: Trust,
    streams: BTreeMap<String, StreamLedger>,
    /// Checked as new and not yet settled: a second copy in the same group is
    /// a duplicate of the first.
    pending: HashMap<(String, u64), [u8; 32]>,
}

impl Inbox {
    /// Opens `folder` (made if missing, with `done/` and `rejected/`) for files
    /// of `kind`, trusting `trust`; `first` gives a stream's first expected
    /// number where it is not 1. Reads the ledger; a torn last line (a crash
    /// while appending it) is dropped, so that file is taken again.
    pub fn open(
        folder: &Path,
        kind: Kind,
        trust: Trust,
        first: &BTreeMap<String, u64>,
    ) -> Result<Self> {
        for dir in [
            folder.to_owned(),
            folder.join("done"),
            folder.join("rejected"),
        ] {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let mut streams: BTreeMap<String, StreamLedger> = trust
            .streams()
            .map(|s| {
                (
                    s.to_owned(),
                    StreamLedger::new(first.get(s).copied().unwrap_or(1).max(1)),
                )
            })
            .collect();
        let path = folder.join(LEDGER_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let Some(line) = line.strip_suffix('\n') else {
                break;
            };
            let mut fields = line.split(' ');
            let parsed = (|| {
                let stream = fields.next()?;
                let sequence: u64 = fields.next()?.parse().ok()?;
                let mut digest = [0; 32];
                hex::decode_to_slice(fields.next()?, &mut digest).ok()?;
                fields
                    .next()
                    .is_none()
                    .then_some((stream, sequence, digest))
            })();
            let Some((stream, sequence, digest)) = parsed else {
                return Err(Error::Stopped(format!(
                    "{} line {}: not `STREAM SEQUENCE SHA256`: the inbox's ledger is damaged",
                    path.display(),
                    i + 1
                )));
            };
            // A stream no longer trusted keeps its history, for its duplicates.
            let first = first.get(stream).copied().unwrap_or(1).max(1);
            streams
                .entry(stream.to_owned())
                .or_insert_with(|| StreamLedger::new(first))
                .insert(sequence, digest);
        }
        Ok(Self {
            folder: folder.to_owned(),
            kind,
            trust,
            streams,
            pending: HashMap::new(),
        })
    }

    /// The folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Files waiting, in name order (by stream, then sequence).
    pub fn waiting(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.folder).map_err(|e| Error::io(&self.folder, e))? {
            let entry = entry.map_err(|e| Error::io(&self.folder, e))?;
            if is_visible_file(&entry) {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    /// Checks a file's bytes: its name, the file itself, its kind, and the ledger.
    pub fn check<'a>(&mut self, path: &Path, bytes: &'a [u8]) -> Checked<'a> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some((named_stream, named_sequence)) = sealed::parse_file_name(name) else {
            return Checked::Rejected(Rejection::new(
                Rule::Name,
                format!("`{name}` is not a relay file's name (STREAM.SEQUENCE.relay)"),
            ));
        };
        let opened = match sealed::open(bytes, &self.trust) {
            Ok(opened) => opened,
            Err(rejection) => return Checked::Rejected(rejection),
        };
        let header = &opened.header;
        if (header.stream.as_str(), header.sequence) != (named_stream, named_sequence) {
            return Checked::Rejected(Rejection::new(
                Rule::Name,
                format!(
                    "the name says {named_stream} {named_sequence}, the header {} {}",
                    header.stream, header.sequence
                ),
            ));
        }
        if header.kind != self.kind {
            return Checked::Rejected(Rejection::new(
                Rule::Kind,
                format!("a {} file in an inbox of {} files", header.kind, self.kind),
            ));
        }
        let key = (header.stream.clone(), header.sequence);
        let known = self
            .streams
            .get(&header.stream)
            .and_then(|s| s.digests.get(&header.sequence))
            .or_else(|| self.pending.get(&key));
        match known {
            Some(digest) if *digest == header.body_sha256 => Checked::Duplicate(opened.header),
            Some(digest) => Checked::Rejected(Rejection::new(
                Rule::Conflict,
                format!(
                    "{} {} was taken before with body SHA-256 {}; this one has {}",
                    header.stream,
                    header.sequence,
                    hex::encode(digest),
                    hex::encode(header.body_sha256)
                ),
            )),
            None => {
                self.pending.insert(key, header.body_sha256);
                Checked::New(opened)
            }
        }
    }

    /// Forgets the files checked as new and not settled (their content did not
    /// become durable: they stay in the folder and are checked again).
    pub fn abandon(&mut self) {
        self.pending.clear();
    }

    /// Settles a group of files: ledger lines for the taken ones (one fsync),
    /// then every file moved to `done/` or `rejected/` (with its `.reason`).
    pub fn settle(&mut self, outcomes: Vec<(PathBuf, Outcome)>) -> Result<()> {
        let mut lines = String::new();
        for (_, outcome) in &outcomes {
            if let Outcome::Taken(h) = outcome {
                lines.push_str(&format!(
                    "{} {} {}\n",
                    h.stream,
                    h.sequence,
                    hex::encode(h.body_sha256)
                ));
            }
        }
        if !lines.is_empty() {
            let path = self.folder.join(LEDGER_FILE);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(lines.as_bytes()).and_then(|()| f.sync_data()))
                .map_err(|e| Error::io(&path, e))?;
        }
        let done = self.folder.join("done");
        let rejected = self.folder.join("rejected");
        for (path, outcome) in outcomes {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match outcome {
                Outcome::Taken(header) => {
                    self.pending
                        .remove(&(header.stream.clone(), header.sequence));
                    // Only a trusted stream's file is taken, and every trusted
                    // stream has its ledger from the start.
                    if let Some(ledger) = self.streams.get_mut(&header.stream) {
                        ledger.insert(header.sequence, header.body_sha256);
                    }
                    rename(&path, &done.join(&name))?;
                }
                Outcome::Duplicate => rename(&path, &done.join(&name))?,
                Outcome::Rejected(rejection) => {
                    // Every refused copy is kept: a second one gets `~2`, and so on.
                    let mut target = rejected.join(&name);
                    let mut copy = 1;
                    while target.exists() {
                        copy += 1;
                        target = rejected.join(format!("{name}~{copy}"));
                    }
                    let mut reason = target.clone().into_os_string();
                    reason.push(".reason");
                    fs::write(&reason, format!("{rejection}\n"))
                        .map_err(|e| Error::io(&reason, e))?;
                    rename(&path, &target)?;
                }
            }
        }
        for dir in [&done, &rejected, &self.folder] {
            headroom_wal::sync_dir(dir)?;
        }
        Ok(())
    }

    /// Every stream's state, gaps included.
    pub fn streams(&self) -> Vec<StreamState> {
        self.streams
            .iter()
            .map(|(stream, ledger)| StreamState {
                stream: stream.clone(),
                taken: ledger.digests.len() as u64,
                highest: ledger
                    .above
                    .last()
                    .copied()
                    .or((ledger.through >= ledger.first).then_some(ledger.through)),
                gaps: ledger.gaps(),
            })
            .collect()
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io(to, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, SigningKey};

    struct Scene {
        dir: tempfile::TempDir,
        key: SigningKey,
        trust: Trust,
    }

    impl Scene {
        fn new(algorithm: Algorithm) -> Self {
            let key = SigningKey::from_seed(algorithm, [5; 32]).unwrap();
            let mut trust = Trust::default();
            trust.add("scada", [key.verifying_key().clone()]);
            Self {
                dir: tempfile::tempdir().unwrap(),
                key,
                trust,
            }
        }

        fn inbox(&self) -> Inbox {
            Inbox::open(
                self.dir.path(),
                Kind::Readings,
                self.trust.clone(),
                &BTreeMap::new(),
            )
            .unwrap()
        }

        fn file(&self, sequence: u64, body: &str) -> Vec<u8> {
            sealed::seal(
                "scada",
                sequence,
                Kind::Readings,
                0,
                0,
                body.as_bytes(),
                &self.key,
            )
        }

        /// Drops a file as the device would: under its own name, or `name`.
        fn drop_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.dir.path().join(name);
            fs::write(&path, bytes).unwrap();
            path
        }

        /// Checks and settles everything waiting; returns what each was, by name.
        fn take(&self, inbox: &mut Inbox) -> Vec<(String, String)> {
            let mut outcomes = Vec::new();
            let mut seen = Vec::new();
            for path in inbox.waiting().unwrap() {
                let bytes = fs::read(&path).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let (what, outcome) = match inbox.check(&path, &bytes) {
                    Checked::New(opened) => ("new".to_owned(), Outcome::Taken(opened.header)),
                    Checked::Duplicate(_) => ("duplicate".to_owned(), Outcome::Duplicate),
                    Checked::Rejected(r) => (r.rule.as_str().to_owned(), Outcome::Rejected(r)),
                };
                seen.push((name, what));
                outcomes.push((path, outcome));
            }
            inbox.settle(outcomes).unwrap();
            seen
        }

        fn reason(&self, name: &str) -> String {
            fs::read_to_string(
                self.dir
                    .path()
                    .join("rejected")
                    .join(format!("{name}.reason")),
            )
            .unwrap()
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn files_are_taken_once_in_any_order_and_gaps_close_as_they_arrive() {
        let scene = Scene::new(Algorithm::Ed25519);
        let mut inbox = scene.inbox();
        let name = |n| sealed::file_name("scada", n);
        scene.drop_file(&name(3), &scene.file(3, "c"));
        scene.drop_file(&name(1), &scene.file(1, "a"));
        scene.drop_file(&name(6), &scene.file(6, "f"));
        assert_eq!(
            scene.take(&mut inbox),
            pairs(&[(&name(1), "new"), (&name(3), "new"), (&name(6), "new")])
        );
        let state = &inbox.streams()[0];
        assert_eq!((state.taken, state.highest), (3, Some(6)));
        assert_eq!(state.gaps, [Gap { from: 2, to: 2 }, Gap { from: 4, to: 5 }]);
        assert!(scene.dir.path().join("done").join(name(6)).exists());

        // A second copy is a duplicate, even after a restart; another body under
        // a taken number is a conflict.
        let mut inbox = scene.inbox();
        scene.drop_file(&name(3), &scene.file(3, "c"));
        scene.drop_file(&name(2), &scene.file(2, "b"));
        scene.drop_file(&name(6), &scene.file(6, "not f"));
        assert_eq!(
            scene.take(&mut inbox),
            pairs(&[
                (&name(2), "new"),
                (&name(3), "duplicate"),
                (&name(6), "conflict")
            ])
        );
        assert!(
            scene
                .reason(&name(6))
                .starts_with("conflict: scada 6 was taken before")
        );
        // Two copies in one group: the second is the first's duplicate.
        scene.drop_file(&name(4), &scene.file(4, "d"));
        scene.drop_file(&name(5), &scene.file(5, "e"));
        scene.drop_file(&name(6), &scene.file(6, "not f"));
        let again = scene.take(&mut inbox);
        assert_eq!(again[2], (name(6), "conflict".to_owned()));
        assert!(
            scene
                .dir
                .path()
                .join("rejected")
                .join(format!("{}~2.reason", name(6)))
                .exists()
        );
        assert!(inbox.streams()[0].gaps.is_empty());
        assert_eq!(inbox.streams()[0].taken, 6);

        // A torn last ledger line: that file is not known, so it is taken again.
        let ledger = scene.dir.path().join(LEDGER_FILE);
        let text = fs::read_to_string(&ledger).unwrap();
        fs::write(&ledger, &text[..text.len() - 5]).unwrap();
        let mut inbox = scene.inbox();
        assert_eq!(inbox.streams()[0].taken, 5);
        scene.drop_file(&name(5), &scene.file(5, "e"));
        assert_eq!(scene.take(&mut inbox), pairs(&[(&name(5), "new")]));
    }

    /// Every way a delivered file can be bad, for both algorithms: each is
    /// refused with its rule, and a replay of a good file changes nothing.
    #[test]
    fn bad_files_go_to_rejected_with_the_rule_and_a_replay_is_ignored() {
        for algorithm in [Algorithm::Ed25519, Algorithm::Sm2] {
            let scene = Scene::new(algorithm);
            let mut inbox = scene.inbox();
            let good = scene.file(1, "readings");
            scene.drop_file(&sealed::file_name("scada", 1), &good);
            assert_eq!(scene.take(&mut inbox)[0].1, "new");

            let stranger = SigningKey::from_seed(algorithm, [6; 32]).unwrap();
            let unknown = sealed::seal("scada", 2, Kind::Readings, 0, 0, b"x", &stranger);
            let text = String::from_utf8(scene.file(3, "readings")).unwrap();
            let tampered_header = text.replacen("rows: 0", "rows: 1", 1);
            let mut tampered_body = scene.file(4, "readings");
            *tampered_body.last_mut().unwrap() = b'S';
            let truncated = scene.file(5, "readings");
            let applications = sealed::seal("scada", 6, Kind::Applications, 0, 0, b"", &scene.key);
            for (n, bytes) in [
                (2, unknown),
                (3, tampered_header.into_bytes()),
                (4, tampered_body),
                (5, truncated[..truncated.len() - 2].to_vec()),
                (6, applications),
            ] {
                scene.drop_file(&sealed::file_name("scada", n), &bytes);
            }
            scene.drop_file("scada.7.relay", &good);
            scene.drop_file("notes.txt", b"hello");
            // The replay: file 1 again, byte for byte.
            scene.drop_file(&sealed::file_name("scada", 1), &good);
            let seen: BTreeMap<String, String> = scene.take(&mut inbox).into_iter().collect();
            let expected = [
                (sealed::file_name("scada", 1), "duplicate"),
                (sealed::file_name("scada", 2), "unknown-key"),
                (sealed::file_name("scada", 3), "signature"),
                (sealed::file_name("scada", 4), "digest"),
                (sealed::file_name("scada", 5), "digest"),
                (sealed::file_name("scada", 6), "kind"),
                ("scada.7.relay".to_owned(), "name"),
                ("notes.txt".to_owned(), "name"),
            ];
            for (name, rule) in expected {
                assert_eq!(seen[&name], rule, "{algorithm} {name}");
                if rule != "duplicate" {
                    assert!(
                        scene.reason(&name).starts_with(&format!("{rule}: ")),
                        "{algorithm} {name}"
                    );
                }
            }
            assert_eq!(inbox.streams()[0].taken, 1, "{algorithm}");
            assert!(inbox.waiting().unwrap().is_empty());
        }
    }
}
