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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            thermal_pct: 100.0,
            v_min_pu: 0.93,
            v_max_pu: 1.07,
            substation_transformer_pct: 100.0,
            transformer_pct: 100.0,
        }
    }
}

/// Weights of the scheme score; each term is in [0, 1] and the score is their
/// weighted mean.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreWeights {
    /// Nearness: 1 at the customer, 0 at the search radius (a proxy for line cost).
    pub distance: f64,
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
            distance: 0.4,
            loading: 0.2,
            voltage: 0.2,
            headroom: 0.2,
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
    /// Ranking weights.
    pub weights: ScoreWeights,
    /// Supply schemes listed at most.
    pub max_schemes: usize,
    /// Offset of the utility's local time from UTC, minutes: the quarter-hours of an
    /// application's daily profile are local time.
    pub local_utc_offset_min: i32,
    /// Power factor of the capacity figures' test load.
    pub capacity_power_factor: f64,
    /// Memory for built feeders (load models and base power flows), bytes. A
    /// feeder of 100 nodes over 7 days takes about 3 MB; the default holds
    /// about 1,400 such feeders, the working set of a busy city's planners.
    pub feeder_cache_bytes: u64,
    /// Judge every step of the window for every candidate instead of a flat
    /// load's steps ranked by room at its node (the same answers, several times
    /// slower: for audits of the shortcut).
    pub judge_every_step: bool,
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
            weights: ScoreWeights::default(),
            max_schemes: 10,
            local_utc_offset_min: 0,
            capacity_power_factor: 0.95,
            feeder_cache_bytes: 4 << 30,
            judge_every_step: false,
            load_model: LoadModelSettings::default(),
        }
    }
}
