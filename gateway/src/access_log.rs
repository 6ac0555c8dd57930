//! The access log: one JSON line per request sampled in (`access_log` in
//! config), written by a thread of its own from a bounded queue, so the data
//! path never waits on the disk: a full queue drops the line and counts it
//! (`sluice_access_log_dropped_total`). The file is the first config's;
//! changing it takes a restart. It is opened again (by name) on every
//! reload and SIGHUP, so a rotated log goes on in a new file.
//!
//! Fields (stable): `time` (RFC 3339, ms), `request_id`, `route`,
//! `upstream`, `http_method`, `status`, `rpc_method`, `target` (tool,
//! resource, prompt or model), `revision`, `session`, `tenant`, `subject`,
//! `refused` (why the gateway answered itself), `rpc_error` (its JSON-RPC
//! code), `bytes_in` (the request body), `bytes_out` (the response body
//! the client was sent), `duration_ms`, `gateway_us`,
//! `trace_id` (the request's trace with `traces` on, else null). Never arguments, tokens or
//! headers.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

/// Lines waiting for the writer, at most.
const QUEUE: usize = 10_000;

/// One line's fields, written straight to JSON (no map built per line).
#[derive(serde::Serialize)]
pub struct Line<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub http_method: &'a str,
    pub status: u16,
    pub rpc_method: Option<&'a str>,
    pub target: Option<&'a str>,
    pub revision: Option<&'a str>,
    pub session: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub refused: Option<&'a str>,
    pub rpc_error: Option<i64>,
    pub bytes_in: usize,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub gateway_us: u64,
    pub trace_id: Option<String>,
}

impl Line<'_> {
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        // Plain structs of strings and numbers always serialise.
        let _ = serde_json::to_writer(&mut out, self);
        String::from_utf8(out).unwrap_or_default()
    }
}

pub struct AccessLog {
    tx: SyncSender<String>,
    sample_rate: f64,
    dropped: prometheus::IntCounter,
    /// Set to have the writer open the file again before its next write.
    reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AccessLog {
    /// Open (append to) `cfg.file` and start its writer thread.
    pub fn open(
        cfg: &sluice_config::AccessLog,
        dropped: prometheus::IntCounter,
    ) -> std::io::Result<Self> {
        let open = |path: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        };
        let file = open(&cfg.file)?;
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let reopen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let again = reopen.clone();
        let path = cfg.file.clone();
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                while let Ok(line) = rx.recv() {
                    if again.swap(false, std::sync::atomic::Ordering::AcqRel) {
                        match open(&path) {
                            Ok(f) => {
                                let _ = out.flush();
                                out = std::io::BufWriter::new(f);
                            }
                            Err(e) => tracing::warn!(error = %e, "the access log could not be opened again; writing on to the old file"),
                        }
                    }
                    let mut ok = writeln!(out, "{line}").is_ok();
                    // Whatever else is queued goes in the same write.
                    while let Ok(line) = rx.try_recv() {
                        ok &= writeln!(out, "{line}").is_ok();
                    }
                    if !(ok && out.flush().is_ok()) {
                        tracing::warn!("access log lines could not be written");
                    }
                }
            })?;
        Ok(AccessLog {
            tx,
            sample_rate: cfg.sample_rate,
            dropped,
            reopen,
        })
    }

    /// Open the file again by name before the next line (log rotation).
    pub fn reopen(&self) {
        self.reopen
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Is the request with this id logged? The same answer for the same id.
    pub fn sampled(&self, request_id: &str) -> bool {
        if self.sample_rate >= 1.0 {
            return true;
        }
        let h = request_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        (h % 10_000) < (self.sample_rate * 10_000.0) as u64
    }

    /// Queue one line; never waits.
    pub fn write(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(rate: f64, dir: &std::path::Path) -> AccessLog {
        let cfg = sluice_config::AccessLog {
            file: dir.join("a.jsonl").display().to_string(),
            sample_rate: rate,
        };
        AccessLog::open(
            &cfg,
            prometheus::IntCounter::new("d", "d").expect("counter"),
        )
        .expect("open")
    }

    #[test]
    fn sampling_keeps_its_share_and_the_same_answer_per_request() {
        let dir = tempfile::tempdir().expect("dir");
        let ids: Vec<String> = (0..10_000).map(|i| format!("{i:032x}")).collect();
        let kept = |l: &AccessLog| ids.iter().filter(|id| l.sampled(id)).count();
        assert_eq!(kept(&log(1.0, dir.path())), 10_000);
        assert_eq!(kept(&log(0.0, dir.path())), 0);
        let quarter = log(0.25, dir.path());
        let n = kept(&quarter);
        assert!((2_000..3_000).contains(&n), "{n}");
        assert!(ids
            .iter()
            .all(|id| quarter.sampled(id) == quarter.sampled(id)));
    }
}
