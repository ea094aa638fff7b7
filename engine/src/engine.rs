//! The engine: a network, its traced topology and spatial index, the data
//! window, the busbar groups' loading and the reservations counted, and per
//! feeder a [`FeederBase`] (built and observed in [`crate::base`]) kept in a cache
//! bounded in bytes, ready for candidates.

use headroom_geodata::{
    AssetKind, AssetRef, FeederIx, Network, NodeIx, Quantity, SpatialIndex, Topology, TransformerIx,
};
use std::sync::Arc;

use moka::sync::Cache;
use num_complex::Complex64;

use crate::base::FeederBase;
use crate::config::EngineConfig;
use crate::load_model::{FeederLoads, STEP_MS, Window, power_factor_tan};
use headroom_readings::ReadingsSource;

/// Capacity promised to an application that is not connected yet: a load
/// counted as extra load at its node, with its profile, by every later load
/// evaluation; a generator counted as an injection by every later generation
/// evaluation (and never as relief of a load check).
#[derive(Clone, Debug, PartialEq)]
pub struct ReservedLoad {
    /// The application holding it.
    pub application: String,
    /// A load or a generator (whose `demand_kw` is its export).
    pub kind: crate::application::ApplicationKind,
    /// Where it will connect.
    pub node: NodeIx,
    /// Demand, kW.
    pub demand_kw: f64,
    /// Lagging power factor.
    pub power_factor: f64,
    /// 96 quarter-hour factors, or flat.
    pub profile: Option<Vec<f64>>,
    /// For a low-voltage supply, the distribution transformer it takes: its
    /// loading check counts the reservation too.
    pub transformer: Option<TransformerIx>,
}

/// Power that generation checks count as injected though no reading shows it:
/// a queued generator or a generation reservation.
#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    /// The medium-voltage node it feeds (a transformer's node for 0.4 kV).
    pub node: NodeIx,
    /// For 0.4 kV, the distribution transformer it feeds through.
    pub transformer: Option<TransformerIx>,
    /// Rated export, kW.
    pub kw: f64,
    /// Reactive power absorbed per kW exported (0 at unity power factor).
    pub absorbed_kvar_per_kw: f64,
    /// 96 quarter-hour factors of `kw`, or flat.
    pub profile: Option<Vec<f64>>,
    /// Whether it is a reservation (else a queued generator of the network).
    pub reserved: bool,
}

/// A hash of what `hasher` holds and a profile's factors.
fn hash_profile(mut hasher: rustc_hash::FxHasher, profile: Option<&[f64]>) -> u64 {
    use std::hash::{Hash, Hasher};
    for v in profile.into_iter().flatten() {
        v.to_bits().hash(&mut hasher);
    }
    hasher.finish()
}

/// The bit that marks a generation base's key in the cache: its fingerprint
/// is of the injections it counts.
const GENERATION_KEY: u64 = 1 << 63;

/// What the feeder caches hold ([`Engine::cache_usage`]): each is bounded by
/// [`EngineConfig::feeder_cache_bytes`] as its weigher counts bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheUsage {
    /// Feeder bases held (a feeder's load and generation bases count apart).
    pub bases: u64,
    /// The bytes the bases weigh.
    pub bases_bytes: u64,
    /// Feeders whose restoration cases (N-1) are held.
    pub n1_feeders: u64,
    /// The bytes those cases weigh.
    pub n1_bytes: u64,
}

