//! Published open capacity for distributed generation (`shared/spec/planning.md`
//! §1): per substation, feeder and distribution transformer, C1 (the largest
//! PV export the asset takes with connected generators in the measurements and
//! without queued ones), C2 (C1 less the queue on the asset: queued generators
//! and generation reservations) and the grade, top-down.
//!
//! The probe is a flat `pv` generator at unity power factor with the default
//! PV profile: at a feeder's first node, at a transformer's low-voltage side
//! (its own reverse and forward limits and its node's feeder checks), at a
//! substation's busbars (its transformers forward and in reverse; the sum over
//! its busbar groups, each taking its own).

use std::sync::Arc;

use headroom_geodata::{FeederIx, NodeIx, TransformerIx, pv_shape};
use num_complex::Complex64;

use crate::base::FeederBase;
use crate::capacity::Grade;
use crate::engine::Engine;
use crate::evaluate::{AddedGeneration, UNBOUNDED_KW, transformer_root};

/// An asset's open capacity: C1, C2 and its own grade (before the grade of
/// what is above it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpenCapacity {
    /// C1, kW.
    pub headroom_kw: f64,
    /// C2, kW.
    pub open_kw: f64,
}

impl OpenCapacity {
    fn new(headroom_kw: f64, queued_kw: f64) -> Self {
        let headroom_kw = headroom_kw.clamp(0.0, UNBOUNDED_KW).floor();
        Self {
            headroom_kw,
            open_kw: headroom_kw - queued_kw,
        }
    }

    /// The asset's own grade.
    pub fn grade(&self) -> Grade {
        Grade::of(self.headroom_kw, self.open_kw)
    }
}

impl Engine {
    /// The measured base of feeder `f`: neither reservations nor queued
    /// generators; from the cache, or built for the moment (a sweep over
    /// every feeder of a city must not fill memory).
    pub(crate) fn measured_base(&self, f: usize) -> Arc<FeederBase> {
        self.cached_unreserved(f)
            .unwrap_or_else(|| Arc::new(self.build_base(f, false)))
    }

    /// The queue on the assets an injection's node and transformer decide.
    fn queued_kw(&self, on: impl Fn(NodeIx, Option<TransformerIx>) -> bool) -> f64 {
        self.injections
            .iter()
            .filter(|i| on(i.node, i.transformer))
            .map(|i| i.kw)
            .sum()
    }

    /// The substation of a busbar: its own `substation`, else that of the
    /// transformers feeding its group.
    pub(crate) fn substation_of_busbar(&self, busbar: NodeIx) -> Option<usize> {
        let s = self.network.node(busbar).substation.or_else(|| {
            let group = self.topology.busbar_group_of(busbar)?;
            let t = group.transformers.first()?;
            Some(self.network.substation_transformers[t.get()].substation)
        })?;
        Some(s.get())
    }

    /// The busbar groups fed by substation `s`'s transformers.
    pub(crate) fn substation_groups(&self, s: usize) -> Vec<usize> {
        let fed_by_s = |t: &headroom_geodata::SubstationTransformerIx| {
            self.network.substation_transformers[t.get()]
                .substation
                .get()
                == s
        };
        (0..self.topology.busbar_groups.len())
            .filter(|&g| {
                self.topology.busbar_groups[g]
                    .transformers
                    .iter()
                    .any(fed_by_s)
            })
            .collect()
    }

