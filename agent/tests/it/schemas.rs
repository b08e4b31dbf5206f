//! The JSON Schemas in `schemas/`: they must equal what the Rust types generate, and every
//! network file must validate against its schema with an independent validator
//! (`ci/check-schemas.py`: Python's tomllib and the jsonschema package, Draft 2020-12).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, *};

#[test]
fn committed_schemas_match_the_rust_types() {
    let dir = repo_root().join("schemas");
    let fix = "regenerate them with `cargo run -- schemas schemas` and commit the result";
    let generated = odi_network::schema::all();
    for (name, json) in &generated {
        let path = dir.join(name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; {fix}", path.display()));
        assert!(
            committed == *json,
            "{} differs from the schema generated from the Rust types; {fix}",
            path.display()
        );
    }
    let mut extra = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !generated.iter().any(|(n, _)| *n == name) {
            extra.push(name);
        }
    }
    assert!(extra.is_empty(), "schemas/ holds files no Rust type generates: {extra:?}; {fix}");
}

/// A Python 3 with the jsonschema package: the system one (where apt installs
/// python3-jsonschema) first, then whatever `python3` is on PATH.
fn python() -> &'static str {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import tomllib, jsonschema"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return candidate;
        }
    }
    panic!("no python3 with the `jsonschema` package (and Python 3.11+ for tomllib): install python3-jsonschema (apt-get install python3-jsonschema)");
}

fn check_schemas(repo: &Path, schemas: &Path) -> Run {
    let mut c = Command::new(python());
    c.arg(repo_root().join("ci/check-schemas.py"))
        .arg(repo)
        .arg("--schemas")
        .arg(schemas)
        .arg("--verbose");
    support::run(c)
}

/// Every `.toml` under the network folders, repository-relative.
fn network_tomls(repo: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    for d in odi_network::tree::NETWORK_DIRS {
        walk(repo, &repo.join(d), &mut out);
    }
    out.sort();
    out
}

/// Runs the checker on a valid repository and checks that it validated every TOML file
/// against the schema `odi_network::schema::for_path` names.
fn assert_all_match(repo: &Path) {
    let r = check_schemas(repo, &repo_root().join("schemas"));
    assert_eq!(r.code, 0, "files of {} fail their JSON Schema:\n{}", repo.display(), r.both());
    let checked: BTreeMap<&str, &str> =
        r.stdout.lines().filter_map(|l| l.strip_prefix("ok ")?.split_once(' ')).collect();
    let files = network_tomls(repo);
    assert!(!files.is_empty());
    for f in &files {
        let want = odi_network::schema::for_path(f)
            .unwrap_or_else(|| panic!("{f}: odi_network::schema::for_path knows no schema"));
        assert_eq!(
            checked.get(f.as_str()).copied(),
            Some(want),
            "{f}: the Python checker and for_path disagree:\n{}",
            r.both()
        );
    }
}

#[test]
fn example_network_matches_its_schemas() {
    assert_all_match(&repo_root());
}

#[test]
fn generated_network_matches_its_schemas() {
    // The builder's network uses fields the example may not (bandwidth, expunged, releases).
    let tmp = tempfile::tempdir().unwrap();
    small_network().write(tmp.path()).unwrap();
    assert_all_match(tmp.path());
}

#[test]
fn broken_files_fail_the_independent_validator() {
    let edits: [(&str, &str, &str, &str); 6] = [
        (
            "unknown field",
            "directories/dir-a.toml",
            "region = \"eu\"",
            "region = \"eu\"\ncolour = \"blue\"",
        ),
        (
            "unknown artifact field",
            "catalogs/demo/catalog.toml",
            "path = \"hello.txt\"",
            "path = \"hello.txt\"\nmd5 = \"x\"",
        ),
        (
            "missing required field",
            "relays/relay-1.toml",
            "contact = \"ops@relay-1.example.net\"\n",
            "",
        ),
        (
            "path escaping",
            "catalogs/demo/releases/1.1.toml",
            "path = \"releases/1.1/app-1.1.txt\"",
            "path = \"../x\"",
        ),
        (
            "percent in path",
            "catalogs/demo/catalog.toml",
            "path = \"hello.txt\"",
            "path = \"a%2f..%2fb\"",
        ),
        ("quota in parsecs", "relays/relay-3.toml", "quota = \"4 MiB\"", "quota = \"5 parsecs\""),
    ];
    for (what, file, from, to) in edits {
        let tmp = tempfile::tempdir().unwrap();
        small_network().write(tmp.path()).unwrap();
        edit(tmp.path(), file, |t| replace_once(&t, from, to));
        let r = check_schemas(tmp.path(), &repo_root().join("schemas"));
        assert_eq!(r.code, 1, "{what}: the checker must fail:\n{}", r.both());
        let failing: Vec<&str> = r.stdout.lines().filter(|l| !l.starts_with("ok ")).collect();
        assert_eq!(failing.len(), 1, "{what}: exactly one failing line expected:\n{}", r.both());
        assert!(
            failing[0].starts_with(&format!("{file}: ")),
            "{what}: the line must name {file}:\n{}",
            r.both()
        );
    }
    // A copy of the example network with one unknown field.
    let tmp = tempfile::tempdir().unwrap();
    copy_network(&repo_root(), tmp.path());
    let relay = network_tomls(tmp.path())
        .into_iter()
        .find(|f| f.starts_with("relays/"))
        .expect("the example has relays");
    edit(tmp.path(), &relay, |t| format!("surprise = true\n{t}"));
    let r = check_schemas(tmp.path(), &repo_root().join("schemas"));
    assert_eq!(r.code, 1, "{}", r.both());
    assert!(
        r.stdout.lines().any(|l| l.starts_with(&format!("{relay}: ")) && l.contains("surprise")),
        "{}",
        r.both()
    );
}

fn copy_network(from: &Path, to: &Path) {
    fn copy(src: &Path, dst: &PathBuf) {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            let target = dst.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).unwrap();
            }
        }
    }
    for d in odi_network::tree::NETWORK_DIRS {
        if from.join(d).is_dir() {
            copy(&from.join(d), &to.join(d));
        }
    }
}
