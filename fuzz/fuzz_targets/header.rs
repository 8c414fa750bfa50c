//! `-H 'Name: value'`: never panics; a secret header's value never
//! survives redaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtb::http::{parse_header, redact_header_arg, SECRET_HEADERS};

fuzz_target!(|text: &str| {
    let parsed = parse_header(text);
    let shown = redact_header_arg(text);
    if let Ok((name, _)) = parsed {
        if SECRET_HEADERS.contains(&name.as_str()) {
            let (_, value) = shown.split_once(':').unwrap();
            assert_eq!(value, " ***", "{text:?} -> {shown:?}");
        }
    }
});
