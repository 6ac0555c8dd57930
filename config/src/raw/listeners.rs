//! The `listeners` and `admin` sections: where the gateway accepts clients
//! and serves its admin endpoints.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    /// `host:port`; port 0 picks a free port (tests).
    pub address: String,
    #[serde(default)]
    pub tls: Option<RawListenerTls>,
    /// Accept HTTP/2 (h2c on plain listeners, ALPN `h2` on TLS). Default true.
    #[serde(default)]
    pub http2: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub cert_file: String,
    pub key_file: String,
    /// Require client certificates signed by these CAs (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: String,
}
