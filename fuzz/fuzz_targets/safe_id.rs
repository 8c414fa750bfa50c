//! `rtb safe ID`: never panics; what it accepts is 1-256 bytes without
//! control characters, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(id) = rtb::guard::parse_id(text) {
        assert_eq!(id, text);
        assert!(!id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control));
    }
});
