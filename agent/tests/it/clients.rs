//! Real clients end to end: curl, wget, aria2c, pip, Maven and apt download through a running
//! network on loopback (one directory, three relays, a real HTTP origin) and get exactly the
//! bytes of the catalog. Every client is pointed at the DIRECTORY and follows its `302` to a
//! relay. The content is real: a PEP 503 simple index with a wheel built here, a Maven 2
//! repository with a jar, an unsigned Debian repository with a `.deb` built by `dpkg-deb`.
//!
//! A missing client fails its test with the Debian package to install
//! (`ci/install-test-deps.sh` installs them all); nothing here touches the internet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use odi_agent::node::RunningAgent;
use odi_network::builder::NetworkBuilder;
use odi_network::raw::CatalogFile;

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
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    assert!(found, "`{bin}` is not on PATH: install the Debian package `{package}` (ci/install-test-deps.sh installs every client these tests drive)");
}

/// A client command with no proxy from the environment (everything here is loopback).
fn cmd(bin: &str) -> Command {
    let mut c = Command::new(bin);
    for v in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "ftp_proxy", "FTP_PROXY"] {
        c.env_remove(v);
    }
    c.env("no_proxy", "*").env("NO_PROXY", "*");
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
    content.insert("files", [(BLOB.to_owned(), blob), ("hello.txt".to_owned(), b"hello from the ODI files catalog\n".to_vec())].into());

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
    let packages = format!("{head}Filename: {DEB}\nSize: {}\nSHA256: {}\nDescription:{description}", deb.len(), support::sha256_hex(&deb));
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
                artifacts: content[catalog].iter().map(|(p, bytes)| support::entry(p, bytes)).collect(),
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
    /// Builds the content, starts the directory and the relays and waits until the directory
    /// redirects every artifact to a healthy relay.
    async fn up() -> Self {
        let work = tempfile::tempdir().unwrap();
        let content = build_content(work.path());
        // One origin serves every catalog: the catalogs' paths do not overlap.
        let mut files = Vec::new();
        for (catalog, map) in &content {
            for (p, bytes) in map {
                assert!(!files.iter().any(|(q, _): &(String, Vec<u8>)| q == p), "{catalog}/{p} overlaps another catalog");
                files.push((p.clone(), bytes.clone()));
            }
        }
        let total = files.len();
        let net = TestNet::new(network(&content), files).await;
        let mut agents = vec![net.start(DIR).await];
        for r in RELAYS {
            agents.push(net.start(r).await);
        }
        let base = net.url(DIR);
        eventually(&format!("{DIR}: relays {RELAYS:?} healthy and all {total} artifacts routable"), WAIT, || {
            let base = base.clone();
            async move {
                let Ok(r) = client().get(format!("{base}/.odi/v1/status")).send().await else { return false };
                let Ok(doc) = r.json::<serde_json::Value>().await else { return false };
                let d = &doc["directory"];
                let healthy = d["relays"].as_array().is_some_and(|a| a.len() == RELAYS.len() && a.iter().all(|r| r["healthy"] == true));
                healthy && d["routing"]["current"] == true && d["routing"]["routable"] == total
            }
        })
        .await;
        let n = Net { net, content, _agents: agents, work };
        // What the clients will see: a redirect to a relay.
        let url = n.url("files", BLOB);
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 302, "GET {url} on the directory redirects once the relays are ready");
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

    /// Which relay a URL points at.
    fn relay_of(&self, url: &str) -> Option<&'static str> {
        RELAYS.into_iter().find(|r| url.starts_with(&format!("{}/", self.net.url(r))))
    }

    /// `odi_served_bytes_total` of every relay.
    async fn served_bytes(&self) -> BTreeMap<&'static str, f64> {
        let mut out = BTreeMap::new();
        for r in RELAYS {
            let text = client().get(format!("{}/metrics", self.net.url(r))).send().await.unwrap().text().await.unwrap();
            let v = text
                .lines()
                .find_map(|l| l.strip_prefix("odi_served_bytes_total").filter(|rest| rest.starts_with(' ') || rest.starts_with('{')))
                .and_then(|rest| rest.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            out.insert(r, v);
        }
        out
    }
}

