//! `headroom serve` as a child process for the end-to-end tests and the HTTP
//! bench (included by both with `#[path]`): started with its arguments and
//! environment, its banner read up to "Ctrl-C stops", killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub(crate) struct ServiceProcess {
    pub(crate) child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub(crate) url: String,
    /// The banner's lines (URL, tokens of a demo).
    pub(crate) banner: Vec<String>,
}

impl ServiceProcess {
    pub(crate) fn start(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(args)
            .env("HEADROOM_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        for line in lines.by_ref().map_while(Result::ok) {
            let done = line.starts_with("Ctrl-C stops");
            banner.push(line);
            if done {
                break;
            }
        }
        // Keep reading so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = banner
            .iter()
            .find_map(|l| l.strip_prefix("Headroom serving on "))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| panic!("no URL in the banner: {banner:?}"));
        Self { child, url, banner }
    }

    /// The value after `prefix` on a banner line (e.g. "planner token: ").
    #[allow(dead_code)]
    pub(crate) fn banner_value(&self, prefix: &str) -> String {
        self.banner
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in the banner: {:?}", self.banner))
            .to_owned()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
