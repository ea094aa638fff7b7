//! `headroom serve` and `headroom token`: wiring of the store, ledger,
//! connectors and HTTP service; `--demo` adds a generated city and the
//! field-hardware simulators in-process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use headroom_api::auth::{Role, Tokens, config_lines, new_token};
use headroom_api::ledger::Ledger;
use headroom_api::{AppState, ServiceConfig, ServiceParts, SourcesHandler};
use headroom_connectors::{ConnectorContext, ConnectorsConfig, StatusRegistry};
use headroom_geodata::{AssetKind, GridpackPaths, parse_network};
use headroom_store::{DataLocation, Store, import_gridpack, stored_network};
use tokio_util::sync::CancellationToken;

use crate::commands::{Failure, Outcome};

fn failed(context: &str) -> impl Fn(String) -> Failure + '_ {
    move |message| Failure {
        exit_code: 1,
        message: format!("{context}: {message}"),
    }
}

impl From<headroom_api::Error> for Failure {
    fn from(e: headroom_api::Error) -> Self {
        let exit_code = match e {
            headroom_api::Error::Config { .. } | headroom_api::Error::BadRequest { .. } => 2,
            _ => 1,
        };
        Failure {
            exit_code,
            message: e.to_string(),
        }
    }
}

/// `headroom token ROLE`.
pub(crate) fn token(role: &str, name: Option<&str>) -> Outcome {
    let role = Role::parse(role).ok_or_else(|| {
        Failure::bad_input(format!(
            "role `{role}`: must be one of viewer, planner, workflow, ingest, admin"
        ))
    })?;
    let token = new_token(role);
    let name = name.map_or_else(|| format!("{role}-token"), str::to_owned);
    println!("token (give it to its holder; it is not kept anywhere):\n{token}\n");
    println!(
        "add to the config (only its SHA-256 is stored):\n{}",
        config_lines(&name, role, &token)
    );
    Ok(())
}

/// The connectors' status for `GET /v1/sources`.
struct RegistrySources(StatusRegistry);

impl SourcesHandler for RegistrySources {
    fn sources(&self) -> Vec<serde_json::Value> {
        self.0
            .snapshot()
            .iter()
            .filter_map(|s| serde_json::to_value(s).ok())
            .collect()
    }
}

/// `headroom serve`.
pub(crate) fn serve(config_file: Option<&Path>, demo: bool, wal_dir: &Path) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed("runtime")(e.to_string()))?;
    runtime.block_on(run(config_file, demo, wal_dir))
}

