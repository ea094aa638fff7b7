//! A feeder's base case: its load model and the power flow of every kept step
//! of the window, with what the checks read off each flow and the rows along
//! paths that let a candidate be screened without a flow of its own.
//!
//! **Data model.** A [`FeederBase`] holds, per kept step (15 minutes of the
//! data window), the settled loads ([`FeederLoads`]), the base flow in single
//! precision ([`StoredSolution`]) and its [`Observed`] figures; per local node
//! and step, node-major rows (voltage, least current margin and loading along
//! the path from the busbar, voltage room per ohm), and
//! the worst of the whole window ([`BaseSummary`]). Reservations on the feeder
//! are extra loads at their nodes, solved into the flows.
//!
//! Bases are built by the [`Engine`] (this module's `impl Engine`: load model,
//! flows, observation) when a feeder is first needed, and cached there; the
//! evaluation of a candidate ([`crate::evaluate`]) only reads them.

use std::ops::Range;
use std::sync::OnceLock;

use headroom_geodata::{FeederIx, TransformerIx};
use headroom_readings::ReadingsSource;
use num_complex::Complex64;

use crate::chains::ChainFolding;
use crate::checks::{CheckName, Figures, Observed, WorstChecks, absorb};
use crate::config::Limits;
use crate::engine::Engine;
use crate::load_model::{FeederLoads, LooseBatches, power_factor_tan};
use crate::powerflow::{
    ElectricalFeeder, FlowExtremes, LANES, Lanes, SQRT_3, Solution, StepLoads, StoredSolution,
    SweepLanes, SweepSettings, sweep_steps,
};

/// A feeder's load model while its flows are solved: on the feeder with its
/// load-free series chains folded (see `chains`), where any fold. A city
/// feeder keeps about a third of its nodes so, and its loose and exact sweeps
/// (a fifth of a capacity sweep) cost about that much; the flows settled
/// come back onto the whole feeder, the base's, in one pass each
/// ([`Self::into_whole`]).
pub(crate) struct SolvingLoads {
    /// The loads, their transformers at their nodes of the tree solved.
    pub(crate) loads: FeederLoads,
    folding: Option<ChainFolding>,
    /// The transformers at their nodes of the whole feeder.
    whole_transformers: Vec<(TransformerIx, u32)>,
}

impl SolvingLoads {
    /// Settles `steps` (see [`FeederLoads::settle`]); `whole` is the feeder.
    pub(crate) fn settle(
        &mut self,
        whole: &ElectricalFeeder,
        steps: impl IntoIterator<Item = usize>,
        max_rounds: usize,
    ) {
        let on = self.folding.as_ref().map_or(whole, |f| &f.folded);
        self.loads.settle(on, steps, max_rounds);
    }

    /// The loads on the whole feeder, each flow settled so far unfolded
    /// (see [`FeederLoads::unfold_flows`]): no step is settled after.
    pub(crate) fn into_whole(mut self) -> FeederLoads {
        if let Some(folding) = &self.folding {
            self.loads.on_whole_tree(self.whole_transformers);
            self.loads.unfold_flows(folding);
        }
        self.loads
    }

    /// Every step settled, on the whole feeder.
    fn settled_whole(
        mut self,
        whole: &ElectricalFeeder,
        settings: &crate::load_model::LoadModelSettings,
    ) -> FeederLoads {
        let steps = self.loads.step_count();
        self.settle(whole, 0..steps, settings.max_allocation_rounds);
        self.into_whole()
    }

    /// Every step settled, the transformers at their nodes of the whole
    /// feeder and the flows still folded: a base observes each flow unfolded
    /// while it is in cache.
    pub(crate) fn settled(
        mut self,
        whole: &ElectricalFeeder,
        settings: &crate::load_model::LoadModelSettings,
    ) -> SettledLoads {
        let steps = self.loads.step_count();
        self.settle(whole, 0..steps, settings.max_allocation_rounds);
        if self.folding.is_some() {
            self.loads.on_whole_tree(self.whole_transformers);
        }
        SettledLoads {
            loads: self.loads,
            folding: self.folding,
        }
    }
}

/// A feeder's loads with their flows settled, on the whole feeder or, with
/// `folding`, on its folded tree (see [`SolvingLoads`]).
pub(crate) struct SettledLoads {
    pub(crate) loads: FeederLoads,
    pub(crate) folding: Option<ChainFolding>,
}

impl From<FeederLoads> for SettledLoads {
    /// Loads whose flows are the whole feeder's.
    fn from(loads: FeederLoads) -> Self {
        Self {
            loads,
            folding: None,
        }
    }
}

/// A reader of loose flows (see [`LooseBatches`]) shown each batch solved on
/// a folded feeder unfolded onto the whole one, as it would have been solved.
struct UnfoldedBatches<'a> {
    folding: &'a ChainFolding,
    whole: SweepLanes,
    reader: &'a mut dyn LooseBatches,
}

impl LooseBatches for UnfoldedBatches<'_> {
    fn solved(&mut self, steps: &[usize], lanes: &SweepLanes) {
        self.folding.unfold_lanes(lanes, &mut self.whole);
        self.reader.solved(steps, &self.whole);
    }
}

/// The next [`FeederBase::uid`] (0 is a default base's, never evaluated).
static NEXT_BASE_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How many times something was judged on a base, counted by every thread
/// that reads it (a clone starts from the count so far).
#[derive(Debug, Default)]
pub(crate) struct JudgedCount(std::sync::atomic::AtomicU32);

impl JudgedCount {
    /// Counts one more, returning the count before it.
    pub(crate) fn count(&self) -> u32 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

impl Clone for JudgedCount {
    fn clone(&self) -> Self {
        Self(std::sync::atomic::AtomicU32::new(
            self.0.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }
}

/// Which nodes of a base carry their one child's current at every kept step
/// (see [`FeederBase::in_series`]), told node by node.
#[derive(Debug)]
struct SeriesNodes {
    /// Per local node, its one child (`u32::MAX` where it has none or
    /// several: the busbar's branches are never in series).
    only_child: Vec<u32>,
    /// Per local node, [`Self::NOT_TOLD`] until first asked.
    told: Vec<std::sync::atomic::AtomicU8>,
}

impl SeriesNodes {
    const NOT_TOLD: u8 = 0;
    const NOT_IN_SERIES: u8 = 1;
    const IN_SERIES: u8 = 2;

    fn new(e: &ElectricalFeeder) -> Self {
        let mut only_child = crate::chains::only_children(e);
        if let Some(busbar) = only_child.first_mut() {
            *busbar = u32::MAX;
        }
        Self {
            told: (0..only_child.len())
                .map(|_| std::sync::atomic::AtomicU8::new(Self::NOT_TOLD))
                .collect(),
            only_child,
        }
    }

    /// Tells each node of `untold` (none told yet) from `solutions`, in one
    /// pass over them: a node without one child is not in series, and the
    /// rest drop out at the first step whose current differs from their
    /// child's. Asked node by node, each node read one current from every
    /// step's flow, a cache line apiece.
    fn tell_from_flows(
        &self,
        solutions: &[StoredSolution],
        untold: impl IntoIterator<Item = usize>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut pending: Vec<(usize, usize)> = Vec::new();
        for j in untold {
            match self.only_child[j] {
                u32::MAX => self.told[j].store(Self::NOT_IN_SERIES, Relaxed),
                child => pending.push((j, child as usize)),
            }
        }
        for s in solutions {
            if pending.is_empty() {
                break;
            }
            pending.retain(|&(j, child)| {
                let series = s.i_a_single(j) == s.i_a_single(child);
                if !series {
                    self.told[j].store(Self::NOT_IN_SERIES, Relaxed);
                }
                series
            });
        }
        // Two threads telling at once both store the same answers.
        for (j, _) in pending {
            self.told[j].store(Self::IN_SERIES, Relaxed);
        }
    }

    /// For flows unfolded by `folding`: a node whose inbound branch carries
    /// the same folded current as its one child's (a node of a folded
    /// chain) is in series at every step, bit for bit, without reading a
    /// flow; the rest are told from the flows as first asked.
    fn unfolded_by(e: &ElectricalFeeder, folding: &ChainFolding) -> Self {
        let nodes = Self::new(e);
        let carries = folding.carries();
        for (j, &child) in nodes.only_child.iter().enumerate() {
            if child != u32::MAX && carries[j] == carries[child as usize] {
                nodes.told[j].store(Self::IN_SERIES, std::sync::atomic::Ordering::Relaxed);
            }
        }
        nodes
    }
}

impl Clone for SeriesNodes {
    fn clone(&self) -> Self {
        use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
        Self {
            only_child: self.only_child.clone(),
            told: self
                .told
                .iter()
                .map(|t| AtomicU8::new(t.load(Relaxed)))
                .collect(),
        }
    }
}

/// A feeder's loads and base-case power flows over its steps.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct FeederBase {
    /// Impedances and ratings.
    pub electrical: ElectricalFeeder,
    /// Measured (and allocated) loads.
    pub loads: FeederLoads,
    /// Reserved loads on the feeder: (local node, kW, kvar per kW, profile).
    pub reserved: Vec<(u32, f64, f64, Option<Vec<f64>>)>,
    /// Base power flow of each kept step.
    pub solutions: Vec<StoredSolution>,
    /// The same in full precision, while the base is being observed.
    full_solutions: Vec<Solution>,
    /// Where `full_solutions` are a folded tree's (see `chains`): until they
    /// are observed, each unfolded in turn.
    full_solutions_folding: Option<ChainFolding>,
    /// What each base power flow shows.
    pub observed: Vec<Observed>,
    /// Per step and local node, the lowest voltage in the node's subtree, pu
    /// (row-major: `step * nodes + node`).
    pub subtree_min_pu: Vec<f32>,
    /// The same for the highest voltage, worked out when a generator is first
    /// judged on the feeder (see [`Self::subtree_max_pu`]).
    subtree_max_pu: OnceLock<Vec<f32>>,
    /// Per local node, whether its inbound branch carries the current of the
    /// branch below it at every kept step, as far as told (see
    /// [`Self::in_series`]).
    in_series: OnceLock<SeriesNodes>,
    /// Per node and step, the current a generator there may inject before a
    /// check of its path can break (kept as the kW it carries at the node's
    /// voltage in the base flow), worked out with the highest voltages (see
    /// [`crate::evaluate::ExportRooms`]).
    pub(crate) export_rooms: OnceLock<crate::evaluate::ExportRooms>,
    /// Generators judged on it so far, up to a few (see
    /// [`crate::evaluate::ExportRooms`]).
    pub(crate) exports_judged: JudgedCount,
    /// A number no other base of this process has: what per-thread caches of
    /// figures derived from a base are keyed by (an address may be reused).
    pub(crate) uid: u64,
    /// Whether queued generators and generation reservations are in its flows
    /// and its group's series (a generation base), or none are (a load base).
    pub counts_injections: bool,
    /// The limits its flows are judged against: the engine's, or for a
    /// restoration case (N-1) the case limits.
    pub limits: Limits,
    /// Worst figures of the base case, computed once.
    pub summary: BaseSummary,
    /// A load factor of 1 at every step: the shape of a flat load.
    pub flat_shape: Vec<f64>,
    /// Per local node and step, the least current margin (limit less current, A)
    /// of the branches from the busbar to the node, the head breaker included
    /// (node-major: `node * steps + step`, so one candidate reads one run).
    pub path_margin_a: Vec<f32>,
    /// Per local node and step, the least current (A) a load at the node
    /// drawing at any power factor from [`LOAD_ROOM_TAN_PHI`] to unity can
    /// add to a branch from the busbar to it, the head included, before the
    /// branch reaches its limit (node-major). At least
    /// [`Self::path_margin_a`], and far more on a branch fed backwards by
    /// generation, whose current the load's first cancels. On the fixture (a
    /// week of feeders with PV), the margin put the bounds of the steps a
    /// load ranking estimated in vain a fifth under their line's roots, two
    /// in three of them on such a branch.
    pub path_load_room_a: Vec<f32>,
    /// Per local node and step, the highest loading (current over rating, a
    /// fraction) of the branches from the busbar to the node and the head
    /// (node-major).
    pub path_max_loading: Vec<f32>,
    /// Per local node and step, the voltage magnitude, kV (node-major).
    pub voltage_kv: Vec<f32>,
    /// Per local node and step, the least voltage room per ohm a load there
    /// meets: over the nodes `p` on its path, the lowest voltage of `p`'s subtree
    /// above the planning minimum (pu) over the impedance from the busbar to `p`
    /// (node-major). A load at the node lowers every voltage of `p`'s subtree
    /// by at most that impedance times its current, so this bounds its voltage
    /// headroom from below.
    pub path_voltage_room: Vec<f32>,
    /// Per local node, its steps ranked by a flat load's room there, worked out
    /// when the node is first judged (see [`Self::flat_steps`]): a capacity sweep
    /// judges two or three nodes of a feeder, a ranking only its candidates.
    ranked_steps: Vec<OnceLock<RankedSteps>>,
    /// The feeder's steps in the orders the figures with a new load scan them
    /// (see `evaluate::figures`), worked out when a candidate first needs them.
    pub(crate) figure_orders: OnceLock<crate::evaluate::FigureOrders>,
    /// The feeder with its load-free series chains folded, for the exact
    /// flows of candidates (see [`Self::flow_folding`]).
    flow_folding: OnceLock<Option<ChainFolding>>,
    /// Entries per node in [`RankedSteps::steps`]: [`FLAT_STEPS`], or every step
    /// of a shorter window.
    pub flat_stride: usize,
    /// Per kept step, the room left on the substation transformers feeding the
    /// head busbar, kVA (infinite without a rating).
    pub(crate) substation_room_kva: Vec<f64>,
    /// Per kept step, the head current of the base flow, A (what every
    /// candidate's estimate there reads, kept in one short row).
    pub(crate) head_i_a: Vec<Complex64>,
    /// Per local node, the least room in kVA of any limit at any step: a flat
    /// load there of this much, over its power factor's kW, is about the least
    /// that can break one. Its thermal part is the margin's, not the load
    /// room's: a capacity sweep stops at the first node whose room lies
    /// clearly above the least headroom found, by a slack measured against
    /// the margin (see `capacity::ROOM_SLACK`).
    pub least_room_kva: Vec<f64>,
    /// Per step, the lowest voltage of the feeder, pu.
    pub feeder_min_pu: Vec<f64>,
    /// Per step, the highest loading of segments and head, a fraction.
    pub max_loading: Vec<f64>,
    /// Busbar group of the head busbar.
    pub group: Option<usize>,
    /// Index of each kept step in the engine's window.
    pub window_step: Vec<usize>,
    /// Power through the group's substation transformers at each kept step, kVA,
    /// reservations in the group included where this base counts them.
    pub group_kva: Vec<Complex64>,
}

/// A feeder's base case over all its steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BaseSummary {
    /// Worst figures without new load.
    pub before: Figures,
    /// Worst value of each check without new load, and where.
    pub worst: WorstChecks,
    /// The check already broken without new load, if any (the worst breach).
    pub already_broken: Option<CheckName>,
}

impl Default for BaseSummary {
    fn default() -> Self {
        Self {
            before: Figures::default(),
            worst: WorstChecks::NONE,
            already_broken: None,
        }
    }
}

/// A node's steps ranked by the room a flat load added there has: the least of
/// the thermal room along its path, the voltage room and the substation room, in
/// kVA of new load.
#[derive(Clone, Debug, Default)]
pub struct RankedSteps {
    /// The [`FeederBase::flat_stride`] steps of least room, ascending.
    pub steps: Box<[RankedStep]>,
    /// The least room among the steps left out: a flat load smaller than this
    /// cannot break a limit at any of them (infinite when none is left out).
    pub cutoff_kva: f64,
}

/// One of a node's ranked steps with the bounds a flat load's estimate there
/// starts from: kept together, a node's bounds read one short run (a ranking
/// judges a couple of thousand nodes of dozens of feeders, far more than the
/// processor's caches hold).
#[derive(Clone, Copy, Debug)]
pub struct RankedStep {
    /// The room a flat load at the node has at this step, kVA.
    pub room_kva: f32,
    /// The step (index of the base's kept steps).
    pub step: u32,
    /// The voltage limit's part of that room, kVA (not a number where the base
    /// flow has none).
    pub voltage_room_kva: f32,
}

impl FeederBase {
    /// Local node `local`'s steps where a flat load added there comes nearest a
    /// limit, ranked on first use and kept.
    pub fn flat_steps(&self, local: u32) -> &RankedSteps {
        self.ranked_steps[local as usize].get_or_init(|| {
            // The room a flat load has at each step (`flat_room` of the
            // load room, the node's voltage and its path's voltage room),
            // read off the node's rows as slices.
            let steps = self.solutions.len();
            let j = local as usize;
            let row = j * steps..(j + 1) * steps;
            let (thermal_a, voltage_kv, voltage_room) = (
                &self.path_load_room_a[row.clone()],
                &self.voltage_kv[row.clone()],
                &self.path_voltage_room[row],
            );
            let substation_kva = &self.substation_room_kva[..steps];
            let nominal_kv = self.electrical.nominal_kv[j];
            let mut room: Vec<(f64, u32)> = (0..steps)
                .map(|k| {
                    let room_kva = flat_room(
                        f64::from(thermal_a[k]),
                        f64::from(voltage_kv[k]),
                        f64::from(voltage_room[k]),
                        nominal_kv,
                        substation_kva[k],
                    );
                    (room_kva, k as u32)
                })
                .collect();
            let cutoff_kva = least_sorted(&mut room, self.flat_stride);
            RankedSteps {
                steps: room[..self.flat_stride]
                    .iter()
                    .map(|&(room_kva, k)| RankedStep {
                        room_kva: room_kva as f32,
                        step: k,
                        voltage_room_kva: self.voltage_room_kva(j, k as usize) as f32,
                    })
                    .collect(),
                cutoff_kva,
            }
        })
    }

