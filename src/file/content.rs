//! Where the content comes from, copying it in bounded chunks, and comparing
//! it with a file that is already there (`--verify`), also in chunks.
//!
//! Nothing here ever holds more than one chunk of a stream in memory, so a
//! multi-gigabyte `--from` file or an endless pipe costs the same memory as
//! "Hello World". This module never creates or publishes a file.

use std::fs::File;
use std::io::{self, Read, Write};

use crate::config::Content;
use crate::error::Error;

/// Chunk size for copying and comparing.
const CHUNK: usize = 256 * 1024;

/// The content, opened and ready to be read once.
pub enum Source<'a> {
    Bytes(&'a [u8]),
    /// A stream, and its name for messages (`--from FILE`, `stdin`).
    Stream(Box<dyn Read + 'a>, String),
}

impl<'a> Source<'a> {
    /// Opens the content source. `--from FILE` is opened now, so a missing
    /// file is reported before anything is created.
    ///
    /// # Errors
    /// `--from FILE` cannot be opened.
    pub fn open(content: &'a Content) -> Result<Self, Error> {
        Ok(match content {
            Content::Text(t) => Source::Bytes(t),
            Content::File(p) => {
                let name = format!("--from {}", p.display());
                let f =
                    File::open(p).map_err(|e| Error::Failed(format!("cannot read {name}: {e}")))?;
                Source::Stream(Box::new(f), name)
            }
            Content::Stdin => Source::Stream(Box::new(io::stdin().lock()), "stdin".into()),
        })
    }

    /// A stream read from the start of `file` (a temporary copy made earlier).
    pub fn from_copy(file: File, name: String) -> Source<'static> {
        Source::Stream(Box::new(file), name)
    }
}

/// Fills `buf` as far as the stream allows; returns how much was read
/// (less than `buf.len()` only at the end of the stream).
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies the whole source into `dest`, chunk by chunk. Read errors name the
/// source; write errors name `dest_name` (the PATH the user gave).
///
/// # Errors
/// Reading the source or writing `dest` fails (disk full, read-only, ...).
pub fn copy(src: Source<'_>, dest: &mut File, dest_name: &str) -> Result<(), Error> {
    let write_err = |e: io::Error| Error::Failed(format!("cannot write {dest_name}: {e}"));
    match src {
        Source::Bytes(b) => dest.write_all(b).map_err(write_err),
        Source::Stream(mut r, name) => {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = read_full(&mut r, &mut buf)
                    .map_err(|e| Error::Failed(format!("cannot read {name}: {e}")))?;
                if n == 0 {
                    return Ok(());
                }
                dest.write_all(&buf[..n]).map_err(write_err)?;
            }
        }
    }
}

/// Whether `existing` holds exactly the source's content, compared chunk by
/// chunk; stops reading at the first difference.
///
/// # Errors
/// Reading either side fails; `existing_name` names the file in messages.
pub fn same(src: Source<'_>, existing: &mut dyn Read, existing_name: &str) -> Result<bool, Error> {
    let read_existing =
        |e: io::Error| Error::Failed(format!("cannot read {existing_name} to verify it: {e}"));
    let mut theirs = vec![0u8; CHUNK];
    match src {
        Source::Bytes(mut want) => loop {
            let n = read_full(existing, &mut theirs).map_err(read_existing)?;
            if n == 0 {
                return Ok(want.is_empty());
            }
            if n > want.len() || theirs[..n] != want[..n] {
                return Ok(false);
            }
            want = &want[n..];
        },
        Source::Stream(mut r, name) => {
            let mut ours = vec![0u8; CHUNK];
            loop {
                let a = read_full(&mut r, &mut ours)
                    .map_err(|e| Error::Failed(format!("cannot read {name}: {e}")))?;
                let b = read_full(existing, &mut theirs).map_err(read_existing)?;
                if a != b || ours[..a] != theirs[..b] {
                    return Ok(false);
                }
                if a == 0 {
                    return Ok(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, as a pipe may.
    struct Drip<'a>(&'a [u8], usize);
    impl Read for Drip<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn stream(b: &[u8], step: usize) -> Source<'_> {
        Source::Stream(Box::new(Drip(b, step)), "test".into())
    }

    #[test]
    fn same_compares_bytes_and_streams_across_chunks() {
        let big: Vec<u8> = (0..CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
        let mut other = big.clone();
        *other.last_mut().unwrap() ^= 1;
        for step in [1usize, 7, 4096, CHUNK + 3] {
            assert!(same(stream(&big, step), &mut Drip(&big, 999), "x").unwrap());
            assert!(!same(stream(&big, step), &mut Drip(&other, 999), "x").unwrap());
            assert!(!same(stream(&big[1..], step), &mut Drip(&big, 999), "x").unwrap());
            assert!(!same(stream(&big, step), &mut Drip(&big[1..], 999), "x").unwrap());
        }
        assert!(same(Source::Bytes(&big), &mut Drip(&big, 5000), "x").unwrap());
        assert!(!same(Source::Bytes(&big), &mut Drip(&other, 5000), "x").unwrap());
        assert!(!same(Source::Bytes(&big[..10]), &mut Drip(&big, 5000), "x").unwrap());
        assert!(!same(Source::Bytes(&big), &mut Drip(&big[..10], 5000), "x").unwrap());
        assert!(same(Source::Bytes(b""), &mut Drip(b"", 1), "x").unwrap());
        assert!(same(stream(b"", 1), &mut Drip(b"", 1), "x").unwrap());
    }
}
