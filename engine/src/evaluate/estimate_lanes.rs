//! Four steps' headroom estimates at once, bit for bit those of
//! [`Estimator::estimate`].
//!
//! An estimate walks the candidate's path once per step, and the walk is
//! chains of square roots and divisions, each waiting on the last: a fifth of
//! a city ranking's time went to them. Four steps walk the same path with the
//! same impedances, so their figures go in four lanes of one register: the
//! same operations in the same order, lane by lane, so that every lane gives
//! the figure the scalar walk gives. A choice per lane is made on the bits
//! ([`Mask`], [`pick`]): written as `if`, a choice after a root became a branch
//! per lane, and the root and all before it ran a lane at a time.
//!
//! An estimate leaves out a voltage or substation limit whose bound lies past
//! what the cut wants at the time it is asked for, which depends on the
//! estimates taken before. So the lanes keep the path's part (the branches and
//! the head) apart from the voltage's and the substation's, and the walk that
//! takes them ([`EstimatesAhead`]) puts them together as the scalar estimate
//! would at its turn, or asks the scalar estimate where a part it wants was not
//! worked out.

use num_complex::Complex64;

use super::{Estimator, OWN_GROWTH_REACH, StepEstimate};
use crate::powerflow::{LANES, Lanes, SQRT_3};

/// Per lane, all ones where a condition holds, else zero: a choice the
/// compiler keeps in one register, where `[bool; LANES]` was unpacked a lane
/// at a time.
type Mask = [u64; LANES];

/// A [`Mask`] of `$e` (a condition in lane `$l`), as [`lanes!`] makes an
/// array of lanes.
macro_rules! mask {
    (|$l:ident| $e:expr) => {{
        let mut out: Mask = [0; LANES];
        for $l in 0..LANES {
            out[$l] = u64::from($e).wrapping_neg();
        }
        out
    }};
}

/// Whether the condition of `mask` holds in any lane.
#[inline(always)]
fn any(mask: Mask) -> bool {
    mask.iter().fold(0, |all, lane| all | lane) != 0
}

/// `if keep { a } else { b }` for one lane of a [`Mask`], on the bits:
/// the compiler turns a choice between two figures into a branch where one
/// is costly (a root, a quotient), and then works out that one a lane at a
/// time.
#[inline(always)]
fn pick(keep: u64, a: f64, b: f64) -> f64 {
    f64::from_bits((a.to_bits() & keep) | (b.to_bits() & !keep))
}

/// Four lanes' complex numbers, their parts in rows (see `base::lane_parts`).
#[derive(Clone, Copy, Debug)]
struct Phasors {
    re: Lanes,
    im: Lanes,
}

impl Phasors {
    const ZERO: Self = Self {
        re: [0.0; LANES],
        im: [0.0; LANES],
    };

    #[inline(always)]
    fn gather(of: impl Fn(usize) -> Complex64) -> Self {
        let z: [Complex64; LANES] = std::array::from_fn(of);
        Self {
            re: lanes!(|l| z[l].re),
            im: lanes!(|l| z[l].im),
        }
    }

    #[inline(always)]
    fn lane(self, l: usize) -> Complex64 {
        Complex64::new(self.re[l], self.im[l])
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        Self {
            re: lanes!(|l| self.re[l] + other.re[l]),
            im: lanes!(|l| self.im[l] + other.im[l]),
        }
    }

    #[inline(always)]
    fn sub(self, other: Self) -> Self {
        Self {
            re: lanes!(|l| self.re[l] - other.re[l]),
            im: lanes!(|l| self.im[l] - other.im[l]),
        }
    }

    /// The product as `Complex64`'s (which is commutative to the bit).
    #[inline(always)]
    fn mul(self, other: Self) -> Self {
        Self {
            re: lanes!(|l| self.re[l] * other.re[l] - self.im[l] * other.im[l]),
            im: lanes!(|l| self.re[l] * other.im[l] + self.im[l] * other.re[l]),
        }
    }

    /// `z * self`, `z` the same in every lane.
    #[inline(always)]
    fn times(self, z: Complex64) -> Self {
        Self {
            re: lanes!(|l| z.re * self.re[l] - z.im * self.im[l]),
            im: lanes!(|l| z.re * self.im[l] + z.im * self.re[l]),
        }
    }

