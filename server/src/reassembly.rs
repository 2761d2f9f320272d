//! Large objects a device sends in chunks (OMA-DM 1.2 large object handling: Results
//! items with `MoreData`, the next message asked for with Alert 1222), held in memory
//! until the last chunk arrives, within bounds: per object, per device, over all
//! devices (the oldest buffers are evicted first), and for at most [`CHUNK_TTL`].
//!
//! An object refused or evicted is remembered (a tombstone) until its last chunk or the
//! TTL, so that its later chunks are refused too instead of starting a new, truncated
//! object. Changes are applied only once the device's message is stored
//! ([`ChunkOp`]), so a message answered with a storage error and sent again is not
//! counted twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A large object being reassembled: (DeviceID, CmdRef, LocURI).
pub type ChunkKey = (String, String, String);

/// Largest large object reassembled from chunks, in bytes.
pub const MAX_LARGE_OBJECT: usize = 16 * 1024 * 1024;
/// Reassembly buffers of one device, in bytes.
pub const MAX_PER_DEVICE: usize = 32 * 1024 * 1024;
/// Reassembly buffers of all devices, in bytes.
pub const MAX_TOTAL: usize = 256 * 1024 * 1024;
/// A buffer not added to for this long is dropped (a device sends the next chunk in its
/// next message, seconds later).
pub const CHUNK_TTL: Duration = Duration::from_secs(600);
/// Bytes counted for each buffer on top of its data (key and bookkeeping), so that
/// many empty buffers count too.
const OVERHEAD: usize = 256;
/// Tombstones kept at most (each is a key: a few hundred bytes).
const MAX_TOMBSTONES: usize = 65_536;

/// The bounds of [`Reassembly`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub object: usize,
    pub device: usize,
    pub total: usize,
    pub ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            object: MAX_LARGE_OBJECT,
            device: MAX_PER_DEVICE,
            total: MAX_TOTAL,
            ttl: CHUNK_TTL,
        }
    }
}

/// Where a chunk stands before its message is stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending {
    /// No buffer: a first chunk (or a whole object).
    None,
    /// The chunks received so far.
    Buffered(String),
    /// The object was refused or evicted: refuse its chunks (413).
    Refused,
}

/// A change to apply once the device's message is stored.
#[derive(Debug)]
pub enum ChunkOp {
    /// Add a chunk (MoreData).
    Append(ChunkKey, String),
    /// The last chunk arrived: forget the buffer or tombstone.
    Finish(ChunkKey),
    /// The object is too large: drop it and refuse its further chunks.
    Refuse(ChunkKey),
}

struct Buffer {
    updated: Instant,
    data: String,
}

impl Buffer {
    fn cost(&self) -> usize {
        self.data.len() + OVERHEAD
    }
}

#[derive(Default)]
struct State {
    buffers: HashMap<ChunkKey, Buffer>,
    /// Bytes per device, and in all, as counted by [`Buffer::cost`].
    per_device: HashMap<String, usize>,
    total: usize,
    tombstones: HashMap<ChunkKey, Instant>,
}

impl State {
    fn remove(&mut self, key: &ChunkKey) -> Option<Buffer> {
        let b = self.buffers.remove(key)?;
        let cost = b.cost();
        self.total -= cost;
        if let Some(d) = self.per_device.get_mut(&key.0) {
            *d -= cost;
            if *d == 0 {
                self.per_device.remove(&key.0);
            }
        }
        Some(b)
    }

    fn tombstone(&mut self, key: ChunkKey, now: Instant) {
        self.remove(&key);
        if self.tombstones.len() < MAX_TOMBSTONES {
            self.tombstones.insert(key, now);
        }
    }

    fn expire(&mut self, now: Instant, ttl: Duration) {
        let stale: Vec<ChunkKey> = self
            .buffers
            .iter()
            .filter(|(_, b)| now.duration_since(b.updated) >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.tombstone(k, now);
        }
        self.tombstones.retain(|_, t| now.duration_since(*t) < ttl);
    }

    fn append(&mut self, key: ChunkKey, data: &str, now: Instant, l: &Limits) {
        if self.tombstones.contains_key(&key) {
            return;
        }
        let held = self.buffers.get(&key).map_or(0, |b| b.data.len());
        let added = data.len() + if held == 0 { OVERHEAD } else { 0 };
        let device = self.per_device.get(&key.0).copied().unwrap_or(0);
        if held + data.len() > l.object || device + added > l.device || added > l.total {
            tracing::info!(device_id = %key.0, cmd_ref = %key.1, "large object refused: over the reassembly limits");
            self.tombstone(key, now);
            return;
        }
        while self.total + added > l.total {
            let Some(oldest) = self
                .buffers
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            tracing::warn!(device_id = %oldest.0, cmd_ref = %oldest.1, "large object evicted: reassembly memory full");
            self.tombstone(oldest.clone(), now);
            if oldest == key {
                return;
            }
        }
        let buffer = self.buffers.entry(key.clone()).or_insert(Buffer {
            updated: now,
            data: String::new(),
        });
        buffer.updated = now;
        buffer.data.push_str(data);
        *self.per_device.entry(key.0).or_insert(0) += added;
        self.total += added;
    }
}

/// The large objects being reassembled.
#[derive(Default)]
pub struct Reassembly {
    limits: Limits,
    state: Mutex<State>,
}

