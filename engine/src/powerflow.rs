//! Balanced positive-sequence power flow on a feeder's radial tree by
//! backward/forward sweep.
//!
//! Units are those of the field: line-to-line voltages in kV, three-phase powers in
//! kW, kvar and kVA, currents in A, impedances in ohm. With `S = sqrt(3) V conj(I)`,
//! a load draws `I = conj(S / (sqrt(3) V))` and a branch drops
//! `sqrt(3) Z I / 1000` kV. Loads are constant power; the source is the head busbar
//! at its measured voltage, angle zero.
//!
//! Throughout the engine, magnitudes are taken as `norm_sqr().sqrt()`:
//! `Complex::norm` calls `hypot`, whose care for overflow cost a third of a
//! ranking's time and buys nothing at kV and A.

use headroom_geodata::topology::{Branch, FeederTree};
use headroom_geodata::{FeederIx, Network};
use num_complex::{Complex32, Complex64};

pub(crate) const SQRT_3: f64 = 1.732_050_807_568_877_2;

/// A feeder prepared for power flow, indexed by the tree's local node index.
#[derive(Clone, Debug, Default)]
pub struct ElectricalFeeder {
    /// The feeder.
    pub feeder: FeederIx,
    /// Parent of each local node ([`NO_PARENT`](headroom_geodata::topology::NO_PARENT) for the busbar at 0).
    pub parent: Vec<u32>,
    /// Series impedance of the branch into each node, ohm (zero for switches).
    pub z_ohm: Vec<Complex64>,
    /// Line-to-line voltage drop per ampere through the branch into each node,
    /// kV/A: `sqrt(3) z / 1000`.
    pub drop_kv_per_a: Vec<Complex64>,
    /// Thermal limit of the branch into each node, A (`INFINITY` for switches).
    pub rated_a: Vec<f64>,
    /// The branch into each node.
    pub inbound: Vec<Option<Branch>>,
    /// Nominal voltage of each node, kV (the per-unit base).
    pub nominal_kv: Vec<f64>,
    /// `1 / nominal_kv^2` of each node: per-unit squares without a division.
    pub inv_nominal_kv_2: Vec<f64>,
    /// `1 / rated_a^2` of the branch into each node (0 for switches).
    pub inv_rated_a_2: Vec<f64>,
    /// Limit of the head breaker or CT, A.
    pub head_rated_a: Option<f64>,
}

impl ElectricalFeeder {
    /// Prepares a traced feeder.
    pub fn new(network: &Network, tree: &FeederTree) -> Self {
        let n = tree.nodes.len();
        let mut z_ohm = vec![Complex64::new(0.0, 0.0); n];
        let mut rated_a = vec![f64::INFINITY; n];
        for (local, inbound) in tree.inbound.iter().enumerate() {
            if let Some(Branch::Segment(s)) = inbound {
                let seg = network.segment(*s);
                z_ohm[local] = Complex64::new(seg.r_ohm(), seg.x_ohm());
                rated_a[local] = seg.rated_a;
            }
        }
        let nominal_kv: Vec<f64> = tree.nodes.iter().map(|n| network.node(*n).kv).collect();
        let mut e = Self {
            feeder: tree.feeder,
            parent: tree.parent.clone(),
            z_ohm,
            rated_a,
            inbound: tree.inbound.clone(),
            nominal_kv,
            head_rated_a: network.feeder(tree.feeder).rated_a,
            ..Self::default()
        };
        e.derive_per_node();
        e
    }

    /// Sets the figures worked out from the impedances, ratings and nominal
    /// voltages (`drop_kv_per_a`, `inv_nominal_kv_2`, `inv_rated_a_2`): what
    /// a tree put together branch by branch calls once it is whole.
    pub(crate) fn derive_per_node(&mut self) {
        self.drop_kv_per_a = self.z_ohm.iter().map(|z| SQRT_3 / 1000.0 * z).collect();
        self.inv_nominal_kv_2 = self.nominal_kv.iter().map(|kv| (kv * kv).recip()).collect();
        self.inv_rated_a_2 = self.rated_a.iter().map(|a| (a * a).recip()).collect();
    }

    /// Number of nodes, the busbar included.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether the tree has only its busbar.
    pub fn is_empty(&self) -> bool {
        self.parent.len() <= 1
    }

    /// The impedance from the busbar to local node `local`, ohm: one node's
    /// share of [`Self::path_impedance_ohm`], walked up its path.
    pub fn impedance_to(&self, local: usize) -> Complex64 {
        let mut z = Complex64::new(0.0, 0.0);
        let mut at = local;
        while at != 0 && at < self.len() {
            z += self.z_ohm[at];
            at = self.parent[at] as usize;
        }
        z
    }

    /// The impedance from the busbar to each node, ohm (zero at the busbar).
    pub fn path_impedance_ohm(&self) -> Vec<Complex64> {
        let mut z_path = vec![Complex64::new(0.0, 0.0); self.len()];
        for j in 1..self.len() {
            z_path[j] = z_path[self.parent[j] as usize] + self.z_ohm[j];
        }
        z_path
    }

    /// One over the magnitude of each node's impedance from the busbar,
    /// 1/ohm (infinite where it is zero: the busbar, and nodes behind switches
    /// only).
    pub fn inverse_path_impedance(&self) -> Vec<f64> {
        self.path_impedance_ohm()
            .iter()
            .map(|z| {
                let z = z.norm_sqr().sqrt();
                if z > 0.0 { z.recip() } else { f64::INFINITY }
            })
            .collect()
    }
}

/// Settings of the sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepSettings {
    /// Convergence: largest change of any node's voltage phasor between
    /// iterations, pu (which bounds the change of its magnitude).
    pub tolerance_pu: f64,
    /// Give up after this many iterations.
    pub max_iterations: usize,
    /// Converged also where the error left, estimated from the last change
    /// and the sweep's contraction (the ratio of the last two changes, at most
    /// [`TRUSTED_CONTRACTION`]), is under `tolerance_pu`: a sweep contracts
    /// twentyfold an iteration on most feeders, so a change ten times the
    /// tolerance leaves less than it; where it contracts slowly (a feeder
    /// near collapse) the change alone decides.
    pub tolerance_on_error_left: bool,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            tolerance_pu: 1e-6,
            max_iterations: 50,
            tolerance_on_error_left: false,
        }
    }
}

/// The largest contraction an iteration's change is read with (see
/// [`SweepSettings::tolerance_on_error_left`]): up to it, the error left is
/// at most the last change.
pub const TRUSTED_CONTRACTION: f64 = 0.5;

