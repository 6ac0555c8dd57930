//! The gateway's shared state: the current `Runtime` (one config snapshot
//! plus what was resolved for it) behind one `ArcSwap`, so a request takes
//! exactly one version for its whole life; readiness; the metrics registry;
//! tool catalogs learnt from upstream `tools/list` results.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;
use sluice_config::Snapshot;

use crate::audit::{AuditSender, Sampler};
use crate::identity::{AssertionSigner, Authenticator};
use crate::inject::{UpstreamCredential, UserCredentialSet};
use crate::limits::Limits;
use crate::mcp::ListedTool;
use crate::metrics::Metrics;
use crate::resilience::UpstreamHealth;
use crate::sessions::Sessions;

/// Most tools remembered per upstream for metric labels; more fold into `other`.
const MAX_CATALOG: usize = 1024;

/// A snapshot and the upstream peers built for it. Swapped as one.
pub struct Runtime {
    pub snapshot: Arc<Snapshot>,
    /// By upstream index; `None` while its address does not resolve (or
    /// resolves outside the egress allowlist).
    pub peers: Vec<Option<HttpPeer>>,
    /// By upstream index: the upstream's own credential, if configured.
    pub credentials: Vec<Option<UpstreamCredential>>,
    /// By upstream index: per-tenant credentials (tenant, credential).
    pub tenant_credentials: Vec<Vec<(Box<str>, UpstreamCredential)>>,
    /// By upstream index: per-user credentials, if configured.
    pub user_credentials: Vec<Option<Arc<UserCredentialSet>>>,
    /// By upstream index: the caller's token exchanged for the
    /// upstream's, if configured.
    pub exchangers: Vec<Option<Arc<crate::token_exchange::Exchanger>>>,
    /// Built from the snapshot's identity section; `None` when it is off.
    pub auth: Option<Arc<Authenticator>>,
    pub sampler: Sampler,
    /// Rate limits and concurrency caps; their state outlives the snapshot.
    pub limits: Arc<Limits>,
    /// By upstream index: circuit breaker and retry budget.
    pub health: Vec<Arc<UpstreamHealth>>,
    /// Token buckets and budget spend for model traffic.
    pub llm: Arc<crate::llm::LlmState>,
    /// Seal and open virtual servers' session ids.
    pub session_keys: Arc<crate::federation::seal::Keys>,
}

impl Runtime {
    /// The credential `upstream` gets for a caller of `tenant`: the tenant's
    /// own if configured, else the upstream's.
    pub fn credential_for(
        &self,
        upstream: usize,
        tenant: Option<&str>,
    ) -> Option<&UpstreamCredential> {
        let by_tenant = tenant.and_then(|t| {
            self.tenant_credentials
                .get(upstream)?
                .iter()
                .find(|(n, _)| &**n == t)
                .map(|(_, c)| c)
        });
        by_tenant.or_else(|| self.credentials.get(upstream).and_then(Option::as_ref))
    }

    /// The state before any config was applied: serves nothing, not ready.
    pub fn empty(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Arc::new(snapshot),
            peers: Vec::new(),
            credentials: Vec::new(),
            tenant_credentials: Vec::new(),
            user_credentials: Vec::new(),
            exchangers: Vec::new(),
            auth: None,
            sampler: Sampler::new(1.0),
            limits: Arc::new(Limits::default()),
            health: Vec::new(),
            llm: Arc::new(crate::llm::LlmState::default()),
            session_keys: Arc::new(crate::federation::seal::Keys::new(&[], &PROCESS_KEY)),
        }
    }
}

/// The key that seals virtual servers' session ids when none is configured:
/// random, one per process.
pub static PROCESS_KEY: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| {
    let mut k = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut k).is_err() {
        // No system randomness: sessions cannot be sealed safely; a key
        // nobody else knows still keeps them unreadable to clients.
        k = rand::random();
    }
    k
});

