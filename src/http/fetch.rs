//! One HTTP attempt under a total deadline, and what its failure means.
//!
//! The deadline covers DNS, connect, TLS, headers and the whole body: the
//! attempt is one future under `tokio::time::timeout`, so a server that
//! drips a byte every half second is cut off on time (requests' per-read
//! timeout is not). Classification is here because only the mechanism knows
//! whether a request can have reached the server.

use std::error::Error as _;
use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use reqwest::{Client, Method, StatusCode};

use super::spool::Spool;
use crate::config::HttpSpec;
use crate::duration::fmt_duration;
use crate::retry::{parse_retry_after, CodeSet, Verdict};

/// Why one attempt failed.
#[derive(Debug)]
pub enum FetchError {
    /// The deadline passed.
    TimedOut(Duration),
    /// No connection was made: the request cannot have reached the server.
    Connect(String),
    /// The TLS handshake or certificate check failed: retrying cannot help.
    Tls(String),
    /// Sending, or receiving the headers, failed after connecting.
    Send(String),
    /// The body was cut short or malformed.
    Body(String),
    /// The server answered with an error status.
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// The body could not be stored locally (disk full, permissions).
    Local(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::TimedOut(d) => write!(f, "timed out after {}", fmt_duration(*d)),
            FetchError::Connect(m) | FetchError::Tls(m) | FetchError::Send(m) => f.write_str(m),
            FetchError::Body(m) => write!(f, "body cut short: {m}"),
            FetchError::Status { status, .. } => write!(f, "HTTP {}", status.as_u16()),
            FetchError::Local(m) => f.write_str(m),
        }
    }
}

/// Whether repeating `method` can repeat a side effect (RFC 9110 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

impl FetchError {
    /// The verdict for this failure of a request made with `spec`.
    pub fn verdict(&self, spec: &HttpSpec, retry_on: &CodeSet) -> Verdict {
        let retryable = match self {
            FetchError::Tls(_) => {
                return Verdict::stop("a TLS failure is not fixed by sending the request again")
            }
            FetchError::Local(_) => {
                return Verdict::stop("the body could not be stored here; retrying cannot help")
            }
            FetchError::Status { status, .. } if !retry_on.contains(status.as_u16()) => {
                return Verdict::stop(if status.is_client_error() {
                    "the server refused the request itself, and sending it again cannot fix it"
                        .to_string()
                } else {
                    format!("{} is not in --retry-on", status.as_u16())
                });
            }
            FetchError::Connect(_) => return Verdict::retry(),
            _ => true,
        };
        debug_assert!(retryable);
        // The request may have reached the server: only safe to repeat when
        // the method is idempotent or the server can deduplicate it.
        if !idempotent(&spec.method) && spec.idempotency_key.is_none() {
            return Verdict::stop(format!(
                "{} is not idempotent and the request may have reached the server, so a retry \
                 could repeat its effect; pass --idempotency-key KEY to make retries safe",
                spec.method
            ));
        }
        match self {
            FetchError::Status {
                retry_after: Some(d),
                ..
            } => Verdict::Retry { after: Some(*d) },
            _ => Verdict::retry(),
        }
    }
}

/// The HTTP client every attempt shares: rustls, no total timeout of its
/// own (the attempt future carries the deadline), redirects followed.
pub fn client() -> Result<Client, String> {
    Client::builder()
        .user_agent(concat!("rtb/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", chain(&e)))
}

/// A successful attempt: its status and how many body bytes it carried.
pub struct Fetched {
    pub status: StatusCode,
    pub bytes: u64,
}

