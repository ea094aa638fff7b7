//! Spatial index over connection nodes and distribution transformers.
//!
//! Positions are indexed as points on a sphere (see [`geodesy::to_sphere`]), so a
//! radius query is a ball query in the R-tree with no projection and no seams at the
//! antimeridian or the poles. The sphere differs from the ellipsoid by under 0.7 %;
//! the ball is widened by that much and each hit's geodesic distance decides.

use rstar::primitives::GeomWithData;
use rstar::{AABB, PointDistance, RTree, RTreeNode, RTreeObject, RTreeParams};

use crate::geodesy::{self, Prepared};
use crate::ids::{NodeIx, TransformerIx};
use crate::model::{LonLat, Network};

/// Widening of the search ball for the sphere-to-ellipsoid difference.
const ELLIPSOID_MARGIN: f64 = 1.007;

/// What a filter looks at.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Attributes {
    index: u32,
    kv: f32,
    in_service: bool,
}

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

/// Leaf groups of the R-tree: a city-scale radius query returns over a thousand
/// assets, and walking them one R-tree leaf at a time costs about 100 ns each.
/// Instead the tree indexes buckets of nearby points (the leaf groups of an R-tree
/// bulk load), and a query scans each bucket's points as flat arrays.
#[derive(Clone, Copy, Debug)]
struct BucketParams;

impl RTreeParams for BucketParams {
    const MIN_SIZE: usize = 10;
    const MAX_SIZE: usize = 32;
    const REINSERTION_COUNT: usize = 8;
    type DefaultInsertionStrategy = rstar::RStarInsertionStrategy;
}

/// A group of points, `start..end` in the layer's arrays, and their bounding box.
#[derive(Clone, Debug)]
struct Bucket {
    envelope: AABB<[f64; 3]>,
    start: u32,
    end: u32,
}

impl RTreeObject for Bucket {
    type Envelope = AABB<[f64; 3]>;

    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

impl PointDistance for Bucket {
    fn distance_2(&self, point: &[f64; 3]) -> f64 {
        self.envelope.distance_2(point)
    }
}

/// One indexed point: everything a query reads of it, in one cache-friendly record.
#[derive(Clone, Copy, Debug)]
struct Point {
    sphere: [f64; 3],
    prepared: Prepared,
    attributes: Attributes,
}

/// The assets of one kind: points grouped by bucket, with their attributes.
#[derive(Clone, Debug)]
struct Layer {
    buckets: RTree<Bucket, BucketParams>,
    points: Vec<Point>,
}

impl Layer {
    fn new(points: Vec<(LonLat, Attributes)>) -> Self {
        let grouping: RTree<GeomWithData<[f64; 3], u32>, BucketParams> =
            RTree::bulk_load_with_params(
                points
                    .iter()
                    .enumerate()
                    .map(|(i, (at, _))| GeomWithData::new(geodesy::to_sphere(*at), i as u32))
                    .collect(),
            );
        let mut layer = Layer {
            buckets: RTree::new_with_params(),
            points: Vec::with_capacity(points.len()),
        };
        let mut buckets = Vec::new();
        let mut stack = vec![grouping.root()];
        while let Some(parent) = stack.pop() {
            let start = layer.points.len() as u32;
            for child in parent.children() {
                match child {
                    RTreeNode::Leaf(leaf) => {
                        let (at, attributes) = points[leaf.data as usize];
                        layer.points.push(Point {
                            sphere: *leaf.geom(),
                            prepared: Prepared::new(at),
                            attributes,
                        });
                    }
                    RTreeNode::Parent(p) => stack.push(p),
                }
            }
            let end = layer.points.len() as u32;
            if end > start {
                let envelope = AABB::from_points(
                    layer.points[start as usize..end as usize]
                        .iter()
                        .map(|p| &p.sphere),
                );
                buckets.push(Bucket {
                    envelope,
                    start,
                    end,
                });
            }
        }
        layer.buckets = RTree::bulk_load_with_params(buckets);
        layer
    }

