//! The write-ahead log under the readings store and the relay's collector: what
//! has been acknowledged survives a crash, and a crash mid-write is told apart
//! from a record that was whole.
//!
//! **Data model.** A log is a folder of numbered segment files
//! (`0000000000000001.wal`, ...). A segment is a run of records; a record is a
//! `u32` payload length, a `u32` CRC-32 of the payload, then the payload, all
//! little-endian. What a payload means is the caller's: the store logs batches of
//! readings and rejected rows, the collector readings and the sequence numbers it
//! has sealed. [`codec`] writes and reads the readings inside a payload.
//!
//! A crash can leave the last record of the last segment torn. [`records`] stops
//! at the first record whose length or checksum does not hold and reports the
//! bytes it dropped; none of them were acknowledged, since a writer acknowledges a
//! record only after [`Wal::append_durably`] returns. A write that fails (a full
//! disk) can tear a record in the middle of a segment too, which would hide every
//! later record of the segment from a replay: the segment is cut back to its last
//! whole record, or, where that fails as well, the next append starts a new one.

pub mod codec;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A file of the log that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct Error {
    /// The segment or folder.
    pub path: PathBuf,
    /// What the system said.
    pub source: std::io::Error,
}

impl Error {
    fn at(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self {
            path: path.to_owned(),
            source,
        }
    }
}

/// Results of the log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Appends one record to `out`: the payload is what `write` appends.
pub fn frame(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    write(out);
    let payload_len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The payloads of one segment's whole records, and how many bytes at its end
/// were torn (a record cut short or failing its checksum, and all after it).
pub fn records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut payloads = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len as usize) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        payloads.push(payload);
        at += 8 + len as usize;
    }
    (payloads, bytes.len() - at)
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.wal"))
}

/// Segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut found = Vec::new();
    for item in fs::read_dir(dir).map_err(Error::at(dir))? {
        let name = item.map_err(Error::at(dir))?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|name| name.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Reads segment `n` whole.
pub fn read_segment(dir: &Path, n: u64) -> Result<Vec<u8>> {
    let path = segment_path(dir, n);
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(Error::at(&path))?;
    Ok(bytes)
}

/// Makes a folder's entries (created, renamed, deleted files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::at(dir))
}

/// The log's folder and the segment being written.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment: u64,
    file: File,
    /// Bytes of whole records in the segment.
    whole_len: u64,
    /// A failed append could not be cut back: the next one starts a segment.
    torn: bool,
}

impl Wal {
    /// Starts a new segment after `last` in `dir` (earlier segments are left for
    /// replay and deletion).
    pub fn create(dir: &Path, last: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(Error::at(dir))?;
        let segment = last + 1;
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Error::at(&path))?;
        let whole_len = file.metadata().map_err(Error::at(&path))?.len();
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            segment,
            file,
            whole_len,
            torn: false,
        })
    }

    /// The segment being written.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends framed records and makes them durable; where that fails, none
    /// of them count (a replay may still find some whole: the caller reported
    /// them failed, and its writers write them again).
    pub fn append_durably(&mut self, records: &[u8]) -> Result<()> {
        if self.torn {
            self.rotate()?;
        }
        let written = self
            .file
            .write_all(records)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            self.cut_back();
            return Err(Error::at(&segment_path(&self.dir, self.segment))(source));
        }
        self.whole_len += records.len() as u64;
        Ok(())
    }

    /// After a failed append: drops what it may have written, so that a torn
    /// record does not hide the records appended after it.
    fn cut_back(&mut self) {
        let cut = self
            .file
            .set_len(self.whole_len)
            .and_then(|()| self.file.sync_data());
        self.torn = cut.is_err();
    }

    /// Closes the segment being written and starts the next; returns the closed one.
    pub fn rotate(&mut self) -> Result<u64> {
        let closed = self.segment;
        *self = Wal::create(&self.dir, closed)?;
        Ok(closed)
    }

    /// Deletes the segments up to and including `n`, whose records the caller
    /// has made durable elsewhere.
    pub fn delete_through(&self, n: u64) -> Result<()> {
        for s in segments(&self.dir)?.into_iter().filter(|s| *s <= n) {
            let path = segment_path(&self.dir, s);
            fs::remove_file(&path).map_err(Error::at(&path))?;
        }
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_restart_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 0).unwrap();
        let mut bytes = Vec::new();
        frame(&mut bytes, |out| out.extend_from_slice(b"first"));
        frame(&mut bytes, |out| out.extend_from_slice(b"second"));
        wal.append_durably(&bytes).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), [1]);
        let read = read_segment(dir.path(), 1).unwrap();
        assert_eq!(records(&read), (vec![&b"first"[..], b"second"], 0));
        // Cut inside the second record: the first survives, the rest is torn.
        for cut in [read.len() - 1, read.len() - 10] {
            let (payloads, torn) = records(&read[..cut]);
            assert_eq!(payloads, [b"first"]);
            assert_eq!(torn, cut - 13);
        }
        // A flipped bit fails the checksum of its record.
        let mut flipped = read.clone();
        flipped[9] ^= 1;
        assert_eq!(records(&flipped).0.len(), 0);

        assert_eq!(wal.rotate().unwrap(), 1);
        assert_eq!(segments(dir.path()).unwrap(), [1, 2]);
        wal.delete_through(1).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), [2]);
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        frame(&mut bytes, |out| out.extend_from_slice(payload));
        bytes
    }

    /// A failed append that wrote part of a record (a disk filling up) must
    /// not hide the records acknowledged after it.
    #[test]
    fn a_record_torn_by_a_failed_append_is_cut_off_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 0).unwrap();
        wal.append_durably(&record(b"first")).unwrap();
        // What a write cut short by the disk leaves, then the cleanup after it.
        let second = record(b"second, never acknowledged");
        wal.file.write_all(&second[..second.len() / 2]).unwrap();
        wal.cut_back();
        assert!(!wal.torn);
        wal.append_durably(&record(b"third")).unwrap();
        let read = read_segment(dir.path(), 1).unwrap();
        assert_eq!(records(&read), (vec![&b"first"[..], b"third"], 0));
    }

    /// Where the segment cannot even be cut back (here a device that takes no
    /// bytes and no truncation), the next append starts a new segment.
    #[cfg(unix)]
    #[test]
    fn an_append_after_a_failure_that_cannot_be_cut_back_goes_to_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", segment_path(dir.path(), 1)).unwrap();
        let mut wal = Wal::create(dir.path(), 0).unwrap();
        let failed = wal.append_durably(&record(b"lost")).unwrap_err();
        assert_eq!(failed.path, segment_path(dir.path(), 1));
        assert!(wal.torn);
        wal.append_durably(&record(b"kept")).unwrap();
        assert_eq!(wal.segment(), 2);
        fs::remove_file(segment_path(dir.path(), 1)).unwrap();
        let read = read_segment(dir.path(), 2).unwrap();
        assert_eq!(records(&read), (vec![&b"kept"[..]], 0));
    }
}
