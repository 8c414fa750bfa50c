//! `--timeout` and every other duration flag: never panics, and what it
//! accepts is in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(d) = rtb::duration::parse_duration(text) {
        assert!(!d.is_zero() && d <= rtb::duration::MAX);
    }
});
