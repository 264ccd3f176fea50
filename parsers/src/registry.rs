//! The source kinds. Adding a kind is one module implementing [`Source`] and one line in
//! [`KINDS`].

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::layout::Layout;
use crate::source::Source;
use crate::{cvs, git, svn};

/// A source as configured: its name, kind, layout, and the kind's own options.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    pub name: String,
    pub kind: String,
    pub layout: Layout,
    pub options: toml::Table,
}

/// A problem with a source's config, at `key` (relative to the source's table).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {message}")]
pub struct SpecError {
    pub key: String,
    pub message: String,
}

type OpenFn = fn(&SourceSpec, &Path) -> Result<Box<dyn Source>, SpecError>;

/// Every kind of source, by the name configs use.
pub const KINDS: &[(&str, OpenFn)] = &[
    ("git", |spec, base| {
        git::open(options(spec, base)?, spec.layout.clone()).map_err(at("path"))
    }),
    ("svn", |spec, base| {
        svn::open(options(spec, base)?, spec.layout.clone()).map_err(at("url"))
    }),
    ("cvs", |spec, base| {
        cvs::open(options(spec, base)?, spec.layout.clone()).map_err(at("root"))
    }),
];

/// Opens the source `spec` describes; relative paths in it are relative to `base`.
pub fn open(spec: &SourceSpec, base: &Path) -> Result<Box<dyn Source>, SpecError> {
    spec.layout.validate().map_err(at("depth"))?;
    let (_, open) = KINDS
        .iter()
        .find(|(kind, _)| *kind == spec.kind)
        .ok_or_else(|| SpecError {
            key: "kind".to_owned(),
            message: format!(
                "unknown kind {:?}; known: {}",
                spec.kind,
                KINDS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ),
        })?;
    open(spec, base)
}

/// Deserializes the kind's own options, naming the key of any problem, and resolves a relative
/// `path` against `base`.
fn options<T: DeserializeOwned>(spec: &SourceSpec, base: &Path) -> Result<T, SpecError> {
    let mut table = spec.options.clone();
    if let Some(toml::Value::String(p)) = table.get("path") {
        let resolved = base.join(p);
        table.insert(
            "path".to_owned(),
            toml::Value::String(resolved.to_string_lossy().into_owned()),
        );
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| SpecError {
        key: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

fn at(key: &'static str) -> impl Fn(String) -> SpecError {
    move |message| SpecError {
        key: key.to_owned(),
        message,
    }
}
