//! The master's config: `master.toml` read into [`MasterFile`], validated into [`MasterConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use quarters_common::NodeName;
use quarters_common::config::{self, ConfigError, PeerSection, TlsSection};
use quarters_common::tls::Identity;
use serde::Deserialize;
use url::Url;

/// The file as written (stage one).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct MasterFile {
    /// This node's name; its certificate must carry it.
    pub name: NodeName,
    /// Address to serve HTTPS on.
    pub listen: SocketAddr,
    pub tls: TlsSection,
    /// The builders of the farm, one `[[builder]]` table each.
    #[serde(default, rename = "builder")]
    pub builders: Vec<PeerSection>,
}

/// The validated config (stage two).
#[derive(Debug)]
pub struct MasterConfig {
    pub path: PathBuf,
    pub name: NodeName,
    pub listen: SocketAddr,
    pub identity: Identity,
    pub builders: Vec<BuilderEntry>,
}

/// A builder the master follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderEntry {
    pub name: NodeName,
    pub url: Url,
}

impl MasterConfig {
    /// Reads and validates the config at `path`, loading the TLS identity it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: MasterFile = config::load(path)?;
        Self::validate(path, file)
    }

    pub fn validate(path: &Path, file: MasterFile) -> Result<Self, ConfigError> {
        let mut builders: Vec<BuilderEntry> = Vec::with_capacity(file.builders.len());
        for (i, b) in file.builders.iter().enumerate() {
            let key = format!("builder[{i}]");
            if b.name == file.name {
                return Err(ConfigError::invalid(
                    path,
                    &format!("{key}.name"),
                    format!("{:?} is the master's own name", b.name.as_str()),
                ));
            }
            if builders.iter().any(|seen| seen.name == b.name) {
                return Err(ConfigError::invalid(
                    path,
                    &format!("{key}.name"),
                    format!("builder {:?} is listed twice", b.name.as_str()),
                ));
            }
            builders.push(BuilderEntry {
                name: b.name.clone(),
                url: config::https_base_url(path, &format!("{key}.url"), &b.url)?,
            });
        }
        let identity = file.tls.load_identity(path, &file.name)?;
        Ok(MasterConfig {
            path: path.to_owned(),
            name: file.name,
            listen: file.listen,
            identity,
            builders,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_in_contrib_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/master.toml");
        let file: MasterFile = config::load(&path).unwrap();
        assert_eq!(file.name.as_str(), "master");
        assert_eq!(file.builders.len(), 2);
    }
}
