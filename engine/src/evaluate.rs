//! Headroom at one connection point: the largest extra load, at the application's
//! power factor and profile, that keeps every electrical check at every step.
//!
//! Bisection over full power flows at every step would take seconds. Instead, for
//! each step the base-case power flow gives sensitivities of every path current,
//! node voltage and the substation loading to load at the candidate; they estimate
//! each step's headroom in closed form (a quadratic in the load per current or
//! apparent-power limit, a line per voltage). Only the steps whose estimate is
//! within a margin of the smallest can bind; for those the headroom is found
//! exactly by root finding over full power flows, and confirmed.
//!
//! A flat load (the usual application, and every capacity figure) does not even
//! visit every step: each node's steps come ranked with the feeder's base by the
//! room a load there has (in kVA, the least over the thermal, voltage and
//! substation limits), and are judged least room first until a step's lower
//! bound rules out it and every later one.
//!
//! At most [`REFINED_STEPS`] steps are refined, so a step's estimate is needed
//! only while its lower bound is under both the spread of the smallest
//! estimate and the last of them: where a load's room hardly changes over the
//! window, that stops after some dozens of steps instead of hundreds.

use num_complex::Complex64;

use crate::base::FeederBase;
use crate::checks::{CheckName, Figures, Observed, WorstChecks, first_broken};
use crate::config::Limits;
use crate::engine::Engine;
use crate::load_model::power_factor_tan;
use crate::powerflow::{
    LANES, SQRT_3, Solution, StepLoads, SweepLanes, SweepSettings, sweep, sweep_steps, widen,
};

mod figures;
mod generation;

pub(crate) use figures::FigureOrders;
pub use generation::{AddedGeneration, EXPORT_CHECKS, ExportEvaluation};
pub(crate) use generation::{ExportRooms, transformer_root};

/// Headroom beyond this is reported as this: nothing on a distribution feeder
/// comes near it.
pub const UNBOUNDED_KW: f64 = 1.0e6;

/// How far above the smallest estimate another step's estimate may lie and still
/// bind: the estimates' error (the loads' response to the lower voltage, the added
/// losses) is nearly the same at steps of similar load, so what separates them is
/// a small part of it.
const STEP_SPREAD: f64 = 0.01;

/// The largest estimate that may still bind, given the smallest.
fn within_spread(smallest_kw: f64) -> f64 {
    smallest_kw * (1.0 + STEP_SPREAD) + 1.0
}

/// Steps refined exactly at most, of those the estimate says can bind. Eight
/// overstated 120 of 58,732 city load headrooms (up to 0.7 % past a limit):
/// a dozen evening steps of a week come within the spread, and the one whose
/// estimate errs most (a trunk branch binding, not the candidate's own) was
/// cut off; 64 leave none of those out, at a fifth more time.
const REFINED_STEPS: usize = 64;

/// What a step's estimate must come under to be refined: within the spread of
/// the smallest, and among the [`REFINED_STEPS`] smallest. A step whose lower
/// bound is above it cannot be refined, nor can any step of a larger bound.
struct RefineCut {
    /// The least estimates offered, ascending.
    least: [f64; REFINED_STEPS],
}

impl RefineCut {
    fn new() -> Self {
        Self {
            least: [f64::INFINITY; REFINED_STEPS],
        }
    }

    fn offer(&mut self, estimate: f64) {
        let last = REFINED_STEPS - 1;
        if estimate < self.least[last] {
            self.least[last] = estimate;
            let mut i = last;
            while i > 0 && self.least[i] < self.least[i - 1] {
                self.least.swap(i, i - 1);
                i -= 1;
            }
        }
    }

    fn smallest(&self) -> f64 {
        self.least[0]
    }

    fn cut(&self) -> f64 {
        within_spread(self.least[0]).min(self.least[REFINED_STEPS - 1])
    }
}

/// How many of the least lower bounds the whole window's estimates take in
/// order before the rest are taken as they come.
const ORDERED_BOUNDS: usize = 64;

/// The load to add: its shape over the feeder's steps.
#[derive(Clone, Debug)]
pub struct AddedLoad<'a> {
    /// kvar per kW (tan phi, lagging).
    pub tan_phi: f64,
    /// 96 quarter-hour factors of the demand, or flat.
    pub profile: Option<&'a [f64]>,
}

impl AddedLoad<'_> {
    /// A flat load at a power factor.
    pub fn flat(power_factor: f64) -> AddedLoad<'static> {
        AddedLoad {
            tan_phi: power_factor_tan(power_factor),
            profile: None,
        }
    }
}

/// What the engine found at one connection point.
#[derive(Clone, Debug, PartialEq)]
pub struct PointEvaluation {
    /// Largest extra load keeping every electrical check, kW (floored to 1 kW).
    pub headroom_kw: f64,
    /// The check that limits it.
    pub binding: CheckName,
    /// Whether a limit is already broken without the new load.
    pub already_broken: bool,
    /// Worst case without the new load.
    pub before: Figures,
    /// Worst case with the application's demand.
    pub after: Figures,
    /// The worst values behind `after`.
    pub worst: WorstChecks,
}

/// Scratch space for power flows, reused across calls.
#[derive(Default)]
struct Scratch {
    p: Vec<f64>,
    q: Vec<f64>,
    solution: Solution,
    path_up: Vec<u32>,
    shift: Vec<Complex64>,
    /// Linearised response of branch currents and node voltages, per kW.
    d_current: Vec<Complex64>,
    d_voltage: Vec<Complex64>,
    /// The loads answering a voltage change: (local node, current, 1 / voltage).
    responding: Vec<(u32, Complex64, Complex64)>,
    /// The candidate's path to the busbar and the impedance from the busbar to
    /// each node of it.
    path: Vec<usize>,
    z_from_busbar: Vec<Complex64>,
    /// Steps with their lower bounds: (step, bound, voltage bound, substation bound).
    bounds: Vec<(usize, f64, f64, f64)>,
    /// Estimated headroom of the steps that may bind: (estimate, step).
    estimates: Vec<(f64, usize)>,
    /// Impedance magnitudes from the busbar along the candidate's path, for
    /// the figures' bounds.
    z_magnitude: Vec<f64>,
    /// Steps whose figures were solved, within one evaluation.
    figure_solved: Vec<bool>,
    /// The loading scan's next place in each rating class's order.
    class_next: Vec<usize>,
    /// The last evaluation's correction of its first refined estimate: (base's
    /// address, step, exact root over estimate). The estimate's error comes
    /// from the loads' answer and the added losses, much the same for the
    /// feeder's next candidate at the same step, so that one guesses its root
    /// to within about a kW. A hint for speed only (a base at a freed base's
    /// address may take it): every flow the answer rests on starts from the
    /// base, so a guess changes how many flows are solved, never the kW.
    last_correction: Option<(usize, usize, f64)>,
    /// A generator's exporting steps on the last base judged (candidates of a
    /// feeder come together, and the steps are the same for each of them).
    export_steps: generation::ExportStepsCache,
    /// Buffers of [`Engine::exact_lanes`].
    lane_loads: StepLoads,
    lane_sweep: SweepLanes,
    lane_solutions: [Solution; LANES],
}

