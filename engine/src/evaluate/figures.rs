//! The figures at the application's demand (`after`): the worst loading,
//! head loading, voltages and substation loading over every step of the window
//! with the new load connected.
//!
//! A full power flow of every step for every candidate would cost a ranking
//! seconds. Instead each step gets bounds from its base flow that no power flow
//! with the new load can pass: a path branch carries the new load's current
//! added as a phasor, every branch the other loads' answer to the lower
//! voltage; a node's voltage is shifted by the impedance it shares with the
//! candidate's path times the load's current (which lowers it: the highest
//! voltage with a load is usually below the base's) and moved by at most the
//! answers' drops; the substation takes at most the new load plus the losses
//! it adds. A step gets a power flow only while its bounds could still change
//! a figure the flows so far found; each bound is checked first in a few
//! operations from the rows the feeder's base keeps per step, then, for a step
//! that passes, branch by branch along the candidate's path and, for voltages
//! and branches off the path, set by set where the nodes leave the path (from
//! each subtree's extremes the base keeps per step, [`FigureOrders`]).
//!
//! Steps are visited in orders the base sorts once ([`FigureOrders`]): worst
//! base loading first, highest head current, lowest voltage, most loaded
//! substation, highest voltage. With the load's largest reach over the window,
//! a step's base figure bounds what any later step of the same order can show,
//! so each scan stops at the first step that cannot change its figure.
//!
//! The figures are therefore those of a power flow at every step, to the power
//! flow's own tolerance: the steps left out are the ones proved not to matter.

use num_complex::Complex64;

use super::{CandidatePath, PathRun, Scratch, magnitude};
use crate::base::FeederBase;
use crate::checks::{WorstChecks, absorb};
use crate::engine::Engine;
use crate::evaluate::AddedLoad;
use crate::powerflow::SQRT_3;

/// [`Candidate::loading_active`]: per run of the path whether its branches
/// are active, and the active (path index, child) subtrees off the path.
type LoadingActive = (Vec<bool>, Vec<(u32, u32)>);

/// How many subtrees along a candidate's path the lowest voltage is first
/// bounded from.
const LEVELS: usize = 4;

/// The least and largest resistance and reactance from the busbar to a set
/// of path nodes, ohm: `[r_least, r_most, x_least, x_most]`.
type LevelImpedance = [f64; 4];

/// One of [`Candidate::levels`]: a path node's subtree, less the next
/// level's.
#[derive(Clone, Copy, Debug, Default)]
struct Level {
    /// The subtree's top (a local node of the path).
    node: usize,
    /// The impedance magnitude from the busbar to the next level's top (the
    /// candidate's for the last), ohm: what a node of this subtree shares
    /// with the candidate at most.
    shared_ohm: f64,
    /// Over the path nodes where this subtree's nodes leave the path, from
    /// the busbar to each.
    impedance: LevelImpedance,
}

/// [`Candidate::levels`] of a path (nodes from the candidate up, impedances
/// from the busbar to each, and their magnitudes), and how many there are.
fn path_levels(
    path: &[usize],
    z_path: &[Complex64],
    z_from_busbar: &[f64],
) -> ([Level; LEVELS], usize) {
    let mut levels = [Level::default(); LEVELS];
    let Some(top) = path.len().checked_sub(1) else {
        return (levels, 0);
    };
    // Path indices, from the first node down, evenly spread.
    let mut at: Vec<usize> = (0..LEVELS).map(|l| top - top * l / LEVELS).collect();
    at.dedup();
    for (l, &i) in at.iter().enumerate() {
        let below = at.get(l + 1).copied().unwrap_or(0);
        // The next subtree's top is a node of this one; the candidate's
        // impedance bounds the last.
        let shared = if l + 1 < at.len() {
            z_from_busbar[below]
        } else {
            z_from_busbar[0]
        };
        // Its nodes leave the path below the next subtree's top, down to
        // this one's (the last's from the candidate up).
        let leave = if l + 1 < at.len() { below + 1 } else { 0 };
        let impedance = z_path[leave..=i].iter().fold(
            [
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ],
            |[r_least, r_most, x_least, x_most], z| {
                [
                    r_least.min(z.re),
                    r_most.max(z.re),
                    x_least.min(z.im),
                    x_most.max(z.im),
                ]
            },
        );
        levels[l] = Level {
            node: path[i],
            shared_ohm: shared,
            impedance,
        };
    }
    (levels, at.len())
}

/// The largest part in phase with a voltage of `angles` of the drop a
/// current `current` (A) makes through an impedance within `z`, kV: over the
/// impedances and angles, `Re(z I conj(v / |v|))` is `R Re(I conj v^) + X Re(j I
/// conj v^)`, each bilinear in its range and the range of its cosine, so
/// largest at a corner. A voltage `v` moved by a drop `w` keeps `|v - w| >=
/// |v| - Re(w conj(v / |v|))`: the projection of the moved phasor on the old.
/// Along a city feeder's lines that part is about 0.86-0.9 of `|z| |I|`.
fn in_phase_drop_kv(z: &LevelImpedance, angles: &AngleRange, current: Complex64) -> f64 {
    let size = magnitude(current);
    if size <= 0.0 {
        return 0.0;
    }
    let unit = current / size;
    let corner = |least: f64, most: f64, (cos_least, cos_most): (f64, f64)| {
        (least * cos_least)
            .max(least * cos_most)
            .max(most * cos_least)
            .max(most * cos_most)
    };
    let resistive = corner(z[0], z[1], angles.cos_range(unit));
    let reactive = corner(z[2], z[3], angles.cos_range(unit * Complex64::i()));
    SQRT_3 / 1000.0 * size * (resistive + reactive)
}

/// A step's bounds on the figures with the new load.
#[derive(Clone, Copy, Debug)]
struct StepBounds {
    step: usize,
    /// Highest loading of any branch or the head, a fraction (at most).
    loading: f64,
    /// Highest head loading, a fraction (at most).
    head: f64,
    /// Lowest voltage, pu (at least).
    v_min: f64,
    /// Highest voltage, pu (at most).
    v_max: f64,
    /// Substation loading, a fraction of the group's rating (at most).
    substation: f64,
}

/// What a bound must exceed the figure found so far by to call for a power
/// flow: half of what results promise (0.01 points of loading, 0.0001 pu), so
/// that a step left out can raise no figure by more than that, with room for
/// the power flow's own tolerance.
const SLACK: f64 = 5e-5;

impl StepBounds {
    /// Bounds that prove nothing: every figure could change.
    const UNBOUNDED: Self = Self {
        step: 0,
        loading: f64::INFINITY,
        head: f64::INFINITY,
        v_min: f64::NEG_INFINITY,
        v_max: f64::INFINITY,
        substation: f64::INFINITY,
    };
}

/// What [`Candidate::node_bounds`] finds of a step.
struct NodeBounds {
    v_min: f64,
    v_max: f64,
    /// Off the path, a branch carries only its loads' answer to the lower
    /// voltage.
    off_path_loading: f64,
}

/// The figures found so far, as fractions and pu.
#[derive(Clone, Copy, Debug)]
struct Found {
    loading: f64,
    head: f64,
    v_min: f64,
    v_max: f64,
    substation: f64,
}

impl Found {
    fn from_worst(worst: &WorstChecks) -> Self {
        Self {
            loading: worst.segment.0.max(worst.head_pct) / 100.0,
            head: worst.head_pct / 100.0,
            v_min: worst.v_min.0,
            v_max: worst.v_max.0,
            substation: worst.substation_pct / 100.0,
        }
    }

    /// Whether a step with these bounds can still change the figure `scan`
    /// proves (each scan proves its own: a step another figure needs is
    /// solved by that figure's scan).
    fn can_change(&self, scan: Scan, b: &StepBounds) -> bool {
        match scan {
            Scan::Loading => b.loading > self.loading + SLACK,
            Scan::Head => b.head > self.head + SLACK,
            Scan::VMin => b.v_min < self.v_min - SLACK,
            Scan::VMax => b.v_max > self.v_max + SLACK,
            Scan::Substation => b.substation > self.substation + SLACK,
        }
    }
}

