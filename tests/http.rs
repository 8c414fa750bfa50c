//! URL mode: `rtb timeout URL` and `rtb retry URL` against the
//! fault-injecting loopback server.

use std::time::Duration;

use crate::support::{rtb, Server};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---- rtb timeout URL -------------------------------------------------

#[test]
fn timeout_success_prints_body_and_logs_status() {
    let s = Server::start();
    let out = rtb().args(["timeout", &s.url("/s/200")]).run();
    out.code(0)
        .stdout_is("status 200\n")
        .stderr_has(" - INFO - Request succeeded: 200");
    assert_eq!(s.hits("/s/200"), 1);
}

#[test]
fn timeout_error_statuses_fail_loudly() {
    let s = Server::start();
    for (code, reason) in [
        (404, "Not Found"),
        (500, "Internal Server Error"),
        (503, ""),
    ] {
        let out = rtb().args(["timeout", &s.url(&format!("/s/{code}"))]).run();
        out.code(1)
            .stdout_is("")
            .stderr_has(&format!(" - ERROR - Request failed: HTTP {code} {reason}"));
    }
}

#[test]
fn timeout_cuts_off_a_dripping_body_at_the_deadline() {
    let s = Server::start();
    // Headers at once, then a byte every 100 ms for 4 s: a per-read
    // timeout would never fire; the total deadline must.
    let out = rtb()
        .args(["timeout", "--timeout", "1", &s.url("/s/drip=40:100")])
        .run();
    out.code(1)
        .stdout_is("")
        .stderr_has("ERROR - Request timed out after 1s")
        .took(secs(0.9), secs(2.5));
}

#[test]
fn timeout_bounds_a_slow_server() {
    let s = Server::start();
    let out = rtb()
        .args(["timeout", "--timeout", "300ms", &s.url("/s/delay=5000")])
        .run();
    out.code(1)
        .stderr_has("Request timed out after 300ms")
        .took(secs(0.25), secs(2.0));
}

