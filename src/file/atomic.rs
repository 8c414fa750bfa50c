//! The mechanism: write the content beside PATH, make it durable, and publish
//! it at PATH without ever overwriting anything or showing a partial file.
//!
//! In order of preference (each step down is logged at debug level):
//! 1. `Unnamed`: an `O_TMPFILE` in PATH's directory, published with
//!    `linkat(/proc/self/fd/N, AT_SYMLINK_FOLLOW)`. A crash leaves nothing.
//! 2. `Named`: a hidden `.NAME.rtb-tmp.XXXXXX` made with
//!    `O_CREAT|O_EXCL|O_NOFOLLOW`, published with
//!    `renameat2(RENAME_NOREPLACE)`, or `link` + `unlink` where that answers
//!    EINVAL/ENOSYS (ZFS, NFS, FUSE). SIGINT, SIGTERM and SIGHUP remove it;
//!    only a SIGKILL can leave it behind, under that recognisable name.
//! 3. `Exclusive`: `O_CREAT|O_EXCL` at PATH itself, for filesystems without
//!    hard links. Readers may see it partly written; failures and signals
//!    remove it.
//!
//! Every way out removes what this module made, except the published file.
//! It never follows a symlink at PATH, and never decides what to log at
//! info level: the caller reports the outcome.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

use super::content::{copy, Source};
use crate::error::Error;

/// How the content reaches PATH (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    Unnamed,
    Named,
    Exclusive,
}

/// Where to create the file.
pub struct Target<'a> {
    /// PATH's directory, opened once.
    pub dir: &'a OwnedFd,
    /// PATH's last component.
    pub name: &'a OsStr,
    /// PATH as the user gave it, for messages.
    pub shown: &'a str,
    /// `--mode`; `None` is 0666 less the umask.
    pub mode: Option<u32>,
}

/// What happened at PATH.
pub enum Published<'a> {
    Created,
    /// Something was already there. The content is handed back unread, or
    /// as our finished copy read from its start, for `--verify`.
    Exists(Source<'a>),
}

/// Creates PATH with the content, starting from `mode` and stepping down
/// where the filesystem lacks a primitive.
///
/// # Errors
/// Creating, writing, syncing or publishing fails; nothing is left at PATH.
pub fn create<'a>(
    t: &Target<'_>,
    src: Source<'a>,
    mode: PublishMode,
) -> Result<Published<'a>, Error> {
    match mode {
        PublishMode::Unnamed => unnamed(t, src),
        PublishMode::Named => named(t, src),
        PublishMode::Exclusive => exclusive(t, src),
    }
}

fn unnamed<'a>(t: &Target<'_>, src: Source<'a>) -> Result<Published<'a>, Error> {
    if let Err(e) = rustix::fs::access("/proc/self/fd", rustix::fs::Access::EXISTS) {
        tracing::debug!("/proc/self/fd is not available ({e}): using a hidden temporary name");
        return named(t, src);
    }
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(t.dir, ".", flags, create_mode(t.mode)) {
        Ok(fd) => fd,
        Err(e @ (Errno::OPNOTSUPP | Errno::ISDIR | Errno::NOENT | Errno::INVAL)) => {
            tracing::debug!("O_TMPFILE is not supported here ({e}): using a hidden temporary name");
            return named(t, src);
        }
        Err(e) => return Err(cannot_create(t, e)),
    };
    let mut file = File::from(fd);
    fill(t, &mut file, src)?;
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, &proc_path, t.dir, t.name, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => created(t),
        Err(Errno::EXIST) => Ok(Published::Exists(rewind(t, file)?)),
        Err(e) if unsupported(e) => {
            tracing::debug!(
                "cannot link the unnamed temporary file ({e}): falling back to O_CREAT|O_EXCL"
            );
            exclusive(t, rewind(t, file)?)
        }
        Err(e) => Err(cannot_create(t, e)),
    }
}

