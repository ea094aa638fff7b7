//! How a feeder's load can be restored when its head fails
//! (`shared/spec/planning.md` §2): its ties, the closed switches that can split
//! it, and the restoration cases they allow.
//!
//! A feeder F loses its head breaker and first segment: every node of F is
//! unsupplied. A **tie** is a normally-open switch with one side on F and the
//! other on another feeder G (or straight on a busbar); closing it feeds F
//! re-rooted at the tie. A **split** opens one normally-closed switch inside F
//! and feeds each of the two parts over a tie of its own. Ties are read off the
//! traced [`Topology`]; nothing here solves a power flow.

use crate::ids::*;
use crate::model::{Network, NodeType};
use crate::topology::{Branch, FeederTree, NO_PARENT, Topology};

/// What the far side of a tie is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TieSupply {
    /// A node of another feeder, which then feeds through its own head.
    Feeder {
        /// The supplying feeder.
        feeder: FeederIx,
        /// The node at the tie, local to the supplying feeder's tree.
        local: u32,
    },
    /// A busbar, which feeds the restored part straight.
    Busbar(NodeIx),
}

/// A tie of one feeder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeederTie {
    /// Index into [`Topology::ties`].
    pub tie: usize,
    /// The normally-open switch.
    pub switch: SwitchIx,
    /// The feeder's own node at the switch, local to its tree.
    pub local: u32,
    /// Where power comes from once the switch closes.
    pub supply: TieSupply,
}

/// One way to restore a feeder after the loss of its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestorationCase {
    /// Close one tie; the whole feeder is fed through it.
    OneTie(FeederTie),
    /// Open the closed switch into local node `at` and feed the part below it
    /// over `downstream`, the rest over `upstream`.
    Split {
        /// The normally-closed switch opened.
        switch: SwitchIx,
        /// The node the switch leads into (the root of the part below it).
        at: u32,
        /// The tie feeding the part nearer the lost head.
        upstream: FeederTie,
        /// The tie feeding the part below the switch.
        downstream: FeederTie,
    },
}

/// A part of the feeder fed over one tie in a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredPart {
    /// The tie feeding it.
    pub tie: FeederTie,
    /// Local nodes of the part (never the busbar), the tie's node first.
    pub nodes: Vec<u32>,
}

impl RestorationCase {
    /// The parts of the feeder the case feeds, each over its own tie.
    pub fn parts(&self, tree: &FeederTree) -> Vec<RestoredPart> {
        match self {
            RestorationCase::OneTie(tie) => {
                let all: Vec<u32> = (1..tree.nodes.len() as u32).collect();
                vec![RestoredPart {
                    tie: *tie,
                    nodes: tie_first(all, tie.local),
                }]
            }
            RestorationCase::Split {
                at,
                upstream,
                downstream,
                ..
            } => {
                let below = subtree(tree, *at);
                let mut is_below = vec![false; tree.nodes.len()];
                for &j in &below {
                    is_below[j as usize] = true;
                }
                let above: Vec<u32> = (1..tree.nodes.len() as u32)
                    .filter(|&j| !is_below[j as usize])
                    .collect();
                vec![
                    RestoredPart {
                        tie: *upstream,
                        nodes: tie_first(above, upstream.local),
                    },
                    RestoredPart {
                        tie: *downstream,
                        nodes: tie_first(below, downstream.local),
                    },
                ]
            }
        }
    }

    /// The ties the case closes.
    pub fn ties(&self) -> Vec<FeederTie> {
        match self {
            RestorationCase::OneTie(tie) => vec![*tie],
            RestorationCase::Split {
                upstream,
                downstream,
                ..
            } => vec![*upstream, *downstream],
        }
    }
}

fn tie_first(mut nodes: Vec<u32>, tie_local: u32) -> Vec<u32> {
    if let Some(i) = nodes.iter().position(|&j| j == tie_local) {
        nodes.swap(0, i);
    }
    nodes
}

/// Local nodes of the subtree under `root`, `root` included.
fn subtree(tree: &FeederTree, root: u32) -> Vec<u32> {
    // Parents come before their children in the tree's order.
    let mut inside = vec![false; tree.nodes.len()];
    inside[root as usize] = true;
    let mut out = vec![root];
    for j in (root as usize + 1)..tree.nodes.len() {
        let parent = tree.parent[j];
        if parent != NO_PARENT && inside[parent as usize] {
            inside[j] = true;
            out.push(j as u32);
        }
    }
    out
}

/// A feeder's ties and restoration cases.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FeederRestoration {
    /// Its ties to other feeders and busbars.
    pub ties: Vec<FeederTie>,
    /// Normally-closed switches inside it that can split it: (switch, the
    /// local node it leads into).
    pub split_switches: Vec<(SwitchIx, u32)>,
    /// Every restoration case: each tie alone, then each split whose two parts
    /// both have a tie.
    pub cases: Vec<RestorationCase>,
}

