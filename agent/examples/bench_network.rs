//! The network `bench/run.sh` measures: one catalog `bench` whose origin is a local folder
//! (`file://`), one directory and one relay on loopback, signed with fresh keys, committed
//! as a git repository, plus an agent configuration for each node.
//!
//! ```text
//! cargo run --release -p odi --example bench_network -- [--tls] OUT ORIGIN_DIR RELAY_PORT DIR_PORT FILE...
//! ```
//! Each FILE is a file name inside ORIGIN_DIR; it becomes the artifact `bench/<FILE>`. A FILE
//! `@LIST` stands for the names in the file LIST, one per line (more than a command line holds).
//! Writes `OUT/network` (the repository), `OUT/relay.toml` and `OUT/directory.toml`. With
//! `--tls` both nodes serve HTTPS (`https://` URLs in the network) with one self-signed P-256
//! certificate for `127.0.0.1` and `localhost`, `OUT/tls/cert.pem` and `key.pem`, which the
//! agents also trust for their own probes (`ca_file`) and a reference server can share.

use std::io::Read as _;
use std::path::Path;

use odi_network::builder::{commit_all, NetworkBuilder};
use odi_network::raw::{
    ArtifactEntry, CatalogFile, DirectoryFile, DirectoryKind, RelayFile, Sha256,
};
use odi_network::safe_path::ArtifactPath;
use sha2::Digest as _;

const CATALOG: &str = "bench";

fn sha256_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((size, h.finalize().into()));
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
}

fn config(
    mode: &str,
    name: &str,
    out: &Path,
    port: u16,
    key: &str,
    extra: &str,
    tls: bool,
) -> String {
    let (ca, tls) = if tls {
        let dir = out.join("tls");
        (
            format!("ca_file = \"{}\"\n", dir.join("cert.pem").display()),
            format!(
                "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                dir.join("cert.pem").display(),
                dir.join("key.pem").display()
            ),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "mode = \"{mode}\"\nname = \"{name}\"\ndata_dir = \"{data}\"\nlisten = [\"127.0.0.1:{port}\"]\n{ca}\n\
         [repository]\nurl = \"{repo}\"\nbranch = \"main\"\nroot_keys = [\"{key}\"]\ninterval = \"1h\"\n\n\
         [reconcile]\nscrub_interval = \"0s\"\n{extra}{tls}",
        data = out.join(format!("{name}-data")).display(),
        repo = out.join("network").display(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let tls = args.first().is_some_and(|a| a == "--tls");
    if tls {
        args.remove(0);
    }
    if args.len() < 5 {
        return Err(
            "usage: bench_network [--tls] OUT ORIGIN_DIR RELAY_PORT DIR_PORT FILE...".into()
        );
    }
    std::fs::create_dir_all(&args[0])?;
    let out = std::fs::canonicalize(&args[0])?;
    let origin_dir = std::fs::canonicalize(&args[1])?;
    let relay_port: u16 = args[2].parse()?;
    let dir_port: u16 = args[3].parse()?;

    let mut names = Vec::new();
    for arg in &args[4..] {
        match arg.strip_prefix('@') {
            Some(list) => names.extend(std::fs::read_to_string(list)?.lines().map(str::to_owned)),
            None => names.push(arg.clone()),
        }
    }
    let mut artifacts = Vec::new();
    for name in &names {
        let (size, sha) = sha256_file(&origin_dir.join(name))?;
        artifacts.push(ArtifactEntry {
            path: ArtifactPath::new(name)?,
            size,
            sha256: Sha256(sha),
            published: None,
            expunged: None,
        });
    }

    let scheme = if tls { "https" } else { "http" };
    if tls {
        let dir = out.join("tls");
        std::fs::create_dir_all(&dir)?;
        let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
        std::fs::write(dir.join("cert.pem"), c.cert.pem())?;
        std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem())?;
    }
    let mut b = NetworkBuilder::new()?;
    b.catalogs.insert(
        CATALOG.into(),
        CatalogFile {
            serial: 1,
            name: CATALOG.into(),
            description: "benchmark catalog".into(),
            tags: vec!["bench".into()],
            origins: vec![format!("file://{}/", origin_dir.display())],
            replicas: 1,
            import: None,
            artifacts,
        },
    );
    b.directories.insert(
        "bench-dir".into(),
        DirectoryFile {
            serial: 1,
            name: "bench-dir".into(),
            url: format!("{scheme}://127.0.0.1:{dir_port}/"),
            region: "local".into(),
            kind: DirectoryKind::Directory,
            contact: None,
            catalogs: vec![CATALOG.into()],
            links: vec![],
            references: vec![],
        },
    );
    b.relays.insert(
        "bench-relay".into(),
        RelayFile {
            serial: 1,
            name: "bench-relay".into(),
            url: format!("{scheme}://127.0.0.1:{relay_port}/"),
            region: "local".into(),
            contact: "bench@localhost".into(),
            quota: "2 GiB".parse()?,
            bandwidth: None,
            directories: vec!["bench-dir".into()],
            catalogs: vec![CATALOG.into()],
            tags: vec![],
            location: None,
            countries: vec![],
            exclude_countries: vec![],
        },
    );

    let repo = out.join("network");
    std::fs::create_dir_all(&repo)?;
    b.write(&repo)?;
    commit_all(&repo, "benchmark network")?;
    let key = b.root_keys[0].public().to_owned();
    std::fs::write(
        out.join("relay.toml"),
        config("relay", "bench-relay", &out, relay_port, &key, "", tls),
    )?;
    // Probes every few seconds: enough to route to the relay, quiet while wrk measures.
    std::fs::write(
        out.join("directory.toml"),
        config(
            "directory",
            "bench-dir",
            &out,
            dir_port,
            &key,
            "\n[directory]\nprobe_interval = \"5s\"\n",
            tls,
        ),
    )?;
    println!("{}", repo.display());
    Ok(())
}
