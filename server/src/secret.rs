//! Handling of shared secrets: node keys are stored hashed, and secrets compare in
//! constant time.

use sha2::{Digest, Sha256};

/// SHA-256 of a node key, hex: node keys are stored only in this form.
pub fn hash_node_key(node_key: &str) -> String {
    hex::encode(Sha256::digest(node_key.as_bytes()))
}

/// A fresh node key (24 random bytes, hex).
pub fn new_node_key() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
