//! Command mode: `rtb timeout -- CMD` and `rtb retry -- CMD` against real
//! processes and real signals. Every command that leaves processes records
//! its process group in a file; a guard kills that group when the test
//! ends, so no test leaves processes behind even when it fails.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

use crate::support::{rtb, Output, Rtb};

const RTB: &str = env!("CARGO_BIN_EXE_rtb");

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Kills, on drop, every process group whose leader's pid a command wrote
/// (one per line) to `file`.
struct Groups(PathBuf);

impl Groups {
    fn in_file(file: PathBuf) -> Self {
        Groups(file)
    }
    fn pgids(&self) -> Vec<i32> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
    /// Waits (bounded) until the file names `n` groups.
    fn wait_for(&self, n: usize) -> Vec<i32> {
        let start = Instant::now();
        loop {
            let got = self.pgids();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < secs(20.0),
                "no pid in {} after 20s",
                self.0.display()
            );
            std::thread::sleep(secs(0.01));
        }
    }
    /// Asserts that no live (non-zombie) process is left in any group,
    /// allowing the kernel a moment to tear them down.
    #[track_caller]
    fn assert_gone(&self) {
        let pgids = self.pgids();
        assert!(!pgids.is_empty(), "the command wrote no pid");
        let start = Instant::now();
        loop {
            let left: Vec<_> = pgids.iter().flat_map(|g| members(*g)).collect();
            if left.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < secs(3.0),
                "processes survived in groups {pgids:?}: {left:?}"
            );
            std::thread::sleep(secs(0.02));
        }
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        for g in self.pgids() {
            if let Some(pid) = Pid::from_raw(g) {
                let _ = kill_process_group(pid, Signal::KILL);
            }
        }
    }
}

/// Live (not zombie) processes whose process group is `pgid`, from /proc.
fn members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut f = rest.split_whitespace();
        let state = f.next()?;
        let _ppid = f.next()?;
        let pgrp: i32 = f.next()?.parse().ok()?;
        (pgrp == pgid && state != "Z" && state != "X").then_some(pid)
    })
    .collect()
}

