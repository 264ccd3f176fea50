//! `quartersctl`: the farm's command line: PKI, the master's spool (promote, retry, status,
//! why, builder), a local demo farm, and the scheduling simulator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use quarters_common::api::v1::ctl::Command as CtlCommand;
use quarters_common::{NodeName, pki};
use quarters_ctl::demo::{self, DemoOptions};
use quarters_ctl::simulate::{self, SimulateOptions};

/// Command line for a Quarters build farm.
#[derive(Parser, Debug)]
#[command(name = "quartersctl", version)]
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
    /// The farm's OpenPGP signing key, and the signer that alone reads it.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Moves packages from the build repository into the live one.
    Promote {
        /// Packages (pkgbase or pkgname).
        #[arg(required = true)]
        packages: Vec<String>,
        /// Promote the dependencies that are not live yet too.
        #[arg(long)]
        with_deps: bool,
        /// Where the farm requires verification: promote what no independent build has
        /// reproduced yet, for this reason, which is recorded.
        #[arg(long, value_name = "REASON")]
        force: Option<String>,
        #[command(flatten)]
        master: MasterSpool,
    },
    /// Puts a failed package back in the ready list.
    Retry {
        package: String,
        #[command(flatten)]
        master: MasterSpool,
    },
    /// The farm at a glance.
    Status {
        #[command(flatten)]
        master: MasterReader,
    },
    /// Why a package is in the state it is in.
    Why {
        package: String,
        #[command(flatten)]
        master: MasterReader,
    },
    /// The builders: list them, or take one out of the farm and back.
    #[command(subcommand)]
    Builder(BuilderCommand),
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
        /// What to build: git:PATH, svn:URL or cvs:CVSROOT:MODULE (default: the bundled examples).
        #[arg(long)]
        source: Option<demo::SourceSpec>,
        /// The template root of real builds (made with quarters-builder mkroot if missing).
        #[arg(long, default_value = demo::DEFAULT_TEMPLATE)]
        template: PathBuf,
        /// Stop once everything is built and promoted.
        #[arg(long)]
        exit_when_done: bool,
    },
    /// Measures scheduling on a dependency graph: policies against the lower bound without a
    /// network, then a real farm (master and N simulated builders over HTTPS on loopback).
    Simulate {
        /// `A -> B` lines: A is built before B.
        #[arg(long)]
        depgraph: PathBuf,
        /// Build times: a CSV with `pkgname` and `duration` (milliseconds) columns.
        #[arg(long)]
        history: Option<PathBuf>,
        #[arg(long, default_value_t = 8)]
        builders: usize,
        /// Simulated builds take their recorded time multiplied by this.
        #[arg(long, default_value_t = 0.002)]
        time_scale: f64,
        /// Only compare scheduling policies; start no farm.
        #[arg(long)]
        schedule_only: bool,
        /// Seconds to watch the farm idle after the build, measuring what polling costs.
        #[arg(long, default_value_t = 0)]
        idle: u64,
        /// Verify every package too (`[verification] mode = "advisory"`), and measure how long
        /// after the first builds the verifications are done; off by default.
        #[arg(long)]
        verify: bool,
        /// Directory for the farm's files (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the temporary directory.
        #[arg(long)]
        keep: bool,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Writes this program's man pages and shell completions into DIR (contrib/install.sh).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
    /// Writes a synthetic dependency graph and build history, in the formats `simulate` reads,
    /// larger than any real one at hand.
    GenerateGraph {
        #[arg(long)]
        packages: usize,
        /// Dependency cycles to plant.
        #[arg(long, default_value_t = 0)]
        cycles: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory to write `depgraph` and `history.csv` into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Which master to talk to: through its spool directory.
#[derive(ClapArgs, Debug)]
struct MasterSpool {
    /// The master's spool directory.
    #[arg(long, env = "QUARTERS_SPOOL")]
    spool: Option<PathBuf>,
    /// Or the master's config, whose state directory holds the spool.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// How long to wait for the master's answer, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// Which master to ask a question that changes nothing: through its spool, or over HTTPS from
/// any machine.
#[derive(ClapArgs, Debug)]
struct MasterReader {
    #[command(flatten)]
    spool: MasterSpool,
    /// Ask the master at this URL over HTTPS instead of through its spool.
    #[arg(long, requires = "ca")]
    master: Option<url::Url>,
    /// The farm's CA certificate, which the master's must be signed by (with --master).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The node name the master's certificate must carry (with --master).
    #[arg(long, default_value = "master")]
    master_name: String,
}

impl MasterReader {
    fn ask(&self, question: quarters_ctl::remote::Question) -> anyhow::Result<bool> {
        use quarters_ctl::remote::Question;
        let (Some(url), Some(ca)) = (&self.master, &self.ca) else {
            return self.spool.send(match question {
                Question::Status => CtlCommand::Status,
                Question::Why { package } => CtlCommand::Why { package },
            });
        };
        let answer = quarters_ctl::remote::ask(url, ca, &self.master_name, &question)?;
        Ok(print_answer(&answer))
    }
}

/// Prints `answer`, a refusal on stderr; whether it was not one.
fn print_answer(answer: &quarters_common::api::v1::ctl::Answer) -> bool {
    let text = quarters_ctl::render::render(answer);
    let ok = !matches!(
        answer,
        quarters_common::api::v1::ctl::Answer::Refused { .. }
    );
    if ok {
        print!("{text}");
    } else {
        eprint!("{text}");
    }
    ok
}

const DEFAULT_SPOOL: &str = "/var/lib/quarters/master/spool";

impl MasterSpool {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(spool) = &self.spool {
            return Ok(spool.clone());
        }
        if let Some(config) = &self.config {
            let file: quarters_master::config::MasterFile = quarters_common::config::load(config)?;
            let state_dir = quarters_common::config::resolve(config, &file.state_dir);
            return Ok(quarters_master::spool::spool_dir(&state_dir));
        }
        Ok(PathBuf::from(DEFAULT_SPOOL))
    }

    fn send(&self, command: CtlCommand) -> anyhow::Result<bool> {
        let dir = self.dir()?;
        let reply =
            quarters_master::spool::submit(&dir, command, Duration::from_secs(self.timeout))?;
        Ok(print_answer(&reply.answer))
    }
}

#[derive(Subcommand, Debug)]
enum BuilderCommand {
    /// Every builder of the master's config, and whether the master validates it.
    List {
        #[command(flatten)]
        master: MasterSpool,
    },
    /// Quarantines a builder: its claims and builds count for nothing, and the other builders
    /// ignore its claims, until it is enabled again.
    Disable {
        builder: String,
        /// Why, for the master's state and log.
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
        #[command(flatten)]
        master: MasterSpool,
    },
    /// Lifts a builder's quarantine, whoever put it there.
    Enable {
        builder: String,
        #[command(flatten)]
        master: MasterSpool,
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
enum KeyCommand {
    /// Makes the farm's signing key: DIR/farm-key.asc (mode 0600) and DIR/farm-key.pub.asc.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The key's user id.
        #[arg(long, default_value = "Quarters build farm <quarters@localhost>")]
        user_id: String,
        /// Replace an existing key (every client must then trust the new one).
        #[arg(long)]
        force: bool,
    },
    /// Prints the keys clients should trust, armored, for `pacman-key --add` and builders'
    /// `farm_key`: the signing key, a staged next key, retired keys still listed. Their
    /// fingerprints go to stderr.
    Export {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Rotates the key in two steps: without --activate, stages a next key that `export` and
    /// keyring packages list at once while the current key goes on signing; with --activate,
    /// once clients and builders trust it, makes it the signing key (a running signer takes
    /// it at once, and the master signs everything again with it).
    Rotate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        activate: bool,
        /// The next key's user id.
        #[arg(long, default_value = "Quarters build farm <quarters@localhost>")]
        user_id: String,
    },
    /// Revokes a retired key: the next keyring package tells clients to stop trusting it.
    Revoke {
        fingerprint: String,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Writes the source of package NAME-keyring (the keys to trust and to revoke, for
    /// `pacman-key --populate NAME`) into OUT/NAME-keyring, for the farm to build.
    Package {
        /// The signer's key directory (only its public files are read).
        #[arg(long)]
        dir: PathBuf,
        /// Where the package's directory goes: the farm's source tree, say.
        #[arg(long)]
        out: PathBuf,
        /// The keyring's name (pacman-key --populate NAME).
        #[arg(long, default_value = "quarters")]
        name: String,
    },
    /// Runs the signer: the key in DIR, requests on a Unix socket that the master's config
    /// names. Run it as a user of its own, so that the master never can read the key.
    Serve {
        #[arg(long)]
        dir: PathBuf,
        /// The socket to listen on; created with mode 0660.
        #[arg(long)]
        socket: PathBuf,
        /// A user (uid) besides this one whose processes may ask for signatures: the master's.
        #[arg(long = "allow-uid", value_name = "UID")]
        allow_uids: Vec<u32>,
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
    if matches!(
        args.command,
        Command::Demo { .. } | Command::Simulate { .. } | Command::Key(KeyCommand::Serve { .. })
    ) {
        quarters_common::telemetry::init();
    }
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("quartersctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    match args.command {
        Command::Promote {
            packages,
            with_deps,
            force,
            master,
        } => {
            return master.send(CtlCommand::Promote {
                packages,
                with_deps,
                force,
            });
        }
        Command::Retry { package, master } => return master.send(CtlCommand::Retry { package }),
        Command::Status { master } => {
            return master.ask(quarters_ctl::remote::Question::Status);
        }
        Command::Why { package, master } => {
            return master.ask(quarters_ctl::remote::Question::Why { package });
        }
        Command::Builder(BuilderCommand::List { master }) => {
            return master.send(CtlCommand::BuilderList);
        }
        Command::Builder(BuilderCommand::Disable {
            builder,
            reason,
            master,
        }) => return master.send(CtlCommand::BuilderDisable { builder, reason }),
        Command::Builder(BuilderCommand::Enable { builder, master }) => {
            return master.send(CtlCommand::BuilderEnable { builder });
        }
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
        Command::Key(command) => key(command)?,
        Command::Demo {
            builders,
            dir,
            keep,
            source,
            template,
            exit_when_done,
        } => {
            let options = DemoOptions {
                builders,
                dir,
                keep,
                source,
                template,
                exit_when_done,
            };
            tokio::runtime::Runtime::new()?
                .block_on(demo::run(&options, quarters_common::shutdown::signal()))?;
        }
        Command::GenerateGraph {
            packages,
            cycles,
            seed,
            out,
        } => {
            std::fs::create_dir_all(&out)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
            let shape = simulate::generate::Shape {
                packages,
                cycles,
                seed,
            };
            let (graph, history) = simulate::generate::write(&out, shape)?;
            println!("{}\n{}", graph.display(), history.display());
        }
        Command::GenerateDocs { dir } => {
            use anyhow::Context as _;
            use clap::CommandFactory as _;
            quarters_common::docs::write(Args::command(), &dir)
                .with_context(|| format!("writing the docs into {}", dir.display()))?;
        }
        Command::Simulate {
            depgraph,
            history,
            builders,
            time_scale,
            schedule_only,
            idle,
            verify,
            dir,
            keep,
            json,
        } => {
            let options = SimulateOptions {
                depgraph,
                history,
                builders,
                time_scale,
                schedule_only,
                dir,
                keep,
                idle: Duration::from_secs(idle),
                verify,
                json,
            };
            tokio::runtime::Runtime::new()?
                .block_on(simulate::run(&options, quarters_common::shutdown::signal()))?;
        }
    }
    Ok(true)
}

fn key(command: KeyCommand) -> anyhow::Result<()> {
    use quarters_master::signing::{FarmKey, daemon, keydir};
    match command {
        KeyCommand::Init {
            dir,
            user_id,
            force,
        } => {
            let key = FarmKey::init(&dir, &user_id, force)?;
            println!("farm signing key: {}", key.fingerprint());
            println!(
                "secret key: {} (keep it on the signer's machine only)",
                dir.join(quarters_master::signing::key::SECRET_FILE)
                    .display()
            );
            println!(
                "public key: {}",
                dir.join(quarters_master::signing::key::PUBLIC_FILE)
                    .display()
            );
        }
        KeyCommand::Export { dir } => {
            let listed = keydir::listing(&dir)?;
            print!("{}", listed.exported());
            eprintln!("fingerprint: {}", listed.current.fingerprint);
            if let Some(next) = &listed.next {
                eprintln!(
                    "staged, signs after `key rotate --activate`: {}",
                    next.fingerprint
                );
            }
            for key in &listed.retired {
                eprintln!("retired, still listed: {}", key.fingerprint);
            }
        }
        KeyCommand::Rotate {
            dir,
            activate: false,
            user_id,
        } => {
            let next = keydir::stage(&dir, &user_id)?;
            println!("staged next key: {}", next.fingerprint());
            println!(
                "`key export` and keyring packages list it now; give it to clients and builders,\n\
                 then `quartersctl key rotate --activate --dir {}` makes it the signing key.",
                dir.display()
            );
        }
        KeyCommand::Rotate {
            dir,
            activate: true,
            ..
        } => {
            let (old, new) = keydir::activate(&dir)?;
            println!("farm signing key: {} (was {old})", new.fingerprint());
            println!(
                "A running signer signs with it from its next request, and the master signs again\n\
                 everything in both repositories. {old} stays listed until `key revoke` or until\n\
                 its file in {}/retired is removed.",
                dir.display()
            );
        }
        KeyCommand::Revoke { fingerprint, dir } => {
            keydir::revoke(&dir, &fingerprint)?;
            println!(
                "{fingerprint} is revoked: build the keyring package again (`key package`) so that clients stop trusting it."
            );
        }
        KeyCommand::Package { dir, out, name } => {
            let listed = keydir::listing(&dir)?;
            let pkg = quarters_master::signing::keyring::write_source(&listed, &name, &out)
                .map_err(|e| anyhow::anyhow!("writing into {}: {e}", out.display()))?;
            let trusted: Vec<String> = listed
                .trusted()
                .map(|k| k.fingerprint.to_string())
                .collect();
            println!("{}: the keyring of {}", pkg.display(), trusted.join(", "));
        }
        KeyCommand::Serve {
            dir,
            socket,
            allow_uids,
        } => {
            let keys = std::sync::Arc::new(daemon::KeyStore::load(&dir)?);
            let policy = daemon::Policy {
                allowed_uids: allow_uids,
                ..daemon::Policy::default()
            };
            tokio::runtime::Runtime::new()?.block_on(async {
                let listener = daemon::bind(&socket)?;
                tracing::info!(fingerprint = %keys.current().fingerprint(), socket = %socket.display(), "signing");
                daemon::run(listener, keys, policy, quarters_common::shutdown::signal()).await;
                let _ = std::fs::remove_file(&socket);
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}
