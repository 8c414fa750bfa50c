//! Validated, ready-to-use settings per command, built from `cli`'s raw
//! arguments. Rules that tie flags together, defaults that depend on the
//! environment, and the deadline inherited from an outer rtb live here.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::cli::{FileArgs, KillArgs, RequestArgs, RetryArgs, SafeArgs, TimeoutArgs};
use crate::duration::fmt_duration;
use crate::error::Error;
use crate::retry::{Backoff, CodeSet, RetryPolicy};

/// Environment variable carrying the absolute deadline (Unix ms) to children.
pub const DEADLINE_ENV: &str = "RTB_DEADLINE";
/// Environment variable carrying the attempt number to children.
pub const ATTEMPT_ENV: &str = "RTB_ATTEMPT";
/// Environment variable carrying rtb's --kill-after (ms) to children, so a
/// nested rtb KILLs its own process group before the outer one KILLs it
/// (which would orphan that group).
pub const KILL_AFTER_ENV: &str = "RTB_KILL_AFTER_MS";

/// The grace between a stop signal and KILL: `kill_after`, but no more than
/// half of an outer rtb's (RTB_KILL_AFTER_MS), so this rtb's group is
/// killed before this rtb is.
pub fn kill_grace(kill_after: Duration) -> Duration {
    std::env::var(KILL_AFTER_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(kill_after, |ms| {
            kill_after.min(Duration::from_millis(ms / 2))
        })
}

/// A point in time the run must not pass, and how to name it in messages.
#[derive(Debug, Clone)]
pub struct Budget {
    pub at: Instant,
    pub name: String,
    /// True when an outer rtb handed this deadline down (RTB_DEADLINE).
    pub inherited: bool,
}

impl Budget {
    fn starting_now(d: Duration, name: String) -> Self {
        Budget {
            at: Instant::now() + d,
            name,
            inherited: false,
        }
    }
    /// The earlier of two budgets.
    fn min(a: Option<Budget>, b: Option<Budget>) -> Option<Budget> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// `at` as Unix time in milliseconds, for RTB_DEADLINE.
pub fn unix_ms(at: Instant) -> u128 {
    let left = at.saturating_duration_since(Instant::now());
    (SystemTime::now() + left)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The deadline an outer rtb handed down in RTB_DEADLINE, if any. A value
/// that is not a number is ignored with a warning rather than obeyed wrongly.
pub fn inherited_budget() -> Option<Budget> {
    let raw = std::env::var(DEADLINE_ENV).ok()?;
    let Ok(ms) = raw.trim().parse::<u64>() else {
        tracing::warn!("Ignoring {DEADLINE_ENV}={raw:?}: not Unix time in milliseconds");
        return None;
    };
    let when = UNIX_EPOCH + Duration::from_millis(ms);
    let left = when
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(Budget {
        at: Instant::now() + left,
        name: format!("the deadline inherited from {DEADLINE_ENV}"),
        inherited: true,
    })
}

/// URL mode or command mode.
#[derive(Debug)]
pub enum Target {
    Url(Box<HttpSpec>),
    Command(CommandSpec),
}

/// One HTTP request, validated.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub url: Url,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub output: Option<PathBuf>,
    pub idempotency_key: Option<String>,
}

/// One command to run, and how to stop it.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub argv: Vec<OsString>,
    /// Signal number sent to the process group at the deadline.
    pub signal: i32,
    pub kill_after: Duration,
}

/// Settings of `rtb timeout`.
#[derive(Debug)]
pub struct TimeoutConfig {
    pub target: Target,
    /// `--timeout`, as the user gave it (for messages).
    pub timeout: Duration,
    /// The deadline actually enforced: `--timeout` from now, or an earlier
    /// inherited one.
    pub budget: Budget,
}

/// Settings of `rtb retry`.
#[derive(Debug)]
pub struct RetryConfig {
    pub target: Target,
    pub policy: RetryPolicy,
    /// HTTP statuses worth retrying.
    pub retry_on: CodeSet,
    /// Exit statuses worth retrying.
    pub retry_on_exit: CodeSet,
}

fn target(
    url: Option<String>,
    command: Vec<OsString>,
    request: RequestArgs,
    idempotency_key: Option<String>,
    kill: &KillArgs,
) -> Result<Target, Error> {
    match (url, command.is_empty()) {
        (Some(u), false) => Err(Error::Usage(format!(
            "give either a URL or `-- CMD`, not both (got URL '{}' and command '{}')",
            crate::http::redact_url_str(&u),
            command[0].to_string_lossy()
        ))),
        (None, true) => Err(Error::Usage(
            "missing URL or `-- CMD`: say what to run (see --help)".into(),
        )),
        (Some(u), true) => Ok(Target::Url(Box::new(http_spec(
            &u,
            request,
            idempotency_key,
        )?))),
        (None, false) => {
            let url_only = [
                ("--request", request.method.is_some()),
                ("--header", !request.headers.is_empty()),
                ("--data", request.data.is_some()),
                ("--output", request.output.is_some()),
                ("--idempotency-key", idempotency_key.is_some()),
            ];
            if let Some((flag, _)) = url_only.iter().find(|(_, set)| *set) {
                return Err(Error::Usage(format!(
                    "{flag} applies to URL mode only, not to `-- CMD`"
                )));
            }
            Ok(Target::Command(CommandSpec {
                argv: command,
                signal: crate::process::parse_signal(&kill.signal)
                    .map_err(|why| Error::invalid("--signal", &kill.signal, why))?,
                kill_after: kill.kill_after,
            }))
        }
    }
}

/// Validates a URL: it must parse, be http or https, and name a host.
pub fn parse_url(text: &str) -> Result<Url, Error> {
    let shown = crate::http::redact_url_str(text);
    let url = Url::parse(text.trim()).map_err(|e| Error::invalid("URL", &shown, e))?;
    if !matches!(url.scheme(), "http" | "https") {
        // In 'user:pw@host' the user parses as the scheme: name it only
        // when redaction left it in view.
        let why = if shown
            .to_ascii_lowercase()
            .starts_with(&format!("{}:", url.scheme()))
        {
            format!(
                "unsupported scheme '{}': rtb fetches http and https URLs",
                url.scheme()
            )
        } else {
            "not an http or https URL".to_string()
        };
        return Err(Error::invalid("URL", &shown, why));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid("URL", &shown, "no host"));
    }
    Ok(url)
}