impl Reassembly {
    pub fn with_limits(limits: Limits) -> Self {
        Reassembly {
            limits,
            state: Mutex::default(),
        }
    }

    /// Where the object of `key` stands (read only).
    pub fn pending(&self, key: &ChunkKey) -> Pending {
        let Ok(s) = self.state.lock() else {
            return Pending::Refused;
        };
        if s.tombstones.contains_key(key) {
            return Pending::Refused;
        }
        match s.buffers.get(key) {
            Some(b) if b.updated.elapsed() < self.limits.ttl => Pending::Buffered(b.data.clone()),
            Some(_) => Pending::Refused,
            None => Pending::None,
        }
    }

    /// Whether adding `len` bytes to the object of `key` stays within the per-object and
    /// per-device bounds (read only; the global bound evicts others instead).
    pub fn fits(&self, key: &ChunkKey, len: usize) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        let held = s.buffers.get(key).map_or(0, |b| b.data.len());
        let added = len + if held == 0 { OVERHEAD } else { 0 };
        let device = s.per_device.get(&key.0).copied().unwrap_or(0);
        held + len <= self.limits.object
            && device + added <= self.limits.device
            && added <= self.limits.total
    }

    /// Largest object reassembled, in bytes.
    pub fn object_limit(&self) -> usize {
        self.limits.object
    }

    /// Applies the changes of a stored message.
    pub fn apply(&self, ops: Vec<ChunkOp>) {
        self.apply_at(ops, Instant::now());
    }

    fn apply_at(&self, ops: Vec<ChunkOp>, now: Instant) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.expire(now, self.limits.ttl);
        for op in ops {
            match op {
                ChunkOp::Append(key, data) => s.append(key, &data, now, &self.limits),
                ChunkOp::Finish(key) => {
                    s.remove(&key);
                    s.tombstones.remove(&key);
                }
                ChunkOp::Refuse(key) => s.tombstone(key, now),
            }
        }
    }

    /// Bytes held (as counted against the bounds): in all, and for one device.
    pub fn held(&self, device_id: &str) -> (usize, usize) {
        self.state
            .lock()
            .map(|s| (s.total, s.per_device.get(device_id).copied().unwrap_or(0)))
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(device: &str, cmd: &str) -> ChunkKey {
        (device.into(), cmd.into(), "./Vendor/MSFT/Big".into())
    }

    fn small() -> Reassembly {
        Reassembly::with_limits(Limits {
            object: 10_000,
            device: 3_000,
            total: 5_000,
            ttl: Duration::from_secs(600),
        })
    }

    fn append(r: &Reassembly, k: &ChunkKey, len: usize) {
        r.apply(vec![ChunkOp::Append(k.clone(), "x".repeat(len))]);
    }

    #[test]
    fn a_device_cannot_hold_more_than_its_share() {
        let r = small();
        append(&r, &key("a", "1"), 1_000);
        append(&r, &key("a", "2"), 1_000);
        assert!(!r.fits(&key("a", "3"), 1_000));
        append(&r, &key("a", "3"), 1_000);
        // The object that would exceed the device's share is refused, with its later
        // chunks; the others are intact.
        assert_eq!(r.pending(&key("a", "3")), Pending::Refused);
        assert!(r.held("a").1 <= 3_000);
        assert!(matches!(r.pending(&key("a", "1")), Pending::Buffered(d) if d.len() == 1_000));
        // The refusal lasts until the object's last chunk.
        r.apply(vec![ChunkOp::Finish(key("a", "3"))]);
        assert_eq!(r.pending(&key("a", "3")), Pending::None);
    }

    #[test]
    fn the_global_bound_evicts_the_oldest_objects() {
        let r = small();
        for d in ["a", "b", "c", "d", "e"] {
            append(&r, &key(d, "1"), 1_000);
            assert!(r.held(d).0 <= 5_000);
        }
        // The oldest went first, and its later chunks are refused, not restarted.
        assert_eq!(r.pending(&key("a", "1")), Pending::Refused);
        append(&r, &key("a", "1"), 10);
        assert_eq!(r.pending(&key("a", "1")), Pending::Refused);
        assert!(matches!(r.pending(&key("e", "1")), Pending::Buffered(_)));
        assert!(r.held("e").0 <= 5_000);
    }

    #[test]
    fn stale_objects_expire() {
        let r = small();
        let k = key("a", "1");
        let then = Instant::now();
        r.apply_at(vec![ChunkOp::Append(k.clone(), "x".repeat(100))], then);
        r.apply_at(Vec::new(), then + CHUNK_TTL);
        assert_eq!(r.held("a"), (0, 0));
        // Long after, even the tombstone is gone.
        r.apply_at(Vec::new(), then + 3 * CHUNK_TTL);
        assert_eq!(r.pending(&k), Pending::None);
    }

    #[test]
    fn an_object_over_the_object_bound_is_refused() {
        let r = Reassembly::with_limits(Limits {
            object: 100,
            ..Limits::default()
        });
        let k = key("a", "1");
        append(&r, &k, 60);
        assert!(!r.fits(&k, 60));
        append(&r, &k, 60);
        assert_eq!(r.pending(&k), Pending::Refused);
        assert_eq!(r.held("a"), (0, 0));
    }
}
