//! Durable storage: every SQL statement of the server lives under this module.
//!
//! [`Store`] is the one facade the rest of the server calls. Behind it:
//! - [`portable`]: statements both backends run through sqlx's Any driver (`$n`
//!   placeholders, portable SQL), for everything off the hot paths;
//! - [`sqlite`]: the writer thread ([`sqlite::writer`], one connection with group commit)
//!   and the statements it runs: each management message and each enrollment is one
//!   closure on it;
//! - [`postgres`]: a management message's writes as one statement, advisory locks, and
//!   scratch databases for tests.
//!
//! Migrations ([`migrate`]) are embedded and applied in order at start-up.

mod migrate;
mod portable;
pub mod postgres;
pub mod session;
pub mod sqlite;
pub(crate) mod statements;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use crate::config::SqliteSynchronous;
use crate::error::ServerError;
use crate::model::StoredDigest;
use crate::model::{
    AssignmentState, CertEnrollment, CertIdentity, CommandView, Delivery, EnrollClaim,
    EnrollConflict, Enrollment, EnrollmentState, Host, HostRegistration, ItemCommand,
    MessageOutcome, MessageWork, NewCommand, NewEnrollment, OpenAssignment, ProfileItem,
    ProfileView, QueuedCommand, ReadBack, RenewedCert, SentCommand,
};

pub use crate::clock::{now, unix_now};
/// Former home of the record types, kept for callers that name them through the store.
pub use crate::model::{CommandResult, DeviceCommand};
pub use portable::counts::StateCounts;
pub use postgres::create_scratch_postgres_database;

