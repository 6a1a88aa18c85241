//! TLS for the stream pool (RFC 3261 section 26.2): how a connected TCP stream becomes a
//! TLS one, how the peer's certificate is checked, and what a failure is called.
//!
//! rustls with the ring provider: TLS 1.2 and 1.3, ECDHE key exchange, AES-GCM and
//! ChaCha20 only. Peers that speak only TLS 1.0/1.1, or only CBC or RSA key-exchange
//! suites, cannot be reached, and [`TlsError`] says so instead of a bare alert.
//!
//! A certificate is checked one of four ways ([`Verification`]): against the system's
//! roots or a `--ca` bundle, with the name (`--tls-name`, else the next hop's host); by
//! pin, accepting exactly the certificate whose SHA-256 (or its public key's) is given,
//! since phone certificates name a MAC or serial, never the address the phone is reached
//! at; or not at all (`--tls-insecure`). Every refusal says what did not match and which
//! option changes that.

use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, RootCertStore};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;

use crate::sip::uri::Host;

/// A SHA-256 digest of a certificate, or of its public key (the DER SubjectPublicKeyInfo),
/// written as colon-separated hex like `openssl x509 -fingerprint -sha256` does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A `--tls-pin` that is not a SHA-256 in hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SHA-256 fingerprint: 64 hex digits, colons allowed (AB:CD:...)")]
pub struct BadFingerprint(pub String);

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(text: &str) -> Result<Fingerprint, BadFingerprint> {
        let bad = || BadFingerprint(text.to_string());
        let digits: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

/// How the peer's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Verification {
    /// A chain to one of the system's root certificates, naming the peer.
    #[default]
    SystemRoots,
    /// A chain to one of the certificates in this PEM file, naming the peer.
    Ca(PathBuf),
    /// Exactly a certificate whose SHA-256, or its public key's, is one of these; chain,
    /// names and dates are not looked at (the pin is the trust).
    Pins(Vec<Fingerprint>),
    /// None: whoever answers is taken for the peer.
    Insecure,
}

/// What the user said about TLS: the command line's `--ca`, `--tls-pin`,
/// `--tls-insecure`, `--tls-name`, `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// How the peer's certificate is checked.
    pub verification: Verification,
    /// The name to check the certificate against and to send as SNI, instead of the next
    /// hop's host.
    pub name: Option<String>,
    /// A certificate chain and its private key (PEM files), for peers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Why the TLS options cannot be used; nothing is sent.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read.
    #[error("cannot read {option} {}: {source}", path.display())]
    Read {
        /// The option that named it.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: pem::Error,
    },
    /// The key file cannot be used; nothing of what it holds is shown.
    #[error("cannot read --tls-key {}: {why}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why, in words that quote nothing of the file.
        why: String,
    },
    /// A file holds no certificate.
    #[error("{option} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The option that named it.
        option: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate could not be used.
    #[error("--ca {}: a certificate cannot be used as a root: {source}", path.display())]
    BadRoot {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The key is not the certificate's.
    #[error("--tls-key {} is not the private key of --tls-cert {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The key cannot be used.
    #[error("--tls-cert {} and --tls-key {}: {source}", cert.display(), key.display())]
    ClientCert {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why (never the key itself).
        source: rustls::Error,
    },
    /// `--tls-name` is not a DNS name or an address.
    #[error("--tls-name `{0}` is not a DNS name or an IP address")]
    Name(String),
    /// A certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The generated certificate could not be used.
    #[error("cannot use the generated certificate: {0}")]
    Generated(rustls::Error),
}

