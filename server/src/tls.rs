//! Optional TLS on the RESP port (`client_tls_cert`, `client_tls_key`,
//! optionally `client_tls_ca` for mutual TLS). See docs/operations.md,
//! "TLS for clients".
//!
//! When it is configured the RESP port speaks only TLS, as if Redis's
//! `tls-port` replaced its `port`: a plaintext client fails the handshake and
//! is closed. TLS 1.2 and 1.3 (rustls's safe defaults; redis-cli and older
//! client libraries still speak 1.2), no ALPN.
//!
//! Crypto provider: like the node-to-node transport (`cairn_replication`'s
//! `tls` module) the configuration is built with `builder_with_provider` and
//! an explicit ring provider, never the process-wide default, so nothing has
//! to be installed "exactly once" and no other library's choice can change
//! what this port uses.
//!
//! Bounds: the handshake runs in the connection's task, which holds one of
//! the `max_clients` slots, and must finish within `request_read_timeout_s`
//! (a handshake is a request that has started), so clients that connect and
//! never finish a handshake cannot pin more than `max_clients` sockets, nor
//! any of them for long.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;

use crate::config::Config;

/// Largest PEM file read. A certificate chain or a CA bundle is a few KiB;
/// anything near this is not a certificate file.
const PEM_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// The acceptor for the RESP port, or `None` for plain TCP. Every file is
/// read and checked here, at start-up: a bad file stops the node with a
/// message naming it instead of failing every handshake later.
pub fn acceptor(config: &Config) -> Result<Option<TlsAcceptor>, String> {
    let (Some(cert_path), Some(key_path)) = (&config.client_tls_cert, &config.client_tls_key)
    else {
        return Ok(None);
    };
    let chain = certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(read_pem(key_path)?.as_bytes())
        .map_err(|e| format!("client_tls_key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("client TLS: {e}"))?;
    let builder = match &config.client_tls_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => builder.with_client_cert_verifier(client_verifier(ca_path, &provider)?),
    };
    let server = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("client_tls_cert and client_tls_key: {e}"))?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Requires a client certificate that chains to one of the CAs in `path`.
fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for ca in certs(path)? {
        roots
            .add(ca)
            .map_err(|e| format!("client_tls_ca {}: {e}", path.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| format!("client_tls_ca {}: {e}", path.display()))
}

/// Every certificate in the PEM file at `path`; at least one.
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE section", path.display()));
    }
    Ok(certs)
}

fn read_pem(path: &Path) -> Result<String, String> {
    let error = |e: &dyn fmt::Display| format!("read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| error(&e))?;
    let mut text = String::new();
    file.take(PEM_FILE_MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| error(&e))?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > PEM_FILE_MAX_BYTES {
        return Err(error(&format!(
            "larger than {PEM_FILE_MAX_BYTES} bytes, not a PEM file"
        )));
    }
    Ok(text)
}

/// A stream that flushes before it reads.
///
/// Why: a TLS stream's `poll_write` may accept bytes into rustls's buffer
/// and return before they reach the socket (the socket was full); they
/// leave only on a later write or a flush. The connection loop writes its
/// replies and then waits for the next request, which on plain TCP is
/// enough (the kernel has the bytes) but over TLS could leave the last
/// replies in the buffer while the client waits for them. Flushing first
/// in every read closes that gap without the loop knowing about TLS; a
/// flush with nothing buffered costs nothing. While the socket stays full
/// the read is pending too, which is the back-pressure a slow reader
/// should get.
pub struct FlushBeforeRead<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FlushBeforeRead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FlushBeforeRead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_replication::ClusterCa;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn acceptor_is_built_only_from_a_matching_cert_and_key() {
        // Good files give an acceptor (with and without a client CA); a key
        // of another certificate, garbage and a missing file are errors that
        // name the file, never a panic.
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("resp").unwrap();
        let a = ca.issue_node("a", &["127.0.0.1".to_owned()]).unwrap();
        let b = ca.issue_node("b", &["127.0.0.1".to_owned()]).unwrap();
        let mut config = Config {
            client_tls_cert: Some(write(dir.path(), "a.pem", &a.cert_pem)),
            client_tls_key: Some(write(dir.path(), "a-key.pem", &a.key_pem)),
            ..Config::default()
        };
        assert!(acceptor(&Config::default()).unwrap().is_none());
        assert!(acceptor(&config).unwrap().is_some());
        config.client_tls_ca = Some(write(dir.path(), "ca.pem", ca.cert_pem()));
        assert!(acceptor(&config).unwrap().is_some());

        config.client_tls_key = Some(write(dir.path(), "b-key.pem", &b.key_pem));
        assert!(acceptor(&config).is_err());
        config.client_tls_key = Some(write(dir.path(), "junk.pem", "junk"));
        let err = acceptor(&config).err().unwrap();
        assert!(err.contains("junk.pem"), "{err}");
        config.client_tls_key = Some(write(dir.path(), "a-key.pem", &a.key_pem));
        config.client_tls_ca = Some(dir.path().join("missing.pem"));
        let err = acceptor(&config).err().unwrap();
        assert!(err.contains("missing.pem"), "{err}");
        config.client_tls_ca = Some(write(dir.path(), "empty.pem", ""));
        let err = acceptor(&config).err().unwrap();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}
