//! Series chains folded out of a feeder for its sweeps.
//!
//! A node that carries no load and feeds exactly one branch (a pole or joint
//! on a line, most of a GIS model's nodes: 70 % of the synthetic city's) adds
//! nothing a sweep solves for: the current through it is the current of the
//! branch below, and its voltage follows from its parent's by that branch's
//! drop. A sweep over the feeder with such chains folded into single branches
//! (their impedances summed) solves the same flow at the nodes it keeps, and
//! the folded nodes' currents and voltages come back exactly from it
//! ([`ChainFolding::unfold`]).
//!
//! A feeder's load model solves its loose and exact flows folded (its
//! loaded nodes kept), and its base unfolds each flow as it observes it,
//! four steps at a time (`SolvingLoads` in `base`): every node's rows are
//! read off the whole tree, and no whole-tree flow of every step is held.
//!
//! A candidate's flows are judged on the folded tree itself
//! ([`CandidateFolding::extremes`]): a chain's current is its bottom's, and
//! its voltages lie between its ends' wherever it carries a current along
//! one conductor type, so only the other chains' nodes are worked out.
//!
//! A restoration case's flows over every step, which only choose the steps
//! it keeps, are solved and kept folded. A set judged at one node (a
//! capacity row's) reads their rooms off the folded tree itself
//! (`PathRows::folded`); a set cached for every node unfolds a few steps at
//! a time. Unfolding every step at once wrote as much memory as the folded
//! sweeps saved.

use headroom_geodata::TransformerIx;
use num_complex::Complex64;

use crate::powerflow::{ElectricalFeeder, FlowExtremes, LANES, SQRT_3, Solution, SweepLanes};
use headroom_geodata::topology::NO_PARENT;

/// Per node of `e`, its one child (`u32::MAX` where it has none or several).
pub(crate) fn only_children(e: &ElectricalFeeder) -> Vec<u32> {
    let n = e.len();
    let mut children = vec![0u32; n];
    let mut only_child = vec![u32::MAX; n];
    for j in 1..n {
        let p = e.parent[j] as usize;
        if p < n {
            children[p] += 1;
            only_child[p] = j as u32;
        }
    }
    for (only, count) in only_child.iter_mut().zip(&children) {
        if *count != 1 {
            *only = u32::MAX;
        }
    }
    only_child
}

/// A feeder with its load-free series nodes folded away.
#[derive(Clone, Debug)]
pub(crate) struct ChainFolding {
    /// The folded feeder: the busbar, every loaded node, and every node that
    /// branches or ends, each fed from the nearest of them above. A folded
    /// branch is rated as the least rated segment of its chain: every
    /// segment carries the same current, so its margin is the chain's. Its
    /// inbound branch is that segment (the one nearest the top where
    /// several are), the one the whole tree names as most loaded.
    pub(crate) folded: ElectricalFeeder,
    /// Per node of the folded feeder, its inbound branch as a scan up a path
    /// names it: the least rated segment of its chain nearest the bottom
    /// where several are (`folded.inbound` names the one nearest the top,
    /// as a scan over the nodes in order does).
    pub(crate) inbound_lowest: Vec<Option<headroom_geodata::Branch>>,
    /// Per node of the feeder, its index in the folded one (`u32::MAX` where
    /// folded away).
    kept: Vec<u32>,
    /// Per node of the feeder, the folded node whose inbound current its own
    /// inbound branch carries (itself where kept, else the end of its chain).
    carries: Vec<u32>,
    /// Per node of the feeder, the folded node its voltage is read from (itself
    /// where kept, else the top of its chain) and the drop per ampere from
    /// there (0 where kept): each node's voltage is one product off a folded
    /// one, without waiting on its parent's.
    voltage_from: Vec<(u32, Complex64)>,
    /// Per node of the folded feeder, its node of the whole one.
    whole_of: Vec<u32>,
    /// Per node of the folded feeder, what its flow shows of its chain
    /// (see [`ChainFolding::extremes`]).
    chains: ChainEnds,
}

/// Per folded node, its chain (the nodes folded into its inbound branch)
/// as the checks read a flow of it: the whole feeder's node whose inbound
/// segment is the chain's most loaded, the folded nodes in order and
/// whether the chain's voltages can be told from its ends.
#[derive(Clone, Debug, Default)]
struct ChainEnds {
    /// The node of the chain's least rated segment (the one nearest the
    /// top where several are: a scan of the whole feeder's nodes in order
    /// names it first), the folded node itself where nothing is folded.
    most_loaded: Vec<u32>,
    /// Folded node `f`'s chain, top down:
    /// `interior[interior_start[f]..interior_start[f + 1]]`.
    interior_start: Vec<u32>,
    interior: Vec<u32>,
    /// Whether the chain is [`plain_chain`].
    plain: Vec<bool>,
    /// The folded nodes whose chains fold nodes away, in order.
    with_interior: Vec<u32>,
}

impl ChainEnds {
    fn new(
        e: &ElectricalFeeder,
        folded: &ElectricalFeeder,
        kept: &[u32],
        carries: &[u32],
        whole_of: &[u32],
        most_loaded: Vec<u32>,
    ) -> Self {
        let folded_len = folded.len();
        let mut interior_start = vec![0u32; folded_len + 1];
        for (&at, &end) in kept.iter().zip(carries) {
            if at == u32::MAX {
                interior_start[end as usize + 1] += 1;
            }
        }
        for f in 0..folded_len {
            interior_start[f + 1] += interior_start[f];
        }
        // Local order puts a chain's nodes top down.
        let mut interior = vec![0u32; interior_start[folded_len] as usize];
        let mut next = interior_start.clone();
        for (j, (&at, &end)) in kept.iter().zip(carries).enumerate() {
            if at == u32::MAX {
                interior[next[end as usize] as usize] = j as u32;
                next[end as usize] += 1;
            }
        }
        let plain = (0..folded_len)
            .map(|f| {
                let nodes = &interior[interior_start[f] as usize..interior_start[f + 1] as usize];
                if nodes.is_empty() {
                    return true;
                }
                let top = whole_of[folded.parent[f] as usize];
                plain_run(e, top, nodes.iter().copied().chain([whole_of[f]]))
            })
            .collect();
        let with_interior = (0..folded_len as u32)
            .filter(|&f| interior_start[f as usize + 1] > interior_start[f as usize])
            .collect();
        Self {
            most_loaded,
            interior_start,
            interior,
            plain,
            with_interior,
        }
    }

    /// Folded node `f`'s chain: the nodes folded into it and whether it is
    /// plain.
    #[inline(always)]
    fn of(&self, f: usize) -> (&[u32], bool) {
        let nodes =
            &self.interior[self.interior_start[f] as usize..self.interior_start[f + 1] as usize];
        (nodes, self.plain[f])
    }
}

/// How far a chain's segments may turn from the chain's impedance, as the
/// sine of the angle, and share of it the shortest must take at least, for
/// its voltages to be told from its ends (see [`plain_chain`]).
const CHAIN_TURN: f64 = 1e-9;
const CHAIN_SHORTEST_SHARE: f64 = 1e-3;

