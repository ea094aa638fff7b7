//! N-1 (`shared/spec/planning.md` §2): whether a candidate's feeder, with the
//! new load, can still be fed when its head fails, and whether its substation
//! carries its load with the largest coupled transformer out.
//!
//! # Feeder transfer
//! Each restoration case of a feeder F ([`headroom_geodata::restoration`])
//! becomes one or two **case trees**: the supplying feeder's own tree (or a
//! bare busbar) with F's restored part attached at the tie, re-rooted there,
//! every node carrying its measured load (and reservations) at every step both
//! feeders share. A case tree is a [`FeederBase`] like any feeder's, judged
//! against the case limits ([`crate::config::N1Config::case_limits`]), its
//! busbar group's flow moved by the heads whose supply changed; so the
//! candidate's N-1 headroom in a case is the same bound-estimate-confirm
//! search ([`Engine::headroom_at`]) as its normal headroom, on the case tree.
//! The cases of a feeder, with their flows, are built once and cached with the
//! feeder bases (the readings or reservations changing builds them again); a
//! capacity sweep, which needs each feeder's cases once, builds them from its
//! own store of bases and keeps none (`FeederBases`).
//!
//! # Substation transformers
//! In closed form over the window: the coupled groups' measured flow plus the
//! new load's power (its added losses on the feeder, a per cent or two of it,
//! left out) against the remaining transformers' short-time rating.

use std::sync::{Arc, OnceLock};

use headroom_geodata::topology::NO_PARENT;
use headroom_geodata::{
    Branch, FeederIx, FeederRestoration, NodeIx, RestorationCase, RestoredPart, TieSupply,
    TransformerIx,
};
use num_complex::Complex64;

use crate::base::FeederBase;
use crate::chains::ChainFolding;
use crate::checks::{CheckName, CheckResult};
use crate::engine::Engine;
use crate::evaluate::{AddedLoad, HeadroomAudit, UNBOUNDED_KW, magnitude};
use crate::load_model::FeederLoads;
use crate::powerflow::{ElectricalFeeder, LANES, SQRT_3, Solution, SweepSettings};

/// One tree of a restoration case: a supplier with F's part(s) attached.
pub struct CaseTree {
    /// Its flows at every shared step, judged against the case limits.
    pub base: FeederBase,
    /// The network node of each local node of the tree.
    pub nodes: Vec<NodeIx>,
    /// Local index in this tree of each local node of F (`u32::MAX` where the
    /// node is fed by another tree of the case or, in a tree of a set judged
    /// at one node, which stays folded, folded away).
    pub from_feeder: Vec<u32>,
    /// What feeds it.
    pub supply: TieSupply,
    /// Per local node, the highest loading of its inbound branch over the
    /// window without a new load (index 0: the head), a fraction of the
    /// rating, and the window step where it is.
    pub branch_max: Vec<(f32, u32)>,
    /// Per local node, the room (kVA, the base's linear estimate) a new load
    /// there has at the steps left out of `base` (infinite where none are): a
    /// headroom whose load stays well under it is not limited there. Index 0: the least
    /// of any node (what a tree fed without the new load must keep). A set
    /// built for one judged node keeps that node's and index 0 alone (NaN
    /// elsewhere: see `Engine::keep_least_room`).
    pub dropped_room_kva: Vec<f64>,
    /// Where `base`'s flows over every step, which choose the steps it keeps,
    /// were solved with the tree's series chains folded: they are kept folded
    /// until then (see `chains`).
    folding: Option<ChainFolding>,
    /// Where the tree stays folded (a set judged at one node), each node's
    /// inbound branch as a scan up the judged node's path names it (see
    /// [`ChainFolding::inbound_lowest`]); empty otherwise.
    path_inbound: Vec<Option<headroom_geodata::Branch>>,
    /// Per local node, the highest loading of its inbound branch over the
    /// flows `base` keeps (index 0: the head; 0 unrated), worked out on first
    /// use. Not `branch_max`, which is over every step's flows as first
    /// solved: the kept flows, solved again, differ from them by a little.
    kept_loading_most: OnceLock<Vec<f64>>,
}

/// Steps of the window a cached case tree keeps: those where its room is
/// least. Restoration is judged at peak load; a headroom that would reach
/// the room of the steps left out is worked out again over every step.
pub const CASE_STEPS: usize = 128;

/// The fewest steps a capacity row's case tree keeps (see
/// `Engine::keep_least_room`).
const FEWEST_CAPACITY_CASE_STEPS: usize = 8;

/// A feeder's first node, where its capacity row is judged.
const FIRST_NODE: u32 = 1;

/// Marks a case set over every step in the cache's key.
const EVERY_STEP_KEY: u64 = 1 << 63;

/// How far the room of the steps left out must stay above a headroom's load:
/// the room is the base's linear estimate (losses and the loads' answer to the
/// lower voltage left out; the engine's own screening allows 5 %).
const DROPPED_ROOM_MARGIN: f64 = 1.15;

/// Each branch's highest loading over a tree's flows, and the step where it
/// is, taken a step at a time (index 0: the head, against its rating).
struct BranchMax {
    most: Vec<(f32, u32)>,
    /// Per branch, a squared loading that rounds to the highest kept: a step
    /// whose square is no higher cannot round higher, so it is passed without
    /// a root (the highest changes a few times over the window).
    most_squared: Vec<f64>,
}

impl BranchMax {
    fn new(e: &ElectricalFeeder) -> Self {
        Self::with_slots(e.len())
    }

    fn with_slots(count: usize) -> Self {
        Self {
            most: vec![(0.0, 0); count],
            most_squared: vec![0.0; count],
        }
    }

    /// Takes in the flow of step `k` (one not solved is passed over).
    fn observe(&mut self, e: &ElectricalFeeder, k: usize, solution: &Solution) {
        if solution.i_a.len() != e.len() {
            return;
        }
        self.observe_currents(e.head_rated_a, &e.inv_rated_a_2, k, |j| solution.i_a[j]);
    }

    /// Per slot (0: the head, against `head_rated`), a current and its
    /// inverse rating squared (0: unrated, never the highest).
    #[inline(always)]
    fn observe_currents(
        &mut self,
        head_rated: Option<f64>,
        inverse_rated_2: &[f64],
        k: usize,
        i_a: impl Fn(usize) -> Complex64,
    ) {
        if let Some(rated) = head_rated.filter(|r| *r > 0.0) {
            self.offer_head(i_a(0), rated, k);
        }
        for (j, (slot, squared_slot)) in self
            .most
            .iter_mut()
            .zip(&mut self.most_squared)
            .enumerate()
            .skip(1)
        {
            if inverse_rated_2[j] > 0.0 {
                Self::offer(
                    slot,
                    squared_slot,
                    i_a(j).norm_sqr() * inverse_rated_2[j],
                    k,
                );
            }
        }
    }

    /// Offers the head's current at step `k` against its rating.
    #[inline(always)]
    fn offer_head(&mut self, current: Complex64, rated: f64, k: usize) {
        let loading = (current.norm_sqr().sqrt() / rated) as f32;
        if loading > self.most[0].0 {
            self.most[0] = (loading, k as u32);
        }
    }

    /// Offers a slot (its highest loading and step, and the squared loading
    /// that rounds to it) the squared loading `squared` at step `k`.
    #[inline(always)]
    fn offer(slot: &mut (f32, u32), squared_slot: &mut f64, squared: f64, k: usize) {
        if squared > *squared_slot {
            let loading = squared.sqrt() as f32;
            if loading > slot.0 {
                *slot = (loading, k as u32);
            }
            if loading >= slot.0 {
                *squared_slot = squared;
            }
        }
    }

    /// [`Self::observe_currents`] of steps `first` to `first + len - 1`, in
    /// order, lane `l`'s current in slot `s` read by `i_a(l, s)` (spare
    /// lanes repeat the last step). Each slot's steps are taken in order,
    /// so it ends as step by step; a slot whose squared loading stays under
    /// its highest in every lane, nearly all, is passed in one compare.
    #[inline(always)]
    fn observe_quad(
        &mut self,
        head_rated: Option<f64>,
        inverse_rated_2: &[f64],
        first: usize,
        len: usize,
        i_a: impl Fn(usize, usize) -> Complex64,
    ) {
        if let Some(rated) = head_rated.filter(|r| *r > 0.0) {
            for l in 0..len {
                self.offer_head(i_a(l, 0), rated, first + l);
            }
        }
        for (s, (slot, squared_slot)) in self
            .most
            .iter_mut()
            .zip(&mut self.most_squared)
            .enumerate()
            .skip(1)
        {
            let inverse = inverse_rated_2[s];
            if inverse <= 0.0 {
                continue;
            }
            let squared = lanes!(|l| i_a(l, s).norm_sqr() * inverse);
            if squared.iter().all(|sq| *sq <= *squared_slot) {
                continue;
            }
            for (l, &squared) in squared.iter().enumerate().take(len) {
                Self::offer(slot, squared_slot, squared, first + l);
            }
        }
    }

    /// The highest loadings, each with its step as a window index.
    fn by_window_step(self, window_step: impl Fn(usize) -> usize) -> Vec<(f32, u32)> {
        self.most
            .into_iter()
            .map(|(loading, k)| (loading, window_step(k as usize) as u32))
            .collect()
    }
}

/// [`BranchMax`] of the whole tree's branches from a folded tree's flows
/// (see `chains`). The branches of one chain carry one current, so those
/// rated alike share a slot, taken in once a step: what each would give
/// alone, bit for bit, for a third of the work.
struct FoldedBranchMax {
    slots: BranchMax,
    head_rated: Option<f64>,
    /// Per slot (0: the head), the folded node whose current it reads.
    reads: Vec<u32>,
    /// Per slot, its branches' inverse rating squared.
    inverse_rated_2: Vec<f64>,
    /// Per branch of the whole tree, its slot (`u32::MAX`: unrated).
    slot_of: Vec<u32>,
}

impl FoldedBranchMax {
    fn new(e: &ElectricalFeeder, folding: &ChainFolding) -> Self {
        let carries = folding.carries();
        let (mut reads, mut inverse_rated_2) = (vec![0u32], vec![0.0f64]);
        let mut slot_of = vec![u32::MAX; e.len()];
        slot_of[0] = 0;
        // Per folded node, its slots: (inverse rating squared, slot).
        let mut of_node: Vec<Vec<(f64, u32)>> = vec![Vec::new(); folding.folded.len()];
        for j in 1..e.len() {
            let inverse = e.inv_rated_a_2[j];
            if inverse <= 0.0 {
                continue;
            }
            let at = carries[j];
            let slots = &mut of_node[at as usize];
            slot_of[j] = match slots.iter().find(|(i, _)| i.to_bits() == inverse.to_bits()) {
                Some(&(_, slot)) => slot,
                None => {
                    let slot = reads.len() as u32;
                    reads.push(at);
                    inverse_rated_2.push(inverse);
                    slots.push((inverse, slot));
                    slot
                }
            };
        }
        Self {
            slots: BranchMax::with_slots(reads.len()),
            head_rated: e.head_rated_a,
            reads,
            inverse_rated_2,
            slot_of,
        }
    }