thread_local! {
    // Each thread keeps its power-flow buffers: a ranking evaluates thousands
    // of points, and allocating them afresh cost a tenth of its time.
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::default();
}

/// Runs `f` with this thread's power-flow buffers.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    let mut scratch = SCRATCH.take();
    let out = f(&mut scratch);
    SCRATCH.set(scratch);
    out
}

/// `|z|` without `hypot`'s guard against overflow, which kV, A and kVA never
/// come near: the generation estimates and the load bounds take a magnitude
/// per path node and step, and `hypot` cost more than the rest of them.
#[inline]
pub(crate) fn magnitude(z: Complex64) -> f64 {
    z.norm_sqr().sqrt()
}

/// The smallest `x >= 0` with `|start + x * per_unit| = limit`; 0 when already past.
pub(crate) fn magnitude_root(start: Complex64, per_unit: Complex64, limit: f64) -> f64 {
    let c = start.norm_sqr() - limit * limit;
    if c >= 0.0 {
        return 0.0;
    }
    let a = per_unit.norm_sqr();
    if a <= 0.0 {
        return f64::INFINITY;
    }
    let b = 2.0 * (start * per_unit.conj()).re;
    (-b + (b * b - 4.0 * a * c).sqrt()) / (2.0 * a)
}

/// What an audit of a headroom found: every step solved exactly at the
/// headroom and at 1 kW more, none of the engine's estimates, bounds or
/// searches used (see [`Engine::audit_load_headroom`]). A check of answers,
/// not a way to find them: two flows a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadroomAudit {
    /// The step (index into the base's steps) where the headroom breaks a
    /// check by the most, and by how much (share past its limit): none where
    /// every step holds, as it must.
    pub broken_at_headroom: Option<(usize, f64)>,
    /// Whether 1 kW more breaks a check at some step, as it must unless the
    /// headroom is capped (by the search's ceiling or, for N-1, the normal
    /// headroom).
    pub broken_past_headroom: bool,
}

impl HeadroomAudit {
    /// Whether the headroom is the largest whole kW every step takes.
    pub fn exact(&self) -> bool {
        self.broken_at_headroom.is_none() && self.broken_past_headroom
    }

    /// The audit of `headroom_kw`: `excesses(kw, note)` solves every step at
    /// `kw` and notes each step's excess over its limit (above 0: broken),
    /// at the headroom and at 1 kW more. No new load or export is the base,
    /// which an answer of 0 takes as it is, so a kW of 0 is not solved.
    fn of(headroom_kw: f64, mut excesses: impl FnMut(f64, &mut dyn FnMut(usize, f64))) -> Self {
        let mut audit = HeadroomAudit {
            broken_at_headroom: None,
            broken_past_headroom: headroom_kw >= UNBOUNDED_KW,
        };
        for (kw, past) in [(headroom_kw, false), (headroom_kw + 1.0, true)] {
            if kw <= 0.0 {
                continue;
            }
            excesses(kw, &mut |k, excess| {
                if excess <= 0.0 {
                    return;
                }
                if past {
                    audit.broken_past_headroom = true;
                } else if audit.broken_at_headroom.is_none_or(|(_, e)| e < excess) {
                    audit.broken_at_headroom = Some((k, excess));
                }
            });
        }
        audit
    }
}

impl Engine {
    /// The application's load factor at each kept step of a feeder.
    fn shape<'b>(&self, base: &'b FeederBase, load: &AddedLoad<'_>) -> std::borrow::Cow<'b, [f64]> {
        if load.profile.is_none() {
            return std::borrow::Cow::Borrowed(&base.flat_shape);
        }
        base.loads
            .steps
            .iter()
            .map(|ts| load.profile.map_or(1.0, |p| p[self.quarter_of_day(*ts)]))
            .collect::<Vec<_>>()
            .into()
    }

    /// A full power flow of step `k` with `x` kW (shaped) added at `local`.
    fn exact(
        &self,
        base: &FeederBase,
        k: usize,
        local: u32,
        x_kw: f64,
        load: &AddedLoad<'_>,
        scratch: &mut Scratch,
    ) -> Observed {
        let Scratch {
            p,
            q,
            solution,
            path_up,
            shift,
            ..
        } = scratch;
        self.exact_start(base, k, local, x_kw, load, p, q, solution, path_up, shift);
        sweep(
            &base.electrical,
            p,
            q,
            base.loads.source_kv[k],
            SweepSettings::default(),
            solution,
        );
        let added = base.head_kva_added(k, solution);
        self.observe(base, k, solution, added)
    }

    /// [`Self::exact`] of up to [`LANES`] steps `ks` at once, a lane each
    /// (one sweep of the tree for all; each lane's flow is, to the last bit,
    /// what [`Self::exact`] solves for its step alone). A short batch repeats
    /// its last step in the spare lanes.
    fn exact_lanes(
        &self,
        base: &FeederBase,
        ks: &[usize],
        local: u32,
        x_kw: [f64; LANES],
        load: &AddedLoad<'_>,
        scratch: &mut Scratch,
    ) -> [Observed; LANES] {
        debug_assert!(!ks.is_empty() && ks.len() <= LANES);
        let Scratch {
            path_up,
            shift,
            lane_loads,
            lane_sweep,
            lane_solutions,
            ..
        } = scratch;
        let lane_k: [usize; LANES] = std::array::from_fn(|l| ks[l.min(ks.len() - 1)]);
        for l in 0..LANES {
            self.exact_start(
                base,
                lane_k[l],
                local,
                x_kw[l.min(ks.len() - 1)],
                load,
                &mut lane_loads.p_kw[l],
                &mut lane_loads.q_kvar[l],
                &mut lane_solutions[l],
                path_up,
                shift,
            );
            lane_loads.source_kv[l] = base.loads.source_kv[lane_k[l]];
        }
        sweep_steps(
            &base.electrical,
            lane_loads,
            SweepSettings::default(),
            lane_sweep,
            lane_solutions,
        );
        let added = std::array::from_fn(|l| base.head_kva_added(lane_k[l], &lane_solutions[l]));
        self.observe_steps(
            base,
            lane_k,
            std::array::from_fn(|l| &lane_solutions[l]),
            added,
        )
    }

