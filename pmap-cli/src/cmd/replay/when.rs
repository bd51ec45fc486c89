//! `--at WHEN`: a moment of a recording, on its clock (CLOCK_MONOTONIC ns).

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::cmd::trace::record::format::Header;

/// `+SECS` (since the recording began), an RFC 3339 time
/// (`2026-12-06T10:00:00.25Z`), or `@EPOCH[.frac]`, as CLOCK_MONOTONIC ns.
pub fn parse(when: &str, h: &Header) -> Result<u64, String> {
    let wall = |real_ns: i128| -> Result<u64, String> {
        let since = real_ns - i128::from(h.start_real_ns);
        if since < 0 {
            return Err(format!(
                "--at {when} is before the recording began ({})",
                rfc3339(h.start_real_ns)
            ));
        }
        Ok(h.start_ns.saturating_add(since as u64))
    };
    if let Some(secs) = when.strip_prefix('+') {
        let ns = secs_ns(secs).ok_or_else(|| {
            format!("--at {when}: '{secs}' is not a number of seconds (e.g. +2.5)")
        })?;
        return Ok(h.start_ns.saturating_add(ns as u64));
    }
    if let Some(epoch) = when.strip_prefix('@') {
        let ns = secs_ns(epoch).ok_or_else(|| {
            format!("--at {when}: '{epoch}' is not seconds since the epoch (e.g. @1765046400.25)")
        })?;
        return wall(ns);
    }
    match OffsetDateTime::parse(when, &Rfc3339) {
        Ok(t) => wall(t.unix_timestamp_nanos()),
        Err(e) => Err(format!(
            "--at {when}: not a time ({e}); give +SECS since the recording began, an RFC 3339 \
             time such as 2026-12-06T10:00:00.25Z, or @EPOCH such as @1765046400.25"
        )),
    }
}

/// Decimal seconds (`2`, `2.5`, `1765046400.123456789`) as ns, exactly
/// (a float would round nanoseconds away at epoch magnitudes).
fn secs_ns(s: &str) -> Option<i128> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let w: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let f: i128 = format!("{frac:0<9}").parse().ok()?;
    w.checked_mul(1_000_000_000)?.checked_add(f)
}

/// Epoch ns as RFC 3339, UTC.
pub fn rfc3339(real_ns: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(real_ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{}", real_ns / 1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            start_ns: 1_000_000_000,
            start_real_ns: 1_765_046_400_000_000_000,
            polled: false,
            stacks: false,
            command: String::new(),
        }
    }

    #[test]
    fn the_three_forms_name_the_same_moment() {
        let h = header();
        let want = 3_250_000_000;
        assert_eq!(parse("+2.25", &h), Ok(want));
        assert_eq!(parse("@1765046402.25", &h), Ok(want));
        assert_eq!(parse("2025-12-06T18:40:02.25Z", &h), Ok(want));
        assert_eq!(parse("2025-12-06T19:40:02.25+01:00", &h), Ok(want));
        assert!(parse("@1765046399", &h).is_err());
        assert!(parse("+x", &h).is_err());
        assert!(parse("+", &h).is_err());
        assert!(parse("yesterday", &h).is_err());
    }
}