    /// Takes in the folded flow of step `k` (one not solved is passed over).
    fn observe(&mut self, folding: &ChainFolding, k: usize, folded: &Solution) {
        if folded.i_a.len() != folding.folded.len() {
            return;
        }
        let reads = &self.reads;
        self.slots
            .observe_currents(self.head_rated, &self.inverse_rated_2, k, |s| {
                folded.i_a[reads[s] as usize]
            });
    }

    /// [`Self::observe`] of the first `len` of four folded flows, steps
    /// `first` on (the spare lanes repeat the last).
    fn observe_quad(
        &mut self,
        folding: &ChainFolding,
        first: usize,
        folded: [&Solution; LANES],
        len: usize,
    ) {
        let n = folding.folded.len();
        if folded.iter().any(|flow| flow.i_a.len() != n) {
            for (l, flow) in folded.iter().enumerate().take(len) {
                self.observe(folding, first + l, flow);
            }
            return;
        }
        let reads = &self.reads;
        self.slots.observe_quad(
            self.head_rated,
            &self.inverse_rated_2,
            first,
            len,
            |l, s| folded[l].i_a[reads[s] as usize],
        );
    }

    /// Each branch's highest loading, with its step as a window index.
    fn by_window_step(self, window_step: impl Fn(usize) -> usize) -> Vec<(f32, u32)> {
        let slots = self.slots.by_window_step(window_step);
        self.slot_of
            .iter()
            .map(|&slot| slots.get(slot as usize).copied().unwrap_or((0.0, 0)))
            .collect()
    }
}

/// Where a node of a case tree takes its voltage to start the case flow
/// from, at each step.
#[derive(Clone, Copy)]
enum StartFrom {
    /// The source's voltage (the supplier's busbar).
    Source,
    /// The supplier's own flow at its node.
    Supplier(usize),
    /// A node `x` of F in restored part `part`: the voltage at the part's
    /// tie, times F's own voltage at `x` over its tie node's where `beyond`
    /// the tie in F's own direction.
    Part { part: usize, x: usize, beyond: bool },
}

/// Where one restored part of a feeder starts its case flow (see
/// `Engine::case_tree`).
struct WarmStart {
    /// Tree index of the tie's far side.
    attach: usize,
    /// The feeder's own node at the tie.
    a: usize,
    /// Each node's tree index, its local index on the feeder, and whether it
    /// lies beyond the tie in the feeder's own direction.
    nodes: Vec<(usize, usize, bool)>,
}

/// Where case trees take the bases of the feeders they join: the engine's
/// cache ([`Engine::feeder`]), or a capacity sweep's own store, which builds
/// each base once for the feeder's row and the cases of the feeders tied to
/// it and drops it once they are done.
pub(crate) trait FeederBases {
    /// The base of feeder `f`, with the reservations the engine counts on it.
    fn base(&self, f: usize) -> Arc<FeederBase>;
}

impl FeederBases for Engine {
    fn base(&self, f: usize) -> Arc<FeederBase> {
        self.feeder(f)
    }
}

/// A restoration case with its trees.
pub struct CaseFlows {
    /// The case.
    pub case: RestorationCase,
    /// One tree per supplier (a split over two ties to one feeder is one tree).
    pub trees: Vec<CaseTree>,
}

impl CaseTree {
    /// [`CaseTree::kept_loading_most`].
    fn kept_loading_most(&self) -> &[f64] {
        self.kept_loading_most.get_or_init(|| {
            let e = &self.base.electrical;
            let mut most_squared = vec![0.0f64; e.len()];
            let head_inverse_2 = e
                .head_rated_a
                .filter(|r| *r > 0.0)
                .map_or(0.0, |r| r.powi(-2));
            for solution in &self.base.solutions {
                for (j, most) in most_squared.iter_mut().enumerate() {
                    let inverse_rated_2 = if j == 0 {
                        head_inverse_2
                    } else {
                        e.inv_rated_a_2[j]
                    };
                    *most = most.max(solution.i_a(j).norm_sqr() * inverse_rated_2);
                }
            }
            most_squared.into_iter().map(f64::sqrt).collect()
        })
    }

    /// Moves the tree's figures per node onto `folding`'s folded tree, which
    /// its base has become. A node of F folded away is in no tree of the set
    /// (as a node fed by another tree): a set judged at one node is asked
    /// at that node alone, which the folding keeps.
    fn fold_onto(&mut self, folding: &ChainFolding) {
        let kept: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| folding.kept(j).is_some())
            .collect();
        self.nodes = kept.iter().map(|&j| self.nodes[j]).collect();
        for at in self.from_feeder.iter_mut().filter(|at| **at != u32::MAX) {
            *at = folding.kept(*at as usize).unwrap_or(u32::MAX);
        }
        // Every segment of a chain carries its current: the chain's highest
        // loading is its least rated segment's, the first found where
        // several are.
        let carries = folding.carries();
        let mut most = vec![(0.0f32, 0u32); kept.len()];
        for (j, &(loading, step)) in self.branch_max.iter().enumerate() {
            let at = carries[j] as usize;
            if loading > most[at].0 {
                most[at] = (loading, step);
            }
        }
        self.branch_max = most;
        self.dropped_room_kva = kept.iter().map(|&j| self.dropped_room_kva[j]).collect();
        self.path_inbound.clone_from(&folding.inbound_lowest);
    }
}

impl CaseFlows {
    /// The tree feeding F's local node `local`, and its index there.
    pub fn tree_of(&self, local: u32) -> Option<(&CaseTree, u32)> {
        self.tree_index_of(local)
            .map(|(i, at)| (&self.trees[i], at))
    }

    /// [`Self::tree_of`] as the tree's index.
    fn tree_index_of(&self, local: u32) -> Option<(usize, u32)> {
        self.trees.iter().enumerate().find_map(|(i, t)| {
            let at = *t.from_feeder.get(local as usize)?;
            (at != u32::MAX).then_some((i, at))
        })
    }

    /// The first limit a tree breaks without any new load, and which tree.
    pub fn broken_without(&self) -> Option<(usize, CheckName)> {
        self.trees
            .iter()
            .enumerate()
            .find_map(|(i, t)| t.base.summary.already_broken.map(|c| (i, c)))
    }
}

/// A feeder's restoration cases with their flows.
pub struct FeederN1 {
    /// Ties, split switches and cases.
    pub restoration: FeederRestoration,
    /// Per case (in [`FeederRestoration::cases`] order), its trees.
    pub cases: Vec<CaseFlows>,
}

impl FeederN1 {
    /// Bytes held, for the cache's weigher.
    pub fn weight_bytes(&self) -> usize {
        self.cases
            .iter()
            .flat_map(|c| &c.trees)
            .map(|t| {
                let judged = t.from_feeder.iter().filter(|&&at| at != u32::MAX).count();
                t.base.weight_bytes_judging(judged)
                    + t.nodes.len() * 8
                    + t.from_feeder.len() * 4
                    + t.branch_max.len() * 8
                    // `kept_loading_most`, filled on first use.
                    + t.base.electrical.len() * 8
                    + t.dropped_room_kva.len() * 8
            })
            .sum::<usize>()
            + 256
    }
}

/// What N-1 allows at one candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferOutcome {
    /// Largest extra load for which some case passes, kW (not capped by the
    /// normal headroom here); 0 without a case.
    pub headroom_kw: f64,
    /// The case with the largest N-1 headroom, `None` without a tie.
    pub best: Option<BestCase>,
}

impl Engine {
    /// The restoration cases of feeder `f` with their flows, cached.
    pub fn feeder_n1(&self, f: usize) -> Arc<FeederN1> {
        let (key, keep) = self.n1_set(f, false);
        self.n1_cases
            .get_with(key, || Arc::new(self.build_n1(f, keep, None, self)))
    }

    /// The same over every step of the window, for a headroom that reaches
    /// the room of the steps a cached tree leaves out (kept in the same
    /// cache, marked apart).
    pub fn feeder_n1_every_step(&self, f: usize) -> Arc<FeederN1> {
        let (key, keep) = self.n1_set(f, true);
        self.n1_cases
            .get_with(key, || Arc::new(self.build_n1(f, keep, None, self)))
    }

    /// The cached case set of feeder `f` (over the steps that bind, or with
    /// `every_step`, over every step), else one built from `bases` and not
    /// kept: a capacity sweep needs each feeder's cases once, and judges
    /// them at F's first node alone, so a set it builds keeps only the steps
    /// where that node's room could bind (see `Engine::keep_least_room`).
    pub(crate) fn feeder_n1_from(
        &self,
        f: usize,
        every_step: bool,
        bases: &dyn FeederBases,
    ) -> Arc<FeederN1> {
        let (key, keep) = self.n1_set(f, every_step);
        self.n1_cases.get(&key).unwrap_or_else(|| {
            let judged = (!every_step).then_some(FIRST_NODE);
            Arc::new(self.build_n1(f, keep, judged, bases))
        })
    }

    /// A case set's cache key and the steps its trees keep: those of least
    /// room, or with `every_step` every step (marked apart in the key).
    fn n1_set(&self, f: usize, every_step: bool) -> ((usize, u64), usize) {
        let (f, key) = self.n1_key(f);
        if every_step {
            ((f, key ^ EVERY_STEP_KEY), usize::MAX)
        } else {
            ((f, key), CASE_STEPS)
        }
    }

    /// The feeders whose bases the restoration cases of `f` are built from:
    /// `f`, its suppliers, and a feeder heading each busbar it is tied to.
    pub(crate) fn n1_base_feeders(&self, f: usize) -> Vec<usize> {
        let restoration = self
            .topology
            .restoration(&self.network, FeederIx::from_usize(f));
        let mut feeders = vec![f];
        for tie in &restoration.ties {
            let g = match tie.supply {
                TieSupply::Feeder { feeder, .. } => Some(feeder.get()),
                TieSupply::Busbar(b) => self.feeder_heading(b),
            };
            if let Some(g) = g.filter(|g| !feeders.contains(g)) {
                feeders.push(g);
            }
        }
        feeders
    }

    /// A feeder whose head is `busbar` (the first).
    fn feeder_heading(&self, busbar: NodeIx) -> Option<usize> {
        self.network
            .feeders
            .iter()
            .position(|feeder| feeder.head_node == busbar)
    }

