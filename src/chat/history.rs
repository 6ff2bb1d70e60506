//! The interactive session's line history, `<root>/history/repl` (SPEC §1): read at the start
//! of a session, and one line added per entry — under a sibling lock, re-reading the file
//! first and writing it back atomically, so a crash never leaves it torn and sessions running
//! side by side lose none of each other's lines.
//!
//! Owns: the file's format (rustyline's `#V2`: one entry per line, `\` and newlines escaped) and
//! its size cap. Must not: decide which lines may be kept (the session does, SPEC §7).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{
    not_regular, open_existing_lock, open_lock, open_regular, read_limited, write_atomic,
};

/// Most entries kept; the oldest go first.
pub const MAX_ENTRIES: usize = 1000;

/// Largest history file read (1 000 entries of a long line each fit well below).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

const HEADER: &str = "#V2";

/// The entries of the history file at `path`, oldest first; a missing file has none.
pub fn load(path: &Path) -> io::Result<Vec<String>> {
    match read_limited(path, MAX_BYTES) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Adds `entry` to the history file at `path` (see the module doc), keeping the last
/// [`MAX_ENTRIES`]; a repeat of the last entry is not added twice.
pub fn append(path: &Path, entry: &str) -> io::Result<()> {
    // Opened without blocking, a regular file only (SPEC §7.1).
    let lock = open_lock(&lock_path(path))?;
    lock.lock()?;
    let mut entries = load(path)?;
    if entries.last().map(String::as_str) == Some(entry) {
        return Ok(());
    }
    entries.push(entry.to_string());
    let from = entries.len().saturating_sub(MAX_ENTRIES);
    write_atomic(path, render(&entries[from..]).as_bytes())
}

/// Why the history at `path` cannot be kept at all, when the file or its lock is something
/// other than a regular file (a FIFO, a directory…: SPEC §7.1), naming it; `None` otherwise.
/// Looked at once when a session starts, so it can say so instead of failing every line quietly.
pub fn refused(path: &Path) -> Option<String> {
    let lock = lock_path(path);
    [open_regular(path), open_existing_lock(&lock)]
        .into_iter()
        .find_map(|r| {
            r.err()
                .and_then(|e| not_regular(&e).map(ToString::to_string))
        })
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(".lock");
    PathBuf::from(p)
}

fn parse(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| *l != HEADER && !l.is_empty())
        .map(unescape)
        .collect()
}

fn render(entries: &[String]) -> String {
    let mut text = String::from(HEADER);
    text.push('\n');
    for e in entries {
        text.push_str(&escape(e));
        text.push('\n');
    }
    text
}

fn escape(entry: &str) -> String {
    let mut out = String::with_capacity(entry.len());
    for c in entry.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Creates the history's directory, private (SPEC §1).
pub fn prepare_dir(path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_whatever_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repl");
        let entries = [
            "plain",
            "two\nlines",
            "back\\slash \\n literal",
            "cr\r",
            "é ✓",
        ];
        for e in entries {
            append(&path, e).unwrap();
        }
        assert_eq!(load(&path).unwrap(), entries);
        // A repeat of the last entry is kept once.
        append(&path, "é ✓").unwrap();
        assert_eq!(load(&path).unwrap().len(), entries.len());
    }

    #[test]
    fn the_oldest_entries_go_beyond_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repl");
        let old: Vec<String> = (0..MAX_ENTRIES).map(|i| format!("line {i}")).collect();
        write_atomic(&path, render(&old).as_bytes()).unwrap();
        append(&path, "newest").unwrap();
        let got = load(&path).unwrap();
        assert_eq!(got.len(), MAX_ENTRIES);
        assert_eq!(got[0], "line 1");
        assert_eq!(got[MAX_ENTRIES - 1], "newest");
    }

    /// Sessions side by side (each append opens and locks the lock file afresh, as another
    /// process does) lose none of each other's lines.
    #[test]
    fn concurrent_appends_lose_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repl");
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..25 {
                        append(path, &format!("session {t} line {i}")).unwrap();
                    }
                });
            }
        });
        let mut got = load(&path).unwrap();
        got.sort();
        let mut want: Vec<String> = (0..4)
            .flat_map(|t| (0..25).map(move |i| format!("session {t} line {i}")))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history").join("repl");
        prepare_dir(&path).unwrap();
        append(&path, "x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
