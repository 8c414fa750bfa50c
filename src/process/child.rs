//! One command in its own process group: spawn it, wait for it under a
//! deadline (signal, then KILL), forward rtb's own signals to it.
//!
//! It waits on the process, never on EOF of its pipes: a grandchild may
//! hold them open long after the command has ended.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::signals::{self, signal_name, Interrupts, SIGKILL};
use crate::error::{code, Error};

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct Spawn<'a> {
    /// The program and its arguments; run directly, no shell.
    pub argv: &'a [OsString],
    /// Added to (or replacing in) rtb's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// Pipe stdout for the caller (`Child::take_stdout`) instead of
    /// inheriting it.
    pub capture_stdout: bool,
}

/// A running command, the leader of its own process group.
pub struct Child {
    child: tokio::process::Child,
    pid: u32,
    interrupts: Interrupts,
    phase: Phase,
    timed_out: bool,
    interrupted: Option<i32>,
    status: Option<ExitStatus>,
    /// The grace before KILL, as the current `wait` was given it.
    grace: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Running,
    /// The deadline signal went out; KILL follows at `kill_at`.
    Signaled {
        kill_at: Instant,
    },
    Killed,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// It exited with this status.
    Exited(u8),
    /// A signal killed it (one rtb did not send at a deadline).
    Signaled(i32),
    /// The deadline passed and rtb stopped it.
    TimedOut,
}

/// How the command ended, and whether rtb was asked to stop meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub kind: EndKind,
    /// The first SIGINT/SIGTERM/SIGHUP rtb received (and forwarded) while
    /// waiting.
    pub interrupted: Option<i32>,
}

impl Ended {
    /// GNU timeout's convention: the status, 128+N for signal N, 124 for
    /// timed out.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            EndKind::Exited(c) => c,
            EndKind::Signaled(n) => u8::try_from(128 + n).unwrap_or(code::OWN_FAILURE),
            EndKind::TimedOut => code::TIMED_OUT,
        }
    }
}

/// Spawns the command in a new process group with stdin and stderr
/// inherited (stdout too unless `capture_stdout`), after installing rtb's
/// SIGINT/SIGTERM/SIGHUP listeners.
///
/// # Errors
/// Exit 127 "command not found: X", 126 "cannot execute X: ...", 125 for
/// any other failure to start it.
pub fn spawn(s: Spawn<'_>) -> Result<Child, Error> {
    let Some(program) = s.argv.first() else {
        return Err(Error::Usage("missing command after `--`".into()));
    };
    let shown = program.to_string_lossy();
    // Before the spawn: a signal must never find rtb dying with the
    // command still running.
    let interrupts = Interrupts::install()?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&s.argv[1..])
        .envs(s.env)
        .process_group(0)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .stdout(if s.capture_stdout {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|e| spawn_error(&shown, &e))?;
    let Some(pid) = child.id() else {
        return Err(Error::Status {
            message: format!("{shown} started but has no process id"),
            code: code::OWN_FAILURE,
        });
    };
    tracing::debug!(pid, "started {shown}");
    Ok(Child {
        child,
        pid,
        interrupts,
        phase: Phase::Running,
        timed_out: false,
        interrupted: None,
        status: None,
        grace: Duration::from_secs(5),
    })
}

fn spawn_error(shown: &str, e: &std::io::Error) -> Error {
    use rustix::io::Errno;
    let errno = e.raw_os_error().map(Errno::from_raw_os_error);
    let (message, code) = match errno {
        Some(Errno::NOENT) => (format!("command not found: {shown}"), code::NOT_FOUND),
        Some(Errno::ACCESS | Errno::NOEXEC | Errno::ISDIR | Errno::TXTBSY | Errno::PERM) => {
            (format!("cannot execute {shown}: {e}"), code::CANNOT_EXECUTE)
        }
        _ => (format!("cannot start {shown}: {e}"), code::OWN_FAILURE),
    };
    Error::Status { message, code }
}

