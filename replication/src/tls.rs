//! The cluster's PKI and the TLS configurations of the QUIC transport
//! (`docs/transport.md`, "TLS").
//!
//! One cluster CA (a self-signed ECDSA P-256 certificate made by rcgen)
//! signs every node's certificate. A node certificate is both a server and a
//! client certificate (EKU serverAuth + clientAuth), so every connection is
//! mutually authenticated: the server requires a client certificate that
//! chains to the CA, and the client checks the server's certificate against
//! the CA and the name it dialled (a DNS SAN, or an IP SAN for an IP
//! literal).
//!
//! Crypto provider: every rustls configuration here is built with
//! `builder_with_provider` and an explicit ring provider, never the
//! process-wide default. That needs no global state, so nothing has to be
//! installed "exactly once", and another library's choice of default
//! provider cannot change what the transport uses. TLS 1.3 only (QUIC
//! requires it).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, client::WebPkiServerVerifier};
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The ALPN protocol both sides require; a peer speaking anything else is
/// refused during the handshake (do not change: on the wire; a new RPC frame
/// layout that old nodes cannot read gets `cairn-raft/2`).
pub const ALPN: &[u8] = b"cairn-raft/1";

/// How long a cluster CA made by [`ClusterCa::generate`] is valid.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// How long a node certificate made by [`ClusterCa::issue_node`] is valid.
/// Shorter than the CA's, so a node certificate issued late in the CA's life
/// still expires no later than a few years after it; reissue before then.
pub const NODE_CERT_VALIDITY_DAYS: u32 = 1825;
/// Certificates start being valid this long before they are made, so a peer
/// whose clock is a little behind accepts them.
const BACKDATE_DAYS: u32 = 1;
/// Largest PEM file [`TlsMaterial::load`] reads. A CA bundle and a chain are
/// a few KiB; anything near this is not a certificate file.
const PEM_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// What went wrong making or loading certificates, or building a TLS
/// configuration from them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM input (`what`: "CA certificate", "node private key"...) could
    /// not be parsed, or holds no item of the expected kind.
    Pem { what: &'static str, reason: String },
    /// A file could not be read, or is larger than any PEM file should be.
    Io { path: PathBuf, reason: String },
    /// The node certificate does not verify under the cluster CA: signed by
    /// another CA, expired, or not usable for client authentication.
    NotSignedByCa { reason: String },
    /// The private key does not belong to the certificate (`what`).
    KeyMismatch { what: &'static str },
    /// The CA certificate given to [`ClusterCa::from_pem`] may not sign
    /// certificates.
    NotACa { reason: String },
    /// A certificate could not be made (a bad SAN, key generation failed).
    Issue { reason: String },
    /// rustls or quinn refused the configuration.
    Config { reason: String },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { what, reason } => write!(f, "bad PEM for the {what}: {reason}"),
            TlsError::Io { path, reason } => write!(f, "cannot read {}: {reason}", path.display()),
            TlsError::NotSignedByCa { reason } => write!(
                f,
                "the node certificate does not verify under the cluster CA: {reason}"
            ),
            TlsError::KeyMismatch { what } => {
                write!(f, "the private key does not belong to the {what}")
            }
            TlsError::NotACa { reason } => write!(f, "not a CA certificate: {reason}"),
            TlsError::Issue { reason } => write!(f, "cannot issue a certificate: {reason}"),
            TlsError::Config { reason } => write!(f, "bad TLS configuration: {reason}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The cluster CA: its certificate and signing key. Keep `key_pem` secret
/// (offline, or readable only by whoever adds nodes); nodes need only the CA
/// certificate and their own [`NodeCert`].
pub struct ClusterCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for ClusterCa {
    /// Shows the certificate, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[secret]")
            .finish()
    }
}

impl ClusterCa {
    /// Makes a new CA: a fresh ECDSA P-256 key and a self-signed certificate
    /// with subject `CN=<common_name>`, `CA:true, pathlen:0` (it signs node
    /// certificates only), valid from a day ago for [`CA_VALIDITY_DAYS`].
    pub fn generate(common_name: &str) -> Result<ClusterCa, TlsError> {
        let key = KeyPair::generate().map_err(issue_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY_DAYS)?;
        let cert = params.self_signed(&key).map_err(issue_error)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA saved with [`ClusterCa::cert_pem`] and
    /// [`ClusterCa::key_pem`]. Checks that the key belongs to the
    /// certificate and that the certificate may sign certificates.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, TlsError> {
        const CERT: &str = "CA certificate";
        const KEY: &str = "CA private key";
        let cert = single_cert(cert_pem, CERT)?;
        let key_der = private_key(key_pem, KEY)?;
        check_key_matches(vec![cert.clone()], key_der, CERT)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| pem_error(KEY, e))?;
        let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|e| TlsError::Pem {
            what: CERT,
            reason: e.to_string(),
        })?;
        let usages = issuer.key_usages();
        if !usages.is_empty() && !usages.contains(&KeyUsagePurpose::KeyCertSign) {
            return Err(TlsError::NotACa {
                reason: "its key usage does not include keyCertSign".to_owned(),
            });
        }
        Ok(ClusterCa {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM: every node trusts it.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PKCS#8 PEM. Secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a certificate for one node: a fresh ECDSA P-256 key, subject
    /// `CN=<node_name>`, the given subject alternative names (each a DNS
    /// name, or an IP address such as `10.0.0.7`, `::1` or `[::1]`, which
    /// becomes an IP SAN), EKU serverAuth + clientAuth, valid from a day ago
    /// for [`NODE_CERT_VALIDITY_DAYS`]. Peers dial a node by one of these
    /// names, so at least one is required.
    pub fn issue_node(&self, node_name: &str, sans: &[String]) -> Result<NodeCert, TlsError> {
        if sans.is_empty() {
            return Err(TlsError::Issue {
                reason: format!(
                    "node {node_name:?} needs at least one subject alternative name \
                     (the DNS name or IP address peers dial)"
                ),
            });
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans
            .iter()
            .map(|san| parse_san(san))
            .collect::<Result<_, _>>()?;
        params.distinguished_name = common_name_dn(node_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, NODE_CERT_VALIDITY_DAYS)?;
        let key = KeyPair::generate().map_err(issue_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_error)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A node's certificate and private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCert {
    pub cert_pem: String,
    /// PKCS#8. Secret.
    pub key_pem: String,
}

impl fmt::Debug for NodeCert {
    /// Shows the certificate, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[secret]")
            .finish()
    }
}

/// What a node needs to join the transport: the cluster CA certificate(s)
/// it trusts, and its own certificate (chain, leaf first) and key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// One or more CA certificates, PEM. Several are allowed so a CA can be
    /// rotated: trust old and new, reissue node certificates, drop the old.
    pub ca_cert_pem: String,
    /// The node certificate, optionally followed by intermediates, PEM.
    pub cert_pem: String,
    /// The node's private key (PKCS#8, PKCS#1 or SEC1), PEM. Secret.
    pub key_pem: String,
}

impl fmt::Debug for TlsMaterial {
    /// Shows the certificates, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[secret]")
            .finish()
    }
}

/// Parsed and checked [`TlsMaterial`].
struct Parsed {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TlsMaterial {
    /// Material for a node whose certificate `node` was issued by `ca`.
    pub fn new(ca: &ClusterCa, node: &NodeCert) -> TlsMaterial {
        TlsMaterial {
            ca_cert_pem: ca.cert_pem().to_owned(),
            cert_pem: node.cert_pem.clone(),
            key_pem: node.key_pem.clone(),
        }
    }

    /// Reads the three PEM files (each at most 1 MiB) and checks them as
    /// [`TlsMaterial::check`] does.
    pub fn load(
        ca_path: impl AsRef<Path>,
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<TlsMaterial, TlsError> {
        let material = TlsMaterial {
            ca_cert_pem: read_pem_file(ca_path.as_ref())?,
            cert_pem: read_pem_file(cert_path.as_ref())?,
            key_pem: read_pem_file(key_path.as_ref())?,
        };
        material.check()?;
        Ok(material)
    }

    /// Checks that everything parses, that the key belongs to the node
    /// certificate, and that the certificate verifies under the CA as a
    /// client certificate now (so a peer will accept it).
    pub fn check(&self) -> Result<(), TlsError> {
        self.parse().map(|_| ())
    }

    /// The server side: presents the node certificate and requires every
    /// client to present a certificate that verifies under the CA. ALPN
    /// [`ALPN`], TLS 1.3 only.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let parsed = self.parse()?;
        let provider = provider();
        let verifier = client_verifier(&parsed.roots, &provider)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(parsed.chain, parsed.key)
            .map_err(config_error)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(config_error)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }

    /// The client side: verifies the server's certificate against the CA
    /// and the name dialled, and presents the node certificate. ALPN
    /// [`ALPN`], TLS 1.3 only.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let parsed = self.parse()?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_root_certificates(parsed.roots)
            .with_client_auth_cert(parsed.chain, parsed.key)
            .map_err(config_error)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(config_error)?;
        Ok(quinn::ClientConfig::new(Arc::new(quic)))
    }

    /// Checks the node certificate as a server certificate for `name` (a DNS
    /// name or an IP address): what a peer dialling this node by `name`
    /// will check.
    pub fn check_server_name(&self, name: &str) -> Result<(), TlsError> {
        let parsed = self.parse()?;
        let server_name = ServerName::try_from(name).map_err(|e| TlsError::Config {
            reason: format!("{name:?} is not a DNS name or IP address: {e}"),
        })?;
        let verifier = WebPkiServerVerifier::builder_with_provider(parsed.roots, provider())
            .build()
            .map_err(config_error)?;
        let (leaf, intermediates) = split_chain(&parsed.chain)?;
        verifier
            .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| TlsError::NotSignedByCa {
                reason: format!("as a server certificate for {name:?}: {e}"),
            })
    }

    fn parse(&self) -> Result<Parsed, TlsError> {
        const CA: &str = "CA certificate";
        const CERT: &str = "node certificate";
        const KEY: &str = "node private key";
        let mut roots = RootCertStore::empty();
        for ca in certs(&self.ca_cert_pem, CA)? {
            roots.add(ca).map_err(|e| TlsError::Pem {
                what: CA,
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let chain = certs(&self.cert_pem, CERT)?;
        let key = private_key(&self.key_pem, KEY)?;
        check_key_matches(chain.clone(), key.clone_key(), CERT)?;
        let verifier = client_verifier(&roots, &provider())?;
        let (leaf, intermediates) = split_chain(&chain)?;
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| TlsError::NotSignedByCa {
                reason: e.to_string(),
            })?;
        Ok(Parsed { roots, chain, key })
    }
}

/// The one crypto provider of the transport; see the module docs.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_verifier(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), Arc::clone(provider))
        .build()
        .map_err(config_error)
}

fn split_chain<'a>(
    chain: &'a [CertificateDer<'static>],
) -> Result<(&'a CertificateDer<'static>, &'a [CertificateDer<'static>]), TlsError> {
    chain.split_first().ok_or(TlsError::Pem {
        what: "node certificate",
        reason: "no certificate".to_owned(),
    })
}