/// What the bounds of every step share: the candidate's path and its load.
struct Candidate<'a> {
    base: &'a FeederBase,
    orders: &'a FigureOrders,
    local: u32,
    /// Nodes from the candidate up to the first node, and the impedance
    /// magnitude from the busbar to each.
    path: &'a [usize],
    z_from_busbar: &'a [f64],
    /// The path's runs of branches in series (see [`CandidatePath::runs`]).
    runs: &'a [PathRun],
    /// A few path nodes' subtrees, from the first node down to the
    /// candidate (the first `level_count`).
    levels: [Level; LEVELS],
    level_count: usize,
    /// The path indices whose hanging nodes could still hold the lowest
    /// voltage with the load (all of them until the lowest-voltage scan
    /// narrows them from the window's extremes and the figure found).
    v_min_active: std::cell::RefCell<Option<Vec<u32>>>,
    /// Where the loading scan can still find its figure: per run of the
    /// path, whether its branches could pass the figure at some step, and the
    /// (path index, child) of the subtrees off the path that could.
    loading_active: std::cell::RefCell<Option<LoadingActive>>,
    /// Whether the load's power factor is within the export split's
    /// ([`RatingClasses::exporting`]).
    export_split: bool,
    /// The rating classes of the path's branches and the head, a bit each.
    path_classes: u64,
    /// Per rating class on the path, the highest loading over the window of
    /// its branches on the path (and of the head, for the head's class), a
    /// fraction: with the new load's largest current, a bound on them at
    /// every step that does not depend on how loaded the class's branches
    /// off the path are.
    path_class_window: [f64; RatingClasses::MOST + 1],
    /// The impedance from the busbar to each node of the path, ohm.
    z_path: &'a [Complex64],
    /// |Z| from the busbar to the candidate, ohm.
    z_candidate: f64,
    /// The least and largest finite segment rating on the path, A.
    weakest_a: f64,
    strongest_a: f64,
    head_rated_a: Option<f64>,
    group_rated_kva: f64,
    /// kVA per kW of the new load.
    kva_per_kw: f64,
    /// Its kvar per kW.
    tan_phi: f64,
}

/// The new load's reach at one step: how much current it draws at most and how
/// far it lowers voltages at most, relative to the base.
struct Reach {
    /// The largest current the new load can draw, A.
    current_a: f64,
    /// The largest relative fall of any node's voltage: the other loads' currents
    /// grow by at most `1 / (1 - fall) - 1` of themselves.
    growth: f64,
    /// The new load's apparent power, kVA.
    kva: f64,
}

impl Reach {
    /// The drop its largest current makes per ohm it crosses, kV.
    fn drop_kv_per_ohm(&self) -> f64 {
        SQRT_3 / 1000.0 * self.current_a
    }
}

