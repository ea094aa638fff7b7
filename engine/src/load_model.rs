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

use crate::powerflow::{
    ElectricalFeeder, LANES, Solution, StepLoads, SweepLanes, SweepSettings, sweep_lanes,
    sweep_steps,
};
use headroom_readings::ReadingsSource;

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
        let Some(&start) = self.steps.first() else {
            return Vec::new();
        };
        // Fast paths, for a capacity sweep aligns every series of a city: no
        // readings, and one reading at the start of every step (what meters
        // and SCADA archives at 15 minutes hand over).
        if series.is_empty() {
            return vec![None; n];
        }
        if series.len() == n
            && series
                .iter()
                .zip(&self.steps)
                .all(|((ts, _), step)| ts == step)
        {
            return series.iter().map(|(_, v)| Some(*v)).collect();
        }
        let mut sum = vec![0.0; n];
        let mut count = vec![0u32; n];
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

/// What looks at a feeder's loose flows while they are still in the
/// processor's caches: a feeder's flows over a week fill megabytes, and reading
/// them back afterwards waited on memory.
pub trait LooseBatches {
    /// Steps `steps` (kept-step indices, at most [`LANES`]) are solved loosely:
    /// lane `l` of `lanes` holds step `steps[l]`'s flow (lanes past the batch
    /// repeat its last step).
    fn solved(&mut self, steps: &[usize], lanes: &SweepLanes);

    /// Whether [`Self::solved`] reads the flows at all: flows solved on a
    /// folded feeder are unfolded for a reader that does.
    fn reads_flows(&self) -> bool {
        true
    }
}

/// Nothing looks.
impl LooseBatches for () {
    fn solved(&mut self, _steps: &[usize], _lanes: &SweepLanes) {}

    fn reads_flows(&self) -> bool {
        false
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
    /// Rating of each transformer, kVA.
    pub rated_kva: Vec<f64>,
    /// Whether each entry of `p_kw` and `q_kvar` was estimated, not measured.
    pub estimated: Vec<bool>,
    /// Per kept step, whether its unmetered transformers share a measured
    /// residual (the allocation iterates with the power flow).
    pub allocated: Vec<bool>,
    /// Per kept step, the exact power flow of its loads once [`Self::settle`]
    /// has solved it (empty before). A base without reservations takes them
    /// as its own.
    pub flows: Vec<Solution>,
    /// Per kept step, whether `flows` holds the exact solution.
    settled: Vec<bool>,
    /// Per kept step, the node voltages of its loose flow (to
    /// [`LOOSE_TOLERANCE_PU`]), kV, step-major: the start of its exact flow,
    /// which needs no currents. Empty once every step is settled.
    loose_v_kv: Vec<Complex64>,
    /// Per kept step, the head's power in its loose flow, kVA.
    loose_head_kva: Vec<Complex64>,
}

impl FeederLoads {
    /// Number of kept steps.
    pub fn step_count(&self) -> usize {
        self.steps.len()
    }

    /// Loads per local node at step `k`, written into `p` and `q` (length of the tree).
    pub fn node_loads(&self, k: usize, p: &mut [f64], q: &mut [f64]) {
        self.node_loads_at(k, p, q, |local| local as usize);
    }

    /// [`Self::node_loads`] on a tree whose node `at(local)` stands for each
    /// loaded local node (a folded feeder's: see `chains`).
    #[inline]
    pub(crate) fn node_loads_at(
        &self,
        k: usize,
        p: &mut [f64],
        q: &mut [f64],
        at: impl Fn(u32) -> usize,
    ) {
        p.fill(0.0);
        q.fill(0.0);
        let m = self.transformers.len();
        for (t, &(_, local)) in self.transformers.iter().enumerate() {
            p[at(local)] += self.p_kw[k * m + t];
            q[at(local)] += self.q_kvar[k * m + t];
        }
    }

