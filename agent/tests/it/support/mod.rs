//! Helpers shared by every module of the integration-test binary: the real `odi` binary, a
//! small signed network with real artifact bytes, and writing it out as a git repository.
#![allow(dead_code)] // each test module uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use odi_network::builder::{commit_all, NetworkBuilder};
use odi_network::raw::{
    ArtifactEntry, CatalogFile, DirectoryFile, DirectoryKind, RelayFile, ReleaseFile, Sha256,
    Timestamp,
};
use odi_network::safe_path::ArtifactPath;
use sha2::Digest as _;

/// The catalog of [`small_network`].
pub const CATALOG: &str = "demo";
/// Tag of the catalog of [`small_network`].
pub const TAG: &str = "generic";
/// The artifact of [`small_network`] that is expunged (listed with a reason, never served).
pub const EXPUNGED: &str = "old/bad-0.9.bin";
/// Release file name of [`small_network`]: `catalogs/demo/releases/1.1.toml`.
pub const RELEASE: &str = "1.1";

/// The repository root (the example network lives there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("agent/ has a parent").to_owned()
}

/// A command running the real `odi` binary, logging only warnings.
pub fn odi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_odi"));
    c.env("ODI_LOG", "warn").env_remove("RUST_LOG").env_remove("ODI_KEY_PASSWORD");
    c
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Both streams, for assertion messages.
    pub fn both(&self) -> String {
        format!("exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs a command to completion.
pub fn run(mut cmd: Command) -> Run {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `odi <args>`.
pub fn run_odi<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = odi();
    c.args(args);
    run(c)
}

/// Runs `odi validate <dir> <extra>` and returns (exit code, stdout).
pub fn validate(dir: &Path, extra: &[&str]) -> (i32, String) {
    let r = validate_run(dir, extra);
    (r.code, r.stdout)
}

/// Runs `odi validate <dir> <extra>` with both streams.
pub fn validate_run(dir: &Path, extra: &[&str]) -> Run {
    let mut c = odi();
    c.arg("validate").arg(dir).args(extra);
    run(c)
}

/// Deterministic pseudo-random bytes seeded by the name: the demo's generator, so tests and
/// the demo make the same bytes.
pub use odi_agent::demo::catalogs::generated_bytes;

/// SHA-256 of bytes, as the model stores it.
pub fn sha256(bytes: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(bytes).into())
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// An artifact entry for `bytes` at `path`.
pub fn entry(path: &str, bytes: &[u8]) -> ArtifactEntry {
    ArtifactEntry {
        path: ArtifactPath::new(path).expect("test paths are safe"),
        size: bytes.len() as u64,
        sha256: sha256(bytes),
        published: Some(Timestamp(time::macros::datetime!(2026-03-01 12:00 UTC))),
        expunged: None,
    }
}

/// Artifacts listed in `catalogs/demo/catalog.toml`: (catalog-relative path, bytes).
pub fn catalog_artifacts() -> Vec<(String, Vec<u8>)> {
    [
        ("hello.txt", 0usize),
        ("data/blob-64k.bin", 64 << 10),
        ("tools/tool-1.0.tar.gz", 100 << 10),
        (EXPUNGED, 3000),
    ]
    .into_iter()
    .map(|(p, len)| {
        let bytes = if len == 0 {
            b"hello from the ODI demo catalog\n".to_vec()
        } else {
            generated_bytes(p, len)
        };
        (p.to_owned(), bytes)
    })
    .collect()
}

/// Artifacts listed in the release file `catalogs/demo/releases/1.1.toml`.
pub fn release_artifacts() -> Vec<(String, Vec<u8>)> {
    [("releases/1.1/app-1.1.bin", 200usize << 10), ("releases/1.1/app-1.1.txt", 1234)]
        .into_iter()
        .map(|(p, len)| (p.to_owned(), generated_bytes(p, len)))
        .collect()
}

/// Every artifact of the `demo` catalog of [`small_network`] with its bytes (the expunged one
/// included, see [`EXPUNGED`]), so that tests can serve them from an origin.
pub fn artifact_bytes() -> Vec<(String, Vec<u8>)> {
    let mut all = catalog_artifacts();
    all.extend(release_artifacts());
    all
}

/// Writes [`artifact_bytes`] under `dir` (an origin folder for `file://` origins) and
/// returns the `file://` URL of `dir` with a trailing slash.
pub fn write_origin(dir: &Path) -> String {
    for (p, bytes) in artifact_bytes() {
        let f = dir.join(&p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, bytes).unwrap();
    }
    let abs = std::fs::canonicalize(dir).expect("origin dir exists");
    format!("file://{}/", abs.display().to_string().trim_end_matches('/'))
}

/// A small valid network with fresh keys:
/// - catalog `demo` (tag `generic`, replicas 2) with artifacts in `catalog.toml` (one
///   expunged) and in the release file `releases/1.1.toml`;
/// - directories `dir-a` (region eu) and `dir-b` (region us), linked, both holding `demo`;
/// - relays `relay-1` (eu, 1 MiB, by name), `relay-2` (us, 2 MiB, by tag, 100 Mbit/s) and
///   `relay-3` (eu, 4 MiB, by tag, both directories).
///
/// Every document has serial 3, so tests can lower it. URLs are placeholders; tests that run
/// agents replace them (and the origins) before writing.
pub fn small_network() -> NetworkBuilder {
    let mut b = NetworkBuilder::new().expect("key generation");
    let mut artifacts: Vec<ArtifactEntry> =
        catalog_artifacts().iter().map(|(p, bytes)| entry(p, bytes)).collect();
    for a in &mut artifacts {
        if a.path.as_str() == EXPUNGED {
            a.expunged = Some("corrupted upload".into());
        }
    }
    b.catalogs.insert(
        CATALOG.into(),
        CatalogFile {
            serial: 3,
            name: CATALOG.into(),
            description: "Demo catalog of the test network".into(),
            tags: vec![TAG.into(), "demo".into()],
            origins: vec!["https://origin.example.org/demo/".into()],
            replicas: 2,
            import: None,
            artifacts,
        },
    );
    b.releases.insert(
        (CATALOG.into(), RELEASE.into()),
        ReleaseFile {
            serial: 3,
            catalog: CATALOG.into(),
            artifacts: release_artifacts().iter().map(|(p, bytes)| entry(p, bytes)).collect(),
        },
    );
    for (name, region, peer) in [("dir-a", "eu", "dir-b"), ("dir-b", "us", "dir-a")] {
        b.directories.insert(
            name.into(),
            DirectoryFile {
                serial: 3,
                name: name.into(),
                url: format!("https://{name}.example.net/"),
                region: region.into(),
                kind: DirectoryKind::Directory,
                contact: Some(format!("ops@{name}.example.net")),
                catalogs: vec![CATALOG.into()],
                links: vec![peer.into()],
                references: vec![],
            },
        );
    }
    // (name, region, quota, directories, subscribes by tag, bandwidth)
    type RelaySpec<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], bool, Option<&'a str>);
    let relays: [RelaySpec<'_>; 3] = [
        ("relay-1", "eu", "1 MiB", &["dir-a"], false, None),
        ("relay-2", "us", "2 MiB", &["dir-b"], true, Some("100 Mbit/s")),
        ("relay-3", "eu", "4 MiB", &["dir-a", "dir-b"], true, None),
    ];
    for (name, region, quota, dirs, by_tag, bandwidth) in relays {
        b.relays.insert(
            name.into(),
            RelayFile {
                serial: 3,
                name: name.into(),
                url: format!("https://{name}.example.net/"),
                region: region.into(),
                contact: format!("ops@{name}.example.net"),
                quota: quota.parse().unwrap(),
                bandwidth: bandwidth.map(|b| b.parse().unwrap()),
                directories: dirs.iter().map(|d| (*d).to_owned()).collect(),
                catalogs: if by_tag { vec![] } else { vec![CATALOG.into()] },
                tags: if by_tag { vec![TAG.into()] } else { vec![] },
                location: None,
                countries: vec![],
                exclude_countries: vec![],
            },
        );
    }
    b
}

/// Writes the network of `builder` into `dir` (replacing its network folders) and commits
/// the whole work tree on branch `main`; returns `dir`.
pub fn write_repo(builder: &NetworkBuilder, dir: &Path) -> PathBuf {
    builder.write(dir).expect("write network");
    commit_all(dir, "network").expect("commit");
    dir.to_owned()
}

/// Commits the work tree of `dir` and returns the commit id as hex.
pub fn commit(dir: &Path, message: &str) -> String {
    commit_all(dir, message).expect("commit").to_string()
}

/// Signs `dir/rel` with the builder's maintainer key (delegated every network path),
/// writing `rel.minisig`.
pub fn resign(builder: &NetworkBuilder, dir: &Path, rel: &str) {
    let bytes = std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    std::fs::write(dir.join(format!("{rel}.minisig")), builder.maintainer.sign(&bytes).unwrap())
        .unwrap();
}

/// Rewrites the text of `dir/rel` with `f` and re-signs it with the maintainer key, so that
/// only the content check under test can fail.
pub fn edit_signed(
    builder: &NetworkBuilder,
    dir: &Path,
    rel: &str,
    f: impl FnOnce(String) -> String,
) {
    edit(dir, rel, f);
    resign(builder, dir, rel);
}

/// Rewrites the text of `dir/rel` with `f`, leaving its signature as it was.
pub fn edit(dir: &Path, rel: &str, f: impl FnOnce(String) -> String) {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let new = f(text.clone());
    assert_ne!(new, text, "edit of {rel} changed nothing");
    std::fs::write(&path, new).unwrap();
}

/// Replaces exactly one occurrence of `from` (which must be present) in `text`.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` not found in:\n{text}");
    text.replacen(from, to, 1)
}

