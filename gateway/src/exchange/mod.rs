//! Upstream exchanges, once a request is admitted: the gateway's own
//! HTTP/1.1 client (`h1`) and its idle connections (`pool`), MCP calls
//! (`mcp`) and model calls with their fallbacks (`llm`).

pub mod h1;
pub mod llm;
pub mod mcp;
pub mod pool;
