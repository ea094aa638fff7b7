//! Benches of the readings store.
//!
//! - `ingest`: readings written through the `ReadingSink` with the write-ahead log
//!   on, in batches of 10,000, 32 batches in flight (as many connectors and HTTP
//!   clients would have), for 30 million readings into a synthetic city of 10
//!   substations (3,000 transformers). The log's group commit runs every 10 ms with
//!   one `fdatasync` per group; buffer flushes to Parquet (every 256 MB) happen
//!   during the run and count. Printed: readings per second, sustained. Target at
//!   least 1,000,000 readings/s on 2 cores.
//!
//! Run: `cargo bench --bench store`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use headroom_engine::store::{Quality, Reading, ReadingSink, Store, StoreConfig};
use headroom_geodata::Quantity;
use headroom_simulators::{SynthConfig, synthetic_grid};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 10_000;
const IN_FLIGHT: usize = 32;
const TOTAL: usize = 30_000_000;

fn main() {
    let grid = synthetic_grid(&SynthConfig::city(10, 1)).expect("synthetic city");
    let network = grid.network;
    let assets: Vec<Arc<str>> = network
        .transformers
        .iter()
        .map(|t| Arc::from(t.id.as_str()))
        .collect();
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = StoreConfig {
        wal_flush_interval_ms: 10,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), &network, config).expect("store opens");
    let source: Arc<str> = Arc::from("bench");
    let start_ms: i64 = 1_780_000_000_000;
    // Readings are made before the clock starts: the bench measures the store.
    let batches: Vec<Vec<Reading>> = (0..TOTAL / BATCH)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    let asset = &assets[n % assets.len()];
                    let step = (n / assets.len()) as i64;
                    Reading {
                        ts_ms: start_ms + step * 900_000,
                        asset: asset.clone(),
                        quantity: if n.is_multiple_of(2) {
                            Quantity::PKw
                        } else {
                            Quantity::QKvar
                        },
                        value: (n % 1000) as f64 * 0.5,
                        quality: Quality::Good,
                        source: source.clone(),
                    }
                })
                .collect()
        })
        .collect();
    let began = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut accepted = 0;
    for batch in batches {
        if in_flight.len() == IN_FLIGHT {
            let ticket: headroom_engine::store::WriteTicket =
                in_flight.pop_front().expect("in flight");
            accepted += ticket.wait().expect("durable").accepted;
        }
        in_flight.push_back(store.write(batch));
    }
    for ticket in in_flight {
        accepted += ticket.wait().expect("durable").accepted;
    }
    let elapsed = began.elapsed();
    let counts = store.counts();
    eprintln!(
        "ingest: {accepted} readings in {elapsed:?}: {:.0} readings/s sustained \
         (group commit every 10 ms, fdatasync per group; {} flushes to Parquet during the run)",
        accepted as f64 / elapsed.as_secs_f64(),
        counts.flushes
    );
}
