//! The audit module's one error type.

use std::path::PathBuf;

/// What can go wrong writing audit events. None of these ever reach the data
/// path: the writer task logs them and carries on.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serializing audit event: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl AuditError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
