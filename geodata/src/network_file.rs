//! Reading and writing `network.geojson`.
//!
//! The reader streams the `features` array: each feature is checked and turned into
//! a typed asset as soon as it is parsed, so the whole file is never held as a JSON
//! tree. References between features (`from`, `to`, `bus`, ...) are collected as
//! names and resolved once every id is known; every broken rule is reported, naming
//! the feature, before anything is returned.

use std::fmt;
use std::io::Write;
use std::path::Path;

use geo::{Geodesic, Length};
use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{Error, Problem, Result, Rule};
use crate::ids::*;
use crate::model::*;

/// Reads and validates a `network.geojson` file.
pub fn read_network(path: &Path) -> Result<Network> {
    let bytes = std::fs::read(path).map_err(|source| Error::reading(path, source))?;
    parse_network(&bytes, path)
}

/// Validates a network from the bytes of a `network.geojson`; `path` names it in errors.
pub fn parse_network(bytes: &[u8], path: &Path) -> Result<Network> {
    let mut builder = Builder::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let outcome = CollectionSeed(&mut builder)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Err(e) = outcome {
        return Err(json_error(bytes, path, &e));
    }
    builder.finish().map_err(|problems| Error::InvalidNetwork {
        path: path.to_owned(),
        problems,
    })
}

fn json_error(bytes: &[u8], path: &Path, e: &serde_json::Error) -> Error {
    let mut message = e.to_string();
    // serde_json appends " at line L column C"; we print those ourselves.
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    // Python's json module writes NaN and Infinity, which JSON does not allow;
    // say so rather than a bare "expected value".
    if let Some(offset) = byte_offset(bytes, e.line(), e.column()) {
        let rest = &bytes[offset.saturating_sub(1).min(bytes.len())..];
        for token in ["NaN", "Infinity", "-Infinity"] {
            if rest.starts_with(token.as_bytes()) {
                message =
                    format!("`{token}` is not a JSON number: the spec requires finite numbers");
            }
        }
    }
    if e.is_eof() {
        message = format!("{message} (the file is truncated)");
    }
    Error::Json {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message,
    }
}

fn byte_offset(bytes: &[u8], line: usize, column: usize) -> Option<usize> {
    let mut current = 1;
    let mut start = 0;
    if line > 1 {
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                current += 1;
                if current == line {
                    start = i + 1;
                    break;
                }
            }
        }
        if current != line {
            return None;
        }
    }
    Some(start + column)
}

/// The top-level object: checks `type` and streams `features` into the builder.
struct CollectionSeed<'a>(&'a mut Builder);

impl<'de> DeserializeSeed<'de> for CollectionSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CollectionSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GeoJSON FeatureCollection object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_type = false;
        let mut seen_features = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "type" => {
                    let ty: String = map.next_value()?;
                    if ty != "FeatureCollection" {
                        return Err(de::Error::custom(format!(
                            "`type` is \"{ty}\": a network file must be a FeatureCollection"
                        )));
                    }
                    seen_type = true;
                }
                "features" => {
                    map.next_value_seed(FeaturesSeed(&mut *self.0))?;
                    seen_features = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_type {
            return Err(de::Error::custom(
                "no `type`: a network file must be a FeatureCollection",
            ));
        }
        if !seen_features {
            return Err(de::Error::custom("no `features` array"));
        }
        Ok(())
    }
}

struct FeaturesSeed<'a>(&'a mut Builder);

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of features")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(feature) = seq.next_element::<RawFeature<'de>>()? {
            self.0.add(feature);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RawFeature<'a> {
    #[serde(rename = "type")]
    ty: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    geometry: Option<&'a RawValue>,
    properties: Option<Properties>,
}

/// Property names the model reads, of any kind.
const KNOWN_PROPERTIES: [&str; 27] = [
    "id",
    "kind",
    "name",
    "hv_kv",
    "mv_kv",
    "substation",
    "rated_kva",
    "bus",
    "in_service",
    "kv",
    "node_type",
    "spare_bays",
    "from",
    "to",
    "r_ohm_per_km",
    "x_ohm_per_km",
    "rated_a",
    "length_m",
    "normally_open",
    "head_node",
    "first_node",
    "public",
    "lv_kv",
    "node",
    "rated_kw",
    "source",
    "status",
];

