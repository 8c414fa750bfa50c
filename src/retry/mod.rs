//! Pure retry policy: the backoff schedule, jitter, what is worth retrying,
//! Retry-After, and the one retry loop URL mode and command mode share.
//!
//! Nothing here touches the network, a process or a clock it was not handed:
//! the engine gets its sleeper injected, so tests never sleep.

mod backoff;
mod classify;
mod engine;
mod retry_after;

pub use backoff::{Backoff, Jitter, Schedule};
pub use classify::{parse_exit_list, parse_status_list, CodeSet, Verdict};
pub use engine::{retry, Attempt, Failure, GaveUp, RetryPolicy, Sleeper, TokioSleeper};
pub use retry_after::parse_retry_after;