    /// The voltage limit's room for a flat load at local node `j` at step `k`,
    /// kVA: the voltage room per ohm along the path times the node's voltage
    /// (not a number where the base flow has none).
    fn voltage_room_kva(&self, j: usize, k: usize) -> f64 {
        let at = j * self.solutions.len() + k;
        f64::from(self.path_voltage_room[at])
            * 1000.0
            * self.electrical.nominal_kv[j]
            * f64::from(self.voltage_kv[at])
    }

    /// Per step and local node, the highest voltage in the node's subtree, pu
    /// (row-major: `step * nodes + node`): what a generator's voltage rise
    /// meets below each node of its path. Worked out once per base, when a
    /// generator is first judged on it (loads never need it).
    pub fn subtree_max_pu(&self) -> &[f32] {
        self.subtree_max_pu.get_or_init(|| {
            // Appended step by step: a zeroed row of the whole window was
            // memory cleared only to be overwritten.
            let mut rows = Vec::with_capacity(self.electrical.len() * self.solutions.len());
            subtree_max_rows(&self.electrical, &self.solutions, &mut rows);
            rows
        })
    }

    /// Whether local node `j`'s inbound branch carries, at every kept step
    /// and bit for bit, the current of the one branch below it: a node with
    /// one child and no load (a pole or joint on a line, most of a GIS path).
    /// A scan up a path for the most loaded branch passes such a branch,
    /// rated no lower than the one below it, without reading it. Read off the
    /// flows node by node as scans first ask: a capacity sweep asks of a few
    /// paths a feeder, a ranking of its candidates'.
    pub(crate) fn in_series(&self, j: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let nodes = self
            .in_series
            .get_or_init(|| SeriesNodes::new(&self.electrical));
        let Some(told) = nodes.told.get(j) else {
            return false;
        };
        if told.load(Relaxed) == SeriesNodes::NOT_TOLD {
            nodes.tell_from_flows(&self.solutions, [j]);
        }
        told.load(Relaxed) == SeriesNodes::IN_SERIES
    }

    /// Tells [`Self::in_series`] at once for every node on the path from
    /// `local` up that no scan has asked of yet, in one pass over the flows
    /// (see `SeriesNodes::tell_from_flows`): a capacity sweep's paths,
    /// asked node by node, spent a fiftieth of its time there.
    pub(crate) fn tell_series_up(&self, local: u32) {
        use std::sync::atomic::Ordering::Relaxed;
        let e = &self.electrical;
        let nodes = self.in_series.get_or_init(|| SeriesNodes::new(e));
        let untold = |at: &usize| {
            nodes
                .told
                .get(*at)
                .is_some_and(|told| told.load(Relaxed) == SeriesNodes::NOT_TOLD)
        };
        let path = std::iter::successors(Some(local as usize), |&at| Some(e.parent[at] as usize))
            .take_while(|&at| at != 0 && at < e.len());
        // Most paths are told already: nothing is gathered for them.
        if !path.clone().any(|at| untold(&at)) {
            return;
        }
        nodes.tell_from_flows(&self.solutions, path.filter(untold));
    }

    /// The rated branches from `local` up to the busbar, `(local node, one
    /// over its rating squared)`, that a scan for the most loaded with a new
    /// load at `local` must read, in the order up; `on_path` marks every node
    /// of the path and the busbar.
    ///
    /// A series branch (see [`Self::in_series`]) carries what the branch
    /// below it does, new load included: rated no lower than the least rated
    /// of its run so far, it is never more loaded than that one, and where
    /// equal it comes later (a scan that keeps the first keeps that one), so
    /// it is left out. On a GIS path most branches are.
    pub(crate) fn rated_path_up(&self, local: u32, on_path: &mut [bool]) -> Vec<(usize, f64)> {
        let e = &self.electrical;
        self.tell_series_up(local);
        let mut path = Vec::new();
        let mut at = local as usize;
        let mut run_most = 0.0;
        while at != 0 && at < e.len() {
            on_path[at] = true;
            if at as u32 == local || !self.in_series(at) {
                run_most = 0.0;
            }
            let inverse_rated_2 = e.inv_rated_a_2[at];
            if inverse_rated_2 > run_most {
                path.push((at, inverse_rated_2));
                run_most = inverse_rated_2;
            }
            at = e.parent[at] as usize;
        }
        on_path[0] = true;
        path
    }

    /// Steps it keeps.
    pub fn step_count(&self) -> usize {
        self.window_step.len()
    }

    /// The feeder with its load-free series chains folded (see `chains`),
    /// its loaded nodes (measured loads and reservations) kept: what a
    /// candidate's exact flows are solved on, split at the candidate where
    /// it lies in a chain (`chains::SplitFolding`). `None` where a folding
    /// would keep more than [`FOLDING_WORTH_KEEPING`] of the nodes.
    pub(crate) fn flow_folding(&self) -> Option<&ChainFolding> {
        self.flow_folding
            .get_or_init(|| {
                let e = &self.electrical;
                let mut loaded = vec![false; e.len()];
                for &(_, at) in &self.loads.transformers {
                    loaded[at as usize] = true;
                }
                for (at, ..) in &self.reserved {
                    loaded[*at as usize] = true;
                }
                ChainFolding::new(e, &loaded).filter(|folding| {
                    folding.folded.len() as f64 <= FOLDING_WORTH_KEEPING * e.len() as f64
                })
            })
            .as_ref()
    }

    /// What `flow`, a flow of kept step `k` with something added, draws at
    /// the head beyond the base's flow of the step, kVA.
    pub(crate) fn head_kva_added(&self, k: usize, flow: &Solution) -> Complex64 {
        flow.head_power_kva() - self.solutions[k].head_power_kva()
    }

