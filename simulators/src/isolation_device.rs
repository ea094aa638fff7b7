//! A one-way isolation device between two folders, with the faults real links
//! show: files dropped, delivered twice, out of order, late, or with a byte
//! changed.
//!
//! It takes every visible file from the `from` folder (hidden files, such as
//! a writer's temporary ones, are not yet files), and writes it into `to`
//! whole: under a hidden temporary name, then renamed, as real devices deliver.
//! It knows nothing of what the files hold: a corrupted copy is corrupted
//! blindly, one random byte flipped.
//!
//! Every decision is reported as a [`Passage`] (the CLI prints them), so a test
//! knows which files it should find rejected and which were lost.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The faults to inject.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Chance a file is lost.
    pub drop: f64,
    /// Chance a file is delivered twice.
    pub duplicate: f64,
    /// Files are held in a window of this many and released in random order
    /// (0 or 1: in order).
    pub reorder: usize,
    /// Chance a delivered copy has one byte changed.
    pub corrupt: f64,
    /// Every file is delivered this late.
    pub delay: Duration,
}

impl Faults {
    /// No fault: every file passes once, in order, at once.
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0,
        corrupt: 0.0,
        delay: Duration::ZERO,
    };

    /// Checks that chances are within 0..=1; names the option at fault.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("--drop", self.drop),
            ("--duplicate", self.duplicate),
            ("--corrupt", self.corrupt),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} {p}: a chance is between 0 and 1"));
            }
        }
        Ok(())
    }
}

/// What the device did with a file (or a copy of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Passage {
    /// Delivered as it came.
    Delivered(String),
    /// Delivered with a byte changed.
    Corrupted(String),
    /// Lost.
    Dropped(String),
    /// Taken once, to be delivered twice (each copy reported as it goes).
    Duplicated(String),
}

impl std::fmt::Display for Passage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Passage::Delivered(name) => write!(f, "delivered {name}"),
            Passage::Corrupted(name) => write!(f, "corrupted {name}"),
            Passage::Dropped(name) => write!(f, "dropped {name}"),
            Passage::Duplicated(name) => write!(f, "duplicated {name}"),
        }
    }
}

struct Held {
    name: String,
    bytes: Vec<u8>,
    due: Instant,
}

/// The device: a one-way mover from `from` to `to`.
pub struct IsolationDevice {
    from: PathBuf,
    to: PathBuf,
    faults: Faults,
    rng: ChaCha8Rng,
    held: Vec<Held>,
}

impl IsolationDevice {
    /// A device between two folders (both must exist); `seed` makes its faults
    /// repeatable.
    pub fn new(from: &Path, to: &Path, faults: Faults, seed: u64) -> Self {
        Self {
            from: from.to_owned(),
            to: to.to_owned(),
            faults,
            rng: ChaCha8Rng::seed_from_u64(seed),
            held: Vec::new(),
        }
    }

    /// Takes what is waiting in `from` and delivers what is due; returns what
    /// it did. With `flush`, everything held is delivered, due or not.
    pub fn step(&mut self, flush: bool) -> io::Result<Vec<Passage>> {
        let mut passages = Vec::new();
        let mut waiting: Vec<(String, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&self.from)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type()?.is_file() {
                waiting.push((name, entry.path()));
            }
        }
        waiting.sort();
        let due = Instant::now() + self.faults.delay;
        for (name, path) in waiting {
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            fs::remove_file(&path)?;
            if self.rng.random_bool(self.faults.drop) {
                passages.push(Passage::Dropped(name));
                continue;
            }
            let copies = if self.rng.random_bool(self.faults.duplicate) {
                passages.push(Passage::Duplicated(name.clone()));
                2
            } else {
                1
            };
            for _ in 0..copies {
                self.held.push(Held {
                    name: name.clone(),
                    bytes: bytes.clone(),
                    due,
                });
            }
        }
        let window = self.faults.reorder.max(1);
        loop {
            let now = Instant::now();
            let ready: Vec<usize> = (0..self.held.len())
                .filter(|&i| flush || self.held[i].due <= now)
                .collect();
            if ready.is_empty() {
                break;
            }
            // Out of order: while more than a window's worth waits (or at a
            // flush), release a random one of the first `window`.
            if !flush && ready.len() < window && self.faults.reorder > 1 && self.held.len() < window
            {
                break;
            }
            let pick = ready[self.rng.random_range(0..ready.len().min(window))];
            // A copy of a file the receiver has not taken yet waits: a device
            // never overwrites what it delivered.
            if self.to.join(&self.held[pick].name).exists() {
                self.held[pick].due = now + Duration::from_millis(20);
                if flush {
                    break;
                }
                continue;
            }
            let mut held = self.held.remove(pick);
            let corrupted = self.rng.random_bool(self.faults.corrupt) && !held.bytes.is_empty();
            if corrupted {
                let at = self.rng.random_range(0..held.bytes.len());
                held.bytes[at] ^= 1 << self.rng.random_range(0..8);
            }
            deliver(&self.to, &held.name, &held.bytes)?;
            passages.push(if corrupted {
                Passage::Corrupted(held.name)
            } else {
                Passage::Delivered(held.name)
            });
        }
        Ok(passages)
    }

    /// Files held back (delayed or in the reorder window).
    pub fn holding(&self) -> usize {
        self.held.len()
    }
}

