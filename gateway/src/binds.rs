//! Where this process listens when it is not where the config says:
//! `--bind NAME=ADDRESS`, for a listener by name or for `admin`. Replicas
//! that take one config from control can then share a host (each its own
//! ports) while the config stays one. Applied to every snapshot, so the
//! snapshot says where the process really listens.

use std::net::SocketAddr;

use sluice_config::{ConfigError, Snapshot};

#[derive(Debug, Default, Clone)]
pub struct Binds(Vec<(String, SocketAddr)>);

impl Binds {
    /// `NAME=ADDRESS` each.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            let (name, addr) = a
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--bind {a}: expected NAME=ADDRESS"))?;
            let addr: SocketAddr = addr
                .parse()
                .map_err(|e| anyhow::anyhow!("--bind {a}: {e}"))?;
            out.push((name.to_owned(), addr));
        }
        Ok(Self(out))
    }

    /// Move the named listeners (and `admin`); a name the config does not
    /// have is an error, not ignored.
    pub fn apply(&self, snap: &mut Snapshot) -> Result<(), ConfigError> {
        for (name, addr) in &self.0 {
            if name == "admin" {
                snap.admin = Some(*addr);
                continue;
            }
            match snap.listeners.iter_mut().find(|l| &l.name == name) {
                Some(l) => l.address = *addr,
                None => {
                    return Err(ConfigError::new(
                        "listeners".to_owned(),
                        format!("--bind {name}: the config has no listener of that name"),
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Binds;

    const CONFIG: &str = "listeners: [{ name: main, address: \"127.0.0.1:8080\" }]
admin: { address: \"127.0.0.1:9901\" }
upstreams: [{ name: up, url: \"http://127.0.0.1:9/mcp\" }]
routes: [{ name: r, path: /mcp, upstream: up }]
";

    #[test]
    fn a_listener_and_admin_move_and_an_unknown_name_is_refused() {
        let mut snap = sluice_config::load(CONFIG, 1).expect("config");
        let binds = Binds::parse(&[
            "main=127.0.0.2:18080".into(),
            "admin=127.0.0.2:19901".into(),
        ])
        .expect("binds");
        binds.apply(&mut snap).expect("applied");
        assert_eq!(snap.listeners[0].address.to_string(), "127.0.0.2:18080");
        assert_eq!(
            snap.admin.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.2:19901")
        );
        let other = Binds::parse(&["edge=127.0.0.1:1".into()]).expect("binds");
        assert!(other.apply(&mut snap).is_err());
        assert!(Binds::parse(&["main:80".into()]).is_err());
    }
}
