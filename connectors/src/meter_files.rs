//! Interval files from the metering system, dropped in a folder.
//!
//! Two forms are taken: the gridpack's `readings.csv` (`ts,asset,quantity,value`)
//! and the wide form metering systems export: `meter_id,date,` then 96
//! quarter-hour columns of energy in kWh, each becoming an `energy_kwh` reading
//! and an average `p_kw` (four times the energy) at the start of its interval.
//!
//! A file is taken whole or not at all: it is parsed, written, and once the
//! store has made it durable its content hash is logged and the file moves to
//! `done/`. A file with a bad line moves to `failed/` beside a `.reason` file
//! naming the line and the rule; nothing of it is written. The same content
//! dropped again (a re-delivery) is recognised by its hash and not written
//! twice. Files are taken once they have not changed for `settle_ms`, so a file
//! still being copied in is left alone.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::NaiveDate;
use headroom_geodata::readings::READINGS_HEADER;
use headroom_geodata::{FieldError, LineRules, Quantity};
use headroom_readings::{Quality, Reading};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::output::{MAX_WRITE, Output};
use crate::status::{LinkState, StatusHandle};

/// Quarter-hours of a day in the wide form.
pub const INTERVALS_PER_DAY: usize = 96;

/// Where the hashes of taken files are logged, in the drop folder.
pub const LEDGER_FILE: &str = ".headroom-taken";

/// A drop folder of metering files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterFilesConfig {
    /// Unique among the connectors; the `source` of its readings.
    pub name: String,
    /// The folder watched; `done/` and `failed/` are made inside it.
    pub folder: PathBuf,
    /// Meter id to asset id (a transformer, feeder or substation transformer),
    /// for the wide form.
    #[serde(default)]
    pub meters: BTreeMap<String, String>,
    /// How often the folder is looked at, ms.
    #[serde(default = "default_scan_interval_ms")]
    pub scan_interval_ms: u64,
    /// A file is taken once unchanged for this long, ms.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// The wide form's dates are local days at this offset from UTC, minutes
    /// (480 for China Standard Time).
    #[serde(default)]
    pub utc_offset_min: i32,
}

const fn default_scan_interval_ms() -> u64 {
    2_000
}
const fn default_settle_ms() -> u64 {
    1_000
}

impl MeterFilesConfig {
    /// Checks the configuration; `field` is its path, `known_asset` tells whether
    /// the network has an asset id.
    pub fn validate(&self, field: &str, known_asset: &dyn Fn(&str) -> bool) -> Result<()> {
        if self.folder.as_os_str().is_empty() {
            return Err(Error::config(format!("{field}.folder"), "is empty"));
        }
        if self.scan_interval_ms == 0 {
            return Err(Error::config(
                format!("{field}.scan_interval_ms"),
                "must be above 0",
            ));
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_min) {
            return Err(Error::config(
                format!("{field}.utc_offset_min"),
                "must be within -840..=840",
            ));
        }
        for (meter, asset) in &self.meters {
            if !known_asset(asset) {
                return Err(Error::config(
                    format!("{field}.meters.{meter}"),
                    format!("`{asset}` is not a measurable asset of the network"),
                ));
            }
        }
        Ok(())
    }
}

/// Why a file was refused: the line (1-based, the header is 1) and the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFault {
    /// Line of the file.
    pub line: u64,
    /// The rule broken.
    pub rule: String,
}

impl std::fmt::Display for FileFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.rule)
    }
}