/// A feature's properties: the known ones in fixed slots, the rest in a map.
///
/// A `Map<String, Value>` per feature costs an allocation per key; a city-scale file
/// has millions of keys, and slots make reading it about twice as fast.
struct Properties {
    known: [Option<Value>; KNOWN_PROPERTIES.len()],
    extra: Map<String, Value>,
}

impl Properties {
    fn slot(key: &str) -> Option<usize> {
        KNOWN_PROPERTIES.iter().position(|k| *k == key)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        match Self::slot(key) {
            Some(i) => self.known[i].as_ref(),
            None => self.extra.get(key),
        }
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        match Self::slot(key) {
            Some(i) => self.known[i].take(),
            None => self.extra.remove(key),
        }
    }

    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// What nobody read: unknown properties and those of other kinds.
    fn into_unread(mut self) -> Map<String, Value> {
        for (i, value) in self.known.into_iter().enumerate() {
            if let Some(value) = value {
                self.extra.insert(KNOWN_PROPERTIES[i].to_owned(), value);
            }
        }
        self.extra
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PropertiesVisitor;

        impl<'de> Visitor<'de> for PropertiesVisitor {
            type Value = Properties;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a properties object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Properties, A::Error> {
                let mut props = Properties {
                    known: Default::default(),
                    extra: Map::new(),
                };
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let value: Value = map.next_value()?;
                    match Properties::slot(&key) {
                        Some(i) => props.known[i] = Some(value),
                        None => {
                            props.extra.insert(key.into_owned(), value);
                        }
                    }
                }
                Ok(props)
            }
        }

        deserializer.deserialize_map(PropertiesVisitor)
    }
}

/// A reference from one feature to another, applied once every feature is read.
struct PendingRef {
    owner: AssetRef,
    field: RefField,
    target: RefTarget,
}

/// Most files list nodes before what references them, so most targets are found
/// at once; the rest wait, by name, for the end of the file.
enum RefTarget {
    Found(AssetRef),
    Named(Box<str>),
}

#[derive(Clone, Copy, Debug)]
enum RefField {
    SubstationTransformerSubstation,
    SubstationTransformerBus,
    NodeSubstation,
    SegmentFrom,
    SegmentTo,
    SwitchFrom,
    SwitchTo,
    FeederHead,
    FeederFirst,
    TransformerNode,
    /// A generator's `node`: a node or a distribution transformer.
    GeneratorPoint,
}

impl RefField {
    const fn name(self) -> &'static str {
        match self {
            RefField::SubstationTransformerSubstation | RefField::NodeSubstation => "substation",
            RefField::SubstationTransformerBus => "bus",
            RefField::SegmentFrom | RefField::SwitchFrom => "from",
            RefField::SegmentTo | RefField::SwitchTo => "to",
            RefField::FeederHead => "head_node",
            RefField::FeederFirst => "first_node",
            RefField::TransformerNode | RefField::GeneratorPoint => "node",
        }
    }

    /// What the reference must name, as an error says it.
    const fn wanted(self) -> &'static str {
        match self {
            RefField::GeneratorPoint => "node or transformer",
            _ => self.target_kind().as_str(),
        }
    }

    const fn target_kind(self) -> AssetKind {
        match self {
            RefField::SubstationTransformerSubstation | RefField::NodeSubstation => {
                AssetKind::Substation
            }
            _ => AssetKind::Node,
        }
    }
}

#[derive(Default)]
struct Builder {
    parts: NetworkParts,
    ids: FxHashMap<Box<str>, AssetRef>,
    refs: Vec<PendingRef>,
    problems: Vec<Problem>,
    features_seen: usize,
}

const PLACEHOLDER: u32 = u32::MAX;

