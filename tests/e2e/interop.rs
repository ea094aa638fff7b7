//! The connectors against servers we did not write: pymodbus and asyncua (PyPI;
//! installed by `scripts/test`, whose Python it names in
//! `HEADROOM_INTEROP_PYTHON`), each serving a small point set
//! (`tests/interop/pymodbus_server.py`, `tests/interop/asyncua_server.py`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use headroom_connectors::modbus::{
    DataType, ModbusConfig, ModbusDevice, ModbusPoint, Order, RegisterKind,
};
use headroom_connectors::{ConnectorConfig, LinkState};

use crate::opcua::{item, quick_config, rows_of};

use crate::support::{
    connector_context, connector_runtime, external_tools, fixture_store, spawn_connector,
    store_rows, wait_for,
};

/// A Python server process, killed when dropped.
struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    /// Starts `script`, which prints its port first; `extra_lines` more lines
    /// it prints are returned. `None` when the test is skipped for want of the
    /// Python with pymodbus and asyncua that `scripts/test` installs.
    fn start_with(script: &str, extra_lines: usize) -> Option<(Self, Vec<String>)> {
        let [python] = external_tools(["HEADROOM_INTEROP_PYTHON"])?;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop")
            .join(script);
        let mut child = Command::new(python)
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Python server starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the server prints its port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a port, got {line:?}"));
        let extra = (0..extra_lines)
            .map(|_| {
                let mut line = String::new();
                stdout.read_line(&mut line).expect("the server prints");
                line.trim().to_owned()
            })
            .collect();
        Some((Self { child, port }, extra))
    }

    fn start(script: &str) -> Option<Self> {
        Self::start_with(script, 0).map(|(server, _)| server)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_modbus_connector_reads_pymodbus() {
    let Some(server) = PythonServer::start("pymodbus_server.py") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (gridpack, store) = fixture_store(dir.path());
    let runtime = connector_runtime();
    let point = |address, register, data_type, quantity: &str, scale| ModbusPoint {
        address,
        register,
        data_type,
        word_order: Order::Big,
        byte_order: Order::Big,
        scale,
        offset: 0.0,
        asset: "T_2".into(),
        quantity: quantity.into(),
    };
    let connector = ConnectorConfig::Modbus(ModbusConfig {
        name: "pymodbus".into(),
        host: "127.0.0.1".into(),
        port: server.port,
        timeout_ms: 1000,
        retry_min_ms: 100,
        retry_max_ms: 500,
        devices: vec![ModbusDevice {
            unit_id: 1,
            poll_interval_ms: 100,
            points: vec![
                point(0, RegisterKind::Input, DataType::F32, "p_kw", 1.0),
                point(2, RegisterKind::Input, DataType::F32, "q_kvar", 1.0),
                point(10, RegisterKind::Holding, DataType::U16, "i_a", 0.1),
            ],
        }],
    });
    let context = connector_context(store.clone(), &gridpack.network);
    let shutdown = context.shutdown.clone();
    let running = spawn_connector(&runtime, &connector, &context);
    let query = "SELECT DISTINCT quantity, value, quality FROM readings \
                 WHERE source = 'pymodbus' ORDER BY quantity";
    wait_for("readings from pymodbus", || {
        store_rows(&store, query).len() >= 3
    });
    let rows = store_rows(&store, query);
    assert_eq!(
        rows,
        vec!["i_a,45.7,good", "p_kw,321.5,good", "q_kvar,-12.25,good"]
    );
    assert_eq!(running.status.snapshot().link, LinkState::Connected);
    shutdown.cancel();
    runtime.block_on(running.task).unwrap();
}

#[test]
fn the_opcua_connector_reads_asyncua() {
    let Some((server, printed)) = PythonServer::start_with("asyncua_server.py", 1) else {
        return;
    };
    let namespace = &printed[0];
    let dir = tempfile::tempdir().unwrap();
    let (gridpack, store) = fixture_store(dir.path());
    let runtime = connector_runtime();
    let node = |name: &str| format!("ns={namespace};s={name}");
    let mut config = quick_config(
        "asyncua",
        format!("opc.tcp://127.0.0.1:{}/", server.port),
        vec![
            item(node("F_L0.p_kw"), "F_L0", "p_kw", 1.0),
            item(node("F_L0.i_a"), "F_L0", "i_a", 1.0),
            item(node("F_L22.p_kw"), "F_L22", "p_kw", 1_000.0),
            item(node("F_L0.q_kvar"), "F_L0", "q_kvar", 1.0),
        ],
    );
    // asyncua's keep-alive answers in Python, on a loaded 2-core machine.
    config.keep_alive_interval_ms = 2_000;
    config.request_timeout_ms = 5_000;
    let context = connector_context(store.clone(), &gridpack.network);
    let running = spawn_connector(&runtime, &ConnectorConfig::Opcua(config), &context);
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    let all = || {
        [
            ("F_L0", "p_kw"),
            ("F_L0", "i_a"),
            ("F_L22", "p_kw"),
            ("F_L0", "q_kvar"),
        ]
        .iter()
        .flat_map(|(asset, quantity)| {
            rows_of(&store, "asyncua", asset, quantity).into_iter().map(
                move |(ts, value, quality)| format!("{asset},{quantity},{ts},{value},{quality}"),
            )
        })
        .collect::<Vec<_>>()
    };
    wait_for("the four values from asyncua", || all().len() >= 4);
    assert_eq!(
        all(),
        vec![
            format!("F_L0,p_kw,{t0},2500.25,good"),
            format!("F_L0,i_a,{t0},121.5,good"),
            format!("F_L22,p_kw,{},2000,good", t0 + 900_000),
            // A bad status without a value: kept, as bad.
            format!("F_L0,q_kvar,{t0},0,bad"),
        ]
    );
    assert_eq!(running.status.snapshot().link, LinkState::Connected);
    context.shutdown.cancel();
    runtime.block_on(running.task).unwrap();
}
