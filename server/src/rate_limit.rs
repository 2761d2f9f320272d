//! Token buckets for the enrollment endpoints: per client and in all. Refusals are
//! HTTP 429 with Retry-After (`http::guards::rate_limit`), which Windows honours
//! (protocol-reference §6).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-client and global token buckets for the enrollment endpoints. Refusals are
/// HTTP 429 with Retry-After, which Windows honours (protocol-reference §6).
pub struct RateLimiter {
    per_client_rate: f64,
    global_rate: f64,
    global: Mutex<Bucket>,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// Limits in requests per second; 0 disables that limit. Bursts are 4 seconds' worth.
    pub fn new(per_client_rate: f64, global_rate: f64) -> Self {
        let now = Instant::now();
        RateLimiter {
            per_client_rate,
            global_rate,
            global: Mutex::new(Bucket {
                tokens: global_rate * 4.0,
                at: now,
            }),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token, or returns the seconds to wait.
    fn take(bucket: &mut Bucket, rate: f64, now: Instant) -> Result<(), u64> {
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = (rate * 4.0).max(1.0);
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    /// Admits one request from `client`, or returns Retry-After seconds.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let now = Instant::now();
        if let (Some(ip), true) = (client, self.per_client_rate > 0.0) {
            let Ok(mut clients) = self.clients.lock() else {
                return Ok(());
            };
            if clients.len() > 100_000 {
                clients.retain(|_, b| now.duration_since(b.at).as_secs() < 60);
            }
            let burst = (self.per_client_rate * 4.0).max(1.0);
            let b = clients.entry(ip).or_insert(Bucket {
                tokens: burst,
                at: now,
            });
            Self::take(b, self.per_client_rate, now)?;
        }
        let Ok(mut global) = self.global.lock() else {
            return Ok(());
        };
        Self::take(&mut global, self.global_rate, now)
    }
}
