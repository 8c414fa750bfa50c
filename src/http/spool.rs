//! Where a body goes while it arrives: spooled (memory up to a limit, then
//! an unnamed temp file) for stdout, or a hidden temp file beside `-o FILE`
//! that is renamed into place only when the body is complete. A failed
//! attempt's bytes are dropped with the spool: nobody ever sees them.

use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, SpooledTempFile};

/// Bodies up to this size stay in memory; larger ones spill to disk.
const IN_MEMORY: usize = 1 << 20;

pub enum Spool {
    Stdout(SpooledTempFile),
    File { tmp: NamedTempFile, dest: PathBuf },
}

impl Spool {
    /// A spool for stdout, or for `dest` (its temp file is created now, so
    /// an unwritable directory fails before any request is sent).
    pub fn new(dest: Option<&Path>) -> io::Result<Self> {
        match dest {
            None => Ok(Spool::Stdout(SpooledTempFile::new(IN_MEMORY))),
            Some(dest) => {
                let dir = match dest.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let name = dest
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // 0666 less the umask, like a shell redirect or curl -o.
                let tmp = tempfile::Builder::new()
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
                    .prefix(&format!(".{name}.rtb-tmp."))
                    .tempfile_in(dir)?;
                Ok(Spool::File {
                    tmp,
                    dest: dest.to_path_buf(),
                })
            }
        }
    }

    pub fn write_all(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self {
            Spool::Stdout(s) => s.write_all(chunk),
            Spool::File { tmp, .. } => tmp.write_all(chunk),
        }
    }

    /// Publishes the complete body: copies it to stdout, or syncs the temp
    /// file and renames it over `dest`.
    pub fn publish(self) -> io::Result<()> {
        match self {
            Spool::Stdout(mut s) => {
                s.rewind()?;
                let mut out = io::stdout().lock();
                match io::copy(&mut s, &mut out).and_then(|_| out.flush()) {
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                    r => r.map(|_| ()),
                }
            }
            Spool::File { tmp, dest } => {
                tmp.as_file().sync_all()?;
                tmp.persist(&dest).map_err(|e| e.error)?;
                if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                    // The new name must survive a crash too.
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            }
        }
    }
}