impl SweepSettings {
    /// Whether an iteration whose largest change (pu) is `change`, after one
    /// of `previous` (infinite at the first), ends the sweep.
    #[inline(always)]
    fn settled(&self, change: f64, previous: f64) -> bool {
        if change < self.tolerance_pu {
            return true;
        }
        // The first change measures the start, not the contraction.
        if !self.tolerance_on_error_left || !previous.is_finite() {
            return false;
        }
        let contraction = change / previous;
        contraction < TRUSTED_CONTRACTION
            && change * contraction / (1.0 - contraction) < self.tolerance_pu
    }
}

/// Voltages and branch currents of one power flow.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Solution {
    /// Voltage of each node, kV line-to-line (complex).
    pub v_kv: Vec<Complex64>,
    /// Current in the branch into each node, A; at 0, the feeder's head current.
    pub i_a: Vec<Complex64>,
    /// Iterations used.
    pub iterations: usize,
    /// Whether the tolerance was reached.
    pub converged: bool,
}

impl Solution {
    /// Complex power leaving the busbar into the feeder, kVA.
    pub fn head_power_kva(&self) -> Complex64 {
        SQRT_3 * self.v_kv[0] * self.i_a[0].conj()
    }

    /// Current at the feeder head, A.
    pub fn head_current_a(&self) -> f64 {
        self.i_a[0].norm_sqr().sqrt()
    }
}

/// What the checks read off a flow's nodes: the lowest and highest voltage
/// and the most loaded branch, each as a square (per unit of the node's
/// nominal, of the branch's rating) and the local node where it is, the
/// first in local order where several are equal. A branch without a rating
/// (the busbar's, a switch's) has a loading of 0 and is never the highest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FlowExtremes {
    pub(crate) v_min_2: f64,
    pub(crate) v_min_at: u32,
    pub(crate) v_max_2: f64,
    pub(crate) v_max_at: u32,
    pub(crate) loading_2: f64,
    pub(crate) segment_at: u32,
}

impl FlowExtremes {
    /// Before any node is offered.
    pub(crate) const NONE: Self = Self {
        v_min_2: f64::INFINITY,
        v_min_at: 0,
        v_max_2: f64::NEG_INFINITY,
        v_max_at: 0,
        loading_2: 0.0,
        segment_at: 0,
    };

    /// Of `W` flows of `e`, a lane each, node by node (extremes found on
    /// squares: the root is taken once, for the winner).
    #[inline(always)]
    pub(crate) fn of_lanes<const W: usize>(
        e: &ElectricalFeeder,
        solutions: [&Solution; W],
    ) -> [Self; W] {
        let n = e.len();
        let v: [&[Complex64]; W] = std::array::from_fn(|l| &solutions[l].v_kv[..n]);
        let i: [&[Complex64]; W] = std::array::from_fn(|l| &solutions[l].i_a[..n]);
        let (mut v_min_2, mut v_max_2, mut loading_2) =
            ([f64::INFINITY; W], [f64::NEG_INFINITY; W], [0.0f64; W]);
        let (mut v_min_at, mut v_max_at, mut segment_at) = ([0u32; W], [0u32; W], [0u32; W]);
        for j in 0..n {
            let (inverse_nominal_2, inverse_rated_2) = (e.inv_nominal_kv_2[j], e.inv_rated_a_2[j]);
            let mut v_2 = [0.0; W];
            let mut l_2 = [0.0; W];
            for l in 0..W {
                v_2[l] = v[l][j].norm_sqr() * inverse_nominal_2;
                l_2[l] = i[l][j].norm_sqr() * inverse_rated_2;
            }
            for l in 0..W {
                if v_2[l] < v_min_2[l] {
                    (v_min_2[l], v_min_at[l]) = (v_2[l], j as u32);
                }
                if v_2[l] > v_max_2[l] {
                    (v_max_2[l], v_max_at[l]) = (v_2[l], j as u32);
                }
                if l_2[l] > loading_2[l] {
                    (loading_2[l], segment_at[l]) = (l_2[l], j as u32);
                }
            }
        }
        std::array::from_fn(|l| Self {
            v_min_2: v_min_2[l],
            v_min_at: v_min_at[l],
            v_max_2: v_max_2[l],
            v_max_at: v_max_at[l],
            loading_2: loading_2[l],
            segment_at: segment_at[l],
        })
    }

    /// Takes in node `j`'s voltage square, in any order of nodes: of equal
    /// squares, the lowest index stays.
    #[inline(always)]
    pub(crate) fn offer_voltage(&mut self, v_2: f64, j: u32) {
        if v_2 < self.v_min_2 || (v_2 == self.v_min_2 && j < self.v_min_at) {
            (self.v_min_2, self.v_min_at) = (v_2, j);
        }
        if v_2 > self.v_max_2 || (v_2 == self.v_max_2 && j < self.v_max_at) {
            (self.v_max_2, self.v_max_at) = (v_2, j);
        }
    }

    /// Takes in the loading square of node `j`'s inbound branch, in any
    /// order of nodes, as [`Self::offer_voltage`] does.
    #[inline(always)]
    pub(crate) fn offer_loading(&mut self, l_2: f64, j: u32) {
        if l_2 > self.loading_2 || (l_2 == self.loading_2 && l_2 > 0.0 && j < self.segment_at) {
            (self.loading_2, self.segment_at) = (l_2, j);
        }
    }
}

/// A figure kept in single precision (see [`StoredSolution`]).
fn narrow(c: Complex64) -> Complex32 {
    Complex32::new(c.re as f32, c.im as f32)
}

/// A figure kept in single precision, back in double precision for arithmetic.
pub(crate) fn widen(c: Complex32) -> Complex64 {
    Complex64::new(f64::from(c.re), f64::from(c.im))
}

/// A solved power flow kept for screening and as a warm start, in single
/// precision (six digits are ample for both and halve a city's memory); the
/// head's power and current are kept exact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredSolution {
    v_kv: Vec<Complex32>,
    i_a: Vec<Complex32>,
    head_power_kva: Complex64,
    /// Whether the power flow converged.
    pub converged: bool,
}

impl StoredSolution {
    /// Keeps a solution.
    pub fn new(solution: &Solution) -> Self {
        Self {
            v_kv: solution.v_kv.iter().copied().map(narrow).collect(),
            i_a: solution.i_a.iter().copied().map(narrow).collect(),
            head_power_kva: solution.head_power_kva(),
            converged: solution.converged,
        }
    }

    /// Voltage of local node `i`, kV.
    pub fn v_kv(&self, i: usize) -> Complex64 {
        widen(self.v_kv[i])
    }

    /// Voltage of local node `i` as kept, kV.
    pub fn v_kv_single(&self, i: usize) -> Complex32 {
        self.v_kv[i]
    }

