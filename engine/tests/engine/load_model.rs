//! The load model: unmetered allocation and customer profiles.

use headroom_engine::powerflow::{Solution, SweepSettings, sweep};
use headroom_geodata::Quantity;
use num_complex::Complex64;
use serde_json::json;

use crate::support::*;

#[test]
fn unmetered_transformers_share_the_residual_by_rating_after_losses() {
    let grid = {
        // T2 of 400 kVA and T3 of 200 kVA unmetered; T1 metered at 100 kW.
        let mut b = feeder();
        b.transformer("T3B", "N3", 200.0);
        b
    };
    let series: Series<'_> = vec![
        ("F", Quantity::UKv, vec![10.5; 4]),
        ("F", Quantity::PKw, vec![700.0; 4]),
        ("F", Quantity::QKvar, vec![200.0; 4]),
        ("T1", Quantity::PKw, vec![100.0; 4]),
        ("T1", Quantity::QKvar, vec![30.0; 4]),
    ];
    let engine = engine(&grid, &series);
    let base = engine.feeder(0);
    let loads = &base.loads;
    assert_eq!(loads.step_count(), 4);
    let m = loads.transformers.len();
    let p = |id: &str| {
        let t = engine.network.lookup(id).unwrap().index;
        let slot = loads
            .transformers
            .iter()
            .position(|(tx, _)| tx.0 == t)
            .unwrap();
        loads.p_kw[slot]
    };
    assert_eq!(p("T1"), 100.0);
    // T2 and T3 (400 kVA each) take equal shares, T3B (200 kVA) half as much.
    assert!((p("T2") - p("T3")).abs() < 1e-9);
    assert!((p("T2") - 2.0 * p("T3B")).abs() < 1e-9);
    // The power flow of the allocated loads reproduces the measured head.
    let head = base.solutions[0].head_power_kva();
    assert!((head - Complex64::new(700.0, 200.0)).norm() < 0.5, "{head}");
    // Losses came off the residual: the allocated sum is below 600 kW.
    let allocated: f64 = (0..m).map(|t| loads.p_kw[t]).sum::<f64>() - 100.0;
    assert!(allocated < 600.0 && allocated > 590.0, "{allocated}");
    // About a seventh of the load energy was measured (T1's 100 kW of ~700).
    let total: f64 = loads.p_kw.iter().sum();
    let metered = 100.0 * loads.step_count() as f64;
    // (The share is taken from the first, loose allocation: a few watts off.)
    assert!((loads.metered_share - metered / total).abs() < 1e-6);
    assert!((loads.metered_share - 100.0 / (100.0 + allocated)).abs() < 1e-3);
    let result = engine.rank(&application("A", at(100.0, 0.0), 100.0, json!({})));
    assert!((result.data.metered_share - loads.metered_share).abs() < 1e-3);
}

#[test]
fn without_any_head_reading_unmetered_transformers_draw_a_share_of_rating() {
    let engine = engine(&feeder(), &vec![("F", Quantity::UKv, vec![10.5; 4])]);
    let base = engine.feeder(0);
    let loads = &base.loads;
    assert_eq!(loads.step_count(), 4);
    // 0.4 of 400 kVA at 0.95.
    assert!(loads.p_kw.iter().all(|p| (p - 152.0).abs() < 1e-9));
    assert_eq!(loads.metered_share, 0.0);
}

#[test]
fn missing_head_steps_are_interpolated_up_to_an_hour_then_dropped() {
    let mut p = vec![500.0; 12];
    // 45 minutes missing: filled; then 75 minutes missing: dropped.
    p[2..=4].fill(f64::NAN);
    p[7..=10].fill(f64::NAN);
    let series: Series<'_> = vec![
        ("F", Quantity::UKv, vec![10.5; 12]),
        ("F", Quantity::PKw, p),
        ("F", Quantity::QKvar, vec![100.0; 12]),
    ];
    let grid = feeder();
    let network = grid.build().unwrap();
    let rows: Vec<_> = rows(&network, &series)
        .into_iter()
        .filter(|r| r.value.is_finite())
        .collect();
    let readings = std::sync::Arc::new(headroom_engine::InMemoryReadings::from_rows(&rows));
    let engine = headroom_engine::Engine::new(network, readings, Default::default(), Vec::new());
    let base = engine.feeder(0);
    let loads = &base.loads;
    assert_eq!(loads.dropped_steps, 4);
    assert_eq!(loads.step_count(), 8);
    let result = engine.rank(&application("A", at(100.0, 0.0), 100.0, json!({})));
    assert_eq!(result.data.dropped_steps, 4);
}

