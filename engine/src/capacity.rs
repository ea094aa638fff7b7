//! Capacity per asset: the figures of the capacity map and `headroom capacity`
//! (`shared/spec/api.md`, "Capacity").
//!
//! - feeder: headroom at its first node (the most favourable point) and at the
//!   node where the least fits, by the engine's power flow and checks, for a flat
//!   load at the configured power factor (0.95);
//! - distribution transformer: `limit x rated_kva - peak_kva - reserved`, in kW;
//! - substation: firm capacity (its transformers' ratings less the largest, N-1)
//!   less its peak and reservations, in kW.

use headroom_geodata::{AssetKind, AssetRef, Quantity, SubstationIx};
use num_complex::Complex64;
use serde::Serialize;

use crate::checks::CheckName;
use std::borrow::Cow;
use std::sync::Arc;

use rayon::prelude::*;

use crate::base::FeederBase;
use crate::engine::Engine;
use crate::evaluate::AddedLoad;
use crate::load_model::{FeederLoads, LooseBatches, power_factor_tan};
use crate::powerflow::{ElectricalFeeder, LANES, Lanes, SQRT_3, SweepLanes};
use headroom_geodata::{FeederIx, TransformerIx};

use crate::n1::FeederBases;
use crate::open_capacity::OpenCapacity;
use headroom_readings::{InMemoryReadings, ReadingsSource};
use sweep::SweepBases;

mod sweep;

/// Which assets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// 10 kV feeders.
    Feeder,
    /// Distribution transformers.
    Transformer,
    /// Substations.
    Substation,
}

/// One asset's capacity.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CapacityRow {
    /// Asset id.
    pub id: String,
    /// `feeder`, `transformer` or `substation`.
    pub kind: &'static str,
    /// Rating: A for a feeder, kVA otherwise (firm, N-1, for a substation).
    pub rated: f64,
    /// Peak apparent power over the window, kVA.
    pub peak_kva: f64,
    /// 95th percentile of apparent power over the window, kVA.
    pub p95_kva: f64,
    /// Peak against rating, %.
    pub loading_pct: f64,
    /// Demand reserved for applications not yet connected, kW.
    pub reserved_kw: f64,
    /// New load that still fits, kW.
    pub headroom_kw: f64,
    /// What limits it.
    pub binding_constraint: CheckName,
    /// Feeders: headroom at the node where the least fits, kW.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_node_headroom_kw: Option<f64>,
    /// Feeders: that node. Of nodes tied at the least: the feeder's first
    /// node if it is one; else, of those the search reaches (it does not
    /// search nearer the busbar than a node already at the least), the first
    /// in the feeder's tree order (parents first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_node: Option<String>,
    /// Seconds since the asset's latest reading (`None` without readings).
    pub data_age_s: Option<f64>,
    /// Share of the load that was measured, 0 to 1.
    pub metered_share: f64,
    /// C1: the largest PV export (flat, unity power factor, the default PV
    /// profile) at the asset keeping every generation check, with connected
    /// generators in the measurements and without queued ones, kW.
    pub generation_headroom_kw: f64,
    /// C2: C1 less queued generators and generation reservations on the
    /// asset, kW (negative where the queue already exceeds it).
    pub generation_open_kw: f64,
    /// The published grade of C1 and C2, top-down.
    pub grade: Grade,
    /// Feeders, N-1 on: whether some restoration case feeds the feeder as it
    /// stands when its head fails (`planning.md` §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n1_ok: Option<bool>,
    /// Feeders, N-1 on: the N-1 headroom at its first node, kW (never above
    /// `headroom_kw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n1_headroom_kw: Option<f64>,
    /// Feeders, N-1 on: the case that allows most, as `n1_transfer` names it
    /// (`S12`, `S12+S40/S7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n1_case: Option<String>,
    /// Feeders, N-1 on: why the feeder fails or what limits it, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n1_detail: Option<String>,
}

/// The published grade of an asset's open capacity for distributed
/// generation (`shared/spec/planning.md` §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Grade {
    /// Open capacity left after the queue (C2 > 0).
    Green,
    /// Room today, all of it promised to the queue (C2 <= 0 < C1).
    Yellow,
    /// No room (C1 <= 0), or under an asset with none.
    Red,
}

impl Grade {
    /// The grade of an asset's own figures.
    pub fn of(headroom_kw: f64, open_kw: f64) -> Self {
        if headroom_kw <= 0.0 {
            Grade::Red
        } else if open_kw <= 0.0 {
            Grade::Yellow
        } else {
            Grade::Green
        }
    }

    /// This grade under an asset of grade `above`: red under red.
    pub fn under(self, above: Grade) -> Self {
        if above == Grade::Red {
            Grade::Red
        } else {
            self
        }
    }

    /// The name used in results.
    pub const fn as_str(self) -> &'static str {
        match self {
            Grade::Green => "green",
            Grade::Yellow => "yellow",
            Grade::Red => "red",
        }
    }
}

fn peak_and_p95(mut values: Vec<f64>) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    let peak = values[values.len() - 1];
    // Nearest-rank 95th percentile.
    let rank = ((0.95 * values.len() as f64).ceil() as usize).clamp(1, values.len());
    (peak, values[rank - 1])
}

