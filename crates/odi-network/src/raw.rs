//! The files of the network repository exactly as written: serde structs with
//! `deny_unknown_fields`, one per file kind. The JSON Schemas in `schemas/` are generated from
//! these types. Cross-file rules (names exist, keys are delegated, ...) are checked when the
//! raw files become the validated [`crate::model::Network`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::safe_path::ArtifactPath;
use crate::units::{ByteSize, Rate};

/// An RFC 3339 timestamp string such as `2027-01-01T00:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub time::OffsetDateTime);

impl Timestamp {
    /// Now, to the second: what tools write (TOML dates here carry no fractions).
    pub fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Timestamp(now.replace_nanosecond(0).unwrap_or(now))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .map(Timestamp)
            .map_err(|e| {
                serde::de::Error::custom(format!("`{s}` is not an RFC 3339 timestamp: {e}"))
            })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self
            .0
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time", "description": "An RFC 3339 timestamp" })
    }
}

/// A SHA-256 digest written as 64 lowercase or uppercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Lowercase hex, as written in ETags and inventories.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::str::FromStr for Sha256 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return Err(format!("sha256 must be 64 hex digits, got {} characters", s.len()));
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| format!("sha256 `{s}` is not hex"))?;
        Ok(Sha256(out))
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl JsonSchema for Sha256 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Sha256".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[0-9a-fA-F]{64}$" })
    }
}

/// `trust/roots/<serial>.toml`: the root of trust. Signed by a threshold of its own keys and,
/// for every serial after the first, by a threshold of the previous root's keys too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RootFile {
    /// Version of the root; equals the file name. Rotation adds `<serial + 1>.toml`.
    pub serial: u64,
    /// After this instant no agent accepts this root (unless a newer one replaces it).
    pub expires: Timestamp,
    /// How many distinct root keys must sign a root file.
    pub threshold: u32,
    /// The root keys.
    pub keys: Vec<RootKey>,
    /// Which keys may sign which paths of the repository.
    #[serde(default)]
    pub delegations: Vec<Delegation>,
    /// The snapshot role: keys that sign `trust/snapshot.toml`, the list of every signed
    /// document of a commit. When present, agents apply only commits that match a fresh
    /// snapshot, so a repository host cannot delete, add back or freeze documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<RoleKeys>,
}

/// Keys of a role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    /// Distinct keys of `keys` that must sign.
    pub threshold: u32,
    /// The role's keys; each signs into `<file>.<name>.minisig`.
    pub keys: Vec<RootKey>,
}

/// `trust/snapshot.toml`: every signed document of a commit with its serial and SHA-256,
/// signed by the snapshot role, with a short expiry that the network's CI renews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// Raised on every change, renewal included; agents refuse a lower one.
    pub serial: u64,
    /// After this instant no agent applies a commit with this snapshot: a copy of the
    /// repository that stopped moving is noticed.
    pub expires: Timestamp,
    /// Every signed document of the commit, sorted by path.
    #[serde(default)]
    pub documents: Vec<SnapshotEntry>,
}

/// One document in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotEntry {
    /// Repository path, such as `catalogs/hello/catalog.toml`.
    pub path: String,
    /// The document's `serial`.
    pub serial: u64,
    /// SHA-256 of the document's bytes.
    pub sha256: Sha256,
}

/// One root key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RootKey {
    /// Names the signature file: `<serial>.toml.<name>.minisig`.
    pub name: String,
    /// Minisign public key, base64 (the second line of a `.pub` file).
    pub public: String,
}

/// Keys allowed to sign some paths: one key (`public`), or `threshold` of several (`keys`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    /// Who holds the key or keys (for messages).
    pub name: String,
    /// The one minisign public key, base64; its signature is `<file>.minisig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// Several keys instead of `public`; each signs into `<file>.<name>.minisig` (or, for one
    /// of them, `<file>.minisig`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<RootKey>,
    /// Distinct keys of `keys` that must sign (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// Paths the keys may sign: `catalogs/example/` (a folder, with the trailing slash) or
    /// `relays/r1.toml` (one file).
    pub paths: Vec<String>,
}

/// `catalogs/<name>/catalog.toml`: a catalog of artifacts and where they come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Raised on every change; agents refuse a lower serial.
    pub serial: u64,
    /// Equals the folder name.
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Ecosystems and groups, such as `python` or `java`; relays subscribe by tag.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Base URLs the bytes are pulled from, tried in order: `https://`, `http://` or `file://`.
    pub origins: Vec<String>,
    /// How many relays hold each artifact.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Where `odi catalog sync` re-imports the artifacts from, written by `odi catalog
    /// import`; absent for catalogs maintained by hand or with `odi catalog add`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportRecord>,
    /// Artifacts listed here; large catalogs list them in release files instead.
    #[serde(default)]
    pub artifacts: Vec<ArtifactEntry>,
}

