//! Client connections before Pingora reads them: a cap on how many are open
//! (in all, and per source address), and one deadline for a connection's
//! first request head — or, for cleartext HTTP/2, its preface and first
//! frame — however slowly the bytes trickle in. Pingora times a head out
//! only per read (60 s, restarted by every byte) and buffers up to 1 MiB of
//! it: a slowloris holding thousands of half-sent heads cost memory and
//! descriptors until `accept` failed. Here the head is read into a buffer
//! capped at `limits.max_head_bytes`, then put back on the stream for
//! Pingora to parse as usual. When a cap is reached, the connection that has
//! waited longest for its first head is shed to make room; with none
//! waiting, the new connection is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// The caps in force, read from the snapshot for each new connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub head_timeout: Duration,
    pub max_head_bytes: usize,
}

/// Open connections, and those still waiting for their first head.
#[derive(Default)]
pub struct Conns {
    state: Mutex<State>,
    next: AtomicU64,
}

#[derive(Default)]
struct State {
    open: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Connections reading their first head: id, address, since, shed.
    waiting: Vec<(u64, Option<IpAddr>, Instant, Arc<Notify>)>,
}

/// One open connection; counted until it drops.
pub struct Ticket<'a> {
    conns: &'a Conns,
    id: u64,
    addr: Option<IpAddr>,
    shed: Arc<Notify>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut s = self.conns.lock();
        s.open = s.open.saturating_sub(1);
        if let Some(a) = self.addr {
            if let Some(n) = s.per_address.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    s.per_address.remove(&a);
                }
            }
        }
        s.waiting.retain(|w| w.0 != self.id);
    }
}

/// Why a connection was closed before Pingora saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// A cap was reached and no connection could be shed for it.
    Full,
    /// The first head did not arrive whole within the deadline.
    HeadTimeout,
    /// The first head passed `max_head_bytes`.
    HeadTooLarge,
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
            // The oldest waiting connection, of this address when its cap is
            // the one reached.
            let victim = s
                .waiting
                .iter()
                .filter(|w| !over_addr || w.1 == addr)
                .min_by_key(|w| w.2)
                .map(|w| w.0);
            let Some(victim) = victim else {
                return Err(Closed::Full);
            };
            if let Some(i) = s.waiting.iter().position(|w| w.0 == victim) {
                let (_, _, _, shed) = s.waiting.swap_remove(i);
                shed.notify_one();
            }
        }
        s.open += 1;
        if let Some(a) = addr {
            *s.per_address.entry(a).or_default() += 1;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let shed = Arc::new(Notify::new());
        s.waiting.push((id, addr, Instant::now(), shed.clone()));
        Ok(Ticket {
            conns: self,
            id,
            addr,
            shed,
        })
    }

    /// Connections open now.
    pub fn open_count(&self) -> usize {
        self.lock().open
    }
}

/// HTTP/2's connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Read the first head of `stream` under the deadline and size cap, and
/// put it back for Pingora. TLS streams (whose handshake Pingora has done
/// under its own timeout) pass unchanged.
pub async fn first_head(
    stream: Stream,
    ticket: &Ticket<'_>,
    limits: &ConnLimits,
    metrics: &Metrics,
) -> Result<Stream, Closed> {
    if stream.get_ssl_digest().is_some() || !stream.as_any().is::<L4Stream>() {
        ticket.conns.lock().waiting.retain(|w| w.0 != ticket.id);
        return Ok(stream);
    }
    let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
        return Err(Closed::Gone);
    };
    let deadline = tokio::time::Instant::now() + limits.head_timeout;
    let mut buf = BytesMut::with_capacity(1024);
    let outcome = loop {
        if let Some(done) = head_complete(&buf) {
            break done;
        }
        if buf.len() > limits.max_head_bytes {
            break Err(Closed::HeadTooLarge);
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.capacity().min(limits.max_head_bytes));
        }
        tokio::select! {
            r = tokio::time::timeout_at(deadline, l4.read_buf(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => break Err(Closed::Gone),
                Ok(Ok(_)) => {}
                Err(_) => break Err(Closed::HeadTimeout),
            },
            () = ticket.shed.notified() => break Err(Closed::Shed),
        }
    };
    ticket.conns.lock().waiting.retain(|w| w.0 != ticket.id);
    if let Err(why) = outcome {
        let answer: &[u8] = match why {
            Closed::HeadTooLarge => {
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Closed::HeadTimeout => {
                b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            _ => b"",
        };
        // A cleartext HTTP/2 client would not read an HTTP/1.1 answer.
        if !answer.is_empty() && !buf.starts_with(&H2_PREFACE[..buf.len().min(H2_PREFACE.len())]) {
            let _ = tokio::time::timeout(Duration::from_secs(1), l4.write_all(answer)).await;
        }
        metrics
            .connections_closed
            .with_label_values(&[why.as_label()])
            .inc();
        tracing::info!(
            reason = why.as_label(),
            "client connection closed before its first request"
        );
        return Err(why);
    }
    l4.rewind(&buf);
    Ok(l4)
}

/// `Some(Ok(()))` once `buf` holds a whole first head: an HTTP/1 request
/// head through its blank line, or the HTTP/2 preface and a whole first
/// frame (the client's SETTINGS).
fn head_complete(buf: &[u8]) -> Option<Result<(), Closed>> {
    let n = buf.len().min(H2_PREFACE.len());
    if n > 0 && buf[..n] == H2_PREFACE[..n] {
        let frame = buf.get(H2_PREFACE.len()..)?;
        let header = frame.get(..9)?;
        let len =
            (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
        return (frame.len() >= 9 + len).then_some(Ok(()));
    }
    if memchr::memmem::find(buf, b"\r\n\r\n").is_some()
        || memchr::memmem::find(buf, b"\n\n").is_some()
    {
        return Some(Ok(()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_per_address: usize) -> ConnLimits {
        ConnLimits {
            max_connections,
            max_per_address,
            head_timeout: Duration::from_secs(10),
            max_head_bytes: 32768,
        }
    }

    #[test]
    fn heads_are_whole_at_their_blank_line_or_first_frame() {
        assert_eq!(head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(
            head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Ok(()))
        );
        assert_eq!(head_complete(b"GET / HTTP/1.1\nHost: a\n\n"), Some(Ok(())));
        assert_eq!(head_complete(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(head_complete(H2_PREFACE), None);
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0]);
        assert_eq!(head_complete(&h2), None, "the frame's payload is missing");
        h2.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        assert_eq!(head_complete(&h2), Some(Ok(())));
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
        assert!(first.shed.notified().now_or_never_is_ready());
        drop(first);
        assert_eq!(conns.open_count(), 2);
        // Past the whole cap, with every connection busy (not waiting): full.
        conns.lock().waiting.clear();
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
