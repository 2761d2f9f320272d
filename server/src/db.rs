//! Durable storage: hosts and node keys, enrollments, the command queue and results.
//!
//! SQLite (WAL) by default; the schema sticks to portable SQL so a Postgres backend can
//! share it. Migrations are embedded and applied in order at start-up.

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::config::SqliteSynchronous;
use crate::enroll_store::sql as enroll_sql;
use crate::error::ServerError;

/// Embedded migrations per backend, applied in order; the version is the index + 1.
/// Both sets create the same schema (Postgres spells integer keys as BIGINT identity).
const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_profiles.sql"),
    include_str!("../migrations/sqlite/0003_device_certs.sql"),
    include_str!("../migrations/sqlite/0004_cert_keys.sql"),
    include_str!("../migrations/sqlite/0005_enrollments_by_host.sql"),
    include_str!("../migrations/sqlite/0006_node_key_age.sql"),
];
const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_init.sql"),
    include_str!("../migrations/postgres/0002_profiles.sql"),
    include_str!("../migrations/postgres/0003_device_certs.sql"),
    include_str!("../migrations/postgres/0004_cert_keys.sql"),
    include_str!("../migrations/postgres/0005_enrollments_by_host.sql"),
    include_str!("../migrations/postgres/0006_node_key_age.sql"),
];

/// Rows per INSERT when queueing a command for many devices (6 parameters a row, well
/// under SQLite's and Postgres's parameter limits).
const ENQUEUE_ROWS_PER_STATEMENT: usize = 200;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Current time in unix seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Creates a fresh, empty Postgres database next to the one `admin_url` points at and
/// returns its URL: test suites and the harness run each server on its own database.
pub async fn create_scratch_postgres_database(admin_url: &str) -> Result<String, ServerError> {
    sqlx::any::install_default_drivers();
    let name = format!("winmdm_{}", uuid::Uuid::new_v4().simple());
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let base = admin_url.split('?').next().unwrap_or(admin_url);
    let cut = base
        .rfind('/')
        .filter(|i| *i > "postgres://".len())
        .unwrap_or(base.len());
    Ok(format!("{}/{name}", &base[..cut]))
}

/// The file behind a `sqlite:` URL, as sqlx reads it (percent-decoded); None for
/// in-memory databases.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = opts.get_filename();
    let memory =
        path.as_os_str().is_empty() || url.contains(":memory:") || url.contains("mode=memory");
    (!memory).then(|| path.to_path_buf())
}

/// The pragmas of every SQLite connection, the writer's and the pool's. WAL: readers
/// never block the writer. `synchronous`: FULL syncs the WAL at every commit (a
/// committed answer survives power loss); NORMAL only at checkpoints (it survives a
/// killed process, not a power cut).
pub(crate) fn sqlite_pragmas(synchronous: SqliteSynchronous) -> String {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
        synchronous.pragma()
    )
}

/// `$first, $first+1, ...`: `count` numbered parameters for a statement built at run time.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Current time as RFC 3339 text, the format every timestamp column uses.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A host known through the Orbit agent.
#[derive(Debug, Clone)]
pub struct Host {
    pub host_uuid: String,
    pub hardware_uuid: String,
    pub hostname: String,
    /// When the host's current node key was issued (unix seconds).
    pub node_key_issued_unix: i64,
}

/// A new MDM enrollment to record.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub device_id: String,
    pub host_uuid: Option<String>,
    pub hardware_uuid: String,
    pub device_name: String,
    pub os_version: String,
    pub enrollment_type: String,
    pub upn: String,
    pub cert_serial: String,
    pub cert_thumbprint: String,
    pub cert_not_after: String,
    /// SHA-256 (hex) of the certificate's RSA public key.
    pub public_key_sha256: String,
}

/// An enrollment as the admin API and the management route see it.
#[derive(Debug, Clone, Serialize)]
pub struct Enrollment {
    pub device_id: String,
    pub host_uuid: Option<String>,
    pub hardware_uuid: String,
    pub device_name: String,
    pub os_version: String,
    pub enrollment_type: String,
    pub cert_serial: String,
    pub cert_thumbprint: String,
    pub state: String,
    pub enrolled_at: String,
    pub last_checkin_at: Option<String>,
}

