//! Idle HTTP/1.1 upstream connections of the gateway's own client (`h1`),
//! kept for the next model call or tool exchange to the same upstream.
//!
//! A stack per upstream and proxy thread, most recently used on top, behind
//! one short lock; nothing runs per connection while it waits. Each proxy
//! thread runs its own event loop and a connection's readiness comes from
//! the loop it was opened on, so a thread takes back only what it released
//! (handed to another thread, every read of it would cross threads). A
//! connection is checked when it is taken (closed by the upstream, or sent
//! bytes nobody asked for: dropped), and the reloader's periodic tick
//! closes the ones that outlived their idle timeout or that the upstream
//! closed meanwhile. Pingora's pool spawns a watching task per released
//! connection and looks up the socket's peer on every reuse; this costs
//! neither.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use sluice_config::locks::Recover;
use tokio::io::{AsyncRead, ReadBuf};

/// Most idle connections kept per upstream and thread; the oldest goes first.
pub const PER_UPSTREAM: usize = 128;

/// An upstream (the peer's reuse hash) and the thread that released to it.
type Key = (u64, u64);

#[derive(Default)]
pub struct IdlePool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

/// This thread's number, for the pool's keys.
fn thread_slot() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local!(static SLOT: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    SLOT.with(|s| *s)
}

struct Idle {
    stream: Stream,
    until: Instant,
}

impl IdlePool {
    /// An idle connection for `key` (the peer's reuse hash) that this
    /// thread released, if one is still good. Expired and closed ones met
    /// on the way are dropped.
    pub fn take(&self, key: u64) -> Option<Stream> {
        let key = (key, thread_slot());
        loop {
            let mut idle = self.lock().get_mut(&key)?.pop()?;
            if idle.until > Instant::now() && still_idle(&mut idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    /// Keep `stream` for `key` for up to `timeout` (zero: close it now).
    pub fn put(&self, key: u64, mut stream: Stream, timeout: Duration) {
        if timeout.is_zero() || !still_idle(&mut stream) {
            return;
        }
        let until = Instant::now() + timeout;
        let mut idle = self.lock();
        let stack = idle.entry((key, thread_slot())).or_default();
        if stack.len() >= PER_UPSTREAM {
            stack.remove(0);
        }
        stack.push(Idle { stream, until });
    }

    /// Close the connections past their idle timeout or closed by their
    /// upstream. Called now and then, so none outlives its timeout long.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    /// `sweep` as of `now`.
    fn sweep_at(&self, now: Instant) {
        let mut idle = self.lock();
        for stack in idle.values_mut() {
            stack.retain_mut(|i| i.until > now && still_idle(&mut i.stream));
        }
        idle.retain(|_, stack| !stack.is_empty());
    }

    /// Idle connections kept, all upstreams together.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Idle>>> {
        // Nothing can be left half-done under this lock: a panic elsewhere
        // does not make the map unusable.
        self.idle.lock().recover()
    }
}

/// Whether a connection is idle as it should be: nothing to read, not
/// closed. An upstream never speaks first on an idle HTTP/1.1 connection,
/// so bytes or an end here mean the connection is of no more use.
fn still_idle(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::protocols::l4::stream::Stream as L4Stream;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the pool's end as Pingora's `Stream`, and the
    /// upstream's end.
    async fn pair() -> (Stream, TcpStream) {
        let (ours, theirs) = raw_pair().await;
        (Box::new(L4Stream::from(ours)), theirs)
    }

    async fn raw_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (theirs, _) = l.accept().await.unwrap();
        (ours, theirs)
    }

    #[tokio::test]
    async fn gives_back_the_most_recent_connection_that_is_still_good() {
        let pool = IdlePool::default();
        let (a, _a_up) = pair().await;
        let (b, _b_up) = pair().await;
        let (a_id, b_id) = (a.id(), b.id());
        pool.put(1, a, Duration::from_secs(60));
        pool.put(1, b, Duration::from_secs(60));
        assert!(
            pool.take(2).is_none(),
            "another upstream's connections are not shared"
        );
        assert_eq!(pool.take(1).map(|s| s.id()), Some(b_id));
        assert_eq!(pool.take(1).map(|s| s.id()), Some(a_id));
        assert!(pool.take(1).is_none());
    }

    #[tokio::test]
    async fn a_thread_takes_back_only_what_it_released() {
        let pool = std::sync::Arc::new(IdlePool::default());
        let (s, _up) = pair().await;
        pool.put(1, s, Duration::from_secs(60));
        let other = pool.clone();
        let taken = std::thread::spawn(move || other.take(1).is_some())
            .join()
            .unwrap();
        assert!(!taken, "another thread's event loop would have to carry it");
        assert!(pool.take(1).is_some());
    }

    #[tokio::test]
    async fn drops_what_the_upstream_closed_or_wrote_to() {
        let pool = IdlePool::default();
        let (good, _good_up) = pair().await;
        let good_id = good.id();
        pool.put(1, good, Duration::from_secs(60));
        // Two that went bad while they waited in the pool, on top of it:
        // one the upstream closed, one it wrote to.
        let (closed, closed_up) = raw_pair().await;
        let (chatty, mut chatty_up) = raw_pair().await;
        drop(closed_up);
        chatty_up.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        for s in [closed, chatty] {
            s.readable().await.unwrap();
            let until = Instant::now() + Duration::from_secs(60);
            pool.lock()
                .entry((1, thread_slot()))
                .or_default()
                .push(Idle {
                    stream: Box::new(L4Stream::from(s)),
                    until,
                });
        }
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.take(1).map(|s| s.id()), Some(good_id));
        assert!(pool.is_empty(), "the two bad ones were dropped on the way");
    }

    #[tokio::test]
    async fn closes_what_outlived_its_idle_timeout() {
        let pool = IdlePool::default();
        let (short, mut short_up) = pair().await;
        let (long, _long_up) = pair().await;
        pool.put(1, short, Duration::from_millis(20));
        pool.put(2, long, Duration::from_secs(60));
        pool.put(3, pair().await.0, Duration::ZERO);
        assert_eq!(pool.len(), 2, "a zero timeout keeps nothing");
        pool.sweep();
        assert_eq!(pool.len(), 2, "neither has expired yet");
        // The sweep as the clock will read once the short timeout is past.
        pool.sweep_at(Instant::now() + Duration::from_millis(50));
        assert_eq!(pool.len(), 1);
        // The upstream sees the expired connection closed.
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut short_up, &mut rest)
            .await
            .unwrap();
        assert!(rest.is_empty());
        assert!(pool.take(1).is_none());
        assert!(pool.take(2).is_some());
    }

    #[tokio::test]
    async fn keeps_at_most_its_bound_per_upstream() {
        let pool = IdlePool::default();
        let mut ups = Vec::new();
        let mut first = None;
        for _ in 0..=PER_UPSTREAM {
            let (s, up) = pair().await;
            first.get_or_insert(s.id());
            ups.push(up);
            pool.put(7, s, Duration::from_secs(60));
        }
        assert_eq!(pool.len(), PER_UPSTREAM);
        let mut ids = Vec::new();
        while let Some(s) = pool.take(7) {
            ids.push(s.id());
        }
        assert!(!ids.contains(&first.unwrap()), "the oldest went first");
    }
}