/// `value` against `rating`, %, to 0.01; 0 without a rating.
fn loading_pct(value: f64, rating: f64) -> f64 {
    if rating > 0.0 {
        round(value / rating * 100.0, 2)
    } else {
        0.0
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// The head's figures over the window.
struct HeadFigures {
    /// Peak apparent power, kVA.
    peak_kva: f64,
    /// 95th percentile of apparent power, kVA.
    p95_kva: f64,
    /// Peak current, A.
    peak_a: f64,
}

impl HeadFigures {
    /// From a base over every step of the window.
    fn of_base(base: &FeederBase) -> Self {
        Self::of(
            base.solutions.iter().map(|s| s.head_power_kva()),
            &base.loads,
        )
    }

    /// From the head's power at each step of `loads`.
    fn of(head_kva: impl Iterator<Item = Complex64>, loads: &FeederLoads) -> Self {
        let (kva, amps) = head_series(head_kva, loads);
        let (peak_kva, p95_kva) = peak_and_p95(kva);
        Self {
            peak_kva,
            p95_kva,
            peak_a: amps.into_iter().fold(0.0, f64::max),
        }
    }

    /// The steps whose loose flows put the head's power or current within a
    /// loose flow's error of the peaks or the 95th percentile: settled, they
    /// make the figures those of exact flows.
    fn steps_near(loads: &FeederLoads) -> Vec<usize> {
        let (kva, amps) = head_series(
            (0..loads.step_count()).map(|k| loads.head_power_kva(k)),
            loads,
        );
        let (peak_kva, p95_kva) = peak_and_p95(kva.clone());
        let peak_a = amps.iter().copied().fold(0.0, f64::max);
        let near = |value: f64, figure: f64| (value - figure).abs() <= 1.0 + 1e-4 * figure;
        (0..kva.len())
            .filter(|k| near(kva[*k], peak_kva) || near(kva[*k], p95_kva) || near(amps[*k], peak_a))
            .collect()
    }
}

/// Apparent power (kVA) and current (A) at the head at each step, from the
/// head's power and the busbar's voltage.
fn head_series(
    head_kva: impl Iterator<Item = Complex64>,
    loads: &FeederLoads,
) -> (Vec<f64>, Vec<f64>) {
    head_kva
        .zip(&loads.source_kv)
        .map(|(s, source_kv)| {
            let kva = s.norm_sqr().sqrt();
            let amps = if *source_kv > 0.0 {
                kva / (SQRT_3 * source_kv)
            } else {
                0.0
            };
            (kva, amps)
        })
        .unzip()
}

/// Windows of at most this many steps are solved exactly throughout.
const FEW_STEPS: usize = 32;

/// Margin on the voltage fall a new load causes at its own node, over the
/// linear estimate (impedance times current at the planning minimum voltage):
/// the fall compounds a little, and a node off the path may sit behind a
/// little more impedance than the branch point.
const FALL_MARGIN: f64 = 1.5;

/// The voltage angle of a node relative to the busbar, at most, rad (about 5
/// degrees: a heavily loaded 10 kV feeder shows 2 to 3).
const VOLTAGE_ANGLE_RAD: f64 = 0.09;

/// Floor of the cosine in the voltage bound's factor.
const MIN_COSINE: f64 = 0.05;

/// How close to the upper voltage limit a loose flow's highest voltage makes
/// its step kept, pu: such a step may break that limit already.
const VOLTAGE_MARGIN_PU: f64 = 0.002;

/// How far below a node's least room ([`crate::base::FeederBase::least_room_kva`]
/// over its power factor's kVA per kW) its headroom may lie: the room is a
/// lower bound of the line through the base, and the new load's own current
/// growing as its voltage falls, the loads' answer and the added losses take
/// more. Judged nodes' headrooms lay up to 8.3 % under their rooms on the
/// fixture and 8.0 % on the default city; at 5 %, the sweep stopped short of
/// the weakest node of 150 of the city's 3,000 feeders (overstating it by up
/// to 51 kW), at 12 % none (every node judged), at 6-14 % more CPU time.
pub const ROOM_SLACK: f64 = 0.12;

/// How far past the least headroom found a node's estimates must all lie for
/// the weakest-node search to pass it over unsolved. The estimates lie
/// within 0.15 % of the exact roots on the city, but on the fixture one
/// node's all lay between 1 and 2 % past its headroom.
const WEAKER_ESTIMATE_MARGIN: f64 = 0.03;

/// What a capacity screen needs of one feeder, worked out once: per node the
/// impedance from the busbar, the longest such impedance in its subtree, the
/// voltage bound's factor and the fall a load causes per kVA.
struct StepScreen {
    /// Thermal limit of each branch (0: the head breaker), A.
    limit_a: Vec<f64>,
    /// One over each node's nominal voltage, 1/kV.
    inverse_nominal_kv: Vec<f64>,
    /// One over the impedance from the busbar to each node (infinite at 0).
    inverse_z_path: Vec<f64>,
    /// Per node, the largest factor by which the voltage bound can
    /// undershoot over its path: one over the cosine of the angle between
    /// impedance and current, the node's voltage angle allowed for.
    voltage_factor: Vec<f64>,
    /// Per node, the fall a new load in its subtree causes at its own node, at
    /// most, per kVA of load (see [`FALL_MARGIN`]), pu/kVA.
    fall_per_kva: Vec<f64>,
    /// The largest of them over the feeder.
    most_fall_per_kva: f64,
    /// The fall at the first node per kVA of load there.
    first_node_fall_per_kva: f64,
    /// The new current's direction relative to its node's voltage, conjugated.
    lagging_conj: Complex64,
    v_min_pu: f64,
    v_max_pu: f64,
    substation_limit_kva: f64,
}

/// Per-node buffers of a batch of steps' screen, a lane per step.
struct ScreenScratch {
    voltage_kv: Vec<Lanes>,
    subtree_min_pu: Vec<Lanes>,
    current_a: Vec<Lanes>,
    path_room: Vec<Lanes>,
}

impl ScreenScratch {
    fn new(n: usize) -> Self {
        let lanes = || vec![[0.0; LANES]; n];
        Self {
            voltage_kv: lanes(),
            subtree_min_pu: lanes(),
            current_a: lanes(),
            path_room: lanes(),
        }
    }
}

/// What one step's screen leaves for the test against the window's bounds.
#[derive(Clone, Copy, Debug)]
struct StepFigures {
    /// The least upper bound of any node at this step, kVA.
    least_upper_kva: f64,
    /// The least window-wide upper bound at which some node's lower bound at
    /// this step may reach it (thermal and voltage limits; see
    /// [`CriticalUpper`]), kVA.
    critical_upper_kva: f64,
    /// Room on the substation transformers, from below, kVA.
    substation_lower_kva: f64,
    /// A voltage at this step is near the upper limit: it may break it already.
    near_upper_voltage_limit: bool,
    /// The drop from the busbar to the feeder's lowest voltage, pu.
    drop_pu: f64,
    /// The first node's own bounds.
    first_node: FirstNodeBounds,
}

impl Default for StepFigures {
    fn default() -> Self {
        Self {
            least_upper_kva: f64::INFINITY,
            critical_upper_kva: f64::NEG_INFINITY,
            substation_lower_kva: f64::NEG_INFINITY,
            near_upper_voltage_limit: true,
            drop_pu: 0.0,
            first_node: FirstNodeBounds::default(),
        }
    }
}

impl StepFigures {
    /// Counts the substation transformers' room, their load being `group_kva`.
    fn add_substation(&mut self, screen: &StepScreen, group_kva: Complex64) {
        if screen.substation_limit_kva > 0.0 {
            let upper = screen.substation_limit_kva - (group_kva * screen.lagging_conj.conj()).re;
            self.substation_lower_kva = screen.substation_limit_kva - group_kva.norm_sqr().sqrt();
            self.least_upper_kva = self.least_upper_kva.min(upper);
            self.first_node.upper_kva = self.first_node.upper_kva.min(upper);
        }
    }
}

/// The first node's bounds at one step, kVA.
#[derive(Clone, Copy, Debug)]
struct FirstNodeBounds {
    upper_kva: f64,
    thermal_lower_kva: f64,
    voltage_lower_kva: f64,
    /// The largest present current on its path, in kVA at its voltage.
    path_current_kva: f64,
}

/// No bound (a step not screened is kept whatever they are).
impl Default for FirstNodeBounds {
    fn default() -> Self {
        Self {
            upper_kva: f64::INFINITY,
            thermal_lower_kva: f64::NEG_INFINITY,
            voltage_lower_kva: f64::NEG_INFINITY,
            path_current_kva: 0.0,
        }
    }
}

/// Per lane, the least upper bound `u` at which any of a step's lower bounds,
/// each `a - b u` (the load's fall grows with the load it is judged at),
/// reaches `u + 1`: `(a - 1) / (1 + b)`, kept as a fraction so that a step's
/// hundreds of bounds cost no division each. A bound that reaches it at any
/// `u` (`a` at most 1, or not a number) counts as minus infinity over 1.
#[derive(Clone, Copy, Debug)]
struct CriticalUpper {
    numerator: Lanes,
    denominator: Lanes,
}

impl Default for CriticalUpper {
    fn default() -> Self {
        Self {
            numerator: [f64::INFINITY; LANES],
            denominator: [1.0; LANES],
        }
    }
}

impl CriticalUpper {
    #[inline(always)]
    fn add(&mut self, a: Lanes, b: Lanes) {
        // Where `a` exceeds 1, `b` is not negative: denominators are at least 1.
        // Whole-lane steps: a loop with each lane's choices inside was left
        // half scalar, with a branch.
        let numerator = lanes!(|l| if a[l] > 1.0 {
            a[l] - 1.0
        } else {
            f64::NEG_INFINITY
        });
        let denominator = lanes!(|l| if a[l] > 1.0 { 1.0 + b[l] } else { 1.0 });
        let left = lanes!(|l| numerator[l] * self.denominator[l]);
        let right = lanes!(|l| self.numerator[l] * denominator[l]);
        self.numerator = lanes!(|l| if left[l] < right[l] {
            numerator[l]
        } else {
            self.numerator[l]
        });
        self.denominator = lanes!(|l| if left[l] < right[l] {
            denominator[l]
        } else {
            self.denominator[l]
        });
    }

    fn value(&self) -> Lanes {
        lanes!(|l| self.numerator[l] / self.denominator[l])
    }
}

impl StepScreen {
    fn new(
        e: &ElectricalFeeder,
        limits: &crate::config::Limits,
        substation_limit_kva: f64,
        power_factor: f64,
    ) -> Self {
        let n = e.len();
        let thermal = limits.thermal_pct / 100.0;
        let phi = power_factor_tan(power_factor).atan();
        let lagging = Complex64::new(phi.cos(), -phi.sin());
        let z_path_ohm = e.path_impedance_ohm();
        let z_path: Vec<f64> = z_path_ohm.iter().map(|z| z.norm_sqr().sqrt()).collect();
        let mut voltage_factor = vec![1.0f64; n];
        for j in 1..n {
            let parent = e.parent[j] as usize;
            let own = if z_path[j] > 0.0 {
                let angle = (z_path_ohm[j] * lagging).arg().abs() + VOLTAGE_ANGLE_RAD;
                1.0 / angle.cos().max(MIN_COSINE)
            } else {
                1.0
            };
            voltage_factor[j] = own.max(voltage_factor[parent]);
        }
        // Children come after their parents: the longest impedance below each node.
        let mut longest_below = z_path.clone();
        for j in (1..n).rev() {
            let parent = e.parent[j] as usize;
            longest_below[parent] = longest_below[parent].max(longest_below[j]);
        }
        let fall_per_kva_at = |j: usize, z: f64| {
            let nominal = e.nominal_kv[j];
            FALL_MARGIN * z / (1000.0 * limits.v_min_pu * nominal * nominal)
        };
        let fall_per_kva: Vec<f64> = (0..n)
            .map(|j| fall_per_kva_at(j, longest_below[j]))
            .collect();
        let mut limit_a: Vec<f64> = e.rated_a.iter().map(|a| a * thermal).collect();
        limit_a[0] = e.head_rated_a.map_or(f64::INFINITY, |a| a * thermal);
        Self {
            limit_a,
            inverse_nominal_kv: e.nominal_kv.iter().map(|v| v.recip()).collect(),
            inverse_z_path: e.inverse_path_impedance(),
            voltage_factor,
            most_fall_per_kva: fall_per_kva.iter().copied().fold(0.0, f64::max),
            first_node_fall_per_kva: if n > 1 {
                fall_per_kva_at(1, z_path[1])
            } else {
                0.0
            },
            fall_per_kva,
            lagging_conj: lagging.conj(),
            v_min_pu: limits.v_min_pu,
            v_max_pu: limits.v_max_pu,
            substation_limit_kva,
        }
    }

    /// The bounds of a batch of steps from their (loose) power flows, a step
    /// per lane: a city's screen judges two million steps of a hundred nodes,
    /// and a lane each does four at once.
    fn steps(
        &self,
        e: &ElectricalFeeder,
        lanes: &SweepLanes,
        scratch: &mut ScreenScratch,
    ) -> [StepFigures; LANES] {
        let screen = self;
        avx2_or_portable!(
            StepScreen::steps_portable,
            fn(
                screen: &StepScreen,
                e: &ElectricalFeeder,
                lanes: &SweepLanes,
                scratch: &mut ScreenScratch,
            ) -> [StepFigures; LANES]
        )
    }

    #[inline(always)]
    fn steps_portable(
        &self,
        e: &ElectricalFeeder,
        lanes: &SweepLanes,
        scratch: &mut ScreenScratch,
    ) -> [StepFigures; LANES] {
        // Whole-lane minima: a select that keeps the left lane becomes a masked
        // store, which the next load of the same lanes waits for.
        fn least(a: Lanes, b: Lanes) -> Lanes {
            lanes!(|l| a[l].min(b[l]))
        }
        fn most(a: Lanes, b: Lanes) -> Lanes {
            lanes!(|l| a[l].max(b[l]))
        }
        fn square_root(a: &mut Lanes) {
            for x in a.iter_mut() {
                *x = x.sqrt();
            }
        }
        let n = e.len();
        let ScreenScratch {
            voltage_kv,
            subtree_min_pu,
            current_a,
            path_room,
        } = scratch;
        let SweepLanes {
            v_re,
            v_im,
            i_re,
            i_im,
            ..
        } = lanes;
        let mut highest_pu = [f64::NEG_INFINITY; LANES];
        for j in 0..n {
            voltage_kv[j] = lanes!(|l| v_re[j][l] * v_re[j][l] + v_im[j][l] * v_im[j][l]);
            current_a[j] = lanes!(|l| i_re[j][l] * i_re[j][l] + i_im[j][l] * i_im[j][l]);
            square_root(&mut voltage_kv[j]);
            square_root(&mut current_a[j]);
            let inverse_nominal = self.inverse_nominal_kv[j];
            subtree_min_pu[j] = lanes!(|l| voltage_kv[j][l] * inverse_nominal);
            highest_pu = most(highest_pu, subtree_min_pu[j]);
        }
        for j in (1..n).rev() {
            let parent = e.parent[j] as usize;
            subtree_min_pu[parent] = least(subtree_min_pu[parent], subtree_min_pu[j]);
        }
        let drop_pu: Lanes =
            lanes!(|l| voltage_kv[0][l] * self.inverse_nominal_kv[0] - subtree_min_pu[0][l]);
        let lagging = self.lagging_conj;
        // The present current in branch `branch` along a new one drawn at node
        // `at`, times that node's voltage, A kV.
        let along_kv = |branch: usize, at: usize, l: usize| {
            let w_re = i_re[branch][l] * lagging.re - i_im[branch][l] * lagging.im;
            let w_im = i_re[branch][l] * lagging.im + i_im[branch][l] * lagging.re;
            w_re * v_re[at][l] + w_im * v_im[at][l]
        };
        let mut least_upper_kva = [f64::INFINITY; LANES];
        let mut critical = CriticalUpper::default();
        path_room[0] = [f64::INFINITY; LANES];
        for j in 0..n {
            let nominal = e.nominal_kv[j];
            // Every node below `j` has at least this voltage.
            let lowest_below_kv: Lanes = lanes!(|l| subtree_min_pu[j][l] * nominal);
            // The branch into `j` (0: the head breaker) carries the new load of
            // any node below it.
            let limit_a = self.limit_a[j];
            if limit_a.is_finite() && n > 1 {
                let margin_a: Lanes = lanes!(|l| limit_a - current_a[j][l]);
                // As voltages fall by `fall`, the branch's present current and
                // the new one grow to at most 1 / (1 - fall) of what they would
                // be: the load may take the margin less `fall` times the limit.
                let fall_limit_kva = SQRT_3 * self.fall_per_kva[j] * limit_a;
                critical.add(
                    lanes!(|l| SQRT_3 * lowest_below_kv[l] * margin_a[l]),
                    lanes!(|l| lowest_below_kv[l] * fall_limit_kva),
                );
                let at = j.max(1);
                least_upper_kva = least(
                    least_upper_kva,
                    lanes!(|l| SQRT_3 * (voltage_kv[at][l] * limit_a - along_kv(j, at, l))),
                );
            }
            if j == 0 {
                continue;
            }
            let parent = e.parent[j] as usize;
            let inverse_z = self.inverse_z_path[j];
            if inverse_z.is_finite() {
                let own_room: Lanes =
                    lanes!(|l| (subtree_min_pu[j][l] - self.v_min_pu) * inverse_z);
                path_room[j] = least(own_room, path_room[parent]);
                // A load below `j` lowers the lowest voltage below `j` by at
                // least the impedance to `j` times its current.
                let room_kva: Lanes =
                    lanes!(|l| own_room[l] * 1000.0 * nominal * lowest_below_kv[l]);
                critical.add(
                    lanes!(|l| room_kva[l] * (1.0 - drop_pu[l] - 0.01)),
                    lanes!(|l| room_kva[l] * self.fall_per_kva[j]),
                );
            } else {
                path_room[j] = path_room[parent];
            }
            if path_room[j][0].is_finite() {
                let factor = self.voltage_factor[j];
                least_upper_kva = least(
                    least_upper_kva,
                    lanes!(|l| {
                        let voltage_lower = path_room[j][l] * 1000.0 * nominal * voltage_kv[j][l];
                        voltage_lower.max(0.0) * factor
                    }),
                );
            }
        }
        let critical_upper_kva = critical.value();
        std::array::from_fn(|l| {
            let first_node = if n > 1 {
                let (head_margin, own_margin) = (
                    self.limit_a[0] - current_a[0][l],
                    self.limit_a[1] - current_a[1][l],
                );
                let (margin_a, bottleneck) = if own_margin < head_margin {
                    (own_margin, 1)
                } else {
                    (head_margin, 0)
                };
                let kva_per_a = SQRT_3 * voltage_kv[1][l];
                let voltage_lower = path_room[1][l] * 1000.0 * e.nominal_kv[1] * voltage_kv[1][l];
                let voltage_lower = if voltage_lower.is_nan() {
                    f64::INFINITY
                } else {
                    voltage_lower
                };
                let thermal_upper = SQRT_3
                    * (voltage_kv[1][l] * self.limit_a[bottleneck] - along_kv(bottleneck, 1, l));
                FirstNodeBounds {
                    upper_kva: thermal_upper.min(voltage_lower.max(0.0) * self.voltage_factor[1]),
                    thermal_lower_kva: kva_per_a * margin_a,
                    voltage_lower_kva: voltage_lower,
                    path_current_kva: kva_per_a * current_a[0][l].max(current_a[1][l]),
                }
            } else {
                FirstNodeBounds::default()
            };
            StepFigures {
                least_upper_kva: least_upper_kva[l],
                critical_upper_kva: critical_upper_kva[l],
                substation_lower_kva: f64::INFINITY,
                near_upper_voltage_limit: highest_pu[l] >= self.v_max_pu - VOLTAGE_MARGIN_PU,
                drop_pu: drop_pu[l],
                first_node,
            }
        })
    }

    /// Whether a step with these figures can bind at the first node (whose
    /// least upper bound over the window is `first_node_upper`) or at the node
    /// where the least fits (at most `least_upper`). The loads' answer to a new
    /// load: constant power draws more current as voltages fall, by up to the
    /// fall the new load causes at its own node (no other node falls further);
    /// that raises every current on its path and every drop on the feeder by as
    /// much, and each lower bound is lowered by that.
    fn can_bind(&self, step: &StepFigures, least_upper: f64, first_node_upper: f64) -> bool {
        if step.critical_upper_kva <= least_upper {
            return true;
        }
        let substation = |fall: f64, upper: f64| {
            (step.substation_lower_kva - fall * upper.max(0.0)) * (1.0 - fall)
        };
        let fall = (self.most_fall_per_kva * least_upper.max(0.0)).min(0.5);
        if substation(fall, least_upper) <= least_upper + 1.0 {
            return true;
        }
        let first = &step.first_node;
        let fall = (self.first_node_fall_per_kva * first_node_upper.max(0.0)).min(0.5);
        // Currents on the path grow to at most 1 / (1 - fall) of what they
        // would be: the limit less that much of the present currents, over
        // the new current as much grown.
        let thermal = first.thermal_lower_kva * (1.0 - fall) - fall * first.path_current_kva;
        let voltage = first.voltage_lower_kva * (1.0 - (step.drop_pu + fall + 0.01));
        thermal.min(voltage).min(substation(fall, first_node_upper)) <= first_node_upper + 1.0
    }
}

/// A capacity screen over a feeder's steps, fed each batch of loose flows as
/// the load model solves it (see [`LooseBatches`]).
struct StepScreening<'a> {
    screen: StepScreen,
    electrical: &'a ElectricalFeeder,
    scratch: ScreenScratch,
    /// Per kept step, its figures (defaults, which keep a step, until screened).
    figures: Vec<StepFigures>,
}

impl<'a> StepScreening<'a> {
    fn new(screen: StepScreen, electrical: &'a ElectricalFeeder, steps: usize) -> Self {
        Self {
            screen,
            electrical,
            scratch: ScreenScratch::new(electrical.len()),
            figures: vec![StepFigures::default(); steps],
        }
    }

    /// The steps of a feeder (its loads solved at least loosely) where a flat
    /// load at the capacity power factor can meet a limit first at the first
    /// node, or at whichever node takes the least, and every step where a limit
    /// is broken already. Only those two nodes' headrooms are wanted: at any
    /// other node a step matters only where a load smaller than the least upper
    /// bound of every node can break a limit.
    ///
    /// Two bounds on the largest load that keeps every limit: from above, the
    /// limits with the new current in phase with what it adds to (thermal and
    /// substation: the projection of the present current on the new one;
    /// voltage: the path's least room over the cosine of the angle between
    /// the path's impedance and the new current); from below, the triangle
    /// inequality, lowered for the loads' answer to the lower voltage (see
    /// [`FALL_MARGIN`]). The upper bounds are taken at each branch's own node,
    /// the lower ones over each branch's subtree (its lowest voltage, its
    /// longest impedance): one pass over a step's nodes, no figures per node
    /// and step. A step is kept where some lower bound does not exceed the
    /// least upper bound of the window.
    fn steps_that_can_bind(&mut self, group_kva: &[Complex64]) -> Vec<usize> {
        let steps = group_kva.len();
        let figures = &mut self.figures[..steps];
        let screen = &self.screen;
        let (mut least_upper, mut first_node_upper) = (f64::INFINITY, f64::INFINITY);
        for (step, group) in figures.iter_mut().zip(group_kva) {
            step.add_substation(screen, *group);
            least_upper = least_upper.min(step.least_upper_kva);
            first_node_upper = first_node_upper.min(step.first_node.upper_kva);
        }
        (0..steps)
            .filter(|&k| {
                figures[k].near_upper_voltage_limit
                    || screen.can_bind(&figures[k], least_upper, first_node_upper)
            })
            .collect()
    }
}

impl LooseBatches for StepScreening<'_> {
    fn solved(&mut self, steps: &[usize], lanes: &SweepLanes) {
        // A flow that did not converge keeps its step (its lane's figures,
        // whatever they are, are not read).
        let usable = |l: usize| lanes.converged[l];
        if !(0..steps.len()).any(usable) {
            return;
        }
        let figures = self.screen.steps(self.electrical, lanes, &mut self.scratch);
        for (l, &k) in steps.iter().enumerate() {
            if usable(l) {
                self.figures[k] = figures[l];
            }
        }
    }
}

