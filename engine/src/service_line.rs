//! The new line from a connection point to the customer: how long its route is
//! (an estimate: the straight distance times the configured route factor), which
//! conductor of the catalogue it needs, and what it and the bay cost.
//!
//! The conductor is the smallest of the catalogue (by rating, then cost) that,
//! at every step of the window, carries the customer's current within its rating
//! and keeps the customer's terminal within the voltage limits: the terminal's
//! voltage is the connection point's voltage with the new load connected less
//! the line's own drop, both by the usual drop formula
//! `sqrt(3) I (R cos phi + X sin phi)` (within a few parts in ten thousand of a
//! power flow on lines of distribution length).

use serde::Serialize;

use crate::config::{Conductor, ConductorKind, EngineConfig};
use crate::powerflow::SQRT_3;

/// How a scheme's supply reaches the customer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceLine {
    /// The connection point it leaves from.
    pub supply: String,
    /// Route length, metres: the straight distance times the route factor.
    pub route_length_m: f64,
    /// Always true: the route is not surveyed, only estimated.
    pub route_estimated: bool,
    /// The conductor chosen, or none where none of the catalogue fits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conductor: Option<ChosenConductor>,
    /// The customer's highest current over the window, A.
    pub peak_current_a: f64,
    /// Cost of the bay or tee at the connection point.
    pub bay_cost: f64,
    /// Line and bay, where a conductor fits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Why no conductor fits, where none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A conductor of the catalogue and how the new line fares with it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChosenConductor {
    /// Its name in the catalogue.
    pub name: String,
    /// Cable or overhead.
    pub kind: ConductorKind,
    /// Its rating, A.
    pub rated_a: f64,
    /// The line's highest loading over the window, %.
    pub loading_pct: f64,
    /// The customer's terminal's lowest voltage over the window, pu.
    pub terminal_min_voltage_pu: f64,
    /// The line's cost.
    pub line_cost: f64,
}

/// The connection point's side of a new line, at every step of the window.
#[derive(Clone, Debug)]
pub struct PointSupply {
    /// Voltage at the connection point with the new load connected, kV (one
    /// per step).
    pub v_kv: Vec<f64>,
    /// The application's load factor at each step.
    pub factor: Vec<f64>,
    /// Nominal voltage, kV.
    pub nominal_kv: f64,
}

/// One step of the window reduced to what sizing needs: the connection
/// point's voltage and the customer's apparent power there.
#[derive(Clone, Copy, Debug)]
struct StepDemand {
    v_kv: f64,
    kva: f64,
}

