//! One wall-clock figure for the performance target "validate and plan a network of 100,000
//! artifacts and 1,000 relays: under 2 s".
//!
//! Generates the network (the same one `benches/network.rs` times), writes it as a git
//! repository, then times what `odi validate --commit HEAD` and `odi plan` do: reading the
//! commit's git objects, verifying and loading, assigning, and planning one relay.
//!
//! ```text
//! cargo run --release -p odi-network --example scale [-- DIR [ARTIFACTS [RELAYS]]]
//! ```
//! With DIR the repository is kept there (to time the real binary on it:
//! `time target/release/odi validate DIR`); otherwise it goes in a temporary folder. Flags
//! after RELAYS: `snapshot` adds a snapshot role; `reuse` times the repository already in DIR.

use std::collections::BTreeMap;
use std::time::Instant;

use odi_network::builder::{commit_all, NetworkBuilder};
use odi_network::raw::{
    ArtifactEntry, CatalogFile, DirectoryFile, DirectoryKind, RelayFile, ReleaseFile, Sha256,
};
use odi_network::safe_path::ArtifactPath;
use odi_network::units::ByteSize;
use sha2::Digest as _;

/// Catalogs of the generated network; each has `RELEASES_PER_CATALOG` release files.
pub const CATALOGS: usize = 10;
/// Release files per catalog (100 in all).
pub const RELEASES_PER_CATALOG: usize = 10;
/// Directories (one meta-directory on top).
pub const DIRECTORIES: usize = 20;
const TAGS: [&str; 4] = ["python", "java", "debian", "generic"];
const REGIONS: [&str; 4] = ["eu", "us", "asia", "sa"];

/// The `odi` binary's allocator, so the figures here are the binary's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The name of relay `i`, for `plan`.
pub fn relay_name(i: usize) -> String {
    format!("relay-{i:04}")
}

/// A network of `artifacts` artifacts in `CATALOGS * RELEASES_PER_CATALOG` release files and
/// `relays` relays subscribing by tag or by catalog name, with quotas from 50 GiB to 2 TiB.
pub fn generate(artifacts: usize, relays: usize) -> NetworkBuilder {
    let mut b = NetworkBuilder::new().expect("keys");
    let per_release = artifacts.div_ceil(CATALOGS * RELEASES_PER_CATALOG);
    let mut n = 0;
    for c in 0..CATALOGS {
        let name = format!("cat-{c:02}");
        b.catalogs.insert(
            name.clone(),
            CatalogFile {
                serial: 1,
                name: name.clone(),
                description: format!("generated catalog {c}"),
                tags: vec![TAGS[c % TAGS.len()].into()],
                origins: vec![format!("https://origin-{c}.example.org/")],
                replicas: 2,
                import: None,
                artifacts: vec![],
            },
        );
        for r in 0..RELEASES_PER_CATALOG {
            let mut list = Vec::with_capacity(per_release);
            for i in 0..per_release {
                if n == artifacts {
                    break;
                }
                n += 1;
                let path = format!("pool/{r}/pkg-{i}/pkg-{i}-{r}.{c}.tar.gz");
                // 1 KiB to 256 MiB, skewed towards small files like real archives.
                let h = mix(n as u64);
                let size = 1024 + (h % (256 << 20)) / (1 + (h >> 60));
                list.push(ArtifactEntry {
                    path: ArtifactPath::new(&path).expect("safe path"),
                    size,
                    sha256: Sha256(sha2::Sha256::digest(path.as_bytes()).into()),
                    published: None,
                    expunged: if n % 1000 == 0 { Some("withdrawn".into()) } else { None },
                });
            }
            b.releases.insert(
                (name.clone(), format!("{r}.0")),
                ReleaseFile { serial: 1, catalog: name.clone(), artifacts: list },
            );
        }
    }
    let dirs: Vec<String> = (0..DIRECTORIES).map(|d| format!("dir-{d:02}")).collect();
    for (d, name) in dirs.iter().enumerate() {
        let peer = &dirs[d ^ 1];
        b.directories.insert(
            name.clone(),
            DirectoryFile {
                serial: 1,
                name: name.clone(),
                url: format!("https://{name}.example.net/"),
                region: REGIONS[d % REGIONS.len()].into(),
                kind: DirectoryKind::Directory,
                contact: None,
                catalogs: b.catalogs.keys().cloned().collect(),
                links: vec![peer.clone()],
                references: vec![],
            },
        );
    }
    b.directories.insert(
        "global".into(),
        DirectoryFile {
            serial: 1,
            name: "global".into(),
            url: "https://get.example.org/".into(),
            region: "global".into(),
            kind: DirectoryKind::Meta,
            contact: None,
            catalogs: vec![],
            links: vec![],
            references: dirs.clone(),
        },
    );
    for i in 0..relays {
        let name = relay_name(i);
        let h = mix(0x5eed ^ i as u64);
        let by_tag = i % 3 != 0;
        b.relays.insert(
            name.clone(),
            RelayFile {
                serial: 1,
                name: name.clone(),
                url: format!("https://{name}.example.net/"),
                region: REGIONS[i % REGIONS.len()].into(),
                contact: format!("ops@{name}.example.net"),
                quota: ByteSize((50 + h % 1998) << 30),
                bandwidth: None,
                directories: vec![dirs[i % DIRECTORIES].clone()],
                catalogs: if by_tag {
                    vec![]
                } else {
                    vec![
                        format!("cat-{:02}", i % CATALOGS),
                        format!("cat-{:02}", (i + 3) % CATALOGS),
                    ]
                },
                tags: if by_tag { vec![TAGS[i % TAGS.len()].into()] } else { vec![] },
                location: None,
                countries: vec![],
                exclude_countries: vec![],
            },
        );
    }
    b
}

