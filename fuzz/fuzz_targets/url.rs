//! URL arguments: parsing and redaction never panic, and a password never
//! survives redaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtb::config::parse_url;
use rtb::http::{redact_url, redact_url_str};

fuzz_target!(|text: &str| {
    let shown = redact_url_str(text);
    if let Ok(url) = parse_url(text) {
        let redacted = redact_url(&url);
        if let Some(pw) = url.password() {
            if pw.len() > 3 {
                assert!(!redacted.contains(&format!(":{pw}@")), "{text:?} -> {redacted:?}");
                assert!(!shown.contains(&format!(":{pw}@")), "{text:?} -> {shown:?}");
            }
        }
    }
});
