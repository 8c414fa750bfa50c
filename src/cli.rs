//! What the user typed: clap derive definitions and nothing more.
//!
//! Single values are parsed here (durations, lists, signals, modes) so clap
//! names the flag in its error; rules that tie flags together live in
//! `config`, which turns these into ready-to-use settings.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::duration::{parse_duration, parse_wait};
use crate::logging::LogFormat;
use crate::retry::{parse_exit_list, parse_status_list, CodeSet, Jitter};

const ABOUT: &str = "The resilience toolbox: bound, retry and guard network calls, commands, \
file creation and side effects. Never hang, never duplicate a side effect, never leave a \
half-made result.";

const EXAMPLES: &str = "\
Examples:
  rtb timeout --timeout 3s https://example.com/health
  rtb retry --attempts 5 --max-time 1m https://example.com/api -o out.json
  rtb retry --timeout 10m -- ./deploy.sh
  rtb file /etc/app/initialized --content done
  rtb safe db-001 -- ./create-db.sh db-001

Durations: a bare number is seconds (5, 0.5), or a number with a unit (250ms, 3s, 2m).
Exit codes: 0 ok, 1 failed, 2 usage error, 3 exists with other content, 75 in progress
elsewhere, 124 timed out, 125 rtb failed, 126 cannot execute, 127 not found, 128+N killed
by signal N.";

#[derive(Debug, Parser)]
#[command(name = "rtb", version, about = ABOUT, after_help = EXAMPLES)]
#[command(propagate_version = true, max_term_width = 100)]
// `rtb` alone is a usage error like any other: a short one, not the help.
#[command(arg_required_else_help = false)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print debug messages too (twice: trace).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "RTB_LOG_FORMAT",
        hide_env_values = true,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bound a URL fetch or a command by a real deadline.
    #[command(after_help = TIMEOUT_EXAMPLES)]
    Timeout(TimeoutArgs),
    /// Retry a URL fetch or a command, with backoff, only where retrying is safe.
    #[command(after_help = RETRY_EXAMPLES)]
    Retry(RetryArgs),
    /// Create a file once: atomic, race-free, crash-safe.
    #[command(after_help = FILE_EXAMPLES)]
    File(FileArgs),
    /// Do a thing at most once per ID, across runs, processes, crashes and hosts.
    #[command(after_help = SAFE_EXAMPLES)]
    Safe(SafeArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  rtb completions bash > ~/.local/share/bash-completion/completions/rtb\n  rtb completions zsh > ~/.zfunc/_rtb\n  rtb completions fish > ~/.config/fish/completions/rtb.fish"
    )]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(
        after_help = "Examples:\n  rtb man > /usr/local/share/man/man1/rtb.1\n  rtb man | man -l -"
    )]
    Man,
}

const TIMEOUT_EXAMPLES: &str = "\
Examples:
  rtb timeout http://127.0.0.1:8080/health             # GET, 5s deadline for the whole response
  rtb timeout --timeout 250ms -o body.json http://127.0.0.1:8080/api
  rtb timeout --timeout 1m --kill-after 10s -- terraform apply -auto-approve";

const RETRY_EXAMPLES: &str = "\
Examples:
  rtb retry http://127.0.0.1:8080/api                  # 3 attempts, 1s then 2s apart
  rtb retry --attempts 5 --max-time 30s --jitter full -o out.json http://127.0.0.1:8080/api
  rtb retry -X POST -d @order.json --idempotency-key order-42 http://127.0.0.1:8080/orders
  rtb retry --attempts 4 --timeout 5m --retry-on-exit 1,75 -- ./flaky-step.sh";

const FILE_EXAMPLES: &str = "\
Examples:
  rtb file /tmp/hello.txt                              # writes \"Hello World\" once
  rtb file --parents --mode 600 --content \"$TOKEN\" /run/app/token
  some-generator | rtb file --from - --verify out/report.csv";

const SAFE_EXAMPLES: &str = "\
Examples:
  rtb safe db-001                                      # record db-001 once
  rtb safe db-001 -- ./create-db.sh db-001             # run it at most once, ever
  VM=$(rtb safe vm-1 --replay -- ./create-vm.sh)        # same answer on every run
  rtb safe --store postgres://guard@db.internal/ops deploy-42 -- ./deploy.sh
  rtb safe --list --json";

/// Where a fetched body goes and how the request is made.
#[derive(Debug, Args, Clone, Default)]
pub struct RequestArgs {
    /// HTTP method (URL mode).
    #[arg(short = 'X', long = "request", value_name = "METHOD", value_parser = Utf8)]
    pub method: Option<String>,
    /// Extra request header 'Name: value' (repeatable; URL mode).
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = Utf8)]
    pub headers: Vec<String>,
    /// Request body, or @FILE to read it from a file (URL mode).
    #[arg(short = 'd', long = "data", value_name = "DATA", value_parser = Utf8)]
    pub data: Option<String>,
    /// Write the body to FILE (atomically) instead of stdout (URL mode).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// How a command is stopped at its deadline.
#[derive(Debug, Args, Clone)]
pub struct KillArgs {
    /// Signal sent to the command's process group at the deadline (name or number).
    #[arg(short = 's', long, value_name = "SIGNAL", default_value = "TERM", value_parser = Utf8)]
    pub signal: String,
    /// Send KILL this long after SIGNAL if anything is still alive.
    #[arg(short = 'k', long, value_name = "DUR", default_value = "5s", value_parser = duration(), allow_negative_numbers = true)]
    pub kill_after: Duration,
}

