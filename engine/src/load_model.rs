//! The load model: what each distribution transformer of a feeder draws at each
//! 15-minute step of the data window, from measurements.
//!
//! Metered transformers draw what they measured. The rest share the feeder's
//! unmetered residual (head power less metered loads less the feeder's losses) in
//! proportion to their ratings; since losses depend on that allocation, the
//! allocation and a power flow are iterated until the computed head power matches
//! the measured one. Without a head measurement, unmetered transformers draw a
//! configured share of their rating. Gaps of up to an hour are interpolated;
//! a step whose head reading is missing beyond that is dropped and counted.

use headroom_geodata::topology::FeederTree;
use headroom_geodata::{AssetKind, AssetRef, FeederIx, Network, Quantity, TransformerIx};
use num_complex::Complex64;

use crate::powerflow::{ElectricalFeeder, Solution, SweepSettings, sweep};
use crate::readings::ReadingsSource;

/// Length of one step, ms.
pub const STEP_MS: i64 = 15 * 60 * 1000;

/// How measurements become loads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadModelSettings {
    /// Longest gap filled by linear interpolation, ms.
    pub max_interpolation_gap_ms: i64,
    /// Share of its rating an unmetered transformer draws when the feeder head is
    /// not measured either.
    pub unmetered_load_factor: f64,
    /// Power factor of such estimated loads.
    pub unmetered_power_factor: f64,
    /// Allocation rounds at most.
    pub max_allocation_rounds: usize,
}

impl Default for LoadModelSettings {
    fn default() -> Self {
        Self {
            max_interpolation_gap_ms: 60 * 60 * 1000,
            unmetered_load_factor: 0.4,
            unmetered_power_factor: 0.95,
            max_allocation_rounds: 8,
        }
    }
}

/// The steps of a data window: every 15 minutes from the first reading to the last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Start of each step, ms since the epoch.
    pub steps: Vec<i64>,
}

impl Window {
    /// The window spanning `first_ms..=last_ms`, aligned to 15 minutes.
    pub fn spanning(first_ms: i64, last_ms: i64) -> Self {
        let start = first_ms.div_euclid(STEP_MS) * STEP_MS;
        let end = last_ms.div_euclid(STEP_MS) * STEP_MS;
        Self {
            steps: (0..=((end - start) / STEP_MS).max(0))
                .map(|k| start + k * STEP_MS)
                .collect(),
        }
    }

    /// Averages a series into the window's steps and fills gaps of up to
    /// `max_gap_ms` linearly; `None` where nothing is known.
    pub fn align(&self, series: &[(i64, f64)], max_gap_ms: i64) -> Vec<Option<f64>> {
        let n = self.steps.len();
        let mut sum = vec![0.0; n];
        let mut count = vec![0u32; n];
        let Some(&start) = self.steps.first() else {
            return Vec::new();
        };
        for &(ts, v) in series {
            let k = (ts - start).div_euclid(STEP_MS);
            if (0..n as i64).contains(&k) {
                sum[k as usize] += v;
                count[k as usize] += 1;
            }
        }
        let mut out: Vec<Option<f64>> = (0..n)
            .map(|k| (count[k] > 0).then(|| sum[k] / f64::from(count[k])))
            .collect();
        let mut last_known: Option<usize> = None;
        for k in 0..n {
            if let Some(v) = out[k] {
                if let Some(prev) = last_known {
                    let gap_ms = (k - prev) as i64 * STEP_MS;
                    if k - prev > 1 && gap_ms <= max_gap_ms {
                        let a = out[prev].unwrap_or(v);
                        for (j, slot) in out.iter_mut().enumerate().take(k).skip(prev + 1) {
                            let f = (j - prev) as f64 / (k - prev) as f64;
                            *slot = Some(a + (v - a) * f);
                        }
                    }
                }
                last_known = Some(k);
            }
        }
        out
    }
}