/// Parses a metering file of either form into readings, in parts of at most
/// [`MAX_WRITE`].
pub fn parse_file(
    bytes: &[u8],
    config: &MeterFilesConfig,
    known_asset: &(dyn Fn(&str) -> bool + Sync),
    source: &Arc<str>,
) -> std::result::Result<Vec<Vec<Reading>>, FileFault> {
    let mut reader = csv_reader(bytes);
    let mut record = csv::StringRecord::new();
    let fault = |line: u64, rule: String| FileFault { line, rule };
    match reader.read_record(&mut record) {
        Ok(true) => {}
        Ok(false) => return Err(fault(1, "the file is empty".into())),
        Err(e) => return Err(fault(1, format!("unreadable: {e}"))),
    }
    let first = record.get(0).unwrap_or("").trim_start_matches('\u{feff}');
    let header: Vec<&str> = std::iter::once(first)
        .chain(record.iter().skip(1))
        .collect();
    let wide =
        header.len() == 2 + INTERVALS_PER_DAY && header[0] == "meter_id" && header[1] == "date";
    if !wide && header != ["ts", "asset", "quantity", "value"] {
        return Err(fault(
            1,
            format!(
                "the header is neither `ts,asset,quantity,value` nor `meter_id,date,` and {INTERVALS_PER_DAY} interval columns"
            ),
        ));
    }
    let body_start = (reader.position().byte() as usize).min(bytes.len());
    let body_line = reader.position().line();
    let body = &bytes[body_start..];
    // A large file is parsed in two halves on two threads, split at a line's
    // end; not when a quote could hold a line break.
    let halves: Vec<(&[u8], u64)> = match body
        .iter()
        .skip(body.len() / 2)
        .position(|b| *b == b'\n')
        .map(|at| body.len() / 2 + at + 1)
    {
        Some(split) if body.len() > PARALLEL_BYTES && !body.contains(&b'"') => {
            let (first, second) = body.split_at(split);
            let second_line = body_line + first.iter().filter(|b| **b == b'\n').count() as u64;
            vec![(first, body_line), (second, second_line)]
        }
        _ => vec![(body, body_line)],
    };
    let parsed: Vec<std::result::Result<Vec<Vec<Reading>>, FileFault>> =
        std::thread::scope(|scope| {
            let workers: Vec<_> = halves
                .iter()
                .map(|(part, first_line)| {
                    scope.spawn(move || {
                        parse_body(part, *first_line, wide, config, known_asset, source)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(fault(body_line, "the parser failed".into())))
                })
                .collect()
        });
    let mut parts = Vec::new();
    // The first half's fault comes first: it names the earlier line.
    for half in parsed {
        parts.extend(half?);
    }
    Ok(parts)
}

/// A reader of a file's (or a half's) records, the header read as one.
fn csv_reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes)
}

/// Files larger than this are parsed on two threads.
const PARALLEL_BYTES: usize = 1 << 20;

/// Parses the lines after the header; `first_line` is the number of the first.
fn parse_body(
    bytes: &[u8],
    first_line: u64,
    wide: bool,
    config: &MeterFilesConfig,
    known_asset: &(dyn Fn(&str) -> bool + Sync),
    source: &Arc<str>,
) -> std::result::Result<Vec<Vec<Reading>>, FileFault> {
    let mut reader = csv_reader(bytes);
    let mut record = csv::StringRecord::new();
    let fault = |line: u64, rule: String| FileFault { line, rule };
    // In the parts the output writes: a large file's readings run to a
    // gigabyte, which one growing vector would copy (and the kernel zero) again.
    let mut out = Parts::default();
    let mut assets: BTreeMap<String, Arc<str>> = BTreeMap::new();
    let mut asset_of = |id: &str| -> Arc<str> {
        assets
            .entry(id.to_owned())
            .or_insert_with(|| Arc::from(id))
            .clone()
    };
    let mut line = first_line - 1;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(fault(line + 1, format!("unreadable: {e}"))),
        }
        line = record
            .position()
            .map_or(line + 1, |p| first_line - 1 + p.line());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if wide {
            if record.len() != 2 + INTERVALS_PER_DAY {
                return Err(fault(
                    line,
                    format!(
                        "{} columns, the header has {}",
                        record.len(),
                        2 + INTERVALS_PER_DAY
                    ),
                ));
            }
            let meter = record[0].trim();
            let Some(asset) = config.meters.get(meter) else {
                return Err(fault(
                    line,
                    format!("meter `{meter}` is not in the meter map"),
                ));
            };
            let asset = asset_of(asset);
            let date = NaiveDate::parse_from_str(record[1].trim(), "%Y-%m-%d")
                .map_err(|_| fault(line, format!("date `{}` is not YYYY-MM-DD", &record[1])))?;
            let midnight_ms = date
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis())
                .unwrap_or(0)
                - i64::from(config.utc_offset_min) * 60_000;
            for i in 0..INTERVALS_PER_DAY {
                let cell = record[2 + i].trim();
                // An empty cell is an interval the meter did not deliver.
                if cell.is_empty() {
                    continue;
                }
                let kwh: f64 = cell.parse().map_err(|_| {
                    fault(
                        line,
                        format!("interval {} value `{cell}` is not a number", i + 1),
                    )
                })?;
                if !kwh.is_finite() {
                    return Err(fault(
                        line,
                        format!("interval {} value is not finite", i + 1),
                    ));
                }
                let ts_ms = midnight_ms + i as i64 * 15 * 60_000;
                for (quantity, value) in [(Quantity::EnergyKwh, kwh), (Quantity::PKw, kwh * 4.0)] {
                    out.push(Reading {
                        ts_ms,
                        asset: asset.clone(),
                        quantity,
                        value,
                        quality: Quality::Good,
                        source: source.clone(),
                    });
                }
            }
        } else {
            // The gridpack's form, under the gridpack's rules.
            const RULES: LineRules = LineRules::GRIDPACK;
            let refused = |e: FieldError| fault(line, e.message);
            if record.len() != 4 {
                return Err(fault(
                    line,
                    format!("{} columns, expected 4 ({READINGS_HEADER})", record.len()),
                ));
            }
            let ts_ms = RULES.ts(&record[0]).map_err(refused)?;
            let asset = record[1].trim();
            if !known_asset(asset) {
                return Err(fault(
                    line,
                    format!("`asset` {asset} is not in the network"),
                ));
            }
            let quantity = RULES.quantity(&record[2]).map_err(refused)?;
            let value = RULES.value(&record[3]).map_err(refused)?;
            out.push(Reading {
                ts_ms,
                asset: asset_of(asset),
                quantity,
                value,
                quality: Quality::Good,
                source: source.clone(),
            });
        }
    }
    Ok(out.parts)
}