    /// `x * self`, a real number per lane.
    #[inline(always)]
    fn scale(self, x: Lanes) -> Self {
        Self {
            re: lanes!(|l| x[l] * self.re[l]),
            im: lanes!(|l| x[l] * self.im[l]),
        }
    }

    /// `z * x`: `z` the same in every lane, a real number `x` per lane.
    #[inline(always)]
    fn scaled(z: Complex64, x: Lanes) -> Self {
        Self {
            re: lanes!(|l| z.re * x[l]),
            im: lanes!(|l| z.im * x[l]),
        }
    }

    #[inline(always)]
    fn conj(self) -> Self {
        Self {
            re: self.re,
            im: lanes!(|l| -self.im[l]),
        }
    }

    #[inline(always)]
    fn norm_sqr(self) -> Lanes {
        lanes!(|l| self.re[l] * self.re[l] + self.im[l] * self.im[l])
    }

    /// Each lane where `keep` holds, else `other`'s.
    #[inline(always)]
    fn or(self, keep: Mask, other: Self) -> Self {
        Self {
            re: lanes!(|l| pick(keep[l], self.re[l], other.re[l])),
            im: lanes!(|l| pick(keep[l], self.im[l], other.im[l])),
        }
    }
}

/// [`super::magnitude_root`] in each lane, `limit` the same in all.
// Each figure a row of its own, every lane worked out and the lanes picked
// after: a row computed inside another's lane loop kept the loop scalar.
#[inline(always)]
fn magnitude_roots(start: Phasors, per_unit: Phasors, limit: f64) -> Lanes {
    let start_2 = start.norm_sqr();
    let c = lanes!(|l| start_2[l] - limit * limit);
    let a = per_unit.norm_sqr();
    let along = start.mul(per_unit.conj()).re;
    let b = lanes!(|l| 2.0 * along[l]);
    let discriminant = lanes!(|l| b[l] * b[l] - 4.0 * a[l] * c[l]);
    let root = lanes!(|l| (-b[l] + discriminant[l].sqrt()) / (2.0 * a[l]));
    let none = mask!(|l| a[l] <= 0.0);
    let unless_none = lanes!(|l| pick(none[l], f64::INFINITY, root[l]));
    let within = mask!(|l| c[l] >= 0.0);
    lanes!(|l| pick(within[l], 0.0, unless_none[l]))
}

/// `a.min(b)` in each lane, where no `a` is NaN (`b` may be: then `a`).
#[inline(always)]
fn least(a: Lanes, b: Lanes) -> Lanes {
    lanes!(|l| if b[l] < a[l] { b[l] } else { a[l] })
}

/// [`super::quadratic_root`] in each lane, each lane stopping where the scalar
/// Newton's steps stop.
#[inline(always)]
fn quadratic_roots(start: Phasors, d: Phasors, e: Phasors, limit: f64, from: Lanes) -> Lanes {
    let mut x = from;
    let mut going = mask!(|l| x[l].is_finite() && x[l] > 0.0);
    let started = going;
    for _ in 0..2 {
        if !any(going) {
            break;
        }
        let t = start.add(d.scale(x)).add(e.scale(lanes!(|l| x[l] * x[l])));
        let t_2 = t.norm_sqr();
        let size = lanes!(|l| t_2[l].sqrt());
        let slope_by_size = t.conj().mul(d.add(e.scale(lanes!(|l| 2.0 * x[l])))).re;
        let step = lanes!(|l| (size[l] - limit) * size[l] / slope_by_size[l]);
        let can_move = mask!(|l| slope_by_size[l] > 0.0 && step[l].is_finite());
        let moves: Mask = std::array::from_fn(|l| going[l] & can_move[l]);
        x = lanes!(|l| pick(moves[l], x[l] - step[l], x[l]));
        let far = mask!(|l| step[l].abs() >= 1e-3);
        going = std::array::from_fn(|l| moves[l] & far[l]);
    }
    lanes!(|l| pick(started[l], x[l].max(0.0), x[l]))
}

/// Four lanes' [`StepEstimate`]s.
#[derive(Clone, Copy)]
struct Estimates {
    kw: Lanes,
    linear_kw: Lanes,
}

impl Estimates {
    const NONE: Self = Self {
        kw: [f64::INFINITY; LANES],
        linear_kw: [f64::INFINITY; LANES],
    };

