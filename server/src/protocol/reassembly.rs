//! Large objects a device sends in chunks (OMA-DM 1.2 large object handling: Results
//! items with `MoreData`, the next message asked for with Alert 1222), held until the
//! last chunk arrives, within bounds: per object, per device, over all devices (the
//! oldest buffers are evicted first), and for at most [`CHUNK_TTL`].
//!
//! An object refused or evicted is remembered (a tombstone) until its last chunk or the
//! TTL, so that its later chunks are refused too instead of starting a new, truncated
//! object. Changes are applied only once the device's message is stored
//! ([`ChunkOp`]), so a message answered with a storage error and sent again is not
//! counted twice.
//!
//! The decisions are here, without I/O: a [`Ledger`] (what is held, and what is charged
//! against the bounds) turns [`ChunkOp`]s into [`Write`]s, and a message is read
//! against a [`ChunkView`]. The store keeps the objects in the database, so that every
//! replica sees the same ones ([`Snapshot`] for reading, the ledger's writes applied in
//! the message's transaction); [`Reassembly`] keeps them in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

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

/// The bounds of the reassembly.
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

impl Limits {
    fn ttl_us(&self) -> i64 {
        i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX)
    }
}

/// Where a chunk stands before its message is stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending {
    /// No buffer: a first chunk (or a whole object).
    None,
    /// Chunks received so far, of this many bytes (the data is copied out only for the
    /// last chunk, by [`ChunkView::whole`]).
    Buffered(usize),
    /// The object was refused or evicted: refuse its chunks (413).
    Refused,
}

/// A change to apply once the device's message is stored.
#[derive(Debug, Clone)]
pub enum ChunkOp {
    /// Add a chunk (MoreData).
    Append(ChunkKey, String),
    /// The last chunk arrived: forget the buffer or tombstone.
    Finish(ChunkKey),
    /// The object is too large: drop it and refuse its further chunks.
    Refuse(ChunkKey),
}

/// A change to the stored objects, decided by the [`Ledger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Add `data` to the object's buffer (opening it if there is none); `updated` is its
    /// new time (microseconds).
    Append {
        key: ChunkKey,
        data: String,
        updated: i64,
    },
    /// Forget the object's buffer or tombstone.
    Delete(ChunkKey),
    /// Replace the object by a tombstone made at `at` (microseconds).
    Tombstone { key: ChunkKey, at: i64 },
}

/// One stored object as the ledger sees it: its key, its buffered bytes (None for a
/// tombstone), and its last change (microseconds).
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: ChunkKey,
    pub bytes: Option<usize>,
    pub updated: i64,
}

/// What is held (sizes and times, not data) and charged against the bounds; applies
/// [`ChunkOp`]s within the bounds and says what to write.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Buffered bytes and last change, per object.
    buffers: HashMap<ChunkKey, (usize, i64)>,
    tombstones: HashMap<ChunkKey, i64>,
    /// Bytes per device, and in all: buffers ([`key_cost`] and data) and tombstones
    /// ([`key_cost`]).
    per_device: HashMap<String, usize>,
    total: usize,
    /// Latest time written: every write gets a later one, so the eviction order is
    /// total even within one microsecond.
    latest: i64,
    writes: Vec<Write>,
}

impl Ledger {
    /// The ledger of these stored objects.
    pub fn load(entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut l = Ledger::default();
        for e in entries {
            l.latest = l.latest.max(e.updated);
            match e.bytes {
                Some(bytes) => {
                    l.charge(&e.key.device_id, key_cost(&e.key) + bytes);
                    l.buffers.insert(e.key, (bytes, e.updated));
                }
                None => {
                    l.charge(&e.key.device_id, key_cost(&e.key));
                    l.tombstones.insert(e.key, e.updated);
                }
            }
        }
        l
    }

    /// Applies `ops` at `now` (microseconds) after expiring stale objects; returns the
    /// writes that make the stored objects match.
    pub fn apply(&mut self, ops: Vec<ChunkOp>, now: i64, l: &Limits) -> Vec<Write> {
        self.expire(now, l);
        for op in ops {
            match op {
                ChunkOp::Append(key, data) => self.append(key, data, now, l),
                ChunkOp::Finish(key) => {
                    self.remove(&key);
                    self.forget_tombstone(&key);
                }
                ChunkOp::Refuse(key) => self.tombstone(key, now, l),
            }
        }
        std::mem::take(&mut self.writes)
    }

