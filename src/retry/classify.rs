//! What is worth retrying: the verdict type, and the status / exit-code
//! lists that `--retry-on` and `--retry-on-exit` take.

use std::time::Duration;

/// The verdict on one failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Retrying may help; `after` is a delay the server asked for.
    Retry { after: Option<Duration> },
    /// Retrying cannot help, or is not safe; the reason says which.
    Stop { reason: String },
}

impl Verdict {
    pub fn retry() -> Self {
        Verdict::Retry { after: None }
    }
    pub fn stop(reason: impl Into<String>) -> Self {
        Verdict::Stop {
            reason: reason.into(),
        }
    }
}

/// A set of codes (HTTP statuses or exit statuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSet {
    bits: Vec<bool>,
}

impl CodeSet {
    fn with_len(n: usize) -> Self {
        CodeSet {
            bits: vec![false; n],
        }
    }
    /// The reference's retryable statuses: 429, 500, 502, 503, 504.
    pub fn default_statuses() -> Self {
        let mut s = Self::with_len(600);
        for c in [429, 500, 502, 503, 504] {
            s.bits[c] = true;
        }
        s
    }
    /// Every non-zero exit status but 126 and 127.
    pub fn any_failure() -> Self {
        let mut s = Self::with_len(256);
        for c in 1..=255 {
            s.bits[c] = !NEVER_EXIT.contains(&(c as u16));
        }
        s
    }
    pub fn contains(&self, code: u16) -> bool {
        self.bits.get(code as usize).copied().unwrap_or(false)
    }
    /// The codes in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.bits
            .iter()
            .enumerate()
            .filter(|(_, b)| **b)
            .map(|(i, _)| i as u16)
    }
}

/// Statuses no retry can fix: rtb never retries them, whatever is asked.
pub const NEVER_STATUS: [u16; 4] = [400, 401, 403, 404];
/// Exit statuses meaning the command cannot run at all.
pub const NEVER_EXIT: [u16; 2] = [126, 127];

fn parse_list(
    text: &str,
    lo: u16,
    hi: u16,
    never: &[u16],
    never_why: &str,
) -> Result<CodeSet, String> {
    let mut set = CodeSet::with_len(hi as usize + 1);
    if text.trim().is_empty() {
        return Err("empty list; expected codes like 429,500-504".into());
    }
    for item in text.split(',') {
        let item = item.trim();
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (item, item),
        };
        let num = |s: &str| -> Result<u16, String> {
            s.parse::<u16>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("'{item}' is not a code from {lo} to {hi}"))
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(format!("'{item}' is an empty range"));
        }
        for c in a..=b {
            if never.contains(&c) {
                return Err(format!("{c} is never retried: {never_why}"));
            }
            set.bits[c as usize] = true;
        }
    }
    Ok(set)
}

/// Parses `--retry-on`: HTTP statuses 400-599, single or ranges, comma
/// separated; 400, 401, 403 and 404 are refused.
///
/// # Errors
/// A reason naming the bad item.
pub fn parse_status_list(text: &str) -> Result<CodeSet, String> {
    parse_list(
        text,
        400,
        599,
        &NEVER_STATUS,
        "the request itself is wrong, and sending it again cannot fix it",
    )
}

/// Parses `--retry-on-exit`: exit statuses 1-255; 126 and 127 are refused.
///
/// # Errors
/// A reason naming the bad item.
pub fn parse_exit_list(text: &str) -> Result<CodeSet, String> {
    parse_list(
        text,
        1,
        255,
        &NEVER_EXIT,
        "the command cannot be run, and running it again cannot fix it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_statuses() {
        let s = CodeSet::default_statuses();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![429, 500, 502, 503, 504]);
        for c in NEVER_STATUS {
            assert!(!s.contains(c));
        }
    }

    #[test]
    fn lists_and_ranges() {
        let s = parse_status_list("429, 500-503").unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![429, 500, 501, 502, 503]);
        let e = parse_exit_list("1,75,128-130").unwrap();
        assert_eq!(e.iter().collect::<Vec<_>>(), vec![1, 75, 128, 129, 130]);
    }

    #[test]
    fn refuses_never_retryable_and_junk() {
        for bad in [
            "404", "400-410", "", "abc", "200", "600", "503-500", "5,,6", "-1",
        ] {
            assert!(parse_status_list(bad).is_err(), "{bad:?}");
        }
        for bad in ["0", "126", "120-130", "256", "x"] {
            assert!(parse_exit_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn any_failure_excludes_cannot_run() {
        let s = CodeSet::any_failure();
        assert!(!s.contains(0) && !s.contains(126) && !s.contains(127));
        assert!(s.contains(1) && s.contains(124) && s.contains(255));
    }

    proptest! {
        #[test]
        fn never_panics(text in ".*") {
            let _ = parse_status_list(&text);
            let _ = parse_exit_list(&text);
        }

        #[test]
        fn never_panics_on_list_like_text(text in "[0-9, -]{0,30}") {
            for set in [parse_status_list(&text), parse_exit_list(&text)].into_iter().flatten() {
                prop_assert!(set.iter().next().is_some(), "{text:?} gave an empty set");
            }
        }

        #[test]
        fn round_trips(codes in proptest::collection::btree_set(405u16..600, 1..10)) {
            let text = codes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
            let set = parse_status_list(&text).unwrap();
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), codes.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn printed_sets_parse_back(
            statuses in proptest::collection::btree_set(400u16..600, 1..40),
            exits in proptest::collection::btree_set(1u16..256, 1..40),
        ) {
            let statuses: Vec<u16> = statuses.into_iter().filter(|c| !NEVER_STATUS.contains(c)).collect();
            let exits: Vec<u16> = exits.into_iter().filter(|c| !NEVER_EXIT.contains(c)).collect();
            if !statuses.is_empty() {
                let set = parse_status_list(&as_ranges(&statuses)).unwrap();
                prop_assert_eq!(set.iter().collect::<Vec<_>>(), statuses);
            }
            if !exits.is_empty() {
                let set = parse_exit_list(&as_ranges(&exits)).unwrap();
                prop_assert_eq!(set.iter().collect::<Vec<_>>(), exits);
            }
        }

        #[test]
        fn never_retryable_codes_are_always_refused(
            lo in 1u16..600, len in 0u16..50, never in 0usize..4,
        ) {
            let hi = lo.saturating_add(len);
            let s = NEVER_STATUS[never];
            if lo <= s && s <= hi {
                let range = format!("{lo}-{hi}");
                prop_assert!(parse_status_list(&range).is_err(), "{} accepted", range);
            }
            let e = NEVER_EXIT[never % 2];
            if lo <= e && e <= hi {
                let range = format!("{lo}-{hi}");
                prop_assert!(parse_exit_list(&range).is_err(), "{} accepted", range);
            }
        }
    }

    /// Ascending codes as the shortest list of `a` and `a-b` items.
    fn as_ranges(codes: &[u16]) -> String {
        let mut items = Vec::new();
        let mut i = 0;
        while i < codes.len() {
            let mut j = i;
            while j + 1 < codes.len() && codes[j + 1] == codes[j] + 1 {
                j += 1;
            }
            items.push(if i == j {
                codes[i].to_string()
            } else {
                format!("{} - {}", codes[i], codes[j])
            });
            i = j + 1;
        }
        items.join(", ")
    }
}
