//! `rtb file`: atomic, race-free, crash-safe creation, run as the real
//! binary against real files, mounts, processes and signals.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{rtb, Output, Rtb};

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Content, mode and mtime: what "untouched" means.
fn snapshot(p: &Path) -> (Vec<u8>, u32, i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (fs::read(p).unwrap(), m.mode(), m.mtime(), m.mtime_nsec())
}

/// A few MB of content that is not all one byte.
fn big_content(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// The process umask, from /proc/self/status (Linux 4.7+).
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

#[test]
fn creates_once_with_default_content_and_shell_mode() {
    let mut c = rtb();
    let p = c.path("hello.txt");
    c.args(["file", "hello.txt"])
        .run()
        .code(0)
        .stderr_has("INFO - File created: hello.txt");
    assert_eq!(fs::read(&p).unwrap(), b"Hello World");
    let mode = fs::metadata(&p).unwrap().mode() & 0o7777;
    assert_eq!(
        mode,
        0o666 & !umask(),
        "default mode is 0666 less the umask"
    );
    assert_eq!(names(c.dir()), ["hello.txt"], "no temporary file left");
}

#[test]
fn second_run_leaves_content_mode_and_mtime_untouched() {
    let mut c = rtb();
    let p = c.path("f");
    c.args(["file", "f", "--content", "first", "--mode", "640"])
        .run()
        .code(0);
    let before = snapshot(&p);
    assert_eq!(before.1 & 0o7777, 0o640);
    std::thread::sleep(Duration::from_millis(20));
    rtb()
        .current_dir(c.dir())
        .args(["file", "f", "--content", "second", "--mode", "600"])
        .run()
        .code(0)
        .stderr_has("INFO - File already exists: f (no action taken)")
        .stderr_lacks("File created");
    assert_eq!(snapshot(&p), before);
    assert_eq!(names(c.dir()), ["f"]);
}

#[test]
fn mode_sets_the_bits_exactly() {
    for (mode, want) in [("600", 0o600), ("0751", 0o751), ("444", 0o444)] {
        let mut c = rtb();
        let p = c.path("m");
        c.args(["file", "m", "--mode", mode]).run().code(0);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, want, "{mode}");
        assert_eq!(fs::read(&p).unwrap(), b"Hello World");
    }
    rtb()
        .args(["file", "m", "--mode", "rw-r--r--"])
        .run()
        .code(2)
        .stderr_has("--mode");
}

/// Runs `n` copies of `rtb file PATH ...` at once; returns their outputs.
fn race(n: usize, path: &Path, extra: &[&str], env: Option<(&str, &str)>) -> Vec<Output> {
    let children: Vec<_> = (0..n)
        .map(|_| {
            let mut c = rtb();
            c.arg("file").arg(path).args(extra);
            if let Some((k, v)) = env {
                c.env(k, v);
            }
            let started = Instant::now();
            (c.spawn(), started, format!("rtb file {}", path.display()))
        })
        .collect();
    children
        .into_iter()
        .map(|(child, started, line)| Output::collect(child, started, line))
        .collect()
}

fn assert_one_winner(outs: &[Output], path: &Path, want: &[u8]) {
    let created = outs
        .iter()
        .filter(|o| o.stderr.contains("File created"))
        .count();
    let existed = outs
        .iter()
        .filter(|o| o.stderr.contains("File already exists"))
        .count();
    for o in outs {
        o.code(0);
    }
    assert_eq!(created, 1, "exactly one run creates");
    assert_eq!(existed, outs.len() - 1, "all the others say it exists");
    assert_eq!(
        fs::read(path).unwrap(),
        want,
        "PATH holds the complete content"
    );
}

#[test]
fn fifty_concurrent_runs_create_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let content = big_content(256 * 1024);
    fs::write(&src, &content).unwrap();
    let from = src.to_str().unwrap();
    for (i, env) in [None, Some(("RTB_FILE_PUBLISH", "named"))]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("out{i}"));
        let outs = race(50, &path, &["--from", from], env);
        assert_one_winner(&outs, &path, &content);
    }
    assert_eq!(
        names(dir.path()),
        ["out0", "out1", "src.bin"],
        "no temporary file left"
    );
}

