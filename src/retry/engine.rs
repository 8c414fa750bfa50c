//! The one retry loop, shared by URL mode and command mode.
//!
//! Generic over the attempt (an async closure), its failure type (which
//! classifies itself) and the sleeper (real time, or a fake in tests). It
//! owns the schedule, the total budget and the log lines about retrying;
//! it knows nothing of HTTP or processes.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use super::{Backoff, Verdict};
use crate::duration::fmt_duration;

/// A failed attempt's error: it says whether retrying could help.
pub trait Failure: fmt::Display {
    fn verdict(&self) -> Verdict;
}

/// Sleeping, and knowing the time; injected so tests never sleep.
pub trait Sleeper {
    fn now(&self) -> Instant;
    /// Sleeps for `d`; `false` when interrupted (rtb was asked to stop).
    fn sleep(&mut self, d: Duration) -> impl Future<Output = bool>;
}

/// Real time; a sleep ends early when `interrupt` resolves.
pub struct TokioSleeper<F> {
    interrupt: F,
}

impl<F: Future + Unpin> TokioSleeper<F> {
    pub fn new(interrupt: F) -> Self {
        TokioSleeper { interrupt }
    }
}

impl<F: Future + Unpin> Sleeper for TokioSleeper<F> {
    fn now(&self) -> Instant {
        Instant::now()
    }
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = &mut self.interrupt => false,
        }
    }
}

/// Everything the loop needs to know besides the attempt itself.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// The longest one attempt may take.
    pub timeout: Duration,
    /// The end of the whole run (sleeps included), and how to name it in a
    /// message ("the --max-time budget of 5s").
    pub budget: Option<(Instant, String)>,
    /// "Request" or "Command", for "Request succeeded on attempt 2".
    pub noun: &'static str,
}

/// What one attempt is given.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// The smaller of the per-attempt timeout and the budget left.
    pub timeout: Duration,
    /// True when the budget, not `--timeout`, set `timeout`.
    pub cut_by_budget: bool,
}

/// Why the loop stopped without a success.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// Retrying cannot help or is unsafe.
    Fatal {
        attempts: u32,
        error: E,
        reason: String,
    },
    /// Every attempt failed.
    Exhausted { attempts: u32, error: E },
    /// The budget ran out, or the next sleep would pass it.
    OutOfTime {
        attempts: u32,
        error: Option<E>,
        detail: String,
    },
    /// The server asked for a longer wait than rtb may give.
    WaitTooLong {
        attempts: u32,
        error: E,
        wait: Duration,
        limit: String,
    },
    /// rtb was asked to stop while waiting to retry.
    Interrupted { attempts: u32, error: E },
}

impl<E> GaveUp<E> {
    /// The last attempt's error, if an attempt ran.
    pub fn last_error(&self) -> Option<&E> {
        match self {
            GaveUp::Fatal { error, .. }
            | GaveUp::Exhausted { error, .. }
            | GaveUp::WaitTooLong { error, .. }
            | GaveUp::Interrupted { error, .. } => Some(error),
            GaveUp::OutOfTime { error, .. } => error.as_ref(),
        }
    }
}

fn attempts_word(n: u32) -> String {
    if n == 1 {
        "1 attempt".into()
    } else {
        format!("{n} attempts")
    }
}

impl<E: fmt::Display> fmt::Display for GaveUp<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GaveUp::Fatal {
                attempts,
                error,
                reason,
            } => write!(f, "Attempt {attempts} failed ({error}); not retrying: {reason}"),
            GaveUp::Exhausted { attempts, error } => {
                write!(f, "Failed after {}: {error}", attempts_word(*attempts))
            }
            GaveUp::OutOfTime {
                attempts,
                error,
                detail,
            } => {
                write!(f, "Gave up after {}: {detail}", attempts_word(*attempts))?;
                match error {
                    Some(e) => write!(f, " (last error: {e})"),
                    None => Ok(()),
                }
            }
            GaveUp::WaitTooLong {
                attempts,
                error,
                wait,
                limit,
            } => write!(
                f,
                "Gave up after {}: the server asked to wait {} before retrying, longer than {limit} (last error: {error})",
                attempts_word(*attempts),
                fmt_duration(*wait)
            ),
            GaveUp::Interrupted { attempts, error } => write!(
                f,
                "Interrupted after {}; no further attempts (last error: {error})",
                attempts_word(*attempts)
            ),
        }
    }
}

