//! Short reads on the caller's thread, for the lookups every enrollment request makes
//! (the node key's host, the one-device rules before signing).
//!
//! Through the writer ([`super::writer`]) such a read cost two thread hand-offs (the
//! channel to the writer thread, the answer back to the runtime), each a futex wake-up
//! and a context switch, and a `BEGIN ... COMMIT` of its own: more CPU than the indexed
//! lookup itself (docs/performance.md, issue 15). In WAL mode a reader never waits for
//! the writer (SQLite, "Write-Ahead Logging" §2.2: readers and the writer do not block
//! each other), so a lookup of a few indexed rows takes microseconds and runs here
//! directly. It sees what is committed; the writes that depend on a rule check it again
//! in the writer's transaction.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use crate::error::ServerError;

/// Idle connections kept for reuse; more may be open for a moment under load.
const KEEP_IDLE: usize = 8;

/// How long a read waits on a lock before failing: a WAL reader waits only while a
/// checkpoint restarts the log or a crashed writer's log is recovered.
const BUSY_TIMEOUT_MS: u32 = 1000;

/// Read-only connections to one SQLite file, opened on demand and reused.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Readers of `path` (an existing database, already migrated, in WAL mode).
    pub fn new(path: &Path) -> Self {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        // Read-write flags, but queries only: a read-only connection could not open the
        // WAL index if it were missing.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(&format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA query_only = ON;"
        ))?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// Runs `f` in one read transaction (one snapshot for all its statements).
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> Result<R, ServerError> {
        let reused = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut conn = match reused {
            Some(c) => c,
            None => self.open().map_err(db_error)?,
        };
        let result = conn
            .transaction()
            .and_then(|tx| {
                let r = f(&tx)?;
                tx.commit().map(|()| r)
            })
            .map_err(db_error);
        // A connection whose transaction could not end is not reused.
        if conn.is_autocommit() {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < KEEP_IDLE {
                    idle.push(conn);
                }
            }
        }
        result
    }
}

fn db_error(e: rusqlite::Error) -> ServerError {
    ServerError::Storage(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_committed_rows_and_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let w = Connection::open(&path).expect("open");
        w.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER)")
            .expect("schema");
        let readers = Readers::new(&path);
        let count = |r: &Readers| {
            r.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)))
                .expect("read")
        };
        assert_eq!(count(&readers), 0);
        w.execute("INSERT INTO t (v) VALUES (1)", [])
            .expect("insert");
        assert_eq!(count(&readers), 1, "the reused connection sees the new row");
        assert!(readers
            .read(|c| c.execute("INSERT INTO t (v) VALUES (2)", []))
            .is_err());
        assert_eq!(count(&readers), 1);
    }
}