/// Whether a chain of segments `z` (top down), whose ends and every node
/// between share one nominal voltage (`same_nominal`), has its
/// lowest and highest voltage at an end whenever [`ends_tell_chain`] says
/// so: its segments all of one direction (one conductor type), so that its
/// nodes' voltages lie on the line between its ends in the order of the
/// chain, none of them a negligible share of it, so that the squares of
/// the nodes' voltages differ from the ends' by far more than their
/// rounding.
fn plain_chain(z: impl Iterator<Item = Complex64> + Clone, same_nominal: bool) -> bool {
    let total: Complex64 = z.clone().sum();
    let total_size = total.norm();
    same_nominal
        && total_size > 0.0
        && z.into_iter().all(|z| {
            let size = z.norm();
            let turn = z * total.conj();
            size >= CHAIN_SHORTEST_SHARE * total_size
                && turn.re > 0.0
                && turn.im.abs() <= CHAIN_TURN * size * total_size
        })
}

/// [`plain_chain`] of the segments into `nodes` of `e` (top down, the
/// chain's bottom last), below `top`.
fn plain_run(e: &ElectricalFeeder, top: u32, nodes: impl Iterator<Item = u32> + Clone) -> bool {
    let nominal = e.nominal_kv[top as usize];
    plain_chain(
        nodes.clone().map(|j| e.z_ohm[j as usize]),
        nodes
            .into_iter()
            .all(|j| e.nominal_kv[j as usize] == nominal),
    )
}

/// The relative margin by which the voltage of a plain chain's ends must
/// fall (or rise) along it, at both ends, for no node between them to hold
/// its lowest or highest voltage: the cosine of the angle between the
/// chain's drop and its end voltages (see [`ends_tell_chain`]).
const CHAIN_FALL: f64 = 1e-2;

/// The least drop along a chain, relative to its voltage, for its ends
/// to tell it (below it, the nodes' voltages are too close to the ends' for
/// their order to survive rounding: a chain carrying next to nothing).
const CHAIN_LEAST_DROP_2: f64 = 1e-12;

/// Whether, in a flow with voltage `top` at a plain chain's top and
/// `bottom` at its bottom, every node between them has a voltage strictly
/// between theirs, with margin: along a line in the complex plane, the
/// magnitude is convex, so where it falls (or rises) at both ends it does
/// so all along.
#[inline(always)]
fn ends_tell_chain(top: Complex64, bottom: Complex64) -> bool {
    let drop = top - bottom;
    let drop_2 = drop.norm_sqr();
    let bottom_2 = bottom.norm_sqr();
    // The slopes of |v|^2 along the chain at its ends, halved and negated.
    let falling_at_bottom = (bottom * drop.conj()).re;
    let rising_at_top = -(top * drop.conj()).re;
    let fall_2 = CHAIN_FALL * CHAIN_FALL;
    drop_2 >= CHAIN_LEAST_DROP_2 * bottom_2
        && ((falling_at_bottom > 0.0
            && falling_at_bottom * falling_at_bottom >= fall_2 * bottom_2 * drop_2)
            || (rising_at_top > 0.0
                && rising_at_top * rising_at_top >= fall_2 * top.norm_sqr() * drop_2))
}

impl ChainFolding {
    /// `e` with every node that `loaded` does not mark and that has exactly
    /// one child folded into the branch below it; `None` where no node
    /// folds (the sweeps are as cheap on `e` itself).
    pub(crate) fn new(e: &ElectricalFeeder, loaded: &[bool]) -> Option<Self> {
        let n = e.len();
        let only_child = only_children(e);
        let folds = |j: usize| j != 0 && only_child[j] != u32::MAX && !loaded[j];
        if !(1..n).any(folds) {
            return None;
        }
        let mut kept = vec![u32::MAX; n];
        // Impedance from the nearest kept node above to each node.
        let mut z_from_kept = vec![Complex64::new(0.0, 0.0); n];
        // The least rating from the nearest kept node above to each node,
        // and the node whose inbound segment has it (the one nearest the
        // top where several do: the whole tree's first most loaded).
        let mut rated_from_kept = vec![f64::INFINITY; n];
        let mut least_rated_from_kept = vec![u32::MAX; n];
        // The same, the one nearest the bottom where several are: the first
        // most loaded a scan up a path from its end finds.
        let mut lowest_least_rated_from_kept = vec![u32::MAX; n];
        let mut inbound_lowest = Vec::new();
        let mut whole_of = Vec::new();
        let mut most_loaded = Vec::new();
        let mut folded = ElectricalFeeder {
            feeder: e.feeder,
            head_rated_a: e.head_rated_a,
            ..ElectricalFeeder::default()
        };
        for j in 0..n {
            let parent = e.parent[j];
            let (z, rated, least_rated, lowest_least_rated) = if j == 0 {
                (e.z_ohm[0], e.rated_a[0], 0, 0)
            } else {
                let p = parent as usize;
                let (above, lowest_above) =
                    (least_rated_from_kept[p], lowest_least_rated_from_kept[p]);
                let at = j as u32;
                (
                    z_from_kept[p] + e.z_ohm[j],
                    rated_from_kept[p].min(e.rated_a[j]),
                    if above == u32::MAX || e.rated_a[j] < rated_from_kept[p] {
                        at
                    } else {
                        above
                    },
                    if lowest_above == u32::MAX || e.rated_a[j] <= rated_from_kept[p] {
                        at
                    } else {
                        lowest_above
                    },
                )
            };
            if folds(j) {
                z_from_kept[j] = z;
                rated_from_kept[j] = rated;
                least_rated_from_kept[j] = least_rated;
                lowest_least_rated_from_kept[j] = lowest_least_rated;
                continue;
            }
            kept[j] = folded.parent.len() as u32;
            whole_of.push(j as u32);
            // The nearest kept node above: the parent, or the top of its chain.
            let mut above = parent;
            while above != headroom_geodata::topology::NO_PARENT && kept[above as usize] == u32::MAX
            {
                above = e.parent[above as usize];
            }
            folded
                .parent
                .push(if above == headroom_geodata::topology::NO_PARENT {
                    above
                } else {
                    kept[above as usize]
                });
            folded.z_ohm.push(z);
            folded.rated_a.push(rated);
            most_loaded.push(least_rated);
            folded.inbound.push(e.inbound[least_rated as usize]);
            inbound_lowest.push(e.inbound[lowest_least_rated as usize]);
            folded.nominal_kv.push(e.nominal_kv[j]);
        }
        folded.derive_per_node();
        // A folded node carries the current into the end of its chain.
        let mut carries = kept.clone();
        for j in (1..n).rev() {
            if kept[j] == u32::MAX {
                carries[j] = carries[only_child[j] as usize];
            }
        }
        let mut voltage_from: Vec<(u32, Complex64)> = Vec::with_capacity(n);
        for (j, &at) in kept.iter().enumerate() {
            let entry = if at == u32::MAX {
                let (from, drop) = voltage_from[e.parent[j] as usize];
                (from, drop + e.drop_kv_per_a[j])
            } else {
                (at, Complex64::new(0.0, 0.0))
            };
            voltage_from.push(entry);
        }
        let chains = ChainEnds::new(e, &folded, &kept, &carries, &whole_of, most_loaded);
        Some(Self {
            folded,
            inbound_lowest,
            kept,
            carries,
            voltage_from,
            whole_of,
            chains,
        })
    }

