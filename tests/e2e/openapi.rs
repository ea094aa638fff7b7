//! The OpenAPI document validates (openapi-spec-validator), and a
//! property-based run of the API against it (schemathesis, both from PyPI,
//! installed by scripts/test) finds no 5xx and no response that breaks it.

use std::process::Command;

use crate::support::{external_tools, fixture, serve_gridpack};

#[test]
fn the_api_keeps_its_openapi_document_under_generated_requests() {
    let Some([python, validator, schemathesis]) = external_tools([
        "HEADROOM_INTEROP_PYTHON",
        "HEADROOM_OPENAPI_VALIDATOR",
        "HEADROOM_SCHEMATHESIS",
    ]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (service, token) = serve_gridpack(dir.path(), &fixture("1-MV-semiurb"), "admin", "");
    let url = service.url.clone();

    let document = dir.path().join("openapi.json");
    let fetched = Command::new(python)
        .args(["-c", "import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())"])
        .arg(format!("{url}/openapi.json"))
        .arg(&document)
        .status()
        .unwrap();
    assert!(fetched.success());
    let validated = Command::new(validator).arg(&document).output().unwrap();
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let run = Command::new(schemathesis)
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
        // Its crash cache goes to the working folder: a temporary one, not the clone.
        .current_dir(dir.path())
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