/// Re-signs the root file `trust/roots/<serial>.toml` with every root key of the builder
/// (after a test edited it).
pub fn resign_root(builder: &NetworkBuilder, dir: &Path, serial: u64) {
    let rel = format!("trust/roots/{serial}.toml");
    let bytes = std::fs::read(dir.join(&rel)).unwrap();
    for k in &builder.root_keys {
        std::fs::write(dir.join(format!("{rel}.{}.minisig", k.name)), k.sign(&bytes).unwrap())
            .unwrap();
    }
}

/// Whether the standard `minisign` tool is on PATH.
pub fn have_minisign() -> bool {
    Command::new("minisign")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty())
}

/// Generates an unencrypted key pair with the standard tool (`minisign -G -W`); returns
/// (secret key path, public key path, base64 public key).
pub fn minisign_keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let (sk, pk) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
    let r = run({
        let mut c = Command::new("minisign");
        c.args(["-G", "-W", "-f", "-p"]).arg(&pk).arg("-s").arg(&sk);
        c
    });
    assert_eq!(r.code, 0, "minisign -G failed: {}", r.both());
    let text = std::fs::read_to_string(&pk).unwrap();
    let public = text.lines().nth(1).expect("public key line").trim().to_owned();
    (sk, pk, public)
}

