//! Hiding the secrets a request carried in what a server said back (SPEC §7, §7.1 "Secrets,
//! harder cases"): a provider may echo a key uppercased, percent-encoded, or only a piece of it.
//!
//! Owns: the matcher behind [`super::hide_known`]. Must not: alter text that holds none of the
//! secrets' pieces (it only replaces what matched), or take more than linear time in the text.
//!
//! The rules, for each secret:
//! - its whole value, ignoring ASCII case, raw or with any bytes `%XX`-encoded, becomes the
//!   secret's redacted form (`sk-…abcd`, or `…` for a short secret);
//! - for a secret of [`LONG`] characters or more, any run of [`RUN`] or more of its consecutive
//!   characters (same matching) becomes `…`; so does a shorter run that, joined to the
//!   characters the redacted form shows (its first 3 and last 4), would make a run of
//!   [`RUN`]: the text and the hint together never give away more than 7 consecutive
//!   characters of the secret.
//!
//! How: the text is read twice, as it is and with `%XX` escapes decoded, both ASCII-lowercased;
//! each secret's 8-grams (and the two hint-adjacent pieces) are indexed in one hash set, and
//! every window of the text is looked up once. Matches become byte ranges of the original text,
//! merged, then replaced.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use memchr::memmem;

/// A secret this long (in characters) or longer is also hidden by its pieces; a shorter one
/// only whole (it has no hint, and its pieces would be too common to hide).
pub const LONG: usize = 16;
/// The length of a piece of a long secret that is hidden on its own.
pub const RUN: usize = 8;
/// The characters of a secret its redacted form shows at the start and the end.
const HINT_HEAD: usize = 3;
const HINT_TAIL: usize = 4;

/// The pieces to look for, each keyed by its length and its bytes packed in a `u64`.
struct Matcher<'s> {
    /// The secrets, ASCII-lowercased, with their original text.
    whole: Vec<(Vec<u8>, &'s str)>,
    /// Pieces of long secrets: `(length, packed bytes)`.
    pieces: HashSet<(usize, u64)>,
    /// The lengths present in `pieces`.
    lengths: Vec<usize>,
}

fn pack(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |k, &b| (k << 8) | u64::from(b))
}

impl<'s> Matcher<'s> {
    fn new(secrets: &[&'s str]) -> Self {
        let mut pieces = HashSet::new();
        let mut whole = Vec::new();
        for &s in secrets {
            let low = s.to_ascii_lowercase().into_bytes();
            if s.chars().count() >= LONG {
                for w in low.windows(RUN) {
                    pieces.insert((RUN, pack(w)));
                }
                // SPEC §7.1: the hint shows the first 3 and last 4 characters, so a piece that
                // meets them is counted with them: `low[3..8]` next to the head makes 8 known
                // characters, `low[n-8..n-4]` next to the tail too. Only for ASCII secrets,
                // where characters are bytes.
                if s.is_ascii() {
                    let n = low.len();
                    pieces.insert((RUN - HINT_HEAD, pack(&low[HINT_HEAD..RUN])));
                    pieces.insert((RUN - HINT_TAIL, pack(&low[n - RUN..n - HINT_TAIL])));
                }
            }
            whole.push((low, s));
        }
        let mut lengths: Vec<usize> = pieces.iter().map(|&(l, _)| l).collect();
        lengths.sort_unstable();
        lengths.dedup();
        Matcher {
            whole,
            pieces,
            lengths,
        }
    }

    /// The matches in one reading of the text: `units` are its bytes as read, `starts[i]` the
    /// offset in the text where unit `i` begins (`starts[units.len()]` is the text's length).
    /// Whole matches come with the index of their secret.
    fn find(&self, units: &[u8], starts: &[usize], out: &mut Vec<(Range<usize>, Option<usize>)>) {
        let span = |r: Range<usize>| starts[r.start]..starts[r.end];
        for (i, (low, _)) in self.whole.iter().enumerate() {
            for at in memmem::find_iter(units, low) {
                out.push((span(at..at + low.len()), Some(i)));
            }
        }
        for &len in &self.lengths {
            let mask = if len == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * len)) - 1
            };
            let mut key = 0u64;
            // A run of consecutive matching windows is one piece.
            let mut run: Option<Range<usize>> = None;
            for (i, &b) in units.iter().enumerate() {
                key = ((key << 8) | u64::from(b)) & mask;
                if i + 1 < len {
                    continue;
                }
                let start = i + 1 - len;
                if self.pieces.contains(&(len, key)) {
                    match &mut run {
                        Some(r) if r.end >= start => r.end = i + 1,
                        _ => {
                            if let Some(r) = run.replace(start..i + 1) {
                                out.push((span(r), None));
                            }
                        }
                    }
                }
            }
            if let Some(r) = run {
                out.push((span(r), None));
            }
        }
    }
}

/// See [`super::hide_known`].
pub fn hide(text: &str, secrets: &[&str]) -> String {
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() || text.is_empty() {
        return text.to_string();
    }
    let m = Matcher::new(&secrets);
    let mut found = Vec::new();
    {
        // As it is.
        let raw: Vec<u8> = text.bytes().map(|b| b.to_ascii_lowercase()).collect();
        let starts: Vec<usize> = (0..=raw.len()).collect();
        m.find(&raw, &starts, &mut found);
    }
    // With `%XX` escapes decoded.
    if text.contains('%') {
        let (units, starts) = percent_decoded(text);
        m.find(&units, &starts, &mut found);
    }
    if found.is_empty() {
        return text.to_string();
    }
    // Whole ranges on character boundaries, merged where they overlap; a merged range that is
    // exactly one whole match shows that secret's hint.
    let mut whole_at: HashMap<(usize, usize), usize> = HashMap::new();
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(found.len());
    for (mut r, which) in found {
        while !text.is_char_boundary(r.start) {
            r.start -= 1;
        }
        while !text.is_char_boundary(r.end) {
            r.end += 1;
        }
        if let Some(i) = which {
            // The longest secret matching here wins (a secret that contains another).
            let e = whole_at.entry((r.start, r.end)).or_insert(i);
            if m.whole[i].0.len() > m.whole[*e].0.len() {
                *e = i;
            }
        }
        ranges.push(r);
    }
    ranges.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for r in merged {
        out.push_str(&text[done..r.start]);
        match whole_at.get(&(r.start, r.end)) {
            Some(&i) => out.push_str(&super::redact(m.whole[i].1)),
            None => out.push('…'),
        }
        done = r.end;
    }
    out.push_str(&text[done..]);
    out
}