impl Candidate<'_> {
    /// How far the new load of `kw` reaches at step `k`, or `None` where the
    /// feeder might collapse under it (then only a power flow can tell).
    fn reach(&self, k: usize, kw: f64) -> Option<Reach> {
        let steps = self.base.loads.step_count();
        self.reach_at(
            f64::from(self.base.voltage_kv[self.local as usize * steps + k]),
            kw,
        )
    }

    /// The same where the candidate's base voltage is `v` kV.
    fn reach_at(&self, v: f64, kw: f64) -> Option<Reach> {
        let kva = kw * self.kva_per_kw;
        // The candidate's voltage x with the load: x >= v - |Z| kva / (1000 x),
        // the drop of its own current at that voltage.
        let zs = self.z_candidate * kva / 1000.0;
        let discriminant = v * v - 4.0 * zs;
        if discriminant.is_nan() || discriminant <= 0.0 {
            return None;
        }
        let x = 0.5 * (v + discriminant.sqrt());
        let own_fall = 1.0 - x / v;
        // The other loads answer the lower voltage with more current, which
        // lowers it a little further: their share of the drop is bounded by the
        // base drop grown in the same proportion, here a generous tenth.
        let fall = own_fall * 1.1 + 1e-9;
        if fall >= 0.5 {
            return None;
        }
        Some(Reach {
            current_a: kva / (SQRT_3 * v * (1.0 - fall)),
            growth: fall / (1.0 - fall),
            kva,
        })
    }

    /// How far the new load's own current (at its `reach`) lowers the
    /// candidate's voltage, pu, at most.
    fn own_drop_pu(&self, reach: &Reach) -> f64 {
        let nominal = self.base.electrical.nominal_kv[self.local as usize];
        self.z_candidate * reach.current_a * SQRT_3 / 1000.0 / nominal
    }

    /// The children of path node `i` off the path: the subtrees that leave
    /// the path there.
    fn hanging(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let path_child = if i > 0 { self.path[i - 1] } else { usize::MAX };
        self.orders
            .children(self.path[i])
            .iter()
            .map(|&c| c as usize)
            .filter(move |&c| c != path_child)
    }

    /// The new load's current at step `k`, at the candidate's base voltage.
    fn new_current(&self, k: usize, reach: &Reach) -> Complex64 {
        let kw = reach.kva / self.kva_per_kw;
        Complex64::new(kw, -kw * self.tan_phi)
            / (SQRT_3 * self.base.solutions[k].v_kv(self.local as usize).conj())
    }

    /// Keeps in [`Candidate::v_min_active`] the path nodes whose hanging
    /// nodes could go below `found_v_min` at some step: those whose lowest
    /// voltage over the window, less the largest shift and move the load
    /// (at its widest reach) can give them, is below it. The figure found
    /// only falls as the scan goes on, so a node left out stays out.
    fn narrow_v_min(&self, widest: Option<&Reach>, found_v_min: f64) {
        let Some(r) = widest else {
            return;
        };
        let e = &self.base.electrical;
        let orders = self.orders;
        let drop_per_ohm = r.drop_kv_per_ohm();
        let answer_kv = r.growth * orders.answer_drop_max_kv;
        let mut active = self.v_min_active.take().unwrap_or_default();
        active.clear();
        for (i, &p) in self.path.iter().enumerate() {
            let nominal = e.nominal_kv[p];
            let lowest = self
                .hanging(i)
                .map(|c| f64::from(orders.subtree_window_min_pu[c]))
                .fold(f64::from(orders.node_v_min_kv[p]) / nominal, f64::min);
            let moved_kv = answer_kv + self.z_from_busbar[i] * drop_per_ohm * (1.0 + r.growth);
            if lowest - moved_kv / nominal < found_v_min - SLACK {
                active.push(i as u32);
            }
        }
        self.v_min_active.replace(Some(active));
    }

    /// Keeps in [`Candidate::loading_active`] the path branches and the
    /// subtrees off the path whose loading could pass `found_loading` at
    /// some step: a branch's highest loading over the window, with the
    /// load's largest current and change on the path and every load's
    /// largest answer (at the load's widest reach). The figure found only
    /// rises as the scan goes on, so a branch left out stays out.
    fn narrow_loading(&self, widest: Option<&Reach>, found_loading: f64) {
        let Some(r) = widest else {
            return;
        };
        let e = &self.base.electrical;
        let window = &self.orders.window;
        let limit = found_loading + SLACK;
        let (mut branches, mut subtrees) = self.loading_active.take().unwrap_or_default();
        branches.clear();
        subtrees.clear();
        // A run's branches carry one current: its least rated is loaded most.
        for run in self.runs {
            let w = run.weakest as usize;
            branches.push(
                e.rated_a[w].is_finite()
                    && f64::from(window.own_loading[w])
                        + r.current_a * (1.0 + r.growth) / e.rated_a[w]
                        + r.growth * f64::from(window.own_answer[w])
                        > limit,
            );
        }
        for i in 0..self.path.len() {
            for c in self.hanging(i) {
                if f64::from(window.subtree_loading[c])
                    + r.growth * f64::from(window.subtree_answer[c])
                    > limit
                {
                    subtrees.push((i as u32, c as u32));
                }
            }
        }
        self.loading_active.replace(Some((branches, subtrees)));
    }

    /// The highest loading with the new load of any branch of class `c` at
    /// step `k`, a fraction, at most: the class's highest base loading, its
    /// loads' answer (`growth` of their currents) and, where the class is on
    /// the path, the load's largest current `current_a` over the class's
    /// least rating.
    fn class_bound(&self, c: usize, k: usize, current_a: f64, growth: f64) -> f64 {
        let classes = &self.orders.classes;
        let steps = self.base.loads.step_count();
        let answer = f64::from(classes.answer[c * steps + k]) * growth;
        let importing = self.class_loading(
            c,
            f64::from(classes.loading[c * steps + k]),
            false,
            current_a,
            growth,
        );
        let exporting = self.class_loading(
            c,
            f64::from(classes.exporting[c * steps + k]),
            true,
            current_a,
            growth,
        );
        importing.max(exporting) + answer
    }

    /// A class's branch of base loading `loading` with the new load's
    /// largest current `current_a` where the class is on the path, its
    /// loads' answer aside: where the branch exports against the load
    /// (`exports`, and the load's power factor within the split's), the two
    /// currents add at most as the hypotenuse, plus the load's own change.
    fn class_loading(
        &self,
        c: usize,
        loading: f64,
        exports: bool,
        current_a: f64,
        growth: f64,
    ) -> f64 {
        if self.path_classes & (1 << c) == 0 {
            return loading;
        }
        let added = current_a / self.orders.classes.rated_a[c];
        let through_any = if exports && self.export_split {
            loading.hypot(added) + added * growth
        } else {
            loading + added
        };
        // The class's branches off the path carry no new current: only those
        // on it, never loaded past their window's highest, take it. (A spur's
        // class, loaded lightly on the path and heavily elsewhere, otherwise
        // bounded hundreds of steps above a trunk's figure.) Both bounds fall
        // as `loading` does, so a class's order still ends the scan.
        through_any.min(loading.max(self.path_class_window[c] + added))
    }

    /// Bounds from the base's per-step rows alone (and `loads_a`, the sum of
    /// the step's load currents' magnitudes).
    ///
    /// Only what `scan` proves is worked out (the loading's takes the head's
    /// with it); the other figures are left unbounded.
    fn quick_bounds(
        &self,
        scan: Scan,
        k: usize,
        reach: &Reach,
        new_current: Complex64,
        loads_a: f64,
    ) -> StepBounds {
        let base = self.base;
        let steps = base.loads.step_count();
        let run = self.local as usize * steps + k;
        let grow = 1.0 + reach.growth;
        let mut bounds = StepBounds::UNBOUNDED;
        bounds.step = k;
        match scan {
            Scan::Loading | Scan::Head => {
                // The head carries the new load's current as a phasor (an
                // exporting feeder's head is lowered by it), its change as the
                // voltage falls and every load's answer.
                bounds.head = self.head_rated_a.map_or(0.0, |rated| {
                    (magnitude(base.head_i_a[k] + new_current)
                        + (magnitude(new_current) + loads_a) * reach.growth)
                        / rated
                });
                if matches!(scan, Scan::Loading) {
                    let path = f64::from(base.path_max_loading[run]) * grow
                        + reach.current_a
                            / self
                                .weakest_a
                                .min(self.head_rated_a.unwrap_or(f64::INFINITY));
                    let off_path = base.max_loading[k]
                        + reach.growth
                            * f64::from(self.orders.subtree_max_answer[k * base.electrical.len()]);
                    let classes = (0..self.orders.classes.rated_a.len())
                        .map(|c| self.class_bound(c, k, reach.current_a, reach.growth))
                        .fold(0.0, f64::max);
                    bounds.loading = off_path.max(path).max(bounds.head).min(classes);
                }
            }
            Scan::VMin => {
                bounds.v_min = base.feeder_min_pu[k]
                    - self.own_drop_pu(reach)
                    - reach.growth * voltage_spread(base, k);
            }
            Scan::VMax => {
                bounds.v_max = base.observed[k].v_max_pu + reach.growth * voltage_spread(base, k);
            }
            Scan::Substation => {
                let largest_path_current = magnitude(base.head_i_a[k]).max(
                    f64::from(base.path_max_loading[run])
                        * self.strongest_a.max(self.head_rated_a.unwrap_or(0.0)),
                );
                let path_losses = self.path_losses_kva(
                    largest_path_current,
                    largest_path_current * reach.growth + reach.current_a,
                );
                bounds.substation = self.substation_bound(k, reach, path_losses);
            }
        }
        bounds
    }

    /// The same bounds, branch by branch along the path: each branch's loads
    /// answer the lower voltage by how far their own branch point's voltage
    /// falls, not the candidate's.
    ///
    /// Only what `scan` proves is worked out; the other figures keep `quick`'s.
    fn path_bounds(
        &self,
        scan: Scan,
        quick: &StepBounds,
        reach: &Reach,
        new_current: Complex64,
        found: &Found,
    ) -> StepBounds {
        let (base, orders) = (self.base, self.orders);
        let k = quick.step;
        let e = &base.electrical;
        let n = e.len();
        let solution = &base.solutions[k];
        let subtree_min = &base.subtree_min_pu[k * n..(k + 1) * n];
        let below = &orders.load_current_below[k * n..(k + 1) * n];
        // The new load's current `new_current` is a phasor at the candidate's
        // base voltage: a branch's current adds to it as phasors (where the
        // branch exports, the load lowers it). The load's current turns and
        // grows as the voltage falls by at most its growth.
        // Its voltage's relative change, angle included, is at most the
        // reach's fall, so its current moves by at most `growth` of itself.
        let turn_a = magnitude(new_current) * reach.growth;
        let mut bounds = *quick;
        let answer_kv = reach.growth * f64::from(orders.answer_drop_kv[k]);
        // The load's own change moves a node by the impedance it shares with
        // the path times that change: at most the candidate's.
        let moved_kv = answer_kv + SQRT_3 / 1000.0 * self.z_candidate * turn_a;
        if matches!(scan, Scan::VMin) {
            // First from a few subtrees along the path: a node of one but not
            // of the next leaves the path above the next's top, so it shares
            // less impedance with the candidate than that top does. Its
            // drop is the load's current at the base voltage through that
            // impedance, or where less, the part of it in phase with the
            // node's voltage (the load's own change is in `moved_kv`).
            let drop_per_ohm = reach.current_a * SQRT_3 / 1000.0;
            let angles = &orders.angles[k];
            let mut v_min = base.feeder_min_pu[k] - moved_kv / e.nominal_kv[0];
            for level in &self.levels[..self.level_count] {
                let p = level.node;
                let drop_kv = (level.shared_ohm * drop_per_ohm).min(in_phase_drop_kv(
                    &level.impedance,
                    angles,
                    new_current,
                ));
                v_min =
                    v_min.min(f64::from(subtree_min[p]) - (drop_kv + moved_kv) / e.nominal_kv[p]);
            }
            bounds.v_min = v_min.max(quick.v_min);
            if !found.can_change(scan, &bounds) {
                return bounds;
            }
        }
        if matches!(scan, Scan::VMin | Scan::VMax) {
            // Only the scan's own figure is worked out.
            let nodes = self.hanging_bounds(scan, k, new_current, answer_kv, turn_a, reach);
            if matches!(scan, Scan::VMin) {
                bounds.v_min = nodes.v_min.max(bounds.v_min);
            } else {
                bounds.v_max = nodes.v_max.min(quick.v_max);
            }
            return bounds;
        }
        // Squared, rooted once; losses in ohm-amperes squared, in kVA once:
        // divisions and roots per branch were most of this loop's time.
        let mut path_loading_2: f64 = 0.0;
        let mut path_losses_ohm_a2 = 0.0;
        // The loads' answer, summed from the candidate up: the loads hanging
        // at path node p (below p, not below the path node under it) see at
        // most p's fall, relative to their own lowest voltage.
        let (mut response_a, mut counted_a) = (0.0, 0.0f64);
        let fall_kv_per_ohm = reach.drop_kv_per_ohm() * 1.1;
        let active = self.loading_active.borrow();
        let active_branches = match (scan, active.as_ref()) {
            (Scan::Loading, Some((branches, _))) => Some(branches),
            _ => None,
        };
        // A run at a time: its branches carry one current, with nothing
        // hanging off them to answer, so its least rated is loaded most and
        // its losses are its impedance's.
        for (r, run) in self.runs.iter().enumerate() {
            let p = run.node as usize;
            let hanging = (f64::from(below[p]) - counted_a).max(0.0);
            counted_a = counted_a.max(f64::from(below[p]));
            // No loads hang here: the sum stays what adding their zero would
            // leave.
            if hanging > 0.0 {
                let lowest_kv = f64::from(subtree_min[p]) * e.nominal_kv[p];
                let fall = (self.z_from_busbar[run.at as usize] * fall_kv_per_ohm / lowest_kv
                    + 1e-9)
                    .min(0.5);
                response_a += hanging * fall / (1.0 - fall);
            }
            // The loading scan skips the branches that cannot pass its figure;
            // only the substation's needs every branch's losses.
            if active_branches.is_some_and(|active| !active[r]) {
                continue;
            }
            let branch = solution.i_a(p);
            // A branch's losses grow with the square of its current, the
            // new load's added as a phasor.
            let after = magnitude(branch + new_current) + turn_a + response_a;
            let after_2 = after * after;
            path_losses_ohm_a2 += run.z_abs_ohm * (after_2 - branch.norm_sqr()).max(0.0);
            // Zero where the branch has no rating.
            path_loading_2 = path_loading_2.max(after_2 * e.inv_rated_a_2[run.weakest as usize]);
        }
        let path_loading = path_loading_2.sqrt();
        let path_losses = 3.0 * path_losses_ohm_a2 / 1000.0;
        let head_after = magnitude(solution.i_a(0) + new_current) + turn_a + response_a;
        let head = self
            .head_rated_a
            .map_or(0.0, |rated| head_after / rated)
            .min(quick.head);
        bounds.head = head;
        if matches!(scan, Scan::Loading) {
            // Off the path, first from the step's highest loading and answer.
            let off_path =
                base.max_loading[k] + reach.growth * f64::from(orders.subtree_max_answer[k * n]);
            bounds.loading = off_path.max(path_loading).max(head).min(quick.loading);
            if found.can_change(scan, &bounds) {
                let nodes = self.hanging_bounds(scan, k, new_current, answer_kv, turn_a, reach);
                bounds.loading = nodes
                    .off_path_loading
                    .max(path_loading)
                    .max(head)
                    .min(bounds.loading);
            }
        }
        if matches!(scan, Scan::Substation) {
            bounds.substation = self
                .substation_bound(k, reach, path_losses)
                .min(quick.substation);
        }
        bounds
    }

    /// Every node's voltage with the new load, pu, at least and at most, and
    /// the highest loading of a branch off the candidate's path, a fraction,
    /// at most, at step `k` whose base flow is `solution`.
    ///
    /// The nodes are taken in sets by where they leave the path: a path node
    /// and the subtrees of its children off the path. With the load, the
    /// branches such a set shares with the path carry the load's current
    /// `new_current` as well (at the base voltage): every voltage of the set
    /// is shifted by the same phasor, the path impedance down to the set's
    /// path node times that current, which lowers it (or, rarely, turns it).
    /// The set's voltages are bounded from its subtrees' highest and lowest
    /// voltages and the step's range of voltage angles. On top of the shift,
    /// every branch's current moves by the loads' answer below it and on the
    /// path by the load's own change `turn_a`, which moves a voltage by at
    /// most those currents times the impedances they cross (the loads' part
    /// at most `answer_kv` anywhere). A branch off the
    /// path carries only its loads' answer, which fall with the set's shift
    /// relative to their own lowest voltage. Only what `scan` proves is
    /// worked out: the lowest or highest voltage, or the loading.
    #[allow(clippy::too_many_arguments)]
    fn hanging_bounds(
        &self,
        scan: Scan,
        k: usize,
        new_current: Complex64,
        answer_kv: f64,
        turn_a: f64,
        reach: &Reach,
    ) -> NodeBounds {
        let (base, orders) = (self.base, self.orders);
        let e = &base.electrical;
        let n = e.len();
        let solution = &base.solutions[k];
        let row = k * n;
        let subtree_min = &base.subtree_min_pu[row..row + n];
        let subtree_max = &orders.subtree_max_pu[row..row + n];
        let subtree_loading = &orders.subtree_max_loading[row..row + n];
        let subtree_answer = &orders.subtree_max_answer[row..row + n];
        let angles = &orders.angles[k];
        let drop_per_ohm = reach.drop_kv_per_ohm();
        let busbar = magnitude(solution.v_kv(0)) / e.nominal_kv[0];
        let mut bounds = NodeBounds {
            v_min: busbar,
            v_max: busbar,
            off_path_loading: 0.0,
        };
        // A subtree leaving the path at path index `i` (or beside it at the
        // busbar, with nothing shared) carries only its loads' answer, which
        // fall with the impedance it shares with the candidate.
        let answering = |shared_ohm: f64, nominal: f64, child: usize| {
            let moved_kv = answer_kv + SQRT_3 / 1000.0 * shared_ohm * turn_a;
            let lowest = f64::from(subtree_min[child]) * nominal;
            let fall = ((shared_ohm * drop_per_ohm * 1.1 + moved_kv) / lowest + 1e-9).min(0.5);
            f64::from(subtree_loading[child])
                + fall / (1.0 - fall) * f64::from(subtree_answer[child])
        };
        if matches!(scan, Scan::Loading) {
            let nominal_at = |i: usize| e.nominal_kv[self.path[i]];
            let off_path = &mut bounds.off_path_loading;
            match self.loading_active.borrow().as_ref() {
                Some((_, subtrees)) => {
                    for &(i, child) in subtrees {
                        let i = i as usize;
                        *off_path = off_path.max(answering(
                            self.z_from_busbar[i],
                            nominal_at(i),
                            child as usize,
                        ));
                    }
                }
                None => {
                    for i in 0..self.path.len() {
                        for child in self.hanging(i) {
                            *off_path = off_path.max(answering(
                                self.z_from_busbar[i],
                                nominal_at(i),
                                child,
                            ));
                        }
                    }
                }
            }
        } else {
            let lows = matches!(scan, Scan::VMin);
            let active = self.v_min_active.borrow();
            let indices: &mut dyn Iterator<Item = usize> = match (lows, active.as_deref()) {
                (true, Some(active)) => &mut active.iter().map(|&i| i as usize),
                _ => &mut (0..self.path.len()),
            };
            for i in indices {
                let p = self.path[i];
                let nominal = e.nominal_kv[p];
                let shift = SQRT_3 / 1000.0 * self.z_path[i] * new_current;
                let moved_kv = answer_kv + SQRT_3 / 1000.0 * self.z_from_busbar[i] * turn_a;
                let own = magnitude(solution.v_kv(p) - shift);
                let shift_kv = magnitude(shift);
                let (cos_min, cos_max) = angles.cos_range(shift / shift_kv.max(f64::MIN_POSITIVE));
                if lows {
                    bounds.v_min = bounds.v_min.min((own - moved_kv) / nominal);
                    for child in self.hanging(i) {
                        let lowest = f64::from(subtree_min[child]) * nominal;
                        let lower = if lowest >= shift_kv * cos_max {
                            shifted_magnitude(lowest, shift_kv, cos_max)
                        } else {
                            shift_kv * (1.0 - cos_max * cos_max).max(0.0).sqrt()
                        };
                        bounds.v_min = bounds.v_min.min((lower - moved_kv) / nominal);
                    }
                } else {
                    bounds.v_max = bounds.v_max.max((own + moved_kv) / nominal);
                    for child in self.hanging(i) {
                        let highest = f64::from(subtree_max[child]) * nominal;
                        let upper = shifted_magnitude(highest, shift_kv, cos_min);
                        bounds.v_max = bounds.v_max.max((upper + moved_kv) / nominal);
                    }
                }
            }
        }
        // Branches that leave the busbar beside the path's are not shifted;
        // they only answer the others' answer.
        let first = self.path.last().copied().unwrap_or(usize::MAX);
        for &child in orders.children(0) {
            let child = child as usize;
            if child == first {
                continue;
            }
            let nominal = e.nominal_kv[child];
            bounds.v_min = bounds
                .v_min
                .min(f64::from(subtree_min[child]) - answer_kv / nominal);
            bounds.v_max = bounds
                .v_max
                .max(f64::from(subtree_max[child]) + answer_kv / nominal);
            bounds.off_path_loading = bounds.off_path_loading.max(answering(0.0, nominal, child));
        }
        bounds
    }

    /// The substation's loading with the new load and the losses it can add
    /// on the path, `path_losses_kva`, a fraction of the group's rating (0
    /// without one).
    fn substation_bound(&self, k: usize, reach: &Reach, path_losses_kva: f64) -> f64 {
        if self.group_rated_kva <= 0.0 {
            return 0.0;
        }
        let base = self.base;
        // A constant-power load draws its power whatever the voltage: it adds
        // to the group's as a phasor (where the group exports, it lowers it).
        let kw = reach.kva / self.kva_per_kw;
        let with_load = base.group_kva[k] + Complex64::new(kw, kw * self.tan_phi);
        self.substation_kva(
            with_load.norm() - reach.kva,
            reach,
            path_losses_kva,
            base.solutions[k].head_power_kva().norm(),
        ) / self.group_rated_kva
    }

    /// The group's power with the new load, kVA, at most: its power `group_kva`,
    /// the load, the losses it adds on the path (`path_losses_kva`) and,
    /// elsewhere, the other loads' larger currents adding to the feeder's own
    /// losses in proportion (taken as at most an eighth of the head's power
    /// `head_kva`).
    fn substation_kva(
        &self,
        group_kva: f64,
        reach: &Reach,
        path_losses_kva: f64,
        head_kva: f64,
    ) -> f64 {
        let other_losses = head_kva * 0.25 * reach.growth;
        group_kva + reach.kva + path_losses_kva + other_losses
    }

    /// What the path's losses grow by, kVA, at most, where its largest current
    /// `current_a` grows by `grows_a`: the path's impedance times the growth of
    /// the current's square.
    fn path_losses_kva(&self, current_a: f64, grows_a: f64) -> f64 {
        3.0 * self.z_candidate * grows_a * (2.0 * current_a + grows_a) / 1000.0
    }
}

