//! Sessions their clients ended (DELETE), agreed across replicas: each
//! replica remembers its own (`federation::seal::Ended`), and where the
//! limits have a shared store (Redis) an ended session is written there
//! too and a session's requests look it up, so a sealed id ended through
//! one replica is unknown on every other.

use std::sync::LazyLock;

use redis::Script;
use sluice_config::OnUnavailable;

use super::super::Deps;
use crate::ctx::Ctx;
use crate::federation::seal::ENDED_KEEP;

/// KEYS[1]: the session's key; ARGV[1]: how long it stays ended (ms).
const END: &str = "redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) return 1";
/// KEYS[1]: the session's key. 1: ended on some replica.
const IS_ENDED: &str = "return redis.call('EXISTS', KEYS[1])";

static SCRIPTS: LazyLock<(Script, Script)> =
    LazyLock::new(|| (Script::new(END), Script::new(IS_ENDED)));

fn key(prefix: &str, tag: &str) -> String {
    format!("{prefix}:ended:{tag}")
}

/// Was the session `tag` ended through another replica? Asked of the shared
/// store when there is one (a yes is remembered here). A store that cannot
/// say counts as ended when the limits fail closed, else this replica's
/// knowledge stands.
pub(super) async fn elsewhere(deps: Deps<'_>, ctx: &Ctx, tag: &str) -> bool {
    let Some(store) = ctx.rt.limits.store() else {
        return false;
    };
    let mut inv = SCRIPTS.1.prepare_invoke();
    inv.key(key(&store.config.key_prefix, tag));
    match store.run::<i64>(&inv, &deps.shared.metrics).await {
        Ok(1) => {
            deps.shared.ended_sessions.end(tag);
            true
        }
        Ok(_) => false,
        Err(_) => store.config.on_unavailable == OnUnavailable::Closed,
    }
}

/// The session `tag` is ended: said to the other replicas through the
/// shared store, when there is one.
pub(super) async fn share(deps: Deps<'_>, ctx: &Ctx, tag: &str) {
    let Some(store) = ctx.rt.limits.store() else {
        return;
    };
    let mut inv = SCRIPTS.0.prepare_invoke();
    inv.key(key(&store.config.key_prefix, tag))
        .arg(ENDED_KEEP.as_millis() as u64);
    if store.run::<i64>(&inv, &deps.shared.metrics).await.is_err() {
        tracing::warn!(
            "a virtual server's session was ended on this replica only: the shared store is down"
        );
    }
}
