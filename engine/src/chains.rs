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
//! A restoration case's flows over every step, which only choose the steps
//! it keeps, are solved and kept folded. A set judged at one node (a
//! capacity row's) reads their rooms off the folded tree itself
//! (`PathRows::folded`); a set cached for every node unfolds a few steps at
//! a time. Unfolding every step at once wrote as much memory as the folded
//! sweeps saved.

use headroom_geodata::TransformerIx;
use num_complex::Complex64;

use crate::powerflow::{ElectricalFeeder, LANES, Solution, SweepLanes};

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
        Some(Self {
            folded,
            inbound_lowest,
            kept,
            carries,
            voltage_from,
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
        whole.i_a.clear();
        whole
            .i_a
            .extend(self.carries.iter().map(|&k| solution.i_a[k as usize]));
        whole.v_kv.clear();
        whole.v_kv.extend(
            self.voltage_from
                .iter()
                .zip(&whole.i_a)
                .map(|(&(from, drop), current)| solution.v_kv[from as usize] - drop * current),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powerflow::{StepLoads, SweepSettings, sweep, sweep_lanes};
    use headroom_geodata::topology::NO_PARENT;

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
}
