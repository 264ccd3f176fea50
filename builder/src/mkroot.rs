//! `quarters-builder mkroot DIR`: the template root every build root is an overlay of.
//!
//! On Arch, `pacstrap -c DIR base-devel`. On Debian, `debootstrap --variant=minbase` with a
//! compiler, makepkg and pacman from Debian's packages; then a pacman database in the root with
//! one package, `quarters-template`, that provides what dpkg installed, so that pacman resolves
//! dependencies on the base system and the master can read what the root provides. Last, its
//! files are handed to the build ids ([`crate::ids`]), as every build runs in a user namespace.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::ids::IdMap;

/// Debian packages every template gets besides minbase.
const DEBIAN_PACKAGES: &[&str] = &[
    "makepkg",
    "pacman-package-manager",
    "fakeroot",
    "libarchive-tools",
    "zstd",
    "gcc",
    "libc6-dev",
    "make",
    "binutils",
    "file",
    "patch",
    "curl",
    "ca-certificates",
];

/// Arch names of what a Debian template has, for PKGBUILDs written for Arch.
const ARCH_ALIASES: &[&str] = &[
    "glibc",
    "gcc",
    "gcc-libs",
    "binutils",
    "make",
    "bash",
    "coreutils",
    "sed",
    "grep",
    "gawk",
    "tar",
    "gzip",
    "file",
    "fakeroot",
    "patch",
    "which",
    "findutils",
    "diffutils",
    "pacman",
    "curl",
    "base",
    "base-devel",
];

/// Makes a template root in `dir` whose files belong to the build ids `ids`.
pub fn mkroot(dir: &Path, ids: IdMap) -> anyhow::Result<()> {
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    if Path::new("/etc/arch-release").exists() && quarters_parsers::cmd::which("pacstrap").is_some()
    {
        run(Command::new("pacstrap")
            .arg("-c")
            .arg(dir)
            .arg("base-devel"))?;
    } else if quarters_parsers::cmd::which("debootstrap").is_some() {
        debian(dir)?;
    } else {
        bail!(
            "neither pacstrap (Arch: pacman -S arch-install-scripts) nor debootstrap (Debian: apt-get install debootstrap) is installed"
        );
    }
    fs::write(
        dir.join("etc/quarters-template"),
        "made by quarters-builder mkroot\n",
    )?;
    shift(dir, ids)
}

/// Hands the template root at `dir` to the build ids `ids`, from whichever range (the host's
/// own ids, or another base) it belongs to now: builds run in a user namespace, where root
/// inside must own the root's files to install packages into it.
pub fn shift(dir: &Path, ids: IdMap) -> anyhow::Result<()> {
    if !dir.join("usr/bin").is_dir() {
        bail!("{} is not a root file system (no usr/bin)", dir.display());
    }
    let owner = fs::metadata(dir)?.uid();
    let from = if owner == 0 {
        None
    } else {
        let base = IdMap::new(owner).with_context(|| {
            format!(
                "{} belongs to uid {owner}, which starts no range of build ids",
                dir.display()
            )
        })?;
        Some(base)
    };
    let changed = ids
        .shift_tree(dir, from)
        .with_context(|| format!("handing {} to the build ids", dir.display()))?;
    println!(
        "{}: {changed} files now belong to the build ids {}..{}",
        dir.display(),
        ids.base(),
        u64::from(ids.base()) + u64::from(IdMap::COUNT)
    );
    Ok(())
}

fn debian(dir: &Path) -> anyhow::Result<()> {
    let (suite, mirror) = host_release();
    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", DEBIAN_PACKAGES.join(",")))
        .arg(&suite)
        .arg(dir)
        .arg(&mirror))
    .with_context(|| format!("debootstrap {suite} from {mirror}"))?;
    for d in [
        "var/lib/pacman/local",
        "var/lib/pacman/sync",
        "var/cache/pacman/pkg",
        "build",
    ] {
        fs::create_dir_all(dir.join(d))?;
    }
    let dpkg = Command::new("dpkg-query")
        .arg(format!("--admindir={}", dir.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${Package}\\n"])
        .output()
        .context("dpkg-query")?;
    let mut provides: Vec<String> = String::from_utf8_lossy(&dpkg.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    provides.extend(ARCH_ALIASES.iter().map(|s| (*s).to_owned()));
    provides.sort();
    provides.dedup();
    let work = tempfile::tempdir()?;
    let package = write_template_package(work.path(), &provides)?;
    let conf = work.path().join("pacman.conf");
    fs::write(
        &conf,
        "[options]\nArchitecture = auto\nSigLevel = Never\nLocalFileSigLevel = Never\n",
    )?;
    run(Command::new("pacman")
        .arg("--root")
        .arg(dir)
        .arg("--dbpath")
        .arg(dir.join("var/lib/pacman"))
        .arg("--config")
        .arg(&conf)
        .args(["--noconfirm", "--noscriptlet", "-U"])
        .arg(&package))
    .context("registering the template's packages with pacman")
}

/// The suite and mirror the host's apt uses, so that the template matches the host.
fn host_release() -> (String, String) {
    let release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let suite = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_owned())
        .unwrap_or_else(|| "bookworm".to_owned());
    let sources = fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .or_else(|_| fs::read_to_string("/etc/apt/sources.list"))
        .unwrap_or_default();
    let mirror = sources
        .lines()
        .find_map(|l| {
            l.strip_prefix("URIs:")
                .map(|u| u.split_whitespace().next().unwrap_or("").to_owned())
                .or_else(|| {
                    l.strip_prefix("deb ")
                        .and_then(|r| r.split_whitespace().next())
                        .map(str::to_owned)
                })
        })
        .filter(|m| m.starts_with("http") && !m.contains("security"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned());
    (suite, mirror)
}

fn write_template_package(dir: &Path, provides: &[String]) -> anyhow::Result<std::path::PathBuf> {
    let mut pkginfo = String::from(
        "pkgname = quarters-template\npkgbase = quarters-template\npkgver = 1-1\npkgdesc = What the template root has from its distribution\nurl = https://quarters.invalid/\nbuilddate = 0\npackager = Quarters <builds@quarters.invalid>\nsize = 0\narch = any\n",
    );
    for p in provides {
        pkginfo.push_str(&format!("provides = {p}\n"));
    }
    let path = dir.join("quarters-template-1-1-any.pkg.tar.gz");
    let gz =
        flate2::write::GzEncoder::new(fs::File::create(&path)?, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(pkginfo.len() as u64);
    tar.append_data(&mut header, ".PKGINFO", pkginfo.as_bytes())?;
    tar.into_inner()?.finish()?.flush()?;
    Ok(path)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
