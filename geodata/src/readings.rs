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

/// The header of readings delivered with their source's quality.
pub const READINGS_HEADER_WITH_QUALITY: &str = "ts,asset,quantity,value,quality";

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

/// How far a reading can be trusted, as its source reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quality {
    /// Measured and valid.
    Good,
    /// Measured, but the source doubts it (a range warning, a substituted value).
    Uncertain,
    /// The source says it is wrong (a disconnected sensor, a failed device); kept,
    /// never used as load.
    Bad,
}

impl Quality {
    /// Every quality.
    pub const ALL: [Quality; 3] = [Quality::Good, Quality::Uncertain, Quality::Bad];

    /// The name used in files and APIs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Uncertain => "uncertain",
            Quality::Bad => "bad",
        }
    }

    /// The quality with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == name)
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
    /// A first line that is not the header.
    BadHeader,
    /// A quality that is not good, uncertain or bad.
    BadQuality,
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
            RejectReason::BadHeader => "bad_header",
            RejectReason::BadQuality => "bad_quality",
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

/// Formats UTC milliseconds as RFC 3339 (`2026-07-06T00:15:00Z`, with `.mmm`
/// only where the milliseconds are not zero): the one form of every timestamp
/// Headroom prints.
pub fn rfc3339(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms).map_or_else(
        || format!("{ts_ms} ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

/// The names of `quantities`, for messages that list what is allowed.
fn names(quantities: &[Quantity]) -> String {
    quantities
        .iter()
        .map(|q| q.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a readings line may carry where it is read: one parser, rules per
/// route, so that a gridpack, a metering file, `POST /v1/readings` and
/// `headroom ingest` agree on everything they share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRules {
    /// The quantities a line may name.
    pub quantities: &'static [Quantity],
    /// Whether `ts` may also be milliseconds since the epoch.
    pub epoch_ms: bool,
    /// Whether a `quality` column may follow the value.
    pub quality_column: bool,
    /// Whether a NaN or infinite value breaks the line; where it does not, the
    /// store keeps it in its `rejected` table with the reason.
    pub finite_only: bool,
}

impl LineRules {
    /// A gridpack's `readings.csv` (and a metering file in that form): RFC 3339
    /// times, the five gridpack quantities, four columns, finite values.
    pub const GRIDPACK: LineRules = LineRules {
        quantities: &Quantity::ALL,
        epoch_ms: false,
        quality_column: false,
        finite_only: true,
    };

    /// Readings delivered to the store (`POST /v1/readings`, `headroom ingest`):
    /// times also in epoch milliseconds, meter energy too, an optional quality.
    pub const INGEST: LineRules = LineRules {
        quantities: &Quantity::STORED,
        epoch_ms: true,
        quality_column: true,
        finite_only: false,
    };

    /// The header the first line must be; whether the lines carry a quality.
    pub fn header(&self, line: &str) -> Result<bool, FieldError> {
        let header = line.trim().trim_start_matches('\u{feff}');
        if header == READINGS_HEADER {
            return Ok(false);
        }
        if self.quality_column && header == READINGS_HEADER_WITH_QUALITY {
            return Ok(true);
        }
        let expected = if self.quality_column {
            format!("`{READINGS_HEADER}` or `{READINGS_HEADER_WITH_QUALITY}`")
        } else {
            format!("`{READINGS_HEADER}`")
        };
        Err(FieldError {
            column: None,
            reason: RejectReason::BadHeader,
            message: format!("the header must be {expected}, found `{header}`"),
        })
    }

    /// The fields of one line (not the header) split at commas.
    pub fn line<'a>(
        &self,
        line: &'a str,
        with_quality: bool,
    ) -> Result<LineFields<'a>, FieldError> {
        let fields: Vec<&str> = line.split(',').collect();
        let expected = if with_quality { 5 } else { 4 };
        if fields.len() != expected {
            let header = if with_quality {
                READINGS_HEADER_WITH_QUALITY
            } else {
                READINGS_HEADER
            };
            return Err(FieldError {
                column: None,
                reason: RejectReason::WrongColumnCount,
                message: format!("{} columns, expected {expected} ({header})", fields.len()),
            });
        }
        Ok(LineFields {
            ts_ms: self.ts(fields[0])?,
            asset: fields[1].trim(),
            quantity: self.quantity(fields[2])?,
            value: self.value(fields[3])?,
            quality: if with_quality {
                Self::quality(fields[4])?
            } else {
                Quality::Good
            },
        })
    }

    /// A `ts` field: RFC 3339 with an offset, or where allowed epoch milliseconds.
    #[inline]
    pub fn ts(&self, text: &str) -> Result<i64, FieldError> {
        let text = text.trim();
        if self.epoch_ms
            && let Ok(ms) = text.parse::<i64>()
        {
            return Ok(ms);
        }
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                let form = if self.epoch_ms {
                    "an RFC 3339 timestamp with offset or milliseconds since the epoch"
                } else {
                    "an RFC 3339 timestamp with offset"
                };
                FieldError {
                    column: Some("ts"),
                    reason: RejectReason::BadTimestamp,
                    message: format!("`ts` \"{text}\" is not {form} ({e})"),
                }
            })
    }

    /// A `quantity` field, one of the rules' quantities.
    #[inline]
    pub fn quantity(&self, text: &str) -> Result<Quantity, FieldError> {
        let text = text.trim();
        // Matched against the whole constant list (its comparisons unrolled),
        // then the rules' own: this runs once per row of a readings file.
        Quantity::parse_stored(text)
            .filter(|q| self.quantities.contains(q))
            .ok_or_else(|| FieldError {
                column: Some("quantity"),
                reason: RejectReason::UnknownQuantity,
                message: format!(
                    "`quantity` \"{text}\" is none of {}",
                    names(self.quantities)
                ),
            })
    }

    /// A `value` field: a number, finite where the rules say so.
    #[inline]
    pub fn value(&self, text: &str) -> Result<f64, FieldError> {
        let text = text.trim();
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() || !self.finite_only => Ok(v),
            Ok(_) => Err(FieldError {
                column: Some("value"),
                reason: RejectReason::NonFinite,
                message: format!("`value` {text} is not a finite number"),
            }),
            Err(_) => Err(FieldError {
                column: Some("value"),
                reason: RejectReason::BadValue,
                message: format!("`value` \"{text}\" is not a number"),
            }),
        }
    }

    /// A `quality` field.
    pub fn quality(text: &str) -> Result<Quality, FieldError> {
        let text = text.trim();
        Quality::parse(text).ok_or_else(|| FieldError {
            column: Some("quality"),
            reason: RejectReason::BadQuality,
            message: format!(
                "`quality` \"{text}\" is none of {}",
                Quality::ALL.map(Quality::as_str).join(", ")
            ),
        })
    }
}

