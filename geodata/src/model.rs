//! The asset model of a gridpack network (see `shared/spec/gridpack.md`).
//!
//! Assets hold their references to other assets as dense indices, resolved once when
//! the network is built, so a [`Network`] is always internally consistent: every
//! index points at an asset of the right kind, and ids are unique across all kinds.

use std::fmt;

use rustc_hash::FxHashMap;

use crate::error::{Problem, Rule};
use crate::ids::*;

/// Longitude and latitude in WGS84 degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LonLat {
    /// Longitude in degrees east, in [-180, 180].
    pub lon: f64,
    /// Latitude in degrees north, in [-90, 90].
    pub lat: f64,
}

impl LonLat {
    /// A position from longitude and latitude in degrees.
    pub const fn new(lon: f64, lat: f64) -> Self {
        Self { lon, lat }
    }

    /// Whether both coordinates are finite and inside the WGS84 range.
    pub fn is_valid(self) -> bool {
        self.lon.is_finite()
            && self.lat.is_finite()
            && (-180.0..=180.0).contains(&self.lon)
            && (-90.0..=90.0).contains(&self.lat)
    }
}

/// The kinds of feature a gridpack network holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssetKind {
    /// A substation (110/10 kV, 35/10 kV, ...).
    Substation,
    /// A substation's main transformer.
    SubstationTransformer,
    /// A node of the medium-voltage network.
    Node,
    /// A line or cable segment between two nodes.
    Segment,
    /// A switch between two nodes.
    Switch,
    /// A feeder leaving a busbar.
    Feeder,
    /// A distribution transformer hanging on a node.
    Transformer,
    /// A generator feeding a node or a transformer's low-voltage side.
    Generator,
}

impl AssetKind {
    /// Every kind, in the order the summary prints them.
    pub const ALL: [AssetKind; 8] = [
        AssetKind::Substation,
        AssetKind::SubstationTransformer,
        AssetKind::Node,
        AssetKind::Segment,
        AssetKind::Switch,
        AssetKind::Feeder,
        AssetKind::Transformer,
        AssetKind::Generator,
    ];

    /// The `kind` property's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            AssetKind::Substation => "substation",
            AssetKind::SubstationTransformer => "substation_transformer",
            AssetKind::Node => "node",
            AssetKind::Segment => "segment",
            AssetKind::Switch => "switch",
            AssetKind::Feeder => "feeder",
            AssetKind::Transformer => "transformer",
            AssetKind::Generator => "generator",
        }
    }

    /// The kind named by a `kind` property, if any.
    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for AssetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which asset an id names: its kind and its position in that kind's vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AssetRef {
    /// The asset's kind.
    pub kind: AssetKind,
    /// Position in the vector of that kind.
    pub index: u32,
}

/// What a node is, physically; decides whether a new customer line can connect there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A source busbar section of a substation; feeders start here.
    Busbar,
    /// An overhead-line pole; can always take a tee.
    Pole,
    /// A ring-main unit; needs a free bay.
    RingMainUnit,
    /// A switching station or secondary busbar; needs a free bay.
    SwitchingStation,
    /// A cable branch box.
    CableBranchBox,
    /// A junction with no equipment.
    Junction,
}

impl NodeType {
    /// Every node type.
    pub const ALL: [NodeType; 6] = [
        NodeType::Busbar,
        NodeType::Pole,
        NodeType::RingMainUnit,
        NodeType::SwitchingStation,
        NodeType::CableBranchBox,
        NodeType::Junction,
    ];

