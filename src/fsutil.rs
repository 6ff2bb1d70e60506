//! Crash-safe file writes (SPEC §1), and reads that never hang (SPEC §7.1, in [`read`]).
//!
//! Owns: writing a file so that a crash at any point leaves either the previous version or the
//! new one, never a torn file; opening every file llxprt reads or locks so that a FIFO, device,
//! socket or directory is refused by name. Must not: decide paths or formats; callers do.
//!
//! # Test hook: stalling a write (debug builds only)
//!
//! Every write of llxprt — profiles, `settings.json`, credentials, the engine state, recorded
//! traces — passes through [`stage`] and [`Staged::commit`]. So that a test can kill a real
//! process in the middle of a write (`tests/crash_safety.rs`), a binary built with debug
//! assertions (what `cargo test` runs) stalls a write when the environment asks it to:
//!
//! - `LLXPRT_TEST_STALL_WRITE=<file name>`: the write whose target's file name is exactly this
//!   (`work.json`, `settings.json`, `state.json`) stalls;
//! - `LLXPRT_TEST_STALL_AT=rename` (the default): after the temp file is fully written and
//!   synced, before the rename; `LLXPRT_TEST_STALL_AT=half`: inside the temp file's write, after
//!   the first half of the bytes;
//! - `LLXPRT_TEST_STALL_MARKER=<path>` (default `<target>.stalled`): once stalled, the process
//!   creates this file (atomically) holding the temp file's path, so the test knows the write is
//!   mid-flight and can look at what it left.
//!
//! The stalled thread then sleeps; after ten minutes it aborts the process without finishing the
//! write, so a test that died before killing it leaves nothing running for long. In a release
//! build the hook is compiled out: the variables mean nothing there.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

mod read;
pub use read::{
    NotRegularFile, not_regular, open_existing_lock, open_lock, open_regular, read_limited,
    read_once,
};

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename over
/// the target, fsync the directory (SPEC §1). New files get mode 0600.
///
/// `before_rename` runs after the temp file is written and synced but before it replaces the
/// target; tests use it to fail or stall a write midway. Production callers pass `|| Ok(())`.
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    stage(path, bytes)?.commit_with(Durable::Yes, before_rename)
}

/// [`write_atomic_with`] without a test hook.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    stage(path, bytes)?.commit(Durable::Yes)
}

/// Whether [`Staged::commit`] makes the rename itself durable (fsync of the directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Sync the directory after the rename: once `commit` returns, a power loss keeps the
    /// new version (profiles, credentials, settings).
    Yes,
    /// No directory sync. The write is just as atomic: the data is synced before the rename,
    /// and a rename is atomic for every reader and across a crash, so the name always holds a
    /// whole old or whole new file; a power loss right after may only bring back the previous
    /// version. For files whose last update may be lost that way (the engine state, SPEC §5.9).
    RenameOnly,
}

/// The new content of a file, written to a temp file next to it and waiting to replace it.
/// Dropping it without [`Staged::commit`] removes the temp file and leaves the target as it was.
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

/// Writes `bytes` to a new temp file (mode 0600) in `path`'s directory, creating the
/// directory if needed; [`Staged::commit`] then syncs it and renames it over `path`.
pub fn stage(path: &Path, bytes: &[u8]) -> io::Result<Staged> {
    let dir = dir_of(path);
    let create = || {
        tempfile::Builder::new()
            .prefix(".llxprt-tmp-")
            .tempfile_in(dir)
    };
    // The directory is created only when missing (not checked on every write).
    let mut tmp = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            create()?
        }
        other => other?,
    };
    set_private(tmp.as_file())?;
    // Two writes, so the test hook can stall between them (a kill there leaves a half-written
    // temp file and the target untouched).
    let (head, tail) = bytes.split_at(bytes.len() / 2);
    tmp.write_all(head)?;
    stall_point(StallAt::Half, path, tmp.path());
    tmp.write_all(tail)?;
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
    })
}

impl Staged {
    /// Syncs the temp file and renames it over the target (SPEC §1).
    pub fn commit(self, durable: Durable) -> io::Result<()> {
        self.commit_with(durable, || Ok(()))
    }

    fn commit_with(
        self,
        durable: Durable,
        before_rename: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        stall_point(StallAt::Rename, &self.path, self.tmp.path());
        before_rename()?;
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        // Make the rename itself durable; a directory that cannot be opened for sync (some
        // filesystems) is not an error: the data is already on disk.
        if durable == Durable::Yes
            && let Ok(d) = fs::File::open(dir_of(&self.path))
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Where a write may stall for a test (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StallAt {
    /// Inside the temp file's write, after half of the bytes (`LLXPRT_TEST_STALL_AT=half`).
    Half,
    /// After the temp file is written and synced, before the rename (the default).
    Rename,
}

/// The crash-safety test hook of the module doc: stalls this thread, never to finish the
/// write, when the environment names `target`'s file and this point. Compiled out of release
/// builds.
#[cfg(debug_assertions)]
fn stall_point(at: StallAt, target: &Path, tmp: &Path) {
    use std::ffi::OsString;
    use std::time::Duration;
    let Some(name) = std::env::var_os("LLXPRT_TEST_STALL_WRITE") else {
        return;
    };
    if target.file_name() != Some(name.as_os_str()) {
        return;
    }
    let wanted = match std::env::var("LLXPRT_TEST_STALL_AT").as_deref() {
        Ok("half") => StallAt::Half,
        _ => StallAt::Rename,
    };
    if wanted != at {
        return;
    }
    let marker = std::env::var_os("LLXPRT_TEST_STALL_MARKER").map_or_else(
        || {
            let mut m = OsString::from(target.as_os_str());
            m.push(".stalled");
            PathBuf::from(m)
        },
        PathBuf::from,
    );
    // Written aside and renamed, so a test polling for the marker never reads half of it.
    let mut part = marker.clone().into_os_string();
    part.push(".part");
    if fs::write(&part, tmp.as_os_str().as_encoded_bytes()).is_ok() {
        let _ = fs::rename(&part, &marker);
    }
    std::thread::sleep(Duration::from_mins(10));
    // Never finish the write: a process its test forgot to kill still dies as if crashed.
    std::process::abort();
}

#[cfg(not(debug_assertions))]
fn stall_point(_at: StallAt, _target: &Path, _tmp: &Path) {}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn set_private(file: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_file: &fs::File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_previous_version_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, b"new-and-longer", || {
            Err(io::Error::other("simulated crash before rename"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("simulated crash"));
        assert_eq!(fs::read(&path).unwrap(), b"old");
        // No temp file is left behind either.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        write_atomic(&path, b"{}").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
