//! A stock pacman installing from the farm's repositories into a scratch root, trusting the
//! farm CA through curl as its download command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch root with its own pacman.conf.
pub struct PacmanRoot {
    pub root: PathBuf,
    conf: PathBuf,
    dir: tempfile::TempDir,
}

impl PacmanRoot {
    /// A root whose pacman uses `repos` (`(section, server URL)`) and trusts `ca`.
    pub fn new(ca: &Path, repos: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("var/lib/pacman")).unwrap();
        fs::create_dir_all(dir.path().join("cache")).unwrap();
        let mut conf = format!(
            "[options]\nArchitecture = {}\nSigLevel = Never\nXferCommand = /usr/bin/curl --cacert {} -sSf -o %o %u\n",
            std::env::consts::ARCH,
            ca.display()
        );
        for (section, server) in repos {
            conf.push_str(&format!("\n[{section}]\nServer = {server}\n"));
        }
        let conf_path = dir.path().join("pacman.conf");
        fs::write(&conf_path, conf).unwrap();
        PacmanRoot {
            root,
            conf: conf_path,
            dir,
        }
    }

    /// Runs pacman on this root with `args`.
    pub fn pacman(&self, args: &[&str]) -> Output {
        Command::new("pacman")
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

    /// `pacman -Sy PACKAGES`, failing the test with pacman's output if it fails.
    pub fn install(&self, packages: &[&str]) {
        let mut args = vec!["-Sy"];
        args.extend_from_slice(packages);
        let out = self.pacman(&args);
        assert!(
            out.status.success(),
            "pacman -Sy {packages:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
