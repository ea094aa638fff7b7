//! Readings inside a log payload: fixed-width numbers, then the asset id and
//! source name as length-prefixed UTF-8 (read back into shared copies).

use std::sync::Arc;

use headroom_readings::{Interner, Quality, Quantity, Reading};

/// Appends a reading.
pub fn put_reading(out: &mut Vec<u8>, r: &Reading) {
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

/// Appends a string of at most 65,535 bytes; ids and source names are short,
/// longer ones are cut at a character boundary.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Reads a payload front to back; every read is `None` past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the payload's start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Whether every byte has been read.
    pub fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// An `i64`.
    pub fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    /// An `f64`.
    pub fn f64(&mut self) -> Option<f64> {
        self.array().map(f64::from_le_bytes)
    }

    /// A string written by [`put_str`], as its shared copy.
    pub fn str(&mut self, interned: &mut Interner) -> Option<Arc<str>> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        Some(interned.get(std::str::from_utf8(bytes).ok()?))
    }

    /// A reading written by [`put_reading`].
    pub fn reading(&mut self, interned: &mut Interner) -> Option<Reading> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_round_trip_and_a_short_payload_reads_none() {
        let reading = Reading {
            ts_ms: -5,
            asset: "T_2".into(),
            quantity: Quantity::EnergyKwh,
            value: 0.1 + 0.2,
            quality: Quality::Uncertain,
            source: "gateway-é".into(),
        };
        let mut out = Vec::new();
        put_reading(&mut out, &reading);
        let mut interned = Interner::default();
        let mut reader = Reader::new(&out);
        assert_eq!(reader.reading(&mut interned), Some(reading));
        assert!(reader.at_end());
        let mut short = Reader::new(&out[..out.len() - 1]);
        assert_eq!(short.reading(&mut interned), None);
    }
}
