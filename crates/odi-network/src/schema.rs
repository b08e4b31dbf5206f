//! JSON Schemas of every file kind, generated from the raw types so they cannot drift from
//! what the agents parse. `schemas/*.schema.json` are these, written by `odi schemas`.

use crate::raw::{CatalogFile, DirectoryFile, RelayFile, ReleaseFile, RootFile, SnapshotFile};

/// (file name in `schemas/`, pretty JSON) for every file kind.
pub fn all() -> Vec<(&'static str, String)> {
    fn one<T: schemars::JsonSchema>() -> String {
        let mut s = serde_json::to_string_pretty(&schemars::schema_for!(T)).unwrap_or_default();
        s.push('\n');
        s
    }
    vec![
        ("root.schema.json", one::<RootFile>()),
        ("catalog.schema.json", one::<CatalogFile>()),
        ("release.schema.json", one::<ReleaseFile>()),
        ("directory.schema.json", one::<DirectoryFile>()),
        ("relay.schema.json", one::<RelayFile>()),
        ("snapshot.schema.json", one::<SnapshotFile>()),
    ]
}

/// Which schema a repository path is checked against, if any.
pub fn for_path(path: &str) -> Option<&'static str> {
    if !path.ends_with(".toml") {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    Some(match parts.as_slice() {
        ["trust", "roots", _] => "root.schema.json",
        ["trust", "snapshot.toml"] => "snapshot.schema.json",
        ["catalogs", _, "catalog.toml"] => "catalog.schema.json",
        ["catalogs", _, ..] => "release.schema.json",
        ["directories", _] => "directory.schema.json",
        ["relays", _] => "relay.schema.json",
        _ => return None,
    })
}
