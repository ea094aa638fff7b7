//! A readings body: CSV with the gridpack's columns, then the quality and the
//! connector that read it, so the service stores exactly what the collector
//! logged.
//!
//! ```text
//! ts,asset,quantity,value,quality,source
//! 2026-12-05T09:00:00.000Z,T_2,p_kw,112.5,good,gateway-1
//! ```
//!
//! Times are RFC 3339 UTC with milliseconds; values are written in the
//! shortest form that reads back to the same number, so nothing is rounded on
//! the way through.

use std::fmt::Write as _;
use std::sync::Arc;

use headroom_geodata::LineRules;
use headroom_readings::{Interner, Reading};

use crate::sealed::{Rejection, Rule};

/// The body's first line.
pub const HEADER: &str = "ts,asset,quantity,value,quality,source";

/// Writes readings as a body.
pub fn encode(readings: &[Reading]) -> Vec<u8> {
    let mut out = String::with_capacity(HEADER.len() + 1 + readings.len() * 64);
    out.push_str(HEADER);
    out.push('\n');
    for r in readings {
        let ts = chrono::DateTime::from_timestamp_millis(r.ts_ms).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            r.asset,
            r.quantity.as_str(),
            r.value,
            r.quality.as_str(),
            r.source
        );
    }
    out.into_bytes()
}

fn row_error(line: usize, message: impl std::fmt::Display) -> Rejection {
    Rejection::new(Rule::Body, format!("line {line}: {message}"))
}

/// Reads a body of `rows` readings back. Any broken line refuses the body
/// whole, naming the line (the header is line 1) and the column.
pub fn decode(body: &[u8], rows: u64, interned: &mut Interner) -> Result<Vec<Reading>, Rejection> {
    let text = std::str::from_utf8(body).map_err(|e| {
        Rejection::new(
            Rule::Body,
            format!("the body is not UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let mut lines = text.split_terminator('\n');
    match lines.next() {
        Some(HEADER) => {}
        other => {
            return Err(row_error(
                1,
                format!(
                    "the header must be `{HEADER}`, found `{}`",
                    other.unwrap_or("")
                ),
            ));
        }
    }
    let rules = LineRules::INGEST;
    let mut readings = Vec::with_capacity(usize::try_from(rows).unwrap_or(0).min(1 << 20));
    let mut source: Option<Arc<str>> = None;
    for (i, line) in lines.enumerate() {
        let number = i + 2;
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 6 {
            return Err(row_error(
                number,
                format!("{} columns, expected 6 ({HEADER})", fields.len()),
            ));
        }
        let field_error = |e: headroom_geodata::FieldError| row_error(number, e);
        if fields[1].is_empty() || fields[5].is_empty() {
            return Err(row_error(number, "`asset` and `source` must not be empty"));
        }
        // Consecutive rows mostly share a source: one lookup, not one per row.
        let row_source = match &source {
            Some(s) if **s == *fields[5] => s.clone(),
            _ => {
                let s = interned.get(fields[5]);
                source = Some(s.clone());
                s
            }
        };
        readings.push(Reading {
            ts_ms: rules.ts(fields[0]).map_err(field_error)?,
            asset: interned.get(fields[1]),
            quantity: rules.quantity(fields[2]).map_err(field_error)?,
            value: rules.value(fields[3]).map_err(field_error)?,
            quality: LineRules::quality(fields[4]).map_err(field_error)?,
            source: row_source,
        });
    }
    if readings.len() as u64 != rows {
        return Err(Rejection::new(
            Rule::Body,
            format!(
                "the body holds {} rows, the header says {rows}",
                readings.len()
            ),
        ));
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_readings::{Quality, Quantity};

    #[test]
    fn readings_round_trip_exactly() {
        let readings = vec![
            Reading {
                ts_ms: 1_780_000_000_001,
                asset: "T_2".into(),
                quantity: Quantity::PKw,
                value: 0.1 + 0.2,
                quality: Quality::Uncertain,
                source: "gateway".into(),
            },
            Reading {
                ts_ms: -1_000,
                asset: "F_L0".into(),
                quantity: Quantity::EnergyKwh,
                value: -1e-300,
                quality: Quality::Bad,
                source: "scada".into(),
            },
        ];
        let body = encode(&readings);
        let decoded = decode(&body, 2, &mut Interner::default()).unwrap();
        assert_eq!(decoded, readings);
    }

    #[test]
    fn a_broken_row_names_its_line_and_column() {
        let error = |body: &str, rows| {
            decode(body.as_bytes(), rows, &mut Interner::default())
                .unwrap_err()
                .to_string()
        };
        let head = format!("{HEADER}\n");
        let good = "2026-12-05T09:00:00.000Z,T_2,p_kw,1.5,good,g\n";
        assert!(
            error(
                &format!("{head}{good}2026-12-05T09:00:00Z,T_2,volts,1,good,g\n"),
                2
            )
            .contains("line 3: `quantity` \"volts\"")
        );
        assert!(error(&format!("{head}{good}x,T_2,p_kw,1,good,g\n"), 2).contains("line 3: `ts`"));
        assert!(error(&format!("{head}{good}"), 3).contains("holds 1 rows, the header says 3"));
        assert!(error(&format!("{head}{good}1,2,3\n"), 2).contains("line 3: 3 columns"));
        assert!(error("ts,asset\n", 0).contains("line 1: the header must be"));
    }
}
