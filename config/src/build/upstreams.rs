//! Builds the `upstreams` section: each URL split into scheme, host, port
//! and base path, TLS, timeouts, retries and circuit breaker resolved, and
//! the injected credentials (see `inject`).

use std::time::Duration;

use super::check::check_name;
use super::inject;
use crate::error::ConfigError;
use crate::model::{CircuitBreaker, Retries, Scheme, Upstream, UpstreamTls};
use crate::raw::{RawCircuitBreaker, RawRetries, RawTimeouts, RawUpstream, RawUpstreamTls};

pub(crate) fn build_upstreams(raw: &[RawUpstream], errs: &mut Vec<ConfigError>) -> Vec<Upstream> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let path = format!("upstreams[{i}]");
        check_name(&u.name, &format!("{path}.name"), &mut seen, errs);
        match build_upstream(u, &path) {
            Ok(up) => out.push(up),
            Err(mut e) => errs.append(&mut e),
        }
    }
    out
}

/// Where an upstream's URL points.
struct Endpoint {
    scheme: Scheme,
    host: String,
    port: u16,
    authority: String,
    base_path: String,
}

fn build_upstream(u: &RawUpstream, path: &str) -> Result<Upstream, Vec<ConfigError>> {
    let (url, scheme) = parse_url(&u.url, path)?;
    let mut errs = Vec::new();
    let credential = inject::build_credential(&u.inject, path, &mut errs);
    let tenant_credentials = inject::build_tenant_credentials(&u.inject, path, &mut errs);
    inject::check_assertion(&u.inject, path, &mut errs);
    let token_exchange = inject::build_token_exchange(&u.inject, path, &mut errs);
    let end = endpoint(&url, scheme, &format!("{path}.url"), &mut errs);
    let tls = build_tls(scheme, u.tls.as_ref(), &end.host, path, &mut errs);
    if u.http2 && scheme == Scheme::Http {
        errs.push(ConfigError::new(
            format!("{path}.http2"),
            "HTTP/2 to an upstream needs https (ALPN)",
        ));
    }
    let legacy_sse = match u.transport.as_deref() {
        None | Some("streamable_http") => false,
        Some("legacy_sse") => true,
        Some(other) => {
            errs.push(ConfigError::new(
                format!("{path}.transport"),
                format!("`{other}`: expected streamable_http or legacy_sse"),
            ));
            false
        }
    };
    check_timeouts(&u.timeouts, path, &mut errs);
    let retries = build_retries(&u.retries, path, &mut errs);
    let circuit_breaker = u
        .circuit_breaker
        .as_ref()
        .map(|b| build_circuit_breaker(b, path, &mut errs));
    if !errs.is_empty() {
        return Err(errs);
    }
    let ms = |v: Option<u64>, default: u64| Duration::from_millis(v.unwrap_or(default));
    let t = &u.timeouts;
    Ok(Upstream {
        name: u.name.clone(),
        scheme: end.scheme,
        host: end.host,
        port: end.port,
        authority: end.authority,
        base_path: end.base_path,
        tls,
        connect_timeout: ms(t.connect_ms, 5_000),
        first_byte_timeout: ms(t.first_byte_ms, 300_000),
        stream_idle_timeout: ms(t.stream_idle_ms, 300_000),
        total_timeout: t.total_ms.map(|v| Duration::from_millis(v.max(1))),
        write_timeout: ms(t.write_ms, 30_000),
        pool_idle_timeout: ms(t.pool_idle_ms, 60_000),
        retries,
        circuit_breaker,
        http2: u.http2,
        legacy_sse,
        tenants: u.tenants.clone(),
        credential,
        tenant_credentials,
        llm_metadata: u.inject.llm_metadata,
        user_credentials: inject::build_user_credentials(&u.inject),
        token_exchange,
        assertion_header: u
            .inject
            .assertion_header
            .as_ref()
            .map(|h| h.to_ascii_lowercase()),
        assertion_reuse: Duration::from_secs(u.inject.assertion_reuse_s.unwrap_or(0).min(30)),
    })
}

