//! Connections the gateway handles itself rather than through Pingora's
//! per-request session and client: the one module that relies on how
//! Pingora's HTTP/1.1 server session behaves beyond its documented API.
//! `pins` holds a test for each such assumption, so a Pingora upgrade that
//! breaks one fails there first.
//!
//! - `front`: the proxy service as Pingora runs it; the HTTP/1.1 keep-alive
//!   loop, and the way back in for a connection that left (`come_back`).
//! - `intake`: each HTTP/1.1 request's head and body start read under the
//!   gateway's deadlines before Pingora's session is made; `replay` puts
//!   those bytes back in front of a TLS stream.
//! - `conns`: the connection caps and deadlines, and the reaper.
//! - `direct`: taking the connection out of a session (`Client::take`),
//!   writing a chunked answer on it, handing it back (`give_back`).
//! - `detach`: a held event stream served in a task of its own.
//! - `h1`: the gateway's own HTTP/1.1 client (tool and model calls to
//!   HTTP/1.1 upstreams), and `pool`: its idle connections.
//! - `pins` (tests): the Pingora behaviours the above rely on.

pub mod conns;
pub mod detach;
pub mod direct;
pub mod front;
pub mod h1;
pub mod intake;
#[cfg(test)]
mod pins;
pub mod pool;
pub mod replay;

/// Bodies up to this size are replayed upstream by Pingora itself (its
/// retry buffer, `pins`); larger ones are forwarded by `exchange::mcp`,
/// which does not depend on that buffer.
pub const PINGORA_REPLAY_LIMIT: usize = 64 * 1024;