    /// Audits a load's headroom at `local` of `base` the long way round:
    /// every step where the load draws solved exactly at `headroom_kw` and at
    /// 1 kW more (see [`HeadroomAudit`]).
    pub fn audit_load_headroom(
        &self,
        base: &FeederBase,
        local: u32,
        headroom_kw: f64,
        load: &AddedLoad<'_>,
    ) -> HeadroomAudit {
        let limits = &base.limits;
        let shape = self.shape(base, load);
        let drawing: Vec<usize> = (0..base.loads.step_count())
            .filter(|k| shape[*k] > 0.0)
            .collect();
        with_scratch(|scratch| {
            HeadroomAudit::of(headroom_kw, |kw, note| {
                for ks in drawing.chunks(LANES) {
                    let x = std::array::from_fn(|l| kw * shape[ks[l.min(ks.len() - 1)]]);
                    let flows = self.exact_lanes(base, ks, local, x, load, scratch);
                    for (&k, o) in ks.iter().zip(&flows) {
                        note(k, o.worst_ratio(limits) - 1.0);
                    }
                }
            })
        })
    }

    /// The loads of step `k` with `x_kw` (shaped) added at `local`, into `p`
    /// and `q`, and the flow an exact solve of them starts from, into
    /// `solution`.
    #[allow(clippy::too_many_arguments)]
    fn exact_start(
        &self,
        base: &FeederBase,
        k: usize,
        local: u32,
        x_kw: f64,
        load: &AddedLoad<'_>,
        p: &mut Vec<f64>,
        q: &mut Vec<f64>,
        solution: &mut Solution,
        path_up: &mut Vec<u32>,
        shift: &mut Vec<Complex64>,
    ) {
        let n = base.electrical.len();
        p.resize(n, 0.0);
        q.resize(n, 0.0);
        self.base_node_loads(base, k, p, q);
        p[local as usize] += x_kw;
        q[local as usize] += x_kw * load.tan_phi;
        // Start from the base's flow at the step, moved by the linear drop of
        // the new load's current: every node shares the candidate's path down
        // to where it branches off. This saves about one sweep iteration. Never
        // from a flow solved before at another kW, though that saves two more:
        // a sweep stops within its tolerance of the root, nearer or further by
        // where it started, and at a kW whose ratio to a limit lies that close
        // to 1 the verdict (and so the headroom) would follow whatever was
        // judged before.
        base.solutions[k].start_into(solution);
        let e = &base.electrical;
        let v_candidate = solution.v_kv[local as usize];
        let added_conj_kva = Complex64::new(x_kw, -x_kw * load.tan_phi);
        let mut added_current = added_conj_kva / (SQRT_3 * v_candidate.conj());
        // The path from the candidate up; local indices put parents first, so
        // read backwards it comes in the order of the walk below.
        path_up.clear();
        let mut at = local as usize;
        let mut z_path = Complex64::new(0.0, 0.0);
        while at != 0 && at < n {
            path_up.push(at as u32);
            z_path += e.z_ohm[at];
            at = e.parent[at] as usize;
        }
        // The new load draws its power at the voltage its own current lowers:
        // its current at the candidate's voltage after that drop.
        let v_after = v_candidate - SQRT_3 / 1000.0 * z_path * added_current;
        if v_after.norm_sqr() > 0.25 * v_candidate.norm_sqr() {
            added_current = added_conj_kva / (SQRT_3 * v_after.conj());
        }
        shift.resize(n, Complex64::new(0.0, 0.0));
        shift[0] = Complex64::new(0.0, 0.0);
        let mut next_on_path = path_up.pop();
        for j in 1..n {
            let mut own = shift[e.parent[j] as usize];
            if next_on_path == Some(j as u32) {
                own -= SQRT_3 / 1000.0 * e.z_ohm[j] * added_current;
                next_on_path = path_up.pop();
            }
            shift[j] = own;
            solution.v_kv[j] += own;
        }
    }

    /// The highest segment or head loading, %, of one exact flow of step `k`
    /// with `x_kw` (already shaped) added at `local`.
    pub(crate) fn loading_pct_at_step(
        &self,
        base: &FeederBase,
        k: usize,
        local: u32,
        x_kw: f64,
        load: &AddedLoad<'_>,
    ) -> f64 {
        with_scratch(|scratch| {
            self.exact(base, k, local, x_kw, load, scratch)
                .max_loading_pct()
        })
    }

    /// Evaluates the node at `local` of feeder `base` for a load of `demand_kw`.
    pub fn evaluate_point(
        &self,
        base: &FeederBase,
        local: u32,
        demand_kw: f64,
        load: &AddedLoad<'_>,
    ) -> PointEvaluation {
        self.evaluate_point_with(base, local, demand_kw, load, true)
    }

    /// The headroom at the node at `local` of feeder `base` and the check that
    /// limits it, without the figures at a demand (`after` is the base case).
    pub fn headroom_at(
        &self,
        base: &FeederBase,
        local: u32,
        load: &AddedLoad<'_>,
    ) -> (f64, CheckName) {
        let e = self.evaluate_point_with(base, local, 0.0, load, false);
        (e.headroom_kw, e.binding)
    }

    fn evaluate_point_with(
        &self,
        base: &FeederBase,
        local: u32,
        demand_kw: f64,
        load: &AddedLoad<'_>,
        with_figures: bool,
    ) -> PointEvaluation {
        with_scratch(|scratch| {
            self.evaluate_point_in(base, local, demand_kw, load, with_figures, scratch)
        })
    }

    fn evaluate_point_in(
        &self,
        base: &FeederBase,
        local: u32,
        demand_kw: f64,
        load: &AddedLoad<'_>,
        with_figures: bool,
        scratch: &mut Scratch,
    ) -> PointEvaluation {
        let shape = self.shape(base, load);
        let before = base.summary.before;
        let (path, z_from_busbar) = candidate_path(base, local, scratch);
        let estimator = Estimator::new(self, base, local, load, &shape, &path, &z_from_busbar);
        // Where a limit is broken without the new load, there is no headroom to
        // find: only the figures.
        let find_headroom = base.summary.already_broken.is_none();
        let (mut estimates, smallest) = self.estimates(&estimator, find_headroom, scratch);

        // Figures at the application's demand, over every step.
        let worst = if with_figures {
            let path = figures::CandidatePath {
                nodes: &path,
                z_from_busbar: &z_from_busbar,
            };
            self.figures_at_demand(base, local, &path, demand_kw, load, &shape, scratch)
        } else {
            base.summary.worst
        };
        scratch.path = path;
        scratch.z_from_busbar = z_from_busbar;
        let after = Figures::of_worst(&worst);

        if let Some(binding) = base.summary.already_broken {
            scratch.estimates = estimates;
            return PointEvaluation {
                headroom_kw: 0.0,
                binding,
                already_broken: true,
                before,
                after,
                worst,
            };
        }

        let (headroom, binding) =
            self.exact_headroom(base, local, load, &shape, &mut estimates, smallest, scratch);
        scratch.estimates = estimates;
        PointEvaluation {
            headroom_kw: headroom,
            binding,
            already_broken: false,
            before,
            after,
            worst,
        }
    }

