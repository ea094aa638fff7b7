//! A metering system's export: wide-form interval files (`meter_id,date,` then
//! 96 quarter-hour columns of kWh) dropped into a folder the way a head-end
//! system delivers them: written under a hidden name, then renamed, so a
//! reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

/// Quarter-hours of a day.
pub const INTERVALS: usize = 96;

/// One meter's day.
#[derive(Clone, Debug, PartialEq)]
pub struct MeterDay {
    /// Meter id.
    pub meter: String,
    /// The local day.
    pub date: NaiveDate,
    /// Energy per quarter-hour, kWh; `None` where the meter delivered nothing.
    pub kwh: [Option<f64>; INTERVALS],
}

/// The header of the wide form.
pub fn header() -> String {
    let mut h = String::from("meter_id,date");
    for i in 1..=INTERVALS {
        h.push_str(&format!(",q{i}"));
    }
    h
}

/// Writes `days` as `folder/name` atomically (hidden temporary name, then
/// rename) and returns the path.
pub fn drop_file(folder: &Path, name: &str, days: &[MeterDay]) -> std::io::Result<PathBuf> {
    let hidden = folder.join(format!(".{name}.part"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&hidden)?);
    writeln!(out, "{}", header())?;
    for day in days {
        write!(out, "{},{}", day.meter, day.date.format("%Y-%m-%d"))?;
        for value in &day.kwh {
            match value {
                Some(v) => write!(out, ",{v}")?,
                None => write!(out, ",")?,
            }
        }
        writeln!(out)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let target = folder.join(name);
    std::fs::rename(&hidden, &target)?;
    Ok(target)
}

/// A day of a meter with a smooth daily shape around `mean_kwh` per interval.
pub fn shaped_day(meter: &str, date: NaiveDate, mean_kwh: f64) -> MeterDay {
    let mut kwh = [None; INTERVALS];
    for (i, slot) in kwh.iter_mut().enumerate() {
        let hour = i as f64 / 4.0;
        let shape = 1.0 + 0.4 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos();
        *slot = Some((mean_kwh * shape * 1000.0).round() / 1000.0);
    }
    MeterDay {
        meter: meter.to_owned(),
        date,
        kwh,
    }
}

/// Each day of a gridpack's transformer `p_kw` readings as the meters would
/// have exported it (a meter `M-<transformer id>` per transformer, energy =
/// average power x 0.25 h), dates local at `utc_offset_min`.
pub fn days_from_gridpack(
    network: &headroom_geodata::Network,
    readings: &[headroom_geodata::ReadingRow],
    utc_offset_min: i32,
) -> Vec<(NaiveDate, Vec<MeterDay>)> {
    use headroom_geodata::{AssetKind, Quantity};
    use std::collections::BTreeMap;
    let mut days: BTreeMap<NaiveDate, BTreeMap<u32, [Option<f64>; INTERVALS]>> = BTreeMap::new();
    for row in readings {
        if row.asset.kind != AssetKind::Transformer || row.quantity != Quantity::PKw {
            continue;
        }
        let local_ms = row.ts_ms + i64::from(utc_offset_min) * 60_000;
        let Some(local) = chrono::DateTime::from_timestamp_millis(local_ms) else {
            continue;
        };
        let interval = (local_ms.rem_euclid(86_400_000) / 900_000) as usize;
        days.entry(local.date_naive())
            .or_default()
            .entry(row.asset.index)
            .or_insert([None; INTERVALS])[interval] =
            Some((row.value * 0.25 * 1000.0).round() / 1000.0);
    }
    days.into_iter()
        .map(|(date, meters)| {
            let rows = meters
                .into_iter()
                .map(|(index, kwh)| MeterDay {
                    meter: meter_id(network.transformers[index as usize].id.as_ref()),
                    date,
                    kwh,
                })
                .collect();
            (date, rows)
        })
        .collect()
}

/// The simulated meter of a transformer.
pub fn meter_id(transformer: &str) -> String {
    format!("M-{transformer}")
}
