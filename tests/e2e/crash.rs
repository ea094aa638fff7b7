//! Crash safety of the store: `headroom ingest` is killed with SIGKILL at random
//! points (mid-batch, mid-fsync, mid-flush to Parquet) several times and restarted
//! on the same data folder. Every acknowledged reading must be there exactly once;
//! a batch logged but killed before its acknowledgement was printed may be there
//! too (durability precedes the acknowledgement), but nothing that was never sent,
//! and nothing twice.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::support::{fixture, headroom};

#[test]
fn every_acknowledged_reading_survives_sigkill_exactly_once() {
    // The fixture's network alone: a gridpack folder without readings.
    let gridpack = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("1-MV-semiurb").join("network.geojson"),
        gridpack.path().join("network.geojson"),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let import = headroom([
        "import".as_ref(),
        gridpack.path().as_os_str(),
        "--data-dir".as_ref(),
        data.path().as_os_str(),
    ]);
    assert_eq!(import.code, 0, "{}", import.all_output());

    let assets = ["T_2", "T_4", "T_5", "T_6"];
    let start_ms: i64 = 1_780_000_000_000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut sent: HashMap<i64, (String, f64)> = HashMap::new();
    let mut acked_batches: Vec<Vec<i64>> = Vec::new();
    let mut next = 0i64;
    let mut kills = 0;
    for round in 0..6 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args([
                "ingest",
                "--flush-interval-ms",
                "2",
                "--buffer-max-bytes",
                "40000",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("headroom ingest starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line
                    .strip_prefix("acked ")
                    .and_then(|r| r.split(' ').next())
                {
                    let _ = tx.send(n.parse().unwrap());
                }
            }
        });
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"ts,asset,quantity,value\n").unwrap();
        let mut batches: Vec<Vec<i64>> = Vec::new();
        // The last round ends cleanly; the others are killed at a random moment.
        let lifetime = Duration::from_millis(rng.random_range(150..900));
        let began = Instant::now();
        while round == 5 && batches.len() < 20 || round < 5 && began.elapsed() < lifetime {
            let size = rng.random_range(1..200);
            let mut lines = String::new();
            let mut keys = Vec::new();
            for _ in 0..size {
                let asset = assets[(next % assets.len() as i64) as usize];
                let ts = start_ms + next * 1_000;
                let value = next as f64;
                lines.push_str(&format!("{ts},{asset},p_kw,{value}\n"));
                sent.insert(ts, (asset.to_owned(), value));
                keys.push(ts);
                next += 1;
            }
            lines.push('\n');
            if stdin.write_all(lines.as_bytes()).is_err() {
                break;
            }
            batches.push(keys);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..4)));
        }
        if round < 5 {
            child.kill().unwrap();
            kills += 1;
        } else {
            drop(stdin);
        }
        let status = child.wait().unwrap();
        reader.join().unwrap();
        if round == 5 {
            assert!(status.success(), "the last round ends cleanly");
        }
        for n in rx.try_iter() {
            acked_batches.push(batches[n as usize - 1].clone());
        }
    }
    assert_eq!(kills, 5);
    let acked: usize = acked_batches.iter().map(Vec::len).sum();
    assert!(acked > 1_000, "only {acked} readings acknowledged");

    let run = headroom([
        "sql".as_ref(),
        "--data-dir".as_ref(),
        data.path().as_os_str(),
        "SELECT CAST(ts AS BIGINT) AS ms, asset, value FROM readings".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    let mut present: BTreeMap<i64, Vec<(String, f64)>> = BTreeMap::new();
    for line in run.stdout.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(ms) = cells[0].parse::<i64>() else {
            continue; // the header
        };
        present
            .entry(ms)
            .or_default()
            .push((cells[1].to_owned(), cells[2].parse().unwrap()));
    }
    for (ts, rows) in &present {
        assert_eq!(rows.len(), 1, "reading at {ts} stored {} times", rows.len());
        let sent_row = sent
            .get(ts)
            .unwrap_or_else(|| panic!("{ts} was never sent"));
        assert_eq!(&rows[0], sent_row, "reading at {ts} changed");
    }
    for batch in &acked_batches {
        for ts in batch {
            assert!(
                present.contains_key(ts),
                "acknowledged reading at {ts} lost"
            );
        }
    }
}