    /// The head's power at kept step `k`, kVA, from the flows as kept (or,
    /// before they are, in full precision).
    pub fn head_power_kva(&self, k: usize) -> Complex64 {
        match self.solutions.get(k) {
            Some(solution) => solution.head_power_kva(),
            None => self.full_solutions[k].head_power_kva(),
        }
    }

    /// Approximate memory held, bytes (the cache's weight).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes_judging(self.ranked_steps.len())
    }

    /// [`Self::weight_bytes`] where only `judged` of its nodes can ever be
    /// judged (ranked steps are worked out only for nodes that are): a
    /// restoration case's tree judges the restored feeder's nodes, never its
    /// supplier's.
    pub fn weight_bytes_judging(&self, judged: usize) -> usize {
        // Solutions (two single-precision complex numbers per node) and seven
        // screening figures.
        let per_step = self.electrical.len() * (2 * 8 + 7 * 4) + 64;
        let loads = self.loads.p_kw.len() * 16;
        // The ranked steps of every node that can be judged, as if each had been.
        let stress = judged * (self.flat_stride * std::mem::size_of::<RankedStep>() + 32);
        // The figures' step orders and per-node lowest voltages.
        let orders = self.solutions.len() * 4 * 4 + self.electrical.len() * 4;
        self.solutions.len() * per_step + loads + stress + orders + 1024
    }
}

impl Engine {
    /// What a feeder's base case shows over all its steps, once per feeder.
    pub(crate) fn summarise(&self, base: &FeederBase) -> BaseSummary {
        let limits = &base.limits;
        let mut before = Figures {
            max_loading_pct: 0.0,
            min_voltage_pu: f64::INFINITY,
            substation_transformer_loading_pct: 0.0,
            max_voltage_pu: f64::NEG_INFINITY,
        };
        let mut worst = WorstChecks::NONE;
        // A limit broken without the new load binds at once: the worst breach.
        let mut already: Option<(f64, CheckName)> = None;
        for o in &base.observed {
            before.max_loading_pct = before.max_loading_pct.max(o.max_loading_pct());
            before.min_voltage_pu = before.min_voltage_pu.min(o.v_min_pu);
            before.max_voltage_pu = before.max_voltage_pu.max(o.v_max_pu);
            before.substation_transformer_loading_pct = before
                .substation_transformer_loading_pct
                .max(o.substation_pct);
            absorb(&mut worst, o);
            let ratios = o.ratios(limits);
            let breach = ratios.iter().copied().fold(f64::MIN, f64::max);
            if breach > 1.0 && already.is_none_or(|(w, _)| breach > w) {
                let name = ratios
                    .iter()
                    .position(|r| *r > 1.0)
                    .map_or(CheckName::SegmentThermal, |i| CheckName::ELECTRICAL[i]);
                already = Some((breach, name));
            }
        }
        if !before.min_voltage_pu.is_finite() {
            before.min_voltage_pu = 1.0;
        }
        BaseSummary {
            before,
            worst,
            already_broken: already.map(|(_, name)| name),
        }
    }

    /// Builds a feeder base without caching it (capacity sweeps over every feeder).
    pub fn build_base(&self, f: usize, with_reservations: bool) -> FeederBase {
        let feeder = FeederIx::from_usize(f);
        let mut base = self.build_feeder(
            feeder,
            self.readings.as_ref(),
            with_reservations && self.feeder_reserved[f],
        );
        self.finish_base(&mut base, with_reservations);
        base
    }

    /// The group's series and the observation of a base whose flows are solved.
    pub(crate) fn finish_base(&self, base: &mut FeederBase, with_reservations: bool) {
        self.set_group_series(base, with_reservations);
        self.observe_base(base);
    }

    /// The base that generation checks read for feeder `f`, built without
    /// caching: measured loads (net of connected generators) with queued
    /// generators and generation reservations injecting at their nodes, here
    /// and in the busbar group; load reservations left out, since a load not
    /// yet built relieves no generation check.
    pub(crate) fn build_generation_base(&self, f: usize) -> FeederBase {
        let feeder = FeederIx::from_usize(f);
        let tree = self.topology.tree(feeder);
        let electrical = ElectricalFeeder::new(&self.network, tree);
        let loads = self
            .loads_of(feeder, &electrical, self.readings.as_ref(), &mut ())
            .settled(&electrical, &self.config.load_model);
        let injected = self
            .injections
            .iter()
            .filter_map(|i| {
                let placement = self.topology.placement(i.node)?;
                (placement.feeder == feeder).then(|| {
                    (
                        placement.local,
                        -i.kw,
                        -i.absorbed_kvar_per_kw,
                        i.profile.clone(),
                    )
                })
            })
            .collect();
        let mut base = self.base_with_extra_loads(feeder, electrical, loads, injected);
        base.counts_injections = true;
        self.set_group_series(&mut base, false);
        if let Some(g) = base.group {
            for (k, &w) in base.window_step.iter().enumerate() {
                base.group_kva[k] += self.group_injected_kva[g][w];
            }
        }
        self.observe_base(&mut base);
        base
    }

    /// Copies the group's power at each kept step into the base.
    fn set_group_series(&self, base: &mut FeederBase, with_reservations: bool) {
        base.group_kva = self.group_series(base.group, &base.window_step, with_reservations);
    }

    /// A feeder's load matrix over the engine's window: what each of its
    /// distribution transformers draws at each kept step.
    pub fn load_matrix(&self, feeder: FeederIx) -> FeederLoads {
        let tree = self.topology.tree(feeder);
        let electrical = ElectricalFeeder::new(&self.network, tree);
        self.loads_of(feeder, &electrical, self.readings.as_ref(), &mut ())
            .settled_whole(&electrical, &self.config.load_model)
    }

    /// A feeder's loads with every step solved loosely (see
    /// [`FeederLoads::build_loose`]), each batch of flows shown to `on_batch`,
    /// on the feeder with its load-free series chains folded where any fold
    /// (see [`SolvingLoads`]).
    pub(crate) fn loads_of(
        &self,
        feeder: FeederIx,
        electrical: &ElectricalFeeder,
        readings: &dyn ReadingsSource,
        on_batch: &mut dyn LooseBatches,
    ) -> SolvingLoads {
        let tree = self.topology.tree(feeder);
        let transformers: Vec<(TransformerIx, u32)> = tree
            .nodes
            .iter()
            .enumerate()
            .skip(1)
            .flat_map(|(local, node)| {
                self.node_transformers[node.get()]
                    .iter()
                    .filter(|t| self.network.transformers[t.get()].in_service)
                    .map(move |t| (*t, local as u32))
            })
            .collect();
        let mut loaded = vec![false; electrical.len()];
        for &(_, local) in &transformers {
            loaded[local as usize] = true;
        }
        let folding = ChainFolding::new(electrical, &loaded);
        let (solved_on, solved_transformers) = match &folding {
            Some(folding) => (
                &folding.folded,
                folding.transformers_on_folded(&transformers),
            ),
            None => (electrical, transformers.clone()),
        };
        let build = |on_batch: &mut dyn LooseBatches| {
            FeederLoads::build_loose(
                &self.network,
                tree,
                solved_transformers,
                solved_on,
                readings,
                &self.window,
                &self.config.load_model,
                on_batch,
            )
        };
        let loads = match &folding {
            Some(folding) if on_batch.reads_flows() => build(&mut UnfoldedBatches {
                folding,
                whole: SweepLanes::default(),
                reader: on_batch,
            }),
            _ => build(on_batch),
        };
        SolvingLoads {
            loads,
            folding,
            whole_transformers: transformers,
        }
    }

    pub(crate) fn build_feeder(
        &self,
        feeder: FeederIx,
        readings: &dyn ReadingsSource,
        with_reservations: bool,
    ) -> FeederBase {
        let tree = self.topology.tree(feeder);
        let electrical = ElectricalFeeder::new(&self.network, tree);
        let loads = self
            .loads_of(feeder, &electrical, readings, &mut ())
            .settled(&electrical, &self.config.load_model);
        self.base_from_loads(feeder, electrical, loads, with_reservations)
    }

    /// A feeder's base over the steps of `loads`, whose flows are settled.
    pub(crate) fn base_from_loads(
        &self,
        feeder: FeederIx,
        electrical: ElectricalFeeder,
        loads: SettledLoads,
        with_reservations: bool,
    ) -> FeederBase {
        let reserved = self
            .reservations
            .iter()
            .filter(|_| with_reservations)
            .filter_map(|r| {
                let placement = self.topology.placement(r.node)?;
                (placement.feeder == feeder).then(|| {
                    (
                        placement.local,
                        r.demand_kw,
                        power_factor_tan(r.power_factor),
                        r.profile.clone(),
                    )
                })
            })
            .collect();
        self.base_with_extra_loads(feeder, electrical, loads, reserved)
    }

    /// A feeder's base over the steps of `loads`, whose flows are settled, with
    /// `extra` loads at their nodes solved into every flow: (local node, kW,
    /// kvar per kW, profile); an injection is a negative kW.
    pub(crate) fn base_with_extra_loads(
        &self,
        feeder: FeederIx,
        electrical: ElectricalFeeder,
        loads: SettledLoads,
        reserved: Vec<(u32, f64, f64, Option<Vec<f64>>)>,
    ) -> FeederBase {
        self.base_solved(feeder, electrical, loads, reserved, None, true)
    }

    /// [`Self::base_with_extra_loads`], the extra loads solved in with
    /// `settings` (the flows' own, to their looser tolerance); with `Some`,
    /// every step is solved again from its flow even without extra loads.
    /// Without `single_precision`, the flows are kept in full precision only:
    /// a base to be restricted to fewer steps ([`Self::restricted_base`]) is
    /// never observed as it is.
    pub(crate) fn base_solved(
        &self,
        feeder: FeederIx,
        electrical: ElectricalFeeder,
        loads: SettledLoads,
        reserved: Vec<(u32, f64, f64, Option<Vec<f64>>)>,
        solve_again: Option<SweepSettings>,
        single_precision: bool,
    ) -> FeederBase {
        let SettledLoads { loads, folding } = loads;
        let tree = self.topology.tree(feeder);
        let window_step = self.window_steps(&loads);
        let group = self.topology.busbar_group_index(tree.head());
        let mut base = FeederBase {
            electrical,
            loads,
            reserved,
            solutions: Vec::new(),
            full_solutions: Vec::new(),
            full_solutions_folding: None,
            observed: Vec::new(),
            subtree_min_pu: Vec::new(),
            subtree_max_pu: OnceLock::new(),
            in_series: OnceLock::new(),
            export_rooms: OnceLock::new(),
            exports_judged: JudgedCount::default(),
            uid: NEXT_BASE_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            counts_injections: false,
            limits: self.config.limits,
            path_margin_a: Vec::new(),
            path_load_room_a: Vec::new(),
            path_max_loading: Vec::new(),
            voltage_kv: Vec::new(),
            path_voltage_room: Vec::new(),
            ranked_steps: Vec::new(),
            figure_orders: OnceLock::new(),
            flow_folding: OnceLock::new(),
            flat_stride: 0,
            substation_room_kva: Vec::new(),
            head_i_a: Vec::new(),
            least_room_kva: Vec::new(),
            feeder_min_pu: Vec::new(),
            max_loading: Vec::new(),
            summary: Default::default(),
            flat_shape: Vec::new(),
            group,
            window_step,
            group_kva: Vec::new(),
        };
        let n = base.electrical.len();
        // The load model solved each step's loads; reservations add to them, and
        // each step is solved again from its own flow.
        let mut solved = std::mem::take(&mut base.loads.flows);
        // Flows of the feeder with its series chains folded stay so until
        // observed, each unfolded then while in cache, unless solved again
        // here (on the whole feeder: a reservation may sit on a folded node).
        let solved_again = solve_again.is_some() || !base.reserved.is_empty();
        base.full_solutions_folding = match folding {
            Some(folding) if solved_again || !single_precision => {
                for flow in &mut solved {
                    *flow = folding.unfold(flow);
                }
                None
            }
            kept => kept,
        };
        if solved_again {
            let settings = solve_again.unwrap_or_default();
            let mut loads = StepLoads::new(n);
            let mut scratch = SweepLanes::default();
            let mut lanes: [Solution; LANES] = Default::default();
            let steps: Vec<usize> = (0..solved.len()).collect();
            for batch in steps.chunks(LANES) {
                for l in 0..LANES {
                    // A short batch repeats its last step in the spare lanes.
                    let k = batch[l.min(batch.len() - 1)];
                    self.base_node_loads(&base, k, &mut loads.p_kw[l], &mut loads.q_kvar[l]);
                    loads.source_kv[l] = base.loads.source_kv[k];
                    lanes[l].clone_from(&solved[k]);
                }
                sweep_steps(&base.electrical, &loads, settings, &mut scratch, &mut lanes);
                for (l, &k) in batch.iter().enumerate() {
                    std::mem::swap(&mut solved[k], &mut lanes[l]);
                }
            }
        }
        if single_precision && base.full_solutions_folding.is_none() {
            base.solutions = solved.iter().map(StoredSolution::new).collect();
        }
        base.full_solutions = solved;
        base
    }

