//! MCP on the wire: JSON-RPC classification of client messages, the
//! incremental SSE parser, matching server messages to their requests, the
//! 2026-07-28 header rules and the legacy SSE `endpoint` rewrite.

pub mod jsonrpc;
pub mod legacy;
pub mod members;
mod probe;
pub mod response;
pub mod revision;
pub mod scan;
mod shape;
pub(crate) mod skim;
pub mod sse;
pub mod subscription;

pub use jsonrpc::{
    classify, classify_capped, ClassifyError, Kind, Message, Method, RequestFacts, RequestId,
};
pub use response::{ListedTool, Outcome, ResponseInspector};
pub use revision::Revision;
pub use scan::JsonCaps;

#[cfg(test)]
mod tests;
