//! The store's history on a cluster: the same SQL the store answers locally,
//! run by an Apache DataFusion Ballista scheduler and its executors over the
//! day-partitioned Parquet files (a local folder every node shares, or S3).
//!
//! **Data model.** Only the *flushed* history crosses to a cluster: `readings`
//! is a listing table over exactly the files the manifest names, `assets` the
//! `assets.parquet` the store writes with its network (see
//! [`headroom_store::History`]). The write buffer lives in the one process that
//! ingests and is out of a cluster's reach, so every answer says up to when it
//! covers: the last flush.
//!
//! **Roles.** [`run_scheduler`] and [`run_executor`] run the two Ballista roles
//! in this binary (one build, one DataFusion, the store's own object-store
//! code: the scheduler lists and plans the files, the executors read them).
//! [`query`] plans a read-only query on a client and runs it on the cluster, or
//! locally without one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::{
    ballista_aggregate_functions, ballista_scalar_functions, ballista_window_functions,
};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::cluster::ClusterStateEvent;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service};
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use headroom_store::{DataLocation, History, with_day_file_reading};

/// What can go wrong running or querying the history.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is not one the history answers: not a query, an unknown table
    /// or column, past a limit (HTTP 400, exit 2).
    #[error("bad query: {0}")]
    BadQuery(String),
    /// A cluster URL or setting that does not parse (exit 2).
    #[error("{0}")]
    BadSetting(String),
    /// The scheduler cannot be reached, or the cluster failed the query
    /// (HTTP 503, exit 1).
    #[error("cluster: {0}")]
    Cluster(String),
    /// The data location could not be read.
    #[error(transparent)]
    Store(#[from] headroom_store::Error),
    /// DataFusion failed while running the query.
    #[error("query engine: {0}")]
    Query(datafusion::error::DataFusionError),
}

impl Error {
    /// Whether the caller's input is at fault.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::BadQuery(_) | Error::BadSetting(_) => true,
            Error::Store(e) => e.is_bad_input(),
            Error::Cluster(_) | Error::Query(_) => false,
        }
    }

    /// Whether the cluster (not the query) failed: HTTP 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Cluster(_))
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Both roles schedule by push: executors send heartbeats, and one silent
/// past [`ClusterTimings`]' timeout is dropped and its tasks run elsewhere. (By
/// pull, an executor killed mid-task was never dropped here: its job hung.)
const POLICY: TaskSchedulingPolicy = TaskSchedulingPolicy::PushStaged;

/// How quickly a cluster gives up on a silent executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterTimings {
    /// An executor not heard from for this long is lost; its tasks run again
    /// elsewhere, s.
    pub executor_timeout_s: u64,
    /// How often lost executors are looked for, s.
    pub check_interval_s: u64,
    /// A job that lost an executor and then completes no stage for this long
    /// is cancelled, s (see [`run_scheduler`]).
    pub stalled_job_s: u64,
}

impl ClusterTimings {
    /// Executors beat every 2 s: a timeout shorter than a few beats would drop
    /// working executors.
    pub const SHORTEST_TIMEOUT_S: u64 = 6;

    /// Timings for an executor timeout of `executor_timeout_s` (raised to
    /// [`Self::SHORTEST_TIMEOUT_S`]): lost executors looked for four times
    /// per timeout, a stalled job cancelled after three.
    pub fn for_executor_timeout(executor_timeout_s: u64) -> Self {
        let executor_timeout_s = executor_timeout_s.max(Self::SHORTEST_TIMEOUT_S);
        Self {
            executor_timeout_s,
            check_interval_s: (executor_timeout_s / 4).clamp(1, 5),
            stalled_job_s: 3 * executor_timeout_s,
        }
    }
}

impl Default for ClusterTimings {
    fn default() -> Self {
        Self::for_executor_timeout(20)
    }
}

/// The object store a node must know for a location's files (`None` for a
/// local folder): built once per role from the AWS_* variables (opening reads
/// nothing) and shared by every session, not rebuilt per query.
type LocationStore = Option<(url::Url, Arc<dyn object_store::ObjectStore>)>;

fn location_store(location: &DataLocation) -> Result<LocationStore> {
    Ok(headroom_store::files::Files::open(location)?.object_store())
}

fn runtime_env(store: &LocationStore, temp_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new();
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    let env = builder.build_arc().map_err(Error::Query)?;
    if let Some((url, store)) = store {
        env.register_object_store(url, store.clone());
    }
    Ok(env)
}

