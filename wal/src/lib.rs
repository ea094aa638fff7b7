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
//! record only after [`Wal::append_durably`] returns.

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
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            segment,
            file,
        })
    }

    /// The segment being written.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends framed records and makes them durable.
    pub fn append_durably(&mut self, records: &[u8]) -> Result<()> {
        self.file
            .write_all(records)
            .and_then(|()| self.file.sync_data())
            .map_err(Error::at(&segment_path(&self.dir, self.segment)))
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
}