/// The crypto provider: ring, as the crate features say.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
fn read_certs(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let read = |source| TlsSetupError::Read {
        option,
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            option,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A certificate chain with its private key: the simulator's server certificate, or the
/// agent's client certificate. The key is never shown.
#[derive(Clone)]
pub struct Identity {
    key: Arc<CertifiedKey>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("certificate", &self.fingerprint())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// Reads a certificate chain (end entity first) and its private key (PKCS#8, PKCS#1 or
    /// SEC1) from the PEM files of `--tls-cert` and `--tls-key`, checking that they belong
    /// together.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, TlsSetupError> {
        let chain = read_certs("--tls-cert", cert)?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::Key {
            path: key.to_path_buf(),
            why: match e {
                pem::Error::Io(e) => e.to_string(),
                pem::Error::NoItemsFound => {
                    "it holds no PEM private key (PKCS#8, RSA or EC)".into()
                }
                _ => "its PEM is malformed".into(),
            },
        })?;
        let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
        // The key is checked against the certificate by webpki, which reads X.509 v3
        // only: an older certificate is used unchecked, as its peer may still take it.
        let loaded = provider()
            .key_provider
            .load_private_key(private)
            .map_err(|source| TlsSetupError::ClientCert {
                cert: cert.clone(),
                key: key.clone(),
                source,
            })?;
        let certified = CertifiedKey::new(chain, loaded);
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            certified.keys_match()
        {
            return Err(TlsSetupError::KeyMismatch { cert, key });
        }
        Ok(Identity {
            key: Arc::new(certified),
        })
    }

    /// A new self-signed certificate (ECDSA P-256) for `localhost` and `addresses`, good
    /// for rehearsals with `--tls-pin` or `--tls-insecure`.
    pub fn self_signed(addresses: &[IpAddr]) -> Result<Identity, TlsSetupError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .extend(addresses.iter().map(|&ip| SanType::IpAddress(ip)));
        let cert = params.self_signed(&key)?;
        let private = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        let certified = CertifiedKey::from_der(vec![cert.der().clone()], private, &provider())
            .map_err(TlsSetupError::Generated)?;
        Ok(Identity {
            key: Arc::new(certified),
        })
    }

    /// The SHA-256 of the end-entity certificate: what `--tls-pin` takes.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.key.cert.first().map_or(&[][..], |c| c.as_ref()))
    }

    /// The rustls server configuration of a listener presenting this certificate.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                self.key.clone(),
            )));
        Ok(Arc::new(config))
    }
}

/// The agent's TLS: how certificates are checked, the name sent, and the client
/// certificate. Cheap to clone. The default checks against the system's roots.
#[derive(Clone, Default)]
pub struct TlsClient {
    inner: Arc<ClientInner>,
}

#[derive(Default)]
struct ClientInner {
    trust: Trust,
    name: Option<ServerName<'static>>,
    identity: Option<Identity>,
    /// Made at the first TLS connection: the system's roots are read only by a run that
    /// needs them.
    connector: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
}

/// [`Verification`] with its files read.
#[derive(Debug, Default, Clone)]
enum Trust {
    #[default]
    SystemRoots,
    Ca(Arc<RootCertStore>, PathBuf),
    Pins(Vec<Fingerprint>),
    Insecure,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("trust", &self.inner.trust)
            .field("name", &self.inner.name)
            .field("identity", &self.inner.identity)
            .finish()
    }
}