fn same(what: &str, got: &[u8], want: &[u8]) {
    assert!(got == want, "{what}: {} bytes (sha256 {}), the catalog has {} bytes (sha256 {})", got.len(), support::sha256_hex(got), want.len(), support::sha256_hex(want));
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
        c.args(["-sSfL", "--max-time", "30", "-w", "%{http_code} %{num_redirects} %{url_effective}", "-o"]).arg(&file).arg(n.url("files", path));
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
    c.args(["-sSfL", "--max-time", "30", "-C", "-", "-w", "%{http_code} %{num_redirects} %{size_download}", "-o"]).arg(&file).arg(n.url("files", BLOB));
    let r = run_ok("curl -L -C -", c).await;
    let w: Vec<&str> = r.stdout.split(' ').collect();
    assert_eq!(w[..2], ["206", "1"], "the resume was a 206 through one redirect: {}", r.stdout);
    assert_eq!(w[2], (BLOB_LEN - half).to_string(), "curl downloaded only the missing half: {}", r.stdout);
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
        c.args(["-q", "-S", "--no-config", "--tries=1", "--timeout=30", "-O"]).arg(&file).arg(n.url("files", path));
        let r = run_ok("wget", c).await;
        assert!(r.stderr.contains("HTTP/1.1 302"), "wget saw the directory's redirect:\n{}", r.stderr);
        assert!(r.stderr.contains("HTTP/1.1 200"), "and the relay's 200:\n{}", r.stderr);
        same(&format!("wget files/{path}"), &read(&file), n.bytes("files", path));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_uses_the_metalink_and_the_link_headers() {
    need("aria2c", "aria2");
    let n = Net::up().await;
    let blob = n.bytes("files", BLOB);
    let aria = |dir: &Path, out: &str| {
        let mut c = cmd("aria2c");
        // 1 MiB pieces so that the 3 MiB blob is split over 3 connections.
        c.args(["--no-conf", "--console-log-level=warn", "--summary-interval=0", "--download-result=hide", "--allow-overwrite=true", "--auto-file-renaming=false"])
            .args(["--check-integrity=true", "--max-tries=2", "--retry-wait=1", "--timeout=30", "-k1M", "-x3", "-s3", "--log-level=info", "--log=-"])
            .arg("-d")
            .arg(dir)
            .arg("-o")
            .arg(out);
        c
    };

    // Metalink: aria2 reads the `.meta4` from the directory (size, sha256, relay URLs),
    // downloads from the relays and checks the hash.
    let before = n.served_bytes().await;
    let dir = n.dir("aria2-metalink");
    let mut c = aria(&dir, BLOB);
    c.arg("--follow-metalink=mem").arg(format!("{}.meta4", n.url("files", BLOB)));
    let r = run_ok("aria2c --follow-metalink=mem", c).await;
    same("aria2c (Metalink) files/blob", &read(&dir.join(BLOB)), blob);
    let after = n.served_bytes().await;
    let servers: Vec<&str> = RELAYS.into_iter().filter(|r| after[r] - before[r] >= (256 << 10) as f64).collect();
    assert!(servers.len() >= 2, "several relays served parts of the blob from the Metalink: {before:?} -> {after:?}\n{}", r.stdout);

    // Link headers (RFC 6249): a plain URL on the directory, `-s3` pieces.
    let before = n.served_bytes().await;
    let dir = n.dir("aria2-link");
    let mut c = aria(&dir, BLOB);
    c.arg(n.url("files", BLOB));
    let r = run_ok("aria2c URL", c).await;
    same("aria2c (Link headers) files/blob", &read(&dir.join(BLOB)), blob);
    let after = n.served_bytes().await;
    let servers: Vec<&str> = RELAYS.into_iter().filter(|r| after[r] - before[r] >= (256 << 10) as f64).collect();
    eprintln!("aria2c with Link headers: relays that served >= 256 KiB: {servers:?} ({before:?} -> {after:?})");
    assert!(!servers.is_empty(), "a relay served the blob: {before:?} -> {after:?}\n{}", r.stdout);

    // The small file too.
    let dir = n.dir("aria2-small");
    let mut c = aria(&dir, "hello.txt");
    c.arg(n.url("files", "hello.txt"));
    run_ok("aria2c small file", c).await;
    same("aria2c files/hello.txt", &read(&dir.join("hello.txt")), n.bytes("files", "hello.txt"));
}
