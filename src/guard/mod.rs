//! `rtb safe`: the idempotency guard. "At most once per ID" across runs,
//! concurrent processes, crashes and hosts.
//!
//! This module owns the record model and the `Store` trait; the stores
//! (`sqlite`, `postgres`) only persist records and decide claims atomically,
//! `once` holds the claim/lease/fence flow around the command, `admin` the
//! --list/--show/--forget views. No store ever keeps a transaction open while
//! the command runs, and no store ever repairs or recreates a bad store.

mod admin;
mod once;
pub mod postgres;
pub mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{SafeAction, SafeConfig};
use crate::error::{Error, Outcome};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Environment variable naming the store (same syntax as `--store`).
pub const STORE_ENV: &str = "RTB_STORE";
/// The ID handed to the command.
pub const ID_ENV: &str = "RTB_SAFE_ID";
/// The claim's fence number handed to the command.
pub const FENCE_ENV: &str = "RTB_FENCE";
/// The table both stores keep their records in.
pub const TABLE: &str = "rtb_guard";
/// At most this much of a command's stdout is kept for --replay.
pub const REPLAY_LIMIT: usize = 1024 * 1024;

/// Validates an ID: 1 to 256 bytes of printable UTF-8.
///
/// # Errors
/// A reason when it is empty, too long, or holds a control character.
pub fn parse_id(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("an ID cannot be empty".into());
    }
    if text.len() > 256 {
        return Err(format!(
            "an ID is at most 256 bytes, this one is {}",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("an ID cannot hold control characters".into());
    }
    Ok(text.to_string())
}

/// Where the guard keeps its records.
#[derive(Clone)]
pub enum StoreSpec {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL (it may hold a password: never
    /// print it, print [`StoreSpec::shown`]).
    Postgres(String),
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl StoreSpec {
    /// From `--store` / RTB_STORE, or the default path
    /// (`$XDG_STATE_HOME/rtb/guard.db`, else `~/.local/state/rtb/guard.db`).
    ///
    /// # Errors
    /// A usage error for a value that is no store.
    pub fn resolve(given: Option<&str>) -> Result<Self, Error> {
        let Some(text) = given else {
            return Self::default_path().map(StoreSpec::Sqlite);
        };
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreSpec::Postgres(text.to_string()));
        }
        let path = text.strip_prefix("sqlite:").unwrap_or(text);
        if path.is_empty() {
            return Err(Error::invalid(
                "--store",
                text,
                "give a path, sqlite:PATH, or a postgres:// URL",
            ));
        }
        if let Some((scheme, _)) = path.split_once("://") {
            // In 'user:pw@host://' the "scheme" holds the password: name it
            // only when it is a real scheme.
            let scheme_ok = !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            let why = if scheme_ok {
                format!(
                    "unsupported scheme '{scheme}': give a path, sqlite:PATH, or a postgres:// URL"
                )
            } else {
                "give a path, sqlite:PATH, or a postgres:// URL".to_string()
            };
            return Err(Error::invalid("--store", redact_store_url(text), why));
        }
        Ok(StoreSpec::Sqlite(PathBuf::from(path)))
    }

    fn default_path() -> Result<PathBuf, Error> {
        let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let base = if let Some(s) = nonempty("XDG_STATE_HOME") {
            PathBuf::from(s)
        } else if let Some(h) = nonempty("HOME") {
            PathBuf::from(h).join(".local").join("state")
        } else {
            return Err(Error::Usage(
                "no store: neither XDG_STATE_HOME nor HOME is set; give --store or RTB_STORE"
                    .into(),
            ));
        };
        Ok(base.join("rtb").join("guard.db"))
    }

    /// The store as it may be printed: a URL's password is hidden.
    pub fn shown(&self) -> String {
        match self {
            StoreSpec::Sqlite(p) => p.display().to_string(),
            StoreSpec::Postgres(u) => redact_store_url(u),
        }
    }
}

/// A command line (as [`shell_join`] made it) as a log line may show it:
/// each word that holds a URL with credentials has them hidden. The record
/// keeps the real command; only what is printed is redacted.
pub fn redact_command(line: &str) -> String {
    line.split(' ')
        .map(|w| {
            if w.contains('@') && w.contains(':') {
                crate::http::redact_url_str(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Query parameters of a PostgreSQL URL whose values are secrets.
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// A store URL as it may be printed: the user and password hidden, and
/// so are `?password=` and `?sslpassword=`, which libpq URLs also take.
pub fn redact_store_url(text: &str) -> String {
    let shown = crate::http::redact_url_str(text);
    let Some((base, query)) = shown.split_once('?') else {
        return shown;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) => {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Claimed; the command is (or was, if the lease expired) running.
    Running,
    /// The command succeeded (or `safe ID` recorded it): never again.
    Done,
    /// The claim was given up (command failed, interrupted, forgotten): the
    /// row only keeps the fence counter rising; it is no record.
    Released,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Done => "done",
            State::Released => "released",
        }
    }

    /// # Errors
    /// The text when it names no state (a store written by something else).
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "running" => Ok(State::Running),
            "done" => Ok(State::Done),
            "released" => Ok(State::Released),
            other => Err(Error::Failed(format!(
                "the guard store holds an unknown state '{other}'"
            ))),
        }
    }
}

/// One ID's row. Times are Unix milliseconds by the store's clock.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub state: State,
    pub fence: i64,
    pub host: String,
    pub pid: i64,
    pub token: String,
    /// The command, shell-quoted; empty for a bare `rtb safe ID`.
    pub command: String,
    pub exit_status: Option<i32>,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub lease_until_ms: i64,
    /// Running and its lease not yet over, by the store's clock.
    pub live: bool,
    /// Stored stdout (only `get` loads it).
    pub output: Option<Vec<u8>>,
    pub output_len: i64,
    pub output_cut: bool,
}

impl Record {
    /// "host H, pid P, since T"
    pub fn whereabouts(&self) -> String {
        format!(
            "host {}, pid {}, since {}",
            self.host,
            self.pid,
            fmt_ms(self.started_ms)
        )
    }
}

/// Who holds a claim: this process, and a random token that fences it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub host: String,
    pub pid: i64,
    pub token: String,
}

impl Owner {
    pub fn me() -> Self {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        Owner {
            host,
            pid: i64::from(std::process::id()),
            token,
        }
    }
}

/// What a claim attempt found.
#[derive(Debug)]
pub enum Claim {
    /// This owner holds the ID now, under this fence; `lost` is the owner
    /// whose lease had expired, if one was taken over.
    Won { fence: i64, lost: Option<Record> },
    /// Already done: skip.
    Done(Record),
    /// Someone else holds a live claim.
    Busy(Record),
}

/// How a finished command is recorded.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    pub exit_status: i32,
    pub output: Option<Vec<u8>>,
    pub output_cut: bool,
}

