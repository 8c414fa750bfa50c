//! URL arguments: parsing and redaction never panic, and a redacted URL
//! carries no user name or password but `***`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::Url;
use rtb::config::parse_url;
use rtb::http::{redact_url, redact_url_str};

fn hidden(shown: &str) -> bool {
    Url::parse(shown).map_or(true, |u| {
        u.password().is_none_or(|p| p == "***") && (u.username().is_empty() || u.username() == "***")
    })
}

fuzz_target!(|text: &str| {
    let shown = redact_url_str(text);
    assert!(hidden(&shown), "{text:?} -> {shown:?}");
    if let Ok(url) = parse_url(text) {
        let redacted = redact_url(&url);
        assert!(hidden(&redacted), "{text:?} -> {redacted:?}");
    }
});
