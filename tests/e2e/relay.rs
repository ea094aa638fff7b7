//! The isolation-device data path end to end: a simulated SCADA server (OPC UA)
//! and monitoring terminals (Modbus) feed `headroom collect`; a simulated
//! one-way device with 5 % drop, 5 % duplication, reordering and 1 % corruption
//! carries its files to `headroom serve`'s relay inbox. The collector and the
//! service are both SIGKILLed at random points, several times, and restarted.
//!
//! Afterwards every reading the collector acknowledged (what its kept files
//! hold) is in the store exactly once with its value, every corrupted copy is
//! in `rejected/` with its reason, and once the numbers the service reports as
//! gaps are resent with `headroom relay resend`, no gap is left open.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headroom_connectors::modbus::{
    DataType, ModbusConfig, ModbusDevice, ModbusPoint, Order, RegisterKind,
};
use headroom_connectors::{ConnectorConfig, ConnectorsConfig};
use headroom_readings::Interner;
use headroom_relay::VerifyingKey;
use headroom_relay::sealed::{self, Trust};
use headroom_simulators::isolation_device::{Faults, IsolationDevice, Passage};
use headroom_simulators::modbus::{ModbusSimulator, address_of};
use headroom_simulators::opcua::{OpcUaSimulator, OpcUaSimulatorConfig};
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::opcua::{item, quick_config};
use crate::service_process::ServiceProcess;
use crate::support::{
    call_json, connector_runtime, fixture, get_ok, headroom, serve_gridpack, store_rows, wait_for,
};

/// (asset, quantity, ts ms) of a reading.
type Key = (String, String, i64);

const OPCUA_ASSETS: [&str; 2] = ["F_L0", "F_L22"];
/// Unit id, register address, asset, quantity of the Modbus points.
const MODBUS_POINTS: [(u8, &str, &str); 3] =
    [(1, "T_2", "p_kw"), (1, "T_2", "q_kvar"), (2, "T_4", "p_kw")];

fn modbus_point(asset: &str, quantity: &str) -> ModbusPoint {
    ModbusPoint {
        address: address_of(quantity).unwrap(),
        register: RegisterKind::Input,
        data_type: DataType::F32,
        word_order: Order::Big,
        byte_order: Order::Big,
        scale: 1.0,
        offset: 0.0,
        asset: asset.into(),
        quantity: quantity.into(),
    }
}

