//! Mechanism: run a command in its own process group under a deadline,
//! forward signals, and map its status to an exit code (GNU timeout's
//! conventions: 124 timed out, 125 rtb failed, 126 cannot execute, 127 not
//! found, 128+N killed by signal N).
//!
//! The spawn/wait API, for every command that runs a command (`rtb timeout`,
//! `rtb retry`, `rtb safe ID -- CMD`):
//!
//! ```no_run
//! # async fn f(argv: Vec<std::ffi::OsString>) -> Result<u8, rtb::error::Error> {
//! use std::time::{Duration, Instant};
//! use rtb::process::{spawn, Spawn, EndKind};
//! let mut child = spawn(Spawn { argv: &argv, env: vec![], capture_stdout: false })?;
//! let deadline = Instant::now() + Duration::from_secs(10);
//! // Cancel-safe: poll it inside tokio::select! beside a timer, and call it again.
//! let ended = child.wait(Some(deadline), 15, Duration::from_secs(5)).await?;
//! if ended.kind == EndKind::TimedOut { /* the group got TERM, then KILL */ }
//! Ok(ended.exit_code())
//! # }
//! ```
//!
//! - [`spawn`] installs rtb's SIGINT/SIGTERM/SIGHUP listeners first, then
//!   starts the command in a new process group (stdin/stderr inherited,
//!   stdout inherited or piped for [`Child::take_stdout`]). Errors: exit 127
//!   "command not found: X", 126 "cannot execute X: ...", 125 otherwise.
//! - [`Child::wait`] waits on the process (never on EOF of its pipes). At
//!   the deadline it sends the signal to the group, then KILL `kill_after`
//!   later if anything in the group is still alive, and returns
//!   [`EndKind::TimedOut`]. A signal rtb receives meanwhile is forwarded to
//!   the group and recorded in [`Ended::interrupted`]; waiting goes on.
//! - [`Child::signal_group`] signals the whole group (KILL on a lost lease).
//! - [`Ended::exit_code`]: the status, 128+N, or 124.
//!
//! It does not decide what is worth retrying (that is `retry`'s policy),
//! and never runs a shell.

mod child;
mod run;
mod signals;

pub use child::{spawn, Child, EndKind, Ended, Spawn};
pub use run::{run_retry, run_timeout};
pub use signals::{signal_group, signal_name, Interrupts};

/// Parses a signal name (`TERM`, `SIGTERM`, `term`) or number (`15`).
///
/// # Errors
/// A reason when it names no signal.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        if !(1..=64).contains(&n) {
            return Err("signal numbers go from 1 to 64".into());
        }
        return if signals::sendable(n) {
            Ok(n)
        } else {
            Err(format!(
                "signal {n} is not one rtb can send (real-time signals are not supported)"
            ))
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "ALRM" => 14,
        "TERM" => 15,
        _ => {
            return Err(
                "not a signal name (HUP, INT, QUIT, KILL, USR1, USR2, ALRM, TERM) or number".into(),
            )
        }
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMED: [(&str, i32); 8] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("KILL", 9),
        ("USR1", 10),
        ("USR2", 12),
        ("ALRM", 14),
        ("TERM", 15),
    ];

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("TERM"), Ok(15));
        assert_eq!(parse_signal(" sigkill "), Ok(9));
        assert_eq!(parse_signal("2"), Ok(2));
        for bad in ["", "SIG", "TERMX", "0", "65", "-15", "99999999999", "+"] {
            assert!(parse_signal(bad).is_err(), "{bad:?}");
        }
    }

    // Case counts come from proptest's default config, which honours
    // PROPTEST_CASES (scripts/fuzz runs 100,000 per parser).
    proptest! {
        #[test]
        fn never_panics(text in ".*") {
            let _ = parse_signal(&text);
        }

        #[test]
        fn numbers_are_checked_not_trusted(n: i64) {
            match parse_signal(&n.to_string()) {
                Ok(got) => prop_assert!((1..=64).contains(&n) && i64::from(got) == n),
                Err(_) => prop_assert!(!(1..=64).contains(&n) || !signals::sendable(n as i32)),
            }
        }

        #[test]
        fn names_round_trip(
            i in 0usize..NAMED.len(),
            sig in proptest::bool::ANY,
            upper in proptest::collection::vec(proptest::bool::ANY, 7),
            pad in " {0,2}",
        ) {
            let (name, n) = NAMED[i];
            let full = if sig { format!("SIG{name}") } else { name.to_string() };
            let cased: String = full
                .chars()
                .zip(upper.into_iter().chain(std::iter::repeat(true)))
                .map(|(c, up)| if up { c } else { c.to_ascii_lowercase() })
                .collect();
            prop_assert_eq!(parse_signal(&format!("{pad}{cased}{pad}")), Ok(n));
            // What rtb prints for a signal, it reads back.
            prop_assert_eq!(parse_signal(&signal_name(n)), Ok(n));
            prop_assert_eq!(parse_signal(&n.to_string()), Ok(n));
        }
    }
}