/// SIGKILL at random instants during a few-MB write: PATH is always absent
/// or complete, and nothing but a hidden `.NAME.rtb-tmp.*` may be left.
/// Pins the reference's bug: a kill during a 50 MB write left an 8 MB file
/// that every later run accepted as "already exists".
#[test]
fn sigkill_at_any_instant_never_leaves_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    let src = dir.path().join("src.bin");
    let content = big_content(3 * 1024 * 1024);
    fs::write(&src, &content).unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    let (mut absent, mut complete, mut leftovers) = (0, 0, 0);
    let started = Instant::now();
    for i in 0..200 {
        let name = format!("out{i}");
        let path = work.join(&name);
        let mut c = Command::new(env!("CARGO_BIN_EXE_rtb"));
        c.arg("file").arg(&path).arg("--from").arg(&src);
        // Every other trial on the named-temp fallback, the one that can
        // leave something behind.
        if i % 2 == 1 {
            c.env("RTB_FILE_PUBLISH", "named");
        }
        let mut child = c
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.u64(0..30_000)));
        let _ = child.kill();
        let _ = child.wait();
        match fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => absent += 1,
            Err(e) => panic!("trial {i}: cannot read {}: {e}", path.display()),
            Ok(got) => {
                assert!(
                    got.len() == content.len() && got == content,
                    "trial {i}: PATH is partial: {} of {} bytes",
                    got.len(),
                    content.len()
                );
                complete += 1;
            }
        }
        for n in names(&work) {
            if n.starts_with('.') {
                assert!(
                    n.starts_with(&format!(".{name}.rtb-tmp.")),
                    "trial {i}: unexpected hidden file {n}"
                );
                assert_eq!(i % 2, 1, "trial {i}: O_TMPFILE left {n} behind");
                fs::remove_file(work.join(&n)).unwrap();
                leftovers += 1;
            } else {
                assert_eq!(n, name, "trial {i}: stray file");
            }
        }
        let _ = fs::remove_file(&path);
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "trials too slow"
        );
    }
    println!(
        "200 SIGKILL trials in {:?}: {absent} absent, {complete} complete, {leftovers} hidden temporaries",
        started.elapsed()
    );
    assert_eq!(absent + complete, 200);
}

#[test]
fn symlink_at_path_counts_as_existing_and_is_never_followed() {
    let mut c = rtb();
    let target = c.path("target");
    fs::write(&target, "original").unwrap();
    std::os::unix::fs::symlink("target", c.path("link")).unwrap();
    std::os::unix::fs::symlink("nowhere", c.path("dangling")).unwrap();
    let before = snapshot(&target);
    c.args(["file", "link", "--content", "new"])
        .run()
        .code(0)
        .stderr_has("File already exists: link (no action taken)");
    assert_eq!(snapshot(&target), before, "never written through");
    rtb()
        .current_dir(c.dir())
        .args(["file", "dangling", "--content", "new"])
        .run()
        .code(0)
        .stderr_has("File already exists: dangling (no action taken)");
    assert!(!c.path("nowhere").exists(), "dangling symlink not followed");
    assert_eq!(
        fs::read_link(c.path("dangling")).unwrap(),
        Path::new("nowhere")
    );
    // --verify reads what readers of PATH see.
    rtb()
        .current_dir(c.dir())
        .args(["file", "link", "--content", "original", "--verify"])
        .run()
        .code(0)
        .stderr_has("File already exists with the expected content: link");
    rtb()
        .current_dir(c.dir())
        .args(["file", "dangling", "--verify"])
        .run()
        .code(3)
        .stderr_has("File exists with different content: dangling");
    assert!(!c.path("nowhere").exists());
    assert_eq!(names(c.dir()), ["dangling", "link", "target"]);
}

