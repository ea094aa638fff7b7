//! Feeder topology: which nodes each feeder supplies, as an ordered radial tree.
//!
//! A feeder is traced breadth-first from its `first_node` through in-service
//! segments and closed switches, never through a busbar. The tree is stored in
//! breadth-first order with the head busbar at local index 0, so a backward sweep
//! is a reverse walk over the arrays and a forward sweep a plain walk. Anything that
//! is not radial (a loop inside a feeder, a node two feeders reach, a path back to a
//! busbar) and any node no feeder reaches is reported as a warning; tracing never
//! fails.

use std::fmt;

use crate::ids::*;
use crate::model::{Network, NodeType};

/// A branch of the network: the element joining a node to its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Branch {
    /// A line or cable segment (has impedance and a rating).
    Segment(SegmentIx),
    /// A closed switch (no impedance).
    Switch(SwitchIx),
}

/// Marks the root of a feeder tree in [`FeederTree::parent`].
pub const NO_PARENT: u32 = u32::MAX;

/// One feeder's radial tree.
#[derive(Clone, Debug, PartialEq)]
pub struct FeederTree {
    /// The feeder.
    pub feeder: FeederIx,
    /// Nodes in breadth-first order; `nodes[0]` is the head busbar.
    pub nodes: Vec<NodeIx>,
    /// Local index of each node's parent ([`NO_PARENT`] for the busbar). A parent
    /// always comes before its children.
    pub parent: Vec<u32>,
    /// The branch from the parent into each node (`None` for the busbar).
    pub inbound: Vec<Option<Branch>>,
    /// Electrical distance from the busbar to each node along the tree, metres.
    pub distance_m: Vec<f64>,
    /// Sum of the lengths of the tree's segments, metres.
    pub total_length_m: f64,
    /// Normally-open switches at which this feeder meets another (indices into
    /// [`Topology::ties`]).
    pub ties: Vec<usize>,
}

impl FeederTree {
    /// Nodes on the feeder, excluding the head busbar.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - 1
    }

    /// The head busbar.
    pub fn head(&self) -> NodeIx {
        self.nodes[0]
    }

    /// Local indices from the busbar (first) to `local` (last).
    pub fn path_from_busbar(&self, local: u32) -> Vec<u32> {
        let mut path = Vec::new();
        let mut at = local;
        while at != NO_PARENT {
            path.push(at);
            at = self.parent[at as usize];
        }
        path.reverse();
        path
    }

    /// Segments of the tree, in breadth-first order.
    pub fn segments(&self) -> impl Iterator<Item = SegmentIx> + '_ {
        self.inbound.iter().filter_map(|b| match b {
            Some(Branch::Segment(s)) => Some(*s),
            _ => None,
        })
    }
}

/// A normally-open switch and the feeders on its two sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tie {
    /// The switch.
    pub switch: SwitchIx,
    /// Feeder on the `from` side (`None`: no feeder reaches it).
    pub from_feeder: Option<FeederIx>,
    /// Feeder on the `to` side.
    pub to_feeder: Option<FeederIx>,
}

/// Busbars joined by closed couplers, with the substation transformers feeding them.
#[derive(Clone, Debug, PartialEq)]
pub struct BusbarGroup {
    /// Busbar nodes of the group.
    pub busbars: Vec<NodeIx>,
    /// In-service substation transformers whose `bus` lies in the group.
    pub transformers: Vec<SubstationTransformerIx>,
    /// Their summed rating, kVA.
    pub rated_kva: f64,
}

/// Something in the network that is not as a radial network should be.
#[derive(Clone, Debug, PartialEq)]
pub enum TopologyWarning {
    /// A branch joins two nodes already on the same feeder: a closed loop.
    Loop {
        /// The feeder.
        feeder: FeederIx,
        /// The branch closing the loop (not part of the tree).
        branch: Branch,
    },
    /// A node is reached by a second feeder in normal operation.
    ReachedByTwoFeeders {
        /// The node.
        node: NodeIx,
        /// The feeder it was assigned to.
        first: FeederIx,
        /// The feeder that reached it again.
        second: FeederIx,
    },
    /// A feeder reaches a busbar other than through its head.
    ReachesBusbar {
        /// The feeder.
        feeder: FeederIx,
        /// The busbar reached.
        busbar: NodeIx,
        /// Through this branch.
        branch: Branch,
    },
    /// No in-service segment or closed switch joins a feeder's head to its first node.
    Detached {
        /// The feeder.
        feeder: FeederIx,
    },
    /// Connected nodes that no feeder reaches.
    Island {
        /// The nodes, in file order.
        nodes: Vec<NodeIx>,
    },
}

