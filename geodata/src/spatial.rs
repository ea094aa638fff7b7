//! Spatial index over connection nodes and distribution transformers.
//!
//! Positions are indexed as points on a sphere (see [`geodesy::to_sphere`]), so a
//! radius query is a ball query in the R-tree with no projection and no seams at the
//! antimeridian or the poles. The sphere differs from the ellipsoid by under 0.7 %;
//! the ball is widened by that much and each hit's geodesic distance decides.

use rstar::primitives::GeomWithData;
use rstar::{PointDistance, RTree};

use crate::geodesy;
use crate::ids::{NodeIx, TransformerIx};
use crate::model::{LonLat, Network};

/// Widening of the search ball for the sphere-to-ellipsoid difference.
const ELLIPSOID_MARGIN: f64 = 1.007;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Attributes {
    index: u32,
    kv: f32,
    in_service: bool,
    position: LonLat,
}

type Entry = GeomWithData<[f64; 3], Attributes>;

/// What a query keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Filter {
    /// Keep only assets at this voltage (node `kv`, transformer `lv_kv`), within 1 %.
    pub kv: Option<f64>,
    /// Keep only assets in service.
    pub in_service_only: bool,
}

impl Filter {
    /// Assets in service at `kv`.
    pub const fn in_service_at(kv: f64) -> Self {
        Self {
            kv: Some(kv),
            in_service_only: true,
        }
    }

    fn keeps(&self, a: &Attributes) -> bool {
        (!self.in_service_only || a.in_service)
            && self
                .kv
                .is_none_or(|kv| (f64::from(a.kv) - kv).abs() <= 0.01 * kv.abs().max(1e-9))
    }
}

/// An asset found by a query, with its geodesic distance from the query point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit<I> {
    /// The asset.
    pub index: I,
    /// Geodesic distance, metres.
    pub distance_m: f64,
}

/// One R-tree of assets of a kind.
#[derive(Clone, Debug)]
struct Layer {
    tree: RTree<Entry>,
}

impl Layer {
    fn new(entries: Vec<Entry>) -> Self {
        Self {
            tree: RTree::bulk_load(entries),
        }
    }

    fn within(&self, at: LonLat, radius_m: f64, filter: &Filter, out: &mut Vec<Hit<u32>>) {
        let centre = geodesy::to_sphere(at);
        let chord = geodesy::chord_for_distance_m(radius_m * ELLIPSOID_MARGIN) + 1.0;
        for e in self.tree.locate_within_distance(centre, chord * chord) {
            if !filter.keeps(&e.data) {
                continue;
            }
            let d = geodesy::distance_m(at, e.data.position);
            if d <= radius_m {
                out.push(Hit {
                    index: e.data.index,
                    distance_m: d,
                });
            }
        }
    }

    fn nearest(&self, at: LonLat, k: usize, filter: &Filter) -> Vec<Hit<u32>> {
        let centre = geodesy::to_sphere(at);
        let mut hits: Vec<Hit<u32>> = Vec::with_capacity(k);
        // Sphere order and ellipsoid order can differ slightly: keep walking until
        // the next candidate is surely farther than the k-th found.
        for e in self.tree.nearest_neighbor_iter(&centre) {
            if !filter.keeps(&e.data) {
                continue;
            }
            let chord = e.distance_2(&centre).sqrt();
            if hits.len() >= k {
                let kth = hits[k - 1].distance_m;
                if geodesy::chord_for_distance_m(kth * ELLIPSOID_MARGIN) < chord / ELLIPSOID_MARGIN
                {
                    break;
                }
            }
            let d = geodesy::distance_m(at, e.data.position);
            let pos = hits.partition_point(|h| h.distance_m <= d);
            if pos < k {
                hits.insert(
                    pos,
                    Hit {
                        index: e.data.index,
                        distance_m: d,
                    },
                );
                hits.truncate(k);
            }
        }
        hits
    }
}

/// The spatial index of a network: medium-voltage nodes and distribution transformers.
#[derive(Clone, Debug)]
pub struct SpatialIndex {
    nodes: Layer,
    transformers: Layer,
}

impl SpatialIndex {
    /// Indexes every node and distribution transformer of the network.
    pub fn build(network: &Network) -> Self {
        let nodes = network
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Entry::new(
                    geodesy::to_sphere(n.position),
                    Attributes {
                        index: i as u32,
                        kv: n.kv as f32,
                        in_service: n.in_service,
                        position: n.position,
                    },
                )
            })
            .collect();
        let transformers = network
            .transformers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Entry::new(
                    geodesy::to_sphere(t.position),
                    Attributes {
                        index: i as u32,
                        kv: t.lv_kv as f32,
                        in_service: t.in_service,
                        position: t.position,
                    },
                )
            })
            .collect();
        Self {
            nodes: Layer::new(nodes),
            transformers: Layer::new(transformers),
        }
    }

    /// Nodes within `radius_m` of `at`, in no particular order.
    pub fn nodes_within(&self, at: LonLat, radius_m: f64, filter: &Filter) -> Vec<Hit<NodeIx>> {
        let mut raw = Vec::new();
        self.nodes.within(at, radius_m, filter, &mut raw);
        raw.into_iter()
            .map(|h| Hit {
                index: NodeIx(h.index),
                distance_m: h.distance_m,
            })
            .collect()
    }

    /// The `k` nearest nodes to `at`, nearest first.
    pub fn nearest_nodes(&self, at: LonLat, k: usize, filter: &Filter) -> Vec<Hit<NodeIx>> {
        self.nodes
            .nearest(at, k, filter)
            .into_iter()
            .map(|h| Hit {
                index: NodeIx(h.index),
                distance_m: h.distance_m,
            })
            .collect()
    }

    /// Distribution transformers within `radius_m` of `at` (filter `kv` is `lv_kv`).
    pub fn transformers_within(
        &self,
        at: LonLat,
        radius_m: f64,
        filter: &Filter,
    ) -> Vec<Hit<TransformerIx>> {
        let mut raw = Vec::new();
        self.transformers.within(at, radius_m, filter, &mut raw);
        raw.into_iter()
            .map(|h| Hit {
                index: TransformerIx(h.index),
                distance_m: h.distance_m,
            })
            .collect()
    }

    /// The `k` nearest distribution transformers to `at`, nearest first.
    pub fn nearest_transformers(
        &self,
        at: LonLat,
        k: usize,
        filter: &Filter,
    ) -> Vec<Hit<TransformerIx>> {
        self.transformers
            .nearest(at, k, filter)
            .into_iter()
            .map(|h| Hit {
                index: TransformerIx(h.index),
                distance_m: h.distance_m,
            })
            .collect()
    }
}
