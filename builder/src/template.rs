//! The template root's identity: what is installed in it, as one digest. Builders publish it
//! and the master records it with each build, so that when two builds of a version differ, a
//! difference of templates is seen at once rather than guessed at.

use std::fs;
use std::path::Path;

use sha2::Digest as _;

/// What is installed in a template root, summed up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The sha256 of the sorted `manager name version` lines.
    pub sha256: String,
    /// How many packages are installed.
    pub packages: u32,
}

/// The identity of the template at `root`: the packages of its pacman database
/// (`var/lib/pacman/local/NAME-VERSION`) and, in a Debian template, of its dpkg status.
pub fn identity(root: &Path) -> Result<Identity, String> {
    let mut lines = Vec::new();
    let local = root.join("var/lib/pacman/local");
    let entries = fs::read_dir(&local).map_err(|e| format!("{}: {e}", local.display()))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            lines.push(format!("pacman {}", entry.file_name().to_string_lossy()));
        }
    }
    if let Ok(status) = fs::read_to_string(root.join("var/lib/dpkg/status")) {
        lines.extend(dpkg_installed(&status).map(|(p, v)| format!("dpkg {p} {v}")));
    }
    lines.sort();
    let mut h = sha2::Sha256::new();
    for line in &lines {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    Ok(Identity {
        sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        packages: u32::try_from(lines.len()).unwrap_or(u32::MAX),
    })
}

/// `(package, version)` of every stanza of a dpkg status file that is installed.
fn dpkg_installed(status: &str) -> impl Iterator<Item = (&str, &str)> {
    status.split("\n\n").filter_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let installed = field("Status")?.ends_with(" installed");
        installed.then(|| Some((field("Package")?, field("Version")?)))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_changes_with_any_package_and_with_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("var/lib/pacman/local/quarters-template-1-1")).unwrap();
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        let status = |bash: &str| {
            format!(
                "Package: bash\nStatus: install ok installed\nVersion: {bash}\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: make\nStatus: install ok installed\nVersion: 4.3-4.1\n"
            )
        };
        fs::write(root.join("var/lib/dpkg/status"), status("5.2.15-2")).unwrap();
        let first = identity(root).unwrap();
        assert_eq!(first.packages, 3, "pacman's one, dpkg's two installed");
        assert_eq!(identity(root).unwrap(), first);
        fs::write(root.join("var/lib/dpkg/status"), status("5.2.15-3")).unwrap();
        let other = identity(root).unwrap();
        assert_ne!(other.sha256, first.sha256);
        assert!(identity(&root.join("nowhere")).is_err());
    }
}
