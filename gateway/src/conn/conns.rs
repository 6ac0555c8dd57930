//! A cap on how many client connections are open, in all and per source
//! address, and the signals that end a connection's wait on its client.
//! When a cap is reached, the connection that has waited longest for its
//! client — idle between requests, or trickling a head or a body
//! (`intake`) — is shed to make room; with none waiting, the new connection
//! is closed. Deadlines on those waits are kept here too: one reaper thread
//! checks them every `TICK` against a coarse clock and wakes the connection
//! whose deadline passed, so a wait costs no timer and no clock read.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use sluice_config::locks::Recover;

/// How often deadlines are checked (and the coarse clock advances).
const TICK: Duration = Duration::from_millis(50);

/// The caps in force, read from the snapshot for each new connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
}

/// Open connections, and which of them wait on their client.
pub struct Conns {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    next: AtomicU64,
    /// Orders the moments connections began to wait (oldest: smallest).
    seq: AtomicU64,
    /// Milliseconds since `epoch`, as of the last tick.
    now_ms: AtomicU64,
    epoch: Instant,
}

#[derive(Default)]
struct State {
    open: usize,
    per_address: HashMap<IpAddr, usize>,
    slots: HashMap<u64, Arc<Slot>>,
}

/// What the shedder and the reaper see of one connection.
struct Slot {
    addr: Option<IpAddr>,
    /// When it began to wait on its client (`Inner::seq`); `BUSY` if not.
    since: AtomicU64,
    /// When its wait ends (`Inner::now_ms`), `NO_DEADLINE`, or `TRIPPED`.
    deadline: AtomicU64,
    shed: AtomicBool,
    waker: AtomicWaker,
}

const BUSY: u64 = u64::MAX;
const NO_DEADLINE: u64 = u64::MAX;
const TRIPPED: u64 = u64::MAX - 1;

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// Chosen to make room for a newer connection.
    Shed,
    /// The deadline set for the wait passed.
    Deadline,
}

impl Default for Conns {
    fn default() -> Self {
        Self::new()
    }
}

impl Conns {
    /// No connections yet; the reaper thread runs while this lives.
    pub fn new() -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::default(),
            next: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            now_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let weak = Arc::downgrade(&inner);
        let spawned = std::thread::Builder::new()
            .name("sluice-conn-reaper".into())
            .spawn(move || reap(weak));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "connection deadline thread not started");
        }
        Conns { inner }
    }
}

/// Every `TICK`: advance the coarse clock, wake each connection whose
/// deadline passed. Ends when the `Conns` is dropped.
fn reap(conns: Weak<Inner>) {
    loop {
        std::thread::sleep(TICK);
        let Some(inner) = conns.upgrade() else {
            return;
        };
        let now = u64::try_from(inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX / 2);
        inner.now_ms.store(now, Ordering::Relaxed);
        inner.trip_due(now);
    }
}

impl Inner {
    /// Wake each connection whose deadline is at or before `now`.
    fn trip_due(&self, now: u64) {
        let s = self.lock();
        for slot in s.slots.values() {
            let d = slot.deadline.load(Ordering::Relaxed);
            // A deadline moved meanwhile is the new wait's: left alone.
            if d <= now
                && slot
                    .deadline
                    .compare_exchange(d, TRIPPED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                slot.waker.wake();
            }
        }
    }
}

/// One open connection; counted until it drops. It goes with the
/// connection wherever it is served (a held stream's task keeps it).
pub struct Ticket {
    conns: Arc<Inner>,
    id: u64,
    slot: Arc<Slot>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.conns.lock();
        s.open = s.open.saturating_sub(1);
        if let Some(a) = self.slot.addr {
            if let Some(n) = s.per_address.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    s.per_address.remove(&a);
                }
            }
        }
        s.slots.remove(&self.id);
    }
}

impl Ticket {
    /// Mark the connection as waiting on its client (a candidate to shed)
    /// from now, or as busy (and its deadline cleared). No lock, no clock:
    /// atomic stores.
    pub fn waiting(&self, waiting: bool) {
        let since = if waiting {
            self.conns.seq.fetch_add(1, Ordering::Relaxed)
        } else {
            self.slot.deadline.store(NO_DEADLINE, Ordering::Relaxed);
            BUSY
        };
        self.slot.since.store(since, Ordering::Relaxed);
    }

    /// The current wait ends `after` from now (to within a `TICK` or two);
    /// a deadline that passed during an earlier wait no longer counts.
    pub fn deadline_in(&self, after: Duration) {
        let now = self.conns.now_ms.load(Ordering::Relaxed);
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX / 4);
        self.slot
            .deadline
            .store(now.saturating_add(ms).min(TRIPPED - 1), Ordering::Relaxed);
    }

    /// Resolves when the connection is shed or its deadline passes.
    pub fn tripped(&self) -> Tripped<'_> {
        Tripped { slot: &self.slot }
    }
}

/// The future of `Ticket::tripped`.
pub struct Tripped<'a> {
    slot: &'a Slot,
}

impl Tripped<'_> {
    fn check(&self) -> Option<Trip> {
        if self.slot.shed.load(Ordering::Acquire) {
            Some(Trip::Shed)
        } else if self.slot.deadline.load(Ordering::Acquire) == TRIPPED {
            Some(Trip::Deadline)
        } else {
            None
        }
    }
}

