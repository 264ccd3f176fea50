//! The chroot driver: each build in a fresh overlay root, stage by stage, as in pbulk:
//!
//! * `prepare`: the root (overlay over the template, writable layer on a tmpfs), the source
//!   tarball fetched, checked and unpacked into `/build`, the builder's read-only `/quarters`
//!   (pacman's configuration, downloaded dependencies, the build's packages) bound in;
//! * `depends`: what the package needs and the root lacks, downloaded by the host's pacman from
//!   the master's build repository (over HTTPS, trusting the farm CA; it installs nothing) and
//!   installed by pacman inside the sandbox, as root of the build's user namespace;
//! * `fetch`: the sources the `.SRCINFO` lists, fetched by the builder into the package's own
//!   cache and checked ([`crate::upstream`]); no code of the package runs;
//! * `build`: `makepkg` in the sandbox as the build user, the cache seen through an overlay;
//! * `install`: the packages installed into the root by pacman inside the sandbox, from the
//!   builder's copies, so that an uninstallable package fails here;
//! * `cleanup`: the root unmounted and gone.
//!
//! Every sandboxed stage runs in new user, mount, PID, IPC, UTS and network namespaces
//! ([`crate::sandbox`]), under the watchdog, without a network.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use quarters_common::client::PeerClient;
use tokio::process::Command;

use tokio_util::sync::CancellationToken;

use super::capped_log::CappedLog;
use super::{FIRST_PAUSE, FetchError, Job, Measured, Outcome, Stage, TRIES, fetch_source, log};
use crate::cgroups::{BuildGroup, Builds};
use crate::config::ChrootConfig;
use crate::mounts::{Bind, BuildRoot};
use crate::sandbox::{self, Report};
use crate::upstream::Fetcher;
use crate::watchdog::{self, Ending, Limits, Usage};

/// Most processes the build user may have at once: a fork bomb stops here.
const NPROC: u64 = 512;

#[derive(Clone, Debug)]
pub struct ChrootDriver {
    pub config: ChrootConfig,
    /// Fetches the packages' sources into their caches.
    pub fetcher: Fetcher,
    /// The farm CA, for the host's pacman.
    pub ca: PathBuf,
    /// The keyring trusting the farm key, when dependencies must be signed by it.
    pub keyring: Option<PathBuf>,
    /// The builder's source cache.
    pub srcdest: PathBuf,
    /// This program, which is also the sandbox.
    pub exe: PathBuf,
    /// Where each build gets its cgroup; `None` where the machine gives the builder none (it
    /// said so at start-up).
    pub cgroups: Option<Builds>,
}

type StageResult = Result<Usage, Stop>;

/// Why the stages stopped.
#[derive(Debug)]
enum Stop {
    /// The package failed in this stage, for this reason.
    Failed(Stage, String),
    /// Something outside the package failed (the master unreachable): hand the package back.
    RetryLater(String),
}

/// Where and how a sandboxed stage runs.
struct Sandboxed<'a> {
    stage: Stage,
    root: &'a Path,
    workdir: PathBuf,
    /// The command's uid inside: the build user, or root of the build's user namespace.
    uid: u32,
    /// The build's cgroup, which the sandbox enters before it starts anything.
    group: Option<&'a BuildGroup>,
}

impl<'a> Sandboxed<'a> {
    /// A command of `stage` run as root of the build's user namespace, from `/`: the steps
    /// that install packages into the root.
    fn as_root(stage: Stage, root: &'a Path, group: Option<&'a BuildGroup>) -> Self {
        Sandboxed {
            stage,
            root,
            workdir: "/".into(),
            uid: 0,
            group,
        }
    }
}

/// Where the builder's files for pacman inside the sandbox appear: its configuration, the
/// dependencies it downloaded, and the packages the build made.
const QUARTERS_INSIDE: &str = "/quarters";
const DEPS_INSIDE: &str = "/quarters/deps";
const PACKAGES_INSIDE: &str = "/quarters/packages";

/// The builder's directory bound read-only at [`QUARTERS_INSIDE`]: owned by the host's root,
/// so that nothing in the build can change what pacman reads.
struct Quarters {
    dir: PathBuf,
    deps: PathBuf,
}

