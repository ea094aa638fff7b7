//! Headroom at one connection point: the largest extra load, at the application's
//! power factor and profile, that keeps every electrical check at every step.
//!
//! Bisection over full power flows at every step would take seconds. Instead, for
//! each step the base-case power flow gives sensitivities of every path current,
//! node voltage and the substation loading to load at the candidate; they estimate
//! each step's headroom in closed form (a quadratic in the load per current or
//! apparent-power limit, a line per voltage). Only the steps whose estimate is
//! within a margin of the smallest can bind; for those the headroom is found
//! exactly by root finding over full power flows, and confirmed.

use num_complex::Complex64;

use crate::checks::{CheckName, Observed, first_broken};
use crate::engine::{Engine, FeederBase};
use crate::load_model::power_factor_tan;
use crate::powerflow::{Solution, SweepSettings, sweep};

const SQRT_3: f64 = 1.732_050_807_568_877_2;

/// Headroom beyond this is reported as this: nothing on a distribution feeder
/// comes near it.
pub const UNBOUNDED_KW: f64 = 1.0e6;

/// Steps refined exactly at most, of those the estimate says can bind.
const REFINED_STEPS: usize = 8;

/// The load to add: its shape over the feeder's steps.
#[derive(Clone, Debug)]
pub struct AddedLoad<'a> {
    /// kvar per kW (tan phi, lagging).
    pub tan_phi: f64,
    /// 96 quarter-hour factors of the demand, or flat.
    pub profile: Option<&'a [f64]>,
}

impl AddedLoad<'_> {
    /// A flat load at a power factor.
    pub fn flat(power_factor: f64) -> AddedLoad<'static> {
        AddedLoad {
            tan_phi: power_factor_tan(power_factor),
            profile: None,
        }
    }
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

/// What the engine found at one connection point.
#[derive(Clone, Debug, PartialEq)]
pub struct PointEvaluation {
    /// Largest extra load keeping every electrical check, kW (floored to 1 kW).
    pub headroom_kw: f64,
    /// The check that limits it.
    pub binding: CheckName,
    /// Whether a limit is already broken without the new load.
    pub already_broken: bool,
    /// Worst case without the new load.
    pub before: Figures,
    /// Worst case with the application's demand.
    pub after: Figures,
    /// The worst values behind `after`.
    pub worst: WorstChecks,
}

/// Scratch space for power flows, reused across calls.
#[derive(Default)]
struct Scratch {
    p: Vec<f64>,
    q: Vec<f64>,
    solution: Solution,
}

/// The smallest `x >= 0` with `|start + x * per_unit| = limit`; 0 when already past.
pub(crate) fn magnitude_root(start: Complex64, per_unit: Complex64, limit: f64) -> f64 {
    let c = start.norm_sqr() - limit * limit;
    if c >= 0.0 {
        return 0.0;
    }
    let a = per_unit.norm_sqr();
    if a <= 0.0 {
        return f64::INFINITY;
    }
    let b = 2.0 * (start * per_unit.conj()).re;
    (-b + (b * b - 4.0 * a * c).sqrt()) / (2.0 * a)
}

impl Engine {
    /// The application's load factor at each kept step of a feeder.
    fn shape(&self, base: &FeederBase, load: &AddedLoad<'_>) -> Vec<f64> {
        base.loads
            .steps
            .iter()
            .map(|ts| load.profile.map_or(1.0, |p| p[self.quarter_of_day(*ts)]))
            .collect()
    }

    /// Worst base-case figures of a feeder over its steps.
    pub fn before(&self, base: &FeederBase) -> Figures {
        let mut f = Figures {
            max_loading_pct: 0.0,
            min_voltage_pu: f64::INFINITY,
            substation_transformer_loading_pct: 0.0,
        };
        for o in &base.observed {
            f.max_loading_pct = f.max_loading_pct.max(o.max_loading_pct());
            f.min_voltage_pu = f.min_voltage_pu.min(o.v_min_pu);
            f.substation_transformer_loading_pct =
                f.substation_transformer_loading_pct.max(o.substation_pct);
        }
        if !f.min_voltage_pu.is_finite() {
            f.min_voltage_pu = 1.0;
        }
        f
    }