async fn run(config_file: Option<&Path>, demo: bool, wal_dir: &Path) -> Outcome {
    init_logging();
    let mut config = ServiceConfig::load(config_file)?;
    let shutdown = CancellationToken::new();
    let mut extra_tokens = Vec::new();
    let mut demo_parts = None;
    if demo {
        let prepared = crate::demo::prepare(&mut config, shutdown.clone()).await?;
        extra_tokens.push((
            "demo-planner",
            Role::Planner,
            prepared.planner_token.clone(),
        ));
        extra_tokens.push((
            "demo-workflow",
            Role::Workflow,
            prepared.workflow_token.clone(),
        ));
        extra_tokens.push(("demo-admin", Role::Admin, prepared.admin_token.clone()));
        demo_parts = Some(prepared);
    }
    let location = DataLocation::parse(&config.data_dir, Some(wal_dir))?;
    let Some(bytes) = stored_network(&location)? else {
        return Err(Failure::bad_input(format!(
            "data_dir {location}: no network; run `headroom import GRIDPACK --data-dir {location}` first"
        )));
    };
    let network = parse_network(
        &bytes,
        &PathBuf::from(format!("{location}/network.geojson")),
    )?;
    // Opening replays the log: off the async workers, the network lent and
    // handed back rather than copied.
    let (network, store) = {
        let location = location.clone();
        let store_config = config.store.clone();
        tokio::task::spawn_blocking(move || {
            Store::open_at(&location, &network, store_config).map(|store| (network, store))
        })
        .await
        .map_err(|e| failed("store")(e.to_string()))??
    };
    let store = Arc::new(store);
    let ledger = Ledger::open(&config.database_url(), &config.ledger).await?;

    // Connectors, validated against the network before anything starts.
    let mut connector_table = toml::Table::new();
    connector_table.insert(
        "connector".into(),
        toml::Value::Array(
            config
                .connector
                .iter()
                .cloned()
                .map(toml::Value::Table)
                .collect(),
        ),
    );
    let connectors: ConnectorsConfig = connector_table
        .try_into()
        .map_err(|e: toml::de::Error| Failure::bad_input(format!("config: connector: {e}")))?;
    let measurable = measurable_ids(&network);
    let measurable = Arc::new(measurable);
    connectors
        .validate(&|id| measurable.contains(id))
        .map_err(|e| Failure::bad_input(format!("config: {e}")))?;
    // The demo's production side reports its connectors beside the service's.
    let registry = demo_parts
        .as_ref()
        .map_or_else(StatusRegistry::default, |demo| demo.registry.clone());
    let context = ConnectorContext {
        sink: store.clone(),
        known_asset: {
            let measurable = measurable.clone();
            Arc::new(move |id: &str| measurable.contains(id))
        },
        shutdown: shutdown.clone(),
        registry: registry.clone(),
    };
    let mut connector_tasks = Vec::new();
    for connector in &connectors.connector {
        let running = connector
            .spawn(&context)
            .map_err(|e| Failure::bad_input(format!("config: {e}")))?;
        connector_tasks.push(running.task);
    }

    let mut tokens = Tokens::new(&config.tokens);
    for (name, role, token) in &extra_tokens {
        tokens.add(name, *role, token);
    }
    if config.tokens.is_empty() && extra_tokens.is_empty() {
        tracing::warn!(
            "no tokens configured: every /v1 request will be refused (see `headroom token ROLE`)"
        );
    }
    let state = AppState::new(ServiceParts {
        config: config.clone(),
        tokens,
        network,
        store: store.clone(),
        ledger: ledger.clone(),
        sources: Arc::new(RegistrySources(registry)),
        metrics: headroom_api::metrics_handle(),
    })
    .await?;
    let mut background = headroom_api::background::spawn(state.clone(), shutdown.clone());
    if let Some(applications) = &config.relay.applications {
        background.push(headroom_api::relay::spawn(
            state.clone(),
            applications,
            shutdown.clone(),
        )?);
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| Failure::bad_input(format!("listen {}: {e}", config.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| failed("listen")(e.to_string()))?;
    let mut banner = String::new();
    let _ = writeln!(
        banner,
        "Headroom serving on http://{address}/ (data in {location})"
    );
    if let Some(demo) = &demo_parts {
        let _ = writeln!(banner, "demo grid: {}", demo.summary);
        let _ = writeln!(banner, "planner token: {}", demo.planner_token);
        let _ = writeln!(banner, "workflow token: {}", demo.workflow_token);
        let _ = writeln!(banner, "admin token: {}", demo.admin_token);
    }
    let _ = writeln!(banner, "Ctrl-C stops");
    print!("{banner}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let server = tokio::spawn(headroom_api::serve(
        listener,
        state.clone(),
        shutdown.clone(),
    ));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated() => {}
        () = shutdown.cancelled() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = server.await;
    for task in connector_tasks.into_iter().chain(background) {
        let _ = task.await;
    }
    if let Some(demo) = demo_parts {
        demo.stop().await;
    }
    ledger.close().await;
    // The store owns a runtime of its own: its last handles (the engine's
    // readings, the connectors' sink) are dropped off the async workers.
    tokio::task::spawn_blocking(move || -> Result<(), Failure> {
        store.flush()?;
        store.close()?;
        drop((state, context, store));
        Ok(())
    })
    .await
    .map_err(|e| failed("store")(e.to_string()))??;
    println!("stopped; store flushed");
    Ok(())
}

/// Ids of the assets readings may be about: feeders, distribution transformers
/// and substation transformers.
pub(crate) fn measurable_ids(
    network: &headroom_geodata::Network,
) -> std::collections::HashSet<String> {
    [
        AssetKind::Feeder,
        AssetKind::Transformer,
        AssetKind::SubstationTransformer,
    ]
    .iter()
    .flat_map(|kind| {
        let count = match kind {
            AssetKind::Feeder => network.feeders.len(),
            AssetKind::Transformer => network.transformers.len(),
            _ => network.substation_transformers.len(),
        };
        let network = &network;
        (0..count as u32).map(move |index| {
            network
                .id_of(headroom_geodata::AssetRef { kind: *kind, index })
                .to_owned()
        })
    })
    .collect()
}

/// Logs to stderr, filtered by `HEADROOM_LOG` (default: info).
pub(crate) fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEADROOM_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    // The OPC UA stack narrates every connection at info; the
                    // connectors report links themselves.
                    "info,opcua_crypto=warn,opcua_core=warn,opcua_client=warn,opcua_server=warn",
                )
            }),
        )
        .try_init();
}

/// Ctrl-C or SIGTERM, whichever comes first.
pub(crate) async fn stop_requested() {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated() => {}
    }
}

/// SIGTERM on Unix (what service managers and test harnesses send).
pub(crate) async fn terminated() {
    #[cfg(unix)]
    {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Imports a gridpack into a fresh data folder (the demo's).
pub(crate) fn import_into(gridpack: &Path, data_dir: &Path) -> Result<(), Failure> {
    let paths = GridpackPaths::locate(gridpack)?;
    let network = headroom_geodata::read_network(&paths.network)?;
    import_gridpack(
        &paths,
        &network,
        &DataLocation::Local(data_dir.to_owned()),
        headroom_store::StoreConfig::default(),
    )?;
    Ok(())
}
