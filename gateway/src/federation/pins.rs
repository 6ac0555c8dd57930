//! Pinned tool definitions (OWASP MCP03, "rug pull"). On a source with
//! `pin` or `screen`, every listed tool is judged before it is served: the
//! definition's digest against the pin the snapshot carries (from control,
//! where operators approve), a trust-on-first-use pin this process took,
//! and screening. A tool not judged servable is quarantined: left out of
//! lists, and a call to it answered exactly as a call to an unknown tool.
//!
//! The judgement is a pure function of what was seen and the snapshot, so
//! a pin approved later (a new config version) serves the tool at once.
//! What was seen — each tool's last listed digest and screening result — is
//! kept per process; a call to a tool not seen yet lists the source first.

use std::collections::HashSet;
use std::sync::Mutex;

use dashmap::DashMap;
use serde_json::Value;
use sluice_config::wire::Finding;
use sluice_config::{definition_digest, PinMode, Snapshot, Source};

use super::{screen, ItemKind};

/// Most tools remembered, and findings remembered as reported.
const MAX_SEEN: usize = 100_000;

/// What the gateway makes of one definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Serve,
    /// Served, and pinned by this process (trust on first use).
    Trust,
    Quarantine(Finding),
}

/// The pure rule. An operator's pin of exactly this definition serves it
/// whatever screening says; otherwise a screening problem quarantines it;
/// otherwise a pin of another definition does; with no pin, trust on first
/// use serves what this process pinned (or pins it now) and approve-first
/// waits for an operator.
pub fn judge(
    mode: Option<PinMode>,
    pinned: Option<&str>,
    local: Option<&str>,
    digest: &str,
    screened: bool,
) -> Judgement {
    if pinned == Some(digest) {
        return Judgement::Serve;
    }
    if screened {
        return Judgement::Quarantine(Finding::Screened);
    }
    match (mode, pinned, local) {
        (None, _, _) => Judgement::Serve,
        (Some(_), Some(_), _) => Judgement::Quarantine(Finding::Changed),
        (Some(PinMode::TrustOnFirstUse), None, Some(l)) if l == digest => Judgement::Serve,
        (Some(PinMode::TrustOnFirstUse), None, Some(_)) => Judgement::Quarantine(Finding::Changed),
        (Some(PinMode::TrustOnFirstUse), None, None) => Judgement::Trust,
        (Some(PinMode::ApproveFirst), None, _) => Judgement::Quarantine(Finding::New),
    }
}

/// A tool as last listed.
#[derive(Debug, Clone)]
struct Seen {
    digest: Box<str>,
    /// Failed screening.
    screened: bool,
    /// The config generation it was screened under.
    generation: u64,
}

/// Something new to report: a finding for a definition not reported yet.
#[derive(Debug)]
pub struct Report {
    pub tool: String,
    pub digest: String,
    pub definition: Value,
    pub finding: Finding,
    pub reason: Option<String>,
}

/// What this process has seen of pinned and screened sources' tools.
#[derive(Default)]
pub struct Definitions {
    /// `upstream\0tool` → as last listed.
    seen: DashMap<String, Seen>,
    /// `upstream\0tool` → the digest trusted on first use here.
    trusted: DashMap<String, Box<str>>,
    /// `upstream\0tool\0digest\0finding` already reported.
    reported: Mutex<HashSet<String>>,
}

fn key(upstream: &str, tool: &str) -> String {
    format!("{upstream}\0{tool}")
}