/// Delivered readings read a line at a time, the header first: the one reader
/// of `POST /v1/readings` and `headroom ingest`.
#[derive(Clone, Debug)]
pub struct ReadingLines {
    rules: LineRules,
    /// Whether the lines carry a quality; `None` until the header is read.
    with_quality: Option<bool>,
}

impl ReadingLines {
    /// A reader expecting the header under `rules`.
    pub fn new(rules: LineRules) -> Self {
        Self {
            rules,
            with_quality: None,
        }
    }

    /// The next line's fields; `None` for the header and for blank lines (which
    /// the caller may give a meaning, as `headroom ingest` ends a batch there).
    pub fn feed<'a>(&mut self, line: &'a str) -> Result<Option<LineFields<'a>>, FieldError> {
        match self.with_quality {
            None => {
                self.with_quality = Some(self.rules.header(line)?);
                Ok(None)
            }
            Some(_) if line.trim().is_empty() => Ok(None),
            Some(with_quality) => self.rules.line(line, with_quality).map(Some),
        }
    }

    /// At the end of the lines: an error where not even the header came (an
    /// empty body or input), as the header's own error on line 1.
    pub fn finish(&self) -> Result<(), FieldError> {
        match self.with_quality {
            Some(_) => Ok(()),
            None => self.rules.header("").map(|_| ()),
        }
    }
}

/// One line's fields, parsed by [`LineRules::line`]; the asset is looked up by
/// the caller (a gridpack against its network, the store against its index).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineFields<'a> {
    /// Timestamp, milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// The asset id as written, trimmed.
    pub asset: &'a str,
    /// What was measured.
    pub quantity: Quantity,
    /// The value in the quantity's unit.
    pub value: f64,
    /// The quality column's, or good where there is none.
    pub quality: Quality,
}

/// A line, or one field of it, that breaks a rule of [`LineRules`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The column at fault, or `None` for the line as a whole.
    pub column: Option<&'static str>,
    /// The rule broken.
    pub reason: RejectReason,
    /// In words, naming the column and quoting the field.
    pub message: String,
}