impl TopologyWarning {
    /// Describes the warning with the assets' ids.
    pub fn describe<'a>(&'a self, network: &'a Network) -> impl fmt::Display + 'a {
        Describe(self, network)
    }
}

struct Describe<'a>(&'a TopologyWarning, &'a Network);

fn branch_id(network: &Network, branch: Branch) -> String {
    match branch {
        Branch::Segment(s) => format!("segment {}", network.segment(s).id),
        Branch::Switch(s) => format!("switch {}", network.switch(s).id),
    }
}

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.1;
        match self.0 {
            TopologyWarning::Loop { feeder, branch } => write!(
                f,
                "loop: {} closes a loop on feeder {}; it is left out of the radial tree",
                branch_id(n, *branch),
                n.feeder(*feeder).id
            ),
            TopologyWarning::ReachedByTwoFeeders {
                node,
                first,
                second,
            } => write!(
                f,
                "two feeders: node {} is reached by feeder {} and by feeder {} (a closed loop between feeders); it stays on {}",
                n.node(*node).id,
                n.feeder(*first).id,
                n.feeder(*second).id,
                n.feeder(*first).id
            ),
            TopologyWarning::ReachesBusbar {
                feeder,
                busbar,
                branch,
            } => write!(
                f,
                "busbar reached: feeder {} reaches busbar {} through {}",
                n.feeder(*feeder).id,
                n.node(*busbar).id,
                branch_id(n, *branch)
            ),
            TopologyWarning::Detached { feeder } => {
                let fd = n.feeder(*feeder);
                write!(
                    f,
                    "detached: no in-service segment or closed switch joins feeder {}'s head {} to its first node {}",
                    fd.id,
                    n.node(fd.head_node).id,
                    n.node(fd.first_node).id
                )
            }
            TopologyWarning::Island { nodes } => {
                write!(f, "island: {} node(s) on no feeder: ", nodes.len())?;
                for (i, node) in nodes.iter().take(10).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", n.node(*node).id)?;
                }
                if nodes.len() > 10 {
                    write!(f, ", ... ({} more)", nodes.len() - 10)?;
                }
                Ok(())
            }
        }
    }
}

/// Where a node sits in the feeder trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The feeder.
    pub feeder: FeederIx,
    /// Local index in the feeder's tree.
    pub local: u32,
}

/// The traced topology of a whole network.
#[derive(Clone, Debug)]
pub struct Topology {
    /// One tree per feeder, indexed like [`NetworkParts::feeders`](crate::NetworkParts::feeders).
    pub feeders: Vec<FeederTree>,
    /// Every normally-open switch.
    pub ties: Vec<Tie>,
    /// Busbar groups.
    pub busbar_groups: Vec<BusbarGroup>,
    /// What is not radial, and what is unfed.
    pub warnings: Vec<TopologyWarning>,
    placement: Vec<Option<Placement>>,
    busbar_group: Vec<u32>,
}

/// Adjacency in compressed rows: for node `n`, `edges[start[n]..start[n + 1]]`.
struct Adjacency {
    start: Vec<u32>,
    edges: Vec<(NodeIx, Branch)>,
}

impl Adjacency {
    /// In-service segments and closed switches.
    fn energised(network: &Network) -> Self {
        let n = network.nodes.len();
        let mut degree = vec![0u32; n + 1];
        let segments = network
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_service)
            .map(|(i, s)| (s.from, s.to, Branch::Segment(SegmentIx::from_usize(i))));
        let switches = network
            .switches
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.normally_open)
            .map(|(i, s)| (s.from, s.to, Branch::Switch(SwitchIx::from_usize(i))));
        let branches: Vec<_> = segments.chain(switches).collect();
        for (a, b, _) in &branches {
            degree[a.get()] += 1;
            degree[b.get()] += 1;
        }
        let mut start = vec![0u32; n + 1];
        for i in 0..n {
            start[i + 1] = start[i] + degree[i];
        }
        let mut fill = start.clone();
        let mut edges = vec![(NodeIx(0), Branch::Segment(SegmentIx(0))); start[n] as usize];
        for (a, b, branch) in branches {
            edges[fill[a.get()] as usize] = (b, branch);
            fill[a.get()] += 1;
            edges[fill[b.get()] as usize] = (a, branch);
            fill[b.get()] += 1;
        }
        Self { start, edges }
    }

    fn of(&self, node: NodeIx) -> &[(NodeIx, Branch)] {
        &self.edges[self.start[node.get()] as usize..self.start[node.get() + 1] as usize]
    }
}

