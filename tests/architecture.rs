//! STYLE 23: layering is a test. Every source file under `src/` is read, the `crate::…` paths
//! it names in code are extracted (every `use` form, grouped and nested braces, `pub use`, and
//! fully qualified paths such as `crate::auth::refresh::Refresher::default()`), each file is
//! mapped to its top-level module (`src/chat/turn.rs` → `chat`, `src/driver.rs` → `driver`;
//! `lib.rs` and `main.rs` wire everything and are exempt), and the test fails naming the file,
//! the line and the path of each import that breaks a rule of [`RULES`].
//!
//! Comments (line, doc and block) and string and character literals are blanked before the
//! scan, so a doc link such as ``[`Trace`](crate::simulate::trace::Trace)`` is not a dependency.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Which files a rule applies to.
enum Scope {
    /// Every file of one top-level module.
    Module(&'static str),
    /// Every file of every top-level module except these.
    AllBut(&'static [&'static str]),
}

/// One layering rule: files of `from` must not name a path under any of `forbidden` unless it
/// lies under one of `allowed`. Paths are compared segment by segment (`crate::profile::model`
/// covers `crate::profile::model::Backend`, not `crate::profile::models`).
struct Rule {
    from: Scope,
    forbidden: &'static [&'static str],
    allowed: &'static [&'static str],
    /// Why the rule exists; printed with each violation.
    why: &'static str,
}

/// The architecture (STYLE "The shape"): who may import whom.
const RULES: &[Rule] = &[
    Rule {
        from: Scope::Module("engine"),
        forbidden: &["crate"],
        allowed: &[
            "crate::engine",
            "crate::profile::model",
            "crate::profile::settings",
        ],
        why: "the engine is a pure function over validated types (STYLE 1, 4, 20): it sees \
              only validated profile types, never raw profiles, I/O or a driver",
    },
    Rule {
        from: Scope::Module("profile"),
        forbidden: &["crate::engine"],
        allowed: &[],
        why: "profiles are the engine's input: they are parsed and validated without knowing \
              the engine that consumes them",
    },
    Rule {
        from: Scope::Module("shell"),
        forbidden: &["crate::chat", "crate::serve", "crate::commands"],
        allowed: &[],
        why: "the shell drives the engine over HTTP for every face; a face depends on the \
              shell, never the reverse",
    },
    Rule {
        from: Scope::Module("simulate"),
        forbidden: &["crate::shell"],
        allowed: &[],
        why: "simulate replays the engine in virtual time and must not reach the network \
              driver (one engine, two drivers)",
    },
    Rule {
        from: Scope::Module("chat"),
        forbidden: &["crate::serve"],
        allowed: &[],
        why: "chat and serve are sibling faces; what both need lives below them \
              (conversation, driver, shell)",
    },
    Rule {
        from: Scope::Module("serve"),
        forbidden: &["crate::chat"],
        allowed: &[],
        why: "chat and serve are sibling faces; what both need lives below them \
              (conversation, driver, shell)",
    },
    Rule {
        from: Scope::Module("conversation"),
        forbidden: &["crate::chat", "crate::serve", "crate::commands"],
        allowed: &[],
        why: "conversation is the turn path chat and serve share: it sits below both faces",
    },
    Rule {
        from: Scope::Module("auth"),
        forbidden: &["crate::shell", "crate::chat", "crate::serve"],
        allowed: &[],
        why: "logins and token refresh are used by the shell and the faces; the shell holds a \
              refresher, so auth importing the shell would be a cycle",
    },
    Rule {
        from: Scope::AllBut(&["commands", "cli"]),
        forbidden: &["crate::commands"],
        allowed: &[],
        why: "commands is the top of the library (one function per command line verb); \
              everything else sits below it and is reusable without it",
    },
];

/// A `crate::…` path named in code, with the 1-based line where its last segment stands.
#[derive(Debug, PartialEq, Eq)]
struct Import {
    line: usize,
    path: String,
}

