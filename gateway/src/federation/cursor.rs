//! A merged list's cursor: every source's position, opaque to the client.
//! A source is at its start, at the cursor its upstream gave, or done. The
//! cursor is bound to the server's sources (a digest of their upstreams and
//! prefixes), so one from another server, or from before the sources
//! changed, is refused (-32602) rather than read against the wrong ones.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_config::{Server, Snapshot};

/// Where one source's list stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Start,
    At(String),
    Done,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    /// The sources' digest.
    s: String,
    p: Vec<Position>,
}

/// Largest cursor accepted from a client.
const MAX_CURSOR: usize = 16 * 1024;

/// The cursor for `positions` (one per source, in order); `None` when every
/// source is done (the list is complete).
pub fn encode(snap: &Snapshot, server: &Server, positions: &[Position]) -> Option<String> {
    if positions.iter().all(|p| *p == Position::Done) {
        return None;
    }
    let wire = Wire {
        s: digest(snap, server),
        p: positions.to_vec(),
    };
    let json = serde_json::to_vec(&wire).ok()?;
    Some(URL_SAFE_NO_PAD.encode(json))
}

/// The positions a client's cursor names, one per source.
pub fn decode(
    snap: &Snapshot,
    server: &Server,
    cursor: &str,
) -> Result<Vec<Position>, &'static str> {
    if cursor.len() > MAX_CURSOR {
        return Err("cursor too long");
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| "cursor not readable")?;
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| "cursor not readable")?;
    if wire.s != digest(snap, server) || wire.p.len() != server.sources.len() {
        return Err("cursor from another list");
    }
    Ok(wire.p)
}

fn digest(snap: &Snapshot, server: &Server) -> String {
    let mut h = Sha256::new();
    h.update(server.name.as_bytes());
    for s in &server.sources {
        h.update([0]);
        h.update(snap.upstreams[s.upstream].name.as_bytes());
        h.update([0]);
        h.update(s.prefix.as_bytes());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::tests::server;

    #[test]
    fn a_cursor_carries_every_sources_position_and_only_for_its_server() {
        let snap = server();
        let ws = &snap.servers[0];
        let at = vec![
            Position::Done,
            Position::At("page-2".into()),
            Position::Start,
        ];
        let c = encode(&snap, ws, &at).expect("not done");
        assert_eq!(decode(&snap, ws, &c), Ok(at));
        let done = vec![Position::Done; 3];
        assert_eq!(
            encode(&snap, ws, &done),
            None,
            "every source done: no cursor"
        );
        let mut other = ws.clone();
        other.sources[1].prefix = "x_".into();
        assert_eq!(decode(&snap, &other, &c), Err("cursor from another list"));
        assert_eq!(decode(&snap, ws, "!!"), Err("cursor not readable"));
        assert_eq!(
            decode(&snap, ws, &"A".repeat(20_000)),
            Err("cursor too long")
        );
    }
}
