//! `PUT /v1/network`: a new network is validated whole, checked against the
//! reservations held, and only then swapped in; requests in flight finish on
//! the engine they started with.

use std::path::Path;
use std::sync::Arc;

use headroom_engine::Engine;
use headroom_geodata::{NetworkSummary as Counts, Topology, parse_network};
use headroom_store::StoreReadings;
use serde_json::json;

use crate::error::{Error, Result};
use crate::routes::NetworkSummary;
use crate::state::{AppState, reserved_loads};

/// Validates `geojson` and makes it the network of the store and the engine.
pub(crate) async fn replace(
    state: &AppState,
    geojson: Vec<u8>,
    actor: &str,
) -> Result<NetworkSummary> {
    let (network, summary) = tokio::task::spawn_blocking({
        let geojson = geojson.clone();
        move || -> Result<_> {
            let network = parse_network(&geojson, Path::new("network.geojson")).map_err(|e| {
                if e.is_bad_input() {
                    Error::Unprocessable {
                        field: None,
                        message: e.to_string(),
                    }
                } else {
                    Error::Internal(e.to_string())
                }
            })?;
            let topology = Topology::trace(&network);
            let counts = Counts::new(&network, &topology);
            let summary = NetworkSummary {
                counts: counts
                    .counts
                    .iter()
                    .map(|(kind, n)| (kind.as_str().to_owned(), json!(n)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                feeders: counts.feeders.len(),
                warnings: topology
                    .warnings
                    .iter()
                    .map(|w| w.describe(&network).to_string())
                    .collect(),
            };
            Ok((network, summary))
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("validating the network failed: {e}")))??;

    let reservations = state.ledger().active_reservations().await?;
    for r in &reservations {
        if let Some(missing) = r.supplies.iter().find(|s| network.lookup(s).is_none()) {
            return Err(Error::Unprocessable {
                field: Some(missing.clone()),
                message: format!(
                    "application {} holds a reservation at {missing}, which the new network lacks; release it first",
                    r.application
                ),
            });
        }
    }

    let _guard = state.swapping().await;
    let store = state.store().clone();
    let config = state.config().engine.clone();
    let days = state.config().readings.window_days;
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine> {
        store.set_network(&network)?;
        store.keep_network(geojson)?;
        let readings = StoreReadings::recent(store, days)?;
        let engine = Engine::new(network, Arc::new(readings), config, Vec::new());
        let loads = reserved_loads(&engine, &reservations);
        Ok(engine.with_reservations(loads))
    })
    .await
    .map_err(|e| Error::Internal(format!("building the engine failed: {e}")))??;
    state.install(engine);
    tracing::info!(actor, feeders = summary.feeders, "network replaced");
    Ok(summary)
}
