//! Simulated monitoring terminals to the Modbus connector to the store: values,
//! scaling and timestamps, then every fault the simulator injects, each with
//! the connector recovering by itself and reporting the gap.

use std::time::Duration;

use headroom_connectors::modbus::{
    DataType, ModbusConfig, ModbusDevice, ModbusPoint, Order, RegisterKind,
};
use headroom_connectors::{ConnectorConfig, LinkState};
use headroom_simulators::modbus::{ExceptionCode, Fault, ModbusSimulator, address_of};
use headroom_store::Store;

use crate::support::{
    connector_context, connector_runtime, fixture_store, spawn_connector, store_rows, wait_for,
};

fn point(
    address: u16,
    register: RegisterKind,
    asset: &str,
    quantity: &str,
    scale: f64,
    offset: f64,
) -> ModbusPoint {
    ModbusPoint {
        address,
        register,
        data_type: DataType::F32,
        word_order: Order::Big,
        byte_order: Order::Big,
        scale,
        offset,
        asset: asset.into(),
        quantity: quantity.into(),
    }
}

fn count(store: &Store, filter: &str) -> u64 {
    store_rows(
        store,
        &format!("SELECT count(*) FROM readings WHERE source = 'dtu' AND {filter}"),
    )
    .first()
    .and_then(|v| v.parse().ok())
    .unwrap_or(0)
}

#[test]
fn terminals_reach_the_store_and_every_fault_heals_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (gridpack, store) = fixture_store(dir.path());
    let runtime = connector_runtime();

    let sim = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ModbusSimulator::start(listener, 2).await.unwrap()
    });
    sim.set(1, address_of("p_kw").unwrap(), 250.5);
    sim.set(1, address_of("q_kvar").unwrap(), 80.25);
    sim.set(2, address_of("i_a").unwrap(), 40.0);

    let connector = ConnectorConfig::Modbus(ModbusConfig {
        name: "dtu".into(),
        host: "127.0.0.1".into(),
        port: sim.address().port(),
        timeout_ms: 300,
        retry_min_ms: 100,
        retry_max_ms: 400,
        devices: vec![
            ModbusDevice {
                unit_id: 1,
                poll_interval_ms: 100,
                points: vec![
                    point(0, RegisterKind::Input, "T_2", "p_kw", 1.0, 0.0),
                    point(2, RegisterKind::Input, "T_2", "q_kvar", 1.0, 0.0),
                ],
            },
            ModbusDevice {
                unit_id: 2,
                poll_interval_ms: 100,
                // Amperes on the terminal's CT secondary, scaled and offset.
                points: vec![point(6, RegisterKind::Holding, "T_4", "i_a", 2.5, -1.0)],
            },
        ],
    });
    let context = connector_context(store.clone(), &gridpack.network);
    let shutdown = context.shutdown.clone();
    let started_ms = chrono::Utc::now().timestamp_millis();
    let running = spawn_connector(&runtime, &connector, &context);
    let status = running.status.clone();

    // Values, scaling, quality and timestamps.
    wait_for("readings of both terminals", || {
        count(&store, "asset = 'T_2'") >= 4 && count(&store, "asset = 'T_4'") >= 2
    });
    let rows = store_rows(
        &store,
        "SELECT DISTINCT asset, quantity, value, quality FROM readings WHERE source = 'dtu' ORDER BY asset, quantity",
    );
    assert_eq!(
        rows,
        vec![
            "T_2,p_kw,250.5,good",
            "T_2,q_kvar,80.25,good",
            "T_4,i_a,99.0,good"
        ]
    );
    let stamps = store_rows(
        &store,
        "SELECT min(CAST(ts AS BIGINT)), max(CAST(ts AS BIGINT)) FROM readings WHERE source = 'dtu'",
    );
    let stamps: Vec<i64> = stamps[0].split(',').map(|v| v.parse().unwrap()).collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    assert!(
        stamps[0] >= started_ms - 1 && stamps[1] <= now_ms,
        "{stamps:?}"
    );
    assert_eq!(status.snapshot().link, LinkState::Connected);

    // A Modbus exception on one terminal: its points go bad, the other goes on.
    sim.set_fault(
        2,
        Some(Fault::Exception(ExceptionCode::ServerDeviceFailure)),
    );
    wait_for("the exception counted", || {
        status
            .snapshot()
            .errors
            .get("exception")
            .copied()
            .unwrap_or(0)
            >= 2
    });
    assert!(matches!(
        status.snapshot().link,
        LinkState::Degraded {
            failing: 1,
            total: 2
        }
    ));
    let before = count(&store, "asset = 'T_2'");
    wait_for("the healthy terminal still polled", || {
        count(&store, "asset = 'T_2'") >= before + 6
    });
    sim.set_fault(2, None);
    wait_for("the terminal's gap reported", || {
        status
            .snapshot()
            .gaps
            .iter()
            .any(|g| g.part == "unit 2" && g.to_ms > g.from_ms)
    });
    wait_for("both connected again", || {
        status.snapshot().link == LinkState::Connected
    });

    // A hung terminal: timeouts, then recovery.
    sim.set_fault(1, Some(Fault::Stall));
    wait_for("the timeout counted", || {
        status
            .snapshot()
            .errors
            .get("timeout")
            .copied()
            .unwrap_or(0)
            >= 1
    });
    sim.set_fault(1, None);
    wait_for("unit 1's gap reported", || {
        status.snapshot().gaps.iter().any(|g| g.part == "unit 1")
    });

    // "No measurement" (NaN): marked bad and not stored as a value.
    sim.set(1, address_of("p_kw").unwrap(), f32::NAN);
    wait_for("the NaN counted", || {
        status
            .snapshot()
            .errors
            .get("non_finite")
            .copied()
            .unwrap_or(0)
            >= 1
    });
    sim.set(1, address_of("p_kw").unwrap(), 300.0);

    // The gateway restarts: every connection drops; the connector comes back.
    let gaps_before = status.snapshot().gaps.len();
    runtime.block_on(sim.stop());
    wait_for("the link reported down", || {
        matches!(status.snapshot().link, LinkState::Disconnected { .. })
    });
    std::thread::sleep(Duration::from_millis(300));
    runtime.block_on(sim.resume()).unwrap();
    wait_for("the link back up", || {
        status.snapshot().link == LinkState::Connected
    });
    wait_for("both gaps of the restart reported", || {
        status.snapshot().gaps.len() >= gaps_before + 2
    });
    wait_for("new values after the restart", || {
        count(&store, "asset = 'T_2' AND value = 300") >= 2
    });
    assert_eq!(count(&store, "isnan(value)"), 0);

    shutdown.cancel();
    runtime.block_on(running.task).unwrap();
    assert_eq!(status.snapshot().link, LinkState::Stopped);
    let snapshot = status.snapshot();
    assert_eq!(snapshot.durable, snapshot.readings, "{snapshot:?}");
}

