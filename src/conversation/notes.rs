//! What the shared state file said, as the lines every face shows (SPEC §7.1: a state file that
//! cannot be read is moved aside and the command says so).
//!
//! Owns: the wording. Must not: print (the caller writes the line where its face writes
//! warnings: stderr, the serve log).

/// One of the state store's warnings as a line to show: a warning about the whole file (not JSON,
/// over its limit and moved aside) is a sentence naming it; anything else is the key of an
/// entry that did not parse.
pub fn state_warning(w: &str) -> String {
    if w.starts_with("the state file ") || w.starts_with("the state server") {
        format!("warning: {w}")
    } else {
        format!("warning: the state file's entry {w} did not parse and was dropped")
    }
}

#[cfg(test)]
mod tests {
    use super::state_warning;

    #[test]
    fn a_file_warning_is_a_sentence_and_an_entry_is_named() {
        assert_eq!(
            state_warning("the state file is not JSON"),
            "warning: the state file is not JSON"
        );
        assert_eq!(
            state_warning("lb/x"),
            "warning: the state file's entry lb/x did not parse and was dropped"
        );
    }
}
