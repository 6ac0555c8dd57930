//! The background task between the queue and a sink: drains in batches,
//! writes off the async runtime, and empties the queue on shutdown.

use std::future::Future;

use super::{AuditEvent, AuditReceiver, AuditSink};

/// Most events handed to a sink in one `write_batch`.
pub const MAX_BATCH: usize = 256;

/// Runs until `shutdown` completes or every sender is dropped, then writes
/// whatever is still queued and returns. Sink errors are logged and the
/// batch is lost; the loop keeps going so a transient I/O error (disk full,
/// unmounted volume) doesn't end auditing.
///
/// Batches go to the sink on tokio's blocking pool: sinks do synchronous I/O
/// and must not stall the runtime threads that also serve proxied traffic.
pub async fn run_writer<S, F>(mut rx: AuditReceiver, sink: S, shutdown: F)
where
    S: AuditSink + 'static,
    F: Future,
{
    let mut sink = sink;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            // Shutdown first, so a signalled writer stops waiting at once.
            biased;
            _ = &mut shutdown => break,
            event = rx.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        batch.push(first);
        fill(&mut rx, &mut batch);
        match write(sink, batch).await {
            Some((s, b)) => (sink, batch) = (s, b),
            None => return,
        }
    }
    // Closing bounds the drain to what is already queued: senders that keep
    // going during shutdown get counted drops instead of keeping us here.
    rx.close();
    loop {
        fill(&mut rx, &mut batch);
        if batch.is_empty() {
            return;
        }
        match write(sink, batch).await {
            Some((s, b)) => (sink, batch) = (s, b),
            None => return,
        }
    }
}

/// Tops `batch` up with whatever is queued right now, without waiting.
fn fill(rx: &mut AuditReceiver, batch: &mut Vec<AuditEvent>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Some(event) => batch.push(event),
            None => break,
        }
    }
}

/// Writes and flushes one batch on the blocking pool, handing the sink and
/// the (emptied) batch buffer back. `None` if the sink panicked: it is gone,
/// so the writer stops and later sends count as drops.
async fn write<S: AuditSink + 'static>(
    mut sink: S,
    mut batch: Vec<AuditEvent>,
) -> Option<(S, Vec<AuditEvent>)> {
    let joined = tokio::task::spawn_blocking(move || {
        sink.stamp(&mut batch);
        if let Err(e) = sink.write_batch(&batch).and_then(|()| sink.flush()) {
            tracing::warn!(error = %e, batch = batch.len(), "audit sink write failed; batch may be partly lost");
        }
        batch.clear();
        (sink, batch)
    })
    .await;
    match joined {
        Ok(parts) => Some(parts),
        Err(e) => {
            tracing::error!(error = %e, "audit writer stopped: sink task failed");
            None
        }
    }
}