    /// Current in the branch into local node `i` (at 0, the head), A.
    pub fn i_a(&self, i: usize) -> Complex64 {
        widen(self.i_a[i])
    }

    /// Current in the branch into local node `i` as kept, A.
    pub fn i_a_single(&self, i: usize) -> Complex32 {
        self.i_a[i]
    }

    /// Complex power leaving the busbar into the feeder, kVA.
    pub fn head_power_kva(&self) -> Complex64 {
        self.head_power_kva
    }

    /// Current at the feeder head, A.
    pub fn head_current_a(&self) -> f64 {
        self.i_a(0).norm_sqr().sqrt()
    }

    /// Writes the voltages into `out`, to start a power flow from. The currents,
    /// which a sweep works out first thing, are only sized: their values are
    /// whatever `out` held.
    pub fn start_into(&self, out: &mut Solution) {
        self.start_into_nodes(self.v_kv.len(), |i| i, out);
    }

    /// [`Self::start_into`] for a tree of `nodes` of its nodes, `node(i)`
    /// the tree's `i`-th (a folded feeder's: see `chains`).
    pub(crate) fn start_into_nodes(
        &self,
        nodes: usize,
        node: impl Fn(usize) -> usize,
        out: &mut Solution,
    ) {
        out.v_kv.clear();
        out.v_kv.extend((0..nodes).map(|i| self.v_kv(node(i))));
        out.i_a.resize(nodes, Complex64::new(0.0, 0.0));
        out.converged = self.converged;
        out.iterations = 0;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.v_kv.len() + self.i_a.len()) * 8 + 48
    }
}

/// Solves the feeder with loads `p_kw[i] + j q_kvar[i]` at each local node `i`
/// (index 0, the busbar, carries none) and the busbar at `source_kv`.
///
/// `solution` is both the warm start (when its size matches) and the result.
pub fn sweep(
    feeder: &ElectricalFeeder,
    p_kw: &[f64],
    q_kvar: &[f64],
    source_kv: f64,
    settings: SweepSettings,
    solution: &mut Solution,
) {
    // A ranking's exact flows are most of its time.
    avx2_or_portable!(
        sweep_portable,
        fn(
            feeder: &ElectricalFeeder,
            p_kw: &[f64],
            q_kvar: &[f64],
            source_kv: f64,
            settings: SweepSettings,
            solution: &mut Solution,
        )
    )
}

#[inline(always)]
fn sweep_portable(
    feeder: &ElectricalFeeder,
    p_kw: &[f64],
    q_kvar: &[f64],
    source_kv: f64,
    settings: SweepSettings,
    solution: &mut Solution,
) {
    let n = feeder.len();
    debug_assert!(p_kw.len() == n && q_kvar.len() == n);
    let source = Complex64::new(source_kv, 0.0);
    if solution.v_kv.len() != n {
        solution.v_kv = vec![source; n];
        solution.i_a = vec![Complex64::new(0.0, 0.0); n];
    } else {
        // A warm start needs voltages only.
        solution.v_kv[0] = source;
        solution.i_a.resize(n, Complex64::new(0.0, 0.0));
    }
    solution.converged = false;
    let base_kv = feeder.nominal_kv[0].max(f64::MIN_POSITIVE);
    // Most nodes of a feeder carry no load: list the loaded ones once, as
    // conj(S) / sqrt(3), so that each iteration's load currents are
    // conj(S / (sqrt(3) V)) = (conj(S) / sqrt(3)) V / |V|^2, a product and a real
    // division, with no test per node.
    thread_local! {
        static LOADED: std::cell::Cell<Vec<(u32, Complex64)>> = std::cell::Cell::default();
    }
    let mut loaded = LOADED.take();
    loaded.clear();
    loaded.extend(
        (1..n)
            .filter(|&i| p_kw[i] != 0.0 || q_kvar[i] != 0.0)
            .map(|i| (i as u32, Complex64::new(p_kw[i], -q_kvar[i]) / SQRT_3)),
    );
    let parent = &feeder.parent[..n];
    let drop_per_a = &feeder.drop_kv_per_a[..n];
    let (v_kv, i_a) = (&mut solution.v_kv[..n], &mut solution.i_a[..n]);
    let mut previous_change = f64::INFINITY;
    for iteration in 1..=settings.max_iterations {
        // Backward: load currents at the present voltages, summed towards the busbar
        // (local indices put parents before their children).
        i_a.fill(Complex64::new(0.0, 0.0));
        for &(i, s) in &loaded {
            let v = v_kv[i as usize];
            // One division for both parts.
            i_a[i as usize] = s * v * v.norm_sqr().recip();
        }
        for i in (1..n).rev() {
            let current = i_a[i];
            i_a[parent[i] as usize] += current;
        }
        // Forward: drops from the busbar outwards. Convergence is judged on the
        // change of the voltage phasor, which bounds the change of its magnitude.
        let mut largest_change_2 = 0.0f64;
        for i in 1..n {
            let v = v_kv[parent[i] as usize] - drop_per_a[i] * i_a[i];
            let change_2 = (v - v_kv[i]).norm_sqr();
            // As `f64::max` (a NaN change is passed over; the largest starts at
            // zero), without its test for a NaN on the left.
            if change_2 > largest_change_2 {
                largest_change_2 = change_2;
            }
            v_kv[i] = v;
        }
        let largest_change = largest_change_2.sqrt() / base_kv;
        solution.iterations = iteration;
        if !largest_change.is_finite() {
            break;
        }
        if settings.settled(largest_change, previous_change) {
            solution.converged = true;
            break;
        }
        previous_change = largest_change;
    }
    LOADED.set(loaded);
}

/// The steps of one call of [`sweep_steps`], a lane each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepLoads {
    /// Active power at each local node, kW (the busbar at 0 carries none).
    pub p_kw: [Vec<f64>; LANES],
    /// Reactive power at each local node, kvar.
    pub q_kvar: [Vec<f64>; LANES],
    /// Busbar voltage, kV.
    pub source_kv: [f64; LANES],
}

impl StepLoads {
    /// Zero loads on `nodes` nodes in every lane.
    pub fn new(nodes: usize) -> Self {
        Self {
            p_kw: std::array::from_fn(|_| vec![0.0; nodes]),
            q_kvar: std::array::from_fn(|_| vec![0.0; nodes]),
            source_kv: [0.0; LANES],
        }
    }
}

/// Steps solved together by [`sweep_steps`]: four double-precision lanes fill one
/// AVX2 register.
pub const LANES: usize = 4;

