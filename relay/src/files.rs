//! Files that appear whole or not at all: written under a hidden temporary
//! name, fsynced, renamed, and the folder fsynced, so that a reader (the
//! isolation device, the inbox) never sees a half-written file and a crash
//! never leaves one under the final name.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary name a file is written under: hidden, so the device and the
/// inbox skip it.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Whether a folder entry is a file to take: not hidden (temporary files,
/// ledgers), not a folder's `done/` or `rejected/`.
pub fn is_visible_file(entry: &fs::DirEntry) -> bool {
    !entry.file_name().to_string_lossy().starts_with('.')
        && entry.file_type().is_ok_and(|t| t.is_file())
}

/// Writes `bytes` to `path` atomically and durably; `private` makes the file
/// readable by its owner only (a private key).
pub fn write_durably(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let temporary = temporary_path(path);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(&temporary)
        .map_err(|e| Error::io(&temporary, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&temporary, e))?;
    drop(file);
    fs::rename(&temporary, path).map_err(|e| Error::io(path, e))?;
    sync_parent(path)
}

/// The sequence number a state file records (0 where there is no file yet);
/// one that does not read is damaged state, never taken as 0.
pub fn read_sequence(path: &Path) -> Result<u64> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            Error::Stopped(format!(
                "{}: not a sequence number: the state is damaged",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Moves a file (within one file system) durably.
pub fn move_durably(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    sync_parent(to)?;
    sync_parent(from)
}

fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => Ok(headroom_wal::sync_dir(dir)?),
        _ => Ok(()),
    }
}