    /// Loads per local node at step `k` including reservations.
    pub fn base_node_loads(&self, base: &FeederBase, k: usize, p: &mut [f64], q: &mut [f64]) {
        self.base_node_loads_at(base, k, p, q, |local| local as usize);
    }

    /// [`Self::base_node_loads`] on a tree whose node `at(local)` stands for
    /// each loaded local node (a folded feeder's: see `chains`).
    #[inline]
    pub(crate) fn base_node_loads_at(
        &self,
        base: &FeederBase,
        k: usize,
        p: &mut [f64],
        q: &mut [f64],
        at: impl Fn(u32) -> usize + Copy,
    ) {
        base.loads.node_loads_at(k, p, q, at);
        let quarter = self.quarter_of_day(base.loads.steps[k]);
        for (local, kw, tan, profile) in &base.reserved {
            let f = profile.as_ref().map_or(1.0, |prof| prof[quarter]);
            p[at(*local)] += kw * f;
            q[at(*local)] += kw * f * tan;
        }
    }

    pub(crate) fn observe_base(&self, base: &mut FeederBase) {
        let full_solutions = std::mem::take(&mut base.full_solutions);
        // Folded flows are unfolded four at a time and kept in single
        // precision here: a city feeder's flows over a week, unfolded at
        // once, were megabytes written and read back.
        let folding = base.full_solutions_folding.take();
        let mut unfolded: [Solution; LANES] = Default::default();
        let mut stored = Vec::with_capacity(if folding.is_some() {
            full_solutions.len()
        } else {
            0
        });
        let mut observed = Vec::with_capacity(full_solutions.len());
        let e = &base.electrical;
        let n = e.len();
        let steps = full_solutions.len();
        let mut rows = PathRows::new(e);
        // Each step is worked out in double precision in rows over the nodes,
        // then kept in single precision, which is ample for screening and halves
        // a city's memory; the minima and maxima along paths come out the same
        // either way, as rounding keeps order.
        // Step-major, so appended in order rather than zeroed and overwritten.
        let mut subtree_min_pu = Vec::with_capacity(n * steps);
        // Node-major, in the order of a block's rows (see `BlockRows`).
        let mut node_rows: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0.0f32; n * steps]);
        let mut feeder_min_pu = Vec::with_capacity(steps);
        let substation_room_kva = self.substation_rooms(base);
        // Each node's least room is taken from the block while it is in
        // cache: read back from the rows, it was a pass over megabytes.
        let mut least_room_kva = vec![f64::INFINITY; n];
        // The node-major rows are written a block of steps at a time.
        let mut block: Vec<BlockRows> = vec![[[0.0f32; BLOCK]; 5]; n];
        for (start, solutions) in full_solutions.chunks(BLOCK).enumerate() {
            let start = start * BLOCK;
            for (quad, lane_solutions) in solutions.chunks(LANES).enumerate() {
                let first = quad * LANES;
                let len = lane_solutions.len();
                // A short quad repeats its last step in the spare lanes.
                let lane = |l: usize| l.min(len - 1);
                let quad_solutions: [&Solution; LANES] = match &folding {
                    Some(folding) => {
                        for (flow, whole) in lane_solutions.iter().zip(&mut unfolded) {
                            folding.unfold_into(flow, whole);
                            stored.push(StoredSolution::new(whole));
                        }
                        std::array::from_fn(|l| &unfolded[lane(l)])
                    }
                    None => std::array::from_fn(|l| &lane_solutions[lane(l)]),
                };
                rows.fill(e, quad_solutions, &base.limits, true);
                let figures = self.observe_steps(
                    base,
                    std::array::from_fn(|l| start + first + lane(l)),
                    quad_solutions,
                    [Complex64::new(0.0, 0.0); LANES],
                );
                observed.extend_from_slice(&figures[..len]);
                for l in 0..len {
                    feeder_min_pu.push(rows.subtree_min_pu[0][l]);
                    subtree_min_pu.extend(rows.subtree_min_pu.iter().map(|v| v[l] as f32));
                }
                rows.narrow_into(&mut block, first);
            }
            let len = solutions.len();
            write_block_out(
                &block,
                start..start + len,
                &substation_room_kva,
                &e.nominal_kv,
                &mut node_rows,
                &mut least_room_kva,
            );
        }
        if let Some(folding) = &folding {
            base.solutions = stored;
            base.in_series = OnceLock::from(SeriesNodes::unfolded_by(e, folding));
        }
        base.observed = observed;
        base.feeder_min_pu = feeder_min_pu;
        base.subtree_min_pu = subtree_min_pu;
        let [
            voltage_kv,
            path_margin_a,
            path_max_loading,
            path_voltage_room,
            path_load_room_a,
        ] = node_rows;
        base.path_margin_a = path_margin_a;
        base.path_load_room_a = path_load_room_a;
        base.path_max_loading = path_max_loading;
        base.voltage_kv = voltage_kv;
        base.path_voltage_room = path_voltage_room;
        base.max_loading = base
            .observed
            .iter()
            .map(|o| o.max_loading_pct() / 100.0)
            .collect();
        base.flat_shape = vec![1.0; base.solutions.len()];
        debug_assert_eq!(base.solutions.len(), steps);
        base.substation_room_kva = substation_room_kva;
        base.least_room_kva = least_room_kva;
        base.head_i_a = base.solutions.iter().map(|s| s.i_a(0)).collect();
        base.flat_stride = steps.min(FLAT_STEPS);
        // Each node's steps ranked by a flat load's room there, worked out
        // when a load is first judged at it.
        base.ranked_steps = vec![OnceLock::new(); n];
        base.summary = self.summarise(base);
    }

    /// The room a flat load at each local node has at each step of a base not
    /// yet observed ([`flat_room`] of its path rows, worked out from its flows
    /// in full precision), handed to `each_step` a step at a time, in order, as a
    /// row over the local nodes: what picks the steps a restoration case
    /// keeps without observing every step first. A caller that needs a few
    /// figures of each row keeps those alone: a city capacity sweep's rows
    /// came to 6.7 GB written and read again.
    ///
    /// A step broken already in a way no room shows, its flow not converged
    /// or a voltage above the highest allowed (within the flows' looser
    /// tolerance: see [`CASE_SELECTION_SWEEP`]), has no room at any node:
    /// kept, it is judged broken as over every step; left out, no headroom
    /// clears it. A night of a supplier's busbar above 1.07 pu, left out,
    /// let a city case carry 1,847 kW that over every step carries none.
    ///
    /// With `folding`, the base's flows are those of its folded tree (see
    /// `chains`), unfolded here four steps at a time; `each_step` sees each
    /// step's index and its flow on the whole tree beside its row.
    pub(crate) fn each_unobserved_room_row(
        &self,
        base: &FeederBase,
        folding: Option<&ChainFolding>,
        mut each_step: impl FnMut(usize, &Solution, &[f64]),
    ) {
        let e = &base.electrical;
        let n = e.len();
        let solutions = &base.full_solutions;
        let rooms = StepRooms::new(self, base, e);
        let mut rows = PathRows::new(e);
        let mut row = Vec::with_capacity(n);
        let mut unfolded: [Solution; LANES] = Default::default();
        for (quad, lane_solutions) in solutions.chunks(LANES).enumerate() {
            let len = lane_solutions.len();
            if let Some(folding) = folding {
                for (folded, whole) in lane_solutions.iter().zip(&mut unfolded) {
                    folding.unfold_into(folded, whole);
                }
            }
            let quad_solutions: [&Solution; LANES] = std::array::from_fn(|l| match folding {
                Some(_) => &unfolded[l.min(len - 1)],
                None => &lane_solutions[l.min(len - 1)],
            });
            rows.fill(e, quad_solutions, &base.limits, false);
            for (l, solution) in quad_solutions.iter().enumerate().take(len) {
                let k = quad * LANES + l;
                row.clear();
                match rooms.substation_kva(&rows, solution, l, k) {
                    None => row.resize(n, f64::NEG_INFINITY),
                    Some(substation_kva) => {
                        row.extend((0..n).map(|j| rooms.at(&rows, l, j, substation_kva)));
                    }
                }
                each_step(k, solution, &row);
            }
        }
    }

    /// For a base whose flows are those of `folding`'s folded tree, per four
    /// steps in order (a lane each, the last quad's spare lanes repeating
    /// its last step): the first step, their folded flows, how many lanes
    /// are steps, and per lane the least room of any node and the room at
    /// the node `judged` (its index in the folded tree), as
    /// [`Self::each_unobserved_room_row`] gives them, worked out on the
    /// folded tree alone (see [`PathRows::folded`]): what a set judged at
    /// one node reads of each row, without unfolding a step.
    ///
    /// Both are the whole tree's (see [`PathRows::folded`]): a folded node
    /// has no less room than the kept nodes at the ends of its chain.
    pub(crate) fn each_folded_room_pair(
        &self,
        base: &FeederBase,
        folding: &ChainFolding,
        judged: usize,
        mut each_quad: impl FnMut(usize, [&Solution; LANES], usize, Lanes, Lanes),
    ) {
        let e = &folding.folded;
        let n = e.len();
        let rooms = StepRooms::new(self, base, e);
        let mut rows = PathRows::folded(&base.electrical, folding);
        for (quad, lane_solutions) in base.full_solutions.chunks(LANES).enumerate() {
            let len = lane_solutions.len();
            let first = quad * LANES;
            let quad_solutions: [&Solution; LANES] =
                std::array::from_fn(|l| &lane_solutions[l.min(len - 1)]);
            rows.fill(e, quad_solutions, &base.limits, false);
            let substation: [Option<f64>; LANES] = std::array::from_fn(|l| {
                let l = l.min(len - 1);
                rooms.substation_kva(&rows, quad_solutions[l], l, first + l)
            });
            let substation_kva = lanes!(|l| substation[l].unwrap_or(0.0));
            // Each lane's least over the nodes in order, the lanes at once.
            let mut least = [f64::INFINITY; LANES];
            for j in 1..n {
                let room = lanes!(|l| rooms.at(&rows, l, j, substation_kva[l]));
                least = lanes!(|l| least[l].min(room[l]));
            }
            let at = lanes!(|l| rooms.at(&rows, l, judged, substation_kva[l]));
            let broken = |room: Lanes| {
                lanes!(|l| match substation[l] {
                    None => f64::NEG_INFINITY,
                    Some(_) => room[l],
                })
            };
            each_quad(first, quad_solutions, len, broken(least), broken(at));
        }
    }

    /// A base not yet observed, whose flows were solved to a looser tolerance
    /// ([`CASE_SELECTION_SWEEP`]), restricted to its steps `kept` (ascending),
    /// solved again from those flows and observed; its group's flow is carried
    /// over, corrected by what solving again moved its head. Flows of
    /// `folding`'s folded tree are solved again there, and observed there
    /// too where `stay_folded` (the base is then the folded tree's, the
    /// transformers at its nodes), else unfolded onto the whole tree.
    pub(crate) fn restricted_base(
        &self,
        base: FeederBase,
        kept: &[usize],
        folding: Option<&ChainFolding>,
        stay_folded: bool,
    ) -> FeederBase {
        let FeederBase {
            electrical,
            mut loads,
            reserved,
            full_solutions,
            group,
            limits,
            group_kva,
            counts_injections,
            ..
        } = base;
        let loose_heads: Vec<Complex64> = kept
            .iter()
            .map(|&k| full_solutions[k].head_power_kva())
            .collect();
        loads.flows = full_solutions;
        let mut loads = loads.restricted_to(kept);
        // Folded flows are solved again on the folded tree (a tree folds
        // only without reservations, which are solved in on the whole one)
        // and observed unfolded, four at a time.
        let whole_transformers = folding.map(|folding| {
            debug_assert!(reserved.is_empty());
            let folded = folding.transformers_on_folded(&loads.transformers);
            std::mem::replace(&mut loads.transformers, folded)
        });
        let (solved_on, whole) = match folding {
            Some(folding) => (folding.folded.clone(), Some(electrical)),
            None => (electrical, None),
        };
        let unfold = folding.filter(|_| !stay_folded);
        let mut restricted = self.base_solved(
            loads.feeder,
            solved_on,
            loads.into(),
            reserved,
            Some(SweepSettings::default()),
            unfold.is_none(),
        );
        if let (Some(folding), Some(transformers), Some(whole)) =
            (unfold, whole_transformers, whole)
        {
            restricted.loads.on_whole_tree(transformers);
            restricted.full_solutions_folding = Some(folding.clone());
            restricted.electrical = whole;
        }
        restricted.group_kva = kept
            .iter()
            .zip(&loose_heads)
            .zip(&restricted.full_solutions)
            .map(|((&k, loose), exact)| group_kva[k] + exact.head_power_kva() - loose)
            .collect();
        restricted.group = group;
        restricted.limits = limits;
        restricted.counts_injections = counts_injections;
        self.observe_base(&mut restricted);
        restricted
    }

    /// Per kept step of `base`, the room left on the substation
    /// transformers feeding its head busbar, kVA (infinite without a rating).
    fn substation_rooms(&self, base: &FeederBase) -> Vec<f64> {
        let rated = self.group_rated_kva(base.group);
        let limit_kva = rated * base.limits.substation_transformer_pct / 100.0;
        base.group_kva
            .iter()
            .map(|g| substation_room(limit_kva, *g))
            .collect()
    }

    /// Reads the checks' figures off a power flow of `base` at step `k`;
    /// `added_head_kva` is what the new load adds at the feeder head.
    pub fn observe(
        &self,
        base: &FeederBase,
        k: usize,
        solution: &Solution,
        added_head_kva: Complex64,
    ) -> Observed {
        self.observe_each(base, [k], [solution], [added_head_kva])[0]
    }

    /// [`Self::observe`] of four steps at once, a lane each: a base reads
    /// every kept step's figures.
    pub(crate) fn observe_steps(
        &self,
        base: &FeederBase,
        steps: [usize; LANES],
        solutions: [&Solution; LANES],
        added_head_kva: [Complex64; LANES],
    ) -> [Observed; LANES] {
        let engine = self;
        avx2_or_portable!(
            Engine::observe_each::<LANES>,
            fn(
                engine: &Engine,
                base: &FeederBase,
                steps: [usize; LANES],
                solutions: [&Solution; LANES],
                added_head_kva: [Complex64; LANES],
            ) -> [Observed; LANES]
        )
    }

    /// The figures of `W` power flows, a lane each (one for an evaluation's
    /// flow, four for a base's steps).
    #[inline(always)]
    fn observe_each<const W: usize>(
        &self,
        base: &FeederBase,
        steps: [usize; W],
        solutions: [&Solution; W],
        added_head_kva: [Complex64; W],
    ) -> [Observed; W] {
        let extremes = FlowExtremes::of_lanes(&base.electrical, solutions);
        std::array::from_fn(|l| {
            self.observed_of(
                base,
                steps[l],
                &extremes[l],
                solutions[l],
                added_head_kva[l],
            )
        })
    }

    /// The figures of a flow of `base` at step `k` from its extremes, its
    /// head and `added_head_kva`, what the new load adds at the head.
    #[inline(always)]
    pub(crate) fn observed_of(
        &self,
        base: &FeederBase,
        k: usize,
        extremes: &FlowExtremes,
        flow: &Solution,
        added_head_kva: Complex64,
    ) -> Observed {
        let e = &base.electrical;
        let rated = self.group_rated_kva(base.group);
        let x = extremes;
        let group_kva = base.group_kva[k] + added_head_kva;
        Observed {
            segment_pct: x.loading_2.sqrt() * 100.0,
            segment_at: x.segment_at,
            head_pct: e
                .head_rated_a
                .map_or(0.0, |rated| flow.head_current_a() / rated * 100.0),
            v_min_pu: x.v_min_2.sqrt(),
            v_min_at: x.v_min_at,
            v_max_pu: if x.v_max_2 >= 0.0 {
                x.v_max_2.sqrt()
            } else {
                f64::NEG_INFINITY
            },
            v_max_at: x.v_max_at,
            substation_export: group_kva.re < 0.0,
            // The base's own series: reservations in the group count where it does.
            substation_pct: if rated > 0.0 {
                group_kva.norm_sqr().sqrt() / rated * 100.0
            } else {
                0.0
            },
            converged: flow.converged,
        }
    }
}

