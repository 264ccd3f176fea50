//! `quarters-master --config FILE` runs the master; `quarters-master scan --config FILE` prints
//! what its sources hold.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quarters_master::config::MasterConfig;

/// The Quarters master: watches package sources, publishes the ready list, keeps the repos.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    /// The master's config file.
    #[arg(long, short, env = "QUARTERS_MASTER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Scans every source once and prints each package with its metadata or its error, without
    /// starting the server.
    Scan {
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Writes this program's man pages and shell completions into DIR (contrib/install.sh).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

fn main() -> ExitCode {
    quarters_common::telemetry::init();
    let args = Args::parse();
    let result = match args.command {
        Some(Command::Scan { config, json }) => scan(&config, json),
        Some(Command::GenerateDocs { dir }) => {
            use clap::CommandFactory as _;
            quarters_common::docs::write(Args::command(), &dir)
                .map(|_| ExitCode::SUCCESS)
                .with_context(|| format!("writing the docs into {}", dir.display()))
        }
        None => match args.config {
            Some(config) => serve(&config),
            None => Err(anyhow::anyhow!("--config FILE is required")),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quarters-master: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn scan(config: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = MasterConfig::load(config)?;
    let all_read = quarters_master::scan::print_scan(&config, json, &mut std::io::stdout().lock())?;
    Ok(if all_read {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[tokio::main]
async fn serve(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = MasterConfig::load(config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    quarters_master::run(config, listener, quarters_common::shutdown::signal()).await?;
    Ok(ExitCode::SUCCESS)
}
