//! `quartersctl demo`: a whole farm on this machine, on loopback: a fresh farm CA, a master and
//! N builders as real processes, over the bundled example packages (or a source given on the
//! command line). It builds everything, shows progress, promotes what built, prints a summary
//! and the URLs to look at, and runs until Ctrl-C.
//!
//! As root, builds are real (makepkg in fresh roots over a template made once with
//! `quarters-builder mkroot`); otherwise they are simulated, and the demo says so.

mod report;
pub(crate) mod source;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::localfarm::configs::{self, BuildRoot, BuilderExtra, MasterExtra, Source};
use crate::localfarm::{FarmSpec, LocalFarm};

pub use source::SourceSpec;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub builders: usize,
    /// Where to keep the farm's files; a fresh temporary directory if none.
    pub dir: Option<PathBuf>,
    /// Keep the temporary directory after the demo ends.
    pub keep: bool,
    /// The packages to build; the bundled examples if none.
    pub source: Option<SourceSpec>,
    /// The template root for real builds.
    pub template: PathBuf,
    /// Stop once everything is built and promoted, instead of serving until Ctrl-C.
    pub exit_when_done: bool,
}

/// Where the demo keeps its template root unless told otherwise.
pub const DEFAULT_TEMPLATE: &str = "/var/cache/quarters/template";