#[test]
fn a_customer_peaking_off_the_feeders_peak_has_more_headroom() {
    // The feeder peaks in the evening (quarter-hours 72..88) at 1.2 MW per transformer.
    let day: Vec<f64> = (0..96)
        .map(|q| {
            if (72..88).contains(&q) {
                1_200.0
            } else {
                300.0
            }
        })
        .collect();
    let mut series: Series<'_> = vec![("F", Quantity::UKv, vec![10.5; 96])];
    for t in ["T1", "T2", "T3"] {
        series.push((t, Quantity::PKw, day.clone()));
        series.push((t, Quantity::QKvar, day.iter().map(|p| p * 0.3).collect()));
    }
    let engine = engine(&feeder(), &series);
    let near = at(300.0, 0.0);
    let (_, flat, _) = probe(&engine, "N3", near, 1.0, json!({}));
    let night: Vec<f64> = (0..96).map(|q| if q < 24 { 1.0 } else { 0.1 }).collect();
    let (_, shaped, _) = probe(&engine, "N3", near, 1.0, json!({"profile": night}));
    assert!(
        shaped > 1.5 * flat,
        "night-peaking {shaped} kW vs flat {flat} kW"
    );
    // A customer peaking with the feeder gets no more than flat.
    let evening: Vec<f64> = (0..96)
        .map(|q| if (72..88).contains(&q) { 1.0 } else { 0.2 })
        .collect();
    let (_, with_peak, _) = probe(&engine, "N3", near, 1.0, json!({"profile": evening}));
    assert!((with_peak - flat).abs() <= 2.0, "{with_peak} vs {flat}");
}

#[test]
fn every_base_flow_solves_its_steps_loads() {
    // T2 and T3 unmetered: the allocation's own power flows become the base's
    // where no reservation changes the loads; with one, every step is solved
    // again. Steps of varied loads, more than a batch of lanes, and not a whole
    // number of batches.
    let head: Vec<f64> = (0..11).map(|k| 500.0 + 60.0 * k as f64).collect();
    let series: Series<'_> = vec![
        (
            "F",
            Quantity::UKv,
            (0..11).map(|k| 10.3 + 0.03 * k as f64).collect(),
        ),
        ("F", Quantity::PKw, head.clone()),
        ("F", Quantity::QKvar, head.iter().map(|p| p * 0.3).collect()),
        (
            "T1",
            Quantity::PKw,
            (0..11).map(|k| 100.0 + 25.0 * k as f64).collect(),
        ),
        ("T1", Quantity::QKvar, vec![30.0; 11]),
    ];
    for reservations in [&[][..], &[("N3", 300.0)][..]] {
        let engine = engine_with(&feeder(), &series, reservations);
        let base = engine.feeder(0);
        let n = base.electrical.len();
        assert_eq!(base.solutions.len(), 11);
        let (mut p, mut q) = (vec![0.0; n], vec![0.0; n]);
        for (k, stored) in base.solutions.iter().enumerate() {
            engine.base_node_loads(&base, k, &mut p, &mut q);
            let mut alone = Solution::default();
            sweep(
                &base.electrical,
                &p,
                &q,
                base.loads.source_kv[k],
                SweepSettings::default(),
                &mut alone,
            );
            assert!(stored.converged && alone.converged, "step {k}");
            for i in 0..n {
                let difference = (stored.v_kv(i) - alone.v_kv[i]).norm();
                assert!(
                    difference < 2e-5,
                    "{reservations:?} step {k} node {i}: {} vs {}",
                    stored.v_kv(i),
                    alone.v_kv[i]
                );
            }
        }
    }
}
