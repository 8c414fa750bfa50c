//! Signals: rtb's own SIGINT/SIGTERM/SIGHUP listeners, signal names, and
//! sending a signal to a whole process group.
//!
//! Installing the listeners replaces the default "die at once" disposition
//! for the rest of rtb's life, so rtb can forward the signal to the command
//! and exit only once the command has ended. It must never install them
//! after spawning: a Ctrl-C in between would kill rtb and orphan the tree.

use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use tokio::signal::unix::{signal, SignalKind};

use crate::error::{code, Error};

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;
pub const SIGCONT: i32 = 18;

/// rtb's listeners for SIGINT, SIGTERM and SIGHUP.
pub struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Starts listening; from now on these signals no longer kill rtb.
    ///
    /// # Errors
    /// Exit 125 when the runtime cannot register a listener.
    pub fn install() -> Result<Self, Error> {
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Error::Status {
                message: format!("cannot listen for {name}: {e}"),
                code: code::OWN_FAILURE,
            })
        };
        Ok(Interrupts {
            int: listen(SignalKind::interrupt(), "SIGINT")?,
            term: listen(SignalKind::terminate(), "SIGTERM")?,
            hup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// The next signal rtb receives (its number). Cancel-safe: a signal that
    /// arrives while nobody polls is kept for the next call.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            Some(()) = self.int.recv() => SIGINT,
            Some(()) = self.term.recv() => SIGTERM,
            Some(()) = self.hup.recv() => SIGHUP,
            else => std::future::pending().await,
        }
    }
}

/// `SIGTERM` for 15, `signal 40` for a number without a name here.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        4 => "ILL",
        5 => "TRAP",
        6 => "ABRT",
        7 => "BUS",
        8 => "FPE",
        9 => "KILL",
        10 => "USR1",
        11 => "SEGV",
        12 => "USR2",
        13 => "PIPE",
        14 => "ALRM",
        15 => "TERM",
        17 => "CHLD",
        18 => "CONT",
        19 => "STOP",
        20 => "TSTP",
        24 => "XCPU",
        25 => "XFSZ",
        26 => "VTALRM",
        27 => "PROF",
        28 => "WINCH",
        31 => "SYS",
        _ => return format!("signal {sig}"),
    };
    format!("SIG{name}")
}

/// Sends `sig` to every process in group `pgid`; a group that is already
/// gone is not an error, and neither is anything else here: the caller
/// goes on waiting and escalates to KILL.
pub fn signal_group(pgid: u32, sig: i32) {
    let (Some(pid), Some(sig)) = (
        i32::try_from(pgid).ok().and_then(Pid::from_raw),
        Signal::from_named_raw(sig),
    ) else {
        tracing::warn!(
            pgid,
            signal = sig,
            "cannot send signal {sig} to group {pgid}"
        );
        return;
    };
    if let Err(e) = kill_process_group(pid, sig) {
        if e != rustix::io::Errno::SRCH {
            tracing::warn!(pgid, "cannot signal process group {pgid}: {e}");
        }
    }
}

/// True while a live process is left in group `pgid`. A zombie does not
/// count: an orphan whose new parent never reaps it must not hold rtb up.
pub fn group_alive(pgid: u32) -> bool {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    if test_kill_process_group(pid).is_err() {
        return false;
    }
    // Something is in the group; /proc says whether it is more than a
    // zombie. Without /proc, trust kill(2).
    live_member_in_proc(pgid).unwrap_or(true)
}

/// Whether /proc lists a process of group `pgid` that is not a zombie;
/// `None` when /proc cannot be read.
fn live_member_in_proc(pgid: u32) -> Option<bool> {
    let dir = std::fs::read_dir("/proc").ok()?;
    let pgid = pgid.to_string();
    Some(dir.filter_map(Result::ok).any(|e| {
        let name = e.file_name();
        let Some(n) = name.to_str() else { return false };
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ..."; comm may hold spaces and ')'.
        let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
            return false;
        };
        let mut f = rest.split_whitespace();
        let (state, _ppid, pgrp) = (f.next(), f.next(), f.next());
        pgrp == Some(pgid.as_str()) && !matches!(state, Some("Z" | "X"))
    }))
}

/// Sends `sig`, then CONT (as GNU timeout does), so a stopped process
/// receives it too.
pub fn signal_group_and_continue(pgid: u32, sig: i32) {
    signal_group(pgid, sig);
    if sig != SIGKILL && sig != SIGCONT {
        signal_group(pgid, SIGCONT);
    }
}

/// True when rtb can send this signal number (the named ones, not the
/// real-time range).
pub fn sendable(sig: i32) -> bool {
    Signal::from_named_raw(sig).is_some()
}