/// `text` read with `%XX` escapes decoded: one unit per escape or other byte, lowercased, and
/// where each unit starts in `text` (with the text's length last).
fn percent_decoded(text: &str) -> (Vec<u8>, Vec<usize>) {
    let b = text.as_bytes();
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut units = Vec::with_capacity(b.len());
    let mut starts = Vec::with_capacity(b.len() + 1);
    let mut i = 0;
    while i < b.len() {
        starts.push(i);
        let escape = (b[i] == b'%')
            .then(|| Some((hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?)))
            .flatten();
        if let Some((hi, lo)) = escape {
            // Two hex digits: at most 255.
            units.push(
                u8::try_from(hi * 16 + lo)
                    .unwrap_or(b'%')
                    .to_ascii_lowercase(),
            );
            i += 3;
        } else {
            units.push(b[i].to_ascii_lowercase());
            i += 1;
        }
    }
    starts.push(b.len());
    (units, starts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    const KEY: &str = "sk-live-Q7wErTy0123456789abcdef";

    fn leaks(shown: &str) -> bool {
        let low = shown.to_ascii_lowercase();
        let k = KEY.to_ascii_lowercase();
        (0..=k.len() - RUN).any(|i| low.contains(&k[i..i + RUN]))
    }

    #[test]
    fn whole_keys_show_their_hint_whatever_their_case_or_encoding() {
        let upper = KEY.to_ascii_uppercase();
        let encoded = KEY.bytes().fold(String::new(), |mut o, b| {
            let _ = write!(o, "%{b:02X}");
            o
        });
        for echo in [KEY.to_string(), upper, encoded, KEY.replace('-', "%2d")] {
            let shown = hide(&format!("bad key \"{echo}\" given"), &[KEY]);
            assert_eq!(shown, "bad key \"sk-…cdef\" given", "{echo}");
        }
    }

    #[test]
    fn any_run_of_eight_of_a_long_key_is_hidden() {
        for piece in [&KEY[10..20], &KEY[12..20], &KEY[5..25]] {
            let upper = piece.to_ascii_uppercase();
            for echo in [piece.to_string(), upper] {
                let shown = hide(&format!("key ****{echo}**** refused"), &[KEY]);
                assert_eq!(shown, "key ****…**** refused", "{echo}");
            }
        }
        // Seven in the middle stay (too short to be worth anything, too common to hide).
        let seven = &KEY[12..19];
        assert_eq!(hide(seven, &[KEY]), seven);
    }

    #[test]
    fn the_hint_and_the_text_never_give_eight_consecutive_characters() {
        // The hint shows `sk-` and `cdef`: `live-` after the head, or `89ab` before the tail,
        // would complete a run of 8 with it.
        for (echo, shown) in [
            ("live-Q7", "…Q7"),
            ("X89ab", "X…"),
            ("sk-live-Q7wEr", "…"),
            ("3456789abcd", "…"),
        ] {
            assert_eq!(hide(echo, &[KEY]), shown, "{echo}");
        }
        for i in 0..KEY.len() {
            for j in i + 1..=KEY.len() {
                let piece = &KEY[i..j];
                let mut known = vec![false; KEY.len()];
                known[..HINT_HEAD].iter_mut().for_each(|k| *k = true);
                known[KEY.len() - HINT_TAIL..]
                    .iter_mut()
                    .for_each(|k| *k = true);
                let shown = hide(&format!("<{piece}>"), &[KEY]);
                if shown.contains(piece) {
                    known[i..j].iter_mut().for_each(|k| *k = true);
                }
                let longest = known.split(|k| !k).map(<[bool]>::len).max().unwrap_or(0);
                assert!(longest < RUN, "{piece:?} shown as {shown:?}");
            }
        }
    }

    #[test]
    fn short_secrets_are_hidden_only_whole() {
        let short = "pw-0123456789"; // 13 characters
        assert_eq!(
            hide("login PW-0123456789 failed", &[short]),
            "login … failed"
        );
        assert_eq!(hide("id 0123456789 ok", &[short]), "id 0123456789 ok");
    }

    #[test]
    fn unrelated_text_is_left_alone() {
        let text =
            "The model `gpt-4o` is overloaded (50%% of capacity, %zz, 100%). Retry in 20 s. é ü ✓";
        assert_eq!(hide(text, &[KEY, "another-secret-value-0000"]), text);
        assert_eq!(hide("", &[KEY]), "");
        assert_eq!(hide("anything", &[""]), "anything");
        // Multi-byte characters next to a match stay whole.
        assert_eq!(hide(&format!("é{KEY}é"), &[KEY]), "ésk-…cdefé");
    }

    #[test]
    fn a_megabyte_message_is_scanned_in_linear_time() {
        let mut text = "a".repeat(1 << 20);
        text.push_str(&KEY[4..20]);
        let secrets = ["a".repeat(40), KEY.to_string()];
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let start = std::time::Instant::now();
        let shown = hide(&text, &secrets);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(!leaks(&shown));
    }
}
