//! `rtb file`: create a file once, atomically and without clobbering.
//!
//! `run` owns the decisions: split PATH into its directory and name, open
//! the directory once (creating it with `--parents`), then either create the
//! file or report what is already there ("already exists"; with `--verify`,
//! "same" or exit 3 "different"). A symlink at PATH, even dangling, is
//! something already there: it is never followed to write elsewhere.
//! `atomic` is the mechanism that writes and publishes without clobbering;
//! `content` opens, copies and compares the content in bounded chunks.
//!
//! `RTB_FILE_PUBLISH=unnamed|named|exclusive` starts the mechanism at a
//! lower step (see `atomic`); it exists for tests and for filesystems that
//! claim a primitive they do not honour.

mod atomic;
mod content;

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

use self::atomic::{PublishMode, Published, Target};
use self::content::Source;
use crate::config::FileConfig;
use crate::error::{code, Error, Outcome};

/// Environment variable that picks the first publishing step (tests).
pub const PUBLISH_ENV: &str = "RTB_FILE_PUBLISH";

/// Parses `--mode`: octal permission bits, 0 to 7777.
///
/// # Errors
/// A reason when the text is not octal or out of range.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err("expected octal permission bits such as 644 or 0600".into());
    }
    let m = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
    if m > 0o7777 {
        return Err("permission bits go up to 7777".into());
    }
    Ok(m)
}

/// Creates `cfg.path` once with the configured content.
///
/// # Errors
/// `Differs` (exit 3) when `--verify` finds other content; `Failed` (exit 1)
/// for a missing parent, a directory at PATH, an unreadable `--from`, and
/// any error creating, writing or publishing the file.
pub fn run(cfg: &FileConfig) -> Outcome {
    let shown = cfg.path.display().to_string();
    let src = Source::open(&cfg.content)?;
    let (dir_path, name) = split(&cfg.path);
    if name.is_empty() || name == "." || name == ".." {
        if cfg.path.is_dir() {
            return Err(is_a_directory(&shown));
        }
        return Err(Error::Failed(format!(
            "cannot create {shown}: a file name cannot end in '/', '.' or '..'"
        )));
    }
    let dir = open_dir(dir_path, cfg.parents)?;
    let t = Target {
        dir: &dir,
        name,
        shown: &shown,
        mode: cfg.mode,
    };
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => return exists(cfg, &t, src),
        Err(Errno::NOENT) => {}
        Err(e) => {
            return Err(Error::Failed(format!(
                "cannot check {shown}: {}",
                std::io::Error::from(e)
            )))
        }
    }
    match atomic::create(&t, src, publish_mode())? {
        Published::Created => {
            tracing::info!(path = %shown, "File created: {shown}");
            Ok(code::OK)
        }
        Published::Exists(src) => exists(cfg, &t, src),
    }
}

/// Something is at PATH: a directory is an error; anything else is left
/// alone, and compared with the content under `--verify`.
fn exists(cfg: &FileConfig, t: &Target<'_>, src: Source<'_>) -> Outcome {
    let shown = t.shown;
    if let Ok(st) = rustix::fs::statat(t.dir, t.name, AtFlags::SYMLINK_NOFOLLOW) {
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(is_a_directory(shown));
        }
    }
    if !cfg.verify {
        tracing::info!(path = %shown, "File already exists: {shown} (no action taken)");
        return Ok(code::OK);
    }
    let differs = |why: &str| {
        Err(Error::Differs(format!(
            "File exists with different content: {shown}{why}"
        )))
    };
    // Reading may follow a symlink: --verify checks what readers of PATH see.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(t.dir, t.name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return differs(" (a dangling symlink)"),
        Err(e) => {
            return Err(Error::Failed(format!(
                "cannot read {shown} to verify it: {}",
                std::io::Error::from(e)
            )))
        }
    };
    let regular = rustix::fs::fstat(&fd)
        .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
        .unwrap_or(false);
    if !regular {
        return differs(" (not a regular file)");
    }
    if content::same(src, &mut File::from(fd), shown)? {
        tracing::info!(path = %shown, "File already exists with the expected content: {shown}");
        Ok(code::OK)
    } else {
        differs("")
    }
}

fn is_a_directory(shown: &str) -> Error {
    Error::Failed(format!("cannot create {shown}: it is a directory"))
}

