//! `quartersctl`: the farm's command line: PKI, and a local demo farm.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quarters_common::{NodeName, pki};
use quarters_master::demo::{self, DemoOptions};

/// Command line for a Quarters build farm.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The farm's certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Node certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Runs a whole farm on this machine, on loopback, until Ctrl-C.
    Demo {
        /// How many builders to start.
        #[arg(long, default_value_t = 2)]
        builders: usize,
        /// Directory for the farm's CA, configs and logs (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the temporary directory when the demo ends.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Creates the farm CA: DIR/ca.pem and DIR/ca.key (mode 0600).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Replace an existing CA (every node certificate must then be issued again).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CertCommand {
    /// Issues NAME.pem and NAME.key (mode 0600), signed by the CA in --dir.
    Issue {
        /// The node's name, as the other nodes' configs call it.
        name: NodeName,
        /// Directory of the farm CA.
        #[arg(long)]
        dir: PathBuf,
        /// Further names or IP addresses for the certificate (for curl and browsers).
        #[arg(long = "san", value_name = "HOST")]
        sans: Vec<String>,
        /// Where to write the certificate and key (default: --dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing certificate and key.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if matches!(args.command, Command::Demo { .. }) {
        quarters_common::telemetry::init();
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quartersctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Ca(CaCommand::Init { dir, force }) => {
            let files = pki::init_ca(&dir, force)?;
            println!("farm CA: {}", files.cert.display());
            println!(
                "CA key:  {} (keep it off the builders)",
                files.key.display()
            );
        }
        Command::Cert(CertCommand::Issue {
            name,
            dir,
            sans,
            out,
            force,
        }) => {
            let out = out.unwrap_or_else(|| dir.clone());
            let files = pki::issue_cert(&dir, &out, &name, &sans, force)?;
            println!("certificate: {}", files.cert.display());
            println!("key:         {}", files.key.display());
        }
        Command::Demo {
            builders,
            dir,
            keep,
        } => {
            let options = DemoOptions {
                builders,
                dir,
                keep,
            };
            tokio::runtime::Runtime::new()?
                .block_on(demo::run(&options, quarters_common::shutdown::signal()))?;
        }
    }
    Ok(())
}
