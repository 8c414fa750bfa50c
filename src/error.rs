//! The one error type every command returns, and its one exit-code mapping.
//!
//! Mechanisms keep their own typed errors (they need them to classify
//! failures); what reaches the top is one of these variants, each of which
//! already carries the message a person can act on.

use std::io;

/// Exit codes, as the README's table lists them.
pub mod code {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const DIFFERS: u8 = 3;
    pub const TEMPFAIL: u8 = 75;
    pub const TIMED_OUT: u8 = 124;
    pub const OWN_FAILURE: u8 = 125;
    pub const CANNOT_EXECUTE: u8 = 126;
    pub const NOT_FOUND: u8 = 127;
}

/// What went wrong, already worded for the person reading stderr.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad or missing argument (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The operation failed: error status, network error, timeout, retries
    /// exhausted, I/O error (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The thing exists but differs from what was asked for (exit 3).
    #[error("{0}")]
    Differs(String),
    /// Someone else is doing it right now; try again later (exit 75).
    #[error("{0}")]
    InProgress(String),
    /// A command-mode failure with its own exit status (124-127, 128+N, or
    /// the command's status); `message` may be empty when the command's own
    /// status is the whole story.
    #[error("{message}")]
    Status { message: String, code: u8 },
}

impl Error {
    /// `invalid value 'VALUE' for 'FLAG': REASON`, exit 2.
    pub fn invalid(
        flag: &str,
        value: impl std::fmt::Display,
        reason: impl std::fmt::Display,
    ) -> Self {
        Error::Usage(format!("invalid value '{value}' for '{flag}': {reason}"))
    }

    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => code::USAGE,
            Error::Failed(_) => code::FAILED,
            Error::Differs(_) => code::DIFFERS,
            Error::InProgress(_) => code::TEMPFAIL,
            Error::Status { code, .. } => *code,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Failed(e.to_string())
    }
}

/// What a command returns: the exit code on success paths, or the error.
pub type Outcome = Result<u8, Error>;
