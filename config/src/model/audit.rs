//! The resolved audit settings.

#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub file: Option<String>,
    pub max_file_bytes: u64,
    pub keep_files: u32,
    pub sample_rate: f64,
    pub include_arguments: bool,
    pub redact: Vec<String>,
    pub queue: usize,
    pub spool: Spool,
}

/// The access log: one JSON line per request sampled in.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    pub file: String,
    pub sample_rate: f64,
}

/// The local spool of events waiting for control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spool {
    pub max_bytes: u64,
    /// Each batch fsynced before it counts as written.
    pub sync_each_batch: bool,
}
