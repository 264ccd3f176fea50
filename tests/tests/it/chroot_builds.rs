//! Real builds: makepkg in fresh overlay roots, a dependency installed from the master's build
//! repository, and a stock pacman installing the result; and hostile PKGBUILDs, each contained
//! and reported with the right failure while the builder goes on working.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use quarters_tests::makepkg::{self, Recipe, recipe};
use quarters_tests::pacman::PacmanRoot;
use quarters_tests::template::{SETUID_PROBE, template_root};
use quarters_tests::{quartersctl, start_farm_in, wait_for_farm};

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

/// How many packages the master has judged: built or failed.
fn judged(state: &quarters_common::api::v1::MasterState) -> u64 {
    use quarters_common::api::v1::PackageState;
    [PackageState::Built, PackageState::Failed]
        .iter()
        .map(|k| state.counts.get(k).copied().unwrap_or(0))
        .sum()
}

/// `r` with one source entry and its sha256 (or `SKIP`), in the PKGBUILD and the .SRCINFO.
fn with_source(r: Recipe, entry: &str, sha256: &str) -> Recipe {
    Recipe {
        pkgbuild: r.pkgbuild.replacen(
            "\n",
            &format!("\nsource=('{entry}')\nsha256sums=('{sha256}')\n"),
            1,
        ),
        srcinfo: r.srcinfo.replace(
            "\tlicense = MIT\n",
            &format!("\tlicense = MIT\n\tsource = {entry}\n\tsha256sums = {sha256}\n"),
        ),
        ..r
    }
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
        |s| {
            s.counts.get(&quarters_common::api::v1::PackageState::Built) == Some(&2)
                || s.counts
                    .contains_key(&quarters_common::api::v1::PackageState::Failed)
        },
    )
    .await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&2),
        "{state:#?}"
    );

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

    // The builder said at start-up what bounds its builds: this machine (and CI's) has the
    // cgroup v1 controllers, so each build had a group of its own, and none is left.
    let builder = farm
        .nodes()
        .find(|n| n.name.as_str() == "builder-1")
        .unwrap();
    let log = std::fs::read_to_string(&builder.log).unwrap();
    let notice = log
        .lines()
        .find(|l| l.contains("each build gets a cgroup"))
        .unwrap_or_else(|| panic!("no cgroup notice in:\n{log}"));
    assert!(
        notice.contains("memory") && notice.contains("4096 processes"),
        "{notice}"
    );
    let place = notice.rsplit_once(" under ").unwrap().1.trim();
    let groups_left: Vec<_> = std::fs::read_dir(place)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.path())
        .collect();
    assert_eq!(groups_left, Vec::<std::path::PathBuf>::new(), "{notice}");

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
        // A process still exiting when makepkg ends (as fakeroot's faked daemon can be, under
        // load) is not one left running: it lingers 0.3 s after the last makepkg is gone.
        hostile(
            "lingering",
            // A process of its own (sh): a subshell of the build would be named makepkg too.
            "sh -c 'while cat /proc/[0-9]*/comm 2>/dev/null | grep -qx makepkg; do sleep 0.05; done; sleep 0.3' >/dev/null 2>&1 &",
        ),
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
        // More memory than the build's cgroup allows: the OOM killer ends it, and the reason
        // names the limit.
        hostile(
            "oom",
            "x=$(head -c 400000000 /dev/zero | tr -c a a); echo ${#x}",
        ),
        // More processes than the build's cgroup allows (its limit is below the build user's
        // process limit): a fork fails.
        hostile(
            "many-processes",
            "perl -e 'for (1..200) { my $p = fork; if (!defined $p) { print \"fork: $!\\n\"; exit 9 } if (!$p) { sleep 20; exit 0 } }'",
        ),
        // Output without end would fill the builder's disk: its log keeps 1 MiB. It fails
        // afterwards, so that the master pulls its log.
        hostile("chatty", "yes 'quarters' | head -c 50000000; exit 4"),
        // A user namespace of its own would make the build user root again, in it: the
        // seccomp filter refuses it.
        hostile(
            "namespaces",
            "if unshare --user --map-root-user true; then echo 'made a user namespace'; exit 1; fi",
        ),
        // Top-level code runs whenever makepkg reads the PKGBUILD: it must never find a
        // network, in any stage.
        {
            let mut r = hostile("toplevel-connect", "true");
            r.pkgbuild = r.pkgbuild.replacen(
                "\n",
                &format!("\n(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo connected\n"),
                1,
            );
            r
        },
        // A source on the builder's loopback: the fetcher refuses it.
        with_source(
            hostile("fetch-loopback", "true"),
            &format!("x.tar.gz::http://127.0.0.1:{port}/x.tar.gz"),
            "SKIP",
        ),
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
        "hang_timeout = 4\nwall_limit = 25\ncpu_limit = 20\nroot_size_mib = 64\ntmp_size_mib = 16\nshm_size_mib = 16\nmemory_mib = 160\npids_max = 64\nmax_log_mib = 1\n",
    );
    let mut farm = start_farm_in(dir.path(), 1, &master_extra, &builder_extra).await;
    let state = wait_for_farm(
        &farm,
        "every package judged",
        Duration::from_secs(600),
        |s| judged(s) == 19,
    )
    .await;
    // steal-key, escape, setuid, planter, toplevel-connect, lingering, namespaces and after-all
    // build (what they tried found nothing to reach, or ended on its own); the network,
    // daemon, fork-bomb, oom, many-processes, chatty and hang packages, the three fillers and
    // fetch-loopback fail.
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Failed),
        Some(&11),
        "{:?}",
        state.counts
    );
    // Verdicts leave the master's state once the builder has cleaned up; `why` keeps them.
    let why = |name: &str| quartersctl(&farm.master.config, &["why", name]).1;
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
    assert!(
        why("toplevel-connect").contains("built"),
        "{}",
        why("toplevel-connect")
    );
    let w = why("fetch-loopback");
    assert!(
        w.contains("failed: fetch: x.tar.gz: 127.0.0.1 is a loopback address"),
        "{w}"
    );
    let w = why("lingering");
    assert!(w.contains("built"), "{w}");
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
    let w = why("oom");
    assert!(
        w.contains("failed: build: out of memory: killed at the build's memory limit of 160 MiB;"),
        "{w}"
    );
    let w = why("many-processes");
    assert!(
        w.contains("failed: build: reached the build's limit of 64 processes and threads;"),
        "{w}"
    );
    // The chatty build's log, as the master pulled it: 1 MiB of its 50 MB, and the cut said.
    let w = why("chatty");
    assert!(w.contains("failed: build: exit status"), "{w}");
    let id = w
        .lines()
        .find_map(|l| l.trim().strip_prefix("build ")?.split(' ').next())
        .unwrap_or_else(|| panic!("no build id in {w}"));
    let log = farm
        .client(&farm.master)
        .get_bytes(&format!("/v1/logs/builder-1/{id}/build"), 64 << 20)
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(
        log.len() < (1 << 20) + (64 << 10) && log.contains("quarters\nquarters\n"),
        "{} bytes",
        log.len()
    );
    assert!(
        log.contains("the log is cut here, at its limit of 1048576 bytes"),
        "{}",
        &log[log.len().saturating_sub(300)..]
    );
    let w = why("namespaces");
    assert!(w.contains("built"), "the build made a user namespace: {w}");
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

