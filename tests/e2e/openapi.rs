//! The OpenAPI document validates (openapi-spec-validator), and a
//! property-based run of the API against it (schemathesis, both from PyPI,
//! installed by scripts/test) finds no 5xx and no response that breaks it.

use std::process::Command;

use crate::service_process::ServiceProcess;
use crate::support::{fixture, headroom};

fn tool(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the tests with scripts/test, which installs it")
    })
}

#[test]
fn the_api_keeps_its_openapi_document_under_generated_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let import = headroom([
        "import",
        fixture("1-MV-semiurb").to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(import.code, 0, "{}", import.stderr);
    // A token as an operator makes one.
    let made = headroom(["token", "admin", "--name", "schemathesis"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let token = made
        .stdout
        .lines()
        .find(|l| l.starts_with("hr_admin_"))
        .expect("the token is printed")
        .to_owned();
    let lines: String = made
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("[[tokens]]"))
        .collect::<Vec<_>>()
        .join("\n");
    let config = dir.path().join("headroom.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n{lines}\n",
            data.display()
        ),
    )
    .unwrap();
    let service = ServiceProcess::start(
        env!("CARGO_BIN_EXE_headroom"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let url = service.url.clone();

    let document = dir.path().join("openapi.json");
    let fetched = Command::new(tool("HEADROOM_INTEROP_PYTHON"))
        .args(["-c", "import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())"])
        .arg(format!("{url}/openapi.json"))
        .arg(&document)
        .status()
        .unwrap();
    assert!(fetched.success());
    let validated = Command::new(tool("HEADROOM_OPENAPI_VALIDATOR"))
        .arg(&document)
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let run = Command::new(tool("HEADROOM_SCHEMATHESIS"))
        .args(["run", &format!("{url}/openapi.json"), "--header"])
        .arg(format!("Authorization: Bearer {token}"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "2",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    drop(service);
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
