//! A cap on how many client connections are open, in all and per source
//! address. When a cap is reached, the connection that has waited longest
//! for its client — idle between requests, or trickling a head or a body
//! (`intake`) — is shed to make room; with none waiting, the new connection
//! is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The caps in force, read from the snapshot for each new connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
}

/// Open connections, and which of them wait on their client.
#[derive(Default)]
pub struct Conns {
    state: Mutex<State>,
    next: AtomicU64,
    /// Orders the moments connections began to wait (oldest: smallest).
    seq: AtomicU64,
}

#[derive(Default)]
struct State {
    open: usize,
    per_address: HashMap<IpAddr, usize>,
    slots: HashMap<u64, Arc<Slot>>,
}

/// What the shedder sees of one connection.
struct Slot {
    addr: Option<IpAddr>,
    /// When it began to wait on its client (`Conns::seq`); `BUSY` if not.
    since: AtomicU64,
    shed: Notify,
}

const BUSY: u64 = u64::MAX;

/// One open connection; counted until it drops.
pub struct Ticket<'a> {
    conns: &'a Conns,
    id: u64,
    slot: Arc<Slot>,
}

impl Drop for Ticket<'_> {
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

impl Ticket<'_> {
    /// Mark the connection as waiting on its client (a candidate to shed)
    /// from now, or as busy. No lock: one atomic store.
    pub fn waiting(&self, waiting: bool) {
        let since = if waiting {
            self.conns.seq.fetch_add(1, Ordering::Relaxed)
        } else {
            BUSY
        };
        self.slot.since.store(since, Ordering::Relaxed);
    }

    /// Resolves once the connection is chosen to be shed.
    pub async fn shed(&self) {
        self.slot.shed.notified().await
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

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a new connection from `addr`, shedding the longest-waiting
    /// one where a cap is reached.
    pub fn open(&self, addr: Option<IpAddr>, limits: &ConnLimits) -> Result<Ticket<'_>, Closed> {
        let mut s = self.lock();
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
            victim.shed.notify_one();
        }
        s.open += 1;
        if let Some(a) = addr {
            *s.per_address.entry(a).or_default() += 1;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            addr,
            since: AtomicU64::new(self.seq.fetch_add(1, Ordering::Relaxed)),
            shed: Notify::new(),
        });
        s.slots.insert(id, slot.clone());
        Ok(Ticket {
            conns: self,
            id,
            slot,
        })
    }

    /// Connections open now.
    pub fn open_count(&self) -> usize {
        self.lock().open
    }

    /// Connections open, and of those waiting on their client, now.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
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
        assert!(first.shed().now_or_never_is_ready());
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
        assert!(conns.lock().per_address.is_empty());
    }

    trait Ready {
        fn now_or_never_is_ready(self) -> bool;
    }

    impl<F: std::future::Future> Ready for F {
        fn now_or_never_is_ready(self) -> bool {
            use futures::FutureExt;
            self.now_or_never().is_some()
        }
    }
}
