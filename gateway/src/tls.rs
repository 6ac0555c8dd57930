//! TLS material: listener certificates that reload with the snapshot (a
//! rustls resolver over an `ArcSwap`), and upstream CA bundles and client
//! certificates for mTLS.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};
use pingora::utils::tls::{CertKey, WrappedX509};

/// Serves the listener's current certificate; `reload` swaps it in place.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ReloadingCert {
    pub fn load(cert_file: &str, key_file: &str) -> Result<Self, String> {
        Ok(Self {
            current: ArcSwap::from_pointee(certified_key(cert_file, key_file)?),
        })
    }

    /// Re-read the files; on error the old certificate stays.
    pub fn reload(&self, cert_file: &str, key_file: &str) -> Result<(), String> {
        self.current
            .store(Arc::new(certified_key(cert_file, key_file)?));
        Ok(())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn certified_key(cert_file: &str, key_file: &str) -> Result<CertifiedKey, String> {
    let (certs, key) = read_pem(cert_file, key_file)?;
    pingora::tls::install_default_crypto_provider();
    let provider = pingora::tls::CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider".to_owned())?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{key_file}: {e}"))?;
    Ok(CertifiedKey::new(certs, signing))
}

fn read_pem(
    cert_file: &str,
    key_file: &str,
) -> Result<
    (
        Vec<pingora::tls::CertificateDer<'static>>,
        pingora::tls::PrivateKeyDer<'static>,
    ),
    String,
> {
    let certs = read_certs(cert_file)?;
    let mut reader = std::io::BufReader::new(
        std::fs::File::open(key_file).map_err(|e| format!("{key_file}: {e}"))?,
    );
    let key = rustls_pemfile::private_key(&mut reader)
        .map_err(|e| format!("{key_file}: {e}"))?
        .ok_or_else(|| format!("{key_file}: no private key"))?;
    Ok((certs, key))
}

fn read_certs(path: &str) -> Result<Vec<pingora::tls::CertificateDer<'static>>, String> {
    let mut reader =
        std::io::BufReader::new(std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?);
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no certificate"));
    }
    Ok(certs)
}

/// Parse DER with Pingora's wrapper, which panics on bad input: contain it
/// here, at load time, so a bad file is an error and never a crash.
fn wrap_x509(der: Vec<u8>) -> Result<WrappedX509, String> {
    std::panic::catch_unwind(|| WrappedX509::new(der, pingora::utils::tls::parse_x509))
        .map_err(|_| "not a valid X.509 certificate".to_owned())
}

/// A CA bundle for verifying an upstream.
pub fn load_ca(path: &str) -> Result<Arc<[WrappedX509]>, String> {
    let certs = read_certs(path)?;
    let wrapped = certs
        .into_iter()
        .map(|c| wrap_x509(c.to_vec()).map_err(|e| format!("{path}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::from(wrapped))
}

/// A client certificate and key for mTLS toward an upstream.
pub fn load_cert_key(cert_file: &str, key_file: &str) -> Result<CertKey, String> {
    let (certs, key) = read_pem(cert_file, key_file)?;
    for c in &certs {
        wrap_x509(c.to_vec()).map_err(|e| format!("{cert_file}: {e}"))?;
    }
    Ok(CertKey::new(
        certs.into_iter().map(|c| c.to_vec()).collect(),
        key.secret_der().to_vec(),
    ))
}

/// A verifier that requires client certificates signed by the CAs in `path`.
pub fn client_verifier(path: &str) -> Result<Arc<dyn pingora::tls::ClientCertVerifier>, String> {
    let mut roots = pingora::tls::RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
    }
    pingora::tls::install_default_crypto_provider();
    pingora::tls::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("{path}: {e}"))
}