    /// Estimated headroom of the steps that may bind, `(estimate, step)`, and
    /// the smallest estimate. A flat load is judged at the node's ranked
    /// steps, least room first, until a step's bound rules out it and every
    /// later one; the whole window is needed only when the ranked steps run out
    /// first and the room of those left out does not rule them out.
    fn estimates(
        &self,
        estimator: &Estimator<'_>,
        find_headroom: bool,
        scratch: &mut Scratch,
    ) -> (Vec<(f64, usize)>, f64) {
        let Estimator {
            base,
            local,
            load,
            per_kw_magnitude,
            ..
        } = *estimator;
        let steps = base.loads.step_count();
        let mut estimates = std::mem::take(&mut scratch.estimates);
        estimates.clear();
        let mut smallest = f64::INFINITY;
        let mut every_step = load.profile.is_some() || steps == 0 || self.config.judge_every_step;
        if !every_step {
            let ranked_steps = base.flat_steps(local);
            let ranked = &ranked_steps.steps[..];
            // Without headroom to find, no step is left to rule out.
            let mut ruled_out = !find_headroom;
            let to_judge = if find_headroom { ranked } else { &[] };
            let mut cut = RefineCut::new();
            for ranked_step in to_judge {
                let room_kw = (f64::from(ranked_step.room_kva) / per_kw_magnitude).max(0.0);
                if room_kw > cut.cut() {
                    ruled_out = true;
                    break;
                }
                let k = ranked_step.step as usize;
                if !estimator.judged_at(k) {
                    continue;
                }
                // The bounds of `bounds_at` for a flat load, from the ranked step.
                let voltage_bound =
                    (f64::from(ranked_step.voltage_room_kva) / per_kw_magnitude).max(0.0);
                let substation_bound = (base.substation_room_kva[k] / per_kw_magnitude).max(0.0);
                let estimate = estimator.estimate_with(
                    k,
                    widen(ranked_step.v_kv),
                    (
                        ranked_step.bottleneck as usize,
                        widen(ranked_step.bottleneck_i_a),
                    ),
                    voltage_bound,
                    substation_bound,
                    cut.cut(),
                );
                cut.offer(estimate);
                estimates.push((estimate, k));
            }
            smallest = cut.smallest();
            let left_out_kw = ranked_steps.cutoff_kva / per_kw_magnitude;
            every_step = !ruled_out && left_out_kw <= cut.cut();
        }
        if every_step {
            // Pass 1, a few operations per step: the bounds, the rough figures.
            // Entries: (step, bound, voltage bound, substation bound).
            let mut bounds = std::mem::take(&mut scratch.bounds);
            bounds.clear();
            for k in (0..steps).filter(|k| estimator.judged_at(*k) && find_headroom) {
                let (bound, voltage_bound, substation_bound) = estimator.bounds_at(k);
                bounds.push((k, bound, voltage_bound, substation_bound));
            }
            // Pass 2, along the path: the estimated headroom of the steps whose
            // lower bound does not already rule them out, least bound first, so
            // that the first bound past the cut ends it: where a load's room
            // hardly changes over the window, hundreds of steps come within the
            // spread, and only the few that can be refined need an estimate.
            estimates.clear();
            let mut cut = RefineCut::new();
            let ordered = bounds.len().min(ORDERED_BOUNDS);
            if bounds.len() > ordered {
                bounds.select_nth_unstable_by(ordered, |a, b| a.1.total_cmp(&b.1));
            }
            bounds[..ordered].sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
            for (i, &(k, bound, voltage_bound, substation_bound)) in bounds.iter().enumerate() {
                if bound > cut.cut() {
                    if i < ordered {
                        break;
                    }
                    continue;
                }
                let estimate = estimator.estimate_at(k, voltage_bound, substation_bound, cut.cut());
                cut.offer(estimate);
                estimates.push((estimate, k));
            }
            smallest = cut.smallest();
            scratch.bounds = bounds;
        }
        (estimates, smallest)
    }

    /// Exact headroom at the steps that can bind, to 1 kW (floored), and the
    /// check that binds.
    #[allow(clippy::too_many_arguments)]
    fn exact_headroom(
        &self,
        base: &FeederBase,
        local: u32,
        load: &AddedLoad<'_>,
        shape: &[f64],
        estimates: &mut [(f64, usize)],
        smallest: f64,
        scratch: &mut Scratch,
    ) -> (f64, CheckName) {
        let limits = &base.limits;
        estimates.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut headroom = f64::INFINITY;
        let mut binding_step = None;
        // The estimate's error is much the same at neighbouring steps (the same
        // limit, similar loads), so the first exact root corrects the others'
        // guesses. Not their verdicts: every step within the spread is checked
        // at the headroom found (skipping those whose corrected estimate lay
        // 0.2 % above it overstated 66 of 58,783 city candidates by up to
        // 0.44 %, at no time measurably saved).
        let mut correction = 1.0;
        let base_address = std::ptr::from_ref(base) as usize;
        for &(estimate, k) in estimates.iter().take(REFINED_STEPS) {
            if estimate > within_spread(smallest) {
                break;
            }
            let guess = match scratch.last_correction {
                Some((at, step, last))
                    if binding_step.is_none() && at == base_address && step == k =>
                {
                    estimate * last
                }
                _ => estimate * correction,
            };
            if binding_step.is_some() {
                // One power flow tells whether this step takes what another allows.
                let at_headroom = self
                    .exact(base, k, local, headroom * shape[k], load, scratch)
                    .worst_ratio(limits);
                if at_headroom <= 1.0 {
                    continue;
                }
            }
            let (found, breach) =
                self.refine(base, k, local, guess.min(headroom), load, shape[k], scratch);
            if binding_step.is_none() && estimate > 0.0 && found > 0.0 {
                correction = found / estimate;
                scratch.last_correction = Some((base_address, k, correction));
            }
            if found < headroom {
                headroom = found;
                binding_step = Some((k, breach));
            }
        }
        let headroom = headroom.clamp(0.0, UNBOUNDED_KW).floor();
        let binding = match binding_step {
            Some((k, breach)) => {
                let ratios = match breach {
                    Some(ratios) => ratios,
                    None => self
                        .exact(base, k, local, (headroom + 1.0) * shape[k], load, scratch)
                        .ratios(limits),
                };
                first_broken(&ratios).unwrap_or_else(|| {
                    let i = (0..4)
                        .max_by(|a, b| ratios[*a].total_cmp(&ratios[*b]))
                        .unwrap_or(0);
                    CheckName::ELECTRICAL[i]
                })
            }
            None => CheckName::SegmentThermal,
        };
        (headroom, binding)
    }
}

