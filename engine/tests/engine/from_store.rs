//! The engine over the readings store: the same rankings as over the same
//! readings in memory, with one day in Parquet and one in the store's buffer.

use std::sync::Arc;

use headroom_engine::ReadingsSource;
use headroom_geodata::{Network, Quantity};
use headroom_readings::{Quality, Reading, ReadingSink};
use headroom_store::{Store, StoreConfig, StoreReadings};

use crate::support::feeder;

fn store_rows(network: &Network, series: &crate::support::Series<'_>) -> Vec<Reading> {
    crate::support::rows(network, series)
        .into_iter()
        .map(|row| Reading {
            ts_ms: row.ts_ms,
            asset: network.id_of(row.asset).into(),
            quantity: row.quantity,
            value: row.value,
            quality: Quality::Good,
            source: Arc::from("test"),
        })
        .collect()
}

#[test]
fn the_engine_ranks_the_same_from_the_store_as_from_memory() {
    use crate::support::{application, at, rows};
    use headroom_engine::{Engine, EngineConfig, InMemoryReadings};

    // Two days: a measured head, T1 and T3 metered with a daily swing, T2 left to
    // the residual; so allocation, the window and every check see real data.
    let steps = 192;
    let swing = |base: f64| -> Vec<f64> {
        (0..steps)
            .map(|k| base * (1.0 + 0.5 * (k as f64 * std::f64::consts::TAU / 96.0).sin()))
            .collect()
    };
    let series = vec![
        ("F", Quantity::PKw, swing(900.0)),
        ("F", Quantity::QKvar, swing(300.0)),
        ("F", Quantity::UKv, vec![10.4; steps]),
        ("T1", Quantity::PKw, swing(250.0)),
        ("T1", Quantity::QKvar, swing(80.0)),
        ("T3", Quantity::PKw, swing(200.0)),
        ("T3", Quantity::QKvar, swing(60.0)),
    ];
    let network = feeder().build().unwrap();
    let in_memory = Engine::new(
        network.clone(),
        Arc::new(InMemoryReadings::from_rows(&rows(&network, &series))),
        EngineConfig::default(),
        Vec::new(),
    );

    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        wal_flush_interval_ms: 5,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), &network, config).unwrap();
    let mut readings = store_rows(&network, &series);
    // The first day in Parquet, the second in the buffer.
    readings.sort_by_key(|r| r.ts_ms);
    let second_day = readings.split_off(readings.len() / 2);
    store.write(readings).wait().unwrap();
    store.flush().unwrap();
    store.write(second_day).wait().unwrap();
    let from_store = StoreReadings::recent(Arc::new(store), 14).unwrap();
    assert!(from_store.span().is_some());
    let from_store = Engine::new(
        network,
        Arc::new(from_store),
        EngineConfig::default(),
        Vec::new(),
    );

    for (east, kw) in [(150.0, 500.0), (300.0, 2_000.0), (100.0, 9_000.0)] {
        let app = application("A", at(east, 0.0), kw, serde_json::json!({}));
        let expected = serde_json::to_value(in_memory.rank(&app)).unwrap();
        let got = serde_json::to_value(from_store.rank(&app)).unwrap();
        assert_eq!(got, expected, "{kw} kW at {east} m east");
    }
}
