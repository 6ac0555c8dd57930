//! The shared rate-limit store: GCRA done atomically inside Redis by one
//! server-side script, so N gateway replicas enforce one global limit. The
//! store is marked down on the first failed or slow check; while it is down
//! no request waits on it (the configured fallback decides) and a
//! background probe reconnects and marks it up again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo, Script};
use sluice_config::SharedStore as StoreConfig;

use crate::metrics::Metrics;

/// GCRA with the theoretical arrival time (TAT) as the stored value, in
/// microseconds of the Redis server's clock (one clock for every replica).
/// KEYS[1] = bucket; ARGV = emission interval µs, burst, cost.
/// Returns {allowed (1/0), retry after µs}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + period * cost
local allow_at = new_tat - period * burst
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
";

/// The store is unreachable (or too slow): the fallback decides.
#[derive(Debug)]
pub struct StoreDown;

pub struct RedisStore {
    pub config: StoreConfig,
    client: redis::Client,
    conn: ArcSwapOption<MultiplexedConnection>,
    up: AtomicBool,
    probing: AtomicBool,
    script: Script,
}

impl RedisStore {
    /// Set up the client; the first connection is made by the probe, so a
    /// store that is down at start does not stop the gateway.
    pub fn new(config: &StoreConfig) -> Result<Arc<Self>, String> {
        let mut info = config
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(|e| e.to_string())?;
        if let Some(p) = &config.password {
            let pw = crate::inject::read_secret(p)?;
            let settings = info.redis_settings().clone().set_password(pw.trim());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        Ok(Arc::new(Self {
            config: config.clone(),
            client,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            script: Script::new(GCRA),
        }))
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Take `cost` from the bucket `key`: `Ok(Ok(()))` allowed,
    /// `Ok(Err(wait))` refused for `wait`, `Err(StoreDown)` undecided.
    pub async fn check(
        self: &Arc<Self>,
        key: &str,
        period: Duration,
        burst: u32,
        cost: u32,
        metrics: &Metrics,
    ) -> Result<Result<(), Duration>, StoreDown> {
        let mut invocation = self.script.key(key);
        invocation
            .arg(period.as_micros().max(1) as u64)
            .arg(burst)
            .arg(cost);
        match self.run::<(i64, i64)>(&invocation, metrics).await? {
            (1, _) => Ok(Ok(())),
            (_, wait_us) => Ok(Err(Duration::from_micros(wait_us.max(0) as u64))),
        }
    }

    /// Run one script invocation within the store's timeout; a failed or
    /// slow one marks the store down.
    pub async fn run<T: redis::FromRedisValue>(
        self: &Arc<Self>,
        invocation: &redis::ScriptInvocation<'_>,
        metrics: &Metrics,
    ) -> Result<T, StoreDown> {
        let conn = match (self.is_up(), self.conn.load_full()) {
            (true, Some(c)) => c,
            _ => {
                self.start_probe(metrics);
                return Err(StoreDown);
            }
        };
        let mut conn = MultiplexedConnection::clone(&conn);
        let call = invocation.invoke_async::<T>(&mut conn);
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.mark_down(metrics, &e.to_string());
                Err(StoreDown)
            }
            Err(_) => {
                self.mark_down(metrics, "timed out");
                Err(StoreDown)
            }
        }
    }

    fn mark_down(self: &Arc<Self>, metrics: &Metrics, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                error = why,
                "rate-limit store unreachable; fallback applies"
            );
            metrics.limit_store_up.set(0);
        }
        self.start_probe(metrics);
    }

    /// Connect (again) in the background until the store answers a PING.
    pub fn start_probe(self: &Arc<Self>, metrics: &Metrics) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = Arc::clone(self);
        let gauge = metrics.limit_store_up.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match store.connect().await {
                    Ok(conn) => {
                        store.conn.store(Some(Arc::new(conn)));
                        store.up.store(true, Ordering::Release);
                        gauge.set(1);
                        tracing::info!("rate-limit store reachable");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "rate-limit store probe failed");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
            store.probing.store(false, Ordering::Release);
        });
    }

    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let wait = self.config.timeout.max(Duration::from_millis(200));
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(wait))
            .set_response_timeout(Some(wait));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    }
}