impl Engine {
    /// The headroom at step `k` to 1 kW (floored) and the ratios of the checks at
    /// 1 kW more, when found on the way.
    ///
    /// A power flow at the guess names the element that binds there; between the
    /// base case (no new load) and the guess its ratio to its limit is nearly a
    /// line, so the root of that line is within a fraction of a kW of the true one.
    /// A flow at its floor confirms it, and the slope tells that 1 kW more
    /// breaks the limit (a flow 1 kW above where the slope cannot tell). Only
    /// when they do not confirm it is the root searched by bracketing.
    #[allow(clippy::too_many_arguments)]
    fn refine(
        &self,
        base: &FeederBase,
        k: usize,
        local: u32,
        guess: f64,
        load: &AddedLoad<'_>,
        factor: f64,
        scratch: &mut Scratch,
    ) -> (f64, Option<[f64; 4]>) {
        let limits = &base.limits;
        if guess.is_finite() && guess > 0.0 {
            // Whole kW first: a guess within a kW of the root is then confirmed
            // by this one flow and the slope.
            let guess = if guess >= 1.0 { guess.floor() } else { guess };
            let at_guess = self.exact(base, k, local, guess * factor, load, scratch);
            let ratios = at_guess.ratios(limits);
            let (which, worst) =
                ratios
                    .iter()
                    .copied()
                    .enumerate()
                    .fold(
                        (0, f64::MIN),
                        |acc, (i, r)| if r > acc.1 { (i, r) } else { acc },
                    );
            let slope = self.ratio_slope(base, k, local, &at_guess, which, load, factor, scratch);
            if guess >= 1.0
                && worst <= 1.0
                && let Some(above) = past_limit_at_next_kw(&at_guess, &ratios, which, slope, limits)
            {
                return (guess, Some(above));
            }
            if worst.is_finite() && slope > 0.0 {
                // Newton's step with the slope of the new load's own current, then
                // a secant through the two flows nearest the root.
                let mut points = [(guess, worst), (f64::NAN, f64::NAN)];
                let mut root = guess + (1.0 - worst) / slope;
                for round in 0..2 {
                    if !(root.is_finite() && (0.0..UNBOUNDED_KW - 1.0).contains(&root)) {
                        break;
                    }
                    let floor = root.floor();
                    let observed_at_floor = (floor > 0.0)
                        .then(|| self.exact(base, k, local, floor * factor, load, scratch));
                    let ratios_at_floor = observed_at_floor.map(|o| o.ratios(limits));
                    let at_floor =
                        ratios_at_floor.map_or(0.0, |r| r.iter().copied().fold(f64::MIN, f64::max));
                    if at_floor <= 1.0 {
                        // 1 kW more breaks the limit when the slope carries its
                        // ratio past 1 with room to spare and no other check is
                        // near its own: then no flow is needed to know it.
                        if let (0, Some(o), Some(r)) = (round, observed_at_floor, ratios_at_floor)
                            && let Some(above) = past_limit_at_next_kw(&o, &r, which, slope, limits)
                        {
                            return (floor, Some(above));
                        }
                        let above = self
                            .exact(base, k, local, (floor + 1.0) * factor, load, scratch)
                            .ratios(limits);
                        let worst_above = above.iter().copied().fold(f64::MIN, f64::max);
                        if worst_above > 1.0 {
                            return (floor, Some(above));
                        }
                        points[1] = (floor + 1.0, worst_above);
                    } else {
                        points[1] = (floor, at_floor);
                    }
                    let ((x0, r0), (x1, r1)) = (points[0], points[1]);
                    if round == 1 || !r1.is_finite() || r1 == r0 {
                        break;
                    }
                    root = x1 + (1.0 - r1) * (x1 - x0) / (r1 - r0);
                }
            }
        }
        let mut first_breach: Option<(f64, [f64; 4])> = None;
        let found = largest_feasible(guess, |x| {
            let ratios = self
                .exact(base, k, local, x * factor, load, scratch)
                .ratios(limits);
            let worst = ratios.iter().copied().fold(f64::MIN, f64::max);
            if worst > 1.0 && first_breach.is_none_or(|(at, _)| x < at) {
                first_breach = Some((x, ratios));
            }
            worst - 1.0
        });
        let floor = found.floor();
        (
            floor,
            first_breach
                .filter(|(at, _)| *at <= floor + 1.0)
                .map(|(_, ratios)| ratios),
        )
    }

    /// How fast the ratio of check `which` to its limit grows per kW added at
    /// `local`, at the power flow just solved in `scratch` (whose worst element
    /// `observed` names).
    ///
    /// The power flow linearised at that solution: a kW more at the candidate
    /// draws its current along the candidate's path, which lowers every voltage,
    /// to which every constant-power load answers with a little more current
    /// (`dI = -I conj(dV / V)`), which lowers the voltages a little further. Two
    /// rounds of that response leave an error of a few parts in ten thousand of
    /// the slope, so that Newton's step from a guess near the root lands within
    /// a fraction of a kW of it.
    #[allow(clippy::too_many_arguments)]
    fn ratio_slope(
        &self,
        base: &FeederBase,
        k: usize,
        local: u32,
        observed: &Observed,
        which: usize,
        load: &AddedLoad<'_>,
        factor: f64,
        scratch: &mut Scratch,
    ) -> f64 {
        let limits = &base.limits;
        let e = &base.electrical;
        let n = e.len();
        let Scratch {
            p,
            q,
            solution,
            d_current,
            d_voltage,
            responding,
            ..
        } = scratch;
        let v_kv = &solution.v_kv;
        let per_kw =
            Complex64::new(factor, -factor * load.tan_phi) / (SQRT_3 * v_kv[local as usize].conj());
        d_voltage.clear();
        d_voltage.resize(n, Complex64::new(0.0, 0.0));
        d_current.clear();
        d_current.resize(n, Complex64::new(0.0, 0.0));
        // Each load's current and the inverse of its voltage, once: what its
        // answer to a voltage change is made of.
        responding.clear();
        responding.extend((1..n).filter(|&j| p[j] != 0.0 || q[j] != 0.0).map(|j| {
            let v = v_kv[j];
            let load_current = Complex64::new(p[j], -q[j]) * v / (SQRT_3 * v.norm_sqr());
            (j as u32, load_current, v.inv())
        }));
        for round in 0..3 {
            // Currents: the new kW at the candidate and each load's answer to the
            // voltage change of the previous round (none before the first).
            d_current.fill(Complex64::new(0.0, 0.0));
            if round > 0 {
                for &(j, load_current, inverse_v) in responding.iter() {
                    d_current[j as usize] =
                        -load_current * (d_voltage[j as usize] * inverse_v).conj();
                }
            }
            d_current[local as usize] += per_kw;
            for j in (1..n).rev() {
                let c = d_current[j];
                d_current[e.parent[j] as usize] += c;
            }
            for j in 1..n {
                d_voltage[j] = d_voltage[e.parent[j] as usize] - e.drop_kv_per_a[j] * d_current[j];
            }
        }
        let current_slope = |at: usize, limit_a: f64| {
            let current = solution.i_a[at];
            let magnitude = current.norm_sqr().sqrt();
            if magnitude > 0.0 && limit_a > 0.0 {
                (current.conj() * d_current[at]).re / magnitude / limit_a
            } else {
                0.0
            }
        };
        let thermal = limits.thermal_pct / 100.0;
        match which {
            0 => {
                let at = observed.segment_at as usize;
                current_slope(at, e.rated_a[at] * thermal)
            }
            1 => e
                .head_rated_a
                .map_or(0.0, |rated| current_slope(0, rated * thermal)),
            2 => {
                let at = observed.v_min_at as usize;
                let v = v_kv[at];
                let magnitude_2 = v.norm_sqr();
                if magnitude_2 <= 0.0 {
                    return 0.0;
                }
                // The ratio is v_min nominal / |V|; d|V| = Re(conj(V) dV) / |V|.
                let magnitude_slope = (v.conj() * d_voltage[at]).re / magnitude_2.sqrt();
                -limits.v_min_pu * e.nominal_kv[at] / magnitude_2 * magnitude_slope
            }
            _ => {
                let rated = self.group_rated_kva(base.group);
                if rated <= 0.0 {
                    return 0.0;
                }
                let limit_kva = rated * limits.substation_transformer_pct / 100.0;
                let group = base.group_kva[k] + base.head_kva_added(k, solution);
                let magnitude = group.norm_sqr().sqrt();
                let d_head_kva = SQRT_3 * v_kv[0] * d_current[0].conj();
                if magnitude > 0.0 {
                    (group.conj() * d_head_kva).re / magnitude / limit_kva
                } else {
                    0.0
                }
            }
        }
    }
}

