//! `quarters-builder --config FILE` runs a builder; `quarters-builder mkroot DIR` makes a
//! template root. (`quarters-builder sandbox ...` is the inside of a build's sandbox; the
//! builder starts it itself.)

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quarters_builder::config::BuilderConfig;
use quarters_builder::sandbox;

/// A Quarters builder: claims ready packages, builds them in clean roots, serves the results.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    /// The builder's config file.
    #[arg(long, short, env = "QUARTERS_BUILDER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Makes a template root in DIR: pacstrap on Arch, debootstrap on Debian.
    Mkroot { dir: PathBuf },
    /// The inside of a build's sandbox (started by the builder through unshare).
    #[command(hide = true)]
    Sandbox {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        uid: u32,
        #[arg(long)]
        gid: u32,
        #[arg(long)]
        workdir: PathBuf,
        #[arg(long)]
        report: PathBuf,
        #[arg(long, default_value_t = 512)]
        nproc: u64,
        /// HOST:INSIDE
        #[arg(long = "bind")]
        binds: Vec<String>,
        /// Size of the build's /tmp, in MiB.
        #[arg(long, default_value_t = 1024)]
        tmp_mib: u64,
        /// Size of the build's /dev/shm, in MiB.
        #[arg(long, default_value_t = 256)]
        shm_mib: u64,
        /// Size of the root's writable layer, in MiB, for the report.
        #[arg(long, default_value_t = 16384)]
        root_mib: u64,
        /// NAME=VALUE
        #[arg(long = "env")]
        env: Vec<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Sandbox {
        root,
        uid,
        gid,
        workdir,
        report,
        nproc,
        binds,
        tmp_mib,
        shm_mib,
        root_mib,
        env,
        command,
    }) = args.command
    {
        let split =
            |s: &str, sep: char| s.split_once(sep).map(|(a, b)| (a.to_owned(), b.to_owned()));
        let spec = sandbox::Spec {
            root,
            uid,
            gid,
            workdir,
            binds: binds
                .iter()
                .filter_map(|b| sandbox::Bind::parse(b))
                .collect(),
            tmp_mib,
            shm_mib,
            root_mib,
            env: env.iter().filter_map(|e| split(e, '=')).collect(),
            report,
            nproc,
            command,
        };
        return sandbox::run(&spec);
    }
    quarters_common::telemetry::init();
    let result = match args.command {
        Some(Command::Mkroot { dir }) => quarters_builder::mkroot::mkroot(&dir),
        Some(Command::Sandbox { .. }) => unreachable!("handled above"),
        None => match args.config {
            Some(config) => serve(&config),
            None => Err(anyhow::anyhow!("--config FILE is required")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quarters-builder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(config: &std::path::Path) -> anyhow::Result<()> {
    let config = BuilderConfig::load(config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    quarters_builder::run(config, listener, quarters_common::shutdown::signal()).await
}