/// The loads of one feeder over its kept steps.
#[derive(Clone, Debug, Default)]
pub struct FeederLoads {
    /// The feeder.
    pub feeder: FeederIx,
    /// Start of each kept step, ms.
    pub steps: Vec<i64>,
    /// Steps of the window dropped for want of a head reading.
    pub dropped_steps: usize,
    /// Distribution transformers on the feeder and the local node each hangs on.
    pub transformers: Vec<(TransformerIx, u32)>,
    /// Whether each transformer has readings of its own.
    pub metered: Vec<bool>,
    /// Active power per step and transformer, kW (row-major: `step * transformers + t`).
    pub p_kw: Vec<f64>,
    /// Reactive power per step and transformer, kvar.
    pub q_kvar: Vec<f64>,
    /// Busbar voltage per step, kV (measured, else nominal).
    pub source_kv: Vec<f64>,
    /// Measured head power per step, where measured.
    pub head_kva: Vec<Option<Complex64>>,
    /// Share of the feeder's load energy that was measured at transformers, 0 to 1.
    pub metered_share: f64,
    /// Per kept step, the power flow of the allocation's last round, which solved
    /// exactly the loads kept; empty where no allocation ran. A base without
    /// reservations takes these instead of solving the same steps again.
    pub allocated_flows: Vec<Solution>,
}

impl FeederLoads {
    /// Number of kept steps.
    pub fn step_count(&self) -> usize {
        self.steps.len()
    }

    /// Loads per local node at step `k`, written into `p` and `q` (length of the tree).
    pub fn node_loads(&self, k: usize, p: &mut [f64], q: &mut [f64]) {
        p.fill(0.0);
        q.fill(0.0);
        let m = self.transformers.len();
        for (t, &(_, local)) in self.transformers.iter().enumerate() {
            p[local as usize] += self.p_kw[k * m + t];
            q[local as usize] += self.q_kvar[k * m + t];
        }
    }

    /// Builds the loads of a feeder from its readings over `window`; `transformers`
    /// are the in-service distribution transformers on it with their local nodes.
    pub fn build(
        network: &Network,
        tree: &FeederTree,
        transformers: Vec<(TransformerIx, u32)>,
        electrical: &ElectricalFeeder,
        readings: &dyn ReadingsSource,
        window: &Window,
        settings: &LoadModelSettings,
    ) -> Self {
        let gap = settings.max_interpolation_gap_ms;
        let feeder_ref = AssetRef {
            kind: AssetKind::Feeder,
            index: tree.feeder.0,
        };
        // One fetch for the whole feeder where the source is a store.
        let assets: Vec<AssetRef> = std::iter::once(feeder_ref)
            .chain(transformers.iter().map(|(t, _)| AssetRef {
                kind: AssetKind::Transformer,
                index: t.0,
            }))
            .collect();
        let grouped = readings.group(&assets);
        // A group fetched at once is read in place; other sources hand out copies.
        let series_of =
            |asset: AssetRef, quantity: Quantity| -> std::borrow::Cow<'_, [(i64, f64)]> {
                match &grouped {
                    Some(group) => group.series_slice(asset, quantity).into(),
                    None => readings.series(asset, quantity).into(),
                }
            };
        let head_p = window.align(&series_of(feeder_ref, Quantity::PKw), gap);
        let head_q = window.align(&series_of(feeder_ref, Quantity::QKvar), gap);
        let head_s = window.align(&series_of(feeder_ref, Quantity::SKva), gap);
        let head_u = window.align(&series_of(feeder_ref, Quantity::UKv), gap);
        let head_measured = head_p.iter().any(Option::is_some);
        let nominal_kv = electrical.nominal_kv[0];