impl Engine {
    /// Capacity of every asset at a level; `now_ms` dates the data's age.
    /// Readings from a source that fetches per feeder (the store) are read in
    /// one scan first: every feeder or transformer needs its own anyway, and a
    /// substation's metered share asks after every transformer.
    pub fn capacity(
        &self,
        level: Level,
        readings: &dyn ReadingsSource,
        now_ms: i64,
    ) -> Vec<CapacityRow> {
        if let Some(everything) = readings.everything() {
            let prefetched = Arc::new(Prefetched {
                readings: everything,
                span: readings.span(),
            });
            let engine = self.with_readings(prefetched.clone());
            return engine.capacity_of(level, prefetched.as_ref(), now_ms);
        }
        self.capacity_of(level, readings, now_ms)
    }

    fn capacity_of(
        &self,
        level: Level,
        readings: &dyn ReadingsSource,
        now_ms: i64,
    ) -> Vec<CapacityRow> {
        let age = |asset: AssetRef| {
            Quantity::ALL
                .iter()
                .filter_map(|q| readings.series(asset, *q).last().map(|(ts, _)| *ts))
                .max()
                .map(|ts| round((now_ms - ts).max(0) as f64 / 1000.0, 0))
        };
        // Grades run top-down, and a substation's figures are in closed form.
        let substations = self.substation_open_capacity();
        match level {
            Level::Feeder => {
                let n1 = self.config.n1.mode != crate::config::N1Mode::Off;
                let bases = SweepBases::new(self, n1);
                let mut rows: Vec<(usize, CapacityRow)> = bases
                    .order()
                    .into_par_iter()
                    .map(|f| {
                        let row = self.feeder_capacity(f, &substations, &bases);
                        bases.row_done(f);
                        let data_age_s = age(AssetRef {
                            kind: AssetKind::Feeder,
                            index: f as u32,
                        });
                        (f, CapacityRow { data_age_s, ..row })
                    })
                    .collect();
                rows.sort_unstable_by_key(|(f, _)| *f);
                rows.into_iter().map(|(_, row)| row).collect()
            }
            Level::Transformer => self.transformer_capacity(readings, age, &substations),
            Level::Substation => self.substation_capacity(age, &substations),
        }
    }

