//! Building small networks in code, for tests and examples.
//!
//! References are given by id and resolved in [`NetworkBuilder::build`], which
//! applies the same checks as the gridpack reader. Geometry is optional: nodes get
//! the position given, segments a straight line between their ends.

use rustc_hash::FxHashMap;

use crate::error::{Problem, Rule};
use crate::ids::*;
use crate::model::*;

/// Builds a [`Network`] from assets named by id.
#[derive(Clone, Debug, Default)]
pub struct NetworkBuilder {
    parts: NetworkParts,
    nodes: FxHashMap<String, NodeIx>,
    substations: FxHashMap<String, SubstationIx>,
    unresolved: Vec<Problem>,
}

impl NetworkBuilder {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn node_ref(&mut self, owner: &str, id: &str) -> NodeIx {
        self.nodes.get(id).copied().unwrap_or_else(|| {
            self.unresolved.push(Problem::feature(
                owner,
                Rule::DanglingReference,
                format!("names node {id}, which was not added before"),
            ));
            NodeIx(u32::MAX)
        })
    }

    fn position_of(&self, node: NodeIx) -> LonLat {
        self.parts
            .nodes
            .get(node.get())
            .map_or(LonLat::new(0.0, 0.0), |n| n.position)
    }

    /// Adds a substation (110/10 kV).
    pub fn substation(&mut self, id: &str, at: LonLat) -> &mut Self {
        self.substations.insert(
            id.to_owned(),
            SubstationIx::from_usize(self.parts.substations.len()),
        );
        self.parts.substations.push(Substation {
            id: id.into(),
            name: id.to_owned(),
            position: at,
            hv_kv: 110.0,
            mv_kv: 10.0,
            extra: None,
        });
        self
    }

    /// Adds a main transformer of `substation` feeding `bus`.
    pub fn substation_transformer(
        &mut self,
        id: &str,
        substation: &str,
        bus: &str,
        rated_kva: f64,
    ) -> &mut Self {
        let bus = self.node_ref(id, bus);
        let substation = self
            .substations
            .get(substation)
            .copied()
            .unwrap_or_else(|| {
                self.unresolved.push(Problem::feature(
                    id,
                    Rule::DanglingReference,
                    format!("names substation {substation}, which was not added before"),
                ));
                SubstationIx(u32::MAX)
            });
        self.parts
            .substation_transformers
            .push(SubstationTransformer {
                id: id.into(),
                name: None,
                position: None,
                substation,
                rated_kva,
                bus,
                in_service: true,
                extra: None,
            });
        self
    }

    /// Adds a node at 10 kV.
    pub fn node(&mut self, id: &str, node_type: NodeType, at: LonLat) -> &mut Self {
        self.nodes
            .insert(id.to_owned(), NodeIx::from_usize(self.parts.nodes.len()));
        self.parts.nodes.push(Node {
            id: id.into(),
            name: None,
            position: at,
            kv: 10.0,
            node_type,
            substation: None,
            spare_bays: 0,
            in_service: true,
            extra: None,
        });
        self
    }

    /// Changes the last node added.
    pub fn with_node(&mut self, edit: impl FnOnce(&mut Node)) -> &mut Self {
        if let Some(n) = self.parts.nodes.last_mut() {
            edit(n);
        }
        self
    }

    /// Adds a segment with explicit electrical length.
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        id: &str,
        from: &str,
        to: &str,
        r_ohm_per_km: f64,
        x_ohm_per_km: f64,
        rated_a: f64,
        length_m: f64,
    ) -> &mut Self {
        let from = self.node_ref(id, from);
        let to = self.node_ref(id, to);
        let geometry = vec![self.position_of(from), self.position_of(to)];
        self.parts.segments.push(Segment {
            id: id.into(),
            name: None,
            from,
            to,
            kv: 10.0,
            r_ohm_per_km,
            x_ohm_per_km,
            rated_a,
            length_m,
            length_given: true,
            geometry,
            in_service: true,
            extra: None,
        });
        self
    }

    /// Changes the last segment added.
    pub fn with_segment(&mut self, edit: impl FnOnce(&mut Segment)) -> &mut Self {
        if let Some(s) = self.parts.segments.last_mut() {
            edit(s);
        }
        self
    }

    /// Adds a switch.
    pub fn switch(&mut self, id: &str, from: &str, to: &str, normally_open: bool) -> &mut Self {
        let from = self.node_ref(id, from);
        let to = self.node_ref(id, to);
        self.parts.switches.push(Switch {
            id: id.into(),
            name: None,
            position: None,
            from,
            to,
            normally_open,
            kv: None,
            extra: None,
        });
        self
    }

    /// Adds a feeder.
    pub fn feeder(
        &mut self,
        id: &str,
        head_node: &str,
        first_node: &str,
        rated_a: Option<f64>,
    ) -> &mut Self {
        let head_node = self.node_ref(id, head_node);
        let first_node = self.node_ref(id, first_node);
        self.parts.feeders.push(Feeder {
            id: id.into(),
            name: None,
            position: None,
            head_node,
            first_node,
            rated_a,
            extra: None,
        });
        self
    }

    /// Changes the last feeder added.
    pub fn with_feeder(&mut self, edit: impl FnOnce(&mut Feeder)) -> &mut Self {
        if let Some(f) = self.parts.feeders.last_mut() {
            edit(f);
        }
        self
    }

    /// Adds a public distribution transformer at its node's position.
    pub fn transformer(&mut self, id: &str, node: &str, rated_kva: f64) -> &mut Self {
        let node = self.node_ref(id, node);
        let position = self.position_of(node);
        self.parts.transformers.push(Transformer {
            id: id.into(),
            name: None,
            position,
            node,
            rated_kva,
            public: true,
            lv_kv: 0.4,
            in_service: true,
            extra: None,
        });
        self
    }

    /// Adds a generator of `rated_kw` feeding `point`, a node or a distribution
    /// transformer id, at its position.
    pub fn generator(
        &mut self,
        id: &str,
        point: &str,
        rated_kw: f64,
        source: GenerationSource,
        status: GeneratorStatus,
    ) -> &mut Self {
        let at = match self
            .parts
            .transformers
            .iter()
            .position(|t| t.id.as_str() == point)
        {
            Some(t) => {
                let t = TransformerIx::from_usize(t);
                (
                    GeneratorPoint::Transformer(t),
                    self.parts.transformers[t.get()].position,
                )
            }
            None => {
                let node = self.node_ref(id, point);
                (GeneratorPoint::Node(node), self.position_of(node))
            }
        };
        self.parts.generators.push(Generator {
            id: id.into(),
            name: None,
            position: at.1,
            point: at.0,
            rated_kw,
            source,
            status,
            in_service: true,
            extra: None,
        });
        self
    }

    /// Validates and builds the network.
    pub fn build(&self) -> Result<Network, Vec<Problem>> {
        if !self.unresolved.is_empty() {
            return Err(self.unresolved.clone());
        }
        Network::new(self.parts.clone())
    }
}