        // Per transformer: aligned P and Q; Q from S where only S is measured.
        let series: Vec<AlignedPq> = transformers
            .iter()
            .map(|(t, _)| {
                let r = AssetRef {
                    kind: AssetKind::Transformer,
                    index: t.0,
                };
                let p = window.align(&series_of(r, Quantity::PKw), gap);
                let q = window.align(&series_of(r, Quantity::QKvar), gap);
                let s = window.align(&series_of(r, Quantity::SKva), gap);
                let tan = power_factor_tan(settings.unmetered_power_factor);
                let p = p
                    .iter()
                    .zip(&s)
                    .map(|(p, s)| p.or(s.map(|s| s * settings.unmetered_power_factor)))
                    .collect::<Vec<_>>();
                let q = q
                    .iter()
                    .zip(&p)
                    .map(|(q, p)| q.or(p.map(|p| p * tan)))
                    .collect();
                (p, q)
            })
            .collect();
        let metered: Vec<bool> = series
            .iter()
            .map(|(p, _)| p.iter().any(Option::is_some))
            .collect();
        let ratings: Vec<f64> = transformers
            .iter()
            .map(|(t, _)| network.transformers[t.get()].rated_kva)
            .collect();

        let m = transformers.len();
        let n = electrical.len();
        let mut loads = FeederLoads {
            feeder: tree.feeder,
            steps: Vec::new(),
            dropped_steps: 0,
            transformers,
            metered,
            p_kw: Vec::with_capacity(window.steps.len() * m),
            q_kvar: Vec::with_capacity(window.steps.len() * m),
            source_kv: Vec::new(),
            head_kva: Vec::new(),
            metered_share: 0.0,
            allocated_flows: Vec::new(),
        };
        let (mut metered_energy, mut estimated_energy) = (0.0f64, 0.0f64);
        let mut p_node = vec![0.0; n];
        let mut q_node = vec![0.0; n];
        let mut solution = Solution::default();
        let mut p_row = vec![0.0; m];
        let mut q_row = vec![0.0; m];
        let tan_unmetered = power_factor_tan(settings.unmetered_power_factor);
        // Losses over |head|^2 (complex, per kVA^2) at the last allocated step.
        let mut loss_per_kva_2 = Complex64::new(0.0, 0.0);
        let mut estimated: Vec<usize> = Vec::with_capacity(m);
        for (k, &ts) in window.steps.iter().enumerate() {
            let head = match (head_p[k], head_q[k], head_s[k]) {
                (Some(p), Some(q), _) => Some(Complex64::new(p, q)),
                (Some(p), None, Some(s)) => {
                    Some(Complex64::new(p, (s * s - p * p).max(0.0).sqrt()))
                }
                (Some(p), None, None) => Some(Complex64::new(p, p * tan_unmetered)),
                _ => None,
            };
            if head_measured && head.is_none() {
                loads.dropped_steps += 1;
                continue;
            }
            let source_kv = head_u[k].unwrap_or(nominal_kv);
            let mut unmetered_rating = 0.0;
            for t in 0..m {
                match (series[t].0[k], series[t].1[k]) {
                    (Some(p), q) => {
                        p_row[t] = p;
                        q_row[t] = q.unwrap_or(p * tan_unmetered);
                    }
                    _ => {
                        p_row[t] = f64::NAN;
                        unmetered_rating += ratings[t];
                    }
                }
            }
            estimated.clear();
            estimated.extend((0..m).filter(|t| p_row[*t].is_nan()));
            let mut allocated = false;
            match head {
                Some(head) if !estimated.is_empty() && unmetered_rating > 0.0 => {
                    // Residual = head - metered - losses; losses from the last round.
                    let metered_sum: Complex64 = (0..m)
                        .filter(|t| !p_row[*t].is_nan())
                        .map(|t| Complex64::new(p_row[t], q_row[t]))
                        .sum();
                    // Losses scale with the square of the load: the last step's share,
                    // applied to this head, is a close first guess.
                    let mut losses = loss_per_kva_2 * head.norm_sqr();
                    allocated = settings.max_allocation_rounds > 0;
                    for _ in 0..settings.max_allocation_rounds {
                        let residual = head - metered_sum - losses;
                        for &t in &estimated {
                            let share = ratings[t] / unmetered_rating;
                            p_row[t] = residual.re.max(0.0) * share;
                            q_row[t] = residual.im.max(0.0) * share;
                        }
                        scatter(
                            &loads.transformers,
                            &p_row,
                            &q_row,
                            &mut p_node,
                            &mut q_node,
                        );
                        sweep(
                            electrical,
                            &p_node,
                            &q_node,
                            source_kv,
                            SweepSettings::default(),
                            &mut solution,
                        );
                        let computed = solution.head_power_kva();
                        let total_load: Complex64 =
                            (0..m).map(|t| Complex64::new(p_row[t], q_row[t])).sum();
                        losses = computed - total_load;
                        let head_kva_2 = computed.norm_sqr();
                        if head_kva_2 > 0.0 {
                            loss_per_kva_2 = losses / head_kva_2;
                        }
                        if (computed - head).norm_sqr().sqrt() < 0.5 || residual.re <= 0.0 {
                            break;
                        }
                    }
                }
                _ => {
                    for &t in &estimated {
                        p_row[t] = settings.unmetered_load_factor
                            * ratings[t]
                            * settings.unmetered_power_factor;
                        q_row[t] = p_row[t] * tan_unmetered;
                    }
                }
            }
            for t in 0..m {
                if series[t].0[k].is_some() {
                    metered_energy += p_row[t].abs();
                } else {
                    estimated_energy += p_row[t].abs();
                }
            }
            loads.steps.push(ts);
            loads.p_kw.extend_from_slice(&p_row);
            loads.q_kvar.extend_from_slice(&q_row);
            loads.source_kv.push(source_kv);
            loads.head_kva.push(head);
            loads.allocated_flows.push(if allocated {
                solution.clone()
            } else {
                Solution::default()
            });
        }
        let total = metered_energy + estimated_energy;
        loads.metered_share = if total > 0.0 {
            metered_energy / total
        } else if loads.metered.iter().all(|m| *m) {
            1.0
        } else {
            0.0
        };
        loads
    }
}