fn http_spec(
    url: &str,
    request: RequestArgs,
    idempotency_key: Option<String>,
) -> Result<HttpSpec, Error> {
    let url = parse_url(url)?;
    let body =
        match request.data {
            None => None,
            Some(d) => match d.strip_prefix('@') {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    Error::invalid("--data", &d, format!("cannot read {path}: {e}"))
                })?),
                None => Some(d.into_bytes()),
            },
        };
    let method = match request.method {
        Some(m) => {
            let upper = m.to_ascii_uppercase();
            Method::from_bytes(upper.as_bytes())
                .ok()
                .filter(|_| !upper.is_empty() && upper.bytes().all(|b| b.is_ascii_alphabetic()))
                .ok_or_else(|| Error::invalid("--request", &m, "not an HTTP method"))?
        }
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    // Known before any request is sent: a POST must not be made only for
    // its answer to have nowhere to go.
    if let Some(out) = request.output.as_deref().filter(|p| p.is_dir()) {
        return Err(Error::invalid(
            "--output",
            out.display(),
            "is a directory; give a file path",
        ));
    }
    let mut headers = HeaderMap::new();
    for h in &request.headers {
        let (name, value) = crate::http::parse_header(h)
            .map_err(|why| Error::invalid("--header", crate::http::redact_header_arg(h), why))?;
        headers.append(name, value);
    }
    if let Some(key) = &idempotency_key {
        let value = HeaderValue::from_str(key)
            .ok()
            .filter(|_| !key.is_empty())
            .ok_or_else(|| {
                Error::invalid("--idempotency-key", key, "must be non-empty visible ASCII")
            })?;
        headers.insert(HeaderName::from_static("idempotency-key"), value);
    }
    Ok(HttpSpec {
        url,
        method,
        headers,
        body,
        output: request.output,
        idempotency_key,
    })
}

impl TimeoutConfig {
    pub fn from_args(a: TimeoutArgs) -> Result<Self, Error> {
        let target = target(a.url, a.command, a.request, None, &a.kill)?;
        let own = Budget::starting_now(a.timeout, format!("--timeout {}", fmt_duration(a.timeout)));
        let budget = Budget::min(Some(own), inherited_budget()).expect("own budget is set");
        Ok(TimeoutConfig {
            target,
            timeout: a.timeout,
            budget,
        })
    }
}

impl RetryConfig {
    pub fn from_args(a: RetryArgs) -> Result<Self, Error> {
        let target = target(a.url, a.command, a.request, a.idempotency_key, &a.kill)?;
        let own = a.max_time.map(|d| {
            Budget::starting_now(d, format!("the --max-time budget of {}", fmt_duration(d)))
        });
        let budget = Budget::min(own, inherited_budget());
        let policy = RetryPolicy {
            backoff: Backoff::default()
                .with_attempts(a.attempts)
                .with_delay(a.delay)
                .with_max_delay(a.max_delay)
                .with_jitter(a.jitter),
            timeout: a.timeout,
            budget: budget.map(|b| (b.at, b.name)),
            noun: match target {
                Target::Url(_) => "Request",
                Target::Command(_) => "Command",
            },
        };
        Ok(RetryConfig {
            target,
            policy,
            retry_on: a.retry_on,
            retry_on_exit: a.retry_on_exit.unwrap_or_else(CodeSet::any_failure),
        })
    }
}

/// Where `rtb file` takes its content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(Vec<u8>),
    File(PathBuf),
    Stdin,
}

