//! Headroom for export at one connection point (`shared/spec/planning.md` §1):
//! the largest export, at the generator's profile and power factor, keeping
//! every electrical check at every step where it exports.
//!
//! The physics is the load's with the sign turned: the generator's current
//! flows back along its path to the busbar, raising every voltage that path
//! feeds and, once it outweighs the load, reversing the flow through segments,
//! the head and the substation transformers. Six checks read a flow: segment
//! and head current (either direction), the highest and the lowest voltage,
//! the substation transformers' forward loading and, while power flows back
//! through them, their reverse loading against `reverse_pct`. A check holds at
//! a step when it is within its limit or no worse than without the generator,
//! so an evening undervoltage or a forward overload the generator relieves is
//! not held against it.
//!
//! As for loads: each exporting step's base flow gives, in closed form, where
//! each check's value leaves its bound along the line the generator's current
//! draws (a circle per current, voltage and transformer limit); only the steps
//! whose estimate comes within a margin of the least are solved exactly, and
//! a step only when the headroom found so far breaks a check there.

use num_complex::Complex64;

use super::{AddedLoad, PointEvaluation, Scratch, UNBOUNDED_KW, with_scratch};
use crate::base::FeederBase;
use crate::checks::{CheckName, Figures, Observed, TIE_TOLERANCE, WorstChecks, absorb};
use crate::config::Limits;
use crate::engine::Engine;
use crate::powerflow::SQRT_3;

/// A generator to add at a candidate.
#[derive(Clone, Debug)]
pub struct AddedGeneration<'a> {
    /// Reactive power absorbed per kW exported (0 at unity power factor).
    pub absorbed_kvar_per_kw: f64,
    /// 96 quarter-hour factors of the export, or flat.
    pub profile: Option<&'a [f64]>,
}

/// What the engine found for a generator at one connection point.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportEvaluation {
    /// Headroom, binding check and figures, as for a load; the figures are the
    /// extremes over the steps where the generator exports.
    pub point: PointEvaluation,
    /// Loading of the substation transformers while power flows back through
    /// them, % of rating: the worst without and with the export (0 where power
    /// never flows back).
    pub reverse_pct: (f64, f64),
    /// Per check in [`EXPORT_CHECKS`] order, the worst value over limit
    /// without and with the export.
    pub ratios: ([f64; 6], [f64; 6]),
}

/// The checks a generator is held to, in the order of [`export_ratios`]: the
/// spec's tie order (the voltage check twice, for rise and for drop).
pub const EXPORT_CHECKS: [CheckName; 6] = [
    CheckName::SegmentThermal,
    CheckName::HeadThermal,
    CheckName::Voltage,
    CheckName::Voltage,
    CheckName::SubstationTransformer,
    CheckName::ReversePower,
];

/// Each check's value over its limit at one flow (above 1 is broken).
pub(crate) fn export_ratios(o: &Observed, limits: &Limits) -> [f64; 6] {
    if !o.converged {
        return [f64::INFINITY; 6];
    }
    let (forward, reverse) = if o.substation_export {
        (0.0, o.substation_pct / limits.reverse_pct)
    } else {
        (o.substation_pct / limits.substation_transformer_pct, 0.0)
    };
    [
        o.segment_pct / limits.thermal_pct,
        o.head_pct / limits.thermal_pct,
        o.v_max_pu / limits.v_max_pu,
        limits.v_min_pu / o.v_min_pu,
        forward,
        reverse,
    ]
}

/// Steps whose estimate lies within this share of the least may bind: the
/// estimates leave out the loads' answer to the higher voltage and the change
/// in losses, a per cent or two of the export.
const STEP_SPREAD: f64 = 0.03;

/// Steps solved exactly at most.
const REFINED_STEPS: usize = 12;

/// Steps per figure whose estimated extreme with the export is solved exactly.
const FIGURE_STEPS: usize = 3;

