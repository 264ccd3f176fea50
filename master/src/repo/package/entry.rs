//! The repository database entries of a package, written as repo-add writes them.
//!
//! Why not `alpm-repo-db`'s typed `desc`: it needs every field typed by the alpm schema, and
//! makepkg writes packages that the schema refuses but pacman installs (see `fields`). The
//! entries here are therefore made the way repo-add makes them, from the `.PKGINFO` values as
//! they are; a test compares them with what the real repo-add writes for real packages.

use super::fields::{Fields, squeeze};

/// What a `desc` entry says about the package file itself.
#[derive(Clone, Copy, Debug)]
pub struct FileFacts<'a> {
    pub file_name: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    /// The detached signature, base64, once packages are signed.
    pub pgpsig: Option<&'a str>,
}

/// The `desc` entry, in repo-add's order, each section only when it has a value.
/// repo-add before pacman 6.1 also wrote `%MD5SUM%`; pacman does not read it, and 6.1 dropped it.
pub fn desc(info: &Fields, file: FileFacts<'_>) -> String {
    let mut out = String::new();
    let mut section = |name: &str, values: Vec<String>| {
        let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            return;
        }
        out.push('%');
        out.push_str(name);
        out.push_str("%\n");
        for v in values {
            out.push_str(&v);
            out.push('\n');
        }
        out.push('\n');
    };
    let one = |key: &str| info.one(key).map(squeeze).into_iter().collect::<Vec<_>>();
    let all = |key: &str| info.all(key).map(squeeze).collect::<Vec<_>>();
    section("FILENAME", vec![file.file_name.to_owned()]);
    section("NAME", one("pkgname"));
    section("BASE", one("pkgbase"));
    section("VERSION", one("pkgver"));
    section("DESC", one("pkgdesc"));
    section("GROUPS", all("group"));
    section("CSIZE", vec![file.size.to_string()]);
    section("ISIZE", one("size"));
    section("SHA256SUM", vec![file.sha256.to_owned()]);
    section(
        "PGPSIG",
        file.pgpsig.map(str::to_owned).into_iter().collect(),
    );
    section("URL", one("url"));
    section("LICENSE", all("license"));
    section("ARCH", one("arch"));
    section("BUILDDATE", one("builddate"));
    section("PACKAGER", one("packager"));
    section("REPLACES", all("replaces"));
    section("CONFLICTS", all("conflict"));
    section("PROVIDES", all("provides"));
    section("DEPENDS", all("depend"));
    section("OPTDEPENDS", all("optdepend"));
    section("MAKEDEPENDS", all("makedepend"));
    section("CHECKDEPENDS", all("checkdepend"));
    out
}

/// `desc` with `%PGPSIG%` set to `pgpsig` (base64), where repo-add puts it: after
/// `%SHA256SUM%`. A signature already there is replaced: a package signed again (a new farm
/// key) keeps one.
pub fn with_pgpsig(desc: &str, pgpsig: &str) -> String {
    let mut sections: Vec<&str> = desc
        .split("\n\n")
        .filter(|s| !s.is_empty() && !s.starts_with("%PGPSIG%\n"))
        .collect();
    let signature = format!("%PGPSIG%\n{pgpsig}");
    let at = sections
        .iter()
        .position(|s| s.starts_with("%SHA256SUM%\n"))
        .map_or(sections.len(), |i| i + 1);
    sections.insert(at, &signature);
    let mut out = sections.join("\n\n");
    out.push_str("\n\n");
    out
}

/// The value of section `%NAME%` of a `desc` this module wrote (one line, or the lines of a
/// list section joined by newlines).
pub fn field<'a>(desc: &'a str, name: &str) -> Option<&'a str> {
    let heading = format!("%{name}%\n");
    desc.split("\n\n")
        .find_map(|section| section.strip_prefix(heading.as_str()))
        .map(str::trim)
}

/// The `files` entry: `%FILES%` and the archive's listing.
pub fn files(listing: &[String]) -> String {
    let mut out = String::from("%FILES%\n");
    for path in listing {
        out.push_str(path);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_follow_repo_adds_order_and_skip_empty_values() {
        let (info, _) = Fields::parse(
            "pkgname = a\npkgbase = b\npkgver = 1:2-3\npkgdesc = x   y\nurl = \nsize = 7\narch = any\nlicense = custom\nlicense = MIT\ndepend = c>=1\noptdepend = d: for  e\n",
        );
        let got = desc(
            &info,
            FileFacts {
                file_name: "a-1:2-3-any.pkg.tar.zst",
                size: 99,
                sha256: "ab",
                pgpsig: None,
            },
        );
        assert_eq!(
            got,
            "%FILENAME%\na-1:2-3-any.pkg.tar.zst\n\n%NAME%\na\n\n%BASE%\nb\n\n%VERSION%\n1:2-3\n\n%DESC%\nx y\n\n%CSIZE%\n99\n\n%ISIZE%\n7\n\n%SHA256SUM%\nab\n\n%LICENSE%\ncustom\nMIT\n\n%ARCH%\nany\n\n%DEPENDS%\nc>=1\n\n%OPTDEPENDS%\nd: for e\n\n"
        );
        assert_eq!(field(&got, "SHA256SUM"), Some("ab"));
        assert_eq!(field(&got, "PGPSIG"), None);
        let signed = with_pgpsig(&got, "c2ln");
        assert_eq!(field(&signed, "PGPSIG"), Some("c2ln"));
        assert_eq!(
            signed,
            got.replace(
                "%SHA256SUM%\nab\n\n",
                "%SHA256SUM%\nab\n\n%PGPSIG%\nc2ln\n\n"
            )
        );
        assert_eq!(with_pgpsig(&signed, "bmV3"), signed.replace("c2ln", "bmV3"));
        assert_eq!(
            files(&["usr/".into(), "usr/bin/a".into()]),
            "%FILES%\nusr/\nusr/bin/a\n"
        );
    }
}