impl TlsClient {
    /// Reads the files the options name and checks them, so that a mistake is found
    /// before anything is sent.
    pub fn new(options: &TlsOptions) -> Result<TlsClient, TlsSetupError> {
        let trust = match &options.verification {
            Verification::SystemRoots => Trust::SystemRoots,
            Verification::Ca(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs("--ca", path)? {
                    roots.add(cert).map_err(|source| TlsSetupError::BadRoot {
                        path: path.clone(),
                        source,
                    })?;
                }
                Trust::Ca(Arc::new(roots), path.clone())
            }
            Verification::Pins(pins) => Trust::Pins(pins.clone()),
            Verification::Insecure => Trust::Insecure,
        };
        let name = match &options.name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| TlsSetupError::Name(name.clone()))?,
            ),
            None => None,
        };
        let identity = match &options.client_cert {
            Some((cert, key)) => Some(Identity::from_pem_files(cert, key)?),
            None => None,
        };
        Ok(TlsClient {
            inner: Arc::new(ClientInner {
                trust,
                name,
                identity,
                connector: OnceLock::new(),
            }),
        })
    }

    /// The name a connection to `host` is checked against and sends as SNI (an address
    /// is checked against the certificate's IP addresses and sends no SNI).
    pub(crate) fn server_name(&self, host: &Host) -> Result<ServerName<'static>, TlsError> {
        if let Some(name) = &self.inner.name {
            return Ok(name.clone());
        }
        match host {
            Host::Name(name) => {
                ServerName::try_from(name.clone()).map_err(|_| TlsError::BadName(name.clone()))
            }
            Host::V4(ip) => Ok(ServerName::from(IpAddr::V4(*ip))),
            Host::V6(ip) => Ok(ServerName::from(IpAddr::V6(*ip))),
        }
    }

    /// Turns a connected stream into a TLS stream to `name`, or says why it cannot.
    pub(crate) async fn connect(
        &self,
        name: ServerName<'static>,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
        let connector = self
            .inner
            .connector
            .get_or_init(|| self.connector())
            .clone()
            .map_err(TlsError::Roots)?;
        connector
            .connect(name, stream)
            .await
            // A peer that hangs up during the handshake is seen as an end of stream, or as a
            // reset when the ClientHello reached it after it closed: the same for the user.
            .map_err(|e| match explain(e) {
                TlsError::Io(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    TlsError::Closed
                }
                other => other,
            })
    }

    fn connector(&self) -> Result<tokio_rustls::TlsConnector, String> {
        let provider = provider();
        let webpki = |roots: Arc<RootCertStore>, source: Source| {
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map(|webpki| Check::WebPki(webpki, source))
                .map_err(|e| e.to_string())
        };
        let check = match &self.inner.trust {
            Trust::SystemRoots => webpki(Arc::new(system_roots()?), Source::System)?,
            Trust::Ca(roots, path) => webpki(roots.clone(), Source::Ca(path.clone()))?,
            Trust::Pins(pins) => Check::Pins(pins.clone()),
            Trust::Insecure => Check::Insecure,
        };
        let verifier = Arc::new(Verifier {
            check,
            provider: provider.clone(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.inner.identity {
            Some(identity) => builder
                .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity.key.clone()))),
            None => builder.with_no_client_auth(),
        };
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

/// The system's root certificates (rustls-native-certs: the OpenSSL directories,
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`). Unreadable ones are skipped if any other is read.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(format!(
            "no system root certificate could be read{}: install the ca-certificates \
             package, or use --ca, --tls-pin or --tls-insecure",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            }
        ));
    }
    Ok(roots)
}

/// Where trusted roots came from, to say in a refusal.
#[derive(Debug, Clone)]
enum Source {
    System,
    Ca(PathBuf),
}

#[derive(Debug)]
enum Check {
    WebPki(Arc<WebPkiServerVerifier>, Source),
    Pins(Vec<Fingerprint>),
    Insecure,
}

/// Checks the peer's certificate as [`Verification`] says, and explains a refusal with a
/// [`Refusal`] (carried through rustls as a [`CertificateError::Other`]). Handshake
/// signatures are always checked: even a pinned or unchecked certificate must be the
/// peer's own.
#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = |refusal: Refusal| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(refusal),
            )))
        };
        match &self.check {
            Check::Insecure => Ok(ServerCertVerified::assertion()),
            Check::Pins(pins) => {
                let cert = Fingerprint::of(end_entity);
                let spki = webpki::EndEntityCert::try_from(end_entity)
                    .ok()
                    .map(|c| Fingerprint::of(c.subject_public_key_info().as_ref()));
                if pins.contains(&cert) || spki.is_some_and(|s| pins.contains(&s)) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(refused(Refusal::Pin { cert, spki }))
                }
            }
            Check::WebPki(webpki, source) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| match e {
                    rustls::Error::InvalidCertificate(e) => {
                        refused(Refusal::new(e, end_entity, source))
                    }
                    other => other,
                }),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a peer's certificate was refused, and which option changes that.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The certificate does not name the host it was reached at.
    #[error("the certificate names {}, not {expected}: use --tls-name or --tls-pin", presented_names(.presented))]
    Name {
        /// The name or address checked.
        expected: String,
        /// The names and addresses the certificate has.
        presented: Vec<String>,
    },
    /// No chain to a trusted root.
    #[error(
        "the certificate is not signed by a CA in {trusted}: use --ca with the CA that \
             signed it, or --tls-pin {cert} once you know it is the peer's"
    )]
    UnknownIssuer {
        /// Which roots were trusted.
        trusted: String,
        /// The certificate's SHA-256, for `--tls-pin`.
        cert: Fingerprint,
    },
    /// Out of its validity period.
    #[error("the certificate {when}: check the clocks, or use --tls-pin {cert} (a pin does not look at dates)")]
    Dates {
        /// "expired 3 days ago", "is valid only in 2 days".
        when: String,
        /// The certificate's SHA-256.
        cert: Fingerprint,
    },
    /// No `--tls-pin` matches.
    #[error("the certificate matches no --tls-pin: its SHA-256 is {cert}{}", spki_text(.spki))]
    Pin {
        /// The certificate's SHA-256.
        cert: Fingerprint,
        /// Its public key's, when the certificate could be read.
        spki: Option<Fingerprint>,
    },
    /// Anything else rustls refused.
    #[error("the certificate was refused: {0}")]
    Other(CertificateError),
}

fn presented_names(presented: &[String]) -> String {
    if presented.is_empty() {
        return "no host (no DNS or IP subjectAltName; a phone's certificate often names \
                its MAC in the subject instead)"
            .into();
    }
    presented.join(", ")
}

fn spki_text(spki: &Option<Fingerprint>) -> String {
    spki.map(|s| format!(", its public key's {s}"))
        .unwrap_or_default()
}

/// Days between two times, in words.
fn days(seconds: u64) -> String {
    match seconds / 86_400 {
        0 => "less than a day".into(),
        1 => "1 day".into(),
        n => format!("{n} days"),
    }
}

impl Refusal {
    /// What webpki's `error` about `cert` means, with the roots trusted.
    fn new(error: CertificateError, cert: &CertificateDer<'_>, source: &Source) -> Refusal {
        let fingerprint = Fingerprint::of(cert);
        match error {
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => Refusal::Name {
                expected: expected.to_str().into_owned(),
                presented: presented.iter().map(|p| presented_name(p)).collect(),
            },
            CertificateError::UnknownIssuer => Refusal::UnknownIssuer {
                trusted: match source {
                    Source::System => "the system's root certificates".into(),
                    Source::Ca(path) => format!("--ca {}", path.display()),
                },
                cert: fingerprint,
            },
            CertificateError::ExpiredContext { time, not_after } => Refusal::Dates {
                when: format!(
                    "expired {} ago",
                    days(time.as_secs().saturating_sub(not_after.as_secs()))
                ),
                cert: fingerprint,
            },
            CertificateError::NotValidYetContext { time, not_before } => Refusal::Dates {
                when: format!(
                    "is valid only in {}",
                    days(not_before.as_secs().saturating_sub(time.as_secs()))
                ),
                cert: fingerprint,
            },
            other => Refusal::Other(other),
        }
    }
}

/// A name as webpki reports it (`DnsName("a.example")`, `IpAddress(10.0.0.7)`), as the
/// user would write it; anything else as reported.
fn presented_name(reported: &str) -> String {
    let inner = |prefix: &str| {
        reported
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(|r| r.trim_matches('"').to_string())
    };
    inner("DnsName(")
        .or_else(|| inner("IpAddress("))
        .unwrap_or_else(|| reported.to_string())
}

/// Why a TLS connection could not be made or broke.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The trusted roots could not be read.
    #[error("{0}")]
    Roots(String),
    /// The host name cannot be a TLS server name.
    #[error("`{0}` cannot be checked as a TLS server name: use --tls-name or --tls-pin")]
    BadName(String),
    /// The peer offered, or would accept, only TLS 1.0 or 1.1.
    #[error(
        "the peer speaks only TLS 1.0 or 1.1, which rustls (sipnotify's TLS) does not and \
             will not support: enable TLS 1.2 on the peer, or send through a proxy that has it"
    )]
    OldVersion,
    /// The peer found nothing it accepts in the hello.
    #[error(
        "the peer refused the handshake (alert {0:?}): it accepts none of the suites \
             rustls offers (TLS 1.2 and 1.3 with ECDHE and AES-GCM or ChaCha20; rustls has no \
             CBC, RSA key-exchange or TLS 1.0/1.1 suites), or it wants a client certificate \
             (--tls-cert and --tls-key)"
    )]
    NoCommonSuite(AlertDescription),
    /// The peer requires a client certificate and got none.
    #[error("the peer requires a client certificate: use --tls-cert and --tls-key")]
    ClientCertRequired,
    /// The peer refused the client certificate.
    #[error("the peer refused the client certificate of --tls-cert (alert {0:?})")]
    ClientCertRefused(AlertDescription),
    /// The peer does not speak TLS on that port.
    #[error("the peer does not answer in TLS ({0}): is it a TLS port?")]
    NotTls(rustls::Error),
    /// The peer closed the connection before the handshake ended.
    #[error("the peer closed the connection during the TLS handshake: is it a TLS port?")]
    Closed,
    /// Any other TLS failure.
    #[error("{0}")]
    Tls(rustls::Error),
    /// The connection failed underneath.
    #[error("{0}")]
    Io(io::Error),
}

/// What an I/O error on a TLS stream means for the user.
pub(crate) fn explain(error: io::Error) -> TlsError {
    use rustls::Error as E;
    use AlertDescription as A;
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<E>()) else {
        return TlsError::Io(error);
    };
    match tls {
        E::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<Refusal>() {
                Some(refusal) => TlsError::Refused(refusal.clone()),
                None => TlsError::Tls(tls.clone()),
            }
        }
        E::AlertReceived(A::ProtocolVersion)
        | E::PeerIncompatible(rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13) => {
            TlsError::OldVersion
        }
        E::AlertReceived(alert @ (A::HandshakeFailure | A::InsufficientSecurity)) => {
            TlsError::NoCommonSuite(*alert)
        }
        E::AlertReceived(A::CertificateRequired) => TlsError::ClientCertRequired,
        E::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA),
        ) => TlsError::ClientCertRefused(*alert),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => TlsError::NotTls(tls.clone()),
        _ => TlsError::Tls(tls.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_hex_with_or_without_colons_and_print_as_openssl_does() {
        let digest = Fingerprint::of(b"abc");
        let text = digest.to_string();
        assert_eq!(
            text,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert_eq!(text.parse::<Fingerprint>(), Ok(digest));
        assert_eq!(text.replace(':', "").to_lowercase().parse(), Ok(digest));
        for bad in [
            "",
            "AB:CD",
            &text[..text.len() - 1],
            &text.replace('B', "G"),
            &"+F".repeat(32),
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_as_webpki_reports_them_are_shown_as_written() {
        assert_eq!(
            presented_name("DnsName(\"phone-159.example\")"),
            "phone-159.example"
        );
        assert_eq!(presented_name("IpAddress(10.0.0.7)"), "10.0.0.7");
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }

    /// A throwaway CA in a temporary directory, and certificates it signs.
    struct Pki {
        dir: PathBuf,
        issuer: rcgen::Issuer<'static, KeyPair>,
    }

    impl Pki {
        fn new(test: &str) -> Pki {
            let dir =
                std::env::temp_dir().join(format!("sipnotify-tls-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "sipnotify test CA");
            let key = KeyPair::generate().unwrap();
            let ca = params.self_signed(&key).unwrap();
            std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
            Pki {
                dir,
                issuer: rcgen::Issuer::new(params, key),
            }
        }

        fn ca(&self) -> PathBuf {
            self.dir.join("ca.pem")
        }

        /// A certificate for `names` (valid now, unless `expired`), as a phone's identity.
        fn identity(&self, names: &[&str], expired: bool) -> Identity {
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            let (cert_path, key_path) = (self.dir.join("leaf.pem"), self.dir.join("leaf.key"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            Identity::from_pem_files(&cert_path, &key_path).unwrap()
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Sends a resync over TLS to a simulated phone presenting `identity`, checked as
    /// `options` say: the outcome's kind and reason.
    async fn resync(identity: Identity, options: TlsOptions) -> (crate::OutcomeKind, String) {
        use crate::phone::{self, PhoneConfig};
        use crate::{Event, Notifier, NotifierConfig, Notify, Password, Target, Transport};
        let config = PhoneConfig {
            password_template: "secret".into(),
            tls: Some(identity),
            ..PhoneConfig::default()
        };
        let any = "127.0.0.1:0".parse().unwrap();
        let phone = phone::spawn(config, &[(any, Transport::Tls)])
            .await
            .unwrap();
        let addr = phone.local_addr(Transport::Tls).unwrap();
        let notifier = Notifier::bind(NotifierConfig {
            tls: TlsClient::new(&options).unwrap(),
            ..NotifierConfig::default()
        })
        .await
        .unwrap();
        let target = Target::parse(&format!("sip:159@{addr};transport=tls")).unwrap();
        let notify = Notify::new(target, Event::resync(None).unwrap())
            .with_credentials(None, Password::new("secret"));
        let outcome = notifier.send(notify).await;
        phone.shutdown().await;
        (outcome.kind, outcome.reason)
    }

    #[tokio::test]
    async fn a_certificate_is_checked_by_ca_and_name_or_by_pin_and_a_refusal_names_the_fix() {
        use crate::OutcomeKind::{Delivered, Unreachable};
        let pki = Pki::new("checks");
        let phone = pki.identity(&["phone-159.example"], false);
        let by_ca = |name: Option<&str>| TlsOptions {
            verification: Verification::Ca(pki.ca()),
            name: name.map(str::to_string),
            client_cert: None,
        };

        let (kind, reason) = resync(phone.clone(), by_ca(None)).await;
        assert_eq!(kind, Unreachable, "{reason}");
        assert!(
            reason.ends_with(
                "over tls: the certificate names phone-159.example, not 127.0.0.1: \
                 use --tls-name or --tls-pin"
            ),
            "{reason}"
        );
        let (kind, reason) = resync(phone.clone(), by_ca(Some("phone-159.example"))).await;
        assert_eq!(kind, Delivered, "{reason}");

        // The system's roots do not know the test CA; the reason offers the pin.
        let (kind, reason) = resync(phone.clone(), TlsOptions::default()).await;
        assert_eq!(kind, Unreachable, "{reason}");
        assert!(
            reason.contains("is not signed by a CA in the system's root certificates: use --ca"),
            "{reason}"
        );
        assert!(
            reason.contains(&format!("--tls-pin {}", phone.fingerprint())),
            "{reason}"
        );

        let pinned = |pin: Fingerprint| TlsOptions {
            verification: Verification::Pins(vec![pin]),
            ..TlsOptions::default()
        };
        let (kind, reason) = resync(phone.clone(), pinned(phone.fingerprint())).await;
        assert_eq!(kind, Delivered, "{reason}");
        // The public key's SHA-256 is a pin too (it survives the certificate's renewal).
        let leaf = &phone.key.cert[0];
        let spki = webpki::EndEntityCert::try_from(leaf)
            .unwrap()
            .subject_public_key_info();
        let (kind, reason) = resync(phone.clone(), pinned(Fingerprint::of(spki.as_ref()))).await;
        assert_eq!(kind, Delivered, "{reason}");
        let (kind, reason) = resync(phone.clone(), pinned(Fingerprint([7; 32]))).await;
        assert_eq!(kind, Unreachable, "{reason}");
        assert!(
            reason.contains(&format!(
                "the certificate matches no --tls-pin: its SHA-256 is {}, its public key's ",
                phone.fingerprint()
            )),
            "{reason}"
        );

        let insecure = TlsOptions {
            verification: Verification::Insecure,
            ..TlsOptions::default()
        };
        let (kind, reason) = resync(phone, insecure).await;
        assert_eq!(kind, Delivered, "{reason}");

        // An expired certificate is refused by name and CA, and accepted by its pin.
        let expired = pki.identity(&["127.0.0.1"], true);
        let (kind, reason) = resync(expired.clone(), by_ca(None)).await;
        assert_eq!(kind, Unreachable, "{reason}");
        assert!(reason.contains("the certificate expired "), "{reason}");
        assert!(
            reason.contains(" days ago: check the clocks, or use --tls-pin "),
            "{reason}"
        );
        let (kind, reason) = resync(expired.clone(), pinned(expired.fingerprint())).await;
        assert_eq!(kind, Delivered, "{reason}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_connections_are_pooled_and_closed_like_tcp_ones() {
        use crate::sip::codec;
        use crate::sip::response::Response;
        use crate::{Event, Notifier, NotifierConfig, Notify, OutcomeKind, Target};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const TARGETS: usize = 5;
        let identity = Identity::self_signed(&["127.0.0.1".parse().unwrap()]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A peer that answers only once every target's request is in: they must share one
        // connection. It then reports whether the agent closed it, and any second one.
        let peer = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = acceptor.accept(stream).await.unwrap();
            let (mut buf, mut requests) = (Vec::new(), Vec::new());
            while requests.len() < TARGETS {
                match codec::frame(&buf).unwrap() {
                    Some(n) => requests.push(buf.drain(..n).collect::<Vec<u8>>()),
                    None => assert_ne!(stream.read_buf(&mut buf).await.unwrap(), 0),
                }
            }
            for request in &requests {
                let mut out = Vec::new();
                let ok = Response {
                    status: 200,
                    reason: "OK",
                    to_tag: "t",
                    headers: &[],
                    body: b"",
                };
                ok.write(&codec::parse(request).unwrap(), &mut out).unwrap();
                stream.write_all(&out).await.unwrap();
            }
            stream.flush().await.unwrap();
            let closed =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_buf(&mut buf))
                    .await;
            let another =
                tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept())
                    .await
                    .is_ok();
            (matches!(closed, Ok(Ok(0)) | Ok(Err(_))), another)
        });
        let tls = TlsClient::new(&TlsOptions {
            verification: Verification::Pins(vec![identity.fingerprint()]),
            ..TlsOptions::default()
        })
        .unwrap();
        let notifier = Notifier::bind(NotifierConfig {
            tls,
            ..NotifierConfig::default()
        })
        .await
        .unwrap();
        let mut sends = tokio::task::JoinSet::new();
        for user in 0..TARGETS {
            let target = Target::parse(&format!("sips:{user}@{addr}")).unwrap();
            let notifier = notifier.clone();
            sends.spawn(async move { notifier.send(Notify::new(target, Event::Reboot)).await });
        }
        while let Some(outcome) = sends.join_next().await {
            let outcome = outcome.unwrap();
            assert_eq!(outcome.kind, OutcomeKind::Delivered, "{}", outcome.reason);
        }
        // The notifier lives on: the connection closed because no target uses it.
        let (closed, another) = peer.await.unwrap();
        assert!(
            closed,
            "the connection stayed open after its last target ended"
        );
        assert!(
            !another,
            "the targets in flight together did not share one connection"
        );
        drop(notifier);
    }

    /// The reason given when a peer answers the hello with `alert` (a TLS alert record).
    async fn refused_with(alert: u8) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 5];
            stream.read_exact(&mut hello).await.unwrap();
            assert_eq!(hello[0], 22, "a handshake record");
            // A fatal alert, as an old TLS 1.0 server writes it.
            stream.write_all(&[21, 3, 1, 0, 2, 2, alert]).await.unwrap();
            let _ = stream.read(&mut [0u8; 1024]).await;
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("peer.example").unwrap();
        let refused = TlsClient::default()
            .connect(name, stream)
            .await
            .err()
            .unwrap();
        peer.await.unwrap();
        refused.to_string()
    }

    #[tokio::test]
    async fn peers_that_speak_only_old_tls_or_old_suites_are_told_apart() {
        let protocol_version = refused_with(70).await;
        assert!(
            protocol_version.starts_with("the peer speaks only TLS 1.0 or 1.1, which rustls"),
            "{protocol_version}"
        );
        let handshake_failure = refused_with(40).await;
        assert!(
            handshake_failure.starts_with("the peer refused the handshake (alert HandshakeFailure): it accepts none of the suites rustls offers"),
            "{handshake_failure}"
        );
        assert!(handshake_failure.contains("CBC"), "{handshake_failure}");
    }

    #[test]
    fn an_identity_never_shows_its_key() {
        let identity = Identity::self_signed(&["127.0.0.1".parse().unwrap()]).unwrap();
        let shown = format!("{identity:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(
            shown.contains(&identity.fingerprint().to_string()),
            "{shown}"
        );
    }
}
