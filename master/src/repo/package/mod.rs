//! Reading a built package: its .PKGINFO (alpm-package, alpm-pkginfo), and the `desc` and
//! `files` entries the repository database needs (alpm-repo-db).

use std::path::Path;
use std::str::FromStr;

use alpm_package::{Package, PackageReader};
use alpm_pkginfo::PackageInfo;
use alpm_repo_db::desc::RepoDescFileV2;
use alpm_repo_db::files::RepoFilesV1;

/// What the master learns from a package file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    pub pkgname: String,
    pub pkgbase: String,
    pub version: String,
    /// The package's architecture: a machine architecture or `any`.
    pub arch: String,
    pub provides: Vec<String>,
    /// The repository database's `desc` entry.
    pub desc: String,
    /// The repository database's `files` entry.
    pub files: String,
}

/// Reads the package at `path`, whose sha256 and size are already known. Any problem (a file
/// name that is not a package's, a missing or malformed .PKGINFO) is an error that says so.
pub fn inspect(path: &Path, sha256: &str, size: u64) -> Result<Inspected, String> {
    let package = Package::try_from(path).map_err(|e| format!("not a readable package: {e}"))?;
    let info = package
        .read_pkginfo()
        .map_err(|e| format!("unreadable .PKGINFO: {e}"))?;
    let files = file_list(&package)?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the package file name is not UTF-8")?;
    let (desc, inspected) = match info {
        PackageInfo::V1(i) => describe(file_name, sha256, size, fields_v1(i))?,
        PackageInfo::V2(i) => describe(file_name, sha256, size, fields_v2(i))?,
    };
    Ok(Inspected {
        desc,
        files: files.to_string(),
        ..inspected
    })
}

/// The .PKGINFO fields a repository entry uses; v1 and v2 share them.
struct Fields {
    pkgname: alpm_types::Name,
    pkgbase: alpm_types::Name,
    pkgver: alpm_types::FullVersion,
    pkgdesc: alpm_types::PackageDescription,
    url: alpm_types::Url,
    builddate: alpm_types::BuildDate,
    packager: alpm_types::Packager,
    size: alpm_types::InstalledSize,
    arch: alpm_types::Architecture,
    license: Vec<alpm_types::License>,
    replaces: Vec<alpm_types::PackageRelation>,
    group: Vec<alpm_types::Group>,
    conflict: Vec<alpm_types::PackageRelation>,
    provides: Vec<alpm_types::RelationOrSoname>,
    depend: Vec<alpm_types::RelationOrSoname>,
    optdepend: Vec<alpm_types::OptionalDependency>,
    makedepend: Vec<alpm_types::PackageRelation>,
    checkdepend: Vec<alpm_types::PackageRelation>,
}

macro_rules! fields_from {
    ($name:ident, $ty:ty) => {
        fn $name(i: $ty) -> Fields {
            Fields {
                pkgname: i.pkgname,
                pkgbase: i.pkgbase,
                pkgver: i.pkgver,
                pkgdesc: i.pkgdesc,
                url: i.url,
                builddate: i.builddate,
                packager: i.packager,
                size: i.size,
                arch: i.arch,
                license: i.license,
                replaces: i.replaces,
                group: i.group,
                conflict: i.conflict,
                provides: i.provides,
                depend: i.depend,
                optdepend: i.optdepend,
                makedepend: i.makedepend,
                checkdepend: i.checkdepend,
            }
        }
    };
}
fields_from!(fields_v1, alpm_pkginfo::PackageInfoV1);
fields_from!(fields_v2, alpm_pkginfo::PackageInfoV2);

fn describe(
    file_name: &str,
    sha256: &str,
    size: u64,
    f: Fields,
) -> Result<(String, Inspected), String> {
    let desc = RepoDescFileV2 {
        file_name: alpm_types::PackageFileName::from_str(file_name)
            .map_err(|e| format!("{file_name:?} is not a package file name: {e}"))?,
        name: f.pkgname.clone(),
        base: f.pkgbase.clone(),
        version: f.pkgver.clone(),
        description: f.pkgdesc,
        groups: f.group,
        compressed_size: size,
        installed_size: f.size,
        sha256_checksum: alpm_types::Sha256Checksum::from_str(sha256)
            .map_err(|e| format!("sha256 {sha256:?}: {e}"))?,
        pgp_signature: None,
        url: Some(f.url),
        license: f.license,
        arch: f.arch.clone(),
        build_date: f.builddate,
        packager: f.packager,
        replaces: f.replaces,
        conflicts: f.conflict,
        provides: f.provides.clone(),
        dependencies: f.depend,
        optional_dependencies: f.optdepend,
        make_dependencies: f.makedepend,
        check_dependencies: f.checkdepend,
    };
    let inspected = Inspected {
        pkgname: f.pkgname.to_string(),
        pkgbase: f.pkgbase.to_string(),
        version: f.pkgver.to_string(),
        arch: f.arch.to_string(),
        provides: f.provides.iter().map(ToString::to_string).collect(),
        desc: String::new(),
        files: String::new(),
    };
    Ok((desc.to_string(), inspected))
}