/// What the room rows of a base's flows not yet observed read besides the
/// path rows ([`Engine::each_unobserved_room_row`],
/// [`Engine::each_folded_room_pair`]): the group's transformer limit and the
/// highest voltage each node of the feeder the rows are of may show.
struct StepRooms<'a> {
    base: &'a FeederBase,
    nominal_kv: &'a [f64],
    limit_kva: f64,
    highest_kv: Vec<f64>,
}

impl<'a> StepRooms<'a> {
    /// For rows of `e`, `base`'s feeder or its folding.
    fn new(engine: &Engine, base: &'a FeederBase, e: &'a ElectricalFeeder) -> Self {
        let rated = engine.group_rated_kva(base.group);
        Self {
            base,
            nominal_kv: &e.nominal_kv,
            limit_kva: rated * base.limits.substation_transformer_pct / 100.0,
            highest_kv: e
                .nominal_kv
                .iter()
                .map(|kv| kv * (base.limits.v_max_pu - BROKEN_ABOVE_MARGIN_PU))
                .collect(),
        }
    }

    /// The substation's room at step `k`, whose flow `solution` fills lane
    /// `l` of `rows`; `None` where the step has no room at any node (its flow
    /// not converged, or a voltage above the highest allowed).
    fn substation_kva(
        &self,
        rows: &PathRows,
        solution: &Solution,
        l: usize,
        k: usize,
    ) -> Option<f64> {
        let n = self.highest_kv.len();
        let above = !solution.converged
            || rows.voltage_kv[..n]
                .iter()
                .zip(&self.highest_kv)
                .any(|(v, highest)| v[l] > *highest);
        (!above).then(|| {
            self.base
                .group_kva
                .get(k)
                .map_or(f64::INFINITY, |g| substation_room(self.limit_kva, *g))
        })
    }

    /// The room at node `j` in lane `l` of `rows`.
    #[inline(always)]
    fn at(&self, rows: &PathRows, l: usize, j: usize, substation_kva: f64) -> f64 {
        flat_room(
            rows.margin_a[j][l],
            rows.voltage_kv[j][l],
            rows.voltage_room[j][l],
            self.nominal_kv[j],
            substation_kva,
        )
    }
}

/// The room a flat load has at a node at one step, kVA, from what a base keeps
/// there: the least of the thermal room along its path (the least current
/// margin, A, at its voltage, kV), the voltage room (the path's voltage room
/// per ohm at its voltage; where the flow gives none, a NaN, `max` counts none)
/// and the substation's (`substation_kva`).
pub(crate) fn flat_room(
    margin_a: f64,
    voltage_kv: f64,
    voltage_room_per_ohm: f64,
    nominal_kv: f64,
    substation_kva: f64,
) -> f64 {
    let thermal_kva = SQRT_3 * margin_a * voltage_kv;
    let voltage_kva = (voltage_room_per_ohm * 1000.0 * nominal_kv * voltage_kv).max(0.0);
    thermal_kva.min(voltage_kva).min(substation_kva)
}

/// The room left on a busbar group's transformers, kVA, at `limit_kva` (none
/// set: infinite) with `group_kva` through them.
fn substation_room(limit_kva: f64, group_kva: Complex64) -> f64 {
    if limit_kva > 0.0 {
        limit_kva - group_kva.norm_sqr().sqrt()
    } else {
        f64::INFINITY
    }
}

/// How far under the highest allowed voltage, pu, a restoration case's
/// flow over every step counts as above it: ten times the tolerance it is
/// solved to ([`CASE_SELECTION_SWEEP`]), so that a step the exact flow puts
/// above is never left out.
const BROKEN_ABOVE_MARGIN_PU: f64 = 1e-3;

/// The sweeps of a restoration case's flows over every step, which choose the
/// steps it keeps and bound the room of the others (within the 15 % the
/// choice allows: see `n1::DROPPED_ROOM_MARGIN`): to an error left of 1e-4
/// pu, a hundred times the exact flows' tolerance, judged from the sweep's
/// contraction (a city capacity sweep's case flows take 2.16 sweeps a step,
/// 3.03 where the last change had to be under 1e-4). The steps kept are
/// solved again to the exact tolerance.
pub const CASE_SELECTION_SWEEP: SweepSettings = SweepSettings {
    tolerance_pu: 1e-4,
    max_iterations: 50,
    tolerance_on_error_left: true,
};

/// A candidate's flows are solved on a folded feeder where the folding keeps
/// at most this share of its nodes: with more, unfolding each flow onto the
/// whole feeder costs about what the sweeps save.
pub(crate) const FOLDING_WORTH_KEEPING: f64 = 0.75;

/// How many steps per node a flat load is judged at before the rest of the
/// window is needed.
pub const FLAT_STEPS: usize = 64;

/// Four power flows' screening figures in rows over a feeder's nodes, a lane
/// each: what a base keeps per step. Worked out four steps at a time, as the
/// lane sweep solves them: a step at a time, these rows were a fifth of a
/// capacity sweep.
pub(crate) struct PathRows {
    /// Voltage magnitude, kV.
    pub(crate) voltage_kv: Vec<Lanes>,
    /// Lowest voltage of each node's subtree, pu.
    pub(crate) subtree_min_pu: Vec<Lanes>,
    /// Least current margin (limit less current, A) from the busbar to each
    /// node, the head breaker included.
    pub(crate) margin_a: Vec<Lanes>,
    /// Least room for a load's current (A) from the busbar to each node (see
    /// [`FeederBase::path_load_room_a`]), where asked for.
    pub(crate) load_room_a: Vec<Lanes>,
    /// Highest loading (current over rating) from the busbar to each node.
    pub(crate) max_loading: Vec<Lanes>,
    /// Least voltage room per ohm along the path (see
    /// [`FeederBase::path_voltage_room`]).
    pub(crate) voltage_room: Vec<Lanes>,
    /// One over each node's nominal voltage, over each branch's rating (0
    /// where unrated) and over the impedance from the busbar (infinite at
    /// zero): rows are filled
    /// for every step of every feeder, and divisions were most of their cost.
    inverse_nominal_kv: Vec<f64>,
    inverse_rated_a: Vec<f64>,
    inverse_z_path: Vec<f64>,
}

