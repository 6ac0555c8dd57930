//! What a finished request leaves behind: its metrics, its audit event
//! (if sampled in) and its access-log line — from the request's `Ctx` and
//! the answer's status, wherever the request was served (Pingora's
//! session, or a stream the gateway holds itself, `detach`).

use std::time::Instant;

use bytes::Bytes;
use pingora::Error;

use crate::ctx::Ctx;
use crate::failure::Failure;
use crate::mcp::{Method, Revision};
use crate::state::Shared;
use crate::{audit, refusal};

/// What the wire side of a finished request says about it.
pub(crate) struct Done<'a> {
    /// The answer's status as written to the client (0: none was).
    pub status: u16,
    pub method: &'a str,
    pub version: http::Version,
}

impl Shared {
    /// An exchange failed: counted by kind, logged, and charged to the
    /// upstream's circuit when the upstream is at fault. Returns the kind.
    pub(crate) fn failed(&self, e: &Error, ctx: &mut Ctx) -> Failure {
        let kind = Failure::of(e);
        let m = &self.metrics;
        m.upstream_errors
            .with_label_values(&[ctx.route_label(), kind.label()])
            .inc();
        tracing::warn!(route = ctx.route_label(), error = %e, "proxying failed");
        if e.esource() == &pingora::ErrorSource::Upstream {
            ctx.outcome.failure.get_or_insert(kind);
            if let Some(t) = ctx.exchange.ticket.as_mut() {
                t.record(false, m);
            }
        }
        kind
    }

    /// The upstream cut off an answer that had started: counted, and what
    /// closes it properly for the client — for an SSE answer, one error
    /// event for each call of the request still waiting.
    pub(crate) fn cut_short(&self, ctx: &mut Ctx) -> Option<Bytes> {
        self.metrics
            .upstream_resets
            .with_label_values(&[ctx.route_label()])
            .inc();
        ctx.outcome.failure = Some(Failure::Reset);
        if !ctx.exchange.inspector.is_sse() {
            return None;
        }
        let facts = ctx.request.facts.as_ref()?;
        let pending = facts
            .request_ids()
            .filter(|id| ctx.exchange.inspector.outcome(id).is_none());
        refusal::sse_errors(pending, "upstream connection lost before the answer")
    }

