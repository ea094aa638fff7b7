//! Tools a test needs that `scripts/test` installs and names in `HEADROOM_*`
//! variables (included with `#[path]` by the end-to-end tests and the API's).
//! A plain `cargo test` on a machine without them skips such a test, naming
//! it, rather than failing; `scripts/test` sets [`REQUIRE_EXTERNAL`] so that
//! under it, and so in CI, a missing tool fails the test and nothing is
//! skipped unnoticed.

/// Set (to anything but `0`) by `scripts/test`: a missing tool fails the test.
pub(crate) const REQUIRE_EXTERNAL: &str = "HEADROOM_REQUIRE_EXTERNAL";

/// What a test does about the tools it needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision<const N: usize> {
    /// Every tool is named: their paths, in the order asked.
    Run([String; N]),
    /// Some are missing and skipping is allowed: the line to report.
    Skip(String),
    /// Some are missing and [`REQUIRE_EXTERNAL`] forbids skipping: the failure.
    Fail(String),
}

/// Decides for `test` given each variable and its value, and the value of
/// [`REQUIRE_EXTERNAL`] (passed in, so a test can try every case without
/// touching the process's environment).
pub(crate) fn decide<const N: usize>(
    test: &str,
    tools: [(&str, Option<String>); N],
    require: Option<&str>,
) -> Decision<N> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(_, value)| value.as_deref().is_none_or(str::is_empty))
        .map(|(variable, _)| *variable)
        .collect();
    if missing.is_empty() {
        return Decision::Run(tools.map(|(_, value)| value.unwrap_or_default()));
    }
    let what = format!(
        "{test}: needs {} (scripts/test installs {})",
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" }
    );
    if require.is_some_and(|r| !r.is_empty() && r != "0") {
        Decision::Fail(format!("{what}; {REQUIRE_EXTERNAL} forbids skipping"))
    } else {
        Decision::Skip(format!("SKIPPED {what}"))
    }
}

/// The paths of the tools named by `variables` for the running test; `None`
/// once the test is reported as skipped (it should return at once). Panics
/// when they are missing under [`REQUIRE_EXTERNAL`].
pub(crate) fn external_tools<const N: usize>(variables: [&str; N]) -> Option<[String; N]> {
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let tools = variables.map(|v| (v, std::env::var(v).ok()));
    let require = std::env::var(REQUIRE_EXTERNAL).ok();
    match decide(test, tools, require.as_deref()) {
        Decision::Run(paths) => Some(paths),
        Decision::Skip(line) => {
            // Straight to the stream: libtest captures `eprintln!` of passing tests.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "{line}");
            None
        }
        Decision::Fail(message) => panic!("{message}"),
    }
}

#[test]
fn a_missing_tool_skips_the_test_unless_skipping_is_forbidden() {
    let path = || Some("/venv/bin/python".to_owned());
    assert_eq!(
        decide(
            "t",
            [("HEADROOM_A", path()), ("HEADROOM_B", path())],
            Some("1")
        ),
        Decision::Run(["/venv/bin/python".to_owned(), "/venv/bin/python".to_owned()])
    );
    for require in [None, Some(""), Some("0")] {
        assert_eq!(
            decide("t", [("HEADROOM_A", None), ("HEADROOM_B", path())], require),
            Decision::Skip("SKIPPED t: needs HEADROOM_A (scripts/test installs it)".to_owned()),
            "{require:?}"
        );
    }
    // Empty counts as unset: `export X=` is how a variable is most often emptied.
    assert_eq!(
        decide(
            "t",
            [("HEADROOM_A", Some(String::new())), ("HEADROOM_B", None)],
            Some("1")
        ),
        Decision::Fail(
            "t: needs HEADROOM_A, HEADROOM_B (scripts/test installs them); \
             HEADROOM_REQUIRE_EXTERNAL forbids skipping"
                .to_owned()
        )
    );
}
