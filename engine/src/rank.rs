//! Ranking an application: candidates near the customer, each evaluated, and the
//! supply schemes built from the feasible ones.

use headroom_geodata::{AssetKind, Filter, LonLat, NodeIx, NodeType, TransformerIx, rfc3339};
use rayon::prelude::*;
use serde::Serialize;

use crate::application::{Application, ApplicationKind, Importance};
use crate::checks::Figures;
use crate::checks::{CheckName, CheckResult};
use crate::config::N1Mode;
use crate::engine::{Engine, ReservedLoad};
use crate::error::{Error, Result};
use crate::evaluate::{
    AddedGeneration, AddedLoad, EXPORT_CHECKS, ExportEvaluation, PointEvaluation, UNBOUNDED_KW,
    magnitude_root, transformer_root,
};
use crate::load_model::{STEP_MS, power_factor_tan};
use crate::n1::N1Application;
use crate::powerflow::SQRT_3;
use crate::service_line::{PointSupply, ServiceLine};

/// The data behind a result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataWindow {
    /// Start of the window, RFC 3339.
    pub from: String,
    /// End of the window (exclusive), RFC 3339.
    pub to: String,
    /// Share of the evaluated feeders' load measured at transformers, 0 to 1.
    pub metered_share: f64,
    /// Steps of the evaluated feeders dropped for a head reading missing more
    /// than an hour (summed over feeders).
    pub dropped_steps: usize,
}

/// Worst-case figures as results print them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FiguresOut {
    /// Highest loading of segments and head, %.
    pub max_loading_pct: f64,
    /// Lowest node voltage, pu.
    pub min_voltage_pu: f64,
    /// Substation transformer loading of the busbar group, %.
    pub substation_transformer_loading_pct: f64,
    /// Highest node voltage, pu (for generation: over the steps it exports).
    pub max_voltage_pu: f64,
}

impl From<Figures> for FiguresOut {
    fn from(f: Figures) -> Self {
        Self {
            max_loading_pct: round(f.max_loading_pct, 3),
            min_voltage_pu: round(f.min_voltage_pu, 6),
            substation_transformer_loading_pct: round(f.substation_transformer_loading_pct, 3),
            max_voltage_pu: round(f.max_voltage_pu, 6),
        }
    }
}

/// One evaluated connection point.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    /// Node id (the transformer id for low-voltage requests).
    pub node: String,
    /// `pole`, `ring_main_unit`, ..., `busbar` (through a new bay) or `transformer`.
    pub node_type: String,
    /// Feeder it is on (none for a busbar).
    pub feeder: Option<String>,
    /// Substation supplying it.
    pub substation: Option<String>,
    /// Geodesic distance from the customer, metres.
    pub distance_m: f64,
    /// Where it stands: longitude, degrees east (for drawing the scheme).
    pub lon: f64,
    /// Latitude, degrees north.
    pub lat: f64,
    /// Whether the application can connect here.
    pub feasible: bool,
    /// The check that limits `headroom_kw` (or rules the point out).
    pub binding_constraint: CheckName,
    /// Every check with its worst value.
    pub checks: Vec<CheckResult>,
    /// Worst case without the new load.
    pub before: FiguresOut,
    /// Worst case with it.
    pub after: FiguresOut,
    /// Largest extra load keeping every electrical check, kW.
    pub headroom_kw: f64,
    /// N-1: the largest extra load for which some restoration case of the
    /// feeder passes, never above the normal headroom (`planning.md` §2);
    /// absent where the N-1 checks are off or the point is a new bay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n1_headroom_kw: Option<f64>,
    /// N-1: the largest extra load the substation carries with its largest
    /// coupled transformer out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substation_n1_headroom_kw: Option<f64>,
}

/// A supply scheme: one or two connection points, each the best point of a
/// supply route of its own (a feeder, a new bay on a busbar section or, for
/// low-voltage customers, a distribution transformer), with the new line each
/// needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Scheme {
    /// 1 for the best.
    pub rank: usize,
    /// Score in [0, 1] (see [`crate::config::ScoreWeights`]): the weighted mean
    /// of `score_parts`.
    pub score: f64,
    /// What the score is made of, each in [0, 1] (for two supplies, the mean
    /// of theirs).
    pub score_parts: ScoreParts,
    /// Connection points.
    pub supplies: Vec<String>,
    /// The new line from each supply to the customer, in `supplies` order.
    pub service_lines: Vec<ServiceLine>,
    /// Estimated cost of the lines and bays, in the conductor catalogue's
    /// currency; absent where no conductor of the catalogue fits a line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// In words.
    pub summary: String,
}

/// The parts of a scheme's score, each in [0, 1], higher better.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreParts {
    /// Nearness: 1 at the customer, 0 at the search radius.
    pub distance: f64,
    /// The cheapest scheme's cost over this one's (0 where no conductor fits).
    pub cost: f64,
    /// Loading margin after connection: 1 unloaded, 0 at the thermal limit.
    pub loading: f64,
    /// Voltage margin after connection: 1 at nominal, 0 at the lower limit.
    pub voltage: f64,
    /// Headroom left after connection, as a share of the headroom.
    pub headroom: f64,
}

impl ScoreParts {
    fn mean(parts: &[ScoreParts]) -> ScoreParts {
        let n = parts.len().max(1) as f64;
        let sum = |f: fn(&ScoreParts) -> f64| parts.iter().map(f).sum::<f64>() / n;
        ScoreParts {
            distance: sum(|p| p.distance),
            cost: sum(|p| p.cost),
            loading: sum(|p| p.loading),
            voltage: sum(|p| p.voltage),
            headroom: sum(|p| p.headroom),
        }
    }

    fn rounded(self) -> ScoreParts {
        ScoreParts {
            distance: round(self.distance, 4),
            cost: round(self.cost, 4),
            loading: round(self.loading, 4),
            voltage: round(self.voltage, 4),
            headroom: round(self.headroom, 4),
        }
    }
}

/// A candidate near the customer and what limits it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NearCandidate {
    /// Node id.
    pub node: String,
    /// Its feeder.
    pub feeder: Option<String>,
    /// What rules it out.
    pub binding_constraint: CheckName,
    /// Its headroom, kW.
    pub headroom_kw: f64,
}

/// Why no scheme was found.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explanation {
    /// In words.
    pub reason: String,
    /// The nearest candidates and what rules each out.
    pub nearest: Vec<NearCandidate>,
    /// The nearest feeder whose reinforcement would make room.
    pub reinforce_feeder: Option<String>,
}

/// The ranking of one application.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RankingResult {
    /// The application's id.
    pub application: String,
    /// The data behind the figures.
    pub data: DataWindow,
    /// Supply schemes, best first.
    pub schemes: Vec<Scheme>,
    /// Every candidate evaluated, nearest first.
    pub candidates: Vec<Candidate>,
    /// Why there is no scheme, where there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// A power flow that does not converge under an absurd load (a power factor
