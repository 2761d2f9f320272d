//! The schema: embedded migrations per backend, applied in order at start-up.

use super::{Backend, Store};
use crate::clock::now;
use crate::error::ServerError;

/// Embedded migrations per backend, applied in order; the version is the index + 1.
/// Both sets create the same schema (Postgres spells integer keys as BIGINT identity).
pub(crate) const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_profiles.sql"),
    include_str!("../../migrations/sqlite/0003_device_certs.sql"),
    include_str!("../../migrations/sqlite/0004_cert_keys.sql"),
    include_str!("../../migrations/sqlite/0005_enrollments_by_host.sql"),
    include_str!("../../migrations/sqlite/0006_node_key_age.sql"),
    include_str!("../../migrations/sqlite/0007_digest_credentials.sql"),
    include_str!("../../migrations/sqlite/0008_session_state.sql"),
];
const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_profiles.sql"),
    include_str!("../../migrations/postgres/0003_device_certs.sql"),
    include_str!("../../migrations/postgres/0004_cert_keys.sql"),
    include_str!("../../migrations/postgres/0005_enrollments_by_host.sql"),
    include_str!("../../migrations/postgres/0006_node_key_age.sql"),
    include_str!("../../migrations/postgres/0007_digest_credentials.sql"),
    include_str!("../../migrations/postgres/0008_session_state.sql"),
];

/// Applies the migrations the database has not seen, in one transaction.
pub(super) async fn migrate(store: &Store) -> Result<(), ServerError> {
    let migrations = match store.backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    let mut tx = store.begin_write().await?;
    if store.backend == Backend::Postgres {
        super::postgres::serialise_migrations(&mut tx).await?;
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
