//! A device's TLS session store that counts the resumptions it offers, so that the
//! bench can tell how many of its new connections tried to resume.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

/// Sessions remembered per device (one server).
const SESSIONS: usize = 8;

/// rustls' in-memory store, counting every session it hands out for resumption.
#[derive(Debug)]
pub(super) struct CountingStore {
    inner: ClientSessionMemoryCache,
    offered: Arc<AtomicU64>,
}

impl CountingStore {
    pub(super) fn new(offered: Arc<AtomicU64>) -> Self {
        CountingStore {
            inner: ClientSessionMemoryCache::new(SESSIONS),
            offered,
        }
    }

    fn count<T>(&self, v: Option<T>) -> Option<T> {
        if v.is_some() {
            self.offered.fetch_add(1, Ordering::Relaxed);
        }
        v
    }
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }
    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server_name, value)
    }
    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.count(self.inner.tls12_session(server_name))
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }
    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(server_name, value)
    }
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.count(self.inner.take_tls13_ticket(server_name))
    }
}