fn named<'a>(t: &Target<'_>, src: Source<'a>) -> Result<Published<'a>, Error> {
    watch_signals();
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC;
    let mut attempt = 0;
    let (fd, pending) = loop {
        let tmp = hidden_name(t.name);
        match Pending::open(t, &tmp, flags) {
            Err(Errno::EXIST) if attempt < 100 => attempt += 1,
            Err(e) => return Err(cannot_create(t, e)),
            Ok(opened) => break opened,
        }
    };
    let mut file = File::from(fd);
    fill(t, &mut file, src)?;
    let tmp = pending.name().to_owned();
    let renamed = pending
        .publish(|| rustix::fs::renameat_with(t.dir, &tmp, t.dir, t.name, RenameFlags::NOREPLACE));
    match renamed {
        Ok(()) => created(t),
        Err(Errno::EXIST) => Ok(Published::Exists(rewind(t, file)?)),
        Err(e @ (Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)) => {
            tracing::debug!(
                "renameat2(RENAME_NOREPLACE) is not supported here ({e}): using link and unlink"
            );
            match rustix::fs::linkat(t.dir, &tmp, t.dir, t.name, AtFlags::empty()) {
                Ok(()) => {
                    drop(pending);
                    created(t)
                }
                Err(Errno::EXIST) => Ok(Published::Exists(rewind(t, file)?)),
                Err(e) if unsupported(e) => {
                    tracing::debug!("hard links are not supported here ({e}): falling back to O_CREAT|O_EXCL, which readers may see partly written");
                    exclusive(t, rewind(t, file)?)
                }
                Err(e) => Err(cannot_create(t, e)),
            }
        }
        Err(e) => Err(cannot_create(t, e)),
    }
}

fn exclusive<'a>(t: &Target<'_>, src: Source<'a>) -> Result<Published<'a>, Error> {
    watch_signals();
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC;
    let (fd, pending) = match Pending::open(t, t.name, flags) {
        Ok(opened) => opened,
        Err(Errno::EXIST) => return Ok(Published::Exists(src)),
        Err(e) => return Err(cannot_create(t, e)),
    };
    let mut file = File::from(fd);
    // On an error, `pending` removes the partial file as it drops.
    fill(t, &mut file, src)?;
    pending
        .publish(|| Ok(()))
        .map_err(|e| cannot_create(t, e))?;
    created(t)
}

/// Copies the content in, sets the mode, and makes the data durable.
fn fill(t: &Target<'_>, file: &mut File, src: Source<'_>) -> Result<(), Error> {
    copy(src, file, t.shown)?;
    if let Some(m) = t.mode {
        rustix::fs::fchmod(&*file, Mode::from_raw_mode(m))
            .map_err(|e| Error::Failed(format!("cannot set the mode of {}: {e}", t.shown)))?;
    }
    rustix::fs::fsync(&*file)
        .map_err(|e| Error::Failed(format!("cannot write {}: {}", t.shown, io_err(e))))
}

/// The new name is durable only once its directory is synced.
fn created<'a>(t: &Target<'_>) -> Result<Published<'a>, Error> {
    rustix::fs::fsync(t.dir).map_err(|e| {
        Error::Failed(format!(
            "created {} but cannot sync its directory: {}",
            t.shown,
            io_err(e)
        ))
    })?;
    Ok(Published::Created)
}

fn rewind<'a>(t: &Target<'_>, mut file: File) -> Result<Source<'a>, Error> {
    file.seek(SeekFrom::Start(0)).map_err(|e| {
        Error::Failed(format!(
            "cannot reread the temporary copy of {}: {e}",
            t.shown
        ))
    })?;
    Ok(Source::from_copy(
        file,
        format!("the temporary copy of {}", t.shown),
    ))
}

/// Errors that mean "this filesystem cannot do that", not "you may not".
fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::PERM | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL | Errno::NOENT | Errno::XDEV
    )
}

