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

use crate::base::{FLAT_STEPS, FeederBase, LOAD_ROOM_TAN_PHI, RankedStep};
use crate::chains::{CandidateFolding, SplitFolding};
use crate::checks::{CheckName, Figures, Observed, WorstChecks, first_broken};
use crate::config::Limits;
use crate::engine::Engine;
use crate::load_model::power_factor_tan;
use crate::powerflow::{
    ElectricalFeeder, LANES, SQRT_3, Solution, StepLoads, SweepLanes, SweepSettings, sweep,
    sweep_steps,
};
use estimate_lanes::EstimatesAhead;

mod estimate_lanes;
mod figures;
mod generation;

pub(crate) use figures::FigureOrders;
pub use generation::{AddedGeneration, EXPORT_CHECKS, ExportEvaluation};
pub(crate) use generation::{ExportRooms, transformer_root};

/// Headroom beyond this is reported as this: nothing on a distribution feeder
/// comes near it.
pub const UNBOUNDED_KW: f64 = 1.0e6;

/// How far above the smallest estimate another step's estimate may lie and
/// still bind, at the least, and per share of its line's estimate the
/// estimates' correction takes (see [`Estimator::estimate`]): what the
/// estimates leave out (the loads' second answer to their own, the losses'
/// part in the drop) is a small part of what they put in, and differs
/// between steps by a smaller part still. On a city feeder they correct the
/// line by 2-3 % and then lie within 0.1 % of the roots at every step; on an
/// N-1 case, a feeder fed through a tie from the far end of another, by up to
/// 9 %, and their error differs by 0.5 % between steps.
const STEP_SPREAD: f64 = 0.0025;
const SPREAD_PER_CORRECTION: f64 = 0.08;

/// How much further below the line through the base (which the bounds bound)
/// a step's estimate may lie than any step's estimated so far at the
/// candidate, at the least and per share of the line the correction takes.
/// The correction differs between a candidate's steps by up to 0.9 % on a
/// city feeder (most where a trunk binds: it carries most loads' answer), and
/// the steps estimated first (the least bounds) take about the largest. With
/// these margins, every city answer audited came out exact (58,732
/// candidates, normal and N-1 headroom); 2 % and a fifth did too, at 60 %
/// more time.
const CORRECTION_MARGIN: f64 = 0.005;
const MARGIN_PER_CORRECTION: f64 = 0.1;

/// Steps refined exactly at most, of those the estimate says can bind. Eight
/// overstated 120 of 58,732 city load headrooms (up to 0.7 % past a limit):
/// a dozen evening steps of a week came within the spread of estimates
/// without the loads' answer, and the one whose estimate erred most was cut
/// off.
const REFINED_STEPS: usize = 64;

/// Flows at a floor, at most, for the first steps whose estimates come under
/// it (see [`Engine::headroom_from`]).
const FLOOR_FLOWS: usize = 2;

/// What an evaluation of a point works out.
#[derive(Debug, Clone, Copy)]
enum Asked {
    /// The headroom in full, and the figures at the application's demand.
    Figures,
    /// The headroom alone, where it is not under a floor (see
    /// [`Engine::headroom_from`]) nor past a ceiling (see
    /// [`Engine::headroom_under`]).
    Headroom { floor_kw: f64, ceiling_kw: f64 },
}

impl Asked {
    /// The headroom alone, in full.
    fn headroom() -> Self {
        Self::Headroom {
            floor_kw: 0.0,
            ceiling_kw: f64::INFINITY,
        }
    }
}

/// What a step's estimate must come under to be refined: within the spread of
/// the smallest, and among the [`REFINED_STEPS`] smallest. A step whose lower
/// bound is above it cannot be refined, nor can any step of a larger bound.
struct RefineCut {
    /// The least estimates offered, ascending.
    least: [f64; REFINED_STEPS],
    /// The least share of its line's estimate a step's estimate has taken.
    share: f64,
    /// Past this no estimate is wanted (see [`Engine::headroom_under`]).
    ceiling: f64,
}

impl RefineCut {
    #[cfg(test)]
    fn new() -> Self {
        Self::under(f64::INFINITY)
    }

    /// A cut that also leaves out every estimate past `ceiling`.
    fn under(ceiling: f64) -> Self {
        Self {
            least: [f64::INFINITY; REFINED_STEPS],
            share: 1.0,
            ceiling,
        }
    }

    fn offer(&mut self, estimate: StepEstimate) {
        if estimate.kw.is_finite() && estimate.linear_kw > 0.0 {
            self.share = self.share.min(estimate.kw / estimate.linear_kw);
        }
        let kw = estimate.kw;
        let last = REFINED_STEPS - 1;
        if kw < self.least[last] {
            self.least[last] = kw;
            let mut i = last;
            while i > 0 && self.least[i] < self.least[i - 1] {
                self.least.swap(i, i - 1);
                i -= 1;
            }
        }
    }

    /// The spread past the smallest estimate within which a step may bind.
    fn spread(&self) -> f64 {
        STEP_SPREAD + SPREAD_PER_CORRECTION * (1.0 - self.share)
    }

    /// The largest estimate that may still bind.
    fn within(&self) -> f64 {
        within_spread(self.least[0], self.spread())
    }

    fn cut(&self) -> f64 {
        // The ceiling too, once an estimate has told the share: until then
        // a bound says too little of the estimate it bounds (a ceiling from
        // the start made the weakest-node search overstate 1,706 of the
        // city's 3,000 feeders by up to 1 %).
        let ceiling = if self.least[0].is_finite() {
            self.ceiling
        } else {
            f64::INFINITY
        };
        self.within()
            .min(self.least[REFINED_STEPS - 1])
            .min(ceiling)
    }

    /// The share of a step's line estimate below which its estimate is
    /// taken not to lie.
    fn floor(&self) -> f64 {
        self.share * (1.0 - CORRECTION_MARGIN - MARGIN_PER_CORRECTION * (1.0 - self.share))
    }

    /// Whether a step whose line's estimate is at least `bound` cannot come
    /// under the cut.
    fn rules_out(&self, bound: f64) -> bool {
        bound * self.floor() > self.cut()
    }

    /// The line's estimate past which a step's estimate lies beyond the cut.
    fn linear_cut(&self) -> f64 {
        self.cut() / self.floor()
    }
}

/// The largest estimate that may still bind, given the smallest.
fn within_spread(smallest_kw: f64, spread: f64) -> f64 {
    smallest_kw * (1.0 + spread) + 1.0
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

/// The tree a candidate's flows are solved on: its feeder, or the feeder
/// folded for it (see [`FeederBase::flow_folding`]).
#[derive(Clone, Copy)]
struct FlowTree<'a> {
    e: &'a ElectricalFeeder,
    folding: Option<CandidateFolding<'a>>,
}

impl<'a> FlowTree<'a> {
    /// The tree of `base`'s candidate whose folding is split as `split` says
    /// (see [`CandidateTree::split`]).
    fn of(base: &'a FeederBase, split: Option<&'a SplitFolding>) -> Self {
        match base.flow_folding() {
            Some(folding) => {
                let folding = CandidateFolding {
                    base: folding,
                    split,
                };
                Self {
                    e: folding.folded(),
                    folding: Some(folding),
                }
            }
            None => Self {
                e: &base.electrical,
                folding: None,
            },
        }
    }

    /// The tree's node for the feeder's local node `j`, which is loaded or
    /// the candidate (a candidate's folding keeps both).
    #[inline]
    fn at(&self, j: u32) -> u32 {
        self.folding.map_or(j, |f| f.kept(j as usize))
    }

    /// The feeder's local node of the tree's node `j`.
    #[inline]
    fn whole(&self, j: usize) -> usize {
        self.folding.map_or(j, |f| f.whole_of(j))
    }
    /// Of a buffer for flows on a folded tree and one for flows on the
    /// feeder itself, the one this tree's flows go to.
    fn pick<T>(&self, folded: T, whole: T) -> T {
        if self.folding.is_some() {
            folded
        } else {
            whole
        }
    }
}

/// The feeder folded for the last candidate whose flows were solved: its
/// base's folding split at the candidate, where it lies in a chain. Most of
/// a GIS feeder's nodes are poles on lines, which a sweep of the whole
/// feeder walks at every iteration; each flow solved folded is judged as the
/// whole feeder's (see [`CandidateFolding::extremes`]), so its figures name
/// the feeder's own nodes and branches.
#[derive(Default)]
struct CandidateTree {
    /// The base (by its uid) and the candidate `split` is for.
    made_for: Option<(u64, u32)>,
    split: SplitFolding,
    /// Whether the candidate lies in a chain of its base's folding (`split`
    /// holds the tree); otherwise the base's folding is the tree.
    is_split: bool,
}