impl Child {
    /// The command's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The command's stdout, when spawned with `capture_stdout`.
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Sends `sig` to the command's whole process group.
    pub fn signal_group(&self, sig: i32) {
        signals::signal_group(self.pid, sig);
    }

    /// Waits until the command ends.
    ///
    /// When `deadline` passes: sends `signal` to the group, and KILL
    /// `kill_after` later if anything in the group is still alive (even
    /// when the command itself has ended); the result is
    /// [`EndKind::TimedOut`]. When rtb receives SIGINT/SIGTERM/SIGHUP
    /// meanwhile, it forwards the signal to the group and keeps waiting;
    /// the result records it in `interrupted`.
    ///
    /// Cancel-safe: it may be dropped inside `tokio::select!` and called
    /// again; once the command has ended it returns the same result.
    ///
    /// # Errors
    /// Exit 125 when the wait itself fails.
    pub async fn wait(
        &mut self,
        deadline: Option<Instant>,
        signal: i32,
        kill_after: Duration,
    ) -> Result<Ended, Error> {
        self.grace = crate::config::kill_grace(kill_after);
        loop {
            if let Some(status) = self.status {
                match self.phase {
                    // Ended on its own, or after KILL: nothing is left.
                    Phase::Running | Phase::Killed => return Ok(self.ended(status)),
                    // Timed out: the command ended, but a grandchild that
                    // ignores the signal may live on; KILL it at kill_at.
                    Phase::Signaled { kill_at } => {
                        if !signals::group_alive(self.pid) {
                            return Ok(self.ended(status));
                        }
                        let now = Instant::now();
                        if now >= kill_at {
                            self.kill();
                            return Ok(self.ended(status));
                        }
                        let nap = (kill_at - now).min(Duration::from_millis(10));
                        tokio::select! {
                            () = tokio::time::sleep(nap) => {}
                            sig = self.interrupts.recv() => self.forward(sig),
                        }
                        continue;
                    }
                }
            }
            let wake = match self.phase {
                Phase::Running => deadline,
                Phase::Signaled { kill_at } => Some(kill_at),
                Phase::Killed => None,
            };
            let timer = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                status = self.child.wait() => {
                    self.status = Some(status.map_err(|e| Error::Status {
                        message: format!("cannot wait for the command (pid {}): {e}", self.pid),
                        code: code::OWN_FAILURE,
                    })?);
                }
                sig = self.interrupts.recv() => self.forward(sig),
                () = timer => match self.phase {
                    Phase::Running => {
                        self.timed_out = true;
                        tracing::debug!(pid = self.pid, "deadline: sending {}", signal_name(signal));
                        signals::signal_group_and_continue(self.pid, signal);
                        self.phase = if signal == SIGKILL {
                            Phase::Killed
                        } else {
                            Phase::Signaled { kill_at: Instant::now() + self.grace }
                        };
                    }
                    Phase::Signaled { .. } => self.kill(),
                    Phase::Killed => {}
                },
            }
        }
    }

    fn kill(&mut self) {
        tracing::warn!(
            pid = self.pid,
            "The command is still running: sending SIGKILL to its process group"
        );
        self.signal_group(SIGKILL);
        self.phase = Phase::Killed;
    }

    fn forward(&mut self, sig: i32) {
        tracing::warn!(
            pid = self.pid,
            signal = sig,
            "Received {}: forwarding it to the command",
            signal_name(sig)
        );
        signals::signal_group_and_continue(self.pid, sig);
        self.interrupted.get_or_insert(sig);
        // As GNU timeout does with --kill-after: a forwarded signal that is
        // ignored is followed by KILL, so rtb never waits forever on it.
        if let Phase::Running = self.phase {
            self.phase = Phase::Signaled {
                kill_at: Instant::now() + self.grace,
            };
        }
    }

    fn ended(&self, status: ExitStatus) -> Ended {
        let kind = if self.timed_out {
            EndKind::TimedOut
        } else if let Some(c) = status.code() {
            EndKind::Exited(u8::try_from(c).unwrap_or(code::OWN_FAILURE))
        } else if let Some(n) = status.signal() {
            EndKind::Signaled(n)
        } else {
            EndKind::Exited(code::OWN_FAILURE)
        };
        Ended {
            kind,
            interrupted: self.interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_gnu_timeout() {
        let e = |kind| Ended {
            kind,
            interrupted: None,
        };
        assert_eq!(e(EndKind::Exited(0)).exit_code(), 0);
        assert_eq!(e(EndKind::Exited(7)).exit_code(), 7);
        assert_eq!(e(EndKind::Signaled(9)).exit_code(), 137);
        assert_eq!(e(EndKind::Signaled(2)).exit_code(), 130);
        assert_eq!(e(EndKind::TimedOut).exit_code(), 124);
    }

    #[test]
    fn spawn_errors_map_to_gnu_codes() {
        let io = |n| std::io::Error::from_raw_os_error(n);
        let code_of = |e: Error| e.exit_code();
        assert_eq!(code_of(spawn_error("x", &io(libc_enoent()))), 127);
        assert_eq!(code_of(spawn_error("x", &io(13))), 126);
        assert_eq!(code_of(spawn_error("x", &io(12))), 125);
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn argv(script: &str) -> Vec<OsString> {
        ["sh", "-c", script].map(OsString::from).to_vec()
    }

    /// Polls `wait` inside select! beside a fast timer, as the guard does
    /// beside its lease renewal, dropping it up to `max` times.
    async fn wait_with_cancels(
        child: &mut Child,
        deadline: Option<Instant>,
        max: u32,
    ) -> (Ended, u32) {
        for cancels in 0..max {
            tokio::select! {
                r = child.wait(deadline, 15, Duration::from_secs(5)) => return (r.unwrap(), cancels),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        panic!("the command did not end within {max} polls");
    }

    #[test]
    fn wait_survives_being_cancelled() {
        rt().block_on(async {
            let a = argv("sleep 0.3; exit 5");
            let mut child = spawn(Spawn {
                argv: &a,
                env: vec![],
                capture_stdout: false,
            })
            .unwrap();
            let (ended, cancels) = wait_with_cancels(&mut child, None, 500).await;
            assert_eq!(ended.kind, EndKind::Exited(5));
            assert!(cancels >= 3, "{cancels}");
            // Called again after the end: the same result.
            let again = child.wait(None, 15, Duration::ZERO).await.unwrap();
            assert_eq!(again, ended);
        });
    }

    #[test]
    fn a_deadline_fires_though_wait_is_cancelled() {
        rt().block_on(async {
            let a = argv("sleep 30");
            let mut child = spawn(Spawn {
                argv: &a,
                env: vec![],
                capture_stdout: false,
            })
            .unwrap();
            let deadline = Instant::now() + Duration::from_millis(200);
            let (ended, _) = wait_with_cancels(&mut child, Some(deadline), 1000).await;
            assert_eq!(ended.kind, EndKind::TimedOut);
            assert_eq!(ended.exit_code(), 124);
        });
    }

    #[test]
    fn captured_stdout_is_readable() {
        use tokio::io::AsyncReadExt;
        rt().block_on(async {
            let a = argv("echo \"$RTB_TEST_VALUE\"");
            let mut child = spawn(Spawn {
                argv: &a,
                env: vec![("RTB_TEST_VALUE".into(), "hello".into())],
                capture_stdout: true,
            })
            .unwrap();
            let mut out = child.take_stdout().unwrap();
            let ended = child.wait(None, 15, Duration::ZERO).await.unwrap();
            let mut s = String::new();
            out.read_to_string(&mut s).await.unwrap();
            assert_eq!((ended.kind, s.as_str()), (EndKind::Exited(0), "hello\n"));
        });
    }

    fn libc_enoent() -> i32 {
        rustix::io::Errno::NOENT.raw_os_error()
    }
}
