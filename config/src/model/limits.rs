//! Caps on a request head, resolved from the `limits` section (the other
//! request limits are plain fields of the `Snapshot`).

use std::time::Duration;

/// Caps on a request head (defaults in line with nginx's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Method, target and version, bytes.
    pub request_line: u32,
    /// One header's name and value, bytes.
    pub header_line: u32,
    /// The request line and every header, bytes.
    pub head: u32,
    /// Header lines.
    pub headers: u32,
    /// An HTTP/1.1 head must be whole within this of its first byte (a new
    /// connection's, of the accept; for HTTP/2, the preface and first frame).
    pub head_timeout: Duration,
    /// Client connections open at once, in all and from one address.
    pub max_connections: u32,
    pub max_connections_per_address: u32,
}
