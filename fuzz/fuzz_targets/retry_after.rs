//! A server's `Retry-After` header: whatever it holds, no panic.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use rtb::retry::parse_retry_after;

fuzz_target!(|text: &str| {
    let _ = parse_retry_after(text, SystemTime::now());
    let _ = parse_retry_after(text, SystemTime::UNIX_EPOCH);
    let _ = parse_retry_after(text, SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX.into()));
});
