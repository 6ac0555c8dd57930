//! Builds the `traces` section.

use std::time::Duration;

use crate::error::ConfigError;
use crate::model::{OtlpProtocol, Traces};
use crate::raw::RawTraces;

pub(crate) fn build_traces(raw: Option<&RawTraces>, errs: &mut Vec<ConfigError>) -> Option<Traces> {
    let raw = raw?;
    let protocol = match raw.protocol.as_deref() {
        None | Some("http_protobuf") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            errs.push(ConfigError::new(
                "traces.protocol",
                format!("`{other}`: expected http_protobuf or grpc"),
            ));
            OtlpProtocol::HttpProtobuf
        }
    };
    match url::Url::parse(&raw.endpoint) {
        Ok(u) if u.host().is_some() && matches!(u.scheme(), "http" | "https") => {
            if raw.ca_file.is_some() && u.scheme() != "https" {
                errs.push(ConfigError::new(
                    "traces.ca_file",
                    "the endpoint is not https://: there is no certificate to verify",
                ));
            }
        }
        _ => errs.push(ConfigError::new(
            "traces.endpoint",
            "an http:// or https:// URL with a host",
        )),
    }
    if raw.ca_file.as_deref() == Some("") {
        errs.push(ConfigError::new("traces.ca_file", "empty path"));
    }
    let ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        errs.push(ConfigError::new(
            "traces.sample_ratio",
            "must be between 0 and 1",
        ));
    }
    let max_queue = raw.max_queue.unwrap_or(4096);
    let max_batch = raw.max_batch.unwrap_or(512);
    if max_queue == 0 || max_batch == 0 {
        errs.push(ConfigError::new(
            "traces",
            "max_queue and max_batch must be at least 1",
        ));
    }
    let headers = raw
        .headers
        .iter()
        .map(|(name, r)| {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                errs.push(ConfigError::new(
                    format!("traces.headers.{name}"),
                    "not a header name",
                ));
            }
            let secret = super::check::secret_ref(r, &format!("traces.headers.{name}"), errs);
            (name.clone(), secret)
        })
        .collect();
    Some(Traces {
        endpoint: raw.endpoint.clone(),
        protocol,
        sample_ratio: ratio,
        parent_based: raw.parent_based.unwrap_or(true),
        service_name: raw
            .service_name
            .clone()
            .unwrap_or_else(|| "sluice-gateway".into()),
        max_queue,
        max_batch,
        interval: Duration::from_millis(raw.interval_ms.unwrap_or(1000).max(1)),
        headers,
        ca_file: raw.ca_file.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(endpoint: &str, protocol: &str, ca_file: Option<&str>) -> RawTraces {
        serde_json::from_value(serde_json::json!({
            "endpoint": endpoint,
            "protocol": protocol,
            "ca_file": ca_file,
        }))
        .expect("raw")
    }

    fn paths(r: &RawTraces) -> Vec<String> {
        let mut errs = Vec::new();
        build_traces(Some(r), &mut errs);
        errs.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn a_ca_file_goes_with_an_https_endpoint_in_either_protocol() {
        for protocol in ["grpc", "http_protobuf"] {
            assert!(paths(&raw("https://c:4317", protocol, Some("/ca.pem"))).is_empty());
            assert!(paths(&raw("https://c:4317", protocol, None)).is_empty());
            assert_eq!(
                paths(&raw("http://c:4317", protocol, Some("/ca.pem"))),
                ["traces.ca_file"]
            );
        }
        assert_eq!(paths(&raw("ftp://c", "grpc", None)), ["traces.endpoint"]);
    }
}