fn collector_config(dir: &Path, opcua_url: String, modbus_port: u16) -> PathBuf {
    let connectors = ConnectorsConfig {
        connector: vec![
            ConnectorConfig::Opcua(quick_config(
                "scada",
                opcua_url,
                OPCUA_ASSETS
                    .iter()
                    .map(|a| item(format!("ns=2;s={a}.p_kw"), a, "p_kw", 1.0))
                    .collect(),
            )),
            ConnectorConfig::Modbus(ModbusConfig {
                name: "dtu".into(),
                host: "127.0.0.1".into(),
                port: modbus_port,
                timeout_ms: 300,
                retry_min_ms: 100,
                retry_max_ms: 400,
                devices: [1u8, 2]
                    .iter()
                    .map(|&unit| ModbusDevice {
                        unit_id: unit,
                        poll_interval_ms: 100,
                        points: MODBUS_POINTS
                            .iter()
                            .filter(|p| p.0 == unit)
                            .map(|p| modbus_point(p.1, p.2))
                            .collect(),
                    })
                    .collect(),
            }),
        ],
    };
    let path = dir.join("collector.toml");
    let text = format!(
        "network = \"{}\"\n\n[collector]\nstream = \"scada\"\nkey = \"{}\"\nstate_dir = \"{}\"\nbatch_max_readings = 10\nbatch_max_age_ms = 200\nheartbeat_s = 1\n\n{}",
        fixture("1-MV-semiurb").join("network.geojson").display(),
        dir.join("collector.key").display(),
        dir.join("collector-state").display(),
        toml::to_string(&connectors).unwrap()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start_collector(dir: &Path, config: &Path, outbox: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("collector.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["collect", "--config"])
        .arg(config)
        .arg("--outbox")
        .arg(outbox)
        .env("HEADROOM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("headroom collect starts")
}

/// Stops the collector as a service manager does; a failure shows its log,
/// which says why it stopped (an earlier start may have failed after a kill).
fn terminate(child: &mut Child, dir: &Path) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default();
    assert!(
        exit.success(),
        "stopped by SIGTERM: {exit}; its log:\n{log}"
    );
}

/// The inbox's stream as `/v1/sources` reports it: (highest taken, gaps).
fn inbox_stream(service: &ServiceProcess, token: &str) -> (u64, Vec<(u64, u64)>) {
    let sources = get_ok(&format!("{}/v1/sources", service.url), token);
    let inbox = sources["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "relay_inbox")
        .expect("the relay inbox is a source")
        .clone();
    let Some(stream) = inbox["streams"].as_array().and_then(|s| s.first()) else {
        return (0, Vec::new());
    };
    let gaps = stream["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["from"].as_u64().unwrap(), g["to"].as_u64().unwrap()))
        .collect();
    (stream["highest"].as_u64().unwrap_or(0), gaps)
}

/// Every reading of the collector's kept files, by key; a key met twice (an
/// OPC UA value delivered again after a reconnect) must hold the same value.
fn kept_readings(state_dir: &Path, public: &Path) -> HashMap<Key, f64> {
    let mut trust = Trust::default();
    trust.add("scada", [VerifyingKey::read(public).unwrap()]);
    let mut interned = Interner::default();
    let mut readings = HashMap::new();
    for entry in std::fs::read_dir(state_dir.join("sent")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let opened = sealed::open(&bytes, &trust).unwrap();
        for r in
            headroom_relay::body::decode(opened.body, opened.header.rows, &mut interned).unwrap()
        {
            let key = (r.asset.to_string(), r.quantity.as_str().to_owned(), r.ts_ms);
            if let Some(before) = readings.insert(key.clone(), r.value) {
                assert_eq!(before, r.value, "{key:?} kept twice with two values");
            }
        }
    }
    readings
}

#[test]
fn every_collected_reading_crosses_a_faulty_device_exactly_once_through_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let keygen = headroom([
        "relay".as_ref(),
        "keygen".as_ref(),
        "--out".as_ref(),
        dir.join("collector").as_os_str(),
    ]);
    assert_eq!(keygen.code, 0, "{}", keygen.all_output());
    let outbox = dir.join("outbox");
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::create_dir_all(&inbox).unwrap();

    // The field: values change every 50 ms; every value set is remembered.
    let runtime = connector_runtime();
    let (opcua, modbus) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let opcua = OpcUaSimulator::start(
            listener,
            OpcUaSimulatorConfig {
                assets: OPCUA_ASSETS.iter().map(|a| (*a).to_owned()).collect(),
                pki_dir: None,
            },
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let modbus = ModbusSimulator::start(listener, 2).await.unwrap();
        (Arc::new(opcua), Arc::new(modbus))
    });
    let values_set: Arc<Mutex<HashSet<(String, String, u64)>>> = Arc::default();
    let field_running = Arc::new(AtomicBool::new(true));
    let field = {
        let (opcua, modbus) = (opcua.clone(), modbus.clone());
        let (values_set, running) = (values_set.clone(), field_running.clone());
        std::thread::spawn(move || {
            let mut step = 0u32;
            while running.load(Ordering::SeqCst) {
                step += 1;
                let now = chrono::Utc::now().timestamp_millis();
                let mut set = values_set.lock().unwrap();
                for (i, asset) in OPCUA_ASSETS.iter().enumerate() {
                    let value = 1000.0 + f64::from(step) + i as f64 / 4.0;
                    opcua.set(asset, "p_kw", value, now);
                    set.insert(((*asset).to_owned(), "p_kw".to_owned(), value.to_bits()));
                }
                for (i, (unit, asset, quantity)) in MODBUS_POINTS.iter().enumerate() {
                    // Exact in f32: what the terminal's register holds is what is read.
                    let value = (step % 4096) as f32 + i as f32 / 8.0;
                    modbus.set(*unit, address_of(quantity).unwrap(), value);
                    set.insert((
                        (*asset).to_owned(),
                        (*quantity).to_owned(),
                        f64::from(value).to_bits(),
                    ));
                }
                drop(set);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // The two zones and the device between them.
    let config = collector_config(dir, opcua.endpoint_url(), modbus.address().port());
    let mut collector = start_collector(dir, &config, &outbox);
    let inbox_config = format!(
        "[store]\nwal_flush_interval_ms = 20\n\n[[connector]]\nname = \"from-production\"\ntype = \"relay_inbox\"\nfolder = \"{}\"\nscan_interval_ms = 50\n\n[connector.streams.scada]\nkeys = [\"{}\"]\n",
        inbox.display(),
        dir.join("collector.pub").display()
    );
    let service_dir = dir.join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
    let (service, token) = serve_gridpack(
        &service_dir,
        &fixture("1-MV-semiurb"),
        "workflow",
        &inbox_config,
    );
    let mut service = Some(service);
    let service_args = [
        "--config".to_owned(),
        service_dir.join("headroom.toml").display().to_string(),
    ];
    let restart_service = || {
        let args: Vec<&str> = service_args.iter().map(String::as_str).collect();
        ServiceProcess::start(env!("CARGO_BIN_EXE_headroom"), &args, &[])
    };
    let faults = Faults {
        drop: 0.05,
        duplicate: 0.05,
        reorder: 4,
        corrupt: 0.01,
        delay: Duration::ZERO,
    };
    let passages: Arc<Mutex<Vec<Passage>>> = Arc::default();
    let device_running = Arc::new(AtomicBool::new(true));
    let device = {
        let (from, to) = (outbox.clone(), inbox.clone());
        let (passages, running) = (passages.clone(), device_running.clone());
        std::thread::spawn(move || {
            let mut device = IsolationDevice::new(&from, &to, faults, 26);
            while running.load(Ordering::SeqCst) {
                let done = device.step(false).unwrap();
                passages.lock().unwrap().extend(done);
                std::thread::sleep(Duration::from_millis(20));
            }
            let done = device.step(true).unwrap();
            passages.lock().unwrap().extend(done);
        })
    };

    // SIGKILL one side, the other or both, at random moments.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(26);
    let (mut collector_kills, mut service_kills) = (0, 0);
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(rng.random_range(800..2500)));
        let victim = if round < 2 {
            round
        } else {
            rng.random_range(0..3)
        };
        if victim != 1 {
            collector.kill().unwrap();
            collector.wait().unwrap();
            collector_kills += 1;
            collector = start_collector(dir, &config, &outbox);
        }
        if victim != 0 {
            drop(service.take());
            service_kills += 1;
            service = Some(restart_service());
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    // At 1 % a short run may corrupt nothing: two copies damaged on the link
    // for sure, one in the header, one in the body.
    let mut damaged = Vec::new();
    for (sequence, at_end) in [(2u64, false), (3, true)] {
        let name = sealed::file_name("scada", sequence);
        let mut bytes = std::fs::read(dir.join("collector-state/sent").join(&name)).unwrap();
        let at = if at_end { bytes.len() - 3 } else { 30 };
        bytes[at] ^= 0x04;
        std::fs::write(inbox.join(format!(".{name}.link")), &bytes).unwrap();
        std::fs::rename(inbox.join(format!(".{name}.link")), inbox.join(&name)).unwrap();
        damaged.push(Passage::Corrupted(name));
    }

    // The field stops; the collector seals what it holds and stops cleanly.
    field_running.store(false, Ordering::SeqCst);
    field.join().unwrap();
    runtime.block_on(async {
        opcua.stop().await;
        modbus.stop().await;
    });
    std::thread::sleep(Duration::from_millis(500));
    terminate(&mut collector, dir);
    let status = headroom_relay::collector::read_status(&dir.join("collector-state")).unwrap();
    let last = status.next_sequence - 1;
    assert_eq!(status.buffered_readings, 0, "{status:?}");

    // The operator resends what the service reports missing, and the tail the
    // collector's status shows beyond the service's highest, until none is.
    let service = service.unwrap();
    let began = Instant::now();
    let mut resends = 0;
    loop {
        std::thread::sleep(Duration::from_millis(600));
        let (highest, mut gaps) = inbox_stream(&service, &token);
        if highest < last {
            gaps.push((highest + 1, last));
        }
        if gaps.is_empty() {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "gaps never closed: {gaps:?}"
        );
        for (from, to) in gaps {
            let resent = headroom([
                "relay",
                "resend",
                "--config",
                config.to_str().unwrap(),
                "--outbox",
                outbox.to_str().unwrap(),
                "--stream",
                "scada",
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
            ]);
            assert_eq!(resent.code, 0, "{}", resent.all_output());
            resends += 1;
        }
    }
    // Every gap announced as an event was closed by one (the service checks
    // its sources every 2 s, and reads the gaps its events left open when it
    // restarts).
    let mut opened = 0;
    wait_for("every relay_gap_opened event closed", || {
        let events = get_ok(
            &format!("{}/v1/events?after=0&limit=1000", service.url),
            &token,
        );
        let mut open = BTreeMap::new();
        opened = 0;
        for event in events["events"].as_array().unwrap() {
            let d = &event["detail"];
            let key = (
                d["stream"].to_string(),
                d["from"].as_u64(),
                d["to"].as_u64(),
            );
            match event["kind"].as_str().unwrap() {
                "relay_gap_opened" => {
                    opened += 1;
                    *open.entry(key).or_insert(0) += 1;
                }
                "relay_gap_closed" => *open.entry(key).or_insert(0) -= 1,
                _ => {}
            }
        }
        open.values().all(|n| *n == 0)
    });
    device_running.store(false, Ordering::SeqCst);
    device.join().unwrap();
    wait_for("the inbox to take every delivered file", || {
        std::fs::read_dir(&inbox).unwrap().flatten().all(|e| {
            !e.file_type().unwrap().is_file() || e.file_name().to_string_lossy().starts_with('.')
        })
    });
    drop(service);

    // Every reading kept by the collector is in the store, once, with its value.
    let kept = kept_readings(&dir.join("collector-state"), &dir.join("collector.pub"));
    let gridpack = headroom_geodata::Gridpack::read(&fixture("1-MV-semiurb")).unwrap();
    let store = headroom_store::Store::open(
        &service_dir.join("data"),
        &gridpack.network,
        headroom_store::StoreConfig::default(),
    )
    .unwrap();
    let rows = store_rows(
        &store,
        "SELECT asset, quantity, CAST(ts AS BIGINT), value FROM readings WHERE source IN ('scada', 'dtu')",
    );
    let stored: HashMap<Key, f64> = rows
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.split(',').collect();
            (
                (
                    cells[0].to_owned(),
                    cells[1].to_owned(),
                    cells[2].parse().unwrap(),
                ),
                cells[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(stored.len(), rows.len(), "a key stored twice");
    assert!(kept.len() > 200, "only {} readings collected", kept.len());
    let missing: Vec<&Key> = kept
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<&Key> = stored
        .keys()
        .filter(|k| !kept.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, never collected {extra:?} ({} kept, {} stored)",
        kept.len(),
        stored.len()
    );
    let values_set = values_set.lock().unwrap();
    for (key, value) in &stored {
        assert_eq!(kept[key], *value, "{key:?}");
        assert!(
            values_set.contains(&(key.0.clone(), key.1.clone(), value.to_bits())),
            "{key:?} = {value} was never served"
        );
    }

    // Every corrupted copy was refused, with its rule.
    let mut passages = passages.lock().unwrap();
    passages.extend(damaged);
    let mut corrupted: BTreeMap<&str, usize> = BTreeMap::new();
    for passage in passages.iter() {
        if let Passage::Corrupted(name) = passage {
            *corrupted.entry(name.as_str()).or_default() += 1;
        }
    }
    let rejected = inbox.join("rejected");
    for (name, copies) in &corrupted {
        let reasons: Vec<String> = std::fs::read_dir(&rejected)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(name) && n.ends_with(".reason"))
            .collect();
        assert!(
            reasons.len() >= *copies,
            "{name}: {copies} corrupted, {reasons:?} rejected"
        );
        for reason in reasons {
            let text = std::fs::read_to_string(rejected.join(&reason)).unwrap();
            assert!(
                ["header: ", "signature: ", "digest: ", "name: "]
                    .iter()
                    .any(|r| text.starts_with(r)),
                "{reason}: {text}"
            );
        }
    }
    // Each file was taken once: the ledger names each number once, all of them.
    let ledger = std::fs::read_to_string(inbox.join(".ledger")).unwrap();
    let numbers: Vec<u64> = ledger
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    let unique: HashSet<u64> = numbers.iter().copied().collect();
    assert_eq!(unique.len(), numbers.len(), "a file taken twice");
    assert_eq!(unique, (1..=last).collect::<HashSet<_>>());
    let count = |f: fn(&Passage) -> bool| passages.iter().filter(|p| f(p)).count();
    eprintln!(
        "relay: {} files, {} readings; {} dropped, {} duplicated, {} corrupted; {} resends, {opened} gap events; {collector_kills} collector and {service_kills} service SIGKILLs",
        last,
        kept.len(),
        count(|p| matches!(p, Passage::Dropped(_))),
        count(|p| matches!(p, Passage::Duplicated(_))),
        corrupted.values().sum::<usize>(),
        resends
    );
    assert!(collector_kills >= 2 && service_kills >= 2);
}

/// What must agree between two ledgers: status, last ranking, the reserved
/// scheme and supplies (not times, ids or who).
fn ledger_view(record: &Value) -> Value {
    serde_json::json!({
        "status": record["status"],
        "ranking": record["ranking"],
        "scheme": record["reservation"]["scheme"],
        "supplies": record["reservation"]["supplies"],
    })
}

#[test]
fn applications_through_signed_files_leave_the_ledger_as_the_http_routes_do() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The business hall signs with Ed25519, the service answers with SM2.
    for (algorithm, name) in [("ed25519", "hall"), ("sm2", "service")] {
        let made = headroom([
            "relay",
            "keygen",
            "--algorithm",
            algorithm,
            "--out",
            dir.join(name).to_str().unwrap(),
        ]);
        assert_eq!(made.code, 0, "{}", made.all_output());
    }
    let applications: Vec<Value> = serde_json::from_slice(
        &std::fs::read(fixture("1-MV-semiurb").join("applications.json")).unwrap(),
    )
    .unwrap();

    // Over HTTP: each application registered, then its first scheme reserved.
    let http_dir = dir.join("http");
    std::fs::create_dir_all(&http_dir).unwrap();
    let (http, http_token) = serve_gridpack(&http_dir, &fixture("1-MV-semiurb"), "workflow", "");
    let mut over_http = Vec::new();
    for app in &applications {
        let id = app["id"].as_str().unwrap();
        let url = format!("{}/v1/applications/{id}", http.url);
        let registered = call_json("PUT", &url, &http_token, Some(app));
        let reserved = call_json(
            "POST",
            &format!("{url}/reservation"),
            &http_token,
            Some(&serde_json::json!({"scheme": 1})),
        );
        over_http.push((registered, reserved));
    }

    // Through files: the same actions, one requests file per application.
    let files_dir = dir.join("files");
    std::fs::create_dir_all(&files_dir).unwrap();
    let (inbox, answers) = (dir.join("applications-in"), dir.join("answers-out"));
    let relay_config = format!(
        "[relay.applications]\ninbox = \"{}\"\nanswers_outbox = \"{}\"\nanswers_key = \"{}\"\nstate_dir = \"{}\"\nscan_interval_ms = 50\n\n[relay.applications.streams.hall]\nkeys = [\"{}\"]\n",
        inbox.display(),
        answers.display(),
        dir.join("service.key").display(),
        dir.join("answers-state").display(),
        dir.join("hall.pub").display()
    );
    let (files, files_token) = serve_gridpack(
        &files_dir,
        &fixture("1-MV-semiurb"),
        "workflow",
        &relay_config,
    );
    // The business hall's two ends: sign requests into the service's inbox,
    // verify the answers that come back.
    let send = |requests: &std::path::Path| {
        headroom([
            "relay",
            "send",
            requests.to_str().unwrap(),
            "--key",
            dir.join("hall.key").to_str().unwrap(),
            "--stream",
            "hall",
            "--state-dir",
            dir.join("hall-state").to_str().unwrap(),
            "--outbox",
            inbox.to_str().unwrap(),
        ])
    };
    let receive = || {
        headroom([
            "relay",
            "receive",
            "--inbox",
            answers.to_str().unwrap(),
            "--key",
            dir.join("service.pub").to_str().unwrap(),
        ])
    };
    for (i, app) in applications.iter().enumerate() {
        let requests = dir.join(format!("requests-{i}.json"));
        let actions = serde_json::json!([
            {"action": "register", "application": app},
            {"action": "reserve", "id": app["id"], "scheme": 1},
        ]);
        std::fs::write(&requests, actions.to_string()).unwrap();
        let sent = send(&requests);
        assert_eq!(sent.code, 0, "{}", sent.all_output());
        assert!(
            sent.stdout.contains(&format!("hall.{:012}.relay", i + 1)),
            "{}",
            sent.stdout
        );
    }
    wait_for("an answers file per requests file", || {
        std::fs::read_dir(&answers).map_or(0, |d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        }) == applications.len()
    });
    // A requests file that is not actions is refused before it is sent.
    std::fs::write(
        dir.join("bad.json"),
        r#"[{"action": "cancel", "id": "A01"}]"#,
    )
    .unwrap();
    let refused = send(&dir.join("bad.json"));
    assert_eq!(refused.code, 2, "{}", refused.all_output());
    assert!(
        refused.stderr.contains("[0]: unknown variant `cancel`"),
        "{}",
        refused.stderr
    );

    // The business hall's end verifies every answer with the service's key.
    let received = receive();
    assert_eq!(received.code, 0, "{}", received.all_output());
    let lines: Vec<Value> = received
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), applications.len());
    for (i, (line, ((put_status, ranking), (post_status, reservation)))) in
        lines.iter().zip(&over_http).enumerate()
    {
        let id = applications[i]["id"].as_str().unwrap();
        assert_eq!(
            line["answers"]["in_reply_to"],
            serde_json::json!({"stream": "hall", "sequence": i + 1})
        );
        let [register, reserve] = line["answers"]["answers"].as_array().unwrap().as_slice() else {
            panic!("two answers for {id}: {line}");
        };
        assert_eq!(
            (
                register["status"].as_u64().unwrap() as u16,
                &register["body"]
            ),
            (*put_status, ranking),
            "{id}: the ranking"
        );
        assert_eq!(
            reserve["status"].as_u64().unwrap() as u16,
            *post_status,
            "{id}: {reserve}"
        );
        assert_eq!(reserve["body"]["supplies"], reservation["supplies"], "{id}");
        assert_eq!(reserve["application"]["id"], id);
        if *post_status == 201 {
            assert!(
                reserve["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["kind"] == "reservation_made"),
                "{id}: {reserve}"
            );
        }
        // And the two ledgers agree.
        let from_http = call_json(
            "GET",
            &format!("{}/v1/applications/{id}", http.url),
            &http_token,
            None,
        )
        .1;
        let from_files = call_json(
            "GET",
            &format!("{}/v1/applications/{id}", files.url),
            &files_token,
            None,
        )
        .1;
        assert_eq!(ledger_view(&from_files), ledger_view(&from_http), "{id}");
        assert_eq!(from_files["audit"][0]["actor"], "relay:hall", "{id}");
    }
    assert!(
        over_http.iter().any(|(_, (status, _))| *status == 201),
        "some scheme was reserved"
    );
    // A second receive finds nothing new; a replayed answers file is a duplicate.
    let done = answers.join("done").join("answers.000000000001.relay");
    std::fs::copy(&done, answers.join("answers.000000000001.relay")).unwrap();
    let again = receive();
    assert_eq!(
        (again.code, again.stdout.as_str()),
        (0, ""),
        "{}",
        again.all_output()
    );
}
