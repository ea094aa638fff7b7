//! The connectors against servers we did not write: pymodbus (PyPI; installed by
//! `scripts/test`, whose Python it names in `HEADROOM_INTEROP_PYTHON`) serving a
//! small point set (`tests/interop/pymodbus_server.py`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use headroom_connectors::modbus::{
    DataType, ModbusConfig, ModbusDevice, ModbusPoint, Order, RegisterKind,
};
use headroom_connectors::{ConnectorConfig, LinkState};

use crate::support::{connector_context, connector_runtime, fixture_store, store_rows, wait_for};

/// A Python server process, killed when dropped.
struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    fn start(script: &str) -> Self {
        let python = std::env::var("HEADROOM_INTEROP_PYTHON").unwrap_or_else(|_| {
            panic!(
                "HEADROOM_INTEROP_PYTHON is not set: run the tests with scripts/test, which \
                 installs pymodbus into a virtual environment and names its Python there"
            )
        });
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop")
            .join(script);
        let mut child = Command::new(python)
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Python server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the server prints its port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a port, got {line:?}"));
        Self { child, port }
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
    let server = PythonServer::start("pymodbus_server.py");
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
    let running = {
        let _entered = runtime.enter();
        connector.spawn(&context).unwrap()
    };
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