fn io_err(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

fn cannot_create(t: &Target<'_>, e: Errno) -> Error {
    Error::Failed(format!("cannot create {}: {}", t.shown, io_err(e)))
}

/// The mode a new file is opened with: private while it is written when
/// `--mode` will be set later, else 0666 for the kernel to mask with the
/// umask, exactly as a shell redirect does.
fn create_mode(mode: Option<u32>) -> Mode {
    Mode::from_raw_mode(if mode.is_some() { 0o600 } else { 0o666 })
}

/// `.NAME.rtb-tmp.XXXXXX`: hidden, recognisable, and short enough for
/// NAME_MAX however long NAME is.
pub fn hidden_name(name: &OsStr) -> OsString {
    let base = &name.as_bytes()[..name.len().min(200)];
    let mut out = Vec::with_capacity(base.len() + 16);
    out.push(b'.');
    out.extend_from_slice(base);
    out.extend_from_slice(b".rtb-tmp.");
    out.extend(std::iter::repeat_with(|| fastrand::alphanumeric() as u8).take(6));
    OsString::from_vec(out)
}

/// Files this run made by name and must remove on every way out until they
/// are published: on drop of their [`Pending`], or from the signal thread.
/// (A named temporary and, in the last fallback, PATH itself.)
static SLOT: Mutex<Vec<(OwnedFd, OsString)>> = Mutex::new(Vec::new());

fn slot() -> std::sync::MutexGuard<'static, Vec<(OwnedFd, OsString)>> {
    SLOT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes `name`'s entry out of the slot (the caller holds the lock).
fn take(s: &mut Vec<(OwnedFd, OsString)>, name: &OsStr) -> Option<(OwnedFd, OsString)> {
    let i = s.iter().position(|(_, n)| n == name)?;
    Some(s.swap_remove(i))
}

fn remove((dir, name): (OwnedFd, OsString)) -> Option<OsString> {
    rustix::fs::unlinkat(&dir, &name, AtFlags::empty()).ok()?;
    Some(name)
}

/// A file in [`SLOT`]; dropping it removes the file unless it was published.
struct Pending {
    name: OsString,
}

impl Pending {
    /// Opens `name` in the target directory and records it for removal, both
    /// under the slot's lock, so a signal cannot fall in between.
    fn open(t: &Target<'_>, name: &OsStr, flags: OFlags) -> Result<(OwnedFd, Pending), Errno> {
        let dir = t.dir.try_clone().map_err(|e| {
            e.raw_os_error()
                .map(Errno::from_raw_os_error)
                .unwrap_or(Errno::IO)
        })?;
        let mut s = slot();
        let fd = rustix::fs::openat(t.dir, name, flags, create_mode(t.mode))?;
        s.push((dir, name.to_owned()));
        Ok((
            fd,
            Pending {
                name: name.to_owned(),
            },
        ))
    }

    fn name(&self) -> &OsStr {
        &self.name
    }

    /// Runs the publishing step under the lock; on success the file is no
    /// longer ours to remove.
    fn publish(&self, step: impl FnOnce() -> Result<(), Errno>) -> Result<(), Errno> {
        let mut s = slot();
        step()?;
        take(&mut s, &self.name);
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let taken = take(&mut slot(), &self.name);
        if let Some(entry) = taken {
            remove(entry);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: remove the pending file, say so, and exit
/// 128+N. Installed once, only when a named file is about to be made (an
/// unnamed one needs no cleanup: the kernel drops it).
fn watch_signals() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(
                    "cannot watch for signals ({e}): a signal may leave a temporary file"
                );
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("rtb-file-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    // Holding the lock until exit: no publishing step can
                    // start after the files are removed.
                    let mut s = slot();
                    let removed: Vec<String> = s
                        .drain(..)
                        .filter_map(remove)
                        .map(|n| n.to_string_lossy().into_owned())
                        .collect();
                    if removed.is_empty() {
                        tracing::warn!(signal = sig, "Interrupted by signal {sig}");
                    } else {
                        tracing::warn!(
                            signal = sig,
                            "Interrupted by signal {sig}: removed {}",
                            removed.join(", ")
                        );
                    }
                    std::process::exit(128 + sig);
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("cannot watch for signals ({e}): a signal may leave a temporary file");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_are_hidden_recognisable_and_bounded() {
        let n = hidden_name(OsStr::new("report.csv"));
        let s = n.to_str().unwrap();
        assert!(s.starts_with(".report.csv.rtb-tmp."), "{s}");
        assert_eq!(s.len(), ".report.csv.rtb-tmp.".len() + 6);
        assert_ne!(n, hidden_name(OsStr::new("report.csv")));
        let long = "x".repeat(255);
        assert!(hidden_name(OsStr::new(&long)).len() <= 255);
    }
}