    /// The request is over: the circuit hears how the upstream did, then
    /// metrics, the audit event and the access-log line.
    pub(crate) fn record(&self, done: &Done, e: Option<&Error>, ctx: &mut Ctx) {
        if let (Some(t), None, Some(_)) = (ctx.exchange.ticket.as_mut(), e, ctx.exchange.sent) {
            t.record(done.status < 500, &self.metrics);
        }
        self.trace_spans(done, e, ctx);
        let ctx = &*ctx;
        let m = &self.metrics;
        let route = ctx.route_label();
        let (status, method) = (done.status, done.method);
        m.requests
            .with_label_values(&[route, method_label(method), status_label(status)])
            .inc();
        m.request_duration
            .with_label_values(&[route])
            .observe(ctx.request.started.elapsed().as_secs_f64());
        m.gateway_time
            .with_label_values(&[route])
            .observe(ctx.outcome.gateway_time.as_secs_f64());
        if let Some(l) = ctx.exchange.latency {
            m.upstream_latency
                .with_label_values(&[route])
                .observe(l.as_secs_f64());
        }
        if ctx.exchange.sse_counted {
            m.sse_streams.with_label_values(&[route]).dec();
        }
        if ctx.exchange.inspector.unparsed > 0 {
            m.unparsed_server_messages
                .with_label_values(&[route])
                .inc_by(u64::from(ctx.exchange.inspector.unparsed));
        }
        for method in &ctx.exchange.inspector.server_messages {
            m.mcp_messages
                .with_label_values(&[route, "server", method.as_label()])
                .inc();
        }
        // A virtual server's call names the source it went to.
        let upstream_name = match &ctx.exchange.federated {
            Some((i, _)) => ctx.rt.snapshot.upstreams[*i].name.as_str(),
            None => ctx
                .route()
                .map(|r| ctx.rt.snapshot.upstream(r).name.as_str())
                .unwrap_or(""),
        };
        if let (Some(tools), false) = (
            &ctx.exchange.inspector.tools_seen,
            ctx.exchange.catalog_learnt,
        ) {
            self.learn_tools(&ctx.rt.snapshot, upstream_name, tools);
        }
        if let Some(facts) = &ctx.request.facts {
            for msg in facts
                .messages
                .iter()
                .filter(|m| m.method == Method::ToolsCall)
            {
                let outcome = match (&msg.id, ctx.outcome.refused) {
                    (_, Some(_)) => "refused",
                    (Some(id), None) => ctx
                        .exchange
                        .inspector
                        .outcome(id)
                        .map_or("no_response", |o| o.as_label()),
                    (None, None) => "notification",
                };
                let tool = self.tool_label(upstream_name, msg.target.as_deref().unwrap_or(""));
                m.tool_calls
                    .with_label_values(&[route, tool, outcome])
                    .inc();
            }
        }
        if let Some(f) = &ctx.decision.list_filter {
            if f.removed > 0 {
                m.list_items_hidden
                    .with_label_values(&[route])
                    .inc_by(f.removed as u64);
            }
            if f.withheld > 0 {
                m.upstream_messages_withheld
                    .with_label_values(&[route])
                    .inc_by(f.withheld as u64);
            }
        }
        let llm = ctx
            .decision
            .llm
            .as_deref()
            .map(|call| self.record_llm(ctx, call));
        self.audit_event(ctx, status, upstream_name, e.is_some(), llm);
        let first = ctx.request.facts.as_ref().map(|f| f.first());
        tracing::debug!(
            route,
            status,
            method,
            version = ?done.version,
            rpc = first.map_or("", |m| m.method.name()),
            target = first.and_then(|m| m.target.as_deref()).unwrap_or(""),
            revision = ctx.request.revision.map_or("", Revision::as_label),
            session = ctx.request.session.as_deref().unwrap_or(""),
            gateway_us = ctx.outcome.gateway_time.as_micros() as u64,
            error = e.map(|e| e.to_string()),
            "request"
        );
        self.access_line(ctx, (status, method));
    }

    /// The request's access-log line, if one is kept and it is sampled in.
    fn access_line(&self, ctx: &Ctx, (status, method): (u16, &str)) {
        let Some(log) = self.access_log.get() else {
            return;
        };
        // The id the upstream and the audit event know, else one of its own.
        let request_id = match ctx.request.request_id.as_deref() {
            Some(id) => std::borrow::Cow::Borrowed(id),
            None => std::borrow::Cow::Owned(audit::new_event_id()),
        };
        if !log.sampled(&request_id) {
            return;
        }
        let first = ctx.request.facts.as_ref().map(|f| f.first());
        let upstream = match &ctx.exchange.federated {
            Some((i, _)) => Some(ctx.rt.snapshot.upstreams[*i].name.as_str()),
            None => ctx
                .route()
                .map(|r| ctx.rt.snapshot.upstream(r).name.as_str()),
        };
        let model = ctx.decision.llm.as_deref().map(|c| c.req.model.as_str());
        let caller = ctx.caller.as_ref();
        let line = crate::access_log::Line {
            time: audit::format_rfc3339_millis(std::time::SystemTime::now()),
            request_id: &request_id,
            route: ctx.route().map(|r| r.name.as_str()),
            upstream,
            http_method: method,
            status,
            rpc_method: first.map(|m| m.method.name()),
            target: first.and_then(|m| m.target.as_deref()).or(model),
            revision: ctx.request.revision.map(Revision::as_label),
            session: ctx.request.session.as_deref(),
            tenant: caller.and_then(|c| c.tenant.as_deref()),
            subject: caller.map(|c| &*c.subject),
            refused: ctx.outcome.refused,
            rpc_error: ctx.outcome.refused_code,
            bytes_in: ctx.request.body.as_ref().map_or(0, |b| b.len()),
            bytes_out: ctx.outcome.bytes_out,
            duration_ms: ctx.request.started.elapsed().as_secs_f64() * 1000.0,
            gateway_us: ctx.outcome.gateway_time.as_micros() as u64,
            trace_id: ctx.trace.as_ref().map(|t| t.trace_id_hex()),
        };
        log.write(line.to_json());
    }