impl Definitions {
    /// Judge `tools`, as source `src` (upstream `upstream`) listed them,
    /// keep the ones to serve, and hand back what is new to report.
    pub fn vet(
        &self,
        snap: &Snapshot,
        (src, upstream): (&Source, &str),
        tools: &mut Vec<Value>,
    ) -> Vec<Report> {
        if src.pin.is_none() && src.screen.is_none() {
            return Vec::new();
        }
        let mut reports = Vec::new();
        tools.retain(|t| {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                return true;
            };
            if !super::admits(super::filter(src, ItemKind::Tool), name) {
                // Never served here: nothing to judge (the merge drops it).
                return true;
            }
            let digest = definition_digest(t);
            let k = key(upstream, name);
            let generation = snap.version.generation;
            // A definition seen before under this config is not screened
            // again: its digest says it is the same.
            let known = self
                .seen
                .get(&k)
                .filter(|s| *s.digest == *digest && s.generation == generation)
                .map(|s| s.screened);
            let screen = || src.screen.as_ref().and_then(|s| screen::check(s, t));
            let (screened, mut reason) = match known {
                Some(screened) => (screened, None),
                None => {
                    let reason = screen();
                    if self.seen.len() < MAX_SEEN || self.seen.contains_key(&k) {
                        let seen = Seen {
                            digest: digest.as_str().into(),
                            screened: reason.is_some(),
                            generation,
                        };
                        self.seen.insert(k.clone(), seen);
                    }
                    (reason.is_some(), reason)
                }
            };
            let verdict = self.judgement(snap, src, (upstream, name), &digest, screened);
            let (finding, serve) = match verdict {
                Judgement::Serve => return true,
                Judgement::Trust => (Finding::Trusted, true),
                Judgement::Quarantine(f) => (f, false),
            };
            if self.first_report(&k, &digest, finding) {
                if screened && reason.is_none() {
                    reason = screen();
                }
                reports.push(Report {
                    tool: name.to_owned(),
                    digest,
                    definition: t.clone(),
                    finding,
                    reason,
                });
            }
            serve
        });
        reports
    }

    /// Whether a call to `tool` may go: `None` when the tool was not listed
    /// on this process yet (list the source, then ask again).
    pub fn admits(
        &self,
        snap: &Snapshot,
        (src, upstream): (&Source, &str),
        tool: &str,
    ) -> Option<bool> {
        if src.pin.is_none() && src.screen.is_none() {
            return Some(true);
        }
        let seen = self.seen.get(&key(upstream, tool))?.clone();
        let verdict = self.judgement(snap, src, (upstream, tool), &seen.digest, seen.screened);
        Some(matches!(verdict, Judgement::Serve | Judgement::Trust))
    }

    /// The digest of `tool` as `upstream` last listed it, when it is known.
    pub fn digest(&self, upstream: &str, tool: &str) -> Option<Box<str>> {
        self.seen
            .get(&key(upstream, tool))
            .map(|s| s.digest.clone())
    }

    fn judgement(
        &self,
        snap: &Snapshot,
        src: &Source,
        (upstream, tool): (&str, &str),
        digest: &str,
        screened: bool,
    ) -> Judgement {
        let k = key(upstream, tool);
        let local = self.trusted.get(&k).map(|d| d.clone());
        let pinned = snap.pins.get(upstream, tool);
        let verdict = judge(src.pin, pinned, local.as_deref(), digest, screened);
        if verdict == Judgement::Trust && self.trusted.len() < MAX_SEEN {
            // Two lists racing both trust; the first pin stays.
            self.trusted.entry(k).or_insert_with(|| digest.into());
        }
        verdict
    }

    /// A report that did not reach control is made again when next seen.
    pub fn unreport(&self, upstream: &str, report: (&str, &str, Finding)) {
        let (tool, digest, finding) = report;
        let k = format!("{}\0{digest}\0{}", key(upstream, tool), finding.as_str());
        if let Ok(mut reported) = self.reported.lock() {
            reported.remove(&k);
        }
    }

    fn first_report(&self, k: &str, digest: &str, finding: Finding) -> bool {
        let Ok(mut reported) = self.reported.lock() else {
            return true;
        };
        if reported.len() >= MAX_SEEN {
            reported.clear();
        }
        reported.insert(format!("{k}\0{digest}\0{}", finding.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::PinMode::{ApproveFirst, TrustOnFirstUse};

    #[test]
    fn the_rule() {
        let (a, b) = ("a", "b");
        assert_eq!(judge(None, None, None, a, false), Judgement::Serve);
        assert_eq!(
            judge(None, None, None, a, true),
            Judgement::Quarantine(Finding::Screened)
        );
        // An operator's pin of exactly this definition outranks screening.
        assert_eq!(
            judge(Some(ApproveFirst), Some(a), None, a, true),
            Judgement::Serve
        );
        assert_eq!(judge(None, Some(a), None, a, true), Judgement::Serve);
        assert_eq!(
            judge(Some(ApproveFirst), Some(b), None, a, false),
            Judgement::Quarantine(Finding::Changed)
        );
        assert_eq!(
            judge(Some(ApproveFirst), None, None, a, false),
            Judgement::Quarantine(Finding::New)
        );
        assert_eq!(
            judge(Some(TrustOnFirstUse), None, None, a, false),
            Judgement::Trust
        );
        assert_eq!(
            judge(Some(TrustOnFirstUse), None, Some(a), a, false),
            Judgement::Serve
        );
        assert_eq!(
            judge(Some(TrustOnFirstUse), None, Some(b), a, false),
            Judgement::Quarantine(Finding::Changed)
        );
        // Control's pin wins over what this process trusted.
        assert_eq!(
            judge(Some(TrustOnFirstUse), Some(b), Some(a), a, false),
            Judgement::Quarantine(Finding::Changed)
        );
        assert_eq!(
            judge(Some(TrustOnFirstUse), None, None, a, true),
            Judgement::Quarantine(Finding::Screened)
        );
    }
}