#[test]
fn timeout_connection_refused_is_one_clear_line() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let out = rtb().args(["timeout", &url]).run();
    out.code(1).stderr_has("connection refused").clean_failure();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn timeout_refuses_malformed_and_unsupported_urls() {
    for (url, needle) in [
        ("not a url", "invalid value 'not a url' for 'URL'"),
        ("ftp://127.0.0.1/x", "unsupported scheme 'ftp'"),
        ("http://", "for 'URL'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
    ] {
        rtb()
            .args(["timeout", url])
            .run()
            .code(2)
            .stderr_has(needle)
            .clean_failure();
    }
}

#[test]
fn timeout_writes_output_file_only_when_complete() {
    let s = Server::start();
    let mut cmd = rtb();
    let dest = cmd.path("body.txt");
    cmd.args(["timeout", "-o", dest.to_str().unwrap(), &s.url("/s/200")])
        .run()
        .code(0)
        .stdout_is("");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "status 200\n");

    // A body cut off by the deadline leaves neither the file nor a temp file.
    let mut cmd = rtb();
    let dest = cmd.path("late.txt");
    cmd.args([
        "timeout",
        "--timeout",
        "500ms",
        "-o",
        dest.to_str().unwrap(),
        &s.url("/s/drip=40:50"),
    ])
    .run()
    .code(1);
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(cmd.dir()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

// ---- rtb retry URL ---------------------------------------------------

#[test]
fn retry_recovers_from_flaky_server_with_one_body() {
    let s = Server::start();
    let url = s.url("/seq/flaky?s=503,cut=100:10,200");
    let out = rtb().args(["retry", "--delay", "50ms", &url]).run();
    out.code(0)
        // Only the successful attempt's body: nothing of the cut one.
        .stdout_is("status 200\n")
        .stderr_has("WARNING - Attempt 1 failed (HTTP 503). Retrying in 50ms...")
        .stderr_has("WARNING - Attempt 2 failed (body cut short")
        .stderr_has("Retrying in 100ms...")
        .stderr_has("INFO - Request succeeded on attempt 3");
    assert_eq!(s.hits("/seq/flaky"), 3);
}

#[test]
fn retry_default_schedule_is_one_then_two_seconds() {
    let s = Server::start();
    let out = rtb().args(["retry", &s.url("/s/503")]).run();
    out.code(1)
        .stderr_has("Attempt 1 failed (HTTP 503). Retrying in 1s...")
        .stderr_has("Attempt 2 failed (HTTP 503). Retrying in 2s...")
        .stderr_has("ERROR - Failed after 3 attempts: HTTP 503")
        .took(secs(2.8), secs(6.0));
    assert_eq!(s.hits("/s/503"), 3);
}

#[test]
fn retry_never_retries_client_errors() {
    let s = Server::start();
    for code in [400, 401, 403, 404] {
        let path = format!("/s/{code}");
        let out = rtb()
            .args(["retry", "--delay", "10ms", &s.url(&path)])
            .run();
        out.code(1)
            .stderr_has(&format!("Attempt 1 failed (HTTP {code}); not retrying"))
            .stderr_lacks("Retrying in");
        assert_eq!(s.hits(&path), 1, "HTTP {code} was retried");
    }
}

#[test]
fn retry_retries_429_and_the_5xx_list() {
    let s = Server::start();
    for code in [429, 500, 502, 503, 504] {
        let path = format!("/seq/r{code}");
        let url = s.url(&format!("{path}?s={code},200"));
        rtb().args(["retry", "--delay", "10ms", &url]).run().code(0);
        assert_eq!(s.hits(&path), 2, "HTTP {code} not retried once");
    }
    // 501 is not in the default list.
    let out = rtb()
        .args(["retry", "--delay", "10ms", &s.url("/s/501")])
        .run();
    out.code(1).stderr_has("501 is not in --retry-on");
    assert_eq!(s.hits("/s/501"), 1);
    // --retry-on changes the list.
    let url = s.url("/seq/r501?s=501,200");
    rtb()
        .args(["retry", "--delay", "10ms", "--retry-on", "501", &url])
        .run()
        .code(0);
    assert_eq!(s.hits("/seq/r501"), 2);
}

#[test]
fn retry_on_refuses_never_retryable_statuses() {
    rtb()
        .args(["retry", "--retry-on", "503,404", "http://127.0.0.1:9/"])
        .run()
        .code(2)
        .stderr_has("404 is never retried")
        .clean_failure();
}

#[test]
fn retry_retries_connection_resets_and_broken_chunking() {
    let s = Server::start();
    let url = s.url("/seq/rc?s=reset,chunkcut,200");
    let out = rtb().args(["retry", "--delay", "10ms", &url]).run();
    out.code(0)
        .stdout_is("status 200\n")
        .stderr_has("Attempt 1 failed (")
        .stderr_has("Attempt 2 failed (body cut short");
    assert_eq!(s.hits("/seq/rc"), 3);
}

#[test]
fn retry_gives_up_on_connection_refused_after_the_attempts() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let out = rtb()
        .args(["retry", "--attempts", "4", "--delay", "10ms", &url])
        .run();
    out.code(1)
        .stderr_has("Failed after 4 attempts: connection refused");
}

#[test]
fn retry_invalid_url_is_not_retried() {
    let out = rtb().args(["retry", "http://exa mple.com/"]).run();
    out.code(2)
        .stderr_lacks("Retrying")
        .took(secs(0.0), secs(1.0));
}

#[test]
fn retry_each_attempt_gets_its_own_timeout() {
    let s = Server::start();
    let url = s.url("/seq/slow?s=drip=50:50,200");
    let out = rtb()
        .args(["retry", "--timeout", "500ms", "--delay", "10ms", &url])
        .run();
    out.code(0)
        .stdout_is("status 200\n")
        .stderr_has("Attempt 1 failed (timed out after 500ms)");
}

#[test]
fn retry_honours_retry_after_seconds_and_dates() {
    let s = Server::start();
    let out = rtb()
        .args(["retry", "--delay", "10ms", &s.url("/seq/ra?s=503:ra=1,200")])
        .run();
    out.code(0)
        .stderr_has("Retrying in 1s...")
        .took(secs(0.9), secs(4.0));
    assert_eq!(s.hits("/seq/ra"), 2);

    let when = httpdate_in(2);
    let out = rtb()
        .args([
            "retry",
            "--delay",
            "10ms",
            &s.url(&format!("/seq/rd?s=429:ra={when},200")),
        ])
        .run();
    out.code(0).took(secs(0.5), secs(5.0));
    assert_eq!(s.hits("/seq/rd"), 2);
}

fn httpdate_in(secs: u64) -> String {
    let t = std::time::SystemTime::now() + Duration::from_secs(secs);
    // An IMF-fixdate in the server's step syntax ('_' space, '~' comma).
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!(
                "@{}",
                t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
            ),
            "+%a~_%d_%b_%Y_%H:%M:%S_GMT",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn retry_after_longer_than_max_delay_stops_at_once() {
    let s = Server::start();
    let out = rtb().args(["retry", &s.url("/s/429:ra=3600")]).run();
    out.code(1)
        .stderr_has("the server asked to wait 3600s before retrying, longer than --max-delay 30s")
        .took(secs(0.0), secs(2.0));
    assert_eq!(s.hits("/s/429:ra=3600"), 1);
}

#[test]
fn retry_after_past_the_budget_stops_at_once() {
    let s = Server::start();
    let out = rtb()
        .args(["retry", "--max-time", "3", &s.url("/s/503:ra=10")])
        .run();
    out.code(1)
        .stderr_has("left of the --max-time budget of 3s")
        .took(secs(0.0), secs(2.0));
}

#[test]
fn max_time_cuts_a_running_attempt() {
    let s = Server::start();
    let out = rtb()
        .args([
            "retry",
            "--timeout",
            "10",
            "--max-time",
            "1",
            &s.url("/s/delay=5000"),
        ])
        .run();
    out.code(1)
        .stderr_has("Gave up after 1 attempt: the --max-time budget of 1s is spent")
        .took(secs(0.9), secs(2.5));
}

#[test]
fn max_time_refuses_a_sleep_that_would_pass_it() {
    let s = Server::start();
    let out = rtb()
        .args(["retry", "--delay", "5", "--max-time", "2", &s.url("/s/503")])
        .run();
    out.code(1)
        .stderr_has("the next retry in 5s would pass the --max-time budget of 2s")
        .took(secs(0.0), secs(1.5));
    assert_eq!(s.hits("/s/503"), 1);
}

#[test]
fn post_is_not_retried_after_it_may_have_reached_the_server() {
    let s = Server::start();
    let out = rtb()
        .args([
            "retry",
            "-X",
            "POST",
            "-d",
            "x=1",
            "--delay",
            "10ms",
            &s.url("/seq/post?s=503,echo"),
        ])
        .run();
    out.code(1)
        .stderr_has("POST is not idempotent and the request may have reached the server")
        .stderr_has("--idempotency-key");
    assert_eq!(s.hits("/seq/post"), 1);
}

#[test]
fn post_with_idempotency_key_is_retried_with_the_same_key() {
    let s = Server::start();
    let out = rtb()
        .args([
            "retry",
            "-X",
            "POST",
            "-d",
            "x=1",
            "--idempotency-key",
            "order-42",
            "--delay",
            "10ms",
            &s.url("/seq/postk?s=reset,echo"),
        ])
        .run();
    out.code(0);
    let body = out.stdout_str();
    assert!(body.starts_with("POST /seq/postk\n"), "{body}");
    assert!(body.contains("idempotency-key: order-42\n"), "{body}");
    assert!(body.ends_with("\n\nx=1"), "{body}");
    assert_eq!(s.hits("/seq/postk"), 2);
}

#[test]
fn post_is_retried_when_the_connection_was_never_made() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let out = rtb()
        .args(["retry", "-X", "POST", "-d", "x", "--delay", "10ms", &url])
        .run();
    out.code(1)
        .stderr_has("Failed after 3 attempts: connection refused");
}

#[test]
fn headers_and_data_from_a_file_are_sent() {
    let s = Server::start();
    let mut cmd = rtb();
    std::fs::write(cmd.path("payload.json"), "{\"a\":1}").unwrap();
    let out = cmd
        .args([
            "retry",
            "-X",
            "put",
            "-H",
            "X-Trace: abc",
            "-H",
            "Content-Type: application/json",
            "-d",
            "@payload.json",
            &s.url("/s/echo"),
        ])
        .run();
    out.code(0);
    let body = out.stdout_str();
    assert!(body.starts_with("PUT /s/echo\n"), "{body}");
    assert!(body.contains("x-trace: abc\n") && body.contains("content-type: application/json\n"));
    assert!(body.ends_with("{\"a\":1}"), "{body}");
}

#[test]
fn bad_request_options_are_usage_errors() {
    for (args, needle) in [
        (
            vec!["-H", "NoColon"],
            "invalid value 'NoColon' for '--header'",
        ),
        (vec!["-H", "Bad Name: x"], "for '--header'"),
        (vec!["-X", "GE T"], "for '--request'"),
        (
            vec!["-d", "@/nonexistent/file"],
            "cannot read /nonexistent/file",
        ),
        (vec!["--attempts", "0"], "--attempts"),
        (vec!["--timeout", "0"], "must be greater than zero"),
        (vec!["--delay", "-1"], "cannot be negative"),
        (vec!["--max-time", "2y"], "longer than a year"),
        (vec!["--jitter", "some"], "--jitter"),
    ] {
        let mut full = vec!["retry"];
        full.extend(args);
        full.push("http://127.0.0.1:9/");
        rtb()
            .args(&full)
            .run()
            .code(2)
            .stderr_has(needle)
            .clean_failure();
    }
}

#[test]
fn output_file_gets_only_the_successful_body() {
    let s = Server::start();
    let mut cmd = rtb();
    let dest = cmd.path("out.bin");
    cmd.args([
        "retry",
        "--delay",
        "10ms",
        "-o",
        dest.to_str().unwrap(),
        &s.url("/seq/o?s=cut=1000:500,big=3000"),
    ])
    .run()
    .code(0)
    .stdout_is("");
    assert_eq!(std::fs::read(&dest).unwrap(), vec![b'b'; 3000]);
    let names: Vec<_> = std::fs::read_dir(cmd.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["out.bin"]);
}

#[test]
fn large_bodies_stream_with_bounded_memory() {
    let s = Server::start();
    let cmd = rtb();
    let dest = cmd.path("big.bin");
    // 300 MB through a process whose data segment is capped at 200 MB:
    // holding the body in memory would fail.
    let n: u64 = 300_000_000;
    let rtb_bin = env!("CARGO_BIN_EXE_rtb");
    let out = std::process::Command::new("prlimit")
        .args([
            "--data=200000000",
            "--",
            rtb_bin,
            "-q",
            "timeout",
            "--timeout",
            "60",
            "-o",
        ])
        .arg(&dest)
        .arg(s.url(&format!("/s/big={n}")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), n);
}

#[test]
fn json_logs_carry_structured_fields() {
    let s = Server::start();
    let out = rtb()
        .args([
            "--log-format",
            "json",
            "retry",
            "--delay",
            "20ms",
            &s.url("/seq/j?s=503,200"),
        ])
        .run();
    out.code(0);
    let lines: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let warn = &lines[0];
    assert_eq!(warn["level"], "WARNING");
    assert_eq!(
        warn["msg"],
        "Attempt 1 failed (HTTP 503). Retrying in 20ms..."
    );
    assert_eq!(warn["attempt"], 1);
    assert_eq!(warn["delay_ms"], 20);
    assert_eq!(warn["error"], "HTTP 503");
    assert_eq!(warn["url"], s.url("/seq/j?s=503,200"));
    assert!(warn["ts"].as_str().unwrap().len() >= 20);
    let ok = &lines[1];
    assert_eq!(ok["msg"], "Request succeeded on attempt 2");
    assert_eq!(ok["url"], s.url("/seq/j?s=503,200"));
    assert!(ok["elapsed_ms"].as_u64().is_some());
}

#[test]
fn log_format_comes_from_the_environment_and_the_flag_wins() {
    let s = Server::start();
    let out = rtb()
        .env("RTB_LOG_FORMAT", "json")
        .args(["timeout", &s.url("/s/200")])
        .run();
    out.code(0).stderr_has("\"msg\":\"Request succeeded: 200\"");
    let out = rtb()
        .env("RTB_LOG_FORMAT", "json")
        .args(["--log-format", "text", "timeout", &s.url("/s/200")])
        .run();
    out.code(0).stderr_has(" - INFO - Request succeeded: 200");
}

#[test]
fn quiet_prints_errors_only_and_no_progress_off_a_terminal() {
    let s = Server::start();
    rtb()
        .args(["-q", "timeout", &s.url("/s/200")])
        .run()
        .code(0);
    let out = rtb()
        .args(["-q", "retry", "--delay", "10ms", &s.url("/s/503")])
        .run();
    out.code(1)
        .stderr_lacks("WARNING")
        .stderr_has("ERROR - Failed after 3 attempts");
    assert_eq!(out.stderr.lines().count(), 1);
    // A body that takes over a second, stderr not a terminal: no bar.
    let out = rtb().args(["timeout", &s.url("/s/drip=15:100")]).run();
    out.code(0).stderr_lacks("\u{1b}[");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn credentials_never_reach_the_log() {
    let s = Server::start();
    let url = s.url("/s/503").replace("http://", "http://alice:s3cret@");
    for fmt in ["text", "json"] {
        let out = rtb()
            .args([
                "-v",
                "--log-format",
                fmt,
                "retry",
                "--attempts",
                "2",
                "--delay",
                "10ms",
                "-H",
                "Authorization: Bearer tok3n",
                &url,
            ])
            .run();
        out.code(1)
            .stderr_lacks("s3cret")
            .stderr_lacks("alice")
            .stderr_lacks("tok3n");
    }
    rtb()
        .args([
            "retry",
            "-H",
            "Authorization",
            "http://bob:hunter2@127.0.0.1:9/",
        ])
        .run()
        .code(2)
        .stderr_lacks("hunter2");
}

#[test]
fn interrupted_fetch_exits_128_plus_n_and_leaves_no_temp_file() {
    let s = Server::start();
    let mut cmd = rtb();
    let dest = cmd.path("partial.bin");
    cmd.args([
        "timeout",
        "--timeout",
        "30",
        "-o",
        dest.to_str().unwrap(),
        &s.url("/s/drip=100:100"),
    ]);
    let start = std::time::Instant::now();
    let child = cmd.spawn();
    // Let the body start arriving, then interrupt.
    std::thread::sleep(Duration::from_millis(700));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = crate::support::Output::collect(child, start, "rtb timeout (SIGINT)".into());
    out.code(130)
        .stderr_has("Interrupted by SIGINT")
        .took(secs(0.5), secs(5.0));
    let left: Vec<_> = std::fs::read_dir(cmd.dir()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Runs rtb under a pseudo-terminal (util-linux `script`), returning what
/// the terminal showed; `None` when `script` is not installed.
fn on_a_terminal(args: &str) -> Option<String> {
    let bin = env!("CARGO_BIN_EXE_rtb");
    let out = std::process::Command::new("script")
        .args(["-qec", &format!("{bin} {args}"), "/dev/null"])
        .env_remove("RTB_LOG_FORMAT")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn progress_bar_only_on_a_terminal_for_slow_bodies() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("body");
    let url = s.url("/s/drip=25:80");
    let Some(shown) = on_a_terminal(&format!("timeout --timeout 20 -o {} {url}", dest.display()))
    else {
        println!("SKIP progress_bar_only_on_a_terminal_for_slow_bodies: `script` is not installed");
        return;
    };
    assert!(
        shown.contains("/25 B"),
        "no progress bar on a terminal: {shown:?}"
    );
    assert!(shown.contains("Request succeeded: 200"), "{shown:?}");
    // -q: errors only, so no bar either.
    let quiet = on_a_terminal(&format!(
        "-q timeout --timeout 20 -o {} {url}",
        dest.display()
    ))
    .unwrap();
    assert!(!quiet.contains("/25 B"), "a bar despite -q: {quiet:?}");
    // A fast body never shows one.
    let fast = on_a_terminal(&format!(
        "timeout -o {} {}",
        dest.display(),
        s.url("/s/200")
    ))
    .unwrap();
    assert!(!fast.contains(" B/"), "a bar for a fast body: {fast:?}");
}

#[test]
fn tls_failure_is_one_clear_line_and_not_retried() {
    // An https URL against the plain-HTTP test server: the handshake fails.
    let s = Server::start();
    let url = s.url("/s/200").replace("http://", "https://");
    let out = rtb().args(["timeout", &url]).run();
    out.code(1)
        .stderr_has("Request failed: TLS handshake with 127.0.0.1 failed")
        .clean_failure();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let out = rtb().args(["retry", "--delay", "10ms", &url]).run();
    out.code(1)
        .stderr_has("not retrying: a TLS failure is not fixed by sending the request again")
        .stderr_lacks("Retrying in");
}