/// Faults of the network rather than the terminals, through a relay in front
/// of the gateway: every connection closed at once (the gateway itself keeps
/// running), then the whole gateway stalled (connections open, nothing
/// answers). The connector notices both, reports the link, and resumes alone.
#[test]
fn closed_and_stalled_gateway_connections_heal_by_themselves() {
    use headroom_simulators::fault_proxy::FaultProxy;

    let dir = tempfile::tempdir().unwrap();
    let (gridpack, store) = fixture_store(dir.path());
    let runtime = connector_runtime();
    let (sim, proxy) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = ModbusSimulator::start(listener, 2).await.unwrap();
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy::start(front, sim.address()).unwrap();
        (sim, proxy)
    });
    sim.set(1, address_of("p_kw").unwrap(), 111.0);
    sim.set(2, address_of("p_kw").unwrap(), 222.0);
    let device = |unit_id| ModbusDevice {
        unit_id,
        poll_interval_ms: 100,
        points: vec![point(
            0,
            RegisterKind::Input,
            if unit_id == 1 { "T_2" } else { "T_4" },
            "p_kw",
            1.0,
            0.0,
        )],
    };
    let connector = ConnectorConfig::Modbus(ModbusConfig {
        name: "dtu".into(),
        host: "127.0.0.1".into(),
        port: proxy.address().port(),
        timeout_ms: 300,
        retry_min_ms: 100,
        retry_max_ms: 400,
        devices: vec![device(1), device(2)],
    });
    let context = connector_context(store.clone(), &gridpack.network);
    let running = spawn_connector(&runtime, &connector, &context);
    let status = running.status.clone();
    wait_for("both terminals read", || {
        count(&store, "asset = 'T_2' AND value = 111") >= 2
            && count(&store, "asset = 'T_4' AND value = 222") >= 2
    });

    // Every connection reset under the connector.
    proxy.close_connections();
    wait_for("both terminals' gaps after the reset", || {
        let gaps = status.snapshot().gaps;
        gaps.iter().any(|g| g.part == "unit 1") && gaps.iter().any(|g| g.part == "unit 2")
    });
    assert!(
        status
            .snapshot()
            .errors
            .get("transport")
            .copied()
            .unwrap_or(0)
            >= 2,
        "{:?}",
        status.snapshot()
    );
    let after_reset = count(&store, "asset = 'T_2'");
    wait_for("readings after the reset", || {
        count(&store, "asset = 'T_2'") > after_reset + 2
    });

    // The whole gateway silent: the link is reported down, nothing is written.
    let gaps_before = status.snapshot().gaps.len();
    proxy.set_stalled(true);
    wait_for("the link reported down", || {
        matches!(status.snapshot().link, LinkState::Disconnected { .. })
    });
    let during = count(&store, "source = 'dtu'");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count(&store, "source = 'dtu'"),
        during,
        "readings written while stalled"
    );
    proxy.set_stalled(false);
    wait_for("the link back up", || {
        status.snapshot().link == LinkState::Connected
    });
    wait_for("the stall's gaps reported", || {
        status.snapshot().gaps.len() >= gaps_before + 2
    });
    sim.set(1, address_of("p_kw").unwrap(), 112.0);
    wait_for("fresh values after the stall", || {
        count(&store, "asset = 'T_2' AND value = 112") >= 1
    });

    context.shutdown.cancel();
    runtime.block_on(running.task).unwrap();
}