/// Real makepkg builds are reproducible by construction across builders: the same template,
/// build path, packager, locale, time zone and SOURCE_DATE_EPOCH (the package's last commit),
/// and dependencies at the versions the plan named. Each version built on one builder is
/// rebuilt on the other and is the same bytes.
#[tokio::test(flavor = "multi_thread")]
async fn two_builders_reproduce_each_others_real_builds() {
    let template = template_root();
    let dir = tempfile::tempdir().unwrap();
    let packages = dir.path().join("packages");
    makepkg::write_tree(&packages, &hello_recipes());
    makepkg::git_commit_all(&packages, "import");
    let (master_extra, builder_extra) = farm_config(&template, "");
    let mut farm = start_farm_in(dir.path(), 2, &master_extra, &builder_extra).await;
    let why = |name: &str| quartersctl(&farm.master.config, &["why", name]).1;
    let started = std::time::Instant::now();
    let mut waiting = vec!["libhello", "hello"];
    while !waiting.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(420),
            "not reproduced in time:\n{}",
            why(waiting[0])
        );
        for name in &waiting {
            let w = why(name);
            assert!(
                !w.contains("verification: DIFFERS") && !w.contains("failed"),
                "{w}"
            );
        }
        waiting.retain(|name| !why(name).contains("verification: reproduced\n"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Each by the builder that did not build it.
    for name in ["libhello", "hello"] {
        let w = why(name);
        let built_on = w
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("build ")?
                    .split(" on ")
                    .nth(1)?
                    .split(':')
                    .next()
            })
            .unwrap_or_else(|| panic!("no build in {w}"))
            .to_owned();
        let verified_on = w
            .lines()
            .skip_while(|l| !l.contains("verification: reproduced"))
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no verification build in {w}"))
            .to_owned();
        assert_ne!(built_on, verified_on, "{w}");
    }
    farm.stop(Duration::from_secs(10)).await.unwrap();
    // Both builders published their template's identity, and the master recorded it with the
    // accepted build and with the verification: the same template, the same identity.
    let db = quarters_master::db::Db::open(&dir.path().join("master-state/master.sqlite")).unwrap();
    let expected = quarters_builder::template::identity(&template)
        .unwrap()
        .sha256;
    for name in ["libhello", "hello"] {
        let builds = db.builds_of(name, 10).unwrap();
        assert_eq!(
            builds[0].template.as_deref(),
            Some(expected.as_str()),
            "{name}"
        );
        let verifications = db.verifications_of(name).unwrap();
        assert_eq!(
            verifications[0].template.as_deref(),
            Some(expected.as_str()),
            "{name}"
        );
    }
}

