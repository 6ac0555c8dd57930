//! OpenTelemetry trace export, as the gateway runs it.

use std::time::Duration;

use super::SecretRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/gRPC: HTTP/2, over TLS for an `https://` endpoint.
    Grpc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Traces {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub sample_ratio: f64,
    pub parent_based: bool,
    pub service_name: String,
    pub max_queue: usize,
    pub max_batch: usize,
    pub interval: Duration,
    pub headers: Vec<(String, SecretRef)>,
    /// The collector's certificate is verified against these CAs alone
    /// (PEM); `None`: the system's roots.
    pub ca_file: Option<String>,
}
