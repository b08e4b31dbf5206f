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

fn git(repo: &Path, args: &[&str]) -> String {
    let r = run({
        let mut c = Command::new("git");
        c.arg("-C").arg(repo).args(args);
        c
    });
    assert_eq!(r.code, 0, "git {args:?}: {}", r.both());
    r.stdout
}

/// `sha256sum` of `names` in `dir`, written to `dir/SHA256SUMS`.
fn write_sums(dir: &Path, names: &[&str]) -> PathBuf {
    let mut c = Command::new("sha256sum");
    c.current_dir(dir).args(names);
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.both());
    let p = dir.join("SHA256SUMS");
    std::fs::write(&p, r.stdout).unwrap();
    p
}

#[test]
fn sync_lists_what_the_origin_gained_and_refuses_changed_bytes() {
    let net = Net::new();
    net.file("a.tar.gz", b"alpha");
    net.file("b.tar.gz", b"bravo");
    let sums = write_sums(&net.files, &["a.tar.gz", "b.tar.gz"]);
    let origin = format!("file://{}/", net.files.display());
    assert_eq!(net.catalog(&["new", "rel", "--origin", &origin]).code, 0);
    // Without a recorded import, sync says what to do.
    let r = net.catalog(&["sync", "rel"]);
    assert!(r.code == 2 && r.stderr.contains("records no import"), "{}", r.both());
    let r =
        net.catalog(&["import", "rel", "--format", "sha256sums", "--from", sums.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.both());
    let catalog = net.read("catalogs/rel/catalog.toml");
    assert!(
        catalog.contains("[import]\nformat = \"sha256sums\"")
            && catalog.contains(&format!("from = \"{}\"", sums.display())),
        "the import is recorded:\n{catalog}"
    );
    net.valid();
    git(&net.repo, &["add", "-A"]);
    git(&net.repo, &["commit", "-qm", "import"]);

    // Nothing changed at the origin: nothing written, nothing committed.
    let r = net.catalog(&["sync", "rel", "--commit"]);
    assert!(r.code == 0 && r.stdout.contains("0 added, 2 unchanged"), "{}", r.both());
    assert!(r.stdout.contains("nothing to commit"), "{}", r.stdout);

    // The origin gained a file: exactly one new entry and a raised serial, committed.
    net.file("c.tar.gz", b"charlie");
    write_sums(&net.files, &["a.tar.gz", "b.tar.gz", "c.tar.gz"]);
    let r = net.catalog(&["sync", "rel", "--commit"]);
    assert!(r.code == 0 && r.stdout.contains("1 added, 2 unchanged"), "{}", r.both());
    assert!(r.stdout.contains("committed"), "{}", r.stdout);
    let changed = git(&net.repo, &["diff", "--name-only", "HEAD~1", "HEAD"]);
    let mut changed: Vec<&str> = changed.lines().collect();
    changed.sort();
    // The snapshot's signature is `snapshot.toml.<key>.minisig`.
    let snapshot_sig = changed
        .iter()
        .position(|c| c.starts_with("trust/snapshot.toml.") && c.ends_with(".minisig"))
        .map(|i| changed.remove(i));
    assert!(snapshot_sig.is_some(), "the re-signed snapshot was committed: {changed:?}");
    assert_eq!(
        changed,
        [
            "catalogs/rel/releases/sha256sums-0001.toml",
            "catalogs/rel/releases/sha256sums-0001.toml.minisig",
            "trust/snapshot.toml",
        ],
        "only the release file (and the snapshot naming it) changed"
    );
    let diff = git(
        &net.repo,
        &["diff", "-U0", "HEAD~1", "HEAD", "--", "catalogs/rel/releases/sha256sums-0001.toml"],
    );
    let lines = |sign: char| -> Vec<String> {
        diff.lines()
            .filter(|l| l.starts_with(sign) && !l.starts_with("+++") && !l.starts_with("---"))
            .map(|l| l[1..].to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(lines('-'), ["serial = 1"], "{diff}");
    assert_eq!(
        lines('+'),
        [
            "serial = 2".to_owned(),
            "[[artifacts]]".to_owned(),
            "path = \"c.tar.gz\"".to_owned(),
            "size = 7".to_owned(),
            format!("sha256 = \"{}\"", support::sha256_hex(b"charlie")),
        ],
        "{diff}"
    );
    assert_eq!(git(&net.repo, &["status", "--porcelain"]), "", "everything was committed");
    net.valid();

    // The origin changed a published file's bytes: refused, naming it; nothing written.
    net.file("b.tar.gz", b"bravo, rebuilt");
    write_sums(&net.files, &["a.tar.gz", "b.tar.gz", "c.tar.gz"]);
    let r = net.catalog(&["sync", "rel", "--commit"]);
    assert!(
        r.code == 2
            && r.stderr.contains("b.tar.gz: already published")
            && !r.stderr.contains("a.tar.gz"),
        "{}",
        r.both()
    );
    assert_eq!(git(&net.repo, &["status", "--porcelain"]), "", "nothing was written");

    // A file gone from the origin stays listed, and the maintainer is told.
    write_sums(&net.files, &["a.tar.gz"]);
    let r = net.catalog(&["sync", "rel"]);
    assert!(
        r.code == 0 && r.stdout.contains("2 listed but no longer in the index"),
        "{}",
        r.both()
    );
}

#[test]
fn imports_refuse_bad_indexes_naming_what_is_wrong() {
    let net = Net::new();
    let h = support::sha256_hex(b"x");
    let origin = format!("file://{}/", net.files.display());
    // (case, files of the index, format, what the error must name)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("pypi: no simple index", vec![("x", "x".into())], "pypi", "no simple index"),
        (
            "pypi: a link without a hash",
            vec![
                ("simple/index.html", "<a href=\"x/\">x</a>".into()),
                ("simple/x/index.html", "<a href=\"../../x-1.whl\">x-1.whl</a>".into()),
                ("x-1.whl", "x".into()),
            ],
            "pypi",
            "link `../../x-1.whl` carries no `#sha256=`",
        ),
        (
            "pypi: a link outside the index",
            vec![
                ("simple/index.html", "<a href=\"x/\">x</a>".into()),
                ("simple/x/index.html", format!("<a href=\"../../../x-1.whl#sha256={h}\">x</a>")),
            ],
            "pypi",
            "points outside",
        ),
        (
            "pypi: a project page missing",
            vec![("simple/index.html", "<a href=\"gone/\">gone</a>".into())],
            "pypi",
            "simple/gone/: listed in the root page, not found",
        ),
        (
            "maven: no pom",
            vec![("a/b/1.0/b-1.0.jar", "jar".into())],
            "maven",
            "not a Maven repository",
        ),
        (
            "maven: a wrong .sha1",
            vec![
                ("a/b/1.0/b-1.0.pom", "<project/>".into()),
                ("a/b/1.0/b-1.0.pom.sha1", "0000000000000000000000000000000000000000".into()),
            ],
            "maven",
            "a/b/1.0/b-1.0.pom.sha1: does not match a/b/1.0/b-1.0.pom",
        ),
        (
            "maven: a .sha256 that is not a hash",
            vec![
                ("a/b/1.0/b-1.0.pom", "<project/>".into()),
                ("a/b/1.0/b-1.0.pom.sha256", "nope".into()),
            ],
            "maven",
            "b-1.0.pom.sha256: not a hash",
        ),
        (
            "apt: no Release",
            vec![("dists/x", "x".into())],
            "apt",
            "dists/stable/Release: not found",
        ),
        (
            "apt: a tampered index",
            vec![
                (
                    "dists/stable/Release",
                    format!("Origin: t\nSHA256:\n {h} 1 main/binary-all/Packages\n"),
                ),
                ("dists/stable/main/binary-all/Packages", "Package: p\n".into()),
            ],
            "apt",
            "does not match the size and SHA-256",
        ),
    ];
    for (i, (case, files, format, want)) in cases.into_iter().enumerate() {
        let root = net.files.join(format!("case-{i}"));
        for (rel, text) in &files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let name = format!("c{i}");
        assert_eq!(net.catalog(&["new", &name, "--origin", &origin]).code, 0);
        let before = net.read(&format!("catalogs/{name}/catalog.toml"));
        let r =
            net.catalog(&["import", &name, "--format", format, "--from", root.to_str().unwrap()]);
        assert!(r.code == 2 && r.stderr.contains(want), "{case}: wanted `{want}`:\n{}", r.both());
        assert_eq!(
            net.read(&format!("catalogs/{name}/catalog.toml")),
            before,
            "{case}: nothing written"
        );
        assert!(!net.repo.join(format!("catalogs/{name}/releases")).exists(), "{case}");
    }
    let r = net.catalog(&["import", "c0", "--format", "rpm", "--from", "x"]);
    assert!(r.code == 2 && r.stderr.contains("`rpm` is not an import format"), "{}", r.both());
}

/// The real wheels `ci/install-test-deps.sh` fetched with `pip download`.
fn real_wheels() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-data/wheels");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "whl"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    assert!(
        out.len() >= 2,
        "no wheels in {}: run ci/install-test-deps.sh (it runs `pip download`)",
        dir.display()
    );
    out
}