/// Readings in parts of at most [`MAX_WRITE`].
#[derive(Default)]
struct Parts {
    parts: Vec<Vec<Reading>>,
}

impl Parts {
    fn push(&mut self, reading: Reading) {
        match self.parts.last_mut() {
            Some(part) if part.len() < MAX_WRITE => part.push(reading),
            _ => {
                let mut part = Vec::with_capacity(MAX_WRITE);
                part.push(reading);
                self.parts.push(part);
            }
        }
    }
}

/// The content hashes of files already taken.
fn read_ledger(folder: &Path) -> HashSet<String> {
    std::fs::read_to_string(folder.join(LEDGER_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn append_ledger(folder: &Path, hash: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(folder.join(LEDGER_FILE))?;
    writeln!(file, "{hash}")?;
    file.sync_data()
}

/// Moves `path` into `folder/sub/`, keeping its name unless taken.
fn move_into(path: &Path, folder: &Path, sub: &str, hash: &str) -> std::io::Result<PathBuf> {
    let dir = folder.join(sub);
    std::fs::create_dir_all(&dir)?;
    let name = path.file_name().map(PathBuf::from).unwrap_or_default();
    let mut target = dir.join(&name);
    if target.exists() {
        target = dir.join(format!("{}.{}", name.display(), &hash[..12]));
    }
    std::fs::rename(path, &target)?;
    Ok(target)
}

/// Files in the folder ready to take: `.csv`, not hidden, unchanged for `settle`.
fn ready_files(folder: &Path, settle: Duration) -> std::io::Result<Vec<PathBuf>> {
    let now = SystemTime::now();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".csv") {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        if age >= settle {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// What became of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Written and moved to `done/`, with this many readings.
    Done(usize),
    /// Its content was taken before: moved to `done/` without writing.
    Duplicate,
    /// Refused: moved to `failed/` with a `.reason`.
    Failed(FileFault),
}

/// Takes one file: parse, write and wait for durability, log the hash, move.
pub async fn take_file(
    path: &Path,
    config: &MeterFilesConfig,
    known_asset: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    output: &Output,
    source: &Arc<str>,
    ledger: &mut HashSet<String>,
) -> Result<Taken> {
    let io = |e: std::io::Error| Error::Io {
        path: path.to_owned(),
        source: e,
    };
    let bytes = tokio::fs::read(path).await.map_err(io)?;
    let hash = format!("{:x}", Sha256::digest(&bytes));
    let folder = &config.folder;
    if ledger.contains(&hash) {
        move_into(path, folder, "done", &hash).map_err(io)?;
        return Ok(Taken::Duplicate);
    }
    let parse_config = config.clone();
    let parse_source = source.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        parse_file(&bytes, &parse_config, &*known_asset, &parse_source)
    })
    .await
    .map_err(|e| io(std::io::Error::other(e)))?;
    match parsed {
        Ok(parts) => {
            let count = parts.iter().map(Vec::len).sum();
            // The file stays where it is until its readings are durable: a crash
            // before then takes it again.
            if !output.send_durable_parts(parts).await {
                return Err(io(std::io::Error::other(
                    "shut down before the file was durable",
                )));
            }
            append_ledger(folder, &hash).map_err(io)?;
            ledger.insert(hash.clone());
            move_into(path, folder, "done", &hash).map_err(io)?;
            Ok(Taken::Done(count))
        }
        Err(fault) => {
            let target = move_into(path, folder, "failed", &hash).map_err(io)?;
            let mut reason = target.clone().into_os_string();
            reason.push(".reason");
            std::fs::write(&reason, format!("{fault}\n")).map_err(io)?;
            Ok(Taken::Failed(fault))
        }
    }
}

/// Runs the connector until `shutdown`.
pub async fn run(
    name: String,
    config: MeterFilesConfig,
    known_asset: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    output: Output,
    status: StatusHandle,
    shutdown: CancellationToken,
) {
    let source: Arc<str> = Arc::from(name.as_str());
    let mut ledger = read_ledger(&config.folder);
    let settle = Duration::from_millis(config.settle_ms);
    let mut ticker = tokio::time::interval(Duration::from_millis(config.scan_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let files = match ready_files(&config.folder, settle) {
            Ok(files) => {
                status.update(|s| {
                    if !matches!(s.link, LinkState::Connected) {
                        s.link = LinkState::Connected;
                    }
                });
                files
            }
            Err(e) => {
                status.error("folder");
                let now = chrono::Utc::now().timestamp_millis();
                status.update(|s| {
                    s.link = LinkState::Disconnected {
                        since_ms: s.last_success_ms.unwrap_or(now),
                        retry_at_ms: now + config.scan_interval_ms as i64,
                        reason: format!("{}: {e}", config.folder.display()),
                    }
                });
                continue;
            }
        };
        for path in files {
            if shutdown.is_cancelled() {
                break;
            }
            let taken = take_file(
                &path,
                &config,
                known_asset.clone(),
                &output,
                &source,
                &mut ledger,
            )
            .await;
            let now = chrono::Utc::now().timestamp_millis();
            match taken {
                Ok(Taken::Done(_)) => status.update(|s| s.last_success_ms = Some(now)),
                Ok(Taken::Duplicate) => status.error("duplicate_file"),
                Ok(Taken::Failed(fault)) => {
                    tracing::warn!("{}: {fault}", path.display());
                    status.error("failed_file");
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    status.error("io");
                }
            }
        }
    }
    status.update(|s| s.link = LinkState::Stopped);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(meters: usize) -> MeterFilesConfig {
        MeterFilesConfig {
            name: "ami".into(),
            folder: PathBuf::from("/unused"),
            meters: (0..meters)
                .map(|m| (format!("M{m}"), "T_2".to_owned()))
                .collect(),
            scan_interval_ms: 1_000,
            settle_ms: 0,
            utc_offset_min: 0,
        }
    }

    /// A wide-form file of `meters` lines; `bad` spoils one line's first interval.
    fn wide_file(meters: usize, bad: Option<usize>) -> Vec<u8> {
        let mut text = String::from("meter_id,date");
        for i in 1..=INTERVALS_PER_DAY {
            text.push_str(&format!(",i{i}"));
        }
        text.push('\n');
        for m in 0..meters {
            text.push_str(&format!("M{m},2026-11-01"));
            for i in 0..INTERVALS_PER_DAY {
                if bad == Some(m) && i == 0 {
                    text.push_str(",x");
                } else {
                    text.push_str(&format!(",{}.25", (m + i) % 9));
                }
            }
            text.push('\n');
        }
        text.into_bytes()
    }

    #[test]
    fn a_large_file_parsed_in_halves_keeps_every_reading_and_line_number() {
        let meters = 3_000; // about 1.6 MB: parsed on two threads
        let config = config(meters);
        let source: Arc<str> = Arc::from("ami");
        let bytes = wide_file(meters, None);
        assert!(bytes.len() > PARALLEL_BYTES);
        let parts = parse_file(&bytes, &config, &|_| true, &source).unwrap();
        assert!(parts.iter().all(|p| p.len() <= MAX_WRITE));
        let readings: Vec<&Reading> = parts.iter().flatten().collect();
        assert_eq!(readings.len(), meters * INTERVALS_PER_DAY * 2);
        let energy: f64 = readings
            .iter()
            .filter(|r| r.quantity == Quantity::EnergyKwh)
            .map(|r| r.value)
            .sum();
        let expected: f64 = (0..meters)
            .flat_map(|m| (0..INTERVALS_PER_DAY).map(move |i| ((m + i) % 9) as f64 + 0.25))
            .sum();
        assert!((energy - expected).abs() < 1e-6 * expected);

        // Line 1 is the header: meter m is on line m + 2, in either half.
        for bad in [10, 2_900] {
            let fault =
                parse_file(&wide_file(meters, Some(bad)), &config, &|_| true, &source).unwrap_err();
            assert_eq!(fault.line, bad as u64 + 2, "{fault}");
            assert!(fault.rule.contains("interval 1 value `x`"), "{fault}");
        }
    }
}