#[test]
fn symlinked_parent_directory_is_followed() {
    let mut c = rtb();
    fs::create_dir(c.path("real")).unwrap();
    std::os::unix::fs::symlink("real", c.path("alias")).unwrap();
    c.args(["file", "alias/x", "--content", "via alias"])
        .run()
        .code(0)
        .stderr_has("File created: alias/x");
    assert_eq!(fs::read(c.path("real/x")).unwrap(), b"via alias");
    assert_eq!(names(&c.path("real")), ["x"]);
}

#[test]
fn verify_same_content_is_success() {
    let mut c = rtb();
    let p = c.path("v");
    fs::write(&p, "same").unwrap();
    let before = snapshot(&p);
    c.args(["file", "v", "--content", "same", "--verify"])
        .run()
        .code(0)
        .stderr_has("INFO - File already exists with the expected content: v");
    // Streaming comparison from stdin, and from a file.
    rtb()
        .current_dir(c.dir())
        .args(["file", "v", "--from", "-", "--verify"])
        .stdin("same")
        .run()
        .code(0)
        .stderr_has("with the expected content");
    fs::write(c.path("src"), "same").unwrap();
    rtb()
        .current_dir(c.dir())
        .args(["file", "v", "--from", "src", "--verify"])
        .run()
        .code(0)
        .stderr_has("with the expected content");
    assert_eq!(snapshot(&p), before);
}

#[test]
fn verify_different_content_is_exit_3_and_changes_nothing() {
    let mut c = rtb();
    let p = c.path("v");
    fs::write(&p, "drifted").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    let before = snapshot(&p);
    std::thread::sleep(Duration::from_millis(20));
    c.args(["file", "v", "--content", "wanted", "--verify"])
        .run()
        .code(3)
        .clean_failure()
        .stderr_has("ERROR - File exists with different content: v");
    for (input, why) in [("drifte", "shorter"), ("drifted!", "longer"), ("", "empty")] {
        rtb()
            .current_dir(c.dir())
            .args(["file", "v", "--from", "-", "--verify"])
            .stdin(input)
            .run()
            .code(3)
            .stderr_has("different content");
        assert_eq!(snapshot(&p), before, "{why}");
    }
    assert_eq!(snapshot(&p), before);
    assert_eq!(names(c.dir()), ["v"]);
}

#[test]
fn missing_parent_fails_without_parents_and_is_made_with_it() {
    let mut c = rtb();
    c.args(["file", "a/b/c/x"])
        .run()
        .code(1)
        .clean_failure()
        .stderr_has("ERROR - parent directory a/b/c does not exist");
    assert!(!c.path("a").exists());
    rtb()
        .current_dir(c.dir())
        .args(["file", "--parents", "a/b/c/x", "--content", "deep"])
        .run()
        .code(0)
        .stderr_has("File created: a/b/c/x");
    assert_eq!(fs::read(c.path("a/b/c/x")).unwrap(), b"deep");
}

#[test]
fn a_directory_at_path_is_an_error() {
    let mut c = rtb();
    fs::create_dir(c.path("d")).unwrap();
    for path in ["d", "d/", "."] {
        rtb()
            .current_dir(c.dir())
            .args(["file", path])
            .run()
            .code(1)
            .clean_failure()
            .stderr_has("is a directory");
    }
    c.args(["file", "--verify", "d"])
        .run()
        .code(1)
        .stderr_has("is a directory");
    assert_eq!(names(c.dir()), ["d"]);
    assert!(names(&c.path("d")).is_empty());
}

#[test]
fn from_missing_file_is_exit_1_and_creates_nothing() {
    let mut c = rtb();
    c.args(["file", "out", "--from", "no-such-file"])
        .run()
        .code(1)
        .clean_failure()
        .stderr_has("cannot read --from no-such-file");
    assert!(names(c.dir()).is_empty());
}