/// PATH's directory (`.` for a bare name) and its last component, split on
/// the last '/' exactly as written (`Path::file_name` would turn `a/.` and
/// `a/` into `a`).
fn split(path: &Path) -> (&Path, &OsStr) {
    let b = path.as_os_str().as_bytes();
    match b.iter().rposition(|&c| c == b'/') {
        Some(0) => (Path::new("/"), OsStr::from_bytes(&b[1..])),
        Some(i) => (
            Path::new(OsStr::from_bytes(&b[..i])),
            OsStr::from_bytes(&b[i + 1..]),
        ),
        None => (Path::new("."), path.as_os_str()),
    }
}

/// Opens PATH's directory once, for every later *at call and the final
/// directory fsync; with `--parents`, creates it first if it is missing.
fn open_dir(dir: &Path, parents: bool) -> Result<OwnedFd, Error> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let open = || rustix::fs::openat(CWD, dir, flags, Mode::empty());
    let shown = dir.display();
    let fail = |e: Errno| match e {
        Errno::NOENT => Error::Failed(format!("parent directory {shown} does not exist")),
        Errno::NOTDIR => Error::Failed(format!("parent {shown} is not a directory")),
        e => Error::Failed(format!(
            "cannot open parent directory {shown}: {}",
            std::io::Error::from(e)
        )),
    };
    match open() {
        Err(Errno::NOENT) if parents => {
            // The directories missing now, deepest first, to sync afterwards.
            let missing: Vec<&Path> = dir
                .ancestors()
                .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
                .collect();
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Failed(format!("cannot create parent directory {shown}: {e}"))
            })?;
            tracing::debug!(dir = %shown, "Created parent directory {shown}");
            // A new directory's name is durable once its own parent is
            // synced; the deepest one is synced after the file is linked.
            for created in &missing {
                let up = match created.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let synced = rustix::fs::openat(CWD, up, flags, Mode::empty())
                    .and_then(|fd| rustix::fs::fsync(&fd));
                if let Err(e) = synced {
                    tracing::debug!("cannot sync directory {}: {e}", up.display());
                }
            }
            open().map_err(fail)
        }
        r => r.map_err(fail),
    }
}

/// The first publishing step: `unnamed` unless [`PUBLISH_ENV`] says otherwise.
fn publish_mode() -> PublishMode {
    match std::env::var(PUBLISH_ENV).as_deref() {
        Ok("named") => PublishMode::Named,
        Ok("exclusive") => PublishMode::Exclusive,
        Ok("unnamed") | Err(_) => PublishMode::Unnamed,
        Ok(other) => {
            tracing::warn!(
                "Ignoring {PUBLISH_ENV}={other:?}: expected unnamed, named or exclusive"
            );
            PublishMode::Unnamed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_the_last_component_as_written() {
        let cases = [
            ("x", ".", "x"),
            ("/x", "/", "x"),
            ("a/b/x", "a/b", "x"),
            ("a//x", "a/", "x"),
            ("a/", "a", ""),
            ("a/.", "a", "."),
            ("/", "/", ""),
            ("..", ".", ".."),
        ];
        for (path, dir, name) in cases {
            let (d, n) = split(Path::new(path));
            assert_eq!((d, n), (Path::new(dir), OsStr::new(name)), "{path}");
        }
    }

    #[test]
    fn parse_mode_takes_octal_bits_only() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("0o7777"), Ok(0o7777));
        for bad in ["", "8", "9", "rw", "17777", "-1"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    // Case counts come from proptest's default config, which honours
    // PROPTEST_CASES (scripts/fuzz runs 100,000 per parser).
    proptest::proptest! {
        #[test]
        fn parse_mode_never_panics(text in ".*") {
            let _ = parse_mode(&text);
        }

        #[test]
        fn parse_mode_accepts_only_permission_bits(text in "(0o)?[0-9]{0,7}") {
            if let Ok(m) = parse_mode(&text) {
                proptest::prop_assert!(m <= 0o7777, "{text:?} gave {m:o}");
            }
        }

        #[test]
        fn parse_mode_round_trips(m in 0u32..=0o7777, pad in " {0,2}") {
            for text in [format!("{m:o}"), format!("{m:04o}"), format!("0{m:o}"), format!("0o{m:o}")] {
                proptest::prop_assert_eq!(parse_mode(&format!("{pad}{text}{pad}")), Ok(m), "{}", text);
            }
        }
    }
}
