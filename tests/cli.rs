//! The CLI sweep: every bad invocation a person or a script can give rtb
//! gets a short answer that names the bad value, exit 2 (usage) or 1
//! (failure), never a panic, and leaves nothing behind. Also: secrets stay
//! out of every log line, and completions, man page, --help, --version and
//! the environment settings.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::support::{rtb, Output, Server};

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Everything in `dir`, recursively, as sorted relative paths.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Bytes that are not UTF-8, as one argument.
fn not_utf8(prefix: &str) -> OsString {
    let mut v = prefix.as_bytes().to_vec();
    v.extend_from_slice(b"\xff\xfe");
    OsStr::from_bytes(&v).to_os_string()
}

/// One bad invocation: what it gets, what stderr must name, and what to
/// make in its dir first ("dir/" makes a directory).
struct Bad {
    args: Vec<OsString>,
    env: Vec<(&'static str, &'static str)>,
    setup: Option<&'static str>,
    code: i32,
    names: String,
}

fn bad(code: i32, names: &str, args: &[&str]) -> Bad {
    Bad {
        args: args.iter().map(OsString::from).collect(),
        env: vec![],
        setup: None,
        code,
        names: names.into(),
    }
}

impl Bad {
    fn env(mut self, k: &'static str, v: &'static str) -> Self {
        self.env.push((k, v));
        self
    }
    fn setup(mut self, what: &'static str) -> Self {
        self.setup = Some(what);
        self
    }
    fn arg(mut self, a: OsString) -> Self {
        self.args.push(a);
        self
    }
}

/// Runs one case and checks the shape of its answer.
fn check(case: &Bad) -> Output {
    let mut cmd = rtb();
    if let Some(what) = case.setup {
        match what.strip_suffix('/') {
            Some(d) => std::fs::create_dir(cmd.path(d)).unwrap(),
            None => std::fs::write(cmd.path(what), "x").unwrap(),
        }
    }
    let before = tree(cmd.dir());
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let out = cmd.args(&case.args).run();
    out.code(case.code)
        .clean_failure()
        .stderr_has(&case.names)
        .stderr_lacks("backtrace");
    assert!(
        !out.stderr.trim().is_empty(),
        "silent failure: {}",
        out.cmdline
    );
    let after = tree(cmd.dir());
    assert_eq!(before, after, "left something behind: {}", out.cmdline);
    if let Some(file) = case.setup.filter(|w| !w.ends_with('/')) {
        let kept = std::fs::read(cmd.path(file)).unwrap();
        assert_eq!(kept, b"x", "{file} was changed: {}", out.cmdline);
    }
    out
}

