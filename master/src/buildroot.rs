//! What a build root already provides, read from its pacman database.

use std::fs;
use std::path::Path;

/// Every package name and provision installed in the root at `root`, from
/// `var/lib/pacman/local/*/desc`.
pub fn installed_names(root: &Path) -> Result<Vec<String>, String> {
    let local = root.join("var/lib/pacman/local");
    let entries = fs::read_dir(&local).map_err(|e| format!("{}: {e}", local.display()))?;
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let desc = entry.path().join("desc");
        let Ok(text) = fs::read_to_string(&desc) else {
            continue;
        };
        let mut section = "";
        for line in text.lines() {
            if line.starts_with('%') && line.ends_with('%') {
                section = line;
            } else if !line.is_empty() && (section == "%NAME%" || section == "%PROVIDES%") {
                names.push(
                    line.split(['=', '<', '>'])
                        .next()
                        .unwrap_or(line)
                        .to_owned(),
                );
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_provisions_of_the_local_database() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("var/lib/pacman/local/glibc-2.40-1");
        fs::create_dir_all(&pkg).unwrap();
        fs::write(
            pkg.join("desc"),
            "%NAME%\nglibc\n\n%VERSION%\n2.40-1\n\n%PROVIDES%\nlibc.so=6-64\nldconfig\n\n",
        )
        .unwrap();
        let mut names = installed_names(dir.path()).unwrap();
        names.sort();
        assert_eq!(names, ["glibc", "ldconfig", "libc.so"]);
        assert!(
            installed_names(&dir.path().join("nowhere"))
                .unwrap_err()
                .contains("nowhere")
        );
    }
}
