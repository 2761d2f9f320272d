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

/// A large object being reassembled: the device, the command its Results answer, and
/// the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    pub device_id: String,
    pub cmd_ref: String,
    pub loc_uri: String,
}

impl ChunkKey {
    pub fn new(
        device_id: impl Into<String>,
        cmd_ref: impl Into<String>,
        loc_uri: impl Into<String>,
    ) -> Self {
        ChunkKey {
            device_id: device_id.into(),
            cmd_ref: cmd_ref.into(),
            loc_uri: loc_uri.into(),
        }
    }
}

/// Largest large object reassembled from chunks, in bytes.
pub const MAX_LARGE_OBJECT: usize = 16 * 1024 * 1024;
/// Reassembly buffers of one device, in bytes.
pub const MAX_PER_DEVICE: usize = 32 * 1024 * 1024;
/// Reassembly buffers of all devices, in bytes.
pub const MAX_TOTAL: usize = 256 * 1024 * 1024;
/// A buffer not added to for this long is dropped (a device sends the next chunk in its
/// next message, seconds later).
pub const CHUNK_TTL: Duration = Duration::from_secs(600);
/// Bytes counted for each buffer and each tombstone on top of its key and data
/// (bookkeeping), so that many empty buffers count too.
const OVERHEAD: usize = 256;
/// Longest CmdRef or LocURI of a chunk buffered, in bytes: keys are charged, but an
/// object named by kilobytes of path is no real node (CSP node URIs are short; Windows
/// bounds a node path well below this), so it is refused before a buffer is opened.
pub const MAX_KEY_PART: usize = 1024;
/// Tombstones kept at most (each is a key: at most a few kilobytes, see [`MAX_KEY_PART`]).
const MAX_TOMBSTONES: usize = 65_536;

/// Whether the CmdRef and LocURI of `key` are short enough to be buffered.
pub fn key_acceptable(key: &ChunkKey) -> bool {
    key.cmd_ref.len() <= MAX_KEY_PART && key.loc_uri.len() <= MAX_KEY_PART
}

/// Bytes charged for holding `key` (a buffer's or a tombstone's), data not included.
fn key_cost(key: &ChunkKey) -> usize {
    key.device_id.len() + key.cmd_ref.len() + key.loc_uri.len() + OVERHEAD
}

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
    /// Chunks received so far, of this many bytes (the data is copied out only for the
    /// last chunk, by [`Reassembly::whole`]).
    Buffered(usize),
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

#[derive(Default)]
struct State {
    buffers: HashMap<ChunkKey, Buffer>,
    /// Bytes per device, and in all: buffers ([`key_cost`] and data) and tombstones
    /// ([`key_cost`]).
    per_device: HashMap<String, usize>,
    total: usize,
    tombstones: HashMap<ChunkKey, Instant>,
}

impl State {
    fn charge(&mut self, device: &str, bytes: usize) {
        *self.per_device.entry(device.to_string()).or_insert(0) += bytes;
        self.total += bytes;
    }

    fn uncharge(&mut self, device: &str, bytes: usize) {
        self.total = self.total.saturating_sub(bytes);
        if let Some(d) = self.per_device.get_mut(device) {
            *d = d.saturating_sub(bytes);
            if *d == 0 {
                self.per_device.remove(device);
            }
        }
    }

    fn device(&self, device: &str) -> usize {
        self.per_device.get(device).copied().unwrap_or(0)
    }

    fn remove(&mut self, key: &ChunkKey) -> Option<Buffer> {
        let b = self.buffers.remove(key)?;
        self.uncharge(&key.device_id, key_cost(key) + b.data.len());
        Some(b)
    }

    fn forget_tombstone(&mut self, key: &ChunkKey) {
        if self.tombstones.remove(key).is_some() {
            self.uncharge(&key.device_id, key_cost(key));
        }
    }

    /// Drops the object's buffer and refuses its later chunks, if the tombstone fits
    /// the bounds (it always does in place of a buffer, which cost more).
    fn tombstone(&mut self, key: ChunkKey, now: Instant, l: &Limits) {
        self.remove(&key);
        let cost = key_cost(&key);
        if self.tombstones.contains_key(&key)
            || !key_acceptable(&key)
            || self.tombstones.len() >= MAX_TOMBSTONES
            || self.device(&key.device_id) + cost > l.device
            || self.total + cost > l.total
        {
            return;
        }
        self.charge(&key.device_id, cost);
        self.tombstones.insert(key, now);
    }

