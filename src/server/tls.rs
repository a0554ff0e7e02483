//! TLS for the wire server: rustls (ring) with a certificate chain and key from PEM files.

use crate::error::{Error, Result};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
use pgwire::tokio::tokio_rustls::rustls::crypto::ring;
use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Builds the TLS acceptor from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
/// or SEC1), offering the ALPN protocol `alpn`. Any problem is an error: a server asked for
/// TLS never falls back to plaintext. The HTTP server uses it too, with `http/1.1`.
pub fn acceptor(cert_path: &Path, key_path: &Path, alpn: &[u8]) -> Result<TlsAcceptor> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::InvalidParameter(format!("{what} {}: {e}", path.display()))
    };
    let cert_pem = std::fs::read(cert_path).map_err(|e| bad("cannot read", cert_path, &e))?;
    let key_pem = std::fs::read(key_path).map_err(|e| bad("cannot read", key_path, &e))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("no certificate in", cert_path, &e))?;
    if chain.is_empty() {
        return Err(bad("no certificate in", cert_path, &"empty"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad("no private key in", key_path, &e))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("certificate and key do not fit:", cert_path, &e))?;
    // Postgres 17 clients with sslnegotiation=direct require the ALPN name `postgresql`.
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