    fn reserved_on_feeder(&self, f: usize) -> f64 {
        self.reservations
            .iter()
            .filter(|r| {
                self.topology
                    .placement(r.node)
                    .is_some_and(|p| p.feeder.get() == f)
            })
            .map(|r| r.demand_kw)
            .fold(0.0, |a, b| a + b)
    }

    /// A feeder's base for its capacity row, with the head's figures over the
    /// whole window: the cached base where there is one, else one built for the
    /// moment over only the steps where a flat load at the first node, or at
    /// the node where the least fits, can meet a limit (see
    /// [`StepScreening::steps_that_can_bind`]), judged as the load model solves
    /// each step loosely, which is ample to rule it out; the steps kept are solved
    /// exactly, from the same loose start as a full base, so the headroom
    /// found is the full base's.
    fn capacity_base(&self, f: usize) -> (Arc<FeederBase>, HeadFigures) {
        if let Some(base) = self.cached_feeder(f) {
            let head = HeadFigures::of_base(&base);
            return (base, head);
        }
        let feeder = FeederIx::from_usize(f);
        let electrical = ElectricalFeeder::new(&self.network, self.topology.tree(feeder));
        let group = self
            .topology
            .busbar_group_index(self.topology.tree(feeder).head());
        let limits = &self.config.limits;
        // Reservations on the feeder change every step's flow, and an audit
        // judges every step: neither is screened.
        let mut screening = (!(self.reserved_on(f) || self.config.judge_every_step)).then(|| {
            StepScreening::new(
                StepScreen::new(
                    &electrical,
                    limits,
                    self.group_rated_kva(group) * limits.substation_transformer_pct / 100.0,
                    self.config.capacity_power_factor,
                ),
                &electrical,
                self.window.steps.len(),
            )
        });
        let mut loads = match screening.as_mut() {
            Some(screening) => self.loads_of(feeder, &electrical, self.readings(), screening),
            None => self.loads_of(feeder, &electrical, self.readings(), &mut ()),
        };
        let steps = loads.loads.step_count();
        let rounds = self.config.load_model.max_allocation_rounds;
        let screened = screening
            .filter(|_| steps > FEW_STEPS)
            .map(|mut screening| {
                let group_kva = self.group_series(group, &self.window_steps(&loads.loads), true);
                screening.steps_that_can_bind(&group_kva)
            })
            .filter(|kept| !kept.is_empty());
        let Some(binding) = screened else {
            // The full base: reservations on the feeder change every step's
            // flow, a short window costs little, an audit judges every step,
            // and a feeder of its busbar alone has no node to screen for.
            loads.settle(&electrical, 0..steps, rounds);
            let loads = loads.into_whole();
            let mut base = self.base_from_loads(feeder, electrical, loads.into(), true);
            self.finish_base(&mut base, true);
            let head = HeadFigures::of_base(&base);
            return (Arc::new(base), head);
        };
        // The head's peak and 95th percentile come from exact flows too: settle
        // every step whose loose figure lies near them.
        let near_head_figures = HeadFigures::steps_near(&loads.loads);
        loads.settle(
            &electrical,
            binding.iter().copied().chain(near_head_figures),
            rounds,
        );
        let mut loads = loads.into_whole();
        let head = HeadFigures::of(
            (0..loads.step_count()).map(|k| loads.head_power_kva(k)),
            &loads,
        );
        let kept = loads.restricted_to(&binding);
        let mut base = self.base_from_loads(feeder, electrical, kept.into(), true);
        self.finish_base(&mut base, true);
        (Arc::new(base), head)
    }