/// Sizes the line for `demand_kw` at `power_factor` from a point `distance_m`
/// from the customer. `bay_cost` is that of the bay or tee the point needs.
pub fn size(
    config: &EngineConfig,
    supply: &str,
    point: &PointSupply,
    distance_m: f64,
    demand_kw: f64,
    power_factor: f64,
    bay_cost: f64,
) -> ServiceLine {
    let route_length_m = distance_m * config.route_factor;
    let kva_per_kw = 1.0 / power_factor;
    // Only the steps no other step dominates can be the worst for some
    // conductor: a lower voltage and a larger demand.
    let steps = frontier(
        point
            .v_kv
            .iter()
            .zip(&point.factor)
            .map(|(v, f)| StepDemand {
                v_kv: *v,
                kva: demand_kw * f * kva_per_kw,
            }),
    );
    let sin_phi = (1.0 - power_factor * power_factor).max(0.0).sqrt();
    let thermal = config.limits.thermal_pct / 100.0;
    let v_min_kv = config.limits.v_min_pu * point.nominal_kv;
    let mut catalogue: Vec<&Conductor> = config.conductors.iter().collect();
    catalogue.sort_by(|a, b| {
        a.rated_a
            .total_cmp(&b.rated_a)
            .then(a.cost_per_km.total_cmp(&b.cost_per_km))
    });
    let km = route_length_m / 1000.0;
    let fare = |c: &Conductor| {
        let drop_ohm = (c.r_ohm_per_km * power_factor + c.x_ohm_per_km * sin_phi) * km;
        let (mut peak_a, mut lowest_kv) = (0.0f64, f64::INFINITY);
        for s in &steps {
            // The current at the terminal's voltage, which its own drop lowers.
            let mut current = s.kva / (SQRT_3 * s.v_kv);
            let mut terminal = s.v_kv;
            for _ in 0..2 {
                terminal = s.v_kv - SQRT_3 * current * drop_ohm / 1000.0;
                if terminal <= 0.0 {
                    return (f64::INFINITY, 0.0);
                }
                current = s.kva / (SQRT_3 * terminal);
            }
            peak_a = peak_a.max(current);
            lowest_kv = lowest_kv.min(terminal);
        }
        (
            peak_a,
            if steps.is_empty() {
                point.nominal_kv
            } else {
                lowest_kv
            },
        )
    };
    let chosen = catalogue.iter().find_map(|c| {
        let (peak_a, lowest_kv) = fare(c);
        (peak_a <= c.rated_a * thermal && lowest_kv >= v_min_kv).then_some((c, peak_a, lowest_kv))
    });
    let peak_current_a = steps
        .iter()
        .map(|s| s.kva / (SQRT_3 * s.v_kv))
        .fold(0.0, f64::max);
    match chosen {
        Some((c, peak_a, lowest_kv)) => {
            let line_cost = c.cost_per_km * km;
            ServiceLine {
                supply: supply.to_owned(),
                route_length_m: round(route_length_m, 1),
                route_estimated: true,
                conductor: Some(ChosenConductor {
                    name: c.name.clone(),
                    kind: c.kind,
                    rated_a: c.rated_a,
                    loading_pct: round(peak_a / c.rated_a * 100.0, 2),
                    terminal_min_voltage_pu: round(lowest_kv / point.nominal_kv, 4),
                    line_cost: round(line_cost, 0),
                }),
                peak_current_a: round(peak_a, 1),
                bay_cost,
                cost: Some(round(line_cost + bay_cost, 0)),
                problem: None,
            }
        }
        None => {
            let problem = match catalogue.last() {
                None => "the conductor catalogue (engine.conductors) is empty".to_owned(),
                Some(largest) if peak_current_a > largest.rated_a * thermal => format!(
                    "no conductor of the catalogue carries {peak_current_a:.0} A within {:.0} % of its \
                     rating (the largest, {}, is rated {:.0} A)",
                    config.limits.thermal_pct, largest.name, largest.rated_a
                ),
                Some(_) => {
                    let best = catalogue
                        .iter()
                        .filter(|c| fare(c).0 <= c.rated_a * thermal)
                        .map(|c| (c, fare(c).1))
                        .max_by(|a, b| a.1.total_cmp(&b.1));
                    match best {
                        Some((c, lowest_kv)) => format!(
                            "no conductor of the catalogue keeps the customer's terminal at or above \
                             {} pu over {:.0} m (the best, {}, gives {:.4} pu)",
                            config.limits.v_min_pu,
                            route_length_m,
                            c.name,
                            lowest_kv / point.nominal_kv
                        ),
                        None => format!(
                            "no conductor of the catalogue carries the customer's current over \
                             {route_length_m:.0} m within its rating and the voltage limits"
                        ),
                    }
                }
            };
            ServiceLine {
                supply: supply.to_owned(),
                route_length_m: round(route_length_m, 1),
                route_estimated: true,
                conductor: None,
                peak_current_a: round(peak_current_a, 1),
                bay_cost,
                cost: None,
                problem: Some(problem),
            }
        }
    }
}

