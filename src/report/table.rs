//! Aligned text tables fitted to a width (SPEC §8.1: `stats`, `/stats`, `profile list`,
//! `/profile list`, `auth status`, `/auth`), shared by the command line and the session.
//!
//! Columns take their widest cell; when the row is wider than the width, the widest columns
//! give up room (never below their header's longest word, their cells' longest word up to
//! [`WORD_FLOOR`], nor [`MIN_COLUMN`]; the first column, which
//! names the row, not below [`KEY_COLUMN`]) and their cells wrap
//! inside the column at spaces — a word longer than its column is broken. A row with fewer
//! cells than columns lets its last cell run over the rest of the row (an invalid profile's
//! reason, say), wrapped to what is left. Empty cells are blank; callers put `—` where a value
//! is unknown.
//!
//! Owns: the layout. Must not: know what the tables hold.

/// Columns never shrink below this many characters (nor below their header).
pub const MIN_COLUMN: usize = 8;

/// A column keeps room for its longest word up to this many characters.
pub const WORD_FLOOR: usize = 12;

/// The first column (what the row is about) shrinks no further than this.
pub const KEY_COLUMN: usize = 24;

/// A non-breaking space: cell text joined with it is never wrapped there (it prints as a
/// space), e.g. `(in 42 s)`.
pub const NBSP: char = '\u{a0}';

/// The text with its spaces made non-breaking.
pub fn keep(text: &str) -> String {
    text.replace(' ', "\u{a0}")
}

/// How a column's cells sit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table: an optional header and rows of cells.
#[derive(Debug, Clone)]
pub struct Table {
    header: Option<Vec<String>>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

fn width_of(s: &str) -> usize {
    s.chars().count()
}

impl Table {
    /// A table whose columns align as `align` says.
    pub fn new(align: &[Align]) -> Table {
        Table {
            header: None,
            align: align.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a header row.
    #[must_use]
    pub fn header(mut self, cells: &[&str]) -> Table {
        self.header = Some(cells.iter().map(ToString::to_string).collect());
        self
    }

    /// Adds a row (fewer cells than columns: its last cell spans the rest).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines of at most `width` characters (unless even the narrowest layout is
    /// wider), each ending with a line end.
    pub fn render(&self, width: usize) -> String {
        let n = self.align.len();
        let full = |r: &&Vec<String>| r.len() >= n;
        let mut widths = vec![0usize; n];
        let mut floor = vec![0usize; n];
        for r in self.header.iter().chain(self.rows.iter()) {
            // A short row's last cell spans the rest: it sizes no column.
            let sized = if full(&r) {
                n
            } else {
                r.len().saturating_sub(1)
            };
            for (i, c) in r.iter().take(sized).enumerate() {
                widths[i] = widths[i].max(width_of(c));
            }
        }
        if let Some(h) = &self.header {
            // A header wraps at its spaces like any cell: its longest word is the floor.
            for (i, c) in h.iter().take(n).enumerate() {
                floor[i] = c.split(' ').map(width_of).max().unwrap_or(0);
            }
        }
        // Cells wrap at spaces: a column keeps room for its longest word up to [`WORD_FLOOR`]
        // characters, so a word such as `loadbalancer` is not cut when a column shrinks.
        for r in &self.rows {
            let sized = if full(&r) {
                n
            } else {
                r.len().saturating_sub(1)
            };
            for (i, c) in r.iter().take(sized).enumerate() {
                let longest = c.split(' ').map(width_of).max().unwrap_or(0);
                floor[i] = floor[i].max(longest.min(WORD_FLOOR));
            }
        }
        for (f, w) in floor.iter_mut().zip(&widths) {
            *f = (*f).max(MIN_COLUMN).min(*w);
        }
        // The first column names the row: it keeps up to [`KEY_COLUMN`] characters.
        if let Some(f) = floor.first_mut() {
            *f = (*f).max(widths[0].min(KEY_COLUMN));
        }
        let total = |ws: &[usize]| ws.iter().sum::<usize>() + 2 * n.saturating_sub(1);
        while total(&widths) > width {
            // The widest column that can still give room gives one character.
            let Some(i) = (0..n)
                .filter(|&i| widths[i] > floor[i])
                .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)))
            else {
                break;
            };
            widths[i] -= 1;
        }
        let mut out = String::new();
        for r in self.header.iter().chain(self.rows.iter()) {
            self.render_row(r, &widths, width, &mut out);
        }
        out
    }

