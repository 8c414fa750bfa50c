//! `rtb timeout -- CMD` and `rtb retry -- CMD`: the spawn/wait API under
//! the deadline, and the attempt that `retry::retry` (the one loop) runs.
//!
//! Policy stays in `retry`: this file only says how an attempt failed and
//! whether that status is worth retrying.

use std::cell::Cell;
use std::ffi::OsString;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::child::{spawn, EndKind, Ended, Spawn};
use super::signals::{signal_name, Interrupts};
use crate::config::{
    kill_grace, unix_ms, CommandSpec, RetryConfig, TimeoutConfig, ATTEMPT_ENV, DEADLINE_ENV,
    KILL_AFTER_ENV,
};
use crate::duration::fmt_duration;
use crate::error::{code, Error, Outcome};
use crate::retry::{self, Attempt, CodeSet, Failure, GaveUp, TokioSleeper, Verdict};

/// RTB_DEADLINE, RTB_ATTEMPT and RTB_KILL_AFTER_MS for the command.
fn deadline_env(at: Instant, attempt: u32, kill_after: Duration) -> Vec<(OsString, OsString)> {
    vec![
        (DEADLINE_ENV.into(), unix_ms(at).to_string().into()),
        (ATTEMPT_ENV.into(), attempt.to_string().into()),
        (
            KILL_AFTER_ENV.into(),
            kill_grace(kill_after).as_millis().to_string().into(),
        ),
    ]
}

/// `rtb timeout [--timeout DUR] [--signal SIG] [--kill-after DUR] -- CMD`.
///
/// # Errors
/// Exit 124 at the deadline, 125-127 when the command cannot start.
pub async fn run_timeout(spec: &CommandSpec, cfg: &TimeoutConfig) -> Outcome {
    let budget = &cfg.budget;
    let own = !budget.inherited;
    let limit = budget.at.saturating_duration_since(Instant::now());
    if limit.is_zero() {
        return Err(Error::Status {
            message: format!("Command not started: {} has passed", budget.name),
            code: code::TIMED_OUT,
        });
    }
    let mut child = spawn(Spawn {
        argv: &spec.argv,
        env: deadline_env(budget.at, 1, spec.kill_after),
        capture_stdout: false,
    })?;
    let ended = child
        .wait(Some(budget.at), spec.signal, spec.kill_after)
        .await?;
    match ended.kind {
        EndKind::TimedOut => Err(Error::Status {
            message: if own {
                format!("Command timed out after {}", fmt_duration(cfg.timeout))
            } else {
                format!(
                    "Command timed out after {} ({})",
                    fmt_duration(limit),
                    budget.name
                )
            },
            code: code::TIMED_OUT,
        }),
        _ => Ok(ended.exit_code()),
    }
}

/// Why one attempt failed; its Display is the "(...)" of the engine's
/// "Attempt 2 failed (exit 1). Retrying in 2s..." line.
#[derive(Debug)]
enum AttemptError {
    /// The command could not be started (125-127): never retried.
    CannotRun { message: String, code: u8 },
    /// The command ran and failed.
    Ended {
        ended: Ended,
        /// The attempt's time limit, for "timed out after 1s".
        limit: std::time::Duration,
        retryable: bool,
    },
}

impl AttemptError {
    fn code(&self) -> u8 {
        match self {
            AttemptError::CannotRun { code, .. } => *code,
            AttemptError::Ended { ended, .. } => ended.exit_code(),
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::CannotRun { message, .. } => f.write_str(message),
            AttemptError::Ended { ended, limit, .. } => match ended.kind {
                EndKind::Exited(c) => write!(f, "exit {c}"),
                EndKind::Signaled(n) => write!(f, "killed by {}", signal_name(n)),
                EndKind::TimedOut => write!(f, "timed out after {}", fmt_duration(*limit)),
            },
        }
    }
}

impl Failure for AttemptError {
    fn verdict(&self) -> Verdict {
        match self {
            AttemptError::CannotRun { code, .. } if *code == code::OWN_FAILURE => {
                Verdict::stop("rtb could not start the command")
            }
            AttemptError::CannotRun { .. } => {
                Verdict::stop("the command cannot run, and running it again cannot help")
            }
            AttemptError::Ended {
                ended:
                    Ended {
                        interrupted: Some(sig),
                        ..
                    },
                ..
            } => Verdict::stop(format!("rtb received {}", signal_name(*sig))),
            AttemptError::Ended {
                retryable: true, ..
            } => Verdict::retry(),
            AttemptError::Ended { ended, .. } => Verdict::stop(format!(
                "exit status {} is not in --retry-on-exit",
                ended.exit_code()
            )),
        }
    }
}