/// The steps not dominated by another with a voltage as low or lower and a
/// demand as large or larger.
fn frontier(steps: impl Iterator<Item = StepDemand>) -> Vec<StepDemand> {
    let mut all: Vec<StepDemand> = steps.filter(|s| s.kva > 0.0 && s.v_kv > 0.0).collect();
    // A flat demand (most applications): the lowest voltage alone decides,
    // with no sort of the window.
    let lowest = all.iter().copied().min_by(|a, b| a.v_kv.total_cmp(&b.v_kv));
    let largest = all.iter().map(|s| s.kva).fold(0.0, f64::max);
    if let Some(lowest) = lowest.filter(|s| s.kva >= largest) {
        return vec![lowest];
    }
    // Lowest voltage first; keep a step only if its demand beats every step of
    // lower voltage.
    all.sort_by(|a, b| a.v_kv.total_cmp(&b.v_kv).then(b.kva.total_cmp(&a.kva)));
    let mut kept: Vec<StepDemand> = Vec::new();
    let mut largest = 0.0f64;
    for s in all {
        if s.kva > largest {
            largest = s.kva;
            kept.push(s);
        }
    }
    kept
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v_kv: f64, steps: usize) -> PointSupply {
        PointSupply {
            v_kv: vec![v_kv; steps],
            factor: vec![1.0; steps],
            nominal_kv: 10.0,
        }
    }

    fn catalogue() -> EngineConfig {
        EngineConfig {
            conductors: vec![
                Conductor {
                    name: "thin".into(),
                    kind: ConductorKind::Cable,
                    rated_a: 200.0,
                    r_ohm_per_km: 0.5,
                    x_ohm_per_km: 0.1,
                    cost_per_km: 100.0,
                },
                Conductor {
                    name: "thick".into(),
                    kind: ConductorKind::Cable,
                    rated_a: 400.0,
                    r_ohm_per_km: 0.1,
                    x_ohm_per_km: 0.1,
                    cost_per_km: 300.0,
                },
            ],
            ..EngineConfig::default()
        }
    }

    #[test]
    fn a_short_line_takes_the_thinnest_conductor_that_carries_the_demand() {
        let config = catalogue();
        let line = size(&config, "N1", &flat(10.2, 8), 100.0, 2_000.0, 1.0, 50.0);
        let c = line.conductor.clone().expect("a conductor fits");
        assert_eq!(c.name, "thin");
        // 2,000 kW at about 10.2 kV: about 113 A.
        assert!((line.peak_current_a - 113.3).abs() < 1.0, "{line:?}");
        assert_eq!(line.route_length_m, 130.0);
        assert_eq!(line.cost, Some((100.0 * 0.13_f64).round() + 50.0));
    }

    #[test]
    fn a_long_line_where_the_thin_conductor_breaks_voltage_takes_a_thicker_one() {
        let config = catalogue();
        // 10 km of route at 113 A: the thin conductor drops about 10 %, the
        // thick one about 2 %.
        let line = size(
            &config,
            "N1",
            &flat(10.2, 8),
            10_000.0 / 1.3,
            2_000.0,
            1.0,
            0.0,
        );
        let c = line.conductor.clone().expect("the thick conductor fits");
        assert_eq!(c.name, "thick", "{line:?}");
        assert!(c.terminal_min_voltage_pu >= 0.93, "{line:?}");
        // The thin one alone fails with a reason naming the voltage.
        let mut thin_only = config.clone();
        thin_only.conductors.truncate(1);
        let line = size(
            &thin_only,
            "N1",
            &flat(10.2, 8),
            10_000.0 / 1.3,
            2_000.0,
            1.0,
            0.0,
        );
        assert!(line.conductor.is_none() && line.cost.is_none());
        assert!(
            line.problem.as_deref().unwrap().contains("terminal"),
            "{line:?}"
        );
    }

    #[test]
    fn a_demand_no_conductor_carries_says_so() {
        let config = catalogue();
        let line = size(&config, "N1", &flat(10.2, 8), 100.0, 9_000.0, 0.9, 0.0);
        assert!(line.conductor.is_none() && line.cost.is_none());
        let problem = line.problem.unwrap();
        assert!(
            problem.contains("carries") && problem.contains("thick"),
            "{problem}"
        );
    }

    #[test]
    fn only_steps_no_other_dominates_are_kept() {
        let step = |v_kv, kva| StepDemand { v_kv, kva };
        let kept = frontier(
            [
                step(10.0, 5.0),
                step(9.8, 3.0),
                step(10.1, 6.0),
                step(9.9, 2.0),
                step(10.2, 6.0),
            ]
            .into_iter(),
        );
        let kept: Vec<(f64, f64)> = kept.iter().map(|s| (s.v_kv, s.kva)).collect();
        assert_eq!(kept, [(9.8, 3.0), (10.0, 5.0), (10.1, 6.0)]);
        // A flat demand keeps its lowest voltage alone.
        let kept = frontier([step(10.0, 5.0), step(9.7, 5.0), step(9.9, 5.0)].into_iter());
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].v_kv, 9.7);
    }

    #[test]
    fn the_worst_step_decides_even_where_the_demand_follows_a_profile() {
        let config = catalogue();
        // Most steps lightly loaded at a high voltage; one at full demand and
        // low voltage decides the conductor.
        let mut point = flat(10.4, 96);
        point.factor = vec![0.1; 96];
        point.v_kv[40] = 9.6;
        point.factor[40] = 1.0;
        let line = size(&config, "N1", &point, 3_000.0, 3_000.0, 0.95, 0.0);
        let c = line.conductor.clone().expect("a conductor fits");
        assert_eq!(c.name, "thick", "{line:?}");
        let expected = 3_000.0 / 0.95 / (SQRT_3 * 9.6);
        assert!(line.peak_current_a >= expected, "{line:?}");
    }
}