/// [`Candidate::path_class_window`] of the path `path` (local nodes).
fn path_class_window(
    base: &FeederBase,
    orders: &FigureOrders,
    path: &[usize],
) -> [f64; RatingClasses::MOST + 1] {
    let classes = &orders.classes;
    let mut window = [0.0_f64; RatingClasses::MOST + 1];
    for &p in path {
        let c = classes.of_node[p];
        if c != RatingClasses::NONE {
            let c = usize::from(c);
            window[c] = window[c].max(f64::from(orders.window.own_loading[p]));
        }
    }
    if let (Some(c), Some(rated)) = (classes.head, base.electrical.head_rated_a) {
        // The highest head current comes first; kept a hair high, as the
        // rows are.
        let highest = orders
            .by_head
            .first()
            .map_or(0.0, |&k| base.head_i_a[k as usize].norm());
        window[usize::from(c)] = highest / rated * (1.0 + 1e-6);
    }
    window
}

/// How far the base flow's voltages spread from the busbar's at step `k`, pu:
/// the other loads' answer to the new load moves every voltage by at most this
/// much in proportion to their growth.
fn voltage_spread(base: &FeederBase, k: usize) -> f64 {
    let observed = &base.observed[k];
    let source = base.loads.source_kv[k] / base.electrical.nominal_kv[0];
    (source - observed.v_min_pu)
        .abs()
        .max((observed.v_max_pu - source).abs())
}

