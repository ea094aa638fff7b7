//! The figures at the application's demand (`after`): the worst loading,
//! head loading, voltages and substation loading over every step of the window
//! with the new load connected.
//!
//! A full power flow of every step for every candidate would cost a ranking
//! seconds. Instead each step gets bounds from its base flow that no power flow
//! with the new load can pass: a branch's current grows by at most the new
//! load's current (on the candidate's path) plus the other loads' answer to the
//! lower voltage, a node's voltage falls by at most the impedance it shares with
//! the candidate times that current, and the substation takes at most the new
//! load plus the losses it adds. Steps are then taken worst bound first, and a
//! step gets a power flow only while its bound could still beat what the power
//! flows so far found. Each bound is checked twice: first in a few operations
//! from the rows the feeder's base keeps per step, then, for a step that
//! passes, branch by branch along the candidate's path.
//!
//! The figures are therefore those of a power flow at every step, to the power
//! flow's own tolerance: the steps left out are the ones proved not to matter.

use num_complex::Complex64;

use super::{Scratch, WorstChecks, absorb};
use crate::engine::{Engine, FeederBase};
use crate::evaluate::AddedLoad;
use crate::powerflow::SQRT_3;

/// A step's bounds on the figures with the new load.
#[derive(Clone, Copy, Debug)]
struct StepBounds {
    step: usize,
    /// Highest loading of any branch or the head, a fraction (at most).
    loading: f64,
    /// Highest head loading, a fraction (at most).
    head: f64,
    /// Lowest voltage, pu (at least).
    v_min: f64,
    /// Highest voltage, pu (at most).
    v_max: f64,
    /// Substation loading, a fraction of the group's rating (at most).
    substation: f64,
}

/// What a bound must exceed the figure found so far by to call for a power flow:
/// far below the figures' rounding (0.01 points, 0.0001 pu).
const SLACK: f64 = 1e-6;

/// The figures found so far, as fractions and pu.
#[derive(Clone, Copy, Debug)]
struct Found {
    loading: f64,
    head: f64,
    v_min: f64,
    v_max: f64,
    substation: f64,
}

impl Found {
    fn from_worst(worst: &WorstChecks) -> Self {
        Self {
            loading: worst.segment.0.max(worst.head_pct) / 100.0,
            head: worst.head_pct / 100.0,
            v_min: worst.v_min.0,
            v_max: worst.v_max.0,
            substation: worst.substation_pct / 100.0,
        }
    }

    /// Whether a step with these bounds can still change a figure.
    fn can_change(&self, b: &StepBounds) -> bool {
        b.loading > self.loading + SLACK
            || b.head > self.head + SLACK
            || b.v_min < self.v_min - SLACK
            || b.v_max > self.v_max + SLACK
            || b.substation > self.substation + SLACK
    }
}

/// What the bounds of every step share: the candidate's path and its load.
struct Candidate<'a> {
    base: &'a FeederBase,
    local: u32,
    /// Nodes from the candidate up to the first node, and the impedance
    /// magnitude from the busbar to each.
    path: &'a [usize],
    z_from_busbar: &'a [f64],
    /// |Z| from the busbar to the candidate, ohm.
    z_candidate: f64,
    /// The least and largest finite segment rating on the path, A.
    weakest_a: f64,
    strongest_a: f64,
    head_rated_a: Option<f64>,
    group_rated_kva: f64,
    /// kVA per kW of the new load.
    kva_per_kw: f64,
}

/// The new load's reach at one step: how much current it draws at most and how
/// far it lowers voltages at most, relative to the base.
struct Reach {
    /// The largest current the new load can draw, A.
    current_a: f64,
    /// The largest relative fall of any node's voltage: the other loads' currents
    /// grow by at most `1 / (1 - fall) - 1` of themselves.
    growth: f64,
    /// The new load's apparent power, kVA.
    kva: f64,
}