/// The engine over one network and its readings.
///
/// Feeder bases (load model and base power flows of every step) are built when a
/// feeder is first needed and kept in a cache bounded in bytes
/// ([`EngineConfig::feeder_cache_bytes`]): a city has thousands of feeders and an
/// application touches a few dozen.
pub struct Engine {
    /// The network (shared by the engines derived from this one).
    pub network: Arc<Network>,
    /// Its traced topology.
    pub topology: Arc<Topology>,
    /// Its spatial index.
    pub spatial: Arc<SpatialIndex>,
    /// Settings.
    pub config: EngineConfig,
    /// The data window.
    pub window: Window,
    /// Per busbar group and window step: power through its substation
    /// transformers, kVA (measured, or the sum of its feeders' heads), without
    /// reservations.
    pub group_kva: Arc<Vec<Vec<Complex64>>>,
    /// Per busbar group and window step: reserved load in the group, kVA.
    pub group_reserved_kva: Vec<Vec<Complex64>>,
    /// Load reservations counted.
    pub reservations: Vec<ReservedLoad>,
    /// Generation reservations counted (as injections, by generation checks).
    pub generation_reservations: Vec<ReservedLoad>,
    /// Queued generators and generation reservations.
    pub injections: Vec<Injection>,
    /// Per busbar group and window step: what the injections in the group
    /// add to its substation transformers' power, kVA (negative kW).
    pub group_injected_kva: Vec<Vec<Complex64>>,
    /// Per feeder, a fingerprint of the injections its generation base
    /// counts (on it and in its busbar group); 0 where none do.
    generation_fingerprint: Vec<u64>,
    /// Distribution transformers hanging on each node.
    pub node_transformers: Arc<Vec<Vec<TransformerIx>>>,
    pub(crate) readings: Arc<dyn ReadingsSource>,
    /// Built feeder bases by (feeder, fingerprint of the reservations counted,
    /// 0 for none). Engines derived with other reservations share it: a feeder
    /// the change does not touch keeps its bases.
    bases: Cache<(usize, u64), Arc<FeederBase>>,
    /// Whether a reservation sits on each feeder.
    pub(crate) feeder_reserved: Vec<bool>,
    /// Per feeder, the fingerprint of the reservations its base counts (on the
    /// feeder and in its busbar group); 0 where none touch it.
    pub(crate) feeder_fingerprint: Vec<u64>,
    /// Restoration cases (N-1) with their flows, by (feeder, fingerprint of
    /// the reservations their trees count); shared like `bases`.
    pub(crate) n1_cases: Cache<(usize, u64), Arc<crate::n1::FeederN1>>,
    /// Whether reservations load each busbar group.
    group_reserved: Vec<bool>,
}

impl Engine {
    /// Prepares the engine: topology, spatial index, the data window and the
    /// substation transformers' loading; feeders are built on first use.
    pub fn new(
        network: Network,
        readings: Arc<dyn ReadingsSource>,
        config: EngineConfig,
        reservations: Vec<ReservedLoad>,
    ) -> Self {
        let topology = Arc::new(Topology::trace(&network));
        let spatial = Arc::new(SpatialIndex::build(&network));
        let mut node_transformers = vec![Vec::new(); network.nodes.len()];
        for (t, tr) in network.transformers.iter().enumerate() {
            node_transformers[tr.node.get()].push(TransformerIx::from_usize(t));
        }
        Self::assemble(
            Arc::new(network),
            topology,
            spatial,
            Arc::new(node_transformers),
            readings,
            config,
            reservations,
        )
    }

    fn new_cache(config: &EngineConfig) -> Cache<(usize, u64), Arc<FeederBase>> {
        Cache::builder()
            .max_capacity(config.feeder_cache_bytes)
            .weigher(|_, base: &Arc<FeederBase>| {
                u32::try_from(base.weight_bytes()).unwrap_or(u32::MAX)
            })
            .build()
    }

    /// A feeder's restoration cases (two trees of twice its nodes over a fifth
    /// of its steps, with the rare case set over every step) weigh about what
    /// its base does: as much memory as the bases' holds the cases of the
    /// feeders they hold. With less, a city's ranking built every case again
    /// on each pass.
    fn new_n1_cache(config: &EngineConfig) -> Cache<(usize, u64), Arc<crate::n1::FeederN1>> {
        Cache::builder()
            .max_capacity(config.feeder_cache_bytes)
            .weigher(|_, cases: &Arc<crate::n1::FeederN1>| {
                u32::try_from(cases.weight_bytes()).unwrap_or(u32::MAX)
            })
            .build()
    }