#[allow(dead_code)] // the benchmark includes this file for `generate` only
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let artifacts = args.get(1).map_or(100_000, |s| s.parse().expect("ARTIFACTS is a number"));
    let relays = args.get(2).map_or(1_000, |s| s.parse().expect("RELAYS is a number"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = args.first().map_or_else(|| tmp.path().to_owned(), std::path::PathBuf::from);
    std::fs::create_dir_all(&dir).expect("create DIR");

    // Flags after RELAYS: `snapshot` adds a snapshot role, as a production network has;
    // `reuse` times a repository an earlier run left in DIR instead of generating it again.
    let flag = |f: &str| args.iter().skip(3).any(|a| a == f);
    if flag("reuse") {
        println!("timing the repository already in {}", dir.display());
    } else {
        let t = Instant::now();
        let mut b = generate(artifacts, relays);
        if flag("snapshot") {
            b = b.with_snapshot().expect("snapshot key");
        }
        b.write(&dir).expect("write network");
        commit_all(&dir, "generated network").expect("commit");
        println!("generated {artifacts} artifacts, {relays} relays into {} in {:.2?} (not part of the target)", dir.display(), t.elapsed());
    }

    let now = time::OffsetDateTime::now_utc();
    let mut timings = BTreeMap::new();
    let total = Instant::now();

    let t = Instant::now();
    let repo = git2::Repository::open(&dir).expect("open repository");
    let head = odi_network::git::resolve(&repo, "HEAD").expect("HEAD");
    let tree = odi_network::git::read_commit(&repo, head).expect("read commit");
    timings.insert("1 read commit (git objects)", t.elapsed());

    let t = Instant::now();
    let loaded = odi_network::load(&tree, &Default::default(), &Default::default(), now)
        .expect("the generated network is valid");
    timings.insert("2 verify + load", t.elapsed());

    let t = Instant::now();
    let table = odi_network::assign::assign(&loaded.network, &Default::default());
    timings.insert("3 assign", t.elapsed());

    let t = Instant::now();
    let plan =
        odi_network::plan::plan(&loaded.network, &table, &relay_name(7)).expect("relay exists");
    timings.insert("4 plan one relay", t.elapsed());
    let total = total.elapsed();

    for (what, d) in &timings {
        println!("{what:<30} {d:>10.2?}");
    }
    println!("{:<30} {total:>10.2?}  (target: under 2 s)", "total validate + plan");
    println!(
        "{} holds {} artifacts, {} of {} quota; {} placements",
        plan.node,
        plan.holds.len(),
        ByteSize(plan.total_bytes),
        ByteSize(plan.quota.unwrap_or(0)),
        table.placements.len()
    );
    let t = Instant::now();
    let _ = odi_network::Tree::from_worktree(&dir).expect("work tree");
    println!("(reading the work tree instead of git objects: {:.2?})", t.elapsed());
}