/// Adds a delegation of `paths` to the base64 key `public` to root 1 of a written network
/// and re-signs the root with the builder's root keys.
pub fn add_delegation(
    builder: &NetworkBuilder,
    dir: &Path,
    name: &str,
    public: &str,
    paths: &[&str],
) {
    let quoted: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    edit(dir, "trust/roots/1.toml", |t| {
        format!(
            "{t}\n[[delegations]]\nname = {name:?}\npublic = {public:?}\npaths = [{}]\n",
            quoted.join(", ")
        )
    });
    resign_root(builder, dir, 1);
}

/// `apt-get` with only the repository in `state/sources.list`, its own lists and caches
/// (dpkg's database is the system's: as root it installs for real), and no proxy, since
/// everything it fetches is on loopback.
pub fn apt_get(state: &Path, root: bool, sub: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive").env("no_proxy", "*").env("NO_PROXY", "*");
    for v in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        c.env_remove(v);
    }
    for (k, v) in [
        ("Dir::Etc::SourceList", state.join("sources.list")),
        ("Dir::Etc::SourceParts", state.join("sources.list.d")),
        ("Dir::Etc::PreferencesParts", state.join("preferences.d")),
        ("Dir::State::Lists", state.join("lists")),
        ("Dir::Cache", state.join("cache")),
        ("Dir::Cache::Archives", state.join("archives")),
    ] {
        c.arg("-o").arg(format!("{k}={}", v.display()));
    }
    for o in [
        "Acquire::http::Proxy=DIRECT",
        "Acquire::Languages=none",
        "Acquire::Retries=0",
        "APT::Keep-Downloaded-Packages=true",
        "DPkg::Lock::Timeout=60",
    ] {
        c.args(["-o", o]);
    }
    // Root drops to `_apt` for downloads, which cannot read a private temp folder.
    c.args(["-o", if root { "APT::Sandbox::User=root" } else { "Debug::NoLocking=1" }]);
    c.args(sub);
    c
}