    fn assemble(
        network: Arc<Network>,
        topology: Arc<Topology>,
        spatial: Arc<SpatialIndex>,
        node_transformers: Arc<Vec<Vec<TransformerIx>>>,
        readings: Arc<dyn ReadingsSource>,
        config: EngineConfig,
        reservations: Vec<ReservedLoad>,
    ) -> Self {
        let window = data_window(&network, readings.as_ref());
        let bases = Self::new_cache(&config);
        let n1_cases = Self::new_n1_cache(&config);
        let mut engine = Engine {
            group_kva: Arc::new(Vec::new()),
            group_reserved_kva: Vec::new(),
            network,
            topology,
            spatial,
            config,
            window,
            reservations: Vec::new(),
            generation_reservations: Vec::new(),
            injections: Vec::new(),
            group_injected_kva: Vec::new(),
            generation_fingerprint: Vec::new(),
            node_transformers,
            readings,
            bases,
            n1_cases,
            feeder_reserved: Vec::new(),
            feeder_fingerprint: Vec::new(),
            group_reserved: Vec::new(),
        };
        engine.group_kva = Arc::new(engine.measured_group_kva(engine.readings.as_ref()));
        engine.fill_unmeasured_groups();
        engine.set_reservations(reservations);
        engine
    }

    /// The same network, readings and settings with other reservations: cheap
    /// (no topology, index or readings work) and sharing the feeder bases that
    /// the difference does not touch. The ledger derives one per change.
    pub fn with_reservations(&self, reservations: Vec<ReservedLoad>) -> Self {
        let mut engine = Engine {
            network: self.network.clone(),
            topology: self.topology.clone(),
            spatial: self.spatial.clone(),
            config: self.config.clone(),
            window: self.window.clone(),
            group_kva: self.group_kva.clone(),
            group_reserved_kva: Vec::new(),
            reservations: Vec::new(),
            generation_reservations: Vec::new(),
            injections: Vec::new(),
            group_injected_kva: Vec::new(),
            generation_fingerprint: Vec::new(),
            node_transformers: self.node_transformers.clone(),
            readings: self.readings.clone(),
            bases: self.bases.clone(),
            n1_cases: self.n1_cases.clone(),
            feeder_reserved: Vec::new(),
            feeder_fingerprint: Vec::new(),
            group_reserved: Vec::new(),
        };
        engine.set_reservations(reservations);
        engine
    }

    /// The same network and reservations over new readings: a new data window,
    /// substation loading and feeder bases (the topology and index are kept).
    pub fn with_readings(&self, readings: Arc<dyn ReadingsSource>) -> Self {
        Self::assemble(
            self.network.clone(),
            self.topology.clone(),
            self.spatial.clone(),
            self.node_transformers.clone(),
            readings,
            self.config.clone(),
            self.reservations
                .iter()
                .chain(&self.generation_reservations)
                .cloned()
                .collect(),
        )
    }

    fn set_reservations(&mut self, reservations: Vec<ReservedLoad>) {
        use std::hash::Hash;
        let (generation, loads): (Vec<_>, Vec<_>) = reservations
            .into_iter()
            .partition(|r| r.kind == crate::application::ApplicationKind::Generation);
        self.reservations = loads;
        self.generation_reservations = generation;
        self.set_injections();
        self.group_reserved_kva = self.reserved_per_group();
        self.group_reserved = self
            .group_reserved_kva
            .iter()
            .map(|series| series.iter().any(|s| s.norm_sqr() > 0.0))
            .collect();
        let feeders = self.network.feeders.len();
        self.feeder_reserved = vec![false; feeders];
        for r in &self.reservations {
            if let Some(p) = self.topology.placement(r.node) {
                self.feeder_reserved[p.feeder.get()] = true;
            }
        }
        let (feeder_hash, group_hash) = self.hash_sums(self.reservations.iter().map(|r| {
            let mut hasher = rustc_hash::FxHasher::default();
            r.application.hash(&mut hasher);
            r.node.get().hash(&mut hasher);
            r.demand_kw.to_bits().hash(&mut hasher);
            r.power_factor.to_bits().hash(&mut hasher);
            (r.node, hash_profile(hasher, r.profile.as_deref()))
        }));
        self.feeder_fingerprint = (0..feeders)
            .map(|f| {
                if !self.touched_by_reservations(f) {
                    return 0;
                }
                // Never 0: that key is the base without reservations.
                (self.fingerprint(f, &feeder_hash, &group_hash) | 1) & !GENERATION_KEY
            })
            .collect();
    }