/// Whether a failed attempt's end is worth another attempt: a timeout
/// always is; a status when `retry_on_exit` lists it.
fn retryable(ended: &Ended, retry_on_exit: &CodeSet) -> bool {
    ended.kind == EndKind::TimedOut || retry_on_exit.contains(u16::from(ended.exit_code()))
}

async fn attempt(spec: &CommandSpec, cfg: &RetryConfig, a: Attempt) -> Result<(), AttemptError> {
    // When the --max-time budget, not --timeout, ends this attempt, the
    // stop signal goes out when the budget runs out, and KILL follows
    // within a tenth of the attempt's time (never the full --kill-after),
    // so the budget bounds everything.
    let kill_after = if a.cut_by_budget {
        kill_grace(spec.kill_after).min((a.timeout / 10).max(Duration::from_millis(100)))
    } else {
        spec.kill_after
    };
    let deadline = Instant::now() + a.timeout;
    let mut child = spawn(Spawn {
        argv: &spec.argv,
        env: deadline_env(deadline, a.number, kill_after),
        capture_stdout: false,
    })
    .map_err(|e| AttemptError::CannotRun {
        code: e.exit_code(),
        message: e.to_string(),
    })?;
    let ended = child
        .wait(Some(deadline), spec.signal, kill_after)
        .await
        .map_err(|e| AttemptError::CannotRun {
            code: e.exit_code(),
            message: e.to_string(),
        })?;
    if ended.kind == EndKind::Exited(0) {
        return Ok(());
    }
    Err(AttemptError::Ended {
        retryable: retryable(&ended, &cfg.retry_on_exit),
        ended,
        limit: a.timeout,
    })
}

/// `rtb retry [schedule options] [--retry-on-exit LIST] -- CMD`, on the
/// shared loop `retry::retry`.
///
/// # Errors
/// The engine's reason for giving up, with the last attempt's status (124
/// when no attempt ran; 128+N when signal N stopped rtb between attempts).
pub async fn run_retry(spec: &CommandSpec, cfg: &RetryConfig) -> Outcome {
    let mut interrupts = Interrupts::install()?;
    let received = Rc::new(Cell::new(None::<i32>));
    let seen = Rc::clone(&received);
    let mut sleeper = TokioSleeper::new(Box::pin(async move {
        let sig = interrupts.recv().await;
        tracing::warn!(
            signal = sig,
            "Received {}: no further attempts",
            signal_name(sig)
        );
        seen.set(Some(sig));
    }));
    let result = retry::retry(&cfg.policy, &mut sleeper, |a| attempt(spec, cfg, a)).await;
    match result {
        Ok(((), _)) => Ok(code::OK),
        Err(gave_up) => {
            let code = match (&gave_up, received.get()) {
                (GaveUp::Interrupted { .. }, Some(sig)) => {
                    u8::try_from(128 + sig).unwrap_or(code::FAILED)
                }
                _ => gave_up
                    .last_error()
                    .map_or(code::TIMED_OUT, AttemptError::code),
            };
            Err(Error::Status {
                message: gave_up.to_string(),
                code,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(kind: EndKind) -> Ended {
        Ended {
            kind,
            interrupted: None,
        }
    }

    #[test]
    fn display_is_what_the_engine_logs() {
        let e = |kind| AttemptError::Ended {
            ended: ended(kind),
            limit: std::time::Duration::from_secs(1),
            retryable: true,
        };
        assert_eq!(e(EndKind::Exited(1)).to_string(), "exit 1");
        assert_eq!(e(EndKind::TimedOut).to_string(), "timed out after 1s");
        assert_eq!(e(EndKind::Signaled(9)).to_string(), "killed by SIGKILL");
        assert_eq!(e(EndKind::Signaled(9)).code(), 137);
    }

    #[test]
    fn timeouts_always_retry_statuses_only_when_listed() {
        let only_2 = crate::retry::parse_exit_list("2").unwrap();
        assert!(retryable(&ended(EndKind::TimedOut), &only_2));
        assert!(retryable(&ended(EndKind::Exited(2)), &only_2));
        assert!(!retryable(&ended(EndKind::Exited(3)), &only_2));
        let any = CodeSet::any_failure();
        assert!(retryable(&ended(EndKind::Signaled(15)), &any));
    }

    #[test]
    fn cannot_run_and_interrupted_stop() {
        let nf = AttemptError::CannotRun {
            message: "command not found: x".into(),
            code: 127,
        };
        assert!(matches!(nf.verdict(), Verdict::Stop { .. }));
        let int = AttemptError::Ended {
            ended: Ended {
                kind: EndKind::Signaled(2),
                interrupted: Some(2),
            },
            limit: std::time::Duration::from_secs(1),
            retryable: true,
        };
        assert_eq!(int.verdict(), Verdict::stop("rtb received SIGINT"));
    }
}