#[test]
fn bad_invocations_get_a_short_answer_naming_the_value() {
    let dead = format!("http://127.0.0.1:{}/", closed_port());
    let u = dead.as_str();
    // `touch ran` as the command: had any case started it, `ran` would be
    // left behind and the tree check would fail.
    let cmd = ["--", "touch", "ran"];
    let with_cmd = |code: i32, names: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(cmd);
        bad(code, names, &all)
    };
    let long_id = "x".repeat(257);
    let cases = vec![
        // ---- global
        bad(2, "subcommand", &[]),
        bad(2, "'bogus'", &["bogus"]),
        bad(2, "'--bogus'", &["--bogus", "timeout", u]),
        bad(2, "'xml'", &["--log-format", "xml", "timeout", u]),
        bad(2, "'xml'", &["timeout", u]).env("RTB_LOG_FORMAT", "xml"),
        bad(2, "'tcsh'", &["completions", "tcsh"]),
        bad(2, "<SHELL>", &["completions"]),
        bad(2, "'extra'", &["man", "extra"]),
        // ---- timeout, URL mode
        bad(2, "URL", &["timeout"]),
        bad(2, "'--timeout", &["timeout", "--timeout"]),
        bad(2, "'5x'", &["timeout", "--timeout", "5x", u]),
        bad(2, "'0'", &["timeout", "--timeout", "0", u]),
        bad(2, "'-1'", &["timeout", "--timeout", "-1", u]),
        bad(
            2,
            "'99999999999999999999'",
            &["timeout", "-t", "99999999999999999999", u],
        ),
        bad(2, "'1e400'", &["timeout", "-t", "1e400", u]),
        bad(2, "'nan'", &["timeout", "-t", "nan", u]),
        bad(2, "'--timeout", &["timeout", "-t", "1", "-t", "2", u]),
        bad(2, "'--bogus'", &["timeout", "--bogus", u]),
        bad(2, "not both", &["timeout", u, "--", "touch", "ran"]),
        bad(2, "'ftp'", &["timeout", "ftp://127.0.0.1/x"]),
        bad(2, "'not-a-url'", &["timeout", "not-a-url"]),
        bad(2, "'http://'", &["timeout", "http://"]),
        bad(2, "URL", &["timeout", ""]),
        bad(2, "'no colon'", &["timeout", "-H", "no colon", u]),
        bad(2, "'Bad Name'", &["timeout", "-H", "Bad Name: x", u]),
        bad(2, "'G T'", &["timeout", "-X", "G T", u]),
        bad(2, "missing-body", &["timeout", "-d", "@missing-body", u]),
        bad(2, "'--request", &["timeout", u, "-X"]),
        bad(2, "'http://127.0.0.1/", &["timeout"]).arg(not_utf8("http://127.0.0.1/")),
        bad(2, "'X-A: ", &["timeout", u, "-H"]).arg(not_utf8("X-A: ")),
        bad(2, "'--timeout", &["timeout", u, "-t"]).arg(not_utf8("5")),
        bad(1, "127.0.0.1", &["timeout", "-t", "2s", u]),
        bad(2, "'out'", &["timeout", "-t", "2s", "-o", "out", u]).setup("out/"),
        bad(2, "'.'", &["retry", "-X", "POST", "-d", "x", "-o", ".", u]),
        // ---- timeout, command mode
        with_cmd(2, "'BOGUS'", &["timeout", "--signal", "BOGUS"]),
        with_cmd(2, "'0'", &["timeout", "-s", "0"]),
        with_cmd(
            2,
            "'99999999999999999999'",
            &["timeout", "-s", "99999999999999999999"],
        ),
        with_cmd(2, "'junk'", &["timeout", "--kill-after", "junk"]),
        with_cmd(2, "--output", &["timeout", "-o", "out"]),
        with_cmd(2, "--header", &["timeout", "-H", "X-A: 1"]),
        with_cmd(2, "--data", &["timeout", "-d", "x"]),
        // ---- retry
        bad(2, "URL", &["retry"]),
        bad(2, "'0'", &["retry", "--attempts", "0", u]),
        bad(2, "'10001'", &["retry", "-n", "10001", u]),
        bad(2, "'-1'", &["retry", "-n", "-1", u]),
        bad(
            2,
            "'99999999999999999999'",
            &["retry", "-n", "99999999999999999999", u],
        ),
        bad(2, "'abc'", &["retry", "-n", "abc", u]),
        bad(2, "'--attempts", &["retry", u, "--attempts"]),
        bad(2, "'404'", &["retry", "--retry-on", "404", u]),
        bad(2, "'200'", &["retry", "--retry-on", "200", u]),
        bad(2, "'500-'", &["retry", "--retry-on", "500-", u]),
        bad(2, "--retry-on", &["retry", "--retry-on", "", u]),
        with_cmd(2, "127", &["retry", "--retry-on-exit", "127"]),
        with_cmd(2, "'0'", &["retry", "--retry-on-exit", "0"]),
        bad(2, "'junk'", &["retry", "--jitter", "junk", u]),
        bad(2, "'2y'", &["retry", "--delay", "2y", u]),
        bad(2, "'0'", &["retry", "--max-delay", "0", u]),
        bad(2, "'inf'", &["retry", "--max-time", "inf", u]),
        bad(
            2,
            "--idempotency-key",
            &["retry", "--idempotency-key", "", u],
        ),
        bad(
            2,
            "--idempotency-key",
            &["retry", "--idempotency-key", "a\nb", u],
        ),
        bad(2, "not both", &["retry", u, "--", "touch", "ran"]),
        with_cmd(2, "--idempotency-key", &["retry", "--idempotency-key", "k"]),
        with_cmd(2, "'nope'", &["retry", "-s", "nope"]),
        bad(1, "127.0.0.1", &["retry", "-n", "1", u]),
        // ---- file
        bad(2, "PATH", &["file"]),
        bad(2, "PATH", &["file", ""]),
        bad(2, "'999'", &["file", "--mode", "999", "f"]),
        bad(2, "'rw'", &["file", "-m", "rw", "f"]),
        bad(2, "'17777'", &["file", "-m", "17777", "f"]),
        bad(2, "--from", &["file", "--content", "a", "--from", "b", "f"]),
        bad(2, "'--content", &["file", "f", "--content"]),
        bad(2, "'--content", &["file", "f", "--content"]).arg(not_utf8("x")),
        bad(
            1,
            "missing-input",
            &["file", "--from", "missing-input", "f"],
        ),
        bad(1, "dir", &["file", "dir"]).setup("dir/"),
        bad(1, "no/such", &["file", "no/such/f"]),
        bad(1, "not-a-dir", &["file", "not-a-dir/f"]).setup("not-a-dir"),
        // ---- safe
        bad(2, "ID", &["safe"]),
        bad(2, "empty", &["safe", ""]),
        bad(2, "256", &["safe", &long_id]),
        bad(2, "control", &["safe", "a\tb"]),
        bad(2, "--show", &["safe", "--show", ""]),
        bad(2, "'some-id'", &["safe", "--list", "some-id"]),
        bad(2, "--show", &["safe", "--list", "--show", "x"]),
        bad(2, "--replay", &["safe", "--replay", "id"]),
        bad(2, "'0'", &["safe", "--lease", "0", "id"]),
        bad(2, "'junk'", &["safe", "--wait", "junk", "id"]),
        bad(2, "'--store", &["safe", "id", "--store"]),
        with_cmd(2, "--list", &["safe", "--list"]),
        bad(2, "'id-", &["safe"]).arg(not_utf8("id-")),
        bad(2, "'-1'", &["safe", "--wait", "-1", "id"]),
        bad(2, "'2y'", &["safe", "--lease", "2y", "id"]),
        bad(2, "--forget", &["safe", "--forget", ""]),
        bad(2, "'id'", &["safe", "id", "--forget", "other"]),
        bad(2, "'http://x", &["safe", "--store", "http://x", "id"]),
        bad(2, "'ftp'", &["safe", "id"]).env("RTB_STORE", "ftp://h/x"),
        bad(2, "--store", &["safe", "--store", "not a url://x", "id"]),
        bad(2, "'sqlite:'", &["safe", "--store", "sqlite:", "id"]),
        bad(2, "--store", &["safe", "--store", "", "id"]),
        bad(
            2,
            "connect_timeout",
            &["safe", "--store", "postgres://h/db?connect_timeout=x", "id"],
        ),
        bad(
            1,
            "store postgres://:",
            &["safe", "--store", "postgres://", "id"],
        ),
        bad(1, "store", &["safe", "--store", "dir", "id"]).setup("dir/"),
        // A one-byte file SQLite would have taken for an empty database.
        bad(1, "not a database", &["safe", "--store", "g.db", "id"]).setup("g.db"),
        bad(1, "g.db", &["safe", "--store", "g.db/x.db", "id"]).setup("g.db"),
    ];
    assert!(cases.len() >= 50);
    // Run them all, then report every failing case at once.
    let failed: Vec<String> = cases
        .iter()
        .filter(|case| std::panic::catch_unwind(|| check(case)).is_err())
        .map(|case| format!("{:?}", case.args))
        .collect();
    assert!(
        failed.is_empty(),
        "{} bad cases:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---- secrets ------------------------------------------------------------

/// What must never show on stderr: user and password of a URL, and the
/// values of Authorization, Cookie and Proxy-Authorization.
const SECRETS: [&str; 5] = ["alice", "s3cret", "tok3n", "c00kie", "pr0xy"];

fn secret_headers() -> Vec<OsString> {
    [
        "-H",
        "Authorization: Bearer tok3n",
        "-H",
        "Cookie: session=c00kie",
        "-H",
        "Proxy-Authorization: Basic pr0xy",
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

/// Runs `args` at every level (-q, default, -v, -vv) in both log formats
/// and checks stderr for secrets; returns the -vv text run for more checks.
fn no_secrets_anywhere(args: &[OsString], code: i32) -> Output {
    let mut last = None;
    for format in ["text", "json"] {
        for level in ["-q", "-v", "-vv", "--log-format"] {
            let mut cmd = rtb();
            // "--log-format" as the level slot is the default level.
            if level != "--log-format" {
                cmd.arg(level);
            }
            let out = cmd.args(["--log-format", format]).args(args).run();
            out.code(code).clean_failure();
            assert!(!out.stderr.trim().is_empty() || level == "-q");
            for s in SECRETS {
                out.stderr_lacks(s);
            }
            if format == "text" && level == "-vv" {
                last = Some(out);
            }
        }
    }
    last.unwrap()
}

fn with_creds(url: &str) -> String {
    url.replacen("http://", "http://alice:s3cret@", 1)
}

#[test]
fn secrets_never_reach_the_log_on_any_path() {
    let s = Server::start();
    let dead = with_creds(&format!("http://127.0.0.1:{}/x", closed_port()));
    let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
    let url = |p: &str| with_creds(&s.url(p));
    let mut cases: Vec<(Vec<OsString>, i32, &str)> = vec![
        (os(&["timeout", &url("/s/200")]), 0, "Request succeeded"),
        (os(&["timeout", &url("/s/401")]), 1, "HTTP 401"),
        (
            os(&["timeout", "-t", "200ms", &url("/s/delay=1000")]),
            1,
            "timed out",
        ),
        (
            os(&["retry", "-n", "2", "--delay", "10ms", &url("/s/503:ra=0")]),
            1,
            "Failed after 2",
        ),
        (
            os(&["retry", "-n", "2", "--delay", "10ms", &url("/s/reset")]),
            1,
            "Failed after 2",
        ),
        (
            os(&["retry", "-X", "POST", "-d", "x", &url("/s/503")]),
            1,
            "not idempotent",
        ),
        (
            os(&["retry", "-n", "2", "--delay", "10ms", &dead]),
            1,
            "refused",
        ),
        (
            os(&["timeout", "http://alice:s3cret@no-such-host.invalid/"]),
            1,
            "no-such-host.invalid",
        ),
        (
            os(&[
                "retry",
                "-n",
                "2",
                "--delay",
                "10ms",
                "http://alice:s3cret@no-such-host.invalid/",
            ]),
            1,
            "no-such-host.invalid",
        ),
    ];
    for (args, _, _) in &mut cases {
        let url = args.pop().unwrap();
        args.extend(secret_headers());
        args.push(url);
    }
    // Usage errors that echo the URL or the header they refuse.
    cases.extend([
        (
            os(&["timeout", &url("/s/200"), "--", "true"]),
            2,
            "not both",
        ),
        (os(&["timeout", "ftp://alice:s3cret@127.0.0.1/"]), 2, "ftp"),
        (os(&["timeout", "http://alice:s3cret@ho st/"]), 2, "ho st"),
        (os(&["timeout", "alice:s3cret@127.0.0.1"]), 2, "127.0.0.1"),
        (
            os(&["timeout", "http://alice:s3cr/et@127.0.0.1/"]),
            2,
            "127.0.0.1",
        ),
        (
            os(&[
                "timeout",
                "-H",
                "Authorization: Bearer tok3n\u{1}",
                &url("/s/200"),
            ]),
            2,
            "Authorization",
        ),
        (
            os(&["timeout", "-H", "cookie:c00kie\u{7f}", &url("/s/200")]),
            2,
            "cookie",
        ),
        (os(&["timeout", "-t", "0", &url("/s/200")]), 2, "'0'"),
        (
            os(&["retry", "-H", "Proxy-Authorization: pr0xy", "--", "true"]),
            2,
            "--header",
        ),
    ]);
    // The guard's store: a PostgreSQL URL's password, in either place.
    let pg = format!("postgres://alice:s3cret@127.0.0.1:{}/db", closed_port());
    let pg_query = format!("postgres://127.0.0.1:{}/db?password=s3cret", closed_port());
    cases.extend([
        (
            os(&["safe", "--store", &pg, "id", "--", "true"]),
            1,
            "127.0.0.1",
        ),
        (
            os(&["safe", "--store", &pg_query, "--list"]),
            1,
            "password=***",
        ),
        (
            os(&["safe", "--store", &format!("{pg}?connect_timeout=x"), "id"]),
            2,
            "connect_timeout",
        ),
        (
            os(&["safe", "--store", "alice:s3cret@host://x", "id"]),
            2,
            "--store",
        ),
        // A command's arguments: logged at -v, but not their credentials.
        (
            os(&["safe", "id", "--", "true", "http://alice:s3cret@h/"]),
            0,
            "created successfully",
        ),
    ]);
    let mut bytes = b"Cookie: c00kie".to_vec();
    bytes.push(0xff);
    cases.push((
        vec![
            "timeout".into(),
            "-H".into(),
            OsStr::from_bytes(&bytes).into(),
            url("/s/200").into(),
        ],
        2,
        "Cookie",
    ));
    for (args, code, says) in &cases {
        no_secrets_anywhere(args, *code).stderr_has(says);
    }
    // Hidden from the log, yet sent: the server saw every one of them.
    let out = rtb()
        .arg("-vv")
        .arg("timeout")
        .args(secret_headers())
        .arg(url("/s/echo"))
        .run();
    out.code(0);
    let echoed = out.stdout_str().to_ascii_lowercase();
    for s in ["tok3n", "c00kie", "pr0xy"] {
        assert!(echoed.contains(s), "{s} not sent: {echoed}");
    }
    for s in SECRETS {
        out.stderr_lacks(s);
    }
    // Without an Authorization header, the URL's user:password goes as
    // Basic auth ("alice:s3cret" in base64).
    let out = rtb().args(["-vv", "timeout", &url("/s/echo")]).run();
    out.code(0);
    assert!(
        out.stdout_str().contains("YWxpY2U6czNjcmV0"),
        "{}",
        out.stdout_str()
    );
    for s in SECRETS {
        out.stderr_lacks(s);
    }
}

// ---- the ecosystem ------------------------------------------------------

#[test]
fn completions_for_every_shell_know_the_subcommands() {
    for (shell, marker) in [
        ("bash", "complete -F _rtb"),
        ("zsh", "#compdef rtb"),
        ("fish", "complete -c rtb"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = rtb().args(["completions", shell]).run();
        out.code(0).stderr_lacks("error");
        let script = out.stdout_str();
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for word in ["timeout", "retry", "file", "safe", "attempts", "store"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}

#[test]
fn man_page_is_roff_for_every_command() {
    let out = rtb().arg("man").run();
    out.code(0);
    let page = out.stdout_str();
    assert!(page.contains(".TH rtb 1"), "{page}");
    assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"));
    for word in ["timeout", "retry", "file", "safe", "RTB_LOG_FORMAT"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
}

#[test]
fn a_closed_stdout_is_a_quiet_exit_not_a_panic() {
    for args in [&["completions", "bash"][..], &["man"], &["--help"]] {
        let mut cmd = rtb();
        cmd.args(args);
        let mut child = cmd.spawn();
        // Close the reading end before rtb has written: its writes get EPIPE.
        drop(child.stdout.take());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < crate::support::cmd::HARD_LIMIT,
                "rtb {args:?} hangs"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(!stderr.contains("panicked"), "rtb {args:?}: {stderr}");
        assert_eq!(status.code(), Some(0), "rtb {args:?}: {stderr}");
    }
}

#[test]
fn help_of_every_command_ends_with_examples() {
    for sub in ["timeout", "retry", "file", "safe", "completions", "man"] {
        for args in [vec![sub, "--help"], vec!["help", sub]] {
            let out = rtb().args(&args).run();
            out.code(0);
            let help = out.stdout_str();
            let (_, examples) = help
                .split_once("\nExamples:\n")
                .unwrap_or_else(|| panic!("rtb {args:?}: no Examples section:\n{help}"));
            let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
            assert!(lines.len() >= 2, "rtb {args:?}: fewer than two examples");
            // Nothing after the examples but more examples.
            for l in lines {
                assert!(
                    l.starts_with("  ") && l.contains("rtb"),
                    "rtb {args:?}: {l:?} after the examples"
                );
            }
        }
    }
    // The top level: examples, then the duration and exit-code notes.
    let out = rtb().arg("--help").run();
    out.code(0);
    let help = out.stdout_str();
    assert!(help.contains("\nExamples:\n  rtb "), "{help}");
    assert!(help.contains("[env: RTB_LOG_FORMAT"), "{help}");
    let safe = rtb().args(["safe", "--help"]).run().stdout_str();
    assert!(safe.contains("[env: RTB_STORE"), "{safe}");
}

#[test]
fn version_is_the_crate_version() {
    for flag in ["--version", "-V"] {
        let out = rtb().arg(flag).run();
        out.code(0)
            .stdout_is(&format!("rtb {}\n", env!("CARGO_PKG_VERSION")));
    }
    // propagate_version: subcommands know it too.
    rtb()
        .args(["file", "--version"])
        .run()
        .code(0)
        .stdout_is(&format!("rtb-file {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn log_format_comes_from_the_environment_and_the_flag_wins() {
    let mut cmd = rtb();
    let out = cmd.env("RTB_LOG_FORMAT", "json").args(["file", "a"]).run();
    out.code(0);
    let line: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", out.stderr);
    });
    assert_eq!(line["level"], "INFO");
    let out = rtb()
        .env("RTB_LOG_FORMAT", "json")
        .args(["--log-format", "text", "file", "b"])
        .run();
    out.code(0)
        .stderr_has(" - INFO - File created: b")
        .stderr_lacks("{");
}

#[test]
fn store_comes_from_the_environment_and_the_flag_wins() {
    let mut cmd = rtb();
    let out = cmd
        .env("RTB_STORE", "env.db")
        .args(["safe", "from-env"])
        .run();
    out.code(0);
    assert!(cmd.path("env.db").is_file(), "RTB_STORE was not used");
    assert!(
        !cmd.path("state").exists(),
        "the default store was used too"
    );
    let out = cmd.args(["--store", "flag.db"]).run();
    out.code(0);
    assert!(
        cmd.path("flag.db").is_file(),
        "--store did not win over RTB_STORE"
    );
    let list = |store: &str| {
        rtb()
            .current_dir(cmd.dir())
            .args(["safe", "--list", "--json", "--store", store])
            .run()
            .stdout_str()
    };
    assert!(list("env.db").contains("from-env"));
    assert!(list("flag.db").contains("from-env"));
    // sqlite: prefix, and the env var as the only source.
    let out = rtb()
        .current_dir(cmd.dir())
        .env("RTB_STORE", "sqlite:env.db")
        .args(["safe", "--list", "--json"])
        .run();
    out.code(0);
    assert!(out.stdout_str().contains("from-env"));
}