    /// The folded feeder's index of node `j`, if kept.
    pub(crate) fn kept(&self, j: usize) -> Option<u32> {
        Some(self.kept[j]).filter(|&k| k != u32::MAX)
    }

    /// Per node of the feeder, the folded node whose inbound current its
    /// inbound branch carries.
    pub(crate) fn carries(&self) -> &[u32] {
        &self.carries
    }

    /// The flow of the whole feeder from the folded feeder's.
    pub(crate) fn unfold(&self, solution: &Solution) -> Solution {
        let mut whole = Solution::default();
        self.unfold_into(solution, &mut whole);
        whole
    }

    /// [`Self::unfold`] into `whole`'s buffers: a reader that unfolds each
    /// step in turn keeps one whole flow in cache, not one per step.
    pub(crate) fn unfold_into(&self, solution: &Solution, whole: &mut Solution) {
        self.unfold_moved_into(solution, whole, |k| k as usize);
    }

    /// [`Self::unfold_into`] from the flow of a tree whose node `moved(k)`
    /// is this folding's node `k` (a split of it: see [`SplitFolding`]).
    #[inline]
    fn unfold_moved_into(
        &self,
        solution: &Solution,
        whole: &mut Solution,
        moved: impl Fn(u32) -> usize,
    ) {
        whole.i_a.clear();
        whole
            .i_a
            .extend(self.carries.iter().map(|&k| solution.i_a[moved(k)]));
        whole.v_kv.clear();
        whole.v_kv.extend(
            self.voltage_from
                .iter()
                .zip(&whole.i_a)
                .map(|(&(from, drop), current)| solution.v_kv[moved(from)] - drop * current),
        );
        whole.iterations = solution.iterations;
        whole.converged = solution.converged;
    }

    /// Each transformer at its node of the folded feeder: loaded nodes are
    /// kept by every folding made with them loaded.
    pub(crate) fn transformers_on_folded(
        &self,
        transformers: &[(TransformerIx, u32)],
    ) -> Vec<(TransformerIx, u32)> {
        transformers
            .iter()
            .map(|&(t, local)| {
                let at = self.kept(local as usize);
                (t, at.expect("a loaded node is never folded"))
            })
            .collect()
    }

    /// A batch of the folded feeder's lane flows on the whole feeder, as
    /// [`Self::unfold_into`] unfolds one flow: for a reader that judges
    /// every node of each batch while it is in cache.
    pub(crate) fn unfold_lanes(&self, folded: &SweepLanes, whole: &mut SweepLanes) {
        let n = self.carries.len();
        for buffer in [
            &mut whole.v_re,
            &mut whole.v_im,
            &mut whole.i_re,
            &mut whole.i_im,
        ] {
            buffer.resize(n, [0.0; LANES]);
        }
        for (j, (&k, &(from, drop))) in self.carries.iter().zip(&self.voltage_from).enumerate() {
            let (k, from) = (k as usize, from as usize);
            let (i_re, i_im) = (folded.i_re[k], folded.i_im[k]);
            whole.i_re[j] = i_re;
            whole.i_im[j] = i_im;
            // As `v - drop * i` in complex numbers, lane by lane.
            whole.v_re[j] = std::array::from_fn(|l| {
                folded.v_re[from][l] - (drop.re * i_re[l] - drop.im * i_im[l])
            });
            whole.v_im[j] = std::array::from_fn(|l| {
                folded.v_im[from][l] - (drop.re * i_im[l] + drop.im * i_re[l])
            });
        }
        whole.converged = folded.converged;
        whole.iterations = folded.iterations;
    }
}

/// A base's folding with one more node kept: a candidate's, where the base
/// folds it into a chain. The chain is split there in two branches, the
/// candidate's node between them at the index of the chain's bottom, which
/// moves one on with every later node. Built per candidate from the base's
/// folding in one pass over the folded tree (the folding itself takes
/// several over the whole one).
#[derive(Clone, Debug, Default)]
pub(crate) struct SplitFolding {
    /// The folded feeder with the node kept.
    pub(crate) folded: ElectricalFeeder,
    /// The node kept (of the whole feeder) and its index in `folded`.
    node: u32,
    at: u32,
    /// The drop per ampere from the chain's top to the node.
    drop_to_node: Complex64,
    /// The nodes of the chain split (of the whole feeder), from the top down,
    /// its bottom included.
    chain: Vec<u32>,
    /// Where the node lies in `chain`, past it.
    split: usize,
    /// Whether the chain's two parts, above the node and below it, are
    /// plain (see [`ChainEnds::plain`]).
    upper_plain: bool,
    lower_plain: bool,
    /// Per node of `folded`, its node of the whole feeder and its chain's
    /// most loaded segment's (see [`ChainEnds::most_loaded`]).
    whole_of: Vec<u32>,
    most_loaded: Vec<u32>,
}