/// A step's range of voltage angles, as unit phasors at its ends.
#[derive(Clone, Copy, Debug)]
struct AngleRange {
    lo: Complex64,
    hi: Complex64,
    /// Whether it spans half a turn or more (then any cosine is possible).
    wide: bool,
}

impl AngleRange {
    fn new((lo, hi): (f32, f32)) -> Self {
        let (lo, hi) = (f64::from(lo), f64::from(hi));
        Self {
            lo: Complex64::from_polar(1.0, lo),
            hi: Complex64::from_polar(1.0, hi),
            wide: hi - lo >= std::f64::consts::PI,
        }
    }

    /// Whether the unit phasor `u` lies within the range.
    fn holds(&self, u: Complex64) -> bool {
        (self.lo.conj() * u).im >= 0.0 && (u.conj() * self.hi).im >= 0.0
    }

    /// The least and largest cosine of the angle between a voltage in the
    /// range and the unit phasor `u`, without a trigonometric call.
    fn cos_range(&self, u: Complex64) -> (f64, f64) {
        if self.wide {
            return (-1.0, 1.0);
        }
        let (a, b) = ((self.lo * u.conj()).re, (self.hi * u.conj()).re);
        let largest = if self.holds(u) { 1.0 } else { a.max(b) };
        let least = if self.holds(-u) { -1.0 } else { a.min(b) };
        (least, largest)
    }
}

/// `|v - c|` at most (with the least cosine of the angle between them) or at
/// least (with the largest), for `|v| = magnitude`, `|c| = shift`: the law
/// of cosines.
fn shifted_magnitude(magnitude: f64, shift: f64, cosine: f64) -> f64 {
    (magnitude * magnitude - 2.0 * magnitude * shift * cosine + shift * shift)
        .max(0.0)
        .sqrt()
}

/// A feeder's steps in the orders the figures with a new load scan them, and
/// what bounds every step of the window, worked out once per base.
///
/// Each order is sorted by a figure of the base flow that bounds, together with
/// the new load's largest reach, what a flow with the load can show at that
/// step: once a step's bound in an order is no worse than the figure found, no
/// later step of that order can change it, and the scan stops. A ranking's
/// candidates thus visit a few steps each instead of the whole window.
#[derive(Clone, Debug, Default)]
pub(crate) struct FigureOrders {
    /// The feeder's branches by rating, for the loading scan.
    classes: RatingClasses,
    /// Highest head current first.
    by_head: Vec<u32>,
    /// Lowest voltage first.
    by_v_min: Vec<u32>,
    /// Highest voltage first.
    by_v_max: Vec<u32>,
    /// Most loaded substation transformers first.
    by_group: Vec<u32>,
    /// The base's worst step of each figure, in [`Scan`] order (`u32::MAX`
    /// where none converged).
    worst_steps: [u32; 5],
    /// Steps whose base flow did not converge.
    collapsed: Vec<u32>,
    /// The largest voltage spread of any step (see [`voltage_spread`]), pu.
    spread_max: f64,
    /// The largest head power of any step, kVA.
    head_kva_max: f64,
    /// The highest loading of any step, a fraction.
    loading_max: f64,
    /// Per local node, its lowest voltage over the window, kV.
    node_v_min_kv: Vec<f32>,
    /// Per step and local node, the sum of the load currents' magnitudes in
    /// the node's subtree, A (step-major): what the loads below a branch can
    /// add when their voltage falls.
    load_current_below: Vec<f32>,
    /// Per step and local node (step-major), over the node's subtree: the
    /// highest voltage, pu; the highest loading of a branch (the node's own
    /// included), a fraction; the highest of a branch's load currents below
    /// it over its rating.
    subtree_max_pu: Vec<f32>,
    subtree_max_loading: Vec<f32>,
    subtree_max_answer: Vec<f32>,
    /// Per step, the range of the nodes' voltage angles (made once here: its
    /// ends' sines and cosines were a lowest-voltage visit's dearest part).
    angles: Vec<AngleRange>,
    /// The widest of those ranges over the steps that converged, radians:
    /// no two nodes' voltages lie further apart at any of them.
    angle_spread_max: f64,
    /// Per step, the largest drop, kV, the load currents below each branch
    /// would make on their way to any node: with the loads' currents grown by
    /// `g`, no voltage moves by more than `g` times this.
    answer_drop_kv: Vec<f32>,
    /// Per local node, loadings and answers over the window.
    window: WindowMaxima,
    /// Per local node, the lowest voltage of its subtree over the window,
    /// pu, and the largest of `answer_drop_kv`.
    subtree_window_min_pu: Vec<f32>,
    answer_drop_max_kv: f64,
    /// Each local node's children: `children[children_start[j]..children_start[j + 1]]`.
    children_start: Vec<u32>,
    children: Vec<u32>,
}

impl FigureOrders {
    fn new(engine: &Engine, base: &FeederBase) -> Self {
        let steps = base.loads.step_count();
        let converged: Vec<u32> = (0..steps as u32)
            .filter(|&k| base.solutions[k as usize].converged)
            .collect();
        let sorted = |key: &dyn Fn(usize) -> f64| {
            let mut order = converged.clone();
            order.sort_by(|a, b| key(*b as usize).total_cmp(&key(*a as usize)));
            order
        };
        let n = base.electrical.len();
        let load_current_below = load_current_below(engine, base);
        let subtrees = Subtrees::new(base, &load_current_below);
        let classes =
            RatingClasses::new(base, &load_current_below, &subtrees.angle_range, &converged);
        let parent = &base.electrical.parent;
        let mut children_start = vec![0u32; n + 1];
        for &p in &parent[1..] {
            children_start[p as usize + 1] += 1;
        }
        for j in 0..n {
            children_start[j + 1] += children_start[j];
        }
        let mut filled = children_start.clone();
        let mut children = vec![0u32; n.saturating_sub(1)];
        for (j, &p) in parent.iter().enumerate().skip(1) {
            children[filled[p as usize] as usize] = j as u32;
            filled[p as usize] += 1;
        }
        let by_head = sorted(&|k| base.head_i_a[k].norm());
        let by_v_min = sorted(&|k| -base.feeder_min_pu[k]);
        let by_v_max = sorted(&|k| base.observed[k].v_max_pu);
        let by_group = sorted(&|k| base.group_kva[k].norm());
        let first = |order: &[u32]| order.first().copied().unwrap_or(u32::MAX);
        let worst_loading = converged
            .iter()
            .copied()
            .max_by(|a, b| base.max_loading[*a as usize].total_cmp(&base.max_loading[*b as usize]))
            .unwrap_or(u32::MAX);
        Self {
            worst_steps: [
                worst_loading,
                first(&by_head),
                first(&by_v_min),
                first(&by_v_max),
                first(&by_group),
            ],
            by_head,
            by_v_min,
            by_v_max,
            by_group,
            classes,
            collapsed: (0..steps as u32)
                .filter(|&k| !base.solutions[k as usize].converged)
                .collect(),
            spread_max: converged
                .iter()
                .map(|&k| voltage_spread(base, k as usize))
                .fold(0.0, f64::max),
            head_kva_max: converged
                .iter()
                .map(|&k| base.solutions[k as usize].head_power_kva().norm())
                .fold(0.0, f64::max),
            loading_max: converged
                .iter()
                .map(|&k| base.max_loading[k as usize])
                .fold(0.0, f64::max),
            load_current_below,
            subtree_max_pu: subtrees.max_pu,
            subtree_max_loading: subtrees.max_loading,
            subtree_max_answer: subtrees.max_answer,
            angle_spread_max: converged
                .iter()
                .map(|&k| {
                    let (lo, hi) = subtrees.angle_range[k as usize];
                    f64::from(hi) - f64::from(lo)
                })
                .fold(0.0, f64::max),
            angles: subtrees
                .angle_range
                .into_iter()
                .map(AngleRange::new)
                .collect(),
            answer_drop_max_kv: subtrees
                .answer_drop_kv
                .iter()
                .copied()
                .fold(0.0, f32::max)
                .into(),
            subtree_window_min_pu: (0..n)
                .map(|j| {
                    converged
                        .iter()
                        .map(|&k| base.subtree_min_pu[k as usize * n + j])
                        .fold(f32::INFINITY, f32::min)
                })
                .collect(),
            answer_drop_kv: subtrees.answer_drop_kv,
            window: subtrees.window,
            children_start,
            children,
            node_v_min_kv: (0..n)
                .map(|j| {
                    base.voltage_kv[j * steps..(j + 1) * steps]
                        .iter()
                        .copied()
                        .fold(f32::INFINITY, f32::min)
                })
                .collect(),
        }
    }
}