#[test]
fn from_stdin_is_streamed_into_the_file() {
    let mut c = rtb();
    let content = big_content(3 * 1024 * 1024 + 5);
    c.args(["file", "out", "--from", "-"])
        .stdin(content.clone())
        .run()
        .code(0)
        .stderr_has("File created: out");
    assert_eq!(fs::read(c.path("out")).unwrap(), content);
}

/// A tmpfs mounted for one test, unmounted on drop even when it fails.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, options: &str) -> Result<Mount, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "rtb-test"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs -o {options} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount(at.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_is_exit_1_with_nothing_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let _mount = match Mount::tmpfs(&mnt, "size=1m") {
        Ok(m) => m,
        Err(why) => {
            println!("SKIPPED disk_full: {why}");
            return;
        }
    };
    let src = dir.path().join("big");
    fs::write(&src, big_content(2 * 1024 * 1024)).unwrap();
    for publish in ["unnamed", "named", "exclusive"] {
        rtb()
            .arg("file")
            .arg(mnt.join("out"))
            .arg("--from")
            .arg(&src)
            .env("RTB_FILE_PUBLISH", publish)
            .run()
            .code(1)
            .clean_failure()
            .stderr_has("No space left on device");
        assert!(names(&mnt).is_empty(), "{publish}: left {:?}", names(&mnt));
    }
}

#[test]
fn read_only_filesystem_is_exit_1() {
    // Root ignores permission bits, so a read-only mount stands in for
    // "permission denied".
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("ro");
    fs::create_dir(&mnt).unwrap();
    let _mount = match Mount::tmpfs(&mnt, "ro,size=1m") {
        Ok(m) => m,
        Err(why) => {
            println!("SKIPPED read_only_filesystem: {why}");
            return;
        }
    };
    for publish in ["unnamed", "named", "exclusive"] {
        rtb()
            .arg("file")
            .arg(mnt.join("out"))
            .env("RTB_FILE_PUBLISH", publish)
            .run()
            .code(1)
            .clean_failure()
            .stderr_has("Read-only file system");
        assert!(names(&mnt).is_empty());
    }
}

/// Starts rtb reading its content from a FIFO that stays open, writes a
/// little, and waits (bounded) until `ready` holds.
fn stalled_run(
    c: &mut Rtb,
    publish: &str,
    ready: impl Fn(&[String]) -> bool,
) -> (std::process::Child, fs::File) {
    let fifo = c.path("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    c.args(["file", "out", "--from", "fifo"])
        .env("RTB_FILE_PUBLISH", publish);
    let child = c.spawn();
    // Opening the write end waits for rtb to open the read end.
    let mut w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut w, b"partial content").unwrap();
    let start = Instant::now();
    while !ready(&names(c.dir())) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rtb never got going: {:?}",
            names(c.dir())
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, w)
}

#[test]
fn sigint_and_sigterm_remove_the_named_temporary() {
    for (sig, code) in [
        (rustix::process::Signal::TERM, 143),
        (rustix::process::Signal::INT, 130),
    ] {
        let mut c = rtb();
        let (child, w) = stalled_run(&mut c, "named", |n| {
            n.iter().any(|n| n.starts_with(".out.rtb-tmp."))
        });
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
        let out = Output::collect(child, Instant::now(), "rtb file out --from fifo".into());
        drop(w);
        out.code(code).stderr_has("Interrupted by signal");
        assert_eq!(
            names(c.dir()),
            ["fifo"],
            "temporary removed, nothing at PATH"
        );
    }
}

#[test]
fn sigterm_during_an_unnamed_write_leaves_nothing() {
    let mut c = rtb();
    // Nothing named appears: give rtb a moment to be inside the write.
    let t = Instant::now();
    let (child, w) = stalled_run(&mut c, "unnamed", |_| {
        t.elapsed() > Duration::from_millis(100)
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = Output::collect(child, Instant::now(), "rtb file out --from fifo".into());
    drop(w);
    assert_eq!(out.signal, Some(15), "killed by SIGTERM");
    assert_eq!(names(c.dir()), ["fifo"]);
}
