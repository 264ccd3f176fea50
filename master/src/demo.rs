//! `quartersctl demo`: a local farm on loopback, for a first look at Quarters.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::localfarm::{FarmSpec, LocalFarm};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub builders: usize,
    /// Where to keep the farm's files; a fresh temporary directory if none.
    pub dir: Option<PathBuf>,
    /// Keep the temporary directory after the demo ends.
    pub keep: bool,
}

/// Starts the farm, prints where to look, and runs until `shutdown` completes.
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

    let spec = FarmSpec {
        dir: dir.clone(),
        builders: options.builders,
        bin_dir,
        master_extra: String::new(),
        builder_extra: "driver = \"sim\"".to_owned(),
    };
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
    println!("Logs: {}/logs/", dir.display());
    println!();
    println!("Read a node's state:");
    println!(
        "  curl --cacert {} {}v1/state",
        farm.ca_cert.display(),
        farm.master.url
    );
    println!("Long-poll it (answers when it changes, or 304 after 30 s):");
    println!(
        "  curl --cacert {} '{}v1/state?wait=30&after=GENERATION'",
        farm.ca_cert.display(),
        farm.master.url
    );
    let state = farm.wait_builders_up(Duration::from_secs(30)).await?;
    println!();
    println!("The master sees all {} builders up.", state.builders.len());
    println!("Ctrl-C stops the farm.");

    tokio::pin!(shutdown);
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
