//! The simulated SCADA server to the OPC UA connector to the store: values,
//! scaling, source timestamps and quality, then every fault the simulator
//! injects (bad status, NaN, closed connections, a stalled link, a server
//! restart), each with the connector recovering by itself and reporting the
//! gap; and a signed, encrypted session with a user name.

use std::time::Duration;

use headroom_connectors::opcua::{
    Deadband, Identity, OpcUaConfig, OpcUaItem, SecurityModeName, SecurityPolicyName,
    TimestampSource,
};
use headroom_connectors::{ConnectorConfig, LinkState, StatusHandle};
use headroom_simulators::opcua::{
    OpcUaSimulator, OpcUaSimulatorConfig, OpcUaStatus, SIM_PASSWORD, SIM_USER,
};
use headroom_store::Store;

use crate::support::{
    connector_context, connector_runtime, fixture_store, spawn_connector, store_rows, wait_for,
};

pub(crate) fn item(node_id: String, asset: &str, quantity: &str, scale: f64) -> OpcUaItem {
    OpcUaItem {
        node_id,
        sampling_interval_ms: 50.0,
        queue_size: 10,
        deadband: Deadband::None,
        scale,
        offset: 0.0,
        asset: asset.into(),
        quantity: quantity.into(),
    }
}

/// A connector config for tests: quick publishing, keep-alives and retries.
pub(crate) fn quick_config(name: &str, endpoint_url: String, items: Vec<OpcUaItem>) -> OpcUaConfig {
    OpcUaConfig {
        name: name.into(),
        endpoint_url,
        security_policy: SecurityPolicyName::None,
        security_mode: SecurityModeName::None,
        identity: Identity::Anonymous,
        pki_dir: None,
        trust_server_certs: false,
        publishing_interval_ms: 100,
        timestamps: TimestampSource::Source,
        request_timeout_ms: 1_000,
        keep_alive_interval_ms: 300,
        retry_min_ms: 100,
        retry_max_ms: 500,
        items,
    }
}

/// The readings of `source` for one asset and quantity: (ts ms, value, quality).
pub(crate) fn rows_of(
    store: &Store,
    source: &str,
    asset: &str,
    quantity: &str,
) -> Vec<(i64, f64, String)> {
    store_rows(
        store,
        &format!(
            "SELECT CAST(ts AS BIGINT) AS ms, value, quality FROM readings \
             WHERE source = '{source}' AND asset = '{asset}' AND quantity = '{quantity}' ORDER BY ts"
        ),
    )
    .iter()
    .map(|row| {
        let cells: Vec<&str> = row.split(',').collect();
        (
            cells[0].parse().unwrap(),
            cells[1].parse().unwrap(),
            cells[2].to_owned(),
        )
    })
    .collect()
}

fn has(store: &Store, asset: &str, quantity: &str, ts_ms: i64, value: f64, quality: &str) -> bool {
    rows_of(store, "scada", asset, quantity)
        .iter()
        .any(|(t, v, q)| *t == ts_ms && (*v - value).abs() < 1e-9 && q == quality)
}

/// A simulator of `assets` on a port of its own, with a PKI folder or security None only.
fn start_simulator(
    runtime: &tokio::runtime::Runtime,
    assets: &[&str],
    pki_dir: Option<std::path::PathBuf>,
) -> OpcUaSimulator {
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let assets = assets.iter().map(|a| (*a).to_owned()).collect();
        OpcUaSimulator::start(listener, OpcUaSimulatorConfig { assets, pki_dir })
            .await
            .unwrap()
    })
}

fn errors(status: &StatusHandle, kind: &str) -> u64 {
    status.snapshot().errors.get(kind).copied().unwrap_or(0)
}

