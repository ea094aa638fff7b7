//! `headroom cluster scheduler|executor` and `headroom sql --cluster`: the
//! store's flushed history on a Ballista cluster. The work is in
//! `headroom-history`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use headroom_history::{ClusterTimings, ExecutorSettings, Limits};
use headroom_store::DataLocation;

use crate::commands::{Failure, Outcome};

impl From<headroom_history::Error> for Failure {
    fn from(e: headroom_history::Error) -> Self {
        Self {
            exit_code: if e.is_bad_input() { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

/// The roles' runtime: Ballista's planner recurses over deep plans, so its
/// threads get the stack its own binaries give them.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 << 20)
        .build()
        .map_err(|e| Failure {
            exit_code: 1,
            message: format!("cannot start the async runtime: {e}"),
        })
}

/// Runs a scheduler until Ctrl-C or SIGTERM.
pub(crate) fn scheduler(
    bind: SocketAddr,
    location: DataLocation,
    executor_timeout_s: u64,
) -> Outcome {
    let timings = ClusterTimings::for_executor_timeout(executor_timeout_s);
    crate::serve::init_logging();
    let runtime = runtime()?;
    runtime.block_on(async {
        println!("Ballista scheduler on df://{bind} over {location}; Ctrl-C stops");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::select! {
            ran = headroom_history::run_scheduler(bind, location, timings) => ran.map_err(Failure::from),
            () = crate::serve::stop_requested() => Ok(()),
        }
    })
}

/// Runs an executor until Ctrl-C or SIGTERM.
pub(crate) fn executor(settings: ExecutorSettings) -> Outcome {
    crate::serve::init_logging();
    std::fs::create_dir_all(&settings.work_dir)
        .map_err(|e| Failure::bad_input(format!("--work-dir {}: {e}", settings.work_dir)))?;
    let runtime = runtime()?;
    println!(
        "Ballista executor on {} for {} over {}; Ctrl-C stops",
        settings.bind, settings.scheduler, settings.location
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    runtime.block_on(headroom_history::run_executor(settings))?;
    Ok(())
}

/// A read-only query over the flushed history on a cluster; prints the table
/// and what it covers.
pub(crate) fn sql(location: &DataLocation, cluster: &str, query: &str, limits: Limits) -> Outcome {
    let runtime = runtime()?;
    let answer = runtime.block_on(headroom_history::query(
        location,
        Some(cluster),
        query,
        limits,
    ))?;
    println!(
        "{}",
        headroom_store::pretty(&answer.batches).map_err(Failure::from)?
    );
    let covered = if answer.flushed_ms > 0 {
        headroom_geodata::rfc3339(answer.flushed_ms)
    } else {
        "nothing (no flush yet)".to_owned()
    };
    println!(
        "ran on {}: the history flushed up to {covered} (readings since then are in the ingesting process's buffer)",
        answer.ran_on
    );
    Ok(())
}

/// The executor's settings from the command line.
pub(crate) fn executor_settings(
    bind: SocketAddr,
    grpc_port: Option<u16>,
    scheduler: String,
    concurrency: Option<usize>,
    memory_mb: u64,
    work_dir: Option<&Path>,
    location: DataLocation,
) -> ExecutorSettings {
    let concurrency =
        concurrency.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let work_dir = work_dir.map_or_else(
        || std::env::temp_dir().join(format!("headroom-executor-{}", bind.port())),
        Path::to_path_buf,
    );
    ExecutorSettings {
        bind,
        grpc_port: grpc_port.unwrap_or_else(|| bind.port().wrapping_add(1)),
        scheduler,
        concurrency,
        memory_bytes: memory_mb << 20,
        work_dir: work_dir.display().to_string(),
        location,
        heartbeat_s: 2,
    }
}

/// Limits of a query from the command line.
pub(crate) fn limits(max_rows: usize, timeout_s: u64) -> Limits {
    Limits {
        max_rows,
        timeout: Duration::from_secs(timeout_s),
    }
}
