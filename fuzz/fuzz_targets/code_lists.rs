//! `--retry-on` and `--retry-on-exit`: never panic, never accept a code
//! that is never retried, never give an empty set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtb::retry::{parse_exit_list, parse_status_list};

fuzz_target!(|text: &str| {
    if let Ok(set) = parse_status_list(text) {
        assert!(set.iter().next().is_some());
        assert!(set.iter().all(|c| (400..600).contains(&c) && ![400, 401, 403, 404].contains(&c)));
    }
    if let Ok(set) = parse_exit_list(text) {
        assert!(set.iter().next().is_some());
        assert!(set.iter().all(|c| (1..256).contains(&c) && c != 126 && c != 127));
    }
});