/// Runs one attempt: the request, the status check and the whole body into
/// `spool`, all within `timeout`. The spool is published only on success.
pub async fn fetch(
    client: &Client,
    spec: &HttpSpec,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let mut spool = Spool::new(spec.output.as_deref()).map_err(|e| {
        let dest = spec.output.as_deref().unwrap_or(std::path::Path::new("-"));
        FetchError::Local(format!("cannot write {}: {e}", dest.display()))
    })?;
    let fetched = tokio::time::timeout(timeout, receive(client, spec, &mut spool))
        .await
        .map_err(|_| FetchError::TimedOut(timeout))??;
    spool
        .publish()
        .map_err(|e| FetchError::Local(format!("cannot write the body: {e}")))?;
    Ok(fetched)
}

async fn receive(
    client: &Client,
    spec: &HttpSpec,
    spool: &mut Spool,
) -> Result<Fetched, FetchError> {
    let mut req = client
        .request(spec.method.clone(), spec.url.clone())
        .headers(spec.headers.clone());
    if let Some(body) = &spec.body {
        req = req.body(body.clone());
    }
    let resp = req.send().await.map_err(classify)?;
    let status = resp.status();
    if !status.is_success() {
        let retry_after = if matches!(status.as_u16(), 429 | 503) {
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        return Err(FetchError::Status {
            status,
            retry_after,
        });
    }
    let expected = resp.content_length();
    let progress = Progress::new(expected);
    let mut bytes = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| FetchError::Body(root_cause(&e)))?;
        bytes += chunk.len() as u64;
        spool
            .write_all(&chunk)
            .map_err(|e| FetchError::Local(format!("cannot store the body: {e}")))?;
        progress.set(bytes);
    }
    progress.finish();
    if let Some(n) = expected.filter(|n| *n != bytes) {
        return Err(FetchError::Body(format!("got {bytes} of {n} bytes")));
    }
    Ok(Fetched { status, bytes })
}

/// A progress bar on a terminal stderr, shown only once a body has taken
/// more than a second, never with -q or when stderr is not a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    shown: std::cell::Cell<bool>,
}

impl Progress {
    fn new(len: Option<u64>) -> Self {
        let bar = (std::io::stderr().is_terminal() && !crate::logging::quiet()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                len,
                indicatif::ProgressDrawTarget::hidden(),
            );
            let style = if len.is_some() {
                "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
                bar.set_style(s);
            }
            bar
        });
        Progress {
            bar,
            start: Instant::now(),
            shown: std::cell::Cell::new(false),
        }
    }

    fn set(&self, bytes: u64) {
        let Some(bar) = &self.bar else { return };
        if !self.shown.get() && self.start.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            self.shown.set(true);
        }
        bar.set_position(bytes);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Sorts a reqwest error into connect / TLS / send / timeout.
fn classify(e: reqwest::Error) -> FetchError {
    let text = chain(&e);
    tracing::debug!("request error: {}", super::redact_url_str(&text));
    // A connect failure over https that is neither a DNS nor a socket error
    // is the TLS handshake (rustls' errors arrive as io Other/InvalidData).
    let https = e.url().is_some_and(|u| u.scheme() == "https");
    let tls_io = matches!(
        io_kind(&e),
        Some(std::io::ErrorKind::Other | std::io::ErrorKind::InvalidData)
    );
    if text.contains("invalid peer certificate")
        || (https && e.is_connect() && tls_io && !is_dns(&text))
    {
        let host = e
            .url()
            .and_then(|u| u.host_str())
            .unwrap_or("?")
            .to_string();
        return FetchError::Tls(format!(
            "TLS handshake with {host} failed: {}",
            root_cause(&e)
        ));
    }
    if e.is_connect() {
        return FetchError::Connect(connect_message(&e));
    }
    if e.is_body() || e.is_decode() {
        return FetchError::Body(root_cause(&e));
    }
    FetchError::Send(format!("request failed: {}", root_cause(&e)))
}