    fn feeder_capacity(
        &self,
        f: usize,
        substations: &[OpenCapacity],
        bases: &SweepBases<'_>,
    ) -> CapacityRow {
        // The open capacity for generation needs every exporting step solved:
        // where no reservation touches the feeder, that full base serves the
        // load figures too (the screened base would give the same, and
        // building both cost a third more).
        let measured = if self.feeder_fingerprint[f] == 0 {
            bases.base(f)
        } else {
            self.measured_base(f)
        };
        let open = self.feeder_open_capacity(&measured, f);
        let grade = open
            .grade()
            .under(self.feeder_substation_grade(f, substations));
        let (base, head) = if self.touched_by_reservations(f) {
            self.capacity_base(f)
        } else {
            let head = HeadFigures::of_base(&measured);
            (measured, head)
        };
        let base = base.as_ref();
        let feeder = &self.network.feeders[f];
        let tree = self.topology.tree(base.loads.feeder);
        let load = AddedLoad::flat(self.config.capacity_power_factor);
        let rated = feeder
            .rated_a
            .or_else(|| {
                base.electrical
                    .rated_a
                    .get(1)
                    .copied()
                    .filter(|a| a.is_finite())
            })
            .unwrap_or(0.0);
        let HeadFigures {
            peak_kva,
            p95_kva,
            peak_a,
        } = head;
        let (mut headroom, mut binding) = (0.0, CheckName::OutOfService);
        let (mut worst, mut worst_node) = (None, None);
        if tree.node_count() > 0 && base.loads.step_count() > 0 {
            // The first node: the feeder's own figure.
            (headroom, binding) = self.headroom_at(base, 1, &load);
            let mut least = (headroom, 1u32);
            // The weakest node: nodes in order of their least room, which is
            // within a few per cent of their headroom, so once a node's room is
            // clearly above the least headroom found, no later node can be weaker.
            let per_kw_kva = (1.0 + load.tan_phi * load.tan_phi).sqrt();
            let mut order: Vec<u32> = (2..tree.nodes.len() as u32).collect();
            order.sort_by(|a, b| {
                base.least_room_kva[*a as usize].total_cmp(&base.least_room_kva[*b as usize])
            });
            // Where a limit is broken already, every node has none.
            let already_broken = base.summary.already_broken.is_some();
            // Per node, the least headroom found at a node below it (infinite
            // before any is judged). A load
            // further out on the same path draws its current through every
            // branch this node's load would and more, and lowers every voltage
            // at least as much: a node's headroom is at least that of any node
            // below it. Where that already reaches the least found, the node
            // cannot be weaker, and a tie names the node further out.
            // (A feeder limited at its head has all its nodes within a few
            // per cent of each other: the weakest node's ancestors, each
            // searched for a tie, were half the searches of a city sweep.)
            let parent = &base.electrical.parent;
            let mut least_below = vec![f64::INFINITY; parent.len()];
            for local in order.into_iter().filter(|_| !already_broken) {
                let room_kw = base.least_room_kva[local as usize] / per_kw_kva;
                if room_kw * (1.0 - ROOM_SLACK) > least.0 + 1.0 {
                    break;
                }
                let below = least_below[local as usize];
                if below.is_finite() && below >= least.0 {
                    continue;
                }
                // A node whose estimates all lie clearly past the least
                // found has more than it: 1 kW more is as low as its
                // headroom can be, and so its ancestors'.
                let ceiling = least.0 * (1.0 + WEAKER_ESTIMATE_MARGIN) + 1.0;
                let h = match self.headroom_under(base, local, &load, ceiling) {
                    Some((h, _)) => h,
                    None => least.0 + 1.0,
                };
                if h < least.0 || (h == least.0 && local < least.1) {
                    least = (h, local);
                }
                // Ancestors already at or below `h` have theirs as low.
                let mut above = parent[local as usize] as usize;
                while above != 0 && above < parent.len() && least_below[above] > h {
                    least_below[above] = h;
                    above = parent[above] as usize;
                }
            }
            worst = Some(least.0);
            worst_node = Some(
                self.network
                    .node(tree.nodes[least.1 as usize])
                    .id
                    .to_string(),
            );
        }
        let n1 = self.feeder_n1_figures(f, headroom, bases);
        CapacityRow {
            id: feeder.id.to_string(),
            kind: "feeder",
            rated,
            peak_kva: round(peak_kva, 1),
            p95_kva: round(p95_kva, 1),
            loading_pct: loading_pct(peak_a, rated),
            reserved_kw: self.reserved_on_feeder(f),
            headroom_kw: headroom,
            binding_constraint: binding,
            worst_node_headroom_kw: worst,
            worst_node,
            data_age_s: None,
            metered_share: round(base.loads.metered_share, 4),
            generation_headroom_kw: open.headroom_kw,
            generation_open_kw: open.open_kw,
            grade,
            n1_ok: n1.ok,
            n1_headroom_kw: n1.headroom_kw,
            n1_case: n1.case,
            n1_detail: n1.detail,
        }
    }

