//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run of the binary did.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Everything printed, for messages that may go to either stream.
    pub(crate) fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `headroom` with these arguments.
pub(crate) fn headroom<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .output()
        .expect("the headroom binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The public fixtures shipped beside the repository.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name)
}

/// An independent cross-check beside the tests (`tests/<name>/`: its
/// `expected.json`, written by its own script, and the ranking of its
/// `applications.json` on the fixture by `headroom rank --json`).
pub(crate) fn cross_check(name: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let run = headroom([
        "rank".as_ref(),
        fixture("1-MV-semiurb").as_os_str(),
        "--applications".as_ref(),
        dir.join("applications.json").as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    (expected, serde_json::from_str(&run.stdout).unwrap())
}

/// The candidates of application `id` in `results` (as `headroom rank --json`
/// writes them), by node id.
pub(crate) fn candidates_by_node<'a>(
    results: &'a [serde_json::Value],
    id: &str,
) -> std::collections::HashMap<&'a str, &'a serde_json::Value> {
    let result = results
        .iter()
        .find(|r| r["application"] == id)
        .unwrap_or_else(|| panic!("no result for {id}"));
    result["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["node"].as_str().unwrap(), c))
        .collect()
}

/// A store on the public fixture's network in `dir`, committing every 10 ms,
/// and the fixture it was opened on.
pub(crate) fn fixture_store(
    dir: &Path,
) -> (
    headroom_geodata::Gridpack,
    std::sync::Arc<headroom_store::Store>,
) {
    let gridpack = headroom_geodata::Gridpack::read(&fixture("1-MV-semiurb")).unwrap();
    let config = headroom_store::StoreConfig {
        wal_flush_interval_ms: 10,
        ..headroom_store::StoreConfig::default()
    };
    let store = headroom_store::Store::open(dir, &gridpack.network, config).unwrap();
    (gridpack, std::sync::Arc::new(store))
}

/// A small runtime for connectors and simulators; the test's own thread stays
/// outside it, free to query the store (which runs its own).
pub(crate) fn connector_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `condition` until it holds; fails naming `what` after 20 s.
pub(crate) fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The rows a store query returns, each as its cells joined by commas.
pub(crate) fn store_rows(store: &headroom_store::Store, sql: &str) -> Vec<String> {
    let batches = store.sql(sql).expect("query runs");
    let text = headroom_store::pretty(&batches).expect("prints");
    text.lines()
        .filter(|l| l.starts_with('|') && !l.contains("----"))
        .skip(1)
        .map(|l| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// What a connector under test needs: `sink`, the fixture network's feeders
/// and transformers as the known assets, and a fresh shutdown token and registry.
pub(crate) fn connector_context(
    sink: std::sync::Arc<headroom_store::Store>,
    network: &headroom_geodata::Network,
) -> headroom_connectors::ConnectorContext {
    let measurable: std::collections::HashSet<String> = network
        .transformers
        .iter()
        .map(|t| t.id.to_string())
        .chain(network.feeders.iter().map(|f| f.id.to_string()))
        .collect();
    headroom_connectors::ConnectorContext {
        sink,
        known_asset: std::sync::Arc::new(move |a: &str| measurable.contains(a)),
        shutdown: tokio_util::sync::CancellationToken::new(),
        registry: headroom_connectors::StatusRegistry::default(),
    }
}

/// Starts a connector on `runtime` (the test's own thread stays outside it).
pub(crate) fn spawn_connector(
    runtime: &tokio::runtime::Runtime,
    connector: &headroom_connectors::ConnectorConfig,
    context: &headroom_connectors::ConnectorContext,
) -> headroom_connectors::RunningConnector {
    let _entered = runtime.enter();
    connector.spawn(context).unwrap()
}

pub(crate) use crate::external_tools::external_tools;

/// A tool the test command installs (`scripts/test` exports its path), once
/// [`external_tools`] has let the test run.
#[cfg(feature = "map")]
pub(crate) fn test_tool(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the tests with scripts/test, which installs it")
    })
}

/// `headroom serve` on a free port over `gridpack` imported into a store in
/// `dir`, with one token of `role` (made as an operator would, with `headroom
/// token`) and `extra_config` appended to the config; the service and the token.
pub(crate) fn serve_gridpack(
    dir: &Path,
    gridpack: &Path,
    role: &str,
    extra_config: &str,
) -> (crate::service_process::ServiceProcess, String) {
    let data = dir.join("data");
    let import = headroom([
        "import".as_ref(),
        gridpack.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    assert_eq!(import.code, 0, "{}", import.stderr);
    let made = headroom(["token", role, "--name", "e2e"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let token = made
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("hr_{role}_")))
        .expect("the token is printed")
        .to_owned();
    let grant: String = made
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("[[tokens]]"))
        .collect::<Vec<_>>()
        .join("\n");
    let config = dir.join("headroom.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{extra_config}\n\n{grant}\n",
            data.display()
        ),
    )
    .unwrap();
    let service = crate::service_process::ServiceProcess::start(
        env!("CARGO_BIN_EXE_headroom"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    (service, token)
}

/// One HTTP request with a bearer token and an optional JSON body, from a test's
/// own thread: the status and the JSON answer (null where there is none).
pub(crate) fn call_json(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), url)
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    })
}

/// A GET that must answer 200: its JSON.
pub(crate) fn get_ok(url: &str, token: &str) -> serde_json::Value {
    let (status, body) = call_json("GET", url, token, None);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}
