//! A builder that runs the real `rtb` binary in a fresh temp dir and, when
//! an assertion fails, prints the command, exit code, stdout and stderr.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// No test waits on rtb longer than this: a hang fails the test.
pub const HARD_LIMIT: Duration = Duration::from_secs(60);

/// Starts a builder for `rtb ARGS...`.
pub fn rtb() -> Rtb {
    Rtb::new()
}

pub struct Rtb {
    cmd: Command,
    dir: tempfile::TempDir,
    stdin: Option<Vec<u8>>,
    shown: Vec<String>,
}

impl Rtb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtb"));
        cmd.current_dir(dir.path());
        // A test never sees the developer's own settings or state.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RTB_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("XDG_STATE_HOME", dir.path().join("state"));
        cmd.env_remove("NO_COLOR");
        Rtb {
            cmd,
            dir,
            stdin: None,
            shown: vec!["rtb".into()],
        }
    }

    /// The temp dir rtb runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.shown.push(a.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    pub fn env(&mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(&mut self, k: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env_remove(k);
        self
    }

    pub fn current_dir(&mut self, d: impl AsRef<Path>) -> &mut Self {
        self.cmd.current_dir(d);
        self
    }

    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Spawns rtb with piped stdout/stderr (and stdin if given).
    pub fn spawn(&mut self) -> Child {
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn rtb");
        if let Some(input) = self.stdin.take() {
            let mut w = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
        child
    }

    /// Runs rtb to the end (at most [`HARD_LIMIT`]) and collects its output.
    pub fn run(&mut self) -> Output {
        let start = Instant::now();
        let child = self.spawn();
        Output::collect(child, start, self.shown.join(" "))
    }
}

impl Default for Rtb {
    fn default() -> Self {
        Self::new()
    }
}

/// What one run of rtb did.
pub struct Output {
    pub cmdline: String,
    /// The exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Waits for `child` (killing it past [`HARD_LIMIT`]) and collects.
    pub fn collect(mut child: Child, start: Instant, cmdline: String) -> Output {
        use std::io::Read;
        use std::os::unix::process::ExitStatusExt;
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let t_out = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let t_err = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > HARD_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{cmdline}` ran past {HARD_LIMIT:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();
        Output {
            cmdline,
            code: status.code(),
            signal: status.signal(),
            stdout: t_out.join().unwrap(),
            stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
            elapsed,
        }
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn report(&self) -> String {
        format!(
            "\ncommand: {}\nexit: {:?} (signal {:?}) after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.cmdline,
            self.code,
            self.signal,
            self.elapsed,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(want),
            "unexpected exit code{}",
            self.report()
        );
        self
    }

    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}{}",
            self.report()
        );
        self
    }

    /// Asserts stderr does not contain `needle`.
    #[track_caller]
    pub fn stderr_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stderr.contains(needle),
            "stderr has {needle:?}{}",
            self.report()
        );
        self
    }

    /// Asserts the whole stdout.
    #[track_caller]
    pub fn stdout_is(&self, want: &str) -> &Self {
        assert_eq!(
            self.stdout_str(),
            want,
            "unexpected stdout{}",
            self.report()
        );
        self
    }

    /// Asserts the run took between `lo` and `hi`.
    #[track_caller]
    pub fn took(&self, lo: Duration, hi: Duration) -> &Self {
        assert!(
            self.elapsed >= lo && self.elapsed <= hi,
            "took {:?}, expected {lo:?}..{hi:?}{}",
            self.elapsed,
            self.report()
        );
        self
    }

    /// Asserts a usage-error or failure shape: no panic, no backtrace, a
    /// short stderr.
    #[track_caller]
    pub fn clean_failure(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "panic{}",
            self.report()
        );
        assert!(
            self.stderr.lines().count() <= 6,
            "stderr too long{}",
            self.report()
        );
        self
    }
}