impl Topology {
    /// The ties, split switches and restoration cases of `feeder`.
    pub fn restoration(&self, network: &Network, feeder: FeederIx) -> FeederRestoration {
        let tree = self.tree(feeder);
        let mut ties = Vec::new();
        for &t in &tree.ties {
            let tie = &self.ties[t];
            let switch = network.switch(tie.switch);
            let (own, far) = match (self.placement(switch.from), self.placement(switch.to)) {
                (Some(a), b) if a.feeder == feeder => (a.local, (switch.to, b)),
                (a, Some(b)) if b.feeder == feeder => (b.local, (switch.from, a)),
                _ => continue,
            };
            let (far_node, far_placement) = far;
            if !network.node(far_node).in_service {
                continue;
            }
            let supply = match far_placement {
                // Both sides on the feeder: a switch inside it restores nothing.
                Some(p) if p.feeder == feeder => continue,
                Some(p) => TieSupply::Feeder {
                    feeder: p.feeder,
                    local: p.local,
                },
                None if network.node(far_node).node_type == NodeType::Busbar => {
                    TieSupply::Busbar(far_node)
                }
                None => continue,
            };
            ties.push(FeederTie {
                tie: t,
                switch: tie.switch,
                local: own,
                supply,
            });
        }
        // A closed switch whose node is the first node only cuts the lost head off.
        let split_switches: Vec<(SwitchIx, u32)> = tree
            .inbound
            .iter()
            .enumerate()
            .skip(2)
            .filter_map(|(local, b)| match b {
                Some(Branch::Switch(s)) => Some((*s, local as u32)),
                _ => None,
            })
            .collect();
        let mut cases: Vec<RestorationCase> =
            ties.iter().copied().map(RestorationCase::OneTie).collect();
        for &(switch, at) in &split_switches {
            let below = subtree(tree, at);
            let mut is_below = vec![false; tree.nodes.len()];
            for &j in &below {
                is_below[j as usize] = true;
            }
            for upstream in ties.iter().filter(|t| !is_below[t.local as usize]) {
                for downstream in ties.iter().filter(|t| is_below[t.local as usize]) {
                    cases.push(RestorationCase::Split {
                        switch,
                        at,
                        upstream: *upstream,
                        downstream: *downstream,
                    });
                }
            }
        }
        FeederRestoration {
            ties,
            split_switches,
            cases,
        }
    }

    /// The busbar groups that back up `group` when one of its transformers
    /// trips: `group` and every group joined to it by a coupler, closed or
    /// normally open (a normally-open switch between two busbars), ascending.
    pub fn coupled_groups(&self, network: &Network, group: usize) -> Vec<usize> {
        let mut groups = vec![group];
        let mut cursor = 0;
        while cursor < groups.len() {
            let g = groups[cursor];
            for tie in &self.ties {
                let switch = network.switch(tie.switch);
                let (a, b) = (switch.from, switch.to);
                if network.node(a).node_type != NodeType::Busbar
                    || network.node(b).node_type != NodeType::Busbar
                {
                    continue;
                }
                let (ga, gb) = (self.busbar_group_index(a), self.busbar_group_index(b));
                for (here, there) in [(ga, gb), (gb, ga)] {
                    if here == Some(g)
                        && let Some(there) = there
                        && !groups.contains(&there)
                    {
                        groups.push(there);
                    }
                }
            }
            cursor += 1;
        }
        groups.sort_unstable();
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::NetworkBuilder;

    /// Two feeders of one busbar, F1: B-a-b-c with a closed switch between b
    /// and c, ties from a and from c to F2's node x, and one from b to a
    /// busbar of a second substation.
    fn network() -> Network {
        use crate::model::LonLat;
        let at = LonLat::new(117.0, 31.0);
        let mut b = NetworkBuilder::new();
        b.substation("S1", at)
            .node("B1", NodeType::Busbar, at)
            .substation_transformer("TR1", "S1", "B1", 20000.0)
            .substation("S2", at)
            .node("B2", NodeType::Busbar, at)
            .substation_transformer("TR2", "S2", "B2", 20000.0);
        for id in ["a", "b", "c", "x"] {
            b.node(id, NodeType::Pole, at);
        }
        for (id, from, to) in [("L1", "B1", "a"), ("L2", "a", "b"), ("L3", "B1", "x")] {
            b.segment(id, from, to, 0.3, 0.1, 300.0, 500.0);
        }
        b.switch("SW", "b", "c", false)
            .switch("T1", "a", "x", true)
            .switch("T2", "c", "x", true)
            .switch("T3", "b", "B2", true)
            .switch("T4", "a", "c", true)
            .feeder("F1", "B1", "a", Some(300.0))
            .feeder("F2", "B1", "x", Some(300.0));
        b.build().expect("valid network")
    }

    #[test]
    fn ties_cases_and_splits_are_read_off_the_topology() {
        let network = network();
        let topology = Topology::trace(&network);
        let f1 = network.feeder_ix("F1").unwrap();
        let r = topology.restoration(&network, f1);
        let names = |ties: &[FeederTie]| -> Vec<String> {
            ties.iter()
                .map(|t| network.switch(t.switch).id.to_string())
                .collect()
        };
        // T4 joins two nodes of F1: no tie.
        assert_eq!(names(&r.ties), ["T1", "T2", "T3"]);
        assert!(
            matches!(r.ties[2].supply, TieSupply::Busbar(n) if network.node(n).id.as_str() == "B2")
        );
        assert_eq!(r.split_switches.len(), 1);
        // Three single ties, then the split at SW: T1 or T3 above it, T2 below.
        assert_eq!(r.cases.len(), 5);
        let splits: Vec<Vec<String>> = r.cases[3..].iter().map(|c| names(&c.ties())).collect();
        assert_eq!(splits, [vec!["T1", "T2"], vec!["T3", "T2"]]);
        let tree = topology.tree(f1);
        let parts = r.cases[3].parts(tree);
        let ids = |nodes: &[u32]| -> Vec<&str> {
            nodes
                .iter()
                .map(|&j| network.node(tree.nodes[j as usize]).id.as_str())
                .collect()
        };
        assert_eq!(ids(&parts[0].nodes), ["a", "b"]);
        assert_eq!(ids(&parts[1].nodes), ["c"]);
        // F2's only tie is T1 and T2 to F1, no split switch.
        let f2 = topology.restoration(&network, network.feeder_ix("F2").unwrap());
        assert_eq!(names(&f2.ties), ["T1", "T2"]);
        assert_eq!(f2.cases.len(), 2);
    }
}