fn branch_length_m(network: &Network, branch: Branch) -> f64 {
    match branch {
        Branch::Segment(s) => network.segment(s).length_m,
        Branch::Switch(_) => 0.0,
    }
}

impl Topology {
    /// Traces every feeder of the network.
    pub fn trace(network: &Network) -> Self {
        let adjacency = Adjacency::energised(network);
        let node_count = network.nodes.len();
        let is_busbar = |n: NodeIx| network.node(n).node_type == NodeType::Busbar;
        let mut placement: Vec<Option<Placement>> = vec![None; node_count];
        let mut warnings = Vec::new();
        let mut feeders = Vec::with_capacity(network.feeders.len());
        // Non-tree branches are met from both ends; report each loop once.
        let mut loop_reported = rustc_hash::FxHashSet::default();

        for (f, feeder) in network.feeders.iter().enumerate() {
            let fx = FeederIx::from_usize(f);
            let head = feeder.head_node;
            let mut tree = FeederTree {
                feeder: fx,
                nodes: vec![head],
                parent: vec![NO_PARENT],
                inbound: vec![None],
                distance_m: vec![0.0],
                total_length_m: 0.0,
                ties: Vec::new(),
            };
            let first = feeder.first_node;
            let head_branch = adjacency
                .of(first)
                .iter()
                .find(|(other, _)| *other == head)
                .map(|(_, b)| *b);
            match (head_branch, placement[first.get()]) {
                (None, _) => warnings.push(TopologyWarning::Detached { feeder: fx }),
                (Some(_), _) if is_busbar(first) => {
                    warnings.push(TopologyWarning::Detached { feeder: fx })
                }
                (Some(_), Some(existing)) => warnings.push(TopologyWarning::ReachedByTwoFeeders {
                    node: first,
                    first: existing.feeder,
                    second: fx,
                }),
                (Some(branch), None) => {
                    let length = branch_length_m(network, branch);
                    tree.nodes.push(first);
                    tree.parent.push(0);
                    tree.inbound.push(Some(branch));
                    tree.distance_m.push(length);
                    placement[first.get()] = Some(Placement {
                        feeder: fx,
                        local: 1,
                    });
                    let mut cursor = 1;
                    while cursor < tree.nodes.len() {
                        let at = tree.nodes[cursor];
                        let came_by = tree.inbound[cursor];
                        for &(next, branch) in adjacency.of(at) {
                            if Some(branch) == came_by {
                                continue;
                            }
                            if is_busbar(next) {
                                // The branch back to our own head was the way in.
                                if !(next == head && cursor == 1 && Some(branch) == head_branch)
                                    && loop_reported.insert(branch)
                                {
                                    warnings.push(TopologyWarning::ReachesBusbar {
                                        feeder: fx,
                                        busbar: next,
                                        branch,
                                    });
                                }
                                continue;
                            }
                            match placement[next.get()] {
                                Some(p) if p.feeder == fx => {
                                    if loop_reported.insert(branch) {
                                        warnings.push(TopologyWarning::Loop { feeder: fx, branch });
                                    }
                                }
                                Some(p) => {
                                    if loop_reported.insert(branch) {
                                        warnings.push(TopologyWarning::ReachedByTwoFeeders {
                                            node: next,
                                            first: p.feeder,
                                            second: fx,
                                        });
                                    }
                                }
                                None => {
                                    let local = tree.nodes.len() as u32;
                                    let length = branch_length_m(network, branch);
                                    tree.nodes.push(next);
                                    tree.parent.push(cursor as u32);
                                    tree.inbound.push(Some(branch));
                                    tree.distance_m.push(tree.distance_m[cursor] + length);
                                    placement[next.get()] = Some(Placement { feeder: fx, local });
                                }
                            }
                        }
                        cursor += 1;
                    }
                }
            }
            tree.total_length_m = tree
                .inbound
                .iter()
                .flatten()
                .map(|b| branch_length_m(network, *b))
                .sum();
            feeders.push(tree);
        }

        let mut ties = Vec::new();
        for (s, switch) in network.switches.iter().enumerate() {
            if !switch.normally_open {
                continue;
            }
            let tie = Tie {
                switch: SwitchIx::from_usize(s),
                from_feeder: placement[switch.from.get()].map(|p| p.feeder),
                to_feeder: placement[switch.to.get()].map(|p| p.feeder),
            };
            for fx in [tie.from_feeder, tie.to_feeder].into_iter().flatten() {
                let list = &mut feeders[fx.get()].ties;
                if list.last() != Some(&ties.len()) {
                    list.push(ties.len());
                }
            }
            ties.push(tie);
        }

        warnings.extend(islands(network, &adjacency, &placement));
        let (busbar_groups, busbar_group) = busbar_groups(network, &adjacency);
        Self {
            feeders,
            ties,
            busbar_groups,
            warnings,
            placement,
            busbar_group,
        }
    }

