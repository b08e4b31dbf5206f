//! The `odi` binary: parses arguments, sets up logging, and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use odi_agent::cmd::{self, keys, plan::PlanArgs, validate::ValidateArgs, CmdError};

#[derive(Debug, Parser)]
#[command(name = "odi", version, about = "Open Distribution Initiative: network tooling and agent")]
struct Cli {
    /// Log filter, like `info` or `odi_agent=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "ODI_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a network repository: signatures, trust, schema, cross-references.
    Validate {
        /// Network repository folder; must be a git repository with --commit or --since.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Read this commit's git objects instead of the work tree.
        #[arg(long)]
        commit: Option<String>,
        /// Base commit: serials must rise relative to it and --commit must descend from it.
        #[arg(long)]
        since: Option<String>,
        /// Pinned root key (base64 or a .pub file); repeatable. Without pins the lowest root
        /// version is trusted as found.
        #[arg(long = "pin")]
        pins: Vec<String>,
        /// Leave out the snapshot checks: for a pull request, whose snapshot the network's CI
        /// writes after the merge (agents always check it).
        #[arg(long)]
        without_snapshot: bool,
    },
    /// Show what a relay or directory would hold (and, with --base, download and delete).
    Plan {
        /// Relay or directory name.
        #[arg(long)]
        node: String,
        /// Network repository folder; must be a git repository with --commit or --base.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Plan this commit instead of the work tree.
        #[arg(long)]
        commit: Option<String>,
        /// Compare with this commit.
        #[arg(long)]
        base: Option<String>,
        /// Pinned root key; repeatable.
        #[arg(long = "pin")]
        pins: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// List every artifact held.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Generate a minisign key pair: NAME.key and NAME.pub.
    Keygen {
        /// Path prefix of the key files.
        name: PathBuf,
    },
    /// Sign files with a minisign secret key, writing FILE.minisig beside each.
    Sign {
        /// The secret key (`ODI_KEY_PASSWORD` unlocks an encrypted one).
        #[arg(long)]
        key: PathBuf,
        /// Files to sign.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a directory or relay agent until interrupted (SIGHUP pulls the repository now).
    Agent {
        /// Agent configuration (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print an agent's status for a person.
    Status {
        /// Base URL of the agent, like http://127.0.0.1:8080.
        url: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a whole local network on loopback (origin, meta-directory, two directories, three
    /// relays, each its own process) and print how to use it; Ctrl-C stops every node.
    Demo {
        /// Address of the entry point (the meta-directory) that clients use.
        #[arg(long, default_value = odi_agent::demo::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Keep the network (repository, keys, origin, agent configs and logs) in this folder;
        /// without it a temporary folder is removed at exit.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write and sign trust/snapshot.toml: every signed document of the work tree, with a
    /// raised serial and a short expiry (what the network's CI runs after each merge and on a
    /// schedule). The key must be one of the snapshot role's keys in the newest root.
    Snapshot {
        /// The snapshot role's secret key (`ODI_KEY_PASSWORD` unlocks an encrypted one).
        #[arg(long)]
        key: PathBuf,
        /// Network repository folder.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// How long the snapshot stays fresh, like 7d or 12h: agents refuse it after that.
        #[arg(long, default_value = "7d")]
        expires: String,
        /// Only add this key's signature to the snapshot as it is (k-of-n snapshot roles).
        #[arg(long)]
        sign_only: bool,
    },
    /// Draft and sign root versions.
    Root {
        #[command(subcommand)]
        command: RootCommand,
    },
    /// Write the JSON Schemas of every file kind into a folder.
    Schemas {
        /// Folder to write `<kind>.schema.json` into, created if missing; existing files are
        /// overwritten.
        #[arg(default_value = "schemas")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RootCommand {
    /// Write trust/roots/<N+1>.toml from the newest root N, to edit and then sign.
    New {
        /// Network repository folder.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Validity of the new root, like 365d.
        #[arg(long, default_value = "365d")]
        expires: String,
    },
    /// Add one key holder's signature to the newest root (a key of it or of the one before).
    Sign {
        /// A root key's secret key.
        #[arg(long)]
        key: PathBuf,
        /// Network repository folder.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    odi_agent::logging::init(&cli.log);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Problems were already printed one per line; the summary goes to stderr.
            eprintln!("error: {e:#}");
            match e.downcast_ref::<CmdError>() {
                Some(CmdError::Invalid { .. }) => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Validate { path, commit, since, pins, without_snapshot } => {
            cmd::validate::run(&ValidateArgs { path, commit, since, pins, without_snapshot })?
        }
        Command::Plan { node, path, commit, base, pins, json, verbose } => {
            cmd::plan::run(&PlanArgs { path, node, commit, base, pins, json, verbose })?
        }
        Command::Keygen { name } => {
            let (sk, pk, public) = keys::keygen(&name)?;
            println!("wrote {} and {}\npublic key: {public}", sk.display(), pk.display());
        }
        Command::Sign { key, files } => {
            for out in keys::sign(&key, &files)? {
                println!("wrote {}", out.display());
            }
        }
        Command::Agent { config } => {
            let config = odi_agent::config::Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(odi_agent::app::run_until_signalled(config))?;
        }
        Command::Status { url, json } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let text = rt.block_on(odi_agent::cmd::status::fetch_and_render(&url, json))?;
            print!("{text}");
        }
        Command::Snapshot { key, path, expires, sign_only } => {
            let valid = cmd::trust::parse_validity(&expires)?;
            let r = cmd::trust::snapshot(&path, &key, valid, sign_only)?;
            println!(
                "snapshot serial {}: {} documents, expires {}; signed into {}",
                r.serial,
                r.documents,
                odi_agent::status::rfc3339(r.expires),
                r.signature.display()
            );
        }
        Command::Root { command: RootCommand::New { path, expires } } => {
            let out = cmd::trust::root_new(&path, cmd::trust::parse_validity(&expires)?)?;
            println!(
                "wrote {}; edit it, then sign with `odi root sign --key <root key>`",
                out.display()
            );
        }
        Command::Root { command: RootCommand::Sign { key, path } } => {
            let out = cmd::trust::root_sign(&path, &key)?;
            println!("wrote {}", out.display());
        }
        Command::Demo { listen, dir } => {
            odi_agent::demo::run(odi_agent::demo::DemoOptions { listen, dir })?
        }
        Command::Schemas { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, json) in odi_network::schema::all() {
                let path = dir.join(name);
                std::fs::write(&path, json)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