/// The first `x >= 0` at which `|start + x * per_unit|` leaves a circle of
/// radius `limit` it starts inside (on its edge: leaving at once unless it
/// moves inwards); infinite when it never does.
pub(crate) fn exit_root(start: Complex64, per_unit: Complex64, limit: f64) -> f64 {
    let a = per_unit.norm_sqr();
    if a <= 0.0 || !limit.is_finite() {
        return f64::INFINITY;
    }
    let b = 2.0 * (start * per_unit.conj()).re;
    let c = (start.norm_sqr() - limit * limit).min(0.0);
    if c == 0.0 && b >= 0.0 {
        return 0.0;
    }
    (-b + (b * b - 4.0 * a * c).max(0.0).sqrt()) / (2.0 * a)
}

/// The first `x >= 0` at which `|start + x * per_unit|` falls below `limit`,
/// starting at or above it; infinite when it never does.
fn entry_root(start: Complex64, per_unit: Complex64, limit: f64) -> f64 {
    let a = per_unit.norm_sqr();
    if a <= 0.0 {
        return f64::INFINITY;
    }
    let b = 2.0 * (start * per_unit.conj()).re;
    let c = (start.norm_sqr() - limit * limit).max(0.0);
    let discriminant = b * b - 4.0 * a * c;
    if b >= 0.0 || discriminant < 0.0 {
        return f64::INFINITY;
    }
    (-b - discriminant.sqrt()) / (2.0 * a)
}

/// How much export a transformer (or group) takes at one step before its
/// forward or reverse limit: `s` is what flows through it towards the
/// low-voltage side without the generator, kVA, and `per_kw` what a kW of
/// export adds; each limit (kVA) no lower than `s` where `s` already flows that
/// way past it (no worse than without). Returns the export and whether the
/// reverse limit is the one met.
pub(crate) fn transformer_root(
    s: Complex64,
    per_kw: Complex64,
    forward_kva: f64,
    reverse_kva: f64,
) -> (f64, bool) {
    let forward = if s.re >= 0.0 {
        forward_kva.max(s.norm())
    } else {
        forward_kva
    };
    let reverse = if s.re < 0.0 {
        reverse_kva.max(s.norm())
    } else {
        reverse_kva
    };
    if s.re < 0.0 {
        return (exit_root(s, per_kw, reverse), true);
    }
    // Forward until the active power turns, then in reverse.
    let turn = if per_kw.re < 0.0 {
        s.re / -per_kw.re
    } else {
        f64::INFINITY
    };
    let over_forward = exit_root(s, per_kw, forward);
    if over_forward < turn {
        return (over_forward, false);
    }
    if !turn.is_finite() {
        return (f64::INFINITY, false);
    }
    let at_turn = s + per_kw * turn;
    if at_turn.norm() > reverse {
        (turn, true)
    } else {
        (turn + exit_root(at_turn, per_kw, reverse), true)
    }
}

/// One exporting step: its index, the export's factor there and what each
/// check may reach (its limit, or its value without the generator where that
/// is worse).
#[derive(Clone, Copy)]
struct ExportStep {
    k: usize,
    factor: f64,
    allowed: [f64; 6],
}

impl Engine {
    /// The headroom for export at the node at `local` of `base` (a
    /// generation base: see [`Engine::generation_base`]), and the figures at
    /// an export of `export_kw`.
    pub fn evaluate_export(
        &self,
        base: &FeederBase,
        local: u32,
        export_kw: f64,
        generation: &AddedGeneration<'_>,
    ) -> ExportEvaluation {
        with_scratch(|scratch| self.evaluate_export_in(base, local, export_kw, generation, scratch))
    }