impl Builder {
    fn add(&mut self, raw: RawFeature<'_>) {
        let position = self.features_seen;
        self.features_seen += 1;
        let Some(mut props) = raw.properties else {
            self.problems.push(Problem::feature(
                &format!("#{position}"),
                Rule::MissingId,
                "the feature has no `properties`",
            ));
            return;
        };
        let id = match props.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                self.problems.push(Problem::feature(
                    &format!("#{position}"),
                    Rule::MissingId,
                    "`properties.id` is missing or not a non-empty string",
                ));
                return;
            }
        };
        if raw.ty.as_deref().is_some_and(|t| t != "Feature") {
            self.problems.push(Problem::feature(
                &id,
                Rule::InvalidValue,
                "`type` must be \"Feature\"",
            ));
        }
        let kind = match props.get("kind") {
            Some(Value::String(k)) => match AssetKind::parse(k) {
                Some(kind) => kind,
                None => {
                    self.problems.push(Problem::feature(
                        &id,
                        Rule::UnknownKind,
                        format!(
                            "`kind` \"{k}\" is none of substation, substation_transformer, node, segment, switch, feeder, transformer, generator"
                        ),
                    ));
                    return;
                }
            },
            _ => {
                self.problems.push(Problem::feature(
                    &id,
                    Rule::MissingProperty,
                    "missing required property `kind`",
                ));
                return;
            }
        };
        let index = self.parts.count(kind);
        let this = AssetRef {
            kind,
            index: index as u32,
        };
        if let Some(first) = self.ids.get(id.as_str()) {
            self.problems.push(Problem::feature(
                &id,
                Rule::DuplicateId,
                format!(
                    "the id is used again by a {kind} (first by a {})",
                    first.kind
                ),
            ));
            return;
        }
        self.ids.insert(id.as_str().into(), this);
        props.remove("kind");
        props.remove("id");
        let geometry = raw
            .geometry
            .map(|g| serde_json::from_str::<geojson::Geometry>(g.get()));
        let mut f = FeatureProps {
            id: &id,
            props,
            problems: &mut self.problems,
            refs: &mut self.refs,
            ids: &self.ids,
            this,
        };
        match kind {
            AssetKind::Substation => {
                let position = f.point(geometry, true);
                let asset = Substation {
                    id: SubstationId::new(id.as_str()),
                    name: f.required_str("name").unwrap_or_default(),
                    position: position.unwrap_or(LonLat::new(0.0, 0.0)),
                    hv_kv: f.positive("hv_kv", Some(110.0)),
                    mv_kv: f.positive("mv_kv", Some(10.0)),
                    extra: None,
                };
                let extra = f.finish();
                self.parts.substations.push(Substation { extra, ..asset });
            }
            AssetKind::SubstationTransformer => {
                let position = f.point(geometry, false);
                f.reference("substation", RefField::SubstationTransformerSubstation);
                f.reference("bus", RefField::SubstationTransformerBus);
                let asset = SubstationTransformer {
                    id: SubstationTransformerId::new(id.as_str()),
                    name: f.optional_str("name"),
                    position,
                    substation: SubstationIx(PLACEHOLDER),
                    rated_kva: f.positive("rated_kva", None),
                    bus: NodeIx(PLACEHOLDER),
                    in_service: f.boolean("in_service", true),
                    extra: None,
                };
                let extra = f.finish();
                self.parts
                    .substation_transformers
                    .push(SubstationTransformer { extra, ..asset });
            }
            AssetKind::Node => {
                let position = f.point(geometry, true);
                let node_type = f.node_type();
                if f.props.contains_key("substation") {
                    f.reference("substation", RefField::NodeSubstation);
                }
                let asset = Node {
                    id: NodeId::new(id.as_str()),
                    name: f.optional_str("name"),
                    position: position.unwrap_or(LonLat::new(0.0, 0.0)),
                    kv: f.positive("kv", None),
                    node_type,
                    substation: None,
                    spare_bays: f.count("spare_bays"),
                    in_service: f.boolean("in_service", true),
                    extra: None,
                };
                let extra = f.finish();
                self.parts.nodes.push(Node { extra, ..asset });
            }
            AssetKind::Segment => {
                let line = f.line_string(geometry);
                f.reference("from", RefField::SegmentFrom);
                f.reference("to", RefField::SegmentTo);
                let given = f.optional_non_negative("length_m");
                let length_m = given.unwrap_or_else(|| geodesic_length_m(&line));
                let asset = Segment {
                    id: SegmentId::new(id.as_str()),
                    name: f.optional_str("name"),
                    from: NodeIx(PLACEHOLDER),
                    to: NodeIx(PLACEHOLDER),
                    kv: f.positive("kv", None),
                    r_ohm_per_km: f.non_negative("r_ohm_per_km"),
                    x_ohm_per_km: f.non_negative("x_ohm_per_km"),
                    rated_a: f.positive("rated_a", None),
                    length_m,
                    length_given: given.is_some(),
                    geometry: line,
                    in_service: f.boolean("in_service", true),
                    extra: None,
                };
                let extra = f.finish();
                self.parts.segments.push(Segment { extra, ..asset });
            }
            AssetKind::Switch => {
                let position = f.point(geometry, false);
                f.reference("from", RefField::SwitchFrom);
                f.reference("to", RefField::SwitchTo);
                let asset = Switch {
                    id: SwitchId::new(id.as_str()),
                    name: f.optional_str("name"),
                    position,
                    from: NodeIx(PLACEHOLDER),
                    to: NodeIx(PLACEHOLDER),
                    normally_open: f.boolean("normally_open", false),
                    kv: f.optional_positive("kv"),
                    extra: None,
                };
                let extra = f.finish();
                self.parts.switches.push(Switch { extra, ..asset });
            }
            AssetKind::Feeder => {
                let position = f.point(geometry, false);
                f.reference("head_node", RefField::FeederHead);
                f.reference("first_node", RefField::FeederFirst);
                let asset = Feeder {
                    id: FeederId::new(id.as_str()),
                    name: f.optional_str("name"),
                    position,
                    head_node: NodeIx(PLACEHOLDER),
                    first_node: NodeIx(PLACEHOLDER),
                    rated_a: f.optional_positive("rated_a"),
                    extra: None,
                };
                let extra = f.finish();
                self.parts.feeders.push(Feeder { extra, ..asset });
            }
            AssetKind::Transformer => {
                let position = f.point(geometry, true);
                f.reference("node", RefField::TransformerNode);
                let asset = Transformer {
                    id: TransformerId::new(id.as_str()),
                    name: f.optional_str("name"),
                    position: position.unwrap_or(LonLat::new(0.0, 0.0)),
                    node: NodeIx(PLACEHOLDER),
                    rated_kva: f.positive("rated_kva", None),
                    public: f.boolean("public", true),
                    lv_kv: f.positive("lv_kv", Some(0.4)),
                    in_service: f.boolean("in_service", true),
                    extra: None,
                };
                let extra = f.finish();
                self.parts.transformers.push(Transformer { extra, ..asset });
            }
            AssetKind::Generator => {
                let position = f.point(geometry, true);
                f.reference("node", RefField::GeneratorPoint);
                let asset = Generator {
                    id: GeneratorId::new(id.as_str()),
                    name: f.optional_str("name"),
                    position: position.unwrap_or(LonLat::new(0.0, 0.0)),
                    point: GeneratorPoint::Node(NodeIx(PLACEHOLDER)),
                    rated_kw: f.positive("rated_kw", None),
                    source: f.generation_source(),
                    status: f.generator_status(),
                    in_service: f.boolean("in_service", true),
                    extra: None,
                };
                let extra = f.finish();
                self.parts.generators.push(Generator { extra, ..asset });
            }
        }
    }

    fn finish(mut self) -> Result<Network, Vec<Problem>> {
        for pending in std::mem::take(&mut self.refs) {
            let wanted = pending.field.target_kind();
            let owner_id = self.parts.id_of(pending.owner);
            let found = match &pending.target {
                RefTarget::Found(found) => Some(found),
                RefTarget::Named(name) => self.ids.get(name),
            };
            let target_name = || match &pending.target {
                RefTarget::Found(found) => self.parts.id_of(*found).to_owned(),
                RefTarget::Named(name) => name.to_string(),
            };
            let either = matches!(pending.field, RefField::GeneratorPoint)
                && found.is_some_and(|f| f.kind == AssetKind::Transformer);
            let target = match found {
                Some(found) if found.kind == wanted || either => found.index,
                Some(found) => {
                    self.problems.push(Problem::feature(
                        owner_id,
                        Rule::WrongReferenceKind,
                        format!(
                            "`{}` names {}, which is a {}, not a {}",
                            pending.field.name(),
                            target_name(),
                            found.kind,
                            pending.field.wanted()
                        ),
                    ));
                    continue;
                }
                None => {
                    self.problems.push(Problem::feature(
                        owner_id,
                        Rule::DanglingReference,
                        format!(
                            "`{}` names {}, which is no feature of this file",
                            pending.field.name(),
                            target_name()
                        ),
                    ));
                    continue;
                }
            };
            let i = pending.owner.index as usize;
            let p = &mut self.parts;
            match pending.field {
                RefField::SubstationTransformerSubstation => {
                    p.substation_transformers[i].substation = SubstationIx(target)
                }
                RefField::SubstationTransformerBus => {
                    p.substation_transformers[i].bus = NodeIx(target)
                }
                RefField::NodeSubstation => p.nodes[i].substation = Some(SubstationIx(target)),
                RefField::SegmentFrom => p.segments[i].from = NodeIx(target),
                RefField::SegmentTo => p.segments[i].to = NodeIx(target),
                RefField::SwitchFrom => p.switches[i].from = NodeIx(target),
                RefField::SwitchTo => p.switches[i].to = NodeIx(target),
                RefField::FeederHead => p.feeders[i].head_node = NodeIx(target),
                RefField::FeederFirst => p.feeders[i].first_node = NodeIx(target),
                RefField::TransformerNode => p.transformers[i].node = NodeIx(target),
                RefField::GeneratorPoint => {
                    p.generators[i].point = if either {
                        GeneratorPoint::Transformer(TransformerIx(target))
                    } else {
                        GeneratorPoint::Node(NodeIx(target))
                    }
                }
            }
        }
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        Network::assemble(self.parts, self.ids)
    }
}

