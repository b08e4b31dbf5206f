//! The `odi` binary: parses arguments, sets up logging, and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use odi_agent::cmd::{self, keys, plan::PlanArgs, validate::ValidateArgs, CmdError};

/// jemalloc rather than glibc's malloc: its background threads give memory a burst of
/// connections used back to the system once they close, where glibc's per-thread arenas kept
/// it. Measured in `flood::slow_readers_cost_a_relay_no_buffers` and bench/run.sh figure 1.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// Every node over HTTPS (HTTP/2, HSTS), with certificates from a local CA the demo
        /// makes and keeps at DIR/ca.pem; prints how to trust it.
        #[arg(long)]
        tls: bool,
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
        /// A document the last snapshot listed that is meant to be deleted; repeatable.
        /// Without it a missing document is refused, so a pushed deletion is never signed.
        #[arg(long = "remove")]
        remove: Vec<String>,
    },
    /// Start a new network repository: keys (into KEYDIR, never the repository), the first
    /// root, CI workflows, a README, and a first commit.
    Init {
        /// The new repository folder (created; must be empty).
        dir: PathBuf,
        /// Where the secret keys go; refused when inside DIR.
        #[arg(long)]
        keys: PathBuf,
        /// Root keys to generate.
        #[arg(long, default_value_t = 1)]
        root_keys: usize,
        /// Root key signatures a new root version needs.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
    },
    /// Publish: create catalogs, add and import artifacts, expunge.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
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