#[test]
fn scada_values_reach_the_store_and_every_fault_heals_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (gridpack, store) = fixture_store(dir.path());
    let runtime = connector_runtime();
    let sim = start_simulator(&runtime, &["F_L0", "F_L22"], None);
    // Whole seconds in the past: the store keeps milliseconds exactly.
    let t0 = (chrono::Utc::now().timestamp_millis() / 1_000 - 60) * 1_000;
    sim.set("F_L0", "p_kw", 2_500.0, t0);
    sim.set("F_L0", "i_a", 121.5, t0);
    sim.set("F_L22", "p_kw", 1.75, t0 + 1_000); // MW on this RTU
    sim.set("F_L22", "u_kv", 10.0, t0 + 1_000);

    let connector = ConnectorConfig::Opcua(quick_config(
        "scada",
        sim.endpoint_url(),
        vec![
            item(sim.node_id("F_L0", "p_kw"), "F_L0", "p_kw", 1.0),
            item(sim.node_id("F_L0", "i_a"), "F_L0", "i_a", 1.0),
            item(sim.node_id("F_L22", "p_kw"), "F_L22", "p_kw", 1_000.0),
            OpcUaItem {
                deadband: Deadband::Absolute { value: 0.5 },
                ..item(sim.node_id("F_L22", "u_kv"), "F_L22", "u_kv", 1.0)
            },
        ],
    ));
    let context = connector_context(store.clone(), &gridpack.network);
    let shutdown = context.shutdown.clone();
    let running = spawn_connector(&runtime, &connector, &context);
    let status = running.status.clone();

    // Values, scaling, source timestamps, quality.
    wait_for("the three initial values", || {
        has(&store, "F_L0", "p_kw", t0, 2_500.0, "good")
            && has(&store, "F_L0", "i_a", t0, 121.5, "good")
            && has(&store, "F_L22", "p_kw", t0 + 1_000, 1_750.0, "good")
    });
    assert_eq!(status.snapshot().link, LinkState::Connected);
    assert_eq!(status.snapshot().points, 4);

    // An absolute deadband: the server reports only changes above it. (Source
    // timestamps must grow: the server holds back a value stamped before the
    // last one reported.)
    wait_for("the first voltage", || {
        has(&store, "F_L22", "u_kv", t0 + 1_000, 10.0, "good")
    });
    sim.set("F_L22", "u_kv", 10.2, t0 + 1_500);
    std::thread::sleep(Duration::from_millis(300));
    sim.set("F_L22", "u_kv", 10.7, t0 + 2_000);
    wait_for("the change beyond the deadband", || {
        has(&store, "F_L22", "u_kv", t0 + 2_000, 10.7, "good")
    });
    assert!(
        !has(&store, "F_L22", "u_kv", t0 + 1_500, 10.2, "good"),
        "a change within the deadband was reported"
    );

    // A data change while connected.
    sim.set("F_L0", "p_kw", 2_510.0, t0 + 2_000);
    wait_for("the change", || {
        has(&store, "F_L0", "p_kw", t0 + 2_000, 2_510.0, "good")
    });

    // Bad and uncertain statuses are stored with their quality, not dropped.
    sim.set_with_status(
        "F_L0",
        "p_kw",
        2_600.0,
        t0 + 3_000,
        OpcUaStatus::BadSensorFailure,
    );
    sim.set_with_status(
        "F_L0",
        "i_a",
        119.0,
        t0 + 3_000,
        OpcUaStatus::UncertainLastUsableValue,
    );
    wait_for("the bad and the uncertain value", || {
        has(&store, "F_L0", "p_kw", t0 + 3_000, 2_600.0, "bad")
            && has(&store, "F_L0", "i_a", t0 + 3_000, 119.0, "uncertain")
    });

    // NaN: counted, not stored; the next value flows.
    sim.set("F_L0", "i_a", f64::NAN, t0 + 4_000);
    wait_for("the NaN counted", || errors(&status, "non_finite") >= 1);
    sim.set("F_L0", "i_a", 122.0, t0 + 5_000);
    wait_for("the value after the NaN", || {
        has(&store, "F_L0", "i_a", t0 + 5_000, 122.0, "good")
    });
    assert!(
        rows_of(&store, "scada", "F_L0", "i_a")
            .iter()
            .all(|(t, ..)| *t != t0 + 4_000)
    );

    // Every connection closed under the client: a new session, a new subscription.
    sim.close_connections();
    wait_for("the loss counted", || errors(&status, "disconnect") >= 1);
    wait_for("the link back up", || {
        status.snapshot().link == LinkState::Connected
    });
    sim.set("F_L0", "p_kw", 2_520.0, t0 + 6_000);
    wait_for("a value after the reconnect", || {
        has(&store, "F_L0", "p_kw", t0 + 6_000, 2_520.0, "good")
    });
    wait_for("the gap reported", || {
        status
            .snapshot()
            .gaps
            .iter()
            .any(|g| g.part == "connection" && g.to_ms >= g.from_ms)
    });

    // A stalled link: open but silent. Keep-alives notice, the link is reported
    // down with the time it went silent, and nothing stale is written.
    let gaps_before = status.snapshot().gaps.len();
    sim.set_stalled(true);
    wait_for("the stall noticed", || {
        matches!(status.snapshot().link, LinkState::Disconnected { .. })
    });
    if let LinkState::Disconnected {
        since_ms,
        retry_at_ms,
        ..
    } = status.snapshot().link
    {
        assert!(since_ms <= retry_at_ms);
        assert!(since_ms <= chrono::Utc::now().timestamp_millis());
    }
    sim.set("F_L0", "p_kw", 2_530.0, t0 + 7_000);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!has(&store, "F_L0", "p_kw", t0 + 7_000, 2_530.0, "good"));
    sim.set_stalled(false);
    wait_for("the value set during the stall, after it", || {
        has(&store, "F_L0", "p_kw", t0 + 7_000, 2_530.0, "good")
    });
    wait_for("the stall's gap reported", || {
        status.snapshot().gaps.len() > gaps_before
    });

    // The server restarts: sessions and subscriptions are gone; the connector
    // makes new ones by itself.
    let lost_before = errors(&status, "disconnect");
    runtime
        .block_on(sim.restart(Duration::from_millis(700)))
        .unwrap();
    wait_for("the restart noticed", || {
        errors(&status, "disconnect") > lost_before
    });
    wait_for("the link back up after the restart", || {
        status.snapshot().link == LinkState::Connected
    });
    sim.set("F_L0", "p_kw", 2_540.0, t0 + 8_000);
    sim.set("F_L22", "p_kw", 1.8, t0 + 8_000);
    wait_for("values after the restart", || {
        has(&store, "F_L0", "p_kw", t0 + 8_000, 2_540.0, "good")
            && has(&store, "F_L22", "p_kw", t0 + 8_000, 1_800.0, "good")
    });

    shutdown.cancel();
    runtime.block_on(running.task).unwrap();
    assert_eq!(status.snapshot().link, LinkState::Stopped);
    drop(sim);
}