fn send(child: &Child, sig: Signal) {
    let pid = Pid::from_raw(child.id() as i32).expect("a pid");
    kill_process(pid, sig).expect("signal rtb");
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// `rtb ARGS... -- sh -c SCRIPT`.
fn sh(args: &[&str], script: &str) -> Rtb {
    let mut r = rtb();
    r.args(args).args(["--", "sh", "-c", script]);
    r
}

// --- rtb timeout -------------------------------------------------------------

#[test]
fn a_deadline_stops_the_whole_tree() {
    let mut r = sh(
        &["timeout", "--timeout", "1"],
        "echo $$ > pids; sleep 100 & sleep 100 & wait",
    );
    let groups = Groups::in_file(r.path("pids"));
    r.run()
        .code(124)
        .stderr_has("ERROR - Command timed out after 1s")
        .took(secs(0.9), secs(5.0))
        .clean_failure();
    groups.assert_gone();
}

#[test]
fn a_command_that_traps_term_gets_kill() {
    let mut r = sh(
        &["timeout", "--timeout", "1", "--kill-after", "1"],
        "trap '' TERM; echo $$ > pids; sleep 100",
    );
    let groups = Groups::in_file(r.path("pids"));
    r.run()
        .code(124)
        .stderr_has("Command timed out after 1s")
        .stderr_has("SIGKILL")
        .took(secs(1.9), secs(7.0));
    groups.assert_gone();
}

#[test]
fn kill_reaches_a_grandchild_that_outlives_the_command() {
    // sh dies of TERM at the deadline, its background child ignores it.
    let mut r = sh(
        &["timeout", "--timeout", "1", "--kill-after", "1"],
        "echo $$ > pids; (trap '' TERM; sleep 100) & sleep 100",
    );
    let groups = Groups::in_file(r.path("pids"));
    r.run().code(124).took(secs(1.9), secs(7.0));
    groups.assert_gone();
}

#[test]
fn a_stopped_command_is_continued_so_it_gets_the_signal() {
    let mut r = sh(
        &["timeout", "--timeout", "1", "--kill-after", "30"],
        "echo $$ > pids; trap 'exit 0' TERM; kill -STOP $$; sleep 100",
    );
    let groups = Groups::in_file(r.path("pids"));
    r.run()
        .code(124)
        .stderr_lacks("SIGKILL")
        .took(secs(0.9), secs(10.0));
    groups.assert_gone();
}

#[test]
fn the_signal_can_be_chosen() {
    // Only INT ends this command at once; with TERM it would last until KILL.
    let mut r = sh(
        &["timeout", "--timeout", "1", "--signal", "INT", "-k", "30"],
        "echo $$ > pids; trap 'echo INT > got; exit 0' INT; \
         for i in $(seq 300); do sleep 0.1; done",
    );
    let groups = Groups::in_file(r.path("pids"));
    r.run()
        .code(124)
        .stderr_lacks("SIGKILL")
        .took(secs(0.9), secs(10.0));
    assert_eq!(lines(&r.path("got")), ["INT"]);
    groups.assert_gone();
}

#[test]
fn the_commands_status_passes_through() {
    sh(&["timeout"], "echo out; exit 7")
        .run()
        .code(7)
        .stdout_is("out\n")
        .stderr_lacks("ERROR");
    sh(&["timeout"], "exit 0").run().code(0);
}

#[test]
fn death_by_signal_n_is_128_plus_n() {
    sh(&["timeout"], "kill -USR1 $$").run().code(138);
    sh(&["timeout"], "kill -KILL $$").run().code(137);
}

#[test]
fn not_found_is_127() {
    rtb()
        .args(["timeout", "--", "rtb-no-such-command", "x"])
        .run()
        .code(127)
        .stderr_has("command not found: rtb-no-such-command")
        .clean_failure();
}

#[test]
fn not_executable_is_126() {
    let mut r = rtb();
    std::fs::write(r.path("script"), "#!/bin/sh\nexit 0\n").unwrap();
    r.args(["timeout", "--", "./script"])
        .run()
        .code(126)
        .stderr_has("cannot execute ./script")
        .clean_failure();
}

#[test]
fn a_bad_signal_is_a_usage_error() {
    rtb()
        .args(["timeout", "--signal", "40", "--", "true"])
        .run()
        .code(2)
        .stderr_has("'--signal'")
        .clean_failure();
}

fn signal_rtb(args: &[&str], script: &str, sig: Signal, want: i32) -> Output {
    let mut r = sh(args, script);
    let groups = Groups::in_file(r.path("pids"));
    let start = Instant::now();
    let child = r.spawn();
    groups.wait_for(1);
    // Let the command reach its sleep.
    std::thread::sleep(secs(0.2));
    send(&child, sig);
    let out = Output::collect(child, start, format!("rtb {args:?} -- sh -c {script:?}"));
    out.code(want).took(Duration::ZERO, secs(15.0));
    groups.assert_gone();
    out
}

#[test]
fn sigint_to_rtb_is_forwarded_to_the_command() {
    let out = signal_rtb(
        &["timeout", "--timeout", "60"],
        "echo $$ > pids; sleep 100",
        Signal::INT,
        130,
    );
    out.stderr_has("Received SIGINT");
}

#[test]
fn sigterm_to_rtb_stops_the_whole_tree() {
    signal_rtb(
        &["timeout", "--timeout", "60"],
        "echo $$ > pids; sleep 100 & sleep 100 & wait",
        Signal::TERM,
        143,
    );
}

#[test]
fn the_deadline_and_attempt_are_in_the_environment() {
    let before = now_ms();
    let out = sh(
        &["timeout", "--timeout", "10"],
        "echo \"$RTB_ATTEMPT $RTB_DEADLINE\"",
    )
    .run();
    out.code(0);
    let s = out.stdout_str();
    let (attempt, deadline) = s.trim().split_once(' ').expect("two words");
    assert_eq!(attempt, "1");
    let d: u128 = deadline.parse().expect("Unix ms");
    assert!(
        d >= before + 9_000 && d <= now_ms() + 10_500,
        "RTB_DEADLINE {d} not 10s after {before}"
    );
}

#[test]
fn a_nested_rtb_stops_at_the_outer_deadline() {
    let mut r = rtb();
    r.args(["timeout", "--timeout", "2", "--", RTB])
        .args(["timeout", "--timeout", "60", "--", "sh", "-c"])
        .arg("echo $$ > pids; sleep 60");
    let groups = Groups::in_file(r.path("pids"));
    r.run().code(124).took(secs(1.9), secs(5.0));
    groups.assert_gone();
}

#[test]
fn a_nested_retry_fits_the_outer_budget() {
    // Alone, the inner loop would run for minutes; inside 3s it must give
    // up by itself, before the outer deadline, and say why.
    let mut r = rtb();
    r.args(["timeout", "--timeout", "3", "--", RTB])
        .args(["retry", "--attempts", "1000", "--delay", "200ms"])
        .args(["--timeout", "60", "--", "false"]);
    r.run()
        .code(1)
        .stderr_has("inherited from RTB_DEADLINE")
        .stderr_lacks("timed out")
        .took(secs(0.5), secs(3.2));
}

// --- rtb retry ---------------------------------------------------------------

const COUNTER: &str = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count";

#[test]
fn retry_counts_attempts_until_success() {
    let mut r = sh(
        &["retry", "--attempts", "5", "--delay", "50ms"],
        &format!("{COUNTER}; [ $n -ge 3 ]"),
    );
    let out = r.run();
    out.code(0)
        .stderr_has("WARNING - Attempt 1 failed (exit 1). Retrying in 50ms...")
        .stderr_has("WARNING - Attempt 2 failed (exit 1). Retrying in 100ms...")
        .stderr_has("INFO - Command succeeded on attempt 3");
    assert_eq!(lines(&r.path("count")), ["3"]);
}

#[test]
fn retry_gives_up_with_the_last_status() {
    let mut r = sh(
        &["retry", "--attempts", "3", "--delay", "10ms"],
        &format!("{COUNTER}; exit 3"),
    );
    r.run()
        .code(3)
        .stderr_has("ERROR - Failed after 3 attempts: exit 3")
        .clean_failure();
    assert_eq!(lines(&r.path("count")), ["3"]);
}

#[test]
fn retry_on_exit_stops_at_an_unlisted_status() {
    let mut r = sh(
        &[
            "retry",
            "--attempts",
            "5",
            "--delay",
            "10ms",
            "--retry-on-exit",
            "2,4-5",
        ],
        &format!("{COUNTER}; exit 3"),
    );
    r.run()
        .code(3)
        .stderr_lacks("Retrying")
        .stderr_has("not in --retry-on-exit");
    assert_eq!(lines(&r.path("count")), ["1"]);

    let mut r = sh(
        &[
            "retry",
            "--attempts",
            "5",
            "--delay",
            "10ms",
            "--retry-on-exit",
            "2,4-5",
        ],
        &format!("{COUNTER}; [ $n -ge 3 ] || exit $((n*2))"),
    );
    r.run()
        .code(0)
        .stderr_has("Attempt 1 failed (exit 2)")
        .stderr_has("Attempt 2 failed (exit 4)")
        .stderr_has("Command succeeded on attempt 3");
}

#[test]
fn retry_never_retries_what_cannot_run() {
    rtb()
        .args(["retry", "--attempts", "5", "--delay", "10ms", "--"])
        .arg("rtb-no-such-command")
        .run()
        .code(127)
        .stderr_lacks("Retrying")
        .stderr_has("command not found: rtb-no-such-command")
        .clean_failure();
    let mut r = rtb();
    std::fs::write(r.path("script"), "#!/bin/sh\nexit 0\n").unwrap();
    r.args([
        "retry",
        "--attempts",
        "5",
        "--delay",
        "10ms",
        "--",
        "./script",
    ])
    .run()
    .code(126)
    .stderr_lacks("Retrying")
    .stderr_has("cannot execute ./script");
}

#[test]
fn a_timed_out_attempt_is_retried_as_124() {
    let mut r = sh(
        &[
            "retry",
            "--attempts",
            "2",
            "--delay",
            "10ms",
            "--timeout",
            "300ms",
        ],
        &format!("{COUNTER}; echo $$ >> pids; [ $n -ge 2 ] || sleep 100"),
    );
    let groups = Groups::in_file(r.path("pids"));
    r.run()
        .code(0)
        .stderr_has("Attempt 1 failed (timed out after 300ms). Retrying in 10ms...")
        .stderr_has("Command succeeded on attempt 2");
    groups.assert_gone();
}

#[test]
fn max_time_cuts_a_running_attempt() {
    let mut r = sh(
        &[
            "retry",
            "--max-time",
            "2",
            "--timeout",
            "60",
            "--attempts",
            "5",
        ],
        "echo $$ >> pids; sleep 100",
    );
    let groups = Groups::in_file(r.path("pids"));
    r.run()
        .code(124)
        .stderr_has("the --max-time budget of 2s")
        .took(secs(1.9), secs(5.0))
        .clean_failure();
    assert_eq!(groups.pgids().len(), 1, "one attempt only");
    groups.assert_gone();
}

#[test]
fn each_attempt_sees_its_number_and_deadline() {
    let before = now_ms();
    let mut r = sh(
        &[
            "retry",
            "--attempts",
            "2",
            "--delay",
            "10ms",
            "--timeout",
            "10",
        ],
        "echo \"$RTB_ATTEMPT $RTB_DEADLINE\" >> env; [ \"$RTB_ATTEMPT\" = 2 ]",
    );
    r.run().code(0);
    let got = lines(&r.path("env"));
    assert_eq!(got.len(), 2, "{got:?}");
    for (i, line) in got.iter().enumerate() {
        let (attempt, deadline) = line.split_once(' ').expect("two words");
        assert_eq!(attempt, (i + 1).to_string());
        let d: u128 = deadline.parse().expect("Unix ms");
        assert!(
            d >= before + 9_000 && d <= now_ms() + 10_500,
            "RTB_DEADLINE {d} not 10s after {before}"
        );
    }
}

#[test]
fn a_signal_between_attempts_ends_the_loop() {
    let mut r = sh(
        &["retry", "--attempts", "5", "--delay", "30s"],
        &format!("{COUNTER}; echo $$ >> pids; exit 1"),
    );
    let groups = Groups::in_file(r.path("pids"));
    let start = Instant::now();
    let child = r.spawn();
    groups.wait_for(1);
    std::thread::sleep(secs(0.3));
    send(&child, Signal::TERM);
    let out = Output::collect(child, start, "rtb retry ... exit 1".into());
    out.code(143)
        .stderr_has("Interrupted after 1 attempt")
        .took(Duration::ZERO, secs(10.0));
    assert_eq!(lines(&r.path("count")), ["1"]);
}

#[test]
fn a_signal_during_an_attempt_is_forwarded_and_ends_the_loop() {
    signal_rtb(
        &[
            "retry",
            "--attempts",
            "5",
            "--delay",
            "10ms",
            "--timeout",
            "60",
        ],
        "echo $$ >> pids; sleep 100",
        Signal::INT,
        130,
    )
    .stderr_has("not retrying: rtb received SIGINT");
}

#[test]
fn a_url_and_a_command_together_or_neither_is_a_usage_error() {
    rtb()
        .args(["timeout", "http://127.0.0.1:9/", "--", "true"])
        .run()
        .code(2)
        .stderr_has("not both")
        .clean_failure();
    rtb().args(["retry"]).run().code(2).clean_failure();
    rtb()
        .args(["retry", "--header", "A: b", "--", "true"])
        .run()
        .code(2)
        .stderr_has("--header applies to URL mode only")
        .clean_failure();
}

/// Regression: when the outer rtb escalated to KILL, it killed the inner
/// rtb while the inner rtb's own group (ignoring TERM) lived on, orphaned.
#[test]
fn a_nested_rtb_kills_its_group_before_the_outer_kills_it() {
    let mut r = rtb();
    r.args(["timeout", "--timeout", "1", "--kill-after", "1", "--", RTB])
        .args(["timeout", "--timeout", "100", "--", "sh", "-c"])
        .arg("trap '' TERM; echo $$ > pids; sleep 100");
    let groups = Groups::in_file(r.path("pids"));
    r.run().code(124).took(secs(0.9), secs(5.0));
    groups.assert_gone();
}

/// Regression: --max-time was overrun by the whole --kill-after (5 s by
/// default) when the attempt it cut off ignored TERM; now KILL follows
/// within a tenth of the attempt.
#[test]
fn max_time_bounds_an_attempt_that_ignores_term() {
    let mut r = sh(
        &["retry", "--max-time", "2"],
        "trap '' TERM; echo $$ > pids; sleep 100",
    );
    let groups = Groups::in_file(r.path("pids"));
    r.run()
        .code(124)
        .stderr_has("the --max-time budget of 2s is spent")
        .took(secs(1.9), secs(3.5));
    groups.assert_gone();
}