    /// The PV export a transformer (or a group of them) of `rated_kva` takes
    /// before its forward or reverse limit at any step of `flows` (timestamp,
    /// what flows through it towards the low-voltage side without the
    /// export); infinite where PV exports at none of them.
    fn pv_room(
        &self,
        flows: impl Iterator<Item = (i64, Complex64)>,
        rated_kva: f64,
        forward_pct: f64,
    ) -> f64 {
        let shape = pv_shape();
        let forward = rated_kva * forward_pct / 100.0;
        let reverse = rated_kva * self.config.limits.reverse_pct / 100.0;
        flows
            .filter_map(|(ts, s)| {
                let factor = shape[self.quarter_of_day(ts)];
                (factor > 0.0)
                    .then(|| transformer_root(s, Complex64::new(-factor, 0.0), forward, reverse).0)
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Open capacity of every substation, in network order.
    pub fn substation_open_capacity(&self) -> Vec<OpenCapacity> {
        let forward_pct = self.config.limits.substation_transformer_pct;
        (0..self.network.substations.len())
            .map(|s| {
                let groups = self.substation_groups(s);
                let headroom: f64 = groups
                    .iter()
                    .map(|&g| {
                        let rated = self.group_rated_kva(Some(g));
                        if rated <= 0.0 {
                            return 0.0;
                        }
                        let flows = self
                            .window
                            .steps
                            .iter()
                            .copied()
                            .zip(self.group_kva[g].iter().copied());
                        self.pv_room(flows, rated, forward_pct)
                            .clamp(0.0, UNBOUNDED_KW)
                    })
                    .sum();
                let queued = self.queued_kw(|node, _| {
                    self.group_of_node(node)
                        .is_some_and(|g| groups.contains(&g))
                });
                OpenCapacity::new(headroom, queued)
            })
            .collect()
    }

    /// The grade of the substation feeding feeder `f` (green where none does).
    pub(crate) fn feeder_substation_grade(&self, f: usize, substations: &[OpenCapacity]) -> Grade {
        let head = self.topology.tree(FeederIx::from_usize(f)).head();
        self.substation_of_busbar(head)
            .map_or(Grade::Green, |s| substations[s].grade())
    }

    /// Open capacity of feeder `f` at its first node, on its measured base.
    pub(crate) fn feeder_open_capacity(&self, base: &FeederBase, f: usize) -> OpenCapacity {
        let headroom = self.pv_export_headroom(base, 1);
        let queued = self.queued_kw(|node, _| {
            self.topology
                .placement(node)
                .is_some_and(|p| p.feeder.get() == f)
        });
        OpenCapacity::new(headroom, queued)
    }

    /// The PV probe's headroom at a local node of a measured base (0 for a
    /// feeder without nodes or steps).
    fn pv_export_headroom(&self, base: &FeederBase, local: u32) -> f64 {
        if (local as usize) >= base.electrical.len() || base.loads.step_count() == 0 {
            return 0.0;
        }
        let probe = AddedGeneration {
            absorbed_kvar_per_kw: 0.0,
            profile: Some(pv_shape()),
        };
        self.evaluate_export(base, local, 0.0, &probe)
            .point
            .headroom_kw
    }

    /// Open capacity of a transformer fed from no feeder, from its own
    /// readings (`None` where a step has none), under its busbar's
    /// substation: its own limits only.
    pub(crate) fn transformer_open_capacity_of_readings(
        &self,
        t: TransformerIx,
        power: &[Option<Complex64>],
    ) -> (OpenCapacity, Grade) {
        let rated = self.network.transformers[t.get()].rated_kva;
        let flows = self
            .window
            .steps
            .iter()
            .zip(power)
            .filter_map(|(&ts, s)| Some((ts, (*s)?)));
        let own = self.pv_room(flows, rated, self.config.limits.transformer_pct);
        let own = if own.is_finite() { own } else { 0.0 };
        let queued = self.queued_kw(|_, behind| behind == Some(t));
        let open = OpenCapacity::new(own, queued);
        (open, open.grade())
    }

    /// Open capacity of the distribution transformers of feeder `f`'s
    /// measured base: (transformer, its open capacity).
    pub(crate) fn transformers_open_capacity(
        &self,
        base: &FeederBase,
    ) -> Vec<(TransformerIx, OpenCapacity)> {
        let loads = &base.loads;
        let m = loads.transformers.len();
        let mut at_node: Vec<Option<f64>> = vec![None; base.electrical.len()];
        loads
            .transformers
            .iter()
            .enumerate()
            .map(|(slot, &(t, local))| {
                let node = *at_node[local as usize]
                    .get_or_insert_with(|| self.pv_export_headroom(base, local));
                let flows = loads.steps.iter().enumerate().map(|(k, &ts)| {
                    (
                        ts,
                        Complex64::new(loads.p_kw[k * m + slot], loads.q_kvar[k * m + slot]),
                    )
                });
                let rated = self.network.transformers[t.get()].rated_kva;
                let own = self.pv_room(flows, rated, self.config.limits.transformer_pct);
                let queued = self.queued_kw(|_, behind| behind == Some(t));
                (t, OpenCapacity::new(node.min(own), queued))
            })
            .collect()
    }
}
