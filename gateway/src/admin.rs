//! The admin listener: `/healthz` (the process answers), `/readyz` (a
//! snapshot is being served), `/metrics` (Prometheus text) and `/version`
//! (the snapshot's version).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::state::Shared;

pub struct Admin {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, ctype, body) = match session.req_header().uri.path() {
            "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.shared.is_ready() => {
                (StatusCode::OK, "text/plain", b"ready\n".to_vec())
            }
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"no snapshot applied yet\n".to_vec(),
            ),
            "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", {
                let (open, waiting) = self.shared.conns.counts();
                let m = &self.shared.metrics;
                m.connections_open
                    .set(i64::try_from(open).unwrap_or(i64::MAX));
                m.connections_waiting
                    .set(i64::try_from(waiting).unwrap_or(i64::MAX));
                let streams = self.shared.source_streams.live();
                m.source_streams_open
                    .set(i64::try_from(streams).unwrap_or(i64::MAX));
                self.shared.metrics.render()
            }),
            "/version" => {
                let v = &self.shared.current().snapshot.version;
                (
                    StatusCode::OK,
                    "application/json",
                    format!(r#"{{"generation":{},"hash":"{}"}}"#, v.generation, v.hash)
                        .into_bytes(),
                )
            }
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, ctype)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}