impl FieldError {
    /// Where the error is, for a reply that names the field: `line 3.quantity`,
    /// or `line 3` for the line as a whole.
    pub fn at_line(&self, line: u64) -> String {
        match self.column {
            Some(column) => format!("line {line}.{column}"),
            None => format!("line {line}"),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
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

    const RULES: LineRules = LineRules::GRIDPACK;
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
            match RULES.ts(ts) {
                Ok(ts_ms) => {
                    last_ts = (ts.as_bytes().to_vec(), ts_ms);
                    ts_ms
                }
                Err(e) => {
                    report.reject(line, e.reason, e.message);
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
        let quantity = match RULES.quantity(quantity) {
            Ok(quantity) => quantity,
            Err(e) => {
                report.reject(line, e.reason, e.message);
                continue;
            }
        };
        let value = match RULES.value(value) {
            Ok(value) => value,
            Err(e) => {
                report.reject(line, e.reason, e.message);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gridpack_and_ingest_rules_differ_only_where_they_say() {
        let (gridpack, ingest) = (LineRules::GRIDPACK, LineRules::INGEST);
        // Meter energy and epoch milliseconds: delivered readings only.
        assert_eq!(
            ingest.quantity(" energy_kwh "),
            Ok(Quantity::EnergyKwh),
            "trimmed and taken"
        );
        let refused = gridpack.quantity("energy_kwh").unwrap_err();
        assert_eq!(refused.column, Some("quantity"));
        assert_eq!(refused.reason, RejectReason::UnknownQuantity);
        assert_eq!(
            refused.message,
            "`quantity` \"energy_kwh\" is none of p_kw, q_kvar, s_kva, i_a, u_kv"
        );
        assert_eq!(ingest.ts("1793577600000"), Ok(1_793_577_600_000));
        assert_eq!(gridpack.ts("1793577600000").unwrap_err().column, Some("ts"));
        assert_eq!(
            gridpack.ts("2026-11-02T08:00:00+08:00"),
            Ok(1_793_577_600_000)
        );
        // NaN breaks a gridpack line; delivered, the store keeps it apart.
        assert_eq!(
            gridpack.value("NaN").unwrap_err().reason,
            RejectReason::NonFinite
        );
        assert!(ingest.value("NaN").unwrap().is_nan());
        assert_eq!(
            ingest.value("lots").unwrap_err().message,
            "`value` \"lots\" is not a number"
        );
        // A quality column: delivered readings only.
        assert_eq!(
            ingest.header("\u{feff}ts,asset,quantity,value,quality"),
            Ok(true)
        );
        assert_eq!(ingest.header("ts,asset,quantity,value"), Ok(false));
        let header = gridpack
            .header("ts,asset,quantity,value,quality")
            .unwrap_err();
        assert_eq!(
            (header.column, header.reason),
            (None, RejectReason::BadHeader)
        );
    }

    #[test]
    fn lines_are_read_header_first_and_refused_by_field() {
        let mut lines = ReadingLines::new(LineRules::INGEST);
        assert_eq!(lines.feed("ts,asset,quantity,value,quality"), Ok(None));
        assert_eq!(lines.feed("  "), Ok(None), "a blank line is no reading");
        let taken = lines
            .feed("2026-11-02T00:00:00Z, F_L0 ,q_kvar,40,uncertain")
            .unwrap()
            .unwrap();
        assert_eq!(
            (taken.asset, taken.quantity, taken.value, taken.quality),
            ("F_L0", Quantity::QKvar, 40.0, Quality::Uncertain)
        );
        let short = lines.feed("2026-11-02T00:00:00Z,F_L0,p_kw,1").unwrap_err();
        assert_eq!(short.reason, RejectReason::WrongColumnCount);
        assert_eq!(short.at_line(4), "line 4");
        let quality = lines
            .feed("2026-11-02T00:00:00Z,F_L0,p_kw,1,meh")
            .unwrap_err();
        assert_eq!(quality.at_line(5), "line 5.quality");
        assert_eq!(
            quality.message,
            "`quality` \"meh\" is none of good, uncertain, bad"
        );
        // Without a header, the first line is refused as one.
        let mut headless = ReadingLines::new(LineRules::INGEST);
        let refused = headless
            .feed("2026-11-02T00:00:00Z,F_L0,p_kw,1")
            .unwrap_err();
        assert_eq!(refused.reason, RejectReason::BadHeader);
        assert_eq!(refused.at_line(1), "line 1");
    }

    #[test]
    fn timestamps_print_in_one_form() {
        assert_eq!(rfc3339(1_793_577_600_000), "2026-11-02T00:00:00Z");
        assert_eq!(rfc3339(1_793_577_600_120), "2026-11-02T00:00:00.120Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