impl Future for Tripped<'_> {
    type Output = Trip;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Trip> {
        if let Some(t) = self.check() {
            return Poll::Ready(t);
        }
        self.slot.waker.register(cx.waker());
        // Tripped between the check and the registration: seen now.
        match self.check() {
            Some(t) => Poll::Ready(t),
            None => Poll::Pending,
        }
    }
}

/// Why a connection was closed before Pingora saw its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// A cap was reached and no connection could be shed for it.
    Full,
    /// A head did not arrive whole within the deadline.
    HeadTimeout,
    /// A head passed `max_head_bytes`.
    HeadTooLarge,
    /// A body's next bytes did not come within the read timeout.
    BodyTimeout,
    /// Bodies held across the process reached `max_body_bytes_held`.
    BodiesFull,
    /// A kept-alive connection sent no next request in time.
    Idle,
    /// Shed to make room for a newer connection.
    Shed,
    /// The client went away or the read failed.
    Gone,
}

impl Closed {
    pub fn as_label(self) -> &'static str {
        match self {
            Closed::Full => "connections_full",
            Closed::HeadTimeout => "head_timeout",
            Closed::HeadTooLarge => "head_too_large",
            Closed::BodyTimeout => "body_timeout",
            Closed::BodiesFull => "bodies_full",
            Closed::Idle => "idle",
            Closed::Shed => "shed",
            Closed::Gone => "gone",
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().recover()
    }
}

impl Conns {
    /// Count a new connection from `addr`, shedding the longest-waiting
    /// one where a cap is reached.
    pub fn open(&self, addr: Option<IpAddr>, limits: &ConnLimits) -> Result<Ticket, Closed> {
        let inner = &*self.inner;
        let mut s = inner.lock();
        let from_addr = addr.map_or(0, |a| s.per_address.get(&a).copied().unwrap_or(0));
        let over_addr = addr.is_some() && from_addr >= limits.max_per_address;
        let over_all = s.open >= limits.max_connections;
        if over_addr || over_all {
            // The connection waiting longest, of this address when its cap
            // is the one reached.
            let victim = s
                .slots
                .values()
                .filter(|w| !over_addr || w.addr == addr)
                .map(|w| (w.since.load(Ordering::Relaxed), w))
                .filter(|(since, _)| *since != BUSY)
                .min_by_key(|(since, _)| *since)
                .map(|(_, w)| w.clone());
            let Some(victim) = victim else {
                return Err(Closed::Full);
            };
            victim.since.store(BUSY, Ordering::Relaxed);
            victim.shed.store(true, Ordering::Release);
            victim.waker.wake();
        }
        s.open += 1;
        if let Some(a) = addr {
            *s.per_address.entry(a).or_default() += 1;
        }
        let id = inner.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            addr,
            since: AtomicU64::new(inner.seq.fetch_add(1, Ordering::Relaxed)),
            deadline: AtomicU64::new(NO_DEADLINE),
            shed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        s.slots.insert(id, slot.clone());
        Ok(Ticket {
            conns: self.inner.clone(),
            id,
            slot,
        })
    }

    /// Connections open now.
    pub fn open_count(&self) -> usize {
        self.inner.lock().open
    }

    /// Connections open, and of those waiting on their client, now.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.inner.lock();
        let waiting = s
            .slots
            .values()
            .filter(|w| w.since.load(Ordering::Relaxed) != BUSY)
            .count();
        (s.open, waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn limits(max_connections: usize, max_per_address: usize) -> ConnLimits {
        ConnLimits {
            max_connections,
            max_per_address,
        }
    }

    #[test]
    fn a_full_cap_sheds_the_longest_waiting_connection() {
        let conns = Conns::default();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = conns.open(Some(a), &limits(10, 2)).expect("room");
        let second = conns.open(Some(a), &limits(10, 2)).expect("room");
        // A third from the same address sheds the oldest of that address.
        let third = conns.open(Some(a), &limits(10, 2)).expect("shed one");
        assert_eq!(first.tripped().now_or_never(), Some(Trip::Shed));
        // The shed one is no longer waiting; the others still are.
        assert_eq!(conns.counts(), (3, 2));
        drop(first);
        assert_eq!(conns.open_count(), 2);
        // Past the whole cap, with every connection busy (not waiting): full.
        second.waiting(false);
        third.waiting(false);
        assert_eq!(conns.counts(), (2, 0));
        assert!(matches!(
            conns.open(Some(b), &limits(2, 2)),
            Err(Closed::Full)
        ));
        drop((second, third));
        assert_eq!(conns.open_count(), 0);
        assert!(conns.inner.lock().per_address.is_empty());
    }

    #[test]
    fn a_wait_ends_at_its_deadline_and_a_new_wait_starts_afresh() {
        let conns = Conns::new();
        let t = conns.open(None, &limits(10, 10)).expect("room");
        // The reaper's pass, at a moment well past any deadline set here
        // (the coarse clock is where the reaper thread left it).
        let later = || conns.inner.now_ms.load(Ordering::Relaxed) + 10_000;
        assert_eq!(t.tripped().now_or_never(), None);
        t.deadline_in(Duration::from_millis(1));
        conns.inner.trip_due(later());
        assert_eq!(t.tripped().now_or_never(), Some(Trip::Deadline));
        // The next wait has its own deadline; the old trip is gone.
        t.deadline_in(Duration::from_secs(60));
        assert_eq!(t.tripped().now_or_never(), None);
        // Busy: no deadline at all, however late the pass.
        t.waiting(false);
        conns.inner.trip_due(u64::MAX / 2);
        assert_eq!(t.tripped().now_or_never(), None);
    }
}
