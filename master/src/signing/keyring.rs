//! `quartersctl key package`: the farm's keyring as a package source, for the farm to build
//! like any other package. Installed, it puts the key where `pacman-key --populate NAME` reads
//! keyrings (`/usr/share/pacman/keyrings`, as archlinux-keyring does) and populates it, so
//! that a client's pacman trusts the farm key without anyone typing a fingerprint.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::keydir::Listing;

/// Writes the source of package `NAME-keyring` for the keys `listed` (those to trust, those
/// to revoke) into `out/NAME-keyring/` (PKGBUILD, .SRCINFO and the files they name),
/// replacing what an earlier run wrote there. Returns the package directory.
pub fn write_source(listed: &Listing, name: &str, out: &Path) -> io::Result<PathBuf> {
    let pkgname = format!("{name}-keyring");
    quarters_common::peer_input::PkgName::parse(&pkgname).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("keyring name {name:?}: {e}"),
        )
    })?;
    let dir = out.join(&pkgname);
    std::fs::create_dir_all(&dir)?;
    // The version is when the source was written: each run, after a rotation or a
    // revocation, makes a newer package than the last.
    let made = time::OffsetDateTime::now_utc();
    let pkgver = format!(
        "{:04}{:02}{:02}.{:02}{:02}{:02}",
        made.year(),
        u8::from(made.month()),
        made.day(),
        made.hour(),
        made.minute(),
        made.second()
    );
    let install = format!("{pkgname}.install");
    let files: [(String, String); 3] = [
        // Revoked keys too: pacman-key disables a revoked key only if it has it.
        (
            format!("{name}.gpg"),
            listed
                .trusted()
                .chain(&listed.revoked)
                .map(|k| k.armored.as_str())
                .collect::<String>(),
        ),
        // Ownertrust lines, as archlinux-keyring's: pacman-key lsigns every key listed here.
        (
            format!("{name}-trusted"),
            listed
                .trusted()
                .map(|k| format!("{}:4:\n", k.fingerprint))
                .collect(),
        ),
        (
            format!("{name}-revoked"),
            listed
                .revoked
                .iter()
                .map(|k| format!("{}\n", k.fingerprint))
                .collect(),
        ),
    ];
    let mut sums = Vec::new();
    for (file, text) in &files {
        std::fs::write(dir.join(file), text)?;
        sums.push(
            Sha256::digest(text.as_bytes())
                .iter()
                .fold(String::new(), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                }),
        );
    }
    std::fs::write(
        dir.join(&install),
        format!(
            "post_upgrade() {{\n  if usr/bin/pacman-key -l >/dev/null 2>&1; then\n    usr/bin/pacman-key --populate {name}\n  fi\n}}\n\npost_install() {{\n  post_upgrade\n}}\n"
        ),
    )?;
    let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    let pkgdesc = format!("{name} build farm keyring: the key that signs its packages");
    let pkgbuild = format!(
        "# Written by `quartersctl key package` for the keys {fingerprints}.\npkgname={pkgname}\npkgver={pkgver}\npkgrel=1\npkgdesc='{pkgdesc}'\narch=(any)\nlicense=('CC0-1.0')\ninstall={install}\nsource=({sources})\nsha256sums=({sums})\n\npackage() {{\n  install -Dm644 -t \"$pkgdir/usr/share/pacman/keyrings/\" {sources}\n}}\n",
        fingerprints = listed
            .trusted()
            .map(|k| k.fingerprint.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        sources = names.join(" "),
        sums = sums
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    std::fs::write(dir.join("PKGBUILD"), pkgbuild)?;
    let mut srcinfo = format!(
        "pkgbase = {pkgname}\n\tpkgdesc = {pkgdesc}\n\tpkgver = {pkgver}\n\tpkgrel = 1\n\tinstall = {install}\n\tarch = any\n\tlicense = CC0-1.0\n"
    );
    for file in &names {
        let _ = writeln!(srcinfo, "\tsource = {file}");
    }
    for sum in &sums {
        let _ = writeln!(srcinfo, "\tsha256sums = {sum}");
    }
    let _ = write!(srcinfo, "\npkgname = {pkgname}\n");
    std::fs::write(dir.join(".SRCINFO"), srcinfo)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{FarmKey, keydir};

    #[test]
    fn the_keyring_trusts_the_listed_keys_and_revokes_the_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let first = FarmKey::init(&keys, "Farm <farm@example.org>", false).unwrap();
        keydir::stage(&keys, "Farm <farm@example.org>").unwrap();
        let (_, second) = keydir::activate(&keys).unwrap();
        keydir::revoke(&keys, first.fingerprint().as_str()).unwrap();
        let listed = keydir::listing(&keys).unwrap();
        let pkg = write_source(&listed, "farm", dir.path()).unwrap();
        let read = |f: &str| std::fs::read_to_string(pkg.join(f)).unwrap();
        assert_eq!(
            read("farm-trusted"),
            format!("{}:4:\n", second.fingerprint())
        );
        assert_eq!(read("farm-revoked"), format!("{}\n", first.fingerprint()));
        let both =
            quarters_common::farm_key::FarmPublicKey::parse_all(&pkg, &read("farm.gpg")).unwrap();
        assert_eq!(both.len(), 2);
        assert!(read(".SRCINFO").contains("pkgbase = farm-keyring"));
        assert!(
            write_source(&listed, "../evil", dir.path()).is_err(),
            "a name is a package name"
        );
    }
}
