//! Audit shipping to control: the audit writer hands each batch to
//! [`ShipSink`], which serializes it into a bounded backlog (full: the
//! oldest events are dropped and counted) and returns at once; the
//! [`Shipper`] posts the backlog to control in batches, removing events only
//! once control stored them, retrying with jittered backoff. Each event
//! carries its `event_id`, so a retried batch is deduplicated by control.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::ControlClient;
use crate::audit::{AuditError, AuditEvent, AuditSink};
use crate::metrics::Metrics;
use sluice_config::locks::Recover;

const BATCH: usize = 500;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Serialized events waiting for control, oldest first, with sequence numbers.
pub struct Backlog {
    events: Mutex<(u64, VecDeque<(u64, String)>)>,
    cap: usize,
    wake: Notify,
    dropped: prometheus::IntCounter,
    size: prometheus::IntGauge,
}

impl Backlog {
    pub fn new(cap: usize, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new((0, VecDeque::new())),
            cap: cap.max(1),
            wake: Notify::new(),
            dropped: metrics.audit_ship_dropped.clone(),
            size: metrics.audit_ship_backlog.clone(),
        })
    }

    fn push(&self, lines: Vec<String>) {
        let mut g = self.events.lock().recover();
        for line in lines {
            if g.1.len() >= self.cap {
                g.1.pop_front();
                self.dropped.inc();
            }
            g.0 += 1;
            let seq = g.0;
            g.1.push_back((seq, line));
        }
        self.size.set(g.1.len() as i64);
        drop(g);
        self.wake.notify_one();
    }

    pub fn len(&self) -> usize {
        self.events.lock().map(|g| g.1.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The audit sink that feeds the backlog.
pub struct ShipSink(pub Arc<Backlog>);

impl AuditSink for ShipSink {
    fn write_batch(&mut self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let mut lines = Vec::with_capacity(events.len());
        for e in events {
            lines.push(serde_json::to_string(e)?);
        }
        self.0.push(lines);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AuditError> {
        Ok(())
    }
}

/// Posts the backlog to control until `stop`; then one last attempt.
pub async fn run(
    backlog: Arc<Backlog>,
    client: Arc<ControlClient>,
    shipped: prometheus::IntCounter,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut backoff = MIN_BACKOFF;
    loop {
        if backlog.is_empty() {
            tokio::select! {
                _ = &mut stop => return,
                _ = backlog.wake.notified() => continue,
            }
        }
        match ship_once(&backlog, &client, &shipped).await {
            Ok(()) => backoff = MIN_BACKOFF,
            Err(e) => {
                tracing::warn!(error = %e, backlog = backlog.len(), "audit shipping to control failed; retrying");
                let wait = backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5);
                tokio::select! {
                    _ = &mut stop => {
                        let _ = ship_once(&backlog, &client, &shipped).await;
                        return;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn ship_once(
    backlog: &Backlog,
    client: &ControlClient,
    shipped: &prometheus::IntCounter,
) -> Result<(), super::ControlError> {
    let (last, body) = {
        let g = backlog.events.lock().recover();
        let mut body = String::from("[");
        let mut last = 0;
        for (i, (seq, line)) in g.1.iter().take(BATCH).enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(line);
            last = *seq;
        }
        body.push(']');
        (last, body)
    };
    if last == 0 {
        return Ok(());
    }
    client.ship(body).await?;
    let mut g = backlog.events.lock().recover();
    let mut n = 0;
    while g.1.front().is_some_and(|(s, _)| *s <= last) {
        g.1.pop_front();
        n += 1;
    }
    backlog.size.set(g.1.len() as i64);
    shipped.inc_by(n);
    Ok(())
}
