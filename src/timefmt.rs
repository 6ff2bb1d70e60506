//! Times as llxprt prints them: RFC 3339 UTC for `--json` output (SPEC §8.1), from Unix
//! milliseconds, and in the text tables local time with its distance from now (`14:03:07 (in
//! 42 s)`, SPEC §8.1).

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// How far `ms` is from `now`, in words: `in 42 s`, `3 min ago`, `now` (under a second).
/// Seconds under a minute, minutes under an hour, hours under two days, days beyond.
pub fn relative(ms: u64, now: u64) -> String {
    let d = ms.abs_diff(now) / 1000;
    let amount = match d {
        0 => return "now".to_string(),
        1..60 => format!("{d} s"),
        60..3600 => format!("{} min", d / 60),
        3600..172_800 => format!("{} h", d / 3600),
        _ => format!("{} d", d / 86_400),
    };
    if ms > now {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// `ms` in the system's local time zone (`TZ`, else the system's; UTC when neither is
/// known): `HH:MM:SS` on the same local day as `now`, `Dec 8 14:03` on another day of the same
/// year, `YYYY-MM-DD HH:MM` in another year.
pub fn local(ms: u64, now: u64) -> String {
    let tz = jiff::tz::TimeZone::system();
    let at = |t: u64| {
        let ts = jiff::Timestamp::from_millisecond(i64::try_from(t).unwrap_or(i64::MAX))
            .unwrap_or(jiff::Timestamp::MAX);
        tz.to_datetime(ts)
    };
    let (t, n) = (at(ms), at(now));
    if t.date() == n.date() {
        t.strftime("%H:%M:%S").to_string()
    } else if t.year() == n.year() {
        t.strftime("%b %-d %H:%M").to_string()
    } else {
        t.strftime("%Y-%m-%d %H:%M").to_string()
    }
}

/// A table cell for a time: local time and its distance from now, `14:03:07 (in 42 s)`; the
/// parenthesis is kept on one line when the cell wraps (`report::table::NBSP`).
pub fn local_relative(ms: u64, now: u64) -> String {
    format!(
        "{} ({})",
        local(ms, now),
        relative(ms, now).replace(' ', "\u{a0}")
    )
}

/// Unix milliseconds of an RFC 3339 time (as the `--json` reports write them).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t: jiff::Timestamp = s.parse().ok()?;
    u64::try_from(t.as_millisecond()).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_times_in_words() {
        let now = 1_000_000_000;
        assert_eq!(super::relative(now + 42_000, now), "in 42 s");
        assert_eq!(super::relative(now - 180_000, now), "3 min ago");
        assert_eq!(super::relative(now + 500, now), "now");
        assert_eq!(super::relative(now - 7_200_000, now), "2 h ago");
        assert_eq!(super::relative(now + 3 * 86_400_000, now), "in 3 d");
        assert_eq!(super::parse_rfc3339(&super::rfc3339(now)), Some(now));
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_445_412_480_123),
            "2015-10-21T07:28:00.123Z"
        );
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