/// near 0) leaves NaN figures, which JSON cannot carry: they read as voltage
/// collapse (0 pu) and unbounded loading.
fn finite_figures(mut c: Candidate) -> Candidate {
    let loading = |v: &mut f64| {
        if !v.is_finite() {
            *v = f64::MAX;
        }
    };
    let voltage = |v: &mut f64| {
        if !v.is_finite() {
            *v = 0.0;
        }
    };
    for figures in [&mut c.before, &mut c.after] {
        loading(&mut figures.max_loading_pct);
        loading(&mut figures.substation_transformer_loading_pct);
        voltage(&mut figures.min_voltage_pu);
        // A collapse reads as no voltage, highest or lowest.
        voltage(&mut figures.max_voltage_pu);
    }
    for check in &mut c.checks {
        // Not applicable, said as null.
        if check.value.is_nan() {
            continue;
        }
        if check.name == CheckName::Voltage {
            voltage(&mut check.value);
        } else {
            loading(&mut check.value);
        }
        loading(&mut check.limit);
    }
    if !c.headroom_kw.is_finite() {
        c.headroom_kw = 0.0;
    }
    if !c.distance_m.is_finite() {
        c.distance_m = f64::MAX;
    }
    c
}

/// `kva` as a share of `rated`, %; 0 without a rating.
fn percent_of(kva: f64, rated: f64) -> f64 {
    if rated > 0.0 {
        kva / rated * 100.0
    } else {
        0.0
    }
}

/// The figures of a new bay at a busbar: its own cable is not modelled yet,
/// so the substation transformers (at `loading_pct`) are the most loaded
/// element the connection touches, and voltages are the busbar's.
fn bay_figures(loading_pct: f64) -> Figures {
    Figures {
        max_loading_pct: loading_pct,
        min_voltage_pu: 1.0,
        substation_transformer_loading_pct: loading_pct,
        max_voltage_pu: 1.0,
    }
}

/// A new line in a few words: "1,250 m (estimated) of YJV22-8.7/15 3x240,
/// cost 1,167,500".
fn describe_line(line: &ServiceLine) -> String {
    match (&line.conductor, line.cost) {
        (Some(c), Some(cost)) => format!(
            "about {:.0} m of {}, estimated cost {cost:.0}",
            line.route_length_m, c.name
        ),
        _ => format!(
            "about {:.0} m of new line: {}",
            line.route_length_m,
            line.problem.as_deref().unwrap_or("no conductor fits")
        ),
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// Internal: a candidate with what schemes need.
/// A supply named in a scheme.
#[derive(Clone, Copy)]
enum Supply {
    Node(NodeIx),
    Transformer(TransformerIx),
}

struct Evaluated {
    out: Candidate,
    busbar: Option<NodeIx>,
    substation: Option<usize>,
    feeder: Option<usize>,
    voltage_margin: f64,
    /// The medium-voltage node it connects at (a transformer's for
    /// low-voltage requests).
    node: NodeIx,
    /// What the connection fits at the point: a bay, a tee or a transformer.
    point: PointKind,
}

/// What a connection point takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PointKind {
    /// A node of the medium-voltage network.
    Node(NodeType),
    /// A public distribution transformer (low-voltage requests).
    Transformer(TransformerIx),
}

/// A distinct supply route: schemes offer the best point of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Route {
    /// A point on a feeder.
    Feeder(usize),
    /// A new bay on a busbar section.
    Bay(NodeIx),
    /// A public distribution transformer.
    Transformer(TransformerIx),
    /// A point on no feeder (out of service).
    Alone(NodeIx),
}

impl Evaluated {
    fn route(&self) -> Route {
        match (self.point, self.feeder) {
            (PointKind::Transformer(t), _) => Route::Transformer(t),
            (PointKind::Node(NodeType::Busbar), _) => Route::Bay(self.node),
            (_, Some(f)) => Route::Feeder(f),
            (_, None) => Route::Alone(self.node),
        }
    }
}

/// Candidates of one route sized for their new line, best partial score
/// first: the cost of a line moves a point's score only a little against its
/// neighbours' on the same route, so the few nearest the top decide.
const ROUTE_SHORTLIST: usize = 3;

impl Engine {
    /// The voltage level an application asks for, kV.
    fn request_kv(&self, app: &Application, at: LonLat) -> f64 {
        if let Some(kv) = app.voltage_kv {
            return kv;
        }
        let lv_max_kw = if app.is_generation() {
            self.config.lv_max_generation_kw
        } else {
            self.config.lv_max_demand_kw
        };
        if app.demand_kw <= lv_max_kw {
            return 0.4;
        }
        // The network's medium voltage where the customer is.
        self.spatial
            .nearest_nodes(at, 16, &Filter::default())
            .iter()
            .map(|h| self.network.node(h.index))
            .find(|n| n.node_type != NodeType::Busbar && n.kv > 1.0)
            .or_else(|| self.network.nodes.iter().find(|n| n.kv > 1.0))
            .map_or(10.0, |n| n.kv)
    }

    /// Ranks one application.
    pub fn rank(&self, app: &Application) -> RankingResult {
        let at = LonLat::new(app.lon, app.lat);
        let kv = self.request_kv(app, at);
        let profile = app.judged_profile();
        let load = AddedLoad {
            tan_phi: power_factor_tan(app.power_factor),
            profile: profile.as_deref(),
        };
        let mut evaluated: Vec<Evaluated> = if kv < 1.0 {
            let radius = app.max_distance_m.unwrap_or(self.config.lv_search_radius_m);
            let mut hits = self
                .spatial
                .transformers_within(at, radius, &Filter::default());
            hits.retain(|h| {
                let t = &self.network.transformers[h.index.get()];
                t.public && (t.lv_kv - kv).abs() <= 0.01 * kv
            });
            hits.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
            hits.par_iter()
                .map(|h| self.evaluate_transformer(h.index, h.distance_m, app, &load))
                .collect()
        } else {
            let radius = app.max_distance_m.unwrap_or(self.config.mv_search_radius_m);
            let filter = Filter {
                kv: Some(kv),
                in_service_only: false,
            };
            let mut hits = self.spatial.nodes_within(at, radius, &filter);
            hits.retain(|h| {
                let n = self.network.node(h.index);
                n.node_type != NodeType::Busbar || n.spare_bays >= 1
            });
            // Candidates of one feeder evaluated together share its arrays in cache.
            hits.sort_by_key(|h| {
                let placement = self.topology.placement(h.index);
                (placement.map(|p| (p.feeder, p.local)), h.index)
            });
            let n1_application = N1Application::new(self, app.demand_kw, &load);
            hits.par_iter()
                .map(|h| {
                    self.with_n1(
                        self.evaluate_node(h.index, h.distance_m, app, &load),
                        app,
                        &n1_application,
                    )
                })
                .collect()
        };
        evaluated.sort_by(|a, b| {
            a.out
                .distance_m
                .total_cmp(&b.out.distance_m)
                .then_with(|| a.out.node.cmp(&b.out.node))
        });

        let radius = app.max_distance_m.unwrap_or(if kv < 1.0 {
            self.config.lv_search_radius_m
        } else {
            self.config.mv_search_radius_m
        });
        let schemes = self.schemes(app, kv, radius, &evaluated);
        let explanation = schemes
            .is_empty()
            .then(|| self.explain(app, kv, radius, &evaluated));
        let mut feeders: Vec<usize> = evaluated.iter().filter_map(|e| e.feeder).collect();
        feeders.sort_unstable();
        feeders.dedup();
        let metered: Vec<f64> = feeders
            .iter()
            .map(|f| self.feeder(*f).loads.metered_share)
            .collect();
        let dropped_steps = feeders
            .iter()
            .map(|f| self.feeder(*f).loads.dropped_steps)
            .sum();
        let metered_share = if metered.is_empty() {
            self.metered_transformer_share(0..self.network.transformers.len())
        } else {
            metered.iter().sum::<f64>() / metered.len() as f64
        };
        let first = self.window.steps.first().copied().unwrap_or(0);
        let last = self.window.steps.last().copied().unwrap_or(0) + STEP_MS;
        RankingResult {
            application: app.id.clone(),
            data: DataWindow {
                from: rfc3339(first),
                to: rfc3339(last),
                metered_share: round(metered_share, 4),
                dropped_steps,
            },
            schemes,
            candidates: evaluated
                .into_iter()
                .map(|e| finite_figures(e.out))
                .collect(),
            explanation,
        }
    }