impl PathRows {
    /// Rows for feeder `e` (local indices put parents first).
    pub(crate) fn new(e: &ElectricalFeeder) -> Self {
        let n = e.len();
        let rows = || vec![[0.0; LANES]; n];
        Self {
            inverse_nominal_kv: e.nominal_kv.iter().map(|v| v.recip()).collect(),
            inverse_rated_a: e
                .rated_a
                .iter()
                .map(|&a| if a.is_finite() { a.recip() } else { 0.0 })
                .collect(),
            inverse_z_path: e.inverse_path_impedance(),
            voltage_kv: rows(),
            subtree_min_pu: rows(),
            margin_a: rows(),
            load_room_a: rows(),
            max_loading: rows(),
            voltage_room: rows(),
        }
    }

    /// Rows of the folded feeder of `folding`, a folding of `whole`, that
    /// give each kept node the margin, voltage room and voltage the whole
    /// feeder's rows give it, reading no folded node.
    ///
    /// - A chain carries one current, so its folded branch, rated as its
    ///   least rated segment, has the chain's margin.
    /// - Impedances from the busbar are the whole feeder's (summed the other
    ///   way round they differ in the last bits).
    /// - A folded node's voltage room term, (lowest voltage below it less the
    ///   least allowed) over its impedance from the busbar, is never the
    ///   least on a path through its chain, so leaving it out changes no
    ///   kept node's voltage room. Where the voltage falls along the chain,
    ///   the lowest below a folded node is the chain end's, over a smaller
    ///   impedance. Where it rises, it is the node's own, and along a chain
    ///   whose segments share one angle (R/X), (lowest less allowed) over
    ///   impedance runs one way from the top to the end, so one of those
    ///   two terms, both on the path, is no higher. (Segments of different
    ///   angles bend the rise, by far less than the tolerance the flows
    ///   these rows choose steps from are solved to.)
    pub(crate) fn folded(whole: &ElectricalFeeder, folding: &ChainFolding) -> Self {
        let mut rows = Self::new(&folding.folded);
        let whole_inverse_z = whole.inverse_path_impedance();
        rows.inverse_z_path = (0..whole.len())
            .filter(|&j| folding.kept(j).is_some())
            .map(|j| whole_inverse_z[j])
            .collect();
        rows
    }

    /// Writes the rows' four lanes, narrowed, into each node's block rows
    /// at block steps `first` on (a short quad's spare lanes repeat its last
    /// step, which the copy out of the block leaves out).
    fn narrow_into(&self, block: &mut [BlockRows], first: usize) {
        let rows = self;
        avx2_or_portable!(
            PathRows::narrow_into_portable,
            fn(rows: &PathRows, block: &mut [BlockRows], first: usize)
        )
    }

    #[inline(always)]
    fn narrow_into_portable(&self, block: &mut [BlockRows], first: usize) {
        let narrow = |row: &Lanes| row.map(|x| x as f32);
        let quad = first..first + LANES;
        for (j, node_block) in block.iter_mut().enumerate() {
            let figures = [
                &self.voltage_kv[j],
                &self.margin_a[j],
                &self.max_loading[j],
                &self.voltage_room[j],
                &self.load_room_a[j],
            ];
            for (node_row, row) in node_block.iter_mut().zip(figures) {
                node_row[quad.clone()].copy_from_slice(&narrow(row));
            }
        }
    }

    /// The rows of `solutions`, power flows of feeder `e`, lane by lane;
    /// [`Self::load_room_a`] only where `load_room` asks for it.
    pub(crate) fn fill(
        &mut self,
        e: &ElectricalFeeder,
        solutions: [&Solution; LANES],
        limits: &Limits,
        load_room: bool,
    ) {
        let rows = self;
        avx2_or_portable!(
            PathRows::fill_portable,
            fn(
                rows: &mut PathRows,
                e: &ElectricalFeeder,
                solutions: [&Solution; LANES],
                limits: &Limits,
                load_room: bool,
            )
        )
    }

    #[inline(always)]
    fn fill_portable(
        &mut self,
        e: &ElectricalFeeder,
        solutions: [&Solution; LANES],
        limits: &Limits,
        load_room: bool,
    ) {
        let n = e.len();
        let thermal = limits.thermal_pct / 100.0;
        let v: [&[Complex64]; LANES] = std::array::from_fn(|l| &solutions[l].v_kv[..n]);
        let i: [&[Complex64]; LANES] = std::array::from_fn(|l| &solutions[l].i_a[..n]);
        let parent = &e.parent[..n];
        let voltage_kv = &mut self.voltage_kv[..n];
        let subtree_min_pu = &mut self.subtree_min_pu[..n];
        let margin_a = &mut self.margin_a[..n];
        let max_loading = &mut self.max_loading[..n];
        let voltage_room = &mut self.voltage_room[..n];
        // The slopes of the least and the largest voltage angle.
        let (mut slope_lo, mut slope_hi) = ([f64::INFINITY; LANES], [f64::NEG_INFINITY; LANES]);
        for j in 0..n {
            let (re, im, magnitude) = lane_parts(v, j);
            voltage_kv[j] = magnitude;
            let inverse_nominal = self.inverse_nominal_kv[j];
            subtree_min_pu[j] = lanes!(|l| magnitude[l] * inverse_nominal);
            if load_room {
                // A voltage a quarter turn or more off the busbar's (no
                // flow a base judges) leaves no arc: the whole circle.
                let slope = lanes!(|l| if re[l] > 0.0 {
                    im[l] / re[l]
                } else {
                    f64::INFINITY
                });
                slope_lo = lanes!(|l| slope_lo[l].min(slope[l]));
                slope_hi = lanes!(|l| slope_hi[l].max(slope[l]));
            }
        }
        let arcs = LoadArcs::new(std::array::from_fn(|l| {
            LoadArc::new(slope_lo[l], slope_hi[l], v[l][0].re)
        }));
        for j in (1..n).rev() {
            let p = parent[j] as usize;
            let (above, own) = (subtree_min_pu[p], subtree_min_pu[j]);
            subtree_min_pu[p] = lanes!(|l| above[l].min(own[l]));
        }
        let load_room_a = &mut self.load_room_a[..n];
        let (head_re, head_im, head) = lane_parts(i, 0);
        (margin_a[0], max_loading[0]) = match e.head_rated_a {
            Some(rated) => (
                lanes!(|l| rated * thermal - head[l]),
                lanes!(|l| head[l] / rated),
            ),
            None => ([f64::INFINITY; LANES], [0.0; LANES]),
        };
        if load_room {
            load_room_a[0] = match e.head_rated_a {
                Some(rated) => arcs.room(rated * thermal, head_re, head_im, head),
                None => [f64::INFINITY; LANES],
            };
        }
        voltage_room[0] = [f64::INFINITY; LANES];
        for j in 1..n {
            let p = parent[j] as usize;
            let (re, im, current) = lane_parts(i, j);
            let rated = e.rated_a[j];
            let (margin, loading) = if rated.is_finite() {
                let inverse_rated = self.inverse_rated_a[j];
                (
                    lanes!(|l| rated * thermal - current[l]),
                    lanes!(|l| current[l] * inverse_rated),
                )
            } else {
                ([f64::INFINITY; LANES], [0.0; LANES])
            };
            if load_room {
                let room_above = load_room_a[p];
                load_room_a[j] = if rated.is_finite() {
                    let room = arcs.room(rated * thermal, re, im, current);
                    lanes!(|l| room[l].min(room_above[l]))
                } else {
                    room_above
                };
            }
            let margin_above = margin_a[p];
            margin_a[j] = lanes!(|l| if margin[l] < margin_above[l] {
                margin[l]
            } else {
                margin_above[l]
            });
            let loading_above = max_loading[p];
            max_loading[j] = lanes!(|l| loading[l].max(loading_above[l]));
            let inverse_z = self.inverse_z_path[j];
            let own = if inverse_z.is_finite() {
                let lowest = subtree_min_pu[j];
                lanes!(|l| (lowest[l] - limits.v_min_pu) * inverse_z)
            } else {
                [f64::INFINITY; LANES]
            };
            let room_above = voltage_room[p];
            voltage_room[j] = lanes!(|l| own[l].min(room_above[l]));
        }
    }
}

/// Entry `j` of four lanes' complex rows as rows of its real parts, its
/// imaginary parts and its magnitudes (the root of `norm_sqr`, bit for bit).
/// Gathered into rows first: read as complex numbers lane by lane, the roots
/// and the divisions after them stayed scalar.
#[inline(always)]
fn lane_parts(rows: [&[Complex64]; LANES], j: usize) -> (Lanes, Lanes, Lanes) {
    let (re, im) = (lanes!(|l| rows[l][j].re), lanes!(|l| rows[l][j].im));
    let magnitude = lanes!(|l| (re[l] * re[l] + im[l] * im[l]).sqrt());
    (re, im, magnitude)
}

/// Steps a base's rows are written out at a time (see
/// [`Engine::observe_base`]): written a step at a time, each step touched a
/// cache line per node and row.
const BLOCK: usize = 16;

/// One node's figures over a block of steps, in single precision: its
/// voltage (kV), the path's margin (A), highest loading, voltage room per
/// ohm and load room (A), in that order.
type BlockRows = [[f32; BLOCK]; 5];

/// Copies a block of steps, `at` (its first steps' figures in `block`, a
/// node's rows each), out into the node-major rows of a base, in the order
/// of [`BlockRows`], and lowers each node's least room
/// ([`FeederBase::least_room_kva`]) by the block's. Compiled for AVX2 too:
/// as four lanes of the baseline's two, it was a tenth of a city capacity
/// sweep's base building.
fn write_block_out(
    block: &[BlockRows],
    at: Range<usize>,
    substation_room_kva: &[f64],
    nominal_kv: &[f64],
    node_rows: &mut [Vec<f32>; 5],
    least_room_kva: &mut [f64],
) {
    avx2_or_portable!(
        write_block_out_portable,
        fn(
            block: &[BlockRows],
            at: Range<usize>,
            substation_room_kva: &[f64],
            nominal_kv: &[f64],
            node_rows: &mut [Vec<f32>; 5],
            least_room_kva: &mut [f64],
        )
    )
}

#[inline(always)]
fn write_block_out_portable(
    block: &[BlockRows],
    at: Range<usize>,
    substation_room_kva: &[f64],
    nominal_kv: &[f64],
    node_rows: &mut [Vec<f32>; 5],
    least_room_kva: &mut [f64],
) {
    let len = at.len();
    let steps = node_rows[0].len() / block.len().max(1);
    let substation = &substation_room_kva[at.clone()];
    for (j, node_block) in block.iter().enumerate() {
        let out = j * steps + at.start..j * steps + at.end;
        for (row, node_row) in node_rows.iter_mut().zip(node_block) {
            row[out.clone()].copy_from_slice(&node_row[..len]);
        }
        // A flat load's room with the margin as its thermal part (see
        // `FeederBase::least_room_kva`), from the single-precision figures
        // the base keeps, the least kept per lane of four steps: one running
        // least made each step wait on the last. (The order does not matter:
        // `min` passes over NaNs, and no room is a negative zero.)
        let room = |b: usize| {
            flat_room(
                f64::from(node_block[1][b]),
                f64::from(node_block[0][b]),
                f64::from(node_block[3][b]),
                nominal_kv[j],
                substation[b],
            )
        };
        let mut least = [f64::INFINITY; LANES];
        for quad in 0..len / LANES {
            let rooms = lanes!(|l| room(quad * LANES + l));
            least = lanes!(|l| least[l].min(rooms[l]));
        }
        for b in len / LANES * LANES..len {
            least[0] = least[0].min(room(b));
        }
        least_room_kva[j] = least.iter().fold(least_room_kva[j], |a, b| a.min(*b));
    }
}

