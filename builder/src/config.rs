//! The builder's config: `builder.toml` read into [`BuilderFile`], validated into
//! [`BuilderConfig`].

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
pub struct BuilderFile {
    /// This node's name; its certificate must carry it.
    pub name: NodeName,
    /// Address to serve HTTPS on.
    pub listen: SocketAddr,
    /// Architectures built here; by default the machine's own.
    #[serde(default)]
    pub arch: Option<Vec<String>>,
    /// Builds run at once.
    #[serde(default = "one")]
    pub slots: u32,
    /// The master this builder follows.
    pub master: PeerSection,
    pub tls: TlsSection,
}

fn one() -> u32 {
    1
}

/// The validated config (stage two).
#[derive(Debug)]
pub struct BuilderConfig {
    pub path: PathBuf,
    pub name: NodeName,
    pub listen: SocketAddr,
    pub arch: Vec<String>,
    pub slots: u32,
    pub master_name: NodeName,
    pub master_url: Url,
    pub identity: Identity,
}

impl BuilderConfig {
    /// Reads and validates the config at `path`, loading the TLS identity it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: BuilderFile = config::load(path)?;
        Self::validate(path, file)
    }

    pub fn validate(path: &Path, file: BuilderFile) -> Result<Self, ConfigError> {
        let arch = file
            .arch
            .unwrap_or_else(|| vec![std::env::consts::ARCH.to_owned()]);
        if arch.is_empty() {
            return Err(ConfigError::invalid(path, "arch", "lists no architecture"));
        }
        for (i, a) in arch.iter().enumerate() {
            let valid = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid || a == "any" {
                return Err(ConfigError::invalid(
                    path,
                    &format!("arch[{i}]"),
                    format!(
                        "{a:?} is not a machine architecture (a-z, 0-9, '_'; `any` packages go to every builder)"
                    ),
                ));
            }
        }
        if file.slots == 0 || file.slots > 256 {
            return Err(ConfigError::invalid(
                path,
                "slots",
                format!("{} is outside 1..=256", file.slots),
            ));
        }
        if file.master.name == file.name {
            return Err(ConfigError::invalid(
                path,
                "master.name",
                "is this builder's own name",
            ));
        }
        let master_url = config::https_base_url(path, "master.url", &file.master.url)?;
        let identity = file.tls.load_identity(path, &file.name)?;
        Ok(BuilderConfig {
            path: path.to_owned(),
            name: file.name,
            listen: file.listen,
            arch,
            slots: file.slots,
            master_name: file.master.name,
            master_url,
            identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_in_contrib_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/builder.toml");
        let file: BuilderFile = config::load(&path).unwrap();
        assert_eq!(file.name.as_str(), "builder-a");
        assert_eq!(file.master.name.as_str(), "master");
    }
}
