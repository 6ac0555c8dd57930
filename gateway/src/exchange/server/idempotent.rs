//! Idempotent tool calls on the data path (`federation::idempotency` has
//! the rules): a call with a key claims it after the policy allowed it and
//! before limits, approvals and the upstream; the answer the client is sent
//! is kept as it streams (`Pending::feed`), and its result settles the key.
//! Keys live on this replica, or in the limits' shared store (Redis) when
//! there is one, so every replica agrees; with that store down, a keyed
//! call is refused rather than risk running twice.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use serde_json::Value;

use super::super::Deps;
use crate::ctx::Ctx;
use crate::federation::idempotency::{self, Claim, IdemDeny, Pending};
use crate::refusal::Refusal;

/// KEYS[1]: the ledger key. ARGV: the arguments' hash, the window in ms.
/// Stored: `R<hash>` while running, `D<hash><result>` once done.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'R' .. ARGV[1], 'PX', ARGV[2])
  return 'run'
end
if string.sub(v, 2, 1 + string.len(ARGV[1])) ~= ARGV[1] then return 'mismatch' end
if string.sub(v, 1, 1) == 'R' then return 'running' end
return 'D' .. string.sub(v, 2 + string.len(ARGV[1]))
";

/// KEYS[1]: the ledger key. ARGV: the hash, the window in ms, and the
/// result (absent: give the key back). Only this call's claim is touched.
const SETTLE: &str = r"
local v = redis.call('GET', KEYS[1])
if v ~= 'R' .. ARGV[1] then return 0 end
if ARGV[3] then
  redis.call('SET', KEYS[1], 'D' .. ARGV[1] .. ARGV[3], 'PX', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
";

static SCRIPTS: LazyLock<(Script, Script)> =
    LazyLock::new(|| (Script::new(CLAIM), Script::new(SETTLE)));

/// Claim the call's key. `Ok(None)`: run it (and `ctx.exchange.idempotent`
/// now holds the claim); `Ok(Some(result))`: answer with the stored
/// result; `Err`: refuse. `args`: the forwarded arguments, read strictly.
pub(super) async fn claim(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (upstream, tool): (&str, &str),
    (key, args): (&str, Option<&Value>),
) -> Result<Option<Arc<str>>, Refusal> {
    let caller = ctx.caller_names();
    let ledger_key = idempotency::ledger_key(caller, (upstream, tool), key);
    let args = sluice_config::canonical_hash(args.unwrap_or(&Value::Null));
    let window = ctx
        .route()
        .and_then(|r| r.server)
        .map_or(Duration::from_secs(86_400), |i| {
            ctx.rt.snapshot.servers[i].idempotency_window
        });
    let claim = match ctx.rt.limits.store() {
        Some(store) => {
            let mut inv = SCRIPTS.0.prepare_invoke();
            inv.key(format!("sluice:idem:{ledger_key}"))
                .arg(&args)
                .arg(window.as_millis() as u64);
            let said: String = store
                .run(&inv, &deps.shared.metrics)
                .await
                .map_err(|_| Refusal::Idempotency(IdemDeny::StoreDown))?;
            match said.as_str() {
                "run" => Claim::Run,
                "running" => Claim::Running,
                "mismatch" => Claim::Mismatch,
                done => Claim::Replay(done.get(1..).unwrap_or_default().into()),
            }
        }
        None => deps.shared.idempotency.claim(&ledger_key, &args, window),
    };
    match claim {
        Claim::Run => {
            let pending = Pending::new(ledger_key, args, window);
            ctx.exchange.idempotent = Some(Box::new(pending));
            Ok(None)
        }
        Claim::Replay(result) => Ok(Some(result)),
        Claim::Running => Err(Refusal::Idempotency(IdemDeny::Running)),
        Claim::Mismatch => Err(Refusal::Idempotency(IdemDeny::Mismatch)),
    }
}

/// The claimed call ended: keep its result, or give the key back.
pub(super) async fn settle(deps: Deps<'_>, ctx: &mut Ctx, client_id: &str) {
    let Some(p) = ctx.exchange.idempotent.take() else {
        return;
    };
    let result = p
        .answer()
        .and_then(|a| idempotency::result_of(a, client_id));
    match ctx.rt.limits.store() {
        Some(store) => {
            let mut inv = SCRIPTS.1.prepare_invoke();
            inv.key(format!("sluice:idem:{}", p.key))
                .arg(&p.args)
                .arg(p.window.as_millis() as u64);
            if let Some(r) = &result {
                inv.arg(r);
            }
            // Down: the claim lapses with its window.
            let _: Result<i64, _> = store.run(&inv, &deps.shared.metrics).await;
        }
        None => deps
            .shared
            .idempotency
            .settle(&p.key, result.as_deref(), p.window),
    }
}