    /// Builds the loads of a feeder from its readings over `window`; `transformers`
    /// are the in-service distribution transformers on it with their local nodes.
    /// Every step's power flow (and with it the losses the allocation takes off
    /// the residual) is solved to [`LOOSE_TOLERANCE_PU`] only; [`Self::settle`]
    /// solves the steps wanted exactly (`Engine::load_matrix` settles them all).
    /// `on_batch` sees each batch of steps' loose flows as they are solved
    /// (see [`LooseBatches`]).
    #[allow(clippy::too_many_arguments)]
    pub fn build_loose(
        network: &Network,
        tree: &FeederTree,
        transformers: Vec<(TransformerIx, u32)>,
        electrical: &ElectricalFeeder,
        readings: &dyn ReadingsSource,
        window: &Window,
        settings: &LoadModelSettings,
        on_batch: &mut dyn LooseBatches,
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
        // A group fetched at once is read in place.
        let series_of =
            |asset: AssetRef, quantity: Quantity| -> std::borrow::Cow<'_, [(i64, f64)]> {
                match &grouped {
                    Some(group) => group.series_slice(asset, quantity).into(),
                    None => readings.series(asset, quantity),
                }
            };
        let head_p = window.align(&series_of(feeder_ref, Quantity::PKw), gap);
        let head_q = window.align(&series_of(feeder_ref, Quantity::QKvar), gap);
        let head_s = window.align(&series_of(feeder_ref, Quantity::SKva), gap);
        let head_u = window.align(&series_of(feeder_ref, Quantity::UKv), gap);
        let head_measured = head_p.iter().any(Option::is_some);
        let nominal_kv = electrical.nominal_kv[0];

        // Per transformer: aligned P and Q; P from S where only S is measured
        // (at the unmetered power factor).
        let series: Vec<AlignedPq> = transformers
            .iter()
            .map(|(t, _)| {
                let r = AssetRef {
                    kind: AssetKind::Transformer,
                    index: t.0,
                };
                let mut p = window.align(&series_of(r, Quantity::PKw), gap);
                let q = window.align(&series_of(r, Quantity::QKvar), gap);
                // (Q where only P is known comes from P as the rows are built.)
                let s = series_of(r, Quantity::SKva);
                if !s.is_empty() {
                    let s = window.align(&s, gap);
                    for (p, s) in p.iter_mut().zip(&s) {
                        *p = p.or(s.map(|s| s * settings.unmetered_power_factor));
                    }
                }
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
            rated_kva: Vec::new(),
            estimated: Vec::with_capacity(window.steps.len() * m),
            allocated: Vec::new(),
            flows: Vec::new(),
            settled: Vec::new(),
            loose_v_kv: Vec::new(),
            loose_head_kva: Vec::new(),
        };
        let tan_unmetered = power_factor_tan(settings.unmetered_power_factor);
        // The window's index of each kept step.
        let mut kept = Vec::with_capacity(window.steps.len());
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
            kept.push(k);
            loads.steps.push(ts);
            loads.source_kv.push(head_u[k].unwrap_or(nominal_kv));
            loads.head_kva.push(head);
        }
        // Transformer by transformer, each series read in order: gathering a
        // step's row from every series at once missed the caches.
        let rows = kept.len();
        loads.p_kw.resize(rows * m, 0.0);
        loads.q_kvar.resize(rows * m, 0.0);
        loads.estimated.resize(rows * m, false);
        let mut unmetered = vec![false; rows];
        for (t, (p_series, q_series)) in series.iter().enumerate() {
            // Without a head to share, a configured share of rating.
            let estimated_p =
                settings.unmetered_load_factor * ratings[t] * settings.unmetered_power_factor;
            for (row, &k) in kept.iter().enumerate() {
                let at = row * m + t;
                (loads.p_kw[at], loads.q_kvar[at]) = match p_series[k] {
                    Some(p) => (p, q_series[k].unwrap_or(p * tan_unmetered)),
                    None => {
                        loads.estimated[at] = true;
                        unmetered[row] |= ratings[t] > 0.0;
                        (estimated_p, estimated_p * tan_unmetered)
                    }
                };
            }
        }
        loads.allocated = (0..rows)
            .map(|row| {
                loads.head_kva[row].is_some()
                    && unmetered[row]
                    && settings.max_allocation_rounds > 0
            })
            .collect();
        loads.rated_kva = ratings;
        loads.solve_loosely(electrical, settings.max_allocation_rounds, on_batch);
        loads.share_metered();
        loads
    }