/// A PEP 503 index of `wheels` at `root`: `packages/<wheel>`, `simple/index.html` and one page
/// per project, linking each file with its `#sha256=`.
fn pypi_index(root: &Path, wheels: &[PathBuf]) {
    let mut projects: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    std::fs::create_dir_all(root.join("packages")).unwrap();
    for w in wheels {
        let name = w.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(w).unwrap();
        std::fs::write(root.join("packages").join(&name), &bytes).unwrap();
        let project = odi_agent::cmd::pypi::normalise(name.split('-').next().unwrap());
        projects.entry(project).or_default().push(format!(
            "<a href=\"../../packages/{name}#sha256={}\">{name}</a><br>",
            support::sha256_hex(&bytes)
        ));
    }
    let mut rootpage = String::from("<!DOCTYPE html>\n<html><body>\n");
    for (p, links) in &projects {
        rootpage.push_str(&format!("<a href=\"{p}/\">{p}</a><br>\n"));
        let dir = root.join("simple").join(p);
        std::fs::create_dir_all(&dir).unwrap();
        let page = format!("<!DOCTYPE html>\n<html><body>\n{}\n</body></html>\n", links.join("\n"));
        std::fs::write(dir.join("index.html"), page).unwrap();
    }
    rootpage.push_str("</body></html>\n");
    std::fs::write(root.join("simple/index.html"), rootpage).unwrap();
}