pub struct Shared {
    current: ArcSwap<Runtime>,
    ready: AtomicBool,
    pub metrics: Arc<Metrics>,
    pub sessions: Sessions,
    /// Signs the identity assertions upstreams receive.
    pub signer: AssertionSigner,
    /// Assertions kept for reuse where an upstream allows it.
    pub assertions: crate::identity::AssertionCache,
    /// Where audit events go; `None` when no sink is configured.
    pub audit: Option<AuditSender>,
    catalogs: ArcSwap<HashMap<String, Arc<HashSet<Box<str>>>>>,
    /// `upstream\0tool` → hash of the definition last listed (learnt only
    /// while approval rules exist).
    tool_hashes: dashmap::DashMap<String, Box<str>>,
    /// Where approvals are filed and audit shipped, when configured.
    pub control: Option<Arc<crate::control::ControlClient>>,
    /// Catalog problems already reported, so each is logged once.
    catalog_warned: std::sync::Mutex<HashSet<String>>,
    /// Idle connections of the gateway's own HTTP/1.1 client.
    pub idle: crate::conn::pool::IdlePool,
    /// Client connections open, and those waiting for their first head.
    pub conns: crate::conn::conns::Conns,
    /// Virtual servers' upstream sessions, per caller (`federation::sessions`).
    pub upstream_sessions: crate::federation::sessions::UpstreamSessions,
    /// The access log, when configured (set once at start).
    pub access_log: std::sync::OnceLock<crate::access_log::AccessLog>,
    /// The trace exporter, when `traces` is configured (set once at start).
    pub tracer: std::sync::OnceLock<crate::trace::Tracer>,
    /// Virtual servers' legacy HTTP+SSE clients on this replica.
    pub legacy_streams: crate::federation::legacy::LegacyStreams,
    /// Virtual servers' sources that speak legacy HTTP+SSE: the event
    /// streams this replica holds open to them.
    pub source_streams: crate::federation::source_streams::SourceStreams,
    /// Tool definitions seen on pinned and screened sources.
    pub definitions: crate::federation::pins::Definitions,
    /// Catalog servers' search indexes, per caller.
    pub tool_indexes: crate::federation::search::Indexes,
    /// Idempotency keys of tool calls, when limits have no shared store.
    pub idempotency: crate::federation::idempotency::Ledger,
    /// HTTP tools' compiled input schemas.
    pub http_validators: crate::federation::validators::Validators,
    /// Callers' tokens exchanged for upstreams' (`token_exchange`).
    pub tokens: crate::token_exchange::Tokens,
    /// Virtual servers' sessions their clients ended on this replica.
    pub ended_sessions: crate::federation::seal::Ended,
}

impl Shared {
    pub fn new(
        initial: Runtime,
        signer: AssertionSigner,
        audit: Option<AuditSender>,
        metrics: Metrics,
        control: Option<Arc<crate::control::ControlClient>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(initial),
            ready: AtomicBool::new(false),
            metrics: Arc::new(metrics),
            sessions: Sessions::new(std::time::Duration::from_secs(24 * 3600)),
            signer,
            assertions: Default::default(),
            audit,
            catalogs: ArcSwap::from_pointee(HashMap::new()),
            tool_hashes: dashmap::DashMap::new(),
            control,
            catalog_warned: std::sync::Mutex::new(HashSet::new()),
            idle: Default::default(),
            conns: Default::default(),
            upstream_sessions: Default::default(),
            legacy_streams: Default::default(),
            source_streams: Default::default(),
            access_log: Default::default(),
            tracer: Default::default(),
            definitions: Default::default(),
            tool_indexes: Default::default(),
            idempotency: Default::default(),
            http_validators: Default::default(),
            tokens: Default::default(),
            ended_sessions: Default::default(),
        })
    }

    /// The hash of `tool`'s definition as `upstream` last listed it.
    pub fn tool_hash(&self, upstream: &str, tool: &str) -> Option<Box<str>> {
        self.definitions.digest(upstream, tool).or_else(|| {
            self.tool_hashes
                .get(&format!("{upstream}\0{tool}"))
                .map(|h| h.clone())
        })
    }

    /// The runtime a new request will use for its whole life.
    pub fn current(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Publish a new runtime; requests already in flight keep theirs.
    pub fn publish(&self, runtime: Runtime) {
        self.metrics
            .config_generation
            .set(runtime.snapshot.version.generation as i64);
        self.current.store(Arc::new(runtime));
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The label for `tool` on `upstream`: its name if the upstream listed it.
    pub fn tool_label<'a>(&self, upstream: &str, tool: &'a str) -> &'a str {
        let known = self
            .catalogs
            .load()
            .get(upstream)
            .is_some_and(|c| c.contains(tool));
        if known {
            tool
        } else {
            "other"
        }
    }

    /// Remember the tools an upstream listed (bounded), for metric labels,
    /// and report policy rules this catalog shows can never match.
    pub fn learn_tools(&self, snap: &Snapshot, upstream: &str, tools: &[ListedTool]) {
        for t in tools {
            if let Some(h) = &t.definition_hash {
                if self.tool_hashes.len() < MAX_CATALOG * 16 {
                    self.tool_hashes
                        .insert(format!("{upstream}\0{}", t.name), h.clone());
                }
            }
        }
        let current = self.catalogs.load();
        if let Some(have) = current.get(upstream) {
            if tools.iter().all(|t| have.contains(&t.name)) {
                return;
            }
        }
        for problem in crate::policy::catalog_problems(snap, upstream, tools) {
            let key = format!("{}:{upstream}:{problem}", snap.version.generation);
            let new = self
                .catalog_warned
                .lock()
                .map(|mut w| w.len() < 10_000 && w.insert(key))
                .unwrap_or(false);
            if new {
                tracing::warn!(upstream, %problem, "policy rule can never match this upstream's tools");
                self.metrics
                    .unmatched_rules
                    .with_label_values(&[upstream])
                    .inc();
            }
        }
        self.catalogs.rcu(|map| {
            let mut map = HashMap::clone(map);
            let mut set: HashSet<Box<str>> = map
                .get(upstream)
                .map(|s| HashSet::clone(s))
                .unwrap_or_default();
            for t in tools {
                if set.len() >= MAX_CATALOG {
                    break;
                }
                set.insert(t.name.clone());
            }
            map.insert(upstream.to_owned(), Arc::new(set));
            map
        });
    }
}
