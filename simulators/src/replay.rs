//! A gridpack's readings replayed in a loop, time compressed: what the
//! protocol simulators serve as live values.

use std::collections::BTreeMap;

use tokio::task::JoinHandle;

/// One quantity's readings, (ms, value) sorted by time.
type Series = Vec<(i64, f64)>;

/// Per key (a unit, an asset), a series per slot (a quantity of the
/// simulator's map), looping over the readings' span.
#[derive(Clone, Debug)]
pub struct Timeline<K> {
    entries: Vec<(K, Vec<Series>)>,
    first_ms: i64,
    span_ms: i64,
}

impl<K: Ord> Timeline<K> {
    /// From (key, slot, ms, value) rows; `slots` per key. The span is the
    /// readings' plus one 15-minute step, so the loop does not repeat a step.
    pub fn build(rows: impl IntoIterator<Item = (K, usize, i64, f64)>, slots: usize) -> Self {
        let mut by_key: BTreeMap<K, Vec<Series>> = BTreeMap::new();
        let (mut first_ms, mut last_ms) = (i64::MAX, i64::MIN);
        for (key, slot, ts_ms, value) in rows {
            if slot >= slots {
                continue;
            }
            by_key.entry(key).or_insert_with(|| vec![Vec::new(); slots])[slot].push((ts_ms, value));
            first_ms = first_ms.min(ts_ms);
            last_ms = last_ms.max(ts_ms);
        }
        let entries = by_key
            .into_iter()
            .map(|(key, mut series)| {
                for s in &mut series {
                    s.sort_by_key(|(ts, _)| *ts);
                }
                (key, series)
            })
            .collect();
        Self {
            entries,
            first_ms: if first_ms == i64::MAX { 0 } else { first_ms },
            span_ms: if first_ms <= last_ms {
                last_ms - first_ms + 15 * 60_000
            } else {
                1
            },
        }
    }
}

impl<K> Timeline<K> {
    /// Keeps the first `n` keys.
    pub fn truncate(&mut self, n: usize) {
        self.entries.truncate(n);
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(key, _)| key)
    }

    /// Keys replayed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is replayed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each (key index, slot, value) in force `elapsed_ms` of simulated time
    /// after the first reading (looping); slots without a reading yet are left out.
    pub fn at(&self, elapsed_ms: i64) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        let at = self.first_ms + elapsed_ms.rem_euclid(self.span_ms);
        self.entries
            .iter()
            .enumerate()
            .flat_map(move |(k, (_, series))| {
                series.iter().enumerate().filter_map(move |(slot, s)| {
                    let i = s.partition_point(|(ts, _)| *ts <= at);
                    (i > 0).then(|| (k, slot, s[i - 1].1))
                })
            })
    }
}

/// Calls `apply` with the simulated time elapsed, once a second of wall time,
/// until the task is dropped: each second moves simulated time by `speed` seconds.
pub fn every_second(speed: f64, mut apply: impl FnMut(i64) + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            apply((start.elapsed().as_secs_f64() * speed * 1000.0) as i64);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_force_loop_over_the_span() {
        let step = 15 * 60_000;
        let timeline = Timeline::build(
            [
                ("b", 0, step, 2.0),
                ("a", 1, 0, 1.0),
                ("a", 1, step, 3.0),
                ("a", 9, 0, 9.0),
            ],
            2,
        );
        assert_eq!(timeline.keys().collect::<Vec<_>>(), [&"a", &"b"]);
        assert_eq!(timeline.at(0).collect::<Vec<_>>(), [(0, 1, 1.0)]);
        assert_eq!(
            timeline.at(step).collect::<Vec<_>>(),
            [(0, 1, 3.0), (1, 0, 2.0)]
        );
        // The span is two steps: the loop starts over.
        assert_eq!(timeline.at(2 * step + 1).collect::<Vec<_>>(), [(0, 1, 1.0)]);
    }
}