/// What `forget` did.
#[derive(Debug)]
pub enum Forgot {
    Forgotten,
    NotRecorded,
    /// A live claim holds it: not forgotten.
    Busy(Record),
}

/// A place records live. Claims are one atomic step; renew, finish and
/// release are conditional on (id, token, fence) and answer `false` when the
/// claim was lost.
#[allow(async_fn_in_trait)] // used generically inside the crate only
pub trait Store {
    /// Claims `id` for `owner` if it is absent, released, or its lease expired.
    async fn claim(
        &self,
        id: &str,
        owner: &Owner,
        command: &str,
        lease: Duration,
    ) -> Result<Claim, Error>;
    /// Pushes the lease end to now + `lease`.
    async fn renew(
        &self,
        id: &str,
        owner: &Owner,
        fence: i64,
        lease: Duration,
    ) -> Result<bool, Error>;
    /// Marks the claim done.
    async fn finish(
        &self,
        id: &str,
        owner: &Owner,
        fence: i64,
        how: &Finish,
    ) -> Result<bool, Error>;
    /// Gives the claim up: no record.
    async fn release(&self, id: &str, owner: &Owner, fence: i64) -> Result<bool, Error>;
    /// One ID's record, output included; released rows are no record.
    async fn get(&self, id: &str) -> Result<Option<Record>, Error>;
    /// Every record (running or done), output not loaded.
    async fn list(&self) -> Result<Vec<Record>, Error>;
    /// Deletes a record so the ID can be done again (the fence keeps rising).
    async fn forget(&self, id: &str) -> Result<Forgot, Error>;
}

/// Runs `rtb safe`.
pub async fn run(cfg: SafeConfig) -> Outcome {
    match &cfg.store {
        StoreSpec::Sqlite(path) => {
            let store = SqliteStore::open(path)?;
            dispatch(&store, &cfg).await
        }
        StoreSpec::Postgres(url) => {
            let store = PgStore::connect(url, postgres::CONNECT_TIMEOUT).await?;
            dispatch(&store, &cfg).await
        }
    }
}

async fn dispatch<S: Store>(store: &S, cfg: &SafeConfig) -> Outcome {
    match &cfg.action {
        SafeAction::Once { id, command } => once::run(store, cfg, id, command.as_deref()).await,
        SafeAction::List => admin::list(store, cfg.json).await,
        SafeAction::Show(id) => admin::show(store, id, cfg.json).await,
        SafeAction::Forget(id) => admin::forget(store, id).await,
    }
}

