//! Real builds: makepkg in fresh overlay roots, a dependency installed from the master's build
//! repository, and a stock pacman installing the result; and hostile PKGBUILDs, each contained
//! and reported with the right failure while the builder goes on working.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use quarters_tests::makepkg::{self, Recipe, recipe};
use quarters_tests::pacman::PacmanRoot;
use quarters_tests::template::{SETUID_PROBE, template_root};
use quarters_tests::{start_farm_in, wait_for_farm};

fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// A C library and a program linking it: the program's build needs the library installed.
pub fn hello_recipes() -> Vec<Recipe> {
    let lib = recipe(
        "libhello",
        "1.0-1",
        arch(),
        &[],
        "install -Dm644 libhello.so \"$pkgdir/usr/lib/libhello.so\"\ninstall -Dm644 hello.h \"$pkgdir/usr/include/hello.h\"",
    );
    let lib = Recipe {
        pkgbuild: lib.pkgbuild.replace(
            "package() {",
            "build() {\n  printf '#include <stdio.h>\\nvoid hello(void) { puts(\"hello from libhello\"); }\\n' > hello.c\n  printf 'void hello(void);\\n' > hello.h\n  gcc -shared -fPIC -o libhello.so hello.c\n}\npackage() {",
        ),
        ..lib
    };
    let mut prog = recipe(
        "hello",
        "1.0-1",
        arch(),
        &["libhello"],
        "install -Dm755 hello \"$pkgdir/usr/bin/hello\"",
    );
    prog.pkgbuild = prog.pkgbuild.replace(
        "package() {",
        "makedepends=(libhello)\nbuild() {\n  printf '#include <hello.h>\\nint main(void) { hello(); return 0; }\\n' > main.c\n  gcc -o hello main.c -lhello\n}\npackage() {",
    );
    prog.srcinfo = prog.srcinfo.replace(
        "\tdepends = libhello\n",
        "\tmakedepends = libhello\n\tdepends = libhello\n",
    );
    vec![lib, prog]
}