impl FigureOrders {
    /// Local node `j`'s children.
    fn children(&self, j: usize) -> &[u32] {
        &self.children[self.children_start[j] as usize..self.children_start[j + 1] as usize]
    }
}

/// A feeder's rated branches in a few classes by rating (the head a class of
/// its own), and per class and step the highest loading and answer of its
/// branches: with the new load's largest current over a class's least
/// rating, a bound on every branch of the class, a few operations a step.
#[derive(Clone, Debug, Default)]
struct RatingClasses {
    /// Per class, the least rating of its branches, A.
    rated_a: Vec<f64>,
    /// Per local node, its inbound branch's class ([`RatingClasses::NONE`]
    /// unrated); the head's is `head`.
    of_node: Vec<u8>,
    head: Option<u8>,
    /// Per class and step (class-major): the highest loading of a branch of
    /// the class, a fraction, and the highest of a branch's load currents
    /// below it over its rating.
    loading: Vec<f32>,
    answer: Vec<f32>,
    /// The same highest loading over the branches that export against any
    /// load of power factor at least 0.8 lagging (their current at more than
    /// a quarter turn from any such load's): a load's current adds to theirs
    /// at most as the hypotenuse. `loading` is over the others.
    exporting: Vec<f32>,
    /// Per class, the largest `answer` of the window.
    answer_max: Vec<f32>,
    /// Per class, the converged steps by `loading`, highest first, and by
    /// `exporting`.
    orders: Vec<Vec<u32>>,
    export_orders: Vec<Vec<u32>>,
}

impl RatingClasses {
    const NONE: u8 = u8::MAX;
    /// More classes would cost every bound more than closer ratings save.
    const MOST: usize = 6;

    /// The largest `tan(phi)` of a load the export split holds for (power
    /// factor 0.8 lagging).
    const EXPORT_TAN_PHI: f64 = 0.75;

    fn new(
        base: &FeederBase,
        load_current_below: &[f32],
        angle_range: &[(f32, f32)],
        converged: &[u32],
    ) -> Self {
        let e = &base.electrical;
        let n = e.len();
        let steps = base.loads.step_count();
        let mut ratings: Vec<f64> = e.rated_a[1..]
            .iter()
            .copied()
            .filter(|a| a.is_finite())
            .collect();
        ratings.sort_by(f64::total_cmp);
        ratings.dedup();
        // Consecutive ratings share a class; a class bounds with its least.
        let per_class = ratings.len().div_ceil(Self::MOST).max(1);
        let mut rated_a: Vec<f64> = ratings.chunks(per_class).map(|c| c[0]).collect();
        let of_node: Vec<u8> = e
            .rated_a
            .iter()
            .enumerate()
            .map(|(j, &a)| {
                if j == 0 || !a.is_finite() {
                    Self::NONE
                } else {
                    (ratings.partition_point(|&r| r < a) / per_class) as u8
                }
            })
            .collect();
        let head = e.head_rated_a.map(|a| {
            rated_a.push(a);
            (rated_a.len() - 1) as u8
        });
        let classes = rated_a.len();
        let mut loading = vec![0.0f32; classes * steps];
        let mut answer = vec![0.0f32; classes * steps];
        let mut exporting = vec![0.0f32; classes * steps];
        let widest_angle = Self::EXPORT_TAN_PHI.atan();
        for &k in converged {
            let k = k as usize;
            let solution = &base.solutions[k];
            let below = &load_current_below[k * n..(k + 1) * n];
            // A load's current leaves the voltage's angle by up to its own
            // angle, lagging.
            let (lo, hi) = angle_range[k];
            let directions = AngleRange::new((lo - widest_angle as f32, hi));
            let mut note = |c: usize, current: Complex64, below_a: f64, rated: f64| {
                let at = c * steps + k;
                let magnitude = magnitude(current);
                // Rounded up: single precision must not lower a bound.
                let fraction = (magnitude / rated * (1.0 + 1e-6)) as f32;
                let exports = magnitude > 0.0 && directions.cos_range(current / magnitude).1 <= 0.0;
                let row = if exports {
                    &mut exporting
                } else {
                    &mut loading
                };
                row[at] = row[at].max(fraction);
                answer[at] = answer[at].max((below_a / rated * (1.0 + 1e-6)) as f32);
            };
            for j in 1..n {
                if of_node[j] != Self::NONE {
                    note(
                        usize::from(of_node[j]),
                        solution.i_a(j),
                        f64::from(below[j]),
                        e.rated_a[j],
                    );
                }
            }
            if let (Some(c), Some(rated)) = (head, e.head_rated_a) {
                note(usize::from(c), base.head_i_a[k], f64::from(below[0]), rated);
            }
        }
        let sorted = |rows: &[f32]| -> Vec<Vec<u32>> {
            (0..classes)
                .map(|c| {
                    let mut order = converged.to_vec();
                    let row = &rows[c * steps..(c + 1) * steps];
                    order.sort_by(|a, b| row[*b as usize].total_cmp(&row[*a as usize]));
                    order
                })
                .collect()
        };
        let (orders, export_orders) = (sorted(&loading), sorted(&exporting));
        let answer_max = (0..classes)
            .map(|c| {
                answer[c * steps..(c + 1) * steps]
                    .iter()
                    .copied()
                    .fold(0.0, f32::max)
            })
            .collect();
        Self {
            rated_a,
            of_node,
            head,
            loading,
            answer,
            exporting,
            answer_max,
            orders,
            export_orders,
        }
    }
}

/// The nodes of a step whose voltages lie at the ends of its range of angles,
/// found without an `atan2` a node: while every voltage lies in the right half
/// plane, its angle rises with `im / re`, so the two ends are the nodes of the
/// least and the largest ratio, and only theirs are taken. On a city's
/// feeders, an angle a node and step was a tenth of the cost of a feeder's
/// figure orders.
struct AngleExtremes {
    least: (f64, usize),
    largest: (f64, usize),
    /// Whether a voltage lay outside the right half plane (then every angle
    /// is taken).
    turned: bool,
    seen: usize,
}

impl Default for AngleExtremes {
    fn default() -> Self {
        Self {
            least: (f64::INFINITY, 0),
            largest: (f64::NEG_INFINITY, 0),
            turned: false,
            seen: 0,
        }
    }
}

impl AngleExtremes {
    /// Notes the next node's voltage (nodes in order from 0).
    fn observe(&mut self, v: Complex64) {
        let node = self.seen;
        self.seen += 1;
        if v.re <= 0.0 {
            self.turned = true;
            return;
        }
        let ratio = v.im / v.re;
        if ratio < self.least.0 {
            self.least = (ratio, node);
        }
        if ratio > self.largest.0 {
            self.largest = (ratio, node);
        }
    }

    /// The least and the largest angle of the nodes noted, rad (infinite
    /// without any): `v_kv(j)` gives node `j`'s voltage again.
    fn range(&self, v_kv: impl Fn(usize) -> Complex64) -> (f64, f64) {
        if self.seen == 0 {
            return (f64::INFINITY, f64::NEG_INFINITY);
        }
        if self.turned {
            return (0..self.seen)
                .map(|j| v_kv(j).arg())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), a| {
                    (lo.min(a), hi.max(a))
                });
        }
        (v_kv(self.least.1).arg(), v_kv(self.largest.1).arg())
    }
}

/// What [`FigureOrders`] keeps of each step's subtrees.
struct Subtrees {
    max_pu: Vec<f32>,
    max_loading: Vec<f32>,
    max_answer: Vec<f32>,
    angle_range: Vec<(f32, f32)>,
    answer_drop_kv: Vec<f32>,
    /// Per local node over the window: its own branch's highest loading and
    /// answer over rating, and its subtree's.
    window: WindowMaxima,
}

/// Per local node, the highest of a figure over the window.
#[derive(Clone, Debug, Default)]
struct WindowMaxima {
    own_loading: Vec<f32>,
    own_answer: Vec<f32>,
    subtree_loading: Vec<f32>,
    subtree_answer: Vec<f32>,
}