    /// Writes the allocation of step `k`'s measured residual, given the feeder's
    /// losses, into the unmetered entries of its row.
    fn allocate(&mut self, k: usize, losses: Complex64) {
        let m = self.transformers.len();
        let row = k * m..(k + 1) * m;
        let head = self.head_kva[k].unwrap_or_default();
        let (mut metered, mut unmetered_rating) = (Complex64::new(0.0, 0.0), 0.0);
        for t in 0..m {
            if self.estimated[row.start + t] {
                unmetered_rating += self.rated_kva[t];
            } else {
                metered += Complex64::new(self.p_kw[row.start + t], self.q_kvar[row.start + t]);
            }
        }
        let residual = head - metered - losses;
        for t in 0..m {
            if self.estimated[row.start + t] {
                let share = self.rated_kva[t] / unmetered_rating;
                self.p_kw[row.start + t] = residual.re.max(0.0) * share;
                self.q_kvar[row.start + t] = residual.im.max(0.0) * share;
            }
        }
    }

    /// Whether the allocation at step `k` is done, its power flow having given
    /// `computed` at the head: the head matches the measured one, or no residual
    /// was left to share.
    fn allocation_done(&self, k: usize, computed: Complex64) -> bool {
        let head = self.head_kva[k].unwrap_or_default();
        (computed - head).norm_sqr() < ALLOCATION_TOLERANCE_KVA.powi(2)
            || self.unmetered_p_kw(k) <= 0.0
    }

    /// Total load at step `k`, kVA: its row's sum, a fifth of the terms of its
    /// nodes' sum.
    fn total_load_kva(&self, k: usize) -> Complex64 {
        let m = self.transformers.len();
        let row = k * m..(k + 1) * m;
        Complex64::new(
            self.p_kw[row.clone()].iter().sum(),
            self.q_kvar[row].iter().sum(),
        )
    }

    /// Unmetered active power allocated at step `k`, kW.
    fn unmetered_p_kw(&self, k: usize) -> f64 {
        let m = self.transformers.len();
        (0..m)
            .filter(|t| self.estimated[k * m + t])
            .map(|t| self.p_kw[k * m + t])
            .sum()
    }

    /// Solves every step to [`LOOSE_TOLERANCE_PU`], four at a time, iterating each
    /// allocation until the computed head matches the measured one: the loads of
    /// every step, and a close start for the exact power flows that follow.
    fn solve_loosely(
        &mut self,
        electrical: &ElectricalFeeder,
        max_rounds: usize,
        on_batch: &mut dyn LooseBatches,
    ) {
        // The lanes' warm starts and the batch's voltages, moved lane by lane,
        // take whole registers.
        let loads = self;
        avx2_or_portable!(
            FeederLoads::solve_loosely_portable,
            fn(
                loads: &mut FeederLoads,
                electrical: &ElectricalFeeder,
                max_rounds: usize,
                on_batch: &mut dyn LooseBatches,
            )
        )
    }

