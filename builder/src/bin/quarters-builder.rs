//! `quarters-builder --config FILE`: runs a builder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use quarters_builder::config::BuilderConfig;

/// A Quarters builder: claims ready packages, builds them in clean roots, serves the results.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The builder's config file.
    #[arg(long, short, env = "QUARTERS_BUILDER_CONFIG")]
    config: PathBuf,
}

fn main() -> ExitCode {
    quarters_common::telemetry::init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quarters-builder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: &Args) -> anyhow::Result<()> {
    let config = BuilderConfig::load(&args.config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    quarters_builder::run(config, listener, quarters_common::shutdown::signal()).await
}