impl Subtrees {
    fn new(base: &FeederBase, load_current_below: &[f32]) -> Self {
        let e = &base.electrical;
        let n = e.len();
        let steps = base.loads.step_count();
        let mut this = Self {
            max_pu: vec![0.0; n * steps],
            max_loading: vec![0.0; n * steps],
            max_answer: vec![0.0; n * steps],
            angle_range: vec![(0.0, 0.0); steps],
            answer_drop_kv: vec![0.0; steps],
            window: WindowMaxima {
                own_loading: vec![0.0; n],
                own_answer: vec![0.0; n],
                subtree_loading: vec![0.0; n],
                subtree_answer: vec![0.0; n],
            },
        };
        let mut drop_kv = vec![0.0f64; n];
        // `hypot` once a node, not once a node and step.
        let z_ohm: Vec<f64> = e.z_ohm.iter().map(|z| z.norm()).collect();
        for k in (0..steps).filter(|&k| base.solutions[k].converged) {
            let solution = &base.solutions[k];
            let row = k * n..(k + 1) * n;
            let below = &load_current_below[row.clone()];
            let (max_pu, max_loading, max_answer) = (
                &mut this.max_pu[row.clone()],
                &mut this.max_loading[row.clone()],
                &mut this.max_answer[row],
            );
            let mut angles = AngleExtremes::default();
            let mut largest_drop: f64 = 0.0;
            for j in 0..n {
                let v = solution.v_kv(j);
                angles.observe(v);
                max_pu[j] = (magnitude(v) / e.nominal_kv[j]) as f32;
                if j > 0 {
                    drop_kv[j] = drop_kv[e.parent[j] as usize]
                        + SQRT_3 / 1000.0 * z_ohm[j] * f64::from(below[j]);
                    largest_drop = largest_drop.max(drop_kv[j]);
                    if e.rated_a[j].is_finite() {
                        max_loading[j] = (magnitude(solution.i_a(j)) / e.rated_a[j]) as f32;
                        max_answer[j] = (f64::from(below[j]) / e.rated_a[j]) as f32;
                        let window = &mut this.window;
                        window.own_loading[j] = window.own_loading[j].max(max_loading[j]);
                        window.own_answer[j] = window.own_answer[j].max(max_answer[j]);
                    }
                }
            }
            // Parents come first: folding from the last node up fills subtrees.
            for j in (1..n).rev() {
                let parent = e.parent[j] as usize;
                max_pu[parent] = max_pu[parent].max(max_pu[j]);
                max_loading[parent] = max_loading[parent].max(max_loading[j]);
                max_answer[parent] = max_answer[parent].max(max_answer[j]);
            }
            let window = &mut this.window;
            for j in 0..n {
                window.subtree_loading[j] = window.subtree_loading[j].max(max_loading[j]);
                window.subtree_answer[j] = window.subtree_answer[j].max(max_answer[j]);
            }
            let (lo, hi) = angles.range(|j| solution.v_kv(j));
            // Rounded outwards: single precision must not narrow the range.
            this.angle_range[k] = ((lo - 1e-6) as f32, (hi + 1e-6) as f32);
            this.answer_drop_kv[k] = (largest_drop * (1.0 + 1e-6)) as f32;
        }
        // Single precision rounds either way: the maxima are kept a hair high.
        for x in this
            .max_pu
            .iter_mut()
            .chain(&mut this.max_loading)
            .chain(&mut this.max_answer)
            .chain(&mut this.window.own_loading)
            .chain(&mut this.window.own_answer)
            .chain(&mut this.window.subtree_loading)
            .chain(&mut this.window.subtree_answer)
        {
            *x *= 1.0 + 1e-6;
        }
        this
    }
}

/// [`FigureOrders::load_current_below`] of a base.
fn load_current_below(engine: &Engine, base: &FeederBase) -> Vec<f32> {
    let e = &base.electrical;
    let n = e.len();
    let steps = base.loads.step_count();
    let mut below = vec![0.0f32; steps * n];
    let (mut p, mut q) = (vec![0.0; n], vec![0.0; n]);
    for k in (0..steps).filter(|&k| base.solutions[k].converged) {
        engine.base_node_loads(base, k, &mut p, &mut q);
        let row = &mut below[k * n..(k + 1) * n];
        let solution = &base.solutions[k];
        for j in 1..n {
            let kva = (p[j] * p[j] + q[j] * q[j]).sqrt();
            if kva > 0.0 {
                row[j] = (kva / (SQRT_3 * magnitude(solution.v_kv(j)))) as f32;
            }
        }
        // Parents come first: summing from the last node up fills subtrees.
        for j in (1..n).rev() {
            let parent = e.parent[j] as usize;
            row[parent] += row[j];
        }
    }
    below
}

/// Which figure a scan proves.
#[derive(Clone, Copy)]
enum Scan {
    Loading,
    Head,
    VMin,
    VMax,
    Substation,
}