/// Runs `op` until it succeeds, its failure says stop, the attempts run out
/// or the budget does. Returns the success and the attempt it came on.
///
/// # Errors
/// [`GaveUp`], carrying the last attempt's error and why the loop stopped.
pub async fn retry<T, E, S, Fut>(
    policy: &RetryPolicy,
    sleeper: &mut S,
    mut op: impl FnMut(Attempt) -> Fut,
) -> Result<(T, u32), GaveUp<E>>
where
    E: Failure,
    S: Sleeper,
    Fut: Future<Output = Result<T, E>>,
{
    let start = sleeper.now();
    let mut schedule = policy.backoff.build();
    let left = |now: Instant| {
        policy
            .budget
            .as_ref()
            .map(|(end, _)| end.saturating_duration_since(now))
    };
    let spent = |what: &str| match &policy.budget {
        Some((_, name)) => format!("{name} {what}"),
        None => String::new(),
    };
    let mut last: Option<E> = None;
    for number in 1u32.. {
        let (timeout, cut_by_budget) = match left(sleeper.now()) {
            Some(l) if l.is_zero() => {
                return Err(GaveUp::OutOfTime {
                    attempts: number - 1,
                    error: last,
                    detail: spent("is spent"),
                });
            }
            Some(l) if l < policy.timeout => (l, true),
            _ => (policy.timeout, false),
        };
        let attempt = Attempt {
            number,
            timeout,
            cut_by_budget,
        };
        let error = match op(attempt).await {
            Ok(v) => {
                let elapsed = sleeper.now().duration_since(start);
                tracing::info!(
                    attempt = number,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "{} succeeded on attempt {number}",
                    policy.noun
                );
                return Ok((v, number));
            }
            Err(e) => e,
        };
        let after = match error.verdict() {
            Verdict::Stop { reason } => {
                return Err(GaveUp::Fatal {
                    attempts: number,
                    error,
                    reason,
                })
            }
            Verdict::Retry { after } => after,
        };
        let Some(planned) = schedule.next() else {
            return Err(GaveUp::Exhausted {
                attempts: number,
                error,
            });
        };
        let now = sleeper.now();
        let delay = match after {
            Some(wait) => {
                if wait > policy.backoff.max_delay() {
                    let limit = format!("--max-delay {}", fmt_duration(policy.backoff.max_delay()));
                    return Err(GaveUp::WaitTooLong {
                        attempts: number,
                        error,
                        wait,
                        limit,
                    });
                }
                if let Some(l) = left(now).filter(|l| wait >= *l) {
                    let limit = format!("the {} left of {}", fmt_duration(l), spent("").trim_end());
                    return Err(GaveUp::WaitTooLong {
                        attempts: number,
                        error,
                        wait,
                        limit,
                    });
                }
                wait
            }
            None => planned,
        };
        match left(now) {
            Some(l) if l.is_zero() => {
                return Err(GaveUp::OutOfTime {
                    attempts: number,
                    error: Some(error),
                    detail: spent("is spent"),
                })
            }
            Some(l) if delay >= l => {
                let detail = format!(
                    "the next retry in {} would pass {}",
                    fmt_duration(delay),
                    spent("").trim_end()
                );
                return Err(GaveUp::OutOfTime {
                    attempts: number,
                    error: Some(error),
                    detail,
                });
            }
            _ => {}
        }
        tracing::warn!(
            attempt = number,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "Attempt {number} failed ({error}). Retrying in {}...",
            fmt_duration(delay)
        );
        if !sleeper.sleep(delay).await {
            return Err(GaveUp::Interrupted {
                attempts: number,
                error,
            });
        }
        last = Some(error);
    }
    unreachable!("attempt numbers are bounded by the schedule")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A sleeper that records delays and moves a fake clock.
    struct FakeSleeper {
        now: Instant,
        slept: Vec<Duration>,
        interrupt_at: Option<usize>,
    }

    impl FakeSleeper {
        fn new() -> Self {
            FakeSleeper {
                now: Instant::now(),
                slept: vec![],
                interrupt_at: None,
            }
        }
    }

    impl Sleeper for FakeSleeper {
        fn now(&self) -> Instant {
            self.now
        }
        async fn sleep(&mut self, d: Duration) -> bool {
            if self.interrupt_at == Some(self.slept.len()) {
                return false;
            }
            self.slept.push(d);
            self.now += d;
            true
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Fail {
        Soft,
        Hard,
        After(u64),
    }

    impl fmt::Display for Fail {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl Failure for Fail {
        fn verdict(&self) -> Verdict {
            match self {
                Fail::Soft => Verdict::retry(),
                Fail::Hard => Verdict::stop("hard"),
                Fail::After(s) => Verdict::Retry {
                    after: Some(Duration::from_secs(*s)),
                },
            }
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::default(),
            timeout: Duration::from_secs(5),
            budget: None,
            noun: "Request",
        }
    }

    type Ran = Result<(u32, u32), GaveUp<Fail>>;

    fn run(
        policy: &RetryPolicy,
        sleeper: &mut FakeSleeper,
        outcomes: Vec<Result<u32, Fail>>,
    ) -> (Ran, Vec<Attempt>) {
        let seen = RefCell::new(vec![]);
        let outcomes = RefCell::new(outcomes.into_iter());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt.block_on(async {
            retry(policy, sleeper, |a| {
                seen.borrow_mut().push(a);
                let next = outcomes
                    .borrow_mut()
                    .next()
                    .expect("an outcome per attempt");
                async move { next }
            })
            .await
        });
        (r, seen.into_inner())
    }

    #[test]
    fn succeeds_after_soft_failures_sleeping_the_schedule() {
        let mut s = FakeSleeper::new();
        let (r, seen) = run(
            &policy(),
            &mut s,
            vec![Err(Fail::Soft), Err(Fail::Soft), Ok(7)],
        );
        assert_eq!(r.unwrap(), (7, 3));
        assert_eq!(
            s.slept,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|a| a.timeout == Duration::from_secs(5)));
    }

    #[test]
    fn exhausts_after_the_attempts() {
        let mut s = FakeSleeper::new();
        let (r, _) = run(&policy(), &mut s, vec![Err(Fail::Soft); 3]);
        let e = r.unwrap_err();
        assert_eq!(e.to_string(), "Failed after 3 attempts: Soft");
        assert!(matches!(e, GaveUp::Exhausted { attempts: 3, .. }));
    }

    #[test]
    fn hard_failure_stops_at_once() {
        let mut s = FakeSleeper::new();
        let (r, seen) = run(&policy(), &mut s, vec![Err(Fail::Hard)]);
        assert!(matches!(r.unwrap_err(), GaveUp::Fatal { attempts: 1, .. }));
        assert_eq!(seen.len(), 1);
        assert!(s.slept.is_empty());
    }

    #[test]
    fn server_delay_replaces_the_schedule() {
        let mut s = FakeSleeper::new();
        let (r, _) = run(&policy(), &mut s, vec![Err(Fail::After(7)), Ok(1)]);
        assert_eq!(r.unwrap(), (1, 2));
        assert_eq!(s.slept, vec![Duration::from_secs(7)]);
    }

    #[test]
    fn server_delay_over_the_cap_stops_without_sleeping() {
        let mut s = FakeSleeper::new();
        let (r, _) = run(&policy(), &mut s, vec![Err(Fail::After(3600))]);
        let e = r.unwrap_err();
        assert!(matches!(e, GaveUp::WaitTooLong { .. }));
        assert!(e.to_string().contains("--max-delay 30s"), "{e}");
        assert!(s.slept.is_empty());
    }

    #[test]
    fn budget_shortens_attempts_and_refuses_late_sleeps() {
        let mut s = FakeSleeper::new();
        let mut p = policy();
        p.backoff = p.backoff.with_attempts(10);
        p.timeout = Duration::from_secs(2);
        p.budget = Some((
            s.now + Duration::from_secs(4),
            "the --max-time budget of 4s".into(),
        ));
        // Attempts cost nothing on the fake clock: sleeps 1s, 2s, then the
        // next (4s) would pass the 1s left, so it stops.
        let (r, seen) = run(&p, &mut s, vec![Err(Fail::Soft); 10]);
        let e = r.unwrap_err();
        assert_eq!(
            s.slept,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].timeout, Duration::from_secs(1));
        assert!(seen[2].cut_by_budget && !seen[0].cut_by_budget);
        assert!(
            e.to_string()
                .contains("the next retry in 4s would pass the --max-time budget of 4s"),
            "{e}"
        );
    }

    #[test]
    fn server_delay_past_the_budget_stops() {
        let mut s = FakeSleeper::new();
        let mut p = policy();
        p.budget = Some((
            s.now + Duration::from_secs(5),
            "the --max-time budget of 5s".into(),
        ));
        let (r, _) = run(&p, &mut s, vec![Err(Fail::After(10))]);
        let e = r.unwrap_err();
        assert!(
            e.to_string()
                .contains("the 5s left of the --max-time budget of 5s"),
            "{e}"
        );
    }

    #[test]
    fn spent_budget_runs_nothing() {
        let mut s = FakeSleeper::new();
        let mut p = policy();
        p.budget = Some((s.now, "the deadline in RTB_DEADLINE".into()));
        let (r, seen) = run(&p, &mut s, vec![]);
        assert!(matches!(
            r.unwrap_err(),
            GaveUp::OutOfTime { attempts: 0, .. }
        ));
        assert!(seen.is_empty());
    }

    #[test]
    fn interruption_ends_the_loop() {
        let mut s = FakeSleeper::new();
        s.interrupt_at = Some(0);
        let (r, seen) = run(&policy(), &mut s, vec![Err(Fail::Soft); 3]);
        assert!(matches!(
            r.unwrap_err(),
            GaveUp::Interrupted { attempts: 1, .. }
        ));
        assert_eq!(seen.len(), 1);
    }
}
