//! The `ProxyHttp` implementation, kept thin: each phase hands its work to
//! the module that owns the concern. Phase chart of one request:
//!
//! | phase                    | does                                                   |
//! |--------------------------|--------------------------------------------------------|
//! | `new_ctx`                | takes the current runtime (one snapshot) for the whole request |
//! | `request_filter`         | `admit`: route, framing, Host/Origin, body read and classified; refusals answered here, before any upstream is touched; then, for HTTP/1.1 upstreams and model calls, the whole exchange (`forward`, `llm::forward`) |
//! | `upstream_peer`          | the route's prebuilt peer (upstreams that may speak HTTP/2: the phases below are Pingora's loop) |
//! | `upstream_request_filter`| path and `Host` rewritten for the upstream             |
//! | `response_filter`        | starts watching the response (JSON or SSE)            |
//! | `response_body_filter`   | watches each chunk; rewrites the legacy `endpoint` event |
//! | `logging`                | metrics and the access log from what earlier phases recorded |

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use sluice_config::{Route, RouteTransport};

use crate::mcp::jsonrpc::{check_mirrored_headers, effective_revision};
use crate::mcp::legacy::EndpointRewriter;
use crate::mcp::{classify_capped, JsonCaps, Method, RequestFacts, ResponseInspector, Revision};
use crate::policy::hosts::HostCheck;
use crate::policy::list::ListFilter;
use crate::policy::{self, Caller, Deny};
use crate::record::Done;
use crate::refusal::{self, Refusal};
use crate::resilience::Ticket;
use crate::sessions::Check;
use crate::state::{Runtime, Shared};
use crate::{access, audit, forward, inject, upstream};

/// Bodies up to this size are replayed upstream by Pingora itself; larger
/// ones are forwarded by `forward`, which does not depend on that buffer.
pub const PINGORA_REPLAY_LIMIT: usize = 64 * 1024;

// Header names read or written on every request, parsed once.
const MCP_SESSION_ID: http::HeaderName = http::HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: http::HeaderName =
    http::HeaderName::from_static("mcp-protocol-version");
const MCP_METHOD: http::HeaderName = http::HeaderName::from_static("mcp-method");
const MCP_NAME: http::HeaderName = http::HeaderName::from_static("mcp-name");
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

pub struct Gateway {
    pub shared: Arc<Shared>,
    pub connector: pingora::connectors::http::Connector,
    /// How the gateway's own HTTP/1.1 client (`h1`) connects: tool calls
    /// and model calls to HTTP/1.1 upstreams (idle connections are kept in
    /// `Shared::idle`).
    pub transport: pingora::connectors::TransportConnector,
    /// The way back into Pingora for a connection whose held stream
    /// `detach` served.
    pub reentry: crate::detach::ReentrySlot,
}

/// Per-request state. Filled forward through the phases, never read back
/// from the wire.
pub struct Ctx {
    pub rt: Arc<Runtime>,
    pub started: Instant,
    pub route: Option<usize>,
    pub upstream_path: String,
    pub facts: Option<RequestFacts>,
    pub revision: Option<Revision>,
    /// `Mcp-Session-Id` as the client sent it (2025 revisions).
    pub session: Option<Box<str>>,
    pub body: Option<Bytes>,
    pub inspector: ResponseInspector,
    // Rare parts of a request are boxed: `Ctx` is moved with Pingora's
    // per-request future, so its inline size is copied on every request.
    pub legacy: Option<Box<EndpointRewriter>>,
    pub upstream_sent: Option<Instant>,
    pub upstream_latency: Option<Duration>,
    /// Time in the gateway's own work, excluding waits on client and upstream.
    pub gateway_time: Duration,
    pub sse_counted: bool,
    pub refused: Option<&'static str>,
    /// The refusal was an access decision (identity, tenant, policy, host),
    /// not a broken request.
    pub access_denied: bool,
    /// Who is calling, when identity is configured.
    pub caller: Option<Caller>,
    pub list_filter: Option<Box<ListFilter>>,
    /// Correlates the audit event, the log line and the upstream assertion.
    pub request_id: Option<String>,
    pub method_is_delete: bool,
    /// Concurrency slots this request holds; released when `Ctx` drops,
    /// whichever way the request ends.
    pub permits: Vec<crate::limits::Permit>,
    /// This request's place in its upstream's circuit breaker.
    pub ticket: Option<Ticket>,
    /// Connect attempts retried so far.
    pub retries: u32,
    /// A POST's whole-call deadline (`timeouts.total_ms`).
    pub deadline: Option<Instant>,
    /// What went wrong upstream after the request was admitted.
    pub upstream_failure: Option<&'static str>,
    /// A model call on an `llm` route.
    pub llm: Option<Box<crate::llm::LlmCall>>,
    /// The upstream's tool list in this response was learnt already.
    pub catalog_learnt: bool,
    /// The approval this call went through on.
    pub approval: Option<String>,
    /// The request went on in `detach`'s task with the rest of this state;
    /// Pingora's session no longer carries it.
    pub detached: bool,
    /// The status of an answer written by `direct`, not through Pingora's
    /// session (which does not know it).
    pub written_directly: Option<u16>,
    /// The request body's share of the ceiling on bodies held at once.
    pub body_hold: crate::bodies::BodyHold,
    /// The client sent hop-by-hop or forwarding headers (`check_head`).
    pub client_hop_headers: bool,
}

