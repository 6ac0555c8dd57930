//! The `audit` section: where audit events go and what they record.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// JSON-lines file; no file means no audit sink.
    pub file: Option<String>,
    /// Rotate past this size. Default 100 MiB.
    pub max_file_bytes: Option<u64>,
    /// Rotated files kept. Default 5.
    pub keep_files: Option<u32>,
    /// Fraction of allowed calls kept (denials and errors always). Default 1.0.
    pub sample_rate: Option<f64>,
    /// Record the call's arguments (after redaction). Default false.
    #[serde(default)]
    pub include_arguments: bool,
    /// JSON pointers redacted from recorded arguments.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Events held in memory before dropping. Default 10000.
    pub queue: Option<usize>,
    /// The local spool of events waiting for control.
    #[serde(default)]
    pub spool: RawSpool,
}

/// One JSON line per request, for log pipelines.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    /// The file lines are appended to.
    pub file: String,
    /// Fraction of requests logged (by request id). Default 1.0: every one.
    pub sample_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// Bytes of unshipped events kept on disk at most. Default 64 MiB.
    pub max_bytes: Option<u64>,
    /// `batch` (default): each batch is on disk (fsync) before it counts as
    /// written; `none`: the operating system writes it when it will.
    pub sync: Option<String>,
}
