//! `headroom collect`, `headroom relay ...` and `headroom simulate
//! isolation-device`: the two sides of a one-way isolation device. The work
//! is in `headroom-relay` (files, keys, collector, inbox) and
//! `headroom-simulators` (the device).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use headroom_connectors::{ConnectorConfig, ConnectorContext, ConnectorsConfig, StatusRegistry};
use headroom_relay::collector::{Collector, CollectorSettings, resend as resend_files};
use headroom_relay::inbox::{Checked, Inbox, Outcome as Settled};
use headroom_relay::outbox::SignedOutbox;
use headroom_relay::sealed::{self, Kind, Rejection, Rule, Trust};
use headroom_relay::{Algorithm, SigningKey, VerifyingKey};
use headroom_simulators::isolation_device::{Faults, IsolationDevice};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::commands::{Failure, Outcome};

impl From<headroom_relay::Error> for Failure {
    fn from(e: headroom_relay::Error) -> Self {
        Self {
            exit_code: if e.is_bad_input() { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

/// `collector.toml`: the collector's settings, its connectors and, to check
/// their asset ids, the network.
#[derive(Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CollectorFile {
    /// A network.geojson (or gridpack folder) whose assets the connectors'
    /// ids must name; without it any id is taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<PathBuf>,
    collector: CollectorSettings,
    #[serde(default)]
    connector: Vec<ConnectorConfig>,
}

fn read_collector_file(path: &Path) -> Result<CollectorFile, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))?;
    let file: CollectorFile = toml::from_str(&text)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))?;
    file.collector
        .validate()
        .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))?;
    Ok(file)
}

/// Runs the configured connectors into a collector until Ctrl-C or SIGTERM.
pub(crate) fn collect(config: &Path, outbox: &Path) -> Outcome {
    crate::serve::init_logging();
    let file = read_collector_file(config)?;
    let known: Option<std::collections::HashSet<String>> = match &file.network {
        Some(path) => {
            let path = if path.is_dir() {
                path.join("network.geojson")
            } else {
                path.clone()
            };
            let network = headroom_geodata::read_network(&path)?;
            Some(crate::serve::measurable_ids(&network))
        }
        None => None,
    };
    let known = Arc::new(known);
    let known_asset: Arc<dyn Fn(&str) -> bool + Send + Sync> = {
        let known = known.clone();
        Arc::new(move |id: &str| known.as_ref().as_ref().is_none_or(|k| k.contains(id)))
    };
    let connectors = ConnectorsConfig {
        connector: file.connector,
    };
    connectors
        .validate(&*known_asset)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", config.display())))?;
    let key = SigningKey::read(&file.collector.key)
        .map_err(|e| Failure::bad_input(format!("collector.key: {e}")))?;
    std::fs::create_dir_all(outbox)
        .map_err(|e| Failure::bad_input(format!("--outbox {}: {e}", outbox.display())))?;
    let stream = file.collector.stream.clone();
    let state_dir = file.collector.state_dir.clone();
    let collector = Collector::start(file.collector, key, outbox)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure {
        exit_code: 1,
        message: format!("cannot start the async runtime: {e}"),
    })?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let context = ConnectorContext {
            sink: Arc::new(collector.sink()),
            known_asset,
            shutdown: shutdown.clone(),
            registry: StatusRegistry::default(),
        };
        let mut tasks = Vec::new();
        for connector in &connectors.connector {
            let running = connector
                .spawn(&context)
                .map_err(|e| Failure::bad_input(format!("{}: {e}", config.display())))?;
            tasks.push(running.task);
        }
        println!(
            "collecting stream {stream} from {} connectors into {} (state in {}); Ctrl-C stops",
            tasks.len(),
            outbox.display(),
            state_dir.display()
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        crate::serve::stop_requested().await;
        shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
        Ok::<(), Failure>(())
    })?;
    collector.stop()?;
    println!("stopped; what the outbox did not take waits in the collector's log");
    Ok(())
}

/// Writes a key pair `OUT.key` and `OUT.pub`.
pub(crate) fn keygen(algorithm: Algorithm, out: &Path) -> Outcome {
    let key = headroom_relay::keys::write_key_pair(algorithm, out)?;
    println!(
        "{} key {}: private {}, public {}",
        key.algorithm(),
        key.verifying_key().id(),
        out.with_extension("key").display(),
        out.with_extension("pub").display()
    );
    Ok(())
}

/// Signs a requests file as the next file of `stream` into `outbox`.
pub(crate) fn send(
    requests: &Path,
    key: &Path,
    stream: &str,
    state_dir: &Path,
    outbox: &Path,
) -> Outcome {
    let body = std::fs::read(requests)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", requests.display())))?;
    let count = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
        .map(|actions| actions.len() as u64)
        .map_err(|e| {
            Failure::bad_input(format!(
                "{}: not a JSON array of actions: {e}",
                requests.display()
            ))
        })?;
    headroom_relay::applications::decode_actions(&body, count)
        .map_err(|e| Failure::bad_input(format!("{}: {}", requests.display(), e.message)))?;
    let key = SigningKey::read(key).map_err(|e| Failure::bad_input(format!("--key: {e}")))?;
    let mut outbox = SignedOutbox::open(state_dir, outbox, stream, Kind::Applications, key)
        .map_err(|e| match e {
            headroom_relay::Error::Config { message, .. } => {
                Failure::bad_input(format!("--stream: {message}"))
            }
            other => other.into(),
        })?;
    let sequence = outbox.send(&body, count)?;
    println!(
        "sent {} ({count} actions)",
        sealed::file_name(stream, sequence)
    );
    Ok(())
}