    /// A case set's cache key: the feeder and the reservations that its trees
    /// count (on it, on every supplier, and in their groups).
    fn n1_key(&self, f: usize) -> (usize, u64) {
        use std::hash::{Hash, Hasher};
        let mut hasher = rustc_hash::FxHasher::default();
        self.feeder_fingerprint[f].hash(&mut hasher);
        let tree = self.topology.tree(FeederIx::from_usize(f));
        for &t in &tree.ties {
            let tie = &self.topology.ties[t];
            for g in [tie.from_feeder, tie.to_feeder].into_iter().flatten() {
                self.feeder_fingerprint[g.get()].hash(&mut hasher);
            }
        }
        (f, hasher.finish())
    }

    fn build_n1(
        &self,
        f: usize,
        keep: usize,
        judged: Option<u32>,
        bases: &dyn FeederBases,
    ) -> FeederN1 {
        let feeder = FeederIx::from_usize(f);
        let restoration = self.topology.restoration(&self.network, feeder);
        let f_base = bases.base(f);
        let tree = self.topology.tree(feeder);
        let cases = restoration
            .cases
            .iter()
            .map(|case| {
                let parts = case.parts(tree);
                // Parts fed by the same feeder (or busbar) share one tree.
                let mut suppliers: Vec<(TieSupply, Vec<RestoredPart>)> = Vec::new();
                for part in parts {
                    match suppliers
                        .iter_mut()
                        .find(|(s, _)| same_supplier(*s, part.tie.supply))
                    {
                        Some((_, list)) => list.push(part),
                        None => suppliers.push((part.tie.supply, vec![part])),
                    }
                }
                let mut trees: Vec<CaseTree> = suppliers
                    .iter()
                    .map(|(supply, parts)| {
                        self.case_tree(&f_base, *supply, parts, keep, judged, bases)
                    })
                    .collect();
                self.set_case_groups(&f_base, &mut trees, bases);
                for t in &mut trees {
                    if t.base.step_count() > keep {
                        self.keep_least_room(t, keep, judged);
                    } else {
                        self.observe_base(&mut t.base);
                    }
                }
                CaseFlows {
                    case: case.clone(),
                    trees,
                }
            })
            .collect();
        FeederN1 { restoration, cases }
    }

