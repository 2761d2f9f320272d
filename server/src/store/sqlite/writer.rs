//! One SQLite connection on its own thread, with group commit, for the management
//! route's per-message work.
//!
//! Through sqlx every statement is a round trip to the connection's worker thread, and
//! each write transaction takes SQLite's single write lock and commits on its own. Here a
//! request hands the thread one closure holding all its statements (one hop), and the
//! thread runs every closure waiting in its queue inside one `BEGIN IMMEDIATE ... COMMIT`,
//! each in its own SAVEPOINT: a closure that fails is rolled back alone, and no closure
//! hears back before the COMMIT that makes its writes durable (or fails them all).
//!
//! The sqlx pool stays open on the same file for everything else; the two take turns
//! for the write lock through SQLite's busy timeout.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::config::SqliteSynchronous;
use crate::error::ServerError;

/// Closures waiting longer than one batch are run in the next one.
const MAX_BATCH: usize = 256;

/// What a job hands back to be called once the batch's COMMIT has succeeded (`true`) or
/// failed (`false`).
type Completion = Box<dyn FnOnce(bool) + Send>;
/// Runs a job with the connection, or tells it why there is none (the batch could not
/// begin, or was rolled back).
type RunJob = Box<dyn FnOnce(Result<&Connection, String>) -> Completion + Send>;

/// A job and whether it writes (a batch of reads only does not take the write lock).
struct Job {
    writes: bool,
    run: RunJob,
}

/// Handle on the writer thread; the thread ends when the last handle is dropped.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens `path` (an existing database, already migrated) and starts the thread.
    pub fn open(path: &Path, synchronous: SqliteSynchronous) -> Result<Self, ServerError> {
        // The file exists (sqlx created and migrated it): never create another one.
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_error)?;
        conn.execute_batch(&super::pragmas(synchronous))
            .map_err(db_error)?;
        // Each job's SAVEPOINT copies the pages it first changes to a sub-journal, kept
        // in memory only up to 64 KiB by default and then written to a temporary file
        // (a `pwrite` per page, about a seventh of this thread's time in a profile of
        // phase (c)). The sub-journal only undoes a job within the open transaction
        // (crash recovery is the WAL's), so memory loses nothing.
        conn.execute_batch("PRAGMA temp_store = MEMORY")
            .map_err(db_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Writer { jobs })
    }

    /// Runs `f` in the next batch and returns its result once the batch is committed.
    /// An error from `f` rolls back `f`'s own writes only.
    pub async fn run<R, F>(&self, f: F) -> Result<R, ServerError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// Runs `f`, which only reads, in the next batch (no savepoint of its own).
    pub async fn read<R, F>(&self, f: F) -> Result<R, ServerError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<R, F>(&self, f: F, writes: bool) -> Result<R, ServerError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<R, ServerError>>();
        let run: RunJob = Box::new(move |conn: Result<&Connection, String>| -> Completion {
            // A job that panics fails alone (its writes rolled back) and the thread
            // lives on for the others.
            let guarded = |c: &Connection| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c))).unwrap_or_else(
                    |_| {
                        Err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                            Some("database job panicked".into()),
                        ))
                    },
                )
            };
            let result = match conn {
                Ok(conn) if writes => in_savepoint(conn, guarded),
                Ok(conn) => guarded(conn).map_err(db_error),
                Err(e) => Err(ServerError::Storage(e.to_string())),
            };
            Box::new(move |committed| {
                let answer = match result {
                    Ok(_) if !committed => Err(ServerError::Storage("COMMIT failed".into())),
                    other => other,
                };
                let _ = tx.send(answer);
            })
        });
        self.jobs
            .send(Job { writes, run })
            .map_err(|_| ServerError::Storage("the writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| ServerError::Storage("the writer thread has stopped".into()))?
    }
}

fn db_error(e: rusqlite::Error) -> ServerError {
    ServerError::Storage(e.to_string())
}

/// Runs a parameterless statement from the connection's statement cache.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> Result<R, ServerError> {
    exec_cached(conn, "SAVEPOINT job").map_err(db_error)?;
    let result = f(conn).and_then(|r| exec_cached(conn, "RELEASE job").map(|()| r));
    if result.is_err() {
        // Undo this job's statements and leave the batch's transaction open.
        let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
    }
    result.map_err(db_error)
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A transaction left open by an earlier failure must not swallow this batch.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        // Reads only: a deferred transaction, so they do not wait for the write lock.
        let begin = if batch.iter().any(|j| j.writes) {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        if let Err(e) = exec_cached(&conn, begin) {
            let why = e.to_string();
            for job in batch {
                (job.run)(Err(why.clone()))(false);
            }
            continue;
        }
        let batch_len = batch.len();
        let mut done: Vec<Completion> = Vec::with_capacity(batch_len);
        let mut jobs = batch.into_iter();
        let mut lost = false;
        for job in jobs.by_ref() {
            done.push((job.run)(Ok(&conn)));
            // Some errors (SQLITE_FULL, IOERR, NOMEM) make SQLite roll back the whole
            // transaction: nothing of the batch is stored, and the rest must not run
            // outside it.
            if conn.is_autocommit() {
                lost = true;
                break;
            }
        }
        metrics::histogram!(crate::telemetry::WRITER_BATCH_SIZE).record(batch_len as f64);
        let commit_started = std::time::Instant::now();
        let committed = !lost
            && match exec_cached(&conn, "COMMIT") {
                Ok(()) => {
                    metrics::histogram!(crate::telemetry::WRITER_COMMIT_SECONDS)
                        .record(commit_started.elapsed().as_secs_f64());
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "group commit failed");
                    let _ = conn.execute_batch("ROLLBACK");
                    false
                }
            };
        if lost {
            tracing::error!("SQLite rolled the batch's transaction back");
            for job in jobs {
                (job.run)(Err("the batch's transaction was rolled back".into()))(false);
            }
        }
        for d in done {
            d(committed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)")
            .expect("schema");
        drop(conn);
        let w = Writer::open(&path, SqliteSynchronous::Full).expect("writer");
        (dir, w)
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let (dir, w) = scratch();
        let r = w
            .run(|c| {
                c.execute("INSERT INTO t (v) VALUES (1)", [])?;
                if c.is_autocommit() {
                    return Ok(());
                }
                panic!("job bug");
            })
            .await;
        assert!(r.is_err());
        w.run(|c| c.execute("INSERT INTO t (v) VALUES (2)", []))
            .await
            .expect("the writer still runs");
        let conn = Connection::open(dir.path().join("w.db")).expect("open");
        let v: Vec<i64> = conn
            .prepare("SELECT v FROM t ORDER BY v")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("rows");
        assert_eq!(v, vec![2], "the panicking job's insert was rolled back");
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_alone_and_the_others_commit() {
        let (dir, w) = scratch();
        let w = std::sync::Arc::new(w);
        let mut handles = Vec::new();
        for v in 0..50i64 {
            let w = w.clone();
            handles.push(tokio::spawn(async move {
                w.run(move |c| {
                    c.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                    // Every tenth job writes and then fails: its row must not stay.
                    if v % 10 == 0 {
                        c.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                    }
                    Ok(v)
                })
                .await
            }));
        }
        let mut ok = 0;
        for h in handles {
            if h.await.expect("join").is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 45);
        let conn = Connection::open(dir.path().join("w.db")).expect("open");
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 45, "the failed jobs' first inserts were rolled back");
    }
}
