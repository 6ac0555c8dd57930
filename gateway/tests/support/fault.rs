//! A misbehaving upstream for resilience tests, on raw TCP so every fault
//! is exact: answer, answer 500, hang, send an SSE event then hang, send an
//! SSE event then reset the connection, close after reading the request,
//! trickle SSE events, or drop every connection's second request. The mode
//! can be switched while it runs.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// A JSON-RPC result for the request's id.
    Ok = 0,
    /// `500 Internal Server Error`.
    Error500 = 1,
    /// Read the request, never answer.
    Hang = 2,
    /// SSE header and one progress event, then silence.
    SseThenHang = 3,
    /// SSE header and one progress event, then a TCP reset when the test
    /// calls `reset()` (after it has seen the event).
    SseThenReset = 4,
    /// Read the request, then close without a byte of answer.
    CloseAfterRequest = 5,
    /// One SSE event every 100 ms, never finishing on its own.
    Trickle = 6,
    /// Answer as `Ok`, except that each connection's second request is read
    /// and the connection closed without an answer: a pooled connection
    /// found dead only once the request was written to it.
    SecondDropped = 7,
}

#[derive(Clone)]
pub struct Fault {
    pub addr: std::net::SocketAddr,
    mode: Arc<AtomicU8>,
    /// Requests that reached the upstream (fully read).
    pub requests: Arc<AtomicU64>,
    /// SSE streams held open (`SseThenHang`) that the gateway closed.
    pub hung_up: Arc<AtomicU64>,
    reset: Arc<tokio::sync::Notify>,
}

impl Fault {
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Reset every connection waiting in `SseThenReset`.
    pub fn reset(&self) {
        self.reset.notify_waiters();
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

pub async fn fault_upstream(mode: Mode) -> Fault {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let f = Fault {
        addr: listener.local_addr().expect("addr"),
        mode: Arc::new(AtomicU8::new(mode as u8)),
        requests: Arc::new(AtomicU64::new(0)),
        hung_up: Arc::new(AtomicU64::new(0)),
        reset: Arc::new(tokio::sync::Notify::new()),
    };
    let shared = f.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let f = shared.clone();
            tokio::spawn(async move {
                let _ = serve(sock, f).await;
            });
        }
    });
    f
}

/// Read one request (head and `Content-Length` body): its JSON body, or
/// `Null` when the body is not JSON. `None` once the client has closed.
pub async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<serde_json::Value> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
    buf.drain(..head_end + len);
    Some(body)
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

fn progress_event() -> String {
    "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n".to_owned()
}

async fn serve(mut sock: TcpStream, f: Fault) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut nth = 0;
    while let Some(body) = read_request(&mut sock, &mut buf).await {
        let id = body.get("id").map_or("null".into(), |v| v.to_string());
        f.requests.fetch_add(1, Ordering::SeqCst);
        nth += 1;
        match f.mode.load(Ordering::SeqCst) {
            7 if nth == 2 => return Ok(()),
            0 | 7 => {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"ok"}}]}}}}"#
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(resp.as_bytes()).await?;
            }
            1 => {
                sock.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 6\r\n\r\nbroken",
                )
                .await?;
            }
            2 => {
                std::future::pending::<()>().await;
            }
            3 | 4 => {
                let reset = f.reset.notified();
                sock.write_all(SSE_HEAD).await?;
                sock.write_all(&chunk(&progress_event())).await?;
                sock.flush().await?;
                if f.mode.load(Ordering::SeqCst) == 4 {
                    reset.await;
                    // A zero linger never blocks: it is what makes the reset.
                    #[allow(deprecated)]
                    sock.set_linger(Some(Duration::ZERO))?;
                    return Ok(());
                }
                // Held until the gateway lets go of it.
                let mut rest = [0u8; 1024];
                while sock.read(&mut rest).await? > 0 {}
                f.hung_up.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            5 => return Ok(()),
            _ => {
                sock.write_all(SSE_HEAD).await?;
                // The behaviour under test: an answer that keeps coming,
                // one event per tick, for longer than the call may take.
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    sock.write_all(&chunk(&progress_event())).await?;
                }
            }
        }
    }
    Ok(())
}
