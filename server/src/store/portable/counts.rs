//! Rows per state, read when metrics are scraped (one `GROUP BY` per table).

use sqlx::{AnyPool, Row};

use crate::error::ServerError;

/// How many rows of each state the tables hold, by the stored state name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateCounts {
    pub enrollments: Vec<(String, i64)>,
    pub commands: Vec<(String, i64)>,
    pub assignments: Vec<(String, i64)>,
}

async fn by_state(pool: &AnyPool, table: &str) -> Result<Vec<(String, i64)>, ServerError> {
    // `table` is one of the fixed names below, never input.
    let sql = format!("SELECT state, COUNT(*) AS n FROM {table} GROUP BY state ORDER BY state");
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
        .collect()
}

pub async fn state_counts(pool: &AnyPool) -> Result<StateCounts, ServerError> {
    Ok(StateCounts {
        enrollments: by_state(pool, "enrollments").await?,
        commands: by_state(pool, "commands").await?,
        assignments: by_state(pool, "profile_assignments").await?,
    })
}
