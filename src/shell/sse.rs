//! An incremental server-sent events decoder (SPEC §6.2; the rules are the WHATWG HTML
//! "event stream" interpretation, as summarised in CRATES.md §1.4).
//!
//! Owns: turning the bytes of a `text/event-stream` body, fed in pieces split anywhere, into
//! [`SseEvent`]s, within fixed memory bounds (SPEC §7). Must not: interpret an event's data (the
//! protocol decoders in [`crate::shell::protocol`] do), do I/O, or enforce deadlines (the
//! transport does).
//!
//! The rules:
//! - a line ends in `\n`, `\r\n` or a bare `\r`; a `\r` ending one feed and a `\n` starting the
//!   next are one line end, never two;
//! - one UTF-8 byte-order mark at the very start of the stream is skipped;
//! - a line starting with `:` is a comment (keep-alive) and is ignored;
//! - `name: value` sets a field; one space after the colon is stripped; a line without a colon
//!   is a field with an empty value; the fields are `event`, `data` (several lines join with
//!   `\n`), `id` (ignored when it contains NUL) and `retry` (ASCII digits only); other fields are
//!   ignored;
//! - a blank line dispatches the event; an event without any `data` line is not dispatched
//!   (but its `event` name is reset), as the WHATWG rules say;
//! - bytes that are not UTF-8 are decoded lossily (U+FFFD), line by line: never a panic.
//!
//! End of stream ([`SseDecoder::finish`]): the WHATWG rules discard an event whose blank line
//! never came. llxprt dispatches it when its lines were complete (each ended in a line end), so
//! a server that closes after `data: [DONE]\n` without the final blank line is not reported as
//! cut; a trailing *partial* line (no line end) is discarded, because it may be a truncated
//! piece of JSON. A truncated stream is still caught by the protocol's finish signal (SPEC §5.8).
//!
//! Bounds (SPEC §6.2, §7): a line longer than [`MAX_LINE_BYTES`] fails with
//! [`SseError::LineTooLong`] before it is buffered; an event whose data grows past
//! [`MAX_EVENT_BYTES`] fails with [`SseError::EventTooLarge`]; one event more than
//! [`MAX_EVENTS_PER_STREAM`] fails with [`SseError::TooManyEvents`]. After an error the decoder
//! is spent: every later `feed` returns the same error.

use std::fmt;

use crate::shell::protocol::SseEvent;

/// The longest line accepted: 4 MiB (SPEC §6.2 "a stream line up to 4 MiB").
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// The largest data one event may accumulate over several `data:` lines: 16 MiB.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The most events one stream may carry; the next one fails the stream (SPEC §7: no
/// unbounded work from outside input).
pub const MAX_EVENTS_PER_STREAM: usize = 1_000_000;

/// The UTF-8 byte-order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a stream cannot be decoded any further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line is longer than [`MAX_LINE_BYTES`].
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// One event's data grew past [`MAX_EVENT_BYTES`].
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The stream carried more than [`MAX_EVENTS_PER_STREAM`] events.
    TooManyEvents {
        /// The limit in events.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::LineTooLong { limit } => {
                write!(f, "event stream line longer than {limit} bytes")
            }
            SseError::EventTooLarge { limit } => {
                write!(f, "event stream event larger than {limit} bytes")
            }
            SseError::TooManyEvents { limit } => {
                write!(f, "event stream has more than {limit} events")
            }
        }
    }
}

impl std::error::Error for SseError {}

/// The decoder's state between feeds: the partial line, and the event being assembled.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the current line not yet ended.
    line: Vec<u8>,
    /// The last byte seen was a `\r`: a `\n` starting the next feed belongs to it.
    after_cr: bool,
    /// A first line was completed (the byte-order mark check is done).
    started: bool,
    /// The `event` field of the event being assembled.
    event: Option<String>,
    /// The `data` lines so far, each followed by `\n` (the last one is cut at dispatch).
    data: String,
    /// The last `id` field seen.
    last_event_id: String,
    /// The last valid `retry` field seen, in milliseconds.
    retry_ms: Option<u64>,
    /// Events dispatched so far.
    dispatched: usize,
    /// The error that spent this decoder.
    failed: Option<SseError>,
}

