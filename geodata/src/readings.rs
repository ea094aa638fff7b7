//! Reading a gridpack's `readings.csv` (or `readings.csv.gz`) into plain rows.
//!
//! A row that breaks a rule is rejected with its line number and reason while the rest
//! of the file loads; a wrong header or an unreadable file fails the whole file. The
//! reader streams: rows go to a callback, so a file larger than memory can be checked.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::{AssetKind, AssetRef, Network};

/// The exact header a readings file starts with.
pub const READINGS_HEADER: &str = "ts,asset,quantity,value";

/// How many rejected rows a report keeps in full.
pub const REJECTED_ROWS_KEPT: usize = 100;

/// A measured quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quantity {
    /// Active power, kW (positive: drawn from the grid).
    PKw,
    /// Reactive power, kvar.
    QKvar,
    /// Apparent power, kVA.
    SKva,
    /// Current, A.
    IA,
    /// Line-to-line voltage, kV.
    UKv,
    /// Energy over a meter's interval, kWh (meter files; not in gridpacks).
    EnergyKwh,
}

impl Quantity {
    /// Every quantity a gridpack may carry.
    pub const ALL: [Quantity; 5] = [
        Quantity::PKw,
        Quantity::QKvar,
        Quantity::SKva,
        Quantity::IA,
        Quantity::UKv,
    ];

    /// Every quantity the readings store keeps: a gridpack's and meter energy.
    pub const STORED: [Quantity; 6] = [
        Quantity::PKw,
        Quantity::QKvar,
        Quantity::SKva,
        Quantity::IA,
        Quantity::UKv,
        Quantity::EnergyKwh,
    ];

    /// The name used in files and APIs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Quantity::PKw => "p_kw",
            Quantity::QKvar => "q_kvar",
            Quantity::SKva => "s_kva",
            Quantity::IA => "i_a",
            Quantity::UKv => "u_kv",
            Quantity::EnergyKwh => "energy_kwh",
        }
    }

    /// The gridpack quantity with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == name)
    }

    /// Any stored quantity with this name, meter energy included.
    pub fn parse_stored(name: &str) -> Option<Self> {
        Self::STORED.into_iter().find(|q| q.as_str() == name)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One accepted reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadingRow {
    /// Timestamp, milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// The feeder, transformer or substation transformer measured.
    pub asset: AssetRef,
    /// What was measured.
    pub quantity: Quantity,
    /// The finite value, in the quantity's unit.
    pub value: f64,
}

/// Why a row was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not exactly four columns.
    WrongColumnCount,
    /// Not an RFC 3339 timestamp with offset.
    BadTimestamp,
    /// An asset id the network does not have.
    UnknownAsset,
    /// An asset that is not a feeder, transformer or substation transformer.
    NotMeasurable,
    /// A quantity the spec does not list.
    UnknownQuantity,
    /// A value that is not a number.
    BadValue,
    /// NaN or infinite.
    NonFinite,
    /// Bytes that are not UTF-8.
    NotUtf8,
}

impl RejectReason {
    /// A short, stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::WrongColumnCount => "wrong_column_count",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::UnknownAsset => "unknown_asset",
            RejectReason::NotMeasurable => "not_measurable",
            RejectReason::UnknownQuantity => "unknown_quantity",
            RejectReason::BadValue => "bad_value",
            RejectReason::NonFinite => "non_finite",
            RejectReason::NotUtf8 => "not_utf8",
        }
    }
}

/// A rejected row: where and why.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedRow {
    /// 1-based line number (the header is line 1).
    pub line: u64,
    /// The rule broken.
    pub reason: RejectReason,
    /// The reason in words, quoting the offending field.
    pub detail: String,
}

impl fmt::Display for RejectedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: [{}] {}",
            self.line,
            self.reason.as_str(),
            self.detail
        )
    }
}

/// What a readings file held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadingsReport {
    /// Rows accepted.
    pub taken: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// The first [`REJECTED_ROWS_KEPT`] rejected rows in full.
    pub first_rejected: Vec<RejectedRow>,
    /// Rejected rows counted by reason.
    pub rejected_by_reason: BTreeMap<RejectReason, u64>,
    /// Earliest accepted timestamp, ms.
    pub first_ts_ms: Option<i64>,
    /// Latest accepted timestamp, ms.
    pub last_ts_ms: Option<i64>,
}

impl ReadingsReport {
    fn reject(&mut self, line: u64, reason: RejectReason, detail: String) {
        self.rejected += 1;
        *self.rejected_by_reason.entry(reason).or_default() += 1;
        if self.first_rejected.len() < REJECTED_ROWS_KEPT {
            self.first_rejected.push(RejectedRow {
                line,
                reason,
                detail,
            });
        }
    }
}