    #[inline(always)]
    fn solve_loosely_portable(
        &mut self,
        electrical: &ElectricalFeeder,
        max_rounds: usize,
        on_batch: &mut dyn LooseBatches,
    ) {
        let n = electrical.len();
        let steps = self.step_count();
        let loose = SweepSettings {
            tolerance_pu: LOOSE_TOLERANCE_PU,
            ..SweepSettings::default()
        };
        let mut node_loads = StepLoads::new(n);
        // Each lane's flow stays in the lanes from one batch to the next.
        let mut lanes = SweepLanes::default();
        let mut warm = [false; LANES];
        self.flows = vec![Solution::default(); steps];
        self.settled = vec![false; steps];
        // One buffer for every step's voltages: a flow allocated per step
        // spent a tenth of a capacity sweep in the allocator and page faults.
        self.loose_v_kv = Vec::with_capacity(steps * n);
        self.loose_head_kva = Vec::with_capacity(steps);
        // Losses over |head|^2 (complex, per kVA^2) at the last allocated step:
        // losses grow with the square of the load, so this applied to the next
        // head is a close first guess.
        let mut loss_per_kva_2 = Complex64::new(0.0, 0.0);
        // Per lane, the total load (kVA) and source voltage it was last solved at.
        let mut previous: [Option<(f64, f64)>; LANES] = [None; LANES];
        let mut batch_start = 0;
        while batch_start < steps {
            let batch: Vec<usize> = (batch_start..(batch_start + LANES).min(steps)).collect();
            batch_start += LANES;
            let lane_step = |l: usize| batch[l.min(batch.len() - 1)];
            let mut losses = [Complex64::new(0.0, 0.0); LANES];
            // Per lane, how its warm start is scaled: (from, to, scale).
            let mut rescaled: [Option<(f64, f64, f64)>; LANES] = [None; LANES];
            let mut done = [false; LANES];
            for l in 0..LANES {
                let k = lane_step(l);
                losses[l] = loss_per_kva_2 * self.head_kva[k].unwrap_or_default().norm_sqr();
                done[l] = !self.allocated[k] || l >= batch.len();
            }
            // Consecutive quarter-hours carry similar loads: each lane's voltage
            // drops of the last batch, scaled by the change of load, start this
            // one (about three iterations fewer than a flat start).
            for round in 0..max_rounds.max(1) {
                for l in 0..LANES {
                    let k = lane_step(l);
                    if self.allocated[k] && !done[l] {
                        self.allocate(k, losses[l]);
                    }
                    self.node_loads(k, &mut node_loads.p_kw[l], &mut node_loads.q_kvar[l]);
                    node_loads.source_kv[l] = self.source_kv[k];
                    if round == 0 {
                        let total = self.total_load_kva(k).norm_sqr().sqrt();
                        let source = node_loads.source_kv[l];
                        rescaled[l] = previous[l].map(|(last_kva, last_source)| {
                            let scale = if last_kva > 0.0 {
                                total / last_kva
                            } else {
                                1.0
                            };
                            (last_source, source, scale)
                        });
                        previous[l] = Some((total, source));
                    }
                }
                if round == 0 {
                    lanes.rescale(rescaled);
                }
                sweep_lanes(electrical, &node_loads, loose, &mut lanes, warm);
                warm = [true; LANES];
                for l in 0..LANES {
                    let k = lane_step(l);
                    if done[l] {
                        continue;
                    }
                    let computed = lanes.head_power_kva(l);
                    losses[l] = computed - self.total_load_kva(k);
                    let head_kva_2 = computed.norm_sqr();
                    if head_kva_2 > 0.0 {
                        loss_per_kva_2 = losses[l] / head_kva_2;
                    }
                    done[l] = self.allocation_done(k, computed);
                }
                if done.iter().all(|d| *d) {
                    break;
                }
            }
            on_batch.solved(&batch, &lanes);
            lanes.extend_with_voltages(batch.len(), &mut self.loose_v_kv);
            for l in 0..batch.len() {
                self.loose_head_kva.push(lanes.head_power_kva(l));
            }
        }
    }

    /// Solves steps `steps` exactly (to the sweep's default tolerance), each from
    /// its loose flow, allocating again where the exact flow's head falls outside
    /// the tolerance. What a step settles to depends on its own loads and loose
    /// flow only, not on which other steps are settled.
    pub fn settle(
        &mut self,
        electrical: &ElectricalFeeder,
        steps: impl IntoIterator<Item = usize>,
        max_rounds: usize,
    ) {
        self.settle_with(electrical, steps, max_rounds, SweepSettings::default());
    }