/// Nodes from the candidate up to the first node, and the impedance from the
/// busbar to each: a node off the path shares the path's impedance down to
/// where it branches off, so its voltage falls with that of the branch point.
/// In the scratch's buffers, taken out (the caller puts them back).
fn candidate_path(
    base: &FeederBase,
    local: u32,
    scratch: &mut Scratch,
) -> (Vec<usize>, Vec<Complex64>) {
    let e = &base.electrical;
    let n = e.len();
    let mut path = std::mem::take(&mut scratch.path);
    path.clear();
    let mut at = local;
    while at != 0 && (at as usize) < n {
        path.push(at as usize);
        at = e.parent[at as usize];
    }
    let mut z_from_busbar = std::mem::take(&mut scratch.z_from_busbar);
    z_from_busbar.clear();
    z_from_busbar.resize(path.len(), Complex64::new(0.0, 0.0));
    let mut z = Complex64::new(0.0, 0.0);
    for (i, &p) in path.iter().enumerate().rev() {
        z += e.z_ohm[p];
        z_from_busbar[i] = z;
    }
    (path, z_from_busbar)
}

/// What every bound and estimate of the headroom at one candidate reads: the
/// base's rows of the candidate and its path, the limits, the load per kW.
#[derive(Clone, Copy)]
struct Estimator<'a> {
    base: &'a FeederBase,
    limits: &'a Limits,
    local: u32,
    load: &'a AddedLoad<'a>,
    shape: &'a [f64],
    path: &'a [usize],
    z_from_busbar: &'a [Complex64],
    /// The thermal limit, a fraction of a rating.
    thermal: f64,
    head_limit_a: Option<f64>,
    substation_limit_kva: f64,
    /// |1 + j tan(phi)|: kVA per kW of the new load.
    per_kw_magnitude: f64,
    nominal_kv: f64,
    /// The candidate's own runs over the steps, contiguous.
    voltage_kv: &'a [f32],
    path_margin_a: &'a [f32],
    path_voltage_room: &'a [f32],
    path_bottleneck: &'a [u32],
}

impl<'a> Estimator<'a> {
    fn new(
        engine: &'a Engine,
        base: &'a FeederBase,
        local: u32,
        load: &'a AddedLoad<'a>,
        shape: &'a [f64],
        path: &'a [usize],
        z_from_busbar: &'a [Complex64],
    ) -> Self {
        let limits = &base.limits;
        let e = &base.electrical;
        let steps = base.loads.step_count();
        let thermal = limits.thermal_pct / 100.0;
        let run = local as usize * steps..(local as usize + 1) * steps;
        Self {
            base,
            limits,
            local,
            load,
            shape,
            path,
            z_from_busbar,
            thermal,
            head_limit_a: e.head_rated_a.map(|a| a * thermal),
            substation_limit_kva: engine.group_rated_kva(base.group)
                * limits.substation_transformer_pct
                / 100.0,
            per_kw_magnitude: (1.0 + load.tan_phi * load.tan_phi).sqrt(),
            nominal_kv: e.nominal_kv[local as usize],
            voltage_kv: &base.voltage_kv[run.clone()],
            path_margin_a: &base.path_margin_a[run.clone()],
            path_voltage_room: &base.path_voltage_room[run.clone()],
            path_bottleneck: &base.path_bottleneck[run],
        }
    }

    /// Whether step `k` is judged at all: a step where the load draws nothing
    /// cannot bind, and one whose base flow collapsed is broken already.
    #[inline(always)]
    fn judged_at(&self, k: usize) -> bool {
        self.shape[k] > 0.0 && self.base.solutions[k].converged
    }

    /// The new load's current per kW at step `k`, A, at the candidate's voltage.
    #[inline(always)]
    fn amps_per_kw_at(&self, k: usize) -> f64 {
        self.shape[k] * self.per_kw_magnitude / (SQRT_3 * f64::from(self.voltage_kv[k]))
    }

    /// Lower bounds of the headroom at step `k` from the triangle inequality
    /// (no step can have less room than this): of every limit, of the voltage
    /// and of the substation.
    #[inline(always)]
    fn bounds_at(&self, k: usize) -> (f64, f64, f64) {
        let a = self.shape[k];
        let amps_per_kw = self.amps_per_kw_at(k);
        let thermal_bound = (f64::from(self.path_margin_a[k]) / amps_per_kw).max(0.0);
        // Per kW: the new current times the room per ohm.
        let voltage_bound = (f64::from(self.path_voltage_room[k]) * 1000.0 * self.nominal_kv
            / (SQRT_3 * amps_per_kw))
            .max(0.0);
        let substation_bound = if self.substation_limit_kva > 0.0 {
            let room = self.substation_limit_kva - self.base.group_kva[k].norm_sqr().sqrt();
            (room / (a * self.per_kw_magnitude)).max(0.0)
        } else {
            f64::INFINITY
        };
        (
            thermal_bound.min(voltage_bound).min(substation_bound),
            voltage_bound,
            substation_bound,
        )
    }

