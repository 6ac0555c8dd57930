//! Fan-out of audit records to a compliance webhook: at least once, in
//! order, in batches (a JSON array per POST), each record carrying its
//! `event_id` for dedupe. The backlog is bounded; when it is full the
//! oldest records are dropped and counted. Failed deliveries are retried
//! with jittered exponential backoff; nothing waits on the webhook.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use sluice_config::locks::Recover;

const BATCH: usize = 200;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Webhook {
    url: String,
    secret: Option<String>,
    cap: usize,
    /// (sequence number, JSON record), oldest first.
    backlog: Mutex<VecDeque<(u64, String)>>,
    next_seq: Mutex<u64>,
    wake: Notify,
    metrics: Metrics,
}

impl Webhook {
    pub fn new(url: String, secret: Option<String>, cap: usize, metrics: Metrics) -> Self {
        Self {
            url,
            secret,
            cap: cap.max(1),
            backlog: Mutex::new(VecDeque::new()),
            next_seq: Mutex::new(0),
            wake: Notify::new(),
            metrics,
        }
    }

    /// Queue one JSON record. Never blocks on delivery.
    pub fn enqueue(&self, record: String) {
        let seq = {
            let mut n = self.next_seq.lock().recover();
            *n += 1;
            *n
        };
        let mut q = self.backlog.lock().recover();
        while q.len() >= self.cap {
            q.pop_front();
            self.metrics.webhook_dropped.inc();
        }
        q.push_back((seq, record));
        self.metrics.webhook_backlog.set(q.len() as i64);
        drop(q);
        self.wake.notify_one();
    }

    pub fn backlog_len(&self) -> usize {
        self.backlog.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Deliver forever.
    pub async fn run(self: std::sync::Arc<Self>) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "audit webhook disabled: no HTTP client");
                return;
            }
        };
        let mut backoff = MIN_BACKOFF;
        loop {
            let batch: Vec<(u64, String)> = {
                let q = self.backlog.lock().recover();
                q.iter().take(BATCH).cloned().collect()
            };
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let mut body =
                String::with_capacity(batch.iter().map(|(_, r)| r.len() + 1).sum::<usize>() + 2);
            body.push('[');
            for (i, (_, r)) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(r);
            }
            body.push(']');
            let mut req = client
                .post(&self.url)
                .header("content-type", "application/json");
            if let Some(secret) = &self.secret {
                req = req.header(
                    "x-sluice-signature",
                    format!("sha256={}", sign(secret, body.as_bytes())),
                );
            }
            let last = batch.last().map_or(0, |(s, _)| *s);
            match req.body(body).send().await {
                Ok(resp) if resp.status().is_success() => {
                    let mut q = self.backlog.lock().recover();
                    // Records dropped for overflow meanwhile are already gone.
                    let mut sent = 0;
                    while q.front().is_some_and(|(s, _)| *s <= last) {
                        q.pop_front();
                        sent += 1;
                    }
                    self.metrics.webhook_delivered.inc_by(sent);
                    self.metrics.webhook_backlog.set(q.len() as i64);
                    backoff = MIN_BACKOFF;
                }
                outcome => {
                    let why = match outcome {
                        Ok(resp) => format!("status {}", resp.status()),
                        Err(e) => e.to_string(),
                    };
                    self.metrics.webhook_failures.inc();
                    tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64, "audit webhook delivery failed");
                    let jitter = rand::random::<f64>() * 0.5 + 0.75;
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Hex HMAC-SHA256 of `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