    /// The `node_type` property's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            NodeType::Busbar => "busbar",
            NodeType::Pole => "pole",
            NodeType::RingMainUnit => "ring_main_unit",
            NodeType::SwitchingStation => "switching_station",
            NodeType::CableBranchBox => "cable_branch_box",
            NodeType::Junction => "junction",
        }
    }

    /// The node type named by a `node_type` property, if any.
    pub fn parse(node_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == node_type)
    }

    /// Whether a new customer line here needs a free bay (`spare_bays >= 1`).
    pub const fn needs_spare_bay(self) -> bool {
        matches!(
            self,
            NodeType::Busbar | NodeType::RingMainUnit | NodeType::SwitchingStation
        )
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Properties the model does not interpret, kept so an export can carry them on.
pub type ExtraProperties = Option<Box<serde_json::Map<String, serde_json::Value>>>;

/// A substation.
#[derive(Clone, Debug, PartialEq)]
pub struct Substation {
    /// GIS id.
    pub id: SubstationId,
    /// Display name.
    pub name: String,
    /// Location.
    pub position: LonLat,
    /// High-voltage side, kV.
    pub hv_kv: f64,
    /// Medium-voltage side, kV.
    pub mv_kv: f64,
    /// Unknown properties.
    pub extra: ExtraProperties,
}

/// A substation's main transformer, feeding one MV busbar.
#[derive(Clone, Debug, PartialEq)]
pub struct SubstationTransformer {
    /// GIS id.
    pub id: SubstationTransformerId,
    /// Display name.
    pub name: Option<String>,
    /// Location, where the GIS has one.
    pub position: Option<LonLat>,
    /// The substation it stands in.
    pub substation: SubstationIx,
    /// Nameplate rating, kVA.
    pub rated_kva: f64,
    /// The MV busbar node it feeds.
    pub bus: NodeIx,
    /// Whether it is in service.
    pub in_service: bool,
    /// Unknown properties.
    pub extra: ExtraProperties,
}

/// A node of the medium-voltage network.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// GIS id.
    pub id: NodeId,
    /// Display name.
    pub name: Option<String>,
    /// Location.
    pub position: LonLat,
    /// Nominal voltage, kV.
    pub kv: f64,
    /// What stands at the node.
    pub node_type: NodeType,
    /// The substation, for busbars.
    pub substation: Option<SubstationIx>,
    /// Free outgoing bays or ports a new customer line can take.
    pub spare_bays: u32,
    /// Whether the node is in service.
    pub in_service: bool,
    /// Unknown properties.
    pub extra: ExtraProperties,
}

/// A line or cable segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// GIS id.
    pub id: SegmentId,
    /// Display name.
    pub name: Option<String>,
    /// One end.
    pub from: NodeIx,
    /// The other end.
    pub to: NodeIx,
    /// Nominal voltage, kV.
    pub kv: f64,
    /// Series resistance, ohm per km.
    pub r_ohm_per_km: f64,
    /// Series reactance, ohm per km.
    pub x_ohm_per_km: f64,
    /// Thermal limit, A.
    pub rated_a: f64,
    /// Electrical route length, metres: `length_m` where given, else the geometry's
    /// geodesic length.
    pub length_m: f64,
    /// Whether `length_m` came from the file (true) or from the geometry (false).
    pub length_given: bool,
    /// The route as drawn.
    pub geometry: Vec<LonLat>,
    /// Whether the segment is in service.
    pub in_service: bool,
    /// Unknown properties.
    pub extra: ExtraProperties,
}

impl Segment {
    /// Series resistance of the whole segment, ohm.
    pub fn r_ohm(&self) -> f64 {
        self.r_ohm_per_km * self.length_m / 1000.0
    }

    /// Series reactance of the whole segment, ohm.
    pub fn x_ohm(&self) -> f64 {
        self.x_ohm_per_km * self.length_m / 1000.0
    }
}

/// A switch between two nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    /// GIS id.
    pub id: SwitchId,
    /// Display name.
    pub name: Option<String>,
    /// Location, where the GIS has one.
    pub position: Option<LonLat>,
    /// One side.
    pub from: NodeIx,
    /// The other side.
    pub to: NodeIx,
    /// Open in normal operation: a tie point between feeders.
    pub normally_open: bool,
    /// Nominal voltage, kV, where given.
    pub kv: Option<f64>,
    /// Unknown properties.
    pub extra: ExtraProperties,
}

/// A medium-voltage feeder.
#[derive(Clone, Debug, PartialEq)]
pub struct Feeder {
    /// GIS id.
    pub id: FeederId,
    /// Display name.
    pub name: Option<String>,
    /// Location, where the GIS has one.
    pub position: Option<LonLat>,
    /// The busbar it leaves.
    pub head_node: NodeIx,
    /// The node its first segment or switch reaches.
    pub first_node: NodeIx,
    /// Limit of the head breaker or CT, A; `None` where only segments limit.
    pub rated_a: Option<f64>,
    /// Unknown properties.
    pub extra: ExtraProperties,
}

/// A distribution transformer (10/0.4 kV).
#[derive(Clone, Debug, PartialEq)]
pub struct Transformer {
    /// GIS id.
    pub id: TransformerId,
    /// Display name.
    pub name: Option<String>,
    /// Location.
    pub position: LonLat,
    /// The MV node it hangs on.
    pub node: NodeIx,
    /// Nameplate rating, kVA.
    pub rated_kva: f64,
    /// Public (may take new LV customers) or private to one customer.
    pub public: bool,
    /// Low-voltage side, kV.
    pub lv_kv: f64,
    /// Whether it is in service.
    pub in_service: bool,
    /// Unknown properties.
    pub extra: ExtraProperties,
}

