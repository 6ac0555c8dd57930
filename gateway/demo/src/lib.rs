//! A hand-written MCP server used as Sluice's quick-start upstream, conformance fixture and test/load peer.
//!
//! It speaks every transport era a gateway meets on one address:
//! Streamable HTTP (`/mcp`, revisions 2025-03-26 … 2025-11-25, with sessions),
//! the stateless 2026-07-28 revision on the same endpoint, and the legacy
//! 2024-11-05 HTTP+SSE transport (`/sse` + `/message`). No MCP SDK is used so
//! that every byte on the wire is visible and deliberate.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = sluice_demo::spawn("127.0.0.1:0".parse().expect("literal address"), Default::default()).await?;
//! println!("MCP endpoint: {}", server.url());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod assets;
mod catalog;
mod dispatch;
mod jsonrpc;
pub mod llm;
mod locks;
mod options;
mod peer;
mod protocol;
mod server;
mod session;
mod sink;
mod sse;
mod state;
mod tools;
mod transport;

pub use options::DemoOptions;
pub use server::{router, spawn, DemoServer};