    /// Where the object of `key` stands at `now`.
    pub fn pending(&self, key: &ChunkKey, now: i64, l: &Limits) -> Pending {
        if self.tombstones.contains_key(key) {
            return Pending::Refused;
        }
        match self.buffers.get(key) {
            Some((bytes, updated)) if now - updated < l.ttl_us() => Pending::Buffered(*bytes),
            Some(_) => Pending::Refused,
            None => Pending::None,
        }
    }

    /// Whether adding `len` bytes to the object of `key` stays within the per-object and
    /// per-device bounds and the key is short enough (the global bound evicts others
    /// instead).
    pub fn fits(&self, key: &ChunkKey, len: usize, l: &Limits) -> bool {
        let (added, held) = self.added(key, len);
        key_acceptable(key)
            && held <= l.object
            && self.device(&key.device_id) + added <= l.device
            && added <= l.total
    }

    /// Bytes held (as counted against the bounds): in all, and for one device.
    pub fn held(&self, device_id: &str) -> (usize, usize) {
        (self.total, self.device(device_id))
    }

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

    /// A time after every earlier write, `now` when the clock allows.
    fn stamp(&mut self, now: i64) -> i64 {
        self.latest = now.max(self.latest + 1);
        self.latest
    }

    fn remove(&mut self, key: &ChunkKey) {
        if let Some((bytes, _)) = self.buffers.remove(key) {
            self.uncharge(&key.device_id, key_cost(key) + bytes);
            self.writes.push(Write::Delete(key.clone()));
        }
    }

    fn forget_tombstone(&mut self, key: &ChunkKey) {
        if self.tombstones.remove(key).is_some() {
            self.uncharge(&key.device_id, key_cost(key));
            self.writes.push(Write::Delete(key.clone()));
        }
    }

    /// Drops the object's buffer and refuses its later chunks, if the tombstone fits
    /// the bounds (it always does in place of a buffer, which cost more).
    fn tombstone(&mut self, key: ChunkKey, now: i64, l: &Limits) {
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
        let at = self.stamp(now);
        self.tombstones.insert(key.clone(), at);
        self.writes.push(Write::Tombstone { key, at });
    }

    fn expire(&mut self, now: i64, l: &Limits) {
        let ttl = l.ttl_us();
        let stale: Vec<ChunkKey> = self
            .buffers
            .iter()
            .filter(|(_, (_, updated))| now - updated >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.tombstone(k, now, l);
        }
        let gone: Vec<ChunkKey> = self
            .tombstones
            .iter()
            .filter(|(_, t)| now - **t >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.forget_tombstone(&k);
        }
    }

    /// Bytes `data` adds to the object of `key`, and the bytes the object then holds.
    fn added(&self, key: &ChunkKey, data: usize) -> (usize, usize) {
        match self.buffers.get(key) {
            Some((bytes, _)) => (data, bytes + data),
            None => (key_cost(key) + data, data),
        }
    }

    fn append(&mut self, key: ChunkKey, data: String, now: i64, l: &Limits) {
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
                .min_by_key(|(_, (_, updated))| *updated)
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
        let updated = self.stamp(now);
        let held = self.buffers.get(&key).map_or(0, |(b, _)| *b) + data.len();
        self.buffers.insert(key.clone(), (held, updated));
        self.writes.push(Write::Append { key, data, updated });
    }
}

/// The reassembly state a message is read against (read only).
pub trait ChunkView: Sync {
    /// Where the object of `key` stands.
    fn pending(&self, key: &ChunkKey) -> Pending;
    /// The whole object of `key`: its buffered chunks followed by `last` (read only: the
    /// buffer goes only with [`ChunkOp::Finish`], once the message is stored, so a
    /// message that cannot be stored and is sent again still finds it). `None` without
    /// a live buffer or over the object bound.
    fn whole(&self, key: &ChunkKey, last: &str) -> Option<String>;
    /// Whether adding `len` bytes to the object of `key` stays within the bounds.
    fn fits(&self, key: &ChunkKey, len: usize) -> bool;
    /// Largest object reassembled, in bytes.
    fn object_limit(&self) -> usize;
}

/// `buffered` followed by `last`, if the buffer is live and the whole fits the bound.
fn joined(pending: Pending, buffered: Option<&String>, last: &str, l: &Limits) -> Option<String> {
    let Pending::Buffered(_) = pending else {
        return None;
    };
    let data = buffered?;
    if data.len() + last.len() > l.object {
        return None;
    }
    let mut whole = String::with_capacity(data.len() + last.len());
    whole.push_str(data);
    whole.push_str(last);
    Some(whole)
}

/// One device's stored objects as read before its message: every object's size, and
/// the data of the objects the message may complete.
#[derive(Debug, Default)]
pub struct Snapshot {
    ledger: Ledger,
    data: HashMap<ChunkKey, String>,
    limits: Limits,
    now: i64,
}