    /// A full power flow of step `k` with `x` kW (shaped) added at `local`.
    fn exact(
        &self,
        base: &FeederBase,
        k: usize,
        local: u32,
        x_kw: f64,
        load: &AddedLoad<'_>,
        scratch: &mut Scratch,
    ) -> Observed {
        let n = base.electrical.len();
        scratch.p.resize(n, 0.0);
        scratch.q.resize(n, 0.0);
        self.base_node_loads(base, k, &mut scratch.p, &mut scratch.q);
        scratch.p[local as usize] += x_kw;
        scratch.q[local as usize] += x_kw * load.tan_phi;
        scratch.solution.clone_from(&base.solutions[k]);
        sweep(
            &base.electrical,
            &scratch.p,
            &scratch.q,
            base.loads.source_kv[k],
            SweepSettings::default(),
            &mut scratch.solution,
        );
        let added = scratch.solution.head_power_kva() - base.solutions[k].head_power_kva();
        self.observe(base, k, &scratch.solution, added)
    }

    /// Evaluates the node at `local` of feeder `base` for a load of `demand_kw`.
    pub fn evaluate_point(
        &self,
        base: &FeederBase,
        local: u32,
        demand_kw: f64,
        load: &AddedLoad<'_>,
    ) -> PointEvaluation {
        let limits = &self.config.limits;
        let e = &base.electrical;
        let n = e.len();
        let steps = base.loads.step_count();
        let shape = self.shape(base, load);
        let before = self.before(base);
        let mut scratch = Scratch::default();

        // Branches from the busbar to the candidate, and the impedance each node
        // shares with that path (its voltage sensitivity to load at the candidate).
        let mut on_path = vec![false; n];
        let mut path = Vec::new();
        let mut at = local;
        while at != 0 && (at as usize) < n {
            on_path[at as usize] = true;
            path.push(at as usize);
            at = e.parent[at as usize];
        }
        let mut shared_z = vec![Complex64::new(0.0, 0.0); n];
        for j in 1..n {
            let parent = e.parent[j] as usize;
            shared_z[j] = shared_z[parent]
                + if on_path[j] {
                    e.z_ohm[j]
                } else {
                    Complex64::new(0.0, 0.0)
                };
        }
        let thermal = limits.thermal_pct / 100.0;
        let head_limit_a = e.head_rated_a.map(|a| a * thermal);
        let group_rated = self.group_rated_kva(base.group);
        let substation_limit_kva = group_rated * limits.substation_transformer_pct / 100.0;

        // A limit broken without the new load binds at once.
        let mut already: Option<(f64, CheckName)> = None;
        for o in &base.observed {
            let ratios = o.ratios(limits);
            let worst = ratios.iter().copied().fold(f64::MIN, f64::max);
            if worst > 1.0 && already.is_none_or(|(w, _)| worst > w) {
                let name = ratios
                    .iter()
                    .position(|r| *r > 1.0)
                    .map_or(CheckName::SegmentThermal, |i| CheckName::ELECTRICAL[i]);
                already = Some((worst, name));
            }
        }

        // Screening: estimated headroom per step, and estimated figures at demand.
        let mut estimates: Vec<(f64, usize)> = Vec::with_capacity(steps);
        let mut loading_at_demand: Vec<(f64, usize)> = Vec::with_capacity(steps);
        let mut voltage_at_demand: Vec<(f64, usize)> = Vec::with_capacity(steps);
        let mut substation_at_demand: Vec<(f64, usize)> = Vec::with_capacity(steps);
        for (k, &a) in shape.iter().enumerate() {
            let solution = &base.solutions[k];
            let observed = &base.observed[k];
            if a <= 0.0 || !solution.converged {
                continue;
            }
            let v_candidate = solution.v_kv[local as usize];
            // Current drawn per kW added at the candidate, A.
            let per_kw = Complex64::new(a, -a * load.tan_phi) / (SQRT_3 * v_candidate.conj());
            let mut estimate = f64::INFINITY;
            let mut loading = observed.max_loading_pct();
            for &i in &path {
                let limit = e.rated_a[i] * thermal;
                if limit.is_finite() {
                    estimate = estimate.min(magnitude_root(solution.i_a[i], per_kw, limit));
                    let after =
                        (solution.i_a[i] + demand_kw * per_kw).norm() / e.rated_a[i] * 100.0;
                    loading = loading.max(after);
                }
            }
            if let (Some(limit), Some(rated)) = (head_limit_a, e.head_rated_a) {
                estimate = estimate.min(magnitude_root(solution.i_a[0], per_kw, limit));
                loading =
                    loading.max((solution.i_a[0] + demand_kw * per_kw).norm() / rated * 100.0);
            }
            let mut v_min = f64::INFINITY;
            for (j, shared) in shared_z.iter().enumerate() {
                let v = solution.v_kv[j];
                let magnitude = v.norm();
                let drop_per_kw = SQRT_3 * shared * per_kw / 1000.0;
                let slope = -(drop_per_kw * v.conj()).re / magnitude;
                let floor = limits.v_min_pu * e.nominal_kv[j];
                if slope < 0.0 {
                    estimate = estimate.min(((magnitude - floor) / -slope).max(0.0));
                }
                v_min = v_min.min((magnitude + demand_kw * slope) / e.nominal_kv[j]);
            }
            let mut substation = observed.substation_pct;
            if substation_limit_kva > 0.0 {
                let group = base.group.map_or(Complex64::new(0.0, 0.0), |g| {
                    self.group_kva[g][base.window_step[k]]
                });
                let per_kw_kva = Complex64::new(a, a * load.tan_phi);
                estimate = estimate.min(magnitude_root(group, per_kw_kva, substation_limit_kva));
                substation = (group + demand_kw * per_kw_kva).norm() / group_rated * 100.0;
            }
            estimates.push((estimate, k));
            loading_at_demand.push((-loading, k));
            voltage_at_demand.push((v_min, k));
            substation_at_demand.push((-substation, k));
        }

        // Figures at the application's demand: exact flows at the worst estimated steps.
        let mut chosen: Vec<usize> = Vec::new();
        for list in [
            &mut loading_at_demand,
            &mut voltage_at_demand,
            &mut substation_at_demand,
        ] {
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
            chosen.extend(list.iter().take(3).map(|(_, k)| *k));
        }
        chosen.sort_unstable();
        chosen.dedup();
        let mut after = Figures {
            max_loading_pct: before.max_loading_pct,
            min_voltage_pu: before.min_voltage_pu,
            substation_transformer_loading_pct: before.substation_transformer_loading_pct,
        };
        let mut worst = WorstChecks {
            segment: (0.0, 0),
            head_pct: 0.0,
            v_min: (f64::INFINITY, 0),
            v_max: (f64::NEG_INFINITY, 0),
            substation_pct: 0.0,
        };
        for o in &base.observed {
            absorb(&mut worst, o);
        }
        for &k in &chosen {
            let o = self.exact(base, k, local, demand_kw * shape[k], load, &mut scratch);
            absorb(&mut worst, &o);
        }
        after.max_loading_pct = worst.segment.0.max(worst.head_pct);
        after.min_voltage_pu = if worst.v_min.0.is_finite() {
            worst.v_min.0
        } else {
            1.0
        };
        after.substation_transformer_loading_pct = worst.substation_pct;

        if let Some((_, binding)) = already {
            return PointEvaluation {
                headroom_kw: 0.0,
                binding,
                already_broken: true,
                before,
                after,
                worst,
            };
        }

        // Exact headroom at the steps that can bind.
        estimates.sort_by(|a, b| a.0.total_cmp(&b.0));
        let smallest = estimates.first().map_or(f64::INFINITY, |e| e.0);
        let mut headroom = f64::INFINITY;
        let mut binding_step = None;
        for &(estimate, k) in estimates.iter().take(REFINED_STEPS) {
            if estimate > smallest * 1.1 + 5.0 {
                break;
            }
            let a = shape[k];
            let g = |x: f64, scratch: &mut Scratch| {
                self.exact(base, k, local, x * a, load, scratch)
                    .worst_ratio(limits)
                    - 1.0
            };
            let found = largest_feasible(estimate, |x| g(x, &mut scratch));
            if found < headroom {
                headroom = found;
                binding_step = Some(k);
            }
        }
        let headroom = headroom.clamp(0.0, UNBOUNDED_KW).floor();
        let binding = match binding_step {
            Some(k) => {
                let o = self.exact(
                    base,
                    k,
                    local,
                    (headroom + 1.0) * shape[k],
                    load,
                    &mut scratch,
                );
                let ratios = o.ratios(limits);
                first_broken(&ratios).unwrap_or_else(|| {
                    let i = (0..4)
                        .max_by(|a, b| ratios[*a].total_cmp(&ratios[*b]))
                        .unwrap_or(0);
                    CheckName::ELECTRICAL[i]
                })
            }
            None => CheckName::SegmentThermal,
        };
        PointEvaluation {
            headroom_kw: headroom,
            binding,
            already_broken: false,
            before,
            after,
            worst,
        }
    }
}

