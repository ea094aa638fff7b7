//! The checks a connection is held to, and what one power flow shows of them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::Limits;

/// A check of a candidate connection point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CheckName {
    /// Loading of every segment between the busbar and beyond.
    SegmentThermal,
    /// Loading of the feeder's head breaker or CT.
    HeadThermal,
    /// Node voltages within limits.
    Voltage,
    /// Loading of the substation transformers feeding the busbar group.
    SubstationTransformer,
    /// Apparent power while active power flows back through the substation
    /// transformers (or a distribution transformer), against `reverse_pct` of
    /// the rating (generation).
    ReversePower,
    /// N-1: the candidate's feeder, with the new load, can be fed over a tie
    /// (or two, split at a switch) when its head fails.
    N1Transfer,
    /// N-1: the substation's coupled busbar groups carry their load, with the
    /// new load, with their largest transformer out.
    SubstationN1,
    /// Loading of the distribution transformer (low-voltage requests).
    Transformer,
    /// Capacity promised to earlier applications.
    Reserved,
    /// A ring-main unit, switching station or busbar without a free bay.
    NoSpareBay,
    /// The connection point is out of service or not energised.
    OutOfService,
}

impl CheckName {
    /// The electrical checks in the spec's tie-break order.
    pub const ELECTRICAL: [CheckName; 7] = [
        CheckName::SegmentThermal,
        CheckName::HeadThermal,
        CheckName::Voltage,
        CheckName::SubstationTransformer,
        CheckName::ReversePower,
        CheckName::Transformer,
        CheckName::Reserved,
    ];

    /// The name used in results.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckName::SegmentThermal => "segment_thermal",
            CheckName::HeadThermal => "head_thermal",
            CheckName::Voltage => "voltage",
            CheckName::SubstationTransformer => "substation_transformer",
            CheckName::ReversePower => "reverse_power",
            CheckName::N1Transfer => "n1_transfer",
            CheckName::SubstationN1 => "substation_n1",
            CheckName::Transformer => "transformer",
            CheckName::Reserved => "reserved",
            CheckName::NoSpareBay => "no_spare_bay",
            CheckName::OutOfService => "out_of_service",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one check, as results report it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    /// Which check.
    pub name: CheckName,
    /// Whether the connection passes it.
    pub ok: bool,
    /// The worst value over the data window with the new load; `null` (NaN
    /// here) where the check does not apply (N-1 at a new busbar bay).
    #[serde(serialize_with = "finite_or_null", deserialize_with = "number_or_nan")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub value: f64,
    /// The limit it is held to.
    pub limit: f64,
    /// Where it binds: a segment, node, feeder or transformer id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    /// Why, in words, where the figures alone do not say (the N-1 checks:
    /// the case judged, what breaks, what would restore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Equal as results read: a value not applicable (NaN, `null` in JSON)
/// equals another not applicable.
impl PartialEq for CheckResult {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.ok == other.ok
            && (self.value == other.value || (self.value.is_nan() && other.value.is_nan()))
            && self.limit == other.limit
            && self.element == other.element
            && self.detail == other.detail
    }
}

fn finite_or_null<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f64(*value)
    } else {
        serializer.serialize_none()
    }
}

fn number_or_nan<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// What a power flow of a feeder at one step shows, the figures checks read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed {
    /// Highest segment loading, %.
    pub segment_pct: f64,
    /// Local node whose inbound segment carries it.
    pub segment_at: u32,
    /// Head loading, % (0 without a head rating).
    pub head_pct: f64,
    /// Lowest node voltage, pu.
    pub v_min_pu: f64,
    /// Local node of the lowest voltage.
    pub v_min_at: u32,
    /// Highest node voltage, pu.
    pub v_max_pu: f64,
    /// Local node of the highest voltage.
    pub v_max_at: u32,
    /// Substation transformer loading of the busbar group, % (0 when unknown).
    pub substation_pct: f64,
    /// Whether active power flows back through the group's transformers, from
    /// the busbar to the high-voltage side.
    pub substation_export: bool,
    /// Whether the power flow converged (a collapse counts as every limit broken).
    pub converged: bool,
}

