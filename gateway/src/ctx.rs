//! One request's state, in the parts the layers fill in turn: what the
//! client asked (`Request`), who asks (`caller`), what admission granted
//! (`Decision`), the upstream exchange as it goes (`Exchange`) and how the
//! request ended (`Outcome`). Filled forward, never read back from the
//! wire; every part is read by `record` at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_config::Route;

use crate::bodies::BodyHold;
use crate::failure::Failure;
use crate::limits::Permit;
use crate::llm::LlmCall;
use crate::mcp::legacy::EndpointRewriter;
use crate::mcp::{RequestFacts, RequestId, ResponseInspector, Revision};
use crate::policy::list::ListFilter;
use crate::policy::Caller;
use crate::resilience::Ticket;
use crate::state::Runtime;

pub struct Ctx {
    /// The runtime (one snapshot) the whole request uses.
    pub rt: Arc<Runtime>,
    pub request: Request,
    /// Who is calling, when identity is configured.
    pub caller: Option<Caller>,
    pub decision: Decision,
    pub exchange: Exchange,
    pub outcome: Outcome,
    /// The request's trace context, when traces are exported (`trace`).
    pub trace: Option<Box<crate::trace::Trace>>,
}

/// What the client asked, as admission read it.
pub struct Request {
    pub started: Instant,
    /// Index of the matched route in the snapshot.
    pub route: Option<usize>,
    pub upstream_path: String,
    pub facts: Option<RequestFacts>,
    pub revision: Option<Revision>,
    /// `Mcp-Session-Id` as the client sent it (2025 revisions).
    pub session: Option<Box<str>>,
    pub body: Option<Bytes>,
    /// Correlates the audit event, the log line and the upstream assertion.
    pub request_id: Option<String>,
    pub method_is_delete: bool,
    /// The client's address, as admission saw it: requests the gateway
    /// runs in memory for it (a legacy client's messages) have none of
    /// their own.
    pub client: Option<std::net::IpAddr>,
    /// The access token the caller presented, kept only while some
    /// upstream exchanges it (`token_exchange`).
    pub subject_token: Option<Box<str>>,
    /// The client sent hop-by-hop or forwarding headers (`admit::head`).
    pub client_hop_headers: bool,
    /// The request body's share of the ceiling on bodies held at once.
    pub body_hold: BodyHold,
}

/// What admission granted the request.
#[derive(Default)]
pub struct Decision {
    /// What of a list answer this caller may see.
    pub list_filter: Option<Box<ListFilter>>,
    /// Concurrency slots this request holds; released when `Ctx` drops,
    /// whichever way the request ends.
    pub permits: Vec<Permit>,
    /// The approval this call went through on.
    pub approval: Option<String>,
    /// A catalog tool called in its `deprecated` state.
    pub deprecated: bool,
    /// A model call on an `llm` route: its targets and token reservations.
    pub llm: Option<Box<LlmCall>>,
}

/// The upstream exchange, as it goes.
pub struct Exchange {
    pub inspector: ResponseInspector,
    // Rare parts of a request are boxed: `Ctx` is moved with Pingora's
    // per-request future, so its inline size is copied on every request.
    pub legacy: Option<Box<EndpointRewriter>>,
    pub sent: Option<Instant>,
    pub latency: Option<Duration>,
    /// This request's place in its upstream's circuit breaker.
    pub ticket: Option<Ticket>,
    /// Connect attempts retried so far.
    pub retries: u32,
    /// By upstream index: the caller's token exchanged for that upstream's
    /// (`exchange::request::act_as_caller`).
    pub exchanged: Vec<(usize, http::HeaderValue)>,
    /// A POST's whole-call deadline (`timeouts.total_ms`).
    pub deadline: Option<Instant>,
    /// The upstream's tool list in this response was learnt already.
    pub catalog_learnt: bool,
    /// The answer is an event stream counted in the open-streams gauge.
    pub sse_counted: bool,
    /// A virtual server's call: the source's upstream (index) and the
    /// tool's name there.
    pub federated: Option<(usize, Box<str>)>,
    /// A keyed tool call's claim, and the answer kept to settle it.
    pub idempotent: Option<Box<crate::federation::idempotency::Pending>>,
}

/// How the request ended.
#[derive(Default)]
pub struct Outcome {
    /// Time in the gateway's own work, excluding waits on client and upstream.
    pub gateway_time: Duration,
    pub refused: Option<&'static str>,
    /// The JSON-RPC error code of that answer.
    pub refused_code: Option<i64>,
    /// The refusal was an access decision (identity, tenant, policy, host),
    /// not a broken request.
    pub access_denied: bool,
    /// What went wrong upstream after the request was admitted.
    pub failure: Option<Failure>,
    /// The answer's status when the gateway wrote the answer itself (on a
    /// connection taken out of Pingora's session, which does not know it).
    pub status: Option<u16>,
    /// Response body bytes the client was sent through the gateway's own
    /// writers (a detached stream, a model answer written directly);
    /// Pingora's session counts the rest (`proxy::logging`).
    pub bytes_out: u64,
    /// The request's state went on with its connection (a held stream):
    /// whoever holds it now records the request.
    pub taken: bool,
}

impl Ctx {
    /// A request's state as it starts, on the runtime it uses throughout.
    pub fn new(rt: Arc<Runtime>) -> Ctx {
        Ctx {
            rt,
            request: Request {
                started: Instant::now(),
                route: None,
                upstream_path: String::new(),
                facts: None,
                revision: None,
                session: None,
                body: None,
                request_id: None,
                method_is_delete: false,
                client: None,
                subject_token: None,
                client_hop_headers: false,
                body_hold: BodyHold::default(),
            },
            caller: None,
            decision: Decision::default(),
            exchange: Exchange {
                inspector: ResponseInspector::off(),
                legacy: None,
                sent: None,
                latency: None,
                ticket: None,
                retries: 0,
                exchanged: Vec::new(),
                deadline: None,
                catalog_learnt: false,
                sse_counted: false,
                federated: None,
                idempotent: None,
            },
            outcome: Outcome::default(),
            trace: None,
        }
    }

    /// The time a phase starts, read only when the request is traced and
    /// sampled (no clock read otherwise).
    pub fn clock(&self) -> Option<Instant> {
        self.trace.as_deref().and_then(crate::trace::Trace::clock)
    }

    /// A phase of the request that began at `start` ends now (kept when
    /// the request is traced and sampled).
    pub fn phase(&mut self, name: &'static str, start: Option<Instant>) {
        if let (Some(t), Some(start)) = (self.trace.as_deref_mut(), start) {
            t.phase(name, start);
        }
    }

    /// Whom a stream kept on this replica belongs to: the caller's subject
    /// and tenant (`subject\0tenant`; empty parts for an anonymous one).
    pub fn caller_key(&self) -> String {
        let (subject, tenant) = self.caller_names();
        format!("{subject}\0{}", tenant.unwrap_or(""))
    }

    /// The caller's subject and tenant (`""` and none for no caller).
    pub fn caller_names(&self) -> (&str, Option<&str>) {
        self.caller
            .as_ref()
            .map_or(("", None), |c| (&*c.subject, c.tenant.as_deref()))
    }

    pub fn route(&self) -> Option<&Route> {
        self.request.route.map(|i| &self.rt.snapshot.routes[i])
    }

    pub fn route_label(&self) -> &str {
        self.route().map_or("none", |r| r.name.as_str())
    }

    /// The id of the request's first message, to answer errors with.
    pub fn first_id(&self) -> Option<&RequestId> {
        self.request
            .facts
            .as_ref()
            .and_then(|f| f.first().id.as_ref())
    }
}