/// Unix milliseconds now, by this host's clock (the SQLite store's clock).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Unix milliseconds as local time, `2026-12-04 19:07:28`.
pub fn fmt_ms(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => format!("@{ms}ms"),
    }
}

/// Unix milliseconds as RFC 3339 (for --json).
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A command line as a person would type it: arguments that need it are
/// single-quoted.
pub fn shell_join(argv: &[std::ffi::OsString]) -> String {
    let quote = |a: &std::ffi::OsString| {
        let s = a.to_string_lossy();
        let plain = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
        if plain {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(parse_id("db-001").is_ok());
        assert!(parse_id("").is_err());
        assert!(parse_id(&"x".repeat(256)).is_ok());
        assert!(parse_id(&"x".repeat(257)).is_err());
        assert!(parse_id("a\nb").is_err());
        assert!(parse_id("a\u{7f}b").is_err());
        assert!(parse_id("é-ü").is_ok());
    }

    #[test]
    fn store_specs() {
        assert!(matches!(
            StoreSpec::resolve(Some("postgres://u:pw@h/db")).unwrap(),
            StoreSpec::Postgres(_)
        ));
        assert!(matches!(
            StoreSpec::resolve(Some("postgresql://h/db")).unwrap(),
            StoreSpec::Postgres(_)
        ));
        match StoreSpec::resolve(Some("sqlite:/tmp/g.db")).unwrap() {
            StoreSpec::Sqlite(p) => assert_eq!(p, PathBuf::from("/tmp/g.db")),
            other => panic!("{other:?}"),
        }
        match StoreSpec::resolve(Some("rel/g.db")).unwrap() {
            StoreSpec::Sqlite(p) => assert_eq!(p, PathBuf::from("rel/g.db")),
            other => panic!("{other:?}"),
        }
        assert!(StoreSpec::resolve(Some("")).is_err());
        assert!(StoreSpec::resolve(Some("sqlite:")).is_err());
        let e = StoreSpec::resolve(Some("mysql://u:hunter2@h/db")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let shown = format!(
            "{:?}",
            StoreSpec::resolve(Some("postgres://u:hunter2@h/db"))
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn quoting() {
        let argv: Vec<std::ffi::OsString> = ["sh", "-c", "echo it's", "a/b.c"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(shell_join(&argv), r"sh -c 'echo it'\''s' a/b.c");
        assert_eq!(
            redact_command("curl -fsS 'http://alice:s3cret@h/x y' a@b.c"),
            "curl -fsS ***@h/x y' a@b.c"
        );
    }

    /// The store conformance suite: every store must pass it.
    async fn conformance<S: Store>(store: &S) {
        let a = Owner::me();
        let mut b = Owner::me();
        b.host = "other-host".into();
        let long = Duration::from_secs(30);

        // A fresh ID: exactly one claimant wins.
        let Claim::Won {
            fence: 1,
            lost: None,
        } = store.claim("k1", &a, "cmd", long).await.unwrap()
        else {
            panic!("first claim must win with fence 1")
        };
        match store.claim("k1", &b, "cmd", long).await.unwrap() {
            Claim::Busy(r) => assert_eq!((r.host.as_str(), r.fence), (a.host.as_str(), 1)),
            other => panic!("{other:?}"),
        }
        // Only the holder may renew or finish.
        assert!(!store.renew("k1", &b, 1, long).await.unwrap());
        assert!(!store.finish("k1", &b, 1, &Finish::default()).await.unwrap());
        assert!(store.renew("k1", &a, 1, long).await.unwrap());
        assert!(store.finish("k1", &a, 1, &Finish::default()).await.unwrap());
        assert!(matches!(
            store.claim("k1", &b, "cmd", long).await.unwrap(),
            Claim::Done(_)
        ));

        // Released: no record, and the next claim's fence rises.
        let Claim::Won { fence: 1, .. } = store.claim("k2", &a, "c", long).await.unwrap() else {
            panic!()
        };
        assert!(store.release("k2", &a, 1).await.unwrap());
        assert!(store.get("k2").await.unwrap().is_none());
        assert!(!store.release("k2", &a, 1).await.unwrap());
        let Claim::Won {
            fence: 2,
            lost: None,
        } = store.claim("k2", &b, "c", long).await.unwrap()
        else {
            panic!("a released ID is claimed again with a higher fence")
        };

        // An expired lease is taken over; the stale owner is fenced out.
        let short = Duration::from_millis(50);
        let Claim::Won { fence: 1, .. } = store.claim("k3", &a, "c", short).await.unwrap() else {
            panic!()
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        match store.claim("k3", &b, "c", long).await.unwrap() {
            Claim::Won {
                fence: 2,
                lost: Some(l),
            } => assert_eq!(l.token, a.token),
            other => panic!("expected a takeover, got {other:?}"),
        }
        assert!(
            !store.renew("k3", &a, 1, long).await.unwrap(),
            "stale renew"
        );
        assert!(
            !store.finish("k3", &a, 1, &Finish::default()).await.unwrap(),
            "stale finish"
        );
        assert!(!store.release("k3", &a, 1).await.unwrap(), "stale release");
        let how = Finish {
            exit_status: 0,
            output: Some(b"out\n".to_vec()),
            output_cut: false,
        };
        assert!(store.finish("k3", &b, 2, &how).await.unwrap());
        let r = store.get("k3").await.unwrap().expect("k3 is done");
        assert_eq!(
            (r.state, r.fence, r.token.as_str()),
            (State::Done, 2, b.token.as_str())
        );
        assert_eq!(r.output.as_deref(), Some(&b"out\n"[..]));

        // Forget: gone from list and show; claimed again with a higher fence.
        let listed: Vec<String> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert!(matches!(
            store.forget("k3").await.unwrap(),
            Forgot::Forgotten
        ));
        assert!(matches!(
            store.forget("k3").await.unwrap(),
            Forgot::NotRecorded
        ));
        assert!(store.get("k3").await.unwrap().is_none());
        let Claim::Won { fence: 3, .. } = store.claim("k3", &a, "c", long).await.unwrap() else {
            panic!()
        };
        assert!(matches!(store.forget("k3").await.unwrap(), Forgot::Busy(_)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sqlite_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sub/guard.db")).unwrap();
        conformance(&store).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn postgres_conformance() {
        let Ok(url) = std::env::var("RTB_TEST_POSTGRES_URL") else {
            eprintln!("skipped: RTB_TEST_POSTGRES_URL is not set");
            return;
        };
        let schema = format!("rtb_unit_{:016x}", fastrand::u64(..));
        let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{sep}options=-csearch_path%3D{schema}");
        let store = PgStore::connect(&scoped, postgres::CONNECT_TIMEOUT)
            .await
            .unwrap();
        conformance(&store).await;
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    // Case counts come from proptest's default config, which honours
    // PROPTEST_CASES (scripts/fuzz runs 100,000 per parser).
    proptest::proptest! {
        #[test]
        fn parse_id_never_panics(text in ".*") {
            let _ = parse_id(&text);
        }

        #[test]
        fn ids_round_trip(id in "[^\\p{Cc}]{1,64}") {
            if id.len() <= 256 {
                proptest::prop_assert_eq!(parse_id(&id), Ok(id.clone()));
            }
        }

        #[test]
        fn long_or_control_ids_are_refused(n in 257usize..600, c in "\\p{Cc}") {
            proptest::prop_assert!(parse_id(&"x".repeat(n)).is_err());
            let with_control = format!("a{c}b");
            proptest::prop_assert!(parse_id(&with_control).is_err());
        }

        #[test]
        fn resolve_never_panics(text in ".*") {
            let _ = StoreSpec::resolve(Some(&text));
            let _ = redact_store_url(&text);
        }

        #[test]
        fn store_urls_and_paths_round_trip(
            scheme in "postgres(ql)?",
            rest in "[a-z0-9@:/.?=&%-]{0,40}",
            path in "[a-zA-Z0-9_./-]{1,40}",
        ) {
            let url = format!("{scheme}://{rest}");
            let resolved = StoreSpec::resolve(Some(&url));
            proptest::prop_assert!(matches!(&resolved, Ok(StoreSpec::Postgres(u)) if *u == url));
            if !path.contains("://") {
                let want = std::path::PathBuf::from(&path);
                for given in [path.clone(), format!("sqlite:{path}")] {
                    let resolved = StoreSpec::resolve(Some(&given));
                    proptest::prop_assert!(matches!(&resolved, Ok(StoreSpec::Sqlite(p)) if *p == want));
                }
            }
        }

        #[test]
        fn store_passwords_never_show(
            given in "(postgres(ql)?|[a-z]{1,5})://([a-z]{0,5}:)?S3CRET@[a-z0-9.:/ ]{0,15}",
            query in "(\\?(ssl)?password=S3CRET(&[a-z]=1)?)?",
        ) {
            let text = format!("{given}{query}");
            let shown = match StoreSpec::resolve(Some(&text)) {
                Ok(spec) => spec.shown(),
                Err(e) => e.to_string(),
            };
            proptest::prop_assert!(!shown.contains("S3CRET"), "{} -> {}", text, shown);
        }
    }
}
