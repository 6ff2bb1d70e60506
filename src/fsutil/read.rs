//! Opening and reading files that may turn out to be anything (SPEC §7, §7.1).
//!
//! Owns: opening a file llxprt reads (or locks) so that a FIFO, device, socket or directory in
//! its place is a clear error naming it, never a hang, and reading it with a size cap. Must not:
//! decide paths, or what a caller does with a file that is refused.
//!
//! Every file is opened with `O_NONBLOCK` (an `open` of a FIFO otherwise waits for a writer, or
//! for a reader when opened for writing) and `O_NOCTTY` (a terminal device never becomes the
//! process's controlling terminal), following symlinks; then the *opened handle's* type is
//! checked, so a file swapped between a check and the open cannot slip through. On a regular
//! file `O_NONBLOCK` changes nothing: reads and locks behave as usual.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// A path that names something other than a regular file (after following symlinks).
#[derive(Debug)]
pub struct NotRegularFile {
    /// The path as the caller gave it.
    pub path: PathBuf,
    /// What it is instead: `FIFO`, `directory`, `socket`, `character device`, `block device`
    /// or `special file`.
    pub what: &'static str,
}

impl std::fmt::Display for NotRegularFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is a {}, not a regular file",
            self.path.display(),
            self.what
        )
    }
}

impl std::error::Error for NotRegularFile {}

/// The [`NotRegularFile`] inside `e`, when that is why a file was refused.
pub fn not_regular(e: &io::Error) -> Option<&NotRegularFile> {
    e.get_ref()?.downcast_ref::<NotRegularFile>()
}

/// Opens `path` for reading without blocking, refusing anything but a regular file (see the
/// module doc).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    open_regular_with(path, options)
}

/// Opens (creating it, mode 0600, when missing) the lock file at `path` for `File::lock`,
/// without blocking and refusing anything but a regular file. Opened for reading and writing:
/// a FIFO opened write-only without blocking fails with "no such device" instead of showing
/// what it is.
pub fn open_lock(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    open_regular_with(path, options)
}

/// Opens an existing lock file (as [`open_lock`], never creating it).
pub fn open_existing_lock(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    open_regular_with(path, options)
}

fn open_regular_with(path: &Path, mut options: OpenOptions) -> io::Result<File> {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NONBLOCK | libc::O_NOCTTY,
    );
    let file = match options.open(path) {
        Ok(f) => f,
        // A directory cannot be opened for writing, a socket not at all: say what is there
        // rather than the errno's words.
        Err(e) => {
            return Err(match fs::metadata(path) {
                Ok(m) if !m.is_file() => refused(path, m.file_type()),
                _ => e,
            });
        }
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(refused(path, kind));
    }
    Ok(file)
}

fn refused(path: &Path, kind: fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        NotRegularFile {
            path: path.to_path_buf(),
            what: describe(kind),
        },
    )
}

fn describe(kind: fs::FileType) -> &'static str {
    if kind.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_socket() {
            return "socket";
        }
        if kind.is_char_device() {
            return "character device";
        }
        if kind.is_block_device() {
            return "block device";
        }
    }
    "special file"
}

/// Reads the regular file at `path` (opened by [`open_regular`]) of at most `limit` bytes; a
/// larger file is an `InvalidData` error that names the limit instead of an unbounded
/// allocation (SPEC §7).
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_capped(open_regular(path)?, limit)
}

fn read_capped(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file is larger than the {limit}-byte limit"),
        ));
    }
    Ok(buf)
}

/// Reads a file named on the command line for one read (`auth login --key-file`, SPEC §7.1):
/// unlike every other file it may be a pipe or `/dev/stdin` (`<(pass show …)`), so it is opened
/// and read on a thread of its own, and given up after `timeout` (a `TimedOut` error) if no writer has opened the pipe or closed it by then. The size cap is [`read_limited`]'s.
/// A directory is refused as by [`open_regular`].
///
/// A read given up on leaves its thread waiting on the pipe; the commands that read such a file
/// end soon after (the session's `/auth … login` keeps one thread that waits).
pub fn read_once(path: &Path, limit: u64, timeout: Duration) -> io::Result<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("llxprt-read-once".into())
        .spawn(move || {
            let read = || {
                let file = File::open(&owned)?;
                let kind = file.metadata()?.file_type();
                if kind.is_dir() {
                    return Err(refused(&owned, kind));
                }
                read_capped(file, limit)
            };
            // The receiver is gone only when the read was given up on.
            let _ = tx.send(read());
        })?;
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "nothing came within {} s (a pipe that no program writes?)",
                timeout.as_secs()
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_limited_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![b'x'; 11]).unwrap();
        assert!(read_limited(&path, 10).is_err());
        assert_eq!(read_limited(&path, 11).unwrap().len(), 11);
    }

    #[test]
    fn a_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_limited(dir.path(), 10).unwrap_err();
        let why = not_regular(&e).expect("refused as not regular");
        assert_eq!(why.what, "directory");
        assert_eq!(
            e.to_string(),
            format!(
                "{} is a directory, not a regular file",
                dir.path().display()
            )
        );
        let lock = dir.path().join("sub");
        fs::create_dir(&lock).unwrap();
        assert_eq!(
            not_regular(&open_lock(&lock).unwrap_err()).unwrap().what,
            "directory"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_device_through_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("key");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_limited(&link, 10).unwrap_err();
        assert_eq!(not_regular(&e).unwrap().what, "character device");
        assert!(
            e.to_string().starts_with(&link.display().to_string()),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // No mkfifo here: nothing to test.
        }
        assert_eq!(
            not_regular(&read_limited(&fifo, 10).unwrap_err())
                .unwrap()
                .what,
            "FIFO"
        );
        assert_eq!(
            not_regular(&open_lock(&fifo).unwrap_err()).unwrap().what,
            "FIFO"
        );
        // Read once, a FIFO with no writer is given up on.
        let e = read_once(&fifo, 10, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn a_symlink_to_a_regular_file_reads_as_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::write(&target, b"abc").unwrap();
        #[cfg(unix)]
        {
            let link = dir.path().join("l");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            assert_eq!(read_limited(&link, 10).unwrap(), b"abc");
        }
        assert_eq!(
            read_once(&target, 10, Duration::from_secs(10)).unwrap(),
            b"abc"
        );
        assert!(read_once(&target, 2, Duration::from_secs(10)).is_err());
    }
}