#[derive(Debug, Args)]
pub struct TimeoutArgs {
    /// The URL to GET (http or https). Use `-- CMD` instead to bound a command.
    #[arg(value_parser = Utf8)]
    pub url: Option<String>,
    /// The deadline for the whole request or command.
    #[arg(short = 't', long, value_name = "DUR", default_value = "5s", value_parser = duration(), allow_negative_numbers = true)]
    pub timeout: Duration,
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub kill: KillArgs,
    /// The command to run, after `--` (no shell).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The URL to fetch (http or https). Use `-- CMD` instead to retry a command.
    #[arg(value_parser = Utf8)]
    pub url: Option<String>,
    /// Attempts in all, the first included.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000), allow_negative_numbers = true)]
    pub attempts: u32,
    /// The longest one attempt may take.
    #[arg(short = 't', long, value_name = "DUR", default_value = "5s", value_parser = duration(), allow_negative_numbers = true)]
    pub timeout: Duration,
    /// The delay before the second attempt; each later one doubles.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = duration(), allow_negative_numbers = true)]
    pub delay: Duration,
    /// No single delay (nor a server's Retry-After) longer than this.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = duration(), allow_negative_numbers = true)]
    pub max_delay: Duration,
    /// Budget for the whole run, sleeps included; a running attempt is cut off.
    #[arg(long, value_name = "DUR", value_parser = duration(), allow_negative_numbers = true)]
    pub max_time: Option<Duration>,
    /// Randomise delays: none, full (0..d) or equal (d/2..d).
    #[arg(long, value_enum, default_value = "none", value_name = "KIND")]
    pub jitter: Jitter,
    /// HTTP statuses to retry (URL mode); 400, 401, 403 and 404 never are.
    #[arg(long, value_name = "LIST", default_value = "429,500,502,503,504", value_parser = Utf8.try_map(|s| parse_status_list(&s)))]
    pub retry_on: CodeSet,
    /// Exit statuses to retry (command mode; default: any non-zero but 126, 127).
    #[arg(long, value_name = "LIST", value_parser = Utf8.try_map(|s| parse_exit_list(&s)))]
    pub retry_on_exit: Option<CodeSet>,
    /// Sent as `Idempotency-Key: KEY` on every attempt; makes retrying POST/PATCH safe.
    #[arg(long, value_name = "KEY", value_parser = Utf8)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub kill: KillArgs,
    /// The command to run, after `--` (no shell).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The file to create.
    pub path: PathBuf,
    /// The content to write [default: "Hello World", as the reference].
    #[arg(short, long, value_name = "TEXT", conflicts_with = "from", value_parser = Utf8)]
    pub content: Option<String>,
    /// Read the content from FILE, or from stdin with `-`.
    #[arg(short, long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Permission bits in octal [default: 0666 less the umask].
    #[arg(short, long, value_name = "OCTAL", value_parser = Utf8)]
    pub mode: Option<String>,
    /// Create missing parent directories.
    #[arg(short, long)]
    pub parents: bool,
    /// If PATH exists, check that it holds this content (exit 3 if not).
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct SafeArgs {
    /// The ID to do at most once (1-256 bytes of printable UTF-8).
    #[arg(required_unless_present_any = ["list", "show", "forget"], value_parser = Utf8)]
    pub id: Option<String>,
    /// The guard's store: a path, sqlite:PATH, or a postgres:// URL
    /// [default: $XDG_STATE_HOME/rtb/guard.db].
    #[arg(long, env = "RTB_STORE", value_name = "STORE", hide_env_values = true, value_parser = Utf8)]
    pub store: Option<String>,
    /// How long a claim lasts without renewal (renewed every third of it).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = duration(), allow_negative_numbers = true)]
    pub lease: Duration,
    /// How long to wait for a claim held elsewhere before exiting 75 (0: not at all).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = Utf8.try_map(|s| parse_wait(&s)), allow_negative_numbers = true)]
    pub wait: Duration,
    /// Capture CMD's stdout (up to 1 MiB) and print it again on later runs.
    #[arg(long)]
    pub replay: bool,
    /// Exit 3 when ID is recorded for a different command.
    #[arg(long)]
    pub strict: bool,
    /// List every recorded ID.
    #[arg(long, conflicts_with_all = ["show", "forget"])]
    pub list: bool,
    /// With --list or --show: JSON output.
    #[arg(long)]
    pub json: bool,
    /// Show one ID's record.
    #[arg(long, value_name = "ID", conflicts_with = "forget", value_parser = Utf8)]
    pub show: Option<String>,
    /// Delete one ID's record, so it can be done again.
    #[arg(long, value_name = "ID", value_parser = Utf8)]
    pub forget: Option<String>,
    /// The command to run at most once, after `--` (no shell).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// clap's text parser, except that a value that is not UTF-8 is named in
/// the error (lossily, secrets hidden) rather than reported anonymously as
/// "invalid UTF-8 was detected in one or more arguments".
#[derive(Debug, Clone, Copy)]
pub struct Utf8;

impl TypedValueParser for Utf8 {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        value.to_str().map(str::to_owned).ok_or_else(|| {
            let lossy = value.to_string_lossy();
            let shown = crate::http::redact_url_str(&crate::http::redact_header_arg(&lossy));
            let flag = arg.map_or_else(|| "argument".into(), ToString::to_string);
            cmd.clone().error(
                ErrorKind::InvalidUtf8,
                format!("invalid value '{shown}' for '{flag}': not valid UTF-8"),
            )
        })
    }
}

/// A duration flag's parser: [`parse_duration`] behind [`Utf8`].
fn duration() -> impl TypedValueParser<Value = Duration> {
    Utf8.try_map(|s| parse_duration(&s))
}