    fn render_row(&self, cells: &[String], widths: &[usize], width: usize, out: &mut String) {
        let n = widths.len();
        let used = cells.len().clamp(1, n);
        // Column widths of this row: a short row's last cell takes the rest of the width.
        let mut ws: Vec<usize> = widths[..used].to_vec();
        if cells.len() < n {
            let before: usize = ws[..used - 1].iter().map(|w| w + 2).sum();
            ws[used - 1] = width.saturating_sub(before).max(MIN_COLUMN);
        }
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .take(used)
            .zip(&ws)
            .map(|(c, &w)| wrap_cell(c, w))
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        for line in 0..height {
            let mut text = String::new();
            for (i, piece) in wrapped.iter().enumerate() {
                let cell = piece.get(line).map_or("", String::as_str);
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = ws[i].saturating_sub(width_of(cell));
                let last = i + 1 == wrapped.len();
                // A cell spanning the rest of a short row is text.
                let align = if last && cells.len() < n {
                    Align::Left
                } else {
                    self.align[i]
                };
                match align {
                    Align::Right => {
                        text.push_str(&" ".repeat(pad));
                        text.push_str(cell);
                    }
                    Align::Left => {
                        text.push_str(cell);
                        if !last {
                            text.push_str(&" ".repeat(pad));
                        }
                    }
                }
            }
            out.push_str(text.trim_end().replace(NBSP, " ").as_str());
            out.push('\n');
        }
    }
}

/// A cell's text in lines of at most `w` characters, broken at spaces (a longer word is cut).
fn wrap_cell(text: &str, w: usize) -> Vec<String> {
    let w = w.max(1);
    if width_of(text) <= w {
        return vec![text.to_string()];
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|s| !s.is_empty()) {
        let (lw, ww) = (width_of(&line), width_of(word));
        if !line.is_empty() && lw + 1 + ww <= w {
            line.push(' ');
            line.push_str(word);
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        let mut rest: Vec<char> = word.chars().collect();
        while rest.len() > w {
            lines.push(rest.drain(..w).collect());
        }
        line = rest.into_iter().collect();
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&[Align::Left, Align::Right, Align::Left])
            .header(&["name", "count", "note"]);
        t.row(vec!["a".into(), "1".into(), "short".into()]);
        t.row(vec![
            "longer-name".into(),
            "12345".into(),
            format!("a note of several words {}", keep("(in 42 s)")),
        ]);
        t.row(vec![
            "x".into(),
            "a row whose last cell spans the rest".into(),
        ]);
        t
    }

    #[test]
    fn columns_align_and_fit_the_width() {
        let wide = sample().render(120);
        assert_eq!(
            wide,
            "name         count  note\n\
             a                1  short\n\
             longer-name  12345  a note of several words (in 42 s)\n\
             x            a row whose last cell spans the rest\n"
        );
        let narrow = sample().render(34);
        assert!(narrow.lines().all(|l| l.chars().count() <= 34), "{narrow}");
        assert_eq!(
            narrow,
            "name         count  note\n\
             a                1  short\n\
             longer-name  12345  a note of\n\
             \x20                   several words\n\
             \x20                   (in 42 s)\n\
             x            a row whose last cell\n\
             \x20            spans the rest\n"
        );
    }

    #[test]
    fn a_long_word_is_cut_only_when_it_cannot_fit() {
        assert_eq!(wrap_cell("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap_cell("ab cd", 5), ["ab cd"]);
        assert_eq!(wrap_cell("ab cd", 4), ["ab", "cd"]);
    }
}
