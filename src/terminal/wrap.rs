//! Word-wrapping an answer as it streams to a terminal (SPEC §8.1: never cut mid-word).
//!
//! The answer arrives in pieces that may split a word anywhere, so the word being received is
//! held back until the whitespace (or line end, or end of the answer) that closes it, and only
//! then placed: on the current line if it fits, else on a new one. A word longer than the width
//! is broken, and only such a word. Line ends of the answer are kept; whitespace at the point
//! where a line is wrapped is dropped, as is whitespace at the end of a line; indentation at
//! the start of a line is kept. Widths are counted in characters (a tab reaches the next
//! multiple of 8): the crate carries no table of East Asian widths.
//!
//! Owns: where line ends go. Must not: be used when standard output is not a terminal (the
//! bytes of a piped answer are never changed) — the caller decides.

/// A streaming word-wrapper to a fixed width.
#[derive(Debug)]
pub struct Wrap {
    width: usize,
    /// Columns already written on the current line.
    col: usize,
    /// The word being received, not yet written.
    word: String,
    word_w: usize,
    /// The whitespace before `word`, not yet written.
    spaces: String,
    spaces_w: usize,
}

impl Wrap {
    /// A wrapper to `width` columns (at least 1).
    pub fn new(width: usize) -> Wrap {
        Wrap {
            width: width.max(1),
            col: 0,
            word: String::new(),
            word_w: 0,
            spaces: String::new(),
            spaces_w: 0,
        }
    }

    /// Takes the next piece of the answer and returns what can be written now.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            match c {
                '\n' => {
                    self.place_word(&mut out);
                    self.spaces.clear();
                    self.spaces_w = 0;
                    out.push('\n');
                    self.col = 0;
                }
                ' ' | '\t' => {
                    self.place_word(&mut out);
                    self.spaces_w += if c == '\t' {
                        8 - (self.col + self.spaces_w) % 8
                    } else {
                        1
                    };
                    self.spaces.push(c);
                }
                _ => {
                    self.word.push(c);
                    self.word_w += 1;
                }
            }
        }
        out
    }

    /// Writes out the word held back (the answer ended, or a notice interrupts it).
    pub fn flush(&mut self) -> String {
        let mut out = String::new();
        self.place_word(&mut out);
        out
    }

    /// The caller ended the line itself (after [`Wrap::flush`]): the next text starts at
    /// column 0.
    pub fn line_ended(&mut self) {
        self.col = 0;
        self.spaces.clear();
        self.spaces_w = 0;
    }

    fn place_word(&mut self, out: &mut String) {
        if self.word.is_empty() {
            return;
        }
        if self.col + self.spaces_w + self.word_w <= self.width {
            out.push_str(&self.spaces);
            out.push_str(&self.word);
            self.col += self.spaces_w + self.word_w;
        } else {
            if self.col > 0 {
                out.push('\n');
                self.col = 0;
            } else if self.spaces_w < self.width {
                // Indentation at the start of a line of the answer is kept.
                out.push_str(&self.spaces);
                self.col = self.spaces_w;
            }
            if self.col + self.word_w > self.width && self.col > 0 {
                // Not even the indentation leaves room: the word starts on a line of its own.
                out.push('\n');
                self.col = 0;
            }
            // Only a word longer than the whole width is broken.
            for c in self.word.chars() {
                if self.col == self.width {
                    out.push('\n');
                    self.col = 0;
                }
                out.push(c);
                self.col += 1;
            }
        }
        self.word.clear();
        self.word_w = 0;
        self.spaces.clear();
        self.spaces_w = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Wrap;

    /// Feeds `pieces` to a wrapper of `width` and returns everything written.
    fn wrap(width: usize, pieces: &[&str]) -> String {
        let mut w = Wrap::new(width);
        let mut out: String = pieces.iter().map(|p| w.push(p)).collect();
        out.push_str(&w.flush());
        out
    }

    #[test]
    fn wraps_at_60_columns_never_mid_word_and_keeps_line_ends() {
        let text = "The quick brown fox jumps over the lazy dog and keeps running across the \
                    field until the sun goes down.\n\nA second paragraph stays apart.\n  - an \
                    indented item\n";
        let out = wrap(60, &[text]);
        assert_eq!(
            out,
            "The quick brown fox jumps over the lazy dog and keeps\n\
             running across the field until the sun goes down.\n\
             \n\
             A second paragraph stays apart.\n  - an indented item\n"
        );
        assert!(out.lines().all(|l| l.chars().count() <= 60), "{out}");
        // Every word of the input is whole in the output.
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(words(&out), words(text));
    }

    #[test]
    fn pieces_that_split_words_wrap_as_the_whole_text_does() {
        let text = "Streaming answers arrive in chunks that cut words like internationalisation \
                    anywhere at all, even between the two halves of a single syllable.";
        let whole = wrap(60, &[text]);
        // Every split into two pieces, and one piece per character, give the same bytes.
        for i in 1..text.len() {
            if text.is_char_boundary(i) {
                assert_eq!(wrap(60, &[&text[..i], &text[i..]]), whole, "split at {i}");
            }
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(wrap(60, &pieces), whole);
        assert!(whole.lines().all(|l| l.chars().count() <= 60), "{whole}");
        assert!(whole.contains('\n'), "{whole}");
    }

    #[test]
    fn only_a_word_longer_than_the_width_is_broken() {
        let url = format!("https://example.com/{}", "a".repeat(100));
        let out = wrap(60, &["see ", &url, " for more"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "see");
        assert_eq!(lines[1].chars().count(), 60);
        // 120 characters: two full lines, then the words after it.
        assert_eq!(lines[1..3].concat(), url);
        assert_eq!(lines[3..], ["for more"], "{out}");
        // A word exactly the width fits its own line unbroken.
        let exact = "x".repeat(60);
        assert_eq!(wrap(60, &["ab ", &exact]), format!("ab\n{exact}"));
    }

    #[test]
    fn short_text_and_trailing_text_are_unchanged() {
        assert_eq!(wrap(60, &["Hello, ", "world."]), "Hello, world.");
        assert_eq!(wrap(60, &["two\n", "lines\n"]), "two\nlines\n");
        assert_eq!(wrap(60, &[""]), "");
    }
}
