//! The readings store: rejections, last write wins, buffer and files read as one,
//! replay of the log, retention.

use std::sync::Arc;

use headroom_geodata::{LonLat, Network, NetworkBuilder, NodeType, Quantity};
use headroom_readings::{Quality, Reading, ReadingSink, ReadingsSource};
use headroom_store::{RejectReason, Store, StoreConfig, pretty};

/// A substation S with one feeder F: busbar B, three nodes N1-N3 100 m apart
/// going east, a transformer T1-T3 at each.
fn feeder() -> NetworkBuilder {
    let at = |east_m: f64| LonLat::new(117.2 + east_m / 94_600.0, 31.8);
    let mut b = NetworkBuilder::new();
    b.substation("S", at(0.0))
        .node("B", NodeType::Busbar, at(0.0))
        .substation_transformer("TR", "S", "B", 40_000.0)
        .node("N1", NodeType::RingMainUnit, at(100.0))
        .node("N2", NodeType::Pole, at(200.0))
        .node("N3", NodeType::Pole, at(300.0))
        .segment("L1", "B", "N1", 0.1, 0.1, 300.0, 1_000.0)
        .segment("L2", "N1", "N2", 0.1, 0.1, 300.0, 1_000.0)
        .segment("L3", "N2", "N3", 0.1, 0.1, 300.0, 1_000.0)
        .feeder("F", "B", "N1", Some(400.0))
        .transformer("T1", "N1", 400.0)
        .transformer("T2", "N2", 400.0)
        .transformer("T3", "N3", 400.0);
    b
}

const DAY_MS: i64 = 86_400_000;

fn network() -> Network {
    feeder().build().expect("test grid")
}

fn config() -> StoreConfig {
    StoreConfig {
        wal_flush_interval_ms: 5,
        ..StoreConfig::default()
    }
}

fn reading(asset: &str, ts_ms: i64, value: f64) -> Reading {
    Reading {
        ts_ms,
        asset: asset.into(),
        quantity: Quantity::PKw,
        value,
        quality: Quality::Good,
        source: Arc::from("test"),
    }
}

/// A recent midnight, so that retention keeps the test's days.
fn today() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(DAY_MS) - 3 * DAY_MS
}

fn rows(store: &Store, query: &str) -> Vec<String> {
    table_rows(&pretty(&store.sql(query).expect("query runs")).unwrap())
}

/// The rows of a printed table, blanks squeezed.
fn table_rows(table: &str) -> Vec<String> {
    // A border, the header, a border, the rows, a border.
    table
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// `query` over `history` alone (as another process would read it), printed.
fn history_table(
    runtime: &tokio::runtime::Runtime,
    history: &headroom_store::History,
    query: &str,
) -> String {
    let ctx = datafusion::prelude::SessionContext::new();
    history.register(&ctx).unwrap();
    runtime.block_on(async {
        let batches = ctx.sql(query).await.unwrap().collect().await.unwrap();
        pretty(&batches).unwrap()
    })
}

fn count(store: &Store, query: &str) -> i64 {
    let batches = store.sql(query).expect("query runs");
    let table = pretty(&batches).unwrap();
    table
        .lines()
        .nth(3)
        .and_then(|l| l.trim_matches(|c| c == '|' || c == ' ').parse().ok())
        .unwrap_or_else(|| panic!("no count in\n{table}"))
}

#[test]
fn each_rejection_reason_goes_to_the_rejected_table_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let network = network();
    let store = Store::open(dir.path(), &network, config()).unwrap();
    let t0 = today();
    let far_future = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let summary = store
        .write(vec![
            reading("T1", t0, 10.0),
            reading("NO-SUCH-ASSET", t0, 10.0),
            reading("T2", t0, f64::NAN),
            reading("T2", t0 + 900_000, f64::INFINITY),
            reading("T3", far_future, 10.0),
        ])
        .wait()
        .unwrap();
    assert_eq!((summary.accepted, summary.rejected), (1, 4));
    let counts = store.counts();
    assert_eq!(counts.accepted, 1);
    assert_eq!(counts.rejected, [1, 2, 1]);
    let by_reason = rows(
        &store,
        "SELECT reason, asset, count(*) AS n FROM rejected GROUP BY reason, asset ORDER BY reason, asset",
    );
    assert_eq!(
        by_reason,
        [
            format!("| {} | T2 | 2 |", RejectReason::NonFinite.as_str()),
            format!("| {} | T3 | 1 |", RejectReason::FutureTimestamp.as_str()),
            format!(
                "| {} | NO-SUCH-ASSET | 1 |",
                RejectReason::UnknownAsset.as_str()
            ),
        ]
    );
    // Rejected rows survive a flush and a restart.
    store.flush().unwrap();
    drop(store);
    let store = Store::open(dir.path(), &network, config()).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM rejected"), 4);
    assert_eq!(count(&store, "SELECT count(*) FROM readings"), 1);
}

