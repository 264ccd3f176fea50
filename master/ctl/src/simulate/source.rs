//! A graph as a package source the master can scan: one package directory per node, each with
//! a PKGBUILD and a .SRCINFO that depends on the node's predecessors, committed to a fresh git
//! repository; and the history CSV the master seeds its expected durations from.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};

use super::graph::Graph;

/// Package names for the graph's nodes, valid for pacman: pkgsrc names such as `R-4.4.3nb1`
/// become `r-4.4.3nb1`. Distinct nodes get distinct names, whatever the input.
pub fn package_names(graph: &Graph) -> anyhow::Result<Vec<String>> {
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(graph.len());
    for raw in &graph.names {
        let mut name: String = raw
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@._+-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if name.starts_with(['-', '.']) {
            name.insert(0, 'x');
        }
        let seen = taken.entry(name.clone()).or_insert(0);
        *seen += 1;
        if *seen > 1 {
            name = format!("{name}+{seen}");
        }
        if let Err(e) = alpm_types::Name::from_str(&name) {
            bail!("{raw:?} gives no valid package name ({name:?}: {e})");
        }
        out.push(name);
    }
    Ok(out)
}

/// Writes one package per node into `dir` and commits them to a new git repository there.
pub fn write_packages(graph: &Graph, names: &[String], dir: &Path) -> anyhow::Result<()> {
    for (i, name) in names.iter().enumerate() {
        let package = dir.join(name);
        fs::create_dir_all(&package).with_context(|| format!("creating {}", package.display()))?;
        let depends: Vec<&str> = graph.deps[i].iter().map(|&d| names[d].as_str()).collect();
        fs::write(
            package.join("PKGBUILD"),
            pkgbuild(name, &graph.names[i], &depends),
        )
        .with_context(|| format!("writing {}/PKGBUILD", package.display()))?;
        fs::write(
            package.join(".SRCINFO"),
            srcinfo(name, &graph.names[i], &depends),
        )
        .with_context(|| format!("writing {}/.SRCINFO", package.display()))?;
    }
    crate::demo::source::commit_all(dir, "Packages of a simulated dependency graph")
        .context("committing the simulated packages")?;
    Ok(())
}

/// Writes the expected duration of every node, recorded or estimated, as the master's history.
pub fn write_history(graph: &Graph, names: &[String], path: &Path) -> anyhow::Result<()> {
    let mut csv = String::from("pkgname,duration\n");
    for (i, name) in names.iter().enumerate() {
        let _ = writeln!(csv, "{name},{}", graph.duration(i));
    }
    fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

fn pkgbuild(name: &str, original: &str, depends: &[&str]) -> String {
    let depends: Vec<String> = depends.iter().map(|d| format!("'{d}'")).collect();
    format!(
        "# A node of a simulated dependency graph: {original}\npkgname={name}\npkgver=1\npkgrel=1\npkgdesc='Simulated {original}'\narch=('any')\nurl='https://quarters.invalid/'\nlicense=('custom')\ndepends=({})\n\npackage() {{\n  :\n}}\n",
        depends.join(" ")
    )
}

fn srcinfo(name: &str, original: &str, depends: &[&str]) -> String {
    let mut s = format!(
        "pkgbase = {name}\n\tpkgdesc = Simulated {original}\n\tpkgver = 1\n\tpkgrel = 1\n\turl = https://quarters.invalid/\n\tarch = any\n\tlicense = custom\n"
    );
    for d in depends {
        let _ = writeln!(s, "\tdepends = {d}");
    }
    let _ = write!(s, "\npkgname = {name}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(names: &[&str]) -> Graph {
        Graph {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            deps: vec![Vec::new(); names.len()],
            recorded: vec![Some(1); names.len()],
            estimate: 1,
        }
    }

    #[test]
    fn pkgsrc_names_become_distinct_pacman_names() {
        let g = graph(&[
            "R-4.4.3nb1",
            "r-4.4.3nb1",
            "hunspell-en_US-2006",
            ".hidden",
            "a b",
        ]);
        assert_eq!(
            package_names(&g).unwrap(),
            [
                "r-4.4.3nb1",
                "r-4.4.3nb1+2",
                "hunspell-en_us-2006",
                "x.hidden",
                "a_b"
            ]
        );
    }

    #[test]
    fn the_srcinfo_parses_with_its_dependencies() {
        let text = srcinfo("b-1.0", "B-1.0", &["a-1.0", "c"]);
        let parsed = quarters_parsers::PkgBase::from_srcinfo(&text).unwrap();
        assert_eq!(parsed.pkgbase, "b-1.0");
        assert_eq!(parsed.targets["any"].packages[0].depends, ["a-1.0", "c"]);
    }
}