/// Every certificate in `pem`; at least one.
fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE section".to_owned(),
        });
    }
    Ok(certs)
}

/// Exactly one certificate.
fn single_cert(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, TlsError> {
    let mut all = certs(pem, what)?;
    match (all.pop(), all.is_empty()) {
        (Some(cert), true) => Ok(cert),
        _ => Err(TlsError::Pem {
            what,
            reason: "more than one certificate".to_owned(),
        }),
    }
}

fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| pem_error(what, e))
}

/// Fails with [`TlsError::KeyMismatch`] unless `key` belongs to the first
/// certificate of `chain`.
fn check_key_matches(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    what: &'static str,
) -> Result<(), TlsError> {
    match rustls::sign::CertifiedKey::from_der(chain, key, &provider()) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch { what }),
        Err(e) => Err(TlsError::Pem {
            what,
            reason: e.to_string(),
        }),
    }
}

/// A SAN: an IP address (brackets allowed around IPv6) or a DNS name.
fn parse_san(san: &str) -> Result<SanType, TlsError> {
    let trimmed = san.trim();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = |reason: String| TlsError::Issue {
        reason: format!("{san:?} is neither an IP address nor a DNS name: {reason}"),
    };
    rustls::pki_types::DnsName::try_from(trimmed).map_err(|e| bad(e.to_string()))?;
    let name = trimmed
        .try_into()
        .map_err(|e: rcgen::Error| bad(e.to_string()))?;
    Ok(SanType::DnsName(name))
}

fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from [`BACKDATE_DAYS`] ago until `days` from today (UTC dates).
fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), TlsError> {
    let since_epoch =
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TlsError::Issue {
                reason: "the system clock is before 1970".to_owned(),
            })?;
    let today = i64::try_from(since_epoch.as_secs() / 86_400).map_err(|_| TlsError::Issue {
        reason: "the system clock is out of range".to_owned(),
    })?;
    let (y, m, d) = civil_from_days(today - i64::from(BACKDATE_DAYS));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_from_days(today + i64::from(days));
    params.not_after = rcgen::date_time_ymd(y, m, d);
    Ok(())
}

/// The proleptic Gregorian date of day `days` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`). Always a valid date, which matters:
/// `rcgen::date_time_ymd` panics on an invalid one. REQUIRES: `days` within
/// a few million years of 1970 (the callers add at most decades to today).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).unwrap_or(i32::MAX),
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

fn read_pem_file(path: &Path) -> Result<String, TlsError> {
    let io_error = |reason: String| TlsError::Io {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| io_error(e.to_string()))?;
    let mut text = String::new();
    file.take(PEM_FILE_MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| io_error(e.to_string()))?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > PEM_FILE_MAX_BYTES {
        return Err(io_error(format!(
            "larger than {PEM_FILE_MAX_BYTES} bytes, not a PEM file"
        )));
    }
    Ok(text)
}