#[test]
fn the_last_write_of_a_key_wins_in_the_buffer_in_the_files_and_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let network = network();
    let store = Store::open(dir.path(), &network, config()).unwrap();
    let t0 = today();
    store
        .write(vec![reading("T1", t0, 1.0), reading("T1", t0, 2.0)])
        .wait()
        .unwrap();
    let value = |store: &Store| rows(store, "SELECT value FROM readings WHERE asset = 'T1'");
    assert_eq!(value(&store), ["| 2.0 |"]);
    store.flush().unwrap();
    assert_eq!(value(&store), ["| 2.0 |"]);
    // A correction of a key already in a file: the buffer's value, once.
    store.write(vec![reading("T1", t0, 3.0)]).wait().unwrap();
    assert_eq!(value(&store), ["| 3.0 |"]);
    store.flush().unwrap();
    assert_eq!(value(&store), ["| 3.0 |"]);
    assert_eq!(store.counts().day_files, 1);
}

#[test]
fn a_query_over_buffer_and_files_returns_each_reading_once() {
    let dir = tempfile::tempdir().unwrap();
    let network = network();
    let store = Store::open(dir.path(), &network, config()).unwrap();
    let t0 = today();
    // Days 0 and 1 to the files; then days 1 and 2 to the buffer, half of day 1
    // rewriting keys the files hold.
    let day = |d: i64, from: i64, n: i64, value: f64| -> Vec<Reading> {
        (from..from + n)
            .map(|k| reading("T1", t0 + d * DAY_MS + k * 900_000, value))
            .collect()
    };
    store
        .write([day(0, 0, 96, 1.0), day(1, 0, 96, 1.0)].concat())
        .wait()
        .unwrap();
    store.flush().unwrap();
    store
        .write([day(1, 48, 96 - 48, 2.0), day(2, 0, 96, 2.0)].concat())
        .wait()
        .unwrap();
    let expect = |store: &Store| {
        assert_eq!(count(store, "SELECT count(*) FROM readings"), 3 * 96);
        assert_eq!(
            count(
                store,
                "SELECT count(*) FROM (SELECT asset, quantity, ts FROM readings GROUP BY asset, quantity, ts HAVING count(*) > 1)"
            ),
            0
        );
        assert_eq!(
            count(store, "SELECT count(*) FROM readings WHERE value = 2.0"),
            48 + 96
        );
    };
    expect(&store);
    store.flush().unwrap();
    expect(&store);
    assert_eq!(store.counts().day_files, 3);
}

#[test]
fn acknowledged_readings_come_back_from_the_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let network = network();
    let t0 = today();
    {
        let store = Store::open(dir.path(), &network, config()).unwrap();
        store.write(vec![reading("T1", t0, 5.0)]).wait().unwrap();
        store.flush().unwrap();
        store
            .write(vec![reading("T2", t0, 6.0), reading("T1", t0, 7.0)])
            .wait()
            .unwrap();
        // No flush: the last write lives only in the log.
    }
    let store = Store::open(dir.path(), &network, config()).unwrap();
    assert_eq!(
        rows(&store, "SELECT asset, value FROM readings ORDER BY asset"),
        ["| T1 | 7.0 |", "| T2 | 6.0 |"]
    );
    // A torn record at the end of the log (a crash mid-write) is dropped.
    drop(store);
    let wal = dir.path().join("wal");
    let last = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    std::fs::write(&last, [7u8, 0, 0, 0, 1, 2]).unwrap();
    let store = Store::open(dir.path(), &network, config()).unwrap();
    assert_eq!(store.counts().torn_bytes, 6);
    assert_eq!(count(&store, "SELECT count(*) FROM readings"), 2);
}