fn connect_message(e: &reqwest::Error) -> String {
    let host = e
        .url()
        .map(|u| {
            let h = u.host_str().unwrap_or("?");
            match u.port_or_known_default() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            }
        })
        .unwrap_or_default();
    let text = chain(e);
    if is_dns(&text) {
        return format!("DNS lookup failed for {host}: {}", root_cause(e));
    }
    if let Some(io) = io_kind(e) {
        let what = match io {
            std::io::ErrorKind::ConnectionRefused => "connection refused",
            std::io::ErrorKind::ConnectionReset => "connection reset",
            std::io::ErrorKind::TimedOut => "connect timed out",
            _ => "cannot connect",
        };
        return format!("{what} ({host})");
    }
    format!("cannot connect to {host}: {}", root_cause(e))
}

fn is_dns(chain: &str) -> bool {
    chain.contains("dns error") || chain.contains("failed to lookup address")
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// The innermost cause's message: "Connection refused (os error 111)".
fn root_cause(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(s) = last.source() {
        last = s;
    }
    let msg = last.to_string();
    // Never echo a URL with credentials from a reqwest message.
    super::redact_url_str(&msg)
}

/// The whole chain, for matching.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn spec(method: Method, key: Option<&str>) -> HttpSpec {
        HttpSpec {
            url: "http://127.0.0.1/".parse().unwrap(),
            method,
            headers: HeaderMap::new(),
            body: None,
            output: None,
            idempotency_key: key.map(String::from),
        }
    }

    fn status(code: u16, after: Option<u64>) -> FetchError {
        FetchError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: after.map(Duration::from_secs),
        }
    }

    fn retries(v: &Verdict) -> bool {
        matches!(v, Verdict::Retry { .. })
    }

    #[test]
    fn statuses_follow_the_retry_on_list() {
        let get = spec(Method::GET, None);
        let list = CodeSet::default_statuses();
        for code in [429, 500, 502, 503, 504] {
            assert!(retries(&status(code, None).verdict(&get, &list)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422, 501, 505] {
            assert!(!retries(&status(code, None).verdict(&get, &list)), "{code}");
        }
    }

    #[test]
    fn retry_after_is_carried_to_the_verdict() {
        let get = spec(Method::GET, None);
        let v = status(503, Some(7)).verdict(&get, &CodeSet::default_statuses());
        assert_eq!(
            v,
            Verdict::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn transient_failures_retry_and_local_ones_stop() {
        let get = spec(Method::GET, None);
        let list = CodeSet::default_statuses();
        for e in [
            FetchError::TimedOut(Duration::from_secs(1)),
            FetchError::Connect("connection refused".into()),
            FetchError::Send("connection reset".into()),
            FetchError::Body("got 10 of 100 bytes".into()),
        ] {
            assert!(retries(&e.verdict(&get, &list)), "{e}");
        }
        for e in [
            FetchError::Tls("bad certificate".into()),
            FetchError::Local("disk full".into()),
        ] {
            assert!(!retries(&e.verdict(&get, &list)), "{e}");
        }
    }

    #[test]
    fn unsafe_methods_retry_only_what_never_reached_the_server() {
        let list = CodeSet::default_statuses();
        for m in [Method::POST, Method::PATCH] {
            let plain = spec(m.clone(), None);
            assert!(retries(
                &FetchError::Connect("refused".into()).verdict(&plain, &list)
            ));
            for e in [
                status(503, None),
                FetchError::TimedOut(Duration::from_secs(1)),
                FetchError::Send("reset".into()),
                FetchError::Body("cut".into()),
            ] {
                let v = e.verdict(&plain, &list);
                assert!(
                    matches!(&v, Verdict::Stop { reason } if reason.contains("--idempotency-key")),
                    "{m} {e}: {v:?}"
                );
            }
            let keyed = spec(m, Some("k-1"));
            assert!(retries(&status(503, None).verdict(&keyed, &list)));
            assert!(retries(
                &FetchError::Send("reset".into()).verdict(&keyed, &list)
            ));
        }
        // PUT and DELETE are idempotent by definition.
        for m in [Method::PUT, Method::DELETE] {
            assert!(retries(&status(503, None).verdict(&spec(m, None), &list)));
        }
    }
}
