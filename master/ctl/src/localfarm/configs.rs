//! The configs a local farm writes, built as serde values and serialized by `toml`, never
//! formatted by hand: a path or a name that needs quoting is quoted by the serializer.
//!
//! Each key is one that `quarters_master::config::MasterFile` or
//! `quarters_builder::config::BuilderFile` reads. Those types are only `Deserialize`, and this
//! crate does not depend on the builder's, so the few keys a local farm sets are mirrored
//! here; the tests load what is written with the nodes' own loaders, which refuse unknown
//! keys.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use quarters_common::NodeName;
use serde::Serialize;
use url::Url;

use super::LocalNode;

/// The first line of every config a local farm writes.
const HEADER: &str = "# Written by quartersctl for a local farm.\n";

/// A `[[source]]` table of the master's config.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Source {
    pub name: String,
    #[serde(flatten)]
    pub kind: SourceKind,
}

/// A source's kind (`kind = "git"`, ...) and the keys that kind reads.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceKind {
    /// A git repository; a relative path is relative to the master's config.
    Git {
        path: PathBuf,
    },
    Svn {
        url: String,
    },
    Cvs {
        root: String,
        module: String,
    },
}

/// What a local farm's master is given besides its identity, its builders and its signer
/// ([`FarmSpec::master_extra`](super::FarmSpec::master_extra)).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MasterExtra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_root: Option<BuildRoot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<Scan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builds: Option<Builds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    #[serde(rename = "source", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
}

/// `[verification]`.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// `off`, `advisory` or `required`.
    pub mode: String,
}

/// `[build_root]`.
#[derive(Clone, Debug, Serialize)]
pub struct BuildRoot {
    pub template: PathBuf,
}

/// `[scan]`.
#[derive(Clone, Debug, Serialize)]
pub struct Scan {
    pub evaluate_pkgbuilds: bool,
}

/// `[builds]`.
#[derive(Clone, Debug, Serialize)]
pub struct Builds {
    /// The build-history CSV; a relative path is relative to the master's config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<PathBuf>,
    /// In seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_estimate: Option<u64>,
}

/// What a local farm's builders are given besides their identity, their master and the farm
/// key ([`FarmSpec::builder_extra`](super::FarmSpec::builder_extra)): the driver.
#[derive(Clone, Debug, Serialize)]
pub struct BuilderExtra {
    driver: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim: Option<Sim>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chroot: Option<Chroot>,
}

#[derive(Clone, Debug, Serialize)]
struct Sim {
    time_scale: f64,
}

#[derive(Clone, Debug, Serialize)]
struct Chroot {
    template: PathBuf,
}

impl BuilderExtra {
    /// The simulation driver, builds taking their expected time times `time_scale`.
    pub fn sim(time_scale: f64) -> Self {
        BuilderExtra {
            driver: "sim",
            sim: Some(Sim { time_scale }),
            chroot: None,
        }
    }

    /// Real builds in roots made from `template`.
    pub fn chroot(template: &Path) -> Self {
        BuilderExtra {
            driver: "chroot",
            sim: None,
            chroot: Some(Chroot {
                template: template.to_owned(),
            }),
        }
    }
}

/// `value` as a TOML table, for [`FarmSpec`](super::FarmSpec)'s extras.
pub fn table(value: &impl Serialize) -> anyhow::Result<toml::Table> {
    // Fails only for what TOML cannot hold: a path that is not UTF-8, say.
    toml::Table::try_from(value).context("making a TOML table")
}

/// `[tls]`: the node's certificate and key, issued into `DIR/ca` beside the CA.
#[derive(Serialize)]
struct Tls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    fn of(name: &NodeName) -> Self {
        let ca = Path::new("ca");
        Tls {
            ca: ca.join("ca.pem"),
            cert: ca.join(format!("{name}.pem")),
            key: ca.join(format!("{name}.key")),
        }
    }
}

/// A `[[builder]]` table of the master's, or the `[master]` table of a builder's.
#[derive(Serialize)]
struct Peer<'a> {
    name: &'a NodeName,
    url: &'a Url,
}

/// `[signing]`.
#[derive(Serialize)]
struct Signing<'a> {
    socket: &'a Path,
}

/// What a local farm writes into its master's config itself.
#[derive(Serialize)]
struct Master<'a> {
    name: &'a NodeName,
    listen: String,
    url: &'a Url,
    state_dir: PathBuf,
    tls: Tls,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing: Option<Signing<'a>>,
    #[serde(rename = "builder", skip_serializing_if = "Vec::is_empty")]
    builders: Vec<Peer<'a>>,
}

/// What a local farm writes into each builder's config itself.
#[derive(Serialize)]
struct Builder<'a> {
    name: &'a NodeName,
    listen: String,
    work_dir: PathBuf,
    /// The farm's public key, which the builder trusts for what it installs.
    #[serde(skip_serializing_if = "Option::is_none")]
    farm_key: Option<&'a Path>,
    master: Peer<'a>,
    tls: Tls,
}

/// The master's config: its identity, its builders, the signer's socket if the farm signs, and
/// `extra`.
pub(super) fn master(
    master: &LocalNode,
    builders: &[LocalNode],
    signer_socket: Option<&Path>,
    extra: &toml::Table,
) -> anyhow::Result<String> {
    let own = Master {
        name: &master.name,
        listen: listen_of(master),
        url: &master.url,
        state_dir: super::state_dir_of(Path::new(""), &master.name),
        tls: Tls::of(&master.name),
        signing: signer_socket.map(|socket| Signing { socket }),
        builders: builders
            .iter()
            .map(|b| Peer {
                name: &b.name,
                url: &b.url,
            })
            .collect(),
    };
    render(table(&own)?, extra)
}

/// A builder's config: its identity, its master, the farm key if the farm signs, and `extra`.
pub(super) fn builder(
    builder: &LocalNode,
    master: &LocalNode,
    farm_key: Option<&Path>,
    extra: &toml::Table,
) -> anyhow::Result<String> {
    let own = Builder {
        name: &builder.name,
        listen: listen_of(builder),
        work_dir: PathBuf::from(format!("{}-work", builder.name)),
        farm_key,
        master: Peer {
            name: &master.name,
            url: &master.url,
        },
        tls: Tls::of(&builder.name),
    };
    render(table(&own)?, extra)
}

/// `own` with `extra`'s keys added, as TOML. A key in both is refused rather than replaced:
/// the farm's names, ports, certificates and signer are what it runs by.
fn render(mut own: toml::Table, extra: &toml::Table) -> anyhow::Result<String> {
    for (key, value) in extra {
        if own.contains_key(key) {
            bail!("the extra config sets `{key}`, which a local farm sets itself");
        }
        own.insert(key.clone(), value.clone());
    }
    let mut text = HEADER.to_owned();
    text.push_str(&toml::to_string(&own).context("writing a config as TOML")?);
    Ok(text)
}

fn listen_of(node: &LocalNode) -> String {
    format!(
        "127.0.0.1:{}",
        node.url.port().expect("local URLs carry a port")
    )
}
