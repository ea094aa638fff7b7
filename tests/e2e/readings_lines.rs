//! One parser of readings lines: `headroom ingest` and `POST /v1/readings`
//! take the same lines to the same readings and refuse the same lines with the
//! same field and message.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{fixture, headroom, serve_gridpack, store_rows};

/// Bodies as a workflow system or an operator would send them, good and bad.
const BODIES: &[(&str, &str)] = &[
    (
        "plain with meter energy and a time in epoch ms",
        "ts,asset,quantity,value\n\
         2026-11-02T00:00:00Z,F_L0,p_kw,120.5\n\
         1793577600000,T_10,energy_kwh,2.75\n",
    ),
    (
        "with a quality column",
        "ts,asset,quantity,value,quality\n\
         2026-11-02T00:15:00Z,F_L0,q_kvar,40,uncertain\n\
         2026-11-02T00:15:00+08:00,TR0,p_kw,900,bad\n",
    ),
    ("no header", "2026-11-02T00:30:00Z,F_L0,p_kw,100\n"),
    ("nothing at all", ""),
    (
        "an unknown quantity on line 3",
        "ts,asset,quantity,value\n\
         2026-11-02T00:45:00Z,F_L0,p_kw,100\n\
         2026-11-02T00:45:00Z,F_L0,p_mw,0.1\n",
    ),
    (
        "a quality that is none",
        "ts,asset,quantity,value,quality\n2026-11-02T01:00:00Z,F_L0,p_kw,100,meh\n",
    ),
    (
        "a value that is not a number",
        "ts,asset,quantity,value\n2026-11-02T01:00:00Z,F_L0,p_kw,lots\n",
    ),
    (
        "a time without offset",
        "ts,asset,quantity,value\n2026-11-02 01:00:00,F_L0,p_kw,100\n",
    ),
    (
        "a column short",
        "ts,asset,quantity,value,quality\n2026-11-02T01:00:00Z,F_L0,p_kw,100\n",
    ),
];

/// What became of a body: taken (readings counted), or refused with the
/// field and message.
#[derive(Debug, PartialEq)]
enum Outcome {
    Taken(u64),
    Refused { field: String, message: String },
}

fn by_cli(data: &std::path::Path, body: &str) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["ingest", "--data-dir", data.to_str().unwrap()])
        .args(["--flush-interval-ms", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("headroom ingest starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Outcome::Taken(
            stdout
                .lines()
                .filter_map(|l| l.strip_prefix("acked "))
                .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap())
                .sum(),
        ),
        Some(2) => {
            // `standard input line 3.quantity: ...`
            let line = stderr
                .lines()
                .find_map(|l| l.split_once("standard input ").map(|(_, rest)| rest))
                .unwrap_or_else(|| panic!("no refusal in {stderr}"));
            let (field, message) = line.split_once(": ").unwrap();
            Outcome::Refused {
                field: field.to_owned(),
                message: message.to_owned(),
            }
        }
        other => panic!("ingest exited {other:?}: {stderr}"),
    }
}

async fn by_http(client: &reqwest::Client, url: &str, token: &str, body: &str) -> Outcome {
    let response = client
        .post(format!("{url}/v1/readings"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let json: Value = response.json().await.unwrap();
    match status {
        202 => Outcome::Taken(json["accepted"].as_u64().unwrap()),
        400 => Outcome::Refused {
            field: json["error"]["field"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            message: json["error"]["message"].as_str().unwrap().to_owned(),
        },
        other => panic!("POST /v1/readings answered {other}: {json}"),
    }
}

/// The readings the two routes delivered (their sources differ by design).
const DELIVERED: &str = "SELECT CAST(ts AS BIGINT) AS ts, asset, quantity, value, quality \
     FROM readings WHERE source <> 'import' ORDER BY ts, asset, quantity";

// A plain test with its own runtime for the HTTP calls: the stores opened at
// the end block on their own query runtime, which tokio refuses inside another.
#[test]
fn the_cli_and_the_api_read_the_same_lines_alike() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cli_dir = tempfile::tempdir().unwrap();
    let cli_data = cli_dir.path().join("data");
    let import = headroom([
        "import".as_ref(),
        fixture("1-MV-semiurb").as_os_str(),
        "--data-dir".as_ref(),
        cli_data.as_os_str(),
    ]);
    assert_eq!(import.code, 0, "{}", import.stderr);
    let api_dir = tempfile::tempdir().unwrap();
    let (service, token) = serve_gridpack(api_dir.path(), &fixture("1-MV-semiurb"), "ingest", "");
    let client = reqwest::Client::new();

    let mut refused = 0;
    for (what, body) in BODIES {
        let cli = by_cli(&cli_data, body);
        let http = runtime.block_on(by_http(&client, &service.url, &token, body));
        assert_eq!(cli, http, "{what}");
        refused += usize::from(matches!(cli, Outcome::Refused { .. }));
    }
    assert_eq!(
        refused,
        BODIES.len() - 2,
        "every body but the first two is refused"
    );
    drop(service);

    // The stores, opened again (the service's log replayed), hold the same
    // readings from both routes, meter energy and qualities included.
    let gridpack = headroom_geodata::Gridpack::read(&fixture("1-MV-semiurb")).unwrap();
    let open = |dir: std::path::PathBuf| {
        headroom_store::Store::open(&dir, &gridpack.network, Default::default()).unwrap()
    };
    let from_cli = store_rows(&open(cli_data), DELIVERED);
    let from_http = store_rows(&open(api_dir.path().join("data")), DELIVERED);
    assert_eq!(from_cli.len(), 4, "{from_cli:#?}");
    assert_eq!(from_cli, from_http);
    assert!(
        from_cli.iter().any(|r| r.contains("energy_kwh")),
        "{from_cli:#?}"
    );
    assert!(
        from_cli.iter().any(|r| r.contains("uncertain")),
        "{from_cli:#?}"
    );
}
