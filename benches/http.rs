//! `POST /v1/schemes` under load: the release binary serves the public fixture
//! (`headroom serve --config`, SQLite ledger), and this process, the load
//! generator, keeps 32 connections busy over loopback, each sending the next
//! fixture application as soon as its previous answer arrives. Prints requests
//! per second and latency quantiles after a warm-up. The fixture's 12
//! applications repeat, so after the first of each the service answers from its
//! ranking cache (valid until readings, reservations or network change); with
//! `HEADROOM_BENCH_DISTINCT=1` every request is another application and is
//! ranked afresh.
//!
//! Run: `cargo bench --bench http` (builds the release binary);
//! `HEADROOM_BENCH_SECONDS` sets the measured time (default 30).

#[path = "../tests/service_process.rs"]
mod service_process;
#[path = "support.rs"]
mod support;

use std::process::Command;

use service_process::ServiceProcess;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(5);

fn main() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/1-MV-semiurb");
    let binary = env!("CARGO_BIN_EXE_headroom");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let import = Command::new(binary)
        .args([
            "import",
            fixture.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let made = Command::new(binary)
        .args(["token", "planner", "--name", "bench"])
        .output()
        .unwrap();
    let made = String::from_utf8(made.stdout).unwrap();
    let token = made
        .lines()
        .find(|l| l.starts_with("hr_planner_"))
        .unwrap()
        .to_owned();
    let grant: Vec<&str> = made
        .lines()
        .skip_while(|l| !l.starts_with("[[tokens]]"))
        .collect();
    let config = dir.path().join("headroom.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n{}\n",
            data.display(),
            grant.join("\n")
        ),
    )
    .unwrap();
    let server = ServiceProcess::start(binary, &["--config", config.to_str().unwrap()], &[]);
    let url = format!("{}/v1/schemes", server.url);
    let applications: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("applications.json")).unwrap())
            .unwrap();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        applications
            .iter()
            .map(|a| serde_json::to_vec(a).unwrap())
            .collect(),
    );
    // Distinct: every request another application (its own id, moved a few
    // centimetres), so none is answered from the service's ranking cache.
    let distinct = std::env::var_os("HEADROOM_BENCH_DISTINCT").is_some();
    let application_count = applications.len();
    let applications = Arc::new(applications);
    let seconds: u64 = std::env::var("HEADROOM_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);

    // One worker: the generator takes as little of the two cores as it can.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (latencies, errors, elapsed, cpu) = runtime.block_on(async move {
        let start = Instant::now();
        let measure_from = start + WARM_UP;
        let end = measure_from + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let url = url.clone();
                let token = token.clone();
                let bodies = bodies.clone();
                let applications = applications.clone();
                tokio::spawn(async move {
                    // A client each: 32 connections, kept alive.
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .build()
                        .unwrap();
                    let mut latencies = Vec::new();
                    let mut errors = 0u64;
                    let mut i = c;
                    while Instant::now() < end {
                        let body = if distinct {
                            let mut application = applications[i % applications.len()].clone();
                            application["id"] = format!("bench-{c}-{i}").into();
                            let lon = application["lon"].as_f64().unwrap();
                            application["lon"] = (lon + (i % 1000) as f64 * 1e-7).into();
                            serde_json::to_vec(&application).unwrap()
                        } else {
                            bodies[i % bodies.len()].clone()
                        };
                        i += 1;
                        let sent = Instant::now();
                        let ok = match client
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                        {
                            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        if sent >= measure_from && Instant::now() <= end {
                            if ok {
                                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                            } else {
                                errors += 1;
                            }
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu_at_start = support::process_cpu_s();
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (l, e) = task.await.unwrap();
            all.extend(l);
            errors += e;
        }
        (
            all,
            errors,
            Duration::from_secs(seconds),
            support::process_cpu_s() - cpu_at_start,
        )
    });
    drop(server);
    let mut latencies = latencies;
    let count = latencies.len();
    println!(
        "POST /v1/schemes, fixture 1-MV-semiurb ({}), {CONNECTIONS} connections, {:.0} s after {:.0} s warm-up, {} cores:",
        if distinct {
            "every request a different application: ranked afresh".to_owned()
        } else {
            format!("{application_count} applications in turn: cached after the first")
        },
        elapsed.as_secs_f64(),
        WARM_UP.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  {count} answered ({:.0} requests/s), {errors} errors; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; load generator CPU {:.2} cores",
        count as f64 / elapsed.as_secs_f64(),
        support::quantile(&mut latencies, 0.5),
        support::quantile(&mut latencies, 0.99),
        support::quantile(&mut latencies, 1.0),
        cpu / elapsed.as_secs_f64()
    );
}