    /// A sampled request's spans, handed to the exporter (`trace`).
    fn trace_spans(&self, done: &Done, e: Option<&Error>, ctx: &mut Ctx) {
        let Some(tracer) = self.tracer.get() else {
            return;
        };
        let streamed = ctx.exchange.inspector.is_sse()
            || ctx.decision.llm.as_ref().is_some_and(|c| c.req.stream);
        match (ctx.trace.as_deref_mut(), ctx.exchange.sent) {
            (Some(t), _) if !t.sampled => return,
            (None, _) => return,
            (Some(t), Some(sent)) => {
                t.upstream(sent, ctx.exchange.latency.map(|l| sent + l), streamed)
            }
            (Some(_), None) => {}
        }
        let root = trace_root(done, e, ctx);
        if let Some(t) = ctx.trace.as_deref() {
            tracer.finish(t.spans(ctx.request.started, root));
        }
    }

    /// Queue the audit event of a routed request, if it is sampled in.
    /// Never blocks: a full queue drops and counts.
    fn audit_event(
        &self,
        ctx: &Ctx,
        status: u16,
        upstream: &str,
        failed: bool,
        llm: Option<audit::LlmAudit>,
    ) {
        let (Some(tx), Some(route)) = (&self.audit, ctx.route()) else {
            return;
        };
        let decision = match ctx.outcome.refused {
            Some(_) if ctx.outcome.access_denied => audit::Decision::Deny,
            Some(_) => audit::Decision::Error,
            None if failed || status >= 500 => audit::Decision::Error,
            None => audit::Decision::Allow,
        };
        let request_id = ctx.request.request_id.as_deref().unwrap_or("");
        let key = ctx.request.session.as_deref().unwrap_or(request_id);
        // Calls that went through on an approval are always recorded.
        if ctx.decision.approval.is_none() && !ctx.rt.sampler.keep(decision, key) {
            return;
        }
        let first = ctx.request.facts.as_ref().map(|f| f.first());
        let snap = &ctx.rt.snapshot;
        let mut ev = audit::AuditEvent::new(
            route.name.as_str(),
            first.map_or("", |m| m.method.name()),
            decision,
            snap.version.to_string(),
            request_id,
        );
        if ev.method.is_empty() {
            ev.method = if ctx.request.method_is_delete {
                "DELETE".into()
            } else {
                "GET".into()
            };
        }
        if let Some(c) = &ctx.caller {
            ev.subject = Some(c.subject.to_string());
            ev.tenant = c.tenant.as_deref().map(str::to_owned);
        }
        ev.session = ctx.request.session.as_deref().map(str::to_owned);
        ev.trace_id = ctx.trace.as_ref().map(|t| t.trace_id_hex());
        ev.upstream = (!upstream.is_empty()).then(|| upstream.to_owned());
        ev.target = first.and_then(|m| m.target.as_deref()).map(str::to_owned);
        ev.upstream_target = ctx.exchange.federated.as_ref().map(|(_, t)| t.to_string());
        ev.reason = ctx
            .outcome
            .refused
            .or(ctx.outcome.failure.map(Failure::label))
            .map(str::to_owned);
        if let (Some(m), Some(body)) = (first, &ctx.request.body) {
            if let Some(args) = m.arguments.clone().and_then(|r| body.get(r)) {
                ev.arguments_digest = Some(audit::digest(args));
                if snap.audit.include_arguments {
                    ev.arguments = serde_json::from_slice(args)
                        .ok()
                        .map(|v| audit::redact(&v, &snap.audit.redact));
                }
            }
        }
        ev.outcome = match (ctx.outcome.refused, first.and_then(|m| m.id.as_ref())) {
            (Some(_), _) => Some("refused".into()),
            (None, Some(id)) => Some(
                ctx.exchange
                    .inspector
                    .outcome(id)
                    .map_or("no_response", |o| o.as_label())
                    .into(),
            ),
            (None, None) => None,
        };
        ev.status = status;
        ev.approval = ctx.decision.approval.clone();
        if ctx.decision.deprecated {
            ev.tool_state = Some("deprecated".into());
        }
        ev.latency_ms = ctx.request.started.elapsed().as_secs_f64() * 1000.0;
        if let Some(l) = llm {
            ev.method = "model".into();
            ev.target = Some(l.model.clone());
            ev.llm = Some(l);
        }
        let label = match decision {
            audit::Decision::Allow => "allow",
            audit::Decision::Deny => "deny",
            audit::Decision::Error => "error",
        };
        self.metrics.audit_events.with_label_values(&[label]).inc();
        tx.send(ev);
    }