/// Options every publishing command takes.
#[derive(Debug, clap::Args)]
struct Publish {
    /// The maintainer's secret key the documents are signed with (`ODI_KEY_PASSWORD`
    /// unlocks an encrypted one).
    #[arg(long)]
    key: PathBuf,
    /// The network repository.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The snapshot key: re-sign trust/snapshot.toml after the change (otherwise run
    /// `odi snapshot`, or let the network's CI do it after the merge).
    #[arg(long)]
    snapshot_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Create catalogs/NAME/catalog.toml.
    New {
        /// Catalog name (the folder name, and the first path segment of its URLs).
        name: String,
        /// Where relays pull the bytes from (https://, http:// or file://); repeatable.
        #[arg(long = "origin", required = true)]
        origins: Vec<String>,
        /// A tag relays subscribe by, like `python`; repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Relays that hold each artifact.
        #[arg(long, default_value_t = 2)]
        replicas: u32,
        /// One line for people.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        publish: Publish,
    },
    /// Hash files and folders (all cores) and list them in the catalog.
    Add {
        /// Catalog name.
        name: String,
        /// Files and folders; a folder's files are listed by their path inside it.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// List them in catalogs/NAME/releases/RELEASE.toml instead of catalog.toml.
        #[arg(long)]
        release: Option<String>,
        /// Put the catalog paths under this folder, like `1.0`.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Publication time (RFC 3339), served as Last-Modified by every relay.
        #[arg(long)]
        published: Option<String>,
        /// Allow other bytes under a path already listed (normally refused: published paths
        /// are immutable).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        publish: Publish,
    },
    /// List the artifacts of an index that carries hashes, and record the import in the
    /// catalog for `odi catalog sync`: `sha256sums` (GNU or BSD `sha256sum` output), `apt` (a
    /// Debian repository), `pypi` (a simple index), `maven` (a repository tree) or `dir` (a
    /// local folder, hashed).
    Import {
        /// Catalog name.
        name: String,
        /// `sha256sums`, `apt`, `pypi`, `maven` or `dir`.
        #[arg(long)]
        format: odi_network::raw::ImportFormat,
        /// The index: the list file or URL (sha256sums); the root holding `dists/` (apt) or
        /// `simple/` (pypi); the repository root (maven); a folder (dir). Catalog paths are
        /// relative to it (to the list's folder for sha256sums).
        #[arg(long)]
        from: String,
        /// apt: the distributions to import (`dists/<DIST>/`, default `stable`); repeatable.
        #[arg(long = "dist")]
        dists: Vec<String>,
        /// Release files of at most this many entries are written.
        #[arg(long, default_value_t = odi_agent::cmd::catalog::DEFAULT_MAX_PER_FILE)]
        max_per_file: usize,
        /// Read every file and check it against the index before listing anything.
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        publish: Publish,
    },
    /// Import again from where the catalog records its import: list what the index gained and
    /// the new bytes of its index files; refuse other bytes under a published path.
    Sync {
        /// Catalog name.
        name: String,
        /// Commit the changed documents (and the snapshot, with --snapshot-key).
        #[arg(long)]
        commit: bool,
        #[command(flatten)]
        publish: Publish,
    },
    /// Withdraw an artifact: agents delete it and directories answer 410 with the reason.
    Expunge {
        /// Catalog name.
        name: String,
        /// The artifact's path in the catalog.
        path: String,
        /// Why (a security defect, a corrupted upload); shown to clients.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        publish: Publish,
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

fn catalog(command: CatalogCommand) -> anyhow::Result<()> {
    use odi_agent::cmd::catalog as c;
    let mut commit: Option<String> = None;
    let (report, publish) = match command {
        CatalogCommand::New { name, origins, tags, replicas, description, publish } => {
            let signer = c::Signer::load(&publish.key)?;
            (
                c::new(&publish.repo, &name, &description, &origins, &tags, replicas, &signer)?,
                publish,
            )
        }
        CatalogCommand::Add { name, paths, release, prefix, published, replace, publish } => {
            let signer = c::Signer::load(&publish.key)?;
            let published = published
                .map(|p| {
                    time::OffsetDateTime::parse(&p, &time::format_description::well_known::Rfc3339)
                        .map(odi_network::raw::Timestamp)
                        .map_err(|e| anyhow::anyhow!("--published {p}: {e}"))
                })
                .transpose()?;
            let mut files = Vec::new();
            for p in &paths {
                files.extend(c::walk(p)?);
            }
            let entries = c::hash_files(files, &prefix)?;
            let opts = c::ListOptions {
                release: release.as_deref(),
                published,
                replace,
                ..c::ListOptions::default()
            };
            (c::list(&publish.repo, &name, entries, &opts, &signer)?, publish)
        }
        CatalogCommand::Import { name, format, from, dists, max_per_file, verify, publish } => {
            let signer = c::Signer::load(&publish.key)?;
            let record = odi_network::raw::ImportRecord { format, from, dists };
            let (r, warnings) =
                cmd::import::import(&publish.repo, &name, record, max_per_file, verify, &signer)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            (r, publish)
        }
        CatalogCommand::Sync { name, commit: want_commit, publish } => {
            let signer = c::Signer::load(&publish.key)?;
            let (r, warnings) = cmd::import::sync(&publish.repo, &name, &signer)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            if want_commit {
                commit = Some(format!(
                    "catalog {name}: sync ({} added, {} index files changed)",
                    r.added, r.changed
                ));
            }
            (r, publish)
        }
        CatalogCommand::Expunge { name, path, reason, publish } => {
            let signer = c::Signer::load(&publish.key)?;
            (c::expunge(&publish.repo, &name, &path, &reason, &signer)?, publish)
        }
    };
    println!("{}", c::describe(&report));
    let mut written = report.written.clone();
    if let Some(k) = &publish.snapshot_key {
        if !report.written.is_empty() {
            written.push("trust/snapshot.toml".into());
            let r = cmd::trust::snapshot(&publish.repo, k, time::Duration::days(7), false, &[])?;
            println!(
                "snapshot serial {}: {} documents; signed into {}",
                r.serial,
                r.documents,
                r.signature.display()
            );
        }
    }
    if let Some(message) = commit {
        if report.written.is_empty() {
            println!("nothing changed; nothing to commit");
        } else {
            let id = cmd::import::commit(&publish.repo, &written, &message)?;
            println!("committed {id}: {message}");
        }
    }
    Ok(())
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
        Command::Snapshot { key, path, expires, sign_only, remove } => {
            let valid = cmd::trust::parse_validity(&expires)?;
            let r = cmd::trust::snapshot(&path, &key, valid, sign_only, &remove)?;
            println!(
                "snapshot serial {}: {} documents, expires {}; signed into {}",
                r.serial,
                r.documents,
                odi_agent::status::rfc3339(r.expires),
                r.signature.display()
            );
        }
        Command::Init { dir, keys, root_keys, threshold } => {
            let done = cmd::init::init(&dir, &keys, root_keys, threshold)?;
            println!("a new network in {} (commit {})", done.repo.display(), done.commit);
            for (role, path) in &done.keys {
                println!("  secret key {role}: {}", path.display());
            }
            let mk = keys.join("maintainer.key");
            println!(
                "next steps:
  cd {}
  odi catalog new NAME --origin URL --key {}
  odi catalog add NAME FILES... --key {} --snapshot-key {}
  odi validate . && git add -A && git commit -m 'first catalog'",
                dir.display(),
                mk.display(),
                mk.display(),
                keys.join("snapshot.key").display()
            );
        }
        Command::Catalog { command } => catalog(command)?,
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
        Command::Demo { listen, dir, tls } => {
            odi_agent::demo::run(odi_agent::demo::DemoOptions { listen, dir, tls })?
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