    fn lane(&self, l: usize) -> StepEstimate {
        StepEstimate {
            kw: self.kw[l],
            linear_kw: self.linear_kw[l],
        }
    }

    /// [`StepEstimate::offer_current`] in each lane: a root is worked out in
    /// every lane where one lane wants it, and taken only where its lane
    /// does.
    #[inline(always)]
    fn offer_current(
        &mut self,
        start: Phasors,
        added: Phasors,
        own: Phasors,
        limit: f64,
        d: Phasors,
    ) {
        let with_answer = magnitude_roots(start, added, limit);
        let grows = mask!(|l| with_answer[l] < self.kw[l] * OWN_GROWTH_REACH);
        if any(grows) {
            let root = quadratic_roots(start, added, own, limit, with_answer);
            let least = least(self.kw, root);
            self.kw = lanes!(|l| pick(grows[l], least[l], self.kw[l]));
        }
        let lined = mask!(|l| with_answer[l] < self.linear_kw[l]);
        if any(lined) {
            let least = least(self.linear_kw, magnitude_roots(start, d, limit));
            self.linear_kw = lanes!(|l| pick(lined[l], least[l], self.linear_kw[l]));
        }
    }
}

/// One step's estimate in its parts (see the module's doc): a part not worked
/// out is `None`.
#[derive(Clone, Copy, Debug)]
pub(super) struct EstimateParts {
    path: StepEstimate,
    voltage: Option<StepEstimate>,
    substation: Option<StepEstimate>,
}

impl EstimateParts {
    /// The estimate with the parts wanted, as [`Estimator::estimate`] gives
    /// it; `None` where a part wanted was not worked out.
    fn with(&self, voltage: bool, substation: bool) -> Option<StepEstimate> {
        let mut estimate = self.path;
        for (wanted, part) in [(voltage, self.voltage), (substation, self.substation)] {
            if wanted {
                let part = part?;
                estimate.offer(part.kw, part.linear_kw);
            }
        }
        Some(estimate)
    }
}