    /// The supplier's tree with `parts` of F attached at their ties, its loads
    /// at the steps both have, solved (not yet observed: the group's flow is
    /// set afterwards, and the steps kept chosen from the flows). `judged`,
    /// F's local node a set is judged at, is never folded away.
    fn case_tree(
        &self,
        f_base: &FeederBase,
        supply: TieSupply,
        parts: &[RestoredPart],
        keep: usize,
        judged: Option<u32>,
        bases: &dyn FeederBases,
    ) -> CaseTree {
        let fe = &f_base.electrical;
        let f_tree = self.topology.tree(f_base.loads.feeder);
        let (mut e, mut nodes, supplier) = match supply {
            TieSupply::Feeder { feeder, .. } => {
                let g = bases.base(feeder.get());
                let nodes = self.topology.tree(feeder).nodes.clone();
                (g.electrical.clone(), nodes, Some(g))
            }
            TieSupply::Busbar(busbar) => {
                let kv = self.network.node(busbar).kv;
                let e = ElectricalFeeder {
                    feeder: f_base.loads.feeder,
                    parent: vec![NO_PARENT],
                    z_ohm: vec![Complex64::new(0.0, 0.0)],
                    drop_kv_per_a: Vec::new(),
                    rated_a: vec![f64::INFINITY],
                    inbound: vec![None],
                    nominal_kv: vec![kv],
                    inv_nominal_kv_2: Vec::new(),
                    inv_rated_a_2: Vec::new(),
                    head_rated_a: None,
                };
                (e, vec![busbar], None)
            }
        };
        let n_f = fe.len();
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); n_f];
        for j in 1..n_f {
            children[fe.parent[j] as usize].push(j as u32);
        }
        let mut from_feeder = vec![u32::MAX; n_f];
        for part in parts {
            let mut in_part = vec![false; n_f];
            for &j in &part.nodes {
                in_part[j as usize] = true;
            }
            let attach = match part.tie.supply {
                TieSupply::Feeder { local, .. } => local,
                TieSupply::Busbar(_) => 0,
            };
            let mut push = |e: &mut ElectricalFeeder, node: u32, parent: u32, via: Option<u32>| {
                let (z, rated, inbound) = match via {
                    Some(v) => (
                        fe.z_ohm[v as usize],
                        fe.rated_a[v as usize],
                        fe.inbound[v as usize],
                    ),
                    None => (
                        Complex64::new(0.0, 0.0),
                        f64::INFINITY,
                        Some(Branch::Switch(part.tie.switch)),
                    ),
                };
                e.parent.push(parent);
                e.z_ohm.push(z);
                e.rated_a.push(rated);
                e.inbound.push(inbound);
                e.nominal_kv.push(fe.nominal_kv[node as usize]);
                nodes.push(f_tree.nodes[node as usize]);
                (e.parent.len() - 1) as u32
            };
            let a = part.tie.local;
            from_feeder[a as usize] = push(&mut e, a, attach, None);
            // Breadth-first from the tie over F's own branches: a branch keeps
            // its impedance and rating whichever way it is now fed.
            let mut queue = std::collections::VecDeque::from([a]);
            while let Some(x) = queue.pop_front() {
                let up = fe.parent[x as usize];
                let neighbours = children[x as usize]
                    .iter()
                    .copied()
                    .chain((up != NO_PARENT && up != 0).then_some(up));
                for y in neighbours {
                    if !in_part[y as usize] || from_feeder[y as usize] != u32::MAX {
                        continue;
                    }
                    let via = if fe.parent[y as usize] == x { y } else { x };
                    from_feeder[y as usize] = push(&mut e, y, from_feeder[x as usize], Some(via));
                    queue.push_back(y);
                }
            }
        }
        // Where each node of F starts its case flow: the voltage at its tie,
        // and for a node beyond the tie in F's own direction, that times its
        // measured voltage over the tie node's (what it keeps when fed from
        // the far end); a flat start took twice the sweeps.
        let mut warm: Vec<WarmStart> = Vec::new();
        for part in parts {
            let a = part.tie.local as usize;
            let attach = match part.tie.supply {
                TieSupply::Feeder { local, .. } => local as usize,
                TieSupply::Busbar(_) => 0,
            };
            let nodes = part
                .nodes
                .iter()
                .map(|&x| {
                    let x = x as usize;
                    let mut y = x;
                    while y != a && y != 0 {
                        y = fe.parent[y] as usize;
                    }
                    (from_feeder[x] as usize, x, y == a)
                })
                .collect();
            warm.push(WarmStart { attach, a, nodes });
        }
        e.derive_per_node();

        // The steps both feeders kept, by window index.
        let steps_of = |b: &FeederBase| -> Vec<Option<usize>> {
            let mut at = vec![None; self.window.steps.len()];
            for (k, &w) in b.window_step.iter().enumerate() {
                if let Some(slot) = at.get_mut(w) {
                    *slot = Some(k);
                }
            }
            at
        };
        let f_steps = steps_of(f_base);
        let g_steps = supplier.as_deref().map(steps_of);
        let busbar_kv = match supply {
            TieSupply::Busbar(b) => Some(self.busbar_voltage(b, bases)),
            TieSupply::Feeder { .. } => None,
        };
        let shared: Vec<(usize, usize, Option<usize>)> = (0..self.window.steps.len())
            .filter_map(|w| {
                let kf = f_steps[w]?;
                match &g_steps {
                    Some(g) => Some((w, kf, Some(g[w]?))),
                    None => Some((w, kf, None)),
                }
            })
            .collect();

        let f_loads = &f_base.loads;
        let mut transformers: Vec<(TransformerIx, u32)> = Vec::new();
        let mut metered = Vec::new();
        let mut rated_kva = Vec::new();
        let mut sources: Vec<(Option<usize>, usize)> = Vec::new(); // (supplier t, or F t)
        if let Some(g) = supplier.as_deref() {
            for (t, &(tx, local)) in g.loads.transformers.iter().enumerate() {
                transformers.push((tx, local));
                metered.push(g.loads.metered[t]);
                rated_kva.push(g.loads.rated_kva[t]);
                sources.push((Some(t), 0));
            }
        }
        for (t, &(tx, local)) in f_loads.transformers.iter().enumerate() {
            let at = from_feeder[local as usize];
            if at != u32::MAX {
                transformers.push((tx, at));
                metered.push(f_loads.metered[t]);
                rated_kva.push(f_loads.rated_kva[t]);
                sources.push((None, t));
            }
        }
        let m = transformers.len();
        let n = e.len();
        let mut reserved: Vec<(u32, f64, f64, Option<Vec<f64>>)> = supplier
            .as_deref()
            .map(|g| g.reserved.clone())
            .unwrap_or_default();
        reserved.extend(
            f_base
                .reserved
                .iter()
                .filter_map(|(local, kw, tan, profile)| {
                    let at = from_feeder[*local as usize];
                    (at != u32::MAX).then(|| (at, *kw, *tan, profile.clone()))
                }),
        );
        // Flows that only choose the steps kept are solved with the tree's
        // series chains folded (see `chains`) and kept folded: a city case
        // tree keeps about a third of its nodes, and its flows at every
        // step, unfolded, cost as much memory traffic as the sweeps saved.
        // The steps kept are solved again on the folded tree, and the tree
        // of a set judged at one node stays folded from then on (see
        // `Engine::keep_least_room`). Reservations are solved in afterwards
        // over every step, from flows of the whole tree.
        let selecting = shared.len() > keep;
        let folding = (selecting && reserved.is_empty())
            .then(|| {
                let mut loaded = vec![false; n];
                for &(_, local) in &transformers {
                    loaded[local as usize] = true;
                }
                if let Some(&at) = judged
                    .and_then(|j| from_feeder.get(j as usize))
                    .filter(|at| **at != u32::MAX)
                {
                    loaded[at as usize] = true;
                    // A tree that stays folded names the segment and the
                    // feeder that break: with both ends of each tie kept, no
                    // chain runs across one, and each folded branch lies on
                    // one feeder.
                    for start in &warm {
                        loaded[start.attach] = true;
                        loaded[from_feeder[start.a] as usize] = true;
                    }
                }
                ChainFolding::new(&e, &loaded)
            })
            .flatten();
        let solved_n = folding.as_ref().map_or(n, |f| f.folded.len());
        // Where each node solved (each kept where folded) takes its start,
        // so that a step's starts are written once, for the nodes solved.
        let supplier_len = supplier.as_deref().map_or(0, |g| g.electrical.len());
        let mut starts: Vec<StartFrom> = (0..n)
            .map(|j| {
                if j < supplier_len {
                    StartFrom::Supplier(j)
                } else {
                    StartFrom::Source
                }
            })
            .collect();
        for (part, start) in warm.iter().enumerate() {
            for &(at, x, beyond) in &start.nodes {
                starts[at] = StartFrom::Part { part, x, beyond };
            }
        }
        if let Some(folding) = &folding {
            starts = (0..n)
                .filter(|&j| folding.kept(j).is_some())
                .map(|j| starts[j])
                .collect();
        }
        // The supplier's nodes come first (in order, folded or not): their
        // starts are one gather from its flow, the rest are F's.
        let supplier_starts: Vec<usize> = starts
            .iter()
            .map_while(|from| match *from {
                StartFrom::Supplier(j) => Some(j),
                _ => None,
            })
            .collect();
        let part_starts = &starts[supplier_starts.len()..];
        let mut ties: Vec<(Complex64, Complex64)> = Vec::with_capacity(warm.len());
        let (mut p_kw, mut q_kvar, mut estimated) = (
            Vec::with_capacity(shared.len() * m),
            Vec::with_capacity(shared.len() * m),
            Vec::with_capacity(shared.len() * m),
        );
        let mut source_kv = Vec::with_capacity(shared.len());
        let mut start_v_kv = Vec::with_capacity(shared.len() * solved_n);
        let mut stamps = Vec::with_capacity(shared.len());
        // F's transformers in the case, in order: where a tie restores all of
        // F (every one-tie case), its rows are copied whole.
        let f_taken: Vec<usize> = sources
            .iter()
            .filter_map(|&(g_t, f_t)| g_t.is_none().then_some(f_t))
            .collect();
        let mf = f_loads.transformers.len();
        let f_whole = f_taken.len() == mf;
        for &(w, kf, kg) in &shared {
            if let (Some(g), Some(kg)) = (supplier.as_deref(), kg) {
                let mg = g.loads.transformers.len();
                let row = kg * mg..(kg + 1) * mg;
                p_kw.extend_from_slice(&g.loads.p_kw[row.clone()]);
                q_kvar.extend_from_slice(&g.loads.q_kvar[row.clone()]);
                estimated.extend_from_slice(&g.loads.estimated[row]);
            }
            let row = kf * mf..(kf + 1) * mf;
            if f_whole {
                p_kw.extend_from_slice(&f_loads.p_kw[row.clone()]);
                q_kvar.extend_from_slice(&f_loads.q_kvar[row.clone()]);
                estimated.extend_from_slice(&f_loads.estimated[row]);
            } else {
                for &t in &f_taken {
                    p_kw.push(f_loads.p_kw[row.start + t]);
                    q_kvar.push(f_loads.q_kvar[row.start + t]);
                    estimated.push(f_loads.estimated[row.start + t]);
                }
            }
            let kv = match (supplier.as_deref(), kg) {
                (Some(g), Some(kg)) => g.loads.source_kv[kg],
                _ => busbar_kv
                    .as_ref()
                    .and_then(|v| v[w])
                    .unwrap_or(e.nominal_kv[0]),
            };
            source_kv.push(kv);
            let source = Complex64::new(kv, 0.0);
            let g_flow = supplier.as_deref().zip(kg).map(|(g, kg)| &g.solutions[kg]);
            let f_flow = &f_base.solutions[kf];
            ties.clear();
            ties.extend(warm.iter().map(|&WarmStart { attach, a, .. }| {
                let at_tie = match g_flow {
                    Some(flow) if attach < supplier_len => flow.v_kv(attach),
                    _ => source,
                };
                (at_tie, at_tie * f_flow.v_kv(a).inv())
            }));
            match g_flow {
                Some(flow) => start_v_kv.extend(supplier_starts.iter().map(|&j| flow.v_kv(j))),
                None => start_v_kv.extend(supplier_starts.iter().map(|_| source)),
            }
            start_v_kv.extend(part_starts.iter().map(|from| match *from {
                StartFrom::Source => source,
                StartFrom::Supplier(j) => g_flow.map_or(source, |flow| flow.v_kv(j)),
                StartFrom::Part { part, x, beyond } => {
                    let (at_tie, scale) = ties[part];
                    if beyond {
                        scale * f_flow.v_kv(x)
                    } else {
                        at_tie
                    }
                }
            }));
            stamps.push(self.window.steps[w]);
        }
        let steps = stamps.len();
        let solved_transformers = match &folding {
            Some(folding) => transformers
                .iter()
                .map(|&(tx, local)| {
                    let at = folding.kept(local as usize);
                    (tx, at.expect("a loaded node is never folded"))
                })
                .collect(),
            None => transformers.clone(),
        };
        let mut loads = FeederLoads::assembled(
            e.feeder,
            stamps,
            solved_transformers,
            metered,
            rated_kva,
            p_kw,
            q_kvar,
            estimated,
            source_kv,
            start_v_kv,
        );
        // Over more steps than it keeps, the flows only choose the steps: the
        // steps kept are solved again exactly.
        let sweep = if selecting {
            crate::base::CASE_SELECTION_SWEEP
        } else {
            SweepSettings::default()
        };
        match &folding {
            Some(folding) => {
                loads.settle_with(&folding.folded, 0..steps, 1, sweep);
                loads.on_whole_tree(transformers);
            }
            None => loads.settle_with(&e, 0..steps, 1, sweep),
        }
        let owner = match supply {
            TieSupply::Feeder { feeder, .. } => feeder,
            TieSupply::Busbar(_) => f_base.loads.feeder,
        };
        let group = match supply {
            TieSupply::Feeder { feeder, .. } => self
                .topology
                .busbar_group_index(self.topology.tree(feeder).head()),
            TieSupply::Busbar(b) => self.topology.busbar_group_index(b),
        };
        let limits = self.config.n1.case_limits(&self.config.limits);
        // Its steps as window indices: the base may keep only some.
        // Folded flows are read once, unfolded in cache, by the room rows
        // that choose the steps kept, which take the branch maxima on the
        // way (`keep_least_room`).
        let branch_max = if folding.is_some() {
            Vec::new()
        } else {
            let mut maxima = BranchMax::new(&e);
            for (k, flow) in loads.flows.iter().enumerate() {
                maxima.observe(&e, k, flow);
            }
            maxima.by_window_step(|k| shared.get(k).map_or(0, |s| s.0))
        };
        let n = e.len();
        // Reservations solved in to the same tolerance as the flows.
        // A tree to be restricted keeps its flows in full precision only.
        let restricted = steps > keep;
        let solve_reserved = (!reserved.is_empty()).then_some(sweep);
        let mut base = self.base_solved(
            owner,
            e,
            loads.into(),
            reserved,
            solve_reserved,
            !restricted,
        );
        base.group = group;
        base.limits = limits;
        CaseTree {
            base,
            nodes,
            from_feeder,
            supply,
            branch_max,
            dropped_room_kva: vec![f64::INFINITY; n],
            folding,
            path_inbound: Vec::new(),
            kept_loading_most: OnceLock::new(),
        }
    }

    /// Restricts a tree solved over every step, not yet observed, to the
    /// `keep` steps where its room is least (the base's own estimate at each
    /// node, the least over its nodes; with `judged`, a local node of F, at
    /// its node of this tree), the room over the steps left out kept beside
    /// it: each node's for a set cached for every node, and for a set judged
    /// at one node that node's and the least of any (index 0) alone, NaN
    /// elsewhere, which no guard passes. A step where any node has no room
    /// comes first either way: kept, it shows the tree broken without a new
    /// load.
    fn keep_least_room(&self, tree: &mut CaseTree, keep: usize, judged: Option<u32>) {
        let base = &tree.base;
        let (n, steps) = (base.electrical.len(), base.step_count());
        let judged_at = judged
            .and_then(|local| tree.from_feeder.get(local as usize).copied())
            .filter(|at| *at != u32::MAX)
            .map(|at| at as usize);
        // Per step, the least room of any node and the room at the judged
        // node; every row only where every node's room is kept.
        let mut least_any = Vec::with_capacity(steps);
        let mut at_room = Vec::with_capacity(if judged_at.is_some() { steps } else { 0 });
        let mut rooms = Vec::with_capacity(if judged.is_none() { n * steps } else { 0 });
        // Judged at a node the folding keeps, the rows are worked out on the
        // folded tree: a third of the nodes, and no step unfolded.
        let folded_judged = tree
            .folding
            .as_ref()
            .zip(judged_at)
            .and_then(|(folding, at)| Some((folding, folding.kept(at)? as usize)));
        if let Some((folding, at)) = folded_judged {
            let mut folded_maxima = FoldedBranchMax::new(&base.electrical, folding);
            self.each_folded_room_pair(base, folding, at, |first, flows, len, least, room_at| {
                folded_maxima.observe_quad(folding, first, flows, len);
                least_any.extend_from_slice(&least[..len]);
                at_room.extend_from_slice(&room_at[..len]);
            });
            tree.branch_max = folded_maxima.by_window_step(|k| base.window_step[k]);
        } else {
            let mut maxima = tree
                .folding
                .as_ref()
                .map(|_| BranchMax::new(&base.electrical));
            self.each_unobserved_room_row(base, tree.folding.as_ref(), |k, flow, row| {
                if let Some(maxima) = &mut maxima {
                    maxima.observe(&base.electrical, k, flow);
                }
                least_any.push(row[1..].iter().copied().fold(f64::INFINITY, f64::min));
                if let Some(at) = judged_at {
                    at_room.push(row[at]);
                }
                if judged.is_none() {
                    rooms.extend_from_slice(row);
                }
            });
            if let Some(maxima) = maxima {
                tree.branch_max = maxima.by_window_step(|k| tree.base.window_step[k]);
            }
        }
        let least: Vec<f64> = least_any
            .iter()
            .enumerate()
            .map(|(k, &least)| match judged_at {
                Some(_) if least > 0.0 => at_room[k],
                _ => least,
            })
            .collect();
        let mut order: Vec<usize> = (0..steps).collect();
        order.sort_by(|a, b| least[*a].total_cmp(&least[*b]).then(a.cmp(b)));
        let broken = order.iter().take_while(|k| least[**k] <= 0.0).count();
        let keep = if judged.is_some() && broken < keep {
            // Judged at one node: the steps broken without a load, and those
            // whose room there the guard could not pass over at a headroom
            // up to the least room, however many (a cap made one row in forty
            // fall back to every step). A headroom past the least room, which
            // only a branch fed backwards allows, falls back to every step:
            // on the city, 34 rows of 3,000. Keeping the steps a headroom up
            // to the margin past that room could reach as well left 18 rows
            // to fall back, but kept 101 steps a tree against 70, and the
            // sweep took 5-10 % longer.
            // Broken at more steps than a cached set keeps, the case carries
            // nothing and the guard is never asked.
            let within = match (judged_at, order.get(broken)) {
                (Some(_), Some(&lowest)) => {
                    let reach = least[lowest] * DROPPED_ROOM_MARGIN;
                    order[broken..]
                        .iter()
                        .take_while(|k| least[**k] <= reach)
                        .count()
                }
                _ => 0,
            };
            (broken + within).max(FEWEST_CAPACITY_CASE_STEPS)
        } else {
            keep
        };
        let least_of = |values: &[f64]| {
            order[keep..]
                .iter()
                .map(|&k| values[k])
                .fold(f64::INFINITY, f64::min)
        };
        let dropped = if judged.is_none() {
            let mut dropped = vec![f64::INFINITY; n];
            for &k in &order[keep..] {
                for (out, room) in dropped.iter_mut().zip(&rooms[k * n..(k + 1) * n]).skip(1) {
                    *out = out.min(*room);
                }
            }
            dropped[0] = dropped[1..].iter().copied().fold(f64::INFINITY, f64::min);
            dropped
        } else {
            let mut dropped = vec![f64::NAN; n];
            dropped[0] = least_of(&least_any);
            if let Some(at) = judged_at {
                dropped[at] = least_of(&at_room);
            }
            dropped
        };
        let mut kept = order[..keep].to_vec();
        kept.sort_unstable();
        // Judged at a node the folding keeps, the tree stays folded: the
        // judged node's headroom and what breaks there are found on a third
        // of the nodes (a folded branch carries its chain's current, rated as
        // its least rated segment and named by it).
        let stay_folded = folded_judged.is_some();
        let folding = tree.folding.take();
        tree.base = self.restricted_base(
            std::mem::take(&mut tree.base),
            &kept,
            folding.as_ref(),
            stay_folded,
        );
        tree.dropped_room_kva = dropped;
        if let Some(folding) = folding.filter(|_| stay_folded) {
            tree.fold_onto(&folding);
        }
    }

    /// Each tree's busbar group flow: the group's own (with reservations),
    /// less the heads of the feeders whose supply changed, plus the case's
    /// new heads in that group.
    fn set_case_groups(
        &self,
        f_base: &FeederBase,
        trees: &mut [CaseTree],
        bases: &dyn FeederBases,
    ) {
        let window = self.window.steps.len();
        let head_series = |b: &FeederBase| -> Vec<Complex64> {
            let mut at = vec![Complex64::new(0.0, 0.0); window];
            for (k, &w) in b.window_step.iter().enumerate() {
                if w < window {
                    at[w] = b.head_power_kva(k);
                }
            }
            at
        };
        let f_group = self
            .topology
            .busbar_group_index(self.topology.tree(f_base.loads.feeder).head());
        // Per group touched: the change at each window step.
        let mut change: Vec<(usize, Vec<Complex64>)> = Vec::new();
        let mut add = |group: Option<usize>, series: &[Complex64], sign: f64| {
            let Some(g) = group else { return };
            let slot = match change.iter().position(|(h, _)| *h == g) {
                Some(i) => i,
                None => {
                    change.push((g, vec![Complex64::new(0.0, 0.0); window]));
                    change.len() - 1
                }
            };
            for (total, s) in change[slot].1.iter_mut().zip(series) {
                *total += s * sign;
            }
        };
        add(f_group, &head_series(f_base), -1.0);
        for t in trees.iter() {
            if let TieSupply::Feeder { feeder, .. } = t.supply {
                let g = bases.base(feeder.get());
                add(g.group, &head_series(&g), -1.0);
            }
            add(t.base.group, &head_series(&t.base), 1.0);
        }
        for t in trees.iter_mut() {
            let own = self.group_series(t.base.group, &t.base.window_step, true);
            let moved = t
                .base
                .group
                .and_then(|g| change.iter().find(|(h, _)| *h == g))
                .map(|(_, series)| series);
            t.base.group_kva = own
                .iter()
                .zip(&t.base.window_step)
                .map(|(s, &w)| s + moved.map_or(Complex64::new(0.0, 0.0), |m| m[w]))
                .collect();
        }
    }

    /// A busbar's measured voltage per window step, read off a feeder it
    /// heads (`None` where none of them kept the step).
    fn busbar_voltage(&self, busbar: NodeIx, bases: &dyn FeederBases) -> Vec<Option<f64>> {
        let mut at = vec![None; self.window.steps.len()];
        if let Some(f) = self.feeder_heading(busbar) {
            let b = bases.base(f);
            for (k, &w) in b.window_step.iter().enumerate() {
                if let Some(slot) = at.get_mut(w) {
                    *slot = Some(b.loads.source_kv[k]);
                }
            }
        }
        at
    }

    /// The largest extra load at F's node `local` for which some restoration
    /// case of F passes, and the case that allows most (of equal ones, the
    /// one loaded least at `demand_kw`).
    ///
    /// The cached cases keep the steps where their room is least; where a
    /// headroom (at most `cap_kw`, the normal headroom, which bounds the
    /// result) would reach the room of the steps left out, the feeder's cases
    /// over every step decide.
    pub fn n1_transfer(
        &self,
        f: usize,
        local: u32,
        demand_kw: f64,
        cap_kw: f64,
        load: &AddedLoad<'_>,
    ) -> TransferOutcome {
        self.n1_transfer_with(
            &self.feeder_n1(f),
            || self.feeder_n1_every_step(f),
            local,
            demand_kw,
            cap_kw,
            load,
        )
    }

    /// Audits an N-1 headroom at `local` of feeder `f` the long way round,
    /// over its cases at every step (see [`HeadroomAudit`]): at
    /// `n1_headroom_kw` some case must carry the load at every step, its other
    /// trees holding without it; at 1 kW more, none (unless the answer is
    /// capped at `normal_headroom_kw`). The excess reported at the headroom
    /// is the least over the cases.
    pub fn audit_n1_headroom(
        &self,
        f: usize,
        local: u32,
        n1_headroom_kw: f64,
        normal_headroom_kw: f64,
        load: &AddedLoad<'_>,
    ) -> HeadroomAudit {
        let n1 = self.feeder_n1_every_step(f);
        let audits: Vec<HeadroomAudit> = n1
            .cases
            .iter()
            .filter_map(|case| {
                let (t, at) = case.tree_index_of(local)?;
                Some(match case.broken_without() {
                    // Broken at any load: it carries none.
                    Some(_) => HeadroomAudit {
                        broken_at_headroom: (n1_headroom_kw > 0.0).then_some((0, f64::INFINITY)),
                        broken_past_headroom: true,
                    },
                    None => self.audit_load_headroom(&case.trees[t].base, at, n1_headroom_kw, load),
                })
            })
            .collect();
        let carried = audits.iter().any(|a| a.broken_at_headroom.is_none());
        HeadroomAudit {
            broken_at_headroom: if carried || n1_headroom_kw <= 0.0 {
                None
            } else {
                audits
                    .iter()
                    .filter_map(|a| a.broken_at_headroom)
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .or(Some((0, f64::INFINITY)))
            },
            broken_past_headroom: n1_headroom_kw >= normal_headroom_kw
                || audits.iter().all(|a| a.broken_past_headroom),
        }
    }

    /// [`Self::n1_transfer`] over the case set `n1`, with `every_step`
    /// giving the feeder's cases over every step where it falls short.
    fn n1_transfer_with(
        &self,
        n1: &FeederN1,
        every_step: impl FnOnce() -> Arc<FeederN1>,
        local: u32,
        demand_kw: f64,
        cap_kw: f64,
        load: &AddedLoad<'_>,
    ) -> TransferOutcome {
        self.n1_transfer_over(n1, local, demand_kw, cap_kw, load)
            .unwrap_or_else(|| {
                self.n1_transfer_over(&every_step(), local, demand_kw, cap_kw, load)
                    .expect("cases over every step leave no step out")
            })
    }

    /// [`Self::n1_transfer`] over `n1`'s cases; `None` where a step they
    /// leave out could limit the answer.
    fn n1_transfer_over(
        &self,
        n1: &FeederN1,
        local: u32,
        demand_kw: f64,
        cap_kw: f64,
        load: &AddedLoad<'_>,
    ) -> Option<TransferOutcome> {
        let per_kw_kva = (1.0 + load.tan_phi * load.tan_phi).sqrt() * DROPPED_ROOM_MARGIN;
        // Per case: headroom, the check that limits it, the tree that breaks
        // it, the tree and node of the candidate. A case whose headroom lies
        // under one already judged is left out: it can be neither the best
        // nor tied with it (and the steps it left out could only lower it).
        let mut judged: Vec<(usize, f64, CheckName, usize, usize, u32)> = Vec::new();
        let mut floor_kw = 0.0_f64;
        for (c, case) in n1.cases.iter().enumerate() {
            let Some((t, at)) = case.tree_index_of(local) else {
                continue;
            };
            if let Some((i, check)) = case.broken_without() {
                judged.push((c, 0.0, check, i, t, at));
                continue;
            }
            let Some((h, check)) = self.headroom_from(&case.trees[t].base, at, load, floor_kw)
            else {
                continue;
            };
            let h = h.min(UNBOUNDED_KW);
            // The tree fed with the load, and any other fed without, must hold
            // at the steps left out too.
            let judged_kva = h.min(cap_kw).max(0.0) * per_kw_kva;
            let holds = case.trees.iter().enumerate().all(|(i, tree)| {
                if i == t {
                    judged_kva < tree.dropped_room_kva[at as usize]
                } else {
                    0.0 < tree.dropped_room_kva[0]
                }
            });
            if !holds {
                return None;
            }
            floor_kw = floor_kw.max(h);
            judged.push((c, h, check, t, t, at));
        }
        let most = judged.iter().map(|j| j.1).fold(f64::NEG_INFINITY, f64::max);
        let mut best: Option<BestCase> = None;
        for &(c, headroom, check, breaking, own, at) in &judged {
            if headroom < most {
                continue;
            }
            let case = &n1.cases[c];
            let candidate =
                self.best_case_figures(case, c, (breaking, own, at), check, demand_kw, load);
            if best
                .as_ref()
                .is_none_or(|b| candidate.loading_pct < b.loading_pct)
            {
                best = Some(candidate);
            }
        }
        Some(TransferOutcome {
            headroom_kw: if most.is_finite() { most.max(0.0) } else { 0.0 },
            best,
        })
    }

    /// A case's worst loading at `demand_kw` and where its limiting check
    /// breaks.
    #[allow(clippy::too_many_arguments)]
    fn best_case_figures(
        &self,
        case: &CaseFlows,
        c: usize,
        (tree, own, at): (usize, usize, u32),
        check: CheckName,
        demand_kw: f64,
        load: &AddedLoad<'_>,
    ) -> BestCase {
        let t = &case.trees[own];
        let (own_loading, loaded_segment, on_path) = self.loading_at_demand(t, at, demand_kw, load);
        let loading_pct = case
            .trees
            .iter()
            .enumerate()
            .map(|(i, other)| {
                if i == own {
                    own_loading
                } else {
                    other.base.summary.before.max_loading_pct
                }
            })
            .fold(0.0, f64::max);
        let breaking = &case.trees[tree];
        // Where the limiting check breaks: the segment loaded most at the
        // demand in the candidate's tree; the lowest or highest voltage of the
        // tree's flows without the new load (the new load lowers most what is
        // lowest already: the nodes beyond it share its whole path).
        let mut worst = breaking.base.summary.worst;
        // A segment found on the path is named as a scan up the path names
        // it (on a folded tree, a chain's least rated segment nearest its
        // end), any other as the flows' own figures do.
        let mut named_on_path = false;
        if tree == own && loaded_segment != 0 {
            worst.segment.1 = loaded_segment;
            named_on_path = on_path;
        }
        // The local node whose inbound segment or voltage breaks: its feeder
        // is the one to reinforce (the supplier's for the head and group).
        let above_highest = worst.v_max.0 > breaking.base.limits.v_max_pu;
        let local = match check {
            CheckName::SegmentThermal => Some(worst.segment.1),
            CheckName::Voltage => Some(if above_highest {
                worst.v_max.1
            } else {
                worst.v_min.1
            }),
            _ => None,
        };
        // A segment's own feeder; for a voltage, the feeder with most of the
        // impedance between the busbar and the node.
        let owner = local.and_then(|j| {
            let e = &breaking.base.electrical;
            let mut share: Vec<(FeederIx, f64)> = Vec::new();
            let mut at = j as usize;
            while at != 0 && at < e.len() {
                if let Some(f) = self.topology.feeder_of(breaking.nodes[at]) {
                    let z = e.z_ohm[at].norm_sqr().sqrt();
                    match share.iter_mut().find(|(g, _)| *g == f) {
                        Some((_, total)) => *total += z,
                        None => share.push((f, z)),
                    }
                }
                if check == CheckName::SegmentThermal {
                    break;
                }
                at = e.parent[at] as usize;
            }
            share
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(f, _)| self.network.feeders[f.get()].id.to_string())
        });
        let supplier = self.supplier_name(breaking.supply);
        let element = match check {
            CheckName::SegmentThermal => {
                match breaking.path_inbound.get(worst.segment.1 as usize) {
                    Some(Some(headroom_geodata::Branch::Segment(s))) if named_on_path => {
                        Some(self.network.segment(*s).id.to_string())
                    }
                    Some(_) if named_on_path => None,
                    _ => self.inbound_segment_id(&breaking.base.electrical, worst.segment.1),
                }
            }
            CheckName::Voltage => {
                local.map(|j| self.network.node(breaking.nodes[j as usize]).id.to_string())
            }
            CheckName::SubstationTransformer => breaking.base.group.and_then(|g| {
                self.topology.busbar_groups[g]
                    .transformers
                    .first()
                    .map(|t| self.network.substation_transformers[t.get()].id.to_string())
            }),
            _ => None,
        };
        BestCase {
            case: c,
            label: self.case_label(&case.case),
            loading_pct,
            binding: check,
            element,
            // A voltage too high comes from the source (its taps set for heavier
            // load), not from a weak conductor: a thicker one raises it further.
            remedy: if check == CheckName::Voltage && above_highest {
                format!(
                    "lowering the busbar voltage that feeds {supplier} (its substation transformers' tap setting)"
                )
            } else {
                format!("reinforcing {}", owner.as_ref().unwrap_or(&supplier))
            },
            supplier,
            before_broken: case.broken_without().is_some(),
        }
    }

    /// The highest segment or head loading of a case tree over the window
    /// with `demand_kw` at `local`, %, and the local node whose inbound
    /// segment carries it (0 for the head). Off the load's path a branch
    /// carries what it did (the load reaches it only through the voltage, a
    /// fraction of a per cent): its highest over the window. On the path, at
    /// each step, the base flow's current with the load's added; the step
    /// where the path is loaded most is solved exactly. Last, whether that
    /// branch is the path's.
    fn loading_at_demand(
        &self,
        tree: &CaseTree,
        local: u32,
        demand_kw: f64,
        load: &AddedLoad<'_>,
    ) -> (f64, u32, bool) {
        let base = &tree.base;
        let e = &base.electrical;
        let mut on_path = vec![false; e.len()];
        let path = base.rated_path_up(local, &mut on_path);
        let off_path = (1..e.len())
            .filter(|&j| !on_path[j])
            .map(|j| (f64::from(tree.branch_max[j].0), j as u32))
            .fold((0.0, 0u32), |a, b| if b.0 > a.0 { b } else { a });
        // That branch's worst step, where the base kept it.
        let off_step = base
            .window_step
            .binary_search(&(tree.branch_max[off_path.1 as usize].1 as usize))
            .ok();
        let head = e.head_rated_a.filter(|r| *r > 0.0);
        let per_kw = Complex64::new(1.0, -load.tan_phi);
        let factor = |k: usize| {
            load.profile
                .map_or(1.0, |p| p[self.quarter_of_day(base.loads.steps[k])])
        };
        // The steps in the order of an upper bound of the path's loading with
        // the load: per rating on the path (the head's too), the base's
        // highest loading along the path at the step (kept per node and step)
        // or, where lower, the highest of that rating's branches over the
        // kept flows, plus the load's current over the rating. (With the path's
        // least rating alone, a lightly loaded weak spur put every step of a
        // trunk's busy hours above the loading found.) The scan ends at the
        // first bound below the highest loading found: a handful of steps
        // instead of every step kept.
        let kept_most = tree.kept_loading_most();
        let mut ratings: Vec<(f64, f64)> = Vec::new();
        let branches = path
            .iter()
            .map(|&(j, inverse_rated_2)| (inverse_rated_2.sqrt(), kept_most[j]));
        let head_branch = head.map(|rated| (rated.recip(), kept_most[0]));
        for (per_a, most) in branches.chain(head_branch) {
            match ratings.iter_mut().find(|r| r.0 == per_a) {
                Some(rating) => rating.1 = rating.1.max(most),
                None => ratings.push((per_a, most)),
            }
        }
        // A rating no weaker and no more loaded than another bounds nothing.
        let all = ratings.clone();
        ratings.retain(|&(per_a, most)| {
            !all.iter()
                .any(|&(p, m)| p >= per_a && m >= most && (p, m) != (per_a, most))
        });
        let steps = base.solutions.len();
        let at = local as usize * steps;
        let path_loading = &base.path_max_loading[at..at + steps];
        // The candidate's voltage from its kept row, not its flows: a root
        // per step was most of this order's cost.
        let voltage_kv = &base.voltage_kv[at..at + steps];
        let per_kw_magnitude = magnitude(per_kw);
        let mut order: Vec<(f64, usize)> = (path_loading.iter().zip(voltage_kv).enumerate())
            .map(|(k, (&loading, &v))| {
                let added_a = per_kw_magnitude * demand_kw * factor(k) / (SQRT_3 * f64::from(v));
                let loading = f64::from(loading);
                // Nothing rated on the path: its loading alone orders the
                // steps, as before the load.
                let bound = ratings
                    .iter()
                    .map(|&(per_a, most)| loading.min(most) + added_a * per_a)
                    .reduce(f64::max)
                    .unwrap_or(loading);
                // Single-precision rows: a hair above, never below.
                (bound * (1.0 + 1e-6), k)
            })
            .collect();
        // The highest loading of the path or head at step `k`, and where.
        let loading_at = |k: usize| -> (f64, u32) {
            let solution = &base.solutions[k];
            let added =
                per_kw * (demand_kw * factor(k)) / (SQRT_3 * solution.v_kv(local as usize).conj());
            // Squared, rooted once: a root per branch cost more than the rest.
            let mut most_squared = (f64::NEG_INFINITY, 0u32);
            for &(j, inverse_rated_2) in &path {
                let squared = (solution.i_a(j) + added).norm_sqr() * inverse_rated_2;
                if squared > most_squared.0 {
                    most_squared = (squared, j as u32);
                }
            }
            let mut most = (most_squared.0.sqrt(), most_squared.1);
            if let Some(rated) = head {
                let loading = magnitude(solution.i_a(0) + added) / rated;
                if loading > most.0 {
                    most = (loading, 0);
                }
            }
            most
        };
        let descending =
            |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        // The step of the highest bound first: a step whose bound lies under
        // its loading is never reached, so only the others are sorted.
        // (loading, step, the branch's local node: 0 for the head)
        let mut worst: Option<(f64, usize, u32)> =
            order.iter().min_by(|a, b| descending(a, b)).map(|&(_, k)| {
                let (loading, branch) = loading_at(k);
                (loading, k, branch)
            });
        order.retain(|(bound, _)| worst.is_none_or(|(w, ..)| *bound >= w));
        order.sort_unstable_by(descending);
        let first_step = worst.map(|(_, k, _)| k);
        for &(bound, k) in &order {
            if worst.is_some_and(|(w, ..)| bound < w) {
                break;
            }
            if Some(k) == first_step {
                continue;
            }
            let most = loading_at(k);
            // Of equal loadings, the earliest step's.
            if worst.is_none_or(|(w, wk, _)| most.0 > w || (most.0 == w && k < wk)) {
                worst = Some((most.0, k, most.1));
            }
        }
        match worst {
            Some((on, k, branch)) if on >= off_path.0 && demand_kw > 0.0 => (
                self.loading_pct_at_step(base, k, local, demand_kw * factor(k), load),
                branch,
                true,
            ),
            Some((on, _, branch)) if on >= off_path.0 => (on * 100.0, branch, true),
            // The load still moves it a little, through the voltage.
            _ if demand_kw > 0.0 && off_step.is_some() => {
                let k = off_step.unwrap_or(0);
                (
                    self.loading_pct_at_step(base, k, local, demand_kw * factor(k), load),
                    off_path.1,
                    false,
                )
            }
            _ => (off_path.0 * 100.0, off_path.1, false),
        }
    }

    /// A supplier's id: the feeder's, or the busbar's.
    pub fn supplier_name(&self, supply: TieSupply) -> String {
        match supply {
            TieSupply::Feeder { feeder, .. } => self.network.feeders[feeder.get()].id.to_string(),
            TieSupply::Busbar(b) => self.network.node(b).id.to_string(),
        }
    }

    /// How a case reads in results: its ties, joined by `+`, and for a split
    /// the switch opened after `/` (`S12`, `S12+S40/S7`).
    pub fn case_label(&self, case: &RestorationCase) -> String {
        let ties: Vec<String> = case
            .ties()
            .iter()
            .map(|t| self.network.switch(t.switch).id.to_string())
            .collect();
        match case {
            RestorationCase::OneTie(_) => ties.join("+"),
            RestorationCase::Split { switch, .. } => {
                format!("{}/{}", ties.join("+"), self.network.switch(*switch).id)
            }
        }
    }

    /// The substation N-1 check at a busbar: the largest extra load (at the
    /// application's profile and power factor) that the coupled groups carry
    /// with their largest transformer out, and their loading then at
    /// `demand_kw`, %. `None` where fewer than two transformers back each
    /// other up (the check fails).
    pub fn substation_n1(
        &self,
        busbar: NodeIx,
        demand_kw: f64,
        load: &AddedLoad<'_>,
    ) -> SubstationN1 {
        self.topology
            .busbar_group_index(busbar)
            .map(|group| self.substation_n1_of_group(group, demand_kw, load))
            .unwrap_or_default()
    }

    /// [`Self::substation_n1`] of busbar group `group`.
    fn substation_n1_of_group(
        &self,
        group: usize,
        demand_kw: f64,
        load: &AddedLoad<'_>,
    ) -> SubstationN1 {
        let groups = self.topology.coupled_groups(&self.network, group);
        let transformers: Vec<&headroom_geodata::SubstationTransformer> = groups
            .iter()
            .flat_map(|&g| &self.topology.busbar_groups[g].transformers)
            .map(|t| &self.network.substation_transformers[t.get()])
            .collect();
        let largest_out = transformers
            .iter()
            .max_by(|a, b| a.rated_kva.total_cmp(&b.rated_kva))
            .map(|t| t.id.to_string());
        if transformers.len() < 2 {
            return SubstationN1 {
                transformers: transformers.len(),
                largest_out,
                ..SubstationN1::default()
            };
        }
        let largest = transformers.iter().map(|t| t.rated_kva).fold(0.0, f64::max);
        let remaining = transformers.iter().map(|t| t.rated_kva).sum::<f64>() - largest;
        let limit = remaining * self.config.n1.transformer_overload_pct / 100.0;
        let per_kw = Complex64::new(1.0, load.tan_phi);
        let mut headroom = UNBOUNDED_KW;
        let mut worst = 0.0f64;
        for (w, &ts) in self.window.steps.iter().enumerate() {
            let flow: Complex64 = groups
                .iter()
                .map(|&g| self.group_kva[g][w] + self.group_reserved_kva[g][w])
                .sum();
            let factor = load.profile.map_or(1.0, |p| p[self.quarter_of_day(ts)]);
            let step = per_kw * factor;
            headroom = headroom.min(crate::evaluate::magnitude_root(flow, step, limit));
            worst = worst.max((flow + step * demand_kw).norm_sqr().sqrt());
        }
        SubstationN1 {
            transformers: transformers.len(),
            largest_out,
            headroom_kw: Some(headroom.max(0.0).floor()),
            loading_pct: worst / remaining * 100.0,
        }
    }
}

