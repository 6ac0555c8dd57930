//! Assembly of the Pingora server: the proxy service on the snapshot's
//! listeners (plain or TLS, HTTP/1.1 and HTTP/2), the admin service, the
//! reloader, and the shutdown grace period.

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::GenBackgroundService;
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::proxy::Gateway;
use crate::reload::{Reloader, Source};
use crate::state::{Runtime, Shared};
use crate::tls::ReloadingCert;

pub struct Options {
    pub source: Source,
    pub threads: usize,
    pub upgrade: bool,
    pub control: Option<Arc<crate::control::ControlClient>>,
    /// How long to wait for control at start when no config is kept.
    pub control_wait: std::time::Duration,
    /// Listeners moved from where the config says (`--bind`).
    pub binds: crate::binds::Binds,
}

/// Events waiting for control, at most.
const SHIP_BACKLOG: usize = 100_000;

/// Load the first snapshot and build the server; `run_forever` it next.
pub fn build(opts: Options) -> anyhow::Result<Server> {
    // The first snapshot decides the listeners, so load it before building.
    // From control: the kept copy, or (first start) control itself.
    let text = match (&opts.source, opts.source.read()) {
        (_, Ok(t)) => t,
        (Source::Control(c), Err(_)) => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(crate::control::sync::bootstrap(c, opts.control_wait))?
                .yaml
        }
        (_, Err(e)) => return Err(e.into()),
    };
    let mut first = sluice_config::load(&text, 1)?;
    opts.binds.apply(&mut first)?;
    let metrics = crate::metrics::Metrics::new();
    let file = match &first.audit.file {
        Some(path) => Some(
            crate::audit::JsonlFileSink::new(
                path,
                first.audit.max_file_bytes,
                first.audit.keep_files as usize,
            )
            .map_err(|e| anyhow::anyhow!("audit.file: {e}"))?,
        ),
        None => None,
    };
    // With control, events wait for it in a spool under the state
    // directory; the chain goes on from the last event spooled.
    let mut chain = crate::audit::Chain::fresh();
    let ship = match &opts.control {
        None => None,
        Some(c) => {
            let dir = c.state_dir.join("audit-spool");
            let dropped = metrics.audit_ship_dropped.clone();
            let (spool, recovered) =
                crate::control::spool::Spool::open(&dir, first.audit.spool, dropped)
                    .map_err(|e| anyhow::anyhow!("audit spool {}: {e}", dir.display()))?;
            if let Some((id, seq, hash)) = recovered.head {
                chain = crate::audit::Chain::resume(id, seq, hash);
            }
            Some(crate::control::ship::Backlog::with_spool(
                SHIP_BACKLOG,
                &metrics,
                Some(spool),
                recovered.pending,
            ))
        }
    };
    let (audit, audit_writer) = if file.is_some() || ship.is_some() {
        let (tx, rx) = crate::audit::AuditQueue::with_drop_counter(
            first.audit.queue,
            metrics.audit_dropped.clone(),
        );
        let sinks = Sinks {
            file,
            ship: ship.clone().map(crate::control::ship::ShipSink),
            chain,
        };
        let writer = AuditWriter {
            rx: std::sync::Mutex::new(Some((rx, sinks))),
            grace: first.grace_period,
        };
        (Some(tx), Some(writer))
    } else {
        (None, None)
    };
    let signer = crate::identity::AssertionSigner::generate()
        .map_err(|e| anyhow::anyhow!("assertion key: {e}"))?;
    let access_log = match &first.access_log {
        Some(cfg) => Some(
            crate::access_log::AccessLog::open(cfg, metrics.access_log_dropped.clone())
                .map_err(|e| anyhow::anyhow!("access_log.file {}: {e}", cfg.file))?,
        ),
        None => None,
    };
    let tracer = match &first.traces {
        Some(cfg) => Some(
            crate::trace::Tracer::start(cfg, metrics.trace_spans.clone())
                .map_err(|e| anyhow::anyhow!("traces: {e}"))?,
        ),
        None => None,
    };
    let shared = Shared::new(
        Runtime::empty(first.clone()),
        signer,
        audit,
        metrics,
        opts.control.clone(),
    );
    if let Some(log) = access_log {
        let _ = shared.access_log.set(log);
    }
    if let Some(t) = tracer {
        let _ = shared.tracer.set(t);
    }

    let mut certs = Vec::new();
    for l in &first.listeners {
        if let Some(tls) = &l.tls {
            let cert = ReloadingCert::load(&tls.cert_file, &tls.key_file)
                .map_err(|e| anyhow::anyhow!("listener {}: {e}", l.name))?;
            certs.push((l.name.clone(), Arc::new(cert)));
        }
    }
    let reloader = Reloader::new(shared.clone(), opts.source)
        .with_certs(certs.clone())
        .with_binds(opts.binds);
    // Resolve upstreams and publish on a runtime of its own: Pingora's
    // runtimes do not exist yet.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(reloader.reload())?;

    let conf = ServerConf {
        threads: opts.threads.max(1),
        work_stealing: false,
        grace_period_seconds: Some(first.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: first.upgrade_sock.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    // Every client connection takes a descriptor: take all the process may.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let reentry = crate::conn::front::ReentrySlot::default();
    let gateway = Gateway {
        shared: shared.clone(),
        upstreams: crate::exchange::Upstreams::new(reentry.clone()),
    };
    let mut app = pingora::proxy::http_proxy(&server.configuration, gateway);
    let mut o = HttpServerOptions::default();
    o.h2c = first.listeners.iter().any(|l| l.http2 && l.tls.is_none());
    // Idle HTTP/2 connections close as idle HTTP/1.1 ones do.
    o.h2_idle_timeout = Some(std::time::Duration::from_secs(60));
    app.server_options = Some(o);
    let mut proxy = Service::new(
        "sluice".into(),
        crate::conn::front::Front::new(app, reentry, shared.clone()),
    );
    for l in &first.listeners {
        let addr = l.address.to_string();
        match certs.iter().find(|(n, _)| n == &l.name) {
            Some((_, cert)) => {
                let mut tls = TlsSettings::intermediate("", "")?;
                tls.set_cert_resolver(cert.clone());
                if let Some(ca) = l.tls.as_ref().and_then(|t| t.client_ca_file.as_deref()) {
                    let verifier = crate::tls::client_verifier(ca)
                        .map_err(|e| anyhow::anyhow!("listener {}: {e}", l.name))?;
                    tls.set_client_cert_verifier(verifier);
                }
                if l.http2 {
                    tls.enable_h2();
                }
                proxy.add_listener(listener_config(&addr).tls(tls));
            }
            None => proxy.add_listener(listener_config(&addr)),
        }
        tracing::info!(listener = %l.name, address = %addr, tls = l.tls.is_some(), "listening");
    }
    server.add_service(proxy);

    if let Some(admin_addr) = first.admin {
        let mut admin = Service::new(
            "sluice admin".into(),
            Admin {
                shared: shared.clone(),
            },
        );
        admin.add_tcp(&admin_addr.to_string());
        server.add_service(admin);
        tracing::info!(address = %admin_addr, "admin listening");
    }
    server.add_service(GenBackgroundService::new(
        "sluice reloader".into(),
        Arc::new(reloader),
    ));
    if let Some(w) = audit_writer {
        server.add_service(GenBackgroundService::new(
            "sluice audit".into(),
            Arc::new(w),
        ));
    }
    if let (Some(backlog), Some(client)) = (ship, opts.control) {
        server.add_service(GenBackgroundService::new(
            "sluice audit shipper".into(),
            Arc::new(Shipper {
                backlog,
                client,
                shipped: shared.metrics.audit_shipped.clone(),
                grace: first.grace_period,
            }),
        ));
    }
    if shared.tracer.get().is_some() {
        server.add_service(GenBackgroundService::new(
            "sluice traces".into(),
            Arc::new(TraceFlush {
                shared: shared.clone(),
                grace: first.grace_period,
            }),
        ));
    }
    Ok(server)
}

/// Every audit destination configured: the JSON Lines file and control.
struct Sinks {
    file: Option<crate::audit::JsonlFileSink>,
    ship: Option<crate::control::ship::ShipSink>,
    chain: crate::audit::Chain,
}

impl crate::audit::AuditSink for Sinks {
    fn stamp(&mut self, events: &mut [crate::audit::AuditEvent]) {
        for e in events {
            self.chain.stamp(e);
        }
    }

    fn write_batch(
        &mut self,
        events: &[crate::audit::AuditEvent],
    ) -> Result<(), crate::audit::AuditError> {
        // Control gets the batch even if the file write fails, and the
        // other way round; the first error is reported.
        let shipped = self.ship.as_mut().map_or(Ok(()), |s| s.write_batch(events));
        let written = self.file.as_mut().map_or(Ok(()), |f| f.write_batch(events));
        written.and(shipped)
    }

    fn flush(&mut self) -> Result<(), crate::audit::AuditError> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

/// Posts audit events to control, off the request path.
struct Shipper {
    backlog: Arc<crate::control::ship::Backlog>,
    client: Arc<crate::control::ControlClient>,
    shipped: prometheus::IntCounter,
    grace: std::time::Duration,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Shipper {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let grace = self.grace;
        crate::control::ship::run(
            self.backlog.clone(),
            self.client.clone(),
            self.shipped.clone(),
            async move {
                let _ = shutdown.changed().await;
                // Events of calls finishing in the grace period still go.
                tokio::time::sleep(grace).await;
            },
        )
        .await;
    }
}

/// On shutdown the spans still queued are exported before the process
/// ends: when the grace period is over, or when Pingora stops this
/// service's runtime first (a guard flushes as the task is dropped).
struct TraceFlush {
    shared: Arc<Shared>,
    grace: std::time::Duration,
}

/// Flushes the exporter when dropped, waiting up to 3 s (shutdown only).
struct FlushOnDrop(Arc<Shared>);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let flushed = self
            .0
            .tracer
            .get()
            .is_none_or(|t| t.flush(std::time::Duration::from_secs(3)));
        if !flushed {
            tracing::warn!("spans still queued at shutdown could not be exported in time");
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for TraceFlush {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let _flush = FlushOnDrop(self.shared.clone());
        let _ = shutdown.changed().await;
        tokio::time::sleep(self.grace).await;
    }
}

/// Drains the audit queue into its sink, off the request path. On shutdown
/// it keeps writing through the grace period, then flushes and stops.
struct AuditWriter {
    rx: std::sync::Mutex<Option<(crate::audit::AuditReceiver, Sinks)>>,
    grace: std::time::Duration,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for AuditWriter {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let taken = self.rx.lock().map(|mut g| g.take()).unwrap_or(None);
        let Some((rx, sink)) = taken else { return };
        let grace = self.grace;
        crate::audit::run_writer(rx, sink, async move {
            let _ = shutdown.changed().await;
            tokio::time::sleep(grace).await;
        })
        .await;
    }
}

/// Read buffer of each client connection: none. Pingora's default is a
/// 64 KiB buffer per connection, zero-filled and held as long as the
/// connection lives — for an idle SSE stream, memory that holds nothing.
/// Pingora reads request headers and bodies into buffers of its own, and TLS
/// into rustls's, so this layer only added a copy (measured: 141.7 → 126.0
/// KiB per idle stream against 16 KiB, the same instructions per request).
const CLIENT_READ_BUFFER: usize = 0;

fn listener_config(addr: &str) -> pingora::listeners::ListenerConfig {
    pingora::listeners::ListenerConfig::tcp(addr).l4_buffer(pingora::listeners::L4BufferSettings {
        read: Some(CLIENT_READ_BUFFER),
        write: None,
    })
}