/// Several steps of one feeder solved at once, as [`sweep`] solves one: the same
/// equations and tolerance, with each step in its own lane of every node's
/// figures, so that one pass over the tree does the arithmetic of [`LANES`]
/// steps. A base case has a power flow per quarter-hour of the window, and the
/// tree walk, not the arithmetic, is what one step at a time pays for.
///
/// Lane `l` solves `loads`' lane `l`; `solutions[l]` is its warm start (when
/// its size matches) and its result, taken at the iteration where that lane
/// meets the tolerance: each lane's result is, to the last bit, what [`sweep`]
/// gives for its step alone, whichever steps share the call.
pub fn sweep_steps(
    feeder: &ElectricalFeeder,
    loads: &StepLoads,
    settings: SweepSettings,
    lanes: &mut SweepLanes,
    solutions: &mut [Solution; LANES],
) {
    let warm: [bool; LANES] = std::array::from_fn(|l| solutions[l].v_kv.len() == feeder.len());
    resize_lanes(feeder, lanes);
    for (l, solution) in solutions.iter().enumerate().filter(|(l, _)| warm[*l]) {
        for (i, v) in solution.v_kv.iter().enumerate() {
            (lanes.v_re[i][l], lanes.v_im[i][l]) = (v.re, v.im);
        }
    }
    sweep_lanes_into(feeder, loads, settings, lanes, warm, Some(solutions));
}

/// A lane sweep's working figures per node, a lane per step: kept between
/// sweeps of one feeder (no allocation each), and after a sweep, its result
/// in the layout a lane computation over the same steps reads.
#[derive(Clone, Debug, Default)]
pub struct SweepLanes {
    /// Voltage, kV, real part.
    pub v_re: Vec<[f64; LANES]>,
    /// Voltage, kV, imaginary part.
    pub v_im: Vec<[f64; LANES]>,
    /// Current into each node's branch (at 0, the head's), A, real part.
    pub i_re: Vec<[f64; LANES]>,
    /// The same, imaginary part.
    pub i_im: Vec<[f64; LANES]>,
    /// Whether each lane reached the tolerance in the last sweep.
    pub converged: [bool; LANES],
    /// Iterations of the last sweep.
    pub iterations: usize,
    /// The loaded nodes of the last sweep, as conj(S) / sqrt(3) per lane.
    loaded: Vec<(usize, Lanes, Lanes)>,
}

impl SweepLanes {
    /// Lane `l`'s flow written into `out` (its buffers reused).
    pub fn write_solution(&self, l: usize, out: &mut Solution) {
        write_lane(&self.v_re, &self.v_im, &self.i_re, &self.i_im, l, out);
        out.iterations = self.iterations;
        out.converged = self.converged[l];
    }

    /// Complex power leaving the busbar in lane `l`, kVA (as
    /// [`Solution::head_power_kva`]).
    pub fn head_power_kva(&self, l: usize) -> Complex64 {
        SQRT_3
            * Complex64::new(self.v_re[0][l], self.v_im[0][l])
            * Complex64::new(self.i_re[0][l], self.i_im[0][l]).conj()
    }

    /// Scales the voltage drops from the busbar of each lane `l` where
    /// `by[l]` is `(from, to, scale)` by `scale`: `from` the source voltage
    /// they were solved at, `to` the new one (both real, kV). The lanes in one
    /// pass over the nodes.
    #[inline]
    pub fn rescale(&mut self, by: [Option<(f64, f64, f64)>; LANES]) {
        if by.iter().all(Option::is_none) {
            return;
        }
        let apply: [bool; LANES] = std::array::from_fn(|l| by[l].is_some());
        let from = lanes!(|l| by[l].map_or(0.0, |b| b.0));
        let to = lanes!(|l| by[l].map_or(0.0, |b| b.1));
        let scale = lanes!(|l| by[l].map_or(1.0, |b| b.2));
        for (re, im) in self.v_re.iter_mut().zip(self.v_im.iter_mut()) {
            // As `to + (v - from) * scale` in complex numbers with real ends.
            let scaled_re = lanes!(|l| to[l] + (re[l] - from[l]) * scale[l]);
            let scaled_im = lanes!(|l| 0.0 + (im[l] - 0.0) * scale[l]);
            *re = lanes!(|l| if apply[l] { scaled_re[l] } else { re[l] });
            *im = lanes!(|l| if apply[l] { scaled_im[l] } else { im[l] });
        }
    }

    /// Appends the node voltages of lanes `0..count`, lane after lane, to
    /// `out`, kV (each written once: no zeroed space first).
    #[inline]
    pub fn extend_with_voltages(&self, count: usize, out: &mut Vec<Complex64>) {
        out.reserve(count * self.v_re.len());
        for l in 0..count {
            out.extend(lane_values(&self.v_re, &self.v_im, l));
        }
    }
}

/// Lane `l`'s voltages and currents written into `out` (its buffers reused).
fn write_lane(
    v_re: &[Lanes],
    v_im: &[Lanes],
    i_re: &[Lanes],
    i_im: &[Lanes],
    l: usize,
    out: &mut Solution,
) {
    out.v_kv.clear();
    out.v_kv.extend(lane_values(v_re, v_im, l));
    out.i_a.clear();
    out.i_a.extend(lane_values(i_re, i_im, l));
}

/// Lane `l` of a figure's real and imaginary rows, node by node.
fn lane_values<'a>(
    re: &'a [Lanes],
    im: &'a [Lanes],
    l: usize,
) -> impl Iterator<Item = Complex64> + 'a {
    re.iter()
        .zip(im)
        .map(move |(re, im)| Complex64::new(re[l], im[l]))
}

/// Sizes the lanes for `feeder`.
fn resize_lanes(feeder: &ElectricalFeeder, lanes: &mut SweepLanes) {
    for figure in [
        &mut lanes.v_re,
        &mut lanes.v_im,
        &mut lanes.i_re,
        &mut lanes.i_im,
    ] {
        figure.resize(feeder.len(), [0.0; LANES]);
    }
}

/// The lane sweep on `lanes` alone: the lanes marked `warm` start from the
/// voltages they hold (a loose solve of consecutive steps keeps them there),
/// the others flat. The result stays in `lanes`.
pub fn sweep_lanes(
    feeder: &ElectricalFeeder,
    loads: &StepLoads,
    settings: SweepSettings,
    lanes: &mut SweepLanes,
    warm: [bool; LANES],
) {
    sweep_lanes_into(feeder, loads, settings, lanes, warm, None);
}

