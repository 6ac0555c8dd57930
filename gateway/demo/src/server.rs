//! Routing and the server's lifecycle: binding, serving on a task, shutting down.

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::options::DemoOptions;
use crate::state::AppState;
use crate::transport::{guard, legacy, streamable};

/// Large enough for the oversized-argument tests (well past 64 KiB) and
/// payload load runs; axum's 2 MB default would refuse some of them.
const BODY_LIMIT: usize = 64 * 1024 * 1024;
/// How long shutdown waits for in-flight calls (say a `slow` tool) to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The whole server as a router, for embedding in another axum app or test.
pub fn router(opts: DemoOptions) -> Router {
    build(AppState::new(opts))
}

fn build(state: AppState) -> Router {
    Router::new()
        .route(
            "/mcp",
            post(streamable::post)
                .get(streamable::get)
                .delete(streamable::delete),
        )
        .route("/sse", get(legacy::open))
        .route("/message", post(legacy::message))
        // Only MCP routes are guarded: health checks come from anywhere.
        .layer(middleware::from_fn_with_state(state.clone(), guard::check))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// A running demo server; dropping it leaves the server running until the
/// runtime ends, `shutdown` stops it.
pub struct DemoServer {
    pub addr: SocketAddr,
    state: AppState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl DemoServer {
    /// The Streamable HTTP endpoint, e.g. `http://127.0.0.1:9100/mcp`.
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base())
    }

    /// Scheme and authority, for `/sse`, `/message` and `/healthz`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, ends every open stream, and waits a
    /// little for calls in flight before abandoning them.
    pub async fn shutdown(self) {
        self.state.closing.send_replace(true);
        // The receiver only disappears if the serve task already ended.
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("calls still in flight after the grace period; abandoning them");
            task.abort();
        }
    }
}

/// Binds `listen` (port 0 picks a free port) and serves on a new task;
/// returns once the socket is listening.
pub async fn spawn(listen: SocketAddr, opts: DemoOptions) -> std::io::Result<DemoServer> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let state = AppState::new(opts);
    let app = build(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            // Either a signal or the handle being dropped means stop.
            let _ = stopped.await;
        };
        // Without TCP_NODELAY an SSE response written in pieces stalls ~40 ms
        // on delayed ACKs (Nagle): a real server sets it.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "demo server stopped with an error");
        }
    });
    tracing::info!(%addr, "sluice-demo listening");
    Ok(DemoServer {
        addr,
        state,
        stop,
        task,
    })
}