/// Runs the demo until `shutdown` completes (or until done, with `exit_when_done`).
pub async fn run(options: &DemoOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if options.builders == 0 {
        bail!("a farm needs at least one builder");
    }
    let exe = std::env::current_exe().context("locating quartersctl")?;
    let bin_dir = exe
        .parent()
        .context("quartersctl has no parent directory")?
        .to_owned();
    let (dir, temp) = match &options.dir {
        Some(dir) => {
            if dir.join("ca").exists() {
                bail!(
                    "{} already holds a farm; remove it or choose another --dir",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir)?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("quarters-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            (temp.path().to_owned(), Some(temp))
        }
    };

    let source = source::prepare(options.source.as_ref(), &dir)?;
    let real = nix::unistd::geteuid().is_root();
    if real {
        ensure_template(&options.template, &bin_dir)?;
    } else {
        println!(
            "Not running as root: builds are simulated (a real build needs namespaces and mounts)."
        );
    }
    let (master_extra, builder_extra) = extras(real, &options.template, source)?;
    let spec = FarmSpec {
        dir: dir.clone(),
        builders: options.builders,
        bin_dir,
        master_extra,
        builder_extra,
        signing: true,
    };
    let started = Instant::now();
    let mut farm = LocalFarm::start(&spec).await?;
    println!("Quarters demo farm in {}", dir.display());
    for node in farm.nodes() {
        println!(
            "  {:<10} {:<8} {}v1/state",
            node.name.as_str(),
            node.role.as_str(),
            node.url
        );
    }
    println!();

    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        () = &mut shutdown => None,
        outcome = report::follow_until_done(&farm, started) => Some(outcome?),
    };
    if let Some(done) = &outcome {
        let promoted = report::promote(&farm, &done.built).await;
        report::summary(&farm, done, &promoted);
        if !options.exit_when_done {
            println!("The farm goes on serving; Ctrl-C stops it.");
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {
                        if let Err(e) = farm.check_running() {
                            let _ = farm.stop(Duration::from_secs(10)).await;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }
    println!("Stopping the farm...");
    farm.stop(Duration::from_secs(10)).await?;
    match temp {
        Some(temp) if !options.keep => drop(temp),
        Some(temp) => {
            let _ = temp.keep();
            println!("The farm's files stay in {}", dir.display());
        }
        None => println!("The farm's files stay in {}", dir.display()),
    }
    Ok(())
}

/// The master's and the builders' config beyond what every local farm has: the source, and
/// real builds over `template` or simulated ones.
fn extras(
    real: bool,
    template: &Path,
    source: Source,
) -> anyhow::Result<(toml::Table, toml::Table)> {
    let master = MasterExtra {
        build_root: real.then(|| BuildRoot {
            template: template.to_owned(),
        }),
        sources: vec![source],
        ..MasterExtra::default()
    };
    let builder = match real {
        true => BuilderExtra::chroot(template),
        false => BuilderExtra::sim(0.005),
    };
    Ok((configs::table(&master)?, configs::table(&builder)?))
}

/// Makes the template root with `quarters-builder mkroot` if it is not there yet.
fn ensure_template(template: &Path, bin_dir: &Path) -> anyhow::Result<()> {
    if template.join("etc/quarters-template").is_file() {
        use std::os::unix::fs::MetadataExt as _;
        // A template made before builds ran in user namespaces still belongs to the host's
        // root: hand it to the build ids once.
        if std::fs::metadata(template)?.uid() == 0 {
            let status = std::process::Command::new(bin_dir.join("quarters-builder"))
                .arg("shift-root")
                .arg(template)
                .status()
                .context("running quarters-builder shift-root")?;
            if !status.success() {
                bail!("quarters-builder shift-root failed ({status})");
            }
        }
        return Ok(());
    }
    println!(
        "Making the template root in {} (once; about a minute)...",
        template.display()
    );
    let partial = template.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    if let Some(parent) = template.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = std::process::Command::new(bin_dir.join("quarters-builder"))
        .arg("mkroot")
        .arg(&partial)
        .status()
        .context("running quarters-builder mkroot")?;
    if !status.success() {
        bail!("quarters-builder mkroot failed ({status})");
    }
    std::fs::rename(&partial, template)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localfarm::write_unstarted;
    use quarters_builder::config::{BuilderConfig, BuilderFile, DriverConfig};
    use quarters_master::config::{MasterConfig, MasterFile};

    fn write_demo(dir: &Path, real: bool, template: &Path) -> (PathBuf, Vec<PathBuf>) {
        let source = source::prepare(None, dir).unwrap();
        let (master_extra, builder_extra) = extras(real, template, source).unwrap();
        let spec = FarmSpec {
            dir: dir.to_owned(),
            builders: 2,
            bin_dir: PathBuf::from("/nonexistent"),
            master_extra,
            builder_extra,
            signing: true,
        };
        let (master, builders) = write_unstarted(&spec);
        (
            master.config,
            builders.into_iter().map(|b| b.config).collect(),
        )
    }

    #[test]
    fn a_simulated_demo_farm_s_configs_load() {
        let dir = tempfile::tempdir().unwrap();
        let (master, builders) = write_demo(dir.path(), false, Path::new(DEFAULT_TEMPLATE));
        let m = MasterConfig::load(&master).unwrap();
        assert_eq!(m.sources.len(), 1);
        assert_eq!(m.sources[0].name, "examples");
        assert!(m.build_root.is_empty());
        assert!(m.signer.is_some());
        for b in builders {
            let c = BuilderConfig::load(&b).unwrap();
            assert!(matches!(c.driver, DriverConfig::Sim { time_scale } if time_scale == 0.005));
            assert!(c.farm_key.is_some());
        }
    }

    /// A real demo's configs need a template root to load in full; their keys and types are
    /// checked here by the nodes' first stage, which refuses unknown keys.
    #[test]
    fn a_real_demo_farm_s_configs_read() {
        let dir = tempfile::tempdir().unwrap();
        let template = Path::new("/var/cache/quarters demo/template");
        let (master, builders) = write_demo(dir.path(), true, template);
        let m: MasterFile = quarters_common::config::load(&master).unwrap();
        assert_eq!(m.build_root.template.as_deref(), Some(template));
        assert_eq!(m.sources.len(), 1);
        for b in builders {
            let c: BuilderFile = quarters_common::config::load(&b).unwrap();
            assert_eq!(c.driver, "chroot");
            assert_eq!(c.chroot.template.as_deref(), Some(template));
        }
    }
}
