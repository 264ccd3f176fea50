//! A stock pacman installing from the farm's repositories into a scratch root, trusting the
//! farm CA, and, where the farm signs, the farm's key in a keyring of its own made by
//! `pacman-key`.
//!
//! Unsigned roots download with curl as `XferCommand`, told of the farm CA. Signed roots
//! cannot: pacman 6.0 (Debian's) never asks an `XferCommand` for a database's `.sig`, so they
//! use pacman's own downloader, as a client of a farm normally does, in a mount namespace
//! where the system's CA bundle is the farm CA: what a client whose system trusts the farm CA
//! (`update-ca-certificates`) sees, without changing this machine's trust.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch root with its own pacman.conf.
pub struct PacmanRoot {
    pub root: PathBuf,
    conf: PathBuf,
    /// The keyring, when the root trusts a key.
    keyring: Option<PathBuf>,
    /// The CA bundle pacman's own downloader trusts, when it downloads.
    system_ca: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl PacmanRoot {
    /// A root whose pacman uses `repos` (`(section, server URL)`), trusts `ca`, and checks no
    /// signature.
    pub fn new(ca: &Path, repos: &[(&str, String)]) -> Self {
        let xfer = format!(
            "SigLevel = Never\nXferCommand = /usr/bin/curl --cacert {} -sSf -o %o %u\n",
            ca.display()
        );
        Self::with_options(tempfile::tempdir().unwrap(), repos, &xfer)
    }

    /// A root whose pacman requires a valid signature on every package and database, from
    /// the one key it trusts: the armored `key` with `fingerprint`, added and locally signed
    /// in a fresh keyring as a user of the farm does it (`pacman-key --init`, `--add`,
    /// `--lsign-key`).
    pub fn trusting(ca: &Path, repos: &[(&str, String)], key: &Path, fingerprint: &str) -> Self {
        Self::trusting_all(ca, repos, key, &[fingerprint])
    }

    /// [`PacmanRoot::trusting`] every key of `fingerprints`, all in the file `keys`.
    pub fn trusting_all(
        ca: &Path,
        repos: &[(&str, String)],
        keys: &Path,
        fingerprints: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("gnupg");
        let pacman_key = |args: &[&str]| {
            let out = Command::new("pacman-key")
                .arg("--gpgdir")
                .arg(&keyring)
                .args(args)
                .output()
                .expect("pacman-key is installed (contrib/test.sh installs it)");
            assert!(
                out.status.success(),
                "pacman-key {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        pacman_key(&["--init"]);
        pacman_key(&["--add", &keys.display().to_string()]);
        for fingerprint in fingerprints {
            pacman_key(&["--lsign-key", fingerprint]);
        }
        Self::with_keyring_in(dir, ca, repos, keyring)
    }

    /// A root whose pacman requires a valid signature on everything, by the keys `keyring`
    /// (a pacman-key directory made elsewhere) trusts.
    pub fn with_keyring(ca: &Path, repos: &[(&str, String)], keyring: &Path) -> Self {
        Self::with_keyring_in(tempfile::tempdir().unwrap(), ca, repos, keyring.to_owned())
    }

    fn with_keyring_in(
        dir: tempfile::TempDir,
        ca: &Path,
        repos: &[(&str, String)],
        keyring: PathBuf,
    ) -> Self {
        let siglevel = format!("SigLevel = Required\nGPGDir = {}\n", keyring.display());
        let mut root = Self::with_options(dir, repos, &siglevel);
        root.keyring = Some(keyring);
        root.system_ca = Some(ca.to_owned());
        root
    }

    /// Whether `signature` is a good signature over `file` by a key this root trusts, as
    /// `pacman-key --verify` says.
    pub fn verifies(&self, signature: &Path, file: &Path) -> bool {
        let keyring = self.keyring.as_ref().expect("a root made by trusting()");
        Command::new("pacman-key")
            .arg("--gpgdir")
            .arg(keyring)
            .arg("--verify")
            .arg(signature)
            .arg(file)
            .output()
            .expect("pacman-key is installed")
            .status
            .success()
    }

    /// A root with `options` in pacman.conf's `[options]`.
    fn with_options(dir: tempfile::TempDir, repos: &[(&str, String)], options: &str) -> Self {
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("var/lib/pacman")).unwrap();
        fs::create_dir_all(dir.path().join("cache")).unwrap();
        let mut conf = format!(
            "[options]\nArchitecture = {}\n{options}",
            std::env::consts::ARCH,
        );
        for (section, server) in repos {
            conf.push_str(&format!("\n[{section}]\nServer = {server}\n"));
        }
        let conf_path = dir.path().join("pacman.conf");
        fs::write(&conf_path, conf).unwrap();
        PacmanRoot {
            root,
            conf: conf_path,
            keyring: None,
            system_ca: None,
            dir,
        }
    }

    /// Runs pacman on this root with `args`.
    pub fn pacman(&self, args: &[&str]) -> Output {
        let mut command = match &self.system_ca {
            None => Command::new("pacman"),
            Some(ca) => {
                let mut command = Command::new("unshare");
                command
                    .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg("mount --bind \"$0\" /etc/ssl/certs/ca-certificates.crt && exec pacman \"$@\"")
                    .arg(ca);
                command
            }
        };
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--dbpath")
            .arg(self.root.join("var/lib/pacman"))
            .arg("--cachedir")
            .arg(self.dir.path().join("cache"))
            .arg("--logfile")
            .arg(self.dir.path().join("pacman.log"))
            .arg("--config")
            .arg(&self.conf)
            .arg("--noconfirm")
            .args(args)
            .output()
            .expect("pacman is installed (contrib/test.sh installs it)")
    }

    /// Empties the package cache: the next download is afresh.
    fn forget_downloads(&self) {
        let _ = fs::remove_dir_all(self.dir.path().join("cache"));
        fs::create_dir_all(self.dir.path().join("cache")).unwrap();
    }

    /// `pacman -Syy PACKAGES` with nothing cached: databases and packages downloaded and
    /// checked again, failing the test with pacman's output if it fails.
    pub fn install_afresh(&self, packages: &[&str]) {
        self.forget_downloads();
        self.sync_ok("-Syy", packages);
    }

    /// `pacman -Syy PACKAGES` that must fail: pacman's output, for the test to check why.
    pub fn refuse(&self, packages: &[&str]) -> String {
        // Each attempt downloads afresh: what an earlier one cached is not what is tried now.
        self.forget_downloads();
        let mut args = vec!["-Syy"];
        args.extend_from_slice(packages);
        let out = self.pacman(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "pacman -Syy {packages:?} succeeded:\n{text}"
        );
        text
    }

    /// `pacman -Sy PACKAGES`, failing the test with pacman's output if it fails.
    pub fn install(&self, packages: &[&str]) {
        self.sync_ok("-Sy", packages);
    }

    /// `pacman SYNC PACKAGES`, failing the test with pacman's output if it fails.
    fn sync_ok(&self, sync: &str, packages: &[&str]) {
        let mut args = vec![sync];
        args.extend_from_slice(packages);
        let out = self.pacman(&args);
        assert!(
            out.status.success(),
            "pacman {sync} {packages:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
