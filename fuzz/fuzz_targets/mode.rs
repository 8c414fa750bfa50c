//! `rtb file --mode`: never panics; what it accepts is permission bits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(m) = rtb::file::parse_mode(text) {
        assert!(m <= 0o7777);
    }
});