    /// The estimated headroom at step `k`, along the path. A limit whose lower
    /// bound at the step already exceeds `beyond` cannot bind there and is not
    /// estimated. The candidate's voltage and the path's bottleneck with its
    /// current come from a ranked step where there is one, else from the base.
    // Inlined into both loops that estimate a step: called, the fixture's
    // ranking ran 0.6% more instructions (callgrind).
    #[inline(always)]
    fn estimate_with(
        &self,
        k: usize,
        v_candidate: Complex64,
        (bottleneck, bottleneck_i_a): (usize, Complex64),
        voltage_bound: f64,
        substation_bound: f64,
        beyond: f64,
    ) -> f64 {
        let (base, limits) = (self.base, self.limits);
        let e = &base.electrical;
        let n = e.len();
        let a = self.shape[k];
        // Current drawn per kW added at the candidate, A.
        let per_kw = Complex64::new(a, -a * self.load.tan_phi) / (SQRT_3 * v_candidate.conj());
        let mut estimate = f64::INFINITY;
        if bottleneck != 0 {
            let limit = e.rated_a[bottleneck] * self.thermal;
            estimate = magnitude_root(bottleneck_i_a, per_kw, limit);
        }
        if let Some(limit) = self.head_limit_a {
            estimate = estimate.min(magnitude_root(base.head_i_a[k], per_kw, limit));
        }
        // Voltage: for each branch point p on the path, the lowest voltage of
        // its subtree falls at p's rate. Deeper nodes also appear in shallower
        // subtrees with a smaller rate, which never wins the minimum.
        let solution = &base.solutions[k];
        let subtree_min = &base.subtree_min_pu[k * n..(k + 1) * n];
        let voltage_path: &[usize] = if voltage_bound > beyond {
            &[]
        } else {
            self.path
        };
        for (i, &p) in voltage_path.iter().enumerate() {
            let v = solution.v_kv(p);
            let magnitude = v.norm_sqr().sqrt();
            let drop_per_kw = SQRT_3 * self.z_from_busbar[i] * per_kw / 1000.0;
            let slope_pu = -(drop_per_kw * v.conj()).re / magnitude / e.nominal_kv[p];
            if slope_pu < 0.0 {
                estimate = estimate
                    .min(((f64::from(subtree_min[p]) - limits.v_min_pu) / -slope_pu).max(0.0));
            }
        }
        if self.substation_limit_kva > 0.0 && substation_bound <= beyond {
            let per_kw_kva = Complex64::new(a, a * self.load.tan_phi);
            estimate = estimate.min(magnitude_root(
                base.group_kva[k],
                per_kw_kva,
                self.substation_limit_kva,
            ));
        }
        estimate
    }

    /// [`Self::estimate_with`] the base flow's own candidate voltage and bottleneck.
    #[inline(always)]
    fn estimate_at(&self, k: usize, voltage_bound: f64, substation_bound: f64, beyond: f64) -> f64 {
        let solution = &self.base.solutions[k];
        let bottleneck = self.path_bottleneck[k] as usize;
        self.estimate_with(
            k,
            solution.v_kv(self.local as usize),
            (bottleneck, solution.i_a(bottleneck)),
            voltage_bound,
            substation_bound,
            beyond,
        )
    }
}

/// The ratios 1 kW beyond a power flow that keeps every limit (`ratios`,
/// observed in `observed`), where the slope of check `which` alone decides
/// them: its ratio passes 1 with a twentieth of the slope to spare (far more
/// than the slope's error over 1 kW), and every other check stays clear of its
/// limit by more than it can move. `None` where a power flow must tell.
fn past_limit_at_next_kw(
    observed: &Observed,
    ratios: &[f64; 4],
    which: usize,
    slope: f64,
    limits: &crate::config::Limits,
) -> Option<[f64; 4]> {
    let predicted = ratios[which] + slope;
    if !(slope > 0.0 && predicted > 1.0 + 0.05 * slope) {
        return None;
    }
    // The slope of the voltage check is that of the lowest voltage.
    if which == 2 && limits.v_min_pu / observed.v_min_pu < observed.v_max_pu / limits.v_max_pu {
        return None;
    }
    let clear = 1.0 - crate::checks::TIE_TOLERANCE - 4.0 * slope - 1e-3;
    if (0..4).any(|j| j != which && ratios[j] >= clear) {
        return None;
    }
    let mut above = *ratios;
    above[which] = predicted;
    Some(above)
}

/// A root's bracket: the feasible (`g <= 0`) and the infeasible end, with
/// `g` there and what the secant reads there (as in the Illinois method, an
/// end left standing while the other moves twice running has its `g` halved:
/// where two checks take turns being the worst, `g` kinks, and a plain secant
/// crept up on a flat check's root a few kW a flow when a steep one's lay
/// beyond it).
struct Bracket {
    lo: (f64, f64),
    hi: (f64, f64),
    read: (f64, f64),
    /// Which end the last secant point moved: `Some(true)` the feasible one.
    moved_lo: Option<bool>,
}

impl Bracket {
    fn new(lo: (f64, f64), hi: (f64, f64)) -> Self {
        Self {
            lo,
            hi,
            read: (lo.1, hi.1),
            moved_lo: None,
        }
    }

    /// Moves the end on `x`'s side to `x`; `secant`: `x` is the secant's
    /// point, whose side alone tells whether the secant stalls (a probe
    /// just past it lands on its side by design).
    fn narrow(&mut self, (x, gx): (f64, f64), secant: bool) {
        let feasible = gx <= 0.0;
        if feasible {
            self.lo = (x, gx);
            self.read.0 = gx;
        } else {
            self.hi = (x, gx);
            self.read.1 = gx;
        }
        if !secant {
            return;
        }
        if self.moved_lo == Some(feasible) {
            if feasible {
                self.read.1 *= 0.5;
            } else {
                self.read.0 *= 0.5;
            }
        }
        self.moved_lo = Some(feasible);
    }

    /// The secant's root through the ends as read (the middle where it
    /// cannot tell).
    fn secant(&self) -> f64 {
        let ((lo, _), (hi, _)) = (self.lo, self.hi);
        let (g_lo, g_hi) = self.read;
        if g_hi.is_finite() && g_hi != g_lo {
            lo + (hi - lo) * (-g_lo) / (g_hi - g_lo)
        } else {
            0.5 * (lo + hi)
        }
    }
}

