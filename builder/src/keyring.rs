//! The farm's key in a pacman keyring of the builder's own, so that the host's pacman installs
//! a dependency only with a valid signature by the farm (`SigLevel = Required`).
//!
//! Made afresh at every start from the key the config names: a key replaced in the config is
//! the only one trusted after a restart. GnuPG does the verifying, through pacman, as on every
//! pacman client; `pacman-key` makes the keyring as a client's administrator would.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::process::Command;

use quarters_common::farm_key::FarmPublicKey;

/// Makes the keyring in `dir` (replacing what is there), trusting `keys` (all from one file)
/// and nothing else.
pub async fn make(dir: &Path, keys: &[FarmPublicKey]) -> anyhow::Result<PathBuf> {
    let Some(first) = keys.first() else {
        bail!("no key to trust");
    };
    if dir.exists() {
        tokio::fs::remove_dir_all(dir)
            .await
            .with_context(|| format!("removing the old keyring {}", dir.display()))?;
    }
    let path = first.path.display().to_string();
    let mut steps: Vec<Vec<&str>> = vec![vec!["--init"], vec!["--add", &path]];
    steps.extend(
        keys.iter()
            .map(|k| vec!["--lsign-key", k.fingerprint.as_str()]),
    );
    for args in &steps {
        let out = Command::new("pacman-key")
            .arg("--gpgdir")
            .arg(dir)
            .args(args.iter())
            .output()
            .await
            .context("running pacman-key (contrib/tools.sh installs it)")?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            bail!(
                "pacman-key {} failed: {}",
                args.join(" "),
                stderr.lines().last().unwrap_or("")
            );
        }
    }
    Ok(dir.to_owned())
}