/// What `hooker`'s scriptlet and ALPM hook run, as root inside the build: note that it ran (in
/// the build root, for `hook-victim` to check), then try to leave the root with a chroot
/// escape, read the builder's key directly and through every process's `/proc/PID/root`, and
/// write a marker on the host if anything worked.
const ESCAPE_PL: &str = r#"my ($what, $marker, $key) = @ARGV;
mkdir "/var/lib/hooker";
open(my $ran, '>', "/var/lib/hooker/$what-ran") and close $ran;
my @found;
mkdir "/tmp/esc-$what";
if (chroot "/tmp/esc-$what") { chdir ".." for 1 .. 64; chroot "."; }
for my $path ($key, glob("/proc/*/root$key")) {
    if (open(my $k, '<', $path)) { push @found, $path; }
}
if (open(my $m, '>', $marker)) { print $m "$what reached the host; read: @found\n"; close $m; }
print "hooker $what ran as uid $<; read: @found\n";
"#;

#[tokio::test(flavor = "multi_thread")]
async fn package_scriptlets_and_hooks_never_run_as_the_hosts_root() {
    let template = template_root();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("escaped-by-package-content");
    let key = dir.path().join("ca/builder-1.key");
    let args = format!("{} {}", marker.display(), key.display());
    // hooker ships a scriptlet and an ALPM hook; both run when it is installed: in its own
    // install stage, and in hook-victim's depends stage.
    let mut hooker = recipe(
        "hooker",
        "1.0-1",
        arch(),
        &[],
        "install -Dm644 escape.pl \"$pkgdir/usr/share/hooker/escape.pl\"\ninstall -Dm644 hooker.hook \"$pkgdir/usr/share/libalpm/hooks/50-hooker.hook\"",
    );
    hooker.pkgbuild = hooker.pkgbuild.replace(
        "package() {",
        "install=hooker.install\nsource=(escape.pl hooker.hook)\nsha256sums=(SKIP SKIP)\npackage() {",
    );
    hooker.srcinfo = hooker.srcinfo.replace(
        "\tlicense = MIT\n",
        "\tlicense = MIT\n\tinstall = hooker.install\n\tsource = escape.pl\n\tsource = hooker.hook\n\tsha256sums = SKIP\n\tsha256sums = SKIP\n",
    );
    let mut victim = recipe(
        "hook-victim",
        "1.0-1",
        arch(),
        &["hooker"],
        "install -d \"$pkgdir/usr/share/hook-victim\"",
    );
    victim.pkgbuild = victim.pkgbuild.replace(
        "package() {",
        "build() {\n  for f in scriptlet-ran hook-ran; do test -e /var/lib/hooker/$f || { echo \"no $f\"; exit 1; }; done\n}\npackage() {",
    );
    let packages = dir.path().join("packages");
    makepkg::write_tree(&packages, &[hooker, victim]);
    let pkg = packages.join("hooker");
    std::fs::write(pkg.join("escape.pl"), ESCAPE_PL).unwrap();
    std::fs::write(
        pkg.join("hooker.hook"),
        format!(
            "[Trigger]\nOperation = Install\nOperation = Upgrade\nType = Path\nTarget = usr/share/hooker/*\n\n[Action]\nDescription = hooker tries to leave the build root\nWhen = PostTransaction\nExec = /usr/bin/perl /usr/share/hooker/escape.pl hook {args}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        pkg.join("hooker.install"),
        format!(
            "post_install() {{\n  /usr/bin/perl /usr/share/hooker/escape.pl scriptlet {args}\n}}\n"
        ),
    )
    .unwrap();
    makepkg::git_commit_all(&packages, "import");
    let (master_extra, builder_extra) = farm_config(&template, "");
    let mut farm = start_farm_in(dir.path(), 1, &master_extra, &builder_extra).await;
    let state = wait_for_farm(
        &farm,
        "hooker and hook-victim judged",
        Duration::from_secs(300),
        |s| judged(s) == 2,
    )
    .await;
    assert!(
        !marker.exists(),
        "package content reached the host: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    // hook-victim built: its depends stage ran hooker's scriptlet and hook (they left their
    // notes in the build root), and nothing of them got out.
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&2),
        "{state:#?}"
    );
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builder_fetches_sources_checks_them_and_builds_from_a_read_only_cache() {
    use sha2::Digest as _;
    let template = template_root();
    let dir = tempfile::tempdir().unwrap();
    // An upstream on loopback (the test farm allows it): a file, and how often it was asked.
    let served: &'static [u8] = b"hello from upstream\n";
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/greeting.txt",
        axum::routing::get(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { served }
        }),
    );
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = upstream.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(upstream, app).await });
    let url = format!("http://127.0.0.1:{port}/greeting.txt");
    let sha: String = sha2::Sha256::digest(served)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let uses = |name: &str| {
        recipe(
            name,
            "1.0-1",
            arch(),
            &[],
            "install -Dm644 greeting.txt \"$pkgdir/usr/share/greeting.txt\"\necho changed > /srcdest/greeting.txt || true",
        )
    };
    let recipes = vec![
        with_source(uses("downloaded"), &format!("greeting.txt::{url}"), &sha),
        with_source(uses("again"), &format!("greeting.txt::{url}"), &sha),
        with_source(
            uses("bad-sum"),
            &format!("greeting.txt::{url}"),
            &"0".repeat(64),
        ),
    ];
    let packages = dir.path().join("packages");
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let (master_extra, builder_extra) = farm_config(&template, "");
    let builder_extra = builder_extra + "\n[fetch]\nallow_loopback = true\n";
    let mut farm = start_farm_in(dir.path(), 1, &master_extra, &builder_extra).await;
    let state = wait_for_farm(
        &farm,
        "every package judged",
        Duration::from_secs(300),
        |s| judged(s) == 3,
    )
    .await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&2),
        "{state:#?}"
    );
    let (_, why) = quartersctl(&farm.master.config, &["why", "bad-sum"]);
    assert!(
        why.contains("failed: fetch: greeting.txt: sha256sum mismatch"),
        "{why}"
    );
    // Each package's cache holds what upstream served, whatever its build wrote over it.
    for name in ["downloaded", "again"] {
        let cached = dir
            .path()
            .join(format!("builder-1-work/sources/{name}/greeting.txt"));
        assert_eq!(
            std::fs::read(&cached).unwrap(),
            served,
            "{}",
            cached.display()
        );
    }
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