    /// Settle a model call (token buckets, budgets, cost) and record its
    /// GenAI metrics; returns what audit records of it.
    fn record_llm(&self, ctx: &Ctx, call: &crate::llm::LlmCall) -> audit::LlmAudit {
        let m = &self.metrics;
        let snap = &ctx.rt.snapshot;
        let tenant = ctx
            .caller
            .as_ref()
            .and_then(|c| c.tenant.as_deref())
            .unwrap_or("");
        let cost = crate::llm::settle((snap, &ctx.rt.llm), call, &self.metrics, tenant);
        let op = call.req.api.operation();
        let model = call.req.model.as_str();
        let o = call.outcome.as_ref();
        let upstream_model = o.and_then(|o| {
            snap.llm
                .alias(model)
                .and_then(|a| a.targets.get(o.target))
                .map(|t| t.model.clone())
        });
        let usage = o.filter(|o| o.saw_usage).map(|o| o.usage);
        if let Some(u) = usage {
            m.llm_tokens
                .with_label_values(&[op, model, "input"])
                .observe(u.prompt as f64);
            m.llm_tokens
                .with_label_values(&[op, model, "output"])
                .observe(u.completion as f64);
        }
        let end = Instant::now();
        if let Some(first) = o.and_then(|o| o.first_token_at) {
            m.llm_ttft
                .with_label_values(&[op, model])
                .observe(first.duration_since(ctx.request.started).as_secs_f64());
            if let Some(u) = usage.filter(|u| u.completion > 1) {
                m.llm_tpot
                    .with_label_values(&[op, model])
                    .observe(end.duration_since(first).as_secs_f64() / (u.completion - 1) as f64);
            }
        }
        if o.is_some() {
            m.llm_duration
                .with_label_values(&[op, model])
                .observe(end.duration_since(ctx.request.started).as_secs_f64());
        }
        audit::LlmAudit {
            model: model.to_owned(),
            upstream_model,
            stream: call.req.stream,
            prompt_tokens: usage.map(|u| u.prompt),
            completion_tokens: usage.map(|u| u.completion),
            total_tokens: usage.map(|u| u.total()),
            cached_tokens: usage.map(|u| u.cached),
            reasoning_tokens: usage.map(|u| u.reasoning),
            cost_usd: cost,
            attempts: o.map_or(0, |o| o.attempts),
            prompt: snap
                .llm
                .audit_text
                .then(|| call.req.prompt_for_audit(&snap.audit.redact))
                .flatten(),
            completion: o.and_then(|o| o.text.clone()),
        }
    }
}

fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        _ => "other",
    }
}