/// The reference's default content.
pub const DEFAULT_CONTENT: &str = "Hello World";

/// Settings of `rtb file`.
#[derive(Debug)]
pub struct FileConfig {
    pub path: PathBuf,
    pub content: Content,
    /// Permission bits; `None` means 0666 less the umask.
    pub mode: Option<u32>,
    pub parents: bool,
    pub verify: bool,
}

impl FileConfig {
    pub fn from_args(a: FileArgs) -> Result<Self, Error> {
        if a.path.as_os_str().is_empty() {
            return Err(Error::invalid("PATH", "", "empty path"));
        }
        let content = match (a.content, a.from) {
            (Some(t), _) => Content::Text(t.into_bytes()),
            (None, Some(p)) if p.as_os_str() == "-" => Content::Stdin,
            (None, Some(p)) => Content::File(p),
            (None, None) => Content::Text(DEFAULT_CONTENT.as_bytes().to_vec()),
        };
        let mode = a
            .mode
            .as_deref()
            .map(|m| crate::file::parse_mode(m).map_err(|why| Error::invalid("--mode", m, why)))
            .transpose()?;
        Ok(FileConfig {
            path: a.path,
            content,
            mode,
            parents: a.parents,
            verify: a.verify,
        })
    }
}

/// What `rtb safe` was asked to do.
#[derive(Debug)]
pub enum SafeAction {
    /// Record ID, or run CMD once under it.
    Once {
        id: String,
        command: Option<Vec<OsString>>,
    },
    List,
    Show(String),
    Forget(String),
}

/// Settings of `rtb safe`.
#[derive(Debug)]
pub struct SafeConfig {
    pub action: SafeAction,
    pub store: crate::guard::StoreSpec,
    pub lease: Duration,
    pub wait: Duration,
    pub replay: bool,
    pub strict: bool,
    pub json: bool,
}

impl SafeConfig {
    pub fn from_args(a: SafeArgs) -> Result<Self, Error> {
        let id = |flag: &str, v: &str| {
            crate::guard::parse_id(v).map_err(|why| Error::invalid(flag, v, why))
        };
        let action = if a.list {
            SafeAction::List
        } else if let Some(v) = &a.show {
            SafeAction::Show(id("--show", v)?)
        } else if let Some(v) = &a.forget {
            SafeAction::Forget(id("--forget", v)?)
        } else {
            let v = a.id.as_deref().unwrap_or_default();
            SafeAction::Once {
                id: id("ID", v)?,
                command: (!a.command.is_empty()).then_some(a.command.clone()),
            }
        };
        if !matches!(action, SafeAction::Once { .. }) {
            if let Some(v) = &a.id {
                return Err(Error::Usage(format!(
                    "unexpected ID '{v}' with --list, --show or --forget"
                )));
            }
            if !a.command.is_empty() {
                return Err(Error::Usage(
                    "`-- CMD` goes with an ID, not with --list, --show or --forget".into(),
                ));
            }
        }
        if a.replay
            && !matches!(
                &action,
                SafeAction::Once {
                    command: Some(_),
                    ..
                }
            )
        {
            return Err(Error::Usage(
                "--replay needs a command: rtb safe ID --replay -- CMD".into(),
            ));
        }
        if a.lease < Duration::from_secs(1) {
            return Err(Error::invalid(
                "--lease",
                crate::duration::fmt_duration(a.lease),
                "must be at least 1s: the claim is renewed every third of it, and a shorter \
                 lease could lapse while the command runs",
            ));
        }
        let store = crate::guard::StoreSpec::resolve(a.store.as_deref())?;
        Ok(SafeConfig {
            action,
            store,
            lease: a.lease,
            wait: a.wait,
            replay: a.replay,
            strict: a.strict,
            json: a.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Case counts come from proptest's default config, which honours
    // PROPTEST_CASES (scripts/fuzz runs 100,000 per parser).
    proptest! {
        #[test]
        fn parse_url_never_panics(text in ".*") {
            let _ = parse_url(&text);
        }

        #[test]
        fn urls_round_trip(
            scheme in "https?",
            host in "[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
            port in proptest::option::of(1u16..),
            path in "(/[a-zA-Z0-9._~-]{0,10}){0,4}",
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let text = format!("{scheme}://{host}{port}{path}");
            let url = parse_url(&text).unwrap();
            prop_assert_eq!(url.scheme(), scheme.as_str());
            prop_assert_eq!(url.host_str(), Some(host.as_str()));
            prop_assert_eq!(parse_url(url.as_str()).unwrap(), url);
        }

        #[test]
        fn refused_urls_never_show_a_password(text in "[a-z]{0,6}:(//)?[a-z]{0,4}:S3CRET@[ -~]{0,20}") {
            if let Err(e) = parse_url(&text) {
                let msg = e.to_string();
                prop_assert!(!msg.contains("S3CRET"), "{} -> {}", text, msg);
            }
        }
    }
}
