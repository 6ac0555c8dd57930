//! Builds the `audit` section.

use crate::error::ConfigError;
use crate::model::Audit;
use crate::raw::RawAudit;

pub(crate) fn build_access_log(
    raw: Option<&crate::raw::RawAccessLog>,
    errs: &mut Vec<ConfigError>,
) -> Option<crate::model::AccessLog> {
    let raw = raw?;
    let rate = raw.sample_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&rate) {
        errs.push(ConfigError::new(
            "access_log.sample_rate",
            "must be between 0 and 1",
        ));
    }
    Some(crate::model::AccessLog {
        file: raw.file.clone(),
        sample_rate: rate,
    })
}

pub(crate) fn build_audit(raw: &RawAudit, errs: &mut Vec<ConfigError>) -> Audit {
    let rate = raw.sample_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&rate) {
        errs.push(ConfigError::new(
            "audit.sample_rate",
            "must be between 0 and 1",
        ));
    }
    for (i, p) in raw.redact.iter().enumerate() {
        if !p.starts_with('/') {
            errs.push(ConfigError::new(
                format!("audit.redact[{i}]"),
                "a JSON pointer starts with `/`",
            ));
        }
    }
    let sync_each_batch = match raw.spool.sync.as_deref() {
        None | Some("batch") => true,
        Some("none") => false,
        Some(other) => {
            errs.push(ConfigError::new(
                "audit.spool.sync",
                format!("`{other}`: expected batch or none"),
            ));
            true
        }
    };
    Audit {
        spool: crate::model::Spool {
            max_bytes: raw.spool.max_bytes.unwrap_or(64 << 20).max(64 << 10),
            sync_each_batch,
        },
        file: raw.file.clone(),
        max_file_bytes: raw.max_file_bytes.unwrap_or(100 << 20),
        keep_files: raw.keep_files.unwrap_or(5),
        sample_rate: rate,
        include_arguments: raw.include_arguments,
        redact: raw.redact.clone(),
        queue: raw.queue.unwrap_or(10_000).max(1),
    }
}