    /// [`Self::settle`] with the sweeps' own settings (a looser tolerance for
    /// flows that only choose which steps to solve exactly).
    pub fn settle_with(
        &mut self,
        electrical: &ElectricalFeeder,
        steps: impl IntoIterator<Item = usize>,
        max_rounds: usize,
        settings: SweepSettings,
    ) {
        let n = electrical.len();
        let mut pending: Vec<usize> = steps.into_iter().filter(|k| !self.settled[*k]).collect();
        pending.sort_unstable();
        pending.dedup();
        let mut pending = pending.into_iter();
        // Four steps at a time in lanes, each lane taking the next step as soon
        // as its own is settled; `sweep_steps` stops each lane where `sweep`
        // would stop its step alone.
        let mut loads = StepLoads::new(n);
        let mut lanes = SweepLanes::default();
        let mut flows: [Solution; LANES] = Default::default();
        // Per lane, the step it solves and the allocation round it is in.
        let mut solving: [Option<(usize, usize)>; LANES] = [None; LANES];
        loop {
            for l in 0..LANES {
                if solving[l].is_none() {
                    solving[l] = pending.next().map(|k| (k, 0));
                    if let Some((k, _)) = solving[l] {
                        flows[l] = Solution {
                            v_kv: self.loose_v_kv[k * n..(k + 1) * n].to_vec(),
                            ..Solution::default()
                        };
                    }
                }
                match solving[l] {
                    Some((k, _)) => {
                        self.node_loads(k, &mut loads.p_kw[l], &mut loads.q_kvar[l]);
                        loads.source_kv[l] = self.source_kv[k];
                    }
                    None => {
                        // An idle lane: no load, solved at once.
                        loads.p_kw[l].fill(0.0);
                        loads.q_kvar[l].fill(0.0);
                        loads.source_kv[l] = electrical.nominal_kv[0];
                    }
                }
            }
            if solving.iter().all(Option::is_none) {
                break;
            }
            sweep_steps(electrical, &loads, settings, &mut lanes, &mut flows);
            for l in 0..LANES {
                let Some((k, round)) = solving[l] else {
                    continue;
                };
                let settled = if !self.allocated[k] || round + 1 == max_rounds {
                    true
                } else {
                    let computed = flows[l].head_power_kva();
                    if self.allocation_done(k, computed) {
                        true
                    } else {
                        self.allocate(k, computed - self.total_load_kva(k));
                        round + 1 == max_rounds.max(1)
                    }
                };
                if settled {
                    self.flows[k] = std::mem::take(&mut flows[l]);
                    self.settled[k] = true;
                    solving[l] = None;
                } else {
                    solving[l] = Some((k, round + 1));
                }
            }
        }
        if self.settled.iter().all(|s| *s) {
            self.loose_v_kv = Vec::new();
        }
    }

    /// The head's power at step `k`, kVA: the exact flow's once settled, else
    /// the loose one's.
    pub fn head_power_kva(&self, k: usize) -> Complex64 {
        if self.settled[k] {
            self.flows[k].head_power_kva()
        } else {
            self.loose_head_kva[k]
        }
    }

    /// Sets [`Self::metered_share`] from the loose allocation: settling moves
    /// the estimated loads by a few watts at most, and a share that does not
    /// depend on which steps were settled reads the same from every base.
    fn share_metered(&mut self) {
        let (mut metered, mut estimated) = (0.0f64, 0.0f64);
        for (p, is_estimated) in self.p_kw.iter().zip(&self.estimated) {
            if *is_estimated {
                estimated += p.abs();
            } else {
                metered += p.abs();
            }
        }
        let total = metered + estimated;
        self.metered_share = if total > 0.0 {
            metered / total
        } else if self.metered.iter().all(|m| *m) {
            1.0
        } else {
            0.0
        };
    }

