//! Throwaway certificates for the TLS tests (rcgen): a CA, certificates it signs and
//! self-signed ones, written as PEM files into a directory of the test's own.

use super::temp_dir;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData};
use sipnotify::net::tls::Fingerprint;
use std::path::{Path, PathBuf};

/// A certificate and its key, as files, with the SHA-256 of each for `--tls-pin`.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's SHA-256.
    pub fingerprint: String,
    /// Its public key's (SubjectPublicKeyInfo) SHA-256.
    pub spki: String,
}

impl Leaf {
    /// `--tls-cert CERT --tls-key KEY`: the options of a server that presents it.
    pub fn options(&self) -> [&str; 4] {
        let (cert, key) = (self.cert.to_str().unwrap(), self.key.to_str().unwrap());
        ["--tls-cert", cert, "--tls-key", key]
    }
}

/// A test's own folder ([`temp_dir`]), the CA `phones` in it and the certificate `phone`
/// that CA issued for `names`.
pub fn phones_ca(test: &str, names: &[&str]) -> (PathBuf, Pki, Leaf) {
    let dir = temp_dir(test);
    let pki = Pki::new(&dir, "phones");
    let leaf = pki.issue("phone", names);
    (dir, pki, leaf)
}

/// A CA whose certificate is `<dir>/<name>-ca.pem`.
pub struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate file, for `--ca`.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// A certificate for `names` (DNS names or addresses) signed by this CA, as
    /// `<file>.pem` and `<file>.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params(names).signed_by(&key, &self.issuer).unwrap();
        write(&self.dir, file, cert, &key)
    }
}

/// A self-signed certificate for `names`, as `<dir>/<file>.pem` and `.key`: what a phone
/// or an appliance often has, naming something else than its address.
pub fn self_signed(dir: &Path, file: &str, names: &[&str]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = params(names).self_signed(&key).unwrap();
    write(dir, file, cert, &key)
}

fn params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    params
}

fn write(dir: &Path, file: &str, cert: rcgen::Certificate, key: &KeyPair) -> Leaf {
    let (cert_path, key_path) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Leaf {
        cert: cert_path,
        key: key_path,
        fingerprint: Fingerprint::of(cert.der()).to_string(),
        spki: Fingerprint::of(&key.subject_public_key_info()).to_string(),
    }
}
