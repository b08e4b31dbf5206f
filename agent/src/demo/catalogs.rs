//! The demo's catalogs, with real bytes: each layout writes its files under
//! `<origin>/<catalog>/` exactly as the ecosystem's clients expect them (generic tarballs, a
//! PEP 503 simple index with a wheel, a Maven 2 repository) and returns the catalog entries.
//!
//! The end-to-end client suite calls [`demo_catalogs`] (or [`demo_catalogs_with`] and its own
//! extra layouts, such as an apt repository) so that the demo and the tests serve the same
//! files. A new layout is one function of type [`Layout`] added to [`LAYOUTS`].

use std::path::{Path, PathBuf};

use base64::Engine as _;
use odi_network::raw::{ArtifactEntry, CatalogFile, Sha256, Timestamp};
use odi_network::safe_path::ArtifactPath;
use sha2::Digest as _;

use super::archive::{gzip_stored, sha1_hex, stored_zip, tar};
use super::DemoError;

/// The `hello` catalog: generic tarballs.
pub const HELLO: &str = "hello";
/// The `pypi` catalog: a PEP 503 simple index.
pub const PYPI: &str = "pypi";
/// The `maven` catalog: a Maven 2 repository.
pub const MAVEN: &str = "maven";

/// A small tarball of `hello`.
pub const HELLO_SMALL: &str = "hello-1.0.tar.gz";
/// A medium tarball of `hello`.
pub const HELLO_MEDIUM: &str = "hello-1.1.tar.gz";
/// The ~8 MiB tarball of `hello` (long enough to watch, interrupt and resume).
pub const HELLO_LARGE: &str = "hello-2.0.tar.gz";
/// The expunged artifact of `hello`: listed with a reason, answered with 410 Gone.
pub const HELLO_EXPUNGED: &str = "hello-1.2.tar.gz";
/// Why [`HELLO_EXPUNGED`] was withdrawn.
pub const EXPUNGE_REASON: &str = "corrupted upload: the 1.2 tarball does not unpack; use 2.0";
/// A text file of `hello`, readable in a terminal.
pub const HELLO_README: &str = "README.txt";

/// The distribution name pip installs from the `pypi` catalog.
pub const PYPI_PROJECT: &str = "hello-odi";
/// The wheel of [`PYPI_PROJECT`], under `packages/`.
pub const WHEEL: &str = "hello_odi-1.0-py3-none-any.whl";

/// Maven coordinates of the `maven` catalog's artifact.
pub const MAVEN_COORDS: &str = "org.odi.demo:hello:1.0";
/// The jar's path in the Maven repository.
pub const MAVEN_JAR: &str = "org/odi/demo/hello/1.0/hello-1.0.jar";

/// When every demo artifact was published (served as Last-Modified by every node).
pub const PUBLISHED: time::OffsetDateTime = time::macros::datetime!(2026-03-01 12:00 UTC);

/// One catalog written to the origin folder.
#[derive(Debug, Clone)]
pub struct DemoCatalog {
    /// Catalog name (the folder under the origin).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Tags relays subscribe by.
    pub tags: Vec<String>,
    /// Every artifact, expunged ones included.
    pub artifacts: Vec<ArtifactEntry>,
}

impl DemoCatalog {
    /// The signed-file form, pulling from `origin_base` (which ends with `/`, the catalog
    /// folder is appended) with `replicas` copies per artifact.
    pub fn file(&self, origin_base: &str, replicas: u32) -> CatalogFile {
        CatalogFile {
            serial: 1,
            name: self.name.clone(),
            description: self.description.clone(),
            tags: self.tags.clone(),
            origins: vec![format!("{origin_base}{}/", self.name)],
            replicas,
            import: None,
            artifacts: self.artifacts.clone(),
        }
    }
}

/// Writes one catalog's files and records an entry for each.
#[derive(Debug)]
pub struct CatalogWriter {
    root: PathBuf,
    catalog: DemoCatalog,
}