/// The substation N-1 check's figures (see [`Engine::substation_n1`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubstationN1 {
    /// In-service transformers of the coupled groups.
    pub transformers: usize,
    /// The largest of them: the one the check takes out.
    pub largest_out: Option<String>,
    /// The largest extra load kept, kW; `None` with fewer than two
    /// transformers.
    pub headroom_kw: Option<f64>,
    /// The remaining transformers' loading at the application's demand, %.
    pub loading_pct: f64,
}

/// The case that allows most at a candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct BestCase {
    /// Index into the feeder's cases.
    pub case: usize,
    /// The case as results name it ([`Engine::case_label`]).
    pub label: String,
    /// Its worst segment or head loading at the application's demand, %.
    pub loading_pct: f64,
    /// The check that limits its headroom.
    pub binding: CheckName,
    /// Where that check breaks (a segment or node id).
    pub element: Option<String>,
    /// The feeder (or busbar) feeding the tree that breaks it.
    pub supplier: String,
    /// What would restore the case, as the explanations say it: reinforcing
    /// the feeder the breaking segment or node belongs to (the supplier for
    /// its head or substation), or, where a voltage lies above the highest
    /// allowed, lowering the voltage at the supplier's source.
    pub remedy: String,
    /// Whether the case breaks a limit even without the new load.
    pub before_broken: bool,
}