/// Replaces comments and string/char literals with spaces, keeping newlines (so line numbers
/// hold) and lifetimes (`'a` is code, `'a'` is a literal).
fn blank_non_code(src: &str) -> Vec<char> {
    let c: Vec<char> = src.chars().collect();
    let mut out = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let start = i;
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || (c[i] == 'b' && next == Some('r')))
            && (i == 0 || !ident(c[i - 1]))
            && raw_string_hashes(&c, i + if c[i] == 'b' { 2 } else { 1 }).is_some()
        {
            let open = i + if c[i] == 'b' { 2 } else { 1 };
            let hashes = raw_string_hashes(&c, open).unwrap_or(0);
            i = open + hashes + 1;
            while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')))
            {
                i += 1;
            }
            i += 1 + hashes;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            i += 2;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
            continue;
        }
        blank(&mut out, start, i);
    }
    out
}

/// When `c[at..]` opens a raw string (`#…#"`), the number of `#`s.
fn raw_string_hashes(c: &[char], at: usize) -> Option<usize> {
    let hashes = c[at.min(c.len())..]
        .iter()
        .take_while(|&&ch| ch == '#')
        .count();
    (c.get(at + hashes) == Some(&'"')).then_some(hashes)
}

/// Code tokens: identifiers and single punctuation, `::` as one token, each with its line.
fn tokens(code: &[char]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < code.len() {
        let ch = code[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < code.len() && (code[i].is_alphanumeric() || code[i] == '_') {
                i += 1;
            }
            out.push((code[start..i].iter().collect(), line));
        } else if ch == ':' && code.get(i + 1) == Some(&':') {
            out.push(("::".to_string(), line));
            i += 2;
        } else {
            out.push((ch.to_string(), line));
            i += 1;
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|ch| ch.is_alphabetic() || ch == '_')
}

/// Every `crate::…` path named in code in `src`.
fn extract(src: &str) -> Vec<Import> {
    let toks = tokens(&blank_non_code(src));
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i].0 == "crate" && toks.get(i + 1).is_some_and(|t| t.0 == "::") {
            i = tree(&toks, i + 1, "crate".to_string(), toks[i].1, &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads the rest of a path or use tree after `prefix` (at `toks[i]`, expected `::` or the end
/// of the path), pushes each complete path, and returns the index after it.
fn tree(
    toks: &[(String, usize)],
    mut i: usize,
    mut prefix: String,
    mut line: usize,
    out: &mut Vec<Import>,
) -> usize {
    while toks.get(i).is_some_and(|t| t.0 == "::") {
        match toks.get(i + 1).map(|t| t.0.as_str()) {
            Some("{") => return group(toks, i + 2, &prefix, out),
            Some("*") => {
                i += 2;
                break;
            }
            Some(seg) if is_ident(seg) => {
                prefix = format!("{prefix}::{seg}");
                line = toks[i + 1].1;
                i += 2;
            }
            _ => break,
        }
    }
    out.push(Import { line, path: prefix });
    i
}

/// Reads a `{…}` group whose items extend `prefix`, from `toks[i]` (just after `{`).
fn group(toks: &[(String, usize)], mut i: usize, prefix: &str, out: &mut Vec<Import>) -> usize {
    while let Some((t, line)) = toks.get(i) {
        match t.as_str() {
            "}" => return i + 1,
            "," => i += 1,
            "self" | "*" => {
                out.push(Import {
                    line: *line,
                    path: prefix.to_string(),
                });
                i += 1;
            }
            "{" => i = group(toks, i + 1, prefix, out),
            "as" => i += 2,
            seg if is_ident(seg) => i = tree(toks, i + 1, format!("{prefix}::{seg}"), *line, out),
            _ => i += 1,
        }
    }
    i
}

/// Whether `path` is `base` or lies under it, segment by segment.
fn under(path: &str, base: &str) -> bool {
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with("::"))
}

/// The top-level module of a file under `src/`, or `None` for the exempt crate roots.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn applies(from: &Scope, module: &str) -> bool {
    match from {
        Scope::Module(m) => *m == module,
        Scope::AllBut(others) => !others.contains(&module),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// One line that breaks a rule: file, line, the source line, the forbidden paths it names.
type Found = (String, usize, String, Vec<String>);

#[test]
fn no_module_imports_across_a_forbidden_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 50,
        "expected the crate's sources, read {}",
        files.len()
    );
    let mut broken: Vec<Vec<Found>> = RULES.iter().map(|_| Vec::new()).collect();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let Some(module) = module_of(rel) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for import in extract(&text) {
            for (r, rule) in RULES
                .iter()
                .enumerate()
                .filter(|(_, r)| applies(&r.from, &module))
            {
                if rule.forbidden.iter().any(|f| under(&import.path, f))
                    && !rule.allowed.iter().any(|a| under(&import.path, a))
                {
                    let at = format!("src/{}", rel.display());
                    match broken[r].last_mut() {
                        Some(last) if last.0 == at && last.1 == import.line => {
                            last.3.push(import.path.clone());
                        }
                        _ => {
                            let source = lines
                                .get(import.line - 1)
                                .map_or("", |l| l.trim())
                                .to_string();
                            broken[r].push((at, import.line, source, vec![import.path.clone()]));
                        }
                    }
                }
            }
        }
    }
    let mut report = String::new();
    for (rule, found) in RULES.iter().zip(&broken).filter(|(_, f)| !f.is_empty()) {
        let _ = writeln!(report, "rule: {}", rule.why);
        for (file, line, source, paths) in found {
            let _ = writeln!(
                report,
                "  {file}:{line}: imports {}\n      {source}",
                paths.join(", ")
            );
        }
        report.push('\n');
    }
    assert!(
        report.is_empty(),
        "imports that break the layering (rules: tests/architecture.rs RULES):\n\n{report}"
    );
}

#[test]
fn extractor_reads_every_use_form_and_skips_comments_and_literals() {
    let src = r#"
//! See [`x`](crate::ignored::doc) and crate::ignored::inner.
use crate::a::b;
pub use crate::c::D;
use crate::{e::f, g, h::{i, j::{k, l as m}}, n::*};
use crate::o::{self, P};
/// A doc link to [`Q`](crate::ignored::outer).
fn x() {
    // crate::ignored::line
    let _ = crate::auth::refresh::Refresher::default(); /* crate::ignored::block */
    let s = "crate::ignored::string";
    let r = r"crate::ignored::raw";
    let ch = '"'; let lt: &'static str = "";
    let v = $crate::q::r!();
    pub(crate) fn y() {}
}
"#;
    let got: Vec<(usize, String)> = extract(src).into_iter().map(|i| (i.line, i.path)).collect();
    let want: Vec<(usize, &str)> = vec![
        (3, "crate::a::b"),
        (4, "crate::c::D"),
        (5, "crate::e::f"),
        (5, "crate::g"),
        (5, "crate::h::i"),
        (5, "crate::h::j::k"),
        (5, "crate::h::j::l"),
        (5, "crate::n"),
        (6, "crate::o"),
        (6, "crate::o::P"),
        (10, "crate::auth::refresh::Refresher::default"),
        (14, "crate::q::r"),
    ];
    let want: Vec<(usize, String)> = want.into_iter().map(|(l, p)| (l, p.to_string())).collect();
    assert_eq!(got, want);
    // A raw string with hashes may hold quotes and `"` followed by other text.
    let raw = "let r = br##\"crate::ignored \"quoted\"# \"##; use crate::z;";
    let got: Vec<String> = extract(raw).into_iter().map(|i| i.path).collect();
    assert_eq!(got, ["crate::z"]);
}

#[test]
fn rules_compare_paths_segment_by_segment_and_map_files_to_modules() {
    assert!(under(
        "crate::profile::model::Backend",
        "crate::profile::model"
    ));
    assert!(under("crate::profile::model", "crate::profile::model"));
    assert!(!under("crate::profile::models", "crate::profile::model"));
    assert!(under("crate::chat", "crate"));
    assert_eq!(
        module_of(Path::new("chat/turn.rs")).as_deref(),
        Some("chat")
    );
    assert_eq!(module_of(Path::new("driver.rs")).as_deref(), Some("driver"));
    assert_eq!(
        module_of(Path::new("shell/protocol/openai.rs")).as_deref(),
        Some("shell")
    );
    assert_eq!(module_of(Path::new("lib.rs")), None);
    assert_eq!(module_of(Path::new("main.rs")), None);
    assert!(applies(&Scope::AllBut(&["commands", "cli"]), "chat"));
    assert!(!applies(&Scope::AllBut(&["commands", "cli"]), "cli"));
}
