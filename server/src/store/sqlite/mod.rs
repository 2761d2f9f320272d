//! SQLite: the writer thread ([`writer`]) and the statements it runs. A management
//! message ([`message`]) or an enrollment ([`enroll`]) is one closure on the writer: one
//! hop, sharing its COMMIT with the other work of the moment. The sqlx pool stays open
//! on the same file for the portable statements.

pub mod enroll;
pub mod hosts;
pub mod message;
pub mod queue;
pub mod session;
pub mod writer;

use crate::config::SqliteSynchronous;

/// The pragmas of every SQLite connection, the writer's and the pool's. WAL: readers
/// never block the writer. `synchronous`: FULL syncs the WAL at every commit (a
/// committed answer survives power loss); NORMAL only at checkpoints (it survives a
/// killed process, not a power cut).
///
/// `wal_autocheckpoint`: the WAL is copied back into the database file once it holds
/// 8,192 pages (32 MiB) instead of SQLite's 1,000. A page changed again and again (an
/// index's or a table's last page) is then written to the file once per checkpoint
/// instead of eight times: in `winmdm-load bench` phase (c) the bytes written per
/// SyncML message fell from 21.3 KB to 17.7 KB (docs/performance.md, change 11).
/// Readers and crash recovery read at most 32 MiB of WAL.
pub(crate) fn pragmas(synchronous: SqliteSynchronous) -> String {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};",
        synchronous.pragma()
    )
}

/// Pages in the WAL that start a checkpoint (see [`pragmas`]).
pub(crate) const WAL_AUTOCHECKPOINT_PAGES: u32 = 8192;

/// The file behind a `sqlite:` URL, as sqlx reads it (percent-decoded); None for
/// in-memory databases.
pub(crate) fn file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = opts.get_filename();
    let memory =
        path.as_os_str().is_empty() || url.contains(":memory:") || url.contains("mode=memory");
    (!memory).then(|| path.to_path_buf())
}

/// Stored states and verbs read straight from a column into their enum.
macro_rules! from_sql_by_name {
    ($($t:ty),+) => {$(
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    )+};
}
from_sql_by_name!(
    crate::model::Verb,
    crate::model::CertState,
    crate::model::EnrollmentState
);

#[cfg(test)]
mod tests {
    use super::file;
    use crate::config::{Config, SqliteSynchronous};
    use crate::store::Store;
    use clap::Parser;
    use std::path::PathBuf;

    /// `pragma`'s value on the writer's connection and on two pool connections.
    async fn pragma_everywhere(synchronous: SqliteSynchronous, pragma: &'static str) -> Vec<i64> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url, synchronous).await.expect("store");
        let writer = store.writer().expect("writer");
        let mut levels = vec![writer
            .read(move |c| c.query_row(pragma, [], |r| r.get::<_, i64>(0)))
            .await
            .expect("writer pragma")];
        let mut a = store.pool().acquire().await.expect("pool connection");
        let mut b = store
            .pool()
            .acquire()
            .await
            .expect("second pool connection");
        for conn in [&mut a, &mut b] {
            let level: i64 = sqlx::query_scalar(pragma)
                .fetch_one(&mut **conn)
                .await
                .expect("pool pragma");
            levels.push(level);
        }
        levels
    }

    /// `PRAGMA synchronous` everywhere (0 OFF, 1 NORMAL, 2 FULL).
    async fn synchronous_levels(synchronous: SqliteSynchronous) -> Vec<i64> {
        pragma_everywhere(synchronous, "PRAGMA synchronous").await
    }

    #[tokio::test]
    async fn every_connection_checkpoints_the_wal_at_the_same_size() {
        let pages = i64::from(super::WAL_AUTOCHECKPOINT_PAGES);
        assert_eq!(
            pragma_everywhere(SqliteSynchronous::Full, "PRAGMA wal_autocheckpoint").await,
            vec![pages; 3]
        );
    }

    #[tokio::test]
    async fn sqlite_commits_are_synced_in_full_unless_normal_is_asked_for() {
        let default = Config::parse_from(["winmdm-server", "--enroll-secret", "s"]);
        assert_eq!(default.sqlite_synchronous, SqliteSynchronous::Full);
        assert_eq!(
            Config::for_data_dir(PathBuf::from("d"), "s").sqlite_synchronous,
            SqliteSynchronous::Full
        );
        assert_eq!(
            synchronous_levels(default.sqlite_synchronous).await,
            vec![2, 2, 2]
        );
        let normal = Config::parse_from([
            "winmdm-server",
            "--enroll-secret",
            "s",
            "--sqlite-synchronous",
            "normal",
        ]);
        assert_eq!(
            synchronous_levels(normal.sqlite_synchronous).await,
            vec![1, 1, 1]
        );
    }

    #[test]
    fn the_writer_opens_the_file_sqlx_opens() {
        assert_eq!(
            file("sqlite:///data/my%20db.db?mode=rwc"),
            Some(PathBuf::from("/data/my db.db"))
        );
        assert_eq!(
            file("sqlite://rel/winmdm.db"),
            Some(PathBuf::from("rel/winmdm.db"))
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://x.db?mode=memory"), None);
    }
}
