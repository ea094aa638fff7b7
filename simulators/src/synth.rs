//! A synthetic city distribution grid, written as a gridpack.
//!
//! The city is a jittered lattice of 110/10 kV substations (two 40 MVA main
//! transformers, two 10 kV busbar sections with an open bus coupler). Each feeder
//! leaves a busbar section in its own direction as a trunk with laterals: cable
//! feeders (ring-main units, switching stations, branch boxes, joints) near the
//! centre and overhead feeders (poles) towards the edge, with conductor ratings and
//! impedances of common Chinese 10 kV types. Feeder ends meet a neighbouring feeder,
//! preferably of another substation, at a normally-open tie switch.
//!
//! Loads follow daily shapes per customer class ([`CustomerClass`]) with weekday and
//! weekend variants, day-to-day and quarter-hour noise. Every feeder is given a peak
//! loading drawn so that most feeders are comfortable and a realistic tail runs close
//! to its limit; the head readings are the sum of its transformers plus losses.
//!
//! PV is connected behind some transformers (their readings net of its output,
//! on clear to hazy days) and queued at some feeders' first nodes, so that the
//! open capacity for generation shows every grade (see `add_pv`).
//!
//! Every substation draws from its own random stream (seed, substation), so the grid
//! is the same for a seed whatever the number of threads.

use std::f64::consts::{PI, TAU};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use headroom_geodata::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::load_shapes::CustomerClass;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// Number of substations.
    pub substations: usize,
    /// Seed of every random draw.
    pub seed: u64,
    /// 10 kV feeders per substation.
    pub feeders_per_substation: usize,
    /// Mean distribution transformers per feeder.
    pub transformers_per_feeder: usize,
    /// Mean nodes per feeder.
    pub nodes_per_feeder: usize,
    /// Share of distribution transformers with readings, in [0, 1].
    pub metered_share: f64,
    /// Days of 15-minute readings.
    pub days: u32,
    /// First reading's timestamp.
    pub start: DateTime<Utc>,
    /// Centre of the city.
    pub centre: LonLat,
    /// Distance between neighbouring substations, metres.
    pub substation_spacing_m: f64,
    /// Write `readings.csv.gz` (true), `readings.csv` (false), or decide by size (None).
    pub compress_readings: Option<bool>,
}

impl SynthConfig {
    /// The default city for benches: 200 substations, 3,000 feeders, about 60,000
    /// distribution transformers and 300,000 nodes, 7 days of readings.
    pub fn city(substations: usize, seed: u64) -> Self {
        Self {
            substations,
            seed,
            feeders_per_substation: 15,
            transformers_per_feeder: 20,
            nodes_per_feeder: 100,
            metered_share: 0.8,
            days: 7,
            // A Monday, so a week has five weekdays then a weekend.
            start: DateTime::parse_from_rfc3339("2026-07-06T00:00:00Z")
                .expect("valid constant")
                .with_timezone(&Utc),
            centre: LonLat::new(117.23, 31.82),
            substation_spacing_m: 3_000.0,
            compress_readings: None,
        }
    }

    fn check(&self) -> Result<(), SynthError> {
        let bad = |field: &'static str, why: &'static str| Err(SynthError::Config { field, why });
        if self.substations == 0 {
            return bad("substations", "must be at least 1");
        }
        if self.feeders_per_substation == 0 {
            return bad("feeders_per_substation", "must be at least 1");
        }
        if self.nodes_per_feeder < 4 {
            return bad("nodes_per_feeder", "must be at least 4");
        }
        if !(0.0..=1.0).contains(&self.metered_share) {
            return bad("metered_share", "must be between 0 and 1");
        }
        if !self.centre.is_valid() {
            return bad("centre", "must be a valid WGS84 position");
        }
        Ok(())
    }

    fn steps(&self) -> usize {
        self.days as usize * 96
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self::city(200, 1)
    }
}

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A setting out of range.
    #[error("synthetic grid setting `{field}` {why}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What it must be.
        why: &'static str,
    },
    /// Writing the gridpack failed.
    #[error("{}: cannot be written: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The generated network broke a rule of the spec (a bug in the generator).
    #[error("the generated network is invalid: {0}")]
    Invalid(String),
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSummary {
    /// The network file.
    pub network_file: PathBuf,
    /// The readings file.
    pub readings_file: PathBuf,
    /// Assets by kind.
    pub counts: Vec<(AssetKind, usize)>,
    /// Readings rows written.
    pub readings_rows: u64,
}

/// How a synthetic distribution transformer draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformerLoad {
    /// Customer class, which picks the daily shape.
    pub class: CustomerClass,
    /// Weekday peak active power, kW.
    pub peak_kw: f64,
    /// Power factor (lagging).
    pub power_factor: f64,
    /// Shift of the shape, quarter-hours, for diversity between customers.
    pub shift: i32,
    /// Whether readings of it are written.
    pub metered: bool,
    /// Rated kW of the PV connected behind it (0 for none): its readings are
    /// net of that PV's output.
    pub pv_kw: f64,
}

