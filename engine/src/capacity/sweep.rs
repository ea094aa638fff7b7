//! The feeder bases of one capacity sweep.
//!
//! With N-1 on, a feeder's base serves its own row and the restoration cases
//! of every feeder tied to it. Through the engine's cache a city's sweep built
//! 5,292 bases for 3,000 feeders (a base evicted before its neighbour came
//! was built again), and the cache grew to its budget: memory the kernel
//! zeroes on first touch, a quarter of the sweep's CPU. Here a base is built
//! once, kept while a feeder that needs it is still to come, and dropped after
//! the last, so the sweep reuses the memory it frees. The feeders are visited
//! breadth-first over their ties, so that feeders tied together come close
//! together and few bases are held at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::base::FeederBase;
use crate::engine::Engine;
use crate::n1::FeederBases;

/// Bases shared by the rows of one sweep.
pub(crate) struct SweepBases<'a> {
    engine: &'a Engine,
    /// Per feeder, the feeders whose bases its row needs (itself first).
    needs: Vec<Vec<usize>>,
    /// Per feeder, how many rows still to finish need its base.
    rows_left: Vec<AtomicU32>,
    /// Per feeder, its base while a row still to finish needs it.
    held: Vec<Mutex<Option<Arc<FeederBase>>>>,
}

impl<'a> SweepBases<'a> {
    /// The store for a sweep over every feeder; `n1` when the rows judge
    /// N-1 (and so need the bases of the feeders tied to theirs).
    pub(crate) fn new(engine: &'a Engine, n1: bool) -> Self {
        let count = engine.network.feeders.len();
        let needs: Vec<Vec<usize>> = (0..count)
            .map(|f| {
                if n1 {
                    engine.n1_base_feeders(f)
                } else {
                    vec![f]
                }
            })
            .collect();
        let mut rows_left = vec![0u32; count];
        for g in needs.iter().flatten() {
            rows_left[*g] += 1;
        }
        SweepBases {
            engine,
            needs,
            rows_left: rows_left.into_iter().map(AtomicU32::new).collect(),
            held: (0..count).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Every feeder once, breadth-first over the feeders their rows need
    /// from the lowest index of each connected set: neighbours come close.
    pub(crate) fn order(&self) -> Vec<usize> {
        let count = self.needs.len();
        let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (f, needs) in self.needs.iter().enumerate() {
            for &g in needs.iter().filter(|&&g| g != f) {
                neighbours[f].push(g);
                neighbours[g].push(f);
            }
        }
        let mut seen = vec![false; count];
        let mut order = Vec::with_capacity(count);
        let mut queue = VecDeque::new();
        for start in 0..count {
            if seen[start] {
                continue;
            }
            seen[start] = true;
            queue.push_back(start);
            while let Some(f) = queue.pop_front() {
                order.push(f);
                for &g in &neighbours[f] {
                    if !seen[g] {
                        seen[g] = true;
                        queue.push_back(g);
                    }
                }
            }
        }
        order
    }

    /// Feeder `f`'s row is done: bases no later row needs are dropped.
    pub(crate) fn row_done(&self, f: usize) {
        for &g in &self.needs[f] {
            if self.rows_left[g].fetch_sub(1, Ordering::AcqRel) == 1 {
                self.slot(g).take();
            }
        }
    }

    fn slot(&self, f: usize) -> std::sync::MutexGuard<'_, Option<Arc<FeederBase>>> {
        // A row that panicked left the slot as it was: a base or none.
        self.held[f].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FeederBases for SweepBases<'_> {
    fn base(&self, f: usize) -> Arc<FeederBase> {
        if let Some(base) = self.engine.cached_feeder(f) {
            return base;
        }
        // Held while it is built: a second row asking waits for it.
        let mut slot = self.slot(f);
        if let Some(base) = slot.as_ref() {
            return base.clone();
        }
        let reserved = self.engine.feeder_fingerprint[f] != 0;
        let base = Arc::new(self.engine.build_base(f, reserved));
        if self.rows_left[f].load(Ordering::Acquire) > 0 {
            *slot = Some(base.clone());
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture_engine;

    /// Every feeder comes once; a base is built once for all the rows that
    /// need it, and none is held after the last of them.
    #[test]
    fn each_base_is_shared_by_its_rows_and_dropped_after_the_last() {
        let engine = fixture_engine();
        let bases = SweepBases::new(&engine, true);
        let order = bases.order();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..engine.network.feeders.len()).collect::<Vec<_>>()
        );
        let tied = (0..order.len())
            .filter(|&f| bases.needs[f].len() > 1)
            .count();
        assert!(tied > 0, "the fixture's feeders have ties");
        let mut built: Vec<Option<Arc<FeederBase>>> = vec![None; order.len()];
        for &f in &order {
            for &g in &bases.needs[f] {
                let base = bases.base(g);
                match &built[g] {
                    Some(first) => assert!(Arc::ptr_eq(first, &base), "feeder {g} built twice"),
                    None => built[g] = Some(base),
                }
            }
            bases.row_done(f);
            for &g in &bases.needs[f] {
                let still_needed = bases.rows_left[g].load(Ordering::Acquire) > 0;
                assert_eq!(
                    bases.slot(g).is_some(),
                    still_needed,
                    "feeder {g} after {f}"
                );
            }
        }
        assert!(bases.held.iter().all(|slot| slot.lock().unwrap().is_none()));
    }
}
