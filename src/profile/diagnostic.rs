//! One diagnostic type and one renderer for syntax, schema and semantic findings (SPEC §2.3).
//!
//! Owns: the [`Diagnostic`] value, placing it in the source text, and rendering it as a
//! human report (snippet with a caret, `help:`) or as one JSON object. Must not: print; the
//! command layer decides where the text goes.

use serde::Serialize;

use super::jsonpos;

/// How serious a finding is: errors fail validation, warnings only under `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: a synonym was read, a field is ignored.
    Note,
    /// Probably a mistake, but the file still loads.
    Warning,
    /// The file cannot be used.
    Error,
}

impl Severity {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// What a diagnostic points at inside its JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The member name (for unknown or misplaced keys).
    Key,
    /// The value.
    Value,
}

/// One finding about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// JSON pointer of the offending value (`""` for the whole document).
    pub pointer: String,
    /// How serious it is.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Byte span of the offending token, for the caret (not serialised).
    #[serde(skip)]
    pub span: Option<std::ops::Range<usize>>,
}

/// A finding not yet placed in its file: the checks produce these, [`place`] adds the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// JSON pointer of the offending value.
    pub pointer: String,
    /// Key or value.
    pub target: Target,
    /// How serious it is.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl Finding {
    /// An error at `pointer`'s value.
    pub fn error(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, pointer, message)
    }
    /// A warning at `pointer`'s value.
    pub fn warning(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, pointer, message)
    }
    /// A note at `pointer`'s value.
    pub fn note(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Note, pointer, message)
    }
    fn new(severity: Severity, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            pointer: pointer.into(),
            target: Target::Value,
            severity,
            message: message.into(),
            help: None,
        }
    }
    /// Points the caret at the member name instead of the value.
    #[must_use]
    pub fn at_key(mut self) -> Self {
        self.target = Target::Key;
        self
    }
    /// Adds a `help:` line.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Places a finding in `text` (the file's content) to make a diagnostic.
pub fn place(file: &str, text: &str, f: Finding) -> Diagnostic {
    let located = jsonpos::locate(text, &f.pointer);
    let span = located.map(|l| match (f.target, l.key) {
        (Target::Key, Some(k)) => k,
        _ => l.value,
    });
    let (line, column) = span
        .as_ref()
        .map_or((1, 1), |s| jsonpos::line_col(text, s.start));
    Diagnostic {
        file: file.to_string(),
        line,
        column,
        pointer: f.pointer,
        severity: f.severity,
        message: f.message,
        help: f.help,
        span,
    }
}

/// Colours for the human report; all empty when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    error: &'static str,
    warning: &'static str,
    note: &'static str,
    accent: &'static str,
    bold: &'static str,
    reset: &'static str,
}

impl Palette {
    /// ANSI colours (a terminal without `NO_COLOR`).
    pub const COLOR: Palette = Palette {
        error: "\x1b[1;31m",
        warning: "\x1b[1;33m",
        note: "\x1b[1;36m",
        accent: "\x1b[1;34m",
        bold: "\x1b[1m",
        reset: "\x1b[0m",
    };
    /// No colour.
    pub const PLAIN: Palette = Palette {
        error: "",
        warning: "",
        note: "",
        accent: "",
        bold: "",
        reset: "",
    };
}

