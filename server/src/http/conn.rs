//! Limits on HTTPS connections: a cap on connections open at once, a deadline for a
//! request's headers, a deadline for keep-alive connections idle between requests, and
//! logging of these refusals at most once a minute per peer address.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for
//! its next request (it starts whenever hyper waits for a request head), so it cannot
//! tell a slow header from an idle connection; the [`Activity`] watchdog below keeps the
//! two deadlines apart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The two deadlines of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From a request's first byte (or from the TLS handshake, for the first request)
    /// to the end of its headers; also bounds the TLS handshake.
    pub header_read: Duration,
    /// Between the end of a response and the first byte of the next request.
    pub idle: Duration,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request's headers did not arrive in time (a slow or stalled client).
    HeaderRead,
    /// The connection stayed idle between requests too long (normal for keep-alive).
    Idle,
}

/// What a connection is doing, updated by its reads and writes and by its requests.
/// Times are milliseconds since the connection started, plus one (0: not set).
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Requests handed to the router and not answered yet.
    in_flight: AtomicUsize,
    /// First byte read since the last response (a request head is arriving).
    reading_since: AtomicU64,
    /// End of the last response, or the last byte written since.
    last_done: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            // The first request's deadline runs from the handshake.
            reading_since: AtomicU64::new(1),
            last_done: AtomicU64::new(1),
        }
    }
}

impl Activity {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.reading_since.compare_exchange(
                0,
                self.now(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn on_write(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            self.last_done.store(self.now(), Ordering::Release);
        }
    }

    /// A request's headers are complete: it goes to the router. The guard marks it
    /// answered when dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.reading_since.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    /// Whether a deadline has passed; otherwise how long until the next check (a deadline
    /// is thus noticed at most the shorter of the two durations late).
    pub fn check(&self, d: Deadlines) -> Result<Duration, Expired> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Ok(d.header_read.min(d.idle));
        }
        let now = self.now();
        let (since, limit, expired) = match self.reading_since.load(Ordering::Acquire) {
            0 => (
                self.last_done.load(Ordering::Acquire),
                d.idle,
                Expired::Idle,
            ),
            t => (t, d.header_read, Expired::HeaderRead),
        };
        let deadline = since.saturating_add(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX));
        if now >= deadline {
            Err(expired)
        } else {
            // The state may change meanwhile (a request ends, the next one starts), moving
            // the deadline earlier: check again at least this often.
            Ok(Duration::from_millis(deadline - now).min(d.header_read.min(d.idle)))
        }
    }

    /// Resolves when a deadline passes (the caller then drops the connection).
    pub async fn expired(&self, d: Deadlines) -> Expired {
        loop {
            match self.check(d) {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(e) => return e,
            }
        }
    }
}

/// A request being answered; see [`Activity::request`].
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.reading_since.store(0, Ordering::Release);
        a.last_done.store(a.now(), Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream that reports its reads and writes to an [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Peer addresses remembered by [`PeerLog`]; past this, addresses not seen in the
/// window are forgotten, and if all are recent, new ones are not logged.
const PEER_LOG_CAP: usize = 4096;

/// Rate limit for log lines about a peer: one per address per window, so that a client
/// opening thousands of connections does not flood the log.
pub struct PeerLog {
    window: Duration,
    seen: Mutex<HashMap<IpAddr, Instant>>,
}

impl Default for PeerLog {
    fn default() -> Self {
        PeerLog {
            window: Duration::from_secs(60),
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl PeerLog {
    /// Whether to log an event for `ip` now (true at most once per window).
    pub fn first_in_window(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen
            .get(&ip)
            .is_some_and(|t| now.duration_since(*t) < self.window)
        {
            return false;
        }
        if seen.len() >= PEER_LOG_CAP {
            seen.retain(|_, t| now.duration_since(*t) < self.window);
            if seen.len() >= PEER_LOG_CAP {
                return false;
            }
        }
        seen.insert(ip, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Deadlines = Deadlines {
        header_read: Duration::from_secs(30),
        idle: Duration::from_secs(120),
    };

    #[test]
    fn deadlines_follow_the_connection_state() {
        let a = Arc::new(Activity::default());
        // Before the first request: the header deadline, from the handshake.
        assert!(a.check(D).is_ok_and(|w| w <= D.header_read));
        // A connection that started 200 s ago and never sent its headers.
        let a = Activity {
            started: Instant::now()
                .checked_sub(Duration::from_secs(200))
                .expect("uptime"),
            ..Activity::default()
        };
        assert_eq!(a.check(D), Err(Expired::HeaderRead));
        let a = Arc::new(a);
        // A request in flight is never timed out.
        let guard = a.request();
        assert!(a.check(D).is_ok());
        drop(guard);
        // Answered just now: idle, with the idle deadline ahead.
        assert!(a.check(D).is_ok());
        assert_eq!(a.reading_since.load(Ordering::Acquire), 0);
        // A byte of the next request switches to the header deadline.
        a.on_read();
        assert!(a.check(D).is_ok_and(|w| w <= D.header_read));
    }

    #[test]
    fn peers_are_logged_once_per_window() {
        let log = PeerLog::default();
        let ip: IpAddr = [192, 0, 2, 1].into();
        assert!(log.first_in_window(ip));
        assert!(!log.first_in_window(ip));
        assert!(log.first_in_window([192, 0, 2, 2].into()));
        for i in 0..PEER_LOG_CAP as u32 {
            log.first_in_window(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        assert!(log.seen.lock().map(|m| m.len()).unwrap_or(0) <= PEER_LOG_CAP);
    }
}