/// [`sweep_lanes`], writing each lane's flow into `finished[l]` (where given)
/// at the iteration where that lane converges or diverges, as [`sweep`] stops:
/// the other lanes' iterations go on in the lanes alone.
fn sweep_lanes_into(
    feeder: &ElectricalFeeder,
    loads: &StepLoads,
    settings: SweepSettings,
    lanes: &mut SweepLanes,
    warm: [bool; LANES],
    finished: Option<&mut [Solution; LANES]>,
) {
    resize_lanes(feeder, lanes);
    avx2_or_portable!(
        sweep_steps_portable,
        fn(
            feeder: &ElectricalFeeder,
            loads: &StepLoads,
            settings: SweepSettings,
            lanes: &mut SweepLanes,
            warm: [bool; LANES],
            finished: Option<&mut [Solution; LANES]>,
        )
    )
}

/// One figure of a node in every lane.
pub(crate) type Lanes = [f64; LANES];

#[inline(always)]
fn sweep_steps_portable(
    feeder: &ElectricalFeeder,
    loads: &StepLoads,
    settings: SweepSettings,
    lanes: &mut SweepLanes,
    warm: [bool; LANES],
    mut finished: Option<&mut [Solution; LANES]>,
) {
    let StepLoads {
        p_kw,
        q_kvar,
        source_kv,
    } = loads;
    let source_kv = *source_kv;
    let n = feeder.len();
    let zero: Lanes = [0.0; LANES];
    let SweepLanes {
        v_re,
        v_im,
        i_re,
        i_im,
        converged: lanes_converged,
        iterations: lanes_iterations,
        loaded,
    } = lanes;
    for l in 0..LANES {
        if !warm[l] {
            for (re, im) in v_re.iter_mut().zip(v_im.iter_mut()) {
                (re[l], im[l]) = (source_kv[l], 0.0);
            }
        }
    }
    v_re[0] = source_kv;
    v_im[0] = zero;
    // The loaded nodes, as conj(S) / sqrt(3) per lane (see `sweep`).
    // Plain loops: built at every sweep, and the iterator chain's closures were
    // left calls per node and lane.
    // The divisions are by lanes, and only for loaded nodes: one per lane and
    // node was most of a loose solve's time.
    loaded.clear();
    let p_kw: [&[f64]; LANES] = std::array::from_fn(|l| &p_kw[l][..n]);
    let q_kvar: [&[f64]; LANES] = std::array::from_fn(|l| &q_kvar[l][..n]);
    for i in 1..n {
        let p: Lanes = std::array::from_fn(|l| p_kw[l][i]);
        let q: Lanes = std::array::from_fn(|l| q_kvar[l][i]);
        // Every lane tested, no early exit: one compare of whole lanes.
        let mut any = false;
        for l in 0..LANES {
            any |= (p[l] != 0.0) | (q[l] != 0.0);
        }
        if any {
            let (mut s_re, mut s_im) = (zero, zero);
            for l in 0..LANES {
                s_re[l] = p[l] / SQRT_3;
                s_im[l] = -q[l] / SQRT_3;
            }
            loaded.push((i, s_re, s_im));
        }
    }
    let parent = &feeder.parent[..n];
    let drop_per_a = &feeder.drop_kv_per_a[..n];
    let (v_re, v_im) = (&mut v_re[..n], &mut v_im[..n]);
    let (i_re, i_im) = (&mut i_re[..n], &mut i_im[..n]);
    let base_kv = feeder.nominal_kv[0].max(f64::MIN_POSITIVE);
    let mut converged = [false; LANES];
    let mut diverged = [false; LANES];
    let mut done = [false; LANES];
    let mut previous_change = [f64::INFINITY; LANES];
    let mut iterations = 0;
    for iteration in 1..=settings.max_iterations {
        iterations = iteration;
        i_re.fill(zero);
        i_im.fill(zero);
        for (i, s_re, s_im) in loaded.iter() {
            let (vr, vi) = (v_re[*i], v_im[*i]);
            // Whole lanes: a lane at a time was left scalar, a division each.
            let inverse = lanes!(|l| (vr[l] * vr[l] + vi[l] * vi[l]).recip());
            i_re[*i] = lanes!(|l| (s_re[l] * vr[l] - s_im[l] * vi[l]) * inverse[l]);
            i_im[*i] = lanes!(|l| (s_re[l] * vi[l] + s_im[l] * vr[l]) * inverse[l]);
        }
        for i in (1..n).rev() {
            let (cr, ci) = (i_re[i], i_im[i]);
            let p = parent[i] as usize;
            // Whole lanes read, summed and written back: adding in place was
            // left as a scalar read-modify-write per lane.
            let (mut sum_re, mut sum_im) = (i_re[p], i_im[p]);
            for l in 0..LANES {
                sum_re[l] += cr[l];
                sum_im[l] += ci[l];
            }
            (i_re[p], i_im[p]) = (sum_re, sum_im);
        }
        let mut largest_change_2 = zero;
        for i in 1..n {
            let p = parent[i] as usize;
            let (pr, pi) = (v_re[p], v_im[p]);
            let (cr, ci) = (i_re[i], i_im[i]);
            let z = drop_per_a[i];
            let (old_re, old_im) = (v_re[i], v_im[i]);
            let mut new_re = zero;
            let mut new_im = zero;
            for l in 0..LANES {
                new_re[l] = pr[l] - (z.re * cr[l] - z.im * ci[l]);
                new_im[l] = pi[l] - (z.re * ci[l] + z.im * cr[l]);
                let (dr, di) = (new_re[l] - old_re[l], new_im[l] - old_im[l]);
                let change_2 = dr * dr + di * di;
                // As `f64::max` (a NaN change is passed over; the largest starts
                // at zero), in one instruction per register.
                if change_2 > largest_change_2[l] {
                    largest_change_2[l] = change_2;
                }
            }
            v_re[i] = new_re;
            v_im[i] = new_im;
        }
        for l in 0..LANES {
            // The test of `sweep`, to the same rounding.
            let largest_change = largest_change_2[l].sqrt() / base_kv;
            diverged[l] |= !largest_change.is_finite();
            converged[l] = !diverged[l] && settings.settled(largest_change, previous_change[l]);
            previous_change[l] = largest_change;
            let stops = converged[l] || diverged[l] || iteration == settings.max_iterations;
            if let Some(finished) = finished.as_deref_mut().filter(|_| stops && !done[l]) {
                write_lane(v_re, v_im, i_re, i_im, l, &mut finished[l]);
                finished[l].iterations = iteration;
                finished[l].converged = converged[l];
            }
            done[l] |= stops;
        }
        if done.iter().all(|d| *d) {
            break;
        }
    }
    *lanes_converged = converged;
    *lanes_iterations = iterations;
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_geodata::{LonLat, NetworkBuilder, NodeType, Topology};
    use proptest::prelude::*;

    fn at(i: usize) -> LonLat {
        LonLat::new(117.0 + 0.001 * i as f64, 31.0)
    }

    /// Busbar B, then a chain of segments with the given (r, x, length) to nodes 1..
    fn chain(segments: &[(f64, f64, f64)]) -> ElectricalFeeder {
        let mut b = NetworkBuilder::new();
        b.substation("S", at(0)).node("B", NodeType::Busbar, at(0));
        for i in 1..=segments.len() {
            b.node(&format!("N{i}"), NodeType::Pole, at(i));
        }
        for (i, (r, x, len)) in segments.iter().enumerate() {
            let from = if i == 0 {
                "B".to_owned()
            } else {
                format!("N{i}")
            };
            b.segment(
                &format!("L{}", i + 1),
                &from,
                &format!("N{}", i + 1),
                *r,
                *x,
                300.0,
                *len,
            );
        }
        b.feeder("F", "B", "N1", Some(400.0));
        let network = b.build().unwrap();
        let topology = Topology::trace(&network);
        ElectricalFeeder::new(&network, topology.tree(FeederIx(0)))
    }

    #[test]
    fn two_nodes_match_the_closed_form() {
        // One 10 kV segment of 1 ohm + j2 ohm feeding 1000 kW + j500 kvar.
        // Receiving-end voltage solves |V|^4 - (V0^2 - 2(RP + XQ))|V|^2 + (R^2+X^2)(P^2+Q^2) = 0
        // in kV, MW and Mvar with impedances in ohm.
        let feeder = chain(&[(1.0, 2.0, 1000.0)]);
        let mut sol = Solution::default();
        sweep(
            &feeder,
            &[0.0, 1000.0],
            &[0.0, 500.0],
            10.0,
            SweepSettings::default(),
            &mut sol,
        );
        assert!(sol.converged);
        let (r, x, p, q, v0) = (1.0, 2.0, 1.0, 0.5, 10.0f64);
        let b = v0 * v0 - 2.0 * (r * p + x * q);
        let c = (r * r + x * x) * (p * p + q * q);
        let v2 = (b + (b * b - 4.0 * c).sqrt()) / 2.0;
        assert!(
            (sol.v_kv[1].norm() - v2.sqrt()).abs() < 1e-5,
            "{} vs {}",
            sol.v_kv[1].norm(),
            v2.sqrt()
        );
        // The current is the load's: |S| / (sqrt(3) |V|).
        let i = (1000f64.hypot(500.0)) / (SQRT_3 * sol.v_kv[1].norm());
        assert!((sol.i_a[1].norm() - i).abs() < 1e-3);
        assert!((sol.head_current_a() - i).abs() < 1e-3);
        // Head power is load plus I^2 R losses (three-phase: 3 I^2 R).
        let losses_kw = 3.0 * i * i * r / 1000.0;
        assert!((sol.head_power_kva().re - (1000.0 + losses_kw)).abs() < 1e-3);
        assert!((sol.head_power_kva().im - (500.0 + 3.0 * i * i * x / 1000.0)).abs() < 1e-3);
    }

    #[test]
    fn three_nodes_by_hand() {
        // B -(0.5+j0.5 ohm)- N1 (200 kW) -(1+j1 ohm)- N2 (300 kW + j100), 10.5 kV source.
        let feeder = chain(&[(0.5, 0.5, 1000.0), (1.0, 1.0, 1000.0)]);
        let mut sol = Solution::default();
        sweep(
            &feeder,
            &[0.0, 200.0, 300.0],
            &[0.0, 0.0, 100.0],
            10.5,
            SweepSettings::default(),
            &mut sol,
        );
        assert!(sol.converged);
        // Fixed point solved independently by iterating the same equations in f64 to 1e-12.
        let mut v1 = Complex64::new(10.5, 0.0);
        let mut v2 = v1;
        for _ in 0..200 {
            let i2 = (Complex64::new(300.0, 100.0) / (SQRT_3 * v2)).conj();
            let i1 = (Complex64::new(200.0, 0.0) / (SQRT_3 * v1)).conj() + i2;
            v1 = Complex64::new(10.5, 0.0) - SQRT_3 * Complex64::new(0.5, 0.5) * i1 / 1000.0;
            v2 = v1 - SQRT_3 * Complex64::new(1.0, 1.0) * i2 / 1000.0;
        }
        assert!((sol.v_kv[1] - v1).norm() < 1e-5);
        assert!((sol.v_kv[2] - v2).norm() < 1e-5);
        // Hand check of magnitudes: about 0.5*(500)/10.5*... drop of ~0.05 kV at N2.
        assert!(sol.v_kv[2].norm() < sol.v_kv[1].norm() && sol.v_kv[1].norm() < 10.5);
        assert!(
            (10.5 - sol.v_kv[2].norm() - 0.0668).abs() < 0.002,
            "{}",
            sol.v_kv[2].norm()
        );
    }

    /// Judged on the error left, a sweep stops sooner on a feeder it
    /// contracts fast on, yet within the tolerance of the exact flow.
    #[test]
    fn a_sweep_judged_on_the_error_left_stops_sooner_and_within_it() {
        let feeder = chain(&[(0.3, 0.35, 2000.0); 12]);
        let exact = SweepSettings {
            tolerance_pu: 1e-13,
            ..SweepSettings::default()
        };
        let change = SweepSettings {
            tolerance_pu: 1e-4,
            ..SweepSettings::default()
        };
        let error_left = SweepSettings {
            tolerance_on_error_left: true,
            ..change
        };
        let mut sooner = 0;
        // 12 loads of 250 kW put the far end at 0.85 pu.
        for kw in [30.0, 100.0, 250.0] {
            let p: Vec<f64> = (0..13).map(|i| if i == 0 { 0.0 } else { kw }).collect();
            let q: Vec<f64> = p.iter().map(|p| p * 0.4).collect();
            let solve = |settings| {
                let mut flow = Solution::default();
                sweep(&feeder, &p, &q, 10.5, settings, &mut flow);
                flow
            };
            let (truth, by_change, by_error) = (solve(exact), solve(change), solve(error_left));
            assert!(truth.converged && by_error.converged, "{kw} kW");
            let error_pu = (0..13)
                .map(|i| (by_error.v_kv[i] - truth.v_kv[i]).norm() / 10.0)
                .fold(0.0, f64::max);
            assert!(error_pu < 1e-4, "{kw} kW: {error_pu} pu left");
            assert!(by_error.iterations <= by_change.iterations, "{kw} kW");
            sooner += usize::from(by_error.iterations < by_change.iterations);
        }
        assert_eq!(sooner, 3);
    }

    /// The first change measures the start, and a change shrinking by less
    /// than half is never read as a contraction: only the change decides.
    #[test]
    fn the_error_left_is_read_only_from_a_fast_contraction() {
        let settings = SweepSettings {
            tolerance_pu: 1e-4,
            tolerance_on_error_left: true,
            ..SweepSettings::default()
        };
        assert!(settings.settled(0.9e-4, f64::INFINITY));
        assert!(!settings.settled(1.5e-3, f64::INFINITY));
        // Twentyfold: 1.5e-3 leaves about 8e-5.
        assert!(settings.settled(1.5e-3, 3e-2));
        // Tenfold: 1.5e-3 leaves about 1.7e-4.
        assert!(!settings.settled(1.5e-3, 1.5e-2));
        // Slow: 1.1e-4 after 2e-4 would leave 1.3e-4 if it went on so, and
        // more if it slowed further.
        assert!(!settings.settled(1.1e-4, 2e-4));
        let by_change = SweepSettings {
            tolerance_on_error_left: false,
            ..settings
        };
        assert!(!by_change.settled(1.5e-3, 3e-2));
        assert!(by_change.settled(0.9e-4, 3e-2));
    }

    #[test]
    fn steps_solved_together_match_each_solved_alone() {
        let feeder = chain(&[(0.3, 0.3, 800.0), (0.5, 0.4, 600.0), (0.2, 0.1, 400.0)]);
        let n = feeder.len();
        let loads = [
            ([0.0, 200.0, 0.0, 300.0], [0.0, 50.0, 0.0, 100.0], 10.5),
            ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], 10.2),
            ([0.0, 900.0, 1200.0, 800.0], [0.0, 300.0, 400.0, 0.0], 10.0),
            ([0.0, 10.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0], 10.7),
        ];
        let lanes = StepLoads {
            p_kw: std::array::from_fn(|l| loads[l].0.to_vec()),
            q_kvar: std::array::from_fn(|l| loads[l].1.to_vec()),
            source_kv: std::array::from_fn(|l| loads[l].2),
        };
        let mut together: [Solution; LANES] = Default::default();
        // A warm start in one lane and a flat start in the others.
        together[2].v_kv = vec![Complex64::new(9.9, -0.1); n];
        let starts = together.clone();
        sweep_steps(
            &feeder,
            &lanes,
            SweepSettings::default(),
            &mut SweepLanes::default(),
            &mut together,
        );
        for (l, (p, q, source)) in loads.iter().enumerate() {
            let mut alone = starts[l].clone();
            sweep(&feeder, p, q, *source, SweepSettings::default(), &mut alone);
            assert!(together[l].converged && alone.converged, "lane {l}");
            // Each lane stops where its step alone stops, whatever the others do
            // (lane 2 starts warm, the unloaded lane 1 converges at once).
            assert_eq!(together[l].iterations, alone.iterations, "lane {l}");
            for i in 0..n {
                assert_eq!(together[l].v_kv[i], alone.v_kv[i], "lane {l} node {i}");
                assert_eq!(
                    together[l].i_a[i].norm(),
                    alone.i_a[i].norm(),
                    "lane {l} node {i}"
                );
            }
        }
    }

    /// Busbar B, then nodes N1..: N1 on B, each later node on an earlier one
    /// (`parents[k]` picks among them), with the given (r, x, length) segments.
    fn tree(parents: &[usize], segments: &[(f64, f64, f64)]) -> ElectricalFeeder {
        let mut b = NetworkBuilder::new();
        b.substation("S", at(0)).node("B", NodeType::Busbar, at(0));
        for i in 1..=segments.len() {
            b.node(&format!("N{i}"), NodeType::Pole, at(i));
        }
        for (k, (r, x, len)) in segments.iter().enumerate() {
            let i = k + 1;
            let from = if i == 1 {
                "B".to_owned()
            } else {
                format!("N{}", 1 + parents[k] % (i - 1))
            };
            b.segment(
                &format!("L{i}"),
                &from,
                &format!("N{i}"),
                *r,
                *x,
                300.0,
                *len,
            );
        }
        b.feeder("F", "B", "N1", Some(400.0));
        let network = b.build().unwrap();
        let topology = Topology::trace(&network);
        ElectricalFeeder::new(&network, topology.tree(FeederIx(0)))
    }

    /// Equal to the last bit, a NaN equal to any NaN (a diverged step's
    /// figures) and a zero to a zero of either sign: a lane computes the
    /// current of a node loaded only in another lane as 0 times its voltage,
    /// where the scalar sweep leaves a +0, which no later sum tells apart.
    fn same_bits(a: Complex64, b: Complex64) -> bool {
        let same =
            |x: f64, y: f64| x.to_bits() == y.to_bits() || x == y || (x.is_nan() && y.is_nan());
        same(a.re, b.re) && same(a.im, b.im)
    }

    /// Where two flows differ first, or `None` where they agree to the last bit.
    fn first_difference(a: &Solution, b: &Solution) -> Option<String> {
        if (a.converged, a.iterations) != (b.converged, b.iterations) {
            return Some(format!(
                "converged/iterations {:?} vs {:?}",
                (a.converged, a.iterations),
                (b.converged, b.iterations)
            ));
        }
        (0..a.v_kv.len().max(b.v_kv.len())).find_map(|i| {
            let (va, vb) = (a.v_kv.get(i), b.v_kv.get(i));
            let (ia, ib) = (a.i_a.get(i), b.i_a.get(i));
            let equal = matches!((va, vb), (Some(x), Some(y)) if same_bits(*x, *y))
                && matches!((ia, ib), (Some(x), Some(y)) if same_bits(*x, *y));
            (!equal).then(|| format!("node {i}: v {va:?} vs {vb:?}, i {ia:?} vs {ib:?}"))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The one promise of the two sweeps: each lane of a lane sweep is, to
        /// the last bit, the scalar sweep of its step alone (iterations and
        /// convergence included), and the portable and AVX2 builds of both give
        /// the same bits. On branching trees, with steps that converge, stop at
        /// the iteration limit, or collapse (a load far beyond the feeder).
        #[test]
        fn lanes_and_kernels_agree_with_the_scalar_sweep_to_the_last_bit(
            parents in prop::collection::vec(0usize..64, 30),
            segments in prop::collection::vec((0.05f64..0.6, 0.05f64..0.5, 50.0f64..2_000.0), 1..30),
            loads in prop::collection::vec(
                prop::collection::vec((0.0f64..400.0, -50.0f64..200.0, prop::bool::weighted(0.6)), 30),
                LANES,
            ),
            // Per lane: 1 is a normal day; 200 collapses most feeders.
            scale in prop::collection::vec(prop::sample::select(vec![0.0, 1.0, 3.0, 20.0, 200.0]), LANES),
            source_kv in prop::collection::vec(9.5f64..10.8, LANES),
            warm in prop::collection::vec(prop::bool::ANY, LANES),
            max_iterations in prop::sample::select(vec![1usize, 2, 3, 7, 50]),
            tolerance_on_error_left in prop::bool::ANY,
        ) {
            let feeder = tree(&parents, &segments);
            let n = feeder.len();
            let settings = SweepSettings {
                max_iterations,
                tolerance_on_error_left,
                ..SweepSettings::default()
            };
            let step_loads = StepLoads {
                p_kw: std::array::from_fn(|l| {
                    (0..n).map(|i| {
                        let (p, _, loaded) = loads[l][i % 30];
                        if i == 0 || !loaded { 0.0 } else { p * scale[l] }
                    }).collect()
                }),
                q_kvar: std::array::from_fn(|l| {
                    (0..n).map(|i| {
                        let (_, q, loaded) = loads[l][i % 30];
                        if i == 0 || !loaded { 0.0 } else { q * scale[l] }
                    }).collect()
                }),
                source_kv: std::array::from_fn(|l| source_kv[l]),
            };
            // A warm start: a flat profile a little below the source.
            let starts: [Solution; LANES] = std::array::from_fn(|l| {
                let mut start = Solution::default();
                if warm[l] {
                    start.v_kv = vec![Complex64::new(source_kv[l] * 0.98, -0.05); n];
                }
                start
            });
            if let Err(difference) = lanes_and_kernels_agree(&feeder, &step_loads, &starts, settings) {
                prop_assert!(false, "{difference}");
            }
        }
    }

    /// Lane sweep and scalar sweep of each step, under each kernel this
    /// processor has: `Err` naming the first figure that is not the same to
    /// the last bit, else the portable lane sweep's flows.
    fn lanes_and_kernels_agree(
        feeder: &ElectricalFeeder,
        step_loads: &StepLoads,
        starts: &[Solution; LANES],
        settings: SweepSettings,
    ) -> Result<[Solution; LANES], String> {
        let runs = crate::with_each_kernel(|| {
            let mut together = starts.clone();
            sweep_steps(
                feeder,
                step_loads,
                settings,
                &mut SweepLanes::default(),
                &mut together,
            );
            let alone: Vec<Solution> = (0..LANES)
                .map(|l| {
                    let mut alone = starts[l].clone();
                    sweep(
                        feeder,
                        &step_loads.p_kw[l],
                        &step_loads.q_kvar[l],
                        step_loads.source_kv[l],
                        settings,
                        &mut alone,
                    );
                    alone
                })
                .collect();
            (together, alone)
        });
        let (_, (first_together, first_alone)) = &runs[0];
        for l in 0..LANES {
            if let Some(d) = first_difference(&first_together[l], &first_alone[l]) {
                return Err(format!("lane {l} vs its step alone: {d}"));
            }
        }
        for (kernel, (together, alone)) in &runs[1..] {
            for l in 0..LANES {
                if let Some(d) = first_difference(&together[l], &first_together[l]) {
                    return Err(format!("{kernel} lanes vs portable lanes, lane {l}: {d}"));
                }
                if let Some(d) = first_difference(&alone[l], &first_alone[l]) {
                    return Err(format!("{kernel} scalar vs portable scalar, step {l}: {d}"));
                }
            }
        }
        Ok(first_together.clone())
    }

    #[test]
    fn lanes_that_converge_stop_at_the_limit_and_collapse_agree_in_one_call() {
        // A branching tree: N1 on B, N2 and N3 on N1, N4 on N2, N5 on N3.
        let feeder = tree(
            &[0, 0, 0, 1, 2],
            &[
                (0.2, 0.2, 1_000.0),
                (0.4, 0.3, 1_500.0),
                (0.4, 0.3, 800.0),
                (0.6, 0.4, 2_000.0),
                (0.6, 0.4, 900.0),
            ],
        );
        let n = feeder.len();
        let per_node =
            |kw: f64| -> Vec<f64> { (0..n).map(|i| if i == 0 { 0.0 } else { kw }).collect() };
        // Lane 0 a normal load, lane 1 the same with a limit it cannot meet in
        // the lanes' shared count, lane 2 far beyond the feeder (it collapses),
        // lane 3 unloaded.
        let step_loads = StepLoads {
            p_kw: [
                per_node(300.0),
                per_node(2_500.0),
                per_node(400_000.0),
                per_node(0.0),
            ],
            q_kvar: [
                per_node(100.0),
                per_node(800.0),
                per_node(100_000.0),
                per_node(0.0),
            ],
            source_kv: [10.5, 10.4, 10.5, 10.2],
        };
        let settings = SweepSettings {
            max_iterations: 4,
            ..SweepSettings::default()
        };
        let starts: [Solution; LANES] = Default::default();
        let flows = lanes_and_kernels_agree(&feeder, &step_loads, &starts, settings)
            .unwrap_or_else(|difference| panic!("{difference}"));
        assert!(flows[0].converged && flows[3].converged, "{flows:?}");
        assert!(
            !flows[1].converged && flows[1].iterations == 4,
            "{:?}",
            flows[1]
        );
        assert!(!flows[2].converged, "{:?}", flows[2]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        #[test]
        fn losses_are_non_negative_and_voltages_fall_along_a_loaded_feeder(
            // Feeders within what a 10 kV network carries: up to 20 segments of up to
            // 800 m and 150 kW per node (beyond, a feeder collapses, as it would).
            segments in prop::collection::vec((0.05f64..0.5, 0.05f64..0.4, 50.0f64..800.0), 1..20),
            loads in prop::collection::vec((0.0f64..150.0, 0.0f64..70.0), 20),
            source_kv in 9.5f64..10.8,
        ) {
            let feeder = chain(&segments);
            let n = feeder.len();
            let mut p = vec![0.0; n];
            let mut q = vec![0.0; n];
            for i in 1..n {
                p[i] = loads[i - 1].0;
                q[i] = loads[i - 1].1;
            }
            let mut sol = Solution::default();
            sweep(&feeder, &p, &q, source_kv, SweepSettings::default(), &mut sol);
            prop_assert!(sol.converged);
            let head = sol.head_power_kva();
            let load_p: f64 = p.iter().sum();
            let load_q: f64 = q.iter().sum();
            prop_assert!(head.re - load_p >= -1e-6, "active losses {}", head.re - load_p);
            prop_assert!(head.im - load_q >= -1e-6, "reactive losses {}", head.im - load_q);
            for i in 1..n {
                let parent = feeder.parent[i] as usize;
                prop_assert!(sol.v_kv[i].norm() <= sol.v_kv[parent].norm() + 1e-9);
            }
        }
    }
}