    /// Queued generators of the network and generation reservations, as
    /// injections: per busbar group and step, and a fingerprint per feeder
    /// of those its generation base counts.
    fn set_injections(&mut self) {
        use headroom_geodata::{GeneratorPoint, GeneratorStatus};
        use std::hash::Hash;
        let network = self.network.clone();
        let queued = network
            .generators
            .iter()
            .filter(|g| g.in_service && g.status == GeneratorStatus::Queued)
            .map(|g| {
                let (node, transformer) = match g.point {
                    GeneratorPoint::Node(n) => (n, None),
                    GeneratorPoint::Transformer(t) => (network.transformers[t.get()].node, Some(t)),
                };
                Injection {
                    node,
                    transformer,
                    kw: g.rated_kw,
                    absorbed_kvar_per_kw: 0.0,
                    profile: g.source.default_shape().map(|shape| shape.to_vec()),
                    reserved: false,
                }
            });
        let reserved = self.generation_reservations.iter().map(|r| Injection {
            node: r.node,
            transformer: r.transformer,
            kw: r.demand_kw,
            absorbed_kvar_per_kw: power_factor_tan(r.power_factor),
            profile: r.profile.clone(),
            reserved: true,
        });
        self.injections = queued.chain(reserved).collect();
        self.group_injected_kva = self.sum_per_group(self.injections.iter().map(|i| {
            let per_kw = Complex64::new(-1.0, i.absorbed_kvar_per_kw);
            (i.node, i.kw, per_kw, i.profile.as_deref())
        }));
        let (feeder_hash, group_hash) = self.hash_sums(self.injections.iter().map(|i| {
            let mut hasher = rustc_hash::FxHasher::default();
            i.node.get().hash(&mut hasher);
            i.kw.to_bits().hash(&mut hasher);
            i.absorbed_kvar_per_kw.to_bits().hash(&mut hasher);
            i.reserved.hash(&mut hasher);
            (i.node, hash_profile(hasher, i.profile.as_deref()))
        }));
        // Only where the feeder itself has injections: the group's alone
        // change its substation's flow, not the feeder's, and are added to the
        // measured base when judged.
        self.generation_fingerprint = (0..self.network.feeders.len())
            .map(|f| {
                if feeder_hash[f] == 0 {
                    0
                } else {
                    self.fingerprint(f, &feeder_hash, &group_hash) | 1
                }
            })
            .collect();
    }

    /// The busbar group a node's feeder hangs on (the node's own, for a
    /// busbar).
    pub(crate) fn group_of_node(&self, node: NodeIx) -> Option<usize> {
        let busbar = match self.topology.placement(node) {
            Some(p) => self.topology.tree(p.feeder).head(),
            None => node,
        };
        self.topology.busbar_group_index(busbar)
    }

