//! The service's own work between requests: releasing expired reservations,
//! taking new readings into the engine (and computing the map's figures from
//! them before anyone asks: a city's take seconds), and telling the workflow system when a
//! reserved scheme no longer fits the latest readings or network.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::state::{AppState, reserved_loads};

/// Starts the loops; they end at `shutdown`.
pub fn spawn(state: AppState, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    let config = state.config().clone();
    let every = |seconds: u64| Duration::from_secs(seconds.max(1));
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn({
        let state = state.clone();
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                warmed = state.warm_map() => {
                    if let Err(e) = warmed {
                        tracing::warn!("computing the map's figures at start failed: {e}");
                    }
                }
            }
        }
    }));
    tasks.push(tokio::spawn(repeat(
        shutdown.clone(),
        every(config.ledger.expiry_check_interval_s),
        {
            let state = state.clone();
            move || {
                let state = state.clone();
                async move { expire(&state).await }
            }
        },
    )));
    let last_accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
        state.store().counts().accepted,
    ));
    tasks.push(tokio::spawn(repeat(
        shutdown.clone(),
        every(config.readings.refresh_interval_s),
        {
            let state = state.clone();
            move || {
                let state = state.clone();
                let last_accepted = last_accepted.clone();
                async move {
                    let accepted = state.store().counts().accepted;
                    let seen = last_accepted.swap(accepted, std::sync::atomic::Ordering::SeqCst);
                    if accepted != seen {
                        state.refresh_readings().await?;
                        state.warm_map().await?;
                    }
                    Ok(())
                }
            }
        },
    )));
    // The connectors' gaps; the applications inbox watches its own.
    let gap_events: std::sync::Arc<tokio::sync::Mutex<Option<crate::relay::GapEvents>>> =
        std::sync::Arc::default();
    tasks.push(tokio::spawn(repeat(shutdown.clone(), every(2), {
        let state = state.clone();
        move || {
            let state = state.clone();
            let gap_events = gap_events.clone();
            async move {
                let gaps = crate::relay::gaps_of_sources(&state.sources());
                let mut watcher = gap_events.lock().await;
                if watcher.is_none() {
                    let loaded = crate::relay::GapEvents::load(state.ledger()).await?;
                    *watcher = Some(loaded.without_source(crate::relay::APPLICATIONS_SOURCE));
                }
                match watcher.as_mut() {
                    Some(watcher) => watcher.update(state.ledger(), gaps).await,
                    None => Ok(()),
                }
            }
        }
    })));
    tasks.push(tokio::spawn(repeat(
        shutdown,
        every(config.ledger.fit_check_interval_s),
        move || {
            let state = state.clone();
            async move { check_fits(&state).await.map(|_| ()) }
        },
    )));
    tasks
}

async fn repeat<F, Fut>(shutdown: CancellationToken, period: Duration, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                if let Err(e) = work().await {
                    tracing::warn!(error = %e, "background work failed; trying again next period");
                }
            }
        }
    }
}

/// Releases reservations past their expiry.
pub async fn expire(state: &AppState) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let expired = state.ledger().expire_due(now).await?;
    if !expired.is_empty() {
        metrics::counter!("headroom_reservations_expired_total").increment(expired.len() as u64);
        state.reload_reservations().await?;
    }
    Ok(())
}

/// Re-judges every reserved scheme with the others held, on the engine of the
/// moment; writes an event for each that stopped fitting. Returns how many
/// changed state.
pub async fn check_fits(state: &AppState) -> Result<usize> {
    let ledger = state.ledger();
    let records = ledger.active_reservations().await?;
    let mut changed = 0;
    for record in &records {
        let Some(app) = ledger.application_request(&record.application).await? else {
            continue;
        };
        let engine = state.engine();
        let others: Vec<_> = records
            .iter()
            .filter(|r| r.application != record.application)
            .cloned()
            .collect();
        let supplies = record.supplies.clone();
        let judged = tokio::task::spawn_blocking(move || {
            let loads = reserved_loads(&engine, &others);
            engine
                .with_reservations(loads)
                .evaluate_supplies(&app, &supplies)
        })
        .await
        .map_err(|e| crate::error::Error::Internal(format!("the fit check failed: {e}")))?;
        let (fits, detail) = match judged {
            Ok(candidates) => {
                let short: Vec<_> = candidates
                    .iter()
                    .filter(|c| !c.feasible)
                    .map(|c| json!({"supply": c.node, "headroom_kw": c.headroom_kw, "binding_constraint": c.binding_constraint}))
                    .collect();
                (
                    short.is_empty(),
                    json!({"reservation": record.id, "supplies": record.supplies, "short": short}),
                )
            }
            // A supply gone from the network: it cannot fit.
            Err(e) => (
                false,
                json!({"reservation": record.id, "supplies": record.supplies, "reason": e.to_string()}),
            ),
        };
        if ledger.mark_fit(&record.application, fits, detail).await? {
            changed += 1;
        }
    }
    Ok(changed)
}