/// Runs a scheduler on `bind` until the process ends; it plans over
/// `location`'s files.
///
/// Beside Ballista's own scheduler it watches for lost executors: on 55.0.0 a
/// job that lost one hangs once the lost tasks are reset (measured here: "Can't
/// find active stage to update stage outputs"), and its client waited for its
/// own time limit. A job running when an executor is dropped that then
/// completes no stage for `stalled_job_s` is cancelled, so its client fails
/// within about that time with a message that says why.
pub async fn run_scheduler(
    bind: SocketAddr,
    location: DataLocation,
    timings: ClusterTimings,
) -> Result<()> {
    // A bad location fails here, at start, not per query.
    let store = location_store(&location)?;
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: bind.ip().to_string(),
        scheduling_policy: POLICY,
        executor_timeout_seconds: timings.executor_timeout_s,
        expire_dead_executor_interval_seconds: timings.check_interval_s,
        no_executors_grace_period_seconds: timings.executor_timeout_s,
        ..SchedulerConfig::default()
    }
    .with_override_session_builder(Arc::new(move |config: SessionConfig| {
        let env = runtime_env(&store, None)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(env)
            .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
            .with_scalar_functions(ballista_scalar_functions())
            .with_aggregate_functions(ballista_aggregate_functions())
            .with_window_functions(ballista_window_functions())
            .build())
    }));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| Error::Cluster(e.to_string()))?;
    let failed = |e: ballista_core::error::BallistaError| {
        Error::Cluster(format!("scheduler on {bind}: {e}"))
    };
    config.validate().map_err(failed)?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
            .await
            .map_err(failed)?;
    tokio::spawn(cancel_stalled_jobs(
        scheduler.clone(),
        Duration::from_secs(timings.stalled_job_s),
    ));
    start_grpc_service(bind, scheduler).await.map_err(failed)
}

/// What the client is told when the scheduler cancelled its job.
const STALLED: &str = "the job lost an executor and then made no progress, so the scheduler \
                       cancelled it; run the query again";

/// Cancels the jobs that were running when an executor was dropped and have
/// completed no stage for `stalled_after` since (each stage completed restarts
/// the clock).
async fn cancel_stalled_jobs(
    scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    stalled_after: Duration,
) {
    use futures::StreamExt;
    let mut events = match scheduler.cluster_state_events().await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!("stalled jobs will not be cancelled: {e}");
            return;
        }
    };
    // The task manager's cache of active jobs (`get_running_jobs` asks the
    // in-memory job state, which lists only finished jobs).
    let running = || async {
        let cache = scheduler.state.task_manager.get_running_job_cache();
        let mut jobs = HashMap::with_capacity(cache.len());
        for (job, info) in cache.iter() {
            let completed = info.execution_graph.read().await.completed_stages();
            jobs.insert(job.clone(), completed);
        }
        jobs
    };
    // Job -> (stages completed when last seen, since when).
    let mut watched: HashMap<_, (usize, tokio::time::Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(ClusterStateEvent::RemovedExecutor { executor_id }) => {
                    let now = tokio::time::Instant::now();
                    for (job, completed) in running().await {
                        tracing::info!("job {job} was running when executor {executor_id} was lost");
                        watched.insert(job, (completed, now));
                    }
                }
                Some(_) => {}
                None => return,
            },
            _ = tick.tick(), if !watched.is_empty() => {
                let now_running = running().await;
                let now = tokio::time::Instant::now();
                let mut stalled = Vec::new();
                watched.retain(|job, (completed, since)| match now_running.get(job) {
                    None => false,
                    Some(&now_completed) if now_completed > *completed => {
                        (*completed, *since) = (now_completed, now);
                        true
                    }
                    Some(_) if now - *since >= stalled_after => {
                        stalled.push(job.clone());
                        false
                    }
                    Some(_) => true,
                });
                for job in stalled {
                    tracing::warn!("job {job}: {STALLED}");
                    if let Err(e) = scheduler.cancel_job(job.clone()).await {
                        tracing::warn!("job {job} could not be cancelled: {e}");
                    }
                }
            }
        }
    }
}

/// An executor's settings.
#[derive(Clone, Debug)]
pub struct ExecutorSettings {
    /// Where it serves Arrow Flight (shuffles, results): an address other
    /// nodes reach, with a fixed port (it is advertised).
    pub bind: SocketAddr,
    /// Its gRPC port, where the scheduler pushes tasks (advertised too).
    pub grpc_port: u16,
    /// The scheduler, `df://host:port`.
    pub scheduler: String,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Memory for its tasks, bytes.
    pub memory_bytes: u64,
    /// Its folder for shuffle files.
    pub work_dir: String,
    /// The data location it reads.
    pub location: DataLocation,
    /// Its heartbeat, s.
    pub heartbeat_s: u64,
}

