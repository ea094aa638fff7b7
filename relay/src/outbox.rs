//! A stream of signed files written one at a time, each whole: the service's
//! answers, the business hall's applications (`headroom relay send`).
//!
//! A file is first written to `sent/` under the state folder, which claims its
//! number (the next is one past the highest there, or past `delivered`), then
//! to the outbox, then `delivered` records its number. After a crash, the files
//! in `sent/` past `delivered` are put in the outbox again: the receiver takes
//! a second copy as a duplicate. Sent files are kept for resending.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files::write_durably;
use crate::keys::SigningKey;
use crate::sealed::{self, Kind, valid_stream_name};

/// A sequenced, signed outbox.
#[derive(Debug)]
pub struct SignedOutbox {
    stream: String,
    kind: Kind,
    key: SigningKey,
    outbox: PathBuf,
    sent_dir: PathBuf,
    delivered_path: PathBuf,
    next: u64,
}

impl SignedOutbox {
    /// Opens the stream's state in `state_dir` (made if missing) and puts any
    /// file claimed but not recorded as delivered in the outbox again.
    pub fn open(
        state_dir: &Path,
        outbox: &Path,
        stream: &str,
        kind: Kind,
        key: SigningKey,
    ) -> Result<Self> {
        if !valid_stream_name(stream) {
            return Err(Error::config(
                "stream",
                format!("\"{stream}\" must be 1 to 64 of A-Z a-z 0-9 _ -"),
            ));
        }
        let sent_dir = state_dir.join("sent");
        for dir in [&sent_dir, &outbox.to_owned()] {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let delivered_path = state_dir.join("delivered");
        let delivered = crate::files::read_sequence(&delivered_path)?;
        let mut highest = delivered;
        let mut pending = Vec::new();
        for entry in fs::read_dir(&sent_dir).map_err(|e| Error::io(&sent_dir, e))? {
            let name = entry.map_err(|e| Error::io(&sent_dir, e))?.file_name();
            if let Some((s, n)) = name.to_str().and_then(sealed::parse_file_name)
                && s == stream
            {
                highest = highest.max(n);
                if n > delivered {
                    pending.push(n);
                }
            }
        }
        pending.sort_unstable();
        let opened = Self {
            stream: stream.to_owned(),
            kind,
            key,
            outbox: outbox.to_owned(),
            sent_dir,
            delivered_path,
            next: highest + 1,
        };
        for n in pending {
            let name = sealed::file_name(stream, n);
            let bytes = fs::read(opened.sent_dir.join(&name))
                .map_err(|e| Error::io(opened.sent_dir.join(&name), e))?;
            opened.deliver(n, &name, &bytes)?;
        }
        Ok(opened)
    }

    /// The number the next file will get.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Seals `body` (of `rows` rows) as the next file and delivers it; returns
    /// its number.
    pub fn send(&mut self, body: &[u8], rows: u64) -> Result<u64> {
        let sequence = self.next;
        let created_ms = chrono::Utc::now().timestamp_millis();
        let bytes = sealed::seal(
            &self.stream,
            sequence,
            self.kind,
            created_ms,
            rows,
            body,
            &self.key,
        );
        let name = sealed::file_name(&self.stream, sequence);
        write_durably(&self.sent_dir.join(&name), &bytes, false)?;
        self.next += 1;
        self.deliver(sequence, &name, &bytes)?;
        Ok(sequence)
    }

    fn deliver(&self, sequence: u64, name: &str, bytes: &[u8]) -> Result<()> {
        write_durably(&self.outbox.join(name), bytes, false)?;
        write_durably(
            &self.delivered_path,
            format!("{sequence}\n").as_bytes(),
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Algorithm;

    #[test]
    fn numbers_go_on_across_reopenings_and_an_undelivered_file_goes_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let (state, outbox) = (dir.path().join("state"), dir.path().join("out"));
        let key = || SigningKey::from_seed(Algorithm::Ed25519, [4; 32]).unwrap();
        let mut sender =
            SignedOutbox::open(&state, &outbox, "hall", Kind::Applications, key()).unwrap();
        assert_eq!(sender.send(b"[]", 0).unwrap(), 1);
        assert_eq!(sender.send(b"[{}]", 1).unwrap(), 2);
        drop(sender);
        // The device took both; a crash left file 2 unrecorded as delivered.
        for n in [1, 2] {
            fs::remove_file(outbox.join(sealed::file_name("hall", n))).unwrap();
        }
        fs::write(state.join("delivered"), "1\n").unwrap();
        let mut sender =
            SignedOutbox::open(&state, &outbox, "hall", Kind::Applications, key()).unwrap();
        let again: Vec<_> = fs::read_dir(&outbox)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            again,
            [std::ffi::OsString::from(sealed::file_name("hall", 2))]
        );
        assert_eq!(sender.next_sequence(), 3);
        assert_eq!(sender.send(b"[]", 0).unwrap(), 3);
        assert!(SignedOutbox::open(&state, &outbox, "a.b", Kind::Applications, key()).is_err());
    }
}
