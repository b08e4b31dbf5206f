//! The dependency rules of ARCHITECTURE.md, checked on the source: which agent modules may
//! name which. A rule broken here is a design change to discuss, not a line to exempt.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level agent modules a module names through `crate::<module>`, with comments removed.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn rs_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_file() {
        out.push(p.to_owned());
        return;
    }
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Every top-level module that the files under `rel` (a file or a folder of `agent/src`) name.
fn refs_of(rel: &str) -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src.join(rel), &mut files);
    assert!(!files.is_empty(), "no sources under {rel}");
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let shown = f.strip_prefix(&src).unwrap().display().to_string();
        for r in crate_refs(&text) {
            out.insert((shown.clone(), r));
        }
    }
    out
}

#[test]
fn modules_depend_one_way() {
    // (sources, top-level modules they must not name, why)
    let rules: &[(&str, &[&str], &str)] = &[
        ("relay.rs", &["directory", "app"], "relay mode never imports directory mode"),
        ("directory", &["relay", "app"], "directory mode never imports relay mode"),
        (
            "http",
            &["app", "relay", "directory", "node", "artifact", "wire", "status", "config", "store"],
            "http/ knows nothing of ODI",
        ),
        ("node.rs", &["app", "relay", "directory"], "the shared node names no mode"),
        ("wire.rs", &["app", "relay", "directory", "node"], "wire documents stand alone"),
        ("status.rs", &["app", "relay", "directory"], "the status document names no mode's code"),
        ("artifact", &["app", "relay", "directory"], "artifact serving is shared"),
        ("reconcile.rs", &["app", "relay", "directory", "node"], "reconcile is shared"),
        ("store.rs", &["app", "relay", "directory", "node"], "the store is shared"),
        ("fetch.rs", &["app", "relay", "directory", "node"], "downloads are shared"),
        (
            "web",
            &["app", "relay", "directory", "node", "artifact", "wire", "status", "store"],
            "web/ renders documents the modes build; it reads no state",
        ),
    ];
    let mut broken = Vec::new();
    for (rel, forbidden, why) in rules {
        for (file, name) in refs_of(rel) {
            if forbidden.contains(&name.as_str()) {
                broken.push(format!("{file} names crate::{name}: {why}"));
            }
        }
    }
    assert!(broken.is_empty(), "dependency rules broken:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_imports() {
    let text = "use crate::relay::X;\n// crate::directory in a comment\nlet x = crate::node::f();";
    let got: Vec<String> = crate_refs(text).into_iter().collect();
    assert_eq!(got, ["node", "relay"]);
}
