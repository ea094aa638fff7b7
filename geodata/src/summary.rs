//! A network's summary: what `headroom import` reports and the API will serve.

use crate::ids::FeederIx;
use crate::model::{AssetKind, Network};
use crate::topology::Topology;

/// One feeder in a summary.
#[derive(Clone, Debug, PartialEq)]
pub struct FeederSummary {
    /// The feeder.
    pub feeder: FeederIx,
    /// Nodes supplied, excluding the head busbar.
    pub node_count: usize,
    /// Summed segment length of its tree, metres.
    pub total_length_m: f64,
    /// Tie switches on it, each with the feeder on the other side (itself for a tie
    /// within the feeder, `None` where no feeder reaches the other side).
    pub ties: Vec<(String, Option<FeederIx>)>,
}

/// Counts per kind and per feeder.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSummary {
    /// Assets per kind, in [`AssetKind::ALL`] order; generators only where the
    /// network has some (most grids' files predate them, and their summaries
    /// stay as they were).
    pub counts: Vec<(AssetKind, usize)>,
    /// Every feeder, in file order.
    pub feeders: Vec<FeederSummary>,
}

impl NetworkSummary {
    /// Summarises a network and its traced topology.
    pub fn new(network: &Network, topology: &Topology) -> Self {
        let counts = AssetKind::ALL
            .into_iter()
            .map(|k| (k, network.count(k)))
            .filter(|&(k, n)| k != AssetKind::Generator || n > 0)
            .collect();
        let feeders = topology
            .feeders
            .iter()
            .map(|tree| FeederSummary {
                feeder: tree.feeder,
                node_count: tree.node_count(),
                total_length_m: tree.total_length_m,
                ties: tree
                    .ties
                    .iter()
                    .map(|&t| {
                        let tie = &topology.ties[t];
                        let sides = [tie.from_feeder, tie.to_feeder];
                        // A tie with this feeder on both sides closes a loop within it.
                        let other = sides
                            .into_iter()
                            .flatten()
                            .find(|f| *f != tree.feeder)
                            .or_else(|| {
                                sides
                                    .iter()
                                    .all(|s| *s == Some(tree.feeder))
                                    .then_some(tree.feeder)
                            });
                        (network.switch(tie.switch).id.to_string(), other)
                    })
                    .collect(),
            })
            .collect();
        Self { counts, feeders }
    }
}
