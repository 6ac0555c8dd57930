//! The exporter: a thread of its own takes finished requests' spans from
//! the bounded queue, batches them (`max_batch`, or whatever came within
//! `interval`) and sends them over OTLP — HTTP/protobuf with reqwest, or
//! gRPC over HTTP/2 with h2 (TLS for `https://`, verified against
//! `ca_file` or the system's roots). A batch the collector could not take
//! for a passing reason (away, overloaded: OTLP's retryable answers) is
//! kept and sent again with backoff, a few batches at most; one it refused
//! is dropped. Either way it is counted, and the data path never waits.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_config::OtlpProtocol;

use super::otlp;
use super::span::SpanData;

const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// One export may take this long before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches kept for another try at most; an older one is given up.
const RETRY_BATCHES: usize = 8;
/// Tries of one batch at most.
const ATTEMPTS: u32 = 5;
/// The wait before the first retry, doubled after each failure (to 30 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `sluice_trace_spans_total{result}`: exported, retried (a failed try
/// that will be tried again), failed (refused, or given up), dropped (the
/// queue was full).
#[derive(Clone)]
pub struct Counters {
    pub exported: prometheus::IntCounter,
    pub retried: prometheus::IntCounter,
    pub failed: prometheus::IntCounter,
    pub dropped: prometheus::IntCounter,
}

impl Counters {
    pub fn new(spans: prometheus::IntCounterVec) -> Counters {
        Counters {
            exported: spans.with_label_values(&["exported"]),
            retried: spans.with_label_values(&["retried"]),
            failed: spans.with_label_values(&["failed"]),
            dropped: spans.with_label_values(&["dropped"]),
        }
    }
}

/// Why an export did not go through.
struct Failure {
    why: String,
    /// OTLP says to try again (connection errors, timeouts, HTTP 429 /
    /// 502 / 503 / 504, gRPC UNAVAILABLE and its kin).
    retry: bool,
}

impl Failure {
    fn transient(why: impl Into<String>) -> Failure {
        Failure {
            why: why.into(),
            retry: true,
        }
    }

    fn refused(why: impl Into<String>) -> Failure {
        Failure {
            why: why.into(),
            retry: false,
        }
    }
}

/// An encoded batch waiting for another try.
struct Pending {
    body: Bytes,
    spans: u64,
    attempts: u32,
}

/// What the exporter's queue carries.
pub enum Item {
    /// A finished request's spans.
    Spans(Vec<SpanData>),
    /// Send what is batched now, then say so (shutdown).
    Flush(std::sync::mpsc::Sender<()>),
}

struct Exporter {
    protocol: OtlpProtocol,
    endpoint: String,
    service: String,
    headers: http::HeaderMap,
    http: reqwest::Client,
    grpc: Option<h2::client::SendRequest<Bytes>>,
    /// TLS toward an `https://` gRPC collector.
    tls: Option<tokio_rustls::TlsConnector>,
    counters: Counters,
    /// When the last failure was logged (one line a minute at most).
    logged: Option<Instant>,
    /// Batches to try again, oldest first, and when the next try is due.
    pending: VecDeque<Pending>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

pub fn spawn(
    cfg: &sluice_config::Traces,
    rx: Receiver<Item>,
    counters: Counters,
) -> anyhow::Result<()> {
    let mut headers = http::HeaderMap::new();
    for (name, secret) in &cfg.headers {
        let value = crate::inject::read_secret(secret)
            .map_err(|e| anyhow::anyhow!("traces.headers.{name}: {e}"))?;
        let mut value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| anyhow::anyhow!("traces.headers.{name}: not a header value"))?;
        value.set_sensitive(true);
        headers.insert(http::HeaderName::try_from(name.as_str())?, value);
    }
    let ca = match &cfg.ca_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("traces.ca_file {path}: {e}"))?)
        }
        None => None,
    };
    let mut http = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| anyhow::anyhow!("traces.ca_file: {e}"))?;
        anyhow::ensure!(!certs.is_empty(), "traces.ca_file holds no certificate");
        http = http.tls_certs_only(certs);
    }
    let tls = match (cfg.protocol, cfg.endpoint.starts_with("https://")) {
        (OtlpProtocol::Grpc, true) => Some(grpc_tls(ca.as_deref())?),
        _ => None,
    };
    let mut ex = Exporter {
        protocol: cfg.protocol,
        endpoint: cfg.endpoint.trim_end_matches('/').to_owned(),
        service: cfg.service_name.clone(),
        headers,
        http: http.build()?,
        grpc: None,
        tls,
        counters,
        logged: None,
        pending: VecDeque::new(),
        backoff: FIRST_BACKOFF,
        retry_at: None,
    };
    if ex.protocol == OtlpProtocol::HttpProtobuf {
        // The URL as configured is the whole path (`/v1/traces`).
        ex.endpoint = cfg.endpoint.clone();
    }
    let (max_batch, interval) = (cfg.max_batch, cfg.interval);
    std::thread::Builder::new()
        .name("sluice-traces".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "trace exporter: no runtime"),
            };
            rt.block_on(ex.run(rx, max_batch, interval));
        })?;
    Ok(())
}