impl CandidateTree {
    fn fold_for(&mut self, base: &FeederBase, local: u32) {
        let key = (base.uid, local);
        if self.made_for == Some(key) {
            return;
        }
        self.made_for = Some(key);
        self.is_split = base.flow_folding().is_some_and(|folding| {
            folding.split_at(&base.electrical, local as usize, &mut self.split)
        });
    }
    /// The split of the base's folding the candidate's tree is, if any.
    fn split(&self) -> Option<&SplitFolding> {
        self.is_split.then_some(&self.split)
    }
}

/// Scratch space for power flows, reused across calls.
#[derive(Default)]
struct Scratch {
    p: Vec<f64>,
    q: Vec<f64>,
    solution: Solution,
    path_up: Vec<(u32, Complex64)>,
    shift: Vec<Complex64>,
    /// Linearised response of branch currents and node voltages, per kW.
    d_current: Vec<Complex64>,
    d_voltage: Vec<Complex64>,
    /// The loads answering a voltage change: (local node, current, 1 / voltage).
    responding: Vec<(u32, Complex64, Complex64)>,
    /// The candidate's path to the busbar.
    path: CandidatePath,
    /// Per run of that path, the loads' answer below its branches per kW
    /// (see [`Estimator::estimate`]).
    path_answers: Vec<Complex64>,
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
    /// The tree the flows of the last candidate are solved on, and the last
    /// flow solved on it where it is folded (and of [`Engine::exact_lanes`]).
    tree: CandidateTree,
    folded_solution: Solution,
    folded_lane_solutions: [Solution; LANES],
}

impl Scratch {
    /// The last flow [`Engine::exact`] solved on `base`: on the tree it was
    /// solved on, whose node 0 is the feeder's busbar.
    fn last_flow(&self, base: &FeederBase) -> &Solution {
        FlowTree::of(base, self.tree.split()).pick(&self.folded_solution, &self.solution)
    }

    /// The last flows [`Engine::exact_lanes`] solved on `base`, as
    /// [`Self::last_flow`] has the last single one.
    fn last_lane_flows(&self, base: &FeederBase) -> &[Solution; LANES] {
        FlowTree::of(base, self.tree.split())
            .pick(&self.folded_lane_solutions, &self.lane_solutions)
    }

    /// Takes back the buffers [`Engine::estimates`] took, where it stops
    /// early (an answer under the floor).
    fn give_back(
        &mut self,
        estimates: Vec<(f64, usize)>,
        answers: Vec<Complex64>,
        bounds: Option<Vec<(usize, f64, f64, f64)>>,
    ) {
        self.estimates = estimates;
        self.path_answers = answers;
        if let Some(bounds) = bounds {
            self.bounds = bounds;
        }
    }
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

    /// A full power flow of step `k` with `x` kW (shaped) added at `local`,
    /// solved on the feeder folded for the candidate where that folds (see
    /// [`CandidateTree`]), into `scratch.folded_solution`, or else into
    /// `scratch.solution` (see [`Scratch::last_flow`]).
    fn exact(
        &self,
        base: &FeederBase,
        k: usize,
        local: u32,
        x_kw: f64,
        load: &AddedLoad<'_>,
        scratch: &mut Scratch,
    ) -> Observed {
        scratch.tree.fold_for(base, local);
        let Scratch {
            p,
            q,
            solution,
            path_up,
            shift,
            tree,
            folded_solution,
            ..
        } = scratch;
        let flow_tree = FlowTree::of(base, tree.split());
        let on_tree = flow_tree.pick(&mut *folded_solution, &mut *solution);
        let at = flow_tree.at(local);
        self.exact_start(
            base, flow_tree, k, at, x_kw, load, p, q, on_tree, path_up, shift,
        );
        sweep(
            flow_tree.e,
            p,
            q,
            base.loads.source_kv[k],
            SweepSettings::default(),
            on_tree,
        );
        let added = base.head_kva_added(k, on_tree);
        match flow_tree.folding {
            // Judged on the folded tree itself: unfolding every flow onto
            // the whole feeder took longer than its sweep.
            Some(folding) => {
                let extremes = folding.extremes(&base.electrical, on_tree);
                self.observed_of(base, k, &extremes, on_tree, added)
            }
            None => self.observe(base, k, on_tree, added),
        }
    }

    /// [`Self::exact`] of up to [`LANES`] steps `ks` at once, a lane each
    /// (one sweep of the tree for all; each lane's flow is, to the last bit,
    /// what [`Self::exact`] solves for its step alone; see
    /// [`Scratch::last_lane_flows`]). A short batch repeats its last step in
    /// the spare lanes.
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
        scratch.tree.fold_for(base, local);
        let Scratch {
            path_up,
            shift,
            lane_loads,
            lane_sweep,
            lane_solutions,
            tree,
            folded_lane_solutions,
            ..
        } = scratch;
        let flow_tree = FlowTree::of(base, tree.split());
        let on_tree = flow_tree.pick(&mut *folded_lane_solutions, &mut *lane_solutions);
        let at = flow_tree.at(local);
        let lane_k: [usize; LANES] = std::array::from_fn(|l| ks[l.min(ks.len() - 1)]);
        for l in 0..LANES {
            self.exact_start(
                base,
                flow_tree,
                lane_k[l],
                at,
                x_kw[l.min(ks.len() - 1)],
                load,
                &mut lane_loads.p_kw[l],
                &mut lane_loads.q_kvar[l],
                &mut on_tree[l],
                path_up,
                shift,
            );
            lane_loads.source_kv[l] = base.loads.source_kv[lane_k[l]];
        }
        sweep_steps(
            flow_tree.e,
            lane_loads,
            SweepSettings::default(),
            lane_sweep,
            on_tree,
        );
        let added: [Complex64; LANES] =
            std::array::from_fn(|l| base.head_kva_added(lane_k[l], &on_tree[l]));
        match flow_tree.folding {
            // Judged folded, as `Self::exact` judges its flow.
            Some(folding) => std::array::from_fn(|l| {
                let extremes = folding.extremes(&base.electrical, &on_tree[l]);
                self.observed_of(base, lane_k[l], &extremes, &on_tree[l], added[l])
            }),
            None => self.observe_steps(base, lane_k, std::array::from_fn(|l| &on_tree[l]), added),
        }
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

