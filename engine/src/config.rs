//! Engine settings: limits, search radii and ranking weights, each with the default
//! a planner would expect.

use serde::{Deserialize, Serialize};

use crate::load_model::LoadModelSettings;

/// Limits the checks hold a connection to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Segment and head loading limit, % of `rated_a` (a planning limit below 100
    /// keeps room to pick up a neighbour's load through a tie).
    pub thermal_pct: f64,
    /// Lowest node voltage, pu.
    pub v_min_pu: f64,
    /// Highest node voltage, pu.
    pub v_max_pu: f64,
    /// Loading limit of the substation transformers feeding a busbar group, %.
    pub substation_transformer_pct: f64,
    /// Loading limit of a distribution transformer (LV requests), %.
    pub transformer_pct: f64,
    /// While active power flows back through a substation transformer group
    /// (MV to HV), or through a distribution transformer to its 0.4 kV side's
    /// network, its apparent power at most this share of its rating, %: a
    /// transformer's protection and tap changer are set for forward flow.
    pub reverse_pct: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            thermal_pct: 100.0,
            v_min_pu: 0.93,
            v_max_pu: 1.07,
            substation_transformer_pct: 100.0,
            transformer_pct: 100.0,
            reverse_pct: 80.0,
        }
    }
}

/// Whether the N-1 checks (`shared/spec/planning.md` §2) are worked out and
/// whether they decide feasibility.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum N1Mode {
    /// Worked out and reported beside every MV candidate; feasibility,
    /// headroom, binding check and ranking as without them.
    #[default]
    Report,
    /// Worked out and binding: a candidate failing either is infeasible.
    Enforce,
    /// Not worked out (an application's `"n1": true` still asks for them).
    Off,
}

/// The N-1 policy and the limits a restoration case is held to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct N1Config {
    /// Report, enforce or leave out the N-1 checks.
    pub mode: N1Mode,
    /// Segment and supplying head loading limit in a restoration case, % of
    /// `rated_a` (an emergency rating above 100 where the utility allows one).
    pub thermal_pct: f64,
    /// Lowest node voltage in a restoration case, pu.
    pub v_min_pu: f64,
    /// Highest node voltage in a restoration case, pu.
    pub v_max_pu: f64,
    /// With the largest transformer of the coupled busbar groups out, the rest
    /// may carry the groups' load up to this share of their rating, %
    /// (a short-time overload while load is transferred).
    pub transformer_overload_pct: f64,
}

impl Default for N1Config {
    fn default() -> Self {
        Self {
            mode: N1Mode::Report,
            thermal_pct: 100.0,
            v_min_pu: 0.93,
            v_max_pu: 1.07,
            transformer_overload_pct: 130.0,
        }
    }
}

impl N1Config {
    /// The limits a restoration case's flows are checked against; the
    /// supplying groups' transformers are held to 100 % of their rating.
    pub fn case_limits(&self, normal: &Limits) -> Limits {
        Limits {
            thermal_pct: self.thermal_pct,
            v_min_pu: self.v_min_pu,
            v_max_pu: self.v_max_pu,
            substation_transformer_pct: 100.0,
            ..*normal
        }
    }
}

/// Weights of the scheme score; each term is in [0, 1] and the score is their
/// weighted mean.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreWeights {
    /// Nearness: 1 at the customer, 0 at the search radius.
    pub distance: f64,
    /// Estimated cost of the new line and bay: 1 for the cheapest scheme of the
    /// ranking, falling as the cheapest over the scheme's cost; 0 where no
    /// conductor of the catalogue fits.
    pub cost: f64,
    /// Loading after connection: 1 unloaded, 0 at the thermal limit.
    pub loading: f64,
    /// Voltage margin after connection: 1 at nominal, 0 at the lower limit.
    pub voltage: f64,
    /// Headroom left after connection, as a share of the headroom.
    pub headroom: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            distance: 0.2,
            cost: 0.2,
            loading: 0.2,
            voltage: 0.2,
            headroom: 0.2,
        }
    }
}

/// How a conductor is laid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConductorKind {
    /// An underground cable.
    Cable,
    /// An overhead line conductor.
    Overhead,
}

/// A conductor a new service line can be built with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conductor {
    /// Type designation, as a planner writes it (e.g. `YJV22-8.7/15 3x240`).
    pub name: String,
    /// Cable or overhead.
    pub kind: ConductorKind,
    /// Continuous current rating, A, under the installation conditions the
    /// utility plans with.
    pub rated_a: f64,
    /// Resistance at operating temperature, ohm/km.
    pub r_ohm_per_km: f64,
    /// Reactance at 50 Hz, ohm/km.
    pub x_ohm_per_km: f64,
    /// Installed cost per km, in the catalogue's currency.
    pub cost_per_km: f64,
}

