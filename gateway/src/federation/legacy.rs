//! The legacy HTTP+SSE clients (2024-11-05) of virtual servers on this
//! replica: each stream's id (the `sessionId` its message URL carries, 128
//! random bits), who opened it, where its messages go, and the sealed
//! session its `initialize` was given. A stream lives on the replica that
//! opened it; nothing here is shared.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;

use sluice_config::locks::Recover;

/// Messages waiting for a client that reads slowly; past this its stream
/// ends (the client reconnects).
pub const BACKLOG: usize = 256;

/// The most legacy streams one replica holds.
pub const MAX_STREAMS: usize = 10_000;

/// Why a stream could not be opened or used.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// As many streams as a replica holds are open.
    Full,
    /// The system's random source failed: no id that cannot be guessed.
    NoRandom,
}

struct Stream {
    /// Who opened it (`subject\0tenant`); only they post to it.
    owner: String,
    to_client: mpsc::Sender<Bytes>,
    /// The client session's sealed id, once `initialize` gave one.
    sealed: Option<String>,
}

#[derive(Default)]
pub struct LegacyStreams {
    streams: Mutex<HashMap<String, Stream>>,
}

/// A stream as a message posted to it sees it.
pub struct Posted {
    pub to_client: mpsc::Sender<Bytes>,
    pub sealed: Option<String>,
}

impl LegacyStreams {
    /// A new stream for `owner`: its id, and what its messages' answers
    /// send the client.
    pub fn open(&self, owner: String) -> Result<(String, mpsc::Receiver<Bytes>), Refused> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Refused::NoRandom)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let (tx, rx) = mpsc::channel(BACKLOG);
        let mut streams = self.streams.lock().recover();
        if streams.len() >= MAX_STREAMS {
            return Err(Refused::Full);
        }
        let stream = Stream {
            owner,
            to_client: tx,
            sealed: None,
        };
        streams.insert(id.clone(), stream);
        Ok((id, rx))
    }

    /// The stream `id`, if `owner` opened it (another's is unknown).
    pub fn posted(&self, id: &str, owner: &str) -> Option<Posted> {
        let streams = self.streams.lock().recover();
        let s = streams.get(id).filter(|s| s.owner == owner)?;
        Some(Posted {
            to_client: s.to_client.clone(),
            sealed: s.sealed.clone(),
        })
    }

    /// The sealed session `initialize` gave the stream `id`.
    pub fn seal(&self, id: &str, sealed: String) {
        if let Some(s) = self.streams.lock().recover().get_mut(id) {
            s.sealed = Some(sealed);
        }
    }

    /// The sealed session of the stream `id`, once it has one.
    pub fn sealed(&self, id: &str) -> Option<String> {
        self.streams.lock().recover().get(id)?.sealed.clone()
    }

    /// Where the stream `id`'s messages go.
    pub fn sender(&self, id: &str) -> Option<mpsc::Sender<Bytes>> {
        Some(self.streams.lock().recover().get(id)?.to_client.clone())
    }

    /// The client's stream ended.
    pub fn close(&self, id: &str) {
        self.streams.lock().recover().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_posted_to_by_its_owner_only() {
        let streams = LegacyStreams::default();
        let (id, _rx) = streams.open("alice\0".into()).expect("open");
        assert_eq!(id.len(), 32);
        assert!(streams.posted(&id, "bob\0").is_none());
        let p = streams.posted(&id, "alice\0").expect("alice's");
        assert!(p.sealed.is_none());
        streams.seal(&id, "sealed".into());
        assert_eq!(
            streams.posted(&id, "alice\0").and_then(|p| p.sealed),
            Some("sealed".into())
        );
        let (other, _rx2) = streams.open("alice\0".into()).expect("open");
        assert_ne!(id, other);
        streams.close(&id);
        assert!(streams.posted(&id, "alice\0").is_none());
        assert!(streams.posted(&other, "alice\0").is_some());
    }
}