impl Engine {
    /// The worst figures over every step of the window with `demand_kw` (shaped
    /// by `shape`) added at `local`: each a power flow's, found by bounding
    /// steps and solving only those whose bounds could change a figure.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn figures_at_demand(
        &self,
        base: &FeederBase,
        local: u32,
        path: &CandidatePath,
        demand_kw: f64,
        load: &AddedLoad<'_>,
        shape: &[f64],
        scratch: &mut Scratch,
    ) -> WorstChecks {
        let mut worst = WorstChecks::NONE;
        let steps = base.loads.step_count();
        let orders = base
            .figure_orders
            .get_or_init(|| FigureOrders::new(self, base));
        // A step whose base flow collapsed, or where the load draws nothing, is
        // as the base has it.
        for &k in &orders.collapsed {
            absorb(&mut worst, &base.observed[k as usize]);
        }
        let flat = load.profile.is_none();
        if demand_kw <= 0.0 {
            for k in 0..steps {
                absorb(&mut worst, &base.observed[k]);
            }
            return worst;
        }
        let mut largest_factor: f64 = if flat { 1.0 } else { 0.0 };
        if !flat {
            for (k, &factor) in shape.iter().enumerate().take(steps) {
                if factor > 0.0 {
                    largest_factor = largest_factor.max(factor);
                } else if base.solutions[k].converged {
                    absorb(&mut worst, &base.observed[k]);
                }
            }
        }

        let e = &base.electrical;
        let mut z_from_busbar = std::mem::take(&mut scratch.z_magnitude);
        z_from_busbar.clear();
        z_from_busbar.extend(path.z_from_busbar.iter().map(|z| z.norm()));
        let n = e.len();
        let z_path = &path.z_from_busbar[..];
        let runs = &path.runs[..];
        let path = &path.nodes[..];
        let ratings = path.iter().map(|&p| e.rated_a[p]).filter(|a| a.is_finite());
        let (levels, level_count) = path_levels(path, z_path, &z_from_busbar);
        let candidate = Candidate {
            base,
            orders,
            levels,
            level_count,
            v_min_active: std::cell::RefCell::new(None),
            loading_active: std::cell::RefCell::new(None),
            export_split: (0.0..=RatingClasses::EXPORT_TAN_PHI).contains(&load.tan_phi),
            local,
            path,
            z_candidate: z_from_busbar.first().copied().unwrap_or(0.0),
            z_from_busbar: &z_from_busbar,
            runs,
            path_classes: {
                let classes = &orders.classes;
                path.iter()
                    .map(|&p| classes.of_node[p])
                    .chain(classes.head)
                    .filter(|&c| c != RatingClasses::NONE)
                    .fold(0u64, |bits, c| bits | 1 << c)
            },
            path_class_window: path_class_window(base, orders, path),
            z_path,
            weakest_a: ratings.clone().fold(f64::INFINITY, f64::min),
            strongest_a: ratings.fold(0.0, f64::max),
            head_rated_a: e.head_rated_a,
            group_rated_kva: self.group_rated_kva(base.group),
            kva_per_kw: (1.0 + load.tan_phi * load.tan_phi).sqrt(),
            tan_phi: load.tan_phi,
        };

        // The load's largest reach over the window: at its largest factor and
        // the candidate's lowest voltage. Where it might collapse the feeder,
        // no scan stops early.
        let widest = candidate.reach_at(
            f64::from(orders.node_v_min_kv[local as usize]),
            demand_kw * largest_factor,
        );
        // For the lowest-voltage scan, the path's subtrees (see
        // `Candidate::levels`): a node of one but not of the next falls by at
        // most what it shares with the candidate, and lies at no step below
        // the subtree's lowest of the window. Per subtree: that lowest, pu,
        // and that fall at the widest reach, pu.
        //
        // That fall is at most the load's largest current through the
        // impedance shared, or its part in phase with the node's voltage:
        // at a step, the load's current at the base voltage lags the
        // candidate's by its power factor's angle, and a node's voltage lies
        // within the window's widest spread of angles of the candidate's. As
        // the voltage falls the current moves by at most `growth` of itself
        // (angle included), at most the reach's fall of its largest.
        let mut subtree_floors = [(0.0, 0.0); LEVELS];
        if let Some(r) = &widest {
            let spread = orders.angle_spread_max;
            let relative = AngleRange::new((-spread as f32, spread as f32));
            let fall = r.growth / (1.0 + r.growth);
            let at_base = Complex64::new(1.0, -load.tan_phi) * r.current_a * (1.0 - fall)
                / candidate.kva_per_kw;
            for (floor, level) in subtree_floors
                .iter_mut()
                .zip(&candidate.levels[..candidate.level_count])
            {
                let drop_kv = (level.shared_ohm * r.drop_kv_per_ohm()).min(
                    in_phase_drop_kv(&level.impedance, &relative, at_base)
                        + level.shared_ohm * fall * r.drop_kv_per_ohm(),
                );
                *floor = (
                    f64::from(orders.subtree_window_min_pu[level.node]),
                    drop_kv / e.nominal_kv[level.node],
                );
            }
        }
        let subtree_floors = &subtree_floors[..candidate.level_count];
        let head_rated = e.head_rated_a.unwrap_or(f64::INFINITY);
        let largest_current =
            orders.loading_max * candidate.strongest_a.max(e.head_rated_a.unwrap_or(0.0));
        // Whether no step after `k` in the scan's order can change its figure.
        let done = |scan: Scan, k: usize, found: &Found| {
            let Some(r) = &widest else {
                return false;
            };
            let grow = 1.0 + r.growth;
            match scan {
                Scan::Loading => unreachable!("the loading scan walks the rating classes"),
                Scan::Head => {
                    base.head_i_a[k].norm() * grow / head_rated + r.current_a / head_rated
                        <= found.head + SLACK
                }
                Scan::VMin => {
                    // Nodes outside the path's subtrees share nothing with
                    // it. Each part falls as the step's lowest rises, so the
                    // order's lowest first still ends the scan.
                    let lowest = base.feeder_min_pu[k];
                    let with_load = subtree_floors
                        .iter()
                        .map(|&(window_min, fall)| lowest.max(window_min) - fall)
                        .fold(lowest, f64::min);
                    with_load.max(lowest - candidate.own_drop_pu(r)) - r.growth * orders.spread_max
                        >= found.v_min - SLACK
                }
                Scan::VMax => {
                    base.observed[k].v_max_pu + r.growth * orders.spread_max <= found.v_max + SLACK
                }
                Scan::Substation => {
                    candidate.group_rated_kva <= 0.0
                        || candidate.substation_kva(
                            base.group_kva[k].norm(),
                            r,
                            candidate.path_losses_kva(
                                largest_current,
                                largest_current * r.growth + r.current_a,
                            ),
                            orders.head_kva_max,
                        ) / candidate.group_rated_kva
                            <= found.substation + SLACK
                }
            }
        };
        let mut solved = std::mem::take(&mut scratch.figure_solved);
        solved.clear();
        solved.resize(steps, false);
        // A step is solved where its bounds could still change the figure
        // `scan` proves.
        let mut visit = |scan: Scan, k: usize, worst: &mut WorstChecks, scratch: &mut Scratch| {
            if k >= steps || solved[k] || shape[k] <= 0.0 {
                return;
            }
            let found = Found::from_worst(worst);
            if let Some(reach) = candidate.reach(k, demand_kw * shape[k]) {
                // Worked out once for both bounds.
                let new_current = candidate.new_current(k, &reach);
                let quick = candidate.quick_bounds(
                    scan,
                    k,
                    &reach,
                    new_current,
                    f64::from(orders.load_current_below[k * n]),
                );
                if !found.can_change(scan, &quick)
                    || !found.can_change(
                        scan,
                        &candidate.path_bounds(scan, &quick, &reach, new_current, &found),
                    )
                {
                    return;
                }
            }
            solved[k] = true;
            let o = self.exact(base, k, local, demand_kw * shape[k], load, scratch);
            absorb(worst, &o);
        };
        // A load mostly finds its figures at or near the base's own worst
        // steps: solving those first gives each scan its figure early, so
        // that fewer steps on its way can still change it. (Seeds taken from
        // the previous candidate were better still but made the figures
        // depend, within their tolerance, on which thread ranked what.)
        for (scan, k) in [
            Scan::Loading,
            Scan::Head,
            Scan::VMin,
            Scan::VMax,
            Scan::Substation,
        ]
        .into_iter()
        .zip(orders.worst_steps)
        {
            visit(scan, k as usize, &mut worst, scratch);
        }
        // The loading scan walks each rating class's order, always the one
        // whose next step could show the most; it stops once none could
        // change the figure (each step not yet reached is below every
        // class's next one).
        candidate.narrow_loading(widest.as_ref(), Found::from_worst(&worst).loading);
        let classes = &orders.classes;
        let class_count = classes.rated_a.len();
        let mut next = std::mem::take(&mut scratch.class_next);
        next.clear();
        next.resize(2 * class_count, 0);
        // Lists `0..class_count` are the classes' importing branches, the
        // rest their exporting ones.
        let list = |l: usize| {
            if l < class_count {
                (l, &classes.orders[l], &classes.loading, false)
            } else {
                let c = l - class_count;
                (c, &classes.export_orders[c], &classes.exporting, true)
            }
        };
        // What each list's next step could show: worked out again only for
        // the list that moved on.
        let head = |l: usize, place: usize| {
            let (c, order, rows, exports) = list(l);
            let &k = order.get(place)?;
            Some(widest.as_ref().map_or(f64::INFINITY, |r| {
                candidate.class_loading(
                    c,
                    f64::from(rows[c * steps + k as usize]),
                    exports,
                    r.current_a,
                    r.growth,
                ) + f64::from(classes.answer_max[c]) * r.growth
            }))
        };
        // The segments' classes and the head's.
        let mut heads = [None; 2 * (RatingClasses::MOST + 1)];
        for (l, most) in heads.iter_mut().enumerate().take(next.len()) {
            *most = head(l, 0);
        }
        loop {
            let mut best: Option<(f64, usize)> = None;
            for (l, most) in heads.iter().enumerate() {
                if let Some(most) = *most
                    && best.is_none_or(|(b, _)| most > b)
                {
                    best = Some((most, l));
                }
            }
            let Some((most, l)) = best else {
                break;
            };
            if most <= Found::from_worst(&worst).loading + SLACK {
                break;
            }
            let k = list(l).1[next[l]] as usize;
            next[l] += 1;
            heads[l] = head(l, next[l]);
            visit(Scan::Loading, k, &mut worst, scratch);
        }
        scratch.class_next = next;
        for (scan, order) in [
            (Scan::Head, &orders.by_head),
            (Scan::VMin, &orders.by_v_min),
            (Scan::Substation, &orders.by_group),
            (Scan::VMax, &orders.by_v_max),
        ] {
            if matches!(scan, Scan::VMin) {
                candidate.narrow_v_min(widest.as_ref(), Found::from_worst(&worst).v_min);
            }
            for &k in order {
                let k = k as usize;
                if done(scan, k, &Found::from_worst(&worst)) {
                    break;
                }
                visit(scan, k, &mut worst, scratch);
            }
        }
        scratch.figure_solved = solved;
        scratch.z_magnitude = z_from_busbar;
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angle_ranges_bound_the_cosine_of_every_angle_within_them() {
        let mut seed = 11u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1_000_000) as f64 / 1e6
        };
        for _ in 0..2000 {
            let lo = (next() - 0.5) * 2.0 * std::f64::consts::PI;
            let width = next() * next() * 4.0;
            let hi = lo + width;
            let shift = (next() - 0.5) * 4.0 * std::f64::consts::PI;
            let range = AngleRange::new((lo as f32, hi as f32));
            let (least, largest) = range.cos_range(Complex64::from_polar(1.0, shift));
            let (lo, hi) = (f64::from(lo as f32), f64::from(hi as f32));
            let (mut seen_least, mut seen_largest) = (f64::INFINITY, f64::NEG_INFINITY);
            for i in 0..=400 {
                let cos = (lo + (hi - lo) * f64::from(i) / 400.0 - shift).cos();
                (seen_least, seen_largest) = (seen_least.min(cos), seen_largest.max(cos));
                assert!(
                    least <= cos + 1e-12 && cos <= largest + 1e-12,
                    "cos {cos} outside [{least}, {largest}] for [{lo}, {hi}] against {shift}"
                );
            }
            // Not wider than the sampled extremes allow (the sampling's own
            // spacing aside).
            if width < std::f64::consts::PI {
                assert!(least >= seen_least - 1e-3 && largest <= seen_largest + 1e-3);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// The two ends' angles are the least and largest of every node's:
        /// for a feeder's few degrees, and spread past the right half plane,
        /// where the ratio no longer orders the angles.
        #[test]
        fn angle_extremes_are_the_least_and_largest_angle_of_every_node(
            spread in proptest::sample::select(vec![0.2, 7.0]),
            polar in proptest::collection::vec((5.0f64..11.0, -0.5f64..0.5), 1..40),
        ) {
            let voltages: Vec<Complex64> = polar
                .iter()
                .map(|&(magnitude, turn)| Complex64::from_polar(magnitude, turn * spread))
                .collect();
            let mut extremes = AngleExtremes::default();
            for &v in &voltages {
                extremes.observe(v);
            }
            let every = voltages
                .iter()
                .map(|v| v.arg())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), a| {
                    (lo.min(a), hi.max(a))
                });
            proptest::prop_assert_eq!(
                extremes.range(|j| voltages[j]),
                every,
                "{:?}",
                voltages
            );
        }
    }
}