    /// Per busbar group and window step, the power of `items` in the group:
    /// (node, kW, kVA per kW, 96 quarter-hour factors of the kW or flat).
    fn sum_per_group<'a>(
        &self,
        items: impl Iterator<Item = (NodeIx, f64, Complex64, Option<&'a [f64]>)>,
    ) -> Vec<Vec<Complex64>> {
        let steps = self.window.steps.len();
        let mut out =
            vec![vec![Complex64::new(0.0, 0.0); steps]; self.topology.busbar_groups.len()];
        for (node, kw, per_kw, profile) in items {
            let Some(g) = self.group_of_node(node) else {
                continue;
            };
            for (w, &ts) in self.window.steps.iter().enumerate() {
                let f = profile.map_or(1.0, |p| p[self.quarter_of_day(ts)]);
                out[g][w] += per_kw * (kw * f);
            }
        }
        out
    }

    /// Order-independent sums of items' hashes, per feeder (items on it) and
    /// per busbar group (on its feeders or busbars): what a base counts is a
    /// set, not a ledger's order.
    fn hash_sums(&self, items: impl Iterator<Item = (NodeIx, u64)>) -> (Vec<u64>, Vec<u64>) {
        let mut feeder_hash = vec![0u64; self.network.feeders.len()];
        let mut group_hash = vec![0u64; self.topology.busbar_groups.len()];
        for (node, h) in items {
            if let Some(p) = self.topology.placement(node) {
                feeder_hash[p.feeder.get()] = feeder_hash[p.feeder.get()].wrapping_add(h);
            }
            if let Some(g) = self.group_of_node(node) {
                group_hash[g] = group_hash[g].wrapping_add(h.rotate_left(17));
            }
        }
        (feeder_hash, group_hash)
    }

    /// Feeder `f`'s fingerprint of [`Self::hash_sums`]: its own items and its
    /// busbar group's.
    fn fingerprint(&self, f: usize, feeder_hash: &[u64], group_hash: &[u64]) -> u64 {
        let head = self.topology.tree(FeederIx::from_usize(f)).head();
        let group = self
            .topology
            .busbar_group_index(head)
            .map_or(0, |g| group_hash[g]);
        feeder_hash[f] ^ group.rotate_left(31)
    }

    /// The base generation checks read for feeder `f`: measured loads, with
    /// queued generators and generation reservations injecting, without load
    /// reservations (see [`Engine::build_generation_base`]). Where nothing
    /// injects on the feeder itself, the measured base: injections elsewhere
    /// in its busbar group are added to the group's flow as the generator is
    /// judged ([`FeederBase::counts_injections`] tells which).
    pub fn generation_base(&self, f: usize) -> Arc<FeederBase> {
        let fingerprint = self.generation_fingerprint[f];
        if fingerprint == 0 {
            return self.unreserved(f).unwrap_or_else(|| self.feeder(f));
        }
        self.bases.get_with((f, GENERATION_KEY | fingerprint), || {
            Arc::new(self.build_generation_base(f))
        })
    }

    /// Per kept step of `base`, what injections in its busbar group add to
    /// the group's flow and `base` does not count yet, kVA.
    pub(crate) fn uncounted_group_injection(&self, base: &FeederBase, k: usize) -> Complex64 {
        match base.group {
            Some(g) if !base.counts_injections => self.group_injected_kva[g][base.window_step[k]],
            _ => Complex64::new(0.0, 0.0),
        }
    }

    /// The readings behind the engine.
    pub fn readings(&self) -> &dyn ReadingsSource {
        self.readings.as_ref()
    }

    /// Whether reservations touch a feeder: on it, or in its busbar group.
    pub(crate) fn touched_by_reservations(&self, f: usize) -> bool {
        let head = self.topology.tree(FeederIx::from_usize(f)).head();
        self.feeder_reserved[f]
            || self
                .topology
                .busbar_group_index(head)
                .is_some_and(|g| self.group_reserved[g])
    }

    /// The base of feeder `f`, reservations counted.
    pub fn feeder(&self, f: usize) -> Arc<FeederBase> {
        let fingerprint = self.feeder_fingerprint[f];
        self.bases.get_with((f, fingerprint), || {
            Arc::new(self.build_base(f, fingerprint != 0))
        })
    }

