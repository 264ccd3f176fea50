//! TLS for the farm: servers present their node certificate; clients trust only the farm CA and
//! check that a peer's certificate carries the node name they meant to reach, whatever host or
//! address the URL uses.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::name::NodeName;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "{path}: private key is readable by others (mode {mode:04o}); run `chmod 600 {path}`",
        path = path.display()
    )]
    KeyReadableByOthers { path: PathBuf, mode: u32 },
    #[error("{path}: the farm CA certificate is not usable as a trust anchor: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("{cert}: not a valid certificate for node {name:?} under the farm CA {ca}: {reason}")]
    NotForThisNode {
        cert: PathBuf,
        ca: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{cert} and {key} do not belong together: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The crypto provider of the whole farm. ring builds quickly with a C compiler only, which
/// keeps a fresh machine's first build short.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Trust in the farm CA: all a client needs to read other nodes.
#[derive(Clone, Debug)]
pub struct FarmTrust {
    roots: Arc<RootCertStore>,
}

impl FarmTrust {
    /// Loads the farm CA certificate from a PEM file.
    pub fn load(ca: &Path) -> Result<Self, TlsError> {
        let certs = read_certs(ca)?;
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::BadCa {
                path: ca.to_owned(),
                reason: e.to_string(),
            })?;
        }
        Ok(FarmTrust {
            roots: Arc::new(roots),
        })
    }

    /// A client configuration that accepts only a certificate from the farm CA that names
    /// `peer`.
    pub fn client_config(&self, peer: &NodeName) -> rustls::ClientConfig {
        let verifier = self.verifier_for(peer);
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    fn verifier_for(&self, name: &NodeName) -> NodeNameVerifier {
        NodeNameVerifier {
            inner: WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
                .build()
                .expect("a root store with at least one anchor always builds a verifier"),
            expected: ServerName::try_from(name.as_str().to_owned())
                .expect("a NodeName is always a valid DNS name"),
        }
    }
}

/// Where a node's TLS files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A node's TLS identity: its certificate chain and key, and the farm CA.
#[derive(Debug)]
pub struct Identity {
    pub name: NodeName,
    pub trust: FarmTrust,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads and checks a node's TLS files: the key must be private to its owner, and the
    /// certificate must be signed by the farm CA, name this node, and match the key. Each
    /// failure names the file and the reason, so a misconfigured node stops at start-up rather
    /// than at its first handshake.
    pub fn load(name: &NodeName, files: &TlsFiles) -> Result<Self, TlsError> {
        let trust = FarmTrust::load(&files.ca)?;
        let chain = read_certs(&files.cert)?;
        check_key_is_private(&files.key)?;
        let key_pem = fs::read(&files.key).map_err(|source| TlsError::Read {
            path: files.key.clone(),
            source,
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
        let verifier = trust.verifier_for(name);
        verifier
            .inner
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &verifier.expected,
                &[],
                UnixTime::now(),
            )
            .map_err(|e| TlsError::NotForThisNode {
                cert: files.cert.clone(),
                ca: files.ca.clone(),
                name: name.to_string(),
                reason: describe_rustls_error(&e),
            })?;
        let identity = Identity {
            name: name.clone(),
            trust,
            chain,
            key,
        };
        // Building the server config checks that the key matches the certificate.
        identity
            .try_server_config()
            .map_err(|e| TlsError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
                reason: e.to_string(),
            })?;
        Ok(identity)
    }

    fn try_server_config(&self) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The server configuration of this node.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::new(
            self.try_server_config()
                .expect("checked when the identity was loaded"),
        )
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn check_key_is_private(path: &Path) -> Result<(), TlsError> {
    let meta = fs::metadata(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyReadableByOthers {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Checks a server's certificate against the farm CA and the node name the client meant to
/// reach, instead of the host name in the URL.
#[derive(Debug)]
struct NodeNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: ServerName<'static>,
}

impl ServerCertVerifier for NodeNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Says in plain words why a certificate was refused.
pub fn describe_rustls_error(err: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => "its certificate is not signed by the farm CA".to_owned(),
            // Another CA with the same subject name as ours: found as the issuer, but its
            // signature does not verify.
            C::BadSignature => {
                "its certificate is not signed by the farm CA (bad signature)".to_owned()
            }
            C::NotValidForName => "its certificate is for another node name".to_owned(),
            C::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "its certificate is for another node name: expected {expected:?}, the certificate names {}",
                presented.join(", ")
            ),
            C::Expired | C::ExpiredContext { .. } => "its certificate has expired".to_owned(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "its certificate is not valid yet (check the clocks)".to_owned()
            }
            other => format!("its certificate was refused: {other:?}"),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki;

    fn node(dir: &Path, name: &str) -> (NodeName, TlsFiles) {
        let name = NodeName::new(name).unwrap();
        let files = pki::issue_cert(dir, dir, &name, &["127.0.0.1".into()], false).unwrap();
        (
            name,
            TlsFiles {
                ca: dir.join(pki::CA_CERT_FILE),
                cert: files.cert,
                key: files.key,
            },
        )
    }

    #[test]
    fn loads_a_good_identity() {
        let dir = tempfile::tempdir().unwrap();
        pki::init_ca(dir.path(), false).unwrap();
        let (name, files) = node(dir.path(), "master");
        Identity::load(&name, &files).unwrap();
    }

    #[test]
    fn refuses_a_world_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        pki::init_ca(dir.path(), false).unwrap();
        let (name, files) = node(dir.path(), "master");
        fs::set_permissions(&files.key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load(&name, &files).unwrap_err();
        assert!(matches!(
            err,
            TlsError::KeyReadableByOthers { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn refuses_a_certificate_for_another_node_or_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        pki::init_ca(dir.path(), false).unwrap();
        let (_, files) = node(dir.path(), "builder-a");
        let other = NodeName::new("master").unwrap();
        let err = Identity::load(&other, &files).unwrap_err();
        assert!(err.to_string().contains("another node name"), "{err}");

        let foreign = tempfile::tempdir().unwrap();
        pki::init_ca(foreign.path(), false).unwrap();
        let files = TlsFiles {
            ca: foreign.path().join(pki::CA_CERT_FILE),
            ..files
        };
        let name = NodeName::new("builder-a").unwrap();
        let err = Identity::load(&name, &files).unwrap_err();
        assert!(
            err.to_string().contains("not signed by the farm CA"),
            "{err}"
        );
    }
}
