//! The text edits of a pkgrel bump, shared by every kind: PKGBUILD and .SRCINFO change together
//! or not at all.

/// The edited files of a bump.
#[derive(Debug, PartialEq, Eq)]
pub struct Bumped {
    pub pkgbuild: String,
    pub srcinfo: Option<String>,
    pub old_pkgrel: String,
    pub new_pkgrel: String,
}

/// Bumps `pkgrel` in a PKGBUILD and, if given, its .SRCINFO. A pkgrel `N` or `N.M` becomes
/// `N+1`, as a rebuild does in Arch.
pub fn bump(pkgbuild: &str, srcinfo: Option<&str>) -> Result<Bumped, String> {
    let (old, new_pkgbuild) = edit_lines(pkgbuild, "PKGBUILD", |line| {
        let rest = line.strip_prefix("pkgrel=")?;
        let value = rest.split('#').next().unwrap_or(rest).trim();
        let value = value.trim_matches(|c| c == '\'' || c == '"');
        Some((value.to_owned(), "pkgrel={NEW}".to_owned()))
    })?;
    let new = next_pkgrel(&old)?;
    let new_pkgbuild = new_pkgbuild.replace("pkgrel={NEW}", &format!("pkgrel={new}"));
    let new_srcinfo = match srcinfo {
        None => None,
        Some(text) => {
            let (src_old, edited) = edit_lines(text, ".SRCINFO", |line| {
                let rest = line
                    .strip_prefix("pkgrel")?
                    .trim_start()
                    .strip_prefix('=')?;
                Some((rest.trim().to_owned(), "\tpkgrel = {NEW}".to_owned()))
            })?;
            if src_old != old {
                return Err(format!(
                    ".SRCINFO says pkgrel {src_old} but PKGBUILD says {old}; regenerate .SRCINFO first"
                ));
            }
            Some(edited.replace("\tpkgrel = {NEW}", &format!("\tpkgrel = {new}")))
        }
    };
    Ok(Bumped {
        pkgbuild: new_pkgbuild,
        srcinfo: new_srcinfo,
        old_pkgrel: old,
        new_pkgrel: new,
    })
}

/// Replaces the one line for which `matcher` returns `(value, replacement)`; anything but
/// exactly one such line is an error naming `file`.
fn edit_lines(
    text: &str,
    file: &str,
    matcher: impl Fn(&str) -> Option<(String, String)>,
) -> Result<(String, String), String> {
    let mut found: Option<String> = None;
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        match matcher(body.trim_start()) {
            Some((value, replacement)) => {
                if found.is_some() {
                    return Err(format!("{file} sets pkgrel more than once"));
                }
                found = Some(value);
                out.push_str(&replacement);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    match found {
        Some(value) => Ok((value, out)),
        None => Err(format!("{file} has no literal `pkgrel=` line")),
    }
}

fn next_pkgrel(old: &str) -> Result<String, String> {
    let major = old.split('.').next().unwrap_or(old);
    let n: u64 = major
        .parse()
        .map_err(|_| format!("pkgrel {old:?} is not a number"))?;
    Ok((n + 1).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_both_files_together() {
        let pkgbuild = "pkgname=foo\npkgver=1.0\npkgrel=1  # first\narch=(any)\n";
        let srcinfo =
            "pkgbase = foo\n\tpkgver = 1.0\n\tpkgrel = 1\n\tarch = any\n\npkgname = foo\n";
        let b = bump(pkgbuild, Some(srcinfo)).unwrap();
        assert_eq!(
            b.pkgbuild,
            "pkgname=foo\npkgver=1.0\npkgrel=2\narch=(any)\n"
        );
        assert_eq!(
            b.srcinfo.as_deref(),
            Some("pkgbase = foo\n\tpkgver = 1.0\n\tpkgrel = 2\n\tarch = any\n\npkgname = foo\n")
        );
        assert_eq!((b.old_pkgrel.as_str(), b.new_pkgrel.as_str()), ("1", "2"));
        let b = bump("pkgrel='4.2'\n", None).unwrap();
        assert_eq!(b.pkgbuild, "pkgrel=5\n");
    }

    #[test]
    fn refuses_what_it_cannot_bump_safely() {
        assert!(
            bump("pkgrel=$(date)\n", None)
                .unwrap_err()
                .contains("not a number")
        );
        assert!(bump("pkgver=1\n", None).unwrap_err().contains("no literal"));
        assert!(
            bump("pkgrel=1\npkgrel=2\n", None)
                .unwrap_err()
                .contains("more than once")
        );
        let err = bump("pkgrel=2\n", Some("\tpkgrel = 1\n")).unwrap_err();
        assert!(err.contains("regenerate .SRCINFO"), "{err}");
    }
}