impl Exporter {
    async fn run(&mut self, rx: Receiver<Item>, max_batch: usize, interval: Duration) {
        let mut batch: Vec<SpanData> = Vec::with_capacity(max_batch);
        let mut since = Instant::now();
        loop {
            // The queue is a std channel (the data path never waits on it);
            // a short blocking wait is fine on this thread of its own.
            let mut wait = interval.saturating_sub(since.elapsed());
            if let Some(at) = self.retry_at {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
            let mut flushed = None;
            match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
                Ok(Item::Spans(spans)) => {
                    batch.extend(spans);
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(Item::Spans(spans)) => batch.extend(spans),
                            Ok(Item::Flush(done)) => {
                                flushed = Some(done);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
                Ok(Item::Flush(done)) => flushed = Some(done),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    for chunk in batch.chunks(max_batch) {
                        self.export(chunk).await;
                    }
                    self.retry(true).await;
                    return;
                }
            }
            if self.retry_at.is_some_and(|at| at <= Instant::now()) || flushed.is_some() {
                self.retry(flushed.is_some()).await;
            }
            let due = batch.len() >= max_batch || since.elapsed() >= interval;
            if !batch.is_empty() && (due || flushed.is_some()) {
                for chunk in batch.chunks(max_batch) {
                    self.export(chunk).await;
                }
                batch.clear();
                since = Instant::now();
            } else if batch.is_empty() {
                since = Instant::now();
            }
            if let Some(done) = flushed {
                let _ = done.send(());
            }
        }
    }

    /// Export a batch; one that failed for a passing reason waits for a
    /// retry (behind those already waiting, so the order holds).
    async fn export(&mut self, spans: &[SpanData]) {
        let body = Bytes::from(otlp::export_request(&self.service, spans));
        let batch = Pending {
            body,
            spans: spans.len() as u64,
            attempts: 0,
        };
        if self.pending.is_empty() {
            self.attempt(batch).await;
        } else {
            self.keep(batch);
        }
    }

    /// Try the waiting batches again, oldest first, until one fails;
    /// `last`: the process is going away, so one try each and no more.
    async fn retry(&mut self, last: bool) {
        self.retry_at = None;
        while let Some(batch) = self.pending.pop_front() {
            let spans = batch.spans;
            if let Err(back) = self.try_send(batch).await {
                if last {
                    self.counters.failed.inc_by(spans);
                    continue;
                }
                self.pending.push_front(back);
                break;
            }
        }
    }

    async fn attempt(&mut self, batch: Pending) {
        if let Err(back) = self.try_send(batch).await {
            self.keep(back);
        }
    }

    /// One try; `Err` gives back a batch worth another.
    async fn try_send(&mut self, mut batch: Pending) -> Result<(), Pending> {
        batch.attempts += 1;
        let result = match self.protocol {
            OtlpProtocol::HttpProtobuf => self.post(batch.body.clone()).await,
            OtlpProtocol::Grpc => {
                let r = tokio::time::timeout(EXPORT_TIMEOUT, self.grpc(batch.body.clone())).await;
                let r = r.unwrap_or_else(|_| Err(Failure::transient("timed out")));
                if r.is_err() {
                    // A fresh connection next time.
                    self.grpc = None;
                }
                r
            }
        };
        let failure = match result {
            Ok(()) => {
                self.counters.exported.inc_by(batch.spans);
                self.backoff = FIRST_BACKOFF;
                return Ok(());
            }
            Err(f) => f,
        };
        let again = failure.retry && batch.attempts < ATTEMPTS;
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.logged = Some(Instant::now());
            let what = if again { "will retry" } else { "spans dropped" };
            tracing::warn!(endpoint = %self.endpoint, error = %failure.why, spans = batch.spans, "trace export failed; {what}");
        }
        if again {
            self.counters.retried.inc_by(batch.spans);
            self.retry_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            Err(batch)
        } else {
            self.counters.failed.inc_by(batch.spans);
            Ok(())
        }
    }