impl Ctx {
    /// A request's state as it starts, on the runtime it uses throughout.
    pub fn new(rt: Arc<Runtime>) -> Ctx {
        Ctx {
            rt,
            started: Instant::now(),
            route: None,
            upstream_path: String::new(),
            facts: None,
            revision: None,
            session: None,
            body: None,
            inspector: ResponseInspector::off(),
            legacy: None,
            upstream_sent: None,
            upstream_latency: None,
            gateway_time: Duration::ZERO,
            sse_counted: false,
            refused: None,
            access_denied: false,
            caller: None,
            list_filter: None,
            request_id: None,
            method_is_delete: false,
            permits: Vec::new(),
            ticket: None,
            retries: 0,
            deadline: None,
            upstream_failure: None,
            llm: None,
            catalog_learnt: false,
            approval: None,
            detached: false,
            written_directly: None,
            body_hold: crate::bodies::BodyHold::default(),
            client_hop_headers: false,
        }
    }
    pub fn route(&self) -> Option<&Route> {
        self.route.map(|i| &self.rt.snapshot.routes[i])
    }
    pub fn route_label(&self) -> &str {
        self.route().map_or("none", |r| r.name.as_str())
    }
    fn first_id(&self) -> Option<&crate::mcp::RequestId> {
        self.facts.as_ref().and_then(|f| f.first().id.as_ref())
    }
}

