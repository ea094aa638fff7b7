//! The decision engine of Headroom: where a new customer can connect, and how.
//!
//! # Data model
//!
//! - A [`Engine`] holds a [`headroom_geodata::Network`] with its topology and
//!   spatial index, and per feeder a [`FeederBase`]: the [`load_model`] (what each
//!   distribution transformer draws at each 15-minute step, from readings) and the
//!   base-case [`powerflow`] solution of every step.
//! - An [`Application`] is ranked ([`Engine::rank`]): candidates near the customer
//!   are evaluated ([`evaluate`]) for their headroom and binding constraint, and
//!   feasible ones are combined into supply schemes ([`RankingResult`]).
//! - Measurements reach the load model through [`ReadingsSource`] (the
//!   `headroom-readings` contract: gridpack rows in memory, or the readings store's
//!   window); reservations of earlier applications are extra load ([`ReservedLoad`]).
//!
//! The engine stores nothing: the readings store and the reservations ledger are
//! crates of their own, above or beside it.

/// An array of lanes, each worked out by `$e` (an expression in lane `$l`): a
/// loop the compiler turns into vector instructions, where `from_fn` often
/// left a call of its closure per lane.
macro_rules! lanes {
    (|$l:ident| $e:expr) => {{
        let mut out = [0.0f64; LANES];
        for $l in 0..LANES {
            out[$l] = $e;
        }
        out
    }};
}

/// Calls `$portable` with the arguments, compiled for AVX2 where the processor
/// has it (each lane array then fills one register), else as it is; the tail
/// of the function it is written in. `$portable` is `#[inline(always)]`, so
/// that its body is compiled inside the AVX2 function (a closure's body was
/// not). The compiler does not contract a product and a sum into one rounding
/// on its own, so both versions give the same figures to the last bit (the
/// power-flow tests run both on the same inputs: [`portable_only`]).
macro_rules! avx2_or_portable {
    ($portable:path, fn($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn avx2($($arg: $ty),*) $(-> $ret)? {
            $portable($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        if !$crate::portable_only() && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above; the function is
            // otherwise safe.
            #[allow(unsafe_code)]
            return unsafe { avx2($($arg),*) };
        }
        $portable($($arg),*)
    }};
}

#[cfg(test)]
thread_local! {
    static PORTABLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread runs the portable kernels even where the processor has
/// AVX2: tests set it to compare both on the same inputs; elsewhere never.
#[cfg(test)]
fn portable_only() -> bool {
    PORTABLE_ONLY.get()
}

#[cfg(not(test))]
#[inline(always)]
const fn portable_only() -> bool {
    false
}

/// Runs `f` once with each kernel this processor has (the portable one first,
/// then AVX2 where there is AVX2), for tests that compare them; returns the
/// kernel's name and `f`'s result for each.
#[cfg(test)]
pub(crate) fn with_each_kernel<T>(mut f: impl FnMut() -> T) -> Vec<(&'static str, T)> {
    let mut out = Vec::new();
    PORTABLE_ONLY.set(true);
    out.push(("portable", f()));
    PORTABLE_ONLY.set(false);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        out.push(("avx2", f()));
    }
    out
}

pub mod application;
pub mod base;
pub mod capacity;
mod chains;
pub mod checks;
pub mod config;
pub mod engine;
pub mod error;
pub mod evaluate;
pub mod load_model;
pub mod n1;
pub mod open_capacity;
pub mod powerflow;
pub mod publish;
pub mod rank;
pub mod service_line;
#[cfg(test)]
mod test_support;

pub use application::{Application, ApplicationKind, CustomerClass, Importance};
pub use base::{BaseSummary, FeederBase};
pub use capacity::{CapacityRow, Grade, Level};
pub use checks::{CheckName, CheckResult};
pub use config::{
    Conductor, ConductorKind, ConnectionCosts, EngineConfig, Limits, N1Config, N1Mode, ScoreWeights,
};
pub use engine::{CacheUsage, Engine, ReservedLoad};
pub use error::{Error, Result};
pub use headroom_readings::{InMemoryReadings, ReadingsSource};
pub use rank::{Candidate, RankingResult, Scheme, ScoreParts};
pub use service_line::{ChosenConductor, ServiceLine};