    fn transformer_capacity(
        &self,
        readings: &dyn ReadingsSource,
        age: impl Fn(AssetRef) -> Option<f64> + Sync,
        substations: &[OpenCapacity],
    ) -> Vec<CapacityRow> {
        // Per feeder, one base (its load model is the same with or without
        // reservations, which are extra loads of their own): each
        // transformer's apparent power per step, allocated where unmetered,
        // and its open capacity and grade under its feeder's (itself under its
        // substation's). A transformer fed from a busbar has its own readings.
        type Figures = (usize, Vec<f64>, bool, OpenCapacity, Grade);
        let per_feeder: Vec<Vec<Figures>> = (0..self.network.feeders.len())
            .into_par_iter()
            .map(|f| {
                let base = self.measured_base(f);
                let above = self
                    .feeder_open_capacity(&base, f)
                    .grade()
                    .under(self.feeder_substation_grade(f, substations));
                let loads = &base.loads;
                let m = loads.transformers.len();
                self.transformers_open_capacity(&base)
                    .into_iter()
                    .enumerate()
                    .map(|(slot, (t, open))| {
                        let series = (0..loads.step_count())
                            .map(|k| {
                                Complex64::new(loads.p_kw[k * m + slot], loads.q_kvar[k * m + slot])
                                    .norm_sqr()
                                    .sqrt()
                            })
                            .collect();
                        (
                            t.get(),
                            series,
                            loads.metered[slot],
                            open,
                            open.grade().under(above),
                        )
                    })
                    .collect()
            })
            .collect();
        let mut open: Vec<Option<(OpenCapacity, Grade)>> =
            vec![None; self.network.transformers.len()];
        let mut series: Vec<Option<(Vec<f64>, bool)>> = vec![None; self.network.transformers.len()];
        for (t, s, metered, o, grade) in per_feeder.into_iter().flatten() {
            series[t] = Some((s, metered));
            open[t] = Some((o, grade));
        }
        let limit = self.config.limits.transformer_pct / 100.0;
        let pf = self.config.capacity_power_factor;
        let gap = self.config.load_model.max_interpolation_gap_ms;
        let mut rows = Vec::with_capacity(self.network.transformers.len());
        for (t, tr) in self.network.transformers.iter().enumerate() {
            let asset = AssetRef {
                kind: AssetKind::Transformer,
                index: t as u32,
            };
            let (values, metered) = series[t].take().unwrap_or_else(|| {
                // Fed straight from a busbar (or off every feeder): its own readings.
                let p = self
                    .window
                    .align(&readings.series(asset, Quantity::PKw), gap);
                let q = self
                    .window
                    .align(&readings.series(asset, Quantity::QKvar), gap);
                let power: Vec<Option<Complex64>> = p
                    .iter()
                    .zip(&q)
                    .map(|(p, q)| p.map(|p| Complex64::new(p, q.unwrap_or(0.0))))
                    .collect();
                open[t] =
                    Some(self.transformer_open_capacity_of_readings(
                        TransformerIx::from_usize(t),
                        &power,
                    ));
                let values: Vec<f64> = power.iter().flatten().map(|s| s.norm()).collect();
                let metered = !values.is_empty();
                (values, metered)
            });
            let (open, grade) = open[t].unwrap_or((
                OpenCapacity {
                    headroom_kw: 0.0,
                    open_kw: 0.0,
                },
                Grade::Red,
            ));
            let (peak_kva, p95_kva) = peak_and_p95(values);
            let reserved: f64 = self
                .reservations
                .iter()
                .filter(|r| r.node == tr.node)
                .map(|r| r.demand_kw)
                .fold(0.0, |a, b| a + b);
            let headroom = ((limit * tr.rated_kva - peak_kva) * pf - reserved).max(0.0);
            rows.push(CapacityRow {
                id: tr.id.to_string(),
                kind: "transformer",
                rated: tr.rated_kva,
                peak_kva: round(peak_kva, 1),
                p95_kva: round(p95_kva, 1),
                loading_pct: loading_pct(peak_kva, tr.rated_kva),
                reserved_kw: reserved,
                headroom_kw: headroom.floor(),
                binding_constraint: if tr.in_service {
                    CheckName::Transformer
                } else {
                    CheckName::OutOfService
                },
                worst_node_headroom_kw: None,
                worst_node: None,
                data_age_s: age(asset),
                metered_share: if metered { 1.0 } else { 0.0 },
                generation_headroom_kw: open.headroom_kw,
                generation_open_kw: open.open_kw,
                grade,
                n1_ok: None,
                n1_headroom_kw: None,
                n1_case: None,
                n1_detail: None,
            });
        }
        rows
    }