    /// Where a node sits: its feeder and local index; `None` for busbars and unfed nodes.
    pub fn placement(&self, node: NodeIx) -> Option<Placement> {
        self.placement[node.get()]
    }

    /// The feeder a node is on.
    pub fn feeder_of(&self, node: NodeIx) -> Option<FeederIx> {
        self.placement(node).map(|p| p.feeder)
    }

    /// The tree of a feeder.
    pub fn tree(&self, feeder: FeederIx) -> &FeederTree {
        &self.feeders[feeder.get()]
    }

    /// Nodes from the feeder's busbar (first) to `node` (last); `None` off every feeder.
    pub fn path_to_busbar(&self, node: NodeIx) -> Option<Vec<NodeIx>> {
        let p = self.placement(node)?;
        let tree = self.tree(p.feeder);
        Some(
            tree.path_from_busbar(p.local)
                .into_iter()
                .map(|l| tree.nodes[l as usize])
                .collect(),
        )
    }

    /// The busbar group of a busbar node.
    pub fn busbar_group_of(&self, busbar: NodeIx) -> Option<&BusbarGroup> {
        let g = *self.busbar_group.get(busbar.get())?;
        self.busbar_groups.get(g as usize)
    }

    /// Index of the busbar group of a busbar node.
    pub fn busbar_group_index(&self, busbar: NodeIx) -> Option<usize> {
        let g = *self.busbar_group.get(busbar.get())?;
        (g != u32::MAX).then_some(g as usize)
    }
}

/// Connected groups of non-busbar nodes that no feeder reached.
fn islands(
    network: &Network,
    adjacency: &Adjacency,
    placement: &[Option<Placement>],
) -> Vec<TopologyWarning> {
    let mut seen = vec![false; network.nodes.len()];
    let mut out = Vec::new();
    for (i, node) in network.nodes.iter().enumerate() {
        if seen[i] || placement[i].is_some() || node.node_type == NodeType::Busbar {
            continue;
        }
        let mut group = vec![NodeIx::from_usize(i)];
        seen[i] = true;
        let mut cursor = 0;
        while cursor < group.len() {
            for &(next, _) in adjacency.of(group[cursor]) {
                let n = next.get();
                if !seen[n]
                    && placement[n].is_none()
                    && network.nodes[n].node_type != NodeType::Busbar
                {
                    seen[n] = true;
                    group.push(next);
                }
            }
            cursor += 1;
        }
        group.sort();
        out.push(TopologyWarning::Island { nodes: group });
    }
    out
}

/// Busbars joined by closed switches or in-service segments (couplers).
fn busbar_groups(network: &Network, adjacency: &Adjacency) -> (Vec<BusbarGroup>, Vec<u32>) {
    let mut group_of = vec![u32::MAX; network.nodes.len()];
    let mut groups = Vec::new();
    for (i, node) in network.nodes.iter().enumerate() {
        if node.node_type != NodeType::Busbar || group_of[i] != u32::MAX {
            continue;
        }
        let g = groups.len() as u32;
        let mut busbars = vec![NodeIx::from_usize(i)];
        group_of[i] = g;
        let mut cursor = 0;
        while cursor < busbars.len() {
            for &(next, _) in adjacency.of(busbars[cursor]) {
                if network.node(next).node_type == NodeType::Busbar
                    && group_of[next.get()] == u32::MAX
                {
                    group_of[next.get()] = g;
                    busbars.push(next);
                }
            }
            cursor += 1;
        }
        busbars.sort();
        groups.push(BusbarGroup {
            busbars,
            transformers: Vec::new(),
            rated_kva: 0.0,
        });
    }
    for (t, tr) in network.substation_transformers.iter().enumerate() {
        let g = group_of[tr.bus.get()];
        if tr.in_service && g != u32::MAX {
            let group = &mut groups[g as usize];
            group
                .transformers
                .push(SubstationTransformerIx::from_usize(t));
            group.rated_kva += tr.rated_kva;
        }
    }
    (groups, group_of)
}
