//! Parsing and printing durations the way every rtb flag takes them.
//!
//! A bare number is seconds (`5`, `0.5`); otherwise a number with a unit
//! (`250ms`, `3s`, `2m`, `1h`), as humantime reads it. Zero, negative,
//! non-numeric and absurd (over a year) values are refused with a reason.

use std::time::Duration;

/// The longest duration any flag accepts: anything longer is a typo.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);

const EXPECTED: &str = "expected seconds (5, 0.5) or a number with a unit (250ms, 3s, 2m)";

/// Parses a user-given duration.
///
/// # Errors
/// A reason (without the value, which the caller names) when the text is
/// empty, not a duration, zero, negative or longer than a year.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty duration; {EXPECTED}"));
    }
    if t.starts_with('-') {
        return Err("a duration cannot be negative".into());
    }
    let d = if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| format!("not a number; {EXPECTED}"))?;
        if secs > MAX.as_secs_f64() {
            return Err("longer than a year".into());
        }
        Duration::from_secs_f64(secs)
    } else {
        humantime::parse_duration(t).map_err(|e| format!("{e}; {EXPECTED}"))?
    };
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    if d < Duration::from_millis(1) {
        // Deadlines are kept to the millisecond (RTB_DEADLINE, the logs).
        return Err("shorter than a millisecond".into());
    }
    if d > MAX {
        return Err("longer than a year".into());
    }
    Ok(d)
}

/// Like [`parse_duration`], but zero is allowed: for waits where "do not
/// wait at all" is a sensible answer (`rtb safe --wait 0`).
///
/// # Errors
/// As [`parse_duration`], zero excepted.
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bare_zero =
        !t.is_empty() && t.bytes().all(|b| b == b'0' || b == b'.') && t.parse::<f64>() == Ok(0.0);
    if bare_zero || humantime::parse_duration(t) == Ok(Duration::ZERO) {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

/// Prints a duration the way rtb's log lines say it: `1s`, `1.5s`, `250ms`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        if ms == 0 && !d.is_zero() {
            return format!("{}us", d.as_micros());
        }
        return format!("{ms}ms");
    }
    if ms % 1000 == 0 {
        return format!("{}s", ms / 1000);
    }
    let s = format!("{:.3}", d.as_secs_f64());
    format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2 "), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            "", "0", "0s", "0.0", "-1", "-1s", "abc", "5x", "1e3", "nan", "inf", "400d", "2y",
            "1ns", "0.0001", "999us", "1.2.3",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn waits_may_be_zero() {
        assert_eq!(parse_wait("0"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("0.0"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("2s"), Ok(Duration::from_secs(2)));
        for bad in ["", "-0", "-1", "x", "0x"] {
            assert!(parse_wait(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prints_like_the_log_lines() {
        assert_eq!(fmt_duration(Duration::from_secs(1)), "1s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
    }

    // Case counts come from proptest's default config, which honours
    // PROPTEST_CASES (scripts/fuzz runs 100,000 per parser).
    proptest::proptest! {
        #[test]
        fn never_panics(text in ".*") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn never_panics_on_number_like_text(text in "[-+ ]?[0-9.]{0,40}(ns|us|ms|s|m|h|d|w|y|e[0-9]+)?") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(!d.is_zero() && d <= MAX);
            }
        }

        #[test]
        fn accepted_values_are_in_bounds(text in "[0-9]{1,12}(\\.[0-9]{1,9})?(ns|us|ms|s|m|h|d)?") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(!d.is_zero() && d <= MAX, "{text:?} gave {d:?}");
            }
        }

        #[test]
        fn wait_is_a_duration_or_zero(text in ".*|[0. ]{1,6}(s|ms|m)?|[0-9.]{1,8}(s|ms)?") {
            match parse_wait(&text) {
                Ok(Duration::ZERO) => {}
                other => proptest::prop_assert_eq!(other, parse_duration(&text)),
            }
        }

        #[test]
        fn whole_units_round_trip(n in 1u64..=MAX.as_secs()) {
            let d = Duration::from_secs(n);
            proptest::prop_assert_eq!(parse_duration(&n.to_string()), Ok(d));
            proptest::prop_assert_eq!(parse_duration(&format!("{n}s")), Ok(d));
            proptest::prop_assert_eq!(parse_duration(&format!(" {}ms ", n * 1000)), Ok(d));
        }

        #[test]
        fn printed_durations_parse_back(ms in 1u64..=MAX.as_millis() as u64) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&fmt_duration(d)), Ok(d), "{}", fmt_duration(d));
        }
    }
}
