//! Metering files dropped in a folder to the connector to the store: both
//! forms, a bad file refused with its line and rule, a re-delivered file taken
//! once, and a file still being written left alone.

use std::time::Duration;

use chrono::NaiveDate;
use headroom_connectors::ConnectorConfig;
use headroom_connectors::meter_files::MeterFilesConfig;
use headroom_simulators::meter_files::{drop_file, shaped_day};
use headroom_store::Store;

use crate::support::{
    connector_context, connector_runtime, fixture_store, spawn_connector, store_rows, wait_for,
};

fn scalar(store: &Store, sql: &str) -> String {
    store_rows(store, sql)
        .into_iter()
        .next()
        .unwrap_or_default()
}

#[test]
fn dropped_files_are_taken_once_and_bad_ones_explained() {
    let store_dir = tempfile::tempdir().unwrap();
    let drop_dir = tempfile::tempdir().unwrap();
    let folder = drop_dir.path().to_owned();
    let (gridpack, store) = fixture_store(store_dir.path());
    let runtime = connector_runtime();

    let date = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
    let mut day = shaped_day("M-1", date, 10.0);
    day.kwh[5] = None;
    drop_file(
        &folder,
        "ami-2026-07-01.csv",
        &[day.clone(), shaped_day("M-2", date, 4.0)],
    )
    .unwrap();
    std::fs::write(
        folder.join("scada-export.csv"),
        "ts,asset,quantity,value\n2026-07-01T00:00:00Z,T_6,u_kv,10.4\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("broken.csv"),
        "ts,asset,quantity,value\n2026-07-01T00:00:00Z,T_6,u_kv,10.4\n2026-07-01T00:15:00Z,T_6,p_kw,lots\n",
    )
    .unwrap();

    let connector = ConnectorConfig::MeterFiles(MeterFilesConfig {
        name: "ami".into(),
        folder: folder.clone(),
        meters: [("M-1", "T_5"), ("M-2", "T_7")]
            .into_iter()
            .map(|(m, a)| (m.to_owned(), a.to_owned()))
            .collect(),
        scan_interval_ms: 50,
        settle_ms: 200,
        utc_offset_min: 480,
    });
    let context = connector_context(store.clone(), &gridpack.network);
    let shutdown = context.shutdown.clone();
    let running = spawn_connector(&runtime, &connector, &context);
    let status = running.status.clone();

    wait_for("both good files done", || {
        folder.join("done/ami-2026-07-01.csv").exists()
            && folder.join("done/scada-export.csv").exists()
    });
    wait_for("the broken file failed", || {
        folder.join("failed/broken.csv.reason").exists()
    });
    let reason = std::fs::read_to_string(folder.join("failed/broken.csv.reason")).unwrap();
    assert_eq!(reason.trim(), "line 3: `value` \"lots\" is not a number");
    assert_eq!(
        scalar(
            &store,
            "SELECT count(*) FROM readings WHERE source = 'ami' AND asset = 'T_6'"
        ),
        "1",
        "nothing of the broken file is stored"
    );
    // 95 intervals of M-1 and 96 of M-2, each as energy and average power.
    assert_eq!(
        scalar(
            &store,
            "SELECT count(*) FROM readings WHERE source = 'ami' AND quantity = 'energy_kwh'"
        ),
        "191"
    );
    // The first interval of 1 July at UTC+8 starts at 16:00 UTC the day before;
    // its power is four times its energy.
    let first = day.kwh[0].unwrap();
    let power: f64 = scalar(
        &store,
        "SELECT value FROM readings WHERE asset = 'T_5' AND quantity = 'p_kw' \
         AND ts = to_timestamp_millis(1782864000000 - 8 * 3600000)",
    )
    .parse()
    .expect("one value");
    assert!((power - first * 4.0).abs() < 1e-9, "{power} vs {first} kWh");

    // The same content again: recognised, moved, not written twice.
    drop_file(
        &folder,
        "ami-again.csv",
        &[day.clone(), shaped_day("M-2", date, 4.0)],
    )
    .unwrap();
    wait_for("the re-delivery moved", || {
        folder.join("done/ami-again.csv").exists()
    });
    assert_eq!(status.snapshot().errors.get("duplicate_file"), Some(&1));
    let readings_before = status.snapshot().readings;

    // A file still being written (touched just now) waits for its settle time.
    let mut late = shaped_day("M-1", date.succ_opt().unwrap(), 9.0);
    late.kwh[0] = Some(1.0);
    let path = drop_file(&folder, "late.csv", &[late]).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert!(path.exists(), "taken before it settled");
    wait_for("the late file done", || {
        folder.join("done/late.csv").exists()
    });
    assert_eq!(status.snapshot().readings, readings_before + 192);

    shutdown.cancel();
    runtime.block_on(running.task).unwrap();
    let snapshot = status.snapshot();
    assert_eq!(snapshot.durable, snapshot.readings, "{snapshot:?}");
    assert_eq!(snapshot.errors.get("failed_file"), Some(&1));
}
