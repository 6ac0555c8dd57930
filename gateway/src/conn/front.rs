//! The proxy service as Pingora runs it. Each client connection is counted
//! against the connection caps (`conns`); on an HTTP/1.1 connection
//! (cleartext or TLS) every request's head and body start are read by the
//! gateway (`intake`) before Pingora's session for that one request is
//! made, so the keep-alive loop Pingora would run is run here. HTTP/2
//! connections go to Pingora's `HttpProxy` whole. A connection whose held
//! stream `detach` served comes back here (`come_back`) for its next request.

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use super::conns::{ConnLimits, Ticket};
use super::intake::{self, IntakeLimits, Read, Turn};
use crate::state::Shared;

/// How long Pingora keeps a connection alive between requests, seconds
/// (`intake` waits for the next request as long).
const KEEPALIVE_SECS: u64 = intake::KEEPALIVE_IDLE.as_secs();

/// The front service and its shutdown watch, for a connection that comes
/// back after its stream.
#[derive(Clone)]
pub struct Reentry {
    pub(crate) front: Weak<dyn ComeBack>,
    pub(crate) shutdown: ShutdownWatch,
}

/// Filled when the first connection arrives.
pub type ReentrySlot = Arc<OnceLock<Reentry>>;

/// The way back into the front service's keep-alive loop.
#[async_trait]
pub(crate) trait ComeBack: Send + Sync {
    /// A connection whose held stream ended cleanly, for its next request,
    /// with the ticket it kept (or counted afresh).
    async fn come_back(
        self: Arc<Self>,
        stream: Stream,
        ticket: Option<Arc<Ticket>>,
        shutdown: &ShutdownWatch,
    );
}

tokio::task_local! {
    /// The connection's ticket while Pingora serves one of its requests: a
    /// stream that leaves Pingora's session takes it along (`detach`), so
    /// the connection stays counted against the caps.
    static CONNECTION: Arc<Ticket>;
}

/// The ticket of the connection whose request is being served, if any.
pub(crate) fn current_connection() -> Option<Arc<Ticket>> {
    CONNECTION.try_with(Arc::clone).ok()
}

/// `A` is Pingora's HTTP application (the gateway's `HttpProxy`).
pub struct Front<A> {
    proxy: Arc<A>,
    reentry: ReentrySlot,
    shared: Arc<Shared>,
}

impl<A: HttpServerApp + Send + Sync + 'static> Front<A> {
    pub fn new(proxy: A, reentry: ReentrySlot, shared: Arc<Shared>) -> Self {
        Front {
            proxy: Arc::new(proxy),
            reentry,
            shared,
        }
    }

    fn conn_limits(&self) -> ConnLimits {
        let h = &self.shared.current().snapshot.head_limits;
        ConnLimits {
            max_connections: h.max_connections as usize,
            max_per_address: h.max_connections_per_address as usize,
        }
    }

    /// Read for each request: a reload applies to the next one.
    fn intake_limits(&self) -> IntakeLimits {
        let snap = &self.shared.current().snapshot;
        IntakeLimits {
            head_timeout: snap.head_limits.head_timeout,
            max_head_bytes: snap.head_limits.head as usize,
            body_read_timeout: snap.client_read_timeout,
            max_bodies_held: snap.max_body_bytes_held,
        }
    }

    /// Count the connection, or refuse it at a cap.
    fn admit(&self, stream: &Stream, limits: &ConnLimits) -> Option<Arc<Ticket>> {
        let addr = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        match self.shared.conns.open(addr, limits) {
            Ok(t) => Some(Arc::new(t)),
            Err(why) => {
                self.shared
                    .metrics
                    .connections_closed
                    .with_label_values(&[why.as_label()])
                    .inc();
                tracing::warn!(reason = why.as_label(), "client connection refused");
                None
            }
        }
    }

    /// Serve requests on the connection until it closes: each one read by
    /// `intake`, then served by Pingora in a session of its own.
    async fn serve(
        self: &Arc<Self>,
        mut stream: Stream,
        mut turn: Turn,
        ticket: Arc<Ticket>,
        shutdown: &ShutdownWatch,
    ) {
        let mut settings: Option<HttpPersistentSettings> = None;
        loop {
            let limits = self.intake_limits();
            let metrics = &self.shared.metrics;
            stream = match intake::next_request(stream, turn, &ticket, &limits, metrics).await {
                Ok(Read::H1(s)) => s,
                Ok(Read::Other(s)) => {
                    // HTTP/2: Pingora's own connection loop.
                    let _ = self.proxy.process_new(s, shutdown).await;
                    return;
                }
                Err(_) => return,
            };
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => {
                    let keepalive = (!*shutdown.borrow()).then_some(KEEPALIVE_SECS);
                    session.set_keepalive(keepalive);
                    session.set_keepalive_reuses_remaining(
                        self.proxy
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            let served = self.proxy.process_new_http(session, shutdown);
            let Some(reused) = CONNECTION.scope(ticket.clone(), served).await else {
                return;
            };
            (stream, settings) = reused.consume();
            turn = Turn::Next;
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ComeBack for Front<A> {
    async fn come_back(
        self: Arc<Self>,
        stream: Stream,
        ticket: Option<Arc<Ticket>>,
        shutdown: &ShutdownWatch,
    ) {
        let ticket = match ticket {
            Some(t) => t,
            None => {
                let Some(t) = self.admit(&stream, &self.conn_limits()) else {
                    return;
                };
                t
            }
        };
        self.serve(stream, Turn::Next, ticket, shutdown).await;
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Front<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.reentry.get_or_init(|| Reentry {
            front: Arc::downgrade(self) as Weak<dyn ComeBack>,
            shutdown: shutdown.clone(),
        });
        let ticket = self.admit(&stream, &self.conn_limits())?;
        self.serve(stream, Turn::First, ticket, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await
    }
}
