//! Pins: one test for each behaviour of Pingora's HTTP/1.1 server session
//! (and L4 stream) that `conn` and `admit::head` rely on beyond the
//! documented API. A Pingora upgrade that changes one fails here, with a
//! message that names the assumption and the code that depends on it.
//! Over real sockets on 127.0.0.1.

use bytes::BytesMut;
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A connected pair: Pingora's stream on the server side, a plain socket
/// as the client.
async fn pair() -> (Stream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let server: L4Stream = server.unwrap().0.into();
    (Box::new(server), client.unwrap())
}

/// A server session that has read `head` (sent by the client).
async fn read_request(head: &[u8]) -> (HttpSession, TcpStream) {
    let (server, mut client) = pair().await;
    client.write_all(head).await.unwrap();
    let mut session = HttpSession::new(server);
    session.read_request().await.unwrap().unwrap();
    (session, client)
}

/// Everything the client has been sent, up to `n` bytes.
async fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    client.read_exact(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn a_session_read_whole_gives_up_its_stream_with_nothing_buffered() {
    // `direct::Client::take`: once a request without a body is read, the
    // session's stream is the connection as it was, nothing of the next
    // request held back in Pingora's buffers.
    let (mut session, mut client) = read_request(b"GET /mcp HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(
        session.is_body_done(),
        "PIN (direct::Client::take): a body-less GET must count as read whole"
    );
    let mut stream = session.into_inner();
    client
        .write_all(b"GET /next HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 22];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        &buf, b"GET /next HTTP/1.1\r\n\r\n",
        "PIN (direct::Client::take): into_inner must hand back the socket unread"
    );
}

#[tokio::test]
async fn a_pipelined_prefix_is_read_as_the_request_without_touching_the_socket() {
    // `direct::give_back`: the connection goes back to Pingora in a fresh
    // session that "reads" a synthetic body-less request from its prefix,
    // and is reusable for the client's real next request.
    let (server, mut client) = pair().await;
    let mut fresh = HttpSession::new(server);
    fresh.set_pipelined_prefix(BytesMut::from(&b"POST / HTTP/1.1\r\n\r\n"[..]));
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), fresh.read_request())
        .await
        .expect("PIN (direct::give_back): the prefix must be parsed without reading the socket");
    assert!(
        read.unwrap().is_some(),
        "PIN (direct::give_back): a pipelined prefix must parse as a request"
    );
    assert_eq!(fresh.req_header().method, http::Method::POST);
    assert!(
        fresh.is_body_done(),
        "PIN (direct::give_back): a POST without a length has an empty body"
    );
    fresh.set_server_keepalive(Some(60));
    let mut resp = ResponseHeader::build(204, None).unwrap();
    resp.insert_header("content-length", "0").unwrap();
    fresh.write_response_header(Box::new(resp)).await.unwrap();
    let _ = fresh.finish_body().await;
    let reused = fresh.reuse().await.unwrap();
    assert!(
        reused.is_some(),
        "PIN (direct::give_back): the handed-back session must be kept alive"
    );
    let head = read_n(&mut client, 12).await;
    assert_eq!(&head, b"HTTP/1.1 204");
}

#[tokio::test]
async fn both_framing_headers_leave_content_length_in_the_raw_head() {
    // `admit::head::check_framing`: Pingora may drop a `Content-Length`
    // that comes with `Transfer-Encoding`; the raw header bytes must still
    // show it, so that the request is refused rather than read one way.
    let (session, _client) = read_request(
        b"POST /mcp HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    let raw = session.get_headers_raw_bytes();
    let has_cl = raw
        .windows(b"content-length".len())
        .any(|w| w.eq_ignore_ascii_case(b"content-length"));
    let kept = session.req_header().headers.contains_key("content-length");
    assert!(
        has_cl || kept,
        "PIN (admit::head::check_framing): Content-Length must stay visible, raw or parsed"
    );
}

#[tokio::test]
async fn the_retry_buffer_holds_a_body_up_to_64_kib_and_no_more() {
    // `conn::PINGORA_REPLAY_LIMIT`: bodies up to it go through Pingora's
    // proxy loop, which replays them from this buffer; larger ones are
    // forwarded by `exchange::mcp::run_pingora`.
    for (len, replayed) in [(super::PINGORA_REPLAY_LIMIT, true), (70_000, false)] {
        let (server, mut client) = pair().await;
        let head = format!("POST /mcp HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n");
        let body = vec![b'x'; len];
        let send = async {
            client.write_all(head.as_bytes()).await.unwrap();
            client.write_all(&body).await.unwrap();
        };
        let mut session = HttpSession::new(server);
        let read = async {
            session.read_request().await.unwrap().unwrap();
            session.enable_retry_buffering();
            let mut got = 0;
            while let Some(b) = session.read_body_bytes().await.unwrap() {
                got += b.len();
            }
            got
        };
        let ((), got) = tokio::join!(send, read);
        assert_eq!(got, len);
        assert_eq!(
            session.get_retry_buffer().is_some(),
            replayed,
            "PIN (conn::PINGORA_REPLAY_LIMIT): Pingora's replay buffer must hold {} bytes: {}",
            len,
            if replayed { "whole" } else { "not at all" }
        );
    }
}

#[tokio::test]
async fn a_chunked_answer_started_by_pingora_can_be_continued_on_its_stream() {
    // `detach`: the head and first chunks are written by Pingora's session;
    // the rest, with the same chunked framing, on the stream taken out of
    // it — after a flush, since `into_inner` does not flush.
    let (mut session, mut client) = read_request(b"GET /mcp HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let mut resp = ResponseHeader::build(200, None).unwrap();
    resp.insert_header("content-type", "text/event-stream")
        .unwrap();
    resp.insert_header("transfer-encoding", "chunked").unwrap();
    session.write_response_header(Box::new(resp)).await.unwrap();
    session.write_body(b"data: 1\n\n").await.unwrap();
    let mut stream = session.into_inner();
    stream.flush().await.unwrap();
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    stream.flush().await.unwrap();
    drop(stream);
    let mut all = Vec::new();
    client.read_to_end(&mut all).await.unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("\r\n\r\n9\r\ndata: 1\n\n\r\n0\r\n\r\n"),
        "PIN (conn::detach): Pingora must frame an answer with `Transfer-Encoding: \
         chunked` as chunks, each written through by flush: {text:?}"
    );
}

#[tokio::test]
async fn rewound_bytes_are_read_before_the_socket() {
    // `intake`: the head and body start the gateway read itself are put
    // back in front of the stream for Pingora's session.
    let (server, mut client) = pair().await;
    let mut server = *server
        .into_any()
        .downcast::<L4Stream>()
        .expect("an L4 stream");
    server.rewind(b"GET / HTTP/1.1\r\n");
    client.write_all(b"Host: a\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 27];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        &buf[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "PIN (conn::intake): L4Stream::rewind must replay its bytes first"
    );
}
