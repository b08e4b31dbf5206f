//! Real clients end to end: curl, wget, aria2c, pip, Maven and apt download through a running
//! network on loopback (one directory, three relays, a real HTTP origin) and get exactly the
//! bytes of the catalog. Every client is pointed at the DIRECTORY and follows its `302` to a
//! relay. The content is real: a PEP 503 simple index with a wheel built here, a Maven 2
//! repository with a jar, an unsigned Debian repository with a `.deb` built by `dpkg-deb`.
//!
//! A missing client fails its test with the Debian package to install
//! (`ci/install-test-deps.sh` installs them all); nothing here touches the internet.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use odi_agent::app::RunningAgent;
use odi_network::builder::NetworkBuilder;
use odi_network::raw::CatalogFile;
use tokio_util::sync::CancellationToken;

use crate::support::{self, Run};
use crate::testnet::{client, eventually, TestNet};

const WAIT: Duration = Duration::from_secs(60);
const DIR: &str = "dir-a";
const RELAYS: [&str; 3] = ["relay-1", "relay-2", "relay-3"];

/// The 3 MiB blob of the `files` catalog (several relays can serve parts of it).
const BLOB: &str = "blob-3m.bin";
const BLOB_LEN: usize = 3 << 20;
const WHEEL: &str = "hello_odi-1.0-py3-none-any.whl";
const MAVEN_DIR: &str = "org/odi/demo/hello/1.0";
const DEB: &str = "pool/main/o/odi-hello/odi-hello_1.0_all.deb";
/// The file the `.deb` installs, and its content.
const DEB_FILE: &str = "/usr/share/odi-hello/hello.txt";
const DEB_TEXT: &str = "hello from an apt repository served by ODI\n";

/// Builds the wheel and the jar (deterministic zips) and the `.sha1` files Maven checks.
const BUILD_PY: &str = r#"
import base64, hashlib, sys, zipfile

out = sys.argv[1]

def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 3, 1, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)

def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"

wheel = [
    ("hello_odi/__init__.py", b'"""ODI end-to-end test package."""\n__version__ = "1.0"\n'),
    ("hello_odi-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: hello-odi\nVersion: 1.0\nSummary: ODI end-to-end test package\n"),
    ("hello_odi-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\nGenerator: odi-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
]
record = "".join(record_line(n, d) for n, d in wheel) + "hello_odi-1.0.dist-info/RECORD,,\n"
wheel.append(("hello_odi-1.0.dist-info/RECORD", record.encode()))
write_zip(f"{out}/hello_odi-1.0-py3-none-any.whl", wheel)

write_zip(f"{out}/hello-1.0.jar", [
    ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\nCreated-By: odi-tests\r\n\r\n"),
    ("org/odi/demo/hello.txt", b"hello from a Maven repository served by ODI\n"),
])
for name in ("hello-1.0.jar", "hello-1.0.pom"):
    with open(f"{out}/{name}", "rb") as f:
        data = f.read()
    with open(f"{out}/{name}.sha1", "w") as f:
        f.write(hashlib.sha1(data).hexdigest())
"#;

const POM: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.odi.demo</groupId>
  <artifactId>hello</artifactId>
  <version>1.0</version>
  <packaging>jar</packaging>
  <description>ODI end-to-end test artifact</description>
</project>
"#;

/// The control file of `odi-hello` (without the fields a repository index adds).
const DEB_CONTROL: &str = "Package: odi-hello
Version: 1.0
Architecture: all
Maintainer: ODI tests <tests@odi.invalid>
Installed-Size: 1
Section: misc
Priority: optional
Description: ODI end-to-end test package
 Installs one text file under /usr/share/odi-hello.
";

/// Fails (never skips) when a client is missing, naming the Debian package that has it.
fn need(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    assert!(found, "`{bin}` is not on PATH: install the Debian package `{package}` (ci/install-test-deps.sh installs every client these tests drive)");
}

fn cmd(bin: &str) -> Command {
    support::client(bin)
}

/// A command with its arguments.
fn command(bin: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args);
    c
}

/// Runs a client off the runtime's worker threads (the agents run on them).
async fn run(c: Command) -> Run {
    tokio::task::spawn_blocking(move || support::run(c)).await.unwrap()
}

