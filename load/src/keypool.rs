//! A pool of RSA-2048 enrollment keys cached on disk, so that load tests do not spend
//! their time generating keys (100-250 ms each).
//!
//! Load-test shortcut: each batch of keys is built from a small set of random 1024-bit
//! primes, every key being the product of a different pair (k primes make k(k-1)/2
//! keys). The keys are valid, distinct RSA-2048 keys, so the server still certifies
//! each one for one device only and signs, verifies and handshakes with them at the
//! usual cost; but two keys sharing a prime can be factored with a GCD, so the pool is
//! for load tests only, never for a real device.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use num_bigint_dig::{BigUint, RandPrime};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;

/// Errors building or reading the pool.
#[derive(Debug, thiserror::Error)]
pub enum KeyPoolError {
    #[error("key pool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key pool file {path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("key generation: {0}")]
    Generate(String),
}

/// The default cache directory: `target/winmdm-key-pool` under the workspace.
pub fn default_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .join("target")
        .join("winmdm-key-pool")
}

/// The keys, as PKCS#8 DER, in file order.
#[derive(Debug, Clone)]
pub struct KeyPool {
    keys: Arc<Vec<Box<[u8]>>>,
    /// Keys that had to be generated for this run.
    pub generated: usize,
}

fn file_name(i: usize) -> String {
    format!("key-{i:06}.pem")
}

const PUBLIC_EXPONENT: u32 = 65_537;

impl KeyPool {
    /// Loads the first `n` keys of `dir`, generating (in parallel, on every core) and
    /// saving the missing ones first. `progress` is called with keys generated so far.
    pub fn open(
        dir: &Path,
        n: usize,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<KeyPool, KeyPoolError> {
        std::fs::create_dir_all(dir).map_err(|source| KeyPoolError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let have = (0..n)
            .take_while(|i| dir.join(file_name(*i)).is_file())
            .count();
        let missing = n - have;
        if missing > 0 {
            generate_into(dir, have, missing, progress)?;
        }
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            let path = dir.join(file_name(i));
            let pem = std::fs::read_to_string(&path).map_err(|source| KeyPoolError::Io {
                path: path.clone(),
                source,
            })?;
            let key = RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| KeyPoolError::BadKey {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let der = key.to_pkcs8_der().map_err(|e| KeyPoolError::BadKey {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            keys.push(der.as_bytes().to_vec().into_boxed_slice());
        }
        Ok(KeyPool {
            keys: Arc::new(keys),
            generated: missing,
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// PKCS#8 DER of key `i`.
    pub fn der(&self, i: usize) -> Option<&[u8]> {
        self.keys.get(i).map(|k| &k[..])
    }

    /// Bytes the pool holds per key.
    pub fn bytes_per_key(&self) -> usize {
        let total: usize = self.keys.iter().map(|k| k.len() + 16).sum();
        total.checked_div(self.keys.len()).unwrap_or(0)
    }
}

/// Smallest k with k(k-1)/2 >= n.
fn primes_needed(n: usize) -> usize {
    let mut k = 2;
    while k * (k - 1) / 2 < n {
        k += 1;
    }
    k
}

fn generate_into(
    dir: &Path,
    first: usize,
    count: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), KeyPoolError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let k = primes_needed(count);
    let e = BigUint::from(PUBLIC_EXPONENT);
    // Primes in parallel: this is where the time goes.
    let next = AtomicUsize::new(0);
    let mut primes: Vec<BigUint> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut rng = rand::thread_rng();
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < k {
                        loop {
                            let p: BigUint = rng.gen_prime(1024);
                            // e must be invertible modulo p - 1.
                            if (&p - 1u32) % &e != BigUint::from(0u32) {
                                mine.push(p);
                                break;
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    primes.sort();
    primes.dedup();
    let pairs: Vec<(usize, usize)> = (0..primes.len())
        .flat_map(|a| (0..a).map(move |b| (a, b)))
        .take(count)
        .collect();
    if pairs.len() < count {
        return Err(KeyPoolError::Generate("not enough distinct primes".into()));
    }
    let done = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let failure: std::sync::Mutex<Option<KeyPoolError>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(a, b)) = pairs.get(j) else { break };
                // p > q, as ring expects.
                let r = write_key(dir, first + j, &primes[a], &primes[b], &e);
                if let Err(err) = r {
                    if let Ok(mut f) = failure.lock() {
                        f.get_or_insert(err);
                    }
                    break;
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(d, count);
            });
        }
    });
    match failure.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_key(
    dir: &Path,
    index: usize,
    p: &BigUint,
    q: &BigUint,
    e: &BigUint,
) -> Result<(), KeyPoolError> {
    let path = dir.join(file_name(index));
    let key = RsaPrivateKey::from_p_q(p.clone(), q.clone(), e.clone())
        .map_err(|err| KeyPoolError::Generate(err.to_string()))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|err| KeyPoolError::Generate(err.to_string()))?;
    // The TLS stack (aws-lc-rs) must accept it.
    aws_lc_rs::signature::RsaKeyPair::from_pkcs8(der.as_bytes())
        .map_err(|err| KeyPoolError::Generate(format!("aws-lc-rs rejects a pool key: {err}")))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|err| KeyPoolError::Generate(err.to_string()))?;
    let tmp = dir.join(format!("{}.tmp", file_name(index)));
    std::fs::write(&tmp, pem.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| KeyPoolError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_cover_the_count() {
        assert_eq!(primes_needed(1), 2);
        assert_eq!(primes_needed(3), 3);
        assert_eq!(primes_needed(10_000), 142);
    }
}
