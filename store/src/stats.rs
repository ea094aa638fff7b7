//! What the capacity map and the engine show of one asset's readings: latest value
//! and age per quantity, peak and 95th percentile of apparent power, the typical
//! day (weekday and weekend, 96 quarter-hours of active power) and the data's
//! coverage of a window. Computed with DataFusion from the `readings` table.

use datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use serde::Serialize;

use crate::error::{Error, Result};

/// The latest good or uncertain reading of one quantity.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Latest {
    /// The quantity.
    pub quantity: String,
    /// When it was measured, ms since the epoch.
    pub ts_ms: i64,
    /// Its value.
    pub value: f64,
}

/// Statistics of one asset over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssetStats {
    /// The asset id.
    pub asset: String,
    /// Latest reading of each quantity measured (any time).
    pub latest: Vec<Latest>,
    /// Highest apparent power in the window, kVA (measured `s_kva`, else from P and Q).
    pub peak_kva: Option<f64>,
    /// 95th percentile of apparent power in the window, kVA.
    pub p95_kva: Option<f64>,
    /// Mean active power per quarter-hour of weekdays (UTC), kW; `None` without data.
    pub typical_weekday_kw: Vec<Option<f64>>,
    /// The same for Saturdays and Sundays.
    pub typical_weekend_kw: Vec<Option<f64>>,
    /// Share of the window's quarter-hours with an active-power reading, 0 to 1.
    pub coverage: f64,
}

/// An id as an SQL string literal.
pub(crate) fn quote(id: &str) -> String {
    format!("'{}'", id.replace('\'', "''"))
}

fn floats(batch: &datafusion::arrow::array::RecordBatch, i: usize) -> Result<&Float64Array> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| Error::Internal(format!("statistics column {i} is not a float")))
}

impl super::Store {
    /// Statistics of `asset` over `[from_ms, to_ms)`; served from a cache that each
    /// write for the asset clears.
    pub fn asset_stats(&self, asset: &str, from_ms: i64, to_ms: i64) -> Result<AssetStats> {
        let shared = &self.shared;
        let key: std::sync::Arc<str> = asset.into();
        let cached = shared.stats_cache.get(&key);
        if let Some(found) = cached.as_ref().and_then(|m| m.get(&(from_ms, to_ms))) {
            return Ok(found.clone());
        }
        shared
            .caches_used
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let before = super::lock(&shared.generation).get(&key).copied();
        let stats = self.compute_stats(asset, from_ms, to_ms)?;
        // Under the lock writes take to clear the cache: a write that arrived while
        // computing is seen here, one arriving later clears what is cached now.
        let generation = super::lock(&shared.generation);
        if generation.get(&key).copied() != before {
            return Ok(stats);
        }
        let mut windows = cached.map(|m| (*m).clone()).unwrap_or_default();
        windows.insert((from_ms, to_ms), stats.clone());
        shared.stats_cache.insert(key, std::sync::Arc::new(windows));
        drop(generation);
        Ok(stats)
    }

    fn compute_stats(&self, asset: &str, from_ms: i64, to_ms: i64) -> Result<AssetStats> {
        let id = quote(asset);
        let usable = format!("asset = {id} AND quality <> 'bad'");
        let window = format!(
            "{usable} AND ts >= to_timestamp_millis({from_ms}) AND ts < to_timestamp_millis({to_ms})"
        );
        let mut latest = Vec::new();
        for batch in self.sql(&format!(
            "SELECT quantity, CAST(max(ts) AS BIGINT), last_value(value ORDER BY ts) \
             FROM readings WHERE {usable} GROUP BY quantity ORDER BY quantity"
        ))? {
            let quantity = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| Error::Internal("quantity column".into()))?;
            let ts = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| Error::Internal("ts column".into()))?;
            let value = floats(&batch, 2)?;
            for i in 0..batch.num_rows() {
                latest.push(Latest {
                    quantity: quantity.value(i).to_owned(),
                    ts_ms: ts.value(i),
                    value: value.value(i),
                });
            }
        }
        // Apparent power per timestamp: measured, else from P and Q.
        let apparent = format!(
            "WITH pivot AS (SELECT ts, \
               max(CASE WHEN quantity = 's_kva' THEN value END) AS s, \
               max(CASE WHEN quantity = 'p_kw' THEN value END) AS p, \
               max(CASE WHEN quantity = 'q_kvar' THEN value END) AS q \
             FROM readings WHERE {window} GROUP BY ts), \
             kva AS (SELECT coalesce(s, sqrt(p * p + coalesce(q, 0.0) * coalesce(q, 0.0))) AS kva FROM pivot) \
             SELECT max(kva), approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY kva) FROM kva"
        );
        let (mut peak_kva, mut p95_kva) = (None, None);
        for batch in self.sql(&apparent)? {
            if batch.num_rows() > 0 {
                let (peak, p95) = (floats(&batch, 0)?, floats(&batch, 1)?);
                peak_kva = (!peak.is_null(0)).then(|| peak.value(0));
                p95_kva = (!p95.is_null(0)).then(|| p95.value(0));
            }
        }
        let mut typical_weekday_kw = vec![None; 96];
        let mut typical_weekend_kw = vec![None; 96];
        let mut steps_with_p = 0i64;
        for batch in self.sql(&format!(
            "SELECT CAST(date_part('dow', ts) IN (0, 6) AS BIGINT), \
               CAST(date_part('hour', ts) * 4 + date_part('minute', ts) / 15 AS BIGINT), \
               avg(value), count(*) \
             FROM readings WHERE {window} AND quantity = 'p_kw' GROUP BY 1, 2"
        ))? {
            let ints = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| Error::Internal(format!("typical day column {i}")))
            };
            let (weekend, quarter, mean, count) =
                (ints(0)?, ints(1)?, floats(&batch, 2)?, ints(3)?);
            for i in 0..batch.num_rows() {
                let q = quarter.value(i).clamp(0, 95) as usize;
                let day = if weekend.value(i) == 1 {
                    &mut typical_weekend_kw
                } else {
                    &mut typical_weekday_kw
                };
                day[q] = Some(mean.value(i));
                steps_with_p += count.value(i);
            }
        }
        let steps = ((to_ms - from_ms) / 900_000).max(1);
        Ok(AssetStats {
            asset: asset.to_owned(),
            latest,
            peak_kva,
            p95_kva,
            typical_weekday_kw,
            typical_weekend_kw,
            coverage: (steps_with_p as f64 / steps as f64).min(1.0),
        })
    }
}