pub(crate) enum Admit {
    /// Let Pingora proxy it (body, if any, is in its replay buffer): for
    /// upstreams that may speak HTTP/2.
    Proxy,
    /// The gateway runs the exchange itself (`forward`): HTTP/1.1 upstreams.
    Forward,
    /// Body too large for Pingora's replay buffer, upstream that may speak
    /// HTTP/2: Pingora's client session, driven by `forward`.
    ForwardPingora,
    /// Answered by the gateway itself (well-known documents).
    Local(&'static str, String),
    /// A model call: the gateway runs the exchange itself.
    Llm,
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
        match self.admit(session, ctx).await {
            Ok(Admit::Proxy) => Ok(false),
            Ok(Admit::Forward) => {
                Box::pin(forward::run(self, session, ctx)).await?;
                Ok(true)
            }
            Ok(Admit::ForwardPingora) => {
                Box::pin(forward::run_pingora(self, session, ctx)).await?;
                Ok(true)
            }
            Ok(Admit::Llm) => {
                Box::pin(crate::llm::forward::run(self, session, ctx)).await?;
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
                Box::pin(self.refuse(session, ctx, &refusal)).await;
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
        if ctx.retries > 0 {
            if let Some(h) = ctx.rt.health.get(route.upstream) {
                tokio::time::sleep(h.backoff(ctx.retries)).await;
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
            .is_some_and(|h| h.may_retry(ctx.retries, &self.shared.metrics));
        if retry {
            ctx.retries += 1;
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
        self.prepare_upstream_request(session, req, ctx)?;
        self.upstream_sending(&req.method, ctx);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let get = session.req_header().method == http::Method::GET;
        self.upstream_answered(get, resp, ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let t = Instant::now();
        self.on_response_header(resp, ctx)?;
        ctx.gateway_time += t.elapsed();
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        on_response_chunk(&self.shared, body, end_of_stream, ctx)?;
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(c) => *c,
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => match e.etype() {
                    ErrorType::ConnectTimedout | ErrorType::ReadTimedout => 504,
                    _ => 502,
                },
                pingora::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        let kind = self.shared.failed(e, ctx);
        let upstream_fault = e.esource() == &pingora::ErrorSource::Upstream;
        if ctx.written_directly.is_some() || session.response_written().is_some() {
            // The answer had started: close it properly.
            if upstream_fault {
                if let Some(events) = self.shared.cut_short(ctx) {
                    let _ = session.write_response_body(Some(events), true).await;
                }
            }
        } else if code > 0 {
            // Answer in JSON-RPC with the request's id: nothing was sent yet.
            let refusal = Refusal::Upstream(kind);
            let body = if ctx
                .route()
                .is_some_and(|r| r.transport == RouteTransport::Llm)
            {
                refusal::openai_body(&refusal)
            } else {
                refusal::body(&refusal, ctx.first_id())
            };
            if let Ok(mut resp) = ResponseHeader::build(code, Some(3)) {
                let _ = resp.insert_header(http::header::CONTENT_TYPE, "application/json");
                let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string());
                // Pingora closes the connection after a failed proxy: say so
                // (`Connection: close`), so the client does not reuse it.
                session.set_keepalive(None);
                let _ = session.write_response_header(Box::new(resp), false).await;
                let _ = session.write_response_body(Some(body), true).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.detached {
            // The stream was handed to `detach`, which records it when it ends.
            return;
        }
        let req = session.req_header();
        let done = Done {
            status: ctx
                .written_directly
                .or_else(|| session.response_written().map(|r| r.status.as_u16()))
                .unwrap_or(0),
            method: req.method.as_str(),
            version: req.version,
        };
        self.shared.record(&done, e, ctx);
    }
}

impl Gateway {
    /// Decide whether the request may go upstream, reading and classifying
    /// its body. Order: cheap header checks first, so a refusal costs least.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> std::result::Result<Admit, Refusal> {
        let t = Instant::now();
        let snap = ctx.rt.snapshot.clone();
        let req = session.req_header();
        let listener = listener_name(&snap, session.server_addr());
        let path = req.uri.path();
        if let Some(doc) = self.well_known(&snap, listener, req) {
            return Ok(doc);
        }
        // The route is matched on the path's text; an upstream that resolves
        // `..` or decodes `%2F` would serve another one.
        sluice_config::uri::check_request_path(path).map_err(Refusal::PathNotNormal)?;
        ctx.client_hop_headers = check_head(req, &snap.head_limits)?;
        let (route_idx, rest) = snap.route_for(listener, path).ok_or(Refusal::NoRoute)?;
        ctx.route = Some(route_idx);
        let route = &snap.routes[route_idx];
        let up = snap.upstream(route);
        ctx.upstream_path = upstream::upstream_path(up, rest, req.uri.query());

        check_framing(session)?;
        let req = session.req_header();
        let host = req
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| header_str(req, http::header::HOST))
            .unwrap_or("");
        let origin = header_str(req, http::header::ORIGIN);
        if !route.hosts.allows(host, None) {
            return Err(Refusal::BadHost);
        }
        if !route.hosts.allows(host, origin) {
            return Err(Refusal::BadOrigin);
        }
        let caller = access::caller(&snap, route, ctx.rt.auth.as_deref(), &req.headers, host)?;
        if let Some(c) = &caller {
            // Another tenant's upstream does not exist, as far as this caller knows.
            if !policy::tenant_may_use(&snap, route, c) {
                return Err(Refusal::NoRoute);
            }
            let per_user = ctx
                .rt
                .user_credentials
                .get(route.upstream)
                .and_then(Option::as_ref);
            if per_user.is_some_and(|u| u.get(&c.subject).is_none()) {
                return Err(Refusal::NoUserCredential(up.name.clone()));
            }
            if let Some(sid) = header_str(req, &MCP_SESSION_ID) {
                if self
                    .shared
                    .sessions
                    .check(sid, &c.subject, c.tenant.as_deref())
                    == Check::Foreign
                {
                    return Err(Refusal::ForeignSession);
                }
            }
        }
        ctx.caller = caller;
        if ctx
            .rt
            .peers
            .get(route.upstream)
            .and_then(Option::as_ref)
            .is_none()
        {
            return Err(Refusal::Upstream("upstream address not resolved"));
        }
        let method = req.method.clone();
        ctx.method_is_delete = method == http::Method::DELETE;
        ctx.session = header_str(req, &MCP_SESSION_ID).map(Into::into);
        if snap.identity.enabled || self.shared.audit.is_some() {
            ctx.request_id = Some(audit::new_event_id());
        }
        if route.transport == RouteTransport::Llm {
            ctx.gateway_time += t.elapsed();
            return Box::pin(self.admit_llm(session, ctx)).await;
        }
        let legacy = route.transport == RouteTransport::LegacySse;
        if legacy && method == http::Method::GET {
            ctx.legacy = Some(Box::new(EndpointRewriter::new(&route.path, &up.base_path)));
        }
        if legacy && method == http::Method::POST {
            // A legacy message URL names its session in the query: only the
            // caller whose stream the endpoint event was sent on posts to it.
            let named = crate::mcp::legacy::session_param(
                req.uri.path_and_query().map_or("", |p| p.as_str()),
            )
            .map_err(|_| Refusal::Framing("the session is named twice"));
            if let (Some(c), Some(sid)) = (&ctx.caller, named?) {
                let key = legacy_session_key(&sid);
                if self
                    .shared
                    .sessions
                    .check(&key, &c.subject, c.tenant.as_deref())
                    == Check::Foreign
                {
                    return Err(Refusal::ForeignSession);
                }
            }
        }
        ctx.gateway_time += t.elapsed();
        match method {
            http::Method::POST => {}
            http::Method::GET | http::Method::DELETE => {
                // A body on these has no meaning for MCP, and nothing would
                // read it before the upstream does.
                if !session.is_body_empty() {
                    return Err(Refusal::Framing("GET and DELETE requests carry no body"));
                }
                if let (Some(c), true) = (&ctx.caller, method == http::Method::GET) {
                    // A GET stream (its `Last-Event-ID` replay, the legacy
                    // transport's stream) can carry any list result.
                    ctx.list_filter =
                        Some(Box::new(ListFilter::for_stream(&up.name, c, snap.clone())));
                }
                self.circuit(ctx)?;
                return Ok(if up.http2 {
                    Admit::Proxy
                } else {
                    Admit::Forward
                });
            }
            _ => return Err(Refusal::MethodNotAllowed),
        }

        let body = read_body(
            session,
            snap.max_body_bytes,
            snap.client_read_timeout,
            &mut ctx.body_hold,
            snap.max_body_bytes_held,
        )
        .await?;
        let t = Instant::now();
        let caps = JsonCaps {
            depth: snap.max_json_depth,
            array_len: snap.max_json_array_len,
            string_len: snap.max_json_string_len,
        };
        let facts = classify_capped(&body, caps)?;
        let req = session.req_header();
        let revision = effective_revision(header_bytes(req, &MCP_PROTOCOL_VERSION), &facts);
        // From here on, refusals are about a classified call: keep what
        // audit and the error's id need.
        let big = body.len() > PINGORA_REPLAY_LIMIT;
        let body = ctx.body.insert(body);
        let facts = ctx.facts.insert(facts);
        ctx.revision = revision;
        check_mirrored_headers(
            facts,
            revision,
            header_bytes(req, &MCP_METHOD),
            header_bytes(req, &MCP_NAME),
        )?;
        policy::unclassified(route, facts)?;
        let m = &self.shared.metrics.mcp_messages;
        for msg in &facts.messages {
            m.with_label_values(&[route.name.as_str(), "client", msg.method.as_label()])
                .inc();
        }
        // Batches left the protocol in 2025-06-18.
        if facts.batch {
            if let Some(r) =
                revision.filter(|r| *r >= Revision::V2025_06_18 && *r != Revision::Unknown)
            {
                return Err(Deny::Batch(r.as_label()).into());
            }
        }
        if let Some(c) = &ctx.caller {
            let decision = policy::authorize(&snap, route, c, facts, body);
            let label = match &decision {
                Ok(()) => "allow",
                Err(Deny::Hidden { .. }) => "hidden",
                Err(_) => "denied",
            };
            self.shared
                .metrics
                .policy_decisions
                .with_label_values(&[route.name.as_str(), label])
                .inc();
            decision?;
            let first = facts.first();
            if first.id.is_some() && !facts.batch {
                ctx.list_filter =
                    ListFilter::for_answer(&first.method, &up.name, c, snap.clone()).map(Box::new);
            }
        }
        if !ctx.rt.limits.is_empty() {
            self.apply_limits(session, ctx).await?;
        }
        ctx.gateway_time += t.elapsed();
        if !snap.approvals.is_empty() {
            // Out of band: the hold is a wait, not gateway work.
            let (Some(facts), Some(body)) = (ctx.facts.as_ref(), ctx.body.as_ref()) else {
                return Err(Refusal::BodyRead);
            };
            let who = crate::approval::Requester {
                caller: ctx.caller.as_ref(),
                session: ctx.session.as_deref(),
                request_id: ctx.request_id.as_deref(),
            };
            ctx.approval = Box::pin(crate::approval::hold(
                &self.shared,
                &snap,
                route,
                who,
                facts,
                body,
            ))
            .await?;
        }
        self.circuit(ctx)?;
        Ok(match (up.http2, big) {
            (false, _) => Admit::Forward,
            (true, true) => Admit::ForwardPingora,
            (true, false) => Admit::Proxy,
        })
    }

    /// A model call: endpoint, body, grant, alias, limits, budgets and token
    /// reservations, all before any upstream is touched.
    async fn admit_llm(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> std::result::Result<Admit, Refusal> {
        use crate::llm::{Api, LlmDeny, LlmRequest};
        let rt = Arc::clone(&ctx.rt);
        let snap = &rt.snapshot;
        let route = ctx.route().ok_or(Refusal::NoRoute)?;
        let route_up = snap.upstream(route).name.clone();
        let route_name = route.name.clone();
        let req = session.req_header();
        let api = req
            .uri
            .path()
            .strip_prefix(route.path.as_str())
            .and_then(Api::from_path)
            .ok_or(Refusal::Llm(LlmDeny::UnknownEndpoint))?;
        let method = req.method.clone();
        if api == Api::Models {
            if method != http::Method::GET {
                return Err(Refusal::MethodNotAllowed);
            }
            let list = crate::llm::models_list(snap, &route_up, ctx.caller.as_ref());
            return Ok(Admit::Local("application/json", list));
        }
        if method != http::Method::POST {
            return Err(Refusal::MethodNotAllowed);
        }
        // The decision sees the body's model only, so nothing else the
        // client sends may choose one: LiteLLM (and others) prefer a
        // `?model=` in the query string over the body's. No query string is
        // forwarded, and the path goes upstream in its one canonical form.
        if req.uri.query().is_some() {
            return Err(Refusal::Llm(LlmDeny::BadRequest(
                "query strings are not accepted on model routes".into(),
            )));
        }
        let rest = api.path().to_owned();
        let body = read_body(
            session,
            snap.max_body_bytes,
            snap.client_read_timeout,
            &mut ctx.body_hold,
            snap.max_body_bytes_held,
        )
        .await?;
        let t = Instant::now();
        let llm_req = LlmRequest::parse(api, body)
            .map_err(|e| Refusal::Llm(LlmDeny::BadRequest(e.to_string())))?;
        let model = llm_req.model.clone();
        let (subject, tenant, roles) = limit_owner(session, ctx.caller.as_ref());
        let input = crate::limits::LimitInput {
            tenant,
            subject: &subject,
            roles,
            route: &route_name,
            upstream: &route_up,
            method: api.operation(),
            target: None,
            model: Some(&model),
        };
        let m = &self.shared.metrics;
        let crate::llm::Admitted {
            order,
            reservations,
            budgets,
        } = crate::llm::decide(
            snap,
            &rt.llm,
            &route_up,
            ctx.caller.as_ref(),
            &input,
            &llm_req,
        )?;
        let reserved = crate::llm::LlmCall {
            req: llm_req,
            rest,
            order,
            reservations,
            budgets,
            outcome: None,
        };
        // From here, refusals give the reservations back (settled on drop
        // of the call in `record`).
        ctx.llm = Some(Box::new(reserved));
        if !rt.limits.is_empty() {
            rt.limits.check_rate(&input, m).await?;
            let mut permits = Vec::new();
            rt.limits.acquire(&input, &mut permits, m)?;
            ctx.permits = permits;
        }
        ctx.gateway_time += t.elapsed();
        Ok(Admit::Llm)
    }

    /// Every rate limit for each message of the body, then the concurrency
    /// caps for the call. Keys come from the authenticated caller (or the
    /// socket address without identity), never from client headers.
    async fn apply_limits(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> std::result::Result<(), Refusal> {
        let rt = Arc::clone(&ctx.rt);
        let (Some(route), Some(facts)) = (ctx.route(), ctx.facts.as_ref()) else {
            return Ok(());
        };
        let (subject, tenant, roles) = limit_owner(session, ctx.caller.as_ref());
        let mut input = crate::limits::LimitInput {
            tenant,
            subject: &subject,
            roles,
            route: &route.name,
            upstream: &rt.snapshot.upstream(route).name,
            method: "",
            target: None,
            model: None,
        };
        let m = &self.shared.metrics;
        for msg in facts.messages.iter().filter(|m| m.method != Method::None) {
            input.method = msg.method.name();
            input.target = msg.target.as_deref();
            rt.limits.check_rate(&input, m).await?;
        }
        if let Some(call) = facts
            .messages
            .iter()
            .find(|m| m.kind == crate::mcp::Kind::Request)
        {
            input.method = call.method.name();
            input.target = call.target.as_deref();
            let mut permits = Vec::new();
            rt.limits.acquire(&input, &mut permits, m)?;
            ctx.permits = permits;
        }
        Ok(())
    }

    /// The request goes upstream now: the clock of a POST's whole-call
    /// deadline starts. Shared by Pingora's loop and `forward`.
    pub(crate) fn upstream_sending(&self, method: &http::Method, ctx: &mut Ctx) {
        let now = Instant::now();
        ctx.upstream_sent = Some(now);
        if method == http::Method::POST {
            ctx.deadline = ctx
                .route()
                .and_then(|r| ctx.rt.snapshot.upstream(r).total_timeout)
                .map(|t| now + t);
        }
    }

    /// The upstream's answer head came. A 5xx is a failure now; a GET
    /// stream that started is a success now (it may run for hours); a
    /// call's success is known at its end.
    pub(crate) fn upstream_answered(&self, get: bool, resp: &ResponseHeader, ctx: &mut Ctx) {
        ctx.upstream_latency = ctx.upstream_sent.map(|t| t.elapsed());
        let failed = resp.status.is_server_error();
        if failed || get {
            if let Some(t) = ctx.ticket.as_mut() {
                t.record(!failed, &self.shared.metrics);
            }
        }
    }

    /// The upstream's circuit breaker: an open circuit answers at once.
    fn circuit(&self, ctx: &mut Ctx) -> std::result::Result<(), Refusal> {
        let Some(route) = ctx.route() else {
            return Ok(());
        };
        let Some(h) = ctx.rt.health.get(route.upstream) else {
            return Ok(());
        };
        match h.admit(&self.shared.metrics) {
            Ok(ticket) => {
                ctx.ticket = ticket;
                Ok(())
            }
            Err(retry_after) => Err(Refusal::CircuitOpen {
                upstream: h.name.clone(),
                retry_after,
            }),
        }
    }

    /// Answer a refusal: wire bytes, a metric and a log line.
    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, refusal: &Refusal) {
        ctx.refused = Some(refusal.reason());
        ctx.access_denied = refusal.is_access_decision();
        if let Refusal::Unauthenticated { reason, .. } = refusal {
            self.shared
                .metrics
                .auth_failures
                .with_label_values(&[ctx.route_label(), reason])
                .inc();
        }
        self.shared
            .metrics
            .refusals
            .with_label_values(&[ctx.route_label(), refusal.reason()])
            .inc();
        tracing::info!(
            route = ctx.route_label(),
            status = refusal.status(),
            reason = refusal.reason(),
            detail = %refusal,
            "request refused"
        );
        if let Refusal::BodyTooLarge { drain: true, .. } = refusal {
            session.set_read_timeout(Some(ctx.rt.snapshot.client_read_timeout));
            let mut drained = 0u64;
            // Bounded: a client that keeps sending past the cap is cut off.
            while let Ok(Some(chunk)) = session.read_request_body().await {
                drained += chunk.len() as u64;
                if drained > MAX_DRAIN {
                    break;
                }
            }
        }
        let openai = ctx
            .route()
            .is_some_and(|r| r.transport == RouteTransport::Llm);
        if let Err(e) = refusal::respond(session, refusal, ctx.first_id(), openai).await {
            tracing::debug!(error = %e, "could not write refusal");
        }
    }

    /// The upstream request: its path, its `Host`, the client address.
    pub(crate) fn prepare_upstream_request(
        &self,
        session: &Session,
        req: &mut RequestHeader,
        ctx: &Ctx,
    ) -> Result<()> {
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let up = ctx.rt.snapshot.upstream(route);
        upstream::rewrite_request(req, up, &ctx.upstream_path)?;
        if ctx.client_hop_headers {
            upstream::strip_client_hop_headers(req);
        }
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            req.insert_header(X_FORWARDED_FOR, upstream::forwarded_for(addr.ip()))?;
        }
        // With identity on, the gateway is the resource server: the client's
        // credentials stop here and the upstream sees its own.
        if ctx.rt.snapshot.identity.enabled {
            let assertion = match (&up.assertion_header, &ctx.caller) {
                (Some(_), Some(c)) => Some(self.assertion(ctx, c, &up.name, up.assertion_reuse)?),
                _ => None,
            };
            let tenant = ctx.caller.as_ref().and_then(|c| c.tenant.as_deref());
            let credential = ctx.rt.credential_for(route.upstream, tenant);
            let user = match (
                ctx.rt
                    .user_credentials
                    .get(route.upstream)
                    .and_then(Option::as_ref),
                &ctx.caller,
            ) {
                (Some(set), Some(c)) => set.get(&c.subject).map(|v| (&set.header, v)),
                _ => None,
            };
            inject::apply(
                req,
                up.assertion_header.as_deref(),
                credential,
                user,
                assertion.as_deref(),
            )?;
        }
        Ok(())
    }

    /// A short-lived JWT saying who is calling, for this upstream only.
    fn assertion(&self, ctx: &Ctx, c: &Caller, upstream: &str, reuse: Duration) -> Result<String> {
        let sign = |request_id: Option<String>| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let claims = crate::identity::AssertionClaims {
                iss: "sluice".into(),
                sub: c.subject.to_string(),
                tenant: c.tenant.as_deref().unwrap_or("").to_owned(),
                roles: c.roles.iter().map(|r| r.to_string()).collect(),
                session: ctx.session.as_deref().map(str::to_owned),
                request_id,
                aud: upstream.to_owned(),
                iat: now,
                exp: now + crate::identity::DEFAULT_ASSERTION_TTL.as_secs(),
                jti: audit::new_event_id(),
            };
            self.shared
                .signer
                .sign(&claims)
                .map_err(|e| Error::explain(ErrorType::InternalError, e.to_string()))
        };
        if reuse.is_zero() {
            return sign(ctx.request_id.clone());
        }
        // Everything the assertion says is in the key.
        let mut key = String::with_capacity(128);
        for part in [
            upstream,
            &c.subject,
            c.tenant.as_deref().unwrap_or(""),
            ctx.session.as_deref().unwrap_or(""),
        ] {
            key.push_str(part);
            key.push('\0');
        }
        for r in &c.roles {
            key.push_str(r);
            key.push(',');
        }
        self.shared
            .assertions
            .get_or_sign(&key, reuse, || sign(None))
    }

    /// `/.well-known/…` documents the gateway serves itself.
    fn well_known(
        &self,
        snap: &sluice_config::Snapshot,
        listener: &str,
        req: &RequestHeader,
    ) -> Option<Admit> {
        let path = req.uri.path();
        if path == access::JWKS_PATH {
            return Some(Admit::Local(
                "application/json",
                self.shared.signer.jwks_json(),
            ));
        }
        let rest = path.strip_prefix(access::METADATA_PATH)?;
        if !snap.identity.enabled {
            return None;
        }
        let (idx, _) = snap.route_for(listener, if rest.is_empty() { "/" } else { rest })?;
        let host = header_str(req, http::header::HOST).unwrap_or("localhost");
        Some(Admit::Local(
            "application/json",
            access::metadata(snap, &snap.routes[idx], host),
        ))
    }

    /// Start watching the response; shared with `forward`.
    pub(crate) fn on_response_header(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let ct = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
        ctx.inspector.hash_definitions = !ctx.rt.snapshot.approvals.is_empty();
        ctx.inspector.start(ct, ctx.facts.as_ref(), max);
        if let Some(c) = &ctx.caller {
            let ok = resp.status.is_success();
            if let Some(sid) = resp
                .headers
                .get(&MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
            {
                let initialize = ctx
                    .facts
                    .as_ref()
                    .is_some_and(|f| f.first().method == Method::Initialize);
                let url_elicitation = initialize
                    && ctx
                        .body
                        .as_deref()
                        .is_some_and(crate::approval::declares_url_elicitation);
                self.shared
                    .sessions
                    .bind(sid, &c.subject, c.tenant.as_deref(), url_elicitation);
            }
            if ok && ctx.method_is_delete {
                if let Some(sid) = &ctx.session {
                    self.shared.sessions.end(sid);
                }
            }
        }
        if let Some(f) = ctx.list_filter.as_mut() {
            f.set_sse(ctx.inspector.is_sse());
            // Filtering changes the length.
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
        if ctx.inspector.is_sse() {
            ctx.sse_counted = true;
            self.shared
                .metrics
                .sse_streams
                .with_label_values(&[ctx.route_label()])
                .inc();
            if ctx.legacy.is_some() {
                // The rewritten endpoint event changes the length.
                resp.remove_header(&http::header::CONTENT_LENGTH);
            }
        } else {
            ctx.legacy = None;
        }
        Ok(())
    }
}

/// One chunk of an answer, wherever it is served (Pingora's loop,
/// `forward`, `detach`): a POST past its whole-call deadline is cut; the
/// watchers see it; a catalog it completes is learnt.
pub(crate) fn on_response_chunk(
    shared: &Shared,
    body: &mut Option<Bytes>,
    end: bool,
    ctx: &mut Ctx,
) -> Result<()> {
    if !end && ctx.deadline.is_some_and(|d| Instant::now() > d) {
        ctx.upstream_failure = Some("total_timeout");
        return Err(Error::explain(
            ErrorType::ReadTimedout,
            "upstream call took longer than timeouts.total_ms",
        )
        .into_up());
    }
    let t = Instant::now();
    if let Some(rw) = ctx.legacy.as_mut() {
        *body = rw.process(body.take(), end);
        if let (Some(sid), Some(c)) = (rw.take_session(), &ctx.caller) {
            shared.sessions.bind(
                &legacy_session_key(&sid),
                &c.subject,
                c.tenant.as_deref(),
                false,
            );
        }
    }
    // The inspector sees what the upstream sent (the whole catalog), the
    // client what the list filter leaves of it.
    if let Some(b) = body.as_ref() {
        ctx.inspector.feed(b);
    }
    if end {
        ctx.inspector.finish();
    }
    if let Some(f) = ctx.list_filter.as_mut() {
        *body = f.process(body.take(), end);
    }
    // The catalog is learnt as soon as its list is read, before the bytes
    // carrying it reach the client: a client that calls a tool right after
    // listing it finds its metric label known.
    if !ctx.catalog_learnt {
        if let (Some(tools), Some(route)) = (&ctx.inspector.tools_seen, ctx.route()) {
            let upstream = ctx.rt.snapshot.upstream(route).name.as_str();
            shared.learn_tools(&ctx.rt.snapshot, upstream, tools);
            ctx.catalog_learnt = true;
        }
    }
    ctx.gateway_time += t.elapsed();
    Ok(())
}

/// Whom limits count: the authenticated caller, else the client's socket
/// address — never anything a header says. (subject, tenant, roles)
fn limit_owner<'a>(
    session: &Session,
    caller: Option<&'a Caller>,
) -> (std::borrow::Cow<'a, str>, Option<&'a str>, &'a [Box<str>]) {
    match caller {
        Some(c) => (c.subject.as_ref().into(), c.tenant.as_deref(), &c.roles),
        None => {
            let ip = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map_or_else(String::new, |a| {
                    upstream::IpText::new(a.ip()).as_str().to_owned()
                });
            (ip.into(), None, &[])
        }
    }
}

/// Most bytes read and discarded past the body cap to answer 413 cleanly.
const MAX_DRAIN: u64 = 16 << 20;

/// Room for a request body before its first bytes: the usual MCP message
/// fits; larger bodies grow as they arrive.
const FIRST_BODY_ROOM: u64 = 16 * 1024;

/// Read the whole request body, refusing it past `limit` bytes. Pingora's
/// replay buffer is enabled first so bodies up to its size need no copy.
pub(crate) async fn read_body(
    session: &mut Session,
    limit: u64,
    read_timeout: Duration,
    hold: &mut crate::bodies::BodyHold,
    held_max: u64,
) -> std::result::Result<Bytes, Refusal> {
    let declared = header_str(session.req_header(), http::header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit) {
        return Err(Refusal::BodyTooLarge {
            limit,
            drain: n <= limit.saturating_add(MAX_DRAIN),
        });
    }
    session.enable_retry_buffering();
    session.set_read_timeout(Some(read_timeout));
    // Memory follows the bytes that came, not the bytes promised: a head
    // declaring megabytes and a body that trickles holds what it sent.
    let first = declared.unwrap_or(FIRST_BODY_ROOM).min(FIRST_BODY_ROOM);
    let mut buf = BytesMut::with_capacity(first as usize);
    hold.grow(buf.capacity() as u64, held_max)?;
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if (buf.len() + chunk.len()) as u64 > limit {
                    return Err(Refusal::BodyTooLarge { limit, drain: true });
                }
                // Every body being read counts against one ceiling.
                let before = buf.capacity();
                buf.extend_from_slice(&chunk);
                hold.grow(buf.capacity().saturating_sub(before) as u64, held_max)?;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "request body read failed");
                return Err(Refusal::BodyRead);
            }
        }
    }
    Ok(buf.freeze())
}

/// A request carrying both `Content-Length` and `Transfer-Encoding` is the
/// classic smuggling vector: refuse it outright. Pingora drops the
/// `Content-Length` of such a request before any filter runs, so look at the
/// raw header bytes, and only when `Transfer-Encoding` is there at all.
fn check_framing(session: &Session) -> std::result::Result<(), Refusal> {
    let h = &session.req_header().headers;
    if h.contains_key(http::header::TRANSFER_ENCODING) {
        let both = h.contains_key(http::header::CONTENT_LENGTH)
            || session
                .as_downstream()
                .as_http1()
                .is_some_and(|s| has_header_line(&s.get_headers_raw_bytes(), b"content-length"));
        if both {
            return Err(Refusal::Framing(
                "both Content-Length and Transfer-Encoding present",
            ));
        }
    }
    let mut lengths = h.get_all(http::header::CONTENT_LENGTH).iter();
    if let (Some(a), Some(b)) = (lengths.next(), lengths.next()) {
        if a != b {
            return Err(Refusal::Framing("conflicting Content-Length headers"));
        }
    }
    Ok(())
}

/// One pass over a request head: past the configured caps it is refused
/// before anything of it is forwarded (a long target with 414, the rest
/// with 431); an MCP header given twice is refused (the gateway reads the
/// first copy, an upstream might read another). `Ok(true)`: the client
/// sent hop-by-hop or forwarding headers the upstream request must lose.
fn check_head(
    req: &RequestHeader,
    limits: &sluice_config::HeadLimits,
) -> std::result::Result<bool, Refusal> {
    // "METHOD SP target SP HTTP/1.1"
    let line = req.method.as_str().len() + req.raw_path().len() + 10;
    if line > limits.request_line as usize {
        return Err(Refusal::HeadTooLarge("request line"));
    }
    if req.headers.len() > limits.headers as usize {
        return Err(Refusal::HeadTooLarge("header count"));
    }
    let mut head = line;
    let mut mcp_seen = 0u8;
    let mut hop = false;
    for (name, value) in &req.headers {
        // "name: value\r\n"
        let n = name.as_str().len() + value.len() + 4;
        if n > limits.header_line as usize {
            return Err(Refusal::HeadTooLarge("header line"));
        }
        head += n;
        match upstream::client_header_kind(name) {
            upstream::ClientHeader::Mcp(bit) => {
                if mcp_seen & bit != 0 {
                    return Err(Refusal::Framing("an MCP header is given more than once"));
                }
                mcp_seen |= bit;
            }
            upstream::ClientHeader::Hop => hop = true,
            upstream::ClientHeader::Other => {}
        }
    }
    if head > limits.head as usize {
        return Err(Refusal::HeadTooLarge("request head"));
    }
    Ok(hop)
}

/// Legacy sessions share the binding table with Streamable HTTP ones, in
/// a namespace of their own.
fn legacy_session_key(sid: &str) -> String {
    format!("legacy:{sid}")
}

/// Does the raw header block have a line starting with `name:` (any case)?
fn has_header_line(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii_start();
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()..].trim_ascii_start().first() == Some(&b':')
    })
}

fn header_str(req: &RequestHeader, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_bytes<'a>(req: &'a RequestHeader, name: &http::HeaderName) -> Option<&'a [u8]> {
    req.headers.get(name).map(|v| v.as_bytes())
}

/// Which configured listener accepted the connection.
fn listener_name<'a>(
    snap: &'a sluice_config::Snapshot,
    local: Option<&pingora::protocols::l4::socket::SocketAddr>,
) -> &'a str {
    let local = local.and_then(|a| a.as_inet());
    snap.listeners
        .iter()
        .find(|l| {
            local.is_some_and(|a| {
                a.port() == l.address.port()
                    && (l.address.ip().is_unspecified() || l.address.ip() == a.ip())
            })
        })
        .or(snap.listeners.first())
        .map_or("", |l| l.name.as_str())
}
