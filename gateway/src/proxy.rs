//! The `ProxyHttp` implementation, kept thin: each phase hands its work to
//! the module that owns the concern. Phase chart of one request:
//!
//! | phase                    | does                                                   |
//! |--------------------------|--------------------------------------------------------|
//! | `new_ctx`                | takes the current runtime (one snapshot) for the whole request |
//! | `request_filter`         | `admit`: route, head, caller, body, decisions; a refusal is answered here (`refusal::answer`), before any upstream is touched; then, for HTTP/1.1 upstreams and model calls, the whole exchange (`exchange::mcp`, `exchange::llm`) |
//! | `upstream_peer`          | the route's prebuilt peer (upstreams that may speak HTTP/2: the phases below are Pingora's loop) |
//! | `upstream_request_filter`| `exchange::request::prepare`, `exchange::sending`       |
//! | `upstream_response_filter`| `exchange::answered`                                  |
//! | `response_filter`        | `answer::head`: starts watching the response (JSON or SSE) |
//! | `response_body_filter`   | `answer::chunk`: each chunk watched                    |
//! | `fail_to_proxy`          | `refusal::failed`: the failure counted and answered    |
//! | `logging`                | `record`: metrics, audit and the access log            |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::admit::{self, Admit};
use crate::ctx::Ctx;
use crate::exchange::request::{self, Target};
use crate::exchange::{self, Deps, Upstreams};
use crate::record::Done;
use crate::state::Shared;
use crate::{answer, refusal};

pub struct Gateway {
    pub shared: Arc<Shared>,
    pub upstreams: Upstreams,
}

impl Gateway {
    fn deps(&self) -> Deps<'_> {
        Deps {
            shared: &self.shared,
            upstreams: &self.upstreams,
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    /// None: Pingora's default is a response compression module switched
    /// off, which still runs (and allocates) on every request. The gateway
    /// passes answers as the upstream encoded them.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.shared.current())
    }

    // Paths that own an upstream exchange (large futures) are boxed where
    // they start: inline, their size would be copied into every request's
    // future, most of which take none of them.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        match admit::admit(&self.shared, session, ctx).await {
            Ok(Admit::Proxy) => Ok(false),
            Ok(Admit::Forward) => {
                Box::pin(exchange::mcp::run(self.deps(), session, ctx)).await?;
                Ok(true)
            }
            Ok(Admit::ForwardPingora) => {
                Box::pin(exchange::mcp::run_pingora(self.deps(), session, ctx)).await?;
                Ok(true)
            }
            Ok(Admit::Llm) => {
                Box::pin(exchange::llm::run(self.deps(), session, ctx)).await?;
                Ok(true)
            }
            Ok(Admit::Server) => {
                Box::pin(exchange::server::run(self.deps(), session, ctx)).await?;
                Ok(true)
            }
            Ok(Admit::Local(content_type, body)) => {
                let mut resp = ResponseHeader::build(200, Some(3))?;
                resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
                resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
                session.write_response_header(Box::new(resp), false).await?;
                session
                    .write_response_body(Some(Bytes::from(body)), true)
                    .await?;
                Ok(true)
            }
            Err(refusal) => {
                Box::pin(refusal::answer(&self.shared, session, ctx, &refusal)).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let mut peer = Box::new(
            ctx.rt
                .peers
                .get(route.upstream)
                .and_then(Option::as_ref)
                .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "upstream not resolved"))?
                .clone(),
        );
        let up = ctx.rt.snapshot.upstream(route);
        // Per read: a call waits for its answer; a GET stream may be idle.
        peer.options.read_timeout = Some(if session.req_header().method == http::Method::GET {
            up.stream_idle_timeout
        } else {
            up.first_byte_timeout
        });
        if ctx.exchange.retries > 0 {
            if let Some(h) = ctx.rt.health.get(route.upstream) {
                tokio::time::sleep(h.backoff(ctx.exchange.retries)).await;
            }
        }
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing of the request was written: safe to try a new connection,
        // within the upstream's attempts and retry budget.
        let retry = ctx
            .route()
            .and_then(|r| ctx.rt.health.get(r.upstream))
            .is_some_and(|h| h.may_retry(ctx.exchange.retries, &self.shared.metrics));
        if retry {
            ctx.exchange.retries += 1;
        }
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let rt = ctx.rt.clone();
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let target = Target {
            upstream: route.upstream,
            path: &ctx.request.upstream_path,
        };
        let client = exchange::mcp::client_ip(session);
        request::prepare(&self.shared, client, req, target, ctx)?;
        let up = rt.snapshot.upstream(route);
        exchange::sending(&req.method, up, ctx);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let get = session.req_header().method == http::Method::GET;
        exchange::answered(&self.shared, get, resp, ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        answer::head(&self.shared, resp, ctx);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        answer::chunk(&self.shared, body, end_of_stream, ctx)?;
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = refusal::failed(&self.shared, session, e, ctx).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.outcome.taken {
            // The request went on with its connection, whose holder records it.
            return;
        }
        ctx.outcome.bytes_out += session.body_bytes_sent() as u64;
        let req = session.req_header();
        let done = Done {
            status: ctx
                .outcome
                .status
                .or_else(|| session.response_written().map(|r| r.status.as_u16()))
                .unwrap_or(0),
            method: req.method.as_str(),
            version: req.version,
        };
        self.shared.record(&done, e, ctx);
    }
}