/// Runs and asserts exit 0.
async fn run_ok(what: &str, c: Command) -> Run {
    let r = run(c).await;
    assert_eq!(r.code, 0, "{what} failed:\n{}", r.both());
    r
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Catalog name -> (catalog-relative path -> bytes).
type Content = BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>;

/// Builds the four catalogs' real content under `work`.
fn build_content(work: &Path) -> Content {
    need("python3", "python3");
    need("dpkg-deb", "dpkg");
    let mut content = Content::new();

    let blob = support::generated_bytes(BLOB, BLOB_LEN);
    content.insert(
        "files",
        [
            (BLOB.to_owned(), blob),
            ("hello.txt".to_owned(), b"hello from the ODI files catalog\n".to_vec()),
        ]
        .into(),
    );

    // The wheel, the jar and the checksums Maven wants.
    let build = work.join("build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("hello-1.0.pom"), POM).unwrap();
    let mut py = Command::new("python3");
    py.arg("-c").arg(BUILD_PY).arg(&build);
    let r = support::run(py);
    assert_eq!(r.code, 0, "building the wheel and the jar with python3:\n{}", r.both());

    let wheel = read(&build.join(WHEEL));
    let simple_root = "<!DOCTYPE html>\n<html><head><title>Simple index</title></head><body>\n<a href=\"hello-odi/\">hello-odi</a>\n</body></html>\n";
    let project = format!(
        "<!DOCTYPE html>\n<html><head><title>Links for hello-odi</title></head><body>\n<h1>Links for hello-odi</h1>\n<a href=\"../../packages/{WHEEL}#sha256={}\">{WHEEL}</a><br/>\n</body></html>\n",
        support::sha256_hex(&wheel)
    );
    content.insert(
        "pypi",
        [
            ("simple/index.html".to_owned(), simple_root.as_bytes().to_vec()),
            ("simple/hello-odi/index.html".to_owned(), project.into_bytes()),
            (format!("packages/{WHEEL}"), wheel),
        ]
        .into(),
    );

    let maven = ["hello-1.0.pom", "hello-1.0.pom.sha1", "hello-1.0.jar", "hello-1.0.jar.sha1"]
        .into_iter()
        .map(|f| (format!("{MAVEN_DIR}/{f}"), read(&build.join(f))))
        .collect();
    content.insert("maven", maven);

    // A real .deb, and an unsigned repository indexing it.
    let stage = work.join("deb-stage");
    std::fs::create_dir_all(stage.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(stage.join("usr/share/odi-hello")).unwrap();
    std::fs::write(stage.join("DEBIAN/control"), DEB_CONTROL).unwrap();
    std::fs::write(stage.join("usr/share/odi-hello/hello.txt"), DEB_TEXT).unwrap();
    let deb_file = build.join("odi-hello_1.0_all.deb");
    let mut c = Command::new("dpkg-deb");
    c.args(["--root-owner-group", "-Zgzip", "--build"]).arg(&stage).arg(&deb_file);
    let r = support::run(c);
    assert_eq!(r.code, 0, "dpkg-deb --build:\n{}", r.both());
    let deb = read(&deb_file);
    let (head, description) = DEB_CONTROL.split_once("Description:").unwrap();
    let packages = format!(
        "{head}Filename: {DEB}\nSize: {}\nSHA256: {}\nDescription:{description}",
        deb.len(),
        support::sha256_hex(&deb)
    );
    let release = format!(
        "Origin: ODI\nLabel: ODI\nSuite: stable\nCodename: stable\nDate: Sun, 01 Mar 2026 12:00:00 UTC\nArchitectures: all\nComponents: main\nDescription: ODI end-to-end test repository\nSHA256:\n {} {} main/binary-all/Packages\n",
        support::sha256_hex(packages.as_bytes()),
        packages.len()
    );
    content.insert(
        "apt",
        [
            ("dists/stable/Release".to_owned(), release.into_bytes()),
            ("dists/stable/main/binary-all/Packages".to_owned(), packages.into_bytes()),
            (DEB.to_owned(), deb),
        ]
        .into(),
    );
    content
}

/// One directory serving the four catalogs and three relays subscribing to all by tag.
fn network(content: &Content) -> NetworkBuilder {
    let mut b = support::small_network();
    b.catalogs.clear();
    b.releases.clear();
    b.directories.retain(|name, _| name == DIR);
    let tags = [("files", "files"), ("pypi", "python"), ("maven", "java"), ("apt", "debian")];
    for (catalog, tag) in tags {
        b.catalogs.insert(
            catalog.into(),
            CatalogFile {
                serial: 1,
                name: catalog.into(),
                description: format!("{catalog} content for the real-client tests"),
                tags: vec![tag.into()],
                origins: vec!["https://origin.example.org/".into()],
                replicas: 2,
                import: None,
                artifacts: content[catalog]
                    .iter()
                    .map(|(p, bytes)| support::entry(p, bytes))
                    .collect(),
            },
        );
    }
    let d = b.directories.get_mut(DIR).unwrap();
    d.catalogs = tags.iter().map(|(c, _)| (*c).to_owned()).collect();
    d.links.clear();
    for r in b.relays.values_mut() {
        r.directories = vec![DIR.into()];
        r.catalogs.clear();
        r.tags = tags.iter().map(|(_, t)| (*t).to_owned()).collect();
        r.quota = "64 MiB".parse().unwrap();
        r.bandwidth = None;
    }
    b
}

/// A running network holding real ecosystem content.
struct Net {
    net: TestNet,
    content: Content,
    /// Kept alive for the test.
    _agents: Vec<RunningAgent>,
    /// Scratch space of the clients.
    work: tempfile::TempDir,
}

impl Net {
    /// Builds the content, starts the directory and the relays and waits until every relay is
    /// healthy at the directory and holds its share (every artifact on its 2 relays).
    async fn up() -> Self {
        let work = tempfile::tempdir().unwrap();
        let content = build_content(work.path());
        // One origin serves every catalog: the catalogs' paths do not overlap.
        let mut files = Vec::new();
        for (catalog, map) in &content {
            for (p, bytes) in map {
                assert!(
                    !files.iter().any(|(q, _): &(String, Vec<u8>)| q == p),
                    "{catalog}/{p} overlaps another catalog"
                );
                files.push((p.clone(), bytes.clone()));
            }
        }
        let total = files.len();
        let mut net = TestNet::new(network(&content), files).await;
        // Each relay on its own loopback address: clients that limit connections per host
        // (aria2c) see the directory and the relays as different servers, as on the internet.
        let addrs: BTreeMap<&str, SocketAddr> = RELAYS
            .iter()
            .zip(2u8..)
            .map(|(r, i)| (*r, SocketAddr::from(([127, 0, 0, i], net.ports[*r]))))
            .collect();
        for (r, a) in &addrs {
            net.builder.relays.get_mut(*r).unwrap().url = format!("http://{a}/");
        }
        net.commit("relays on their own loopback addresses");
        let mut agents = vec![net.start(DIR).await];
        for (r, a) in &addrs {
            let mut config = net.config(r);
            config.listen = vec![*a];
            agents.push(odi_agent::app::start(config, CancellationToken::new()).await.unwrap());
        }
        let base = net.url(DIR);
        // Every replica in place (2 per artifact), not just one per artifact: clients may be
        // sent to either copy.
        let copies = 2 * total;
        eventually(&format!("{DIR}: relays {RELAYS:?} healthy, holding all {copies} copies of the {total} artifacts"), WAIT, || {
            let base = base.clone();
            async move {
                let Ok(r) = client().get(format!("{base}/.odi/v1/status")).send().await else { return false };
                let Ok(doc) = r.json::<serde_json::Value>().await else { return false };
                let d = &doc["directory"];
                let Some(relays) = d["relays"].as_array() else { return false };
                let healthy = relays.len() == RELAYS.len() && relays.iter().all(|r| r["healthy"] == true);
                let held: u64 = relays.iter().filter_map(|r| r["artifacts_held"].as_u64()).sum();
                healthy && held >= copies as u64 && d["routing"]["current"] == true && d["routing"]["routable"] == total
            }
        })
        .await;
        let n = Net { net, content, _agents: agents, work };
        // What the clients will see: a redirect to a relay.
        let url = n.url("files", BLOB);
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(
            r.status(),
            302,
            "GET {url} on the directory redirects once the relays are ready"
        );
        n
    }

    /// `<directory>/r/<catalog>/<path>`.
    fn url(&self, catalog: &str, path: &str) -> String {
        format!("{}/r/{catalog}/{path}", self.net.url(DIR))
    }

    fn bytes(&self, catalog: &str, path: &str) -> &[u8] {
        &self.content[catalog][path]
    }

    /// A fresh scratch folder.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.work.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Base URL of a relay (with a trailing slash).
    fn relay_url(&self, relay: &str) -> &str {
        &self.net.builder.relays[relay].url
    }

    /// Which relay a URL points at.
    fn relay_of(&self, url: &str) -> Option<&'static str> {
        RELAYS.into_iter().find(|r| url.starts_with(self.relay_url(r)))
    }

    /// `odi_served_bytes_total` of every relay.
    async fn served_bytes(&self) -> BTreeMap<&'static str, f64> {
        let mut out = BTreeMap::new();
        for r in RELAYS {
            let text = client()
                .get(format!("{}metrics", self.relay_url(r)))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let v = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("odi_served_bytes_total")
                        .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
                .and_then(|rest| rest.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            out.insert(r, v);
        }
        out
    }
}

fn same(what: &str, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{what}: {} bytes (sha256 {}), the catalog has {} bytes (sha256 {})",
        got.len(),
        support::sha256_hex(got),
        want.len(),
        support::sha256_hex(want)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_follows_the_redirect_and_resumes() {
    need("curl", "curl");
    let n = Net::up().await;
    let out = n.dir("curl");
    let blob = n.bytes("files", BLOB);

    for path in [BLOB, "hello.txt"] {
        let file = out.join(path);
        let mut c = cmd("curl");
        c.args([
            "-sSfL",
            "--max-time",
            "30",
            "-w",
            "%{http_code} %{num_redirects} %{url_effective}",
            "-o",
        ])
        .arg(&file)
        .arg(n.url("files", path));
        let r = run_ok("curl -L", c).await;
        let w: Vec<&str> = r.stdout.split(' ').collect();
        assert_eq!(w[..2], ["200", "1"], "curl followed one redirect to a 200: {}", r.stdout);
        assert!(n.relay_of(w[2]).is_some(), "the bytes came from a relay, not {}", w[2]);
        same(&format!("curl -L files/{path}"), &read(&file), n.bytes("files", path));
    }

    // Resume: the first half is on disk; `-C -` asks the directory for the rest, follows the
    // redirect with the Range header, and gets only the missing bytes from the relay.
    let half = BLOB_LEN / 2;
    let file = out.join("resumed.bin");
    std::fs::write(&file, &blob[..half]).unwrap();
    let mut c = cmd("curl");
    c.args([
        "-sSfL",
        "--max-time",
        "30",
        "-C",
        "-",
        "-w",
        "%{http_code} %{num_redirects} %{size_download}",
        "-o",
    ])
    .arg(&file)
    .arg(n.url("files", BLOB));
    let r = run_ok("curl -L -C -", c).await;
    let w: Vec<&str> = r.stdout.split(' ').collect();
    assert_eq!(w[..2], ["206", "1"], "the resume was a 206 through one redirect: {}", r.stdout);
    assert_eq!(
        w[2],
        (BLOB_LEN - half).to_string(),
        "curl downloaded only the missing half: {}",
        r.stdout
    );
    same("curl -C - files/blob", &read(&file), blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wget_follows_the_redirect() {
    need("wget", "wget");
    let n = Net::up().await;
    let out = n.dir("wget");
    for path in [BLOB, "hello.txt"] {
        let file = out.join(path);
        let mut c = cmd("wget");
        // `-S` prints the response headers (on stderr): both the 302 and the relay's 200.
        c.args(["-q", "-S", "--no-config", "--tries=1", "--timeout=30", "-O"])
            .arg(&file)
            .arg(n.url("files", path));
        let r = run_ok("wget", c).await;
        assert!(
            r.stderr.contains("HTTP/1.1 302"),
            "wget saw the directory's redirect:\n{}",
            r.stderr
        );
        assert!(r.stderr.contains("HTTP/1.1 200"), "and the relay's 200:\n{}", r.stderr);
        same(&format!("wget files/{path}"), &read(&file), n.bytes("files", path));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_uses_the_metalink_and_the_link_headers_to_download_from_several_relays() {
    need("aria2c", "aria2");
    let n = Net::up().await;
    let blob = n.bytes("files", BLOB);
    let aria = |dir: &Path, out: &str| {
        let mut c = cmd("aria2c");
        // 1 MiB pieces so that the 3 MiB blob is split, at most one connection per server
        // (`-x1`) so that aria2 has to use other sources for the other pieces, a speed cap
        // so that the first connection does not fetch every piece on loopback before the
        // others are up, and the debug log on stdout to see which URIs it took from where.
        c.args([
            "--no-conf",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--download-result=hide",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
        ])
        .args([
            "--check-integrity=true",
            "--max-tries=2",
            "--retry-wait=1",
            "--timeout=30",
            "-k1M",
            "-x1",
            "-s3",
            "--max-download-limit=3M",
            "--uri-selector=inorder",
            "--log-level=debug",
            "--log=-",
        ])
        .arg("-d")
        .arg(dir)
        .arg("-o")
        .arg(out);
        c
    };
    // Relays that served at least one 1 MiB piece (the directory's probes read far less).
    let servers = |before: &BTreeMap<&'static str, f64>,
                   after: &BTreeMap<&'static str, f64>|
     -> Vec<&'static str> {
        RELAYS.into_iter().filter(|r| after[r] - before[r] >= f64::from(512u32 << 10)).collect()
    };

    // Metalink: aria2 reads the `.meta4` from the directory (size, sha256, relay URLs),
    // downloads pieces from the relays and checks the hash.
    let before = n.served_bytes().await;
    let dir = n.dir("aria2-metalink");
    let mut c = aria(&dir, BLOB);
    c.arg("--follow-metalink=mem").arg(format!("{}.meta4", n.url("files", BLOB)));
    let r = run_ok("aria2c --follow-metalink=mem", c).await;
    same("aria2c (Metalink) files/blob", &read(&dir.join(BLOB)), blob);
    let after = n.served_bytes().await;
    let used = servers(&before, &after);
    assert!(used.len() >= 2, "several relays served pieces of the blob listed in the Metalink: {used:?}, bytes {before:?} -> {after:?}\n{}", tail(&r.stdout));

    // Link headers (RFC 6249) on the directory's 302: aria2 adds the `rel=duplicate` relay
    // as a source, takes the hash from `Digest`, and fetches pieces from both relays.
    let before = n.served_bytes().await;
    let dir = n.dir("aria2-link");
    let mut c = aria(&dir, BLOB);
    c.arg(n.url("files", BLOB));
    let r = run_ok("aria2c URL", c).await;
    same("aria2c (Link headers) files/blob", &read(&dir.join(BLOB)), blob);
    let added: Vec<&str> = RELAYS
        .into_iter()
        .filter(|relay| {
            r.stdout.contains(&format!("Adding URI={}r/files/{BLOB}", n.relay_url(relay)))
        })
        .collect();
    assert!(
        !added.is_empty(),
        "aria2 took a relay from the Link: rel=duplicate header:\n{}",
        tail(&r.stdout)
    );
    assert!(
        r.stdout.contains("Setting digest: type=sha-256"),
        "aria2 took the sha-256 from the Digest header:\n{}",
        tail(&r.stdout)
    );
    let after = n.served_bytes().await;
    let used = servers(&before, &after);
    assert!(used.len() >= 2, "the redirect target and the Link duplicate both served pieces: {used:?} (Link added {added:?}), bytes {before:?} -> {after:?}");
    assert!(
        added.iter().all(|a| used.contains(a)),
        "the relay from the Link header served bytes: added {added:?}, served {used:?}"
    );

    // A small file: one piece, one relay.
    let dir = n.dir("aria2-small");
    let mut c = aria(&dir, "hello.txt");
    c.arg(n.url("files", "hello.txt"));
    run_ok("aria2c small file", c).await;
    same("aria2c files/hello.txt", &read(&dir.join("hello.txt")), n.bytes("files", "hello.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_checks_metalink_piece_hashes_and_takes_a_bad_piece_again_from_another_relay() {
    need("aria2c", "aria2");
    let n = Net::up().await;
    let blob = n.bytes("files", BLOB).to_vec();
    let meta4 = format!("{}.meta4", n.url("files", BLOB));
    let doc = client().get(&meta4).send().await.unwrap().text().await.unwrap();
    // The directory lists a SHA-256 per 1 MiB piece of its own verified copy.
    let mut want = String::from("<pieces length=\"1048576\" type=\"sha-256\">\n");
    for piece in blob.chunks(1 << 20) {
        want.push_str(&format!("      <hash>{}</hash>\n", support::sha256_hex(piece)));
    }
    assert!(doc.contains(&want), "piece hashes in the Metalink:\n{doc}");

    // An ODI relay re-hashes a changed file before serving it, so to have a mirror that
    // serves a bad piece, the first relay URL of the Metalink is replaced by a server that
    // corrupts the second MiB (a compromised relay, or a man in the middle on plain HTTP).
    // The directory's own URL is left out, so that every piece comes from a "relay".
    let good = RELAYS
        .into_iter()
        .find(|r| doc.contains(&format!("{}r/files/{BLOB}", n.relay_url(r))))
        .unwrap();
    let mut rotten = blob.clone();
    for b in &mut rotten[(1 << 20)..(1 << 20) + 4096] {
        *b ^= 0xff;
    }
    let bad = serve_ranges(rotten).await;
    let own = format!("{}</url>", n.url("files", BLOB));
    let urls = format!(
        "    <url priority=\"1\">{bad}</url>\n    <url priority=\"2\">{}r/files/{BLOB}</url>\n",
        n.relay_url(good)
    );
    let mut edited = String::new();
    for l in doc.lines().filter(|l| !l.contains("<url ")) {
        if l.trim() == "</file>" {
            edited.push_str(&urls);
        }
        edited.push_str(l);
        edited.push('\n');
    }
    assert!(!edited.contains(&own));
    let dir = n.dir("aria2-pieces");
    std::fs::write(dir.join("blob.meta4"), &edited).unwrap();
    let mut c = cmd("aria2c");
    c.args([
        "--no-conf",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--max-tries=5",
        "--retry-wait=1",
        "--timeout=30",
        "-k1M",
        "-x1",
        "-s2",
        "--max-download-limit=2M",
        "--uri-selector=inorder",
        "--log-level=info",
        "--log=-",
    ])
    .arg("-d")
    .arg(&dir)
    .arg("-M")
    .arg(dir.join("blob.meta4"));
    let r = run_ok("aria2c -M with piece hashes", c).await;
    same("aria2c (pieces) files/blob", &read(&dir.join(BLOB)), &blob);
    assert!(
        r.stdout.contains("Chunk checksum validation failed"),
        "aria2 caught the bad piece from {bad} (and took it again from {good}):\n{}",
        tail(&r.stdout)
    );
}

/// A bare HTTP/1.1 server of `bytes` at `/blob` with single ranges (`bytes=a-b`, `bytes=a-`);
/// returns its URL.
async fn serve_ranges(bytes: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/blob", listener.local_addr().unwrap());
    let bytes = std::sync::Arc::new(bytes);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let range =
                    head.lines().find_map(|l| l.strip_prefix("range: bytes=")).and_then(|r| {
                        let (a, b) = r.trim().split_once('-')?;
                        let a: usize = a.parse().ok()?;
                        let b = if b.is_empty() { bytes.len() - 1 } else { b.parse().ok()? };
                        (a <= b && b < bytes.len()).then_some((a, b))
                    });
                let (status, (a, b)) = match range {
                    Some(r) => ("206 Partial Content", r),
                    None => ("200 OK", (0, bytes.len() - 1)),
                };
                let mut out = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-range: bytes {a}-{b}/{}\r\naccept-ranges: bytes\r\nconnection: close\r\n\r\n",
                    b + 1 - a,
                    bytes.len()
                )
                .into_bytes();
                out.extend_from_slice(&bytes[a..=b]);
                let _ = sock.write_all(&out).await;
            });
        }
    });
    url
}

/// The end of a long log, for assertion messages.
fn tail(log: &str) -> &str {
    let mut start = log.len().saturating_sub(6000);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

/// Every URL the directory may send a client to for `url`: its own when it answers with the
/// bytes, else the redirect target and the `Link: rel=duplicate` alternatives.
async fn page_sources(url: &str) -> Vec<String> {
    let r = client().get(url).send().await.unwrap();
    match r.status().as_u16() {
        200 => vec![url.to_owned()],
        302 => {
            let mut out = vec![r.headers()["location"].to_str().unwrap().to_owned()];
            for l in r.headers().get_all("link").iter().filter_map(|v| v.to_str().ok()) {
                for one in l.split(',').filter(|one| one.contains("rel=duplicate")) {
                    if let Some(u) = one.trim().strip_prefix('<').and_then(|u| u.split('>').next())
                    {
                        out.push(u.to_owned());
                    }
                }
            }
            out
        }
        s => panic!("GET {url} on the directory answered {s}"),
    }
}

fn pip() -> Command {
    support::pip("python3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_installs_a_wheel_from_the_simple_index() {
    need("python3", "python3");
    let mut c = pip();
    c.arg("--version");
    let r = run(c).await;
    assert_eq!(
        r.code,
        0,
        "`python3 -m pip` is not available: install the Debian package `python3-pip`\n{}",
        r.both()
    );
    let n = Net::up().await;
    // pip asks `<index>/hello-odi/` (a folder URL: the directory redirects to the relay's
    // `index.html`), reads the link, and fetches the wheel relative to the relay's page.
    let index = n.url("pypi", "simple/");
    let wheel = n.bytes("pypi", &format!("packages/{WHEEL}"));

    // pip resolves the page's relative link against the URL the page finally came from.
    // Wherever the directory may send it for the page (the 302 target and every
    // `rel=duplicate`), that link must lead to the wheel, even from a relay that does not
    // hold the wheel itself (replicas 2 of 3 relays); otherwise pip fails at random.
    let page = format!("{index}hello-odi/");
    for base in page_sources(&page).await {
        let body = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(&base)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let href = body
            .split("href=\"")
            .nth(1)
            .and_then(|h| h.split('"').next())
            .expect("the project page has a link");
        let link = reqwest::Url::parse(&base).unwrap().join(href).unwrap();
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(link.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let got = r.bytes().await.unwrap();
        assert!(
            status == 200 && got == wheel,
            "the wheel link of the project page served from {base} ({link}) answers {status} ({} bytes): a page served by a relay must have \
             working relative links, e.g. a relay redirects requests for artifacts it does not hold to its directory",
            got.len()
        );
    }

    let out = n.dir("pip-download");
    let mut c = pip();
    c.args(["download", "--no-deps", "--no-cache-dir", "--index-url", &index, "hello-odi", "-d"])
        .arg(&out);
    run_ok("pip download", c).await;
    same("pip download hello-odi", &read(&out.join(WHEEL)), wheel);

    let target = n.dir("pip-target");
    let mut c = pip();
    c.args([
        "install",
        "--no-deps",
        "--no-cache-dir",
        "--no-compile",
        "--index-url",
        &index,
        "hello-odi==1.0",
        "--target",
    ])
    .arg(&target);
    let r = run_ok("pip install --target", c).await;
    assert!(
        r.stdout.contains("Successfully installed hello-odi-1.0"),
        "pip installed the wheel:\n{}",
        r.both()
    );
    let mut c = cmd("python3");
    c.env("PYTHONPATH", &target)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-c", "import hello_odi; print(hello_odi.__version__); print(hello_odi.__file__)"]);
    let r = run_ok("import hello_odi", c).await;
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("1.0"), "the installed module's version:\n{}", r.both());
    let file = lines.next().unwrap_or_default();
    assert!(
        Path::new(file).starts_with(&target),
        "imported from the --target folder, not from {file}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maven_resolves_an_artifact_through_the_directory_as_a_mirror() {
    need("mvn", "maven");
    // The plugin's dependencies as Debian declares them include junit:junit:4.x.
    let junit = Path::new(support::DEBIAN_MAVEN_REPO).join("junit/junit/4.x");
    assert!(junit.is_dir(), "{} is missing: install the Debian package `junit4` (a dependency of Debian's maven-dependency-plugin poms)", junit.display());
    let n = Net::up().await;
    let work = n.dir("maven");
    let local = n.dir("maven-local");
    let mirror = n.url("maven", "");
    let c = support::mvn_get(&work, &local, &mirror, "org.odi.demo:hello:1.0");
    let r = run_ok("mvn dependency:get", c).await;
    let jar_url = format!("{mirror}{MAVEN_DIR}/hello-1.0.jar");
    assert!(
        r.stdout.contains(&format!("Downloaded from odi: {jar_url}")),
        "Maven fetched the jar from the directory:\n{}",
        tail(&r.stdout)
    );
    assert!(
        !r.stdout.contains("from odi for")
            && !r.stdout.contains(&format!("integrity of download from {mirror}")),
        "Maven verified the .sha1 of what it got through the directory:\n{}",
        tail(&r.stdout)
    );
    for f in ["hello-1.0.jar", "hello-1.0.pom"] {
        let path = format!("{MAVEN_DIR}/{f}");
        same(
            &format!("Maven local repository {f}"),
            &read(&local.join(&path)),
            n.bytes("maven", &path),
        );
    }
}

/// Purges `odi-hello` from the system when dropped (the apt test installs it for real).
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = command("dpkg", &["--purge", "odi-hello"]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apt_installs_a_package_from_the_repository() {
    need("apt-get", "apt");
    need("dpkg", "dpkg");
    let id = support::run(command("id", &["-u"]));
    let root = id.stdout.trim() == "0";
    let n = Net::up().await;
    let state = n.dir("apt");
    for d in ["lists/partial", "archives/partial", "cache", "sources.list.d", "preferences.d"] {
        std::fs::create_dir_all(state.join(d)).unwrap();
    }
    // Unsigned repository: `trusted=yes`.
    std::fs::write(
        state.join("sources.list"),
        format!("deb [trusted=yes] {} stable main\n", n.url("apt", "")),
    )
    .unwrap();
    // apt with only this repository and its own lists and caches; dpkg's database is the
    // system's (a real install, purged at the end).
    let apt = |sub: &[&str]| support::apt_get(&state, root, sub);
    let r = run_ok("apt-get update", apt(&["update"])).await;
    assert!(
        !r.stdout.contains("Err:") && !r.stderr.contains("W:"),
        "apt-get update read the repository cleanly:\n{}",
        r.both()
    );
    let deb = n.bytes("apt", DEB);

    if !root {
        // Not root (CI is): download and unpack instead of installing.
        let r = run_ok("apt-get download", {
            let mut c = apt(&["download", "odi-hello"]);
            c.current_dir(&state);
            c
        })
        .await;
        same("apt-get download odi-hello", &read(&state.join("odi-hello_1.0_all.deb")), deb);
        let unpacked = n.dir("apt-unpacked");
        let mut c = Command::new("dpkg-deb");
        c.arg("-x").arg(state.join("odi-hello_1.0_all.deb")).arg(&unpacked);
        run_ok("dpkg-deb -x", c).await;
        same(
            "the file of odi-hello",
            &read(&unpacked.join(DEB_FILE.trim_start_matches('/'))),
            DEB_TEXT.as_bytes(),
        );
        eprintln!("not root: checked `apt-get download` and the unpacked file instead of a real install\n{}", r.stdout);
        return;
    }

    let _purge = Purge;
    let _ = support::run(command("dpkg", &["--purge", "odi-hello"]));
    let r = run_ok(
        "apt-get install odi-hello",
        apt(&["install", "-y", "--no-install-recommends", "odi-hello"]),
    )
    .await;
    assert!(
        r.stdout.contains("Setting up odi-hello (1.0)"),
        "apt installed odi-hello 1.0:\n{}",
        r.both()
    );
    same("apt's downloaded .deb", &read(&state.join("archives/odi-hello_1.0_all.deb")), deb);
    same(&format!("{DEB_FILE} installed by apt"), &read(Path::new(DEB_FILE)), DEB_TEXT.as_bytes());
    let r = run_ok("dpkg -s", command("dpkg", &["-s", "odi-hello"])).await;
    assert!(
        r.stdout.contains("Status: install ok installed") && r.stdout.contains("Version: 1.0"),
        "{}",
        r.stdout
    );
    run_ok("dpkg --purge", command("dpkg", &["--purge", "odi-hello"])).await;
    assert!(!Path::new(DEB_FILE).exists(), "{DEB_FILE} is gone after the purge");
}
