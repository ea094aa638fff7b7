//! The store's records in the write-ahead log ([`headroom_wal`]): each a batch
//! of accepted readings or of rejected rows.

use headroom_readings::Interner;
use headroom_wal::codec::{Reader, put_reading};

use super::record::{RejectReason, Rejected};
pub use headroom_wal::{Wal, read_segment, segments};

const KIND_READINGS: u8 = 1;
const KIND_REJECTED: u8 = 2;

/// One logged batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// Accepted readings, in arrival order.
    Readings(Vec<headroom_readings::Reading>),
    /// Refused rows.
    Rejected(Vec<Rejected>),
}

/// Appends one record holding `entry` to `out`.
pub fn encode(entry: &Entry, out: &mut Vec<u8>) {
    headroom_wal::frame(out, |out| match entry {
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
    });
}

fn decode_payload(payload: &[u8], interned: &mut Interner) -> Option<Entry> {
    let mut c = Reader::new(payload);
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
    c.at_end().then_some(entry)
}

/// The entries of one segment's bytes, and how many bytes at its end were torn
/// (a whole record that does not decode counts as torn, with all after it).
pub fn decode(bytes: &[u8], interned: &mut Interner) -> (Vec<Entry>, usize) {
    let (payloads, mut torn) = headroom_wal::records(bytes);
    let mut entries = Vec::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        match decode_payload(payload, interned) {
            Some(entry) => entries.push(entry),
            None => {
                torn += payloads[i..].iter().map(|p| p.len() + 8).sum::<usize>();
                break;
            }
        }
    }
    (entries, torn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_geodata::{Quality, Quantity};
    use headroom_readings::Reading;

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