    /// What the feeder caches hold, and the bytes they weigh.
    pub fn cache_usage(&self) -> CacheUsage {
        self.bases.run_pending_tasks();
        self.n1_cases.run_pending_tasks();
        CacheUsage {
            bases: self.bases.entry_count(),
            bases_bytes: self.bases.weighted_size(),
            n1_feeders: self.n1_cases.entry_count(),
            n1_bytes: self.n1_cases.weighted_size(),
        }
    }

    /// The base of feeder `f` if it is in the cache.
    pub fn cached_feeder(&self, f: usize) -> Option<Arc<FeederBase>> {
        self.bases.get(&(f, self.feeder_fingerprint[f]))
    }

    /// The base of feeder `f` without reservations, where the cache holds it
    /// (the feeder's own base where no reservation touches it).
    pub(crate) fn cached_unreserved(&self, f: usize) -> Option<Arc<FeederBase>> {
        self.bases.get(&(f, 0))
    }

    /// The base of feeder `f` without reservations, where any touch it: what the
    /// queue takes is the difference.
    pub fn unreserved(&self, f: usize) -> Option<Arc<FeederBase>> {
        self.touched_by_reservations(f).then(|| {
            self.bases
                .get_with((f, 0), || Arc::new(self.build_base(f, false)))
        })
    }

    /// Whether a reservation sits on feeder `f`.
    pub(crate) fn reserved_on(&self, f: usize) -> bool {
        self.feeder_reserved[f]
    }

    /// A busbar group's power at the given steps of the window, kVA.
    pub(crate) fn group_series(
        &self,
        group: Option<usize>,
        window_steps: &[usize],
        with_reservations: bool,
    ) -> Vec<Complex64> {
        match group {
            Some(g) => window_steps
                .iter()
                .map(|&w| {
                    let reserved = if with_reservations {
                        self.group_reserved_kva[g][w]
                    } else {
                        Complex64::new(0.0, 0.0)
                    };
                    self.group_kva[g][w] + reserved
                })
                .collect(),
            None => vec![Complex64::new(0.0, 0.0); window_steps.len()],
        }
    }

    /// Index of each step of `loads` in the engine's window.
    pub(crate) fn window_steps(&self, loads: &FeederLoads) -> Vec<usize> {
        let start = self.window.steps.first().copied().unwrap_or(0);
        loads
            .steps
            .iter()
            .map(|ts| ((ts - start) / STEP_MS) as usize)
            .collect()
    }

    /// Reserved load per busbar group and window step, kVA: reservations on the
    /// group's feeders and at its busbars (new bays).
    fn reserved_per_group(&self) -> Vec<Vec<Complex64>> {
        self.sum_per_group(self.reservations.iter().map(|r| {
            let per_kw = Complex64::new(1.0, power_factor_tan(r.power_factor));
            (r.node, r.demand_kw, per_kw, r.profile.as_deref())
        }))
    }

    /// The 96-quarter-hour index of a timestamp in the utility's local time.
    pub fn quarter_of_day(&self, ts_ms: i64) -> usize {
        let local = ts_ms + i64::from(self.config.local_utc_offset_min) * 60_000;
        (local.rem_euclid(86_400_000) / STEP_MS) as usize
    }

    /// Per group and window step, the measured power of its substation transformers
    /// where every in-service one of them is measured; zero otherwise (filled from
    /// the feeders later).
    fn measured_group_kva(&self, readings: &dyn ReadingsSource) -> Vec<Vec<Complex64>> {
        let steps = self.window.steps.len();
        let gap = self.config.load_model.max_interpolation_gap_ms;
        self.topology
            .busbar_groups
            .iter()
            .map(|group| {
                let mut total = vec![Complex64::new(0.0, 0.0); steps];
                let mut known = vec![!group.transformers.is_empty(); steps];
                for t in &group.transformers {
                    let r = AssetRef {
                        kind: AssetKind::SubstationTransformer,
                        index: t.0,
                    };
                    let p = self.window.align(&readings.series(r, Quantity::PKw), gap);
                    let q = self.window.align(&readings.series(r, Quantity::QKvar), gap);
                    for k in 0..steps {
                        match p[k] {
                            Some(p) => total[k] += Complex64::new(p, q[k].unwrap_or(0.0)),
                            None => known[k] = false,
                        }
                    }
                }
                // NaN marks an unknown step until feeders fill it.
                total
                    .into_iter()
                    .zip(known)
                    .map(|(s, k)| if k { s } else { Complex64::new(f64::NAN, 0.0) })
                    .collect()
            })
            .collect()
    }