impl Candidate<'_> {
    /// How far the new load of `kw` reaches at step `k`, or `None` where the
    /// feeder might collapse under it (then only a power flow can tell).
    fn reach(&self, k: usize, kw: f64) -> Option<Reach> {
        let steps = self.base.loads.step_count();
        let v = f64::from(self.base.voltage_kv[self.local as usize * steps + k]);
        let kva = kw * self.kva_per_kw;
        // The candidate's voltage x with the load: x >= v - |Z| kva / (1000 x),
        // the drop of its own current at that voltage.
        let zs = self.z_candidate * kva / 1000.0;
        let discriminant = v * v - 4.0 * zs;
        if discriminant.is_nan() || discriminant <= 0.0 {
            return None;
        }
        let x = 0.5 * (v + discriminant.sqrt());
        let own_fall = 1.0 - x / v;
        // The other loads answer the lower voltage with more current, which
        // lowers it a little further: their share of the drop is bounded by the
        // base drop grown in the same proportion, here a generous tenth.
        let fall = own_fall * 1.1 + 1e-9;
        if fall >= 0.5 {
            return None;
        }
        let growth = fall / (1.0 - fall);
        Some(Reach {
            current_a: kva / (SQRT_3 * v * (1.0 - fall)),
            growth,
            kva,
        })
    }

    /// Bounds from the base's per-step rows alone.
    fn quick_bounds(&self, k: usize, reach: &Reach) -> StepBounds {
        let base = self.base;
        let steps = base.loads.step_count();
        let run = self.local as usize * steps + k;
        let grow = 1.0 + reach.growth;
        let head_current = base.head_i_a[k].norm();
        let head = self
            .head_rated_a
            .map_or(0.0, |rated| (head_current * grow + reach.current_a) / rated);
        let path = f64::from(base.path_max_loading[run]) * grow
            + reach.current_a
                / self
                    .weakest_a
                    .min(self.head_rated_a.unwrap_or(f64::INFINITY));
        let loading = (base.max_loading[k] * grow).max(path).max(head);
        let observed = &base.observed[k];
        let spread = voltage_spread(base, k);
        let nominal = base.electrical.nominal_kv[self.local as usize];
        let own_drop = self.z_candidate * reach.current_a * SQRT_3 / 1000.0 / nominal;
        let v_min = base.feeder_min_pu[k] - own_drop - reach.growth * spread;
        let v_max = observed.v_max_pu + reach.growth * spread;
        let largest_path_current = head_current.max(
            f64::from(base.path_max_loading[run])
                * self.strongest_a.max(self.head_rated_a.unwrap_or(0.0)),
        );
        let substation = self.substation_bound(k, reach, largest_path_current * grow);
        StepBounds {
            step: k,
            loading,
            head,
            v_min,
            v_max,
            substation,
        }
    }

    /// The same bounds, branch by branch along the path.
    fn path_bounds(&self, quick: &StepBounds, reach: &Reach) -> StepBounds {
        let base = self.base;
        let k = quick.step;
        let e = &base.electrical;
        let n = e.len();
        let solution = &base.solutions[k];
        let grow = 1.0 + reach.growth;
        let spread = voltage_spread(base, k);
        let subtree_min = &base.subtree_min_pu[k * n..(k + 1) * n];
        let mut path_loading: f64 = 0.0;
        let mut largest_current: f64 = solution.i_a(0).norm();
        // Nodes outside the path's subtrees only answer the lower voltage.
        let mut v_min = base.feeder_min_pu[k];
        for (i, &p) in self.path.iter().enumerate() {
            let current = solution.i_a(p).norm() * grow;
            largest_current = largest_current.max(current);
            if e.rated_a[p].is_finite() {
                path_loading = path_loading.max((current + reach.current_a) / e.rated_a[p]);
            }
            let drop = self.z_from_busbar[i] * reach.current_a * SQRT_3 / 1000.0 / e.nominal_kv[p];
            v_min = v_min.min(f64::from(subtree_min[p]) - drop);
        }
        v_min -= reach.growth * spread;
        // Off the path, a branch carries only its loads' answer to the lower
        // voltage.
        let loading = (base.max_loading[k] * grow)
            .max(path_loading)
            .max(quick.head);
        StepBounds {
            step: k,
            loading: loading.min(quick.loading),
            head: quick.head,
            v_min: v_min.max(quick.v_min),
            v_max: quick.v_max,
            substation: self
                .substation_bound(k, reach, largest_current)
                .min(quick.substation),
        }
    }

    /// The substation's loading with the new load and the losses it can add:
    /// on the path, at most its impedance times what the new current adds to
    /// the square of the largest path current `path_current_a`; elsewhere, the
    /// other loads' larger currents add to the feeder's own losses in
    /// proportion (taken as at most an eighth of the head's power).
    fn substation_bound(&self, k: usize, reach: &Reach, path_current_a: f64) -> f64 {
        if self.group_rated_kva <= 0.0 {
            return 0.0;
        }
        let base = self.base;
        let new_current = reach.current_a;
        let path_losses =
            3.0 * self.z_candidate * (2.0 * path_current_a + new_current) * new_current / 1000.0;
        let other_losses = base.solutions[k].head_power_kva().norm() * 0.25 * reach.growth;
        (base.group_kva[k].norm() + reach.kva + path_losses + other_losses) / self.group_rated_kva
    }
}

