//! Installs the capacity map's libraries (Leaflet and uPlot, pinned in
//! `web/package-lock.json`) with `npm ci` into `OUT_DIR`, so that `src/web.rs`
//! can build their distributed files into the binary. No third-party code is
//! kept in the repository, and `cargo run` stays the only set-up step. Only
//! with the `map` feature (a default one): without it the crate builds where
//! there is no Node.js.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=web/package.json");
    println!("cargo::rerun-if-changed=web/package-lock.json");
    println!("cargo::rerun-if-env-changed=NPM");
    if std::env::var_os("CARGO_FEATURE_MAP").is_none() {
        return;
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let web = manifest.join("web");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("web");
    let lock = read(&web.join("package-lock.json"));
    let installed = out.join("node_modules/.package-lock.json");
    if installed.exists() && std::fs::read(out.join("package-lock.json")).ok() == Some(lock.clone())
    {
        return;
    }
    std::fs::create_dir_all(&out)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out.display()));
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(web.join(file), out.join(file))
            .unwrap_or_else(|e| panic!("cannot copy web/{file} to {}: {e}", out.display()));
    }
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_owned());
    let status = Command::new(&npm)
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "the capacity map's libraries need npm (Node.js) to build headroom-api: \
                 running `{npm} ci` failed: {e}; install Node.js, or build without the \
                 map with `--no-default-features`"
            )
        });
    assert!(
        status.success(),
        "`{npm} ci` in {} failed ({status}): the capacity map's libraries come from the npm \
         registry (or npm's cache) at build time",
        out.display()
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
