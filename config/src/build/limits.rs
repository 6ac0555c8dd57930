//! Builds the `limits` and `shutdown` sections: body, JSON and head caps,
//! client timeouts, and the grace period and upgrade socket.

use std::time::Duration;

use crate::error::ConfigError;
use crate::model::HeadLimits;
use crate::raw::{RawLimits, RawShutdown};

const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
const DEFAULT_MAX_BODY_BYTES_HELD: u64 = 256 << 20;
const DEFAULT_MAX_JSON_DEPTH: u32 = 64;
const DEFAULT_GRACE_PERIOD_S: u64 = 30;

/// The `limits` section resolved; the snapshot holds these as its own fields.
pub(crate) struct RequestLimits {
    pub max_body_bytes: u64,
    pub max_body_bytes_held: u64,
    pub head_limits: HeadLimits,
    pub max_json_depth: u32,
    pub max_json_array_len: u32,
    pub max_json_string_len: u32,
    pub max_inspected_response_bytes: u64,
    pub client_read_timeout: Duration,
}

pub(crate) fn build_limits(raw: &RawLimits, errs: &mut Vec<ConfigError>) -> RequestLimits {
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !(1..=1 << 30).contains(&max_body_bytes) {
        errs.push(ConfigError::new(
            "limits.max_body_bytes",
            "must be between 1 and 1073741824",
        ));
    }
    let max_body_bytes_held = raw
        .max_body_bytes_held
        .unwrap_or(DEFAULT_MAX_BODY_BYTES_HELD.max(max_body_bytes));
    if max_body_bytes_held < max_body_bytes {
        errs.push(ConfigError::new(
            "limits.max_body_bytes_held",
            "must be at least limits.max_body_bytes",
        ));
    }
    let max_json_depth = raw.max_json_depth.unwrap_or(DEFAULT_MAX_JSON_DEPTH);
    if !(2..=512).contains(&max_json_depth) {
        errs.push(ConfigError::new(
            "limits.max_json_depth",
            "must be between 2 and 512",
        ));
    }
    RequestLimits {
        max_body_bytes,
        max_body_bytes_held,
        head_limits: build_head_limits(raw),
        max_json_depth,
        max_json_array_len: raw.max_json_array_len.unwrap_or(100_000).max(1),
        max_json_string_len: raw
            .max_json_string_len
            .unwrap_or(u32::try_from(max_body_bytes).unwrap_or(u32::MAX))
            .max(1),
        max_inspected_response_bytes: raw
            .max_inspected_response_bytes
            .unwrap_or(DEFAULT_MAX_BODY_BYTES),
        client_read_timeout: Duration::from_millis(
            raw.client_read_timeout_ms.unwrap_or(30_000).max(1),
        ),
    }
}

/// Head caps, defaults in line with nginx's; never below a usable minimum.
fn build_head_limits(raw: &RawLimits) -> HeadLimits {
    HeadLimits {
        request_line: raw.max_request_line_bytes.unwrap_or(8192).max(64),
        header_line: raw.max_header_line_bytes.unwrap_or(8192).max(64),
        head: raw.max_head_bytes.unwrap_or(32768).max(256),
        headers: raw.max_headers.unwrap_or(100).max(8),
        head_timeout: Duration::from_millis(raw.head_timeout_ms.unwrap_or(10_000).max(1)),
        max_connections: raw.max_connections.unwrap_or(20_000).max(1),
        max_connections_per_address: raw.max_connections_per_address.unwrap_or(2_000).max(1),
    }
}

/// The grace period and the upgrade socket.
pub(crate) fn build_shutdown(raw: &RawShutdown) -> (Duration, String) {
    (
        Duration::from_secs(raw.grace_period_s.unwrap_or(DEFAULT_GRACE_PERIOD_S)),
        raw.upgrade_sock
            .clone()
            .unwrap_or_else(|| "/tmp/sluice_upgrade.sock".into()),
    )
}
