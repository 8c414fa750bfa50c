//! The embedded store: one SQLite file per host.
//!
//! WAL, synchronous=FULL (a record that says done survives a power cut), a
//! busy timeout, and `BEGIN IMMEDIATE` for every write (a deferred
//! transaction that upgrades to a write fails at once with SQLITE_BUSY,
//! busy timeout or not). It refuses network filesystems, where WAL's shared
//! memory does not work, and it never repairs, truncates or recreates a file
//! that is not a good store: it fails closed and leaves the file as it is.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

use super::{now_ms, Claim, Finish, Forgot, Owner, Record, State, Store, TABLE};
use crate::error::Error;

/// How long a writer waits for another one.
const BUSY_TIMEOUT: Duration = Duration::from_secs(20);

const COLUMNS: &str = "id, state, fence, host, pid, token, command, exit_status, \
    started_ms, updated_ms, lease_until_ms, length(output), output_cut";

/// A guard store in a SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

/// Filesystems whose locking SQLite's WAL cannot rely on (statfs f_type).
const NETWORK_FS: [(u32, &str); 12] = [
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x6573_5546, "FUSE"),
    (0x00C3_6400, "Ceph"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "AFS"),
    (0x0102_1997, "9P"),
    (0x0116_1970, "GFS2"),
    (0x7461_636F, "OCFS2"),
    (0x0BD0_0BD0, "Lustre"),
];

/// The network filesystem `dir` is on, if it is on one.
pub fn network_fs(dir: &Path) -> Option<&'static str> {
    let st = rustix::fs::statfs(dir).ok()?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let magic = st.f_type as u64 as u32;
    NETWORK_FS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

