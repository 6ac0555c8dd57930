//! The state one server instance shares across requests.

use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::options::DemoOptions;
use crate::session::SessionStore;
use crate::sink::EventIds;
use crate::tools;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub opts: DemoOptions,
    pub sessions: SessionStore,
    pub event_ids: EventIds,
    /// Ids of server→client requests; one counter per server keeps them
    /// unique across sessions, which makes gateway logs easy to follow.
    pub request_ids: Arc<AtomicU64>,
    /// Bumped by `touch-resource` so `test://watched-resource` visibly changes.
    pub watched_version: AtomicU64,
    /// `tools/list` is the same for every call: built once.
    pub tool_list: Value,
    /// Set to `true` at shutdown; every open stream watches it.
    pub closing: watch::Sender<bool>,
}

impl AppState {
    pub fn new(opts: DemoOptions) -> Self {
        let tool_list = tools::list(opts.extra_tools);
        Self(Arc::new(Inner {
            opts,
            sessions: SessionStore::default(),
            event_ids: Arc::new(AtomicU64::new(1)),
            request_ids: Arc::new(AtomicU64::new(1)),
            watched_version: AtomicU64::new(1),
            tool_list,
            closing: watch::Sender::new(false),
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
