//! The exporter: a thread of its own takes finished requests' spans from
//! the bounded queue, batches them (`max_batch`, or whatever came within
//! `interval`) and sends each batch once over OTLP — HTTP/protobuf with
//! reqwest, or gRPC over plain-text HTTP/2 with h2. A batch the collector
//! does not take is dropped and counted, never retried into the data path.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_config::OtlpProtocol;

use super::otlp;
use super::span::SpanData;

const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// One export may take this long before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `sluice_trace_spans_total{result}`: exported, failed (the collector
/// refused or was away), dropped (the queue was full).
#[derive(Clone)]
pub struct Counters {
    pub exported: prometheus::IntCounter,
    pub failed: prometheus::IntCounter,
    pub dropped: prometheus::IntCounter,
}

impl Counters {
    pub fn new(spans: prometheus::IntCounterVec) -> Counters {
        Counters {
            exported: spans.with_label_values(&["exported"]),
            failed: spans.with_label_values(&["failed"]),
            dropped: spans.with_label_values(&["dropped"]),
        }
    }
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
    counters: Counters,
    /// When the last failure was logged (one line a minute at most).
    logged: Option<Instant>,
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
    let mut ex = Exporter {
        protocol: cfg.protocol,
        endpoint: cfg.endpoint.trim_end_matches('/').to_owned(),
        service: cfg.service_name.clone(),
        headers,
        http: reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        grpc: None,
        counters,
        logged: None,
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
            let wait = interval.saturating_sub(since.elapsed());
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
                    if !batch.is_empty() {
                        self.send(&batch).await;
                    }
                    return;
                }
            }
            let due = batch.len() >= max_batch || since.elapsed() >= interval;
            if !batch.is_empty() && (due || flushed.is_some()) {
                for chunk in batch.chunks(max_batch) {
                    self.send(chunk).await;
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

    async fn send(&mut self, spans: &[SpanData]) {
        let body = otlp::export_request(&self.service, spans);
        let result = match self.protocol {
            OtlpProtocol::HttpProtobuf => self.post(body).await,
            OtlpProtocol::Grpc => {
                let r = tokio::time::timeout(EXPORT_TIMEOUT, self.grpc(body)).await;
                let r = r.unwrap_or_else(|_| Err("timed out".into()));
                if r.is_err() {
                    // A fresh connection next time.
                    self.grpc = None;
                }
                r
            }
        };
        let n = spans.len() as u64;
        match result {
            Ok(()) => self.counters.exported.inc_by(n),
            Err(why) => {
                self.counters.failed.inc_by(n);
                if self
                    .logged
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                {
                    self.logged = Some(Instant::now());
                    tracing::warn!(endpoint = %self.endpoint, error = %why, spans = n, "trace export failed; spans dropped");
                }
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let r = self
            .http
            .post(&self.endpoint)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("collector answered {}", r.status()))
        }
    }

    /// One unary `TraceService/Export` call on the (kept) HTTP/2 connection.
    async fn grpc(&mut self, body: Vec<u8>) -> Result<(), String> {
        let mut send = match self.grpc.take() {
            Some(s) => s,
            None => self.connect().await?,
        };
        send = send.ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("{}{GRPC_PATH}", self.endpoint))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        req.headers_mut().extend(self.headers.clone());
        let (resp, mut stream) = send.send_request(req, false).map_err(|e| e.to_string())?;
        // gRPC's message framing: not compressed, 4-byte length, message.
        let mut framed = Vec::with_capacity(5 + body.len());
        framed.push(0);
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        stream
            .send_data(Bytes::from(framed), true)
            .map_err(|e| e.to_string())?;
        let resp = resp.await.map_err(|e| e.to_string())?;
        self.grpc = Some(send);
        let (parts, mut answer) = resp.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(format!("collector answered HTTP {}", parts.status));
        }
        while let Some(chunk) = answer.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = answer.flow_control().release_capacity(chunk.len());
        }
        let trailers = answer.trailers().await.map_err(|e| e.to_string())?;
        // A trailers-only answer carries the status in its headers.
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match status {
            "0" => Ok(()),
            "" => Err("no grpc-status".into()),
            code => Err(format!("grpc-status {code}")),
        }
    }

    async fn connect(&self) -> Result<h2::client::SendRequest<Bytes>, String> {
        let uri: http::Uri = self.endpoint.parse().map_err(|e| format!("{e}"))?;
        let host = uri.host().ok_or("no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = h2::client::handshake(tcp)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }
}
