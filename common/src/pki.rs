//! The farm's own certificate authority and the node certificates it signs (rcgen).
//!
//! A farm has exactly one CA. Every node holds a certificate whose subject alternative names
//! include its node name; peers check that name, not the host in the URL, so a node may move to
//! another address without a new certificate.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::fsutil::write_file;
use crate::name::NodeName;

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

const CA_VALIDITY: Duration = Duration::days(3650);
const NODE_VALIDITY: Duration = Duration::days(825);
/// Certificates start an hour in the past so that a peer whose clock is a little behind
/// does not refuse a certificate that was just issued.
const BACKDATE: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: already exists; pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("subject alternative name {san:?}: {reason}")]
    BadSan { san: String, reason: String },
    #[error("generating the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Paths of a certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates the farm CA in `dir` (`ca.pem`, and `ca.key` with mode 0600).
pub fn init_ca(dir: &Path, force: bool) -> Result<CertFiles, PkiError> {
    let files = CertFiles {
        cert: dir.join(CA_CERT_FILE),
        key: dir.join(CA_KEY_FILE),
    };
    create_dir(dir)?;
    if !force {
        refuse_existing(&[&files.cert, &files.key])?;
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Quarters build farm");
    // A farm id in the name keeps two farms' CAs apart, so that a certificate from another
    // farm is refused as coming from an unknown issuer.
    dn.push(
        DnType::CommonName,
        format!("Quarters farm CA {}", farm_id()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    // The key is written first: a CA certificate without its key would be useless.
    write(&files.key, key.serialize_pem().as_bytes(), 0o600, force)?;
    write(&files.cert, cert.pem().as_bytes(), 0o644, force)?;
    Ok(files)
}

/// Issues a certificate for node `name`, signed by the CA in `ca_dir`, into `out_dir`
/// (`NAME.pem`, and `NAME.key` with mode 0600).
///
/// The certificate names `name` and every entry of `extra_sans` (IP addresses or DNS names),
/// and may be used both as a server and as a client.
pub fn issue_cert(
    ca_dir: &Path,
    out_dir: &Path,
    name: &NodeName,
    extra_sans: &[String],
    force: bool,
) -> Result<CertFiles, PkiError> {
    let files = CertFiles {
        cert: out_dir.join(format!("{name}.pem")),
        key: out_dir.join(format!("{name}.key")),
    };
    create_dir(out_dir)?;
    if !force {
        refuse_existing(&[&files.cert, &files.key])?;
    }
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let ca_key_pem = read_to_string(&ca_key_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| PkiError::Invalid {
        path: ca_key_path.clone(),
        reason: format!("not a private key: {e}"),
    })?;
    let ca_cert_pem = read_to_string(&ca_cert_path)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).map_err(|e| PkiError::Invalid {
        path: ca_cert_path.clone(),
        reason: format!("not a CA certificate: {e}"),
    })?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Quarters build farm");
    dn.push(DnType::CommonName, name.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = sans(name, extra_sans)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_VALIDITY);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write(&files.key, key.serialize_pem().as_bytes(), 0o600, force)?;
    write(&files.cert, cert.pem().as_bytes(), 0o644, force)?;
    Ok(files)
}

fn sans(name: &NodeName, extra: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut out = vec![SanType::DnsName(name.as_str().try_into().map_err(
        |e: rcgen::Error| PkiError::BadSan {
            san: name.to_string(),
            reason: e.to_string(),
        },
    )?)];
    for san in extra {
        let entry = match san.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                let dns = NodeName::new(san.as_str()).map_err(|e| PkiError::BadSan {
                    san: san.clone(),
                    reason: format!("neither an IP address nor a DNS name ({})", e.reason),
                })?;
                SanType::DnsName(dns.as_str().try_into()?)
            }
        };
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

fn farm_id() -> String {
    let mut id = [0u8; 6];
    crate::tls::provider()
        .secure_random
        .fill(&mut id)
        .expect("the system random source works");
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })
}

fn refuse_existing(paths: &[&Path]) -> Result<(), PkiError> {
    match paths.iter().find(|p| p.exists()) {
        Some(path) => Err(PkiError::Exists {
            path: path.to_path_buf(),
        }),
        None => Ok(()),
    }
}

fn read_to_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    write_file(path, contents, mode, force).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => PkiError::Exists {
            path: path.to_owned(),
        },
        _ => PkiError::Io {
            path: path.to_owned(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ca_and_node_keys_are_private_and_never_overwritten_silently() {
        let dir = tempfile::tempdir().unwrap();
        let ca = init_ca(dir.path(), false).unwrap();
        assert_eq!(mode(&ca.key), 0o600);
        let before = fs::read(&ca.key).unwrap();
        let err = init_ca(dir.path(), false).unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
        assert_eq!(fs::read(&ca.key).unwrap(), before);

        let name = NodeName::new("builder-a").unwrap();
        let sans = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        let node = issue_cert(dir.path(), dir.path(), &name, &sans, false).unwrap();
        assert_eq!(mode(&node.key), 0o600);
        assert!(matches!(
            issue_cert(dir.path(), dir.path(), &name, &sans, false),
            Err(PkiError::Exists { .. })
        ));
        let again = issue_cert(dir.path(), dir.path(), &name, &sans, true).unwrap();
        assert_eq!(again, node);
        init_ca(dir.path(), true).unwrap();
        assert_ne!(fs::read(&ca.key).unwrap(), before);
    }

    #[test]
    fn refuses_a_san_that_is_neither_ip_nor_dns() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path(), false).unwrap();
        let name = NodeName::new("master").unwrap();
        let err =
            issue_cert(dir.path(), dir.path(), &name, &["bad host!".into()], false).unwrap_err();
        assert!(err.to_string().contains("bad host!"), "{err}");
    }
}
