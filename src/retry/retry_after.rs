//! `Retry-After`: delta-seconds or an HTTP date (RFC 9110 section 10.2.3).

use std::time::{Duration, SystemTime};

/// The delay a `Retry-After` value asks for, relative to `now`. A date in
/// the past means "now" (zero); anything unreadable is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Absurd values saturate; the caller compares against its caps.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn junk_is_none() {
        let now = SystemTime::now();
        for bad in ["", "-1", "1.5", "soon", "3 s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(text in ".*") {
            let _ = parse_retry_after(&text, SystemTime::now());
        }

        #[test]
        fn never_panics_on_date_like_text(text in "[A-Za-z]{0,4},? ?[0-9]{0,3} [A-Za-z]{0,4} [0-9]{0,5} [0-9:]{0,9} ?[A-Z]{0,4}") {
            let _ = parse_retry_after(&text, SystemTime::now());
        }

        #[test]
        fn delta_seconds_round_trip(secs: u64, pad in " {0,3}") {
            let text = format!("{pad}{secs}{pad}");
            prop_assert_eq!(parse_retry_after(&text, SystemTime::now()), Some(Duration::from_secs(secs)));
        }

        #[test]
        fn round_trips_dates(secs in 0u64..4_000_000_000) {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let now = SystemTime::UNIX_EPOCH;
            prop_assert_eq!(parse_retry_after(&httpdate::fmt_http_date(t), now), Some(Duration::from_secs(secs)));
        }
    }
}
