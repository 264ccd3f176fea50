//! Man pages and shell completions for a binary, generated from its clap definition (hidden
//! `generate-docs DIR` subcommand of each binary), so that they never drift from what the
//! binary accepts. `contrib/install.sh` installs them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Writes `DIR/man1/NAME.1` and one page per visible subcommand (`NAME-SUB.1`), and
/// completions for bash (`DIR/completions/bash/NAME`), zsh (`DIR/completions/zsh/_NAME`) and
/// fish (`DIR/completions/fish/NAME.fish`). Returns the files written.
pub fn write(mut cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    cmd.build();
    let name = cmd.get_name().to_owned();
    let man = dir.join("man1");
    fs::create_dir_all(&man)?;
    let mut written = Vec::new();
    let mut page = |cmd: &clap::Command, file: String| -> io::Result<()> {
        let path = man.join(file);
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
        fs::write(&path, out)?;
        written.push(path);
        Ok(())
    };
    page(&cmd, format!("{name}.1"))?;
    // Clap's own `help` subcommand needs no page: every page is the help.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let full = format!("{name}-{}", sub.get_name());
        page(&sub.clone().name(full.clone()), format!("{full}.1"))?;
    }
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let at = dir.join("completions").join(sub);
        fs::create_dir_all(&at)?;
        let path = at.join(file);
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut out);
        fs::write(&path, out)?;
        written.push(path);
    }
    Ok(written)
}