/// Opens a readings file, decompressing `.gz`.
fn open(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|source| Error::reading(path, source))?;
    let buffered = BufReader::with_capacity(1 << 20, file);
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Streams the accepted rows of a readings file to `on_row`.
///
/// Fails (bad input, nothing should be kept) on a missing or wrong header or a file
/// that cannot be read to its end; rejects single rows otherwise.
pub fn read_readings(
    path: &Path,
    network: &Network,
    mut on_row: impl FnMut(ReadingRow),
) -> Result<ReadingsReport> {
    let unreadable = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(source) => Error::Unreadable {
            path: path.to_owned(),
            source,
        },
        other => Error::Unreadable {
            path: path.to_owned(),
            source: std::io::Error::other(format!("{other:?}")),
        },
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(open(path)?);
    let mut record = csv::ByteRecord::new();
    let header_ok = reader.read_byte_record(&mut record).map_err(unreadable)?;
    let header: Vec<&[u8]> = record.iter().collect();
    let header_text = String::from_utf8_lossy(&header.join(&b","[..])).into_owned();
    let header_text = header_text.trim_start_matches('\u{feff}');
    if !header_ok || header_text != READINGS_HEADER {
        return Err(Error::ReadingsHeader {
            path: path.to_owned(),
            found: header_text.to_owned(),
        });
    }

    let mut report = ReadingsReport::default();
    let mut last_ts: (Vec<u8>, i64) = (Vec::new(), 0);
    let mut last_asset: (Vec<u8>, Option<AssetRef>) = (Vec::new(), None);
    while reader.read_byte_record(&mut record).map_err(unreadable)? {
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != 4 {
            report.reject(
                line,
                RejectReason::WrongColumnCount,
                format!("{} columns, expected 4 ({READINGS_HEADER})", record.len()),
            );
            continue;
        }
        let fields = [&record[0], &record[1], &record[2], &record[3]];
        let Ok([ts, asset, quantity, value]) = fields.map(std::str::from_utf8).transpose_all()
        else {
            report.reject(line, RejectReason::NotUtf8, "the row is not UTF-8".into());
            continue;
        };
        let ts_ms = if last_ts.0 == ts.as_bytes() {
            last_ts.1
        } else {
            match chrono::DateTime::parse_from_rfc3339(ts.trim()) {
                Ok(t) => {
                    last_ts = (ts.as_bytes().to_vec(), t.timestamp_millis());
                    last_ts.1
                }
                Err(e) => {
                    report.reject(
                        line,
                        RejectReason::BadTimestamp,
                        format!("`ts` \"{ts}\" is not an RFC 3339 timestamp with offset ({e})"),
                    );
                    continue;
                }
            }
        };
        let found = if last_asset.0 == asset.as_bytes() && last_asset.1.is_some() {
            last_asset.1
        } else {
            let found = network.lookup(asset.trim());
            last_asset = (asset.as_bytes().to_vec(), found);
            found
        };
        let asset_ref = match found {
            Some(r)
                if matches!(
                    r.kind,
                    AssetKind::Feeder | AssetKind::Transformer | AssetKind::SubstationTransformer
                ) =>
            {
                r
            }
            Some(r) => {
                report.reject(
                    line,
                    RejectReason::NotMeasurable,
                    format!(
                        "`asset` {asset} is a {}; readings are for feeders, transformers and substation transformers",
                        r.kind
                    ),
                );
                continue;
            }
            None => {
                report.reject(
                    line,
                    RejectReason::UnknownAsset,
                    format!("`asset` {asset} is not in the network"),
                );
                continue;
            }
        };
        let Some(quantity) = Quantity::parse(quantity.trim()) else {
            report.reject(
                line,
                RejectReason::UnknownQuantity,
                format!("`quantity` \"{quantity}\" is none of p_kw, q_kvar, s_kva, i_a, u_kv"),
            );
            continue;
        };
        let value = match value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            Ok(_) => {
                report.reject(
                    line,
                    RejectReason::NonFinite,
                    format!("`value` {value} is not a finite number"),
                );
                continue;
            }
            Err(_) => {
                report.reject(
                    line,
                    RejectReason::BadValue,
                    format!("`value` \"{value}\" is not a number"),
                );
                continue;
            }
        };
        report.taken += 1;
        report.first_ts_ms = Some(report.first_ts_ms.map_or(ts_ms, |t| t.min(ts_ms)));
        report.last_ts_ms = Some(report.last_ts_ms.map_or(ts_ms, |t| t.max(ts_ms)));
        on_row(ReadingRow {
            ts_ms,
            asset: asset_ref,
            quantity,
            value,
        });
    }
    Ok(report)
}

/// Reads every accepted row of a readings file into memory.
pub fn load_readings(path: &Path, network: &Network) -> Result<(Vec<ReadingRow>, ReadingsReport)> {
    let mut rows = Vec::new();
    let report = read_readings(path, network, |row| rows.push(row))?;
    Ok((rows, report))
}

trait TransposeAll<T, E> {
    fn transpose_all(self) -> Result<[T; 4], E>;
}

impl<T, E> TransposeAll<T, E> for [Result<T, E>; 4] {
    fn transpose_all(self) -> Result<[T; 4], E> {
        let [a, b, c, d] = self;
        Ok([a?, b?, c?, d?])
    }
}