fn status_label(s: u16) -> &'static str {
    const CODES: [(u16, &str); 18] = [
        (0, "0"),
        (200, "200"),
        (202, "202"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (406, "406"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (301, "301"),
        (302, "302"),
    ];
    CODES.iter().find(|(c, _)| *c == s).map_or(
        match s / 100 {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        |(_, l)| l,
    )
}

/// The server span of a finished request: named and described after the
/// OpenTelemetry semantic conventions for MCP and GenAI. Never arguments,
/// headers or tokens.
fn trace_root(done: &Done, e: Option<&Error>, ctx: &Ctx) -> crate::trace::Root {
    use crate::trace::AttrValue::{Int, Static, Str};
    let mut a = Vec::with_capacity(16);
    a.push(("http.request.method", Str(done.method.to_owned())));
    a.push(("http.response.status_code", Int(i64::from(done.status))));
    let route = ctx.route();
    if let Some(r) = route {
        a.push(("http.route", Str(r.path.clone())));
        a.push(("sluice.route", Str(r.name.clone())));
        let up = match &ctx.exchange.federated {
            Some((i, _)) => &ctx.rt.snapshot.upstreams[*i].name,
            None => &ctx.rt.snapshot.upstream(r).name,
        };
        a.push(("sluice.upstream", Str(up.clone())));
    }
    if let Some(id) = &ctx.request.request_id {
        a.push(("sluice.request_id", Str(id.clone())));
    }
    let mut name = None;
    if let Some(m) = ctx.request.facts.as_ref().map(|f| f.first()) {
        let method = m.method.name();
        a.push(("mcp.method.name", Str(method.to_owned())));
        if let Some(id) = &m.id {
            a.push((
                "jsonrpc.request.id",
                Str(id.raw().trim_matches('"').to_owned()),
            ));
        }
        let target = m.target.as_deref();
        match (&m.method, target) {
            (Method::ToolsCall, Some(t)) => {
                a.push(("gen_ai.operation.name", Static("execute_tool")));
                a.push(("gen_ai.tool.name", Str(t.to_owned())));
            }
            (Method::PromptsGet, Some(t)) => a.push(("gen_ai.prompt.name", Str(t.to_owned()))),
            (
                Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe,
                Some(t),
            ) => a.push(("mcp.resource.uri", Str(t.to_owned()))),
            _ => {}
        }
        if let Some((_, original)) = &ctx.exchange.federated {
            a.push(("sluice.upstream_target", Str(original.to_string())));
        }
        name = Some(match target {
            Some(t) if matches!(m.method, Method::ToolsCall | Method::PromptsGet) => {
                format!("{method} {t}")
            }
            _ => method.to_owned(),
        });
    }
    if let Some(s) = &ctx.request.session {
        a.push(("mcp.session.id", Str(s.to_string())));
    }
    if let Some(r) = ctx.request.revision {
        a.push(("mcp.protocol.version", Static(r.as_label())));
    }
    if let Some(call) = ctx.decision.llm.as_deref() {
        let op = call.req.api.operation();
        a.push(("gen_ai.operation.name", Static(op)));
        a.push(("gen_ai.request.model", Str(call.req.model.clone())));
        if let Some(o) = call.outcome.as_ref() {
            let target = ctx
                .rt
                .snapshot
                .llm
                .alias(&call.req.model)
                .and_then(|al| al.targets.get(o.target));
            if let Some(t) = target {
                a.push(("gen_ai.response.model", Str(t.model.clone())));
            }
            if o.saw_usage {
                a.push(("gen_ai.usage.input_tokens", Int(o.usage.prompt as i64)));
                a.push(("gen_ai.usage.output_tokens", Int(o.usage.completion as i64)));
            }
        }
        name = Some(format!("{op} {}", call.req.model));
    }
    let mut error = None;
    if let Some(code) = ctx.outcome.refused_code {
        a.push(("rpc.response.status_code", Str(code.to_string())));
        a.push(("error.type", Str(code.to_string())));
    }
    if let Some(why) = ctx.outcome.refused {
        a.push(("sluice.refused", Static(why)));
        error = Some(why.to_owned());
    }
    let upstream_error = ctx.outcome.failure.map(|f| f.label().to_owned());
    if let Some(f) = &upstream_error {
        a.push(("error.type", Str(f.clone())));
        error.get_or_insert_with(|| f.clone());
    }
    // A client that went away (after its answer, or before) is not the
    // request failing: said, but not an error status.
    match e {
        Some(e) if e.esource() == &pingora::ErrorSource::Downstream => {
            a.push(("sluice.client_error", Str(e.etype().as_str().to_owned())));
        }
        Some(e) if error.is_none() => error = Some(e.etype().as_str().to_owned()),
        _ => {}
    }
    if error.is_none() && done.status >= 500 {
        error = Some(format!("status {}", done.status));
    }
    let name = name
        .unwrap_or_else(|| format!("{} {}", done.method, route.map_or("", |r| r.path.as_str())));
    crate::trace::Root {
        name,
        attributes: a,
        error,
        upstream_error,
    }
}