fn farm_config(template: &std::path::Path, limits: &str) -> (String, String) {
    let master = "[build_root]\ntemplate = \"".to_owned()
        + &template.display().to_string()
        + "\"\n\n[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n";
    let builder = format!(
        "driver = \"chroot\"\n\n[chroot]\ntemplate = \"{}\"\n{limits}\n[claims]\nlease = 10\n",
        template.display()
    );
    (master, builder)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_build_with_a_dependency_from_the_build_repository_installs_with_pacman() {
    let template = template_root();
    let dir = tempfile::tempdir().unwrap();
    let packages = dir.path().join("packages");
    makepkg::write_tree(&packages, &hello_recipes());
    makepkg::git_commit_all(&packages, "import");
    let (master_extra, builder_extra) = farm_config(&template, "");
    let mut farm = start_farm_in(dir.path(), 1, &master_extra, &builder_extra).await;
    let state = wait_for_farm(
        &farm,
        "libhello and hello built",
        Duration::from_secs(300),
        |s| s.counts.get("built") == Some(&2) || s.counts.contains_key("failed"),
    )
    .await;
    assert_eq!(state.counts.get("built"), Some(&2), "{state:#?}");

    let root = PacmanRoot::new(
        &farm.ca_cert,
        &[(
            "quarters-build",
            format!("{}repo/build/$arch", farm.master.url),
        )],
    );
    root.install(&["hello"]);
    let out = std::process::Command::new(root.root.join("usr/bin/hello"))
        .env("LD_LIBRARY_PATH", root.root.join("usr/lib"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from libhello\n"
    );

    // Teardown left nothing mounted under the builder's work directory.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let work = dir.path().join("builder-1-work").canonicalize().unwrap();
    assert!(
        !mounts.contains(work.to_str().unwrap()),
        "mounts left behind:\n{mounts}"
    );
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_pkgbuilds_are_contained_and_reported_and_the_builder_goes_on() {
    let template = template_root();
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let escape = dir.path().join("escaped");
    let key = dir.path().join("ca/builder-1.key");
    let hostile = |name: &str, build: &str| {
        let r = recipe(
            name,
            "1.0-1",
            arch(),
            &[],
            "install -d \"$pkgdir/usr/share/quarters-test\"",
        );
        Recipe {
            pkgbuild: r.pkgbuild.replace(
                "package() {",
                &format!("build() {{\n{build}\n}}\npackage() {{"),
            ),
            ..r
        }
    };
    let recipes = vec![
        hostile(
            "steal-key",
            &format!(
                "if cat {} >/dev/null 2>&1; then echo 'read the key'; exit 1; fi",
                key.display()
            ),
        ),
        hostile(
            "escape",
            &format!(
                "echo x > {} || true; echo x > ../../../../../..{} || true",
                escape.display(),
                escape.display()
            ),
        ),
        hostile(
            "network",
            &format!("exec 3<>/dev/tcp/127.0.0.1/{port} || exit 7"),
        ),
        hostile("daemon", "(sleep 1000 &)"),
        // A setuid-root binary of the template must not make the build user root.
        hostile(
            "setuid",
            &format!(
                "{SETUID_PROBE}; if {SETUID_PROBE} | grep -q euid=0; then echo 'became root'; exit 1; fi"
            ),
        ),
        hostile(
            "fill-tmp",
            "dd if=/dev/zero of=/tmp/fill bs=1M count=64 || exit 3",
        ),
        hostile(
            "fill-root",
            "dd if=/dev/zero of=fill bs=1M count=96 || exit 3",
        ),
        hostile(
            "fill-shm",
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 || exit 3",
        ),
        // It plants a file in the source cache, while fetching and while building; the
        // package that depends on it (and so builds after it) must not see it.
        {
            let mut r = hostile("planter", "echo planted > /srcdest/planted || true");
            r.pkgbuild = r.pkgbuild.replacen(
                "\n",
                "\necho planted > /srcdest/planted-early 2>/dev/null || true\n",
                1,
            );
            r
        },
        hostile("forkbomb", "bomb() { bomb | bomb & }; bomb; wait"),
        hostile("hang", "sleep 100000"),
        {
            let r = recipe(
                "after-all",
                "1.0-1",
                arch(),
                &["planter"],
                "install -d \"$pkgdir/usr/share/after-all\"",
            );
            Recipe {
                pkgbuild: r.pkgbuild.replace(
                    "package() {",
                    "build() {\n  for f in /srcdest/planted /srcdest/planted-early; do if [ -e $f ]; then echo \"found $f\"; exit 1; fi; done\n}\npackage() {",
                ),
                ..r
            }
        },
    ];
    let packages = dir.path().join("packages");
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let (master_extra, builder_extra) = farm_config(
        &template,
        "hang_timeout = 4\nwall_limit = 25\ncpu_limit = 20\nroot_size_mib = 64\ntmp_size_mib = 16\nshm_size_mib = 16\n",
    );
    let mut farm = start_farm_in(dir.path(), 1, &master_extra, &builder_extra).await;
    let state = wait_for_farm(
        &farm,
        "every package judged",
        Duration::from_secs(600),
        |s| {
            s.counts.get("built").copied().unwrap_or(0)
                + s.counts.get("failed").copied().unwrap_or(0)
                == 12
        },
    )
    .await;
    // steal-key, escape, setuid, planter and after-all build (what they tried found nothing
    // to reach); the network, daemon, fork-bomb and hang packages and the three fillers fail.
    assert_eq!(state.counts.get("failed"), Some(&7), "{:?}", state.counts);
    // Verdicts leave the master's state once the builder has cleaned up; `why` keeps them.
    let why = |name: &str| {
        let out = quarters_tests::command("quartersctl")
            .args(["why", name, "--config"])
            .arg(&farm.master.config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        why("steal-key").contains("built"),
        "the key was not readable, so it built: {}",
        why("steal-key")
    );
    assert!(
        !escape.exists(),
        "a build wrote {} on the host",
        escape.display()
    );
    let w = why("network");
    assert!(
        w.contains("failed") && w.contains("build: exit status"),
        "{w}"
    );
    let mut buf = [0u8; 1];
    match listener.accept() {
        Ok((mut s, _)) => panic!(
            "the build reached the host's network: {:?}",
            s.read(&mut buf)
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
    let w = why("daemon");
    assert!(
        w.contains("left 1 process(es) running, killed") && w.contains("sleep 1000"),
        "{w}"
    );
    // The process limit stops the bomb; then the watchdog (it hangs, or runs over a limit) or
    // the sandbox (what it left running) ends it, whichever comes first.
    let w = why("forkbomb");
    assert!(
        w.contains("failed: build:")
            && ["hung", "limit", "process(es) running"]
                .iter()
                .any(|r| w.contains(r)),
        "{w}"
    );
    assert!(w.len() < 4000, "the reason stays short: {} bytes", w.len());
    let w = why("hang");
    assert!(
        w.contains("hung: no new process and no CPU progress for 4 s"),
        "{w}"
    );
    let w = why("setuid");
    assert!(w.contains("built"), "setuid took effect: {w}");
    for (name, full) in [
        ("fill-root", "/ (64 MiB)"),
        ("fill-tmp", "/tmp (16 MiB)"),
        ("fill-shm", "/dev/shm (16 MiB)"),
    ] {
        let w = why(name);
        assert!(
            w.contains("failed: build: exit status")
                && w.contains(&format!("out of space: {full} full")),
            "{w}"
        );
    }
    assert!(why("planter").contains("built"), "{}", why("planter"));
    assert!(
        why("after-all").contains("built"),
        "the builder goes on, and saw nothing planted in the source cache: {}",
        why("after-all")
    );
    assert_eq!(
        std::process::Command::new("pgrep")
            .args(["-f", "sleep 1000"])
            .output()
            .unwrap()
            .stdout,
        b""
    );
    farm.stop(Duration::from_secs(10)).await.unwrap();
}