    /// Keep a batch for a retry; past `RETRY_BATCHES` the oldest is given up.
    fn keep(&mut self, batch: Pending) {
        if self.pending.len() == RETRY_BATCHES {
            if let Some(old) = self.pending.pop_front() {
                self.counters.failed.inc_by(old.spans);
            }
        }
        self.pending.push_back(batch);
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff);
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), Failure> {
        let r = self
            .http
            .post(&self.endpoint)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::transient(e.without_url().to_string()))?;
        match r.status().as_u16() {
            200..=299 => Ok(()),
            429 | 502 | 503 | 504 => Err(Failure::transient(format!(
                "collector answered {}",
                r.status()
            ))),
            _ => Err(Failure::refused(format!(
                "collector answered {}",
                r.status()
            ))),
        }
    }

    /// One unary `TraceService/Export` call on the (kept) HTTP/2 connection.
    async fn grpc(&mut self, body: Bytes) -> Result<(), Failure> {
        let t = |e: h2::Error| Failure::transient(e.to_string());
        let mut send = match self.grpc.take() {
            Some(s) => s,
            None => self.connect().await.map_err(Failure::transient)?,
        };
        send = send.ready().await.map_err(t)?;
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("{}{GRPC_PATH}", self.endpoint))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| Failure::refused(e.to_string()))?;
        req.headers_mut().extend(self.headers.clone());
        let (resp, mut stream) = send.send_request(req, false).map_err(t)?;
        // gRPC's message framing: not compressed, 4-byte length, message.
        let mut framed = Vec::with_capacity(5 + body.len());
        framed.push(0);
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        stream.send_data(Bytes::from(framed), true).map_err(t)?;
        let resp = resp.await.map_err(t)?;
        self.grpc = Some(send);
        let (parts, mut answer) = resp.into_parts();
        if parts.status != http::StatusCode::OK {
            let why = format!("collector answered HTTP {}", parts.status);
            return Err(match parts.status.as_u16() {
                429 | 502 | 503 | 504 => Failure::transient(why),
                _ => Failure::refused(why),
            });
        }
        while let Some(chunk) = answer.data().await {
            let chunk = chunk.map_err(t)?;
            let _ = answer.flow_control().release_capacity(chunk.len());
        }
        let trailers = answer.trailers().await.map_err(t)?;
        // A trailers-only answer carries the status in its headers.
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match status {
            "0" => Ok(()),
            "" => Err(Failure::refused("no grpc-status")),
            // CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED,
            // OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS: OTLP's retryable codes.
            "1" | "4" | "8" | "10" | "11" | "14" | "15" => {
                Err(Failure::transient(format!("grpc-status {status}")))
            }
            code => Err(Failure::refused(format!("grpc-status {code}"))),
        }
    }

    async fn connect(&self) -> Result<h2::client::SendRequest<Bytes>, String> {
        let uri: http::Uri = self.endpoint.parse().map_err(|e| format!("{e}"))?;
        let host = uri.host().ok_or("no host")?.trim_matches(['[', ']']);
        let port = uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let (send, conn) = h2::client::handshake(tcp)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            return Ok(send);
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host}: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("the collector did not agree to HTTP/2 (ALPN)".into());
        }
        let (send, conn) = h2::client::handshake(stream)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }
}

/// TLS for gRPC export: the CAs of `ca` (PEM) alone, else the system's
/// roots; HTTP/2 by ALPN.
fn grpc_tls(ca: Option<&[u8]>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(mut pem) => {
            for cert in rustls_pemfile::certs(&mut pem) {
                roots
                    .add(cert.map_err(|e| anyhow::anyhow!("traces.ca_file: {e}"))?)
                    .map_err(|e| anyhow::anyhow!("traces.ca_file: {e}"))?;
            }
            anyhow::ensure!(!roots.is_empty(), "traces.ca_file holds no certificate");
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            anyhow::ensure!(
                added > 0,
                "traces: no system CA certificates to verify the collector with (set traces.ca_file)"
            );
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