fn deliver(to: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temporary = to.join(format!(".{name}.device"));
    fs::write(&temporary, bytes)?;
    fs::rename(&temporary, to.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop_files(dir: &Path, n: usize) {
        for i in 0..n {
            fs::write(dir.join(format!("f{i:03}")), format!("file {i}")).unwrap();
        }
        fs::write(dir.join(".f999.tmp"), "being written").unwrap();
    }

    fn run(faults: Faults, n: usize) -> (Vec<Passage>, Vec<String>) {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        drop_files(from.path(), n);
        let mut device = IsolationDevice::new(from.path(), to.path(), faults, 7);
        let mut passages = device.step(false).unwrap();
        passages.extend(device.step(true).unwrap());
        // Second copies wait until the first is taken: the receiver takes them.
        while device.holding() > 0 {
            for entry in fs::read_dir(to.path()).unwrap() {
                let entry = entry.unwrap();
                let taken = to.path().join("taken");
                fs::create_dir_all(&taken).unwrap();
                if entry.file_type().unwrap().is_file() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let mut target = taken.join(&name);
                    let mut copy = 1;
                    while target.exists() {
                        copy += 1;
                        target = taken.join(format!("{name}~{copy}"));
                    }
                    fs::rename(entry.path(), target).unwrap();
                }
            }
            passages.extend(device.step(true).unwrap());
        }
        // The writer's temporary file is not taken.
        assert!(from.path().join(".f999.tmp").exists());
        let mut arrived: Vec<String> = fs::read_dir(to.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .chain(
                fs::read_dir(to.path().join("taken"))
                    .into_iter()
                    .flatten()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned()),
            )
            .collect();
        arrived.sort();
        (passages, arrived)
    }

    #[test]
    fn without_faults_every_file_passes_once_in_order() {
        let (passages, arrived) = run(Faults::NONE, 20);
        let expected: Vec<String> = (0..20).map(|i| format!("f{i:03}")).collect();
        assert_eq!(arrived, expected);
        let delivered: Vec<Passage> = expected.into_iter().map(Passage::Delivered).collect();
        assert_eq!(passages, delivered);
    }

    #[test]
    fn faults_happen_at_about_their_rates_and_are_all_reported() {
        let faults = Faults {
            drop: 0.1,
            duplicate: 0.1,
            reorder: 5,
            corrupt: 0.1,
            delay: Duration::ZERO,
        };
        let n = 1000;
        let (passages, arrived) = run(faults, n);
        let count = |f: fn(&Passage) -> bool| passages.iter().filter(|p| f(p)).count();
        let dropped = count(|p| matches!(p, Passage::Dropped(_)));
        let duplicated = count(|p| matches!(p, Passage::Duplicated(_)));
        let corrupted = count(|p| matches!(p, Passage::Corrupted(_)));
        let delivered = count(|p| matches!(p, Passage::Delivered(_)));
        for (what, got) in [("dropped", dropped), ("duplicated", duplicated)] {
            assert!((60..=140).contains(&got), "{what} {got} of {n}");
        }
        assert!((50..=150).contains(&corrupted), "corrupted {corrupted}");
        assert_eq!(delivered + corrupted, n - dropped + duplicated);
        // A file lost is not there; every other one is, its second copy too.
        assert_eq!(arrived.len(), n - dropped + duplicated);
        // Out of order: some file was delivered after a later one.
        let order: Vec<&String> = passages
            .iter()
            .filter_map(|p| match p {
                Passage::Delivered(n) | Passage::Corrupted(n) => Some(n),
                _ => None,
            })
            .collect();
        assert!(order.windows(2).any(|w| w[0] > w[1]));
        assert!(faults.validate().is_ok());
        let bad = Faults {
            drop: 1.5,
            ..faults
        };
        assert!(bad.validate().unwrap_err().starts_with("--drop 1.5"));
    }
}
