//! `quarters-builder --config FILE` runs a builder; `quarters-builder mkroot DIR` makes a
//! template root (`shift-root DIR` hands an older one to the build ids). (`quarters-builder sandbox ...` is the inside of a build's sandbox; the
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
    Mkroot {
        dir: PathBuf,
        /// The first host id of builds (`[chroot] id_base`): the root's files belong to them.
        #[arg(long, default_value_t = quarters_builder::ids::DEFAULT_BASE)]
        id_base: u32,
    },
    /// Hands an existing template root to the build ids (`[chroot] id_base`): what
    /// `mkroot` does to the roots it makes.
    ShiftRoot {
        dir: PathBuf,
        /// The first host id of builds.
        #[arg(long, default_value_t = quarters_builder::ids::DEFAULT_BASE)]
        id_base: u32,
    },
    /// The inside of a build's sandbox (the builder starts it).
    #[command(hide = true)]
    Sandbox(sandbox::Spec),
    /// Writes this program's man pages and shell completions into DIR (contrib/install.sh).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Sandbox(spec)) = &args.command {
        return sandbox::run(spec);
    }
    quarters_common::telemetry::init();
    let result = match args.command {
        Some(Command::Mkroot { dir, id_base }) => quarters_builder::ids::IdMap::new(id_base)
            .map_err(anyhow::Error::from)
            .and_then(|ids| quarters_builder::mkroot::mkroot(&dir, ids)),
        Some(Command::ShiftRoot { dir, id_base }) => quarters_builder::ids::IdMap::new(id_base)
            .map_err(anyhow::Error::from)
            .and_then(|ids| quarters_builder::mkroot::shift(&dir, ids)),
        Some(Command::Sandbox(_)) => unreachable!("handled above"),
        Some(Command::GenerateDocs { dir }) => {
            use clap::CommandFactory as _;
            quarters_common::docs::write(Args::command(), &dir)
                .map(|_| ())
                .with_context(|| format!("writing the docs into {}", dir.display()))
        }
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
