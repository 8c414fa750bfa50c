//! `--signal`: never panics; what it accepts is a signal number.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(n) = rtb::process::parse_signal(text) {
        assert!((1..=64).contains(&n));
    }
});