/// Held by the tests that load the whole machine (the demo's six agent processes, the flood's
/// thousands of sockets), so that they never run at the same time as each other: on a 2-core
/// machine either one starves the other's timing-sensitive checks.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A client command with no proxy from the environment (everything here is loopback).
pub fn client(bin: &str) -> Command {
    let mut c = Command::new(bin);
    for v in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "ftp_proxy",
        "FTP_PROXY",
    ] {
        c.env_remove(v);
    }
    c.env("no_proxy", "*").env("NO_PROXY", "*");
    c
}

/// `<python> -m pip` with no user or site configuration and no network beyond the index.
pub fn pip(python: &str) -> Command {
    let mut c = client(python);
    c.args(["-m", "pip"]);
    for v in [
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "PIP_TRUSTED_HOST",
        "PIP_NO_INDEX",
        "PIP_TARGET",
        "PIP_REQUIRE_VIRTUALENV",
        "PYTHONPATH",
    ] {
        c.env_remove(v);
    }
    c.env("PIP_NO_INPUT", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

/// Debian's local Maven repository (plugins packaged as `lib*-java`).
pub const DEBIAN_MAVEN_REPO: &str = "/usr/share/maven-repo";

/// The version of `maven-dependency-plugin` that Debian installed (a folder with the jar).
pub fn debian_dependency_plugin() -> String {
    let dir = Path::new(DEBIAN_MAVEN_REPO).join("org/apache/maven/plugins/maven-dependency-plugin");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    versions.retain(|v| dir.join(v).join(format!("maven-dependency-plugin-{v}.jar")).is_file());
    // A real version number before Debian's `debian` alias.
    versions.sort_by_key(|v| {
        (v != "debian", v.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>())
    });
    versions
        .pop()
        .unwrap_or_else(|| panic!("no maven-dependency-plugin jar under {}: install the Debian package `libmaven-dependency-plugin-java`", dir.display()))
}

/// `mvn dependency:get` of `artifact` (not transitive) in `work`, with `local` as its local
/// repository and every remote repository mirrored by `mirror`, except Debian's plugin jars,
/// which come from the local file repository: no internet.
pub fn mvn_get(work: &Path, local: &Path, mirror: &str, artifact: &str) -> Command {
    let settings = format!(
        r#"<settings xmlns="http://maven.apache.org/SETTINGS/1.2.0">
  <localRepository>{}</localRepository>
  <interactiveMode>false</interactiveMode>
  <offline>false</offline>
  <mirrors>
    <mirror><id>odi</id><name>ODI directory</name><mirrorOf>*,!debian</mirrorOf><url>{mirror}</url></mirror>
  </mirrors>
  <profiles>
    <profile>
      <id>debian</id>
      <pluginRepositories>
        <pluginRepository><id>debian</id><url>file://{DEBIAN_MAVEN_REPO}</url></pluginRepository>
      </pluginRepositories>
    </profile>
  </profiles>
  <activeProfiles><activeProfile>debian</activeProfile></activeProfiles>
</settings>
"#,
        local.display()
    );
    std::fs::write(work.join("settings.xml"), settings).unwrap();
    std::fs::write(work.join("global-settings.xml"), "<settings/>\n").unwrap();
    let mut c = client("mvn");
    c.current_dir(work)
        .env_remove("MAVEN_OPTS")
        .env_remove("MAVEN_ARGS")
        .env_remove("MAVEN_CONFIG");
    c.args(["-B", "-s", "settings.xml", "-gs", "global-settings.xml"])
        .arg(format!("-Dmaven.repo.local={}", local.display()))
        .arg(format!(
            "org.apache.maven.plugins:maven-dependency-plugin:{}:get",
            debian_dependency_plugin()
        ))
        .arg(format!("-Dartifact={artifact}"))
        .arg("-Dtransitive=false");
    c
}
