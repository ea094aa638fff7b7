//! A store whose history lives in S3: `--data-dir s3://bucket/prefix` against a
//! local S3 server (moto's, from PyPI; `scripts/test` installs it and names it in
//! `HEADROOM_MOTO_SERVER`), with the write-ahead log in a local folder.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::oracle::assert_agrees;
use crate::support::{external_tools, fixture};

/// A moto S3 server on a free loopback port, stopped when dropped.
pub(crate) struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    /// `None` when the test is skipped for want of moto.
    pub(crate) fn start() -> Option<Self> {
        let [program] = external_tools(["HEADROOM_MOTO_SERVER"])?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    /// Sends one HTTP request (moto checks no signatures) and returns the reply.
    pub(crate) fn request(&self, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("moto answers");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("request sent");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("reply read");
        reply
    }

    /// The environment a process needs to reach this server as S3.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "headroom".into()),
            ("AWS_SECRET_ACCESS_KEY", "headroom-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    pub(crate) fn headroom(
        &self,
        wal_dir: &std::path::Path,
        args: &[&std::ffi::OsStr],
    ) -> crate::support::Run {
        let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(args)
            .envs(self.env())
            .env("HEADROOM_WAL_DIR", wal_dir)
            .output()
            .expect("the headroom binary runs");
        crate::support::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_store_in_s3_keeps_its_history_there_and_ranks_as_the_independent_tool() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let created = s3.request("PUT", "/headroom-test");
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    let wal = tempfile::tempdir().unwrap();
    let dir = fixture("1-MV-semiurb");
    let location = std::ffi::OsStr::new("s3://headroom-test/utility/grid");

    let import = s3.headroom(
        wal.path(),
        &[
            "import".as_ref(),
            dir.as_os_str(),
            "--data-dir".as_ref(),
            location,
        ],
    );
    assert_eq!(import.code, 0, "{}", import.all_output());

    // Network, manifest and day files are objects under the prefix.
    let listing = s3.request("GET", "/headroom-test?list-type=2&prefix=utility/grid/");
    for key in [
        "utility/grid/network.geojson",
        "utility/grid/manifest.json",
        "utility/grid/readings/date=",
    ] {
        assert!(listing.contains(key), "no {key} in\n{listing}");
    }

    let local = tempfile::tempdir().unwrap();
    let local_import = crate::support::headroom([
        "import".as_ref(),
        dir.as_os_str(),
        "--data-dir".as_ref(),
        local.path().as_os_str(),
    ]);
    assert_eq!(local_import.code, 0, "{}", local_import.all_output());
    // Sums rounded: the order of addition differs between the two scans.
    let count = "SELECT quantity, count(*) AS n, round(sum(value), 3) AS total FROM readings \
                 GROUP BY quantity ORDER BY quantity";
    let from_s3 = s3.headroom(
        wal.path(),
        &[
            "sql".as_ref(),
            "--data-dir".as_ref(),
            location,
            count.as_ref(),
        ],
    );
    assert_eq!(from_s3.code, 0, "{}", from_s3.all_output());
    let from_disk = crate::support::headroom([
        "sql".as_ref(),
        "--data-dir".as_ref(),
        local.path().as_os_str(),
        count.as_ref(),
    ]);
    assert_eq!(from_s3.stdout, from_disk.stdout);
    assert!(from_s3.stdout.contains("p_kw"), "{}", from_s3.stdout);

    let rank = s3.headroom(
        wal.path(),
        &[
            "rank".as_ref(),
            "--data-dir".as_ref(),
            location,
            "--applications".as_ref(),
            dir.join("applications.json").as_os_str(),
            "--json".as_ref(),
        ],
    );
    assert_eq!(rank.code, 0, "{}", rank.stderr);
    assert_agrees(&rank.stdout);
}

#[test]
fn a_data_dir_url_of_another_scheme_is_refused_by_name() {
    let run = crate::support::headroom(["sql", "--data-dir", "gs://bucket/x", "SELECT 1"]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("gs://bucket/x"), "{}", run.stderr);
    let run = crate::support::headroom(["sql", "--data-dir", "s3://", "SELECT 1"]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("needs a bucket"), "{}", run.stderr);
}
