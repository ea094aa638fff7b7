//! The write-ahead log: numbered segment files of length-prefixed, CRC-checked
//! records, each a batch of accepted readings or of rejected rows.
//!
//! Record: `u32` payload length, `u32` CRC-32 of the payload, the payload
//! (little-endian). A crash can leave the last record of the last segment torn;
//! replay stops at the first record whose length or checksum does not hold and
//! reports the bytes it dropped (none of them were acknowledged: a batch is
//! acknowledged only after the fsync that follows its record).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use headroom_geodata::{Quality, Quantity};
use headroom_readings::Reading;

use super::record::{Interner, RejectReason, Rejected};
use crate::error::{Error, Result};

const KIND_READINGS: u8 = 1;
const KIND_REJECTED: u8 = 2;

/// One logged batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// Accepted readings, in arrival order.
    Readings(Vec<Reading>),
    /// Refused rows.
    Rejected(Vec<Rejected>),
}

fn put_reading(out: &mut Vec<u8>, r: &Reading) {
    out.extend_from_slice(&r.ts_ms.to_le_bytes());
    out.extend_from_slice(&r.value.to_le_bytes());
    let quantity = Quantity::STORED
        .iter()
        .position(|q| *q == r.quantity)
        .unwrap_or(0) as u8;
    let quality = Quality::ALL
        .iter()
        .position(|q| *q == r.quality)
        .unwrap_or(0) as u8;
    out.push(quantity);
    out.push(quality);
    put_str(out, &r.asset);
    put_str(out, &r.source);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Ids and source names are short; longer ones are cut at a character boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Appends one record holding `entry` to `out`.
pub fn encode(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    match entry {
        Entry::Readings(rows) => {
            out.push(KIND_READINGS);
            out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
            for r in rows {
                put_reading(out, r);
            }
        }
        Entry::Rejected(rows) => {
            out.push(KIND_REJECTED);
            out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
            for r in rows {
                put_reading(out, &r.reading);
                out.push(
                    RejectReason::ALL
                        .iter()
                        .position(|x| *x == r.reason)
                        .unwrap_or(0) as u8,
                );
                out.extend_from_slice(&r.received_ms.to_le_bytes());
            }
        }
    }
    let payload_len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn f64(&mut self) -> Option<f64> {
        self.take(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn str(&mut self, interned: &mut Interner) -> Option<Arc<str>> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        Some(interned.get(std::str::from_utf8(bytes).ok()?))
    }
    fn reading(&mut self, interned: &mut Interner) -> Option<Reading> {
        let ts_ms = self.i64()?;
        let value = self.f64()?;
        let quantity = *Quantity::STORED.get(self.u8()? as usize)?;
        let quality = *Quality::ALL.get(self.u8()? as usize)?;
        let asset = self.str(interned)?;
        let source = self.str(interned)?;
        Some(Reading {
            ts_ms,
            asset,
            quantity,
            value,
            quality,
            source,
        })
    }
}

fn decode_payload(payload: &[u8], interned: &mut Interner) -> Option<Entry> {
    let mut c = Cursor {
        bytes: payload,
        at: 0,
    };
    let kind = c.u8()?;
    let count = c.u32()? as usize;
    let entry = match kind {
        KIND_READINGS => Entry::Readings(
            (0..count)
                .map(|_| c.reading(interned))
                .collect::<Option<_>>()?,
        ),
        KIND_REJECTED => Entry::Rejected(
            (0..count)
                .map(|_| {
                    let reading = c.reading(interned)?;
                    let reason = *RejectReason::ALL.get(c.u8()? as usize)?;
                    let received_ms = c.i64()?;
                    Some(Rejected {
                        reading,
                        reason,
                        received_ms,
                    })
                })
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    };
    (c.at == payload.len()).then_some(entry)
}

/// The entries of one segment's bytes, and how many bytes at its end were torn.
pub fn decode(bytes: &[u8], interned: &mut Interner) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(entry) = decode_payload(payload, interned) else {
            break;
        };
        entries.push(entry);
        at += 8 + len;
    }
    (entries, bytes.len() - at)
}

/// The log's folder and the segment being written.
pub struct Wal {
    dir: PathBuf,
    segment: u64,
    file: File,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.wal"))
}

/// Segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut found = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for item in listing {
        let item = item.map_err(|e| Error::io(dir, e))?;
        let name = item.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".wal")
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
        .map_err(|e| Error::io(&path, e))?;
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

impl Wal {
    /// Starts a new segment after `last` in `dir` (earlier segments are left for
    /// replay and deletion).
    pub fn create(dir: &Path, last: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let segment = last + 1;
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
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

    /// Appends encoded records and makes them durable.
    pub fn append_durably(&mut self, records: &[u8]) -> Result<()> {
        let path = segment_path(&self.dir, self.segment);
        self.file
            .write_all(records)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&path, e))
    }

    /// Closes the segment being written and starts the next; returns the closed one.
    pub fn rotate(&mut self) -> Result<u64> {
        let closed = self.segment;
        *self = Wal::create(&self.dir, closed)?;
        Ok(closed)
    }

    /// Deletes the segments up to and including `n`, whose data is in Parquet.
    pub fn delete_through(&self, n: u64) -> Result<()> {
        for s in segments(&self.dir)?.into_iter().filter(|s| *s <= n) {
            let path = segment_path(&self.dir, s);
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ts: i64, value: f64) -> Reading {
        Reading {
            ts_ms: ts,
            asset: "T1".into(),
            quantity: Quantity::PKw,
            value,
            quality: Quality::Uncertain,
            source: "test".into(),
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let entries = vec![
            Entry::Readings(vec![reading(1, 2.5), reading(2, -1.0)]),
            Entry::Rejected(vec![Rejected {
                reading: reading(3, f64::NAN),
                reason: RejectReason::NonFinite,
                received_ms: 9,
            }]),
        ];
        let mut bytes = Vec::new();
        for e in &entries {
            encode(e, &mut bytes);
        }
        let whole = bytes.len();
        let mut interned = Interner::default();
        let (decoded, torn) = decode(&bytes, &mut interned);
        assert_eq!(torn, 0);
        assert_eq!(decoded[0], entries[0]);
        let Entry::Rejected(r) = &decoded[1] else {
            panic!("second record is the rejected one")
        };
        assert!(r[0].reading.value.is_nan() && r[0].reason == RejectReason::NonFinite);
        // Cut inside the second record: the first survives, the rest is torn.
        for cut in [whole - 1, whole - 10] {
            let (decoded, torn) = decode(&bytes[..cut], &mut interned);
            assert_eq!(decoded.len(), 1);
            assert!(torn > 0);
        }
        // A flipped bit fails the checksum.
        bytes[12] ^= 1;
        assert_eq!(decode(&bytes, &mut interned).0.len(), 0);
    }
}