/// How a catalog's artifacts were imported, so a bot can import them again and propose only
/// what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRecord {
    /// The index format.
    pub format: ImportFormat,
    /// The index: a URL, or a path as the maintainer gave it (relative to where sync runs).
    pub from: String,
    /// apt: the distributions imported (`dists/<name>/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dists: Vec<String>,
}

/// The indexes `odi catalog import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    /// GNU or BSD `sha256sum` output.
    Sha256sums,
    /// A Debian repository: Release, Packages, Sources and the pool.
    Apt,
    /// A Python simple index (PEP 503 HTML or PEP 691 JSON pages).
    Pypi,
    /// A Maven repository tree.
    Maven,
    /// A local folder, hashed.
    Dir,
}

impl ImportFormat {
    /// Every format, in the order help texts list them.
    pub const ALL: [ImportFormat; 5] = [
        ImportFormat::Sha256sums,
        ImportFormat::Apt,
        ImportFormat::Pypi,
        ImportFormat::Maven,
        ImportFormat::Dir,
    ];

    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ImportFormat::Sha256sums => "sha256sums",
            ImportFormat::Apt => "apt",
            ImportFormat::Pypi => "pypi",
            ImportFormat::Maven => "maven",
            ImportFormat::Dir => "dir",
        }
    }
}

impl std::str::FromStr for ImportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|f| f.name()).collect();
            format!("`{s}` is not an import format (one of {})", names.join(", "))
        })
    }
}

fn default_replicas() -> u32 {
    2
}

/// `catalogs/<name>/<anything>.toml` other than `catalog.toml`: more artifacts of the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseFile {
    /// Raised on every change; agents refuse a lower serial.
    pub serial: u64,
    /// The catalog this release belongs to; equals the folder name.
    pub catalog: String,
    /// The artifacts of this release.
    #[serde(default)]
    pub artifacts: Vec<ArtifactEntry>,
}

/// One artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactEntry {
    /// Path inside the catalog, also the URL path under `/r/<catalog>/`.
    pub path: ArtifactPath,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256,
    /// When it was published; relays serve it as Last-Modified so that every relay agrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Timestamp>,
    /// Set to the reason when the artifact is withdrawn: agents delete it, directories answer 410.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expunged: Option<String>,
}

/// What a directory server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    /// Holds catalogs and redirects to relays.
    #[default]
    Directory,
    /// Holds only references to other directories, grouped by their regions.
    Meta,
}

/// `directories/<name>.toml`: one directory server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    /// Raised on every change; agents refuse a lower serial.
    pub serial: u64,
    /// Equals the file stem.
    pub name: String,
    /// Public base URL that clients and relays use.
    pub url: String,
    /// Region code such as `eu` or `us-west`, matched against client regions.
    pub region: String,
    /// `directory` (default) or `meta`.
    #[serde(default)]
    pub kind: DirectoryKind,
    /// Who runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Catalogs it holds and serves.
    #[serde(default)]
    pub catalogs: Vec<String>,
    /// Directories serving the same catalogs that it syncs bytes with.
    #[serde(default)]
    pub links: Vec<String>,
    /// Directories it redirects to for catalogs it does not hold.
    #[serde(default)]
    pub references: Vec<String>,
}

/// `relays/<name>.toml`: one relay's offer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayFile {
    /// Raised on every change; agents refuse a lower serial.
    pub serial: u64,
    /// Equals the file stem.
    pub name: String,
    /// Public base URL that clients are redirected to.
    pub url: String,
    /// Region code such as `eu` or `us-west`.
    pub region: String,
    /// How to reach the operator.
    pub contact: String,
    /// Disk the relay offers; also its weight in the assignment.
    pub quota: ByteSize,
    /// Download bandwidth the relay allows itself when filling its store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Rate>,
    /// Directories it works with.
    pub directories: Vec<String>,
    /// Catalogs it mirrors, by name.
    #[serde(default)]
    pub catalogs: Vec<String>,
    /// Catalogs it mirrors, by tag.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where it is, for directories that place clients by a MaxMind database (same ASN, same
    /// country, same continent, then distance). Without it, a directory looks the relay's
    /// address up in its own database when the URL's host is an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<RelayLocation>,
    /// Serve only clients from these countries (ISO 3166-1 alpha-2); empty: everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Never serve clients from these countries (ISO 3166-1 alpha-2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_countries: Vec<String>,
}

/// A relay's place, as its operator states it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayLocation {
    /// ISO 3166-1 alpha-2 country code, such as `SE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Continent code as MaxMind writes it: `AF`, `AN`, `AS`, `EU`, `NA`, `OC`, `SA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continent: Option<String>,
    /// Degrees north, -90 to 90.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Degrees east, -180 to 180.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// Autonomous system number of its network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
}