impl Conductor {
    fn new(
        name: &str,
        kind: ConductorKind,
        rated_a: f64,
        r_ohm_per_km: f64,
        x_ohm_per_km: f64,
        cost_per_km: f64,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            rated_a,
            r_ohm_per_km,
            x_ohm_per_km,
            cost_per_km,
        }
    }

    /// The default catalogue: common 10 kV (8.7/15 kV) three-core XLPE copper
    /// cables, bare ACSR and insulated aluminium overhead conductors, with
    /// costs in CNY per km installed. The source of each figure is cited beside
    /// the same entries in `headroom.example.toml` (a test holds the two
    /// equal).
    pub fn default_catalogue() -> Vec<Conductor> {
        use ConductorKind::{Cable, Overhead};
        vec![
            Conductor::new("YJV22-8.7/15 3x70", Cable, 221.0, 0.343, 0.115, 402_000.0),
            Conductor::new("YJV22-8.7/15 3x120", Cable, 298.0, 0.196, 0.105, 402_000.0),
            Conductor::new("YJV22-8.7/15 3x185", Cable, 377.0, 0.128, 0.0986, 671_000.0),
            Conductor::new("YJV22-8.7/15 3x240", Cable, 434.0, 0.098, 0.0952, 671_000.0),
            Conductor::new("YJV22-8.7/15 3x300", Cable, 489.0, 0.080, 0.0922, 850_000.0),
            Conductor::new(
                "YJV22-8.7/15 3x400",
                Cable,
                553.0,
                0.064,
                0.0893,
                1_000_000.0,
            ),
            Conductor::new("LGJ-70/10", Overhead, 266.0, 0.4217, 0.354, 239_000.0),
            Conductor::new("LGJ-120/20", Overhead, 372.0, 0.2496, 0.336, 290_000.0),
            Conductor::new("LGJ-185/30", Overhead, 493.0, 0.1592, 0.322, 392_000.0),
            Conductor::new("LGJ-240/30", Overhead, 593.0, 0.1181, 0.314, 392_000.0),
            Conductor::new("JKLYJ-10 1x120", Overhead, 359.0, 0.253, 0.346, 290_000.0),
            Conductor::new("JKLYJ-10 1x240", Overhead, 556.0, 0.125, 0.324, 392_000.0),
        ]
    }
}

/// What a new customer's connection costs besides its line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionCosts {
    /// A new breaker bay at a substation busbar, in the catalogue's currency.
    pub substation_bay: f64,
    /// Fitting out a spare bay of a ring-main unit or switching station.
    pub switchgear_bay: f64,
    /// A tee at a pole, cable branch box or junction.
    pub tee: f64,
}

impl Default for ConnectionCosts {
    fn default() -> Self {
        Self {
            substation_bay: 250_000.0,
            switchgear_bay: 70_000.0,
            tee: 30_000.0,
        }
    }
}

/// Everything the engine can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Limits of the checks.
    pub limits: Limits,
    /// Search radius for medium-voltage requests, metres.
    pub mv_search_radius_m: f64,
    /// Search radius for low-voltage requests (public transformers), metres.
    pub lv_search_radius_m: f64,
    /// Requests without `voltage_kv` up to this demand go to 0.4 kV, kW.
    pub lv_max_demand_kw: f64,
    /// Generation without `voltage_kv` up to this export goes to 0.4 kV, kW.
    pub lv_max_generation_kw: f64,
    /// Ranking weights.
    pub weights: ScoreWeights,
    /// Supply schemes listed at most.
    pub max_schemes: usize,
    /// A new line's route over the straight distance from the connection point
    /// to the customer: streets and rights of way are longer than the crow
    /// flies. Route lengths are estimates and results say so.
    pub route_factor: f64,
    /// Conductors a new service line can be built with; the smallest (by
    /// rating, then cost) that carries the demand and keeps the customer's
    /// terminal within the voltage limits is chosen.
    pub conductors: Vec<Conductor>,
    /// Bay and tee costs of a connection.
    pub connection_costs: ConnectionCosts,
    /// Offset of the utility's local time from UTC, minutes: the quarter-hours of an
    /// application's daily profile are local time.
    pub local_utc_offset_min: i32,
    /// Power factor of the capacity figures' test load.
    pub capacity_power_factor: f64,
    /// Memory for built feeders (load models and base power flows), bytes. A
    /// feeder of 100 nodes over 7 days takes about 3 MB (3.2 MiB on average on
    /// the default synthetic city); the default holds about 1,260 such
    /// feeders, the working set of a busy city's planners, not a whole city.
    /// The feeders' N-1 restoration cases (2 to 3 MB a city feeder) are held
    /// in as much again.
    pub feeder_cache_bytes: u64,
    /// Judge every step of the window for every candidate instead of a flat
    /// load's steps ranked by room at its node (the same answers, several times
    /// slower: for audits of the shortcut).
    pub judge_every_step: bool,
    /// N-1: feeder transfer over ties and substation transformer outage.
    pub n1: N1Config,
    /// How readings become loads.
    #[serde(skip)]
    pub load_model: LoadModelSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            mv_search_radius_m: 2_000.0,
            lv_search_radius_m: 500.0,
            lv_max_demand_kw: 160.0,
            lv_max_generation_kw: 400.0,
            weights: ScoreWeights::default(),
            max_schemes: 10,
            route_factor: 1.3,
            conductors: Conductor::default_catalogue(),
            connection_costs: ConnectionCosts::default(),
            local_utc_offset_min: 0,
            capacity_power_factor: 0.95,
            feeder_cache_bytes: 4 << 30,
            judge_every_step: false,
            n1: N1Config::default(),
            load_model: LoadModelSettings::default(),
        }
    }
}