impl Quarters {
    fn create(job_dir: &Path) -> Result<Self, String> {
        let dir = job_dir.join("quarters");
        let _ = std::fs::remove_dir_all(&dir);
        let deps = dir.join("deps");
        for d in [&deps, &dir.join("packages")] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        // No repositories: pacman inside installs files it is given, and downloads nothing.
        std::fs::write(
            dir.join("pacman.conf"),
            "[options]\nArchitecture = auto\nSigLevel = Never\nLocalFileSigLevel = Never\n",
        )
        .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Quarters { dir, deps })
    }

    fn bind(&self) -> Bind {
        Bind {
            host: self.dir.clone(),
            inside: QUARTERS_INSIDE.into(),
            read_only: true,
        }
    }

    /// The package files the host's pacman downloaded.
    fn downloaded(&self) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.deps).map_err(|e| e.to_string())? {
            let name = entry.map_err(|e| e.to_string())?.file_name();
            let name = name.to_string_lossy();
            if name.contains(".pkg.tar") && !name.ends_with(".sig") && !name.ends_with(".part") {
                names.push(name.into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// `pacman ARGS` inside the sandbox, with the builder's configuration.
    /// `pacman -U` with `flags` of `files`, which are in `dir` inside the sandbox.
    fn pacman_add(flags: &[&str], dir: &str, files: &[String]) -> Vec<String> {
        let mut cmd = Self::pacman_inside(flags);
        cmd.extend(files.iter().map(|f| format!("{dir}/{f}")));
        cmd
    }

    fn pacman_inside(args: &[&str]) -> Vec<String> {
        let conf = format!("{QUARTERS_INSIDE}/pacman.conf");
        ["pacman", "--config", &conf, "--noconfirm"]
            .iter()
            .chain(args)
            .map(|s| (*s).to_owned())
            .collect()
    }
}

impl ChrootDriver {
    pub async fn build(
        &self,
        job: &Job,
        master: &PeerClient,
        stage: &(dyn Fn(Stage) + Send + Sync),
        stop: &CancellationToken,
    ) -> Outcome {
        stage(Stage::Prepare);
        // The build's cgroup is the builder's to make: where it cannot be made, the package
        // is not at fault and goes back.
        let group = match &self.cgroups {
            Some(builds) => match BuildGroup::create(builds, &job.id, self.config.limits) {
                Ok(group) => Some(group),
                Err(e) => {
                    let reason = format!("the build's cgroup: {e}");
                    log(job, Stage::Prepare, &reason).await;
                    return Outcome::HandBack { reason };
                }
            },
            None => None,
        };
        let root =
            match BuildRoot::create(&self.config.template, &job.dir, self.config.root_size_mib) {
                Ok(r) => r,
                Err(e) => {
                    log(job, Stage::Prepare, &e).await;
                    if let Some(group) = group {
                        let _ = group.remove();
                    }
                    return Outcome::failed(Stage::Prepare, e);
                }
            };
        log(
            job,
            Stage::Prepare,
            &format!(
                "root: overlay of {} at {}",
                self.config.template.display(),
                root.root.display()
            ),
        )
        .await;
        // Stopping drops the stages where they are: the sandbox's process is killed with its
        // command (`kill_on_drop`), and the root is cleaned up below as after any build.
        let result = tokio::select! {
            result = self.stages(job, master, stage, &root, group.as_ref()) => result,
            () = stop.cancelled() => Err(Stop::RetryLater(super::STOPPING.to_owned())),
        };
        stage(Stage::Cleanup);
        match root.remove() {
            Ok(()) => log(job, Stage::Cleanup, "root unmounted and removed").await,
            Err(e) => log(job, Stage::Cleanup, &e).await,
        }
        // After the root: its tmpfs pages are charged to the group until they are gone.
        if let Some(group) = group
            && let Err(e) = group.remove()
        {
            log(job, Stage::Cleanup, &e).await;
        }
        match result {
            Ok(usage) => Outcome::Built {
                measured: Measured {
                    cpu_ms: Some(usage.cpu_ms),
                    peak_memory_kb: Some(usage.peak_rss_kb),
                },
            },
            Err(Stop::Failed(stage, reason)) => Outcome::Failed { stage, reason },
            Err(Stop::RetryLater(reason)) => {
                log(
                    job,
                    Stage::Prepare,
                    &format!("handing the package back: {reason}"),
                )
                .await;
                Outcome::HandBack { reason }
            }
        }
    }

    async fn stages(
        &self,
        job: &Job,
        master: &PeerClient,
        stage: &(dyn Fn(Stage) + Send + Sync),
        build_root: &BuildRoot,
        group: Option<&BuildGroup>,
    ) -> StageResult {
        let p = &job.package;
        let root = build_root.root.as_path();
        fn fail(stage: Stage) -> impl Fn(String) -> Stop {
            move |reason| Stop::Failed(stage, reason)
        }
        let tarball = job.dir.join("source.tar.gz");
        let _ = tokio::fs::remove_file(&tarball).await;
        fetch_source(job, master, &tarball)
            .await
            .map_err(|e| match e {
                FetchError::Unavailable(e) => Stop::RetryLater(e),
                FetchError::Wrong(e) => Stop::Failed(Stage::Prepare, e),
            })?;
        let build = root.join("build");
        let uid = self.config.build_uid;
        unpack(&tarball, &build, self.config.ids.outside(uid)).map_err(fail(Stage::Prepare))?;
        let pkgdir = build.join(&p.pkgbase);
        // The builder reads the package directory on the host, as root: it must be what it
        // seems, not a link the tarball made to a directory of the host.
        if !is_real_dir(&pkgdir) {
            return Err(Stop::Failed(
                Stage::Prepare,
                format!("the source tarball's {} is not a directory", p.pkgbase),
            ));
        }
        if !pkgdir.join("PKGBUILD").is_file() {
            return Err(Stop::Failed(
                Stage::Prepare,
                format!("the source tarball has no {}/PKGBUILD", p.pkgbase),
            ));
        }
        let srcinfo = read_no_link(&pkgdir.join(".SRCINFO"))
            .map_err(|e| Stop::Failed(Stage::Prepare, format!("{}/.SRCINFO: {e}", p.pkgbase)))?;
        // The pacman configurations are the builder's, out of the build user's reach: one on
        // the host to download from the build repository, one bound read-only into the
        // sandbox to install what was downloaded.
        let quarters = Quarters::create(&job.dir).map_err(fail(Stage::Prepare))?;
        let repo = p.repo.as_str().trim_end_matches('/');
        let host_conf = job.dir.join("pacman-download.conf");
        std::fs::write(
            &host_conf,
            format!(
                "[options]\nArchitecture = auto\n{}\n[{}]\nServer = {repo}\n",
                self.download_options(),
                p.repo_db
            ),
        )
        .map_err(|e| Stop::Failed(Stage::Prepare, e.to_string()))?;

        // Each package has its own source cache: what one PKGBUILD writes there, no other
        // package ever reads. The name comes from the master's state, checked as any peer's
        // input: makepkg's rule makes it a plain directory name.
        let pkgbase = quarters_common::peer_input::PkgName::parse(&p.pkgbase)
            .map_err(|e| Stop::Failed(Stage::Prepare, e.to_string()))?;
        let srcdest = self.srcdest.join(pkgbase.as_str());
        std::fs::create_dir_all(&srcdest)
            .map_err(|e| Stop::Failed(Stage::Prepare, e.to_string()))?;
        chown(&srcdest, self.config.ids.outside(uid)).map_err(fail(Stage::Prepare))?;
        for bind in [
            quarters.bind(),
            Bind {
                host: job.artifacts.clone(),
                inside: PACKAGES_INSIDE.into(),
                read_only: true,
            },
        ] {
            build_root.bind(&bind).map_err(fail(Stage::Prepare))?;
        }

        stage(Stage::Depends);
        self.install_depends(job, root, group, &srcinfo, &host_conf, &quarters)
            .await?;

        stage(Stage::Fetch);
        // The builder fetches; nothing of the PKGBUILD runs until the sources are here.
        let mut lines = Vec::new();
        let fetched = self
            .fetcher
            .fetch_all(&srcinfo, &p.arch, &pkgdir, &srcdest, &mut lines)
            .await;
        log(job, Stage::Fetch, &lines.join("\n")).await;
        fetched.map_err(|e| {
            // One line: the reason is published; the log has the rest.
            let e: String = e.lines().next().unwrap_or("").chars().take(400).collect();
            Stop::Failed(Stage::Fetch, e)
        })?;

        stage(Stage::Build);
        // makepkg refuses a SRCDEST it cannot write to, even when every source is there: the
        // build writes to an overlay over the cache, and the cache itself stays as fetched.
        build_root
            .overlay(
                &srcdest,
                Path::new("/srcdest"),
                self.config.ids.outside(uid),
            )
            .map_err(fail(Stage::Build))?;
        let env = self.env(job);
        let building = Sandboxed {
            stage: Stage::Build,
            root,
            workdir: PathBuf::from("/build").join(&p.pkgbase),
            uid,
            group,
        };
        let makepkg = ["makepkg", "--noconfirm", "--nodeps", "--holdver"];
        let usage = self.sandboxed(job, &building, &env, &makepkg).await?;

        let packages = collect(&build.join("out"), &job.artifacts).map_err(fail(Stage::Build))?;
        if packages.is_empty() {
            return Err(Stop::Failed(Stage::Build, "makepkg made no package".into()));
        }
        log(
            job,
            Stage::Build,
            &format!("packages: {}", packages.join(", ")),
        )
        .await;

        stage(Stage::Install);
        // The packages installed are the builder's copies, the ones it serves: what the build
        // user left in /build/out is not read again.
        let cmd = Quarters::pacman_add(&["-U"], PACKAGES_INSIDE, &packages);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        self.sandboxed(
            job,
            &Sandboxed::as_root(Stage::Install, root, group),
            &env,
            &cmd,
        )
        .await?;
        Ok(usage)
    }

    fn env(&self, job: &Job) -> Vec<(String, String)> {
        let packager = super::packager(job);
        [
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("HOME", "/build"),
            ("LANG", "C"),
            ("TZ", "UTC"),
            ("SRCDEST", "/srcdest"),
            ("PKGDEST", "/build/out"),
            ("BUILDDIR", quarters_common::api::v1::BUILDDIR),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain(std::iter::once(("PACKAGER".to_owned(), packager)))
        // makepkg dates the packages and their files by it: with the packager, the build
        // path, the locale and the time zone the same on every builder, two honest builds of
        // the version can be the same bytes.
        .chain(
            job.package
                .source_date_epoch
                .map(|t| ("SOURCE_DATE_EPOCH".to_owned(), t.to_string())),
        )
        .collect()
    }

    /// Installs what the package needs and the root lacks: the host's pacman downloads it (and
    /// runs nothing of it), pacman inside the sandbox installs it, as root of the build's user
    /// namespace, with its scriptlets and hooks.
    async fn install_depends(
        &self,
        job: &Job,
        root: &Path,
        group: Option<&BuildGroup>,
        srcinfo: &str,
        conf: &Path,
        quarters: &Quarters,
    ) -> Result<(), Stop> {
        let failed = |e: String| Stop::Failed(Stage::Depends, e);
        let meta =
            quarters_parsers::PkgBase::from_srcinfo(srcinfo).map_err(|e| failed(e.to_string()))?;
        let target = meta.targets.get(&job.package.arch).ok_or_else(|| {
            failed(format!(
                "{} does not build for {}",
                job.package.pkgbase, job.package.arch
            ))
        })?;
        let mut deps: Vec<String> = target
            .packages
            .iter()
            .flat_map(|p| p.depends.iter().cloned())
            .collect();
        deps.extend(target.makedepends.iter().cloned());
        deps.extend(target.checkdepends.iter().cloned());
        deps.retain(|d| !target.packages.iter().any(|p| &p.pkgname == d));
        deps.sort();
        deps.dedup();
        if deps.is_empty() {
            log(job, Stage::Depends, "no dependencies").await;
            return Ok(());
        }
        // The host's pacman writes nothing into the root: its database directory is the
        // builder's, with the root's local database (the template's, untouched by any build
        // yet) linked in to resolve against.
        let dbpath = job.dir.join("pacman-db");
        std::fs::create_dir_all(&dbpath).map_err(|e| failed(e.to_string()))?;
        let local = dbpath.join("local");
        if !local.exists() {
            std::os::unix::fs::symlink(root.join("var/lib/pacman/local"), &local)
                .map_err(|e| failed(format!("{}: {e}", local.display())))?;
        }
        let pacman = |args: &[&str]| {
            let mut cmd = self.host_pacman();
            cmd.arg("--root").arg(root).arg("--dbpath").arg(&dbpath);
            cmd.arg("--cachedir")
                .arg(&quarters.deps)
                .arg("--config")
                .arg(conf);
            cmd.arg("--logfile")
                .arg(job.logs.join("pacman.log"))
                .arg("--noconfirm")
                .args(args);
            cmd
        };
        // The build repository being out of reach (the master restarting) is not the package's
        // fault: try again for a while, then hand the package back.
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=TRIES {
            match run_logged(job, Stage::Depends, pacman(&["-Sy"])).await {
                Ok(()) => break,
                Err(e) if attempt == TRIES => {
                    return Err(Stop::RetryLater(format!(
                        "the build repository is out of reach: {e}"
                    )));
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        // `pacman -T` prints the dependencies the root does not satisfy.
        let mut test = pacman(&["-T"]);
        test.args(&deps);
        let out = test
            .output()
            .await
            .map_err(|e| failed(format!("pacman -T: {e}")))?;
        let missing: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        if missing.is_empty() {
            log(
                job,
                Stage::Depends,
                &format!("already satisfied: {}", deps.join(" ")),
            )
            .await;
            return Ok(());
        }
        log(
            job,
            Stage::Depends,
            &format!("downloading {}", missing.join(" ")),
        )
        .await;
        let mut download = pacman(&["-Sw"]);
        download.args(&missing);
        run_logged(job, Stage::Depends, download)
            .await
            .map_err(failed)?;
        let files = quarters.downloaded().map_err(failed)?;
        let cmd = Quarters::pacman_add(&["-U", "--asdeps"], DEPS_INSIDE, &files);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        self.sandboxed(
            job,
            &Sandboxed::as_root(Stage::Depends, root, group),
            &self.env(job),
            &cmd,
        )
        .await
        .map(|_| ())
    }

    /// The `[options]` of the host's pacman that downloads dependencies.
    ///
    /// With the farm key, every package and database must carry its signature, and pacman's
    /// own downloader fetches them: pacman 6.0 (Debian's) never asks an `XferCommand` for a
    /// database's `.sig`, so curl with the farm CA, which serves unsigned farms, would make
    /// every signed database look unsigned.
    fn download_options(&self) -> String {
        match &self.keyring {
            Some(keyring) => format!("SigLevel = Required\nGPGDir = {}\n", keyring.display()),
            None => format!(
                "SigLevel = Never\nXferCommand = /usr/bin/curl --cacert {} -sSf -o %o %u\n",
                self.ca.display()
            ),
        }
    }

    /// The host's pacman. With the farm key it uses its own downloader, which trusts the
    /// system's CA bundle: it runs in a mount namespace of its own where that bundle is the
    /// farm CA, so that it reaches the master and nothing changes on the host. (libcurl still
    /// trusts the certificates in `/etc/ssl/certs` as well; what it downloads is trusted only
    /// for its signatures, which the farm key alone makes.)
    fn host_pacman(&self) -> Command {
        if self.keyring.is_none() {
            return Command::new("pacman");
        }
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec pacman "$@""#)
            .arg(&self.ca);
        cmd
    }

    /// Runs `command` in a sandbox as `at` says, under the watchdog.
    async fn sandboxed(
        &self,
        job: &Job,
        at: &Sandboxed<'_>,
        env: &[(String, String)],
        command: &[&str],
    ) -> StageResult {
        let Sandboxed {
            stage,
            root,
            ref workdir,
            uid,
            group,
        } = *at;
        let setup = |e: String| Stop::Failed(stage, e);
        // Written by the sandbox's init, root of the build's user namespace: the builder makes
        // the file and hands it over, and reads it when the stage has ended.
        let report_path = job.dir.join(format!("{stage}.report.json"));
        let _ = std::fs::remove_file(&report_path);
        std::fs::write(&report_path, b"").map_err(|e| setup(e.to_string()))?;
        chown(&report_path, self.config.ids.outside(0)).map_err(setup)?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(job.logs.join(format!("{stage}.log")))
            .map_err(|e| setup(e.to_string()))?;
        let spec = sandbox::Spec {
            root: root.to_owned(),
            uid,
            workdir: workdir.clone(),
            tmp_mib: self.config.tmp_size_mib,
            shm_mib: self.config.shm_size_mib,
            root_mib: self.config.root_size_mib,
            env: env.to_vec(),
            report: report_path.clone(),
            nproc: NPROC,
            init: false,
            inherited_fds: Vec::new(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
        };
        let (output, capped) = CappedLog::start(log_file, self.config.max_log_bytes)
            .map_err(|e| setup(format!("the stage's log: {e}")))?;
        let mut cmd = spec.command(&self.exe);
        cmd.stdin(Stdio::piped())
            .stdout(output.try_clone().map_err(|e| setup(e.to_string()))?)
            .stderr(output)
            .process_group(0);
        let mut child = Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| setup(format!("starting the sandbox: {e}")))?;
        let mut stdin = child.stdin.take().ok_or_else(|| setup("no stdin".into()))?;
        let pid = child
            .id()
            .ok_or_else(|| setup("the sandbox ended at once".into()))?;
        // The entry waits for its id map before it starts anything: whatever the stage runs
        // is in the group from its first instruction.
        let events_before = group.map(BuildGroup::events).unwrap_or_default();
        if let Some(group) = group
            && let Err(e) = group.enter(pid)
        {
            let _ = child.kill().await;
            return Err(Stop::RetryLater(format!(
                "entering the build's cgroup: {e}"
            )));
        }
        if let Err(e) = sandbox::map_ids(pid, self.config.ids, &mut stdin).await {
            let _ = child.kill().await;
            return Err(setup(format!("the sandbox could not be set up: {e}")));
        }
        drop(stdin);
        let limits = Limits {
            hang: self.config.hang_timeout,
            wall: self.config.wall_limit,
            cpu: self.config.cpu_limit,
        };
        let (ending, watched) = watchdog::watch(&mut child, limits).await;
        // The namespace is gone with the entry, and with it every writer of the pipe.
        match capped.finish(Duration::from_secs(10)).await {
            Ok(copied) if copied.was_cut() => tracing::info!(
                build = %job.id,
                %stage,
                written = copied.written,
                "the stage's log was cut at its limit"
            ),
            Ok(_) => {}
            Err(e) => log(job, stage, &e).await,
        }
        let report: Option<Report> = std::fs::read(&report_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let usage = Usage {
            cpu_ms: report
                .as_ref()
                .map_or(watched.cpu_ms, |r| r.cpu_ms.max(watched.cpu_ms)),
            peak_rss_kb: report.as_ref().map_or(watched.peak_rss_kb, |r| {
                r.max_rss_kb.max(watched.peak_rss_kb)
            }),
        };
        // A stage that reached one of its cgroup's limits failed for that limit, whatever its
        // command made of it (a killed compiler, a fork that failed): named first.
        let reached = group.and_then(|g| g.reached_since(events_before));
        let fail = |reason: String| {
            Err(Stop::Failed(
                stage,
                match &reached {
                    Some(limit) => format!("{limit}; {reason}"),
                    None => reason,
                },
            ))
        };
        match ending {
            Ending::Hung(d) => fail(format!(
                "hung: no new process and no CPU progress for {}",
                secs(d)
            )),
            Ending::WallLimit(d) => fail(format!("over the wall-clock limit of {}", secs(d))),
            Ending::CpuLimit(d) => fail(format!("over the CPU-time limit of {}", secs(d))),
            Ending::Exited(status) => match report {
                None => fail(format!(
                    "the sandbox could not be set up ({status}); see the {stage} log"
                )),
                Some(r) if !r.left_behind.is_empty() => fail(left_behind(&r.left_behind)),
                Some(r) if r.exit_code == Some(0) => Ok(usage),
                Some(r) => {
                    let how = match (r.exit_code, r.signal) {
                        (Some(code), _) => format!("exit status {code}"),
                        (None, Some(signal)) => format!("killed by {signal}"),
                        (None, None) => status.to_string(),
                    };
                    fail(if r.full.is_empty() {
                        how
                    } else {
                        format!("{how}; out of space: {} full", r.full.join(", "))
                    })
                }
            },
        }
    }
}

/// The failure reason for processes left behind: how many, and the first few.
fn left_behind(processes: &[String]) -> String {
    const SHOWN: usize = 3;
    let shown: Vec<String> = processes
        .iter()
        .take(SHOWN)
        .map(|p| p.chars().take(80).collect())
        .collect();
    let more = processes.len().saturating_sub(SHOWN);
    format!(
        "left {} process(es) running, killed: {}{}",
        processes.len(),
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

async fn run_logged(job: &Job, stage: Stage, mut cmd: Command) -> Result<(), String> {
    let out = cmd.output().await.map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    log(job, stage, text.trim_end()).await;
    if out.status.success() {
        Ok(())
    } else {
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned();
        Err(format!("pacman failed ({}): {last}", out.status))
    }
}

/// Unpacks the source tarball into `dir` and gives it to `owner` (the build user's host id).
/// The tar crate refuses entries that would land outside `dir`.
fn unpack(tarball: &Path, dir: &Path, owner: u32) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = std::fs::File::open(tarball).map_err(|e| format!("{}: {e}", tarball.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.set_preserve_ownerships(false);
    archive
        .unpack(dir)
        .map_err(|e| format!("unpacking the source: {e}"))?;
    for sub in ["out", "work"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
    }
    chown_tree(dir, owner)
}

fn chown(path: &Path, uid: u32) -> Result<(), String> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
    )
    .map_err(|e| format!("chown {}: {e}", path.display()))
}

fn chown_tree(path: &Path, uid: u32) -> Result<(), String> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| format!("chown {}: {e}", path.display()))?;
    if std::fs::symlink_metadata(path)
        .map_err(|e| e.to_string())?
        .is_dir()
    {
        for entry in std::fs::read_dir(path).map_err(|e| e.to_string())? {
            chown_tree(&entry.map_err(|e| e.to_string())?.path(), uid)?;
        }
    }
    Ok(())
}

/// Copies the packages makepkg wrote in `out` (regular files only, in a real directory: a
/// symlink the build made must not make the builder read its own files) into `artifacts`.
/// Whether `path` is a directory and not a link to one.
fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Reads a file of the package without following a link in its last component (the caller
/// has checked the directories above it).
fn read_no_link(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => "a link".to_owned(),
            _ => e.to_string(),
        })?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

fn collect(out: &Path, artifacts: &Path) -> Result<Vec<String>, String> {
    // The build user owns /build: it may have made `out` a link to a directory of the host.
    if !is_real_dir(out) {
        return Err("/build/out is not a directory".into());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(out).map_err(|e| format!("{}: {e}", out.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(entry.path()).map_err(|e| e.to_string())?;
        if !meta.is_file() || !name.contains(".pkg.tar") {
            continue;
        }
        std::fs::copy(entry.path(), artifacts.join(&name)).map_err(|e| format!("{name}: {e}"))?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_that_links_its_output_to_the_host_gets_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host-cache");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("secret-1-1-any.pkg.tar.zst"), b"host").unwrap();
        let out = dir.path().join("out");
        std::os::unix::fs::symlink(&host, &out).unwrap();
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir(&artifacts).unwrap();
        assert_eq!(
            collect(&out, &artifacts).unwrap_err(),
            "/build/out is not a directory"
        );
        assert_eq!(std::fs::read_dir(&artifacts).unwrap().count(), 0);
    }

    #[test]
    fn package_files_are_read_only_when_they_are_no_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host"), b"host").unwrap();
        std::os::unix::fs::symlink(dir.path().join("host"), dir.path().join(".SRCINFO")).unwrap();
        assert_eq!(
            read_no_link(&dir.path().join(".SRCINFO")).unwrap_err(),
            "a link"
        );
        assert_eq!(read_no_link(&dir.path().join("host")).unwrap(), "host");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("pkg")).unwrap();
        assert!(!is_real_dir(&dir.path().join("pkg")));
        assert!(is_real_dir(dir.path()));
    }
}
