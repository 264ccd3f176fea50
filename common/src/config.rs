//! Loading TOML config files in two stages: serde reads the file into a file struct, then the
//! node validates it into its typed config. Every error names the file, the key and the problem.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::name::NodeName;
use crate::tls::{Identity, TlsFiles};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read it: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("config {path}, line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("config {path}: key `{key}`{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Key {
        path: PathBuf,
        key: String,
        line: Option<usize>,
        message: String,
    },
}

impl ConfigError {
    /// A value that parsed but is not acceptable.
    pub fn invalid(path: &Path, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Key {
            path: path.to_owned(),
            key: key.to_owned(),
            line: None,
            message: message.into(),
        }
    }
}

/// Reads and deserializes the TOML file at `path` (stage one).
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Deserializes TOML `text`, read from `path`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        line: e.span().map_or(1, |s| line_of(s.start)),
        message: first_line(e.message()),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::Key {
            path: path.to_owned(),
            key: if key == "." {
                "(top level)".to_owned()
            } else {
                key
            },
            line: inner.span().map(|s| line_of(s.start)),
            message: first_line(inner.message()),
        }
    })
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

/// Resolves `path` against the directory of the config file, so that configs can name their
/// neighbours with relative paths.
pub fn resolve(config_path: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    config_path.parent().unwrap_or(Path::new(".")).join(path)
}

/// The `[tls]` table of every node's config.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The farm CA certificate.
    pub ca: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key; must not be readable by group or others.
    pub key: PathBuf,
}

impl TlsSection {
    pub fn resolve(&self, config_path: &Path) -> TlsFiles {
        TlsFiles {
            ca: resolve(config_path, &self.ca),
            cert: resolve(config_path, &self.cert),
            key: resolve(config_path, &self.key),
        }
    }
}

impl TlsSection {
    /// Resolves and loads the node's identity; a problem is reported against the `tls` key.
    pub fn load_identity(
        &self,
        config_path: &Path,
        name: &NodeName,
    ) -> Result<Identity, ConfigError> {
        Identity::load(name, &self.resolve(config_path))
            .map_err(|e| ConfigError::invalid(config_path, "tls", e.to_string()))
    }
}

/// A peer named in a config: `{ name = "...", url = "https://..." }`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    pub name: NodeName,
    pub url: url::Url,
}

/// Checks that `url` is an HTTPS base URL and returns it with a trailing slash, so that API
/// paths join onto it rather than replacing its last segment.
pub fn https_base_url(
    config_path: &Path,
    key: &str,
    url: &url::Url,
) -> Result<url::Url, ConfigError> {
    if url.scheme() != "https" {
        return Err(ConfigError::invalid(
            config_path,
            key,
            format!("{url}: nodes speak HTTPS only"),
        ));
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            config_path,
            key,
            format!("{url}: expected https://HOST[:PORT][/PATH/], without query or fragment"),
        ));
    }
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        listen: SocketAddr,
        tls: TlsSection,
    }

    fn err(text: &str) -> String {
        parse::<File>(Path::new("/etc/q.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_problem() {
        let e = err("listen = \"nowhere\"\n[tls]\nca='a'\ncert='b'\nkey='c'\n");
        assert!(
            e.starts_with("config /etc/q.toml: key `listen` (line 1):"),
            "{e}"
        );
        assert!(e.contains("invalid socket address"), "{e}");

        let e = err("listen = \"127.0.0.1:1\"\n[tls]\nca='a'\ncert='b'\n");
        assert!(e.contains("key `tls`"), "{e}");
        assert!(e.contains("missing field `key`"), "{e}");

        let e = err("listen = \"127.0.0.1:1\"\nlisen = 3\n[tls]\nca='a'\ncert='b'\nkey='c'\n");
        assert!(e.contains("unknown field `lisen`"), "{e}");

        let e = err("listen = \n");
        assert!(e.starts_with("config /etc/q.toml, line 1:"), "{e}");
    }

    #[test]
    fn peer_urls_must_be_https_bases() {
        let p = Path::new("/etc/q.toml");
        let ok = https_base_url(p, "master.url", &"https://m:8443/farm".parse().unwrap()).unwrap();
        assert_eq!(ok.as_str(), "https://m:8443/farm/");
        let e = https_base_url(p, "master.url", &"http://m:8443/".parse().unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .contains("key `master.url`: http://m:8443/: nodes speak HTTPS only"),
            "{e}"
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let p = resolve(
            Path::new("/etc/quarters/master.toml"),
            Path::new("ca/ca.pem"),
        );
        assert_eq!(p, Path::new("/etc/quarters/ca/ca.pem"));
        let p = resolve(Path::new("/etc/quarters/master.toml"), Path::new("/x.pem"));
        assert_eq!(p, Path::new("/x.pem"));
    }
}