/// A synthetic network with the loads behind its readings.
#[derive(Clone, Debug)]
pub struct SyntheticGrid {
    /// The network.
    pub network: Network,
    /// Load of each distribution transformer, indexed like `network.transformers`.
    pub loads: Vec<TransformerLoad>,
    /// Feeders of each substation transformer's busbar, for its readings.
    substation_feeders: Vec<Vec<FeederIx>>,
    /// Feeder of each distribution transformer (None: on a busbar).
    transformer_feeder: Vec<Option<FeederIx>>,
    /// Per substation: its transformers, feeders and distribution transformers.
    blocks: Vec<SubstationBlock>,
}

#[derive(Clone, Debug, Default)]
struct SubstationBlock {
    substation_transformers: Vec<SubstationTransformerIx>,
    feeders: Vec<FeederIx>,
    transformers: Vec<TransformerIx>,
}

/// Generates the network and its loads in memory.
pub fn synthetic_grid(config: &SynthConfig) -> Result<SyntheticGrid, SynthError> {
    config.check()?;
    let locals: Vec<LocalSubstation> = (0..config.substations)
        .into_par_iter()
        .map(|s| generate_substation(config, s))
        .collect();
    let mut merged = Merged::default();
    for local in locals {
        merged.absorb(local);
    }
    add_ties(config, &mut merged);
    let Merged {
        parts,
        loads,
        blocks,
        substation_feeders,
        transformer_feeder,
        ..
    } = merged;
    let network = Network::new(parts).map_err(|problems| {
        SynthError::Invalid(
            problems
                .iter()
                .take(5)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    Ok(SyntheticGrid {
        network,
        loads,
        substation_feeders,
        transformer_feeder,
        blocks,
    })
}

/// Writes a synthetic gridpack (`network.geojson` and readings) into `dir`.
pub fn write_synthetic_gridpack(
    dir: &Path,
    config: &SynthConfig,
) -> Result<SynthSummary, SynthError> {
    let grid = synthetic_grid(config)?;
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| SynthError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let network_file = dir.join("network.geojson");
    {
        let file = File::create(&network_file).map_err(write_err(&network_file))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        write_network(&grid.network, &mut out)
            .and_then(|()| out.flush())
            .map_err(write_err(&network_file))?;
    }
    let estimated_bytes = grid.estimated_readings_bytes(config);
    let compress = config
        .compress_readings
        .unwrap_or(estimated_bytes > 200 << 20);
    let readings_file = dir.join(if compress {
        "readings.csv.gz"
    } else {
        "readings.csv"
    });
    // A stale file of the other form would be read instead of ours.
    for stale in ["readings.csv", "readings.csv.gz"] {
        let p = dir.join(stale);
        if p != readings_file && p.exists() {
            std::fs::remove_file(&p).map_err(write_err(&p))?;
        }
    }
    let readings_rows = grid
        .write_readings(config, &readings_file, compress)
        .map_err(write_err(&readings_file))?;
    Ok(SynthSummary {
        network_file,
        readings_file,
        counts: AssetKind::ALL
            .into_iter()
            .map(|k| (k, grid.network.count(k)))
            .collect(),
        readings_rows,
    })
}

/// Local east/north metres from the city centre.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Xy {
    x: f64,
    y: f64,
}

impl Xy {
    fn step(self, length: f64, angle: f64) -> Xy {
        Xy {
            x: self.x + length * angle.cos(),
            y: self.y + length * angle.sin(),
        }
    }

    fn to_lonlat(self, centre: LonLat) -> LonLat {
        const R: f64 = 6_371_000.0;
        LonLat::new(
            centre.lon + (self.x / (R * centre.lat.to_radians().cos())).to_degrees(),
            centre.lat + (self.y / R).to_degrees(),
        )
    }

    fn norm(self) -> f64 {
        self.x.hypot(self.y)
    }
}

/// Conductor types: (r ohm/km, x ohm/km, rated A).
const CABLE_TRUNK: [(f64, f64, f64); 2] = [(0.0601, 0.069, 480.0), (0.0754, 0.071, 420.0)];
const CABLE_LATERAL: [(f64, f64, f64); 2] = [(0.153, 0.077, 290.0), (0.268, 0.083, 215.0)];
const OVERHEAD_TRUNK: [(f64, f64, f64); 2] = [(0.125, 0.34, 520.0), (0.164, 0.35, 450.0)];
const OVERHEAD_LATERAL: [(f64, f64, f64); 2] = [(0.320, 0.37, 290.0), (0.443, 0.38, 230.0)];
const CABLE_KVA: [f64; 8] = [315.0, 400.0, 500.0, 630.0, 800.0, 1000.0, 1250.0, 1600.0];
const OVERHEAD_KVA: [f64; 7] = [50.0, 100.0, 160.0, 200.0, 250.0, 315.0, 400.0];
const MV_KV: f64 = 10.0;

/// One substation's assets with indices local to it.
struct LocalSubstation {
    parts: NetworkParts,
    loads: Vec<TransformerLoad>,
    /// Per local feeder: its trunk-end node, its busbar section (0 or 1), cable or not.
    feeder_tails: Vec<(NodeIx, usize, bool)>,
    /// Per local node: its local feeder (None for busbars).
    node_feeder: Vec<Option<u32>>,
    /// Per local distribution transformer: its local feeder.
    transformer_feeder: Vec<Option<u32>>,
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn generate_substation(config: &SynthConfig, s: usize) -> LocalSubstation {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(s as u64 + 1);
    // PV draws from a stream of its own: the loads are those of a grid without it.
    let mut pv_rng = ChaCha8Rng::seed_from_u64(config.seed ^ PV_SEED);
    pv_rng.set_stream(s as u64 + 1);
    let side = (config.substations as f64).sqrt().ceil() as usize;
    let spacing = config.substation_spacing_m;
    let origin = Xy {
        x: ((s % side) as f64 - (side as f64 - 1.0) / 2.0) * spacing
            + rng.random_range(-0.25..0.25) * spacing,
        y: ((s / side) as f64 - (side as f64 - 1.0) / 2.0) * spacing
            + rng.random_range(-0.25..0.25) * spacing,
    };
    let city_radius = (side as f64 * spacing / 2.0).max(spacing);
    // 0 at the centre, 1 at the edge: cables and commerce in the centre.
    let remoteness = (origin.norm() / city_radius).min(1.0);
    let centre = config.centre;
    let sid = format!("S{:03}", s + 1);

    let mut parts = NetworkParts::default();
    let mut loads = Vec::new();
    let mut node_feeder = Vec::new();
    let mut transformer_feeder = Vec::new();
    let mut feeder_tails = Vec::new();
    parts.substations.push(Substation {
        id: SubstationId::new(sid.as_str()),
        name: format!("{sid} 110 kV substation"),
        position: origin.to_lonlat(centre),
        hv_kv: 110.0,
        mv_kv: MV_KV,
        extra: None,
    });
    for section in 0..2 {
        let at = origin.step(15.0, PI * section as f64);
        parts.nodes.push(Node {
            id: NodeId::new(format!("{sid}-B{}", section + 1)),
            name: Some(format!("{sid} 10 kV busbar section {}", section + 1)),
            position: at.to_lonlat(centre),
            kv: MV_KV,
            node_type: NodeType::Busbar,
            substation: Some(SubstationIx(0)),
            spare_bays: rng.random_range(0..=3),
            in_service: true,
            extra: None,
        });
        node_feeder.push(None);
        parts.substation_transformers.push(SubstationTransformer {
            id: SubstationTransformerId::new(format!("{sid}-TR{}", section + 1)),
            name: Some(format!("{sid} main transformer {}", section + 1)),
            position: Some(at.to_lonlat(centre)),
            substation: SubstationIx(0),
            rated_kva: 40_000.0,
            bus: NodeIx(section as u32),
            in_service: true,
            extra: None,
        });
    }
    // Sections run split: the bus coupler is normally open.
    parts.switches.push(Switch {
        id: SwitchId::new(format!("{sid}-BC")),
        name: Some(format!("{sid} 10 kV bus coupler")),
        position: Some(origin.to_lonlat(centre)),
        from: NodeIx(0),
        to: NodeIx(1),
        normally_open: true,
        kv: Some(MV_KV),
        extra: None,
    });

    let feeders = config.feeders_per_substation;
    for k in 0..feeders {
        let section = k % 2;
        let fid = format!("{sid}-F{:02}", k + 1);
        let local_feeder = k as u32;
        let cable = rng.random_bool((0.9 - 0.6 * remoteness).clamp(0.1, 0.95));
        let (trunk_types, lateral_types, kva_choices): (_, _, &[f64]) = if cable {
            (&CABLE_TRUNK, &CABLE_LATERAL, &CABLE_KVA)
        } else {
            (&OVERHEAD_TRUNK, &OVERHEAD_LATERAL, &OVERHEAD_KVA)
        };
        let trunk_type = pick(&mut rng, trunk_types);
        let lateral_type = pick(&mut rng, lateral_types);
        let spacing_m = if cable {
            rng.random_range(70.0..120.0)
        } else {
            rng.random_range(45.0..70.0)
        };
        let budget =
            ((config.nodes_per_feeder as f64) * rng.random_range(0.8..1.2)).round() as usize;
        let trunk_len = (budget * 45 / 100).max(2);
        let mut angle = TAU * k as f64 / feeders as f64 + rng.random_range(-0.15..0.15);
        let busbar = NodeIx(section as u32);
        let busbar_at = origin.step(15.0, PI * section as f64);

        let mut feeder_nodes: Vec<(NodeIx, Xy, bool)> = Vec::new(); // (node, position, on trunk)
        let add_node = |parts: &mut NetworkParts,
                        node_feeder: &mut Vec<Option<u32>>,
                        rng: &mut ChaCha8Rng,
                        at: Xy,
                        node_type: NodeType,
                        label: &str| {
            let ix = NodeIx::from_usize(parts.nodes.len());
            let spare_bays = match node_type {
                NodeType::RingMainUnit => *[0, 0, 0, 0, 0, 0, 1, 1, 1, 2]
                    .get(rng.random_range(0..10))
                    .unwrap_or(&0),
                NodeType::SwitchingStation => rng.random_range(1..=4),
                _ => 0,
            };
            parts.nodes.push(Node {
                id: NodeId::new(format!("{fid}-{label}")),
                name: None,
                position: at.to_lonlat(centre),
                kv: MV_KV,
                node_type,
                substation: None,
                spare_bays,
                in_service: true,
                extra: None,
            });
            node_feeder.push(Some(local_feeder));
            ix
        };
        let add_segment = |parts: &mut NetworkParts,
                           rng: &mut ChaCha8Rng,
                           from: (NodeIx, Xy),
                           to: (NodeIx, Xy),
                           conductor: (f64, f64, f64)| {
            let n = parts.segments.len();
            let geometry = vec![from.1.to_lonlat(centre), to.1.to_lonlat(centre)];
            // Routes follow streets: longer than the straight line.
            let route_factor = rng.random_range(1.05..1.3);
            let length_m =
                (network_file::geodesic_length_m(&geometry) * route_factor * 10.0).round() / 10.0;
            parts.segments.push(Segment {
                id: SegmentId::new(format!("{fid}-L{:03}", n)),
                name: None,
                from: from.0,
                to: to.0,
                kv: MV_KV,
                r_ohm_per_km: conductor.0,
                x_ohm_per_km: conductor.1,
                rated_a: conductor.2,
                length_m: length_m.max(1.0),
                length_given: true,
                geometry,
                in_service: true,
                extra: None,
            });
        };

        // Trunk.
        let trunk_node_type = |i: usize, rng: &mut ChaCha8Rng| {
            if !cable {
                NodeType::Pole
            } else if i == trunk_len / 3 {
                NodeType::SwitchingStation
            } else if rng.random_bool(0.55) {
                NodeType::RingMainUnit
            } else {
                NodeType::Junction
            }
        };
        let mut previous = (busbar, busbar_at);
        let mut at = busbar_at.step(rng.random_range(120.0..250.0), angle);
        for i in 0..trunk_len {
            let node_type = trunk_node_type(i, &mut rng);
            let ix = add_node(
                &mut parts,
                &mut node_feeder,
                &mut rng,
                at,
                node_type,
                &format!("N{:03}", i + 1),
            );
            // The exit cable from the substation is the trunk's type.
            add_segment(&mut parts, &mut rng, previous, (ix, at), trunk_type);
            feeder_nodes.push((ix, at, true));
            previous = (ix, at);
            angle += rng.random_range(-0.18..0.18);
            at = at.step(spacing_m * rng.random_range(0.8..1.2), angle);
        }
        let first_node = feeder_nodes[0].0;
        feeder_tails.push((previous.0, section, cable));

        // Laterals from trunk nodes (past the first two), until the node budget is spent.
        let mut lateral = 0;
        while feeder_nodes.len() < budget {
            let from_trunk = rng.random_range(2.min(trunk_len - 1)..trunk_len);
            let (start, start_at, _) = feeder_nodes[from_trunk];
            let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let trunk_angle = {
                let next = feeder_nodes
                    .get(from_trunk + 1)
                    .filter(|n| n.2)
                    .map_or(start_at, |n| n.1);
                (next.y - start_at.y).atan2(next.x - start_at.x)
            };
            let mut lateral_angle = trunk_angle + side * rng.random_range(1.0..1.8);
            let length = rng.random_range(4..=12).min(budget - feeder_nodes.len());
            lateral += 1;
            let mut prev = (start, start_at);
            let mut pos = start_at;
            for j in 0..length {
                pos = pos.step(spacing_m * rng.random_range(0.7..1.1), lateral_angle);
                lateral_angle += rng.random_range(-0.2..0.2);
                let node_type = if !cable {
                    NodeType::Pole
                } else {
                    match rng.random_range(0..10) {
                        0..=3 => NodeType::RingMainUnit,
                        4..=6 => NodeType::CableBranchBox,
                        _ => NodeType::Junction,
                    }
                };
                let ix = add_node(
                    &mut parts,
                    &mut node_feeder,
                    &mut rng,
                    pos,
                    node_type,
                    &format!("B{lateral:02}-{:02}", j + 1),
                );
                add_segment(&mut parts, &mut rng, prev, (ix, pos), lateral_type);
                feeder_nodes.push((ix, pos, false));
                prev = (ix, pos);
            }
        }

        // The head breaker or CT: usually 600 A, an older 400 A one on some feeders.
        let rated_a = if rng.random_bool(0.25) { 400.0 } else { 600.0 };
        parts.feeders.push(Feeder {
            id: FeederId::new(fid.as_str()),
            name: Some(format!(
                "{sid} 10 kV {} feeder {:02}",
                if cable { "cable" } else { "overhead" },
                k + 1
            )),
            position: Some(busbar_at.to_lonlat(centre)),
            head_node: busbar,
            first_node,
            rated_a: Some(rated_a),
            extra: None,
        });

        // Distribution transformers on nodes with equipment (not joints), not the first.
        let hosts: Vec<(NodeIx, Xy)> = feeder_nodes
            .iter()
            .skip(1)
            .filter(|(ix, _, _)| parts.nodes[ix.get()].node_type != NodeType::Junction)
            .map(|(ix, at, _)| (*ix, *at))
            .collect();
        let count = ((config.transformers_per_feeder as f64) * rng.random_range(0.7..1.3))
            .round()
            .max(1.0) as usize;
        let class_weights = [
            0.55 - 0.15 * remoteness, // residential
            0.35 - 0.25 * remoteness, // commercial
            0.10 + 0.40 * remoteness, // industrial
        ];
        let first_transformer = loads.len();
        for t in 0..count.min(hosts.len().max(1)) {
            let (host, host_at) = if hosts.is_empty() {
                (feeder_nodes[0].0, feeder_nodes[0].1)
            } else {
                hosts[rng.random_range(0..hosts.len())]
            };
            let roll: f64 = rng.random_range(0.0..class_weights.iter().sum::<f64>());
            let class = if roll < class_weights[0] {
                CustomerClass::Residential
            } else if roll < class_weights[0] + class_weights[1] {
                CustomerClass::Commercial
            } else {
                CustomerClass::Industrial
            };
            let public = match class {
                CustomerClass::Residential => rng.random_bool(0.9),
                CustomerClass::Commercial => rng.random_bool(0.5),
                CustomerClass::Industrial => rng.random_bool(0.1),
            };
            let rated_kva = pick(&mut rng, kva_choices);
            let at = host_at.step(rng.random_range(8.0..30.0), rng.random_range(0.0..TAU));
            parts.transformers.push(Transformer {
                id: TransformerId::new(format!("{fid}-T{:02}", t + 1)),
                name: None,
                position: at.to_lonlat(centre),
                node: host,
                rated_kva,
                public,
                lv_kv: 0.4,
                in_service: true,
                extra: None,
            });
            transformer_feeder.push(Some(local_feeder));
            let power_factor = rng.random_range(0.85..0.96);
            loads.push(TransformerLoad {
                class,
                // Provisional: scaled below to the feeder's target loading.
                peak_kw: rated_kva * rng.random_range(0.35..0.8) * power_factor,
                power_factor,
                shift: rng.random_range(-3..=3),
                metered: rng.random_bool(config.metered_share),
                pv_kw: 0.0,
            });
        }
        // Peak loading of the feeder head: most comfortable, a tail near the limit.
        let roll: f64 = rng.random_range(0.0..1.0);
        let target = if roll < 0.55 {
            rng.random_range(0.25..0.55)
        } else if roll < 0.85 {
            rng.random_range(0.55..0.75)
        } else if roll < 0.95 {
            rng.random_range(0.75..0.9)
        } else {
            rng.random_range(0.9..1.02)
        };
        let limit_a = rated_a.min(trunk_type.2);
        let target_kva = 3f64.sqrt() * MV_KV * limit_a * target;
        let feeder_loads = &mut loads[first_transformer..];
        // Customers do not peak together: about 0.8 of the summed peaks coincide.
        let coincident: f64 = feeder_loads
            .iter()
            .map(|l| l.peak_kw / l.power_factor)
            .sum::<f64>()
            * 0.8;
        if coincident > 0.0 {
            let scale = target_kva / coincident;
            for (l, t) in feeder_loads
                .iter_mut()
                .zip(&parts.transformers[first_transformer..])
            {
                let cap = 1.1 * t.rated_kva * l.power_factor;
                l.peak_kw = (l.peak_kw * scale).min(cap);
            }
        }
        add_pv(
            &mut pv_rng,
            &mut parts,
            &mut loads[first_transformer..],
            k,
            3f64.sqrt() * MV_KV * limit_a,
            first_node,
        );
    }
    LocalSubstation {
        parts,
        loads,
        feeder_tails,
        node_feeder,
        transformer_feeder,
    }
}

/// Mixed into the seed of the PV streams.
const PV_SEED: u64 = 0x501a_2026;

/// Connected and queued PV on one feeder (`k`: its place at the substation),
/// so that a city shows each grade of open capacity: on a substation's first
/// feeder every transformer has PV of 1.3 times its rating behind it (its
/// reverse flow past 80 % of the rating at noon on clear days: red, and on
/// most such feeders the head's too); on its second a PV farm
/// queued at the first node of 1.5 times the head's capacity (room today, all
/// of it queued: yellow); elsewhere rooftop PV behind a third of the
/// transformers, a fifth to three fifths of their rating.
fn add_pv(
    rng: &mut ChaCha8Rng,
    parts: &mut NetworkParts,
    loads: &mut [TransformerLoad],
    k: usize,
    head_kva: f64,
    first_node: NodeIx,
) {
    let first = parts.transformers.len() - loads.len();
    for (i, load) in loads.iter_mut().enumerate() {
        let t = &parts.transformers[first + i];
        let share = match k {
            0 => 1.3,
            _ if rng.random_bool(1.0 / 3.0) => rng.random_range(0.2..0.6),
            _ => continue,
        };
        load.pv_kw = (t.rated_kva * share).round();
        let generator = Generator {
            id: GeneratorId::new(format!("{}-PV", t.id)),
            name: None,
            position: t.position,
            point: GeneratorPoint::Transformer(TransformerIx::from_usize(first + i)),
            rated_kw: load.pv_kw,
            source: GenerationSource::Pv,
            status: GeneratorStatus::Connected,
            in_service: true,
            extra: None,
        };
        parts.generators.push(generator);
    }
    if k == 1 {
        let feeder = parts
            .feeders
            .last()
            .map(|f| f.id.to_string())
            .unwrap_or_default();
        parts.generators.push(Generator {
            id: GeneratorId::new(format!("{feeder}-PVQ")),
            name: Some(format!("{feeder} PV farm (queued)")),
            position: parts.nodes[first_node.get()].position,
            point: GeneratorPoint::Node(first_node),
            rated_kw: (1.5 * head_kva).round(),
            source: GenerationSource::Pv,
            status: GeneratorStatus::Queued,
            in_service: true,
            extra: None,
        });
    }
}

#[derive(Default)]
struct Merged {
    parts: NetworkParts,
    loads: Vec<TransformerLoad>,
    blocks: Vec<SubstationBlock>,
    substation_feeders: Vec<Vec<FeederIx>>,
    transformer_feeder: Vec<Option<FeederIx>>,
    /// (trunk-end node, feeder, substation, cable)
    tails: Vec<(NodeIx, FeederIx, usize, bool)>,
    node_feeder: Vec<Option<FeederIx>>,
}

impl Merged {
    fn absorb(&mut self, local: LocalSubstation) {
        let LocalSubstation {
            parts: l,
            loads,
            feeder_tails,
            node_feeder,
            transformer_feeder,
        } = local;
        let p = &mut self.parts;
        let s_off = p.substations.len() as u32;
        let n_off = p.nodes.len() as u32;
        let f_off = p.feeders.len() as u32;
        let st_off = p.substation_transformers.len() as u32;
        let t_off = p.transformers.len() as u32;
        let node = |ix: NodeIx| NodeIx(ix.0 + n_off);
        let substation = self.blocks.len();
        let mut block = SubstationBlock::default();
        p.substations.extend(l.substations);
        for mut t in l.substation_transformers {
            t.substation = SubstationIx(t.substation.0 + s_off);
            t.bus = node(t.bus);
            block
                .substation_transformers
                .push(SubstationTransformerIx::from_usize(
                    p.substation_transformers.len(),
                ));
            p.substation_transformers.push(t);
            self.substation_feeders.push(Vec::new());
        }
        for mut n in l.nodes {
            n.substation = n.substation.map(|s| SubstationIx(s.0 + s_off));
            p.nodes.push(n);
        }
        for mut seg in l.segments {
            seg.from = node(seg.from);
            seg.to = node(seg.to);
            p.segments.push(seg);
        }
        for mut sw in l.switches {
            sw.from = node(sw.from);
            sw.to = node(sw.to);
            p.switches.push(sw);
        }
        for (k, mut f) in l.feeders.into_iter().enumerate() {
            let section = feeder_tails[k].1;
            f.head_node = node(f.head_node);
            f.first_node = node(f.first_node);
            let fx = FeederIx::from_usize(p.feeders.len());
            block.feeders.push(fx);
            self.substation_feeders[st_off as usize + section].push(fx);
            p.feeders.push(f);
        }
        for mut t in l.transformers {
            t.node = node(t.node);
            block
                .transformers
                .push(TransformerIx::from_usize(p.transformers.len()));
            p.transformers.push(t);
        }
        for mut g in l.generators {
            g.point = match g.point {
                GeneratorPoint::Node(n) => GeneratorPoint::Node(node(n)),
                GeneratorPoint::Transformer(t) => {
                    GeneratorPoint::Transformer(TransformerIx(t.0 + t_off))
                }
            };
            p.generators.push(g);
        }
        debug_assert_eq!(t_off as usize + loads.len(), p.transformers.len());
        self.loads.extend(loads);
        self.transformer_feeder.extend(
            transformer_feeder
                .into_iter()
                .map(|f| f.map(|f| FeederIx(f + f_off))),
        );
        self.node_feeder.extend(
            node_feeder
                .into_iter()
                .map(|f| f.map(|f| FeederIx(f + f_off))),
        );
        for (k, (tail, _, cable)) in feeder_tails.into_iter().enumerate() {
            self.tails
                .push((node(tail), FeederIx(f_off + k as u32), substation, cable));
        }
        self.blocks.push(block);
    }
}

type TieEntry = GeomWithData<[f64; 2], (NodeIx, FeederIx, usize)>;

/// Joins each feeder's trunk end to the nearest node of another feeder, preferably
/// of another substation, by a tie line and a normally-open switch.
fn add_ties(config: &SynthConfig, merged: &mut Merged) {
    let centre = config.centre;
    let to_xy = |p: LonLat| {
        const R: f64 = 6_371_000.0;
        [
            (p.lon - centre.lon).to_radians() * R * centre.lat.to_radians().cos(),
            (p.lat - centre.lat).to_radians() * R,
        ]
    };
    let mut substation_of_feeder = vec![0usize; merged.parts.feeders.len()];
    for (s, block) in merged.blocks.iter().enumerate() {
        for f in &block.feeders {
            substation_of_feeder[f.get()] = s;
        }
    }
    let entries: Vec<TieEntry> = merged
        .parts
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let f = merged.node_feeder[i]?;
            Some(TieEntry::new(
                to_xy(n.position),
                (NodeIx::from_usize(i), f, substation_of_feeder[f.get()]),
            ))
        })
        .collect();
    let tree = RTree::bulk_load(entries);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(0);
    let tails = std::mem::take(&mut merged.tails);
    for (tail, feeder, substation, cable) in tails {
        let tail_at = merged.parts.nodes[tail.get()].position;
        let here = to_xy(tail_at);
        let mut best: Option<(&TieEntry, bool)> = None;
        for e in tree.nearest_neighbor_iter(&here).take(64) {
            let (_, other_feeder, other_sub) = e.data;
            if other_feeder == feeder {
                continue;
            }
            let other_substation = other_sub != substation;
            match best {
                None => best = Some((e, other_substation)),
                Some((_, false)) if other_substation => {
                    best = Some((e, true));
                    break;
                }
                _ => {}
            }
            if matches!(best, Some((_, true))) {
                break;
            }
        }
        let Some((target, _)) = best else { continue };
        let (target_node, _, _) = target.data;
        let target_at = merged.parts.nodes[target_node.get()].position;
        let fid = merged.parts.feeders[feeder.get()].id.clone();
        // The tie point stands a few metres from the node it meets.
        let tie_at = LonLat::new(
            target_at.lon + (tail_at.lon - target_at.lon) * 0.02,
            target_at.lat + (tail_at.lat - target_at.lat) * 0.02,
        );
        let tie_node = NodeIx::from_usize(merged.parts.nodes.len());
        merged.parts.nodes.push(Node {
            id: NodeId::new(format!("{fid}-TIE")),
            name: Some(format!("{fid} tie point")),
            position: tie_at,
            kv: MV_KV,
            node_type: if cable {
                NodeType::RingMainUnit
            } else {
                NodeType::Pole
            },
            substation: None,
            spare_bays: 0,
            in_service: true,
            extra: None,
        });
        merged.node_feeder.push(Some(feeder));
        let conductor = if cable {
            CABLE_LATERAL[0]
        } else {
            OVERHEAD_LATERAL[0]
        };
        let geometry = vec![tail_at, tie_at];
        let length_m =
            (network_file::geodesic_length_m(&geometry) * rng.random_range(1.05..1.3) * 10.0)
                .round()
                / 10.0;
        merged.parts.segments.push(Segment {
            id: SegmentId::new(format!("{fid}-LTIE")),
            name: Some(format!("{fid} tie line")),
            from: tail,
            to: tie_node,
            kv: MV_KV,
            r_ohm_per_km: conductor.0,
            x_ohm_per_km: conductor.1,
            rated_a: conductor.2,
            length_m: length_m.max(1.0),
            length_given: true,
            geometry,
            in_service: true,
            extra: None,
        });
        merged.parts.switches.push(Switch {
            id: SwitchId::new(format!("{fid}-TS")),
            name: Some(format!(
                "{fid} tie switch to {}",
                merged.parts.feeders[target.data.1.get()].id
            )),
            position: Some(tie_at),
            from: tie_node,
            to: target_node,
            normally_open: true,
            kv: Some(MV_KV),
            extra: None,
        });
    }
}

impl SyntheticGrid {
    fn estimated_readings_bytes(&self, config: &SynthConfig) -> u64 {
        let metered = self.loads.iter().filter(|l| l.metered).count() as u64;
        let rows = (metered * 2
            + self.network.feeders.len() as u64 * 4
            + self.network.substation_transformers.len() as u64 * 2)
            * config.steps() as u64;
        rows * 45
    }

    /// Writes the readings, one gzip member or plain block per substation, generated
    /// in parallel and written in substation order. Returns the rows written.
    fn write_readings(
        &self,
        config: &SynthConfig,
        path: &Path,
        compress: bool,
    ) -> std::io::Result<u64> {
        let file = File::create(path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let header = format!("{}\n", readings::READINGS_HEADER);
        if compress {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(header.as_bytes())?;
            out.write_all(&gz.finish()?)?;
        } else {
            out.write_all(header.as_bytes())?;
        }
        let timestamps: Vec<String> = (0..config.steps())
            .map(|k| {
                (config.start + Duration::minutes(15 * k as i64))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            })
            .collect();
        let mut rows = 0u64;
        // Batches bound the memory held while keeping both cores busy.
        for batch in (0..self.blocks.len()).collect::<Vec<_>>().chunks(8) {
            let chunks: Vec<std::io::Result<(Vec<u8>, u64)>> = batch
                .par_iter()
                .map(|&s| {
                    let (text, n) = self.substation_readings(config, s, &timestamps);
                    if compress {
                        let mut gz =
                            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        gz.write_all(text.as_bytes())?;
                        Ok((gz.finish()?, n))
                    } else {
                        Ok((text.into_bytes(), n))
                    }
                })
                .collect();
            for chunk in chunks {
                let (bytes, n) = chunk?;
                out.write_all(&bytes)?;
                rows += n;
            }
        }
        out.flush()?;
        Ok(rows)
    }

    /// Every reading of one substation as CSV text, and the row count.
    fn substation_readings(
        &self,
        config: &SynthConfig,
        s: usize,
        timestamps: &[String],
    ) -> (String, u64) {
        let steps = timestamps.len();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_1e55);
        rng.set_stream(s as u64 + 1);
        let mut pv_rng = ChaCha8Rng::seed_from_u64(config.seed ^ PV_SEED ^ 0x5eed_1e55);
        pv_rng.set_stream(s as u64 + 1);
        let noise = Normal::new(1.0, 0.04).expect("valid");
        let block = &self.blocks[s];
        let shapes: Vec<[[f64; 96]; 2]> = CustomerClass::ALL
            .iter()
            .map(|c| [c.shape(false), c.shape(true)])
            .collect();
        let class_ix =
            |c: CustomerClass| CustomerClass::ALL.iter().position(|x| *x == c).unwrap_or(0);
        let start_weekday = config
            .start
            .format("%u")
            .to_string()
            .parse::<usize>()
            .unwrap_or(1);

        let mut text = String::with_capacity(steps * 48 * (block.transformers.len() * 2 + 64));
        let mut rows = 0u64;
        let mut line = |text: &mut String, step: usize, asset: &str, q: &str, v: f64| {
            let _ = writeln!(text, "{},{asset},{q},{v:.3}", timestamps[step]);
            rows += 1;
        };
        // Per feeder: summed P and Q of its transformers at each step.
        let mut feeder_p: Vec<Vec<f64>> = vec![vec![0.0; steps]; block.feeders.len()];
        let mut feeder_q: Vec<Vec<f64>> = vec![vec![0.0; steps]; block.feeders.len()];
        let feeder_slot = |f: FeederIx| block.feeders.iter().position(|x| *x == f);
        let day_noise = Normal::new(1.0, 0.03).expect("valid");
        let mut transformer_text = String::new();
        for &t in &block.transformers {
            let load = &self.loads[t.get()];
            let tan_phi = (1.0 / (load.power_factor * load.power_factor) - 1.0).sqrt();
            let shape = &shapes[class_ix(load.class)];
            let slot = self.transformer_feeder[t.get()].and_then(feeder_slot);
            let id = self.network.transformers[t.get()].id.as_str();
            let mut day_factor = 1.0;
            let mut sky = 1.0;
            for step in 0..steps {
                let day = step / 96;
                if step % 96 == 0 {
                    day_factor = day_noise.sample(&mut rng);
                    // Clear to hazy days, from the PV stream.
                    sky = pv_rng.random_range(0.6..1.0);
                }
                let weekend = (start_weekday - 1 + day) % 7 >= 5;
                let q = ((step % 96) as i32 + load.shift).rem_euclid(96) as usize;
                let pv = load.pv_kw * sky * GenerationSource::Pv.default_factor(step % 96);
                let p = load.peak_kw
                    * shape[usize::from(weekend)][q]
                    * day_factor
                    * noise.sample(&mut rng)
                    - pv;
                let qv = p * tan_phi * rng.random_range(0.9..1.1);
                if let Some(slot) = slot {
                    feeder_p[slot][step] += p;
                    feeder_q[slot][step] += qv;
                }
                if load.metered {
                    line(&mut transformer_text, step, id, "p_kw", p);
                    line(&mut transformer_text, step, id, "q_kvar", qv);
                }
            }
        }
        // Busbar voltage: set near 10.5 kV, sagging a little with the section's load.
        let mut head_text = String::new();
        let mut section_p = vec![vec![0.0; steps]; block.substation_transformers.len()];
        let mut section_q = vec![vec![0.0; steps]; block.substation_transformers.len()];
        let u_noise = Normal::new(0.0, 0.02).expect("valid");
        for (slot, &f) in block.feeders.iter().enumerate() {
            let feeder = &self.network.feeders[f.get()];
            let section = block
                .substation_transformers
                .iter()
                .position(|st| self.substation_feeders[st.get()].contains(&f))
                .unwrap_or(0);
            let limit_kva = 3f64.sqrt() * MV_KV * feeder.rated_a.unwrap_or(600.0);
            for step in 0..steps {
                let (p, q) = (feeder_p[slot][step], feeder_q[slot][step]);
                let s_kva = p.hypot(q);
                // Series losses grow with the square of the loading.
                let loss = 0.005 + 0.03 * (s_kva / limit_kva).powi(2);
                let (p, q) = (p * (1.0 + loss), q * (1.0 + 2.0 * loss));
                section_p[section][step] += p;
                section_q[section][step] += q;
                feeder_p[slot][step] = p;
                feeder_q[slot][step] = q;
            }
        }
        let mut section_u = vec![vec![0.0; steps]; block.substation_transformers.len()];
        for (section, &st) in block.substation_transformers.iter().enumerate() {
            let rated = self.network.substation_transformers[st.get()].rated_kva;
            let id = self.network.substation_transformers[st.get()].id.as_str();
            for step in 0..steps {
                let (p, q) = (
                    section_p[section][step] * 1.002,
                    section_q[section][step] * 1.04,
                );
                section_u[section][step] =
                    10.5 - 0.15 * (p.hypot(q) / rated) + u_noise.sample(&mut rng);
                line(&mut head_text, step, id, "p_kw", p);
                line(&mut head_text, step, id, "q_kvar", q);
            }
        }
        for (slot, &f) in block.feeders.iter().enumerate() {
            let id = self.network.feeders[f.get()].id.as_str();
            let section = block
                .substation_transformers
                .iter()
                .position(|st| self.substation_feeders[st.get()].contains(&f))
                .unwrap_or(0);
            for step in 0..steps {
                let (p, q) = (feeder_p[slot][step], feeder_q[slot][step]);
                let u = section_u[section][step];
                line(&mut head_text, step, id, "p_kw", p);
                line(&mut head_text, step, id, "q_kvar", q);
                line(
                    &mut head_text,
                    step,
                    id,
                    "i_a",
                    p.hypot(q) / (3f64.sqrt() * u),
                );
                line(&mut head_text, step, id, "u_kv", u);
            }
        }
        text.push_str(&head_text);
        text.push_str(&transformer_text);
        (text, rows)
    }
}
