//! Audit events from the data path, recorded without slowing it down.
//!
//! The proxy builds an [`AuditEvent`] per governed request, asks the
//! [`Sampler`] whether to keep it, and hands it to an [`AuditSender`], which
//! never blocks: a full queue drops the event and counts the drop. A single
//! background task ([`run_writer`]) drains the queue in batches into an
//! [`AuditSink`]. The first sink is [`JsonlFileSink`] (rotating JSON Lines
//! files); the sink interface is deliberately small and synchronous so that
//! the control process's audit store and a webhook sink (separate issue) can
//! plug in behind the same queue and writer without touching the data path.

mod chain;
mod error;
mod event;
mod queue;
mod sampler;
mod sink;
mod writer;

#[cfg(test)]
mod tests;

pub use chain::Chain;
pub use error::AuditError;
pub use event::{
    digest, format_rfc3339_millis, new_event_id, redact, AuditEvent, Decision, LlmAudit,
};
pub use queue::{AuditQueue, AuditReceiver, AuditSender};
pub use sampler::Sampler;
pub use sink::{AuditSink, JsonlFileSink};
pub use writer::{run_writer, MAX_BATCH};