impl SqliteStore {
    /// Opens (creating if missing: the file 0600 in a 0700 directory) the
    /// store at `path`.
    ///
    /// # Errors
    /// A network filesystem, an unreadable, locked-for-good or corrupt file:
    /// the file is left untouched.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let shown = path.display();
        let fail =
            |why: String| Error::Failed(format!("cannot open the guard store {shown}: {why}"));
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        if let Some(fs) = network_fs(&dir) {
            return Err(Error::Failed(format!(
                "the guard store {shown} is on a network filesystem ({fs}): SQLite's locking is \
                 not safe there. Share one guard between hosts with PostgreSQL instead: \
                 --store postgres://USER@HOST/DB"
            )));
        }
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => return Err(fail("not a regular file".into())),
            // SQLite takes a file shorter than its header for an empty
            // database and writes over it: a stray one-byte file would be
            // lost. Only an empty file or one that starts with SQLite's
            // header is opened.
            Ok(m) if m.len() > 0 && !has_sqlite_header(path) => {
                return Err(fail(
                    "file is not a database: the file is not a usable guard store; it was \
                     left as it is (move it away, or point --store elsewhere)"
                        .into(),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::OpenOptionsExt;
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(fail(e.to_string())),
                }
            }
            Err(e) => return Err(fail(e.to_string())),
        }
        // Never SQLITE_OPEN_CREATE: the file was made above with our mode.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(e.to_string()))?;
        let store = SqliteStore {
            conn,
            path: path.to_path_buf(),
        };
        store.setup().map_err(|e| fail(describe(&e)))?;
        Ok(store)
    }

    fn setup(&self) -> rusqlite::Result<()> {
        // Checked before anything is written: a file that is no database
        // or is damaged fails here, and so does another program's database
        // (it is never converted to WAL or given our table).
        let refuse = |code: i32, why: String| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(why))
        };
        let check: String = self
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(refuse(
                rusqlite::ffi::SQLITE_CORRUPT,
                format!("database disk image is malformed ({check})"),
            ));
        }
        let mut others = self.conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?;
        let tables: Vec<String> = others
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        drop(others);
        if !tables.is_empty() && !tables.iter().any(|t| t == TABLE) {
            return Err(refuse(
                rusqlite::ffi::SQLITE_NOTADB,
                format!(
                    "a SQLite database of another program (tables: {})",
                    tables.join(", ")
                ),
            ));
        }
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Switching needs a moment alone with the file; the busy
            // handler is not always consulted, so retry for a bounded time.
            let until = Instant::now() + BUSY_TIMEOUT;
            loop {
                match self
                    .conn
                    .query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
                {
                    Ok(_) => break,
                    Err(e) if is_busy(&e) && Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(5 + fastrand::u64(..20)));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Each rtb is one short process: checkpointing (and deleting the
        // WAL) at every close costs an fsync per run, so closing does not
        // checkpoint. But the first process to open the store rebuilds the
        // WAL index by reading the whole WAL, so writers checkpoint early
        // (every 32 pages, not SQLite's 1000) to keep that read small.
        self.conn
            .execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=32")?;
        self.conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        let exists: i64 = self.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [TABLE],
            |r| r.get(0),
        )?;
        if exists == 0 {
            let tx = self.begin()?;
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (
                    id TEXT PRIMARY KEY NOT NULL,
                    state TEXT NOT NULL,
                    fence INTEGER NOT NULL,
                    host TEXT NOT NULL,
                    pid INTEGER NOT NULL,
                    token TEXT NOT NULL,
                    command TEXT NOT NULL,
                    exit_status INTEGER,
                    started_ms INTEGER NOT NULL,
                    updated_ms INTEGER NOT NULL,
                    lease_until_ms INTEGER NOT NULL,
                    output BLOB,
                    output_cut INTEGER NOT NULL DEFAULT 0
                )"
            ))?;
            tx.commit()?;
        }
        Ok(())
    }

    fn begin(&self) -> rusqlite::Result<Transaction<'_>> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
    }

    fn err(&self, e: &rusqlite::Error) -> Error {
        Error::Failed(format!(
            "guard store {}: {}",
            self.path.display(),
            describe(e)
        ))
    }

    fn row(r: &rusqlite::Row<'_>, now: i64) -> rusqlite::Result<Record> {
        let state_text: String = r.get(1)?;
        let state = State::parse(&state_text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                e.to_string().into(),
            )
        })?;
        let lease_until_ms: i64 = r.get(10)?;
        Ok(Record {
            id: r.get(0)?,
            state,
            fence: r.get(2)?,
            host: r.get(3)?,
            pid: r.get(4)?,
            token: r.get(5)?,
            command: r.get(6)?,
            exit_status: r.get(7)?,
            started_ms: r.get(8)?,
            updated_ms: r.get(9)?,
            lease_until_ms,
            live: state == State::Running && lease_until_ms > now,
            output: None,
            output_len: r.get::<_, Option<i64>>(11)?.unwrap_or(0),
            output_cut: r.get::<_, i64>(12)? != 0,
        })
    }

    fn select(&self, tx: &Connection, id: &str, now: i64) -> rusqlite::Result<Option<Record>> {
        tx.query_row(
            &format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = ?1"),
            [id],
            |r| Self::row(r, now),
        )
        .optional()
    }

    fn claim_sync(
        &self,
        id: &str,
        owner: &Owner,
        command: &str,
        lease: Duration,
    ) -> rusqlite::Result<Claim> {
        let tx = self.begin()?;
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let claim = match self.select(&tx, id, now)? {
            None => {
                tx.execute(
                    &format!(
                        "INSERT INTO {TABLE} (id, state, fence, host, pid, token, command, \
                         started_ms, updated_ms, lease_until_ms) \
                         VALUES (?1, 'running', 1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)"
                    ),
                    params![id, owner.host, owner.pid, owner.token, command, now, until],
                )?;
                Claim::Won {
                    fence: 1,
                    lost: None,
                }
            }
            Some(r) if r.state == State::Done => Claim::Done(r),
            Some(r) if r.live => Claim::Busy(r),
            Some(r) => {
                let fence = r.fence + 1;
                tx.execute(
                    &format!(
                        "UPDATE {TABLE} SET state = 'running', fence = ?2, host = ?3, pid = ?4, \
                         token = ?5, command = ?6, exit_status = NULL, started_ms = ?7, \
                         updated_ms = ?7, lease_until_ms = ?8, output = NULL, output_cut = 0 \
                         WHERE id = ?1"
                    ),
                    params![
                        id,
                        fence,
                        owner.host,
                        owner.pid,
                        owner.token,
                        command,
                        now,
                        until
                    ],
                )?;
                let lost = (r.state == State::Running).then_some(r);
                Claim::Won { fence, lost }
            }
        };
        tx.commit()?;
        Ok(claim)
    }

    /// Runs one conditional write in its own immediate transaction.
    fn write(&self, sql: &str, p: &[&dyn rusqlite::ToSql]) -> rusqlite::Result<usize> {
        let tx = self.begin()?;
        let n = tx.execute(sql, p)?;
        tx.commit()?;
        Ok(n)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// SQLite's message, with what it means for the store.
/// Whether the file starts with "SQLite format 3\0" (or cannot be read,
/// which SQLite itself will then report).
fn has_sqlite_header(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    match std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)) {
        Ok(()) => &head == b"SQLite format 3\0",
        Err(e) => e.kind() != std::io::ErrorKind::UnexpectedEof,
    }
}

fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => format!(
            "{e}: the file is not a usable guard store; it was left as it is \
             (move it away, or point --store elsewhere)"
        ),
        _ => e.to_string(),
    }
}

impl Store for SqliteStore {
    async fn claim(
        &self,
        id: &str,
        owner: &Owner,
        command: &str,
        lease: Duration,
    ) -> Result<Claim, Error> {
        self.claim_sync(id, owner, command, lease)
            .map_err(|e| self.err(&e))
    }

    async fn renew(
        &self,
        id: &str,
        owner: &Owner,
        fence: i64,
        lease: Duration,
    ) -> Result<bool, Error> {
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self.write(
            &format!(
                "UPDATE {TABLE} SET lease_until_ms = ?4, updated_ms = ?5 \
                 WHERE id = ?1 AND token = ?2 AND fence = ?3 AND state = 'running'"
            ),
            params![id, owner.token, fence, until, now],
        )
        .map(|n| n == 1)
        .map_err(|e| self.err(&e))
    }

    async fn finish(
        &self,
        id: &str,
        owner: &Owner,
        fence: i64,
        how: &Finish,
    ) -> Result<bool, Error> {
        self.write(
            &format!(
                "UPDATE {TABLE} SET state = 'done', exit_status = ?4, output = ?5, \
                 output_cut = ?6, updated_ms = ?7 \
                 WHERE id = ?1 AND token = ?2 AND fence = ?3 AND state = 'running'"
            ),
            params![
                id,
                owner.token,
                fence,
                how.exit_status,
                how.output,
                how.output_cut,
                now_ms()
            ],
        )
        .map(|n| n == 1)
        .map_err(|e| self.err(&e))
    }

    async fn release(&self, id: &str, owner: &Owner, fence: i64) -> Result<bool, Error> {
        let now = now_ms();
        self.write(
            &format!(
                "UPDATE {TABLE} SET state = 'released', updated_ms = ?4, lease_until_ms = ?4 \
                 WHERE id = ?1 AND token = ?2 AND fence = ?3 AND state = 'running'"
            ),
            params![id, owner.token, fence, now],
        )
        .map(|n| n == 1)
        .map_err(|e| self.err(&e))
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, Error> {
        let now = now_ms();
        let found = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS}, output FROM {TABLE} WHERE id = ?1"),
                [id],
                |r| {
                    let mut rec = Self::row(r, now)?;
                    rec.output = r.get(13)?;
                    Ok(rec)
                },
            )
            .optional()
            .map_err(|e| self.err(&e))?;
        Ok(found.filter(|r| r.state != State::Released))
    }

    async fn list(&self) -> Result<Vec<Record>, Error> {
        let now = now_ms();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM {TABLE} WHERE state != 'released' ORDER BY started_ms, id"
            ))
            .map_err(|e| self.err(&e))?;
        let rows = stmt
            .query_map([], |r| Self::row(r, now))
            .map_err(|e| self.err(&e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(&e))
    }

    async fn forget(&self, id: &str) -> Result<Forgot, Error> {
        let go = || -> rusqlite::Result<Forgot> {
            let tx = self.begin()?;
            let now = now_ms();
            let out = match self.select(&tx, id, now)? {
                None => Forgot::NotRecorded,
                Some(r) if r.state == State::Released => Forgot::NotRecorded,
                Some(r) if r.live => Forgot::Busy(r),
                Some(_) => {
                    // Keep the row (and its fence) so later claims still rise.
                    tx.execute(
                        &format!(
                            "UPDATE {TABLE} SET state = 'released', output = NULL, \
                             output_cut = 0, updated_ms = ?2, lease_until_ms = ?2 WHERE id = ?1"
                        ),
                        params![id, now],
                    )?;
                    Forgot::Forgotten
                }
            };
            tx.commit()?;
            Ok(out)
        };
        go().map_err(|e| self.err(&e))
    }
}
