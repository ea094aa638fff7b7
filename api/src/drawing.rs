//! How the capacity map draws assets: a feeder as its segments joined into
//! lines, anything else as a point, with each asset's extent and display name.
//! Drawings are made once per network and kept in the service's state.

use std::sync::Arc;

use headroom_engine::Engine;
use headroom_geodata::{AssetKind, LonLat};
use serde_json::{Value, json};

use crate::state::{AppState, Drawn};

/// Degrees to 6 decimals (about 0.1 m): full `f64` digits would nearly double
/// a city's map document for nothing.
pub(crate) fn map_coordinates(p: LonLat) -> [f64; 2] {
    let round = |v: f64| (v * 1e6).round() / 1e6;
    [round(p.lon), round(p.lat)]
}

/// Geometry of an asset for the map: a feeder's segments, a point otherwise;
/// with the points to test against a bounding box.
fn geometry(engine: &Engine, id: &str) -> Option<(Value, Vec<LonLat>)> {
    let network = &engine.network;
    let asset = network.lookup(id)?;
    let point = |p: LonLat| {
        (
            json!({"type": "Point", "coordinates": map_coordinates(p)}),
            vec![p],
        )
    };
    match asset.kind {
        AssetKind::Feeder => {
            let tree = engine
                .topology
                .tree(headroom_geodata::FeederIx::from_usize(asset.index as usize));
            let lines = feeder_lines(network, tree);
            let points = lines.iter().flatten().copied().collect();
            let lines: Vec<Vec<[f64; 2]>> = lines
                .into_iter()
                .map(|line| line.into_iter().map(map_coordinates).collect())
                .collect();
            Some((
                json!({"type": "MultiLineString", "coordinates": lines}),
                points,
            ))
        }
        AssetKind::Transformer => Some(point(network.transformers[asset.index as usize].position)),
        AssetKind::Substation => Some(point(network.substations[asset.index as usize].position)),
        _ => None,
    }
}

/// An asset's drawing for the map, made once per network.
pub(crate) fn drawn(state: &AppState, engine: &Engine, id: &str) -> Option<Arc<Drawn>> {
    state.drawing(&engine.network, id, || {
        let (geometry, points) = geometry(engine, id)?;
        Some(Drawn {
            geometry_json: geometry.to_string(),
            points,
        })
    })
}

/// Where an asset lies, `[W, S, E, N]`: its points, a feeder's segments, a
/// segment's or switch's ends.
pub(crate) fn extent(state: &AppState, engine: &Engine, id: &str) -> Option<[f64; 4]> {
    let network = &engine.network;
    let asset = network.lookup(id)?;
    let i = asset.index as usize;
    let points = match asset.kind {
        AssetKind::Feeder | AssetKind::Transformer | AssetKind::Substation => {
            drawn(state, engine, id)?.points.clone()
        }
        AssetKind::Node => vec![network.nodes[i].position],
        AssetKind::Generator => vec![network.generators[i].position],
        AssetKind::Segment => network.segments[i].geometry.clone(),
        AssetKind::Switch => {
            let s = &network.switches[i];
            vec![network.node(s.from).position, network.node(s.to).position]
        }
        AssetKind::SubstationTransformer => {
            let t = &network.substation_transformers[i];
            vec![
                t.position
                    .unwrap_or(network.substations[t.substation.get()].position),
            ]
        }
    };
    bounds(points)
}

/// `[W, S, E, N]` of some points; `None` for none.
pub(crate) fn bounds(points: impl IntoIterator<Item = LonLat>) -> Option<[f64; 4]> {
    points.into_iter().fold(None, |acc, p| {
        Some(match acc {
            None => [p.lon, p.lat, p.lon, p.lat],
            Some([w, s, e, n]) => [w.min(p.lon), s.min(p.lat), e.max(p.lon), n.max(p.lat)],
        })
    })
}

/// A feeder's segments joined into lines, each running on from a node along
/// its first branch: a city's feeders come to half the points and a fraction
/// of the parts of one line per segment, which the map draws much faster.
fn feeder_lines(
    network: &headroom_geodata::Network,
    tree: &headroom_geodata::FeederTree,
) -> Vec<Vec<LonLat>> {
    // `node_count` leaves the busbar out; the locals run over every node.
    let mut children = vec![Vec::new(); tree.nodes.len()];
    for local in 1..tree.nodes.len() {
        children[tree.parent[local] as usize].push(local);
    }
    let mut lines: Vec<Vec<LonLat>> = Vec::new();
    // (node, the line that ends at it)
    let mut pending: Vec<(usize, Option<usize>)> = vec![(0, None)];
    while let Some((node, ending_here)) = pending.pop() {
        let at = network.node(tree.nodes[node]).position;
        for (k, &child) in children[node].iter().enumerate() {
            let Some(headroom_geodata::Branch::Segment(s)) = tree.inbound[child] else {
                // A closed switch has no length to draw.
                pending.push((child, None));
                continue;
            };
            let mut piece = network.segment(s).geometry.clone();
            if piece.last() == Some(&at) && piece.first() != Some(&at) {
                piece.reverse();
            }
            let line = match ending_here.filter(|_| k == 0) {
                Some(i) if lines[i].last() == piece.first() => {
                    lines[i].extend_from_slice(&piece[1..]);
                    i
                }
                _ => {
                    lines.push(piece);
                    lines.len() - 1
                }
            };
            pending.push((child, Some(line)));
        }
    }
    lines
}

/// An asset's display name, where the network gives one.
pub(crate) fn asset_name(engine: &Engine, id: &str) -> Option<String> {
    let network = &engine.network;
    network.name_of(network.lookup(id)?).map(str::to_owned)
}