fn file_list(package: &Package) -> Result<RepoFilesV1, String> {
    let mut reader = PackageReader::try_from(package.clone())
        .map_err(|e| format!("not a readable package: {e}"))?;
    let mut paths = Vec::new();
    for entry in reader
        .data_entries()
        .map_err(|e| format!("unreadable package contents: {e}"))?
    {
        let entry = entry.map_err(|e| format!("unreadable package contents: {e}"))?;
        let mut path = entry.path().to_path_buf();
        if entry.is_dir() && !path.as_os_str().to_string_lossy().ends_with('/') {
            let mut s = path.into_os_string();
            s.push("/");
            path = s.into();
        }
        paths.push(path);
    }
    RepoFilesV1::try_from(paths).map_err(|e| format!("package file list: {e}"))
}

#[cfg(test)]
pub(crate) mod testpkg {
    //! Package files written here as makepkg writes them: a gzip'd tar with .PKGINFO first.

    use std::io::Write;
    use std::path::{Path, PathBuf};

    /// Writes `NAME-VERSION-ARCH.pkg.tar.gz` into `dir` with the given .PKGINFO lines added
    /// to the standard ones, and one file `usr/share/NAME/hello`.
    pub fn write(
        dir: &Path,
        name: &str,
        base: &str,
        version: &str,
        arch: &str,
        extra: &str,
    ) -> PathBuf {
        let pkginfo = format!(
            "# Generated by makepkg 6.0.2\npkgname = {name}\npkgbase = {base}\npkgver = {version}\npkgdesc = test package\nurl = https://example.org/\nbuilddate = 1700000000\npackager = Test Packager <test@example.org>\nsize = 6\narch = {arch}\n{extra}"
        );
        let path = dir.join(format!("{name}-{version}-{arch}.pkg.tar.gz"));
        let file = std::fs::File::create(&path).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut add = |path: &str, data: &[u8], dir: bool| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if dir {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(if dir { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            tar.append_data(&mut h, path, data).unwrap();
        };
        add(".PKGINFO", pkginfo.as_bytes(), false);
        add("usr/", b"", true);
        add("usr/share/", b"", true);
        add(&format!("usr/share/{name}/"), b"", true);
        add(&format!("usr/share/{name}/hello"), b"hello\n", false);
        tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pkginfo_and_makes_desc_and_files_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = testpkg::write(
            dir.path(),
            "b-lib",
            "split-b",
            "1:2.0-1",
            "x86_64",
            "provides = libb.so=1-64\ndepend = glibc\n",
        );
        let sha = "a".repeat(64);
        let inspected = inspect(&path, &sha, 1234).unwrap();
        assert_eq!(inspected.pkgname, "b-lib");
        assert_eq!(inspected.pkgbase, "split-b");
        assert_eq!(inspected.version, "1:2.0-1");
        assert_eq!(inspected.arch, "x86_64");
        assert_eq!(inspected.provides, ["libb.so=1-64"]);
        for line in [
            "%FILENAME%\nb-lib-1:2.0-1-x86_64.pkg.tar.gz",
            "%BASE%\nsplit-b",
            "%CSIZE%\n1234",
            "%DEPENDS%\nglibc",
        ] {
            assert!(
                inspected.desc.contains(line),
                "{line:?} in\n{}",
                inspected.desc
            );
        }
        assert!(
            inspected.files.contains("usr/share/b-lib/hello"),
            "{}",
            inspected.files
        );
        assert!(
            inspected.files.contains("usr/share/\n"),
            "{}",
            inspected.files
        );
    }

    #[test]
    fn a_file_that_is_not_a_package_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evil-1-1-x86_64.pkg.tar.gz");
        std::fs::write(&path, b"not a tarball").unwrap();
        let err = inspect(&path, &"a".repeat(64), 13).unwrap_err();
        assert!(err.contains("PKGINFO") || err.contains("package"), "{err}");
        let path = testpkg::write(dir.path(), "bad", "bad", "1-1", "x86_64", "");
        let renamed = dir.path().join("whatever.tar.gz");
        std::fs::rename(&path, &renamed).unwrap();
        let err = inspect(&renamed, &"a".repeat(64), 13).unwrap_err();
        assert!(err.contains("not a readable package"), "{err}");
    }
}

/// The values of one `%SECTION%` of a repository `desc` entry.
pub fn desc_section<'a>(desc: &'a str, section: &str) -> Vec<&'a str> {
    let mut lines = desc.lines().skip_while(|l| *l != section);
    if lines.next().is_none() {
        return Vec::new();
    }
    lines.take_while(|l| !l.is_empty()).collect()
}