fn absorb(worst: &mut WorstChecks, o: &Observed) {
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

/// The largest `x` in [0, UNBOUNDED_KW] with `g(x) <= 0`, to 0.5 kW, for a `g` that
/// grows with `x` and is not positive at 0; `guess` is an estimate of the root.
fn largest_feasible(guess: f64, mut g: impl FnMut(f64) -> f64) -> f64 {
    let (mut lo, mut g_lo) = (0.0, g(0.0));
    if g_lo > 0.0 {
        return 0.0;
    }
    let mut hi = if guess.is_finite() {
        (guess * 1.05).max(5.0)
    } else {
        1_000.0
    };
    let mut g_hi = g(hi);
    while g_hi <= 0.0 {
        if hi >= UNBOUNDED_KW {
            return UNBOUNDED_KW;
        }
        lo = hi;
        g_lo = g_hi;
        hi = (hi * 2.0).min(UNBOUNDED_KW);
        g_hi = g(hi);
    }
    // Illinois regula falsi, falling back to bisection where it stalls.
    let mut side = 0i8;
    for _ in 0..60 {
        if hi - lo <= 0.5 {
            break;
        }
        let mut x = if g_hi.is_finite() && g_hi != g_lo {
            lo + (hi - lo) * (-g_lo) / (g_hi - g_lo)
        } else {
            0.5 * (lo + hi)
        };
        let margin = 0.01 * (hi - lo);
        x = x.clamp(lo + margin, hi - margin);
        let gx = g(x);
        if gx <= 0.0 {
            lo = x;
            g_lo = gx;
            if side == -1 {
                g_hi *= 0.5;
            }
            side = -1;
        } else {
            hi = x;
            g_hi = gx;
            if side == 1 {
                g_lo *= 0.5;
            }
            side = 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitude_root_solves_the_circle() {
        // |3 + x * 1| = 5 at x = 2.
        let x = magnitude_root(Complex64::new(3.0, 0.0), Complex64::new(1.0, 0.0), 5.0);
        assert!((x - 2.0).abs() < 1e-12);
        // |3j + x| = 5 at x = 4.
        let x = magnitude_root(Complex64::new(0.0, 3.0), Complex64::new(1.0, 0.0), 5.0);
        assert!((x - 4.0).abs() < 1e-12);
        assert_eq!(
            magnitude_root(Complex64::new(6.0, 0.0), Complex64::new(1.0, 0.0), 5.0),
            0.0
        );
    }

    #[test]
    fn largest_feasible_finds_the_root_to_half_a_kilowatt() {
        for root in [0.7, 12.0, 333.3, 5_431.2, 80_000.0] {
            let found = largest_feasible(root * 0.8, |x| (x - root) / root);
            assert!(found <= root && root - found <= 0.5, "{root}: {found}");
        }
        assert_eq!(largest_feasible(10.0, |x| x - 2.0e6), UNBOUNDED_KW);
        assert_eq!(largest_feasible(10.0, |x| x + 1.0), 0.0);
    }
}