/// A signed farm of one real builder whose source holds libhello alone (hello comes later).
async fn signed_farm_with_libhello() -> (tempfile::TempDir, quarters_ctl::localfarm::LocalFarm) {
    let template = template_root();
    let dir = tempfile::tempdir().unwrap();
    let packages = dir.path().join("packages");
    makepkg::write_tree(&packages, &hello_recipes()[..1]);
    makepkg::git_commit_all(&packages, "libhello");
    let (master_extra, builder_extra) = farm_config(&template, "");
    let farm = start_farm_in(dir.path(), 1, &master_extra, &builder_extra).await;
    assert!(farm.signer.is_some(), "test farms sign");
    (dir, farm)
}

/// `db` (a pacman database, gzip'd tar) with `change` applied to every `desc` entry.
fn rewrite_db(db: &std::path::Path, change: impl Fn(&str) -> String) {
    let bytes = std::fs::read(db).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut out = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        if path.ends_with("desc") {
            text = change(&text);
        }
        header.set_size(text.len() as u64);
        header.set_cksum();
        out.append(&header, text.as_bytes()).unwrap();
    }
    let bytes = out.into_inner().unwrap().finish().unwrap();
    // In place: the database's other names are links to the same file.
    std::fs::write(db, bytes).unwrap();
}

