//! Audit shipping to control: the audit writer hands each batch to
//! [`ShipSink`], which serializes it into a bounded backlog (full: the
//! oldest events are dropped and counted) and returns at once; the
//! [`Shipper`] posts the backlog to control in batches, removing events only
//! once control stored them, retrying with jittered backoff. Each event
//! carries its `event_id`, so a retried batch is deduplicated by control.
//! With a spool (`super::spool`), a batch is on disk before it counts as
//! written, and control's confirmation is recorded there: a crash loses
//! nothing the spool's sync policy kept.

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

/// Serialized events waiting for control, oldest first, with their places
/// in the chain.
pub struct Backlog {
    events: Mutex<VecDeque<(u64, String)>>,
    spool: Option<Arc<Mutex<super::spool::Spool>>>,
    cap: usize,
    wake: Notify,
    dropped: prometheus::IntCounter,
    size: prometheus::IntGauge,
}

impl Backlog {
    /// A backlog kept on disk in `spool` too, starting with what it held
    /// (`pending`).
    pub fn with_spool(
        cap: usize,
        metrics: &Metrics,
        spool: Option<super::spool::Spool>,
        pending: Vec<(u64, String)>,
    ) -> Arc<Self> {
        let size = pending.len();
        let backlog = Arc::new(Self {
            events: Mutex::new(pending.into()),
            spool: spool.map(|s| Arc::new(Mutex::new(s))),
            cap: cap.max(1),
            wake: Notify::new(),
            dropped: metrics.audit_ship_dropped.clone(),
            size: metrics.audit_ship_backlog.clone(),
        });
        backlog.size.set(size as i64);
        if size > 0 {
            tracing::info!(
                events = size,
                "audit events control never confirmed are shipped again"
            );
        }
        backlog
    }

    /// Queue `lines` (each with its place in the chain), on disk first when
    /// there is a spool.
    fn push(&self, lines: Vec<(u64, String)>) {
        if let Some(spool) = &self.spool {
            if let Err(e) = spool.lock().recover().append(&lines) {
                tracing::error!(error = %e, "audit events could not be spooled; they are held in memory only");
            }
        }
        let mut g = self.events.lock().recover();
        for line in lines {
            if g.len() >= self.cap {
                g.pop_front();
                self.dropped.inc();
            }
            g.push_back(line);
        }
        self.size.set(g.len() as i64);
        drop(g);
        self.wake.notify_one();
    }

    pub fn len(&self) -> usize {
        self.events.lock().map(|g| g.len()).unwrap_or(0)
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
            let seq = e.chain.as_ref().map_or(0, |l| l.seq);
            lines.push((seq, serde_json::to_string(e)?));
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
        for (i, (seq, line)) in g.iter().take(BATCH).enumerate() {
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
    if let Some(spool) = backlog.spool.clone() {
        // Recorded off the runtime; a record lost to a crash only means
        // control sees the events again (and keeps them once).
        let acked = tokio::task::spawn_blocking(move || spool.lock().recover().ack(last)).await;
        if let Ok(Err(e)) = acked {
            tracing::warn!(error = %e, "the audit spool could not record what control stored");
        }
    }
    let mut g = backlog.events.lock().recover();
    let mut n = 0;
    while g.front().is_some_and(|(s, _)| *s <= last) {
        g.pop_front();
        n += 1;
    }
    backlog.size.set(g.len() as i64);
    shipped.inc_by(n);
    Ok(())
}
