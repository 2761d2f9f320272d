//! In-memory record of which queued commands went out in each OMA-DM session, so a
//! command the device has not yet answered is not sent twice within one session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// (DeviceID, SessionID).
pub type SessionKey = (String, String);

/// Sessions idle longer than this are forgotten.
const SESSION_TTL: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<SessionKey, (Instant, Vec<String>)>>,
}

impl Sessions {
    /// Command UUIDs already sent in this session.
    pub fn sent_in(&self, key: &SessionKey) -> Vec<String> {
        let Ok(map) = self.inner.lock() else { return Vec::new() };
        map.get(key).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// Records commands sent in this session and forgets stale sessions.
    pub fn record_sent(&self, key: SessionKey, ids: &[String]) {
        let Ok(mut map) = self.inner.lock() else { return };
        let now = Instant::now();
        map.retain(|_, (t, _)| now.duration_since(*t) < SESSION_TTL);
        let entry = map.entry(key).or_insert_with(|| (now, Vec::new()));
        entry.0 = now;
        entry.1.extend_from_slice(ids);
    }
}