/// Appends to `rows` [`FeederBase::subtree_max_pu`] of `solutions`, flows of
/// `e`: compiled for AVX2 too, as a city capacity sweep works it out for
/// every feeder (a twentieth of its time, compiled for the baseline).
fn subtree_max_rows(e: &ElectricalFeeder, solutions: &[StoredSolution], rows: &mut Vec<f32>) {
    avx2_or_portable!(
        subtree_max_rows_portable,
        fn(e: &ElectricalFeeder, solutions: &[StoredSolution], rows: &mut Vec<f32>)
    )
}

#[inline(always)]
fn subtree_max_rows_portable(
    e: &ElectricalFeeder,
    solutions: &[StoredSolution],
    rows: &mut Vec<f32>,
) {
    let n = e.len();
    if n == 0 {
        return;
    }
    let inv_nominal_kv_2 = &e.inv_nominal_kv_2[..n];
    for solution in solutions {
        // A row at a time, in cache, and written in place: an `extend` was
        // not inlined into the AVX2 build.
        let start = rows.len();
        rows.resize(start + n, 0.0);
        let row = &mut rows[start..];
        for (j, out) in row.iter_mut().enumerate() {
            *out = (solution.v_kv(j).norm_sqr() * inv_nominal_kv_2[j]).sqrt() as f32;
        }
        // Local indices put parents first: children fold into parents.
        for j in (1..n).rev() {
            let p = e.parent[j] as usize;
            row[p] = row[p].max(row[j]);
        }
    }
}

/// The lowest power factor of a load, as tan phi (lagging), for which
/// [`FeederBase::path_load_room_a`] holds: 0.8. A load below it is judged on
/// [`FeederBase::path_margin_a`] alone.
pub(crate) const LOAD_ROOM_TAN_PHI: f64 = 0.75;

/// The directions a load's current can take at one step, as unit phasors at
/// either end of an arc: from the least voltage angle of the feeder less the
/// angle of [`LOAD_ROOM_TAN_PHI`] (a load's current lags its node's voltage
/// by up to that) to the largest voltage angle (at unity). The whole circle
/// where the flow gives no such arc.
#[derive(Clone, Copy)]
struct LoadArc {
    lo: Complex64,
    hi: Complex64,
    whole: bool,
}

impl LoadArc {
    /// From the least and largest slope (`im / re`) of the feeder's
    /// voltages, infinite where one lies a quarter turn or more off;
    /// `head_re`, the real part of the head's voltage, tells a flow with
    /// voltages to read.
    #[inline(always)]
    fn new(slope_lo: f64, slope_hi: f64, head_re: f64) -> Self {
        let unit = |slope: f64| Complex64::new(1.0, slope) / (1.0 + slope * slope).sqrt();
        // Lagging by up to the lowest power factor: (1 - j tan) / |1 - j tan|.
        let lag = unit(-LOAD_ROOM_TAN_PHI);
        let whole = !(head_re > 0.0 && slope_lo.is_finite() && slope_hi.is_finite());
        Self {
            lo: unit(slope_lo) * lag,
            hi: unit(slope_hi),
            whole,
        }
    }

    /// The current a load can add to a branch carrying `current` (of size
    /// `size`) before it reaches `limit`, A: with `c` the largest share of
    /// `current` along a direction of the arc, `|current + x u| = limit` at
    /// `x = sqrt(limit^2 - size^2 + c^2) - c`, which falls as `c` grows.
    /// `limit - size` (the margin) where the branch's current lies within the
    /// arc, more where it lies outside, most where it flows against it.
    /// (Worked out four lanes at once by [`LoadArcs::room`]; this one is
    /// what that is checked against.)
    #[cfg(test)]
    fn room(&self, limit: f64, current: Complex64, size: f64) -> f64 {
        if size >= limit {
            return limit - size;
        }
        let (lo, hi) = (self.lo, self.hi);
        // The arc is under half a turn: within it means anticlockwise of its
        // start and clockwise of its end.
        let within = lo.re * current.im - lo.im * current.re >= 0.0
            && current.re * hi.im - current.im * hi.re >= 0.0;
        let along = if self.whole || within {
            size
        } else {
            (current.re * lo.re + current.im * lo.im).max(current.re * hi.re + current.im * hi.im)
        };
        (limit * limit - size * size + along * along).sqrt() - along
    }
}

/// Four lanes' [`LoadArc`]s, their parts in rows, so that a lane's room is
/// worked out in one register: as four arcs the roots stayed scalar and
/// branched, a tenth of a capacity sweep's path rows.
struct LoadArcs {
    lo_re: Lanes,
    lo_im: Lanes,
    hi_re: Lanes,
    hi_im: Lanes,
    whole: [bool; LANES],
}

impl LoadArcs {
    #[inline(always)]
    fn new(arcs: [LoadArc; LANES]) -> Self {
        Self {
            lo_re: lanes!(|l| arcs[l].lo.re),
            lo_im: lanes!(|l| arcs[l].lo.im),
            hi_re: lanes!(|l| arcs[l].hi.re),
            hi_im: lanes!(|l| arcs[l].hi.im),
            whole: std::array::from_fn(|l| arcs[l].whole),
        }
    }

    /// [`LoadArc::room`] in each lane, bit for bit: of a current `re + j
    /// im` of size `size` against `limit`. Every lane works out every
    /// branch and keeps the one its own arc takes.
    #[inline(always)]
    fn room(&self, limit: f64, re: Lanes, im: Lanes, size: Lanes) -> Lanes {
        lanes!(|l| {
            let within = (self.lo_re[l] * im[l] - self.lo_im[l] * re[l] >= 0.0)
                & (re[l] * self.hi_im[l] - im[l] * self.hi_re[l] >= 0.0);
            let projected = (re[l] * self.lo_re[l] + im[l] * self.lo_im[l])
                .max(re[l] * self.hi_re[l] + im[l] * self.hi_im[l]);
            let along = if self.whole[l] | within {
                size[l]
            } else {
                projected
            };
            let room = (limit * limit - size[l] * size[l] + along * along).sqrt() - along;
            if size[l] >= limit {
                limit - size[l]
            } else {
                room
            }
        })
    }
}

