//! The load harness's floor: a Pingora proxy with nothing but
//! `upstream_peer`, built with Sluice's release profile and allocator. Each
//! `--pair LISTEN=UPSTREAM` is one listener forwarding everything, path
//! untouched, to one upstream address. What Sluice costs above this is what
//! Sluice itself does.
//!
//!     bare-pingora --threads 1 --pair 127.0.0.1:18081=127.0.0.1:9100

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let mut threads = 1;
    let mut pairs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--threads", Some(n)) => threads = n.parse().unwrap_or(1),
            ("--pair", Some(p)) => match p.split_once('=') {
                Some((l, u)) => match u.parse::<SocketAddr>() {
                    Ok(u) => pairs.push((l.to_owned(), u)),
                    Err(e) => return eprintln!("bad upstream in --pair {p}: {e}"),
                },
                None => return eprintln!("--pair wants LISTEN=UPSTREAM, got {p}"),
            },
            _ => return eprintln!("usage: bare-pingora [--threads N] --pair LISTEN=UPSTREAM ..."),
        }
    }
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    for (listen, upstream) in pairs {
        let mut svc = http_proxy_service(&server.configuration, Bare { upstream });
        svc.add_tcp(&listen);
        server.add_service(svc);
    }
    println!("bare-pingora ready");
    server.run_forever();
}
