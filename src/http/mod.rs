//! Mechanism: one HTTP request under a total deadline, the body spooled so
//! only a complete one is ever written, and the outcome classified.

mod redact;

pub use redact::{redact_header_arg, redact_url, redact_url_str};

use reqwest::header::{HeaderName, HeaderValue};

use crate::config::{HttpSpec, RetryConfig, TimeoutConfig};
use crate::error::{Error, Outcome};

/// Parses a `-H 'Name: value'` argument.
///
/// # Errors
/// A reason when there is no colon, or the name or value is not valid.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text.split_once(':').ok_or("expected 'Name: value'")?;
    let name = name.trim();
    if name.is_empty() {
        return Err("empty header name; expected 'Name: value'".into());
    }
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("'{name}' is not a valid header name"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| "the header value holds characters a header cannot carry".to_string())?;
    Ok((name, value))
}

pub async fn run_timeout(_spec: &HttpSpec, _cfg: &TimeoutConfig) -> Outcome {
    Err(Error::Failed("URL mode is not built yet".into()))
}

pub async fn run_retry(_spec: &HttpSpec, _cfg: &RetryConfig) -> Outcome {
    Err(Error::Failed("URL mode is not built yet".into()))
}