/// The URL and its scheme; nothing else is worth checking without them.
fn parse_url(text: &str, path: &str) -> Result<(url::Url, Scheme), Vec<ConfigError>> {
    let url_path = format!("{path}.url");
    let url = url::Url::parse(text)
        .map_err(|e| vec![ConfigError::new(&url_path, format!("`{text}`: {e}"))])?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(vec![ConfigError::new(
                &url_path,
                format!("scheme `{other}` is not http or https"),
            )])
        }
    };
    Ok((url, scheme))
}

/// Host, port, authority and base path; no credentials, query or fragment.
fn endpoint(
    url: &url::Url,
    scheme: Scheme,
    url_path: &str,
    errs: &mut Vec<ConfigError>,
) -> Endpoint {
    if !url.username().is_empty() || url.password().is_some() {
        errs.push(ConfigError::new(
            url_path,
            "credentials in the URL are not allowed: they would end up in logs",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        errs.push(ConfigError::new(
            url_path,
            "a query or fragment is not allowed",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => {
            errs.push(ConfigError::new(url_path, "a host is required"));
            String::new()
        }
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    };
    Endpoint {
        scheme,
        host,
        port: url.port_or_known_default().unwrap_or(80),
        authority,
        base_path: url.path().trim_end_matches('/').to_owned(),
    }
}

/// TLS settings go with https only; https always has them (defaults).
fn build_tls(
    scheme: Scheme,
    raw: Option<&RawUpstreamTls>,
    host: &str,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<UpstreamTls> {
    match (scheme, raw) {
        (Scheme::Http, Some(_)) => {
            errs.push(ConfigError::new(
                format!("{path}.tls"),
                "tls settings need an https:// url",
            ));
            None
        }
        (Scheme::Http, None) => None,
        (Scheme::Https, t) => {
            let t = t.cloned().unwrap_or_default();
            let client_cert = match (t.client_cert_file, t.client_key_file) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    errs.push(ConfigError::new(
                        format!("{path}.tls"),
                        "client_cert_file and client_key_file go together",
                    ));
                    None
                }
            };
            Some(UpstreamTls {
                verify: t.verify.unwrap_or(true),
                ca_file: t.ca_file,
                client_cert,
                sni: t.sni.unwrap_or_else(|| host.to_owned()),
            })
        }
    }
}

fn check_timeouts(t: &RawTimeouts, path: &str, errs: &mut Vec<ConfigError>) {
    for (name, v) in [
        ("connect_ms", t.connect_ms),
        ("first_byte_ms", t.first_byte_ms),
        ("stream_idle_ms", t.stream_idle_ms),
        ("total_ms", t.total_ms),
        ("write_ms", t.write_ms),
        ("pool_idle_ms", t.pool_idle_ms),
    ] {
        if v == Some(0) {
            errs.push(ConfigError::new(
                format!("{path}.timeouts.{name}"),
                "must be above 0",
            ));
        }
    }
}

fn build_retries(r: &RawRetries, path: &str, errs: &mut Vec<ConfigError>) -> Retries {
    let budget_ratio = r.budget_ratio.unwrap_or(0.2);
    if !(0.0..=10.0).contains(&budget_ratio) {
        errs.push(ConfigError::new(
            format!("{path}.retries.budget_ratio"),
            "must be between 0 and 10",
        ));
    }
    Retries {
        attempts: r.attempts.unwrap_or(2).min(10),
        backoff: Duration::from_millis(r.backoff_ms.unwrap_or(25)),
        max_backoff: Duration::from_millis(r.max_backoff_ms.unwrap_or(1000)),
        budget_ratio,
        budget_min_per_s: r.budget_min_per_s.unwrap_or(10),
    }
}

fn build_circuit_breaker(
    b: &RawCircuitBreaker,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> CircuitBreaker {
    let error_rate = b.error_rate.map(|f| {
        if !(f > 0.0 && f <= 1.0) {
            errs.push(ConfigError::new(
                format!("{path}.circuit_breaker.error_rate"),
                "must be above 0 and at most 1",
            ));
        }
        (
            f,
            Duration::from_secs(b.window_s.unwrap_or(10).max(1)),
            b.min_requests.unwrap_or(20).max(1),
        )
    });
    CircuitBreaker {
        consecutive_failures: b.consecutive_failures.unwrap_or(5).max(1),
        error_rate,
        open_for: Duration::from_millis(b.open_ms.unwrap_or(5000).max(1)),
    }
}