impl Estimator<'_> {
    /// The parts of the estimates of steps `ks` (see [`Self::estimate`]):
    /// the voltage's where `voltage`, the substation's where `substation`
    /// (and the substation has a limit), in every lane. `answers` is room
    /// for the loads' answer per run and lane.
    pub(super) fn estimate_parts(
        &self,
        ks: [usize; LANES],
        voltage: bool,
        substation: bool,
        answers: &mut Vec<Complex64>,
    ) -> [EstimateParts; LANES] {
        let estimator = self;
        avx2_or_portable!(
            Estimator::estimate_parts_portable,
            fn(
                estimator: &Estimator<'_>,
                ks: [usize; LANES],
                voltage: bool,
                substation: bool,
                answers: &mut Vec<Complex64>,
            ) -> [EstimateParts; LANES]
        )
    }

    // The walk of `estimate`, lane by lane: see there for why each figure is
    // what it is.
    #[inline(always)]
    fn estimate_parts_portable(
        &self,
        ks: [usize; LANES],
        voltage: bool,
        substation: bool,
        answers: &mut Vec<Complex64>,
    ) -> [EstimateParts; LANES] {
        let (base, limits) = (self.base, self.limits);
        let e = &base.electrical;
        let n = e.len();
        let solutions: [_; LANES] = std::array::from_fn(|l| &base.solutions[ks[l]]);
        let kv_per_a = SQRT_3 / 1000.0;
        let z_from_busbar = &self.path.z_from_busbar;
        // Per lane as the scalar estimate has them: a division of complex
        // numbers apiece, once a step.
        let currents: [_; LANES] = std::array::from_fn(|l| self.current_per_kw(ks[l]));
        let per_kw = Phasors::gather(|l| currents[l].0);
        let own = Phasors::gather(|l| currents[l].1);
        let with_substation = substation && self.substation_limit_kva > 0.0;
        let mut path = Estimates::NONE;
        let mut response = Phasors::ZERO;
        let mut below = Phasors::ZERO;
        let mut drop_at_candidate = Phasors::ZERO;
        let (mut losses_per_kw, mut losses_per_kw_2) = (Phasors::ZERO, Phasors::ZERO);
        answers.clear();
        for run in &self.path.runs {
            let p = run.node as usize;
            let into = Phasors::gather(|l| solutions[l].i_a(p));
            let branching_off = into.sub(below);
            below = into;
            let branches = mask!(|l| branching_off.re[l] != 0.0 || branching_off.im[l] != 0.0);
            if any(branches) {
                let dv = per_kw.times(kv_per_a * z_from_busbar[run.at as usize]);
                let v = Phasors::gather(|l| solutions[l].v_kv(p));
                let v_2 = v.norm_sqr();
                let inverse = lanes!(|l| v_2[l].recip());
                let answered = response.add(branching_off.mul(dv.conj().mul(v).scale(inverse)));
                response = answered.or(branches, response);
            }
            answers.extend((0..LANES).map(|l| response.lane(l)));
            let added = per_kw.add(response);
            drop_at_candidate = drop_at_candidate.add(added.times(run.z_ohm));
            if with_substation {
                let three_phase = 3.0e-3 * run.z_ohm;
                let along = into.mul(added.conj()).re;
                let real = lanes!(|l| 2.0 * along[l]);
                losses_per_kw = losses_per_kw.add(Phasors::scaled(three_phase, real));
                losses_per_kw_2 =
                    losses_per_kw_2.add(Phasors::scaled(three_phase, added.norm_sqr()));
            }
            let rated = e.rated_a[run.weakest as usize] * self.thermal;
            if rated.is_finite() && rated > 0.0 {
                path.offer_current(into, added, own, rated, per_kw);
            }
        }
        if let Some(limit) = self.head_limit_a {
            let head = Phasors::gather(|l| base.head_i_a[ks[l]]);
            path.offer_current(head, per_kw.add(response), own, limit, per_kw);
        }
        let mut voltage_part = Estimates::NONE;
        if voltage {
            let subtree_min: [&[f32]; LANES] =
                std::array::from_fn(|l| &base.subtree_min_pu[ks[l] * n..(ks[l] + 1) * n]);
            let mut drop = drop_at_candidate;
            let nodes = &self.path.nodes;
            for ((i, &p), &run) in nodes.iter().enumerate().zip(&self.path.run_of) {
                let at = run as usize * LANES;
                let answer = Phasors::gather(|l| answers[at + l]);
                let v = Phasors::gather(|l| solutions[l].v_kv(p));
                let z_to_node = z_from_busbar[i];
                let dv = per_kw.times(kv_per_a * z_to_node);
                let v_2 = v.norm_sqr();
                let size = lanes!(|l| v_2[l].sqrt());
                let per_size = lanes!(|l| size[l].recip());
                let nominal = e.nominal_kv[p];
                let lowest_kv = lanes!(|l| f64::from(subtree_min[l][p]) * nominal);
                let room_kv = lanes!(|l| lowest_kv[l] - limits.v_min_pu * nominal);
                let v_conj = v.conj();
                let in_phase = |z: Phasors| {
                    let along = z.mul(v_conj).re;
                    lanes!(|l| along[l] * per_size[l])
                };
                let linear_slope = in_phase(dv);
                let drop_in_phase = in_phase(drop.scale([kv_per_a; LANES]));
                let above = lanes!(|l| (size[l] - lowest_kv[l]).max(0.0));
                let slope = lanes!(|l| drop_in_phase[l] * (1.0 + above[l] * per_size[l]));
                let curve_in_phase = in_phase(own.times(kv_per_a * z_to_node));
                let curve = lanes!(|l| curve_in_phase[l].max(0.0));
                let discriminant = lanes!(|l| slope[l] * slope[l] + 4.0 * curve[l] * room_kv[l]);
                let root = lanes!(|l| 2.0 * room_kv[l] / (slope[l] + discriminant[l].sqrt()));
                let linear_root = lanes!(|l| room_kv[l] / linear_slope[l]);
                let no_room = mask!(|l| room_kv[l] <= 0.0);
                let root = lanes!(|l| pick(no_room[l], 0.0, root[l]));
                let linear_root = lanes!(|l| pick(no_room[l], 0.0, linear_root[l]));
                let (least_root, least_linear) = (
                    least(voltage_part.kw, root),
                    least(voltage_part.linear_kw, linear_root),
                );
                let rooted = mask!(|l| slope[l] > 0.0 && linear_slope[l] > 0.0);
                voltage_part.kw = lanes!(|l| pick(rooted[l], least_root[l], voltage_part.kw[l]));
                voltage_part.linear_kw =
                    lanes!(|l| pick(rooted[l], least_linear[l], voltage_part.linear_kw[l]));
                drop = drop.sub(per_kw.add(answer).times(e.z_ohm[p]));
            }
        }
        std::array::from_fn(|l| {
            let substation = with_substation.then(|| {
                self.substation_estimate(ks[l], losses_per_kw.lane(l), losses_per_kw_2.lane(l))
            });
            EstimateParts {
                path: path.lane(l),
                voltage: voltage.then(|| voltage_part.lane(l)),
                substation,
            }
        })
    }
}