/// Verifies, prints and settles the answers files waiting in `inbox`.
pub(crate) fn receive(inbox_dir: &Path, key: &Path, stream: &str) -> Outcome {
    let key = VerifyingKey::read(key).map_err(|e| Failure::bad_input(format!("--key: {e}")))?;
    let mut trust = Trust::default();
    trust.add(stream, [key]);
    let mut inbox = Inbox::open(inbox_dir, Kind::Answers, trust, &Default::default())?;
    let mut outcomes = Vec::new();
    let mut rejected = Vec::new();
    let mut out = String::new();
    for path in inbox.waiting()? {
        let bytes = std::fs::read(&path).map_err(|e| Failure {
            exit_code: 1,
            message: format!("{}: {e}", path.display()),
        })?;
        let outcome = match inbox.check(&path, &bytes) {
            Checked::New(opened) => {
                match serde_json::from_slice::<serde_json::Value>(opened.body) {
                    Ok(answers) => {
                        let line = serde_json::json!({
                            "stream": opened.header.stream,
                            "sequence": opened.header.sequence,
                            "answers": answers,
                        });
                        out.push_str(&line.to_string());
                        out.push('\n');
                        Settled::Taken(opened.header)
                    }
                    Err(e) => {
                        Settled::Rejected(Rejection::new(Rule::Body, format!("not JSON: {e}")))
                    }
                }
            }
            Checked::Duplicate(_) => Settled::Duplicate,
            Checked::Rejected(rejection) => Settled::Rejected(rejection),
        };
        if let Settled::Rejected(rejection) = &outcome {
            rejected.push(format!("{}: {rejection}", path.display()));
        }
        outcomes.push((path, outcome));
    }
    inbox.settle(outcomes)?;
    print!("{out}");
    for state in inbox.streams() {
        for gap in state.gaps {
            eprintln!(
                "gap: {} {}..={} not received",
                state.stream, gap.from, gap.to
            );
        }
    }
    if rejected.is_empty() {
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "rejected:\n{}",
        rejected.join("\n")
    )))
}

/// Puts kept files `from..=to` of the collector's stream in the outbox again.
pub(crate) fn resend(config: &Path, outbox: &Path, stream: &str, from: u64, to: u64) -> Outcome {
    let file = read_collector_file(config)?;
    if stream != file.collector.stream {
        return Err(Failure::bad_input(format!(
            "--stream {stream}: this collector's stream is {}",
            file.collector.stream
        )));
    }
    let resent = resend_files(&file.collector.state_dir, outbox, stream, from, to)?;
    println!("resent {} files of {stream}", resent.copied.len());
    if resent.missing.is_empty() {
        return Ok(());
    }
    Err(Failure {
        exit_code: 1,
        message: format!(
            "no kept file for {} number(s) of {stream}: {} (older than keep_sent_hours, or not sealed yet)",
            resent.missing.len(),
            ranges(&resent.missing)
        ),
    })
}

/// `1-3, 7` for `[1, 2, 3, 7]`.
fn ranges(numbers: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            numbers[i].to_string()
        } else {
            format!("{}-{}", numbers[i], numbers[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// Moves files one way with faults until Ctrl-C or SIGTERM, printing what it
/// does with each.
pub(crate) fn isolation_device(from: &Path, to: &Path, faults: Faults, seed: u64) -> Outcome {
    faults.validate().map_err(Failure::bad_input)?;
    for (option, dir) in [("--from", from), ("--to", to)] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::bad_input(format!("{option} {}: {e}", dir.display())))?;
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure {
        exit_code: 1,
        message: format!("cannot start the async runtime: {e}"),
    })?;
    let mut device = IsolationDevice::new(from, to, faults, seed);
    println!(
        "isolation device: {} -> {} (drop {}, duplicate {}, reorder {}, corrupt {}, delay {} ms); Ctrl-C stops",
        from.display(),
        to.display(),
        faults.drop,
        faults.duplicate,
        faults.reorder,
        faults.corrupt,
        faults.delay.as_millis()
    );
    runtime.block_on(async {
        use std::io::Write as _;
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        // Listened for once: a signal between two ticks is not missed.
        let stop = std::pin::pin!(crate::serve::stop_requested());
        let mut stop = stop;
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                () = &mut stop => true,
            };
            let passages = device.step(stopping).map_err(|e| Failure {
                exit_code: 1,
                message: format!("isolation device: {e}"),
            })?;
            let mut out = std::io::stdout().lock();
            for passage in passages {
                let _ = writeln!(out, "{passage}");
            }
            let _ = out.flush();
            if stopping {
                return Ok(());
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_collector_config_round_trips_and_validates() {
        let text = include_str!("../relay/collector.example.toml");
        let file: CollectorFile = toml::from_str(text).unwrap();
        file.collector.validate().unwrap();
        assert_eq!(file.collector.stream, "scada-north");
        assert_eq!(file.connector.len(), 2);
        let again: CollectorFile = toml::from_str(&toml::to_string(&file).unwrap()).unwrap();
        assert_eq!(again, file);
        let connectors = ConnectorsConfig {
            connector: file.connector,
        };
        connectors
            .validate(&|id| ["F_L0", "T_2"].contains(&id))
            .unwrap();
        // A misspelt setting is named.
        let misspelt = text.replace("heartbeat_s", "heartbeat_secs");
        let error = toml::from_str::<CollectorFile>(&misspelt)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `heartbeat_secs`"), "{error}");
    }
}
