//! The local spool of audit events waiting for control. A batch is
//! appended here — and, by the sync policy, on disk — before it counts as
//! written; events leave once control has stored them; after a restart
//! (or a crash) what control never confirmed is read again and shipped, and
//! the hash chain goes on from the last event. Files `seg-<first seq>.jsonl`
//! of a bounded size, the newest open for appends; `acked` holds the last
//! sequence number control stored. Past `max_bytes` the oldest file goes,
//! its events counted as dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use sluice_config::chain::{event_hash, link};

/// One closed file: its first and last sequence numbers and size.
struct Segment {
    first: u64,
    last: u64,
    bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    sync: bool,
    max_bytes: u64,
    active: Option<(File, Segment)>,
    closed: VecDeque<Segment>,
    acked: u64,
    dropped: prometheus::IntCounter,
}

/// What a spool held when it was opened.
#[derive(Default)]
pub struct Recovered {
    /// Events control never confirmed, oldest first, with their sequence
    /// numbers.
    pub pending: Vec<(u64, String)>,
    /// The chain's last event: its id, sequence number and hash.
    pub head: Option<(String, u64, String)>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.jsonl"))
}

impl Spool {
    /// Open (or create) the spool in `dir`.
    pub fn open(
        dir: &Path,
        cfg: sluice_config::Spool,
        dropped: prometheus::IntCounter,
    ) -> io::Result<(Spool, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let acked = std::fs::read_to_string(dir.join("acked"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".jsonl")?
                    .parse()
                    .ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut recovered = Recovered::default();
        let mut closed = VecDeque::new();
        for first in firsts {
            let path = segment_path(dir, first);
            let mut seg = Segment {
                first,
                last: first,
                bytes: 0,
            };
            for line in io::BufReader::new(File::open(&path)?).lines() {
                // A line cut by a crash is not an event.
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let Some(l) = link(&v) else { continue };
                seg.last = l.seq;
                seg.bytes += line.len() as u64 + 1;
                recovered.head = Some((l.id, l.seq, event_hash(&v)));
                if l.seq > acked {
                    recovered.pending.push((l.seq, line));
                }
            }
            if seg.last <= acked {
                std::fs::remove_file(&path)?;
            } else {
                closed.push_back(seg);
            }
        }
        let spool = Spool {
            dir: dir.to_path_buf(),
            sync: cfg.sync_each_batch,
            max_bytes: cfg.max_bytes,
            active: None,
            closed,
            acked,
            dropped,
        };
        Ok((spool, recovered))
    }

    /// A file is closed and a new one begun past this size.
    fn segment_max(&self) -> u64 {
        (self.max_bytes / 8).max(16 << 10)
    }

    /// Append `lines` (in sequence order); on disk before this returns when
    /// the policy syncs each batch.
    pub fn append(&mut self, lines: &[(u64, String)]) -> io::Result<()> {
        let Some((first, _)) = lines.first() else {
            return Ok(());
        };
        let full = self
            .active
            .as_ref()
            .is_none_or(|(_, s)| s.bytes >= self.segment_max());
        if full {
            if let Some((_, seg)) = self.active.take() {
                self.closed.push_back(seg);
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, *first))?;
            if self.sync {
                // The new file's name is on disk too.
                File::open(&self.dir)?.sync_all()?;
            }
            let seg = Segment {
                first: *first,
                last: *first,
                bytes: 0,
            };
            self.active = Some((file, seg));
        }
        let mut buf = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
        for (_, line) in lines {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        if let Some((file, seg)) = self.active.as_mut() {
            file.write_all(&buf)?;
            if self.sync {
                file.sync_data()?;
            }
            seg.bytes += buf.len() as u64;
            seg.last = lines.last().map_or(seg.last, |(s, _)| *s);
        }
        self.bound()
    }

    /// Drop the oldest files while the spool is past its size.
    fn bound(&mut self) -> io::Result<()> {
        let total = |s: &Spool| {
            s.closed.iter().map(|g| g.bytes).sum::<u64>()
                + s.active.as_ref().map_or(0, |(_, g)| g.bytes)
        };
        while total(self) > self.max_bytes {
            let Some(oldest) = self.closed.pop_front() else {
                break;
            };
            // Its events control never confirmed.
            let from = oldest.first.max(self.acked + 1);
            let lost = (oldest.last + 1).saturating_sub(from);
            tracing::warn!(
                lost,
                "the audit spool is full: its oldest events, never stored by control, are dropped"
            );
            self.dropped.inc_by(lost);
            std::fs::remove_file(segment_path(&self.dir, oldest.first))?;
        }
        Ok(())
    }

    /// Control stored every event up to `seq`: files of only those go.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq;
        let tmp = self.dir.join("acked.tmp");
        std::fs::write(&tmp, seq.to_string())?;
        std::fs::rename(&tmp, self.dir.join("acked"))?;
        while self.closed.front().is_some_and(|s| s.last <= seq) {
            if let Some(s) = self.closed.pop_front() {
                std::fs::remove_file(segment_path(&self.dir, s.first))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::chain::Link;

    fn line(seq: u64) -> (u64, String) {
        let link = Link {
            id: "c".into(),
            seq,
            prev: String::new(),
        };
        let v = serde_json::json!({"event_id": format!("e{seq}"), "pad": "x".repeat(2000), "chain": link});
        (seq, v.to_string())
    }

    fn cfg(max_bytes: u64) -> sluice_config::Spool {
        sluice_config::Spool {
            max_bytes,
            sync_each_batch: true,
        }
    }

    #[test]
    fn what_control_never_stored_is_read_again_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().expect("dir");
        let counter = prometheus::IntCounter::new("d", "d").expect("counter");
        let (mut spool, rec) =
            Spool::open(dir.path(), cfg(1 << 20), counter.clone()).expect("open");
        assert!(rec.pending.is_empty() && rec.head.is_none());
        let lines: Vec<_> = (1..=40).map(line).collect();
        for batch in lines.chunks(7) {
            spool.append(batch).expect("append");
        }
        spool.ack(25).expect("ack");
        drop(spool);
        // A crash cut the last line short.
        let last = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("seg-"))
            .max()
            .expect("a segment");
        OpenOptions::new()
            .append(true)
            .open(&last)
            .and_then(|mut f| f.write_all(b"{\"event_id\":\"e41\",\"cha"))
            .expect("torn write");
        let (_, rec) = Spool::open(dir.path(), cfg(1 << 20), counter.clone()).expect("reopen");
        let seqs: Vec<u64> = rec.pending.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (26..=40).collect::<Vec<_>>());
        let (id, seq, _) = rec.head.expect("head");
        assert_eq!((id.as_str(), seq), ("c", 40));
        assert_eq!(counter.get(), 0);
    }

    #[test]
    fn a_full_spool_drops_its_oldest_and_counts_them() {
        let dir = tempfile::tempdir().expect("dir");
        let counter = prometheus::IntCounter::new("d", "d").expect("counter");
        let (mut spool, _) = Spool::open(dir.path(), cfg(64 << 10), counter.clone()).expect("open");
        for s in 1..=100 {
            spool.append(&[line(s)]).expect("append");
        }
        assert!(counter.get() > 0, "dropped some");
        let (_, rec) = Spool::open(dir.path(), cfg(64 << 10), counter.clone()).expect("reopen");
        assert_eq!(
            rec.pending.len() as u64 + counter.get(),
            100,
            "every event kept or counted"
        );
        assert_eq!(rec.pending.last().map(|(s, _)| *s), Some(100));
    }
}
