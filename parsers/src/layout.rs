//! Where packages sit inside a source: `pkgbase/` (Arch), `category/pkgbase/` (pkgsrc, ports),
//! optionally with the build files in a subdirectory (`pkgbase/trunk/`, Arch's old SVN).

use serde::Deserialize;

/// How a source is laid out.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Directory levels down to a package: 1 for `pkgbase/`, 2 for `category/pkgbase/`.
    #[serde(default = "one")]
    pub depth: usize,
    /// Subdirectory of a package directory that holds PKGBUILD, if not the directory itself.
    #[serde(default)]
    pub subdir: Option<String>,
}

fn one() -> usize {
    1
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            depth: 1,
            subdir: None,
        }
    }
}

impl Layout {
    /// Checks the values a config gave.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=2).contains(&self.depth) {
            return Err(format!("depth {} is not 1 or 2", self.depth));
        }
        if let Some(sub) = &self.subdir
            && (sub.is_empty()
                || sub
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".."))
        {
            return Err(format!("subdir {sub:?} is not a plain relative path"));
        }
        Ok(())
    }

    /// The directory holding a package's build files, relative to the source root.
    pub fn build_dir(&self, package_path: &str) -> String {
        match &self.subdir {
            Some(sub) => format!("{package_path}/{sub}"),
            None => package_path.to_owned(),
        }
    }

    /// The package directory a changed file belongs to, if any: its first `depth` components.
    pub fn package_of(&self, file_path: &str) -> Option<String> {
        let parts: Vec<&str> = file_path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() < self.depth {
            return None;
        }
        let dir = &parts[..self.depth];
        if dir.iter().any(|p| is_ignored(p)) {
            return None;
        }
        Some(dir.join("/"))
    }
}

/// Directory names that never hold packages: hidden ones and version-control metadata.
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name == "CVS" || name == "CVSROOT" || name == "Attic"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_changed_files_to_packages() {
        let flat = Layout::default();
        assert_eq!(flat.package_of("foo/PKGBUILD").as_deref(), Some("foo"));
        assert_eq!(flat.package_of("README"), Some("README".to_owned()));
        assert_eq!(flat.package_of(".github/x"), None);
        let deep = Layout {
            depth: 2,
            subdir: Some("trunk".into()),
        };
        assert_eq!(
            deep.package_of("devel/foo/trunk/PKGBUILD").as_deref(),
            Some("devel/foo")
        );
        assert_eq!(deep.package_of("devel"), None);
        assert_eq!(deep.build_dir("devel/foo"), "devel/foo/trunk");
        assert!(
            Layout {
                depth: 3,
                subdir: None
            }
            .validate()
            .is_err()
        );
        assert!(
            Layout {
                depth: 1,
                subdir: Some("../x".into())
            }
            .validate()
            .is_err()
        );
    }
}
