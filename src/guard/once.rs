//! `rtb safe ID [-- CMD]`: claim, run, record — at most once per ID.
//!
//! The flow: claim (one atomic step in the store) or wait for a live claim
//! with backoff; run CMD with no transaction open, renewing the lease every
//! third of it; then mark done (CMD exited 0) or release (anything else),
//! both conditional on still holding the claim. It owns no process logic
//! (that is `process`) and no SQL (that is the stores).

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    fmt_ms, redact_command, shell_join, Claim, Finish, Owner, Record, Store, FENCE_ENV, ID_ENV,
    REPLAY_LIMIT,
};
use crate::config::SafeConfig;
use crate::duration::fmt_duration;
use crate::error::{code, Error, Outcome};
use crate::process::{signal_name, spawn, EndKind, Ended, Spawn};

const SIGTERM: i32 = 15;
/// After a lost lease: TERM, then KILL this long after.
const KILL_AFTER: Duration = Duration::from_secs(5);

/// Claims `id` (waiting up to --wait), runs `command` if given, records it.
pub async fn run<S: Store>(
    store: &S,
    cfg: &SafeConfig,
    id: &str,
    command: Option<&[OsString]>,
) -> Outcome {
    let shown = command.map(shell_join).unwrap_or_default();
    let owner = Owner::me();
    let fence = match claim(store, cfg, id, &owner, &shown).await? {
        Got::Fence(f) => f,
        Got::Skip(mut rec) => {
            // The claim does not load stored output; fetch it to replay.
            if cfg.replay && rec.output_len > 0 {
                if let Some(full) = store.get(id).await? {
                    rec = full;
                }
            }
            return skip(cfg, id, &shown, &rec);
        }
    };
    let Some(argv) = command else {
        return finish(store, id, &owner, fence, &Finish::default()).await;
    };
    tracing::debug!(id, fence, "claimed; running {}", redact_command(&shown));
    let env = vec![
        (OsString::from(ID_ENV), OsString::from(id)),
        (OsString::from(FENCE_ENV), OsString::from(fence.to_string())),
    ];
    let mut child = match spawn(Spawn {
        argv,
        env,
        capture_stdout: cfg.replay,
    }) {
        Ok(c) => c,
        Err(e) => {
            release(store, id, &owner, fence).await;
            return Err(e);
        }
    };
    let capture = child.take_stdout().map(Capture::start);

    // Renew every third of the lease while CMD runs; stop it if the lease
    // is lost for certain (someone else holds the ID now).
    let every = (cfg.lease / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_by: Option<Instant> = None;
    // An outer rtb's deadline (RTB_DEADLINE) bounds the command too.
    let deadline = crate::config::inherited_budget().map(|b| b.at);
    // The lease runs out this long after the last renewal that succeeded.
    let mut held_until = Instant::now() + cfg.lease;
    let ended: Ended = loop {
        tokio::select! {
            ended = child.wait(stop_by.or(deadline), SIGTERM, KILL_AFTER) => break ended?,
            _ = tick.tick(), if stop_by.is_none() => {
                // A store that stops answering must not hold up the loop
                // past the next renewal.
                let renewed = tokio::time::timeout(every, store.renew(id, &owner, fence, cfg.lease));
                match renewed.await {
                    Ok(Ok(true)) => {
                        held_until = Instant::now() + cfg.lease;
                        tracing::trace!(id, fence, "lease renewed");
                    }
                    Ok(Ok(false)) => {
                        tracing::error!(
                            id, fence,
                            "Lost the claim on {id} (fence {fence}): another run has taken it \
                             over; stopping the command"
                        );
                        stop_by = Some(Instant::now());
                    }
                    Ok(Err(e)) => tracing::warn!(id, "Cannot renew the lease on {id}: {e}"),
                    Err(_) => tracing::warn!(
                        id,
                        "Cannot renew the lease on {id}: the store did not answer within {}",
                        fmt_duration(every)
                    ),
                }
                if stop_by.is_none() && Instant::now() + every >= held_until {
                    // Another run may take the ID over once the lease
                    // lapses: stop the command rather than run it twice.
                    tracing::error!(
                        id, fence,
                        "The lease on {id} (fence {fence}) is about to lapse without renewal; \
                         stopping the command"
                    );
                    stop_by = Some(Instant::now());
                }
            }
        }
    };
    let (output, output_cut) = match capture {
        Some(c) => {
            let (bytes, cut) = c.finish().await;
            (Some(bytes), cut)
        }
        None => (None, false),
    };
    let status = ended.exit_code();
    if let Some(sig) = ended.interrupted {
        release(store, id, &owner, fence).await;
        tracing::warn!(
            id,
            "Interrupted by {}: released {id}, not recorded (command exit status {status})",
            signal_name(sig)
        );
        return Ok(status);
    }
    if stop_by.is_some() {
        return Err(Error::Failed(format!(
            "lost the claim on {id} (fence {fence}) while the command ran: not recorded by this \
             run; the run that took it over decides"
        )));
    }
    if ended.kind != EndKind::Exited(0) {
        release(store, id, &owner, fence).await;
        let how = match ended.kind {
            EndKind::Signaled(n) => format!("was killed by {}", signal_name(n)),
            EndKind::TimedOut => match crate::config::inherited_budget() {
                Some(b) => format!("timed out at {}", b.name),
                None => "timed out".to_string(),
            },
            _ => format!("failed with exit status {status}"),
        };
        return Err(Error::Status {
            message: format!("Command {how}: {id} not recorded (a later run will try again)"),
            code: status,
        });
    }
    if output_cut {
        tracing::warn!(
            id,
            "The output of {id} is over {} KiB: stored only the first {} KiB for --replay",
            REPLAY_LIMIT / 1024,
            REPLAY_LIMIT / 1024
        );
    }
    let how = Finish {
        exit_status: 0,
        output,
        output_cut,
    };
    finish(store, id, &owner, fence, &how).await
}

enum Got {
    Fence(i64),
    Skip(Record),
}

/// Claims, or waits with backoff for a live claim to end, up to --wait.
async fn claim<S: Store>(
    store: &S,
    cfg: &SafeConfig,
    id: &str,
    owner: &Owner,
    command: &str,
) -> Result<Got, Error> {
    // Never wait past an outer rtb's deadline (RTB_DEADLINE).
    let until = match crate::config::inherited_budget() {
        Some(b) if b.at < Instant::now() + cfg.wait => b.at,
        _ => Instant::now() + cfg.wait,
    };
    let mut delays = crate::retry::Backoff::default()
        .with_attempts(u32::MAX)
        .with_delay(Duration::from_millis(20))
        .with_factor(1.5)
        .with_max_delay(Duration::from_millis(500))
        .with_jitter(crate::retry::Jitter::Equal)
        .build();
    let mut announced = false;
    loop {
        match store.claim(id, owner, command, cfg.lease).await? {
            Claim::Won { fence, lost } => {
                if let Some(l) = lost {
                    tracing::warn!(
                        id,
                        fence,
                        lost_host = l.host.as_str(),
                        lost_pid = l.pid,
                        "Taking over {id} from a lost owner ({}): its lease expired at {}",
                        l.whereabouts(),
                        fmt_ms(l.lease_until_ms)
                    );
                }
                return Ok(Got::Fence(fence));
            }
            Claim::Done(rec) => return Ok(Got::Skip(rec)),
            Claim::Busy(rec) => {
                let now = Instant::now();
                if now >= until {
                    return Err(Error::InProgress(format!(
                        "{id} is in progress elsewhere ({})",
                        rec.whereabouts()
                    )));
                }
                if !announced {
                    announced = true;
                    tracing::info!(
                        id,
                        "{id} is in progress elsewhere ({}): waiting up to {}",
                        rec.whereabouts(),
                        fmt_duration(cfg.wait)
                    );
                }
                let nap = delays
                    .next()
                    .unwrap_or(Duration::from_millis(500))
                    .min(until - now);
                tokio::time::sleep(nap).await;
            }
        }
    }
}

/// ID is done already: say so, replay the stored output, check the command.
fn skip(cfg: &SafeConfig, id: &str, command: &str, rec: &Record) -> Outcome {
    if rec.command != command {
        let name = |c: &str| {
            if c.is_empty() {
                "(no command)".to_string()
            } else {
                format!("`{}`", redact_command(c))
            }
        };
        let msg = format!(
            "{id} was recorded for a different command: recorded {}, now {}",
            name(&rec.command),
            name(command)
        );
        if cfg.strict {
            return Err(Error::Differs(msg));
        }
        tracing::warn!(id, "{msg} (no action taken)");
    } else {
        tracing::info!(id, "Resource {id} already exists (no action taken)");
    }
    if cfg.replay {
        match &rec.output {
            Some(out) => {
                if rec.output_cut {
                    tracing::warn!(
                        id,
                        "Replaying only the first {} KiB of the output of {id}: it was cut when stored",
                        REPLAY_LIMIT / 1024
                    );
                }
                crate::write_stdout(out)?;
            }
            None => tracing::warn!(id, "No output of {id} was stored: nothing to replay"),
        }
    }
    Ok(code::OK)
}

async fn finish<S: Store>(store: &S, id: &str, owner: &Owner, fence: i64, how: &Finish) -> Outcome {
    if store.finish(id, owner, fence, how).await? {
        tracing::info!(id, fence, "Resource {id} created successfully");
        Ok(code::OK)
    } else {
        Err(Error::Failed(format!(
            "lost the claim on {id} (fence {fence}): its lease expired and another run took it \
             over, so this run did not mark it done"
        )))
    }
}

/// Gives the claim up; a failure here only delays the next run until the
/// lease expires.
async fn release<S: Store>(store: &S, id: &str, owner: &Owner, fence: i64) {
    match store.release(id, owner, fence).await {
        Ok(true) => tracing::debug!(id, fence, "released"),
        Ok(false) => tracing::warn!(id, fence, "The claim on {id} was already lost"),
        Err(e) => tracing::warn!(
            id,
            "Cannot release {id}: {e}; it is free again when its lease expires"
        ),
    }
}

/// CMD's stdout, passed through live and kept up to [`REPLAY_LIMIT`].
struct Capture {
    kept: Arc<Mutex<(Vec<u8>, bool)>>,
    /// True while a chunk is being written to rtb's stdout.
    writing: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    fn start(mut from: tokio::process::ChildStdout) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let kept = Arc::new(Mutex::new((Vec::new(), false)));
        let writing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (k, w) = (Arc::clone(&kept), Arc::clone(&writing));
        let task = tokio::spawn(async move {
            let mut writable = true;
            // tokio's stdout writes on the blocking pool: a reader that
            // stalls must never stall this runtime's thread, which renews
            // the lease and watches CMD.
            let mut out = tokio::io::stdout();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Ok(mut g) = k.lock() {
                    let room = REPLAY_LIMIT.saturating_sub(g.0.len());
                    g.0.extend_from_slice(&buf[..n.min(room)]);
                    if n > room {
                        g.1 = true;
                    }
                }
                if writable {
                    // A closed stdout stops the echo, not the capture.
                    w.store(true, SeqCst);
                    writable = out.write_all(&buf[..n]).await.is_ok() && out.flush().await.is_ok();
                    w.store(false, SeqCst);
                }
            }
        });
        Capture {
            kept,
            writing,
            task,
        }
    }

    /// What was kept, and whether it was cut. Waits briefly for the pipe to
    /// drain: a grandchild may hold it open after CMD has ended.
    async fn finish(mut self) -> (Vec<u8>, bool) {
        // A slow reader of rtb's stdout still gets every byte (as with
        // tee); only a pipe held open with nothing coming is given up on.
        while tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            if !self.writing.load(std::sync::atomic::Ordering::SeqCst) {
                self.task.abort();
                break;
            }
        }
        match self.kept.lock() {
            Ok(mut g) => (std::mem::take(&mut g.0), g.1),
            Err(_) => (Vec::new(), false),
        }
    }
}
