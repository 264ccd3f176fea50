//! The bundled example packages: what quartersctl embeds is what contrib/ holds, and every
//! .SRCINFO is what makepkg says of its PKGBUILD.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn examples_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/examples/packages"
    ))
}

#[test]
fn the_embedded_examples_are_the_directory() {
    let mut on_disk = BTreeSet::new();
    for pkg in std::fs::read_dir(examples_dir()).unwrap() {
        let pkg = pkg.unwrap();
        for file in std::fs::read_dir(pkg.path()).unwrap() {
            let file = file.unwrap();
            let contents = std::fs::read_to_string(file.path()).unwrap();
            on_disk.insert((
                pkg.file_name().to_string_lossy().into_owned(),
                file.file_name().to_string_lossy().into_owned(),
                contents,
            ));
        }
    }
    let embedded: BTreeSet<(String, String, String)> = quarters_ctl::examples::FILES
        .iter()
        .map(|(p, f, c)| ((*p).to_owned(), (*f).to_owned(), (*c).to_owned()))
        .collect();
    assert_eq!(
        embedded, on_disk,
        "regenerate master/ctl/src/examples.rs from contrib/examples/packages"
    );
    let packages: BTreeSet<&str> = quarters_ctl::examples::FILES
        .iter()
        .map(|(p, _, _)| *p)
        .collect();
    assert!(packages.len() >= 8, "{packages:?}");
}

#[test]
fn every_srcinfo_is_what_makepkg_prints() {
    for pkg in std::fs::read_dir(examples_dir()).unwrap() {
        let pkg = pkg.unwrap().path();
        let work = tempfile::tempdir().unwrap();
        let copy = work.path().join("pkg");
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(pkg.join("PKGBUILD"), copy.join("PKGBUILD")).unwrap();
        Command::new("chown")
            .arg("-R")
            .arg("65534:65534")
            .arg(work.path())
            .status()
            .unwrap();
        let out = quarters_tests::makepkg::as_nobody(&[], &["makepkg", "--printsrcinfo"])
            .current_dir(&copy)
            .output()
            .expect("makepkg and setpriv are installed");
        assert!(
            out.status.success(),
            "{}: {}",
            pkg.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = String::from_utf8(out.stdout).unwrap();
        let shipped = std::fs::read_to_string(pkg.join(".SRCINFO")).unwrap();
        assert_eq!(
            shipped,
            expected,
            "{}/.SRCINFO is stale: regenerate it with makepkg --printsrcinfo",
            pkg.display()
        );
    }
}