/// Renders a diagnostic for people: header, location, the source line with a caret under the
/// offending token, the pointer, and the `help:` line.
pub fn render_human(d: &Diagnostic, text: Option<&str>, p: Palette) -> String {
    use std::fmt::Write as _;
    let colour = match d.severity {
        Severity::Error => p.error,
        Severity::Warning => p.warning,
        Severity::Note => p.note,
    };
    let mut out = format!(
        "{colour}{}{}: {}{}{}\n",
        d.severity.as_str(),
        p.reset,
        p.bold,
        d.message,
        p.reset
    );
    let gutter = d.line.to_string().len();
    let pad = " ".repeat(gutter);
    let _ = writeln!(
        out,
        "{pad}{}-->{} {}:{}:{}",
        p.accent, p.reset, d.file, d.line, d.column
    );
    if let (Some(text), Some(span)) = (text, d.span.as_ref())
        && let Some(src) = text.lines().nth(d.line - 1)
    {
        let width = text
            .get(span.clone())
            .map_or(1, |t| t.lines().next().unwrap_or("").chars().count())
            .max(1);
        let (shown, carets) = snippet(src, d.column, width);
        let _ = writeln!(out, "{pad} {}|{}", p.accent, p.reset);
        let _ = writeln!(out, "{}{} |{} {shown}", p.accent, d.line, p.reset);
        let lead = carets.len() - carets.trim_start().len();
        let _ = writeln!(
            out,
            "{pad} {}|{} {}{colour}{}{}",
            p.accent,
            p.reset,
            &carets[..lead],
            carets.trim(),
            p.reset
        );
    }
    if !d.pointer.is_empty() {
        let _ = writeln!(out, "{pad} {}={} pointer: {}", p.accent, p.reset, d.pointer);
    }
    if let Some(h) = &d.help {
        let _ = writeln!(out, "{pad} {}={} help: {h}", p.accent, p.reset);
    }
    out
}

/// Longest part of a source line a snippet shows.
const SNIPPET_WIDTH: usize = 120;

/// The source line as shown and the caret line under it. Secrets are redacted (SPEC §7: a
/// profile may hold a raw `auth-key`, and the snippet must not print it). A long line (a
/// minified file, deep nesting) is cut to [`SNIPPET_WIDTH`] characters around the caret, with
/// `…` where it was cut, so the caret is always visible under its token.
fn snippet(src: &str, column: usize, width: usize) -> (String, String) {
    let chars: Vec<char> = src.chars().collect();
    let first = column.saturating_sub(1).min(chars.len());
    let marked = |i: usize| i >= first && i < first + width;
    // Cells of the shown line: a character and whether the caret is under it.
    let mut cells: Vec<(char, bool)> = Vec::with_capacity(chars.len() + 1);
    let mut i = 0;
    for (range, replacement) in crate::redact::secret_spans(src) {
        cells.extend((i..range.start).map(|k| (chars[k], marked(k))));
        let under = range.clone().any(marked);
        cells.extend(replacement.chars().map(|ch| (ch, under)));
        i = range.end;
    }
    cells.extend((i..chars.len()).map(|k| (chars[k], marked(k))));
    if first >= chars.len() {
        // The error is at the end of the line (a missing token): the caret goes after it.
        cells.push((' ', true));
    }
    let caret_at = cells.iter().position(|(_, m)| *m).unwrap_or(0);
    let start = if cells.len() <= SNIPPET_WIDTH {
        0
    } else {
        caret_at
            .saturating_sub(SNIPPET_WIDTH / 3)
            .min(cells.len() - SNIPPET_WIDTH)
    };
    let end = (start + SNIPPET_WIDTH).min(cells.len());
    let window = &cells[start..end];
    let mut shown: String = window.iter().map(|(ch, _)| *ch).collect();
    let mut carets: String = window
        .iter()
        .map(|(_, m)| if *m { '^' } else { ' ' })
        .collect();
    if start > 0 {
        shown.insert(0, '…');
        carets.insert(0, ' ');
    }
    if end < cells.len() {
        shown.push('…');
    }
    (shown.trim_end().to_string(), carets.trim_end().to_string())
}

/// Renders a diagnostic as one line of JSON (SPEC §8.1 `profile validate --json`).
pub fn render_json(d: &Diagnostic) -> String {
    serde_json::to_string(d).expect("a diagnostic is plain data and always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_sits_under_the_key() {
        let text = "{\n  \"polcy\": \"failover\"\n}";
        let d = place(
            "x.json",
            text,
            Finding::warning("/polcy", "unknown key \"polcy\"")
                .at_key()
                .help("did you mean \"policy\"?"),
        );
        assert_eq!((d.line, d.column), (2, 3));
        let r = render_human(&d, Some(text), Palette::PLAIN);
        assert!(r.contains("--> x.json:2:3"), "{r}");
        assert!(r.contains("  |   ^^^^^^^\n"), "{r}");
        assert!(r.contains("help: did you mean \"policy\"?"), "{r}");
    }
}
