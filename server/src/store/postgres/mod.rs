//! Postgres: a management message's writes as one statement ([`message`]), the advisory
//! locks that serialise migrations and enrollments across replicas, and scratch
//! databases for tests and the harness.

pub mod message;
pub mod session;

use sqlx::any::AnyPoolOptions;

use crate::error::ServerError;

/// Advisory lock keys.
const MIGRATION_LOCK: i64 = 7261736;
const ENROLLMENT_LOCK: i64 = 7261737;

/// Replicas starting together migrate one at a time.
pub(super) async fn serialise_migrations(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
) -> Result<(), ServerError> {
    lock(tx, MIGRATION_LOCK).await
}

/// Recording transactions of enrollments and renewals take this lock in turn, so the
/// one-device rules they check hold when they write.
pub(super) async fn serialise_enrollments(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
) -> Result<(), ServerError> {
    lock(tx, ENROLLMENT_LOCK).await
}

async fn lock(tx: &mut sqlx::Transaction<'static, sqlx::Any>, key: i64) -> Result<(), ServerError> {
    sqlx::query(&format!("SELECT pg_advisory_xact_lock({key})"))
        .execute(&mut **tx)
        .await?;
    Ok(())
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