/// How far the base flow's voltages spread from the busbar's at step `k`, pu:
/// the other loads' answer to the new load moves every voltage by at most this
/// much in proportion to their growth.
fn voltage_spread(base: &FeederBase, k: usize) -> f64 {
    let observed = &base.observed[k];
    let source = base.loads.source_kv[k] / base.electrical.nominal_kv[0];
    (source - observed.v_min_pu)
        .abs()
        .max((observed.v_max_pu - source).abs())
}

impl Engine {
    /// The worst figures over every step of the window with `demand_kw` (shaped
    /// by `shape`) added at `local`: each a power flow's, found by bounding every
    /// step and solving only those whose bounds could change a figure.
    pub(super) fn figures_at_demand(
        &self,
        base: &FeederBase,
        local: u32,
        demand_kw: f64,
        load: &AddedLoad<'_>,
        shape: &[f64],
        scratch: &mut Scratch,
    ) -> WorstChecks {
        let mut worst = WorstChecks {
            segment: (0.0, 0),
            head_pct: 0.0,
            v_min: (f64::INFINITY, 0),
            v_max: (f64::NEG_INFINITY, 0),
            substation_pct: 0.0,
        };
        let steps = base.loads.step_count();
        // A step where the load draws nothing, or whose base flow collapsed, is
        // as the base has it.
        let judged = |k: usize| shape[k] > 0.0 && demand_kw > 0.0 && base.solutions[k].converged;
        for k in (0..steps).filter(|&k| !judged(k)) {
            absorb(&mut worst, &base.observed[k]);
        }

        let e = &base.electrical;
        let n = e.len();
        let mut path = std::mem::take(&mut scratch.path);
        path.clear();
        let mut at = local;
        while at != 0 && (at as usize) < n {
            path.push(at as usize);
            at = e.parent[at as usize];
        }
        let mut z_from_busbar = vec![0.0; path.len()];
        let mut z = Complex64::new(0.0, 0.0);
        for (i, &p) in path.iter().enumerate().rev() {
            z += e.z_ohm[p];
            z_from_busbar[i] = z.norm();
        }
        let ratings = path.iter().map(|&p| e.rated_a[p]).filter(|a| a.is_finite());
        let candidate = Candidate {
            base,
            local,
            path: &path,
            z_candidate: z_from_busbar.first().copied().unwrap_or(0.0),
            z_from_busbar: &z_from_busbar,
            weakest_a: ratings.clone().fold(f64::INFINITY, f64::min),
            strongest_a: ratings.fold(0.0, f64::max),
            head_rated_a: e.head_rated_a,
            group_rated_kva: self.group_rated_kva(base.group),
            kva_per_kw: (1.0 + load.tan_phi * load.tan_phi).sqrt(),
        };

        // Bounds of every judged step; a step the load might collapse is solved.
        let mut bounds: Vec<(StepBounds, Reach)> = Vec::new();
        let mut to_solve: Vec<usize> = Vec::new();
        for k in (0..steps).filter(|&k| judged(k)) {
            match candidate.reach(k, demand_kw * shape[k]) {
                Some(reach) => bounds.push((candidate.quick_bounds(k, &reach), reach)),
                None => to_solve.push(k),
            }
        }
        // Seeds: the steps of the worst bound of each figure, likely the worst
        // steps themselves.
        let seed = |key: fn(&StepBounds) -> f64| {
            bounds
                .iter()
                .max_by(|a, b| key(&a.0).total_cmp(&key(&b.0)))
                .map(|b| b.0.step)
        };
        to_solve.extend(seed(|b| b.loading));
        to_solve.extend(seed(|b| -b.v_min));
        to_solve.extend(seed(|b| b.substation));
        to_solve.extend(seed(|b| b.v_max));
        to_solve.sort_unstable();
        to_solve.dedup();
        let solved = |k: usize, worst: &mut WorstChecks, scratch: &mut Scratch| {
            let o = self.exact(base, k, local, demand_kw * shape[k], load, scratch);
            absorb(worst, &o);
        };
        for &k in &to_solve {
            solved(k, &mut worst, scratch);
        }
        // Worst loading bound first: the figures found rise fastest that way.
        bounds.sort_unstable_by(|a, b| b.0.loading.total_cmp(&a.0.loading));
        for (quick, reach) in &bounds {
            if to_solve.contains(&quick.step) {
                continue;
            }
            let found = Found::from_worst(&worst);
            if !found.can_change(quick) {
                continue;
            }
            let tight = candidate.path_bounds(quick, reach);
            if !found.can_change(&tight) {
                continue;
            }
            solved(quick.step, &mut worst, scratch);
        }
        scratch.path = path;
        worst
    }
}
