//! Capacity rows for publication: CSV (one line per asset, a fixed column
//! order, ids and names quoted as CSV requires) and GeoJSON (one feature per
//! asset: a feeder as the lines of its segments, a transformer or substation
//! as its point), as utilities publish open capacity and hosting maps.

use headroom_geodata::{AssetKind, Branch, FeederIx, LonLat};
use serde_json::{Value, json};

use crate::capacity::CapacityRow;
use crate::engine::Engine;

/// The CSV header, in the order every line follows.
pub const CSV_COLUMNS: [&str; 17] = [
    "id",
    "name",
    "kind",
    "rated",
    "peak_kva",
    "p95_kva",
    "loading_pct",
    "reserved_kw",
    "headroom_kw",
    "binding_constraint",
    "worst_node_headroom_kw",
    "worst_node",
    "data_age_s",
    "metered_share",
    "generation_headroom_kw",
    "generation_open_kw",
    "grade",
];

/// An asset's display name, where the network gives one.
fn name_of(engine: &Engine, row: &CapacityRow) -> Option<String> {
    let network = &engine.network;
    network.name_of(network.lookup(&row.id)?).map(str::to_owned)
}

/// The rows as CSV, header first.
pub fn capacity_csv(engine: &Engine, rows: &[CapacityRow]) -> Vec<u8> {
    let mut out = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    let number = |v: f64| v.to_string();
    let optional = |v: Option<f64>| v.map(number).unwrap_or_default();
    // Writing to memory cannot fail.
    let _ = out.write_record(CSV_COLUMNS);
    for r in rows {
        let _ = out.write_record([
            r.id.clone(),
            name_of(engine, r).unwrap_or_default(),
            r.kind.to_owned(),
            number(r.rated),
            number(r.peak_kva),
            number(r.p95_kva),
            number(r.loading_pct),
            number(r.reserved_kw),
            number(r.headroom_kw),
            r.binding_constraint.as_str().to_owned(),
            optional(r.worst_node_headroom_kw),
            r.worst_node.clone().unwrap_or_default(),
            optional(r.data_age_s),
            number(r.metered_share),
            number(r.generation_headroom_kw),
            number(r.generation_open_kw),
            r.grade.as_str().to_owned(),
        ]);
    }
    out.into_inner().unwrap_or_default()
}

fn position(p: LonLat) -> Value {
    json!([p.lon, p.lat])
}

/// Where an asset lies: a feeder's segments, a transformer's or substation's
/// point; `null` where the network has no geometry for it.
fn geometry_of(engine: &Engine, id: &str) -> Value {
    let Some(asset) = engine.network.lookup(id) else {
        return Value::Null;
    };
    let i = asset.index as usize;
    match asset.kind {
        AssetKind::Feeder => {
            let tree = engine.topology.tree(FeederIx::from_usize(i));
            let lines: Vec<Value> = tree
                .inbound
                .iter()
                .filter_map(|b| match b {
                    Some(Branch::Segment(s)) => Some(Value::Array(
                        engine
                            .network
                            .segment(*s)
                            .geometry
                            .iter()
                            .map(|p| position(*p))
                            .collect(),
                    )),
                    _ => None,
                })
                .collect();
            if lines.is_empty() {
                Value::Null
            } else {
                json!({"type": "MultiLineString", "coordinates": lines})
            }
        }
        AssetKind::Transformer => {
            json!({"type": "Point", "coordinates": position(engine.network.transformers[i].position)})
        }
        AssetKind::Substation => {
            json!({"type": "Point", "coordinates": position(engine.network.substations[i].position)})
        }
        _ => Value::Null,
    }
}

/// The rows as a GeoJSON FeatureCollection, each row's fields (and the
/// asset's name) its properties.
pub fn capacity_geojson(engine: &Engine, rows: &[CapacityRow]) -> Value {
    let features: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut properties = serde_json::to_value(r).unwrap_or(Value::Null);
            if let (Value::Object(map), Some(name)) = (&mut properties, name_of(engine, r)) {
                map.insert("name".to_owned(), Value::String(name));
            }
            json!({
                "type": "Feature",
                "id": r.id,
                "geometry": geometry_of(engine, &r.id),
                "properties": properties,
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}
