//! `rtb safe`: one behaviour suite, run against SQLite always and against
//! PostgreSQL when RTB_TEST_POSTGRES_URL is set (each PostgreSQL test in
//! its own schema, chosen by the URL's `options=-csearch_path%3D...`).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::cmd::{rtb, Output};

/// A store for one test: a SQLite file in a temp dir, or a fresh schema.
struct Backend {
    name: &'static str,
    store: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((url, schema)) = &self.schema {
            pg_exec(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

fn pg_exec(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("RTB_TEST_POSTGRES_URL is set but the server is unreachable");
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    });
}

fn pg_url() -> Option<String> {
    std::env::var("RTB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// SQLite always; PostgreSQL too when its URL is set (else a notice).
fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![Backend {
        name: "sqlite",
        store: dir.path().join("guard.db").display().to_string(),
        _dir: Some(dir),
        schema: None,
    }];
    match pg_url() {
        Some(url) => {
            let schema = format!("rtb_test_{:016x}", fastrand::u64(..));
            pg_exec(&url, &format!("CREATE SCHEMA {schema}"));
            let sep = if url.contains('?') { '&' } else { '?' };
            all.push(Backend {
                name: "postgres",
                store: format!("{url}{sep}options=-csearch_path%3D{schema}"),
                _dir: None,
                schema: Some((url, schema)),
            });
        }
        None => {
            eprintln!("notice: PostgreSQL guard tests skipped: RTB_TEST_POSTGRES_URL is not set")
        }
    }
    all
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Waits (bounded) until `path` exists.
fn wait_for(path: &Path, within: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < within,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(pid: i32, sig: i32) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

fn collect(child: Child, start: Instant) -> Output {
    Output::collect(child, start, "rtb safe (spawned)".into())
}

#[test]
fn records_an_id_once_as_the_reference_says() {
    for b in backends() {
        rtb()
            .args(["safe", "db-001", "--store", &b.store])
            .run()
            .code(0)
            .stderr_has("INFO - Resource db-001 created successfully");
        rtb()
            .args(["safe", "db-001", "--store", &b.store])
            .run()
            .code(0)
            .stderr_has("INFO - Resource db-001 already exists (no action taken)");
        eprintln!("{}: ok", b.name);
    }
}

#[test]
fn default_store_is_private_and_persistent() {
    use std::os::unix::fs::PermissionsExt;
    let mut r = rtb();
    r.args(["safe", "db-001"]);
    r.run().code(0).stderr_has("created successfully");
    let db = r.path("state/rtb/guard.db");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    r.run()
        .code(0)
        .stderr_has("already exists (no action taken)");
}

#[test]
fn fifty_concurrent_runs_execute_the_command_once() {
    for b in backends() {
        let work = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let children: Vec<Child> = (0..50)
            .map(|_| {
                rtb()
                    .current_dir(work.path())
                    .args(["safe", "X", "--store", &b.store, "--"])
                    .args(["sh", "-c", "echo run >> counter"])
                    .spawn()
            })
            .collect();
        for c in children {
            collect(c, start).code(0);
        }
        assert_eq!(lines(&work.path().join("counter")), 1, "{}", b.name);
    }
}

#[test]
fn a_failed_command_leaves_no_record_and_the_fence_rises() {
    for b in backends() {
        let mut r = rtb();
        let script = "echo $RTB_SAFE_ID:$RTB_FENCE >> log; test -e ok";
        r.args([
            "safe", "job-1", "--store", &b.store, "--", "sh", "-c", script,
        ]);
        r.run().code(1).stderr_has("job-1 not recorded");
        rtb()
            .args(["safe", "--store", &b.store, "--show", "job-1"])
            .run()
            .code(1)
            .stderr_has("job-1 is not recorded");
        std::fs::write(r.path("ok"), "").unwrap();
        r.run().code(0).stderr_has("created successfully");
        r.run()
            .code(0)
            .stderr_has("already exists (no action taken)");
        let log = std::fs::read_to_string(r.path("log")).unwrap();
        assert_eq!(log, "job-1:1\njob-1:2\n", "{}", b.name);
        // Not found / cannot execute pass through, and leave no record.
        rtb()
            .args([
                "safe",
                "job-2",
                "--store",
                &b.store,
                "--",
                "/nonexistent/cmd",
            ])
            .run()
            .code(127);
        rtb()
            .args(["safe", "job-2", "--store", &b.store, "--", "true"])
            .run()
            .code(0)
            .stderr_has("created successfully");
    }
}

#[test]
fn a_sigkilled_owner_is_taken_over_after_its_lease() {
    for b in backends() {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        std::fs::write(w.join("slow"), "").unwrap();
        let script = "echo run:$RTB_FENCE >> log; echo $$ > cmd.pid; \
                      if test -e slow; then exec sleep 30; fi";
        let args = ["safe", "T", "--lease", "1s", "--store", &b.store, "--"];
        let start = Instant::now();
        let mut owner = rtb()
            .current_dir(w)
            .args(args)
            .args(["sh", "-c", script])
            .spawn();
        wait_for(&w.join("cmd.pid"), Duration::from_secs(20));
        owner.kill().unwrap(); // SIGKILL: no chance to release
        let _ = owner.wait();
        let cmd_pid: i32 = std::fs::read_to_string(w.join("cmd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kill(cmd_pid, 9);
        std::fs::remove_file(w.join("slow")).unwrap();
        std::fs::remove_file(w.join("cmd.pid")).unwrap();
        // The claim is live for up to 1s more: this one waits, then takes over.
        let out = collect(
            rtb()
                .current_dir(w)
                .args(args)
                .args(["sh", "-c", script])
                .spawn(),
            start,
        );
        out.code(0)
            .stderr_has("Taking over T from a lost owner (host ")
            .stderr_has("created successfully");
        let log = std::fs::read_to_string(w.join("log")).unwrap();
        assert_eq!(log, "run:1\nrun:2\n", "{}", b.name);
        rtb()
            .current_dir(w)
            .args(args)
            .args(["sh", "-c", script])
            .run()
            .code(0)
            .stderr_has("already exists");
        assert_eq!(lines(&w.join("log")), 2);
    }
}

#[test]
fn waiting_ends_in_75_and_sigterm_releases_the_claim() {
    for b in backends() {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let start = Instant::now();
        let owner = rtb()
            .current_dir(w)
            .args(["safe", "W", "--store", &b.store, "--"])
            .args(["sh", "-c", "touch started; sleep 20"])
            .spawn();
        wait_for(&w.join("started"), Duration::from_secs(20));
        let waiter = rtb()
            .current_dir(w)
            .args(["safe", "W", "--wait", "300ms", "--store", &b.store, "--"])
            .args(["sh", "-c", "touch started; sleep 20"])
            .run();
        waiter
            .code(75)
            .stderr_has("W is in progress elsewhere (host ")
            .stderr_has(", pid ")
            .stderr_has(", since ")
            .took(Duration::from_millis(250), Duration::from_secs(15));
        kill(owner.id() as i32, 15);
        collect(owner, start)
            .code(143)
            .stderr_has("Interrupted by SIGTERM: released W, not recorded");
        rtb()
            .args(["safe", "--store", &b.store, "--show", "W"])
            .run()
            .code(1);
        rtb()
            .args([
                "safe", "W", "--wait", "10ms", "--store", &b.store, "--", "true",
            ])
            .run()
            .code(0)
            .stderr_has("created successfully");
    }
}

#[test]
fn a_different_command_is_skipped_or_strictly_refused() {
    for b in backends() {
        let mut r = rtb();
        r.args(["safe", "S", "--store", &b.store, "--", "touch", "a"]);
        r.run().code(0);
        let base = ["safe", "S", "--store", &b.store];
        rtb()
            .current_dir(r.dir())
            .args(base)
            .args(["--", "touch", "b"])
            .run()
            .code(0)
            .stderr_has("WARNING - S was recorded for a different command: recorded `touch a`, now `touch b`");
        rtb()
            .current_dir(r.dir())
            .args(base)
            .args(["--strict", "--", "touch", "b"])
            .run()
            .code(3)
            .stderr_has("recorded `touch a`, now `touch b`");
        assert!(!r.path("b").exists());
    }
}

#[test]
fn replay_prints_the_same_output_again() {
    for b in backends() {
        let base = ["safe", "vm-1", "--replay", "--store", &b.store, "--"];
        let script = "echo vm-$RTB_FENCE-$$";
        let first = rtb().args(base).args(["sh", "-c", script]).run();
        first.code(0);
        let answer = first.stdout_str();
        assert!(answer.starts_with("vm-1-"), "{answer}");
        rtb()
            .args(base)
            .args(["sh", "-c", script])
            .run()
            .code(0)
            .stdout_is(&answer);
        // Over 1 MiB: passed through whole, stored cut, replayed cut.
        let big = ["safe", "big", "--replay", "--store", &b.store, "--"];
        let cmd = ["head", "-c", "1100000", "/dev/zero"];
        let out = rtb().args(big).args(cmd).run();
        out.code(0).stderr_has("stored only the first 1024 KiB");
        assert_eq!(out.stdout.len(), 1_100_000);
        let again = rtb().args(big).args(cmd).run();
        again.code(0).stderr_has("it was cut when stored");
        assert_eq!(again.stdout.len(), 1024 * 1024);
    }
}

#[test]
fn list_show_and_forget() {
    for b in backends() {
        let s = ["--store", b.store.as_str()];
        rtb().args(["safe", "a-1"]).args(s).run().code(0);
        rtb()
            .args(["safe", "b-2"])
            .args(s)
            .args(["--", "sh", "-c", "exit 0"])
            .run()
            .code(0);
        let list = rtb().args(["safe", "--list"]).args(s).run();
        list.code(0);
        let text = list.stdout_str();
        assert!(text.starts_with("ID "), "{text}");
        assert!(text.contains("a-1") && text.contains("b-2"), "{text}");
        assert!(text.contains("sh -c 'exit 0'"), "{text}");
        let json = rtb().args(["safe", "--list", "--json"]).args(s).run();
        json.code(0);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 2, "{v}");
        let b2 = arr.iter().find(|r| r["id"] == "b-2").unwrap();
        assert_eq!(b2["state"], "done");
        assert_eq!(b2["exit_status"], 0);
        assert_eq!(b2["command"], "sh -c 'exit 0'");
        assert!(b2["host"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(b2["pid"].as_i64().is_some_and(|p| p > 0));
        assert!(b2["since"].as_str().is_some());
        let show = rtb().args(["safe", "--show", "b-2"]).args(s).run();
        show.code(0);
        let t = show.stdout_str();
        assert!(
            t.contains("state:   done") && t.contains("exit:    0"),
            "{t}"
        );
        assert!(t.contains("host:    ") && t.contains("pid:     "), "{t}");
        let j = rtb()
            .args(["safe", "--show", "b-2", "--json"])
            .args(s)
            .run();
        j.code(0);
        let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
        assert_eq!(v["id"], "b-2");
        rtb()
            .args(["safe", "--forget", "b-2"])
            .args(s)
            .run()
            .code(0)
            .stderr_has("Forgot b-2");
        rtb().args(["safe", "--show", "b-2"]).args(s).run().code(1);
        rtb()
            .args(["safe", "b-2"])
            .args(s)
            .run()
            .code(0)
            .stderr_has("created successfully");
    }
}

#[test]
fn a_corrupt_or_unreadable_store_fails_closed() {
    let mut r = rtb();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(r.path("bad.db"), &garbage).unwrap();
    r.args(["safe", "X", "--store", "bad.db", "--", "touch", "ran"]);
    r.run()
        .code(1)
        .clean_failure()
        .stderr_has("bad.db")
        .stderr_has("not a database");
    assert!(!r.path("ran").exists(), "CMD ran on a corrupt store");
    assert_eq!(std::fs::read(r.path("bad.db")).unwrap(), garbage);
    // A store that cannot be opened as a file at all.
    std::fs::create_dir(r.path("dir.db")).unwrap();
    rtb()
        .current_dir(r.dir())
        .args([
            "safe",
            "X",
            "--store",
            "sqlite:dir.db",
            "--",
            "touch",
            "ran",
        ])
        .run()
        .code(1)
        .clean_failure()
        .stderr_has("cannot open the guard store dir.db");
    assert!(!r.path("ran").exists());
    // A store in a directory that cannot be made (a file is in the way).
    rtb()
        .current_dir(r.dir())
        .args([
            "safe",
            "X",
            "--store",
            "bad.db/sub/g.db",
            "--",
            "touch",
            "ran",
        ])
        .run()
        .code(1)
        .clean_failure();
    assert!(!r.path("ran").exists());
    assert_eq!(std::fs::read(r.path("bad.db")).unwrap(), garbage);
}

#[test]
fn unreachable_postgres_fails_closed_within_the_connect_timeout() {
    let mut r = rtb();
    r.args([
        "safe",
        "X",
        "--store",
        "postgres://guard:hunter2@127.0.0.1:1/ops",
    ])
    .args(["--", "touch", "ran"]);
    r.run()
        .code(1)
        .clean_failure()
        .took(Duration::ZERO, Duration::from_secs(7))
        .stderr_has("cannot open the guard store postgres://")
        .stderr_lacks("hunter2");
    assert!(!r.path("ran").exists());
    // Through RTB_STORE too, and with debug logging on.
    let mut r = rtb();
    r.env("RTB_STORE", "postgresql://guard:hunter2@127.0.0.1:1/ops")
        .args(["-v", "safe", "X", "--", "touch", "ran"]);
    let out = r.run();
    out.code(1).stderr_lacks("hunter2");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
    assert!(!r.path("ran").exists());
}

#[test]
fn the_password_never_shows() {
    let Some(url) = pg_url() else {
        eprintln!("notice: PostgreSQL guard tests skipped: RTB_TEST_POSTGRES_URL is not set");
        return;
    };
    let b = backends().pop().unwrap();
    // Trust auth ignores the password; it must still never be printed.
    let with_pw = b.store.replacen("://postgres@", "://postgres:hunter2@", 1);
    assert_ne!(with_pw, b.store, "expected a postgres@ URL: {url}");
    for args in [
        vec!["P", "--", "true"],
        vec!["P", "--", "true"],
        vec!["--list", "--json"],
        vec!["--show", "P"],
    ] {
        let out = rtb()
            .args(["-vv", "safe", "--store", &with_pw])
            .args(args)
            .run();
        out.code(0).stderr_lacks("hunter2");
        assert!(!out.stdout_str().contains("hunter2"));
    }
    let bad = with_pw.replace("/test", "/no_such_db_rtb");
    rtb()
        .args(["safe", "P", "--store", &bad])
        .run()
        .code(1)
        .stderr_lacks("hunter2");
}

#[test]
fn bad_ids_and_stores_are_usage_errors() {
    let long = "x".repeat(257);
    for id in ["", long.as_str(), "a\tb", "a\nb"] {
        let mut r = rtb();
        r.args(["safe", id, "--", "touch", "ran"]);
        r.run().code(2).clean_failure().stderr_has("invalid value");
        assert!(!r.path("ran").exists());
    }
    rtb()
        .args(["safe", "--show", ""])
        .run()
        .code(2)
        .clean_failure();
    rtb()
        .args(["safe", "X", "--store", "mysql://u:hunter2@h/db"])
        .run()
        .code(2)
        .clean_failure()
        .stderr_lacks("hunter2");
}

/// RTB_DEADLINE for `ms` milliseconds from now.
fn deadline_in(ms: u64) -> String {
    let t = std::time::SystemTime::now() + Duration::from_millis(ms);
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

#[test]
fn an_inherited_deadline_bounds_the_command_and_the_wait() {
    for b in backends() {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        // The command is stopped at the outer deadline, and nothing is recorded.
        rtb()
            .current_dir(w)
            .env("RTB_DEADLINE", deadline_in(1000))
            .args(["safe", "D", "--store", &b.store, "--", "sleep", "30"])
            .run()
            .code(124)
            .stderr_has("D not recorded")
            .took(Duration::from_millis(800), Duration::from_secs(12));
        rtb()
            .args(["safe", "--store", &b.store, "--show", "D"])
            .run()
            .code(1);
        // A waiter gives up at the outer deadline, not after --wait.
        let start = Instant::now();
        let owner = rtb()
            .current_dir(w)
            .args(["safe", "D", "--store", &b.store, "--"])
            .args(["sh", "-c", "touch started; sleep 20"])
            .spawn();
        wait_for(&w.join("started"), Duration::from_secs(20));
        rtb()
            .current_dir(w)
            .env("RTB_DEADLINE", deadline_in(500))
            .args([
                "safe", "D", "--wait", "60s", "--store", &b.store, "--", "true",
            ])
            .run()
            .code(75)
            .took(Duration::from_millis(300), Duration::from_secs(12));
        kill(owner.id() as i32, 15);
        collect(owner, start).code(143);
    }
}

/// Regression: --replay echoed CMD's stdout with a blocking write on the
/// runtime's only thread, so a slow reader stopped lease renewal and a
/// second run took the ID over and ran CMD again.
#[test]
fn a_slow_reader_of_replayed_output_does_not_lose_the_lease() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let store = w.join("guard.db");
    let bin = env!("CARGO_BIN_EXE_rtb");
    let first = std::process::Command::new("sh")
        .current_dir(w)
        .arg("-c")
        .arg(format!(
            "{bin} -q safe R --store {} --lease 1s --replay -- sh -c 'echo run >> count; head -c 300000 /dev/zero; sleep 2' | (sleep 4; wc -c > got)",
            store.display()
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    rtb()
        .current_dir(w)
        .args([
            "safe",
            "R",
            "--store",
            store.to_str().unwrap(),
            "--wait",
            "0",
            "--",
        ])
        .args(["sh", "-c", "echo run >> count"])
        .run()
        .code(75);
    let start = Instant::now();
    let mut first = first;
    while first.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "first run hung");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines(&w.join("count")), 1, "CMD ran twice");
    let got = std::fs::read_to_string(w.join("got")).unwrap();
    assert_eq!(got.trim(), "300000", "the slow reader lost output");
}

/// Regression: only the header was checked, so a store with a damaged
/// table page ran CMD before failing, and another program's database was
/// converted to WAL and given rtb's table.
#[test]
fn damaged_or_foreign_sqlite_files_are_refused_untouched() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let store = w.join("guard.db");
    let s = store.to_str().unwrap();
    for i in 0..30 {
        rtb()
            .args(["-q", "safe", &format!("id-{i}"), "--store", s])
            .run()
            .code(0);
    }
    {
        let c = rusqlite::Connection::open(&store).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(&store).unwrap();
    assert!(bytes.len() >= 3 * 4096, "store smaller than expected");
    for b in &mut bytes[4096..8192] {
        *b = 0xA5;
    }
    std::fs::write(&store, &bytes).unwrap();
    let foreign = w.join("other.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    for (path, needle) in [
        (&store, "malformed"),
        (&foreign, "another program (tables: notes)"),
    ] {
        let before = std::fs::read(path).unwrap();
        rtb()
            .current_dir(w)
            .args([
                "safe",
                "new",
                "--store",
                path.to_str().unwrap(),
                "--",
                "touch",
                "ran",
            ])
            .run()
            .code(1)
            .stderr_has(needle)
            .stderr_has("left as it is");
        assert!(!w.join("ran").exists(), "CMD ran on {}", path.display());
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{} changed",
            path.display()
        );
    }
}