/// What a generator turns into electricity; decides its default profile.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum GenerationSource {
    /// Photovoltaics: the default profile follows the sun.
    #[default]
    Pv,
    /// Wind turbines.
    Wind,
    /// Batteries exporting.
    Storage,
    /// Anything else (CHP, small hydro).
    Other,
}

impl GenerationSource {
    /// Every source.
    pub const ALL: [GenerationSource; 4] = [
        GenerationSource::Pv,
        GenerationSource::Wind,
        GenerationSource::Storage,
        GenerationSource::Other,
    ];

    /// The `source` property's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            GenerationSource::Pv => "pv",
            GenerationSource::Wind => "wind",
            GenerationSource::Storage => "storage",
            GenerationSource::Other => "other",
        }
    }

    /// The source named by a `source` property, if any.
    pub fn parse(source: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == source)
    }

    /// The share of rated output at quarter-hour `quarter` (0..96) of the local
    /// day, where nothing better is known (`shared/spec/planning.md`): PV
    /// follows [`pv_shape`], every other source runs flat out, which is the
    /// case a planner must allow for.
    pub fn default_factor(self, quarter: usize) -> f64 {
        self.default_shape()
            .map_or(1.0, |shape| shape[quarter % 96])
    }

    /// The 96 quarter-hour factors of [`Self::default_factor`]; `None` for a
    /// source that runs flat out.
    pub fn default_shape(self) -> Option<&'static [f64; 96]> {
        (self == GenerationSource::Pv).then(pv_shape)
    }
}

/// PV's output over a local day, a factor per quarter-hour:
/// `max(0, sin(pi (h - 6) / 12))` at the quarter-hour's midpoint `h` (local
/// hours; a reading's timestamp opens its quarter-hour). Worked out once:
/// every capacity figure of a sweep reads it.
pub fn pv_shape() -> &'static [f64; 96] {
    static SHAPE: std::sync::LazyLock<[f64; 96]> = std::sync::LazyLock::new(|| {
        std::array::from_fn(|quarter| {
            let h = (quarter as f64 + 0.5) / 4.0;
            (std::f64::consts::PI * (h - 6.0) / 12.0).sin().max(0.0)
        })
    });
    &SHAPE
}

impl fmt::Display for GenerationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a generator already runs (its output is in every reading) or is
/// approved and not yet built (counted as an injection in generation checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum GeneratorStatus {
    /// Built and running: measured readings are net of it.
    #[default]
    Connected,
    /// Approved, not yet built.
    Queued,
}

impl GeneratorStatus {
    /// The `status` property's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            GeneratorStatus::Connected => "connected",
            GeneratorStatus::Queued => "queued",
        }
    }

    /// The status named by a `status` property, if any.
    pub fn parse(status: &str) -> Option<Self> {
        [GeneratorStatus::Connected, GeneratorStatus::Queued]
            .into_iter()
            .find(|s| s.as_str() == status)
    }
}

/// Where a generator feeds in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeneratorPoint {
    /// A medium-voltage node or busbar.
    Node(NodeIx),
    /// A distribution transformer's low-voltage side.
    Transformer(TransformerIx),
}

/// A generator: PV, wind or storage export, connected or queued.
#[derive(Clone, Debug, PartialEq)]
pub struct Generator {
    /// GIS id.
    pub id: GeneratorId,
    /// Display name.
    pub name: Option<String>,
    /// Location.
    pub position: LonLat,
    /// Where it feeds in.
    pub point: GeneratorPoint,
    /// Rated export, kW (AC).
    pub rated_kw: f64,
    /// What it generates from.
    pub source: GenerationSource,
    /// Running or queued.
    pub status: GeneratorStatus,
    /// Whether it is in service.
    pub in_service: bool,
    /// Unknown properties.
    pub extra: ExtraProperties,
}

/// The assets of a network before their consistency is checked.
#[derive(Clone, Debug, Default)]
pub struct NetworkParts {
    /// Substations.
    pub substations: Vec<Substation>,
    /// Substation main transformers.
    pub substation_transformers: Vec<SubstationTransformer>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Segments.
    pub segments: Vec<Segment>,
    /// Switches.
    pub switches: Vec<Switch>,
    /// Feeders.
    pub feeders: Vec<Feeder>,
    /// Distribution transformers.
    pub transformers: Vec<Transformer>,
    /// Generators, connected and queued.
    pub generators: Vec<Generator>,
}

/// A validated network: assets with resolved references and a lookup by id.
#[derive(Clone, Debug)]
pub struct Network {
    assets: NetworkParts,
    ids: FxHashMap<Box<str>, AssetRef>,
}

