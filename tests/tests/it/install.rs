//! `contrib/install.sh`: the binaries, man pages generated from them, shell completions and
//! systemd units, staged under a destination directory as packaging does.

use std::path::Path;
use std::process::Command;

#[test]
fn install_stages_binaries_man_pages_completions_and_units() {
    let dest = tempfile::tempdir().unwrap();
    let bin_dir = quarters_tests::bin_dir();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(repo.join("contrib/install.sh"))
        .args(["--prefix", "/usr", "--destdir"])
        .arg(dest.path())
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usr = dest.path().join("usr");
    for b in ["quarters-master", "quarters-builder", "quartersctl"] {
        assert!(usr.join("bin").join(b).is_file(), "{b}");
        assert!(usr.join(format!("share/man/man1/{b}.1")).is_file(), "{b}");
        assert!(
            usr.join(format!("share/bash-completion/completions/{b}"))
                .is_file()
        );
        assert!(usr.join(format!("share/zsh/site-functions/_{b}")).is_file());
        assert!(
            usr.join(format!("share/fish/vendor_completions.d/{b}.fish"))
                .is_file()
        );
    }
    assert!(
        usr.join("lib/systemd/system/quarters-builder.service")
            .is_file()
    );
    // A page per subcommand, rendered by man as a user reads it, saying what the binary
    // accepts today.
    let page = usr.join("share/man/man1/quartersctl-promote.1");
    let man = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .output()
        .expect("man (package man-db) is installed by contrib/tools.sh");
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(
        text.contains("quartersctl-promote - Moves packages") && text.contains("--force <REASON>"),
        "{text}"
    );
    let bash =
        std::fs::read_to_string(usr.join("share/bash-completion/completions/quartersctl")).unwrap();
    assert!(
        bash.contains("promote") && bash.contains("--with-deps"),
        "{bash}"
    );
    // Hidden subcommands get no page.
    assert!(
        !usr.join("share/man/man1/quarters-builder-sandbox.1")
            .exists()
    );
}
