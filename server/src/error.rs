//! Server-wide error type for start-up and internal failures.
//!
//! Protocol-level refusals are not errors of this type: each endpoint turns bad input
//! into the reply its peer understands (SOAP fault, OMA-DM status, HTTP status + JSON).

/// Errors that stop the server from starting or from completing a request.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cryptography: {0}")]
    Crypto(String),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// From the database driver (converted where the store calls it).
    #[error("database: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync>),
    /// From the SQLite writer thread (`store/sqlite/writer.rs`).
    #[error("database: {0}")]
    Storage(String),
}
