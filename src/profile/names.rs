//! Profile and bucket name rules (SPEC §1).
//!
//! Owns: deciding whether a string may name a profile or a bucket, before any filesystem
//! access (so no name can escape the profiles directory). Must not: touch the filesystem.

/// Why a name was refused; `Display` gives the reason that follows `invalid … name "x": `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn common(name: &str) -> Result<(), NameError> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(NameError("it is empty".into()));
    }
    if chars > 128 {
        return Err(NameError(format!(
            "it has {chars} characters (at most 128)"
        )));
    }
    if name.len() > 200 {
        return Err(NameError(format!(
            "it has {} bytes (at most 200)",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError(format!(
            "it contains the control character U+{:04X}",
            u32::from(c)
        )));
    }
    Ok(())
}

/// Checks a profile name (SPEC §1): 1–128 characters, at most 200 bytes, not `.`, `..` or
/// `none`, no `/`, `\`, NUL or control characters, no leading or trailing whitespace.
/// (The case-insensitive clash with an existing profile is the store's check.)
pub fn check_profile_name(name: &str) -> Result<(), NameError> {
    common(name)?;
    if name == "." || name == ".." {
        return Err(NameError("it is a directory name".into()));
    }
    if name.eq_ignore_ascii_case("none") {
        return Err(NameError("\"none\" means \"no default profile\"".into()));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(NameError(format!("it contains {c:?}")));
    }
    if name.trim() != name {
        return Err(NameError("it starts or ends with whitespace".into()));
    }
    Ok(())
}

/// Whether two profile names are the same name ignoring case (SPEC §1: a profile name may not
/// equal an existing one ignoring case, for case-insensitive filesystems), in full Unicode:
/// `É` and `é`, `Σ`, `σ` and `ς`, `ß` and `SS` are each one name.
///
/// Why not `eq_ignore_ascii_case` (ASCII only: `É` and `é` would be two profiles, one file on
/// a case-insensitive filesystem) nor plain `to_lowercase` (it keeps `ß`/`ss` and `σ`/`ς`
/// apart, which share an uppercase form): comparing the lowercase of the uppercase is the
/// simple form of Unicode caseless matching (full case folding) that std provides. Unicode
/// normalisation (NFC/NFD) is not applied: names are compared as the code points given.
pub fn same_profile_name(a: &str, b: &str) -> bool {
    a == b || fold(a) == fold(b)
}

/// The caseless form of a profile name (see [`same_profile_name`]).
pub fn fold(name: &str) -> String {
    name.to_uppercase().to_lowercase()
}

/// Words that bucket names may not be, in any case: they are verbs of `/auth` (SPEC §1).
pub const RESERVED_BUCKET_NAMES: [&str; 5] = ["login", "logout", "status", "enable", "disable"];

/// Checks a bucket name (SPEC §1): 1–128 characters, at most 200 bytes, none of
/// `: / \ < > " | ? *` or control characters, not a reserved word.
pub fn check_bucket_name(name: &str) -> Result<(), NameError> {
    common(name)?;
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, ':' | '/' | '\\' | '<' | '>' | '"' | '|' | '?' | '*'))
    {
        return Err(NameError(format!("it contains {c:?}")));
    }
    if RESERVED_BUCKET_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(NameError(format!("{name:?} is a reserved word of /auth")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_follow_spec_1() {
        for ok in ["claude-ha", "a", "Team 1", "ü", &"x".repeat(128)] {
            assert!(check_profile_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "none",
            "NONE",
            "a/b",
            "a\\b",
            " a",
            "a ",
            "a\0b",
            "a\nb",
            &"x".repeat(129),
        ] {
            assert!(check_profile_name(bad).is_err(), "{bad:?}");
        }
        // 100 two-byte characters = 200 bytes: fine; 101 = 202 bytes: too long.
        assert!(check_profile_name(&"é".repeat(100)).is_ok());
        assert!(check_profile_name(&"é".repeat(101)).is_err());
    }

    #[test]
    fn bucket_names_follow_spec_1() {
        assert!(check_bucket_name("team1@company.com").is_ok());
        for bad in [
            "", "a:b", "a*", "a?", "a|b", "a\"", "<a>", "Login", "STATUS", "x\ty",
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn profile_names_clash_ignoring_case_in_full_unicode() {
        for (a, b) in [
            ("claude-ha", "Claude-HA"),
            ("é", "É"),
            ("Straße", "STRASSE"),
            ("ΟΔΟΣ", "οδοσ"),
            ("οδος", "οδοσ"),
            ("\u{212A}elvin", "kelvin"),
        ] {
            assert!(same_profile_name(a, b), "{a} {b}");
        }
        for (a, b) in [("a", "b"), ("é", "e"), ("claude-ha", "claude_ha")] {
            assert!(!same_profile_name(a, b), "{a} {b}");
        }
    }
}