impl CatalogWriter {
    /// Starts catalog `name` under `origin_dir/name/`.
    pub fn new(origin_dir: &Path, name: &str, description: &str, tags: &[&str]) -> Self {
        Self {
            root: origin_dir.join(name),
            catalog: DemoCatalog {
                name: name.into(),
                description: description.into(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                artifacts: Vec::new(),
            },
        }
    }

    /// Writes `bytes` at `path` inside the catalog and lists it.
    pub fn add(&mut self, path: &str, bytes: &[u8]) -> Result<&mut ArtifactEntry, DemoError> {
        // Demo paths are fixed ASCII; refusing anything else keeps origin URLs unencoded.
        if !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/+~".contains(&b)) {
            return Err(DemoError::Catalog(format!(
                "{}/{path}: only [A-Za-z0-9._-/+~] in demo paths",
                self.catalog.name
            )));
        }
        let artifact_path = ArtifactPath::new(path)
            .map_err(|e| DemoError::Catalog(format!("{}/{path}: {e}", self.catalog.name)))?;
        let file = self.root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|reason| DemoError::Io { path: parent.to_owned(), reason })?;
        }
        std::fs::write(&file, bytes)
            .map_err(|reason| DemoError::Io { path: file.clone(), reason })?;
        self.catalog.artifacts.push(ArtifactEntry {
            path: artifact_path,
            size: bytes.len() as u64,
            sha256: Sha256(sha2::Sha256::digest(bytes).into()),
            published: Some(Timestamp(PUBLISHED)),
            expunged: None,
        });
        let last = self.catalog.artifacts.len() - 1;
        Ok(&mut self.catalog.artifacts[last])
    }

    /// Writes `bytes` at `path` and, like Maven repositories do, `path.sha1` beside it.
    pub fn add_with_sha1(&mut self, path: &str, bytes: &[u8]) -> Result<(), DemoError> {
        self.add(path, bytes)?;
        self.add(&format!("{path}.sha1"), sha1_hex(bytes).as_bytes())?;
        Ok(())
    }

    /// The finished catalog.
    pub fn finish(self) -> DemoCatalog {
        self.catalog
    }
}

/// Writes one catalog under the origin folder.
pub type Layout = fn(&Path) -> Result<DemoCatalog, DemoError>;

/// The demo's catalogs, in the order they are printed. The e2e suite's apt layout goes here
/// once it exists (or is passed to [`demo_catalogs_with`] by the suite).
pub const LAYOUTS: &[Layout] = &[hello, pypi, maven];

/// Writes every catalog of [`LAYOUTS`] under `origin_dir` and returns them.
pub fn demo_catalogs(origin_dir: &Path) -> Result<Vec<DemoCatalog>, DemoError> {
    demo_catalogs_with(origin_dir, LAYOUTS)
}

/// Writes the catalogs of `layouts` under `origin_dir` and returns them.
pub fn demo_catalogs_with(
    origin_dir: &Path,
    layouts: &[Layout],
) -> Result<Vec<DemoCatalog>, DemoError> {
    layouts.iter().map(|layout| layout(origin_dir)).collect()
}