fn scatter(
    transformers: &[(TransformerIx, u32)],
    p_row: &[f64],
    q_row: &[f64],
    p_node: &mut [f64],
    q_node: &mut [f64],
) {
    p_node.fill(0.0);
    q_node.fill(0.0);
    for (t, &(_, local)) in transformers.iter().enumerate() {
        p_node[local as usize] += p_row[t];
        q_node[local as usize] += q_row[t];
    }
}

/// Active and reactive power of one asset aligned to the window.
type AlignedPq = (Vec<Option<f64>>, Vec<Option<f64>>);

/// tan(phi) of a lagging power factor.
pub fn power_factor_tan(power_factor: f64) -> f64 {
    let pf = power_factor.clamp(1e-6, 1.0);
    (1.0 / (pf * pf) - 1.0).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_up_to_an_hour_are_interpolated_longer_ones_stay_empty() {
        let window = Window::spanning(0, 12 * STEP_MS);
        let series = [
            (0, 10.0),
            (4 * STEP_MS, 50.0),           // a 1 h gap: filled
            (10 * STEP_MS, 0.0),           // a 1.5 h gap: left
            (10 * STEP_MS + 60_000, 20.0), // two readings in one step: averaged
        ];
        let aligned = window.align(&series, 60 * 60 * 1000);
        assert_eq!(aligned[0], Some(10.0));
        assert_eq!(aligned[2], Some(30.0));
        assert_eq!(aligned[4], Some(50.0));
        assert_eq!(aligned[5], None);
        assert_eq!(aligned[9], None);
        assert_eq!(aligned[10], Some(10.0));
        assert_eq!(aligned[12], None);
    }
}
