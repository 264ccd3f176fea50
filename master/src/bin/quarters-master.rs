//! `quarters-master --config FILE`: runs the master.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use quarters_master::config::MasterConfig;

/// The Quarters master: watches package sources, publishes the ready list, keeps the repos.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The master's config file.
    #[arg(long, short, env = "QUARTERS_MASTER_CONFIG")]
    config: PathBuf,
}

fn main() -> ExitCode {
    quarters_common::telemetry::init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quarters-master: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: &Args) -> anyhow::Result<()> {
    let config = MasterConfig::load(&args.config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    quarters_master::run(config, listener, quarters_common::shutdown::signal()).await
}