    /// Loads put together from other feeders' (a restoration case feeds parts
    /// of two feeders through one tree): one row per step in `steps`, the
    /// transformers' loads as their own feeders' models settled them (nothing
    /// is allocated again), every step solved exactly by [`Self::settle`]
    /// from `start_v_kv` (step-major, a voltage per node of the tree).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assembled(
        feeder: FeederIx,
        steps: Vec<i64>,
        transformers: Vec<(TransformerIx, u32)>,
        metered: Vec<bool>,
        rated_kva: Vec<f64>,
        p_kw: Vec<f64>,
        q_kvar: Vec<f64>,
        estimated: Vec<bool>,
        source_kv: Vec<f64>,
        start_v_kv: Vec<Complex64>,
    ) -> Self {
        let count = steps.len();
        debug_assert_eq!(p_kw.len(), count * transformers.len());
        Self {
            feeder,
            steps,
            dropped_steps: 0,
            transformers,
            metered,
            p_kw,
            q_kvar,
            source_kv,
            head_kva: vec![None; count],
            metered_share: 0.0,
            rated_kva,
            estimated,
            allocated: vec![false; count],
            flows: vec![Solution::default(); count],
            settled: vec![false; count],
            loose_v_kv: start_v_kv,
            loose_head_kva: vec![Complex64::new(0.0, 0.0); count],
        }
    }

    /// Loads settled on a tree with its series chains folded
    /// ([`crate::chains::ChainFolding`]) with each transformer put back at
    /// its own node of the whole tree (`transformers`, in the same order).
    /// The flows stay folded: their reader unfolds them.
    pub(crate) fn on_whole_tree(&mut self, transformers: Vec<(TransformerIx, u32)>) {
        debug_assert_eq!(transformers.len(), self.transformers.len());
        self.transformers = transformers;
    }

    /// Flows settled on a tree with its series chains folded (`folding`)
    /// unfolded onto the whole tree. The loose voltages, the folded tree's,
    /// are dropped: a step not settled by now keeps its loose head power
    /// alone, and is never settled after.
    pub(crate) fn unfold_flows(&mut self, folding: &crate::chains::ChainFolding) {
        for (flow, _) in self
            .flows
            .iter_mut()
            .zip(&self.settled)
            .filter(|(_, settled)| **settled)
        {
            *flow = folding.unfold(flow);
        }
        self.loose_v_kv = Vec::new();
    }

    /// The same feeder's loads at `steps` only (ascending), with their flows.
    pub fn restricted_to(&mut self, steps: &[usize]) -> Self {
        let m = self.transformers.len();
        let n = if self.steps.is_empty() {
            0
        } else {
            self.loose_v_kv.len() / self.steps.len()
        };
        let loose_v_kv = if steps.iter().all(|k| self.settled[*k]) {
            Vec::new()
        } else {
            steps
                .iter()
                .flat_map(|k| self.loose_v_kv[k * n..(k + 1) * n].iter().copied())
                .collect()
        };
        let rows = |values: &[f64]| -> Vec<f64> {
            steps
                .iter()
                .flat_map(|k| values[k * m..(k + 1) * m].iter().copied())
                .collect()
        };
        Self {
            feeder: self.feeder,
            steps: steps.iter().map(|k| self.steps[*k]).collect(),
            dropped_steps: self.dropped_steps,
            transformers: self.transformers.clone(),
            metered: self.metered.clone(),
            rated_kva: self.rated_kva.clone(),
            p_kw: rows(&self.p_kw),
            q_kvar: rows(&self.q_kvar),
            estimated: steps
                .iter()
                .flat_map(|k| self.estimated[k * m..(k + 1) * m].iter().copied())
                .collect(),
            allocated: steps.iter().map(|k| self.allocated[*k]).collect(),
            source_kv: steps.iter().map(|k| self.source_kv[*k]).collect(),
            head_kva: steps.iter().map(|k| self.head_kva[*k]).collect(),
            metered_share: self.metered_share,
            flows: steps
                .iter()
                .map(|k| std::mem::take(&mut self.flows[*k]))
                .collect(),
            settled: steps.iter().map(|k| self.settled[*k]).collect(),
            loose_v_kv,
            loose_head_kva: steps.iter().map(|k| self.loose_head_kva[*k]).collect(),
        }
    }
}

/// How close an allocation's computed head comes to the measured one, kVA.
const ALLOCATION_TOLERANCE_KVA: f64 = 0.5;

/// Tolerance of the first power flow of every step, pu: close enough for the
/// allocation's losses (a few watts off) and for screening which steps can bind,
/// and a start from which the exact flow takes an iteration or two.
pub const LOOSE_TOLERANCE_PU: f64 = 1e-5;

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

    #[test]
    fn a_reading_at_every_step_and_no_readings_align_as_any_series_does() {
        let window = Window::spanning(0, 5 * STEP_MS);
        let every_step: Vec<(i64, f64)> = (0..6).map(|k| (k * STEP_MS, k as f64 + 0.5)).collect();
        let expected: Vec<Option<f64>> = (0..6).map(|k| Some(k as f64 + 0.5)).collect();
        assert_eq!(window.align(&every_step, 0), expected);
        // Off the steps' starts by a minute: averaged into the same steps.
        let shifted: Vec<(i64, f64)> = every_step.iter().map(|(t, v)| (t + 60_000, *v)).collect();
        assert_eq!(window.align(&shifted, 0), expected);
        assert_eq!(window.align(&[], 60 * 60 * 1000), vec![None; 6]);
    }
}
