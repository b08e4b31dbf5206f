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
//! after RELAYS: `snapshot` adds a snapshot role; `reuse` times the repository already in DIR;
//! `incremental` then times five commits that each add a release file of 1,000 artifacts,
//! applied as a running agent applies them (wall and CPU time). It prints the root keys an
//! agent pointed at DIR pins (`bench/apply.sh` runs real agents on it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
    // `reuse` times a repository an earlier run left in DIR instead of generating it again;
    // `incremental` then times commits that each add one release file (it generates).
    let flag = |f: &str| args.iter().skip(3).any(|a| a == f);
    let builder = if flag("reuse") {
        println!("timing the repository already in {}", dir.display());
        None
    } else {
        let t = Instant::now();
        let mut b = generate(artifacts, relays);
        // A fixed root expiry: the root file stays the same from commit to commit.
        b.root_expires = Some(odi_network::raw::Timestamp(
            time::OffsetDateTime::now_utc() + time::Duration::days(30),
        ));
        if flag("snapshot") {
            b = b.with_snapshot().expect("snapshot key");
        }
        b.write(&dir).expect("write network");
        commit_all(&dir, "generated network").expect("commit");
        // For an agent pointed at DIR (`bench/apply.sh`): the keys its config pins.
        let keys: Vec<&str> = b.root_keys.iter().map(|k| k.public()).collect();
        println!("root keys: {}", keys.join(" "));
        println!("generated {artifacts} artifacts, {relays} relays into {} in {:.2?} (not part of the target)", dir.display(), t.elapsed());
        Some(b)
    };

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
        table.len()
    );
    let t = Instant::now();
    let _ = odi_network::Tree::from_worktree(&dir).expect("work tree");
    println!("(reading the work tree instead of git objects: {:.2?})", t.elapsed());

    if let Some(b) = builder.filter(|_| flag("incremental")) {
        incremental(b, &dir, &repo, loaded, &table);
    }
}

#[allow(dead_code)] // as `main`
/// CPU time of the whole process so far (every thread), from `/proc/self/stat`: utime and
/// stime, in the kernel's clock ticks of 10 ms.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<u64> = rest.split(' ').skip(11).take(2).map(|v| v.parse().expect("ticks")).collect();
    Duration::from_millis((f[0] + f[1]) * 10)
}

#[allow(dead_code)] // as `main`
/// The "one release file of 1,000 artifacts" figure: commits that each add such a file to
/// the network, applied as a running agent does (`read_since` + `load_since`, then the
/// assignment), with wall and CPU time per step.
fn incremental(
    mut b: NetworkBuilder,
    dir: &std::path::Path,
    repo: &git2::Repository,
    mut applied: odi_network::Loaded,
    table: &odi_network::assign::Assignment,
) {
    const STEPS: usize = 5;
    let mut rows = Vec::new();
    let mut prior_table = table.clone();
    for step in 0..STEPS {
        let list = (0..1000)
            .map(|i| {
                let path = format!("pool/new/{step}/pkg-{i}.tar.gz");
                ArtifactEntry {
                    sha256: Sha256(sha2::Sha256::digest(path.as_bytes()).into()),
                    path: ArtifactPath::new(&path).expect("safe path"),
                    size: 4096 + i,
                    published: None,
                    expunged: None,
                }
            })
            .collect();
        b.releases.insert(
            ("cat-00".into(), format!("new-{step}")),
            ReleaseFile { serial: 1, catalog: "cat-00".into(), artifacts: list },
        );
        b.write(dir).expect("write network");
        let head = commit_all(dir, &format!("release new-{step}")).expect("commit");
        let now = time::OffsetDateTime::now_utc();

        let (c0, t0) = (cpu(), Instant::now());
        let delta = odi_network::git::read_since(repo, head, applied.memo.ids()).expect("read");
        let loaded = odi_network::load::load_since(
            &delta,
            &applied.network,
            &applied.memo,
            &Default::default(),
            &applied.state,
            now,
        )
        .expect("applied incrementally");
        let (c1, t1) = (cpu(), Instant::now());
        let table = odi_network::assign::assign_since(
            &prior_table,
            &applied.network,
            &loaded.network,
            &Default::default(),
        );
        let (c2, t2) = (cpu(), Instant::now());
        rows.push([(t1 - t0, c1 - c0), (t2 - t1, c2 - c1), (t2 - t0, c2 - c0)]);
        applied = loaded;
        prior_table = table;
    }
    println!("\nincremental: {STEPS} commits, each adding a release file of 1,000 artifacts");
    for (i, what) in ["read + load", "assign", "total"].iter().enumerate() {
        let mut wall: Vec<Duration> = rows.iter().map(|r| r[i].0).collect();
        let mut cpu: Vec<Duration> = rows.iter().map(|r| r[i].1).collect();
        wall.sort();
        cpu.sort();
        println!(
            "{what:<30} wall median {:>10.2?} (runs {wall:.1?}); CPU median {:?} (runs {cpu:?})",
            wall[STEPS / 2],
            cpu[STEPS / 2]
        );
    }
}