#[test]
fn day_partitions_older_than_the_retention_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let network = network();
    let config = StoreConfig {
        retention_days: 30,
        // The expired day's file goes at once (see the next test for a wait).
        superseded_files_kept_s: 0,
        ..config()
    };
    let store = Store::open(dir.path(), &network, config.clone()).unwrap();
    let t0 = today();
    store
        .write(vec![
            reading("T1", t0 - 45 * DAY_MS, 1.0),
            reading("T1", t0 - 20 * DAY_MS, 2.0),
            reading("T1", t0, 3.0),
        ])
        .wait()
        .unwrap();
    store.flush().unwrap();
    assert_eq!(
        rows(&store, "SELECT value FROM readings ORDER BY ts"),
        ["| 2.0 |", "| 3.0 |"]
    );
    assert_eq!(store.counts().day_files, 2);
    let files = walk(dir.path());
    // The two days kept, and the assets table for readers of the history.
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".parquet")).count(),
        3,
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.ends_with("/assets.parquet")));
}

#[test]
fn anything_but_a_query_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &network(), config()).unwrap();
    for statement in [
        "DROP TABLE readings",
        "CREATE TABLE x (a INT)",
        "INSERT INTO assets VALUES ('x')",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let e = store.sql(statement).expect_err(statement);
        assert!(e.is_bad_input(), "{statement}: {e}");
    }
    assert_eq!(count(&store, "SELECT count(*) FROM assets"), 5);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[test]
fn asset_statistics_follow_new_readings() {
    let dir = tempfile::tempdir().unwrap();
    let network = network();
    let store = Store::open(dir.path(), &network, config()).unwrap();
    let t0 = today();
    // One day of T1: P rises 1 kW per quarter-hour, Q a third of it.
    let mut day = Vec::new();
    for k in 0..96 {
        let ts = t0 + k * 900_000;
        day.push(reading("T1", ts, k as f64));
        day.push(Reading {
            quantity: Quantity::QKvar,
            ..reading("T1", ts, k as f64 / 3.0)
        });
    }
    store.write(day).wait().unwrap();
    store.flush().unwrap();
    let window = (t0, t0 + 2 * DAY_MS);
    let stats = store.asset_stats("T1", window.0, window.1).unwrap();
    let expected_peak = 95.0f64.hypot(95.0 / 3.0);
    assert!(
        (stats.peak_kva.unwrap() - expected_peak).abs() < 1e-9,
        "{stats:?}"
    );
    let p95 = stats.p95_kva.unwrap();
    assert!(p95 > 0.9 * expected_peak && p95 < expected_peak, "{p95}");
    assert!((stats.coverage - 0.5).abs() < 1e-9, "{}", stats.coverage);
    let latest_p = stats.latest.iter().find(|l| l.quantity == "p_kw").unwrap();
    assert_eq!((latest_p.ts_ms, latest_p.value), (t0 + 95 * 900_000, 95.0));
    let weekend = matches!(
        chrono::DateTime::from_timestamp_millis(t0)
            .unwrap()
            .format("%u")
            .to_string()
            .as_str(),
        "6" | "7"
    );
    let typical = if weekend {
        &stats.typical_weekend_kw
    } else {
        &stats.typical_weekday_kw
    };
    assert_eq!(typical[10], Some(10.0));
    // A new peak arrives: the cached figures are replaced.
    store
        .write(vec![reading("T1", t0 + DAY_MS, 500.0)])
        .wait()
        .unwrap();
    let stats = store.asset_stats("T1", window.0, window.1).unwrap();
    assert_eq!(stats.peak_kva, Some(500.0));
    assert_eq!(
        stats
            .latest
            .iter()
            .find(|l| l.quantity == "p_kw")
            .unwrap()
            .value,
        500.0
    );
}