    fn expire(&mut self, now: Instant, l: &Limits) {
        let stale: Vec<ChunkKey> = self
            .buffers
            .iter()
            .filter(|(_, b)| now.duration_since(b.updated) >= l.ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.tombstone(k, now, l);
        }
        let gone: Vec<ChunkKey> = self
            .tombstones
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= l.ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.forget_tombstone(&k);
        }
    }

    /// Bytes `data` adds to the object of `key`, and the bytes the object then holds.
    fn added(&self, key: &ChunkKey, data: usize) -> (usize, usize) {
        match self.buffers.get(key) {
            Some(b) => (data, b.data.len() + data),
            None => (key_cost(key) + data, data),
        }
    }

    fn append(&mut self, key: ChunkKey, data: &str, now: Instant, l: &Limits) {
        if self.tombstones.contains_key(&key) {
            return;
        }
        if !key_acceptable(&key) {
            tracing::info!(device_id = %key.device_id, "large object refused: CmdRef or LocURI too long");
            return;
        }
        let (added, held) = self.added(&key, data.len());
        if held > l.object || self.device(&key.device_id) + added > l.device || added > l.total {
            tracing::info!(device_id = %key.device_id, cmd_ref = %key.cmd_ref, "large object refused: over the reassembly limits");
            self.tombstone(key, now, l);
            return;
        }
        while self.total + added > l.total {
            let Some(oldest) = self
                .buffers
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| k.clone())
            else {
                // Only tombstones left: refuse the new object rather than exceed.
                tracing::warn!(device_id = %key.device_id, cmd_ref = %key.cmd_ref, "large object refused: reassembly memory full");
                self.tombstone(key, now, l);
                return;
            };
            tracing::warn!(device_id = %oldest.device_id, cmd_ref = %oldest.cmd_ref, "large object evicted: reassembly memory full");
            self.tombstone(oldest.clone(), now, l);
            if oldest == key {
                return;
            }
        }
        self.charge(&key.device_id, added);
        let buffer = self.buffers.entry(key).or_insert(Buffer {
            updated: now,
            data: String::new(),
        });
        buffer.updated = now;
        buffer.data.push_str(data);
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
            Some(b) if b.updated.elapsed() < self.limits.ttl => Pending::Buffered(b.data.len()),
            Some(_) => Pending::Refused,
            None => Pending::None,
        }
    }

    /// The whole object of `key`: its buffered chunks followed by `last` (read only: the
    /// buffer goes only with [`ChunkOp::Finish`], once the message is stored, so a
    /// message that cannot be stored and is sent again still finds it). `None` without
    /// a live buffer or over the object bound.
    pub fn whole(&self, key: &ChunkKey, last: &str) -> Option<String> {
        let s = self.state.lock().ok()?;
        let b = s
            .buffers
            .get(key)
            .filter(|b| b.updated.elapsed() < self.limits.ttl)?;
        if b.data.len() + last.len() > self.limits.object {
            return None;
        }
        let mut whole = String::with_capacity(b.data.len() + last.len());
        whole.push_str(&b.data);
        whole.push_str(last);
        Some(whole)
    }

    /// Whether adding `len` bytes to the object of `key` stays within the per-object and
    /// per-device bounds and the key is short enough (read only; the global bound evicts
    /// others instead).
    pub fn fits(&self, key: &ChunkKey, len: usize) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        let (added, held) = s.added(key, len);
        key_acceptable(key)
            && held <= self.limits.object
            && s.device(&key.device_id) + added <= self.limits.device
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
        s.expire(now, &self.limits);
        for op in ops {
            match op {
                ChunkOp::Append(key, data) => s.append(key, &data, now, &self.limits),
                ChunkOp::Finish(key) => {
                    s.remove(&key);
                    s.forget_tombstone(&key);
                }
                ChunkOp::Refuse(key) => s.tombstone(key, now, &self.limits),
            }
        }
    }

    /// Bytes held (as counted against the bounds): in all, and for one device.
    pub fn held(&self, device_id: &str) -> (usize, usize) {
        self.state
            .lock()
            .map(|s| (s.total, s.device(device_id)))
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(device: &str, cmd: &str) -> ChunkKey {
        ChunkKey::new(device, cmd, "./Vendor/MSFT/Big")
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
        assert!(matches!(
            r.pending(&key("a", "1")),
            Pending::Buffered(1_000)
        ));
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
        // Only the tombstone is left, charged for its key.
        assert_eq!(r.held("a"), (key_cost(&k), key_cost(&k)));
        // Long after, even the tombstone is gone.
        r.apply_at(Vec::new(), then + 3 * CHUNK_TTL);
        assert_eq!(r.pending(&k), Pending::None);
        assert_eq!(r.held("a"), (0, 0));
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
        assert_eq!(r.held("a"), (key_cost(&k), key_cost(&k)));
        r.apply(vec![ChunkOp::Finish(k)]);
        assert_eq!(r.held("a"), (0, 0));
    }

    #[test]
    fn an_empty_first_chunk_leaves_nothing_charged_once_finished() {
        let r = small();
        let k = key("a", "1");
        append(&r, &k, 0);
        assert_eq!(r.pending(&k), Pending::Buffered(0));
        assert!(r.fits(&k, 100));
        append(&r, &k, 100);
        append(&r, &k, 0);
        append(&r, &k, 50);
        assert_eq!(r.held("a"), (key_cost(&k) + 150, key_cost(&k) + 150));
        assert_eq!(r.whole(&k, "yy").map(|w| w.len()), Some(152));
        r.apply(vec![ChunkOp::Finish(k)]);
        assert_eq!(r.held("a"), (0, 0));
    }

    #[test]
    fn buffers_are_charged_for_their_keys() {
        let r = Reassembly::with_limits(Limits {
            device: 10_000,
            ..Limits::default()
        });
        let long = |n: u32| -> ChunkKey {
            ChunkKey::new(
                "a",
                n.to_string(),
                format!("./Vendor/MSFT/Big/{n}/{}", "p".repeat(900)),
            )
        };
        // Empty data: only the keys count, and they fill the device's share.
        let mut opened = 0;
        for n in 0..20 {
            if !r.fits(&long(n), 0) {
                break;
            }
            append(&r, &long(n), 0);
            opened += 1;
        }
        assert!(opened < 10, "{opened} buffers of long keys within 10 kB");
        assert!(r.held("a").1 > 9_000 - key_cost(&long(0)));
        assert!(r.held("a").1 <= 10_000);
    }

    #[test]
    fn an_over_long_cmd_ref_or_loc_uri_opens_no_buffer() {
        let r = Reassembly::default();
        let loc = ChunkKey::new("a", "1", "L".repeat(MAX_KEY_PART + 1));
        let cmd = ChunkKey::new("a", "C".repeat(MAX_KEY_PART + 1), "./Big");
        for k in [loc, cmd] {
            assert!(!key_acceptable(&k));
            assert!(!r.fits(&k, 1));
            append(&r, &k, 1);
            r.apply(vec![ChunkOp::Refuse(k.clone())]);
            assert_eq!(r.pending(&k), Pending::None);
            assert_eq!(r.held("a"), (0, 0));
        }
        assert!(key_acceptable(&ChunkKey::new(
            "a",
            "C".repeat(MAX_KEY_PART),
            "L".repeat(MAX_KEY_PART)
        )));
    }

    #[test]
    fn tombstones_are_charged() {
        let r = small();
        let k = key("a", "1");
        r.apply(vec![ChunkOp::Refuse(k.clone())]);
        assert_eq!(r.pending(&k), Pending::Refused);
        assert_eq!(r.held("a"), (key_cost(&k), key_cost(&k)));
        // They count against the device's share: 3_000 bytes hold ten tombstones.
        for n in 2..20 {
            r.apply(vec![ChunkOp::Refuse(key("a", &n.to_string()))]);
        }
        assert!(r.held("a").1 <= 3_000);
        assert!(!r.fits(&key("a", "x"), 1_000));
    }

    #[test]
    fn many_chunks_reassemble_in_order() {
        let r = Reassembly::default();
        let k = key("a", "1");
        let mut expected = String::new();
        for n in 0..500 {
            let chunk = format!("{n:04}");
            assert!(r.fits(&k, chunk.len()));
            r.apply(vec![ChunkOp::Append(k.clone(), chunk.clone())]);
            expected.push_str(&chunk);
            assert_eq!(r.pending(&k), Pending::Buffered(expected.len()));
        }
        assert_eq!(r.whole(&k, "end"), Some(format!("{expected}end")));
        // Reading the whole object leaves the buffer until its message is stored.
        assert_eq!(r.pending(&k), Pending::Buffered(expected.len()));
        r.apply(vec![ChunkOp::Finish(k.clone())]);
        assert_eq!(r.whole(&k, "end"), None);
        assert_eq!(r.held("a"), (0, 0));
    }
}