    /// Share of these distribution transformers that have readings of their own.
    pub fn metered_transformer_share(&self, transformers: impl Iterator<Item = usize>) -> f64 {
        let (mut metered, mut total) = (0usize, 0usize);
        for t in transformers {
            total += 1;
            let asset = AssetRef {
                kind: AssetKind::Transformer,
                index: t as u32,
            };
            if self.readings().has(asset, Quantity::PKw) {
                metered += 1;
            }
        }
        if total == 0 {
            0.0
        } else {
            metered as f64 / total as f64
        }
    }

    fn substation_capacity(
        &self,
        age: impl Fn(AssetRef) -> Option<f64>,
        open: &[OpenCapacity],
    ) -> Vec<CapacityRow> {
        let pf = self.config.capacity_power_factor;
        let steps = self.window.steps.len();
        let mut rows = Vec::new();
        for (s, substation) in self.network.substations.iter().enumerate() {
            let ix = SubstationIx::from_usize(s);
            let transformers: Vec<usize> = self
                .network
                .substation_transformers
                .iter()
                .enumerate()
                .filter(|(_, t)| t.substation == ix && t.in_service)
                .map(|(i, _)| i)
                .collect();
            let ratings: Vec<f64> = transformers
                .iter()
                .map(|t| self.network.substation_transformers[*t].rated_kva)
                .collect();
            let total: f64 = ratings.iter().sum();
            let largest = ratings.iter().copied().fold(0.0, f64::max);
            let firm = if ratings.len() > 1 {
                total - largest
            } else {
                total
            };
            let groups = self.substation_groups(s);
            let series: Vec<f64> = (0..steps)
                .map(|k| {
                    groups
                        .iter()
                        .map(|g| self.group_kva[*g][k])
                        .sum::<Complex64>()
                        .norm_sqr()
                        .sqrt()
                })
                .collect();
            let (peak_kva, p95_kva) = peak_and_p95(series);
            let reserved: f64 = groups
                .iter()
                .map(|g| {
                    self.group_reserved_kva[*g]
                        .iter()
                        .map(|c| c.re)
                        .fold(0.0, f64::max)
                })
                .fold(0.0, |a, b| a + b);
            let in_groups: Vec<usize> = self
                .network
                .transformers
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    let busbar = match self.topology.placement(t.node) {
                        Some(p) => self.topology.tree(p.feeder).head(),
                        None => t.node,
                    };
                    self.topology
                        .busbar_group_index(busbar)
                        .is_some_and(|g| groups.contains(&g))
                })
                .map(|(i, _)| i)
                .collect();
            let metered_share = self.metered_transformer_share(in_groups.into_iter());
            rows.push(CapacityRow {
                id: substation.id.to_string(),
                kind: "substation",
                rated: firm,
                peak_kva: round(peak_kva, 1),
                p95_kva: round(p95_kva, 1),
                loading_pct: loading_pct(peak_kva, firm),
                reserved_kw: round(reserved, 1),
                headroom_kw: ((firm - peak_kva) * pf - reserved).max(0.0).floor(),
                binding_constraint: CheckName::SubstationTransformer,
                worst_node_headroom_kw: None,
                worst_node: None,
                data_age_s: transformers
                    .iter()
                    .filter_map(|t| {
                        age(AssetRef {
                            kind: AssetKind::SubstationTransformer,
                            index: *t as u32,
                        })
                    })
                    .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.min(b)))),
                metered_share: round(metered_share, 4),
                generation_headroom_kw: open[s].headroom_kw,
                generation_open_kw: open[s].open_kw,
                grade: open[s].grade(),
                n1_ok: None,
                n1_headroom_kw: None,
                n1_case: None,
                n1_detail: None,
            });
        }
        rows
    }
}

/// Every reading of a source fetched up front (see
/// [`ReadingsSource::everything`]), with the source's span.
pub(crate) struct Prefetched {
    pub(crate) readings: Arc<InMemoryReadings>,
    pub(crate) span: Option<(i64, i64)>,
}

impl ReadingsSource for Prefetched {
    fn series(&self, asset: AssetRef, quantity: Quantity) -> Cow<'_, [(i64, f64)]> {
        self.readings.series(asset, quantity)
    }

    fn span(&self) -> Option<(i64, i64)> {
        self.span
    }

    fn group(&self, _assets: &[AssetRef]) -> Option<Arc<InMemoryReadings>> {
        Some(self.readings.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let (peak, p95) = peak_and_p95((1..=100).map(f64::from).collect());
        assert_eq!((peak, p95), (100.0, 95.0));
        assert_eq!(peak_and_p95(vec![]), (0.0, 0.0));
        assert_eq!(peak_and_p95(vec![3.0]), (3.0, 3.0));
    }
}
