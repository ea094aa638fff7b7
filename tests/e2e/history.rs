//! The flushed history on a Ballista cluster: a scheduler and two executors as
//! processes on loopback, the store in S3 (moto's server). The history queries
//! planners ask (peak and 95th percentile per asset, a typical day, a join with
//! `assets` by feeder, a day range) give exactly the answers of the store's own
//! DataFusion; one executor killed mid-query leaves the query to complete on
//! the other, or to fail with a clear error, never a wrong answer; bad input is
//! refused by name.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3::S3Server;
use crate::support::{call_json, fixture};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A cluster role as a child process, killed (SIGKILL) when dropped.
struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn role(s3: &S3Server, args: &[&str], log: &std::path::Path) -> Role {
    let log = std::fs::File::create(log).unwrap();
    Role(
        Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(args)
            .envs(s3.env())
            .env("HEADROOM_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts"),
    )
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Queries planners ask of history; sums and means rounded (the order of
/// addition differs between plans), percentiles exact (by rank).
const QUERIES: [&str; 5] = [
    "SELECT asset, max(value) AS peak, min(value) AS low FROM readings WHERE quantity = 'p_kw' GROUP BY asset ORDER BY asset",
    "SELECT asset, value AS p95 FROM (SELECT asset, value, row_number() OVER (PARTITION BY asset ORDER BY value, ts) AS rank, count(*) OVER (PARTITION BY asset) AS n FROM readings WHERE quantity = 'p_kw') WHERE rank = CAST(ceil(0.95 * n) AS BIGINT) ORDER BY asset",
    "SELECT date_part('hour', ts) AS hour, round(avg(value), 6) AS mean_kw FROM readings WHERE quantity = 'p_kw' GROUP BY date_part('hour', ts) ORDER BY hour",
    "SELECT a.feeder, count(*) AS n, round(sum(r.value), 6) AS total_kw FROM readings r JOIN assets a ON a.id = r.asset WHERE r.quantity = 'p_kw' AND a.kind = 'transformer' GROUP BY a.feeder ORDER BY a.feeder",
    "SELECT asset, count(*) AS n FROM readings WHERE ts >= TIMESTAMP '2026-07-03T00:00:00Z' AND ts < TIMESTAMP '2026-07-05T00:00:00Z' GROUP BY asset ORDER BY asset",
];

/// Readings of four of the fixture's 124 assets: the store sorts each day file
/// by asset, so the page index skips most pages.
const ASSET_RANGE: &str = "SELECT asset, count(*) AS n FROM readings WHERE asset >= 'LV1.101 Bus 10' AND asset < 'LV1.101 Bus 14' GROUP BY asset ORDER BY asset";

/// From an EXPLAIN ANALYZE table, the scan of the readings' day files: what it
/// reads (files, projection, predicates; metrics cut off) and its pruning
/// counts (`NAME=T total → M matched`).
fn readings_scan(explained: &str) -> (String, Vec<String>) {
    let scan = explained
        .lines()
        .filter_map(|line| {
            line.find("DataSourceExec: file_groups=")
                .map(|at| &line[at..])
        })
        .find(|scan| scan.contains("/readings/date="))
        .unwrap_or_else(|| panic!("no scan of the day files in\n{explained}"));
    let (reads, metrics) = scan
        .split_once(", metrics=[")
        .unwrap_or_else(|| panic!("no metrics in {scan}"));
    let pruning = metrics
        .split(", ")
        .filter(|metric| metric.contains(" total → "))
        // Locally DataFusion adds "-> N fully matched" to some; the cluster's
        // metrics come back without it.
        .map(|metric| match metric.split_once(" matched") {
            Some((counts, _)) => format!("{counts} matched"),
            None => metric.to_owned(),
        })
        .collect();
    (reads.to_owned(), pruning)
}

#[test]
fn history_queries_on_a_cluster_over_s3_answer_as_the_store_and_survive_a_lost_executor() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let created = s3.request("PUT", "/history");
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let location = "s3://history/grid";
    let import = s3.headroom(
        &wal,
        &[
            "import".as_ref(),
            fixture("1-MV-semiurb").as_os_str(),
            "--data-dir".as_ref(),
            location.as_ref(),
        ],
    );
    assert_eq!(import.code, 0, "{}", import.all_output());

    let scheduler_port = free_port();
    let cluster = format!("df://127.0.0.1:{scheduler_port}");
    let _scheduler = role(
        &s3,
        &[
            "cluster",
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{scheduler_port}"),
            "--data-dir",
            location,
            "--executor-timeout-s",
            "6",
        ],
        &dir.path().join("scheduler.log"),
    );
    wait_listening(scheduler_port);
    let mut executors = Vec::new();
    for i in 0..2 {
        let port = free_port();
        let work = dir.path().join(format!("work-{i}"));
        executors.push(role(
            &s3,
            &[
                "cluster",
                "executor",
                "--scheduler",
                &cluster,
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--grpc-port",
                &free_port().to_string(),
                "--concurrency",
                "1",
                "--memory-mb",
                "256",
                "--work-dir",
                work.to_str().unwrap(),
                "--data-dir",
                location,
            ],
            &dir.path().join(format!("executor-{i}.log")),
        ));
        wait_listening(port);
    }

    // `headroom sql` locally, or on a cluster with more options.
    let sql_on = |on: Option<&str>, options: &[&str], query: &str| {
        let mut args = vec!["sql", "--data-dir", location];
        if let Some(on) = on {
            args.extend(["--cluster", on]);
        }
        args.extend(options);
        args.push(query);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        s3.headroom(&wal, &args)
    };
    let sql =
        |query: &str, on_cluster: bool| sql_on(on_cluster.then_some(cluster.as_str()), &[], query);
    for query in QUERIES {
        let local = sql(query, false);
        assert_eq!(local.code, 0, "{query}: {}", local.all_output());
        let distributed = sql(query, true);
        assert_eq!(distributed.code, 0, "{query}: {}", distributed.all_output());
        let (table, coverage) = distributed
            .stdout
            .rsplit_once("ran on ")
            .expect("the answer says where it ran");
        assert_eq!(table.trim_end(), local.stdout.trim_end(), "{query}");
        assert!(
            coverage.contains(&cluster) && coverage.contains("flushed up to 20"),
            "{coverage}"
        );
        assert!(
            local.stdout.lines().count() > 4,
            "{query}: {}",
            local.stdout
        );
    }
    // Pruning by day and by asset range on the cluster as locally: the same
    // Parquet scan (files, predicate) in both plans, and EXPLAIN ANALYZE counts
    // the same files, row groups and pages skipped by their statistics.
    let plan = sql(&format!("EXPLAIN {}", QUERIES[4]), true);
    assert_eq!(plan.code, 0, "{}", plan.all_output());
    assert!(plan.stdout.contains("distributed_plan"), "{}", plan.stdout);
    for (query, pruned) in [
        (
            QUERIES[4],
            "files_ranges_pruned_statistics=7 total → 2 matched",
        ),
        (ASSET_RANGE, "page_index_pages_pruned=28 total → 7 matched"),
    ] {
        let explained = format!("EXPLAIN ANALYZE {query}");
        let local = sql(&explained, false);
        assert_eq!(local.code, 0, "{}", local.all_output());
        let distributed = sql(&explained, true);
        assert_eq!(distributed.code, 0, "{}", distributed.all_output());
        let (local_scan, local_pruning) = readings_scan(&local.stdout);
        let (cluster_scan, cluster_pruning) = readings_scan(&distributed.stdout);
        assert_eq!(cluster_scan, local_scan, "{query}: the scans differ");
        assert_eq!(
            cluster_pruning, local_pruning,
            "{query}: the pruning differs"
        );
        assert!(
            local_pruning.iter().any(|p| p == pruned),
            "{query}: expected {pruned} in {local_pruning:#?}"
        );
    }

    // Bad input.
    for (query, code, says) in [
        ("DROP TABLE readings", 2, "DDL not supported"),
        ("SELECT * FROM nothing_here", 2, "nothing_here"),
    ] {
        let refused = sql(query, true);
        assert_eq!(refused.code, code, "{query}: {}", refused.all_output());
        assert!(refused.stderr.contains(says), "{query}: {}", refused.stderr);
    }
    let past_limit = sql_on(
        Some(&cluster),
        &["--max-rows", "10"],
        "SELECT * FROM readings",
    );
    assert_eq!(past_limit.code, 2, "{}", past_limit.all_output());
    assert!(
        past_limit.stderr.contains("row limit"),
        "{}",
        past_limit.stderr
    );
    let unreachable = sql_on(
        Some(&format!("df://127.0.0.1:{}", free_port())),
        &[],
        "SELECT 1",
    );
    assert_eq!(unreachable.code, 1, "{}", unreachable.all_output());
    assert!(
        unreachable.stderr.contains("cluster: df://127.0.0.1"),
        "{}",
        unreachable.stderr
    );

    // One executor killed while a join runs (~2 s here): the answer is the
    // right one or a clear error, never a wrong one. (Ballista 55.0.0 hangs
    // such a job; the scheduler cancels it once it has stalled for three
    // executor timeouts, 18 s, well before the query's own time limit.)
    let heavy = "SELECT count(*) AS pairs FROM readings a JOIN readings b ON a.asset = b.asset AND a.quantity = b.quantity AND a.ts <= b.ts WHERE a.quantity IN ('u_kv', 'i_a')";
    let expected = sql(heavy, false);
    assert_eq!(expected.code, 0, "{}", expected.all_output());
    let running = std::thread::scope(|scope| {
        let query = scope.spawn(|| sql_on(Some(&cluster), &["--timeout-s", "45"], heavy));
        std::thread::sleep(Duration::from_millis(800));
        drop(executors.remove(0));
        query.join().unwrap()
    });
    if running.code == 0 {
        let (table, _) = running.stdout.rsplit_once("ran on ").unwrap();
        assert_eq!(
            table.trim_end(),
            expected.stdout.trim_end(),
            "a wrong answer after an executor was lost"
        );
    } else {
        assert!(
            running.stderr.contains("cluster:")
                && running.stderr.contains("lost an executor")
                && running.stderr.contains("run the query again"),
            "{}",
            running.all_output()
        );
    }
    eprintln!(
        "history: the query with an executor killed {}",
        if running.code == 0 {
            "completed on the other"
        } else {
            "failed clearly"
        }
    );
    // The cluster goes on with the executor left: within two minutes (the
    // stalled job's cancel, 18 s, and a query's time), not the CLI's default
    // ten, so that a wedged cluster fails here instead of holding the suite.
    let after = sql_on(Some(&cluster), &["--timeout-s", "120"], QUERIES[0]);
    assert_eq!(after.code, 0, "{}", after.all_output());
    assert_eq!(
        after.stdout.rsplit_once("ran on ").unwrap().0.trim_end(),
        sql(QUERIES[0], false).stdout.trim_end()
    );
}

/// `GET /v1/history` answers over the same files as `headroom sql`, within its
/// limits, and says when its cluster cannot be reached.
#[test]
fn the_history_route_answers_within_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (service, token) = crate::support::serve_gridpack(
        dir.path(),
        &fixture("1-MV-semiurb"),
        "planner",
        "[history]\nmax_rows = 50\ntimeout_s = 30\n",
    );
    let url = |sql: &str| {
        let mut u = reqwest::Url::parse(&format!("{}/v1/history", service.url)).unwrap();
        u.query_pairs_mut().append_pair("sql", sql);
        u.to_string()
    };
    let query = "SELECT quantity, count(*) AS n, max(value) AS peak FROM readings GROUP BY quantity ORDER BY quantity";
    let (status, answer) = call_json("GET", &url(query), &token, None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["columns"],
        serde_json::json!(["quantity", "n", "peak"])
    );
    assert_eq!(answer["ran_on"], "local");
    assert!(
        answer["history_to"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{answer}"
    );
    let local = crate::support::headroom([
        "sql",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        query,
    ]);
    for row in answer["rows"].as_array().unwrap() {
        let (quantity, n) = (row[0].as_str().unwrap(), row[1].as_u64().unwrap());
        assert!(
            local
                .stdout
                .lines()
                .any(|l| l.contains(&format!("| {quantity} ")) && l.contains(&format!("| {n} "))),
            "{row:?} not in\n{}",
            local.stdout
        );
    }
    for (sql, says) in [
        ("DELETE FROM readings", "sql"),
        ("SELECT * FROM nothing_here", "sql"),
        ("SELECT * FROM readings", "sql"),
    ] {
        let (status, error) = call_json("GET", &url(sql), &token, None);
        assert_eq!(status, 400, "{sql}: {error}");
        assert_eq!(error["error"]["field"], says, "{sql}: {error}");
    }
    let (_, past) = call_json("GET", &url("SELECT * FROM readings"), &token, None);
    assert!(
        past["error"]["message"]
            .as_str()
            .unwrap()
            .contains("row limit"),
        "{past}"
    );
    drop(service);

    // A cluster that cannot be reached: 503, nothing else changed.
    let other = tempfile::tempdir().unwrap();
    let (service, token) = crate::support::serve_gridpack(
        other.path(),
        &fixture("1-MV-semiurb"),
        "planner",
        &format!("[history]\ncluster = \"df://127.0.0.1:{}\"\n", free_port()),
    );
    let (status, error) = call_json(
        "GET",
        &format!("{}/v1/history?sql=SELECT%201", service.url),
        &token,
        None,
    );
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["error"]["code"], "unavailable", "{error}");
}
