//! The `traces` section: OpenTelemetry traces exported over OTLP.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::RawSecretRef;

/// Spans of every request sampled in, sent to an OTLP collector. Read from
/// the first config only: changing it takes a restart.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTraces {
    /// The collector: for `http_protobuf` the whole URL
    /// (`http://collector:4318/v1/traces`), for `grpc` its origin
    /// (`http://collector:4317` plain-text HTTP/2, `https://…` over TLS).
    pub endpoint: String,
    /// `http_protobuf` (default) or `grpc`.
    pub protocol: Option<String>,
    /// Fraction of new traces sampled, decided on the trace id. Default 1.0.
    pub sample_ratio: Option<f64>,
    /// Follow the sampled flag of a caller's `traceparent`. Default true.
    pub parent_based: Option<bool>,
    /// `service.name` of the exported resource. Default `sluice-gateway`.
    pub service_name: Option<String>,
    /// Spans waiting for export at most; more are dropped and counted
    /// (`sluice_trace_spans_dropped_total`). Default 4096.
    pub max_queue: Option<usize>,
    /// Spans per export at most. Default 512.
    pub max_batch: Option<usize>,
    /// A partial batch is sent after this long, in ms. Default 1000.
    pub interval_ms: Option<u64>,
    /// Headers sent with every export (a collector's key), from secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, RawSecretRef>,
    /// PEM file of the CAs an `https://` collector's certificate is
    /// verified against (instead of the system's roots).
    pub ca_file: Option<String>,
}
