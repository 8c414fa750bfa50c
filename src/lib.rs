//! rtb, the resilience toolbox: bound, retry and guard network calls,
//! commands, file creation and side effects.
//!
//! `run` is the whole program: parse the command line, validate it into a
//! config, hand it to the command's mechanism, and map the result to one
//! exit code. Policy (`retry`) is kept apart from mechanisms (`http`,
//! `process`, `file`, `guard`).

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod duration;
pub mod error;
pub mod file;
pub mod guard;
pub mod http;
pub mod logging;
pub mod process;
pub mod retry;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::config::{RetryConfig, SafeConfig, Target, TimeoutConfig};
use crate::error::{code, Error, Outcome};

/// Runs rtb with these arguments (the first is the program name).
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // --help and --version are not errors; everything else is exit 2.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(code::OK);
        }
        Err(e) => {
            print_usage_error(&e);
            return ExitCode::from(code::USAGE);
        }
    };
    logging::init(cli.global.log_format, cli.global.quiet, cli.global.verbose);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(code::FAILED);
        }
    };
    let result = rt.block_on(dispatch(cli));
    // Do not wait for a blocking DNS lookup we abandoned at a deadline.
    rt.shutdown_background();
    match result {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            let msg = e.to_string();
            if !msg.is_empty() {
                tracing::error!("{msg}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(cli: Cli) -> Outcome {
    match cli.command {
        Command::Timeout(a) => {
            let cfg = TimeoutConfig::from_args(a)?;
            match cfg.target {
                Target::Url(ref spec) => http::run_timeout(spec, &cfg).await,
                Target::Command(ref spec) => process::run_timeout(spec, &cfg).await,
            }
        }
        Command::Retry(a) => {
            let cfg = RetryConfig::from_args(a)?;
            match cfg.target {
                Target::Url(ref spec) => http::run_retry(spec, &cfg).await,
                Target::Command(ref spec) => process::run_retry(spec, &cfg).await,
            }
        }
        Command::File(a) => file::run(&config::FileConfig::from_args(a)?),
        Command::Safe(a) => guard::run(SafeConfig::from_args(a)?).await,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            // Into a buffer first: clap_complete panics on a write error,
            // and `rtb completions bash | head` closes the pipe early.
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "rtb", &mut out);
            write_stdout(&out)?;
            Ok(code::OK)
        }
        Command::Man => {
            let page = clap_mangen::Man::new(Cli::command());
            let mut out = Vec::new();
            page.render(&mut out)
                .map_err(|e| Error::Failed(format!("cannot render the man page: {e}")))?;
            write_stdout(&out)?;
            Ok(code::OK)
        }
    }
}

/// Prints clap's error without its blank lines: an unknown flag with its
/// tip and usage line stays four short lines instead of seven.
fn print_usage_error(e: &clap::Error) {
    use std::io::{IsTerminal, Write};
    let styled = e.render();
    let plain = styled.to_string();
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let shown = if color {
        styled.ansi().to_string()
    } else {
        plain.clone()
    };
    // Escape codes hold no newlines: the two renderings' lines pair up.
    let mut out = String::new();
    for (p, s) in plain.lines().zip(shown.lines()) {
        if !p.trim().is_empty() {
            out.push_str(s);
            out.push('\n');
        }
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// Writes to stdout; a closed pipe (`rtb ... | head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