impl ChainFolding {
    /// Into `out`, this folding with node `node` of `whole` (the feeder
    /// folded) kept as well; `false` (and `out` as it was) where it is kept
    /// already.
    pub(crate) fn split_at(
        &self,
        whole: &ElectricalFeeder,
        node: usize,
        out: &mut SplitFolding,
    ) -> bool {
        if self.kept[node] != u32::MAX {
            return false;
        }
        let bottom = self.carries[node];
        let (top, drop_to_node) = self.voltage_from[node];
        let (top_whole, bottom_whole) =
            (self.whole_of[top as usize], self.whole_of[bottom as usize]);
        // The chain's two parts from the top down, summed in the order a
        // folding made with the node kept would sum them.
        let mut chain = std::mem::take(&mut out.chain);
        chain.clear();
        let mut j = bottom_whole;
        while j != top_whole {
            chain.push(j);
            j = whole.parent[j as usize];
        }
        chain.reverse();
        let split = chain.partition_point(|&j| j as usize <= node);
        let part = |nodes: &[u32]| {
            let mut z = Complex64::new(0.0, 0.0);
            let (mut rated, mut least) = (f64::INFINITY, u32::MAX);
            for &j in nodes {
                z += whole.z_ohm[j as usize];
                if least == u32::MAX || whole.rated_a[j as usize] < rated {
                    least = j;
                }
                rated = rated.min(whole.rated_a[j as usize]);
            }
            (z, rated, least)
        };
        let upper = part(&chain[..split]);
        let lower = part(&chain[split..]);
        let f = &self.folded;
        let o = &mut out.folded;
        o.feeder = f.feeder;
        o.head_rated_a = f.head_rated_a;
        o.parent.clear();
        o.z_ohm.clear();
        o.drop_kv_per_a.clear();
        o.rated_a.clear();
        o.inbound.clear();
        o.nominal_kv.clear();
        o.inv_nominal_kv_2.clear();
        o.inv_rated_a_2.clear();
        let moved = |k: u32| {
            if k != NO_PARENT && k >= bottom {
                k + 1
            } else {
                k
            }
        };
        let push =
            |o: &mut ElectricalFeeder, parent: u32, z: Complex64, rated: f64, inbound, kv: f64| {
                o.parent.push(parent);
                o.z_ohm.push(z);
                o.drop_kv_per_a.push(SQRT_3 / 1000.0 * z);
                o.rated_a.push(rated);
                o.inbound.push(inbound);
                o.nominal_kv.push(kv);
                o.inv_nominal_kv_2.push((kv * kv).recip());
                o.inv_rated_a_2.push((rated * rated).recip());
            };
        // The folded tree's nodes above and below the chain's bottom are
        // copied as they are (their parents past the bottom one further on):
        // a ranking splits a tree a candidate and case, and pushing a node
        // at a time into ten rows cost more than the copy.
        let (b, len) = (bottom as usize, f.len());
        let copy = |o: &mut ElectricalFeeder,
                    out_whole: &mut Vec<u32>,
                    out_most: &mut Vec<u32>,
                    range: std::ops::Range<usize>| {
            o.parent
                .extend(f.parent[range.clone()].iter().map(|&k| moved(k)));
            o.z_ohm.extend_from_slice(&f.z_ohm[range.clone()]);
            o.drop_kv_per_a
                .extend_from_slice(&f.drop_kv_per_a[range.clone()]);
            o.rated_a.extend_from_slice(&f.rated_a[range.clone()]);
            o.inbound.extend_from_slice(&f.inbound[range.clone()]);
            o.nominal_kv.extend_from_slice(&f.nominal_kv[range.clone()]);
            o.inv_nominal_kv_2
                .extend_from_slice(&f.inv_nominal_kv_2[range.clone()]);
            o.inv_rated_a_2
                .extend_from_slice(&f.inv_rated_a_2[range.clone()]);
            out_whole.extend_from_slice(&self.whole_of[range.clone()]);
            out_most.extend_from_slice(&self.chains.most_loaded[range]);
        };
        out.whole_of.clear();
        out.most_loaded.clear();
        copy(o, &mut out.whole_of, &mut out.most_loaded, 0..b);
        out.whole_of.extend([node as u32, self.whole_of[b]]);
        out.most_loaded.extend([upper.2, lower.2]);
        push(
            o,
            top,
            upper.0,
            upper.1,
            whole.inbound[upper.2 as usize],
            whole.nominal_kv[node],
        );
        push(
            o,
            bottom,
            lower.0,
            lower.1,
            whole.inbound[lower.2 as usize],
            f.nominal_kv[b],
        );
        copy(o, &mut out.whole_of, &mut out.most_loaded, b + 1..len);
        out.upper_plain = plain_run(whole, top_whole, chain[..split].iter().copied());
        out.lower_plain = plain_run(whole, node as u32, chain[split..].iter().copied());
        out.node = node as u32;
        out.at = bottom;
        out.drop_to_node = drop_to_node;
        out.chain = chain;
        out.split = split;
        true
    }
}

/// The tree a candidate's flows are solved on, as a folding of its
/// feeder: a base's folding, split at the candidate where that folds it
/// away ([`SplitFolding`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CandidateFolding<'a> {
    pub(crate) base: &'a ChainFolding,
    pub(crate) split: Option<&'a SplitFolding>,
}

