//! Publishing with the real binary: `odi init`, then `odi catalog new|add|import|expunge` on
//! the network it made, each step checked with `odi validate` as an agent would check it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, run, run_odi};

struct Net {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    keys: PathBuf,
    files: PathBuf,
}

impl Net {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, keys, files) =
            (tmp.path().join("net"), tmp.path().join("keys"), tmp.path().join("files"));
        let r = run_odi([
            "init",
            repo.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--root-keys",
            "3",
            "--threshold",
            "2",
        ]);
        assert_eq!(r.code, 0, "{}", r.both());
        std::fs::create_dir_all(&files).unwrap();
        Net { _tmp: tmp, repo, keys, files }
    }

    /// `odi catalog <args> --key maintainer --repo net --snapshot-key snapshot`.
    fn catalog(&self, args: &[&str]) -> support::Run {
        let mut a: Vec<String> = vec!["catalog".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        for (flag, v) in [
            ("--key", self.keys.join("maintainer.key")),
            ("--repo", self.repo.clone()),
            ("--snapshot-key", self.keys.join("snapshot.key")),
        ] {
            a.push(flag.into());
            a.push(v.display().to_string());
        }
        run_odi(a)
    }

    fn valid(&self) -> String {
        let (code, out) = support::validate(&self.repo, &[]);
        assert_eq!(code, 0, "odi validate: {out}");
        out
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.repo.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.files.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn git_files(repo: &Path) -> Vec<String> {
    let r = run({
        let mut c = Command::new("git");
        c.arg("-C").arg(repo).args(["ls-files"]);
        c
    });
    r.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn init_makes_a_valid_network_and_keeps_secret_keys_out() {
    let net = Net::new();
    let out = net.valid();
    assert!(out.contains("snapshot serial 1"), "{out}");
    let tracked = git_files(&net.repo);
    assert!(
        tracked.iter().any(|f| f == "trust/roots/1.toml")
            && tracked.iter().any(|f| f == "trust/snapshot.toml"),
        "{tracked:?}"
    );
    assert!(tracked.iter().any(|f| f == ".github/workflows/snapshot.yml"), "{tracked:?}");
    assert!(!tracked.iter().any(|f| f.ends_with(".key")), "no secret key tracked: {tracked:?}");
    for k in ["root-1", "root-2", "root-3", "maintainer", "snapshot"] {
        assert!(net.keys.join(format!("{k}.key")).exists(), "{k}.key");
    }
    assert!(net.read("trust/roots/1.toml").contains("threshold = 2"));

    // Refused: a key folder inside the repository, or a repository folder that is not empty.
    let tmp = tempfile::tempdir().unwrap();
    let inside = tmp.path().join("n");
    let r = run_odi([
        "init",
        inside.to_str().unwrap(),
        "--keys",
        inside.join("keys").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.both());
    assert!(r.stderr.contains("inside the repository"), "{}", r.both());
    let r = run_odi([
        "init",
        net.repo.to_str().unwrap(),
        "--keys",
        tmp.path().join("k").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.both());
    assert!(r.stderr.contains("not empty"), "{}", r.both());
}

#[test]
fn catalogs_are_created_added_to_replaced_and_expunged() {
    let net = Net::new();
    let origin = format!("file://{}/", net.files.display());
    let r = net.catalog(&[
        "new",
        "hello",
        "--origin",
        &origin,
        "--tag",
        "demo",
        "--description",
        "Hello releases",
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    net.valid();

    net.file("rel/hello-1.0.tar.gz", b"the tarball");
    net.file("rel/docs/README.txt", b"read me");
    let dir = net.files.join("rel");
    let r = net.catalog(&[
        "add",
        "hello",
        dir.to_str().unwrap(),
        "--prefix",
        "1.0",
        "--published",
        "2026-12-01T00:00:00Z",
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(r.stdout.contains("2 added"), "{}", r.stdout);
    let catalog = net.read("catalogs/hello/catalog.toml");
    assert!(
        catalog.contains("path = \"1.0/docs/README.txt\"")
            && catalog.contains("path = \"1.0/hello-1.0.tar.gz\""),
        "{catalog}"
    );
    assert!(catalog.contains(&support::sha256_hex(b"the tarball")), "{catalog}");
    net.valid();

    // The same bytes again: nothing changes, not even the serial.
    let r = net.catalog(&["add", "hello", dir.to_str().unwrap(), "--prefix", "1.0"]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(r.stdout.contains("0 added, 2 unchanged"), "{}", r.stdout);
    assert_eq!(net.read("catalogs/hello/catalog.toml"), catalog, "unchanged file");

    // Other bytes under a published path: refused, naming the path; --replace allows it.
    net.file("rel/hello-1.0.tar.gz", b"a different tarball");
    let r = net.catalog(&["add", "hello", dir.to_str().unwrap(), "--prefix", "1.0"]);
    assert_eq!(r.code, 2, "{}", r.both());
    assert!(r.stderr.contains("1.0/hello-1.0.tar.gz: already published"), "{}", r.both());
    let r = net.catalog(&["add", "hello", dir.to_str().unwrap(), "--prefix", "1.0", "--replace"]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(net.read("catalogs/hello/catalog.toml").contains("serial = 3"));
    net.valid();

    // A release file of its own, then an expunge inside it.
    net.file("two/hello-2.0.tar.gz", b"version two");
    let two = net.files.join("two");
    let r = net.catalog(&[
        "add",
        "hello",
        two.to_str().unwrap(),
        "--prefix",
        "2.0",
        "--release",
        "2.0",
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(net.read("catalogs/hello/releases/2.0.toml").contains("2.0/hello-2.0.tar.gz"));
    let r = net.catalog(&[
        "expunge",
        "hello",
        "2.0/hello-2.0.tar.gz",
        "--reason",
        "security defect CVE-0000-0001",
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let release = net.read("catalogs/hello/releases/2.0.toml");
    assert!(
        release.contains("expunged = \"security defect CVE-0000-0001\"")
            && release.contains("serial = 2"),
        "{release}"
    );
    net.valid();

    // Bad input: an unknown catalog, a hostile path, no reason.
    let r = net.catalog(&["add", "nope", dir.to_str().unwrap()]);
    assert!(r.code == 2 && r.stderr.contains("no catalog `nope`"), "{}", r.both());
    let r = net.catalog(&["add", "hello", dir.to_str().unwrap(), "--prefix", "../x"]);
    assert_eq!(r.code, 2, "{}", r.both());
    let r = net.catalog(&["expunge", "hello", "2.0/none", "--reason", "x"]);
    assert!(r.code == 2 && r.stderr.contains("not listed"), "{}", r.both());
}

#[test]
fn sha256sum_output_is_imported_gnu_and_bsd() {
    let net = Net::new();
    for (name, bytes) in [("a.txt", &b"alpha"[..]), ("b/b.bin", b"bravo"), ("c.iso", b"charlie")] {
        net.file(name, bytes);
    }
    let sums = |tag: bool, out: &str| {
        let mut c = Command::new("sha256sum");
        if tag {
            c.arg("--tag");
        }
        c.current_dir(&net.files).args(["a.txt", "b/b.bin", "c.iso"]);
        let r = run(c);
        assert_eq!(r.code, 0, "{}", r.both());
        let p = net.files.join(out);
        std::fs::write(&p, r.stdout).unwrap();
        p
    };
    let gnu = sums(false, "SHA256SUMS");
    let bsd = sums(true, "SHA256SUMS.bsd");
    let origin = format!("file://{}/", net.files.display());
    for (name, list, max) in [("gnu", &gnu, "2"), ("bsd", &bsd, "10")] {
        let r = net.catalog(&["new", name, "--origin", &origin]);
        assert_eq!(r.code, 0, "{}", r.both());
        let r = net.catalog(&[
            "import",
            name,
            "--format",
            "sha256sums",
            "--from",
            list.to_str().unwrap(),
            "--max-per-file",
            max,
            "--verify",
        ]);
        assert_eq!(r.code, 0, "{}", r.both());
        assert!(r.stdout.contains("3 added"), "{}", r.stdout);
    }
    // Three entries at two per file: two release files.
    let first = net.read("catalogs/gnu/releases/sha256sums-0001.toml");
    let second = net.read("catalogs/gnu/releases/sha256sums-0002.toml");
    assert!(
        first.contains("path = \"a.txt\"")
            && first.contains("path = \"b/b.bin\"")
            && second.contains("path = \"c.iso\""),
        "{first}\n{second}"
    );
    assert!(net
        .read("catalogs/bsd/releases/sha256sums-0001.toml")
        .contains(&support::sha256_hex(b"charlie")));
    net.valid();

    // A list that does not match the files is refused with --verify, naming the file.
    std::fs::write(net.files.join("c.iso"), b"tampered").unwrap();
    let r = net.catalog(&["new", "v", "--origin", &origin]);
    assert_eq!(r.code, 0);
    let r = net.catalog(&[
        "import",
        "v",
        "--format",
        "sha256sums",
        "--from",
        gnu.to_str().unwrap(),
        "--verify",
    ]);
    assert!(r.code == 2 && r.stderr.contains("c.iso"), "{}", r.both());
    // A malformed line names its line number.
    std::fs::write(net.files.join("BAD"), "not a checksum line\n").unwrap();
    let r = net.catalog(&[
        "import",
        "v",
        "--format",
        "sha256sums",
        "--from",
        net.files.join("BAD").to_str().unwrap(),
    ]);
    assert!(r.code == 2 && r.stderr.contains("line 1"), "{}", r.both());
}

/// The real packages `ci/install-test-deps.sh` fetched with `apt-get download`.
fn real_debs() -> Vec<PathBuf> {
    let dir = support::repo_root().join("target/test-data/debs");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run ci/install-test-deps.sh, which fetches real packages",
                dir.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    assert!(debs.len() >= 2, "real packages in {}: {debs:?}", dir.display());
    debs
}

/// A Debian repository built from real packages with Debian's own tool (`apt-ftparchive`),
/// by-hash copies of its indexes included, as a mirror publishes them.
fn debian_repository(root: &Path) {
    let pool = root.join("pool/main");
    std::fs::create_dir_all(&pool).unwrap();
    for deb in real_debs() {
        std::fs::copy(&deb, pool.join(deb.file_name().unwrap())).unwrap();
    }
    let bin = root.join("dists/stable/main/binary-amd64");
    std::fs::create_dir_all(&bin).unwrap();
    let r = run({
        let mut c = Command::new("apt-ftparchive");
        c.current_dir(root).args(["packages", "pool"]);
        c
    });
    assert_eq!(r.code, 0, "apt-ftparchive packages: {}", r.both());
    std::fs::write(bin.join("Packages"), &r.stdout).unwrap();
    let r = run({
        let mut c = Command::new("gzip");
        c.args(["-k", "-9", "-n"]).arg(bin.join("Packages"));
        c
    });
    assert_eq!(r.code, 0, "gzip: {}", r.both());
    let r = run({
        let mut c = Command::new("apt-ftparchive");
        c.current_dir(root.join("dists/stable")).args([
            "-o",
            "APT::FTPArchive::Release::Suite=stable",
            "-o",
            "APT::FTPArchive::Release::Codename=stable",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "-o",
            "APT::FTPArchive::Release::Acquire-By-Hash=yes",
            "release",
            ".",
        ]);
        c
    });
    assert_eq!(r.code, 0, "apt-ftparchive release: {}", r.both());
    std::fs::write(root.join("dists/stable/Release"), &r.stdout).unwrap();
    for name in ["Packages", "Packages.gz"] {
        let bytes = std::fs::read(bin.join(name)).unwrap();
        let by = bin.join("by-hash/SHA256");
        std::fs::create_dir_all(&by).unwrap();
        std::fs::write(by.join(support::sha256_hex(&bytes)), bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_debian_repository_is_imported_and_installed_from_through_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let debian = tmp.path().join("debian");
    debian_repository(&debian);

    // A network whose directory holds the imported catalog (no relay subscribes: the directory
    // serves the bytes itself after pulling them from the origin).
    let mut b = support::small_network();
    b.directories.get_mut("dir-a").unwrap().catalogs.push("debian".into());
    let net = crate::testnet::TestNet::new(b, support::artifact_bytes()).await;
    let keys = tmp.path().join("keys");
    net.builder.write_keys(&keys).unwrap();
    let k = keys.join("maintainer.key");
    let origin = format!("file://{}/", debian.display());
    let (repo, key) = (net.repo.to_str().unwrap(), k.to_str().unwrap());
    let r = run_odi([
        "catalog", "new", "debian", "--origin", &origin, "--tag", "debian", "--key", key, "--repo",
        repo,
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let r = run_odi([
        "catalog",
        "import",
        "debian",
        "--format",
        "apt",
        "--from",
        debian.to_str().unwrap(),
        "--key",
        key,
        "--repo",
        repo,
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let listed =
        std::fs::read_to_string(net.repo.join("catalogs/debian/releases/apt-0001.toml")).unwrap();
    for path in [
        "dists/stable/Release",
        "dists/stable/main/binary-amd64/Packages.gz",
        "dists/stable/main/binary-amd64/by-hash/SHA256/",
    ] {
        assert!(listed.contains(path), "{path} listed:\n{listed}");
    }
    for deb in real_debs() {
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        assert!(listed.contains(&format!("pool/main/{name}")), "{name} listed");
    }
    let (code, out) = support::validate(&net.repo, &[]);
    assert_eq!(code, 0, "{out}");
    odi_network::builder::commit_all(&net.repo, "import a Debian repository").unwrap();

    let dir = net.start("dir-a").await;
    let base = net.url("dir-a");
    crate::testnet::eventually(
        "dir-a holds the Debian catalog",
        std::time::Duration::from_secs(60),
        || async {
            crate::testnet::status(&base).await.is_some_and(|s| s.ready() && s.share.missing == 0)
        },
    )
    .await;

    // apt with only this repository, its own lists and caches, through the directory.
    let state = tmp.path().join("apt");
    for d in ["lists/partial", "archives/partial", "cache", "sources.list.d", "preferences.d"] {
        std::fs::create_dir_all(state.join(d)).unwrap();
    }
    std::fs::write(
        state.join("sources.list"),
        format!("deb [trusted=yes] {base}/r/debian stable main\n"),
    )
    .unwrap();
    let root = run({
        let mut c = Command::new("id");
        c.arg("-u");
        c
    })
    .stdout
    .trim()
        == "0";
    let r = tokio::task::spawn_blocking({
        let st = state.clone();
        move || run(support::apt_get(&st, root, &["update"]))
    })
    .await
    .unwrap();
    assert!(
        r.code == 0 && !r.stdout.contains("Err:"),
        "apt-get update through the directory:\n{}",
        r.both()
    );
    if root {
        // A real install of GNU hello from the real package, through the directory.
        let st = state.clone();
        let install = ["install", "-y", "--reinstall", "--no-install-recommends", "hello"];
        let r = tokio::task::spawn_blocking(move || run(support::apt_get(&st, root, &install)))
            .await
            .unwrap();
        let installed = r.code == 0 && r.stdout.contains("Setting up hello");
        let _ = run({
            let mut c = Command::new("dpkg");
            c.args(["--purge", "hello"]);
            c
        });
        assert!(installed, "apt-get install hello through the directory:\n{}", r.both());
    } else {
        let st = state.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut c = support::apt_get(&st, root, &["download", "hello"]);
            c.current_dir(&st);
            run(c)
        })
        .await
        .unwrap();
        assert_eq!(r.code, 0, "apt-get download hello:\n{}", r.both());
    }
    dir.stop().await;
}