/// The attacker who can change the master's files (or the bytes on their way) swaps a
/// dependency for a trojan and makes the database agree with it; the checksum pacman checks
/// then matches. Only the farm's signature over the database is left to notice, and the
/// builder, which trusts the farm key from its config, refuses to install from it: the
/// package is handed back, never built against the trojan.
#[tokio::test(flavor = "multi_thread")]
async fn a_builder_installs_nothing_from_a_database_the_farm_did_not_sign() {
    let (dir, mut farm) = signed_farm_with_libhello().await;
    let packages = dir.path().join("packages");
    let recipes = hello_recipes();
    wait_for_farm(&farm, "libhello built", Duration::from_secs(300), |s| {
        s.counts.get(&quarters_common::api::v1::PackageState::Built) == Some(&1)
            || s.counts
                .contains_key(&quarters_common::api::v1::PackageState::Failed)
    })
    .await;

    // The trojan: a libhello of the same name and version that does something else.
    let pool = farm.master_state_dir().join("pool");
    let genuine = std::fs::read_dir(&pool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("libhello-") && !name.ends_with(".sig")
        })
        .unwrap();
    let trojan_recipe = recipe(
        "libhello",
        "1.0-1",
        arch(),
        &[],
        "install -Dm644 /dev/stdin \"$pkgdir/usr/lib/trojan\" <<<'owned'",
    );
    let trojan = makepkg::build(&trojan_recipe, &dir.path().join("trojan"));
    let trojan_bytes = std::fs::read(&trojan).unwrap();
    let sha = |bytes: &[u8]| -> String {
        use sha2::Digest;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let (old_sha, new_sha) = (sha(&std::fs::read(&genuine).unwrap()), sha(&trojan_bytes));
    std::fs::write(&genuine, &trojan_bytes).unwrap();
    let db = farm
        .master_state_dir()
        .join("repos/build")
        .join(arch())
        .join("quarters-build.db");
    rewrite_db(&db, |desc| {
        let mut sections: Vec<String> = desc
            .split("\n\n")
            .filter(|s| !s.is_empty() && !s.starts_with("%PGPSIG%"))
            .map(|s| s.replace(&old_sha, &new_sha))
            .collect();
        for s in &mut sections {
            if s.starts_with("%CSIZE%") {
                *s = format!("%CSIZE%\n{}", trojan_bytes.len());
            }
        }
        sections.join("\n\n") + "\n\n"
    });

    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "hello");
    let builder_log = farm.builders[0].log.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let log = loop {
        let log = std::fs::read_to_string(&builder_log).unwrap();
        if log.contains("handing hello 1.0-1 back") {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hello was never handed back:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let handed_back = log
        .lines()
        .find(|l| l.contains("handing hello 1.0-1 back"))
        .unwrap();
    assert!(handed_back.contains("PGP signature"), "{handed_back}");
    let state = wait_for_farm(&farm, "any state", Duration::from_secs(10), |_| true).await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&1),
        "{:?}",
        state.counts
    );
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