/// A network reads as its assets: `network.nodes`, `network.count(kind)`.
impl std::ops::Deref for Network {
    type Target = NetworkParts;

    fn deref(&self) -> &NetworkParts {
        &self.assets
    }
}

impl Network {
    /// Checks that ids are unique, that every reference points at an asset of the
    /// right kind and that every number is in range; returns every problem found.
    pub fn new(parts: NetworkParts) -> Result<Network, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut ids: FxHashMap<Box<str>, AssetRef> = FxHashMap::default();
        ids.reserve(parts.asset_count());
        let mut register = |id: &str, kind: AssetKind, index: usize| {
            let new = AssetRef {
                kind,
                index: index as u32,
            };
            if let Some(first) = ids.insert(id.into(), new) {
                ids.insert(id.into(), first);
                problems.push(Problem::feature(
                    id,
                    Rule::DuplicateId,
                    format!(
                        "the id is used again by a {kind} (first by a {})",
                        first.kind
                    ),
                ));
            }
        };
        for (i, a) in parts.substations.iter().enumerate() {
            register(a.id.as_str(), AssetKind::Substation, i);
        }
        for (i, a) in parts.substation_transformers.iter().enumerate() {
            register(a.id.as_str(), AssetKind::SubstationTransformer, i);
        }
        for (i, a) in parts.nodes.iter().enumerate() {
            register(a.id.as_str(), AssetKind::Node, i);
        }
        for (i, a) in parts.segments.iter().enumerate() {
            register(a.id.as_str(), AssetKind::Segment, i);
        }
        for (i, a) in parts.switches.iter().enumerate() {
            register(a.id.as_str(), AssetKind::Switch, i);
        }
        for (i, a) in parts.feeders.iter().enumerate() {
            register(a.id.as_str(), AssetKind::Feeder, i);
        }
        for (i, a) in parts.transformers.iter().enumerate() {
            register(a.id.as_str(), AssetKind::Transformer, i);
        }
        for (i, a) in parts.generators.iter().enumerate() {
            register(a.id.as_str(), AssetKind::Generator, i);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Network::assemble(parts, ids)
    }

    /// Completes a network whose ids are known to be unique.
    pub(crate) fn assemble(
        parts: NetworkParts,
        ids: FxHashMap<Box<str>, AssetRef>,
    ) -> Result<Network, Vec<Problem>> {
        let mut problems = Vec::new();
        parts.check_references(&mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Network { assets: parts, ids })
    }

    /// The asset an id names.
    pub fn lookup(&self, id: &str) -> Option<AssetRef> {
        self.ids.get(id).copied()
    }

    /// The node an id names, if it names a node.
    pub fn node_ix(&self, id: &str) -> Option<NodeIx> {
        self.lookup(id)
            .filter(|r| r.kind == AssetKind::Node)
            .map(|r| NodeIx(r.index))
    }

    /// The feeder an id names, if it names a feeder.
    pub fn feeder_ix(&self, id: &str) -> Option<FeederIx> {
        self.lookup(id)
            .filter(|r| r.kind == AssetKind::Feeder)
            .map(|r| FeederIx(r.index))
    }

    /// A node.
    pub fn node(&self, ix: NodeIx) -> &Node {
        &self.nodes[ix.get()]
    }

    /// A segment.
    pub fn segment(&self, ix: SegmentIx) -> &Segment {
        &self.segments[ix.get()]
    }

    /// A switch.
    pub fn switch(&self, ix: SwitchIx) -> &Switch {
        &self.switches[ix.get()]
    }

    /// A feeder.
    pub fn feeder(&self, ix: FeederIx) -> &Feeder {
        &self.feeders[ix.get()]
    }

    /// Gives the assets back, e.g. to edit and rebuild.
    pub fn into_parts(self) -> NetworkParts {
        self.assets
    }
}

impl NetworkParts {
    /// The id of any asset.
    pub fn id_of(&self, asset: AssetRef) -> &str {
        let i = asset.index as usize;
        match asset.kind {
            AssetKind::Substation => self.substations[i].id.as_str(),
            AssetKind::SubstationTransformer => self.substation_transformers[i].id.as_str(),
            AssetKind::Node => self.nodes[i].id.as_str(),
            AssetKind::Segment => self.segments[i].id.as_str(),
            AssetKind::Switch => self.switches[i].id.as_str(),
            AssetKind::Feeder => self.feeders[i].id.as_str(),
            AssetKind::Transformer => self.transformers[i].id.as_str(),
            AssetKind::Generator => self.generators[i].id.as_str(),
        }
    }