/// A queued command ready for delivery.
#[derive(Debug, Clone)]
pub struct QueuedCommand {
    pub command_uuid: String,
    pub verb: String,
    pub body_xml: String,
}

/// One Status or Results element the device returned.
#[derive(Debug, Clone, Serialize)]
pub struct CommandResult {
    pub kind: String,
    pub status_code: Option<String>,
    pub body_xml: String,
    pub received_at: String,
}

/// A command and, per device, its delivery state and what the device answered.
#[derive(Debug, Clone, Serialize)]
pub struct CommandView {
    pub command_id: String,
    pub verb: String,
    pub target: String,
    pub created_at: String,
    pub devices: Vec<DeviceCommand>,
}

/// One device's delivery of a command: `pending`, `sent`, `acknowledged` or `cancelled`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceCommand {
    pub device_id: String,
    pub state: String,
    pub status_code: Option<String>,
    pub results: Vec<CommandResult>,
}

/// Handle on the database. Queries are written once, with `$n` placeholders, which
/// both SQLite and Postgres accept through sqlx's Any driver.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite on a file: the writer thread for the management route's per-message work.
    writer: Option<std::sync::Arc<crate::writer::Writer>>,
}

impl Store {
    /// Opens (creating if needed) the database at `url` (`sqlite://...` or
    /// `postgres://...`) and applies migrations; `synchronous` applies to SQLite.
    pub async fn open(url: &str, synchronous: SqliteSynchronous) -> Result<Self, ServerError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            let url = if url.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(ServerError::Config(format!(
                "unsupported database URL {url:?}: use sqlite://PATH or postgres://..."
            )));
        };
        // No ping before each acquire: it was a round trip to the connection's thread (or
        // the Postgres server) per query; a broken connection fails its query instead.
        let mut opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .test_before_acquire(false);
        if backend == Backend::Sqlite {
            opts = opts.after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(sqlite_pragmas(synchronous).as_str()).await?;
                    Ok(())
                })
            });
        }
        let file = match backend {
            Backend::Sqlite => Some(sqlite_file(&url).ok_or_else(|| {
                ServerError::Config(
                    "an in-memory SQLite database is not supported (each pooled connection would get its own); give a file".into(),
                )
            })?),
            Backend::Postgres => None,
        };
        let pool = opts.connect(&url).await?;
        let mut store = Store {
            pool,
            backend,
            writer: None,
        };
        store.migrate().await?;
        if let Some(path) = file {
            store.writer = Some(std::sync::Arc::new(crate::writer::Writer::open(
                &path,
                synchronous,
            )?));
        }
        Ok(store)
    }

    /// A transaction that writes. On SQLite it takes the write lock at BEGIN
    /// (IMMEDIATE): a deferred transaction that reads and then writes fails at once
    /// with SQLITE_BUSY when another connection wrote in between, without waiting.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, ServerError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// The SQLite writer thread, when the database is a SQLite file.
    pub(crate) fn writer(&self) -> Option<&crate::writer::Writer> {
        self.writer.as_deref()
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for modules that keep their own tables.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), ServerError> {
        let migrations = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Replicas starting together migrate one at a time.
            sqlx::query("SELECT pg_advisory_xact_lock(7261736)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *tx)
                .await?;
        for (i, sql) in migrations.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a host enrolling through Orbit; a host that enrolls again (same hardware
    /// UUID) gets the new node key and keeps its identity.
    pub async fn upsert_host(
        &self,
        hardware_uuid: &str,
        hardware_serial: &str,
        hostname: &str,
        platform: &str,
        node_key_hash: &str,
    ) -> Result<String, ServerError> {
        let ts = now();
        let host_uuid = uuid::Uuid::new_v4().to_string();
        let row = sqlx::query(
            "INSERT INTO hosts (host_uuid, hardware_uuid, hardware_serial, hostname, platform, node_key_hash, created_at, last_seen_at, node_key_issued_unix)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (hardware_uuid) DO UPDATE SET
               hardware_serial = excluded.hardware_serial, hostname = excluded.hostname,
               platform = excluded.platform, node_key_hash = excluded.node_key_hash,
               last_seen_at = excluded.last_seen_at, node_key_issued_unix = excluded.node_key_issued_unix
             RETURNING host_uuid",
        )
        .bind(&host_uuid)
        .bind(hardware_uuid)
        .bind(hardware_serial)
        .bind(hostname)
        .bind(platform)
        .bind(node_key_hash)
        .bind(&ts)
        .bind(&ts)
        .bind(unix_now())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("host_uuid")?)
    }

    /// The host owning a node key (looked up by its hash).
    pub async fn host_by_node_key_hash(&self, hash: &str) -> Result<Option<Host>, ServerError> {
        if let Some(w) = self.writer() {
            let hash = hash.to_string();
            return w
                .read(move |c| {
                    use rusqlite::OptionalExtension;
                    c.prepare_cached(
                        "SELECT host_uuid, hardware_uuid, hostname, node_key_issued_unix FROM hosts WHERE node_key_hash = ?1",
                    )?
                    .query_row([&hash], |r| {
                        Ok(Host {
                            host_uuid: r.get(0)?,
                            hardware_uuid: r.get(1)?,
                            hostname: r.get(2)?,
                            node_key_issued_unix: r.get(3)?,
                        })
                    })
                    .optional()
                })
                .await;
        }
        let row = sqlx::query(
            "SELECT host_uuid, hardware_uuid, hostname, node_key_issued_unix FROM hosts WHERE node_key_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Host {
                host_uuid: r.try_get("host_uuid")?,
                hardware_uuid: r.try_get("hardware_uuid")?,
                hostname: r.try_get("hostname")?,
                node_key_issued_unix: r.try_get("node_key_issued_unix")?,
            })
        })
        .transpose()
    }

    /// Updates a host's last-seen time.
    pub async fn touch_host(&self, host_uuid: &str) -> Result<(), ServerError> {
        sqlx::query("UPDATE hosts SET last_seen_at = $1 WHERE host_uuid = $2")
            .bind(now())
            .bind(host_uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// State of the host's most recent MDM enrollment (`enrolled`, `unenroll_pending`,
    /// `unenrolled`), if it ever enrolled.
    pub async fn host_enrollment_state(
        &self,
        host_uuid: &str,
    ) -> Result<Option<String>, ServerError> {
        Ok(sqlx::query_scalar(
            "SELECT state FROM enrollments WHERE host_uuid = $1 ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(host_uuid)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Moves an enrollment to a new state; leaving `enrolled` cancels pending commands.
    pub async fn set_enrollment_state(
        &self,
        device_id: &str,
        state: &str,
    ) -> Result<(), ServerError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE enrollments SET state = $1, updated_at = $2 WHERE device_id = $3")
            .bind(state)
            .bind(now())
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        if state == "unenrolled" {
            sqlx::query("UPDATE commands SET state = 'cancelled' WHERE device_id = $1 AND state IN ('pending', 'sent')")
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records an enrollment unless the one-device rules refuse it; a device enrolling
    /// again replaces its previous enrollment. The rules are checked inside the write
    /// transaction, behind a lock that recording transactions take in turn.
    pub async fn upsert_enrollment(
        &self,
        e: &NewEnrollment,
        claim: &crate::enroll_store::EnrollClaim,
    ) -> Result<Option<crate::enroll_store::EnrollConflict>, ServerError> {
        let ts = now();
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7261737)")
                .execute(&mut *tx)
                .await?;
        }
        if let Some(conflict) = crate::enroll_store::conflict_on(&mut tx, claim).await? {
            return Ok(Some(conflict));
        }
        sqlx::query(enroll_sql::UPSERT_ENROLLMENT)
            .bind(&e.device_id)
            .bind(&e.host_uuid)
            .bind(&e.hardware_uuid)
            .bind(&e.device_name)
            .bind(&e.os_version)
            .bind(&e.enrollment_type)
            .bind(&e.upn)
            .bind(&e.cert_serial)
            .bind(&e.cert_thumbprint)
            .bind(&e.cert_not_after)
            .bind(&ts)
            .bind(&ts)
            .execute(&mut *tx)
            .await?;
        sqlx::query(enroll_sql::RETIRE_DEVICE_CERTS)
            .bind(&e.device_id)
            .execute(&mut *tx)
            .await?;
        insert_cert(
            &mut tx,
            &e.device_id,
            &e.cert_serial,
            &e.cert_thumbprint,
            &e.cert_not_after,
            &e.public_key_sha256,
        )
        .await?;
        tx.commit().await?;
        Ok(None)
    }

    /// Records a renewed certificate for `claim.device_id` unless its key is certified
    /// for another device (checked inside the write transaction, behind the lock of
    /// [`Store::upsert_enrollment`]): it becomes the device's active one, and the previous
    /// one is accepted until the device first uses the new one or until `grace_secs`
    /// have passed.
    pub async fn renew_certificate(
        &self,
        claim: &crate::enroll_store::EnrollClaim,
        serial: &str,
        thumbprint: &str,
        not_after: &str,
        grace_secs: i64,
    ) -> Result<Option<crate::enroll_store::EnrollConflict>, ServerError> {
        let device_id = claim.device_id.as_str();
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7261737)")
                .execute(&mut *tx)
                .await?;
        }
        if let Some(conflict) = crate::enroll_store::conflict_on(&mut tx, claim).await? {
            return Ok(Some(conflict));
        }
        sqlx::query(
            "UPDATE device_certs SET state = 'retiring', retire_after = $1 WHERE device_id = $2 AND state = 'active'",
        )
        .bind(unix_now() + grace_secs)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        insert_cert(
            &mut tx,
            device_id,
            serial,
            thumbprint,
            not_after,
            &claim.public_key_sha256,
        )
        .await?;
        sqlx::query(
            "UPDATE enrollments SET cert_serial = $1, cert_thumbprint = $2, cert_not_after = $3, updated_at = $4 WHERE device_id = $5",
        )
        .bind(serial)
        .bind(thumbprint)
        .bind(not_after)
        .bind(now())
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(None)
    }

    /// The enrollment a certificate (serial, lowercase hex) authenticates, with whether it
    /// is the device's current certificate (false: replaced by a renewal, still in its
    /// grace period). Retired certificates authenticate nothing.
    pub async fn enrollment_by_cert_serial(
        &self,
        serial: &str,
    ) -> Result<Option<(Enrollment, bool)>, ServerError> {
        let Some(identity) = self.cert_identity(serial).await? else {
            return Ok(None);
        };
        Ok(self
            .enrollment(&identity.device_id)
            .await?
            .map(|e| (e, identity.current)))
    }

    /// Every enrollment, newest first.
    pub async fn list_enrollments(&self) -> Result<Vec<Enrollment>, ServerError> {
        let rows = sqlx::query(&format!("{ENROLLMENT_SELECT} ORDER BY enrolled_at DESC"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(enrollment_from_row).collect()
    }

    /// One enrollment by DeviceID.
    pub async fn enrollment(&self, device_id: &str) -> Result<Option<Enrollment>, ServerError> {
        let row = sqlx::query(&format!("{ENROLLMENT_SELECT} WHERE device_id = $1"))
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| enrollment_from_row(&r)).transpose()
    }

    /// The first of `device_ids` (in order) that has no enrollment, checked a few hundred
    /// at a time.
    pub async fn first_unknown_device(
        &self,
        device_ids: &[String],
    ) -> Result<Option<String>, ServerError> {
        for chunk in device_ids.chunks(ENQUEUE_ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT device_id FROM enrollments WHERE device_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            let known: std::collections::HashSet<String> =
                q.fetch_all(&self.pool).await?.into_iter().collect();
            if let Some(missing) = chunk.iter().find(|id| !known.contains(*id)) {
                return Ok(Some(missing.clone()));
            }
        }
        Ok(None)
    }

    /// Queues one command for each device (`body_xml` is the command element without
    /// its CmdID). All devices share the returned command UUID.
    pub async fn enqueue_command(
        &self,
        device_ids: &[String],
        verb: &str,
        target: &str,
        body_xml: &str,
    ) -> Result<String, ServerError> {
        let command_uuid = uuid::Uuid::new_v4().to_string();
        let ts = now();
        let mut tx = self.begin_write().await?;
        // Many rows per statement: a round trip per device made fleet-wide commands slow.
        for chunk in device_ids.chunks(ENQUEUE_ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("({}, 'pending')", placeholders(1 + i * 6, 6)))
                .collect();
            let sql = format!(
                "INSERT INTO commands (command_uuid, device_id, verb, target, body_xml, created_at, state) VALUES {}",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for device_id in chunk {
                q = q
                    .bind(&command_uuid)
                    .bind(device_id)
                    .bind(verb)
                    .bind(target)
                    .bind(body_xml)
                    .bind(&ts);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(command_uuid)
    }

    /// Cancels the deliveries of a command that have not been sent yet; returns how many.
    pub async fn cancel_command(&self, command_uuid: &str) -> Result<u64, ServerError> {
        let r = sqlx::query(
            "UPDATE commands SET state = 'cancelled' WHERE command_uuid = $1 AND state = 'pending'",
        )
        .bind(command_uuid)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// A command with its per-device delivery state and everything each device answered.
    pub async fn command(&self, command_uuid: &str) -> Result<Option<CommandView>, ServerError> {
        let rows = sqlx::query(
            "SELECT device_id, verb, target, state, status_code, created_at FROM commands
             WHERE command_uuid = $1 ORDER BY id",
        )
        .bind(command_uuid)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut view = CommandView {
            command_id: command_uuid.to_string(),
            verb: first.try_get("verb")?,
            target: first.try_get("target")?,
            created_at: first.try_get("created_at")?,
            devices: Vec::with_capacity(rows.len()),
        };
        for r in &rows {
            let device_id: String = r.try_get("device_id")?;
            let results = sqlx::query(
                "SELECT kind, status_code, body_xml, received_at FROM command_results
                 WHERE command_uuid = $1 AND device_id = $2 ORDER BY id",
            )
            .bind(command_uuid)
            .bind(&device_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(CommandResult {
                    kind: r.try_get("kind")?,
                    status_code: r.try_get("status_code")?,
                    body_xml: r.try_get("body_xml")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            view.devices.push(DeviceCommand {
                device_id,
                state: r.try_get("state")?,
                status_code: r.try_get("status_code")?,
                results,
            });
        }
        Ok(Some(view))
    }
}

async fn insert_cert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    serial: &str,
    thumbprint: &str,
    not_after: &str,
    public_key_sha256: &str,
) -> Result<(), ServerError> {
    sqlx::query(enroll_sql::INSERT_DEVICE_CERT)
        .bind(serial)
        .bind(device_id)
        .bind(thumbprint)
        .bind(not_after)
        .bind(now())
        .bind(public_key_sha256)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const ENROLLMENT_SELECT: &str =
    "SELECT device_id, host_uuid, hardware_uuid, device_name, os_version, enrollment_type,
    cert_serial, cert_thumbprint, state, enrolled_at, last_checkin_at FROM enrollments";

fn enrollment_from_row(r: &AnyRow) -> Result<Enrollment, ServerError> {
    Ok(Enrollment {
        device_id: r.try_get("device_id")?,
        host_uuid: r.try_get("host_uuid")?,
        hardware_uuid: r.try_get("hardware_uuid")?,
        device_name: r.try_get("device_name")?,
        os_version: r.try_get("os_version")?,
        enrollment_type: r.try_get("enrollment_type")?,
        cert_serial: r.try_get("cert_serial")?,
        cert_thumbprint: r.try_get("cert_thumbprint")?,
        state: r.try_get("state")?,
        enrolled_at: r.try_get("enrolled_at")?,
        last_checkin_at: r.try_get("last_checkin_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::{sqlite_file, Store};
    use crate::config::{Config, SqliteSynchronous};
    use clap::Parser;
    use std::path::PathBuf;

    /// `PRAGMA synchronous` on the writer's connection and on two pool connections
    /// (0 OFF, 1 NORMAL, 2 FULL).
    async fn synchronous_levels(synchronous: SqliteSynchronous) -> Vec<i64> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url, synchronous).await.expect("store");
        let writer = store.writer().expect("writer");
        let mut levels = vec![writer
            .read(|c| c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)))
            .await
            .expect("writer pragma")];
        let mut a = store.pool().acquire().await.expect("pool connection");
        let mut b = store
            .pool()
            .acquire()
            .await
            .expect("second pool connection");
        for conn in [&mut a, &mut b] {
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .expect("pool pragma");
            levels.push(level);
        }
        levels
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
            sqlite_file("sqlite:///data/my%20db.db?mode=rwc"),
            Some(PathBuf::from("/data/my db.db"))
        );
        assert_eq!(
            sqlite_file("sqlite://rel/winmdm.db"),
            Some(PathBuf::from("rel/winmdm.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://x.db?mode=memory"), None);
    }
}