    fn evaluate_export_in(
        &self,
        base: &FeederBase,
        local: u32,
        export_kw: f64,
        generation: &AddedGeneration<'_>,
        scratch: &mut Scratch,
    ) -> ExportEvaluation {
        let limits = &self.config.limits;
        let steps: Vec<ExportStep> = base
            .loads
            .steps
            .iter()
            .enumerate()
            .filter_map(|(k, ts)| {
                let factor = generation
                    .profile
                    .map_or(1.0, |p| p[self.quarter_of_day(*ts)]);
                (factor > 0.0).then(|| ExportStep {
                    k,
                    factor,
                    allowed: export_ratios(&base.observed[k], limits).map(|r| r.max(1.0)),
                })
            })
            .collect();
        // As a load of minus the export, absorbing reactive power.
        let as_load = AddedLoad {
            tan_phi: -generation.absorbed_kvar_per_kw,
            profile: None,
        };
        let per_kw = Complex64::new(-1.0, -generation.absorbed_kvar_per_kw);
        let estimates = self.export_estimates(base, local, per_kw, &steps, export_kw);

        let mut order: Vec<(f64, usize)> = estimates
            .iter()
            .enumerate()
            .filter(|(_, e)| e.headroom.is_finite())
            .map(|(i, e)| (e.headroom, i))
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let holds = |step: &ExportStep, kw: f64, scratch: &mut Scratch| -> bool {
            if kw <= 0.0 {
                return true;
            }
            let o = self.exact(base, step.k, local, -kw * step.factor, &as_load, scratch);
            let r = export_ratios(&o, limits);
            (0..6).all(|c| r[c] <= step.allowed[c])
        };
        let mut headroom = f64::INFINITY;
        let mut binding_step: Option<usize> = None;
        for &(estimate, i) in order.iter().take(REFINED_STEPS) {
            if estimate > headroom * (1.0 + STEP_SPREAD) + 1.0 {
                break;
            }
            let step = &steps[i];
            if headroom.is_finite() && holds(step, headroom, scratch) {
                continue;
            }
            let found =
                self.largest_export(step, estimate.min(headroom), headroom, &holds, scratch);
            if found < headroom {
                headroom = found;
                binding_step = Some(i);
            }
        }
        let headroom = headroom.clamp(0.0, UNBOUNDED_KW).floor();
        let binding = match binding_step {
            Some(i) => {
                let step = &steps[i];
                let o = self.exact(
                    base,
                    step.k,
                    local,
                    -(headroom + 1.0) * step.factor,
                    &as_load,
                    scratch,
                );
                let r = export_ratios(&o, limits);
                let over: [f64; 6] = std::array::from_fn(|c| r[c] / step.allowed[c]);
                let worst = over.iter().copied().fold(f64::MIN, f64::max);
                let at = over
                    .iter()
                    .position(|v| *v >= 1.0 - TIE_TOLERANCE)
                    .or_else(|| over.iter().position(|v| *v >= worst))
                    .unwrap_or(0);
                EXPORT_CHECKS[at]
            }
            None => CheckName::SegmentThermal,
        };

        // Figures: without, the extremes of the base over the exporting steps;
        // with, exact flows at the steps the estimates put at each extreme.
        let mut before_worst = WorstChecks::NONE;
        let mut before_ratios = [0.0f64; 6];
        let mut before_reverse = 0.0f64;
        for step in &steps {
            let o = &base.observed[step.k];
            absorb(&mut before_worst, o);
            let r = export_ratios(o, limits);
            for c in 0..6 {
                before_ratios[c] = before_ratios[c].max(r[c]);
            }
            if o.substation_export {
                before_reverse = before_reverse.max(o.substation_pct);
            }
        }
        let mut figure_steps: Vec<usize> = Vec::new();
        for figure in 0..4 {
            let mut ranked: Vec<usize> = (0..steps.len()).collect();
            ranked.sort_by(|a, b| {
                estimates[*b].figures[figure].total_cmp(&estimates[*a].figures[figure])
            });
            figure_steps.extend(ranked.into_iter().take(FIGURE_STEPS));
        }
        figure_steps.sort_unstable();
        figure_steps.dedup();
        let mut after_worst = WorstChecks::NONE;
        let mut after_ratios = [0.0f64; 6];
        let mut after_reverse = 0.0f64;
        for i in figure_steps {
            let step = &steps[i];
            let o = self.exact(
                base,
                step.k,
                local,
                -export_kw * step.factor,
                &as_load,
                scratch,
            );
            absorb(&mut after_worst, &o);
            let r = export_ratios(&o, limits);
            for c in 0..6 {
                after_ratios[c] = after_ratios[c].max(r[c]);
            }
            if o.substation_export {
                after_reverse = after_reverse.max(o.substation_pct);
            }
        }
        if steps.is_empty() {
            before_worst = base.summary.worst;
            after_worst = base.summary.worst;
        }
        let figures = |w: &WorstChecks| Figures {
            max_loading_pct: w.segment.0.max(w.head_pct),
            min_voltage_pu: if w.v_min.0.is_finite() {
                w.v_min.0
            } else {
                1.0
            },
            substation_transformer_loading_pct: w.substation_pct,
            max_voltage_pu: if w.v_max.0.is_finite() {
                w.v_max.0
            } else {
                1.0
            },
        };
        ExportEvaluation {
            point: PointEvaluation {
                headroom_kw: headroom,
                binding,
                already_broken: false,
                before: figures(&before_worst),
                after: figures(&after_worst),
                worst: after_worst,
            },
            reverse_pct: (before_reverse, after_reverse),
            ratios: (before_ratios, after_ratios),
        }
    }

