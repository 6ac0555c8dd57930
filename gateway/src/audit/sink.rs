//! Where audit events end up: the [`AuditSink`] interface and its first
//! implementation, rotating JSON Lines files.
//!
//! The interface is synchronous on purpose: sinks run on the writer task's
//! blocking thread, never on the data path. It is shaped so that the control
//! process's audit store and a webhook sink (separate issue) can implement it
//! as-is: they receive whole batches and are told when to make them durable.

use std::fs::{self, File};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::{AuditError, AuditEvent};

/// A destination for audit events.
pub trait AuditSink: Send {
    /// Writes `events` in order. May buffer; see [`AuditSink::flush`].
    fn write_batch(&mut self, events: &[AuditEvent]) -> Result<(), AuditError>;
    /// Pushes anything buffered to its destination.
    fn flush(&mut self) -> Result<(), AuditError>;
    /// Sets what the events get as they are written (their place in the
    /// hash chain), before `write_batch`.
    fn stamp(&mut self, _events: &mut [AuditEvent]) {}
}

/// Appends one JSON object per line to `path`. Before a line would take the
/// file past `max_bytes` it rotates: `audit.jsonl` becomes `audit.jsonl.1`,
/// `.1` becomes `.2`, and so on up to `keep` rotated files, the oldest being
/// deleted. So at most `keep + 1` files exist.
pub struct JsonlFileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    /// `None` after a failed rotation or write: reopened on the next write so
    /// one I/O error doesn't silence auditing for good.
    file: Option<BufWriter<File>>,
    /// Bytes in the current file, including buffered ones.
    size: u64,
    /// Reused per line to avoid an allocation per event.
    line: Vec<u8>,
}

impl JsonlFileSink {
    /// Opens (or creates) `path` for appending now, so a bad path is reported
    /// at startup rather than on the first event.
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64, keep: usize) -> Result<Self, AuditError> {
        let mut sink = Self {
            path: path.into(),
            max_bytes,
            keep,
            file: None,
            size: 0,
            line: Vec::with_capacity(1024),
        };
        sink.file = Some(sink.open()?);
        Ok(sink)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the live file for appending and records its current size.
    fn open(&mut self) -> Result<BufWriter<File>, AuditError> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| AuditError::io(&self.path, e))?;
        self.size = file
            .metadata()
            .map_err(|e| AuditError::io(&self.path, e))?
            .len();
        Ok(BufWriter::new(file))
    }

    /// `audit.jsonl` → `audit.jsonl.N`.
    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        if let Some(mut file) = self.file.take() {
            file.flush().map_err(|e| AuditError::io(&self.path, e))?;
        }
        self.size = 0;
        if self.keep == 0 {
            return remove_if_exists(&self.path);
        }
        remove_if_exists(&self.rotated(self.keep))?;
        for n in (1..self.keep).rev() {
            rename_if_exists(&self.rotated(n), &self.rotated(n + 1))?;
        }
        rename_if_exists(&self.path, &self.rotated(1))
    }
}

impl AuditSink for JsonlFileSink {
    fn write_batch(&mut self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let mut line = std::mem::take(&mut self.line);
        let result = events.iter().try_for_each(|event| {
            line.clear();
            serde_json::to_writer(&mut line, event)?;
            line.push(b'\n');
            let len = line.len() as u64;
            // Open first so `size` is current even after an earlier error.
            let mut file = match self.file.take() {
                Some(file) => file,
                None => self.open()?,
            };
            // A line longer than max_bytes still goes into a file of its own
            // rather than being lost.
            if self.size > 0 && self.size + len > self.max_bytes {
                self.file = Some(file);
                self.rotate()?;
                file = self.open()?;
            }
            // On error the handle is dropped, to be reopened next time.
            file.write_all(&line)
                .map_err(|e| AuditError::io(&self.path, e))?;
            self.file = Some(file);
            self.size += len;
            Ok(())
        });
        self.line = line;
        result
    }

    /// Hands buffered lines to the OS: they survive a gateway crash. No fsync
    /// per batch; that would put a disk round trip on every batch for the
    /// rarer power-loss case.
    fn flush(&mut self) -> Result<(), AuditError> {
        if let Some(file) = &mut self.file {
            if let Err(e) = file.flush() {
                self.file = None;
                return Err(AuditError::io(&self.path, e));
            }
        }
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> Result<(), AuditError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(AuditError::io(path, e)),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> Result<(), AuditError> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(AuditError::io(from, e)),
        _ => Ok(()),
    }
}
