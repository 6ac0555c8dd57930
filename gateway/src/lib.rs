//! Sluice's data plane: a Pingora streaming reverse proxy that reads every
//! MCP JSON-RPC message inline and serves each request from one immutable,
//! versioned config snapshot.
//!
//! Request path (see `proxy`): route → framing, Host/Origin → body read and
//! classified → upstream chosen → bytes streamed back while the response is
//! watched → metrics and log.

pub mod access;
pub mod access_log;
pub mod admin;
pub mod admit;
pub mod answer;
pub mod approval;
pub mod audit;
pub mod binds;
pub mod bodies;
pub mod cli;
pub mod conn;
pub mod control;
pub mod ctx;
pub mod exchange;
pub mod failure;
pub mod federation;
pub mod identity;
pub mod inject;
pub mod limits;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod record;
pub mod refusal;
pub mod reload;
pub mod resilience;
pub mod server;
pub mod sessions;
pub mod state;
pub mod tls;
pub mod token_exchange;
pub mod trace;
pub mod upstream;