impl Snapshot {
    /// The device's objects (`entries`) and the data of those the message may complete,
    /// read at `now` (microseconds).
    pub fn new(entries: Vec<Entry>, data: HashMap<ChunkKey, String>, now: i64) -> Self {
        Snapshot {
            ledger: Ledger::load(entries),
            data,
            limits: Limits::default(),
            now,
        }
    }

    /// Bytes the device holds (as counted against the bounds).
    pub fn held(&self, device_id: &str) -> usize {
        self.ledger.held(device_id).1
    }
}

impl ChunkView for Snapshot {
    fn pending(&self, key: &ChunkKey) -> Pending {
        self.ledger.pending(key, self.now, &self.limits)
    }

    fn whole(&self, key: &ChunkKey, last: &str) -> Option<String> {
        joined(self.pending(key), self.data.get(key), last, &self.limits)
    }

    fn fits(&self, key: &ChunkKey, len: usize) -> bool {
        self.ledger.fits(key, len, &self.limits)
    }

    fn object_limit(&self) -> usize {
        self.limits.object
    }
}

/// Whether the message carries a chunk with `MoreData` (its objects must be read first).
pub fn sends_chunks(msg: &crate::syncml::ClientMessage) -> bool {
    msg.commands.iter().any(|cmd| {
        cmd.kind() == Some(crate::model::Verb::Results)
            && cmd.cmd_ref.is_some()
            && cmd.result_items().iter().any(|i| i.more_data)
    })
}

/// The keys of the objects a message's Results may complete (no `MoreData`): the
/// snapshot loads their data. `None` when the message has no Results to read against
/// the objects at all.
pub fn keys_to_read(msg: &crate::syncml::ClientMessage, device_id: &str) -> Option<Vec<ChunkKey>> {
    let mut any = false;
    let mut keys = Vec::new();
    for cmd in &msg.commands {
        let Some(cmd_ref) = cmd.cmd_ref.as_deref() else {
            continue;
        };
        if cmd.kind() != Some(crate::model::Verb::Results) {
            continue;
        }
        any = true;
        let items = cmd.result_items();
        if items.iter().any(|i| i.more_data) {
            continue;
        }
        if let Some(item) = items.first() {
            let key = ChunkKey::new(device_id, cmd_ref, item.loc_uri.as_str());
            if key_acceptable(&key) {
                keys.push(key);
            }
        }
    }
    any.then_some(keys)
}

/// The large objects being reassembled, in memory (one process): the same ledger, with
/// the data beside it.
#[derive(Default)]
pub struct Reassembly {
    limits: Limits,
    state: Mutex<(Ledger, HashMap<ChunkKey, String>)>,
}

/// Microseconds since the Unix epoch.
pub fn micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Reassembly {
    pub fn with_limits(limits: Limits) -> Self {
        Reassembly {
            limits,
            state: Mutex::default(),
        }
    }

    /// Applies the changes of a stored message.
    pub fn apply(&self, ops: Vec<ChunkOp>) {
        self.apply_at(ops, micros_now());
    }

    fn apply_at(&self, ops: Vec<ChunkOp>, now: i64) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let (ledger, data) = &mut *s;
        for w in ledger.apply(ops, now, &self.limits) {
            match w {
                Write::Append { key, data: d, .. } => data.entry(key).or_default().push_str(&d),
                Write::Delete(key) | Write::Tombstone { key, .. } => {
                    data.remove(&key);
                }
            }
        }
    }

    /// Bytes held (as counted against the bounds): in all, and for one device.
    pub fn held(&self, device_id: &str) -> (usize, usize) {
        self.state
            .lock()
            .map(|s| s.0.held(device_id))
            .unwrap_or((0, 0))
    }
}

impl ChunkView for Reassembly {
    fn pending(&self, key: &ChunkKey) -> Pending {
        let Ok(s) = self.state.lock() else {
            return Pending::Refused;
        };
        s.0.pending(key, micros_now(), &self.limits)
    }

    fn whole(&self, key: &ChunkKey, last: &str) -> Option<String> {
        let s = self.state.lock().ok()?;
        let pending = s.0.pending(key, micros_now(), &self.limits);
        joined(pending, s.1.get(key), last, &self.limits)
    }

    fn fits(&self, key: &ChunkKey, len: usize) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| s.0.fits(key, len, &self.limits))
    }

    fn object_limit(&self) -> usize {
        self.limits.object
    }
}

#[cfg(test)]
mod tests;