    /// The loads of step `k` with `x_kw` (shaped) added at `at` (a node of
    /// `tree`), into `p` and `q`, and the flow an exact solve of them starts
    /// from, into `solution`, all on `tree`.
    #[allow(clippy::too_many_arguments)]
    fn exact_start(
        &self,
        base: &FeederBase,
        tree: FlowTree<'_>,
        k: usize,
        local: u32,
        x_kw: f64,
        load: &AddedLoad<'_>,
        p: &mut Vec<f64>,
        q: &mut Vec<f64>,
        solution: &mut Solution,
        path_up: &mut Vec<(u32, Complex64)>,
        shift: &mut Vec<Complex64>,
    ) {
        let e = tree.e;
        let n = e.len();
        p.resize(n, 0.0);
        q.resize(n, 0.0);
        self.base_node_loads_at(base, k, p, q, |j| tree.at(j) as usize);
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
        match tree.folding {
            Some(folding) => {
                let whole = &folding.whole_nodes()[..n];
                base.solutions[k].start_into_nodes(n, |f| whole[f] as usize, solution);
            }
            None => base.solutions[k].start_into_nodes(n, |f| f, solution),
        }
        let v_candidate = solution.v_kv[local as usize];
        let added_conj_kva = Complex64::new(x_kw, -x_kw * load.tan_phi);
        let mut added_current = added_conj_kva / (SQRT_3 * v_candidate.conj());
        // The path from the candidate up; local indices put parents first, so
        // read backwards it comes in the order of the walk below.
        path_up.clear();
        let mut at = local as usize;
        let mut z_path = Complex64::new(0.0, 0.0);
        while at != 0 && at < n {
            path_up.push((at as u32, Complex64::new(0.0, 0.0)));
            z_path += e.z_ohm[at];
            at = e.parent[at] as usize;
        }
        // The new load draws its power at the voltage its own current lowers:
        // its current at the candidate's voltage after that drop.
        let v_after = v_candidate - SQRT_3 / 1000.0 * z_path * added_current;
        if v_after.norm_sqr() > 0.25 * v_candidate.norm_sqr() {
            added_current = added_conj_kva / (SQRT_3 * v_after.conj());
        }
        // Every constant-power load answers the drop with more current
        // (`dI = -I conj(dV / V)`): the loads that leave the path at a node
        // see that node's drop, and their answer runs up the path above it.
        // In the start, it saves the sweep an iteration where the new load
        // is large: a city ranking's flows took 3.21 sweeps each without it,
        // 2.70 with it.
        let stored = &base.solutions[k];
        let mut z_from_busbar = z_path;
        let mut below = Complex64::new(0.0, 0.0);
        let mut response = Complex64::new(0.0, 0.0);
        for (node, carried) in path_up.iter_mut() {
            let j = *node as usize;
            let into = stored.i_a(tree.whole(j));
            let branching_off = into - below;
            below = into;
            let v = stored.v_kv(tree.whole(j));
            let drop = SQRT_3 / 1000.0 * z_from_busbar * added_current;
            response += branching_off * (drop.conj() * v) * v.norm_sqr().recip();
            *carried = added_current + response;
            z_from_busbar -= e.z_ohm[j];
        }
        shift.resize(n, Complex64::new(0.0, 0.0));
        shift[0] = Complex64::new(0.0, 0.0);
        let mut next_on_path = path_up.pop();
        for j in 1..n {
            let mut own = shift[e.parent[j] as usize];
            if let Some((node, carried)) = next_on_path
                && node == j as u32
            {
                own -= SQRT_3 / 1000.0 * e.z_ohm[j] * carried;
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
        self.evaluate_point_with(base, local, demand_kw, load, Asked::Figures)
            .expect("nothing lies under a floor of none")
    }

    /// The headroom at the node at `local` of feeder `base` and the check that
    /// limits it, without the figures at a demand (`after` is the base case).
    pub fn headroom_at(
        &self,
        base: &FeederBase,
        local: u32,
        load: &AddedLoad<'_>,
    ) -> (f64, CheckName) {
        let e = self
            .evaluate_point_with(base, local, 0.0, load, Asked::headroom())
            .expect("nothing lies under a floor of none");
        (e.headroom_kw, e.binding)
    }

    /// [`Self::headroom_at`] for a caller that wants the largest of several
    /// headrooms and has one of `floor_kw` already (a whole kW): `None`
    /// where it lies under the floor.
    ///
    /// A step whose estimate comes under the floor is solved at the floor
    /// first: where that breaks a check, nothing more is worked out.
    /// Otherwise the answer is [`Self::headroom_at`]'s. (A cap, the normal
    /// headroom for N-1, is not used the same way: the estimates err against
    /// an exact figure by more than against each other, and a cap a kW past
    /// the root ruled out the step that binds; checking steps at the cap first
    /// cost more than it saved where several cases reach it.)
    pub(crate) fn headroom_from(
        &self,
        base: &FeederBase,
        local: u32,
        load: &AddedLoad<'_>,
        floor_kw: f64,
    ) -> Option<(f64, CheckName)> {
        self.headroom_within(base, local, load, floor_kw, f64::INFINITY)
    }

    /// [`Self::headroom_at`] for a caller that wants the least of several
    /// headrooms and has one already: `None` where every step's estimate
    /// lies past `ceiling_kw` (a caller sets it far enough past the least it
    /// has that the estimates' error cannot bring a headroom under that:
    /// see `capacity::WEAKER_ESTIMATE_MARGIN`). Once one step is estimated, no
    /// step whose bound puts its estimate past the ceiling is estimated.
    pub fn headroom_under(
        &self,
        base: &FeederBase,
        local: u32,
        load: &AddedLoad<'_>,
        ceiling_kw: f64,
    ) -> Option<(f64, CheckName)> {
        self.headroom_within(base, local, load, 0.0, ceiling_kw)
    }

    fn headroom_within(
        &self,
        base: &FeederBase,
        local: u32,
        load: &AddedLoad<'_>,
        floor_kw: f64,
        ceiling_kw: f64,
    ) -> Option<(f64, CheckName)> {
        let asked = Asked::Headroom {
            floor_kw,
            ceiling_kw,
        };
        self.evaluate_point_with(base, local, 0.0, load, asked)
            .map(|e| (e.headroom_kw, e.binding))
    }

    fn evaluate_point_with(
        &self,
        base: &FeederBase,
        local: u32,
        demand_kw: f64,
        load: &AddedLoad<'_>,
        asked: Asked,
    ) -> Option<PointEvaluation> {
        with_scratch(|scratch| self.evaluate_point_in(base, local, demand_kw, load, asked, scratch))
    }

    fn evaluate_point_in(
        &self,
        base: &FeederBase,
        local: u32,
        demand_kw: f64,
        load: &AddedLoad<'_>,
        asked: Asked,
        scratch: &mut Scratch,
    ) -> Option<PointEvaluation> {
        let (with_figures, floor_kw, ceiling_kw) = match asked {
            Asked::Figures => (true, 0.0, f64::INFINITY),
            Asked::Headroom {
                floor_kw,
                ceiling_kw,
            } => (false, floor_kw, ceiling_kw),
        };
        let shape = self.shape(base, load);
        let before = base.summary.before;
        let path = candidate_path(base, local, scratch);
        let estimator = Estimator::new(self, base, local, load, &shape, &path);
        // Where a limit is broken without the new load, there is no headroom to
        // find: only the figures.
        let find_headroom = base.summary.already_broken.is_none();
        let Some((mut estimates, within)) =
            self.estimates(&estimator, find_headroom, floor_kw, ceiling_kw, scratch)
        else {
            scratch.path = path;
            return None;
        };
        if find_headroom && estimates.iter().all(|(kw, _)| *kw > ceiling_kw) {
            scratch.estimates = estimates;
            scratch.path = path;
            return None;
        }

        // Figures at the application's demand, over every step.
        let worst = if with_figures {
            self.figures_at_demand(base, local, &path, demand_kw, load, &shape, scratch)
        } else {
            base.summary.worst
        };
        scratch.path = path;
        let after = Figures::of_worst(&worst);

        if let Some(binding) = base.summary.already_broken {
            scratch.estimates = estimates;
            return Some(PointEvaluation {
                headroom_kw: 0.0,
                binding,
                already_broken: true,
                before,
                after,
                worst,
            });
        }

        let (headroom, binding) =
            self.exact_headroom(base, local, load, &shape, &mut estimates, within, scratch);
        scratch.estimates = estimates;
        Some(PointEvaluation {
            headroom_kw: headroom,
            binding,
            already_broken: false,
            before,
            after,
            worst,
        })
    }

    /// Estimated headroom of the steps that may bind, `(estimate, step)`, and
    /// the largest estimate that may still bind (within the spread of the
    /// smallest). A flat load is judged at the node's ranked
    /// steps, least room first, until a step's bound rules out it and every
    /// later one; the whole window is needed only when the ranked steps run out
    /// first and the room of those left out does not rule them out.
    ///
    /// `None` where a step whose estimate came under `floor_kw` breaks a
    /// check at it: the headroom lies under the floor.
    fn estimates(
        &self,
        estimator: &Estimator<'_>,
        find_headroom: bool,
        floor_kw: f64,
        ceiling_kw: f64,
        scratch: &mut Scratch,
    ) -> Option<(Vec<(f64, usize)>, f64)> {
        let Estimator {
            base,
            limits,
            local,
            load,
            shape,
            per_kw_magnitude,
            within_load_room,
            ..
        } = *estimator;
        // A flow at the floor for each of the first steps estimated under it:
        // the estimate errs by a few per cent at most, so one under the floor
        // by more is nearly always confirmed by the first.
        let mut floor_flows = if floor_kw > 0.0 { FLOOR_FLOWS } else { 0 };
        let mut under_floor = |estimate: f64, k: usize, scratch: &mut Scratch| {
            if estimate >= floor_kw || floor_flows == 0 {
                return false;
            }
            floor_flows -= 1;
            self.exact(base, k, local, floor_kw * shape[k], load, scratch)
                .worst_ratio(limits)
                > 1.0
        };
        let steps = base.loads.step_count();
        let mut estimates = std::mem::take(&mut scratch.estimates);
        estimates.clear();
        let mut within = f64::INFINITY;
        let mut answers = std::mem::take(&mut scratch.path_answers);
        // The ranked steps are ranked by the load room.
        let mut every_step = load.profile.is_some()
            || steps == 0
            || self.config.judge_every_step
            || !within_load_room;
        let mut cut = RefineCut::under(ceiling_kw);
        // Where the ranked steps run out, the whole window's pass takes up
        // from their estimates and cut, leaving these steps (ascending) out:
        // estimating them again was a third of that pass's estimates.
        let mut judged_ranked = [u32::MAX; FLAT_STEPS];
        let mut judged_ranked_count = 0;
        let mut ahead = EstimatesAhead::new();
        if !every_step {
            let ranked_steps = base.flat_steps(local);
            let ranked = &ranked_steps.steps[..];
            // Without headroom to find, no step is left to rule out.
            let mut ruled_out = !find_headroom;
            let to_judge = if find_headroom { ranked } else { &[] };
            let room_kw =
                |step: &RankedStep| (f64::from(step.room_kva) / per_kw_magnitude).max(0.0);
            // The bounds of `bounds_at` for a flat load, from the ranked step.
            let step_bounds = |step: &RankedStep| {
                let k = step.step as usize;
                (
                    k,
                    (f64::from(step.voltage_room_kva) / per_kw_magnitude).max(0.0),
                    (base.substation_room_kva[k] / per_kw_magnitude).max(0.0),
                )
            };
            for (at, ranked_step) in to_judge.iter().enumerate() {
                if cut.rules_out(room_kw(ranked_step)) {
                    ruled_out = true;
                    break;
                }
                if !estimator.judged_at(ranked_step.step as usize) {
                    continue;
                }
                let upcoming = to_judge[at + 1..]
                    .iter()
                    .take_while(|step| !cut.rules_out(room_kw(step)))
                    .filter(|step| estimator.judged_at(step.step as usize))
                    .map(step_bounds);
                let (k, voltage_bound, substation_bound) = step_bounds(ranked_step);
                let estimate = estimator.estimate_ahead(
                    &mut ahead,
                    (k, voltage_bound, substation_bound),
                    upcoming,
                    cut.linear_cut(),
                    &mut answers,
                );
                if under_floor(estimate.kw, k, scratch) {
                    scratch.give_back(estimates, answers, None);
                    return None;
                }
                cut.offer(estimate);
                estimates.push((estimate.kw, k));
            }
            within = cut.within();
            let left_out_kw = ranked_steps.cutoff_kva / per_kw_magnitude;
            every_step = !ruled_out && !cut.rules_out(left_out_kw);
            if every_step {
                // None was ruled out, so every ranked step was judged.
                judged_ranked_count = ranked.len();
                for (slot, ranked_step) in judged_ranked.iter_mut().zip(ranked) {
                    *slot = ranked_step.step;
                }
                judged_ranked[..judged_ranked_count].sort_unstable();
            }
        }
        if every_step {
            // Pass 1, a few operations per step: the bounds, the rough figures.
            // Entries: (step, bound, voltage bound, substation bound).
            let mut bounds = std::mem::take(&mut scratch.bounds);
            bounds.clear();
            let mut judged_before = judged_ranked[..judged_ranked_count].iter().peekable();
            for k in (0..steps).filter(|_| find_headroom) {
                if judged_before.next_if(|&&j| j as usize == k).is_some() || !estimator.judged_at(k)
                {
                    continue;
                }
                let (bound, voltage_bound, substation_bound) = estimator.bounds_at(k);
                bounds.push((k, bound, voltage_bound, substation_bound));
            }
            // Pass 2, along the path: the estimated headroom of the steps whose
            // lower bound does not already rule them out, least bound first, so
            // that the first bound past the cut ends it: where a load's room
            // hardly changes over the window, hundreds of steps come within the
            // spread, and only the few that can be refined need an estimate.
            let ordered = bounds.len().min(ORDERED_BOUNDS);
            if bounds.len() > ordered {
                bounds.select_nth_unstable_by(ordered, |a, b| a.1.total_cmp(&b.1));
            }
            bounds[..ordered].sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
            for (i, &(k, bound, voltage_bound, substation_bound)) in bounds.iter().enumerate() {
                if cut.rules_out(bound) {
                    if i < ordered {
                        break;
                    }
                    continue;
                }
                // The next steps this walk estimates unless an estimate
                // before them lowers the cut.
                let upcoming = bounds[i + 1..]
                    .iter()
                    .enumerate()
                    .take_while(|&(j, step)| i + 1 + j >= ordered || !cut.rules_out(step.1))
                    .filter(|(_, step)| !cut.rules_out(step.1))
                    .map(|(_, &(k, _, voltage_bound, substation_bound))| {
                        (k, voltage_bound, substation_bound)
                    });
                let estimate = estimator.estimate_ahead(
                    &mut ahead,
                    (k, voltage_bound, substation_bound),
                    upcoming,
                    cut.linear_cut(),
                    &mut answers,
                );
                if under_floor(estimate.kw, k, scratch) {
                    scratch.give_back(estimates, answers, Some(bounds));
                    return None;
                }
                cut.offer(estimate);
                estimates.push((estimate.kw, k));
            }
            within = cut.within();
            scratch.bounds = bounds;
        }
        scratch.path_answers = answers;
        Some((estimates, within))
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
        within: f64,
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
        let refined = &estimates[..estimates.len().min(REFINED_STEPS)];
        let mut checked = ChecksAhead::new();
        for (i, &(estimate, k)) in refined.iter().enumerate() {
            // None is the least a step can take (see the same in
            // `evaluate_export_at_steps`).
            if estimate > within || headroom <= 0.0 {
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
                // One power flow tells whether this step takes what another
                // allows. Most do, so the next steps' flows at the same
                // headroom are solved with this one, a lane each.
                let at_headroom = match checked.worst_ratio(k, headroom) {
                    Some(ratio) => ratio,
                    None => {
                        let next = refined[i..]
                            .iter()
                            .take_while(|&&(estimate, _)| estimate <= within)
                            .map(|&(_, k)| k);
                        checked.solve(self, base, local, headroom, next, load, shape, scratch)
                    }
                };
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

/// The flows that check steps at the headroom found (see
/// [`Engine::exact_headroom`]), solved a lane per step ahead of the walk
/// that reads them.
struct ChecksAhead {
    /// The headroom they were solved at (NaN before any).
    at_kw: f64,
    steps: [usize; LANES],
    worst_ratios: [f64; LANES],
}

impl ChecksAhead {
    fn new() -> Self {
        Self {
            at_kw: f64::NAN,
            steps: [usize::MAX; LANES],
            worst_ratios: [f64::NAN; LANES],
        }
    }

    /// Step `k`'s worst ratio at `headroom_kw`, where it was solved ahead.
    fn worst_ratio(&self, k: usize, headroom_kw: f64) -> Option<f64> {
        if self.at_kw.to_bits() != headroom_kw.to_bits() {
            return None;
        }
        let l = self.steps.iter().position(|&s| s == k)?;
        Some(self.worst_ratios[l])
    }

    /// Solves the first of `steps` (the step to check now) at `headroom_kw`,
    /// and the next [`LANES`] less one with it where there are any, and
    /// returns the first's worst ratio. Each lane's flow is to the last bit
    /// the flow [`Engine::exact`] solves alone, so the verdicts are the
    /// same.
    #[allow(clippy::too_many_arguments)]
    fn solve(
        &mut self,
        engine: &Engine,
        base: &FeederBase,
        local: u32,
        headroom_kw: f64,
        mut steps: impl Iterator<Item = usize>,
        load: &AddedLoad<'_>,
        shape: &[f64],
        scratch: &mut Scratch,
    ) -> f64 {
        let limits = &base.limits;
        let mut ks = [usize::MAX; LANES];
        let mut count = 0;
        for (slot, k) in ks.iter_mut().zip(&mut steps) {
            *slot = k;
            count += 1;
        }
        if count < 2 {
            // One flow alone: a lane sweep of one costs more.
            self.at_kw = f64::NAN;
            return engine
                .exact(
                    base,
                    ks[0],
                    local,
                    headroom_kw * shape[ks[0]],
                    load,
                    scratch,
                )
                .worst_ratio(limits);
        }
        let ks = &ks[..count];
        let x = std::array::from_fn(|l| headroom_kw * shape[ks[l.min(count - 1)]]);
        let flows = engine.exact_lanes(base, ks, local, x, load, scratch);
        self.at_kw = headroom_kw;
        self.steps = std::array::from_fn(|l| ks.get(l).copied().unwrap_or(usize::MAX));
        self.worst_ratios = std::array::from_fn(|l| flows[l].worst_ratio(limits));
        self.worst_ratios[0]
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
        let Scratch {
            p,
            q,
            solution,
            d_current,
            d_voltage,
            responding,
            tree,
            folded_solution,
            ..
        } = scratch;
        // Worked out on the tree the flow was solved on (see `Self::exact`),
        // and read at the feeder's nodes from there.
        let flow_tree = FlowTree::of(base, tree.split());
        let (e, whole) = (flow_tree.e, &base.electrical);
        let n = e.len();
        let flow = flow_tree.pick(&*folded_solution, &*solution);
        let v_kv = &flow.v_kv;
        let local = flow_tree.at(local);
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
        let carried = |j: usize| flow_tree.folding.map_or(j, |folding| folding.carries(j));
        let current_slope = |at: usize, limit_a: f64| {
            let current = flow.i_a[carried(at)];
            let magnitude = current.norm_sqr().sqrt();
            if magnitude > 0.0 && limit_a > 0.0 {
                (current.conj() * d_current[carried(at)]).re / magnitude / limit_a
            } else {
                0.0
            }
        };
        let thermal = limits.thermal_pct / 100.0;
        match which {
            0 => {
                let at = observed.segment_at as usize;
                current_slope(at, whole.rated_a[at] * thermal)
            }
            1 => whole
                .head_rated_a
                .map_or(0.0, |rated| current_slope(0, rated * thermal)),
            2 => {
                let at = observed.v_min_at as usize;
                let v = match flow_tree.folding {
                    Some(folding) => folding.voltage_at(flow, at),
                    None => flow.v_kv[at],
                };
                let magnitude_2 = v.norm_sqr();
                if magnitude_2 <= 0.0 {
                    return 0.0;
                }
                let d_v = match flow_tree.folding {
                    Some(folding) => {
                        let (from, drop) = folding.voltage_from(at);
                        d_voltage[from] - drop * d_current[carried(at)]
                    }
                    None => d_voltage[at],
                };
                // The ratio is v_min nominal / |V|; d|V| = Re(conj(V) dV) / |V|.
                let magnitude_slope = (v.conj() * d_v).re / magnitude_2.sqrt();
                -limits.v_min_pu * whole.nominal_kv[at] / magnitude_2 * magnitude_slope
            }
            _ => {
                let rated = self.group_rated_kva(base.group);
                if rated <= 0.0 {
                    return 0.0;
                }
                let limit_kva = rated * limits.substation_transformer_pct / 100.0;
                let group = base.group_kva[k] + base.head_kva_added(k, flow);
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

/// A candidate's path up to the busbar: its nodes, the impedance from the
/// busbar to each (a node off the path shares the path's impedance down to
/// where it branches off, so its voltage falls with that of the branch
/// point), and its runs of branches in series.
#[derive(Default)]
struct CandidatePath {
    /// Nodes from the candidate up to the first node.
    nodes: Vec<usize>,
    z_from_busbar: Vec<Complex64>,
    /// The path cut into runs of branches that carry one current (see
    /// [`FeederBase::in_series`]), from the candidate up. A GIS path is
    /// mostly poles that carry the current of the branch below them, bit for
    /// bit, with nothing hanging off them: a walk that offers each branch's
    /// limit and sums each branch's drop does the same once per run.
    runs: Vec<PathRun>,
    /// Per node of the path, its run.
    run_of: Vec<u32>,
}

/// Branches in series along a candidate's path (see [`CandidatePath::runs`]).
#[derive(Clone, Copy, Debug)]
struct PathRun {
    /// The path index of its lowest node, whose inbound current every branch
    /// of the run carries and where whatever branches off the path below the
    /// run's top does.
    at: u32,
    /// That node.
    node: u32,
    /// The run's impedance, ohm, and the sum of its branches' magnitudes.
    z_ohm: Complex64,
    z_abs_ohm: f64,
    /// Its least rated branch's node (the lowest where several are, as a
    /// scan up the path names it): carrying the run's current, it is the
    /// run's most loaded.
    weakest: u32,
}

impl CandidatePath {
    /// The path of `local` in `base`, in the buffers of `self`.
    fn trace(&mut self, base: &FeederBase, local: u32) {
        let e = &base.electrical;
        let n = e.len();
        let Self {
            nodes,
            z_from_busbar,
            runs,
            run_of,
        } = self;
        nodes.clear();
        runs.clear();
        run_of.clear();
        base.tell_series_up(local);
        let mut at = local;
        while at != 0 && (at as usize) < n {
            let p = at as usize;
            let z = e.z_ohm[p];
            match runs.last_mut() {
                Some(run) if base.in_series(p) => {
                    run.z_ohm += z;
                    run.z_abs_ohm += magnitude(z);
                    if e.inv_rated_a_2[p] > e.inv_rated_a_2[run.weakest as usize] {
                        run.weakest = at;
                    }
                }
                _ => runs.push(PathRun {
                    at: nodes.len() as u32,
                    node: at,
                    z_ohm: z,
                    z_abs_ohm: magnitude(z),
                    weakest: at,
                }),
            }
            run_of.push((runs.len() - 1) as u32);
            nodes.push(p);
            at = e.parent[p];
        }
        z_from_busbar.clear();
        z_from_busbar.resize(nodes.len(), Complex64::new(0.0, 0.0));
        let mut z = Complex64::new(0.0, 0.0);
        for (i, &p) in nodes.iter().enumerate().rev() {
            z += e.z_ohm[p];
            z_from_busbar[i] = z;
        }
    }
}

/// `local`'s path in `base`, in the scratch's buffer, taken out (the caller
/// puts it back).
fn candidate_path(base: &FeederBase, local: u32, scratch: &mut Scratch) -> CandidatePath {
    let mut path = std::mem::take(&mut scratch.path);
    path.trace(base, local);
    path
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
    path: &'a CandidatePath,
    /// The thermal limit, a fraction of a rating.
    thermal: f64,
    head_limit_a: Option<f64>,
    substation_limit_kva: f64,
    /// |1 + j tan(phi)|: kVA per kW of the new load.
    per_kw_magnitude: f64,
    nominal_kv: f64,
    /// The candidate's own runs over the steps, contiguous.
    voltage_kv: &'a [f32],
    /// Whether the load's current lies within the directions the base's
    /// load room holds for (its power factor is not below
    /// [`LOAD_ROOM_TAN_PHI`]'s).
    within_load_room: bool,
    /// What the load's current can add along the path: the base's load
    /// room, or where the load lags by more than it holds for, the margin.
    path_room_a: &'a [f32],
    path_voltage_room: &'a [f32],
}

impl<'a> Estimator<'a> {
    fn new(
        engine: &'a Engine,
        base: &'a FeederBase,
        local: u32,
        load: &'a AddedLoad<'a>,
        shape: &'a [f64],
        path: &'a CandidatePath,
    ) -> Self {
        let limits = &base.limits;
        let e = &base.electrical;
        let steps = base.loads.step_count();
        let thermal = limits.thermal_pct / 100.0;
        let run = local as usize * steps..(local as usize + 1) * steps;
        let within_load_room = load.tan_phi <= LOAD_ROOM_TAN_PHI;
        Self {
            base,
            limits,
            local,
            load,
            shape,
            path,
            thermal,
            head_limit_a: e.head_rated_a.map(|a| a * thermal),
            substation_limit_kva: engine.group_rated_kva(base.group)
                * limits.substation_transformer_pct
                / 100.0,
            per_kw_magnitude: (1.0 + load.tan_phi * load.tan_phi).sqrt(),
            nominal_kv: e.nominal_kv[local as usize],
            voltage_kv: &base.voltage_kv[run.clone()],
            within_load_room,
            path_room_a: if within_load_room {
                &base.path_load_room_a[run.clone()]
            } else {
                &base.path_margin_a[run.clone()]
            },
            path_voltage_room: &base.path_voltage_room[run.clone()],
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

    /// Step `k`'s estimate, `(k, voltage bound, substation bound)`, as
    /// [`Self::estimate`] gives it with `beyond_linear`: taken from `ahead`
    /// where it was worked out there, else worked out there with the
    /// `upcoming` steps, four at a time (see [`estimate_lanes`]).
    #[inline(always)]
    fn estimate_ahead(
        &self,
        ahead: &mut EstimatesAhead,
        (k, voltage_bound, substation_bound): (usize, f64, f64),
        upcoming: impl Iterator<Item = (usize, f64, f64)>,
        beyond_linear: f64,
        answers: &mut Vec<Complex64>,
    ) -> StepEstimate {
        let wants = |voltage_bound: f64, substation_bound: f64| {
            (
                voltage_bound <= beyond_linear,
                self.substation_limit_kva > 0.0 && substation_bound <= beyond_linear,
            )
        };
        let (voltage, substation) = wants(voltage_bound, substation_bound);
        if let Some(estimate) = ahead.take(k, voltage, substation) {
            return estimate;
        }
        let mut steps = [k; LANES];
        let mut count = 1;
        let (mut any_voltage, mut any_substation) = (voltage, substation);
        for (next, voltage_bound, substation_bound) in upcoming.take(LANES - 1) {
            steps[count] = next;
            count += 1;
            let (voltage, substation) = wants(voltage_bound, substation_bound);
            any_voltage |= voltage;
            any_substation |= substation;
        }
        if count > 1 {
            ahead.fill(self, &steps[..count], any_voltage, any_substation, answers);
            if let Some(estimate) = ahead.take(k, voltage, substation) {
                return estimate;
            }
        }
        self.estimate(k, voltage_bound, substation_bound, beyond_linear, answers)
    }

    /// Lower bounds of the headroom at step `k` from the triangle inequality
    /// (no step can have less room than this): of every limit, of the voltage
    /// and of the substation.
    #[inline(always)]
    fn bounds_at(&self, k: usize) -> (f64, f64, f64) {
        let a = self.shape[k];
        let amps_per_kw = self.amps_per_kw_at(k);
        let thermal_bound = (f64::from(self.path_room_a[k]) / amps_per_kw).max(0.0);
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

    /// The estimated headroom at step `k`, along the path: where each rated
    /// branch of the path, the head, the lowest voltage below each path node
    /// and the substation reach their limits. A voltage or substation limit
    /// whose lower bound at the step exceeds `beyond_linear` cannot bind there
    /// and is not estimated. `answers` is room for the loads' answer per path
    /// node, found on the way up and read on the way down.
    ///
    /// The new load's current lowers the voltage along its path; every
    /// constant-power load answers with more current (`dI = I conj(dV / V)`),
    /// the new load too. Per kW, the loads that branch off the path at a node
    /// see that node's drop, so the extra current each path branch carries
    /// is summed on the way up, and the extra drop at each path node on the
    /// way down. A line through the base alone put the estimates 1.4-2.7 %
    /// high, by up to 1.2 % more at one step than another (a trunk branch,
    /// which carries most loads, gains most): a step that bound lay beyond
    /// the spread of the least, and answers were overstated. With the
    /// response, estimates lie within 0.15 % of the roots on the city.
    // Inlined into both loops that estimate a step: called, the fixture's
    // ranking ran 0.6% more instructions (callgrind).
    #[inline(always)]
    fn estimate(
        &self,
        k: usize,
        voltage_bound: f64,
        substation_bound: f64,
        beyond_linear: f64,
        answers: &mut Vec<Complex64>,
    ) -> StepEstimate {
        let (base, limits) = (self.base, self.limits);
        let e = &base.electrical;
        let n = e.len();
        let solution = &base.solutions[k];
        let (per_kw, own) = self.current_per_kw(k);
        // Line-to-line kV per A of a phase through an ohm.
        let kv_per_a = SQRT_3 / 1000.0;
        let z_from_busbar = &self.path.z_from_busbar;
        let mut estimate = StepEstimate {
            kw: f64::INFINITY,
            linear_kw: f64::INFINITY,
        };
        // Up the path: the loads' answer below each branch, the branch limits.
        let mut response = Complex64::new(0.0, 0.0);
        let mut below = Complex64::new(0.0, 0.0);
        // The drop at the candidate per kW, loads answering (for the way down).
        let mut drop_at_candidate = Complex64::new(0.0, 0.0);
        let with_substation = self.substation_limit_kva > 0.0 && substation_bound <= beyond_linear;
        // The path's added losses, kVA: per kW and per kW squared.
        let (mut losses_per_kw, mut losses_per_kw_2) =
            (Complex64::new(0.0, 0.0), Complex64::new(0.0, 0.0));
        answers.clear();
        // A run at a time: its branches carry one current and see one
        // answer, so its least rated branch offers the least roots.
        for run in &self.path.runs {
            let p = run.node as usize;
            let into = solution.i_a(p);
            let branching_off = into - below;
            below = into;
            // Nothing branches off where nothing hangs to answer: the sum
            // stays, to the bit, what adding its zero would leave.
            if branching_off != Complex64::new(0.0, 0.0) {
                let dv = kv_per_a * z_from_busbar[run.at as usize] * per_kw;
                let v = solution.v_kv(p);
                // One division, not the two of a complex number by a real:
                // the divisions and roots per path node are much of the
                // estimates' time.
                response += branching_off * ((dv.conj() * v) * v.norm_sqr().recip());
            }
            answers.push(response);
            let added = per_kw + response;
            drop_at_candidate += run.z_ohm * added;
            if with_substation {
                let three_phase = 3.0e-3 * run.z_ohm;
                losses_per_kw += three_phase * (2.0 * (into * added.conj()).re);
                losses_per_kw_2 += three_phase * added.norm_sqr();
            }
            let rated = e.rated_a[run.weakest as usize] * self.thermal;
            if rated.is_finite() && rated > 0.0 {
                estimate.offer_current(into, added, own, rated, per_kw);
            }
        }
        if let Some(limit) = self.head_limit_a {
            estimate.offer_current(base.head_i_a[k], per_kw + response, own, limit, per_kw);
        }
        // Down the path (walked upward again, taking off what lies below):
        // the lowest voltage of each path node's subtree falls by the node's
        // drop, and the loads off the path below it answer to it too, which
        // deepens the subtree's own drop by the same share.
        if voltage_bound <= beyond_linear {
            let subtree_min = &base.subtree_min_pu[k * n..(k + 1) * n];
            let mut drop = drop_at_candidate;
            let path = self.path;
            for ((i, &p), &run) in path.nodes.iter().enumerate().zip(&path.run_of) {
                let answer = answers[run as usize];
                let v = solution.v_kv(p);
                let z_to_node = z_from_busbar[i];
                let dv = kv_per_a * z_to_node * per_kw;
                let size = magnitude(v);
                let per_size = size.recip();
                let nominal = e.nominal_kv[p];
                let lowest_kv = f64::from(subtree_min[p]) * nominal;
                let room_kv = lowest_kv - limits.v_min_pu * nominal;
                // In phase with the node's voltage (angles along a feeder
                // differ by a fraction of a degree).
                let in_phase = |z: Complex64| (z * v.conj()).re * per_size;
                let linear_slope = in_phase(dv);
                let slope =
                    in_phase(kv_per_a * drop) * (1.0 + (size - lowest_kv).max(0.0) * per_size);
                let curve = in_phase(kv_per_a * z_to_node * own).max(0.0);
                if slope > 0.0 && linear_slope > 0.0 {
                    let (root, linear_root) = if room_kv <= 0.0 {
                        (0.0, 0.0)
                    } else {
                        (
                            2.0 * room_kv
                                / (slope + (slope * slope + 4.0 * curve * room_kv).sqrt()),
                            room_kv / linear_slope,
                        )
                    };
                    estimate.offer(root, linear_root);
                }
                drop -= e.z_ohm[p] * (per_kw + answer);
            }
        }
        if with_substation {
            let substation = self.substation_estimate(k, losses_per_kw, losses_per_kw_2);
            estimate.offer(substation.kw, substation.linear_kw);
        }
        estimate
    }

    /// The current the new load draws per kW at step `k`, A, at the
    /// candidate's base voltage, and what that current gains per kW as the
    /// load's own drop lowers that voltage, per kW (see [`Self::estimate`]).
    #[inline(always)]
    fn current_per_kw(&self, k: usize) -> (Complex64, Complex64) {
        let a = self.shape[k];
        let v_candidate = self.base.solutions[k].v_kv(self.local as usize);
        let per_kw = Complex64::new(a, -a * self.load.tan_phi) / (SQRT_3 * v_candidate.conj());
        let kv_per_a = SQRT_3 / 1000.0;
        let own = per_kw * (kv_per_a * self.path.z_from_busbar[0] * per_kw / v_candidate).conj();
        (per_kw, own)
    }

    /// The substation's estimate at step `k`, with the losses the load adds
    /// on its path, kVA per kW and per kW squared.
    ///
    /// Power, not current: the load's own growth reaches it only through
    /// the losses it adds on its path (3.5 % of a 4 MW load at the end of a
    /// city feeder: without them, the estimate of a step the substation
    /// binds lay past those the path binds).
    #[inline(always)]
    fn substation_estimate(
        &self,
        k: usize,
        losses_per_kw: Complex64,
        losses_per_kw_2: Complex64,
    ) -> StepEstimate {
        let a = self.shape[k];
        let per_kw_kva = Complex64::new(a, a * self.load.tan_phi);
        let group = self.base.group_kva[k];
        let limit = self.substation_limit_kva;
        let with_losses = per_kw_kva + losses_per_kw;
        let lossless = magnitude_root(group, with_losses, limit);
        StepEstimate {
            kw: quadratic_root(group, with_losses, losses_per_kw_2, limit, lossless),
            linear_kw: magnitude_root(group, per_kw_kva, limit),
        }
    }
}

/// A step's estimated headroom (see [`Estimator::estimate`]), kW, and the
/// estimate of a line through the base alone, which the step's bounds bound
/// from below.
#[derive(Clone, Copy, Debug)]
struct StepEstimate {
    kw: f64,
    linear_kw: f64,
}

/// How much the new load's own current, growing as its voltage falls, may
/// lower a branch's root at most: by the share its voltage falls, which the
/// lowest voltage allowed keeps to a tenth or so.
const OWN_GROWTH_REACH: f64 = 1.25;

impl StepEstimate {
    #[inline(always)]
    fn offer(&mut self, kw: f64, linear_kw: f64) {
        self.kw = self.kw.min(kw);
        self.linear_kw = self.linear_kw.min(linear_kw);
    }

    /// A branch carrying `start` before, `added` more per kW with the loads'
    /// answer, `own` per kW squared as the new load's current grows, `d` on
    /// the line through the base, up to `limit`.
    #[inline(always)]
    fn offer_current(
        &mut self,
        start: Complex64,
        added: Complex64,
        own: Complex64,
        limit: f64,
        d: Complex64,
    ) {
        let with_answer = magnitude_root(start, added, limit);
        // The growth only lowers the root: worked out only where it may
        // come under the least so far (most branches lie far above it).
        if with_answer < self.kw * OWN_GROWTH_REACH {
            self.kw = self
                .kw
                .min(quadratic_root(start, added, own, limit, with_answer));
        }
        // The loads' answer only adds current, so the line's root lies above
        // this one: worked out only where that may come under the least.
        if with_answer < self.linear_kw {
            self.linear_kw = self.linear_kw.min(magnitude_root(start, d, limit));
        }
    }
}

/// The least `x >= 0` with `|start + x d + x^2 e| = limit` (0 when already
/// past), by Newton's steps from `x`, the root without `e`: `e` is small (the
/// new load's current growing with its own drop), so one or two settle it.
fn quadratic_root(start: Complex64, d: Complex64, e: Complex64, limit: f64, mut x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return x;
    }
    for _ in 0..2 {
        let t = start + x * d + x * x * e;
        let size = magnitude(t);
        // The slope of |t| is this over |t|: one division a step, not two.
        let slope_by_size = (t.conj() * (d + 2.0 * x * e)).re;
        let step = (size - limit) * size / slope_by_size;
        if slope_by_size <= 0.0 || !step.is_finite() {
            break;
        }
        x -= step;
        if step.abs() < 1e-3 {
            break;
        }
    }
    x.max(0.0)
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

    /// Check flows solved ahead, a lane a step, give each step the worst
    /// ratio a flow of its own gives, to the bit, and only at the headroom
    /// they were solved at; a step past the lanes is not solved ahead.
    #[test]
    fn checks_solved_ahead_give_each_step_the_ratio_of_its_own_flow() {
        let engine = crate::test_support::fixture_engine();
        let load = AddedLoad::flat(0.9);
        let mut compared = 0;
        for f in 0..engine.network.feeders.len() {
            let base = engine.feeder(f);
            let shape = engine.shape(&base, &load);
            let count = base.loads.step_count();
            let steps: Vec<usize> = [5, 17, 300, 641, 9].map(|k| k % count).to_vec();
            for local in [1, base.electrical.len() as u32 - 1] {
                with_scratch(|scratch| {
                    for headroom_kw in [50.0, 800.0, 4000.0] {
                        let mut checked = ChecksAhead::new();
                        let first = checked.solve(
                            &engine,
                            &base,
                            local,
                            headroom_kw,
                            steps.iter().copied(),
                            &load,
                            &shape,
                            scratch,
                        );
                        for (i, &k) in steps.iter().enumerate() {
                            let alone = engine
                                .exact(&base, k, local, headroom_kw * shape[k], &load, scratch)
                                .worst_ratio(&base.limits);
                            let ahead = if i == 0 {
                                Some(first)
                            } else {
                                checked.worst_ratio(k, headroom_kw)
                            };
                            if i < LANES {
                                assert_eq!(
                                    ahead.map(f64::to_bits),
                                    Some(alone.to_bits()),
                                    "feeder {f}, node {local}, step {k}, {headroom_kw} kW: \
                                     ahead {ahead:?}, alone {alone}"
                                );
                                compared += 1;
                            } else {
                                assert_eq!(ahead, None, "step {k} past the lanes");
                            }
                        }
                        assert_eq!(checked.worst_ratio(steps[1], headroom_kw - 1.0), None);
                    }
                });
            }
        }
        assert!(compared > 100, "{compared} flows compared");
    }

    /// `local`'s path with each node a run of its own: what the walks read
    /// node by node.
    fn node_by_node(base: &FeederBase, local: u32) -> CandidatePath {
        let e = &base.electrical;
        let mut path = CandidatePath::default();
        path.trace(base, local);
        path.runs = (path.nodes.iter().enumerate())
            .map(|(i, &p)| PathRun {
                at: i as u32,
                node: p as u32,
                z_ohm: e.z_ohm[p],
                z_abs_ohm: magnitude(e.z_ohm[p]),
                weakest: p as u32,
            })
            .collect();
        path.run_of = (0..path.nodes.len() as u32).collect();
        path
    }

    #[test]
    fn a_path_walked_run_by_run_estimates_as_node_by_node() {
        // Where the segments bind, and where they are let carry five times
        // their rating so that the voltage binds.
        for thermal_pct in [100.0, 500.0] {
            walked_run_by_run_estimates_as_node_by_node(thermal_pct);
        }
    }

    fn walked_run_by_run_estimates_as_node_by_node(thermal_pct: f64) {
        let engine = crate::test_support::pole_line_engine(thermal_pct);
        let load = AddedLoad::flat(0.95);
        let base = engine.feeder(0);
        let shape = engine.shape(&base, &load);
        let e = &base.electrical;
        let mut merged = 0;
        for local in 1..e.len() as u32 {
            let mut path = CandidatePath::default();
            path.trace(&base, local);
            // A run starts at the candidate and wherever a node does not
            // carry its one child's current; it sums its branches and names
            // its least rated.
            for (i, &p) in path.nodes.iter().enumerate() {
                let run = &path.runs[path.run_of[i] as usize];
                let starts = i == 0 || !base.in_series(p);
                assert_eq!(run.at as usize == i, starts, "node {p} of {local}'s path");
            }
            for (r, run) in path.runs.iter().enumerate() {
                let members: Vec<usize> = (path.nodes.iter().zip(&path.run_of))
                    .filter(|(_, of)| **of as usize == r)
                    .map(|(&p, _)| p)
                    .collect();
                let z: Complex64 = members.iter().map(|&p| e.z_ohm[p]).sum();
                assert!((run.z_ohm - z).norm() < 1e-12, "{r} of {local}'s runs");
                let least = members
                    .iter()
                    .map(|&p| e.rated_a[p])
                    .fold(f64::INFINITY, f64::min);
                assert_eq!(
                    e.rated_a[run.weakest as usize], least,
                    "{r} of {local}'s runs"
                );
            }
            merged += path.nodes.len() - path.runs.len();
            let whole = node_by_node(&base, local);
            let by_run = Estimator::new(&engine, &base, local, &load, &shape, &path);
            let by_node = Estimator::new(&engine, &base, local, &load, &shape, &whole);
            for k in (0..base.loads.step_count()).filter(|&k| by_node.judged_at(k)) {
                // Every limit estimated: the voltage and substation bounds
                // within reach.
                let [a, b] = [by_run, by_node]
                    .map(|by| by.estimate(k, 0.0, 0.0, f64::INFINITY, &mut Vec::new()));
                for (x, y) in [(a.kw, b.kw), (a.linear_kw, b.linear_kw)] {
                    assert!(
                        (x - y).abs() <= 1e-9 * y.abs(),
                        "{local} at step {k}: {x} run by run, {y} node by node"
                    );
                }
            }
        }
        // P1 to P4 pass the weak segment's run up; P6 to P8 theirs.
        assert!(merged >= 12, "only {merged} nodes merged into runs");
    }

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
        let width = within_spread(1_000.0, STEP_SPREAD) - 1_000.0;
        let mut offered = vec![1_000.0, 1_000.0 + 0.9 * width, 1_000.0 + 0.5 * width];
        for estimate in &offered {
            cut.offer(line(*estimate));
        }
        assert_eq!(cut.least[0], 1_000.0);
        assert_eq!(cut.cut(), within_spread(1_000.0, STEP_SPREAD));
        // As many again, all within the spread: now the last of the
        // REFINED_STEPS least limits it.
        for i in 0..REFINED_STEPS {
            let estimate = 1_000.0 + width * (0.25 + 0.5 * i as f64 / REFINED_STEPS as f64);
            cut.offer(line(estimate));
            offered.push(estimate);
        }
        offered.sort_by(f64::total_cmp);
        let last_kept = offered[REFINED_STEPS - 1];
        assert!(last_kept < within_spread(1_000.0, STEP_SPREAD));
        assert_eq!(cut.least[0], 1_000.0);
        assert_eq!(cut.cut(), last_kept);
        assert!(
            cut.least.windows(2).all(|w| w[0] <= w[1]),
            "{:?}",
            cut.least
        );
        // A larger estimate changes nothing; a smaller one takes the lead.
        cut.offer(line(2_000.0));
        assert_eq!(cut.cut(), last_kept);
        cut.offer(line(900.0));
        assert_eq!(cut.least[0], 900.0);
        assert_eq!(cut.cut(), within_spread(900.0, STEP_SPREAD));
    }

    #[test]
    fn a_headroom_from_a_floor_is_under_it_or_the_headroom_in_full() {
        let engine = crate::test_support::fixture_engine();
        let load = AddedLoad::flat(0.95);
        // The feeders' bases, and their N-1 case trees (fed from a far end,
        // where the estimates err most).
        let mut bases = Vec::new();
        for f in 0..engine.network.feeders.len() {
            bases.push((format!("feeder {f}"), engine.feeder(f)));
            for (c, case) in engine.feeder_n1(f).cases.iter().enumerate() {
                for (t, tree) in case.trees.iter().enumerate() {
                    bases.push((
                        format!("feeder {f}, case {c}, tree {t}"),
                        std::sync::Arc::new(tree.base.clone()),
                    ));
                }
            }
        }
        let (mut judged, mut below_well_under) = (0, 0);
        for (name, base) in &bases {
            if base.summary.already_broken.is_some() {
                continue;
            }
            for local in (1..base.electrical.len() as u32).step_by(3) {
                let (h, check) = engine.headroom_at(base, local, &load);
                if !(1.0..UNBOUNDED_KW).contains(&h) {
                    continue;
                }
                judged += 1;
                let from = |floor| engine.headroom_from(base, local, &load, floor);
                let at = format!("{name}, node {local}, headroom {h} kW ({check:?})");
                // Tied with the floor, or over it: worked out in full.
                assert_eq!(from(h), Some((h, check)), "{at}");
                assert_eq!(from(h - 1.0), Some((h, check)), "{at}");
                // A kW under: found so, or (where no estimate came under the
                // floor) worked out in full; never anything else.
                let under = from(h + 1.0);
                assert!(
                    under.is_none() || under == Some((h, check)),
                    "{at}: {under:?}"
                );
                // A floor well over is found so by a flow or two.
                if from(h * 1.1 + 10.0).is_none() {
                    below_well_under += 1;
                }
            }
        }
        assert!(judged > 100, "{judged} points judged");
        assert_eq!(below_well_under, judged, "floors 10 % over found under");
    }

    /// Every sampled step's estimate against its exact root (whole kW) on the
    /// fixture, a flat load at 0.95: `(root / estimate, root / line)`.
    fn estimate_errors() -> Vec<(f64, f64)> {
        let engine = crate::test_support::fixture_engine();
        let load = AddedLoad::flat(0.95);
        let mut errors = Vec::new();
        for f in 0..engine.network.feeders.len() {
            let base = engine.feeder(f);
            if base.summary.already_broken.is_some() {
                continue;
            }
            let shape = engine.shape(&base, &load);
            for local in (1..base.electrical.len() as u32).step_by(3) {
                with_scratch(|scratch| {
                    let path = candidate_path(&base, local, scratch);
                    let estimator = Estimator::new(&engine, &base, local, &load, &shape, &path);
                    for k in (0..base.loads.step_count()).step_by(29) {
                        if !estimator.judged_at(k) {
                            continue;
                        }
                        let estimate =
                            estimator.estimate(k, 0.0, 0.0, f64::INFINITY, &mut Vec::new());
                        if !(estimate.kw.is_finite() && estimate.kw > 10.0) {
                            continue;
                        }
                        let (root, _) =
                            engine.refine(&base, k, local, estimate.kw, &load, shape[k], scratch);
                        if root > 10.0 && root < UNBOUNDED_KW - 1.0 {
                            errors.push((root / estimate.kw, root / estimate.linear_kw));
                        }
                    }
                    scratch.path = path;
                });
            }
        }
        errors
    }

    #[test]
    fn estimates_with_the_loads_answer_lie_close_to_the_roots_on_the_fixture() {
        let errors = estimate_errors();
        let spread = |pick: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = errors.iter().map(pick).collect();
            v.sort_by(f64::total_cmp);
            (
                v[v.len() / 100],
                v[v.len() / 2],
                v[v.len() - 1 - v.len() / 100],
            )
        };
        let corrected = spread(|e| e.0);
        let line = spread(|e| e.1);
        let report = format!(
            "{} steps; root / estimate (1st, 50th, 99th percentile) {corrected:?}; root / line {line:?}",
            errors.len()
        );
        // Measured: 1,008 steps; the estimates at 0.986, 0.9987 and 0.99998
        // of their roots, the line at 0.911, 0.975 and 0.999.
        assert!(errors.len() > 500, "{report}");
        assert!(corrected.1 > 0.997 && corrected.1 < 1.0005, "{report}");
        assert!(corrected.0 > 0.98 && corrected.2 < 1.001, "{report}");
        assert!(
            corrected.2 - corrected.0 < (line.2 - line.0) / 3.0,
            "{report}"
        );
    }

    /// An estimate with no correction to the line through the base.
    fn line(kw: f64) -> StepEstimate {
        StepEstimate { kw, linear_kw: kw }
    }

    #[test]
    fn a_larger_correction_widens_the_spread_and_what_bounds_rule_out() {
        let mut cut = RefineCut::new();
        cut.offer(line(1_000.0));
        assert_eq!(cut.spread(), STEP_SPREAD);
        // A bound past the cut rules a step out, with the margin the
        // correction may differ by between steps.
        let narrow = cut.cut();
        assert!(cut.rules_out(narrow / (1.0 - CORRECTION_MARGIN) + 0.01));
        assert!(!cut.rules_out(narrow / (1.0 - CORRECTION_MARGIN) - 0.01));
        // A step whose estimate took 9 % off its line: the spread and the
        // floor under the other steps' lines grow with it.
        cut.offer(StepEstimate {
            kw: 910.0,
            linear_kw: 1_000.0,
        });
        assert_eq!(cut.least[0], 910.0);
        let spread = STEP_SPREAD + SPREAD_PER_CORRECTION * 0.09;
        assert!((cut.spread() - spread).abs() < 1e-12);
        assert_eq!(cut.cut(), within_spread(910.0, cut.spread()));
        let floor = 0.91 * (1.0 - CORRECTION_MARGIN - MARGIN_PER_CORRECTION * 0.09);
        assert!((cut.floor() - floor).abs() < 1e-12);
        assert!(cut.rules_out(cut.cut() / floor + 0.01));
        assert!(!cut.rules_out(cut.cut() / floor - 0.01));
        assert!((cut.linear_cut() - cut.cut() / floor).abs() < 1e-9);
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