    fn within(&self, at: LonLat, radius_m: f64, filter: &Filter, out: &mut Vec<Hit<u32>>) {
        let centre = geodesy::to_sphere(at);
        let metric = geodesy::QueryMetric::new(at);
        let chord = geodesy::chord_for_distance_m(radius_m * ELLIPSOID_MARGIN) + 1.0;
        let chord_2 = chord * chord;
        for bucket in self.buckets.locate_within_distance(centre, chord_2) {
            for point in &self.points[bucket.start as usize..bucket.end as usize] {
                let p = &point.sphere;
                let d2 = (p[0] - centre[0]).powi(2)
                    + (p[1] - centre[1]).powi(2)
                    + (p[2] - centre[2]).powi(2);
                if d2 > chord_2 {
                    continue;
                }
                let attributes = &point.attributes;
                if !filter.keeps(attributes) {
                    continue;
                }
                if let Some(d) = metric.within(&point.prepared, radius_m) {
                    out.push(Hit {
                        index: attributes.index,
                        distance_m: d,
                    });
                }
            }
        }
    }

    fn nearest(&self, at: LonLat, k: usize, filter: &Filter) -> Vec<Hit<u32>> {
        let centre = geodesy::to_sphere(at);
        let metric = geodesy::QueryMetric::new(at);
        // (approximate distance, position in `points`), nearest first.
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
        if k == 0 {
            return Vec::new();
        }
        // Buckets come nearest box first; sphere and ellipsoid order can differ a
        // little, so stop only when a box is surely farther than the k-th found.
        for (bucket, box_2) in self.buckets.nearest_neighbor_iter_with_distance_2(&centre) {
            if best.len() == k {
                let kth = best[k - 1].0;
                let reach = geodesy::chord_for_distance_m(kth * ELLIPSOID_MARGIN) + 1.0;
                if box_2 > reach * reach {
                    break;
                }
            }
            for i in bucket.start as usize..bucket.end as usize {
                let point = &self.points[i];
                if !filter.keeps(&point.attributes) {
                    continue;
                }
                let d = metric.distance_m(&point.prepared);
                if best.len() == k && d >= best[k - 1].0 {
                    continue;
                }
                let pos = best.partition_point(|(other, _)| *other <= d);
                best.insert(pos, (d, i));
                best.truncate(k);
            }
        }
        // The few found are reported with exact distances.
        let from = Prepared::new(at);
        let mut hits: Vec<Hit<u32>> = best
            .into_iter()
            .map(|(_, i)| Hit {
                index: self.points[i].attributes.index,
                distance_m: from.distance_m(&self.points[i].prepared),
            })
            .collect();
        hits.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
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
                let attributes = Attributes {
                    index: i as u32,
                    kv: n.kv as f32,
                    in_service: n.in_service,
                };
                (n.position, attributes)
            })
            .collect();
        let transformers = network
            .transformers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let attributes = Attributes {
                    index: i as u32,
                    kv: t.lv_kv as f32,
                    in_service: t.in_service,
                };
                (t.position, attributes)
            })
            .collect();
        Self {
            nodes: Layer::new(nodes),
            transformers: Layer::new(transformers),
        }
    }

    /// Nodes within `radius_m` of `at`, in no particular order.
    pub fn nodes_within(&self, at: LonLat, radius_m: f64, filter: &Filter) -> Vec<Hit<NodeIx>> {
        typed(within(&self.nodes, at, radius_m, filter), NodeIx)
    }

    /// The `k` nearest nodes to `at`, nearest first.
    pub fn nearest_nodes(&self, at: LonLat, k: usize, filter: &Filter) -> Vec<Hit<NodeIx>> {
        typed(self.nodes.nearest(at, k, filter), NodeIx)
    }

    /// Distribution transformers within `radius_m` of `at` (filter `kv` is `lv_kv`).
    pub fn transformers_within(
        &self,
        at: LonLat,
        radius_m: f64,
        filter: &Filter,
    ) -> Vec<Hit<TransformerIx>> {
        typed(
            within(&self.transformers, at, radius_m, filter),
            TransformerIx,
        )
    }

    /// The `k` nearest distribution transformers to `at`, nearest first.
    pub fn nearest_transformers(
        &self,
        at: LonLat,
        k: usize,
        filter: &Filter,
    ) -> Vec<Hit<TransformerIx>> {
        typed(self.transformers.nearest(at, k, filter), TransformerIx)
    }
}

fn within(layer: &Layer, at: LonLat, radius_m: f64, filter: &Filter) -> Vec<Hit<u32>> {
    let mut raw = Vec::new();
    layer.within(at, radius_m, filter, &mut raw);
    raw
}

fn typed<I>(hits: Vec<Hit<u32>>, index: impl Fn(u32) -> I) -> Vec<Hit<I>> {
    hits.into_iter()
        .map(|h| Hit {
            index: index(h.index),
            distance_m: h.distance_m,
        })
        .collect()
}