/// One feature's properties while they are checked: every accessor records a problem
/// naming the feature and returns a harmless value, so checking goes on.
struct FeatureProps<'a> {
    id: &'a str,
    props: Properties,
    problems: &'a mut Vec<Problem>,
    refs: &'a mut Vec<PendingRef>,
    ids: &'a FxHashMap<Box<str>, AssetRef>,
    this: AssetRef,
}

impl FeatureProps<'_> {
    fn problem(&mut self, rule: Rule, detail: String) {
        self.problems.push(Problem::feature(self.id, rule, detail));
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        match self.props.remove(key) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    fn required_str(&mut self, key: &str) -> Option<String> {
        match self.take(key) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.problem(
                    Rule::InvalidValue,
                    format!("`{key}` must be a string, found {}", json_type(&other)),
                );
                None
            }
            None => {
                self.missing(key);
                None
            }
        }
    }

    fn optional_str(&mut self, key: &str) -> Option<String> {
        match self.take(key) {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.problem(
                    Rule::InvalidValue,
                    format!("`{key}` must be a string, found {}", json_type(&other)),
                );
                None
            }
            None => None,
        }
    }

    fn reference(&mut self, key: &str, field: RefField) {
        let target = match self.take(key) {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                self.problem(
                    Rule::InvalidValue,
                    format!(
                        "`{key}` must be an id (a string), found {}",
                        json_type(&other)
                    ),
                );
                return;
            }
            None => {
                self.missing(key);
                return;
            }
        };
        let target = match self.ids.get(target.as_str()) {
            Some(found) => RefTarget::Found(*found),
            None => RefTarget::Named(target.into()),
        };
        self.refs.push(PendingRef {
            owner: self.this,
            field,
            target,
        });
    }

    /// A number: `Ok(None)` when absent, `Err(())` when present but not a number
    /// (the problem is already recorded).
    fn number(&mut self, key: &str) -> Result<Option<f64>, ()> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s))
                if matches!(
                    s.trim().to_ascii_lowercase().as_str(),
                    "nan" | "inf" | "-inf" | "infinity" | "-infinity"
                ) =>
            {
                self.problem(
                    Rule::NonFinite,
                    format!("`{key}` is {s}: the spec requires a finite number"),
                );
                Err(())
            }
            Some(other) => {
                self.problem(
                    Rule::InvalidValue,
                    format!("`{key}` must be a number, found {}", json_type(&other)),
                );
                Err(())
            }
        }
    }

    fn checked(&mut self, key: &str, value: f64, positive: bool) -> f64 {
        if !value.is_finite() {
            self.problem(
                Rule::NonFinite,
                format!("`{key}` is {value}: the spec requires a finite number"),
            );
            return 0.0;
        }
        if value < 0.0 {
            self.problem(
                Rule::NegativeValue,
                format!("`{key}` is {value}: it must not be negative"),
            );
            return 0.0;
        }
        if positive && value == 0.0 {
            self.problem(
                Rule::NegativeValue,
                format!("`{key}` is 0: a rating or voltage must be greater than zero"),
            );
        }
        value
    }

    fn missing(&mut self, key: &str) {
        self.problem(
            Rule::MissingProperty,
            format!("missing required property `{key}`"),
        );
    }

    /// A required (or defaulted) number that must be greater than zero: ratings, kV.
    fn positive(&mut self, key: &str, default: Option<f64>) -> f64 {
        match (self.number(key), default) {
            (Ok(Some(v)), _) => self.checked(key, v, true),
            (Ok(None), Some(d)) => d,
            (Ok(None), None) => {
                self.missing(key);
                0.0
            }
            (Err(()), _) => 0.0,
        }
    }

    fn optional_positive(&mut self, key: &str) -> Option<f64> {
        let v = self.number(key).ok().flatten()?;
        Some(self.checked(key, v, true))
    }

    /// A required number that may be zero: impedances.
    fn non_negative(&mut self, key: &str) -> f64 {
        match self.number(key) {
            Ok(Some(v)) => self.checked(key, v, false),
            Ok(None) => {
                self.missing(key);
                0.0
            }
            Err(()) => 0.0,
        }
    }

    fn optional_non_negative(&mut self, key: &str) -> Option<f64> {
        let v = self.number(key).ok().flatten()?;
        Some(self.checked(key, v, false))
    }

    fn count(&mut self, key: &str) -> u32 {
        match self.take(key) {
            None => 0,
            Some(Value::Number(n)) => match n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|v| v.fract() == 0.0 && *v >= 0.0 && *v <= u32::MAX as f64)
                    .map(|v| v as u64)
            }) {
                Some(v) if v <= u32::MAX as u64 => v as u32,
                _ => {
                    self.problem(
                        Rule::InvalidValue,
                        format!("`{key}` is {n}: it must be a whole number, 0 or more"),
                    );
                    0
                }
            },
            Some(other) => {
                self.problem(
                    Rule::InvalidValue,
                    format!(
                        "`{key}` must be a whole number, found {}",
                        json_type(&other)
                    ),
                );
                0
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.take(key) {
            None => default,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                self.problem(
                    Rule::InvalidValue,
                    format!("`{key}` must be true or false, found {}", json_type(&other)),
                );
                default
            }
        }
    }

    fn generation_source(&mut self) -> GenerationSource {
        match self.optional_str("source") {
            Some(s) => GenerationSource::parse(&s).unwrap_or_else(|| {
                self.problem(
                    Rule::InvalidValue,
                    format!("`source` \"{s}\" is none of pv, wind, storage, other"),
                );
                GenerationSource::Pv
            }),
            None => GenerationSource::Pv,
        }
    }

    fn generator_status(&mut self) -> GeneratorStatus {
        match self.optional_str("status") {
            Some(s) => GeneratorStatus::parse(&s).unwrap_or_else(|| {
                self.problem(
                    Rule::InvalidValue,
                    format!("`status` \"{s}\" is none of connected, queued"),
                );
                GeneratorStatus::Connected
            }),
            None => GeneratorStatus::Connected,
        }
    }

    fn node_type(&mut self) -> NodeType {
        match self.required_str("node_type") {
            Some(t) => NodeType::parse(&t).unwrap_or_else(|| {
                self.problem(
                    Rule::InvalidValue,
                    format!(
                        "`node_type` \"{t}\" is none of busbar, pole, ring_main_unit, switching_station, cable_branch_box, junction"
                    ),
                );
                NodeType::Junction
            }),
            None => NodeType::Junction,
        }
    }

    fn geometry(
        &mut self,
        geometry: Option<serde_json::Result<geojson::Geometry>>,
        wanted: &str,
        required: bool,
    ) -> Option<geojson::GeometryValue> {
        match geometry {
            Some(Ok(g)) => Some(g.value),
            Some(Err(e)) => {
                self.problem(Rule::BadGeometry, format!("the geometry is malformed: {e}"));
                None
            }
            None if required => {
                self.problem(
                    Rule::BadGeometry,
                    format!("a {} needs a {wanted} geometry, found null", self.this.kind),
                );
                None
            }
            None => None,
        }
    }

    fn position(&mut self, p: &geojson::Position) -> Option<LonLat> {
        let s = p.as_slice();
        if s.len() < 2 {
            self.problem(
                Rule::BadGeometry,
                "a position needs longitude and latitude".into(),
            );
            return None;
        }
        let at = LonLat::new(s[0], s[1]);
        if !at.is_valid() {
            self.problem(
                Rule::CoordinatesOutOfRange,
                format!(
                    "coordinates [{}, {}] are outside [-180, 180] x [-90, 90]",
                    s[0], s[1]
                ),
            );
            return None;
        }
        Some(at)
    }

    fn point(
        &mut self,
        geometry: Option<serde_json::Result<geojson::Geometry>>,
        required: bool,
    ) -> Option<LonLat> {
        match self.geometry(geometry, "Point", required)? {
            geojson::GeometryValue::Point { coordinates } => self.position(&coordinates),
            other => {
                self.problem(
                    Rule::BadGeometry,
                    format!(
                        "a {} needs a Point geometry, found {}",
                        self.this.kind,
                        other.type_name()
                    ),
                );
                None
            }
        }
    }

    fn line_string(
        &mut self,
        geometry: Option<serde_json::Result<geojson::Geometry>>,
    ) -> Vec<LonLat> {
        match self.geometry(geometry, "LineString", true) {
            Some(geojson::GeometryValue::LineString { coordinates }) => {
                if coordinates.len() < 2 {
                    self.problem(
                        Rule::BadGeometry,
                        "a LineString needs at least two positions".into(),
                    );
                }
                coordinates
                    .iter()
                    .filter_map(|p| self.position(p))
                    .collect()
            }
            Some(other) => {
                self.problem(
                    Rule::BadGeometry,
                    format!(
                        "a segment needs a LineString geometry, found {}",
                        other.type_name()
                    ),
                );
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// The properties nobody read, kept for export.
    fn finish(self) -> ExtraProperties {
        let unread = self.props.into_unread();
        (!unread.is_empty()).then(|| Box::new(unread))
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Geodesic (WGS84 ellipsoid) length of a polyline, metres.
pub fn geodesic_length_m(line: &[LonLat]) -> f64 {
    if line.len() < 2 {
        return 0.0;
    }
    let ls: geo::LineString<f64> = line
        .iter()
        .map(|p| geo::coord! { x: p.lon, y: p.lat })
        .collect();
    Geodesic.length(&ls)
}

/// Writes a network as a gridpack `network.geojson`, one feature per line.
pub fn write_network(network: &Network, out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
    let mut first = true;
    let mut emit = |out: &mut dyn Write, geometry: OutGeometry<'_>, props: Value| {
        if !first {
            out.write_all(b",\n")?;
        }
        first = false;
        serde_json::to_writer(
            &mut *out,
            &OutFeature {
                ty: "Feature",
                geometry,
                properties: props,
            },
        )
        .map_err(std::io::Error::other)
    };
    use serde_json::json;
    let node_id = |ix: NodeIx| network.nodes[ix.get()].id.as_str();
    for s in &network.substations {
        let props = with_extra(
            json!({"kind": "substation", "id": s.id, "name": s.name, "hv_kv": s.hv_kv, "mv_kv": s.mv_kv}),
            &s.extra,
        );
        emit(out, OutGeometry::point(Some(s.position)), props)?;
    }
    for t in &network.substation_transformers {
        let props = with_extra(
            json!({"kind": "substation_transformer", "id": t.id, "name": t.name,
                "substation": network.substations[t.substation.get()].id,
                "rated_kva": t.rated_kva, "bus": node_id(t.bus), "in_service": t.in_service}),
            &t.extra,
        );
        emit(out, OutGeometry::point(t.position), props)?;
    }
    for n in &network.nodes {
        let mut props = json!({"kind": "node", "id": n.id, "name": n.name, "kv": n.kv,
            "node_type": n.node_type.as_str(), "spare_bays": n.spare_bays, "in_service": n.in_service});
        if let Some(s) = n.substation {
            props["substation"] = json!(network.substations[s.get()].id);
        }
        emit(
            out,
            OutGeometry::point(Some(n.position)),
            with_extra(props, &n.extra),
        )?;
    }
    for s in &network.segments {
        let mut props = json!({"kind": "segment", "id": s.id, "name": s.name,
            "from": node_id(s.from), "to": node_id(s.to), "kv": s.kv,
            "r_ohm_per_km": s.r_ohm_per_km, "x_ohm_per_km": s.x_ohm_per_km,
            "rated_a": s.rated_a, "in_service": s.in_service});
        if s.length_given {
            props["length_m"] = json!(s.length_m);
        }
        emit(
            out,
            OutGeometry::LineString {
                coordinates: &s.geometry,
            },
            with_extra(props, &s.extra),
        )?;
    }
    for s in &network.switches {
        let props = with_extra(
            json!({"kind": "switch", "id": s.id, "name": s.name, "from": node_id(s.from),
                "to": node_id(s.to), "normally_open": s.normally_open, "kv": s.kv}),
            &s.extra,
        );
        emit(out, OutGeometry::point(s.position), props)?;
    }
    for f in &network.feeders {
        let props = with_extra(
            json!({"kind": "feeder", "id": f.id, "name": f.name, "head_node": node_id(f.head_node),
                "first_node": node_id(f.first_node), "rated_a": f.rated_a}),
            &f.extra,
        );
        emit(out, OutGeometry::point(f.position), props)?;
    }
    for t in &network.transformers {
        let props = with_extra(
            json!({"kind": "transformer", "id": t.id, "name": t.name, "node": node_id(t.node),
                "rated_kva": t.rated_kva, "public": t.public, "lv_kv": t.lv_kv,
                "in_service": t.in_service}),
            &t.extra,
        );
        emit(out, OutGeometry::point(Some(t.position)), props)?;
    }
    for g in &network.generators {
        let point = match g.point {
            GeneratorPoint::Node(n) => node_id(n),
            GeneratorPoint::Transformer(t) => network.transformers[t.get()].id.as_str(),
        };
        let props = with_extra(
            json!({"kind": "generator", "id": g.id, "name": g.name, "node": point,
                "rated_kw": g.rated_kw, "source": g.source.as_str(),
                "status": g.status.as_str(), "in_service": g.in_service}),
            &g.extra,
        );
        emit(out, OutGeometry::point(Some(g.position)), props)?;
    }
    out.write_all(b"\n]}\n")
}

/// Drops nulls (absent optional properties) and adds the properties kept from the source.
fn with_extra(mut props: Value, extra: &ExtraProperties) -> Value {
    if let Value::Object(map) = &mut props {
        map.retain(|_, v| !v.is_null());
        if let Some(extra) = extra {
            for (k, v) in extra.iter() {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    props
}

#[derive(Serialize)]
struct OutFeature<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    geometry: OutGeometry<'a>,
    properties: Value,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum OutGeometry<'a> {
    Point {
        #[serde(serialize_with = "ser_position")]
        coordinates: LonLat,
    },
    LineString {
        #[serde(serialize_with = "ser_positions")]
        coordinates: &'a [LonLat],
    },
    #[serde(untagged)]
    Null(()),
}

impl OutGeometry<'_> {
    fn point(p: Option<LonLat>) -> Self {
        match p {
            Some(coordinates) => OutGeometry::Point { coordinates },
            None => OutGeometry::Null(()),
        }
    }
}

fn ser_position<S: serde::Serializer>(p: &LonLat, s: S) -> Result<S::Ok, S::Error> {
    [p.lon, p.lat].serialize(s)
}

fn ser_positions<S: serde::Serializer>(ps: &&[LonLat], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(ps.len()))?;
    for p in ps.iter() {
        seq.serialize_element(&[p.lon, p.lat])?;
    }
    seq.end()
}