/// The farm builds its own keyring package from the source `quartersctl key package` writes;
/// a client that installs it and runs `pacman-key --populate quarters`, as archlinux-keyring
/// users do, trusts the farm key with no fingerprint typed, and installs with
/// `SigLevel = Required`.
#[tokio::test(flavor = "multi_thread")]
async fn the_farm_builds_its_keyring_package_and_a_client_populates_it() {
    let (dir, mut farm) = signed_farm_with_libhello().await;
    let packages = dir.path().join("packages");
    let signer = farm.signer.as_ref().expect("test farms sign");
    let out = quarters_tests::command("quartersctl")
        .args(["key", "package", "--dir"])
        .arg(&signer.key_dir)
        .arg("--out")
        .arg(&packages)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    makepkg::git_commit_all(&packages, "the farm's keyring");
    let state = wait_for_farm(&farm, "both built", Duration::from_secs(300), |s| {
        s.counts.get(&quarters_common::api::v1::PackageState::Built) == Some(&2)
            || s.counts
                .contains_key(&quarters_common::api::v1::PackageState::Failed)
    })
    .await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&2),
        "{state:#?}"
    );

    // Bootstrapping, as with any distribution's keyring: the first install trusts the
    // channel, then signatures are required.
    let build_repo = || {
        vec![(
            "quarters-build",
            format!("{}repo/build/$arch", farm.master.url),
        )]
    };
    let bootstrap = PacmanRoot::new(&farm.ca_cert, &build_repo());
    bootstrap.install(&["quarters-keyring"]);
    let keyrings = bootstrap.root.join("usr/share/pacman/keyrings");
    assert!(keyrings.join("quarters.gpg").is_file());

    // pacman-key reads keyrings from one directory (Debian's patches it to
    // /usr/share/keyrings); the installed one is bound there for this pacman-key only.
    let script = std::fs::read_to_string("/usr/bin/pacman-key").unwrap();
    let import_dir = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("local KEYRING_IMPORT_DIR="))
        .expect("pacman-key names its keyring directory")
        .trim_matches(['\'', '"']);
    let gpgdir = dir.path().join("client-gnupg");
    let pacman_key = |args: &str| {
        let out = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!(
                "mount --bind \"$0\" {import_dir} && exec pacman-key --gpgdir \"$1\" {args}"
            ))
            .arg(&keyrings)
            .arg(&gpgdir)
            .output()
            .unwrap();
        assert!(out.status.success(), "pacman-key {args}: {out:?}");
    };
    pacman_key("--init");
    pacman_key("--populate quarters");

    let client = PacmanRoot::with_keyring(&farm.ca_cert, &build_repo(), &gpgdir);
    client.install(&["libhello"]);
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

/// A builder stopped by its operator in the middle of a build hands the build back: the
/// sandbox is killed, the root unmounted, the claim withdrawn where the master sees it (the
/// package is ready again long before the claim's five-minute lease would lapse), and the
/// builder exits on its own, cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn a_builder_stopped_mid_build_hands_it_back_and_leaves_nothing_mounted() {
    let template = template_root();
    let dir = tempfile::tempdir().unwrap();
    let packages = dir.path().join("packages");
    makepkg::write_tree(
        &packages,
        &[recipe("slow", "1.0-1", arch(), &[], "sleep 100000")],
    );
    makepkg::git_commit_all(&packages, "import");
    let (master_extra, _) = farm_config(&template, "");
    let builder_extra = format!(
        "driver = \"chroot\"\n\n[chroot]\ntemplate = \"{}\"\n\n[claims]\nlease = 300\n",
        template.display()
    );
    let mut farm = start_farm_in(dir.path(), 1, &master_extra, &builder_extra).await;
    wait_for_farm(&farm, "slow claimed", Duration::from_secs(120), |s| {
        s.claims.iter().any(|c| c.pkgbase == "slow")
    })
    .await;
    // In the build stage, with its root mounted.
    let work = dir.path().join("builder-1-work").canonicalize().unwrap();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(work.to_str().unwrap()))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while mounted() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no build root was mounted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let status = farm
        .stop_builder("builder-1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the builder was running");
    let log = std::fs::read_to_string(dir.path().join("logs/builder-1.log")).unwrap_or_default();
    assert!(status.success(), "{status}; the builder's log:\n{log}");
    assert_eq!(mounted(), 0, "mounts left behind after the builder stopped");
    let state = wait_for_farm(&farm, "slow ready again", Duration::from_secs(30), |s| {
        s.ready.iter().any(|r| r.pkgbase == "slow")
    })
    .await;
    assert!(
        !state.claims.iter().any(|c| c.pkgbase == "slow"),
        "{:?}",
        state.claims
    );
    farm.stop(Duration::from_secs(10)).await.unwrap();
}