    /// Where a group's transformers are not measured, its power is the sum of its
    /// feeders' heads: measured where they are, from a power flow otherwise.
    fn fill_unmeasured_groups(&mut self) {
        let unknown: Vec<usize> = (0..self.group_kva.len())
            .filter(|g| self.group_kva[*g].iter().any(|s| s.re.is_nan()))
            .collect();
        if unknown.is_empty() {
            return;
        }
        let steps = self.window.steps.len();
        let gap = self.config.load_model.max_interpolation_gap_ms;
        let mut sums = vec![vec![Complex64::new(0.0, 0.0); steps]; self.group_kva.len()];
        for f in 0..self.network.feeders.len() {
            let head = self.topology.tree(FeederIx::from_usize(f)).head();
            let Some(g) = self.topology.busbar_group_index(head) else {
                continue;
            };
            if !unknown.contains(&g) {
                continue;
            }
            let asset = AssetRef {
                kind: AssetKind::Feeder,
                index: f as u32,
            };
            let p = self
                .window
                .align(&self.readings.series(asset, Quantity::PKw), gap);
            let q = self
                .window
                .align(&self.readings.series(asset, Quantity::QKvar), gap);
            if p.iter().all(Option::is_some) {
                for k in 0..steps {
                    sums[g][k] += Complex64::new(p[k].unwrap_or(0.0), q[k].unwrap_or(0.0));
                }
            } else {
                let base =
                    self.build_feeder(FeederIx::from_usize(f), self.readings.as_ref(), false);
                for (k, solution) in base.solutions.iter().enumerate() {
                    sums[g][base.window_step[k]] += solution.head_power_kva();
                }
            }
        }
        for (g, series) in Arc::make_mut(&mut self.group_kva).iter_mut().enumerate() {
            for (k, s) in series.iter_mut().enumerate() {
                if s.re.is_nan() {
                    *s = sums[g][k];
                }
            }
        }
    }

    /// Rated power of a busbar group's substation transformers, kVA.
    pub fn group_rated_kva(&self, group: Option<usize>) -> f64 {
        group.map_or(0.0, |g| self.topology.busbar_groups[g].rated_kva)
    }
}

/// The window spanning every reading of the network's feeders, transformers and
/// substation transformers; one step at the epoch when there are none.
fn data_window(network: &Network, readings: &dyn ReadingsSource) -> Window {
    if let Some((first, last)) = readings.span() {
        return Window::spanning(first, last);
    }
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    let mut look = |r: AssetRef| {
        for q in [Quantity::PKw, Quantity::UKv] {
            let s = readings.series(r, q);
            if let (Some(a), Some(b)) = (s.first(), s.last()) {
                first = first.min(a.0);
                last = last.max(b.0);
            }
        }
    };
    for i in 0..network.feeders.len() {
        look(AssetRef {
            kind: AssetKind::Feeder,
            index: i as u32,
        });
    }
    for i in 0..network.transformers.len() {
        look(AssetRef {
            kind: AssetKind::Transformer,
            index: i as u32,
        });
    }
    for i in 0..network.substation_transformers.len() {
        look(AssetRef {
            kind: AssetKind::SubstationTransformer,
            index: i as u32,
        });
    }
    if first > last {
        return Window::spanning(0, 0);
    }
    Window::spanning(first, last)
}
