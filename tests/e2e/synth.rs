//! The synthetic city grid: valid, deterministic for a seed, importable.

use crate::support::headroom;

#[test]
fn a_small_city_is_deterministic_and_imports_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let b = root.path().join("b");
    for dir in [&a, &b] {
        let run = headroom([
            "synth".as_ref(),
            dir.as_os_str(),
            "--substations".as_ref(),
            "2".as_ref(),
            "--seed".as_ref(),
            "7".as_ref(),
            "--days".as_ref(),
            "2".as_ref(),
        ]);
        assert_eq!(run.code, 0, "{}", run.all_output());
    }
    for file in ["network.geojson", "readings.csv"] {
        let left = std::fs::read(a.join(file)).unwrap();
        let right = std::fs::read(b.join(file)).unwrap();
        assert!(
            left == right,
            "{file} differs between two runs with one seed"
        );
    }

    let run = headroom(["import".as_ref(), a.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(run.stdout.contains("feeders (30)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("topology warnings (0)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(" 0 rejected"), "{}", run.stdout);

    let other_seed = root.path().join("c");
    let run = headroom([
        "synth".as_ref(),
        other_seed.as_os_str(),
        "--substations".as_ref(),
        "2".as_ref(),
        "--seed".as_ref(),
        "8".as_ref(),
        "--days".as_ref(),
        "1".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert_ne!(
        std::fs::read(a.join("network.geojson")).unwrap(),
        std::fs::read(other_seed.join("network.geojson")).unwrap()
    );
}

#[test]
fn bad_synth_settings_exit_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let run = headroom([
        "synth".as_ref(),
        dir.path().as_os_str(),
        "--metered-share".as_ref(),
        "1.5".as_ref(),
    ]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("metered_share"), "{}", run.stderr);
}