    /// The largest whole kW the step takes, searched from `guess`; `upper`
    /// where the step takes at least that (what another step allows).
    fn largest_export(
        &self,
        step: &ExportStep,
        guess: f64,
        upper: f64,
        holds: &dyn Fn(&ExportStep, f64, &mut Scratch) -> bool,
        scratch: &mut Scratch,
    ) -> f64 {
        let limit = upper.min(UNBOUNDED_KW);
        let first = guess.floor().clamp(0.0, limit);
        let (mut lo, mut hi);
        if holds(step, first, scratch) {
            lo = first;
            let mut stride = (first * 0.005).max(1.0);
            loop {
                let next = (lo + stride).floor().min(limit);
                if next <= lo {
                    return lo;
                }
                if !holds(step, next, scratch) {
                    hi = next;
                    break;
                }
                lo = next;
                if lo >= limit {
                    return limit;
                }
                stride *= 2.0;
            }
        } else {
            hi = first;
            let mut stride = (first * 0.005).max(1.0);
            loop {
                let next = (hi - stride).floor().max(0.0);
                if holds(step, next, scratch) {
                    lo = next;
                    break;
                }
                hi = next;
                stride *= 2.0;
            }
        }
        while hi - lo > 1.0 {
            let mid = ((lo + hi) / 2.0).floor();
            if holds(step, mid, scratch) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Per exporting step, the estimated headroom (the least export at which a
    /// check leaves what it may reach, on the base flow's lines) and the
    /// estimated figures at `export_kw`: highest voltage, highest loading,
    /// lowest voltage (negated, so that larger is worse) and substation loading.
    fn export_estimates(
        &self,
        base: &FeederBase,
        local: u32,
        per_kw: Complex64,
        steps: &[ExportStep],
        export_kw: f64,
    ) -> Vec<StepEstimate> {
        let limits = &self.config.limits;
        let e = &base.electrical;
        let n = e.len();
        // Per node, the impedance (as kV per A) its voltage shares with the
        // candidate's path: from the busbar to where its own path leaves it.
        let mut on_path = vec![false; n];
        let mut at = local as usize;
        while at != 0 && at < n {
            on_path[at] = true;
            at = e.parent[at] as usize;
        }
        let mut shared = vec![Complex64::new(0.0, 0.0); n];
        let mut from_busbar = vec![Complex64::new(0.0, 0.0); n];
        for j in 1..n {
            let p = e.parent[j] as usize;
            from_busbar[j] = from_busbar[p] + e.drop_kv_per_a[j];
            shared[j] = if on_path[j] {
                from_busbar[j]
            } else {
                shared[p]
            };
        }
        let path: Vec<usize> = (1..n).filter(|&j| on_path[j]).collect();
        let thermal = limits.thermal_pct / 100.0;
        let rated_kva = self.group_rated_kva(base.group);
        steps
            .iter()
            .map(|step| {
                let solution = &base.solutions[step.k];
                let v_local = solution.v_kv(local as usize);
                // The generator's current per kW of export, A (a load's
                // direction: negative flows back).
                let d = per_kw * step.factor / (SQRT_3 * v_local.conj());
                let mut least = f64::INFINITY;
                let mut loading_after = base.max_loading[step.k];
                for &j in &path {
                    let rated = e.rated_a[j] * thermal;
                    if !(rated.is_finite() && rated > 0.0) {
                        continue;
                    }
                    let i = solution.i_a(j);
                    least = least.min(exit_root(i, d, rated * step.allowed[0]));
                    loading_after = loading_after.max((i + d * export_kw).norm() / e.rated_a[j]);
                }
                if let Some(rated) = e.head_rated_a {
                    let i = solution.i_a(0);
                    least = least.min(exit_root(i, d, rated * thermal * step.allowed[1]));
                    loading_after = loading_after.max((i + d * export_kw).norm() / rated);
                }
                let (mut v_max_after, mut v_min_after) = (f64::NEG_INFINITY, f64::INFINITY);
                for (j, (shared, nominal)) in shared.iter().zip(&e.nominal_kv).enumerate().skip(1) {
                    let v = solution.v_kv(j);
                    let dv = -shared * d;
                    let nominal = *nominal;
                    least = least.min(exit_root(
                        v,
                        dv,
                        limits.v_max_pu * nominal * step.allowed[2],
                    ));
                    least = least.min(entry_root(
                        v,
                        dv,
                        limits.v_min_pu * nominal / step.allowed[3],
                    ));
                    let after = (v + dv * export_kw).norm() / nominal;
                    v_max_after = v_max_after.max(after);
                    v_min_after = v_min_after.min(after);
                }
                let mut substation_after = 0.0;
                if rated_kva > 0.0 {
                    let s = base.group_kva[step.k];
                    let ds = Complex64::new(per_kw.re, -per_kw.im) * step.factor;
                    let forward = rated_kva * limits.substation_transformer_pct / 100.0;
                    let reverse = rated_kva * limits.reverse_pct / 100.0;
                    let (root, _) = transformer_root(s, ds, forward, reverse);
                    least = least.min(root);
                    substation_after = (s + ds * export_kw).norm() / rated_kva;
                }
                StepEstimate {
                    headroom: least,
                    figures: [v_max_after, loading_after, -v_min_after, substation_after],
                }
            })
            .collect()
    }
}

/// One exporting step's estimates.
struct StepEstimate {
    /// Estimated headroom, kW.
    headroom: f64,
    /// Estimated figures at the export asked for, each larger when worse.
    figures: [f64; 4],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_circle_is_left_where_the_line_crosses_it() {
        // From the centre outwards along the real axis: out at the radius.
        let x = exit_root(Complex64::new(0.0, 0.0), Complex64::new(2.0, 0.0), 10.0);
        assert!((x - 5.0).abs() < 1e-12, "{x}");
        // Starting at 8 and moving back through the centre: out at -10.
        let x = exit_root(Complex64::new(8.0, 0.0), Complex64::new(-1.0, 0.0), 10.0);
        assert!((x - 18.0).abs() < 1e-12, "{x}");
        // On the edge moving out leaves at once; moving in, at the far side.
        assert_eq!(
            exit_root(Complex64::new(10.0, 0.0), Complex64::new(1.0, 0.0), 10.0),
            0.0
        );
        let x = exit_root(Complex64::new(10.0, 0.0), Complex64::new(-1.0, 0.0), 10.0);
        assert!((x - 20.0).abs() < 1e-12, "{x}");
    }

    #[test]
    fn a_circle_is_entered_only_by_a_line_heading_into_it() {
        let x = entry_root(Complex64::new(12.0, 0.0), Complex64::new(-1.0, 0.0), 10.0);
        assert!((x - 2.0).abs() < 1e-12, "{x}");
        assert!(
            entry_root(Complex64::new(12.0, 0.0), Complex64::new(1.0, 0.0), 10.0).is_infinite()
        );
        // Passing beside the circle never enters it.
        assert!(
            entry_root(Complex64::new(12.0, 11.0), Complex64::new(-1.0, 0.0), 10.0).is_infinite()
        );
    }
}
