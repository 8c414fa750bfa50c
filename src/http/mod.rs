//! Mechanism: one HTTP request under a total deadline, the body spooled so
//! only a complete one is ever written, and the outcome classified. The
//! retry loop itself is `crate::retry::retry`; this module only supplies
//! the attempt and says what its failures mean.

mod fetch;
mod redact;
mod spool;

pub use redact::{redact_header_arg, redact_url, redact_url_str, SECRET_HEADERS};

use std::fmt;
use std::future::Future;
use std::time::Instant;

use reqwest::header::{HeaderName, HeaderValue};

use self::fetch::{fetch, FetchError};
use crate::config::{HttpSpec, RetryConfig, TimeoutConfig};
use crate::duration::fmt_duration;
use crate::error::{Error, Outcome};
use crate::process::{signal_name, Interrupts};
use crate::retry::{retry, CodeSet, Failure, TokioSleeper, Verdict};

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

/// The failure already went to the log with its fields; exit 1.
fn reported() -> Error {
    Error::Status {
        message: String::new(),
        code: crate::error::code::FAILED,
    }
}

/// `rtb timeout URL`: one request, one total deadline.
pub async fn run_timeout(spec: &HttpSpec, cfg: &TimeoutConfig) -> Outcome {
    let client = fetch::client().map_err(Error::Failed)?;
    let url = redact_url(&spec.url);
    let timeout = cfg.budget.at.saturating_duration_since(Instant::now());
    if timeout.is_zero() {
        return Err(Error::Failed(format!(
            "Request not sent: {} has passed",
            cfg.budget.name
        )));
    }
    tracing::debug!(url = %url, timeout_ms = timeout.as_millis() as u64, "{} {url}", spec.method);
    let start = Instant::now();
    let result = until_signalled(fetch(&client, spec, timeout)).await?;
    let elapsed_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok(f) => {
            let status = f.status.as_u16();
            tracing::info!(url = %url, status, elapsed_ms, bytes = f.bytes, "Request succeeded: {status}");
            Ok(crate::error::code::OK)
        }
        Err(FetchError::TimedOut(d)) => {
            let said = if cfg.budget.inherited {
                format!("{} ({})", fmt_duration(d), cfg.budget.name)
            } else {
                fmt_duration(cfg.timeout)
            };
            tracing::error!(url = %url, elapsed_ms, error = "timeout",
                "Request timed out after {said}");
            Err(reported())
        }
        Err(FetchError::Status { status, .. }) => {
            let code = status.as_u16();
            tracing::error!(url = %url, status = code, elapsed_ms,
                "Request failed: HTTP {code} {}", status.canonical_reason().unwrap_or(""));
            Err(reported())
        }
        Err(e) => {
            tracing::error!(url = %url, elapsed_ms, error = %e, "Request failed: {e}");
            Err(reported())
        }
    }
}

/// One attempt's failure, with what it takes to judge it.
struct HttpFailure<'a> {
    error: FetchError,
    spec: &'a HttpSpec,
    retry_on: &'a CodeSet,
}

impl fmt::Display for HttpFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl Failure for HttpFailure<'_> {
    fn verdict(&self) -> Verdict {
        self.error.verdict(self.spec, self.retry_on)
    }
}

/// `rtb retry URL`: the shared retry loop around one request.
pub async fn run_retry(spec: &HttpSpec, cfg: &RetryConfig) -> Outcome {
    let client = fetch::client().map_err(Error::Failed)?;
    let url = redact_url(&spec.url);
    let mut sleeper = TokioSleeper::new(std::future::pending::<()>());
    let client = &client;
    let attempts = retry(&cfg.policy, &mut sleeper, |a| async move {
        tracing::debug!(url = %redact_url(&spec.url), attempt = a.number,
            timeout_ms = a.timeout.as_millis() as u64, "Attempt {}: {} {}", a.number, spec.method, redact_url(&spec.url));
        fetch(client, spec, a.timeout)
            .await
            .map_err(|error| HttpFailure {
                error,
                spec,
                retry_on: &cfg.retry_on,
            })
    });
    // Every line the loop logs carries the (redacted) URL in JSON.
    let attempts =
        tracing::Instrument::instrument(attempts, tracing::error_span!("request", url = %url));
    match until_signalled(attempts).await? {
        Ok(_) => Ok(crate::error::code::OK),
        Err(gave_up) => {
            let status = match gave_up.last_error().map(|f| &f.error) {
                Some(FetchError::Status { status, .. }) => Some(status.as_u16()),
                _ => None,
            };
            tracing::error!(url = %url, status, "{gave_up}");
            Err(reported())
        }
    }
}

/// Runs `work` unless rtb gets SIGINT, SIGTERM or SIGHUP first; then the
/// work is dropped (its temp files with it) and rtb exits 128+N.
async fn until_signalled<T>(work: impl Future<Output = T>) -> Result<T, Error> {
    let mut interrupts = Interrupts::install()?;
    tokio::select! {
        r = work => Ok(r),
        sig = interrupts.recv() => Err(Error::Status {
            message: format!("Interrupted by {}", signal_name(sig)),
            code: 128 + sig as u8,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers() {
        let (n, v) = parse_header("X-Trace:  abc ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-trace", "abc"));
        let (n, v) = parse_header("Accept:").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("accept", ""));
        for bad in [
            "",
            "Accept",
            ": x",
            " : x",
            "Bad Name: x",
            "X:\u{7}",
            "X: a\r\nY: b",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
    }

    // Case counts come from proptest's default config, which honours
    // PROPTEST_CASES (scripts/fuzz runs 100,000 per parser).
    proptest! {
        #[test]
        fn never_panics(text in ".*") {
            let _ = parse_header(&text);
            let _ = redact_header_arg(&text);
        }

        #[test]
        fn never_panics_on_header_like_text(text in "[ -~\t\r\n\u{80}-\u{10ffff}]{0,8}:[ -~\t\r\n\u{80}-\u{10ffff}]{0,12}") {
            let _ = parse_header(&text);
        }

        #[test]
        fn round_trips(
            name in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}",
            value in "[!-~]([ -~]{0,40}[!-~])?",
            pad in "[ \t]{0,2}",
        ) {
            let (n, v) = parse_header(&format!("{pad}{name}{pad}:{pad}{value}{pad}")).unwrap();
            prop_assert_eq!(n.as_str(), name.to_ascii_lowercase());
            prop_assert_eq!(v.to_str().unwrap(), value);
        }
    }
}
