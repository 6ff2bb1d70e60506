//! The one line per request `serve` writes on stderr (SPEC §8.3): profile, backend, bucket,
//! status, attempts, latency, and what else the request met (backends left out, malformed
//! events, the error's headline, the shell's notices).
//!
//! Owns: the line's `key=value` format (values with spaces quoted), stable for grepping.
//! Must not: write anywhere but through [`Ctx::log_line`].

use std::fmt::Write as _;
use std::time::Instant;

use super::Ctx;
use super::plan::Chosen;
use super::run::Finished;
use crate::driver::Ending;

/// Logs one chat request.
#[expect(
    clippy::too_many_arguments,
    reason = "the facts of one log line, each from a different stage"
)]
pub fn request(
    ctx: &Ctx,
    chosen: &Chosen,
    rid: &str,
    stream: bool,
    status: u16,
    fin: &Finished,
    notices: &[String],
    started: Instant,
) {
    let (backend, bucket) = match &fin.ending {
        Ending::Delivered {
            backend, bucket, ..
        } => (backend.as_str(), bucket.as_str()),
        _ => ("-", "-"),
    };
    let mut line = format!(
        "{rid} profile={} backend={backend} bucket={bucket} status={status} attempts={} latency_ms={} stream={stream}",
        chosen.profile,
        fin.attempts.len(),
        started.elapsed().as_millis(),
    );
    if matches!(fin.ending, Ending::Cancelled { .. }) {
        line.push_str(" cancelled=client_gone");
    }
    if !chosen.skipped.is_empty() {
        let _ = write!(line, " skipped={:?}", chosen.skipped.join(", "));
    }
    if fin.malformed > 0 {
        let _ = write!(line, " malformed_events={}", fin.malformed);
    }
    if let Ending::Failed { error, .. } = &fin.ending {
        let _ = write!(line, " error={:?}", error.lines().next().unwrap_or(""));
    }
    for n in notices {
        let _ = write!(line, " note={n:?}");
    }
    if let Some(e) = &fin.record_error {
        let _ = write!(line, " record_error={e:?}");
    }
    ctx.log_line(&line);
}