impl From<sqlx::Error> for ServerError {
    fn from(e: sqlx::Error) -> Self {
        ServerError::Db(Box::new(e))
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Longest wait of a Postgres query for a pooled connection (see [`Store::open`]).
pub const POSTGRES_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Handle on the database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite on a file: the writer thread for the per-message and enrollment work.
    writer: Option<std::sync::Arc<sqlite::writer::Writer>>,
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
        if backend == Backend::Postgres {
            // While the database is down, a request waits at most this long for a
            // connection and is then answered 500 (the device sends it again). sqlx's
            // default, 30 s with connection retries backed off up to a fifth of it, held
            // requests 10-15 s after an outage of 1-3 s had ended (docs/reliability.md).
            opts = opts.acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT);
        }
        if backend == Backend::Sqlite {
            opts = opts.after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(sqlite::pragmas(synchronous).as_str()).await?;
                    Ok(())
                })
            });
        }
        let file = match backend {
            Backend::Sqlite => Some(sqlite::file(&url).ok_or_else(|| {
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
        migrate::migrate(&store).await?;
        if let Some(path) = file {
            store.writer = Some(std::sync::Arc::new(sqlite::writer::Writer::open(
                &path,
                synchronous,
            )?));
        }
        Ok(store)
    }

    /// A transaction that writes. On SQLite it takes the write lock at BEGIN
    /// (IMMEDIATE): a deferred transaction that reads and then writes fails at once
    /// with SQLITE_BUSY when another connection wrote in between, without waiting.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, ServerError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// A write transaction that also serialises with the other recordings of
    /// enrollments and renewals (Postgres: an advisory lock; SQLite's write lock already
    /// does).
    async fn begin_enrollment_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, ServerError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            postgres::serialise_enrollments(&mut tx).await?;
        }
        Ok(tx)
    }

    /// The SQLite writer thread, when the database is a SQLite file.
    fn writer(&self) -> Option<&sqlite::writer::Writer> {
        self.writer.as_deref()
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for tests and the benchmark harness that inspect or damage
    /// the database directly; the server itself goes through the methods.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Rows per state of enrollments, command deliveries and profile assignments (for
    /// the metrics gauges, read on each scrape).
    pub async fn state_counts(&self) -> Result<StateCounts, ServerError> {
        portable::counts::state_counts(&self.pool).await
    }

    /// Connections of the pool: (open, idle, maximum).
    pub fn pool_use(&self) -> (u32, usize, u32) {
        (
            self.pool.size(),
            self.pool.num_idle(),
            self.pool.options().get_max_connections(),
        )
    }

    // ---- Hosts ----

    /// Records a host enrolling through Orbit; a host that enrolls again (same hardware
    /// UUID) gets the new node key and keeps its identity. Returns its host UUID.
    pub async fn upsert_host(&self, h: HostRegistration<'_>) -> Result<String, ServerError> {
        portable::hosts::upsert(&self.pool, h).await
    }

    /// The host owning a node key (looked up by its hash).
    pub async fn host_by_node_key_hash(&self, hash: &str) -> Result<Option<Host>, ServerError> {
        if let Some(w) = self.writer() {
            let hash = hash.to_string();
            return w
                .read(move |c| sqlite::hosts::by_node_key_hash(c, &hash))
                .await;
        }
        portable::hosts::by_node_key_hash(&self.pool, hash).await
    }

    /// Updates a host's last-seen time.
    pub async fn touch_host(&self, host_uuid: &str) -> Result<(), ServerError> {
        portable::hosts::touch(&self.pool, host_uuid).await
    }

    // ---- Enrollments ----

    /// State of the host's most recent MDM enrollment, if it ever enrolled.
    pub async fn host_enrollment_state(
        &self,
        host_uuid: &str,
    ) -> Result<Option<EnrollmentState>, ServerError> {
        portable::enrollments::host_state(&self.pool, host_uuid).await
    }

    /// Moves an enrollment to a new state (an [`EnrollmentState`] or its stored name);
    /// becoming `unenrolled` cancels pending commands.
    pub async fn set_enrollment_state<S>(
        &self,
        device_id: &str,
        state: S,
    ) -> Result<(), ServerError>
    where
        S: TryInto<EnrollmentState, Error: std::fmt::Display>,
    {
        let state = state
            .try_into()
            .map_err(|e| ServerError::Storage(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        portable::enrollments::set_state(&mut tx, device_id, state).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks the one-device rules for `e`: a token enrolls one device (unless
    /// `multi_device`, for enrollment users), an enrolled DeviceID belongs to its host
    /// until it is unenrolled or released, a key pair belongs to one device.
    pub async fn enrollment_conflict(
        &self,
        e: &EnrollClaim,
    ) -> Result<Option<EnrollConflict>, ServerError> {
        if let Some(w) = self.writer() {
            let e = e.clone();
            return w.read(move |c| sqlite::enroll::conflict(c, &e)).await;
        }
        let mut conn = self.pool.acquire().await?;
        portable::enrollments::conflict_on(&mut conn, e).await
    }

    /// Records the enrollment unless a one-device rule now refuses it (`claim` is the
    /// one checked before the certificate was signed); a device enrolling again replaces
    /// its previous enrollment. The rules are checked again inside the write
    /// transaction, so two requests racing with one token or one key cannot both enroll.
    pub async fn record_enrollment(
        &self,
        e: NewEnrollment,
        claim: EnrollClaim,
    ) -> Result<Option<EnrollConflict>, ServerError> {
        if let Some(w) = self.writer() {
            return w.run(move |c| sqlite::enroll::record(c, &e, &claim)).await;
        }
        let mut tx = self.begin_enrollment_write().await?;
        if let Some(conflict) = portable::enrollments::conflict_on(&mut tx, &claim).await? {
            return Ok(Some(conflict));
        }
        portable::enrollments::upsert(&mut tx, &e).await?;
        tx.commit().await?;
        Ok(None)
    }

    /// Records a renewed certificate for `claim.device_id` unless its key is certified
    /// for another device (checked inside the write transaction): it becomes the
    /// device's active one, and the previous one is accepted until the device first uses
    /// the new one or until the grace period has passed.
    pub async fn renew_certificate(
        &self,
        claim: &EnrollClaim,
        cert: RenewedCert<'_>,
    ) -> Result<Option<EnrollConflict>, ServerError> {
        let mut tx = self.begin_enrollment_write().await?;
        if let Some(conflict) = portable::enrollments::conflict_on(&mut tx, claim).await? {
            return Ok(Some(conflict));
        }
        portable::enrollments::renew(&mut tx, claim, cert).await?;
        tx.commit().await?;
        Ok(None)
    }

    /// The enrollment a certificate (serial, lowercase hex) authenticates, with whether it
    /// is the device's current certificate. Retired certificates authenticate nothing.
    pub async fn enrollment_by_cert_serial(
        &self,
        serial: &str,
    ) -> Result<Option<CertEnrollment>, ServerError> {
        let Some(identity) = self.cert_identity(serial).await? else {
            return Ok(None);
        };
        Ok(self
            .enrollment(&identity.device_id)
            .await?
            .map(|enrollment| CertEnrollment {
                enrollment,
                current: identity.current,
            }))
    }

    /// Every enrollment, newest first.
    pub async fn list_enrollments(&self) -> Result<Vec<Enrollment>, ServerError> {
        portable::enrollments::list(&self.pool).await
    }

    /// One enrollment by DeviceID.
    pub async fn enrollment(&self, device_id: &str) -> Result<Option<Enrollment>, ServerError> {
        portable::enrollments::get(&self.pool, device_id).await
    }

    /// The first of `device_ids` (in order) that has no enrollment.
    pub async fn first_unknown_device(
        &self,
        device_ids: &[String],
    ) -> Result<Option<String>, ServerError> {
        portable::enrollments::first_unknown(&self.pool, device_ids).await
    }

    // ---- Digest authentication ----

    /// Sets a device's digest credentials and first nonce.
    pub async fn set_digest_credentials(
        &self,
        device_id: &str,
        stored: &StoredDigest,
    ) -> Result<(), ServerError> {
        portable::digest::upsert(&self.pool, device_id, stored).await
    }

    /// The digest credentials of a device with an active enrollment.
    pub async fn digest_credentials(
        &self,
        device_id: &str,
    ) -> Result<Option<StoredDigest>, ServerError> {
        portable::digest::get(&self.pool, device_id).await
    }

    /// Gives the device a new nonce; with `used`, only if that is still its nonce (it is
    /// then used up). Whether the nonce was replaced.
    pub async fn replace_digest_nonce(
        &self,
        device_id: &str,
        used: Option<&str>,
        nonce: &str,
        expires_unix: i64,
    ) -> Result<bool, ServerError> {
        portable::digest::replace_nonce(&self.pool, device_id, used, nonce, expires_unix).await
    }

    // ---- Command queue ----

    /// Queues one command for each device; all devices share the returned command UUID.
    pub async fn enqueue_command(
        &self,
        device_ids: &[String],
        cmd: NewCommand<'_>,
    ) -> Result<String, ServerError> {
        if let Some(w) = self.writer() {
            let command_uuid = uuid::Uuid::new_v4().to_string();
            let (id, ids) = (command_uuid.clone(), device_ids.to_vec());
            let (verb, target, body) = (cmd.verb, cmd.target.to_string(), cmd.body_xml.to_string());
            let created_at = crate::clock::now();
            w.run(move |c| {
                sqlite::queue::enqueue(c, &id, &ids, (verb, &target, &body), &created_at)
            })
            .await?;
            return Ok(command_uuid);
        }
        let mut tx = self.begin_write().await?;
        let id = portable::commands::enqueue(&mut tx, device_ids, cmd).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Queues the DMClient Unenroll Exec and marks the enrollment `unenroll_pending`,
    /// in one transaction; returns the command UUID.
    pub async fn request_unenroll(
        &self,
        device_id: &str,
        cmd: NewCommand<'_>,
    ) -> Result<String, ServerError> {
        let mut tx = self.begin_write().await?;
        let id =
            portable::commands::enqueue(&mut tx, std::slice::from_ref(&device_id.to_string()), cmd)
                .await?;
        portable::enrollments::set_state(&mut tx, device_id, EnrollmentState::UnenrollPending)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Cancels the deliveries of a command that have not been sent yet; returns how many.
    pub async fn cancel_command(&self, command_uuid: &str) -> Result<u64, ServerError> {
        portable::commands::cancel(&self.pool, command_uuid).await
    }

    /// A command with its per-device delivery state and everything each device answered.
    pub async fn command(&self, command_uuid: &str) -> Result<Option<CommandView>, ServerError> {
        portable::commands::view(&self.pool, command_uuid).await
    }

    // ---- Management messages ----

    /// The enrollment a certificate (serial, lowercase hex) authenticates; retired
    /// certificates and expired grace periods authenticate nothing.
    pub async fn cert_identity(&self, serial: &str) -> Result<Option<CertIdentity>, ServerError> {
        if let Some(w) = self.writer() {
            let serial = serial.to_string();
            return w
                .read(move |c| sqlite::message::cert_identity(c, &serial))
                .await;
        }
        postgres::message::cert_identity(&self.pool, serial).await
    }

    /// Stores one device message: check-in, Status/Results, and (when asked and nothing
    /// stops it) the claim of the commands for the reply. The writes are atomic: all of a
    /// message is stored or none of it.
    pub async fn record_message(&self, work: MessageWork) -> Result<MessageOutcome, ServerError> {
        if let Some(w) = self.writer() {
            return w
                .run(move |c| sqlite::message::record_message(c, &work))
                .await;
        }
        postgres::message::record_message(&self.pool, &work).await
    }

    /// The command `command_uuid` if it was sent to `device_id`.
    pub async fn sent_command(
        &self,
        device_id: &str,
        command_uuid: &str,
    ) -> Result<Option<SentCommand>, ServerError> {
        if let Some(w) = self.writer() {
            let (d, c) = (device_id.to_string(), command_uuid.to_string());
            return w
                .read(move |conn| sqlite::message::sent_command(conn, &d, &c))
                .await;
        }
        postgres::message::sent_command(&self.pool, device_id, command_uuid).await
    }

    /// Claims the deliverable commands that fit in the reply, oldest first.
    pub async fn deliver(
        &self,
        device_id: &str,
        delivery: Delivery,
    ) -> Result<Vec<QueuedCommand>, ServerError> {
        if let Some(w) = self.writer() {
            let device_id = device_id.to_string();
            return w
                .run(move |c| sqlite::message::deliver(c, &device_id, delivery))
                .await;
        }
        postgres::message::deliver(&self.pool, device_id, delivery).await
    }

    // ---- Profiles ----

    /// Creates or replaces a profile (its items already checked).
    pub async fn save_profile(&self, name: &str, items: &[ProfileItem]) -> Result<(), ServerError> {
        portable::profiles::save(&self.pool, name, items).await
    }

    /// A profile's items.
    pub async fn profile_items(&self, name: &str) -> Result<Option<Vec<ProfileItem>>, ServerError> {
        portable::profiles::items(&self.pool, name).await
    }

    /// The profile with every assignment's state.
    pub async fn profile_view(&self, name: &str) -> Result<Option<ProfileView>, ServerError> {
        portable::profiles::view(&self.pool, name).await
    }

    /// Assigns profile `name` to each device, in one transaction: its earlier commands
    /// are forgotten, `commands` (one per item, in item order) queued for it, and the
    /// assignment starts over as `pending`.
    pub async fn assign_profile(
        &self,
        name: &str,
        device_ids: &[String],
        commands: &[ItemCommand],
    ) -> Result<(), ServerError> {
        let mut tx = self.begin_write().await?;
        for device_id in device_ids {
            portable::profiles::assign(&mut tx, name, device_id, commands).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The device's assignments in progress, with their items and tracked commands.
    pub async fn open_assignments(
        &self,
        device_id: &str,
    ) -> Result<Vec<OpenAssignment>, ServerError> {
        portable::profiles::open(&self.pool, device_id).await
    }

    /// Queues the read-back Gets of an assignment and moves it to
    /// `verifying`, in one transaction.
    pub async fn verify_assignment(
        &self,
        name: &str,
        device_id: &str,
        gets: &[ReadBack],
    ) -> Result<(), ServerError> {
        let mut tx = self.begin_write().await?;
        portable::profiles::queue_verification(&mut tx, name, device_id, gets).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends an assignment: `verified`, or `failed` with `detail`.
    pub async fn finish_assignment(
        &self,
        name: &str,
        device_id: &str,
        state: AssignmentState,
        detail: &str,
    ) -> Result<(), ServerError> {
        let mut conn = self.pool.acquire().await?;
        portable::profiles::set_state(&mut conn, name, device_id, state, detail).await
    }
}