/// `df://host:port` as (host, port).
pub fn parse_cluster_url(url: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::BadSetting(format!(
            "cluster `{url}`: expected df://HOST:PORT (the scheduler's address)"
        ))
    };
    let rest = url.strip_prefix("df://").ok_or_else(bad)?;
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Runs an executor until the process gets Ctrl-C or SIGTERM (Ballista's own
/// handling: it tells the scheduler it is leaving).
pub async fn run_executor(settings: ExecutorSettings) -> Result<()> {
    let (scheduler_host, scheduler_port) = parse_cluster_url(&settings.scheduler)?;
    let store = location_store(&settings.location)?;
    let work_dir = settings.work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: settings.bind.ip().to_string(),
        external_host: Some(settings.bind.ip().to_string()),
        port: settings.bind.port(),
        grpc_port: settings.grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: settings.concurrency.max(1),
        task_scheduling_policy: POLICY,
        work_dir: Some(settings.work_dir.clone()),
        memory_pool_size: Some(settings.memory_bytes),
        executor_heartbeat_interval_seconds: settings.heartbeat_s.max(1),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| {
            runtime_env(&store, Some(&work_dir))
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
        })),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::Cluster(format!("executor on {}: {e}", settings.bind)))
}

/// Limits on a history query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Rows an answer may hold; a query past them is refused.
    pub max_rows: usize,
    /// Longest a query may run.
    pub timeout: Duration,
}

/// A history query's answer.
#[derive(Debug)]
pub struct Answer {
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// The history covered readings flushed by then, ms since the epoch (0:
    /// nothing flushed yet).
    pub flushed_ms: i64,
    /// Where it ran: `local`, or the cluster's URL.
    pub ran_on: String,
}

/// Runs a read-only query over `location`'s flushed history, on the cluster
/// at `cluster` (`df://host:port`) or, without one, locally with DataFusion.
pub async fn query(
    location: &DataLocation,
    cluster: Option<&str>,
    sql: &str,
    limits: Limits,
) -> Result<Answer> {
    let history = History::open(location).await?;
    let ctx = match cluster {
        Some(url) => {
            parse_cluster_url(url)?;
            // Adaptive planning stays on (55.0.0's default). Measured here
            // with an executor SIGKILLed mid-join: with it the job hung
            // ("Can't find active stage to update stage outputs") until the
            // time limit below turned it into an error; without it the job
            // re-ran the lost tasks and answered a count 50 % too high. A
            // late error, never a wrong answer.
            let config = with_day_file_reading(
                SessionConfig::new_with_ballista()
                    .with_target_partitions(2)
                    .with_ballista_job_name("headroom history"),
            );
            let state = SessionStateBuilder::new()
                .with_default_features()
                .with_config(config)
                .build();
            SessionContext::remote_with_state(url, state)
                .await
                .map_err(|e| Error::Cluster(format!("{url}: {e}")))?
        }
        None => SessionContext::new_with_config(with_day_file_reading(SessionConfig::new())),
    };
    history.register(&ctx)?;
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, read_only)
        .await
        .map_err(|e| Error::BadQuery(e.to_string()))?;
    // One row past the limit tells a full answer from a cut one (an EXPLAIN
    // must stay the plan's root, and its answer is small).
    let explains = matches!(
        frame.logical_plan(),
        datafusion::logical_expr::LogicalPlan::Explain(_)
            | datafusion::logical_expr::LogicalPlan::Analyze(_)
    );
    let frame = if explains {
        frame
    } else {
        frame
            .limit(0, Some(limits.max_rows + 1))
            .map_err(|e| Error::BadQuery(e.to_string()))?
    };
    let batches = tokio::time::timeout(limits.timeout, frame.collect())
        .await
        .map_err(|_| {
            Error::BadQuery(format!(
                "the query ran past the time limit ({} s)",
                limits.timeout.as_secs()
            ))
        })?
        .map_err(|e| match cluster {
            // Only the scheduler's watch for stalled jobs cancels a job.
            Some(url) if e.to_string().contains("failed: Cancelled") => {
                Error::Cluster(format!("{url}: {STALLED} ({e})"))
            }
            Some(url) => Error::Cluster(format!("{url}: {e}")),
            // Locally the files are at hand: a query that fails while it runs
            // (a bad cast, a division by zero) is the query's fault.
            None => Error::BadQuery(format!("the query failed: {e}")),
        })?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > limits.max_rows {
        return Err(Error::BadQuery(format!(
            "the answer holds more than {} rows (the row limit): aggregate, or add a LIMIT",
            limits.max_rows
        )));
    }
    Ok(Answer {
        batches,
        flushed_ms: history.flushed_ms(),
        ran_on: cluster.unwrap_or("local").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_parse_or_say_what_they_should_be() {
        assert_eq!(
            parse_cluster_url("df://127.0.0.1:50050").unwrap(),
            ("127.0.0.1".to_owned(), 50050)
        );
        for bad in ["http://h:1", "df://h", "df://:5", "df://h:x"] {
            let e = parse_cluster_url(bad).unwrap_err();
            assert!(
                e.is_bad_input() && e.to_string().contains("df://HOST:PORT"),
                "{bad}"
            );
        }
    }
}