/// Copies Debian's `junit:junit:4.13.2` (the jar is a symlink into /usr/share/java) into a
/// Maven tree at `root`, with `.sha1` sidecars made by `sha1sum` and a `maven-metadata.xml`.
fn maven_tree(root: &Path) -> Vec<String> {
    let rel = "junit/junit/4.13.2";
    let src = Path::new(support::DEBIAN_MAVEN_REPO).join(rel);
    assert!(src.is_dir(), "{} is missing: install the Debian package `junit4`", src.display());
    let dst = root.join(rel);
    std::fs::create_dir_all(&dst).unwrap();
    let mut files = Vec::new();
    for f in ["junit-4.13.2.pom", "junit-4.13.2.jar"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap(); // follows the symlink
        let r = run({
            let mut c = Command::new("sha1sum");
            c.arg(dst.join(f));
            c
        });
        let sha1 = r.stdout.split_whitespace().next().unwrap().to_owned();
        std::fs::write(dst.join(format!("{f}.sha1")), sha1).unwrap();
        files.push(format!("{rel}/{f}"));
    }
    std::fs::write(
        root.join("junit/junit/maven-metadata.xml"),
        "<metadata><groupId>junit</groupId><artifactId>junit</artifactId><versioning><release>4.13.2</release><versions><version>4.13.2</version></versions></versioning></metadata>\n",
    )
    .unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pypi_maven_and_checksum_releases_are_imported_and_fetched_through_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let (pypi, maven, sums) =
        (tmp.path().join("pypi"), tmp.path().join("maven"), tmp.path().join("sums"));
    let wheels = real_wheels();
    pypi_index(&pypi, &wheels);
    let jars = maven_tree(&maven);
    std::fs::create_dir_all(sums.join("1.0")).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("1.0/tool-{i}.tar.gz"),
                format!("release {i}\n").repeat(1000 * (i + 1)).into_bytes(),
            )
        })
        .collect();
    for (rel, bytes) in &files {
        std::fs::write(sums.join(rel), bytes).unwrap();
    }
    let names: Vec<&str> = files.iter().map(|(r, _)| r.as_str()).collect();
    let list = write_sums(&sums, &names);

    // Relay relay-1 holds the three catalogs (one replica each); dir-a routes them.
    let catalogs = ["pypi", "maven", "sums"];
    let mut b = support::small_network();
    b.directories.get_mut("dir-a").unwrap().catalogs.extend(catalogs.map(String::from));
    let r1 = b.relays.get_mut("relay-1").unwrap();
    r1.catalogs.extend(catalogs.map(String::from));
    r1.quota = "64 MiB".parse().unwrap();
    let net = crate::testnet::TestNet::new(b, support::artifact_bytes()).await;
    let keys = tmp.path().join("keys");
    net.builder.write_keys(&keys).unwrap();
    let k = keys.join("maintainer.key");
    let (repo, key) = (net.repo.to_str().unwrap(), k.to_str().unwrap());
    for (name, dir, format, from) in [
        ("pypi", &pypi, "pypi", pypi.display().to_string()),
        ("maven", &maven, "maven", maven.display().to_string()),
        ("sums", &sums, "sha256sums", list.display().to_string()),
    ] {
        let origin = format!("file://{}/", dir.display());
        let r = run_odi([
            "catalog",
            "new",
            name,
            "--origin",
            &origin,
            "--replicas",
            "1",
            "--key",
            key,
            "--repo",
            repo,
        ]);
        assert_eq!(r.code, 0, "{}", r.both());
        let r = run_odi([
            "catalog", "import", name, "--format", format, "--from", &from, "--verify", "--key",
            key, "--repo", repo,
        ]);
        assert_eq!(r.code, 0, "import {name}: {}", r.both());
    }
    let listed =
        std::fs::read_to_string(net.repo.join("catalogs/pypi/releases/pypi-0001.toml")).unwrap();
    for p in ["simple/index.html", "simple/six/index.html", "simple/python-dateutil/index.html"] {
        assert!(listed.contains(&format!("path = \"{p}\"")), "{p} listed:\n{listed}");
    }
    let listed =
        std::fs::read_to_string(net.repo.join("catalogs/maven/releases/maven-0001.toml")).unwrap();
    for p in jars.iter().map(String::as_str).chain(["junit/junit/maven-metadata.xml"]) {
        assert!(listed.contains(&format!("path = \"{p}\"")), "{p} listed:\n{listed}");
    }
    let (code, out) = support::validate(&net.repo, &[]);
    assert_eq!(code, 0, "{out}");
    odi_network::builder::commit_all(&net.repo, "import PyPI, Maven and checksum releases")
        .unwrap();

    let dir = net.start("dir-a").await;
    let relay = net.start("relay-1").await;
    let (base, relay_url) = (net.url("dir-a"), net.url("relay-1"));
    for node in [&base, &relay_url] {
        crate::testnet::eventually(
            &format!("{node} holds its share"),
            std::time::Duration::from_secs(60),
            || async {
                crate::testnet::status(node)
                    .await
                    .is_some_and(|s| s.ready() && s.share.missing == 0 && s.share.artifacts > 10)
            },
        )
        .await;
    }
    // The directory sends clients to the relay once it holds the bytes.
    crate::testnet::eventually(
        "dir-a redirects to relay-1",
        std::time::Duration::from_secs(30),
        || async {
            let r =
                crate::testnet::client().get(format!("{base}/r/sums/{}", files[0].0)).send().await;
            r.ok().and_then(|r| {
                r.headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .map(|l| l.starts_with(&relay_url))
            }) == Some(true)
        },
    )
    .await;

    let work = tmp.path().join("clients");
    std::fs::create_dir_all(&work).unwrap();
    // sha256sum releases: curl downloads match the bytes.
    for (rel, bytes) in &files {
        let out = work.join(rel.replace('/', "_"));
        let mut c = support::client("curl");
        c.args(["-sfSL", "-o"]).arg(&out).arg(format!("{base}/r/sums/{rel}"));
        let r = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
        assert_eq!(r.code, 0, "curl {rel}: {}", r.both());
        assert!(std::fs::read(&out).unwrap() == *bytes, "curl {rel}: the bytes differ");
    }

    // PyPI: pip installs python-dateutil and its dependency six into a venv, and they import.
    let venv = work.join("venv");
    let r = run({
        let mut c = Command::new("python3");
        c.args(["-m", "venv"]).arg(&venv);
        c
    });
    assert_eq!(r.code, 0, "python3 -m venv: {}", r.both());
    let python = venv.join("bin/python").display().to_string();
    let mut c = support::pip(&python);
    c.args(["install", "--no-cache-dir", "--index-url"])
        .arg(format!("{base}/r/pypi/simple/"))
        .arg("python-dateutil");
    let r = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    assert!(
        r.code == 0
            && r.stdout.contains("Successfully installed python-dateutil-2.9.0.post0 six-1.16.0"),
        "pip install through the directory: {}",
        r.both()
    );
    let r = run({
        let mut c = Command::new(&python);
        c.args(["-c", "import dateutil.parser, six; print(dateutil.parser.parse('2026-12-02').year, six.__version__)"]);
        c
    });
    assert_eq!((r.code, r.stdout.trim()), (0, "2026 1.16.0"), "{}", r.both());

    // Maven: dependency:get of junit through the directory as the mirror of every repository.
    let local = work.join("m2");
    std::fs::create_dir_all(&local).unwrap();
    let c = support::mvn_get(&work, &local, &format!("{base}/r/maven/"), "junit:junit:4.13.2");
    let r = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    assert_eq!(r.code, 0, "mvn dependency:get: {}", r.both());
    assert!(
        r.stdout.contains(&format!(
            "Downloaded from odi: {base}/r/maven/junit/junit/4.13.2/junit-4.13.2.jar"
        )),
        "Maven fetched the jar through the directory:\n{}",
        r.stdout
    );
    for f in &jars {
        assert!(
            std::fs::read(local.join(f)).unwrap() == std::fs::read(maven.join(f)).unwrap(),
            "{f} in Maven's local repository"
        );
    }
    relay.stop().await;
    dir.stop().await;
}
