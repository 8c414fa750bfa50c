//! Mechanism: run a command in its own process group under a deadline,
//! forward signals, and map its status to an exit code.

use crate::config::{CommandSpec, RetryConfig, TimeoutConfig};
use crate::error::{Error, Outcome};

/// Parses a signal name (`TERM`, `SIGTERM`, `term`) or number (`15`).
///
/// # Errors
/// A reason when it names no signal.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err("signal numbers go from 1 to 64".into())
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

pub async fn run_timeout(_spec: &CommandSpec, _cfg: &TimeoutConfig) -> Outcome {
    Err(Error::Failed("command mode is not built yet".into()))
}

pub async fn run_retry(_spec: &CommandSpec, _cfg: &RetryConfig) -> Outcome {
    Err(Error::Failed("command mode is not built yet".into()))
}