impl Observed {
    /// Value over limit of each electrical check the power flow decides, in
    /// [`CheckName::ELECTRICAL`] order (above 1 is broken); the distribution
    /// transformer and reservations are judged elsewhere.
    pub fn ratios(&self, limits: &Limits) -> [f64; 4] {
        if !self.converged {
            return [f64::INFINITY; 4];
        }
        [
            self.segment_pct / limits.thermal_pct,
            self.head_pct / limits.thermal_pct,
            (limits.v_min_pu / self.v_min_pu).max(self.v_max_pu / limits.v_max_pu),
            self.substation_pct / limits.substation_transformer_pct,
        ]
    }

    /// The largest ratio: above 1, some limit is broken.
    pub fn worst_ratio(&self, limits: &Limits) -> f64 {
        self.ratios(limits).into_iter().fold(f64::MIN, f64::max)
    }

    /// The highest loading of segments and head, %.
    pub fn max_loading_pct(&self) -> f64 {
        self.segment_pct.max(self.head_pct)
    }
}

/// Near ties within this much of a limit are broken by the spec's order.
pub const TIE_TOLERANCE: f64 = 1e-4;

/// Among checks at or past their limit (ratio >= 1 - tolerance), the first in the
/// spec's order; `None` when every check holds with room.
pub fn first_broken(ratios: &[f64; 4]) -> Option<CheckName> {
    ratios
        .iter()
        .position(|r| *r >= 1.0 - TIE_TOLERANCE)
        .map(|i| CheckName::ELECTRICAL[i])
}

/// Worst-case figures over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// Highest loading of segments and head, %.
    pub max_loading_pct: f64,
    /// Lowest node voltage, pu.
    pub min_voltage_pu: f64,
    /// Substation transformer loading of the busbar group, %.
    pub substation_transformer_loading_pct: f64,
    /// Highest node voltage, pu.
    pub max_voltage_pu: f64,
}

impl Figures {
    /// The figures of the worst values seen; a voltage never seen (no flow)
    /// reads as nominal.
    pub(crate) fn of_worst(w: &WorstChecks) -> Figures {
        let or_nominal = |v: f64| if v.is_finite() { v } else { 1.0 };
        Figures {
            max_loading_pct: w.segment.0.max(w.head_pct),
            min_voltage_pu: or_nominal(w.v_min.0),
            substation_transformer_loading_pct: w.substation_pct,
            max_voltage_pu: or_nominal(w.v_max.0),
        }
    }
}

/// The worst value of each electrical check with the new load, and where.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorstChecks {
    /// Highest segment loading and the local node whose inbound segment carries it.
    pub segment: (f64, u32),
    /// Head loading, %.
    pub head_pct: f64,
    /// Lowest voltage and its local node.
    pub v_min: (f64, u32),
    /// Highest voltage and its local node.
    pub v_max: (f64, u32),
    /// Substation loading, %.
    pub substation_pct: f64,
}

impl WorstChecks {
    /// Nothing seen yet: every extreme at its identity, so that the first
    /// power flow absorbed sets each.
    pub const NONE: WorstChecks = WorstChecks {
        segment: (0.0, 0),
        head_pct: 0.0,
        v_min: (f64::INFINITY, 0),
        v_max: (f64::NEG_INFINITY, 0),
        substation_pct: 0.0,
    };
}

/// Takes one power flow's figures into the worst seen so far; a flow that did
/// not converge is the worst of all.
pub(crate) fn absorb(worst: &mut WorstChecks, o: &Observed) {
    if !o.converged {
        worst.segment.0 = f64::INFINITY;
        worst.v_min.0 = 0.0;
        return;
    }
    if o.segment_pct > worst.segment.0 {
        worst.segment = (o.segment_pct, o.segment_at);
    }
    worst.head_pct = worst.head_pct.max(o.head_pct);
    if o.v_min_pu < worst.v_min.0 {
        worst.v_min = (o.v_min_pu, o.v_min_at);
    }
    if o.v_max_pu > worst.v_max.0 {
        worst.v_max = (o.v_max_pu, o.v_max_at);
    }
    worst.substation_pct = worst.substation_pct.max(o.substation_pct);
}