/// Puts the `count` least entries of `room` first, ascending, and returns the
/// least value left out (infinite when none is).
fn least_sorted(room: &mut [(f64, u32)], count: usize) -> f64 {
    let by_value = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0);
    let cutoff = if room.len() > count {
        let (_, at, _) = room.select_nth_unstable_by(count, by_value);
        at.0
    } else {
        f64::INFINITY
    };
    let count = count.min(room.len());
    room[..count].sort_unstable_by(by_value);
    cutoff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::magnitude_root;
    use crate::powerflow::{SweepSettings, sweep};
    use headroom_geodata::{LonLat, NetworkBuilder, NodeType, Topology};
    use proptest::prelude::*;

    /// Series branches told from the folding a base's flows were unfolded
    /// by, and those told from the flows a path at a time, are the nodes
    /// whose current equals their one child's at every step, read here
    /// node by node from the flows kept.
    #[test]
    fn series_branches_are_those_the_flows_show() {
        let engine = crate::test_support::pole_line_engine(100.0);
        let base = engine.feeder(0);
        assert!(base.flow_folding().is_some(), "the pole line folds");
        let e = &base.electrical;
        let only_child = crate::chains::only_children(e);
        let shown = |j: usize| {
            let child = only_child[j];
            j != 0
                && child != u32::MAX
                && base
                    .solutions
                    .iter()
                    .all(|s| s.i_a_single(j) == s.i_a_single(child as usize))
        };
        // Told from the folding alone, before any path is walked.
        let told_series: Vec<usize> = (0..e.len())
            .filter(|&j| {
                base.in_series.get().is_some_and(|nodes| {
                    nodes.told[j].load(std::sync::atomic::Ordering::Relaxed)
                        == SeriesNodes::IN_SERIES
                })
            })
            .collect();
        assert!(
            told_series.len() >= 6,
            "poles told by the folding: {told_series:?}"
        );
        assert!(told_series.iter().all(|&j| shown(j)), "{told_series:?}");
        // Then every node, a path at a time from the far end and from
        // each node.
        base.tell_series_up((e.len() - 1) as u32);
        for j in 0..e.len() {
            base.tell_series_up(j as u32);
            assert_eq!(base.in_series(j), shown(j), "node {j}");
        }
        // The ring-main unit and the pole with a transformer carry a load
        // beside their one child's current.
        assert!((1..e.len()).any(|j| only_child[j] != u32::MAX && !shown(j)));
    }

    /// A base's rows over nodes and steps, and each node's least room, come
    /// out the same, bit for bit, from each kernel (the path rows, their
    /// narrowing into blocks and the blocks written out are each compiled
    /// for AVX2 too).
    #[test]
    fn observed_bases_are_the_same_from_each_kernel() {
        let fixture = crate::test_support::fixture_engine();
        let pole_line = crate::test_support::pole_line_engine(100.0);
        let mut compared = 0;
        for engine in [&fixture, &pole_line] {
            for f in 0..engine.network.feeders.len() {
                let bases = crate::with_each_kernel(|| engine.build_base(f, false));
                let (portable, rest) = bases.split_first().expect("the portable kernel");
                let rows = |b: &FeederBase| {
                    [
                        b.voltage_kv.clone(),
                        b.path_margin_a.clone(),
                        b.path_max_loading.clone(),
                        b.path_voltage_room.clone(),
                        b.path_load_room_a.clone(),
                        b.subtree_min_pu.clone(),
                    ]
                };
                let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                for (kernel, base) in rest {
                    for (r, (a, b)) in rows(&portable.1).iter().zip(&rows(base)).enumerate() {
                        assert_eq!(bits32(a), bits32(b), "feeder {f} row {r}: {kernel}");
                    }
                    assert_eq!(
                        bits64(&portable.1.least_room_kva),
                        bits64(&base.least_room_kva),
                        "feeder {f}: {kernel}"
                    );
                    compared += portable.1.voltage_kv.len();
                }
                assert!(portable.1.least_room_kva.iter().all(|r| !r.is_nan()));
            }
        }
        // Without AVX2 there is nothing to compare against.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert!(compared > 1000, "{compared}");
        }
    }

    /// The subtree maxima come out the same, bit for bit, from each kernel.
    #[test]
    fn subtree_maxima_are_the_same_from_each_kernel() {
        let engine = crate::test_support::fixture_engine();
        let mut compared = 0;
        for f in 0..engine.network.feeders.len() {
            let base = engine.feeder(f);
            let rows = crate::with_each_kernel(|| {
                let mut rows = Vec::new();
                subtree_max_rows(&base.electrical, &base.solutions, &mut rows);
                rows
            });
            let (portable, rest) = rows.split_first().expect("the portable kernel");
            for (kernel, rows) in rest {
                assert!(
                    rows.iter()
                        .zip(&portable.1)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "feeder {f}: {kernel} against portable"
                );
            }
            assert_eq!(base.subtree_max_pu(), &portable.1[..]);
            compared += portable.1.len();
        }
        assert!(compared > 1000, "{compared}");
    }

    /// A feeder's load model solved with its series chains folded settles
    /// each step to the flow it settles to on the whole feeder, within the
    /// sweep's tolerance, at every node (folded ones unfolded), and shares
    /// out the same loads.
    #[test]
    fn loads_solved_folded_settle_as_on_the_whole_feeder() {
        let engine = crate::test_support::fixture_engine();
        let settings = engine.config.load_model;
        let mut folded_feeders = 0;
        for f in 0..engine.network.feeders.len() {
            let feeder = FeederIx::from_usize(f);
            let tree = engine.topology.tree(feeder);
            let e = ElectricalFeeder::new(&engine.network, tree);
            let solving = engine.loads_of(feeder, &e, engine.readings(), &mut ());
            let folds = solving.folding.as_ref().map(|f| f.folded.len() < e.len());
            folded_feeders += usize::from(folds == Some(true));
            let transformers = solving.whole_transformers.clone();
            let folded = solving.settled_whole(&e, &settings);
            let mut whole = FeederLoads::build_loose(
                &engine.network,
                tree,
                transformers,
                &e,
                engine.readings(),
                &engine.window,
                &settings,
                &mut (),
            );
            whole.settle(&e, 0..whole.step_count(), settings.max_allocation_rounds);
            assert_eq!(folded.transformers, whole.transformers);
            assert_eq!(folded.step_count(), whole.step_count());
            for k in 0..whole.step_count() {
                let (a, b) = (&folded.flows[k], &whole.flows[k]);
                assert_eq!(a.v_kv.len(), e.len(), "feeder {f} step {k}");
                for j in 0..e.len() {
                    let dv = (a.v_kv[j] - b.v_kv[j]).norm() / e.nominal_kv[j];
                    let di = (a.i_a[j] - b.i_a[j]).norm();
                    assert!(
                        dv < 1e-6 && di < 1e-6 * b.i_a[0].norm().max(1.0),
                        "feeder {f} step {k} node {j}: {} against {}, {} against {}",
                        a.v_kv[j],
                        b.v_kv[j],
                        a.i_a[j],
                        b.i_a[j]
                    );
                }
            }
            for (a, b) in folded.p_kw.iter().zip(&whole.p_kw) {
                assert!((a - b).abs() < 1e-3, "feeder {f}: {a} kW against {b} kW");
            }
        }
        assert!(folded_feeders > 0, "no fixture feeder folds");
    }

    /// A base restricted to some of its steps from flows of its folded tree
    /// (solved again there, then observed unfolded) is the base restricted
    /// from the same flows unfolded first, within the sweep's tolerance, on
    /// the whole feeder.
    #[test]
    fn a_base_restricted_from_folded_flows_is_the_one_restricted_unfolded() {
        let engine = crate::test_support::fixture_engine();
        let mut compared = 0;
        for f in 0..engine.network.feeders.len() {
            let feeder = FeederIx::from_usize(f);
            let e = ElectricalFeeder::new(&engine.network, engine.topology.tree(feeder));
            let SettledLoads { loads, folding } = engine
                .loads_of(feeder, &e, engine.readings(), &mut ())
                .settled(&e, &engine.config.load_model);
            let Some(folding) = folding else { continue };
            let mut unobserved =
                engine.base_solved(feeder, e.clone(), loads.into(), Vec::new(), None, false);
            engine.set_group_series(&mut unobserved, false);
            let mut unfolded = unobserved.clone();
            for flow in &mut unfolded.full_solutions {
                *flow = folding.unfold(flow);
            }
            let kept: Vec<usize> = (0..unobserved.step_count()).step_by(7).collect();
            let a = engine.restricted_base(unobserved, &kept, Some(&folding), false);
            let b = engine.restricted_base(unfolded, &kept, None, false);
            assert_eq!(a.electrical.len(), e.len());
            assert_eq!(a.loads.transformers, b.loads.transformers);
            assert_eq!(a.solutions.len(), kept.len());
            for (k, (x, y)) in a.solutions.iter().zip(&b.solutions).enumerate() {
                for j in 0..e.len() {
                    let dv = (x.v_kv(j) - y.v_kv(j)).norm() / e.nominal_kv[j];
                    assert!(dv < 1e-6, "feeder {f} step {k} node {j}: {dv}");
                }
            }
            for (x, y) in a.group_kva.iter().zip(&b.group_kva) {
                assert!((x - y).norm() < 1e-3, "feeder {f}: {x} against {y}");
            }
            assert_eq!(a.summary.worst.v_min.1, b.summary.worst.v_min.1);
            compared += 1;
        }
        assert!(compared > 0, "no fixture feeder folds");
    }

    /// A load's current per A at voltage angle slope `slope` (`im / re`) and
    /// `tan_phi` lagging: the direction [`LoadArc`] covers.
    fn load_direction(slope: f64, tan_phi: f64) -> Complex64 {
        Complex64::new(1.0, slope) * Complex64::new(1.0, -tan_phi)
            / ((1.0 + slope * slope) * (1.0 + tan_phi * tan_phi)).sqrt()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The room is what the load's current can add along the least
        /// favourable direction of the arc: never more than along any of its
        /// directions, never less than the margin.
        #[test]
        fn the_load_room_is_what_the_least_favourable_load_direction_can_add(
            (re, im) in (-500.0f64..500.0, -500.0f64..500.0),
            limit in 1.0f64..600.0,
            (slope_lo, spread) in (-0.08f64..0.08, 0.0f64..0.05),
            (at, tan_phi) in (0.0f64..=1.0, 0.0f64..=LOAD_ROOM_TAN_PHI),
        ) {
            let slope_hi = slope_lo + spread;
            let arc = LoadArc::new(slope_lo, slope_hi, 10.0);
            let current = Complex64::new(re, im);
            let size = current.norm();
            let room = arc.room(limit, current, size);
            if size >= limit {
                prop_assert_eq!(room, limit - size);
            } else {
                prop_assert!(room >= limit - size - 1e-9 * limit, "{room} under the margin {}", limit - size);
                let direction = load_direction(slope_lo + at * spread, tan_phi);
                let exact = magnitude_root(current, direction, limit);
                prop_assert!(room <= exact + 1e-9 * (limit + size), "room {room} past the root {exact}");
            }
        }
    }

    proptest! {
        /// Four arcs' rooms in lanes are each arc's own, bit for bit, on
        /// either side of the limit, within and outside each arc, and for
        /// the whole circle.
        #[test]
        fn rooms_in_lanes_are_each_arcs_own(
            currents in prop::collection::vec((-500.0f64..500.0, -500.0f64..500.0), LANES),
            slopes in prop::collection::vec((-0.08f64..0.08, 0.0f64..0.05), LANES),
            whole_lane in 0..=LANES,
            limit in 1.0f64..600.0,
        ) {
            let arcs: [LoadArc; LANES] = std::array::from_fn(|l| {
                let (lo, spread) = slopes[l];
                let lo = if l == whole_lane { f64::NAN } else { lo };
                LoadArc::new(lo, lo + spread, 10.0)
            });
            let current: [Complex64; LANES] =
                std::array::from_fn(|l| Complex64::new(currents[l].0, currents[l].1));
            let size = lanes!(|l| current[l].norm());
            let rooms = LoadArcs::new(arcs).room(
                limit,
                lanes!(|l| current[l].re),
                lanes!(|l| current[l].im),
                size,
            );
            for l in 0..LANES {
                let own = arcs[l].room(limit, current[l], size[l]);
                prop_assert_eq!(rooms[l].to_bits(), own.to_bits(), "lane {}: {} against {}", l, rooms[l], own);
            }
        }
    }

    #[test]
    fn a_branch_fed_backwards_takes_a_load_its_margin_would_refuse() {
        let arc = LoadArc::new(-0.01, 0.0, 10.0);
        // 200 A of a lagging load, within the arc: the margin.
        let forward = 200.0 * load_direction(-0.005, 0.3);
        let room = arc.room(300.0, forward, 200.0);
        assert!((room - 100.0).abs() < 1e-9, "{room}");
        // 200 A exported back up the branch: the load's current first
        // cancels most of it (the arc's directions lie up to 37 degrees off
        // the export's), then takes the whole limit.
        let backward = -forward;
        let room = arc.room(300.0, backward, 200.0);
        assert!(room > 450.0 && room <= 500.0, "{room}");
        // No arc to read (a flow without voltages): the margin.
        let whole = LoadArc::new(f64::NAN, f64::NAN, 10.0);
        assert_eq!(whole.room(300.0, backward, 200.0), 100.0);
    }

    fn at(i: usize) -> LonLat {
        LonLat::new(117.0 + 0.001 * i as f64, 31.0)
    }

    /// A feeder B - N1 - N2 - ... with a branch N2 - S1 - S2, every segment
    /// rated 300 A.
    fn branching_feeder() -> ElectricalFeeder {
        let mut b = NetworkBuilder::new();
        b.substation("S", at(0)).node("B", NodeType::Busbar, at(0));
        let names = ["N1", "N2", "N3", "N4", "S1", "S2"];
        for (i, name) in names.iter().enumerate() {
            b.node(name, NodeType::Pole, at(i + 1));
        }
        for (name, from, to) in [
            ("L1", "B", "N1"),
            ("L2", "N1", "N2"),
            ("L3", "N2", "N3"),
            ("L4", "N3", "N4"),
            ("L5", "N2", "S1"),
            ("L6", "S1", "S2"),
        ] {
            b.segment(name, from, to, 0.3, 0.25, 300.0, 1500.0);
        }
        b.feeder("F", "B", "N1", Some(400.0));
        let network = b.build().unwrap();
        let topology = Topology::trace(&network);
        ElectricalFeeder::new(&network, topology.tree(FeederIx(0)))
    }

    /// Four flows of the branching feeder: loads along it, and the side
    /// branch exporting (PV) more than its neighbours draw in two of them.
    fn four_flows(e: &ElectricalFeeder) -> Vec<Solution> {
        let n = e.len();
        (0..LANES)
            .map(|l| {
                let export = if l % 2 == 0 { -2500.0 } else { 300.0 };
                let p: Vec<f64> = (0..n)
                    .map(|j| match j {
                        0 => 0.0,
                        j if j == n - 1 => export,
                        _ => 400.0 + 150.0 * l as f64,
                    })
                    .collect();
                let q: Vec<f64> = p.iter().map(|p| p.abs() * 0.2).collect();
                let mut solution = Solution::default();
                sweep(e, &p, &q, 10.5, SweepSettings::default(), &mut solution);
                assert!(solution.converged);
                solution
            })
            .collect()
    }

    #[test]
    fn load_rooms_bound_every_branch_of_the_path_and_agree_between_kernels() {
        let e = branching_feeder();
        let n = e.len();
        let flows = four_flows(&e);
        let limits = crate::config::EngineConfig::default().limits;
        let thermal = limits.thermal_pct / 100.0;
        let runs = crate::with_each_kernel(|| {
            let mut rows = PathRows::new(&e);
            rows.fill(&e, std::array::from_fn(|l| &flows[l]), &limits, true);
            (rows.load_room_a.clone(), rows.margin_a.clone())
        });
        let (portable_room, margin) = &runs[0].1;
        for (kernel, (room, _)) in &runs[1..] {
            let bits = |rows: &[Lanes]| -> Vec<u64> {
                rows.iter().flatten().map(|v| v.to_bits()).collect()
            };
            assert_eq!(bits(room), bits(portable_room), "{kernel}");
        }
        let mut wider = 0;
        for (l, flow) in flows.iter().enumerate() {
            for j in 1..n {
                let room = portable_room[j][l];
                assert!(room >= margin[j][l] - 1e-9, "node {j} lane {l}");
                wider += usize::from(room > margin[j][l] + 1.0);
                // A load at node j, unity to the lowest power factor: no
                // branch of its path, the head's included, reaches its limit
                // before that much of the load's current.
                for tan_phi in [0.0, 0.3, LOAD_ROOM_TAN_PHI] {
                    let v = flow.v_kv[j];
                    let direction = load_direction(v.im / v.re, tan_phi);
                    let mut at = j;
                    let mut least = magnitude_root(flow.i_a[0], direction, 400.0 * thermal);
                    while at != 0 {
                        let root = magnitude_root(flow.i_a[at], direction, e.rated_a[at] * thermal);
                        least = least.min(root);
                        at = e.parent[at] as usize;
                    }
                    assert!(
                        room <= least + 1e-6,
                        "node {j} lane {l}: {room} past {least}"
                    );
                }
            }
        }
        // The exporting side branch's nodes take more than their margin.
        assert!(wider > 0, "{portable_room:?}");
    }
}
