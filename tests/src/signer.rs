//! A real signer process (`quartersctl key serve`) with a key made by `quartersctl key init`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A signer process; killed when dropped.
pub struct SignerProcess {
    pub key_dir: PathBuf,
    pub socket: PathBuf,
    /// The farm key's fingerprint, as `quartersctl key export` prints it.
    pub fingerprint: String,
    /// The armored public key.
    pub public_key: PathBuf,
    pub log: PathBuf,
    _child: Child,
}

impl SignerProcess {
    /// Makes a farm key in `dir/signing` and serves it on `dir/signer.sock`.
    pub async fn start(dir: &Path) -> Self {
        let key_dir = dir.join("signing");
        let out = crate::command("quartersctl")
            .args(["key", "init", "--dir"])
            .arg(&key_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "key init: {out:?}");
        let out = crate::command("quartersctl")
            .args(["key", "export", "--dir"])
            .arg(&key_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "key export: {out:?}");
        let public_key = dir.join("farm-key.pub.asc");
        std::fs::write(&public_key, &out.stdout).unwrap();
        let fingerprint = String::from_utf8(out.stderr)
            .unwrap()
            .trim()
            .strip_prefix("fingerprint: ")
            .expect("key export names the fingerprint on stderr")
            .to_owned();
        let socket = dir.join("signer.sock");
        let log = dir.join("signer.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(crate::bin("quartersctl"))
            .args(["key", "serve", "--dir"])
            .arg(&key_dir)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return SignerProcess {
                    key_dir,
                    socket,
                    fingerprint,
                    public_key,
                    log,
                    _child: child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the signer did not come up:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The master config's table that names this signer.
    pub fn config_table(&self) -> String {
        format!(
            "[signing]\nsocket = {:?}\n",
            self.socket.display().to_string()
        )
    }
}