/// Deterministic pseudo-random bytes (xorshift seeded by the name), as the test support
/// makes them: real digests without fixtures, and the same bytes on every run.
pub fn generated_bytes(name: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in name.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A `.tar.gz` of `<stem>/README` and `<stem>/payload.bin` of `payload` bytes.
fn tarball(file: &str, payload: usize) -> Vec<u8> {
    let stem = file.trim_end_matches(".tar.gz");
    let readme = format!("{stem}: a demo release served by the Open Distribution Initiative.\npayload.bin is {payload} generated bytes.\n");
    let readme_name = format!("{stem}/README");
    let payload_name = format!("{stem}/payload.bin");
    gzip_stored(&tar(&[
        (&readme_name, readme.as_bytes()),
        (&payload_name, &generated_bytes(file, payload)),
    ]))
}

/// `hello`: tarballs of varied sizes, a README, and one expunged release.
pub fn hello(origin_dir: &Path) -> Result<DemoCatalog, DemoError> {
    let mut w =
        CatalogWriter::new(origin_dir, HELLO, "Hello, ODI: generic release tarballs", &["generic"]);
    w.add(
        HELLO_README,
        b"Hello from the ODI demo network.\n\nThese bytes came from a relay chosen by a directory, checked against the\nSHA-256 in a signed catalog file.\n",
    )?;
    w.add(HELLO_SMALL, &tarball(HELLO_SMALL, 2 << 10))?;
    w.add(HELLO_MEDIUM, &tarball(HELLO_MEDIUM, 300 << 10))?;
    w.add(HELLO_LARGE, &tarball(HELLO_LARGE, 8 << 20))?;
    // Its bytes stay at the origin (as a withdrawn upload would); the catalog forbids them.
    w.add(HELLO_EXPUNGED, &tarball(HELLO_EXPUNGED, 40 << 10))?.expunged =
        Some(EXPUNGE_REASON.into());
    Ok(w.finish())
}

/// `pypi`: a PEP 503 simple index with one pure-Python wheel.
pub fn pypi(origin_dir: &Path) -> Result<DemoCatalog, DemoError> {
    let mut w = CatalogWriter::new(
        origin_dir,
        PYPI,
        "A Python package index (PEP 503 simple API)",
        &["python"],
    );
    let whl = wheel();
    let sha = hex::encode(sha2::Sha256::digest(&whl));
    w.add(&format!("packages/{WHEEL}"), &whl)?;
    w.add(
        "simple/index.html",
        simple_page("Simple index", &format!("<a href=\"{PYPI_PROJECT}/\">{PYPI_PROJECT}</a>"))
            .as_bytes(),
    )?;
    // Relative link, as PEP 503 allows: it resolves against whichever relay served the page,
    // so that relay must hold the wheel too (the demo's topology ensures it, see RELAYS).
    let link = format!("<a href=\"../../packages/{WHEEL}#sha256={sha}\" data-requires-python=\"&gt;=3.7\">{WHEEL}</a>");
    w.add(
        &format!("simple/{PYPI_PROJECT}/index.html"),
        simple_page(&format!("Links for {PYPI_PROJECT}"), &link).as_bytes(),
    )?;
    Ok(w.finish())
}

fn simple_page(title: &str, body: &str) -> String {
    format!("<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" content=\"1.0\"><title>{title}</title></head>\n  <body>\n    <h1>{title}</h1>\n    {body}<br/>\n  </body>\n</html>\n")
}

/// A valid pure-Python wheel: one module and its dist-info, with a RECORD that pip checks.
fn wheel() -> Vec<u8> {
    let init = b"\"\"\"Served by the ODI demo network.\"\"\"\n\n\ndef hello():\n    return \"hello from ODI\"\n".as_slice();
    let metadata =
        b"Metadata-Version: 2.1\nName: hello-odi\nVersion: 1.0\nSummary: A tiny package served by the ODI demo network\nRequires-Python: >=3.7\n".as_slice();
    let wheel_file =
        b"Wheel-Version: 1.0\nGenerator: odi-demo\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .as_slice();
    let files = [
        ("hello_odi/__init__.py", init),
        ("hello_odi-1.0.dist-info/METADATA", metadata),
        ("hello_odi-1.0.dist-info/WHEEL", wheel_file),
    ];
    let mut record = String::new();
    for (name, data) in files {
        let digest =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data));
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str("hello_odi-1.0.dist-info/RECORD,,\n");
    let mut entries: Vec<(&str, &[u8])> = files.to_vec();
    entries.push(("hello_odi-1.0.dist-info/RECORD", record.as_bytes()));
    stored_zip(&entries)
}

/// `maven`: a Maven 2 repository with one jar, its POM, metadata and `.sha1` files.
pub fn maven(origin_dir: &Path) -> Result<DemoCatalog, DemoError> {
    let mut w = CatalogWriter::new(origin_dir, MAVEN, "A Maven 2 repository", &["java"]);
    let pom = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n  <modelVersion>4.0.0</modelVersion>\n  <groupId>org.odi.demo</groupId>\n  <artifactId>hello</artifactId>\n  <version>1.0</version>\n  <packaging>jar</packaging>\n  <description>Served by the ODI demo network</description>\n</project>\n";
    let manifest = b"Manifest-Version: 1.0\r\nCreated-By: odi demo\r\nImplementation-Title: hello\r\nImplementation-Version: 1.0\r\n\r\n".as_slice();
    let readme = b"Served by the ODI demo network.\n".as_slice();
    let jar = stored_zip(&[
        ("META-INF/MANIFEST.MF", manifest),
        ("org/odi/demo/hello/README.txt", readme),
    ]);
    let metadata = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata>\n  <groupId>org.odi.demo</groupId>\n  <artifactId>hello</artifactId>\n  <versioning>\n    <latest>1.0</latest>\n    <release>1.0</release>\n    <versions><version>1.0</version></versions>\n    <lastUpdated>20260301120000</lastUpdated>\n  </versioning>\n</metadata>\n";
    w.add_with_sha1("org/odi/demo/hello/1.0/hello-1.0.pom", pom.as_bytes())?;
    w.add_with_sha1(MAVEN_JAR, &jar)?;
    w.add_with_sha1("org/odi/demo/hello/maven-metadata.xml", metadata.as_bytes())?;
    Ok(w.finish())
}