#[test]
fn a_feeders_readings_are_cached_until_one_of_its_assets_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let network = network();
    let store = Store::open(dir.path(), &network, config()).unwrap();
    let t0 = today();
    let day: Vec<Reading> = (0..96)
        .flat_map(|k| {
            let ts = t0 + k * 900_000;
            [reading("T1", ts, 10.0), reading("T2", ts, 20.0)]
        })
        .collect();
    store.write(day).wait().unwrap();
    store.flush().unwrap();
    let group = [network.lookup("T1").unwrap(), network.lookup("T2").unwrap()];
    let window = (t0, t0 + DAY_MS);

    let first = store.group_readings(&group, window.0, window.1).unwrap();
    assert_eq!(first.series(group[1], Quantity::PKw).len(), 96);
    let again = store.group_readings(&group, window.0, window.1).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "a second read is served from the cache"
    );

    store.write(vec![reading("T3", t0, 5.0)]).wait().unwrap();
    let unrelated = store.group_readings(&group, window.0, window.1).unwrap();
    assert!(
        Arc::ptr_eq(&first, &unrelated),
        "a write for an asset outside the group keeps it cached"
    );

    store.write(vec![reading("T2", t0, 99.0)]).wait().unwrap();
    let corrected = store.group_readings(&group, window.0, window.1).unwrap();
    assert!(!Arc::ptr_eq(&first, &corrected));
    let t2 = corrected.series(group[1], Quantity::PKw);
    assert_eq!((t2.len(), t2[0]), (96, (t0, 99.0)));
}

/// Another reader of the location (a cluster, a replica that only queries)
/// sees the flushed history and the assets without the store's buffer.
#[test]
fn the_flushed_history_reads_alone_from_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &network(), config()).unwrap();
    let t0 = today();
    store
        .write(vec![
            reading("T1", t0, 1.0),
            reading("T2", t0 + 900_000, 2.0),
        ])
        .wait()
        .unwrap();
    store.flush().unwrap();
    // Written after the flush: in the buffer only.
    store.write(vec![reading("T3", t0, 3.0)]).wait().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let location = headroom_store::DataLocation::Local(dir.path().to_owned());
    let history = runtime
        .block_on(headroom_store::History::open(&location))
        .unwrap();
    assert!(history.flushed_ms() > 0);
    assert_eq!(history.readings_urls().len(), 1);
    let table = history_table(
        &runtime,
        &history,
        "SELECT r.asset, r.value, a.feeder FROM readings r JOIN assets a ON a.id = r.asset ORDER BY r.asset",
    );
    let lines = table_rows(&table);
    assert_eq!(lines, ["| T1 | 1.0 | F |", "| T2 | 2.0 | F |"], "{table}");
}

/// A flush that rewrites a day file keeps the old one for
/// `superseded_files_kept_s`: a reader that planned on the manifest before
/// (another process, a cluster) still reads the day whole. After that a flush
/// deletes it, and a restart in between keeps it (it is no orphan).
#[test]
fn a_rewritten_day_file_is_kept_for_readers_of_the_manifest_before() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        superseded_files_kept_s: 2,
        ..config()
    };
    let network = network();
    let store = Store::open(dir.path(), &network, config.clone()).unwrap();
    let t0 = today();
    store.write(vec![reading("T1", t0, 1.0)]).wait().unwrap();
    store.flush().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let location = headroom_store::DataLocation::Local(dir.path().to_owned());
    let planned_before = runtime
        .block_on(headroom_store::History::open(&location))
        .unwrap();
    let first_file = planned_before.readings_urls()[0].clone();

    store.write(vec![reading("T2", t0, 2.0)]).wait().unwrap();
    store.flush().unwrap();
    let count_of = |history: &headroom_store::History| {
        history_table(&runtime, history, "SELECT count(*) AS n FROM readings")
    };
    assert!(
        count_of(&planned_before).contains("| 1 "),
        "the old day file is gone"
    );
    let after = runtime
        .block_on(headroom_store::History::open(&location))
        .unwrap();
    assert!(count_of(&after).contains("| 2 "));
    let day_files = || {
        walk(dir.path())
            .into_iter()
            .filter(|f| f.contains("/readings/date="))
            .count()
    };
    assert_eq!(day_files(), 2, "{:?}", walk(dir.path()));

    // A restart within the time keeps the superseded file.
    store.close().unwrap();
    let store = Store::open(dir.path(), &network, config).unwrap();
    assert_eq!(day_files(), 2, "{:?}", walk(dir.path()));

    // Past it, the next flush deletes it; the file it replaced now waits.
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    store.write(vec![reading("T3", t0, 3.0)]).wait().unwrap();
    store.flush().unwrap();
    assert!(
        !walk(dir.path())
            .iter()
            .any(|f| first_file.ends_with(f.as_str())),
        "{first_file} outlived its time: {:?}",
        walk(dir.path())
    );
    assert_eq!(day_files(), 2, "{:?}", walk(dir.path()));
    assert_eq!(count(&store, "SELECT count(*) FROM readings"), 3);
}