impl SseDecoder {
    /// Feeds the next bytes of the stream; returns the events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        match self.feed_inner(bytes, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                // Spent: free the buffers and remember why.
                self.line = Vec::new();
                self.data = String::new();
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Ends the stream: dispatches the event being assembled if its lines were complete (see
    /// the module docs), discards a partial line, and resets the decoder for a new stream.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        // Past the event cap the last event is not dispatched either (the stream then lacks its
        // finish signal, SPEC §5.8).
        if self.failed.is_none() && self.dispatched < MAX_EVENTS_PER_STREAM {
            self.dispatch(&mut out);
        }
        *self = SseDecoder::default();
        out
    }

    /// The last `id` field seen (empty when none).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The last valid `retry` field seen, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Events dispatched so far (at most [`MAX_EVENTS_PER_STREAM`]).
    pub fn events_dispatched(&self) -> usize {
        self.dispatched
    }

    fn feed_inner(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) {
            let head = &rest[..pos];
            let ended_by_cr = rest[pos] == b'\r';
            rest = &rest[pos + 1..];
            check_line_len(self.line.len() + head.len())?;
            if self.line.is_empty() {
                self.process_line(head, out)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.process_line(&line, out)?;
                line.clear();
                self.line = line;
            }
            if ended_by_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        check_line_len(self.line.len() + rest.len())?;
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut line = line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            // SPEC §7: a stream that never ends is not read for ever (comments and events
            // without data are not dispatched, so they do not count).
            if !self.data.is_empty() && self.dispatched >= MAX_EVENTS_PER_STREAM {
                return Err(SseError::TooManyEvents {
                    limit: MAX_EVENTS_PER_STREAM,
                });
            }
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => {
                let text = String::from_utf8_lossy(value);
                if self.data.len() + text.len() + 1 > MAX_EVENT_BYTES {
                    return Err(SseError::EventTooLarge {
                        limit: MAX_EVENT_BYTES,
                    });
                }
                self.data.push_str(&text);
                self.data.push('\n');
            }
            b"id" if !value.contains(&0) => {
                self.last_event_id = String::from_utf8_lossy(value).into_owned();
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // All digits, so only an overflow fails: ignored like any bad value.
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take().filter(|e| !e.is_empty());
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        self.dispatched += 1;
        out.push(SseEvent { event, data });
    }
}

fn check_line_len(len: usize) -> Result<(), SseError> {
    if len > MAX_LINE_BYTES {
        Err(SseError::LineTooLong {
            limit: MAX_LINE_BYTES,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn decode_whole(bytes: &[u8]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = d.feed(bytes).unwrap();
        out.extend(d.finish());
        out
    }

    fn decode_split(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts {
            out.extend(d.feed(&bytes[start..cut]).unwrap());
            start = cut;
        }
        out.extend(d.feed(&bytes[start..]).unwrap());
        out.extend(d.finish());
        out
    }

    #[test]
    fn fields_comments_and_joined_data() {
        let s = b": keep-alive\nevent: message_start\ndata: {\"a\":1}\n\ndata:x\ndata:  two spaces\ndata\nunknown: z\n\n";
        assert_eq!(
            decode_whole(s),
            vec![
                ev(Some("message_start"), "{\"a\":1}"),
                ev(None, "x\n two spaces\n")
            ]
        );
    }

    #[test]
    fn every_line_ending_is_one_line_end() {
        let s = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r";
        assert_eq!(decode_whole(s), vec![ev(None, "a\nb\nc"), ev(None, "d")]);
    }

    #[test]
    fn cr_at_the_end_of_a_feed_and_lf_at_the_start_of_the_next_are_one_line_end() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"data: a\r").unwrap().is_empty());
        assert!(d.feed(b"").unwrap().is_empty());
        assert!(d.feed(b"\ndata: b\r").unwrap().is_empty());
        assert_eq!(d.feed(b"\n\r\n").unwrap(), vec![ev(None, "a\nb")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_resets_its_name() {
        let s = b"event: ping\n\ndata: x\n\nevent: e\ndata:\n\n";
        assert_eq!(decode_whole(s), vec![ev(None, "x"), ev(Some("e"), "")]);
    }

    #[test]
    fn id_and_retry_are_kept() {
        let mut d = SseDecoder::default();
        d.feed(b"id: 7\nretry: 1500\nretry: 12x\nid: a\0b\ndata: x\n\n")
            .unwrap();
        assert_eq!(d.last_event_id(), "7");
        assert_eq!(d.retry_ms(), Some(1500));
        assert_eq!(d.events_dispatched(), 1);
        d.feed(b"retry: 99999999999999999999999\n").unwrap();
        assert_eq!(d.retry_ms(), Some(1500));
    }

    #[test]
    fn a_leading_bom_is_skipped_even_when_split() {
        let s = b"\xEF\xBB\xBFdata: x\n\n";
        for cut in 0..=s.len() {
            assert_eq!(decode_split(s, &[cut]), vec![ev(None, "x")], "cut {cut}");
        }
        // Only at the very start.
        assert_eq!(
            decode_whole(b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"),
            vec![ev(None, "x")]
        );
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let s = b"event: a\xFFb\ndata: caf\xC3\n\n";
        assert_eq!(decode_whole(s), vec![ev(Some("a\u{FFFD}b"), "caf\u{FFFD}")]);
    }

    #[test]
    fn finish_dispatches_complete_lines_and_drops_a_partial_line() {
        assert_eq!(decode_whole(b"data: [DONE]\n"), vec![ev(None, "[DONE]")]);
        assert_eq!(decode_whole(b"data: [DONE]\r"), vec![ev(None, "[DONE]")]);
        assert_eq!(decode_whole(b"data: {\"a\":"), vec![]);
        assert_eq!(decode_whole(b"data: a\ndata: {\"b"), vec![ev(None, "a")]);
        let mut d = SseDecoder::default();
        d.feed(b"event: x\ndata: 1\n").unwrap();
        assert_eq!(d.finish(), vec![ev(Some("x"), "1")]);
        // Reset: a new stream starts clean.
        assert_eq!(d.feed(b"data: 2\n\n").unwrap(), vec![ev(None, "2")]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let mut d = SseDecoder::default();
        let mut line = b"data:".to_vec();
        line.resize(MAX_LINE_BYTES, b'a');
        d.feed(&line[..1000]).unwrap();
        d.feed(&line[1000..]).unwrap();
        let out = d.feed(b"\n\n").unwrap();
        assert_eq!(out[0].data.len(), MAX_LINE_BYTES - 5);
    }

    #[test]
    fn a_line_over_the_limit_fails_without_buffering_it_and_spends_the_decoder() {
        let mut d = SseDecoder::default();
        let chunk = vec![b'a'; 1024 * 1024];
        for _ in 0..4 {
            d.feed(&chunk).unwrap();
        }
        let err = d.feed(b"b").unwrap_err();
        assert_eq!(
            err,
            SseError::LineTooLong {
                limit: MAX_LINE_BYTES
            }
        );
        assert!(d.line.capacity() == 0);
        assert_eq!(d.feed(b"\n\ndata: x\n\n").unwrap_err(), err);
        assert!(d.finish().is_empty());
        // One feed holding the whole long line fails too.
        let mut d = SseDecoder::default();
        let mut big = vec![b'a'; MAX_LINE_BYTES + 1];
        big.push(b'\n');
        assert!(matches!(d.feed(&big), Err(SseError::LineTooLong { .. })));
    }

    #[test]
    fn an_event_over_the_limit_fails() {
        let mut d = SseDecoder::default();
        let mut line = b"data: ".to_vec();
        line.resize(MAX_LINE_BYTES - 1, b'a');
        line.push(b'\n');
        for _ in 0..4 {
            d.feed(&line).unwrap();
        }
        assert_eq!(
            d.feed(&line).unwrap_err(),
            SseError::EventTooLarge {
                limit: MAX_EVENT_BYTES
            }
        );
        assert!(d.data.capacity() == 0);
    }

    const RICH: &[u8] = b"\xEF\xBB\xBF: hi\r\nevent: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\nevent:ping\rdata: {}\r\rdata: a\ndata:b\n\n:x\r\nid: 3\nretry: 10\ndata: caf\xC3\xA9 \xFF\r\n\r\ndata: tail\r";

    #[test]
    fn every_split_of_a_stream_yields_the_same_events() {
        let whole = decode_whole(RICH);
        assert_eq!(
            whole,
            vec![
                ev(Some("message_start"), "{\"type\":\"message_start\"}"),
                ev(Some("ping"), "{}"),
                ev(None, "a\nb"),
                ev(None, "caf\u{e9} \u{FFFD}"),
                ev(None, "tail"),
            ]
        );
        for i in 0..=RICH.len() {
            assert_eq!(decode_split(RICH, &[i]), whole, "split at {i}");
            for j in i..=RICH.len() {
                assert_eq!(decode_split(RICH, &[i, j]), whole, "split at {i}, {j}");
            }
        }
        let cuts: Vec<usize> = (1..RICH.len()).collect();
        assert_eq!(decode_split(RICH, &cuts), whole, "byte by byte");
    }

    /// One generated event: its name, data lines, and whether a comment precedes it.
    type GenEvent = (Option<String>, Vec<String>, bool);

    fn stream_strategy() -> impl Strategy<Value = (Vec<GenEvent>, Vec<usize>, Vec<u8>)> {
        let event = (
            proptest::option::of("[^\r\n:]{0,8}"),
            prop::collection::vec("[^\r\n]{0,12}", 0..4),
            any::<bool>(),
        );
        (
            prop::collection::vec(event, 0..6),
            prop::collection::vec(0usize..3, 0..40),
            prop::collection::vec(any::<u8>(), 0..8),
        )
    }

    fn serialise(events: &[GenEvent], endings: &[usize]) -> Vec<u8> {
        let mut n = 0;
        let mut eol = |out: &mut Vec<u8>| {
            let mut e = endings.get(n).copied().unwrap_or(0);
            n += 1;
            // A blank line ended by `\n` right after a bare `\r` would be that `\r`'s `\r\n`.
            if e == 0 && out.last() == Some(&b'\r') {
                e = 1;
            }
            out.extend_from_slice([&b"\n"[..], b"\r\n", b"\r"][e]);
        };
        let mut out = Vec::new();
        for (name, lines, comment) in events {
            if *comment {
                out.extend_from_slice(b": keep-alive");
                eol(&mut out);
            }
            if let Some(name) = name {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(name.as_bytes());
                eol(&mut out);
            }
            for line in lines {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(line.as_bytes());
                eol(&mut out);
            }
            eol(&mut out);
        }
        out
    }

    proptest! {
        #[test]
        fn any_split_of_a_valid_stream_yields_the_same_events(
            (events, endings, raw_cuts) in stream_strategy()
        ) {
            let bytes = serialise(&events, &endings);
            let expected: Vec<SseEvent> = events
                .iter()
                .filter(|(_, lines, _)| !lines.is_empty())
                .map(|(name, lines, _)| SseEvent {
                    event: name.clone().filter(|n| !n.is_empty()),
                    data: lines.join("\n"),
                })
                .collect();
            prop_assert_eq!(&decode_whole(&bytes), &expected);
            let mut cuts: Vec<usize> = raw_cuts
                .iter()
                .map(|&c| if bytes.is_empty() { 0 } else { usize::from(c) % (bytes.len() + 1) })
                .collect();
            cuts.sort_unstable();
            prop_assert_eq!(&decode_split(&bytes, &cuts), &expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            let cut = cut.min(bytes.len());
            let mut d = SseDecoder::default();
            let _ = d.feed(&bytes[..cut]);
            let _ = d.feed(&bytes[cut..]);
            let _ = d.finish();
        }
    }
}