#[test]
fn a_signed_and_encrypted_session_with_a_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let (gridpack, store) = fixture_store(dir.path());
    let runtime = connector_runtime();
    let sim = start_simulator(&runtime, &["F_L0"], Some(dir.path().join("server-pki")));
    let t0 = (chrono::Utc::now().timestamp_millis() / 1_000 - 30) * 1_000;
    sim.set("F_L0", "u_kv", 10.4, t0);
    let mut config = quick_config(
        "scada",
        sim.endpoint_url(),
        vec![item(sim.node_id("F_L0", "u_kv"), "F_L0", "u_kv", 1.0)],
    );
    config.security_policy = SecurityPolicyName::Basic256sha256;
    config.security_mode = SecurityModeName::SignAndEncrypt;
    config.identity = Identity::Username {
        username: SIM_USER.into(),
        password: SIM_PASSWORD.into(),
    };
    config.pki_dir = Some(dir.path().join("client-pki"));
    config.trust_server_certs = true;
    // Key generation in a debug build takes a while.
    config.request_timeout_ms = 10_000;
    let context = connector_context(store.clone(), &gridpack.network);
    let running = spawn_connector(&runtime, &ConnectorConfig::Opcua(config.clone()), &context);
    wait_for("the value over the secure channel", || {
        has(&store, "F_L0", "u_kv", t0, 10.4, "good")
    });
    context.shutdown.cancel();
    runtime.block_on(running.task).unwrap();

    // A wrong password: the connector keeps trying and says why.
    config.identity = Identity::Username {
        username: SIM_USER.into(),
        password: "wrong".into(),
    };
    config.name = "scada-wrong".into();
    let context = connector_context(store.clone(), &gridpack.network);
    let running = spawn_connector(&runtime, &ConnectorConfig::Opcua(config), &context);
    wait_for("the refused login reported", || {
        matches!(
            running.status.snapshot().link,
            LinkState::Disconnected { .. }
        )
    });
    context.shutdown.cancel();
    runtime.block_on(running.task).unwrap();
}