/// The largest `x` in [0, UNBOUNDED_KW] with `g(x) <= 0`, to 0.5 kW and never
/// under the largest whole kW, for a `g` that grows with `x` and is not
/// positive at 0; `guess` is an estimate of the root.
fn largest_feasible(guess: f64, mut g: impl FnMut(f64) -> f64) -> f64 {
    // The estimate, corrected by an earlier exact root, is usually within a few
    // tenths of a per cent of the root: bracket it tightly.
    let (mut lo, mut g_lo, mut hi, mut g_hi);
    if guess.is_finite() && guess > 0.0 {
        let at_guess = g(guess);
        if at_guess <= 0.0 {
            (lo, g_lo) = (guess, at_guess);
            hi = (guess * 1.005 + 1.0).min(UNBOUNDED_KW);
            g_hi = g(hi);
        } else {
            (hi, g_hi) = (guess, at_guess);
            lo = (guess * 0.995 - 1.0).max(0.0);
            g_lo = g(lo);
            if g_lo > 0.0 {
                (hi, g_hi) = (lo, g_lo);
                lo = 0.0;
                g_lo = g(0.0);
            }
        }
    } else {
        lo = 0.0;
        g_lo = g(0.0);
        hi = 1_000.0;
        g_hi = g(hi);
    }
    if g_lo > 0.0 {
        return 0.0;
    }
    while g_hi <= 0.0 {
        if hi >= UNBOUNDED_KW {
            return UNBOUNDED_KW;
        }
        let width = hi - lo;
        lo = hi;
        g_lo = g_hi;
        hi = (hi + 2.0 * width.max(1.0)).min(UNBOUNDED_KW);
        g_hi = g(hi);
    }
    // Secant steps, each followed by a probe just past the secant point towards
    // the other end: where g is nearly linear the root lies between the two, and
    // the bracket closes in two power flows.
    let mut bracket = Bracket::new((lo, g_lo), (hi, g_hi));
    for _ in 0..60 {
        let width = bracket.hi.0 - bracket.lo.0;
        if width <= 0.5 {
            break;
        }
        let margin = 0.01 * width;
        let x = bracket
            .secant()
            .clamp(bracket.lo.0 + margin, bracket.hi.0 - margin);
        let gx = g(x);
        let probe = if gx <= 0.0 { x + 0.45 } else { x - 0.45 };
        bracket.narrow((x, gx), true);
        if bracket.hi.0 - bracket.lo.0 > 0.5 && probe > bracket.lo.0 && probe < bracket.hi.0 {
            bracket.narrow((probe, g(probe)), false);
        }
    }
    // Callers take the whole kW under the root: where the bracket leaves the
    // next one open, a flow there settles it (else the answer would be a kW
    // short or not by where the search happened to stop).
    let whole = bracket.lo.0.floor() + 1.0;
    if whole >= 1.0 && whole < bracket.hi.0 && g(whole) <= 0.0 {
        return whole;
    }
    bracket.lo.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitude_root_solves_the_circle() {
        // |3 + x * 1| = 5 at x = 2.
        let x = magnitude_root(Complex64::new(3.0, 0.0), Complex64::new(1.0, 0.0), 5.0);
        assert!((x - 2.0).abs() < 1e-12);
        // |3j + x| = 5 at x = 4.
        let x = magnitude_root(Complex64::new(0.0, 3.0), Complex64::new(1.0, 0.0), 5.0);
        assert!((x - 4.0).abs() < 1e-12);
        assert_eq!(
            magnitude_root(Complex64::new(6.0, 0.0), Complex64::new(1.0, 0.0), 5.0),
            0.0
        );
    }

    #[test]
    fn refine_cut_keeps_the_least_estimates_and_the_tighter_of_its_two_limits() {
        let mut cut = RefineCut::new();
        assert_eq!(cut.cut(), f64::INFINITY);
        // Within the spread of the smallest: the spread limits the cut until
        // REFINED_STEPS estimates have come in.
        let mut offered = vec![1_000.0, 1_004.0, 1_002.0];
        for estimate in &offered {
            cut.offer(*estimate);
        }
        assert_eq!(cut.smallest(), 1_000.0);
        assert_eq!(cut.cut(), within_spread(1_000.0));
        // As many again, all within the spread: now the last of the
        // REFINED_STEPS least limits it.
        for i in 0..REFINED_STEPS {
            let estimate = 1_001.0 + i as f64 * 0.1;
            cut.offer(estimate);
            offered.push(estimate);
        }
        offered.sort_by(f64::total_cmp);
        let last_kept = offered[REFINED_STEPS - 1];
        assert!(last_kept < within_spread(1_000.0));
        assert_eq!(cut.least[0], 1_000.0);
        assert_eq!(cut.cut(), last_kept);
        assert!(
            cut.least.windows(2).all(|w| w[0] <= w[1]),
            "{:?}",
            cut.least
        );
        // A larger estimate changes nothing; a smaller one takes the lead.
        cut.offer(2_000.0);
        assert_eq!(cut.cut(), last_kept);
        cut.offer(900.0);
        assert_eq!(cut.smallest(), 900.0);
        assert_eq!(cut.cut(), within_spread(900.0));
    }

    /// The worst of two checks, as at a city node where the highest voltage,
    /// rising slowly, binds at `root` kW and a segment's loading, rising
    /// fast, only from `steep_from`: the excess kinks between them.
    pub(super) fn flat_below_steep(root: f64, steep_from: f64) -> impl Fn(f64) -> f64 {
        move |x| {
            let flat = 0.0226 * ((x / root) * (x / root) - 1.0);
            let steep = (x - steep_from) * 1e-4;
            flat.max(steep)
        }
    }

    #[test]
    fn largest_feasible_finds_the_root_where_a_flat_check_binds_below_a_steep_one() {
        for (root, steep_from, guess) in [
            (10_290.0, 10_370.0, 8_599.0),
            (4_444.0, 4_700.0, 3_000.0),
            (812.0, 2_000.0, 100.0),
            (2_000.0, 2_050.0, 2_100.0),
        ] {
            let g = flat_below_steep(root, steep_from);
            let mut flows = 0;
            let found = largest_feasible(guess, |x| {
                flows += 1;
                g(x)
            });
            assert!(found <= root && root - found <= 0.5, "{root}: {found}");
            assert_eq!(found.floor(), root.floor(), "{root}: {found}");
            assert!(flows <= 24, "{root}: {flows} flows");
        }
    }

    #[test]
    fn largest_feasible_finds_the_root_to_half_a_kilowatt() {
        for root in [0.7, 12.0, 333.3, 5_431.2, 80_000.0] {
            let found = largest_feasible(root * 0.8, |x| (x - root) / root);
            assert!(found <= root && root - found <= 0.5, "{root}: {found}");
            assert_eq!(found.floor(), root.floor(), "{root}: {found}");
        }
        assert_eq!(largest_feasible(10.0, |x| x - 2.0e6), UNBOUNDED_KW);
        assert_eq!(largest_feasible(10.0, |x| x + 1.0), 0.0);
    }
}