impl BestCase {
    /// Where the limiting check breaks, as the explanations say it: " at
    /// S40", or nothing where no element is named.
    fn at_element(&self) -> String {
        self.element
            .as_deref()
            .map_or(String::new(), |e| format!(" at {e}"))
    }
}

fn same_supplier(a: TieSupply, b: TieSupply) -> bool {
    match (a, b) {
        (TieSupply::Feeder { feeder: x, .. }, TieSupply::Feeder { feeder: y, .. }) => x == y,
        (TieSupply::Busbar(x), TieSupply::Busbar(y)) => x == y,
        _ => false,
    }
}

/// One application as the N-1 checks see it: its demand and load, and its
/// substation N-1 figures per busbar group, each worked out when a candidate
/// of the group first needs it (they depend on the group and the load only).
pub(crate) struct N1Application<'a> {
    demand_kw: f64,
    load: &'a AddedLoad<'a>,
    substation_by_group: Vec<std::sync::OnceLock<SubstationN1>>,
}

impl<'a> N1Application<'a> {
    /// Nothing worked out yet, for the groups of `engine`'s network.
    pub(crate) fn new(engine: &Engine, demand_kw: f64, load: &'a AddedLoad<'a>) -> Self {
        Self {
            demand_kw,
            load,
            substation_by_group: (0..engine.topology.busbar_groups.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }
}

/// The two N-1 checks at one candidate, as results report them.
pub(crate) struct N1Checks {
    /// `n1_transfer` then `substation_n1`.
    pub checks: Vec<CheckResult>,
    /// The candidate's N-1 headroom (never above the normal), `None` where the
    /// transfer check does not apply (a new bay at a busbar).
    pub transfer_headroom_kw: Option<f64>,
    /// The substation N-1 headroom.
    pub substation_headroom_kw: Option<f64>,
}

impl Engine {
    /// Both N-1 checks at `node` (on `feeder`, or a busbar's new bay) for an
    /// application of `demand_kw` whose normal headroom there is
    /// `normal_headroom_kw`.
    pub(crate) fn n1_checks(
        &self,
        application: &N1Application<'_>,
        node: NodeIx,
        feeder: Option<usize>,
        busbar: Option<NodeIx>,
        normal_headroom_kw: f64,
    ) -> N1Checks {
        let (demand_kw, load) = (application.demand_kw, application.load);
        let n1 = &self.config.n1;
        let mut checks = Vec::with_capacity(2);
        let placement = self.topology.placement(node);
        let transfer_headroom_kw = match (feeder, placement) {
            (Some(f), Some(p)) => {
                let outcome = self.n1_transfer(f, p.local, demand_kw, normal_headroom_kw, load);
                let feeder_id = &self.network.feeders[f].id;
                let headroom = outcome.headroom_kw.min(normal_headroom_kw).max(0.0);
                let ok = demand_kw <= headroom;
                checks.push(match &outcome.best {
                    None => CheckResult {
                        name: CheckName::N1Transfer,
                        ok,
                        value: f64::NAN,
                        limit: n1.thermal_pct,
                        element: None,
                        detail: Some(format!(
                            "{feeder_id} has no tie: no normally-open switch joins it to another feeder or a busbar, so nothing feeds it when its head fails"
                        )),
                    },
                    Some(best) => {
                        let label = best.label.clone();
                        let at = best.at_element();
                        let detail = if best.before_broken {
                            Some(format!(
                                "closing {label} to feed it from {}: {} breaks{at} even without the new load; {} would restore the transfer",
                                best.supplier, best.binding, best.remedy
                            ))
                        } else if !ok && outcome.headroom_kw < normal_headroom_kw {
                            Some(format!(
                                "closing {label} to feed it from {} (the best case) carries {headroom} kW more at most: {} breaks first{at}; {} would restore it",
                                best.supplier, best.binding, best.remedy
                            ))
                        } else {
                            None
                        };
                        CheckResult {
                            name: CheckName::N1Transfer,
                            ok,
                            value: round3(best.loading_pct),
                            limit: n1.thermal_pct,
                            element: Some(label),
                            detail,
                        }
                    }
                });
                Some(headroom)
            }
            _ => {
                checks.push(CheckResult {
                    name: CheckName::N1Transfer,
                    ok: true,
                    value: f64::NAN,
                    limit: n1.thermal_pct,
                    element: None,
                    detail: Some(
                        "a new bay at the busbar is a new feeder: no transfer case applies"
                            .to_owned(),
                    ),
                });
                None
            }
        };
        let substation_headroom_kw = busbar.map(|b| {
            let none = SubstationN1::default();
            let s = match self.topology.busbar_group_index(b) {
                Some(g) => application.substation_by_group[g]
                    .get_or_init(|| self.substation_n1_of_group(g, demand_kw, load)),
                None => &none,
            };
            let largest = s.largest_out.clone();
            let headroom = s.headroom_kw.unwrap_or(0.0);
            let ok = s.headroom_kw.is_some() && demand_kw <= headroom;
            checks.push(CheckResult {
                name: CheckName::SubstationN1,
                ok,
                value: if s.headroom_kw.is_some() {
                    round3(s.loading_pct)
                } else {
                    f64::NAN
                },
                limit: n1.transformer_overload_pct,
                element: largest.clone(),
                detail: match (s.headroom_kw, largest) {
                    (None, _) => Some(format!(
                        "{} in-service transformer(s) in the busbar group and the groups coupled to it: nothing carries its load when one trips",
                        s.transformers
                    )),
                    (Some(_), Some(t)) if !ok => Some(format!(
                        "with {t} out, the rest carry {headroom} kW more at most within {} % of their rating",
                        n1.transformer_overload_pct
                    )),
                    _ => None,
                },
            });
            headroom
        });
        N1Checks {
            checks,
            transfer_headroom_kw,
            substation_headroom_kw,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A feeder's N-1 figures for its capacity row.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FeederN1Figures {
    pub ok: Option<bool>,
    pub headroom_kw: Option<f64>,
    pub case: Option<String>,
    pub detail: Option<String>,
}

impl Engine {
    /// Whether feeder `f` as it stands passes N-1 and its N-1 headroom at its
    /// first node (flat, at the capacity power factor, never above
    /// `headroom_kw`); nothing where `engine.n1.mode` is off.
    pub(crate) fn feeder_n1_figures(
        &self,
        f: usize,
        headroom_kw: f64,
        bases: &dyn FeederBases,
    ) -> FeederN1Figures {
        let tree = self.topology.tree(FeederIx::from_usize(f));
        if self.config.n1.mode == crate::config::N1Mode::Off || tree.node_count() == 0 {
            return FeederN1Figures::default();
        }
        let load = AddedLoad::flat(self.config.capacity_power_factor);
        let n1 = self.feeder_n1_from(f, false, bases);
        let ok = n1.cases.iter().any(|c| c.broken_without().is_none());
        let outcome = self.n1_transfer_with(
            &n1,
            || self.feeder_n1_from(f, true, bases),
            FIRST_NODE,
            0.0,
            headroom_kw,
            &load,
        );
        let feeder_id = &self.network.feeders[f].id;
        let (case, detail) = match &outcome.best {
            None => (
                None,
                Some(format!(
                    "{feeder_id} has no tie: nothing feeds it when its head fails"
                )),
            ),
            Some(best) => {
                let label = best.label.clone();
                let at = best.at_element();
                let detail = if ok {
                    format!(
                        "closing {label} feeds it from {}; {} limits the transfer{at}",
                        best.supplier, best.binding
                    )
                } else {
                    format!(
                        "no case carries it as it stands: closing {label} to feed it from {}, {} breaks{at}; {} would restore it",
                        best.supplier, best.binding, best.remedy
                    )
                };
                (Some(label), Some(detail))
            }
        };
        FeederN1Figures {
            ok: Some(ok),
            headroom_kw: Some(outcome.headroom_kw.min(headroom_kw).max(0.0)),
            case,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture_engine;

    /// The first most loaded branch of a path, with a new load's current
    /// added, is the same scanned over [`FeederBase::rated_path_up`]'s branches as over
    /// every rated branch of the path, on every fixture feeder and case tree,
    /// at every node and step; and the scan passes series branches.
    #[test]
    fn a_path_scanned_without_its_series_branches_finds_the_same_most_loaded() {
        let engine = fixture_engine();
        let (mut scans, mut passed) = (0usize, 0usize);
        let mut bases: Vec<Arc<FeederBase>> = Vec::new();
        for f in 0..engine.network.feeders.len() {
            bases.push(engine.feeder(f));
        }
        let most_loaded = |base: &FeederBase, k: usize, added: Complex64, path: &[(usize, f64)]| {
            let solution = &base.solutions[k];
            let mut most = (f64::NEG_INFINITY, usize::MAX);
            for &(j, inverse_rated_2) in path {
                let squared = (solution.i_a(j) + added).norm_sqr() * inverse_rated_2;
                if squared > most.0 {
                    most = (squared, j);
                }
            }
            most
        };
        let mut judge = |base: &FeederBase| {
            let e = &base.electrical;
            for local in 1..e.len() as u32 {
                let mut on_path = vec![false; e.len()];
                let scanned = base.rated_path_up(local, &mut on_path);
                let mut every = Vec::new();
                let mut at = local as usize;
                while at != 0 {
                    assert!(on_path[at]);
                    if e.inv_rated_a_2[at] > 0.0 {
                        every.push((at, e.inv_rated_a_2[at]));
                    }
                    at = e.parent[at] as usize;
                }
                assert!(on_path[0]);
                passed += every.len() - scanned.len();
                for k in 0..base.solutions.len() {
                    let v = base.solutions[k].v_kv(local as usize);
                    for amps in [0.0, 40.0, 400.0] {
                        let added = Complex64::new(amps, -0.4 * amps) * (v.conj() / magnitude(v));
                        let (a, b) = (
                            most_loaded(base, k, added, &scanned),
                            most_loaded(base, k, added, &every),
                        );
                        assert!(
                            a.0.to_bits() == b.0.to_bits() && a.1 == b.1,
                            "node {local} step {k}: {a:?} scanned, {b:?} over every branch"
                        );
                        scans += 1;
                    }
                }
            }
        };
        for base in &bases {
            judge(base);
        }
        for f in 0..engine.network.feeders.len() {
            for case in &engine.feeder_n1(f).cases {
                for tree in &case.trees {
                    judge(&tree.base);
                }
            }
        }
        assert!(
            scans > 0 && passed > 0,
            "{scans} scans passed {passed} branches"
        );
    }

    /// The highest loadings taken from folded flows, a slot per chain and
    /// rating, are those of every branch taken from the flows unfolded, bit
    /// for bit, steps included; with a chain's segments rated apart too.
    #[test]
    fn branch_maxima_of_folded_flows_are_every_branchs() {
        let engine = fixture_engine();
        let mut folded_feeders = 0;
        for f in 0..engine.network.feeders.len() {
            let feeder = FeederIx::from_usize(f);
            let mut e = ElectricalFeeder::new(&engine.network, engine.topology.tree(feeder));
            let settled = engine
                .loads_of(feeder, &e, engine.readings(), &mut ())
                .settled(&e, &engine.config.load_model);
            let Some(folding) = settled.folding else {
                continue;
            };
            folded_feeders += 1;
            // Every third segment rated a fifth lower: chains of two ratings.
            for j in (1..e.len()).step_by(3) {
                e.rated_a[j] *= 0.8;
            }
            e.derive_per_node();
            let mut whole = BranchMax::new(&e);
            let mut folded = FoldedBranchMax::new(&e, &folding);
            // The same again four steps at a time, a short quad last.
            let mut by_quad = FoldedBranchMax::new(&e, &folding);
            let flows = &settled.loads.flows[..settled.loads.flows.len() - 1];
            assert!(!flows.len().is_multiple_of(LANES));
            for (k, flow) in flows.iter().enumerate() {
                folded.observe(&folding, k, flow);
                whole.observe(&e, k, &folding.unfold(flow));
            }
            for (quad, lanes) in flows.chunks(LANES).enumerate() {
                let len = lanes.len();
                let quad_flows = std::array::from_fn(|l| &lanes[l.min(len - 1)]);
                by_quad.observe_quad(&folding, quad * LANES, quad_flows, len);
            }
            let (whole, folded, by_quad) = (
                whole.by_window_step(|k| k),
                folded.by_window_step(|k| k),
                by_quad.by_window_step(|k| k),
            );
            assert_eq!(whole.len(), folded.len());
            for (j, ((a, b), c)) in whole.iter().zip(&folded).zip(&by_quad).enumerate() {
                assert!(
                    a.0.to_bits() == b.0.to_bits() && a.1 == b.1,
                    "feeder {f} branch {j}: {a:?} against {b:?}"
                );
                assert!(
                    b.0.to_bits() == c.0.to_bits() && b.1 == c.1,
                    "feeder {f} branch {j}: {b:?} step by step, {c:?} by quads"
                );
            }
            assert!(whole.iter().any(|m| m.0 > 0.0));
        }
        assert!(folded_feeders > 0, "no fixture feeder folds");
    }

    /// A case tree's worst loading at a demand, found by scanning its steps
    /// in the order of their bounds and stopping at the first under the
    /// loading found, is the one of every kept step scanned: the same branch,
    /// solved at the same step. On every fixture feeder's case trees, at every
    /// third node, for demands from light to past most ratings.
    #[test]
    fn a_case_trees_worst_loading_at_a_demand_is_the_highest_of_every_kept_step() {
        let engine = fixture_engine();
        let load = AddedLoad::flat(0.93);
        let per_kw = Complex64::new(1.0, -load.tan_phi);
        let mut compared = 0;
        for f in 0..engine.network.feeders.len() {
            let n1 = engine.feeder_n1_from(f, false, &engine);
            for tree in n1.cases.iter().flat_map(|c| &c.trees) {
                let base = &tree.base;
                let e = &base.electrical;
                for local in (1..e.len() as u32).step_by(3) {
                    let mut on_path = vec![false; e.len()];
                    let path = base.rated_path_up(local, &mut on_path);
                    for demand_kw in [150.0, 1_500.0, 6_000.0] {
                        let (pct, branch, scanned_on_path) =
                            engine.loading_at_demand(tree, local, demand_kw, &load);
                        if !scanned_on_path {
                            continue;
                        }
                        // Every kept step: the path's and the head's loading
                        // with the load, the earliest step of the highest.
                        let mut highest = (f64::NEG_INFINITY, 0usize, 0u32);
                        for (k, solution) in base.solutions.iter().enumerate() {
                            let added = per_kw * demand_kw
                                / (SQRT_3 * solution.v_kv(local as usize).conj());
                            let mut most = (f64::NEG_INFINITY, 0u32);
                            for &(j, inverse_rated_2) in &path {
                                let loading =
                                    ((solution.i_a(j) + added).norm_sqr() * inverse_rated_2).sqrt();
                                if loading > most.0 {
                                    most = (loading, j as u32);
                                }
                            }
                            if let Some(rated) = e.head_rated_a.filter(|r| *r > 0.0) {
                                let loading = magnitude(solution.i_a(0) + added) / rated;
                                if loading > most.0 {
                                    most = (loading, 0);
                                }
                            }
                            if most.0 > highest.0 {
                                highest = (most.0, k, most.1);
                            }
                        }
                        let (_, k, most_loaded) = highest;
                        let context = format!("feeder {f}, tree node {local}, {demand_kw} kW");
                        assert_eq!(branch, most_loaded, "{context}");
                        let at_step = engine.loading_pct_at_step(base, k, local, demand_kw, &load);
                        assert_eq!(pct, at_step, "{context}: step {k}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 300, "only {compared} compared");
    }

    /// A case set built for a capacity row keeps, over the steps it leaves
    /// out, the room at the feeder's first node and the least of any node
    /// alone (NaN elsewhere, which no guard passes); every step whose room
    /// at that node lies within the margin of the least is kept.
    #[test]
    fn a_set_judged_at_the_first_node_keeps_the_room_there_and_the_least() {
        let engine = fixture_engine();
        let (mut judged, mut left_out) = (0, 0);
        for f in 0..engine.network.feeders.len() {
            let n1 = engine.feeder_n1_from(f, false, &engine);
            for tree in n1.cases.iter().flat_map(|c| &c.trees) {
                if tree.base.step_count() == engine.window.steps.len() {
                    continue;
                }
                left_out += 1;
                let at = tree
                    .from_feeder
                    .get(FIRST_NODE as usize)
                    .copied()
                    .filter(|at| *at != u32::MAX)
                    .map(|at| at as usize);
                for (j, room) in tree.dropped_room_kva.iter().enumerate() {
                    let kept = j == 0 || Some(j) == at;
                    assert_eq!(room.is_nan(), !kept, "feeder {f}, node {j}: {room}");
                }
                let Some(at) = at else { continue };
                if tree.base.summary.already_broken.is_some() {
                    continue;
                }
                judged += 1;
                // The kept rows are the exact flows', the selection's solved
                // to 1e-4 pu: a thousandth covers the difference.
                let least_kept = tree.base.least_room_kva[at];
                assert!(
                    tree.dropped_room_kva[at] >= least_kept * DROPPED_ROOM_MARGIN * (1.0 - 1e-3),
                    "feeder {f}: {} kVA left out, {least_kept} kVA the least kept",
                    tree.dropped_room_kva[at]
                );
            }
        }
        assert!(
            judged > 10 && left_out > judged,
            "{judged} judged of {left_out}"
        );
    }
}