fn pem_error(what: &'static str, e: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        what,
        reason: e.to_string(),
    }
}

fn issue_error(e: rcgen::Error) -> TlsError {
    TlsError::Issue {
        reason: e.to_string(),
    }
}

fn config_error(e: impl fmt::Display) -> TlsError {
    TlsError::Config {
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ca: &ClusterCa, sans: &[&str]) -> TlsMaterial {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        TlsMaterial::new(ca, &ca.issue_node("n1", &sans).unwrap())
    }

    #[test]
    fn civil_from_days_matches_known_dates() {
        // The date arithmetic behind certificate validity, against known days.
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn issued_node_cert_verifies_for_its_dns_and_ip_sans() {
        // A node certificate is a valid client certificate under its CA and
        // a valid server certificate for each of its SANs, and no other name.
        let ca = ClusterCa::generate("test cluster").unwrap();
        let material = node(&ca, &["node1.cairn.test", "127.0.0.1", "[::1]"]);
        material.check().unwrap();
        material.check_server_name("node1.cairn.test").unwrap();
        material.check_server_name("127.0.0.1").unwrap();
        material.check_server_name("::1").unwrap();
        let err = material.check_server_name("node2.cairn.test").unwrap_err();
        assert!(matches!(err, TlsError::NotSignedByCa { .. }), "{err}");
        let err = material.check_server_name("10.0.0.1").unwrap_err();
        assert!(matches!(err, TlsError::NotSignedByCa { .. }), "{err}");
        material.server_config().unwrap();
        material.client_config().unwrap();
    }

    #[test]
    fn node_cert_from_another_ca_is_rejected() {
        // Trusting CA A while holding a certificate from CA B fails loudly.
        let a = ClusterCa::generate("a").unwrap();
        let b = ClusterCa::generate("b").unwrap();
        let mut material = node(&b, &["127.0.0.1"]);
        material.ca_cert_pem = a.cert_pem().to_owned();
        let err = material.check().unwrap_err();
        assert!(matches!(err, TlsError::NotSignedByCa { .. }), "{err}");
        assert!(err.to_string().contains("cluster CA"), "{err}");
        assert!(material.server_config().is_err());
        assert!(material.client_config().is_err());
    }

    #[test]
    fn ca_bundle_with_several_roots_is_accepted() {
        // During CA rotation a node trusts old and new CA at once.
        let old = ClusterCa::generate("old").unwrap();
        let new = ClusterCa::generate("new").unwrap();
        let mut material = node(&new, &["127.0.0.1"]);
        material.ca_cert_pem = format!("{}{}", old.cert_pem(), new.cert_pem());
        material.check().unwrap();
    }

    #[test]
    fn ca_reloaded_from_pem_issues_certs_the_original_trusts() {
        // Saving a CA and loading it back keeps issuing verifiable certs.
        let ca = ClusterCa::generate("cluster").unwrap();
        let reloaded = ClusterCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let cert = reloaded
            .issue_node("n2", &["127.0.0.1".to_owned()])
            .unwrap();
        TlsMaterial::new(&ca, &cert).check().unwrap();
    }

    #[test]
    fn ca_from_pem_rejects_a_foreign_key_and_a_non_ca_cert() {
        // from_pem refuses a key of another CA and a node certificate.
        let ca = ClusterCa::generate("a").unwrap();
        let other = ClusterCa::generate("b").unwrap();
        let err = ClusterCa::from_pem(ca.cert_pem(), other.key_pem()).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let leaf = ca.issue_node("n", &["127.0.0.1".to_owned()]).unwrap();
        let err = ClusterCa::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(matches!(err, TlsError::NotACa { .. }), "{err}");
    }

    #[test]
    fn bad_pem_and_mismatched_keys_are_errors_not_panics() {
        // Garbage, empty input and another node's key all give clear errors.
        let ca = ClusterCa::generate("c").unwrap();
        let good = node(&ca, &["127.0.0.1"]);
        let other = node(&ca, &["127.0.0.1"]);
        for (field, value) in [
            (0, "garbage"),
            (0, ""),
            (
                1,
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            ),
            (1, ""),
            (2, "not a key"),
        ] {
            let mut bad = good.clone();
            match field {
                0 => bad.ca_cert_pem = value.to_owned(),
                1 => bad.cert_pem = value.to_owned(),
                _ => bad.key_pem = value.to_owned(),
            }
            let err = bad.check().unwrap_err();
            assert!(matches!(err, TlsError::Pem { .. }), "{value:?}: {err}");
        }
        let mut mismatched = good.clone();
        mismatched.key_pem = other.key_pem.clone();
        let err = mismatched.check().unwrap_err();
        assert_eq!(
            err,
            TlsError::KeyMismatch {
                what: "node certificate"
            }
        );
        assert!(ClusterCa::from_pem("garbage", "garbage").is_err());
    }

    #[test]
    fn issue_node_rejects_missing_and_malformed_sans() {
        // A certificate nobody could dial, or a SAN that is not a name, is
        // refused at issue time rather than failing every handshake later.
        let ca = ClusterCa::generate("c").unwrap();
        assert!(matches!(
            ca.issue_node("n", &[]).unwrap_err(),
            TlsError::Issue { .. }
        ));
        for bad in ["has space.example", "", "bad_\u{e9}.example"] {
            let err = ca.issue_node("n", &[bad.to_owned()]).unwrap_err();
            assert!(matches!(err, TlsError::Issue { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn load_reads_files_and_refuses_oversized_ones() {
        // load() checks what it reads, and will not read a huge file.
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("c").unwrap();
        let m = node(&ca, &["127.0.0.1"]);
        let (ca_path, cert_path, key_path) = (
            dir.path().join("ca.pem"),
            dir.path().join("node.pem"),
            dir.path().join("node.key"),
        );
        std::fs::write(&ca_path, &m.ca_cert_pem).unwrap();
        std::fs::write(&cert_path, &m.cert_pem).unwrap();
        std::fs::write(&key_path, &m.key_pem).unwrap();
        assert_eq!(
            TlsMaterial::load(&ca_path, &cert_path, &key_path).unwrap(),
            m
        );
        let huge = dir.path().join("huge.pem");
        std::fs::write(&huge, vec![b'a'; PEM_FILE_MAX_BYTES as usize + 1]).unwrap();
        let err = TlsMaterial::load(&huge, &cert_path, &key_path).unwrap_err();
        assert!(matches!(err, TlsError::Io { .. }), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = TlsMaterial::load(&ca_path, &missing, &key_path).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_private_keys() {
        // Logging a CA, a node cert or TLS material must not leak a key.
        let ca = ClusterCa::generate("c").unwrap();
        let cert = ca.issue_node("n", &["127.0.0.1".to_owned()]).unwrap();
        let material = TlsMaterial::new(&ca, &cert);
        for shown in [
            format!("{ca:?}"),
            format!("{cert:?}"),
            format!("{material:?}"),
        ] {
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        }
    }
}