    /// Re-evaluates the connection points of a scheme for `app` with the
    /// reservations this engine counts: what a reservation checks before it is
    /// recorded. Each supply is a node id (a medium-voltage point or a busbar
    /// through a new bay) or, for a low-voltage request, a transformer id.
    pub fn evaluate_supplies(
        &self,
        app: &Application,
        supplies: &[String],
    ) -> Result<Vec<Candidate>> {
        let at = LonLat::new(app.lon, app.lat);
        let profile = app.judged_profile();
        let load = AddedLoad {
            tan_phi: power_factor_tan(app.power_factor),
            profile: profile.as_deref(),
        };
        let n1_application = N1Application::new(self, app.demand_kw, &load);
        supplies
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let supply = self.supply(id, i)?;
                let position = match supply {
                    Supply::Node(n) => self.network.node(n).position,
                    Supply::Transformer(t) => self.network.transformers[t.get()].position,
                };
                let distance_m = headroom_geodata::geodesy::distance_m(at, position);
                Ok(finite_figures(match supply {
                    Supply::Node(n) => {
                        let e = self.evaluate_node(n, distance_m, app, &load);
                        self.with_n1(e, app, &n1_application).out
                    }
                    Supply::Transformer(t) => {
                        self.evaluate_transformer(t, distance_m, app, &load).out
                    }
                }))
            })
            .collect()
    }

    /// The loads a reservation of `supplies` for `app` adds: the whole demand at
    /// each supply, since each circuit of a two-supply scheme must carry the
    /// customer alone when the other is out.
    pub fn reserved_loads(
        &self,
        app: &Application,
        supplies: &[String],
    ) -> Result<Vec<ReservedLoad>> {
        supplies
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (node, transformer) = match self.supply(id, i)? {
                    Supply::Node(n) => (n, None),
                    Supply::Transformer(t) => (self.network.transformers[t.get()].node, Some(t)),
                };
                Ok(ReservedLoad {
                    application: app.id.clone(),
                    kind: app.kind,
                    node,
                    demand_kw: app.demand_kw,
                    power_factor: app.power_factor,
                    profile: app.judged_profile().map(std::borrow::Cow::into_owned),
                    transformer,
                })
            })
            .collect()
    }

    /// What reservations at these supplies must be serialised on: the
    /// substations whose busbar groups they load (a feeder id where a node has
    /// no substation). Two reservations with no key in common cannot change
    /// each other's checks.
    pub fn supply_lock_keys(&self, supplies: &[String]) -> Result<Vec<String>> {
        let mut keys = supplies
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let node = match self.supply(id, i)? {
                    Supply::Node(n) => n,
                    Supply::Transformer(t) => self.network.transformers[t.get()].node,
                };
                let placement = self.topology.placement(node);
                let busbar = placement.map_or(node, |p| self.topology.tree(p.feeder).head());
                Ok(match (self.substation_id(busbar), placement) {
                    (Some((_, id)), _) => format!("substation:{id}"),
                    (None, Some(p)) => {
                        format!("feeder:{}", self.network.feeders[p.feeder.get()].id)
                    }
                    (None, None) => format!("node:{}", self.network.node(node).id),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn supply(&self, id: &str, i: usize) -> Result<Supply> {
        match self.network.lookup(id) {
            Some(r) if r.kind == AssetKind::Node => {
                Ok(Supply::Node(NodeIx::from_usize(r.index as usize)))
            }
            Some(r) if r.kind == AssetKind::Transformer => Ok(Supply::Transformer(
                TransformerIx::from_usize(r.index as usize),
            )),
            Some(r) => Err(Error::BadApplication {
                field: format!("supplies[{i}]"),
                message: format!(
                    "`{id}` is a {}, not a connection node or distribution transformer",
                    r.kind
                ),
            }),
            None => Err(Error::BadApplication {
                field: format!("supplies[{i}]"),
                message: format!("`{id}` is not in the network"),
            }),
        }
    }

    /// The substation of a busbar: its own `substation`, else that of the
    /// transformers feeding its group.
    fn substation_id(&self, busbar: NodeIx) -> Option<(usize, String)> {
        let s = self.substation_of_busbar(busbar)?;
        Some((s, self.network.substations[s].id.to_string()))
    }

    fn evaluate_node(
        &self,
        node: NodeIx,
        distance_m: f64,
        app: &Application,
        load: &AddedLoad<'_>,
    ) -> Evaluated {
        let n = self.network.node(node);
        let limits = self.config.limits;
        let placement = self.topology.placement(node);
        let busbar = match (n.node_type, placement) {
            (NodeType::Busbar, _) => Some(node),
            (_, Some(p)) => Some(self.topology.tree(p.feeder).head()),
            _ => None,
        };
        let substation = busbar.and_then(|b| self.substation_id(b));
        let mut checks = Vec::new();
        // The same evaluation without reservations, where any touch this point:
        // what the queue has taken is the difference.
        let mut export = None;
        let (evaluation, free, feeder) = if app.is_generation() {
            // Load reservations relieve nothing and generation reservations
            // count as injections in the generation base: no queue to compare.
            let generation = AddedGeneration {
                absorbed_kvar_per_kw: load.tan_phi,
                profile: load.profile,
            };
            if n.node_type == NodeType::Busbar {
                let e = self.evaluate_export_new_bay(node, app.demand_kw, &generation);
                (e.map(|e| e.point), None, None)
            } else if let Some(p) = placement {
                let f = p.feeder.get();
                let base = self.generation_base(f);
                let e = self.evaluate_export(&base, p.local, app.demand_kw, &generation);
                let point = e.point.clone();
                export = Some((e, base));
                (Some(point), None, Some(f))
            } else {
                (None, None, None)
            }
        } else if n.node_type == NodeType::Busbar {
            let free = self
                .group_has_reservations(node)
                .then(|| self.evaluate_new_bay(node, app.demand_kw, load, false))
                .flatten();
            (
                self.evaluate_new_bay(node, app.demand_kw, load, true),
                free,
                None,
            )
        } else if let Some(p) = placement {
            let f = p.feeder.get();
            let free = self
                .unreserved(f)
                .map(|base| self.evaluate_point(&base, p.local, app.demand_kw, load));
            let with = self.evaluate_point(&self.feeder(f), p.local, app.demand_kw, load);
            (Some(with), free, Some(f))
        } else {
            (None, None, None)
        };
        let oos = !n.in_service || evaluation.is_none();
        let needs_bay = n.node_type.needs_spare_bay() && n.spare_bays < 1;
        let (headroom, mut binding, before, after) = match &evaluation {
            Some(e) => (e.headroom_kw, e.binding, e.before, e.after),
            None => (
                0.0,
                CheckName::OutOfService,
                Figures::default(),
                Figures::default(),
            ),
        };
        if let (Some((x, base)), Some(f)) = (&export, feeder) {
            checks.extend(self.export_checks(x, base, f, app.demand_kw));
        } else if let (Some(e), Some(f)) = (&evaluation, feeder) {
            checks.extend(self.electrical_checks(e, f));
        } else if let Some(e) = &evaluation {
            checks.push(CheckResult {
                name: CheckName::SubstationTransformer,
                ok: e.after.substation_transformer_loading_pct <= limits.substation_transformer_pct,
                value: round(e.after.substation_transformer_loading_pct, 3),
                limit: limits.substation_transformer_pct,
                element: busbar.and_then(|b| self.group_element(b)),
                detail: None,
            });
        }
        let mut queue_binds = false;
        if let (Some(e), Some(free)) = (&evaluation, &free) {
            queue_binds = app.demand_kw > e.headroom_kw && app.demand_kw <= free.headroom_kw;
            checks.push(CheckResult {
                name: CheckName::Reserved,
                ok: !queue_binds,
                value: round(self.reserved_near(busbar, feeder), 1),
                limit: free.headroom_kw,
                element: None,
                detail: None,
            });
        }
        checks.push(CheckResult {
            name: CheckName::NoSpareBay,
            ok: !needs_bay,
            value: f64::from(n.spare_bays),
            limit: if n.node_type.needs_spare_bay() {
                1.0
            } else {
                0.0
            },
            element: Some(n.id.to_string()),
            detail: None,
        });
        checks.push(CheckResult {
            name: CheckName::OutOfService,
            ok: !oos,
            value: if oos { 1.0 } else { 0.0 },
            limit: 0.0,
            element: Some(n.id.to_string()),
            detail: None,
        });
        if oos {
            binding = CheckName::OutOfService;
        } else if needs_bay {
            binding = CheckName::NoSpareBay;
        } else if queue_binds {
            binding = CheckName::Reserved;
        }
        let feasible = !oos && !needs_bay && app.demand_kw <= headroom;
        Evaluated {
            // A load's margin is to the lower limit, a generator's to the upper.
            voltage_margin: if app.is_generation() {
                (limits.v_max_pu - after.max_voltage_pu) / (limits.v_max_pu - 1.0)
            } else {
                (after.min_voltage_pu - limits.v_min_pu) / (1.0 - limits.v_min_pu)
            },
            out: Candidate {
                node: n.id.to_string(),
                node_type: n.node_type.as_str().to_owned(),
                feeder: feeder.map(|f| self.network.feeders[f].id.to_string()),
                substation: substation.as_ref().map(|(_, id)| id.clone()),
                distance_m: round(distance_m, 2),
                lon: n.position.lon,
                lat: n.position.lat,
                feasible,
                binding_constraint: binding,
                checks,
                before: before.into(),
                after: after.into(),
                headroom_kw: headroom,
                n1_headroom_kw: None,
                substation_n1_headroom_kw: None,
            },
            busbar,
            substation: substation.map(|(s, _)| s),
            feeder,
            node,
            point: PointKind::Node(n.node_type),
        }
    }

    /// A medium-voltage point's evaluation with the N-1 checks where they are
    /// on (`engine.n1.mode`, or the application's `"n1": true`): reported
    /// beside the others, and in `enforce` deciding headroom, binding check
    /// and feasibility with them.
    fn with_n1(
        &self,
        mut e: Evaluated,
        app: &Application,
        n1_application: &N1Application<'_>,
    ) -> Evaluated {
        let mode = self.config.n1.mode;
        if app.is_generation()
            || (mode == N1Mode::Off && !app.n1)
            || e.out.binding_constraint == CheckName::OutOfService
        {
            return e;
        }
        let n1 = self.n1_checks(
            n1_application,
            e.node,
            e.feeder,
            e.busbar,
            e.out.headroom_kw,
        );
        e.out.n1_headroom_kw = n1.transfer_headroom_kw;
        e.out.substation_n1_headroom_kw = n1.substation_headroom_kw;
        let all_ok = n1.checks.iter().all(|c| c.ok);
        let at = e
            .out
            .checks
            .iter()
            .position(|c| c.name == CheckName::NoSpareBay)
            .unwrap_or(e.out.checks.len());
        e.out.checks.splice(at..at, n1.checks);
        if mode == N1Mode::Enforce || app.n1 {
            // Of equal headrooms the earlier check in the tie order binds: the
            // normal ones, then the transfer, then the substation.
            for (headroom, name) in [
                (n1.transfer_headroom_kw, CheckName::N1Transfer),
                (n1.substation_headroom_kw, CheckName::SubstationN1),
            ] {
                if let Some(h) = headroom
                    && h < e.out.headroom_kw
                {
                    e.out.headroom_kw = h;
                    if !matches!(
                        e.out.binding_constraint,
                        CheckName::OutOfService | CheckName::NoSpareBay
                    ) {
                        e.out.binding_constraint = name;
                    }
                }
            }
            e.out.feasible = e.out.feasible && all_ok && app.demand_kw <= e.out.headroom_kw;
        }
        e
    }

    /// Whether reservations load the busbar group of `busbar`.
    fn group_has_reservations(&self, busbar: NodeIx) -> bool {
        self.topology.busbar_group_index(busbar).is_some_and(|g| {
            self.group_reserved_kva[g]
                .iter()
                .any(|s| s.norm_sqr().sqrt() > 0.0)
        })
    }

    /// Demand reserved on a feeder and in its busbar group, kW.
    fn reserved_near(&self, busbar: Option<NodeIx>, feeder: Option<usize>) -> f64 {
        let group = busbar.and_then(|b| self.topology.busbar_group_index(b));
        self.reservations
            .iter()
            .filter(|r| {
                let (r_feeder, r_busbar) = match self.topology.placement(r.node) {
                    Some(p) => (Some(p.feeder.get()), self.topology.tree(p.feeder).head()),
                    None => (None, r.node),
                };
                (feeder.is_some() && r_feeder == feeder)
                    || (group.is_some() && self.topology.busbar_group_index(r_busbar) == group)
            })
            .map(|r| r.demand_kw)
            .fold(0.0, |a, b| a + b)
    }

    /// An element id for substation checks: the busbar group's first transformer.
    fn group_element(&self, busbar: NodeIx) -> Option<String> {
        let group = self.topology.busbar_group_of(busbar)?;
        group
            .transformers
            .first()
            .map(|t| self.network.substation_transformers[t.get()].id.to_string())
    }

    /// The id of the segment into local node `local` of a tree (`None` for a
    /// switch or the busbar): where a thermal check names its element.
    pub(crate) fn inbound_segment_id(
        &self,
        electrical: &crate::powerflow::ElectricalFeeder,
        local: u32,
    ) -> Option<String> {
        match electrical.inbound.get(local as usize)? {
            Some(headroom_geodata::Branch::Segment(s)) => {
                Some(self.network.segment(*s).id.to_string())
            }
            _ => None,
        }
    }

    fn electrical_checks(&self, e: &PointEvaluation, feeder: usize) -> Vec<CheckResult> {
        let limits = self.config.limits;
        let base = self.feeder(feeder);
        let tree = self.topology.tree(base.loads.feeder);
        let segment_id = |local: u32| self.inbound_segment_id(&base.electrical, local);
        let node_id =
            |local: u32| Some(self.network.node(tree.nodes[local as usize]).id.to_string());
        let (v_value, v_node) = if e.worst.v_max.0 > limits.v_max_pu {
            (e.worst.v_max.0, e.worst.v_max.1)
        } else {
            (e.worst.v_min.0, e.worst.v_min.1)
        };
        let voltage_ok = e.worst.v_min.0 >= limits.v_min_pu && e.worst.v_max.0 <= limits.v_max_pu;
        vec![
            CheckResult {
                name: CheckName::SegmentThermal,
                ok: e.worst.segment.0 <= limits.thermal_pct,
                value: round(e.worst.segment.0, 3),
                limit: limits.thermal_pct,
                element: segment_id(e.worst.segment.1),
                detail: None,
            },
            CheckResult {
                name: CheckName::HeadThermal,
                ok: e.worst.head_pct <= limits.thermal_pct,
                value: round(e.worst.head_pct, 3),
                limit: limits.thermal_pct,
                element: Some(self.network.feeders[feeder].id.to_string()),
                detail: None,
            },
            CheckResult {
                name: CheckName::Voltage,
                ok: voltage_ok,
                value: round(if v_value.is_finite() { v_value } else { 0.0 }, 6),
                limit: if e.worst.v_max.0 > limits.v_max_pu {
                    limits.v_max_pu
                } else {
                    limits.v_min_pu
                },
                element: node_id(v_node),
                detail: None,
            },
            CheckResult {
                name: CheckName::SubstationTransformer,
                ok: e.worst.substation_pct <= limits.substation_transformer_pct,
                value: round(e.worst.substation_pct, 3),
                limit: limits.substation_transformer_pct,
                element: self.group_element(tree.head()),
                detail: None,
            },
        ]
    }

    /// The checks of a generator at a feeder's node: each holds where its
    /// worst value with the export is within its limit or no worse than
    /// without, and the one that binds fails where the export exceeds the
    /// headroom.
    fn export_checks(
        &self,
        x: &ExportEvaluation,
        base: &crate::base::FeederBase,
        feeder: usize,
        export_kw: f64,
    ) -> Vec<CheckResult> {
        let limits = self.config.limits;
        let tree = self.topology.tree(base.loads.feeder);
        let w = &x.point.worst;
        let (before, after) = x.ratios;
        let over = export_kw > x.point.headroom_kw;
        let holds = |c: usize| {
            after[c] <= before[c].max(1.0) && !(over && EXPORT_CHECKS[c] == x.point.binding)
        };
        let segment_id = |local: u32| self.inbound_segment_id(&base.electrical, local);
        let node_id =
            |local: u32| Some(self.network.node(tree.nodes[local as usize]).id.to_string());
        // The voltage shown is the side that is further past (or nearer) its limit.
        let rise = after[2] >= after[3];
        vec![
            CheckResult {
                name: CheckName::SegmentThermal,
                ok: holds(0),
                value: round(w.segment.0, 3),
                limit: limits.thermal_pct,
                element: segment_id(w.segment.1),
                detail: None,
            },
            CheckResult {
                name: CheckName::HeadThermal,
                ok: holds(1),
                value: round(w.head_pct, 3),
                limit: limits.thermal_pct,
                element: Some(self.network.feeders[feeder].id.to_string()),
                detail: None,
            },
            CheckResult {
                name: CheckName::Voltage,
                ok: holds(2) && holds(3),
                value: round(if rise { w.v_max.0 } else { w.v_min.0 }, 6),
                limit: if rise {
                    limits.v_max_pu
                } else {
                    limits.v_min_pu
                },
                element: node_id(if rise { w.v_max.1 } else { w.v_min.1 }),
                detail: None,
            },
            CheckResult {
                name: CheckName::SubstationTransformer,
                ok: holds(4),
                value: round(after[4] * limits.substation_transformer_pct, 3),
                limit: limits.substation_transformer_pct,
                element: self.group_element(tree.head()),
                detail: None,
            },
            CheckResult {
                name: CheckName::ReversePower,
                ok: holds(5),
                value: round(x.reverse_pct.1, 3),
                limit: limits.reverse_pct,
                element: self.group_element(tree.head()),
                detail: None,
            },
        ]
    }

    /// A generator through a new bay at a busbar: only the substation
    /// transformers limit it, forward and in reverse (the bay's own cable is
    /// not modelled).
    fn evaluate_export_new_bay(
        &self,
        busbar: NodeIx,
        export_kw: f64,
        generation: &AddedGeneration<'_>,
    ) -> Option<ExportEvaluation> {
        let g = self.topology.busbar_group_index(busbar)?;
        let rated = self.group_rated_kva(Some(g));
        let limits = self.config.limits;
        let forward = rated * limits.substation_transformer_pct / 100.0;
        let reverse = rated * limits.reverse_pct / 100.0;
        let per_kw = num_complex::Complex64::new(-1.0, generation.absorbed_kvar_per_kw);
        let (mut headroom, mut binding) = (f64::INFINITY, CheckName::SubstationTransformer);
        let mut worst = [(0.0f64, 0.0f64); 2];
        for (w, &ts) in self.window.steps.iter().enumerate() {
            let factor = generation
                .profile
                .map_or(1.0, |p| p[self.quarter_of_day(ts)]);
            if factor <= 0.0 || rated <= 0.0 {
                continue;
            }
            let s = self.group_kva[g][w] + self.group_injected_kva[g][w];
            let ds = per_kw * factor;
            let after = s + ds * export_kw;
            // Per direction (forward, reverse): the most apparent power without
            // and with the export.
            let before_side = usize::from(s.re < 0.0);
            worst[before_side].0 = worst[before_side].0.max(s.norm());
            let after_side = usize::from(after.re < 0.0);
            worst[after_side].1 = worst[after_side].1.max(after.norm());
            let (root, reverse_binds) = transformer_root(s, ds, forward, reverse);
            if root < headroom {
                headroom = root;
                binding = if reverse_binds {
                    CheckName::ReversePower
                } else {
                    CheckName::SubstationTransformer
                };
            }
        }
        let pct = |kva: f64| percent_of(kva, rated);
        let figures = |forward_kva: f64| bay_figures(pct(forward_kva));
        let before = [worst[0].0, worst[1].0];
        let after = [worst[0].1, worst[1].1];
        Some(ExportEvaluation {
            point: PointEvaluation {
                headroom_kw: headroom.clamp(0.0, UNBOUNDED_KW).floor(),
                binding,
                already_broken: false,
                before: figures(before[0]),
                after: figures(after[0]),
                worst: crate::checks::WorstChecks {
                    segment: (0.0, 0),
                    head_pct: 0.0,
                    v_min: (1.0, 0),
                    v_max: (1.0, 0),
                    substation_pct: pct(after[0].max(after[1])),
                },
            },
            reverse_pct: (pct(before[1]), pct(after[1])),
            ratios: (
                [
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    pct(before[0]) / limits.substation_transformer_pct,
                    pct(before[1]) / limits.reverse_pct,
                ],
                [
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    pct(after[0]) / limits.substation_transformer_pct,
                    pct(after[1]) / limits.reverse_pct,
                ],
            ),
        })
    }

    /// A new bay at a busbar: only the substation transformers limit it.
    fn evaluate_new_bay(
        &self,
        busbar: NodeIx,
        demand_kw: f64,
        load: &AddedLoad<'_>,
        with_reservations: bool,
    ) -> Option<PointEvaluation> {
        let g = self.topology.busbar_group_index(busbar)?;
        let rated = self.topology.busbar_groups[g].rated_kva;
        let limit_kva = rated * self.config.limits.substation_transformer_pct / 100.0;
        let mut headroom = f64::INFINITY;
        let (mut before, mut after) = (0.0f64, 0.0f64);
        for (k, &ts) in self.window.steps.iter().enumerate() {
            let a = load.profile.map_or(1.0, |p| p[self.quarter_of_day(ts)]);
            let mut s = self.group_kva[g][k];
            if with_reservations {
                s += self.group_reserved_kva[g][k];
            }
            let per_kw = num_complex::Complex64::new(a, a * load.tan_phi);
            before = before.max(s.norm_sqr().sqrt());
            after = after.max((s + demand_kw * per_kw).norm_sqr().sqrt());
            if a > 0.0 && rated > 0.0 {
                headroom = headroom.min(magnitude_root(s, per_kw, limit_kva));
            }
        }
        let pct = |kva: f64| percent_of(kva, rated);
        let figures = |kva: f64| bay_figures(pct(kva));
        Some(PointEvaluation {
            headroom_kw: headroom.clamp(0.0, UNBOUNDED_KW).floor(),
            binding: CheckName::SubstationTransformer,
            already_broken: before > limit_kva,
            before: figures(before),
            after: figures(after),
            worst: crate::checks::WorstChecks {
                segment: (0.0, 0),
                head_pct: 0.0,
                v_min: (1.0, 0),
                v_max: (1.0, 0),
                substation_pct: pct(after),
            },
        })
    }

    /// A low-voltage request at a public distribution transformer: its own loading
    /// and, through its MV node, the feeder's checks.
    fn evaluate_transformer(
        &self,
        transformer: headroom_geodata::TransformerIx,
        distance_m: f64,
        app: &Application,
        load: &AddedLoad<'_>,
    ) -> Evaluated {
        let t = &self.network.transformers[transformer.get()];
        let mut e = self.evaluate_node(t.node, distance_m, app, load);
        if app.is_generation() {
            self.export_through_transformer(&mut e, transformer, app, load);
            return self.as_transformer_point(e, transformer, app);
        }
        let limits = self.config.limits;
        // What the transformer carries at each step, from the model, with the new load.
        let mut peak_with_kva = 0.0f64;
        let mut transformer_headroom = f64::INFINITY;
        if let Some(f) = e.feeder {
            let base = self.feeder(f);
            let m = base.loads.transformers.len();
            if let Some(slot) = base
                .loads
                .transformers
                .iter()
                .position(|(tx, _)| *tx == transformer)
            {
                let limit = t.rated_kva * limits.transformer_pct / 100.0;
                let reserved_here: Vec<&ReservedLoad> = self
                    .reservations
                    .iter()
                    .filter(|r| r.transformer == Some(transformer))
                    .collect();
                for k in 0..base.loads.step_count() {
                    let quarter = self.quarter_of_day(base.loads.steps[k]);
                    let a = load.profile.map_or(1.0, |p| p[quarter]);
                    let mut s = num_complex::Complex64::new(
                        base.loads.p_kw[k * m + slot],
                        base.loads.q_kvar[k * m + slot],
                    );
                    for r in &reserved_here {
                        let f = r.profile.as_ref().map_or(1.0, |p| p[quarter]);
                        s += num_complex::Complex64::new(
                            r.demand_kw * f,
                            r.demand_kw * f * power_factor_tan(r.power_factor),
                        );
                    }
                    let per_kw = num_complex::Complex64::new(a, a * load.tan_phi);
                    peak_with_kva =
                        peak_with_kva.max((s + app.demand_kw * per_kw).norm_sqr().sqrt());
                    if a > 0.0 {
                        transformer_headroom =
                            transformer_headroom.min(magnitude_root(s, per_kw, limit));
                    }
                }
            }
        }
        let loading_after = peak_with_kva / t.rated_kva * 100.0;
        e.out.checks.insert(
            0,
            CheckResult {
                name: CheckName::Transformer,
                ok: loading_after <= limits.transformer_pct,
                value: round(loading_after, 3),
                limit: limits.transformer_pct,
                element: Some(t.id.to_string()),
                detail: None,
            },
        );
        let transformer_headroom = transformer_headroom.clamp(0.0, UNBOUNDED_KW).floor();
        if transformer_headroom < e.out.headroom_kw
            && !matches!(
                e.out.binding_constraint,
                CheckName::OutOfService | CheckName::NoSpareBay
            )
        {
            e.out.headroom_kw = transformer_headroom;
            e.out.binding_constraint = CheckName::Transformer;
        }
        self.as_transformer_point(e, transformer, app)
    }

    /// A node's evaluation as that of a low-voltage point at its transformer.
    fn as_transformer_point(
        &self,
        mut e: Evaluated,
        transformer: headroom_geodata::TransformerIx,
        app: &Application,
    ) -> Evaluated {
        let t = &self.network.transformers[transformer.get()];
        if !t.in_service {
            e.out.binding_constraint = CheckName::OutOfService;
        }
        // An LV customer takes a low-voltage way, not an MV bay.
        let oos = e.out.binding_constraint == CheckName::OutOfService;
        e.out.checks.retain(|c| c.name != CheckName::NoSpareBay);
        if e.out.binding_constraint == CheckName::NoSpareBay {
            e.out.binding_constraint = CheckName::Transformer;
        }
        e.out.feasible = !oos && app.demand_kw <= e.out.headroom_kw;
        e.out.node = t.id.to_string();
        e.point = PointKind::Transformer(transformer);
        e.out.node_type = "transformer".to_owned();
        e.out.lon = t.position.lon;
        e.out.lat = t.position.lat;
        e
    }

    /// A generator on a transformer's low-voltage side: the transformer's
    /// forward loading and, while power flows back through it, its reverse
    /// loading, with queued generators and generation reservations behind it
    /// injecting too.
    fn export_through_transformer(
        &self,
        e: &mut Evaluated,
        transformer: headroom_geodata::TransformerIx,
        app: &Application,
        load: &AddedLoad<'_>,
    ) {
        let t = &self.network.transformers[transformer.get()];
        let limits = self.config.limits;
        let forward = t.rated_kva * limits.transformer_pct / 100.0;
        let reverse = t.rated_kva * limits.reverse_pct / 100.0;
        let (mut headroom, mut reverse_binds) = (f64::INFINITY, false);
        let (mut forward_after, mut reverse_after) = (0.0f64, 0.0f64);
        let (mut forward_before, mut reverse_before) = (0.0f64, 0.0f64);
        if let Some(f) = e.feeder {
            let base = self.generation_base(f);
            let m = base.loads.transformers.len();
            if let Some(slot) = base
                .loads
                .transformers
                .iter()
                .position(|(tx, _)| *tx == transformer)
            {
                let behind: Vec<_> = self
                    .injections
                    .iter()
                    .filter(|i| i.transformer == Some(transformer))
                    .collect();
                for k in 0..base.loads.step_count() {
                    let quarter = self.quarter_of_day(base.loads.steps[k]);
                    let a = load.profile.map_or(1.0, |p| p[quarter]);
                    if a <= 0.0 {
                        continue;
                    }
                    let mut s = num_complex::Complex64::new(
                        base.loads.p_kw[k * m + slot],
                        base.loads.q_kvar[k * m + slot],
                    );
                    for i in &behind {
                        let f = i.profile.as_ref().map_or(1.0, |p| p[quarter]);
                        s += num_complex::Complex64::new(
                            -i.kw * f,
                            i.kw * f * i.absorbed_kvar_per_kw,
                        );
                    }
                    let per_kw = num_complex::Complex64::new(-a, a * load.tan_phi);
                    let after = s + per_kw * app.demand_kw;
                    if s.re < 0.0 {
                        reverse_before = reverse_before.max(s.norm());
                    } else {
                        forward_before = forward_before.max(s.norm());
                    }
                    if after.re < 0.0 {
                        reverse_after = reverse_after.max(after.norm());
                    } else {
                        forward_after = forward_after.max(after.norm());
                    }
                    let (root, reverse) = transformer_root(s, per_kw, forward, reverse);
                    if root < headroom {
                        (headroom, reverse_binds) = (root, reverse);
                    }
                }
            }
        }
        let pct = |kva: f64| kva / t.rated_kva * 100.0;
        let headroom = headroom.clamp(0.0, UNBOUNDED_KW).floor();
        let over = app.demand_kw > headroom;
        e.out.checks.splice(
            0..0,
            [
                CheckResult {
                    name: CheckName::Transformer,
                    ok: pct(forward_after) <= limits.transformer_pct.max(pct(forward_before))
                        && (reverse_binds || !over),
                    value: round(pct(forward_after), 3),
                    limit: limits.transformer_pct,
                    element: Some(t.id.to_string()),
                    detail: None,
                },
                CheckResult {
                    name: CheckName::ReversePower,
                    ok: pct(reverse_after) <= limits.reverse_pct.max(pct(reverse_before))
                        && !(over && reverse_binds),
                    value: round(pct(reverse_after), 3),
                    limit: limits.reverse_pct,
                    element: Some(t.id.to_string()),
                    detail: None,
                },
            ],
        );
        if headroom < e.out.headroom_kw
            && !matches!(
                e.out.binding_constraint,
                CheckName::OutOfService | CheckName::NoSpareBay
            )
        {
            e.out.headroom_kw = headroom;
            e.out.binding_constraint = if reverse_binds {
                CheckName::ReversePower
            } else {
                CheckName::Transformer
            };
        }
    }

    /// A point's score parts but cost, which needs its line sized.
    fn score_parts(&self, e: &Evaluated, demand_kw: f64, radius_m: f64) -> ScoreParts {
        ScoreParts {
            distance: 1.0 - (e.out.distance_m / radius_m.max(1.0)).clamp(0.0, 1.0),
            cost: 0.0,
            loading: 1.0
                - (e.out.after.max_loading_pct / self.config.limits.thermal_pct).clamp(0.0, 1.0),
            voltage: e.voltage_margin.clamp(0.0, 1.0),
            headroom: if e.out.headroom_kw > 0.0 {
                ((e.out.headroom_kw - demand_kw) / e.out.headroom_kw).clamp(0.0, 1.0)
            } else {
                0.0
            },
        }
    }

    /// The weighted mean of score parts.
    fn score(&self, parts: &ScoreParts) -> f64 {
        let w = self.config.weights;
        let total = w.distance + w.cost + w.loading + w.voltage + w.headroom;
        if total <= 0.0 {
            return 0.0;
        }
        (w.distance * parts.distance
            + w.cost * parts.cost
            + w.loading * parts.loading
            + w.voltage * parts.voltage
            + w.headroom * parts.headroom)
            / total
    }

    /// The new line from `e` to the customer of `app`.
    fn service_line(&self, e: &Evaluated, app: &Application) -> ServiceLine {
        let costs = &self.config.connection_costs;
        let bay_cost = match e.point {
            PointKind::Node(NodeType::Busbar) => costs.substation_bay,
            PointKind::Node(t) if t.needs_spare_bay() => costs.switchgear_bay,
            _ => costs.tee,
        };
        if let PointKind::Transformer(_) = e.point {
            return ServiceLine {
                supply: e.out.node.clone(),
                route_length_m: (e.out.distance_m * self.config.route_factor * 10.0).round() / 10.0,
                route_estimated: true,
                conductor: None,
                peak_current_a: 0.0,
                bay_cost: 0.0,
                cost: None,
                problem: Some(
                    "a low-voltage service line is not sized here: the conductor catalogue holds \
                     medium-voltage conductors"
                        .to_owned(),
                ),
            };
        }
        let point = self.point_supply(e, app);
        crate::service_line::size(
            &self.config,
            &e.out.node,
            &point,
            e.out.distance_m,
            app.demand_kw,
            app.power_factor,
            bay_cost,
        )
    }

    /// The connection point's voltage with the application's load, and the
    /// load's factor, at every step: the base flow's voltage less the drop of
    /// the new current along the path (a busbar is taken at nominal voltage).
    fn point_supply(&self, e: &Evaluated, app: &Application) -> PointSupply {
        let nominal_kv = self.network.node(e.node).kv;
        let placement = self.topology.placement(e.node);
        let (Some(f), Some(p)) = (e.feeder, placement) else {
            let factor = self
                .window
                .steps
                .iter()
                .map(|ts| app.profile_factor(self.quarter_of_day(*ts)))
                .collect::<Vec<_>>();
            return PointSupply {
                v_kv: vec![nominal_kv; factor.len()],
                factor,
                nominal_kv,
            };
        };
        let base = self.feeder(f);
        let steps = base.loads.step_count();
        let z = base.electrical.impedance_to(p.local as usize);
        let sin_phi = (1.0 - app.power_factor * app.power_factor).max(0.0).sqrt();
        let drop_ohm = z.re * app.power_factor + z.im * sin_phi;
        let kva = app.demand_kw / app.power_factor;
        let run = p.local as usize * steps..(p.local as usize + 1) * steps;
        let mut v_kv = Vec::with_capacity(steps);
        let mut factor = Vec::with_capacity(steps);
        for (k, v) in base.voltage_kv[run].iter().enumerate() {
            let a = app.profile_factor(self.quarter_of_day(base.loads.steps[k]));
            let v = f64::from(*v);
            let current = a * kva / (SQRT_3 * v);
            v_kv.push(v - SQRT_3 * current * drop_ohm / 1000.0);
            factor.push(a);
        }
        PointSupply {
            v_kv,
            factor,
            nominal_kv,
        }
    }

    fn describe(&self, e: &Evaluated) -> String {
        let kind = e.out.node_type.replace('_', "-");
        let on = match (&e.out.feeder, &e.out.substation) {
            (Some(f), _) => format!("on feeder {f}"),
            (None, Some(s)) => format!("through a new bay at substation {s}"),
            _ => String::new(),
        };
        format!("{kind} {} {on}", e.out.node).trim().to_owned()
    }

    fn schemes(
        &self,
        app: &Application,
        kv: f64,
        radius: f64,
        evaluated: &[Evaluated],
    ) -> Vec<Scheme> {
        // Each route's few best points by every part but cost, sized for
        // their line; then the cheapest line of all sets the cost part.
        let mut by_route: rustc_hash::FxHashMap<Route, Vec<(&Evaluated, ScoreParts)>> =
            Default::default();
        for e in evaluated.iter().filter(|e| e.out.feasible) {
            let parts = self.score_parts(e, app.demand_kw, radius);
            by_route.entry(e.route()).or_default().push((e, parts));
        }
        let mut sized: Vec<(Route, &Evaluated, ScoreParts, ServiceLine)> = Vec::new();
        for (route, mut points) in by_route {
            points.sort_by(|a, b| {
                self.score(&b.1)
                    .total_cmp(&self.score(&a.1))
                    .then_with(|| a.0.out.node.cmp(&b.0.out.node))
            });
            points.truncate(ROUTE_SHORTLIST);
            for (e, parts) in points {
                sized.push((route, e, parts, self.service_line(e, app)));
            }
        }
        let cheapest = sized
            .iter()
            .filter_map(|s| s.3.cost)
            .fold(f64::INFINITY, f64::min);
        for (_, _, parts, line) in &mut sized {
            parts.cost = match line.cost {
                Some(cost) if cost > 0.0 => (cheapest / cost).clamp(0.0, 1.0),
                Some(_) => 1.0,
                None => 0.0,
            };
        }
        // The best point of each route.
        sized.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.score(&b.2).total_cmp(&self.score(&a.2)))
                .then_with(|| a.1.out.node.cmp(&b.1.out.node))
        });
        sized.dedup_by(|later, first| later.0 == first.0);
        let best: Vec<(&Evaluated, ScoreParts, ServiceLine)> =
            sized.into_iter().map(|(_, e, p, l)| (e, p, l)).collect();

        let level = if kv < 1.0 {
            "0.4 kV".to_owned()
        } else {
            format!("{kv} kV")
        };
        // Schemes are drafted as supplies (indices into `best`) and scores, and
        // only the ones kept described.
        let mut drafts: Vec<(f64, Vec<usize>)> = match app.importance {
            Importance::Normal => (0..best.len())
                .map(|i| (self.score(&best[i].1), vec![i]))
                .collect(),
            Importance::Important | Importance::Critical => {
                let independent = |a: &Evaluated, b: &Evaluated| match app.importance {
                    Importance::Critical => {
                        a.substation.is_some()
                            && b.substation.is_some()
                            && a.substation != b.substation
                    }
                    _ => {
                        a.busbar.is_some()
                            && b.busbar.is_some()
                            && a.busbar != b.busbar
                            && a.feeder != b.feeder
                    }
                };
                let mut pairs = Vec::new();
                for i in 0..best.len() {
                    for j in i + 1..best.len() {
                        if independent(best[i].0, best[j].0) {
                            let parts = ScoreParts::mean(&[best[i].1, best[j].1]);
                            pairs.push((self.score(&parts), vec![i, j]));
                        }
                    }
                }
                pairs
            }
        };
        let names = |supplies: &[usize]| {
            supplies
                .iter()
                .map(|i| best[*i].0.out.node.as_str())
                .collect::<Vec<_>>()
        };
        drafts.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| names(&a.1).cmp(&names(&b.1)))
        });
        drafts.truncate(self.config.max_schemes);
        let what = if app.importance == Importance::Critical {
            "two independent sources"
        } else {
            "two circuits"
        };
        drafts
            .into_iter()
            .enumerate()
            .map(|(i, (score, supplies))| {
                let lines: Vec<ServiceLine> = supplies.iter().map(|s| best[*s].2.clone()).collect();
                let parts: Vec<ScoreParts> = supplies.iter().map(|s| best[*s].1).collect();
                let cost = lines
                    .iter()
                    .map(|l| l.cost)
                    .try_fold(0.0, |sum, c| c.map(|c| sum + c));
                let described: Vec<String> = supplies
                    .iter()
                    .map(|s| {
                        format!(
                            "{} ({})",
                            self.describe(best[*s].0),
                            describe_line(&best[*s].2)
                        )
                    })
                    .collect();
                Scheme {
                    rank: i + 1,
                    score: round(score, 4),
                    score_parts: ScoreParts::mean(&parts).rounded(),
                    supplies: supplies
                        .iter()
                        .map(|s| best[*s].0.out.node.clone())
                        .collect(),
                    service_lines: lines,
                    cost: cost.map(|c| round(c, 0)),
                    summary: match &described[..] {
                        [a, b] => format!("{what} at {level}: {a} and {b}"),
                        [a] => format!("one {level} circuit from {a}"),
                        _ => String::new(),
                    },
                }
            })
            .collect()
    }

    fn explain(
        &self,
        app: &Application,
        kv: f64,
        radius: f64,
        evaluated: &[Evaluated],
    ) -> Explanation {
        let nearest: Vec<NearCandidate> = evaluated
            .iter()
            .take(5)
            .map(|e| NearCandidate {
                node: e.out.node.clone(),
                feeder: e.out.feeder.clone(),
                binding_constraint: e.out.binding_constraint,
                headroom_kw: e.out.headroom_kw,
            })
            .collect();
        // A load held back by a voltage above the highest allowed (the
        // busbar's taps set for heavier load) gains nothing from a thicker
        // conductor; a generator's voltage rise does.
        let v_max_pu = self.config.limits.v_max_pu;
        let above_highest = |e: &&Evaluated| {
            app.kind == ApplicationKind::Load && e.out.before.max_voltage_pu > v_max_pu
        };
        let reinforce_feeder = evaluated
            .iter()
            .find(|e| {
                e.out.feeder.is_some()
                    && match e.out.binding_constraint {
                        CheckName::SegmentThermal | CheckName::HeadThermal => true,
                        CheckName::Voltage => !above_highest(e),
                        _ => false,
                    }
            })
            .and_then(|e| e.out.feeder.clone());
        let reason = if evaluated.is_empty() {
            format!("no {kv} kV connection point within {radius:.0} m")
        } else if app.importance != Importance::Normal && evaluated.iter().any(|e| e.out.feasible) {
            match app.importance {
                Importance::Critical => {
                    "no two feasible connection points from different substations".to_owned()
                }
                _ => "no two feasible connection points on different feeders of different busbars"
                    .to_owned(),
            }
        } else {
            format!(
                "none of the {} connection points within {radius:.0} m can take {} kW",
                evaluated.len(),
                app.demand_kw
            )
        };
        Explanation {
            reason,
            nearest,
            reinforce_feeder,
        }
    }
}