/// Estimates worked out four at a time ahead of a walk over steps that takes
/// them one at a time (see the module's doc).
pub(super) struct EstimatesAhead {
    steps: [usize; LANES],
    parts: [Option<EstimateParts>; LANES],
}

impl EstimatesAhead {
    pub(super) fn new() -> Self {
        Self {
            steps: [usize::MAX; LANES],
            parts: [None; LANES],
        }
    }

    /// Step `k`'s estimate with the parts wanted, where it was worked out
    /// ahead with them.
    pub(super) fn take(
        &mut self,
        k: usize,
        voltage: bool,
        substation: bool,
    ) -> Option<StepEstimate> {
        let l = self.steps.iter().position(|&s| s == k)?;
        self.steps[l] = usize::MAX;
        self.parts[l].take()?.with(voltage, substation)
    }

    /// Works out the estimates of the first [`LANES`] of `steps` (the first
    /// is the step wanted now) with the voltage's part where `voltage` and
    /// the substation's where `substation`, for [`Self::take`].
    pub(super) fn fill(
        &mut self,
        estimator: &Estimator<'_>,
        steps: &[usize],
        voltage: bool,
        substation: bool,
        answers: &mut Vec<Complex64>,
    ) {
        let count = steps.len().min(LANES);
        let last = steps[count - 1];
        // Spare lanes repeat the last step, and are not kept.
        let ks: [usize; LANES] = std::array::from_fn(|l| steps.get(l).copied().unwrap_or(last));
        let parts = estimator.estimate_parts(ks, voltage, substation, answers);
        for l in 0..LANES {
            (self.steps[l], self.parts[l]) = if l < count {
                (ks[l], Some(parts[l]))
            } else {
                (usize::MAX, None)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{AddedLoad, candidate_path, with_scratch};
    use crate::{Engine, with_each_kernel};

    /// The parts of four steps' estimates, put together as each step's walk
    /// wants them, against the scalar estimate of each step, with every
    /// kernel: bit for bit, over the fixture's feeders, every third node and
    /// a spread of steps, with cuts that leave out none, some and all of the
    /// voltage and substation parts. Returns how many lanes a voltage part
    /// and a substation part set the estimate in.
    fn compare_lanes_with_scalar(engine: &Engine, power_factor: f64) -> (usize, usize, usize) {
        let load = AddedLoad::flat(power_factor);
        let (mut compared, mut voltage_set, mut substation_set) = (0, 0, 0);
        for f in 0..engine.network.feeders.len() {
            let base = engine.feeder(f);
            let shape = engine.shape(&base, &load);
            for local in (1..base.electrical.len() as u32).step_by(3) {
                with_scratch(|scratch| {
                    let path = candidate_path(&base, local, scratch);
                    let estimator = Estimator::new(engine, &base, local, &load, &shape, &path);
                    let judged: Vec<usize> = (0..base.loads.step_count())
                        .step_by(7)
                        .filter(|&k| estimator.judged_at(k))
                        .collect();
                    for ks in judged.chunks_exact(LANES) {
                        let ks: [usize; LANES] = std::array::from_fn(|l| ks[l]);
                        let bounds = ks.map(|k| estimator.bounds_at(k));
                        let mut sorted =
                            bounds.map(|(_, voltage, substation)| voltage.min(substation));
                        sorted.sort_by(f64::total_cmp);
                        for beyond in [f64::INFINITY, sorted[1], sorted[3], -1.0] {
                            let wanted = bounds.map(|(_, voltage, substation)| {
                                (
                                    voltage <= beyond,
                                    estimator.substation_limit_kva > 0.0 && substation <= beyond,
                                )
                            });
                            let (any_voltage, any_substation) = wanted
                                .iter()
                                .fold((false, false), |(v, s), w| (v | w.0, s | w.1));
                            for (kernel, parts) in with_each_kernel(|| {
                                estimator.estimate_parts(
                                    ks,
                                    any_voltage,
                                    any_substation,
                                    &mut Vec::new(),
                                )
                            }) {
                                for l in 0..LANES {
                                    let (_, voltage_bound, substation_bound) = bounds[l];
                                    let scalar = estimator.estimate(
                                        ks[l],
                                        voltage_bound,
                                        substation_bound,
                                        beyond,
                                        &mut Vec::new(),
                                    );
                                    let (voltage, substation) = wanted[l];
                                    let lane = parts[l]
                                        .with(voltage, substation)
                                        .expect("every part wanted was worked out");
                                    assert_eq!(
                                        (lane.kw.to_bits(), lane.linear_kw.to_bits()),
                                        (scalar.kw.to_bits(), scalar.linear_kw.to_bits()),
                                        "{kernel}: feeder {f}, node {local}, step {}, cut {beyond}: \
                                         lanes {lane:?}, scalar {scalar:?}",
                                        ks[l]
                                    );
                                    compared += 1;
                                    let path = parts[l].path.kw;
                                    if voltage && parts[l].voltage.is_some_and(|v| v.kw < path) {
                                        voltage_set += 1;
                                    }
                                    if substation
                                        && parts[l].substation.is_some_and(|s| s.kw < path)
                                    {
                                        substation_set += 1;
                                    }
                                }
                            }
                        }
                    }
                    scratch.path = path;
                });
            }
        }
        (compared, voltage_set, substation_set)
    }

    #[test]
    fn four_lanes_estimate_each_step_as_the_scalar_walk_does() {
        let engine = crate::test_support::fixture_engine();
        // The fixture's substation has room to spare: with its limit just
        // above its busiest step, the substation's part sets estimates too.
        let busiest = (0..engine.network.feeders.len())
            .map(|f| {
                engine
                    .feeder(f)
                    .summary
                    .before
                    .substation_transformer_loading_pct
            })
            .fold(0.0, f64::max);
        let mut tight = crate::EngineConfig::default();
        tight.limits.substation_transformer_pct = busiest * 1.02;
        let tight = crate::test_support::fixture_engine_with(tight);
        for (engine, name) in [(&engine, "fixture"), (&tight, "tight substation")] {
            for power_factor in [0.95, 0.8, 1.0] {
                let (compared, voltage_set, substation_set) =
                    compare_lanes_with_scalar(engine, power_factor);
                let report = format!(
                    "{name}, power factor {power_factor}: {compared} lanes compared, the voltage \
                     part set {voltage_set}, the substation part {substation_set}"
                );
                assert!(compared > 10_000, "{report}");
                // Each part is compared where it decides, not only where the
                // path's part hides it.
                assert!(voltage_set > 100, "{report}");
                assert!(substation_set > 100 || name == "fixture", "{report}");
                eprintln!("{report}");
            }
        }
    }

    /// A step not worked out ahead, or worked out without a part its walk
    /// now wants, is left to the scalar estimate; one worked out is taken
    /// once.
    #[test]
    fn estimates_ahead_are_taken_once_and_only_with_the_parts_wanted() {
        let engine = crate::test_support::fixture_engine();
        let load = AddedLoad::flat(0.95);
        let base = engine.feeder(0);
        let shape = engine.shape(&base, &load);
        with_scratch(|scratch| {
            let local = base.electrical.len() as u32 - 1;
            let path = candidate_path(&base, local, scratch);
            let estimator = Estimator::new(&engine, &base, local, &load, &shape, &path);
            let mut ahead = EstimatesAhead::new();
            assert!(ahead.take(3, false, false).is_none());
            ahead.fill(&estimator, &[3, 5, 8], false, false, &mut Vec::new());
            let scalar = estimator.estimate(5, f64::INFINITY, f64::INFINITY, 0.0, &mut Vec::new());
            let taken = ahead.take(5, false, false).expect("worked out ahead");
            assert_eq!(taken.kw.to_bits(), scalar.kw.to_bits());
            assert!(ahead.take(5, false, false).is_none(), "taken twice");
            assert!(ahead.take(4, false, false).is_none(), "never worked out");
            assert!(
                ahead.take(8, true, false).is_none(),
                "without the voltage part"
            );
            assert!(ahead.take(3, false, false).is_some());
            scratch.path = path;
        });
    }
}
