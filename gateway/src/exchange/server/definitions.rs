//! Pinned and screened sources on the data path (`federation::pins`
//! decides): a listed page is vetted before it is merged (a call's gate is
//! `call::callable`). Each new finding is logged, counted, audited and
//! reported to control, where operators approve definitions into pins.

use std::sync::Arc;

use serde_json::Value;
use sluice_config::wire::{DefinitionSeen, Finding};
use sluice_config::Source;

use super::super::Deps;
use crate::audit::{AuditEvent, Decision};
use crate::ctx::Ctx;
use crate::federation::pins::Report;
use crate::state::Shared;

/// Keep the tools of `src` that may be served; report what is new.
pub(super) fn vet(deps: Deps<'_>, ctx: &Ctx, src: &Source, tools: &mut Vec<Value>) {
    let snap = &ctx.rt.snapshot;
    let upstream = snap.upstreams[src.upstream].name.as_str();
    for r in deps.shared.definitions.vet(snap, (src, upstream), tools) {
        report(deps.shared, ctx, upstream, r);
    }
}

fn report(shared: &Arc<Shared>, ctx: &Ctx, upstream: &str, r: Report) {
    let finding = r.finding.as_str();
    shared
        .metrics
        .tool_definitions
        .with_label_values(&[upstream, finding])
        .inc();
    let reason = r.reason.as_deref().unwrap_or("");
    if r.finding == Finding::Trusted {
        tracing::info!(upstream, tool = %r.tool, digest = %r.digest, "tool definition trusted on first use");
    } else {
        tracing::warn!(upstream, tool = %r.tool, digest = %r.digest, finding, reason, "tool definition quarantined until approved");
    }
    if let (Some(tx), Some(route)) = (&shared.audit, ctx.route()) {
        let decision = match r.finding {
            Finding::Trusted => Decision::Allow,
            _ => Decision::Deny,
        };
        let snap = &ctx.rt.snapshot;
        let request_id = ctx.request.request_id.as_deref().unwrap_or_default();
        let mut ev = AuditEvent::new(
            route.name.as_str(),
            "tools/list",
            decision,
            snap.version.to_string(),
            request_id,
        );
        ev.upstream = Some(upstream.to_owned());
        ev.target = Some(r.tool.clone());
        ev.reason = Some(match &r.reason {
            Some(why) => format!("definition_{finding}: {why}"),
            None => format!("definition_{finding}"),
        });
        ev.outcome = Some(
            if r.finding == Finding::Trusted {
                "pinned"
            } else {
                "quarantined"
            }
            .into(),
        );
        ev.definition_digest = Some(r.digest.clone());
        tx.send(ev);
    }
    if let Some(control) = shared.control.clone() {
        let seen = DefinitionSeen {
            gateway: control.gateway_id.clone(),
            upstream: upstream.to_owned(),
            tool: r.tool,
            digest: r.digest,
            definition: r.definition,
            finding: r.finding,
            reason: r.reason,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = control.report_definition(&seen).await {
                tracing::warn!(error = %e, upstream = %seen.upstream, tool = %seen.tool, "tool definition not reported to control; reported again when next listed");
                let again = (seen.tool.as_str(), seen.digest.as_str(), seen.finding);
                shared.definitions.unreport(&seen.upstream, again);
            }
        });
    }
}