impl<'a> CandidateFolding<'a> {
    /// The folded feeder.
    pub(crate) fn folded(&self) -> &'a ElectricalFeeder {
        self.split.map_or(&self.base.folded, |s| &s.folded)
    }

    /// A base folding's index, as the split moves it.
    #[inline]
    fn moved(&self, k: u32) -> u32 {
        match self.split {
            Some(s) => k + u32::from(k >= s.at),
            None => k,
        }
    }

    /// The folded node of the feeder's node `j`, which must be kept (loaded,
    /// branching, or the candidate).
    #[inline]
    pub(crate) fn kept(&self, j: usize) -> u32 {
        match self.split {
            Some(s) if j == s.node as usize => s.at,
            _ => {
                let k = self.base.kept[j];
                debug_assert!(k != u32::MAX, "node {j} is folded away");
                self.moved(k)
            }
        }
    }

    /// The feeder's node of folded node `f`.
    #[inline]
    pub(crate) fn whole_of(&self, f: usize) -> usize {
        self.whole_nodes()[f] as usize
    }

    /// The feeder's node of each folded node.
    #[inline]
    pub(crate) fn whole_nodes(&self) -> &'a [u32] {
        match self.split {
            Some(s) => &s.whole_of,
            None => &self.base.whole_of,
        }
    }

    /// Where node `j` lies in the split chain: below the candidate (`Some(true)`),
    /// above it or at it (`Some(false)`), or elsewhere (`None`).
    #[inline]
    fn in_split_chain(&self, j: usize) -> Option<bool> {
        let s = self.split?;
        (self.base.kept[j] == u32::MAX && self.base.carries[j] == s.at)
            .then_some(j > s.node as usize)
    }

    /// The folded node whose inbound current node `j`'s inbound branch carries.
    #[inline]
    pub(crate) fn carries(&self, j: usize) -> usize {
        match (self.split, self.in_split_chain(j)) {
            (Some(s), Some(false)) => s.at as usize,
            _ => self.moved(self.base.carries[j]) as usize,
        }
    }

    /// The folded node node `j`'s voltage is read from, and the drop per
    /// ampere of the current it carries from there.
    #[inline]
    pub(crate) fn voltage_from(&self, j: usize) -> (usize, Complex64) {
        let (from, drop) = self.base.voltage_from[j];
        match (self.split, self.in_split_chain(j)) {
            (Some(s), _) if j == s.node as usize => (s.at as usize, Complex64::new(0.0, 0.0)),
            (Some(s), Some(true)) => (s.at as usize, drop - s.drop_to_node),
            _ => (self.moved(from) as usize, drop),
        }
    }

    /// Folded node `f`'s chain, as [`ChainEnds::of`] gives it.
    #[inline(always)]
    fn chain_of(&self, f: usize) -> (&'a [u32], bool) {
        let chains = &self.base.chains;
        match self.split {
            None => chains.of(f),
            Some(s) => {
                let at = s.at as usize;
                match f.cmp(&at) {
                    std::cmp::Ordering::Less => chains.of(f),
                    std::cmp::Ordering::Equal => (&s.chain[..s.split - 1], s.upper_plain),
                    std::cmp::Ordering::Greater if f == at + 1 => {
                        (&s.chain[s.split..s.chain.len() - 1], s.lower_plain)
                    }
                    std::cmp::Ordering::Greater => chains.of(f - 1),
                }
            }
        }
    }

    /// Node `j`'s voltage in `flow`, a flow of the folded tree, as
    /// unfolding it works it out.
    #[inline]
    pub(crate) fn voltage_at(&self, flow: &Solution, j: usize) -> Complex64 {
        let (from, drop) = self.voltage_from(j);
        flow.v_kv[from] - drop * flow.i_a[self.carries(j)]
    }

    /// What the checks read off the whole feeder's flow (see
    /// [`FlowExtremes`]), read off `flow`, a flow of the folded tree, without
    /// unfolding it: bit for bit what [`FlowExtremes::of_lanes`] reads off
    /// the flow unfolded onto the whole feeder.
    ///
    /// A chain's segments carry one current, so its most loaded is its
    /// least rated. Its nodes' voltages are worked out only where its ends
    /// do not tell that none of them is its lowest or highest
    /// ([`ends_tell_chain`]): most chains are plain lines carrying a load's
    /// current, whose voltage falls (or, exporting, rises) all along.
    pub(crate) fn extremes(&self, whole: &ElectricalFeeder, flow: &Solution) -> FlowExtremes {
        let e = self.folded();
        let n = e.len();
        let (v, i) = (&flow.v_kv[..n], &flow.i_a[..n]);
        // The folded nodes first: a kept node's voltage and its chain's
        // most loaded segment are the whole feeder's.
        let whole_of = &self.whole_nodes()[..n];
        let most_loaded = match self.split {
            Some(s) => &s.most_loaded[..n],
            None => &self.base.chains.most_loaded[..n],
        };
        let mut extremes = FlowExtremes::NONE;
        for f in 0..n {
            extremes.offer_voltage(v[f].norm_sqr() * e.inv_nominal_kv_2[f], whole_of[f]);
            extremes.offer_loading(i[f].norm_sqr() * e.inv_rated_a_2[f], most_loaded[f]);
        }
        // Then the chains their ends do not tell.
        let mut chain = |f: usize, interior: &[u32], plain: bool| {
            // A chain carrying nothing (an unloaded spur) has every node at
            // its top's voltage, to the bit: the top, first in order, holds
            // whatever extreme they share.
            if plain
                && (i[f] == Complex64::new(0.0, 0.0)
                    || ends_tell_chain(v[e.parent[f] as usize], v[f]))
            {
                return;
            }
            for &c in interior {
                let voltage = self.voltage_at(flow, c as usize);
                extremes.offer_voltage(voltage.norm_sqr() * whole.inv_nominal_kv_2[c as usize], c);
            }
        };
        let chains = &self.base.chains;
        match self.split {
            None => {
                for &f in &chains.with_interior {
                    let (interior, plain) = chains.of(f as usize);
                    chain(f as usize, interior, plain);
                }
            }
            Some(s) => {
                for &f in &chains.with_interior {
                    if f != s.at {
                        let (interior, plain) = chains.of(f as usize);
                        chain(self.moved(f) as usize, interior, plain);
                    }
                }
                for f in [s.at as usize, s.at as usize + 1] {
                    let (interior, plain) = self.chain_of(f);
                    if !interior.is_empty() {
                        chain(f, interior, plain);
                    }
                }
            }
        }
        extremes
    }

    /// The flow of the whole feeder from the folded feeder's: as the base's
    /// folding unfolds it, its indices moved by the split, and then the split
    /// chain's nodes, whose currents and voltages the split changes. What
    /// [`Self::extremes`] reads without it.
    #[cfg(test)]
    pub(crate) fn unfold_into(&self, solution: &Solution, whole: &mut Solution) {
        let Some(split) = self.split else {
            self.base.unfold_into(solution, whole);
            return;
        };
        self.base
            .unfold_moved_into(solution, whole, |k| self.moved(k) as usize);
        for &j in &split.chain {
            let j = j as usize;
            whole.i_a[j] = solution.i_a[self.carries(j)];
            whole.v_kv[j] = self.voltage_at(solution, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powerflow::{StepLoads, SweepSettings, sweep, sweep_lanes};
    use headroom_geodata::topology::NO_PARENT;
    use proptest::prelude::Strategy;

    /// A 10 kV tree: chains of poles between a joint, two loaded nodes, a
    /// branch to a third and an unloaded spur; parents first.
    fn branching_with_chains() -> (ElectricalFeeder, Vec<f64>, Vec<f64>) {
        // (parent, r, x) of nodes 1..; node 0 is the busbar.
        let branches = [
            (0, 0.20, 0.15), // 1: pole
            (1, 0.10, 0.08), // 2: joint (branches)
            (2, 0.30, 0.20), // 3: loaded, branches
            (3, 0.05, 0.05), // 4: pole
            (4, 0.25, 0.10), // 5: loaded end
            (3, 0.12, 0.09), // 6: pole
            (6, 0.12, 0.09), // 7: pole
            (7, 0.40, 0.30), // 8: loaded end
            (2, 0.50, 0.20), // 9: unloaded spur end
        ];
        let n = branches.len() + 1;
        let mut parent = vec![NO_PARENT];
        let mut z_ohm = vec![Complex64::new(0.0, 0.0)];
        for &(p, r, x) in &branches {
            parent.push(p);
            z_ohm.push(Complex64::new(r, x));
        }
        let mut e = ElectricalFeeder {
            parent,
            z_ohm,
            rated_a: vec![300.0; n],
            inbound: vec![None; n],
            nominal_kv: vec![10.0; n],
            ..ElectricalFeeder::default()
        };
        e.derive_per_node();
        let mut p = vec![0.0; n];
        let mut q = vec![0.0; n];
        for (j, kw, kvar) in [(3, 900.0, 400.0), (5, 1500.0, 600.0), (8, -700.0, 100.0)] {
            p[j] = kw;
            q[j] = kvar;
        }
        (e, p, q)
    }

    /// Every node of the test tree split out of its base's folding: the tree
    /// is the one a folding made with the node loaded would fold (branch by
    /// branch, to the bit), and a flow with a load at the node solved on it
    /// and unfolded is the whole feeder's.
    #[test]
    fn a_split_folding_is_the_folding_made_with_the_node_kept() {
        let (e, p, q) = branching_with_chains();
        let n = e.len();
        let loaded: Vec<bool> = (0..n).map(|j| p[j] != 0.0 || q[j] != 0.0).collect();
        let base = ChainFolding::new(&e, &loaded).expect("the test tree folds");
        let mut split = SplitFolding::default();
        let mut splits = 0;
        for node in 1..n {
            let mut with_node = loaded.clone();
            with_node[node] = true;
            let fresh = ChainFolding::new(&e, &with_node).expect("the test tree folds");
            let is_split = base.split_at(&e, node, &mut split);
            assert_eq!(is_split, base.kept(node).is_none(), "node {node}");
            splits += usize::from(is_split);
            let view = CandidateFolding {
                base: &base,
                split: is_split.then_some(&split),
            };
            let folded = view.folded();
            assert_eq!(folded.len(), fresh.folded.len(), "node {node}");
            for j in (0..n).filter(|&j| fresh.kept(j).is_some()) {
                let (a, b) = (view.kept(j) as usize, fresh.kept(j).expect("kept") as usize);
                assert_eq!(view.whole_of(a), j, "node {node}, kept node {j}");
                let parent_of =
                    |f: &ElectricalFeeder, at: usize, whole_of: &dyn Fn(usize) -> usize| {
                        (f.parent[at] != NO_PARENT).then(|| whole_of(f.parent[at] as usize))
                    };
                assert_eq!(
                    parent_of(folded, a, &|f| view.whole_of(f)),
                    parent_of(&fresh.folded, b, &|f| fresh.whole_of[f] as usize),
                    "node {node}, kept node {j}"
                );
                assert_eq!(
                    folded.z_ohm[a], fresh.folded.z_ohm[b],
                    "node {node}, kept node {j}"
                );
                assert_eq!(folded.drop_kv_per_a[a], fresh.folded.drop_kv_per_a[b]);
                assert_eq!(
                    folded.rated_a[a], fresh.folded.rated_a[b],
                    "node {node}, kept node {j}"
                );
                assert_eq!(folded.inv_rated_a_2[a], fresh.folded.inv_rated_a_2[b]);
                assert_eq!(
                    folded.inbound[a], fresh.folded.inbound[b],
                    "node {node}, kept node {j}"
                );
                assert_eq!(folded.nominal_kv[a], fresh.folded.nominal_kv[b]);
            }
            let (mut p, mut q) = (p.clone(), q.clone());
            p[node] += 400.0;
            q[node] += 150.0;
            let mut whole = Solution::default();
            sweep(&e, &p, &q, 10.3, SweepSettings::default(), &mut whole);
            let folded_p: Vec<f64> = (0..folded.len()).map(|f| p[view.whole_of(f)]).collect();
            let folded_q: Vec<f64> = (0..folded.len()).map(|f| q[view.whole_of(f)]).collect();
            let mut on_folded = Solution::default();
            sweep(
                folded,
                &folded_p,
                &folded_q,
                10.3,
                SweepSettings::default(),
                &mut on_folded,
            );
            let mut unfolded = Solution::default();
            view.unfold_into(&on_folded, &mut unfolded);
            for j in 0..n {
                assert!(
                    (unfolded.v_kv[j] - whole.v_kv[j]).norm() < 1e-5,
                    "node {node}: voltage at {j}: {} unfolded, {} whole",
                    unfolded.v_kv[j],
                    whole.v_kv[j]
                );
                assert!(
                    (unfolded.i_a[j] - whole.i_a[j]).norm() < 1e-3,
                    "node {node}: current into {j}: {} unfolded, {} whole",
                    unfolded.i_a[j],
                    whole.i_a[j]
                );
            }
        }
        assert!(splits >= 3, "only {splits} nodes lay in chains");
    }

    /// The flow of `folding`'s folded tree with the loads of the whole tree's
    /// nodes it keeps (`p`, `q`, per node of the whole tree), from 10.3 kV.
    fn folded_flow(folding: &ChainFolding, p: &[f64], q: &[f64]) -> Solution {
        let kept: Vec<usize> = (0..p.len())
            .filter(|&j| folding.kept(j).is_some())
            .collect();
        let folded_p: Vec<f64> = kept.iter().map(|&j| p[j]).collect();
        let folded_q: Vec<f64> = kept.iter().map(|&j| q[j]).collect();
        let mut folded = Solution::default();
        sweep(
            &folding.folded,
            &folded_p,
            &folded_q,
            10.3,
            SweepSettings::default(),
            &mut folded,
        );
        folded
    }

    /// The flow solved on the folded tree, unfolded, is the flow of the
    /// whole tree at every node.
    #[test]
    fn a_folded_flow_unfolds_to_the_whole_trees_flow() {
        let (e, p, q) = branching_with_chains();
        let loaded: Vec<bool> = p.iter().map(|p| *p != 0.0).collect();
        let folding = ChainFolding::new(&e, &loaded).expect("poles fold");
        // The busbar, the joint, the three loaded nodes and the spur's end.
        assert_eq!(folding.folded.len(), 6);
        for j in [1, 4, 6, 7] {
            assert_eq!(folding.kept(j), None, "node {j}");
        }
        let mut whole = Solution::default();
        sweep(&e, &p, &q, 10.3, SweepSettings::default(), &mut whole);
        let unfolded = folding.unfold(&folded_flow(&folding, &p, &q));
        assert!(whole.converged && unfolded.converged);
        for j in 0..e.len() {
            let (dv, di) = (
                (unfolded.v_kv[j] - whole.v_kv[j]).norm(),
                (unfolded.i_a[j] - whole.i_a[j]).norm(),
            );
            assert!(
                dv < 1e-7 && di < 1e-4,
                "node {j}: {:?} against {:?}, {:?} against {:?}",
                unfolded.v_kv[j],
                whole.v_kv[j],
                unfolded.i_a[j],
                whole.i_a[j]
            );
        }
        // A folded pole carries the current of the branch below it.
        assert_eq!(unfolded.i_a[6], unfolded.i_a[8]);
    }

    /// A batch of lane flows unfolded at once is each lane's flow unfolded
    /// alone, bit for bit: a reader of loose flows sees what a step's own
    /// unfolded flow holds.
    #[test]
    fn lanes_unfold_as_each_flow_does() {
        let (e, p, q) = branching_with_chains();
        let loaded: Vec<bool> = p.iter().map(|p| *p != 0.0).collect();
        let folding = ChainFolding::new(&e, &loaded).expect("poles fold");
        let kept: Vec<usize> = (0..e.len())
            .filter(|&j| folding.kept(j).is_some())
            .collect();
        let mut loads = StepLoads::new(folding.folded.len());
        for l in 0..LANES {
            // Each lane its own share of the loads and its own source.
            let share = 0.4 + 0.3 * l as f64;
            for (at, &j) in kept.iter().enumerate() {
                loads.p_kw[l][at] = p[j] * share;
                loads.q_kvar[l][at] = q[j] * share;
            }
            loads.source_kv[l] = 10.1 + 0.1 * l as f64;
        }
        let mut lanes = SweepLanes::default();
        sweep_lanes(
            &folding.folded,
            &loads,
            SweepSettings::default(),
            &mut lanes,
            [false; LANES],
        );
        let mut whole = SweepLanes::default();
        folding.unfold_lanes(&lanes, &mut whole);
        for l in 0..LANES {
            let mut flow = Solution::default();
            lanes.write_solution(l, &mut flow);
            let alone = folding.unfold(&flow);
            let mut from_lanes = Solution::default();
            whole.write_solution(l, &mut from_lanes);
            assert_eq!(from_lanes.v_kv, alone.v_kv, "lane {l}");
            assert_eq!(from_lanes.i_a, alone.i_a, "lane {l}");
            assert_eq!(whole.converged[l], lanes.converged[l]);
        }
        // The lanes differ: each was solved on its own loads.
        assert_ne!(whole.v_re[8][0], whole.v_re[8][1]);
    }

    /// Rows worked out on the folded tree give each kept node the whole
    /// tree's margin, voltage and room, and the least room of any node is
    /// the whole tree's, where the voltage falls along every chain and where
    /// it rises along one (an export at its end).
    #[test]
    fn rows_of_the_folded_tree_give_the_whole_trees_room() {
        use crate::base::{PathRows, flat_room};
        use crate::config::Limits;
        use crate::powerflow::LANES;
        let (mut e, p, q) = branching_with_chains();
        // Segments of one chain rated apart: the folded branch takes the least.
        e.rated_a[4] = 120.0;
        e.rated_a[6] = 140.0;
        e.derive_per_node();
        let loaded: Vec<bool> = p.iter().map(|p| *p != 0.0).collect();
        let folding = ChainFolding::new(&e, &loaded).expect("poles fold");
        let kept: Vec<(usize, usize)> = (0..e.len())
            .filter_map(|j| folding.kept(j).map(|f| (j, f as usize)))
            .collect();
        let room = |rows: &PathRows, e: &ElectricalFeeder, j: usize| {
            flat_room(
                rows.margin_a[j][0],
                rows.voltage_kv[j][0],
                rows.voltage_room[j][0],
                e.nominal_kv[j],
                f64::INFINITY,
            )
        };
        let least_room = |rows: &PathRows, e: &ElectricalFeeder, nodes: &[usize]| {
            nodes
                .iter()
                .map(|&j| room(rows, e, j))
                .fold(f64::INFINITY, f64::min)
        };
        // The export at node 8 raises the voltage along the chain 6-7-8;
        // as a load, it lowers it.
        for export in [true, false] {
            let mut p = p.clone();
            if !export {
                p[8] = 400.0;
            }
            let folded = folded_flow(&folding, &p, &q);
            let whole = folding.unfold(&folded);
            let v = |j: usize| whole.v_kv[j].norm();
            assert_eq!(
                export,
                v(8) > v(6),
                "the chain's voltage rises with the export"
            );
            let limits = Limits {
                v_min_pu: 0.93,
                ..Limits::default()
            };
            let mut whole_rows = PathRows::new(&e);
            whole_rows.fill(&e, [&whole; LANES], &limits, false);
            let mut folded_rows = PathRows::folded(&e, &folding);
            folded_rows.fill(&folding.folded, [&folded; LANES], &limits, false);
            for &(j, f) in &kept {
                assert_eq!(
                    folded_rows.margin_a[f][0], whole_rows.margin_a[j][0],
                    "node {j}"
                );
                assert_eq!(
                    folded_rows.voltage_kv[f][0], whole_rows.voltage_kv[j][0],
                    "node {j}"
                );
                let (room, whole_room) = (
                    room(&folded_rows, &folding.folded, f),
                    room(&whole_rows, &e, j),
                );
                assert_eq!(room, whole_room, "node {j} (export: {export})");
            }
            let folded_nodes: Vec<usize> = (1..folding.folded.len()).collect();
            let whole_nodes: Vec<usize> = (1..e.len()).collect();
            let (least, whole_least) = (
                least_room(&folded_rows, &folding.folded, &folded_nodes),
                least_room(&whole_rows, &e, &whole_nodes),
            );
            assert_eq!(least, whole_least, "export: {export}");
        }
    }

    /// Nothing to fold where every node branches, ends or carries a load.
    #[test]
    fn a_tree_without_chains_is_not_folded() {
        let (e, _, _) = branching_with_chains();
        assert!(ChainFolding::new(&e, &vec![true; e.len()]).is_none());
    }

    /// `e`'s flow with loads `p`, `q` solved on `view`'s folded tree, and
    /// its extremes read off it folded and off it unfolded.
    fn extremes_both_ways(
        e: &ElectricalFeeder,
        view: CandidateFolding<'_>,
        p: &[f64],
        q: &[f64],
    ) -> (FlowExtremes, FlowExtremes, Solution) {
        let (folded, whole, unfolded, _) = extremes_and_chains(e, view, p, q);
        (folded, whole, unfolded)
    }

    /// [`extremes_both_ways`], and how many chains their ends told, each
    /// checked: every node of it strictly between its ends, in the squares
    /// of the voltages as the whole feeder's scan works them out.
    fn extremes_and_chains(
        e: &ElectricalFeeder,
        view: CandidateFolding<'_>,
        p: &[f64],
        q: &[f64],
    ) -> (FlowExtremes, FlowExtremes, Solution, usize) {
        let folded = view.folded();
        let folded_p: Vec<f64> = (0..folded.len()).map(|f| p[view.whole_of(f)]).collect();
        let folded_q: Vec<f64> = (0..folded.len()).map(|f| q[view.whole_of(f)]).collect();
        let mut flow = Solution::default();
        let settings = SweepSettings::default();
        sweep(folded, &folded_p, &folded_q, 10.3, settings, &mut flow);
        let mut unfolded = Solution::default();
        view.unfold_into(&flow, &mut unfolded);
        let [whole] = FlowExtremes::of_lanes(e, [&unfolded]);
        let square = |j: usize| unfolded.v_kv[j].norm_sqr() * e.inv_nominal_kv_2[j];
        let mut told = 0;
        for f in 1..folded.len() {
            let (interior, plain) = view.chain_of(f);
            let bottom = view.whole_of(f);
            let top = view.whole_of(folded.parent[f] as usize);
            if interior.is_empty()
                || !(plain && ends_tell_chain(flow.v_kv[folded.parent[f] as usize], flow.v_kv[f]))
            {
                continue;
            }
            told += 1;
            let (a, b) = (square(top), square(bottom));
            for &c in interior {
                let v_2 = square(c as usize);
                assert!(
                    a.min(b) < v_2 && v_2 < a.max(b),
                    "node {c} of the chain {top}-{bottom}: {v_2} outside ({a}, {b})"
                );
            }
        }
        (view.extremes(e, &flow), whole, unfolded, told)
    }

    /// A chain of a cable and an overhead line feeding a node that exports
    /// and absorbs reactive power: the voltage rises along the cable and
    /// falls along the line, so the highest lies between the chain's ends,
    /// where only the chain's own nodes show it.
    #[test]
    fn a_chain_of_two_conductors_shows_its_highest_voltage_between_its_ends() {
        // (parent, r, x): 1 joint, 2 cable end (folded), 3 exporting node.
        let branches = [(0, 0.05, 0.04), (1, 1.0, 0.05), (2, 0.05, 1.0)];
        let n = branches.len() + 1;
        let mut e = ElectricalFeeder {
            parent: std::iter::once(NO_PARENT)
                .chain(branches.iter().map(|b| b.0))
                .collect(),
            z_ohm: std::iter::once(Complex64::new(0.0, 0.0))
                .chain(branches.iter().map(|b| Complex64::new(b.1, b.2)))
                .collect(),
            rated_a: vec![300.0; n],
            inbound: vec![None; n],
            nominal_kv: vec![10.0; n],
            ..ElectricalFeeder::default()
        };
        e.derive_per_node();
        let (mut p, mut q) = (vec![0.0; n], vec![0.0; n]);
        (p[3], q[3]) = (-500.0, 800.0);
        // Node 1 takes a load so that it is kept and 2 alone folds.
        (p[1], q[1]) = (100.0, 30.0);
        let loaded: Vec<bool> = (0..n).map(|j| p[j] != 0.0).collect();
        let folding = ChainFolding::new(&e, &loaded).expect("the cable's end folds");
        assert_eq!(folding.kept(2), None);
        let view = CandidateFolding {
            base: &folding,
            split: None,
        };
        let (folded, whole, flow, told) = extremes_and_chains(&e, view, &p, &q);
        assert_eq!(whole.v_max_at, 2, "{:?}", flow.v_kv);
        assert_eq!(folded, whole);
        assert_eq!(told, 0, "a chain of two conductors is not told by its ends");
        // All cable: the voltage rises all along, and the chain's ends tell it.
        e.z_ohm[3] = Complex64::new(0.9, 0.045);
        e.derive_per_node();
        let folding = ChainFolding::new(&e, &loaded).expect("the cable's end folds");
        let view = CandidateFolding {
            base: &folding,
            split: None,
        };
        let (folded, whole, flow, told) = extremes_and_chains(&e, view, &p, &q);
        assert_eq!(whole.v_max_at, 3, "{:?}", flow.v_kv);
        assert_eq!((folded, told), (whole, 1));
    }

    /// Two laterals alike, carrying the same current to the bit, their
    /// least rated segments numbered in the opposite order to their ends:
    /// the first most loaded in the whole feeder's order is named, as a scan
    /// of the whole feeder names it.
    #[test]
    fn of_two_chains_loaded_alike_the_first_in_the_feeders_order_is_named() {
        // Breadth first: 1 branches to laterals 2-4-6 and 3-5-7.
        let parent = [NO_PARENT, 0, 1, 1, 2, 3, 4, 5];
        let n = parent.len();
        let mut e = ElectricalFeeder {
            parent: parent.to_vec(),
            z_ohm: (0..n)
                .map(|j| Complex64::new(0.1, 0.08) * f64::from(u8::from(j > 0)))
                .collect(),
            rated_a: vec![300.0; n],
            inbound: vec![None; n],
            nominal_kv: vec![10.0; n],
            ..ElectricalFeeder::default()
        };
        (e.rated_a[4], e.rated_a[3]) = (200.0, 200.0);
        // The busbar's branch unrated, the trunk strong.
        (e.rated_a[0], e.rated_a[1]) = (f64::INFINITY, 2000.0);
        e.derive_per_node();
        let (mut p, mut q) = (vec![0.0; n], vec![0.0; n]);
        for j in [1, 6, 7] {
            (p[j], q[j]) = (800.0, 300.0);
        }
        let loaded: Vec<bool> = (0..n).map(|j| p[j] != 0.0).collect();
        let folding = ChainFolding::new(&e, &loaded).expect("the laterals fold");
        let view = CandidateFolding {
            base: &folding,
            split: None,
        };
        let (folded, whole, flow) = extremes_both_ways(&e, view, &p, &q);
        assert_eq!(flow.i_a[3], flow.i_a[4]);
        assert_eq!(whole.segment_at, 3);
        assert_eq!(folded, whole);
    }

    #[test]
    fn a_plain_chain_is_one_conductor_at_one_voltage_with_no_negligible_segment() {
        let cable = Complex64::new(0.27, 0.35);
        let plain = |lengths_km: &[f64], same_nominal| {
            plain_chain(lengths_km.iter().map(|l| cable * *l), same_nominal)
        };
        assert!(plain(&[0.3, 0.05, 0.2], true));
        assert!(!plain(&[0.3, 0.05, 0.2], false));
        // A switch of no impedance, a jumper a ten-thousandth of the chain.
        assert!(!plain(&[0.3, 0.0, 0.2], true));
        assert!(!plain(&[0.3, 0.5e-4, 0.2], true));
        let overhead = Complex64::new(0.12, 0.10);
        assert!(!plain_chain(
            [cable * 0.3, overhead * 0.2].into_iter(),
            true
        ));
    }

    /// A random feeder: mostly chains of poles, of a few conductor types
    /// (a chain changing type now and then), segments from a centimetre to
    /// 400 m long, zero-impedance switches, a
    /// stretch at another nominal voltage, ratings that tie, loads and
    /// exports, unloaded spurs.
    fn random_feeder() -> impl Strategy<Value = (ElectricalFeeder, Vec<f64>, Vec<f64>, usize)> {
        (4usize..48)
            .prop_flat_map(|n| {
                (
                    proptest::collection::vec(
                        (
                            0.0..1.0f64,
                            0usize..1000,
                            0usize..4,
                            -2.0..2.6f64,
                            0usize..5,
                            0.0..1.0f64,
                        ),
                        n - 1,
                    ),
                    proptest::collection::vec(
                        (0.0..1.0f64, -900.0..1500.0f64, -400.0..600.0f64),
                        n,
                    ),
                    1..n,
                )
            })
            .prop_map(|(branches, loads, candidate)| {
                const TYPES: [(f64, f64); 3] = [(0.27, 0.35), (0.12, 0.10), (0.64, 0.38)];
                const RATINGS: [f64; 5] = [200.0, 300.0, 300.0, 400.0, f64::INFINITY];
                let n = branches.len() + 1;
                let mut e = ElectricalFeeder {
                    parent: vec![NO_PARENT],
                    z_ohm: vec![Complex64::new(0.0, 0.0)],
                    rated_a: vec![f64::INFINITY],
                    inbound: vec![None; n],
                    nominal_kv: vec![10.0],
                    ..ElectricalFeeder::default()
                };
                let mut kind = vec![0usize];
                for (i, &(chained, other, change, log_length_m, rating, odd)) in
                    branches.iter().enumerate()
                {
                    let j = i + 1;
                    let parent = if chained < 0.75 { j - 1 } else { other % j };
                    let own = if change == 0 { other % 3 } else { kind[parent] };
                    let (r, x) = TYPES[own];
                    let z = if odd < 0.05 {
                        Complex64::new(0.0, 0.0)
                    } else {
                        Complex64::new(r, x) * (10f64.powf(log_length_m) / 1000.0)
                    };
                    e.parent.push(parent as u32);
                    e.z_ohm.push(z);
                    e.rated_a.push(RATINGS[rating]);
                    let nominal = e.nominal_kv[parent];
                    e.nominal_kv.push(if odd > 0.97 { 20.0 } else { nominal });
                    kind.push(own);
                }
                e.derive_per_node();
                let (mut p, mut q) = (vec![0.0; n], vec![0.0; n]);
                for (j, &(loaded, kw, kvar)) in loads.iter().enumerate().skip(1) {
                    if loaded < 0.25 {
                        (p[j], q[j]) = (kw / 4.0, kvar / 4.0);
                    }
                }
                (e, p, q, candidate)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

        /// What the checks read off a flow solved folded, read without
        /// unfolding it, is bit for bit what they read off it unfolded: on
        /// the base's folding and on the folding split at a candidate in a
        /// chain, its load added there.
        #[test]
        fn extremes_read_folded_are_the_unfolded_flows(
            (e, p, q, candidate) in random_feeder()
        ) {
            let n = e.len();
            let loaded: Vec<bool> = (0..n).map(|j| p[j] != 0.0 || q[j] != 0.0).collect();
            if let Some(folding) = ChainFolding::new(&e, &loaded) {
                let base = CandidateFolding { base: &folding, split: None };
                let (folded, whole, _) = extremes_both_ways(&e, base, &p, &q);
                proptest::prop_assert_eq!(folded, whole);
                let mut split = SplitFolding::default();
                let is_split = folding.split_at(&e, candidate, &mut split);
                let view = CandidateFolding { base: &folding, split: is_split.then_some(&split) };
                let (mut p, mut q) = (p.clone(), q.clone());
                p[candidate] += 350.0;
                q[candidate] += 120.0;
                let (folded, whole, _) = extremes_both_ways(&e, view, &p, &q);
                proptest::prop_assert_eq!(folded, whole);
            }
        }
    }
}