    /// The display name of any asset, where the network gives one.
    pub fn name_of(&self, asset: AssetRef) -> Option<&str> {
        let i = asset.index as usize;
        match asset.kind {
            AssetKind::Substation => Some(self.substations[i].name.as_str()),
            AssetKind::SubstationTransformer => self.substation_transformers[i].name.as_deref(),
            AssetKind::Node => self.nodes[i].name.as_deref(),
            AssetKind::Segment => self.segments[i].name.as_deref(),
            AssetKind::Switch => self.switches[i].name.as_deref(),
            AssetKind::Feeder => self.feeders[i].name.as_deref(),
            AssetKind::Transformer => self.transformers[i].name.as_deref(),
            AssetKind::Generator => self.generators[i].name.as_deref(),
        }
    }

    /// How many assets of a kind the network holds.
    pub fn count(&self, kind: AssetKind) -> usize {
        match kind {
            AssetKind::Substation => self.substations.len(),
            AssetKind::SubstationTransformer => self.substation_transformers.len(),
            AssetKind::Node => self.nodes.len(),
            AssetKind::Segment => self.segments.len(),
            AssetKind::Switch => self.switches.len(),
            AssetKind::Feeder => self.feeders.len(),
            AssetKind::Transformer => self.transformers.len(),
            AssetKind::Generator => self.generators.len(),
        }
    }

    /// Total number of assets of every kind.
    pub fn asset_count(&self) -> usize {
        self.substations.len()
            + self.substation_transformers.len()
            + self.nodes.len()
            + self.segments.len()
            + self.switches.len()
            + self.feeders.len()
            + self.transformers.len()
            + self.generators.len()
    }

    /// Index bounds and the kind rules that indices alone cannot express (a feeder's
    /// head must be a busbar, a substation transformer must feed one).
    fn check_references(&self, problems: &mut Vec<Problem>) {
        let node_count = self.nodes.len();
        let node_ok = |ix: NodeIx| ix.get() < node_count;
        let substation_ok = |ix: SubstationIx| ix.get() < self.substations.len();
        let mut bad = |id: &str, field: &str| {
            problems.push(Problem::feature(
                id,
                Rule::DanglingReference,
                format!("`{field}` names no asset of the right kind"),
            ));
        };
        for t in &self.substation_transformers {
            if !substation_ok(t.substation) {
                bad(t.id.as_str(), "substation");
            }
            if !node_ok(t.bus) {
                bad(t.id.as_str(), "bus");
            }
        }
        for n in &self.nodes {
            if n.substation.is_some_and(|s| !substation_ok(s)) {
                bad(n.id.as_str(), "substation");
            }
        }
        for s in &self.segments {
            if !node_ok(s.from) {
                bad(s.id.as_str(), "from");
            }
            if !node_ok(s.to) {
                bad(s.id.as_str(), "to");
            }
        }
        for s in &self.switches {
            if !node_ok(s.from) {
                bad(s.id.as_str(), "from");
            }
            if !node_ok(s.to) {
                bad(s.id.as_str(), "to");
            }
        }
        for f in &self.feeders {
            if !node_ok(f.head_node) {
                bad(f.id.as_str(), "head_node");
            }
            if !node_ok(f.first_node) {
                bad(f.id.as_str(), "first_node");
            }
        }
        for t in &self.transformers {
            if !node_ok(t.node) {
                bad(t.id.as_str(), "node");
            }
        }
        for g in &self.generators {
            let ok = match g.point {
                GeneratorPoint::Node(n) => node_ok(n),
                GeneratorPoint::Transformer(t) => t.get() < self.transformers.len(),
            };
            if !ok {
                bad(g.id.as_str(), "node");
            }
        }
        let not_busbar =
            |ix: NodeIx| node_ok(ix) && self.nodes[ix.get()].node_type != NodeType::Busbar;
        for t in &self.substation_transformers {
            if not_busbar(t.bus) {
                problems.push(Problem::feature(
                    t.id.as_str(),
                    Rule::WrongReferenceKind,
                    format!(
                        "`bus` names node {} which is not a busbar",
                        self.nodes[t.bus.get()].id
                    ),
                ));
            }
        }
        for f in &self.feeders {
            if not_busbar(f.head_node) {
                problems.push(Problem::feature(
                    f.id.as_str(),
                    Rule::WrongReferenceKind,
                    format!(
                        "`head_node` names node {} which is not a busbar",
                        self.nodes[f.head_node.get()].id
                    ),
                ));
            }
        }
    }
}
