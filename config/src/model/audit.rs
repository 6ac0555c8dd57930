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
}
