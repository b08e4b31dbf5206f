//! `odi validate`, `odi sign` and `odi plan` through the real binary.
//!
//! The heart is one table: each case takes a fresh, valid, signed and committed network,
//! breaks one thing, and expects exit code 1 with a stdout line naming the file at fault (and
//! a word saying why). A few cases must pass instead (rotation done right, correct pins, a
//! file signed with the standard `minisign` tool).

use std::path::{Path, PathBuf};
use std::process::Command;

use odi_network::builder::{Key, NetworkBuilder};
use odi_network::raw::{RootKey, Timestamp};

use crate::support::{self, *};

/// A fresh network written into a temporary git repository, committed once (`base`).
struct Fx {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    b: NetworkBuilder,
    base: String,
}

impl Fx {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net");
        std::fs::create_dir_all(&dir).unwrap();
        let b = small_network();
        write_repo(&b, &dir);
        let base = head(&dir);
        Self { _tmp: tmp, dir, b, base }
    }

    /// Writes the builder's files again (after a case changed the builder).
    fn rewrite(&self) {
        self.b.write(&self.dir).unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn edit_signed(&self, rel: &str, f: impl FnOnce(String) -> String) {
        edit_signed(&self.b, &self.dir, rel, f);
    }

    fn replace_signed(&self, rel: &str, from: &str, to: &str) {
        self.edit_signed(rel, |t| replace_once(&t, from, to));
    }

    /// Changes one byte and keeps the old signature.
    fn replace_unsigned(&self, rel: &str, from: &str, to: &str) {
        assert_eq!(from.len(), to.len(), "a one-byte change keeps the length");
        edit(&self.dir, rel, |t| replace_once(&t, from, to));
    }

    fn commit(&self, msg: &str) -> String {
        commit(&self.dir, msg)
    }

    /// `--since <base> --commit HEAD` after committing the work tree.
    fn commit_and_compare(&self) -> Vec<String> {
        self.commit("change");
        vec!["--since".into(), self.base.clone(), "--commit".into(), "HEAD".into()]
    }

    /// Writes `trust/roots/2.toml` with `keys` as the new root keys, signed by `signers`.
    fn rotate(&self, keys: &[&Key], signers: &[&Key]) {
        let mut rf = self.b.root_file();
        rf.serial = 2;
        rf.keys = keys
            .iter()
            .map(|k| RootKey { name: k.name.clone(), public: k.public().to_owned() })
            .collect();
        rf.threshold = keys.len() as u32;
        let text = toml::to_string(&rf).unwrap();
        std::fs::write(self.path("trust/roots/2.toml"), &text).unwrap();
        for k in signers {
            std::fs::write(
                self.path(&format!("trust/roots/2.toml.{}.minisig", k.name)),
                k.sign(text.as_bytes()).unwrap(),
            )
            .unwrap();
        }
    }
}

fn head(dir: &Path) -> String {
    let repo = git2::Repository::open(dir).unwrap();
    let id = repo.head().unwrap().peel_to_commit().unwrap().id();
    id.to_string()
}

/// The first `sha256 = "<64 hex>"` value of a file, with the text around it.
fn first_sha(text: &str) -> String {
    let start = text.find("sha256 = \"").expect("a sha256 field") + "sha256 = \"".len();
    text[start..start + 64].to_owned()
}

/// Replaces the first character of the first sha256 value (a one-byte change that keeps the
/// file valid TOML and a valid digest).
fn flip_sha(text: &str) -> (String, String) {
    let sha = first_sha(text);
    let c = if sha.starts_with('0') { '1' } else { '0' };
    (sha.clone(), format!("{c}{}", &sha[1..]))
}

/// Commits the current index plus an extra entry (a symlink or a gitlink) at `path`, which
/// `commit_all` could not stage from a work tree.
fn commit_with_entry(dir: &Path, path: &str, mode: u32, id: git2::Oid) {
    let repo = git2::Repository::open(dir).unwrap();
    let mut index = repo.index().unwrap();
    let entry = git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    };
    index.add(&entry).unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("odi", "odi@localhost").unwrap();
    let parent = repo.head().unwrap().peel_to_commit().unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "odd entry", &tree, &[&parent]).unwrap();
}

/// What a case expects from `odi validate`.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exit 0.
    Pass,
    /// Exit 1 with a stdout line containing both strings.
    Fail { file: &'static str, why: &'static str },
}
use Expect::*;

type Mutation = Box<dyn Fn(&mut Fx) -> Vec<String>>;

struct Case {
    name: &'static str,
    mutate: Mutation,
    expect: Expect,
    /// Needs the standard `minisign` tool.
    minisign: bool,
}

fn case(
    name: &'static str,
    expect: Expect,
    mutate: impl Fn(&mut Fx) -> Vec<String> + 'static,
) -> Case {
    Case { name, mutate: Box::new(mutate), expect, minisign: false }
}

fn fail(file: &'static str, why: &'static str) -> Expect {
    Fail { file, why }
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        case("untouched network", Pass, |_| vec![]),
        case("untouched network at HEAD", Pass, |_| vec!["--commit".into(), "HEAD".into()]),
        // One byte changed in each kind of signed file, signature left as it was.
        case(
            "byte changed: root",
            fail("trust/roots/1.toml", "signed by 0 of its own keys"),
            |fx| {
                fx.replace_unsigned("trust/roots/1.toml", "name = \"root\"", "name = \"rooT\"");
                vec![]
            },
        ),
        case(
            "byte changed: catalog",
            fail("catalogs/demo/catalog.toml", "signature does not match"),
            |fx| {
                fx.replace_unsigned("catalogs/demo/catalog.toml", "Demo catalog", "Demo catalOg");
                vec![]
            },
        ),
        case(
            "byte changed: release",
            fail("catalogs/demo/releases/1.1.toml", "signature does not match"),
            |fx| {
                let rel = "catalogs/demo/releases/1.1.toml";
                let (from, to) = flip_sha(&std::fs::read_to_string(fx.path(rel)).unwrap());
                fx.replace_unsigned(rel, &from, &to);
                vec![]
            },
        ),
        case(
            "byte changed: directory",
            fail("directories/dir-b.toml", "signature does not match"),
            |fx| {
                fx.replace_unsigned("directories/dir-b.toml", "region = \"us\"", "region = \"uk\"");
                vec![]
            },
        ),
        case(
            "byte changed: relay",
            fail("relays/relay-2.toml", "signature does not match"),
            |fx| {
                fx.replace_unsigned(
                    "relays/relay-2.toml",
                    "quota = \"2 MiB\"",
                    "quota = \"3 MiB\"",
                );
                vec![]
            },
        ),
        case(
            "byte changed: relay at HEAD",
            fail("relays/relay-2.toml", "signature does not match"),
            |fx| {
                fx.replace_unsigned(
                    "relays/relay-2.toml",
                    "quota = \"2 MiB\"",
                    "quota = \"3 MiB\"",
                );
                fx.commit("tamper");
                vec!["--commit".into(), "HEAD".into()]
            },
        ),
        case("byte changed: signature", fail("relays/relay-3.toml", ""), |fx| {
            let rel = "relays/relay-3.toml.minisig";
            let text = std::fs::read_to_string(fx.path(rel)).unwrap();
            let line = text.lines().nth(1).unwrap();
            let pos = line.len() - 10;
            let c = if &line[pos..=pos] == "A" { "B" } else { "A" };
            let new_line = format!("{}{c}{}", &line[..pos], &line[pos + 1..]);
            std::fs::write(fx.path(rel), text.replacen(line, &new_line, 1)).unwrap();
            vec![]
        }),
        // Missing and misplaced signatures.
        case("deleted .minisig", fail("relays/relay-1.toml", "missing signature"), |fx| {
            std::fs::remove_file(fx.path("relays/relay-1.toml.minisig")).unwrap();
            vec![]
        }),
        case("deleted root .minisig", fail("trust/roots/1.toml", "signed by 0"), |fx| {
            std::fs::remove_file(fx.path("trust/roots/1.toml.root.minisig")).unwrap();
            vec![]
        }),
        case(
            "signature without a file",
            fail("relays/ghost.toml.minisig", "does not exist"),
            |fx| {
                std::fs::copy(
                    fx.path("relays/relay-1.toml.minisig"),
                    fx.path("relays/ghost.toml.minisig"),
                )
                .unwrap();
                vec![]
            },
        ),
        case(
            "signed with an undelegated key",
            fail("relays/relay-1.toml", "not allowed to sign"),
            |fx| {
                let stranger = Key::generate("stranger").unwrap();
                let bytes = std::fs::read(fx.path("relays/relay-1.toml")).unwrap();
                std::fs::write(
                    fx.path("relays/relay-1.toml.minisig"),
                    stranger.sign(&bytes).unwrap(),
                )
                .unwrap();
                vec![]
            },
        ),
        case(
            "signed with a key delegated another path",
            fail("relays/relay-1.toml", "not allowed to sign"),
            |fx| {
                fx.b.extra_delegations.push((
                    Key::generate("relay-2-operator").unwrap(),
                    vec!["relays/relay-2.toml".into()],
                ));
                fx.rewrite();
                let bytes = std::fs::read(fx.path("relays/relay-1.toml")).unwrap();
                std::fs::write(
                    fx.path("relays/relay-1.toml.minisig"),
                    fx.b.extra_delegations[0].0.sign(&bytes).unwrap(),
                )
                .unwrap();
                vec![]
            },
        ),
        case("odi sign with the delegated key", Pass, |fx| {
            let keys = fx.dir.parent().unwrap().join("keys");
            fx.b.write_keys(&keys).unwrap();
            fx.edit_signed("relays/relay-1.toml", |t| t.replace("serial = 3", "serial = 4"));
            let r = run_odi([
                Path::new("sign").as_os_str(),
                "--key".as_ref(),
                keys.join("maintainer.key").as_os_str(),
                fx.path("relays/relay-1.toml").as_os_str(),
            ]);
            assert_eq!(r.code, 0, "{}", r.both());
            vec![]
        }),
        // Serials against a base commit.
        case(
            "lower serial than the base commit",
            fail("relays/relay-1.toml", "serial 2 is lower than 3"),
            |fx| {
                fx.replace_signed("relays/relay-1.toml", "serial = 3", "serial = 2");
                fx.commit_and_compare()
            },
        ),
        case(
            "lower serial in the work tree",
            fail("catalogs/demo/releases/1.1.toml", "lower than 3"),
            |fx| {
                fx.replace_signed("catalogs/demo/releases/1.1.toml", "serial = 3", "serial = 1");
                vec!["--since".into(), fx.base.clone()]
            },
        ),
        case(
            "same serial, changed content",
            fail("directories/dir-a.toml", "serial stayed at 3"),
            |fx| {
                fx.replace_signed("directories/dir-a.toml", "ops@dir-a", "noc@dir-a");
                fx.commit_and_compare()
            },
        ),
        case("raised serial, changed content", Pass, |fx| {
            fx.edit_signed("directories/dir-a.toml", |t| {
                replace_once(&t, "ops@dir-a", "noc@dir-a").replace("serial = 3", "serial = 4")
            });
            fx.commit_and_compare()
        }),
        case(
            "non-descendant commit",
            fail("rewritten: does not descend", "history rewrites"),
            |fx| {
                let repo = git2::Repository::open(&fx.dir).unwrap();
                let head = repo.head().unwrap().peel_to_commit().unwrap();
                let sig = git2::Signature::now("mallory", "m@localhost").unwrap();
                let orphan = repo
                    .commit(None, &sig, &sig, "rewritten history", &head.tree().unwrap(), &[])
                    .unwrap();
                repo.branch("rewritten", &repo.find_commit(orphan).unwrap(), true).unwrap();
                vec!["--since".into(), fx.base.clone(), "--commit".into(), "rewritten".into()]
            },
        ),
        // Unsafe artifact paths (re-signed, so only the path check can fail).
        case("path ../x", fail("catalogs/demo/catalog.toml", "unsafe path"), |fx| {
            fx.replace_signed(
                "catalogs/demo/catalog.toml",
                "path = \"hello.txt\"",
                "path = \"../x\"",
            );
            vec![]
        }),
        case(
            "path ../x in a release file",
            fail("catalogs/demo/releases/1.1.toml", "unsafe path"),
            |fx| {
                fx.replace_signed(
                    "catalogs/demo/releases/1.1.toml",
                    "path = \"releases/1.1/app-1.1.txt\"",
                    "path = \"releases/../../x\"",
                );
                vec![]
            },
        ),
        case("path a%2f..%2fb", fail("catalogs/demo/catalog.toml", "unsafe path"), |fx| {
            fx.replace_signed(
                "catalogs/demo/catalog.toml",
                "path = \"hello.txt\"",
                "path = \"a%2f..%2fb\"",
            );
            vec![]
        }),
        case("absolute path", fail("catalogs/demo/catalog.toml", "absolute"), |fx| {
            fx.replace_signed(
                "catalogs/demo/catalog.toml",
                "path = \"hello.txt\"",
                "path = \"/etc/passwd\"",
            );
            vec![]
        }),
        case("backslash path", fail("catalogs/demo/catalog.toml", "backslash"), |fx| {
            fx.replace_signed(
                "catalogs/demo/catalog.toml",
                "path = \"hello.txt\"",
                r#"path = "..\\x""#,
            );
            vec![]
        }),
        case("NUL in path", fail("catalogs/demo/catalog.toml", "NUL"), |fx| {
            fx.replace_signed(
                "catalogs/demo/catalog.toml",
                "path = \"hello.txt\"",
                r#"path = "a\u0000b""#,
            );
            vec![]
        }),
        // Schema.
        case("unknown field: directory", fail("directories/dir-a.toml", "unknown field"), |fx| {
            fx.edit_signed("directories/dir-a.toml", |t| format!("colour = \"blue\"\n{t}"));
            vec![]
        }),
        case(
            "unknown field: artifact",
            fail("catalogs/demo/catalog.toml", "unknown field"),
            |fx| {
                fx.replace_signed(
                    "catalogs/demo/catalog.toml",
                    "path = \"hello.txt\"",
                    "path = \"hello.txt\"\nmd5 = \"x\"",
                );
                vec![]
            },
        ),
        case("unknown field: root", fail("trust/roots/1.toml", "unknown field"), |fx| {
            edit(&fx.dir, "trust/roots/1.toml", |t| format!("colour = \"blue\"\n{t}"));
            resign_root(&fx.b, &fx.dir, 1);
            vec![]
        }),
        case("sha256 of 63 digits", fail("catalogs/demo/catalog.toml", "64 hex"), |fx| {
            let rel = "catalogs/demo/catalog.toml";
            let sha = first_sha(&std::fs::read_to_string(fx.path(rel)).unwrap());
            fx.replace_signed(rel, &sha, &sha[1..]);
            vec![]
        }),
        case("sha256 not hex", fail("catalogs/demo/catalog.toml", "not hex"), |fx| {
            let rel = "catalogs/demo/catalog.toml";
            let sha = first_sha(&std::fs::read_to_string(fx.path(rel)).unwrap());
            fx.replace_signed(rel, &sha, &format!("g{}", &sha[1..]));
            vec![]
        }),
        case("quota 5 parsecs", fail("relays/relay-3.toml", "parsecs"), |fx| {
            fx.replace_signed("relays/relay-3.toml", "quota = \"4 MiB\"", "quota = \"5 parsecs\"");
            vec![]
        }),
        // Links in the tree.
        case("symlink in the work tree", fail("relays/evil.toml", "symlink"), |fx| {
            std::os::unix::fs::symlink("relay-1.toml", fx.path("relays/evil.toml")).unwrap();
            vec![]
        }),
        case("symlinked folder in the work tree", fail("catalogs/other", "symlink"), |fx| {
            std::os::unix::fs::symlink("demo", fx.path("catalogs/other")).unwrap();
            vec![]
        }),
        case("symlink committed in git", fail("relays/evil.toml", "symlink"), |fx| {
            // Staged from the work tree, then removed from it: only the commit has it.
            std::os::unix::fs::symlink("relay-1.toml", fx.path("relays/evil.toml")).unwrap();
            fx.commit("add a link");
            std::fs::remove_file(fx.path("relays/evil.toml")).unwrap();
            vec!["--commit".into(), "HEAD".into()]
        }),
        case("symlink entry written into git", fail("catalogs/demo/link.toml", "symlink"), |fx| {
            let repo = git2::Repository::open(&fx.dir).unwrap();
            let blob = repo.blob(b"catalog.toml").unwrap();
            commit_with_entry(&fx.dir, "catalogs/demo/link.toml", 0o120000, blob);
            vec!["--commit".into(), "HEAD".into()]
        }),
        case(
            "submodule (gitlink) committed in git",
            fail("catalogs/vendored", "submodule"),
            |fx| {
                let id = git2::Oid::from_str(&fx.base).unwrap();
                commit_with_entry(&fx.dir, "catalogs/vendored", 0o160000, id);
                vec!["--commit".into(), "HEAD".into()]
            },
        ),
        case(
            "nested repository in the work tree",
            fail("catalogs/demo/vendor", "nested git repository"),
            |fx| {
                std::fs::create_dir_all(fx.path("catalogs/demo/vendor/.git")).unwrap();
                vec![]
            },
        ),
        // Trust root.
        case("expired root", fail("trust/roots/1.toml", "expired"), |fx| {
            let mut rf = fx.b.root_file();
            rf.expires = Timestamp(time::macros::datetime!(2020-01-01 0:00 UTC));
            std::fs::write(fx.path("trust/roots/1.toml"), toml::to_string(&rf).unwrap()).unwrap();
            resign_root(&fx.b, &fx.dir, 1);
            vec![]
        }),
        case(
            "root signed below threshold",
            fail("trust/roots/1.toml", "signed by 1 of its own keys, threshold is 2"),
            |fx| {
                fx.b.root_keys.push(Key::generate("root2").unwrap());
                fx.b.threshold = 2;
                fx.rewrite();
                std::fs::remove_file(fx.path("trust/roots/1.toml.root2.minisig")).unwrap();
                vec![]
            },
        ),
        case(
            "root threshold met by one key signing twice",
            fail("trust/roots/1.toml", "signed by 1 of its own keys"),
            |fx| {
                fx.b.root_keys.push(Key::generate("root2").unwrap());
                fx.b.threshold = 2;
                fx.rewrite();
                std::fs::copy(
                    fx.path("trust/roots/1.toml.root.minisig"),
                    fx.path("trust/roots/1.toml.root2.minisig"),
                )
                .unwrap();
                vec![]
            },
        ),
        case(
            "root 2 signed by the new keys only",
            fail("trust/roots/2.toml", "rotation signed by 0 of the previous"),
            |fx| {
                let new = Key::generate("next").unwrap();
                fx.rotate(&[&new], &[&new]);
                vec![]
            },
        ),
        case(
            "root 2 signed by the old keys only",
            fail("trust/roots/2.toml", "signed by 0 of its own keys"),
            |fx| {
                let new = Key::generate("next").unwrap();
                fx.rotate(&[&new], &[&fx.b.root_keys[0]]);
                vec![]
            },
        ),
        case("root 2 signed by old and new keys", Pass, |fx| {
            let new = Key::generate("next").unwrap();
            fx.rotate(&[&new], &[&fx.b.root_keys[0], &new]);
            vec![]
        }),
        case("root 2 signed by old and new keys, old key pinned", Pass, |fx| {
            let new = Key::generate("next").unwrap();
            fx.rotate(&[&new], &[&fx.b.root_keys[0], &new]);
            vec!["--pin".into(), fx.b.root_keys[0].public().to_owned()]
        }),
        case("root version gap", fail("trust/roots/2.toml", "consecutive"), |fx| {
            std::fs::copy(fx.path("trust/roots/1.toml"), fx.path("trust/roots/3.toml")).unwrap();
            vec![]
        }),
        case("pinned root key", Pass, |fx| {
            vec!["--pin".into(), fx.b.root_keys[0].public().to_owned()]
        }),
        case("pinned root key as a .pub file", Pass, |fx| {
            let keys = fx.dir.parent().unwrap().join("keys");
            fx.b.write_keys(&keys).unwrap();
            vec!["--pin".into(), keys.join("root.pub").display().to_string()]
        }),
        case("--pin with a wrong key", fail("trust/roots/", "pinned root keys"), |_| {
            vec!["--pin".into(), Key::generate("other").unwrap().public().to_owned()]
        }),
        // Cross references.
        case(
            "relay names a missing directory",
            fail("relays/relay-1.toml", "no directory named `dir-zzz`"),
            |fx| {
                fx.b.relays.get_mut("relay-1").unwrap().directories = vec!["dir-zzz".into()];
                fx.rewrite();
                vec![]
            },
        ),
        case(
            "relay names a missing catalog",
            fail("relays/relay-1.toml", "no catalog named `nope`"),
            |fx| {
                fx.b.relays.get_mut("relay-1").unwrap().catalogs = vec!["nope".into()];
                fx.rewrite();
                vec![]
            },
        ),
        case(
            "directory links a missing directory",
            fail("directories/dir-b.toml", "no directory named `dir-c`"),
            |fx| {
                fx.b.directories.get_mut("dir-b").unwrap().links = vec!["dir-c".into()];
                fx.rewrite();
                vec![]
            },
        ),
        case("reference cycle", fail("directories/dir-a.toml", "reference cycle"), |fx| {
            fx.b.directories.get_mut("dir-a").unwrap().references = vec!["dir-b".into()];
            fx.b.directories.get_mut("dir-b").unwrap().references = vec!["dir-a".into()];
            fx.rewrite();
            vec![]
        }),
        case(
            "relay name differs from its file",
            fail("relays/relay-1.toml", "must equal the file name"),
            |fx| {
                fx.replace_signed(
                    "relays/relay-1.toml",
                    "name = \"relay-1\"",
                    "name = \"relay-9\"",
                );
                vec![]
            },
        ),
        case(
            "directory name differs from its file",
            fail("directories/dir-b.toml", "must equal the file name"),
            |fx| {
                fx.replace_signed("directories/dir-b.toml", "name = \"dir-b\"", "name = \"dir-x\"");
                vec![]
            },
        ),
        case(
            "duplicate artifact across catalog.toml and a release",
            fail("catalogs/demo/releases/1.1.toml", "already listed in catalogs/demo/catalog.toml"),
            |fx| {
                let dup = entry("hello.txt", b"other bytes");
                fx.b.releases.values_mut().next().unwrap().artifacts.push(dup);
                fx.rewrite();
                vec![]
            },
        ),
        case("unexpected file", fail("relays/notes.txt", "unexpected file"), |fx| {
            std::fs::write(fx.path("relays/notes.txt"), "hi").unwrap();
            vec![]
        }),
    ];
    // The standard tool: a key made by `minisign -G -W`, delegated one relay file.
    v.push(Case {
        name: "signed by `minisign -S` with a delegated key",
        expect: Pass,
        minisign: true,
        mutate: Box::new(|fx| {
            let keys = fx.dir.parent().unwrap().to_owned();
            let (sk, _, public) = minisign_keygen(&keys, "operator");
            add_delegation(&fx.b, &fx.dir, "relay-1 operator", &public, &["relays/relay-1.toml"]);
            fx.edit_signed("relays/relay-1.toml", |t| t.replace("serial = 3", "serial = 4"));
            minisign_sign(&sk, &fx.path("relays/relay-1.toml"), false);
            vec![]
        }),
    });
    v.push(Case {
        name: "legacy signature by `minisign -S -l`",
        expect: fail("relays/relay-1.toml", "legacy"),
        minisign: true,
        mutate: Box::new(|fx| {
            let keys = fx.dir.parent().unwrap().to_owned();
            let (sk, _, public) = minisign_keygen(&keys, "operator");
            add_delegation(&fx.b, &fx.dir, "relay-1 operator", &public, &["relays/relay-1.toml"]);
            minisign_sign(&sk, &fx.path("relays/relay-1.toml"), true);
            vec![]
        }),
    });
    v
}

/// `minisign -S [-l] -s KEY -m FILE` (writes FILE.minisig).
fn minisign_sign(sk: &Path, file: &Path, legacy: bool) {
    let mut c = Command::new("minisign");
    c.arg("-S");
    if legacy {
        c.arg("-l");
    }
    c.arg("-s").arg(sk).arg("-m").arg(file).arg("-t").arg("signed by the standard tool");
    let r = support::run(c);
    assert_eq!(r.code, 0, "minisign -S failed: {}", r.both());
}

#[test]
fn example_network_in_the_repository_validates() {
    let root = repo_root();
    let r = validate_run(&root, &[]);
    assert_eq!(r.code, 0, "odi validate {} must pass:\n{}", root.display(), r.both());
    assert!(r.stdout.starts_with("ok: "), "{}", r.both());
}

#[test]
fn table() {
    let have_minisign = have_minisign();
    let mut failures = Vec::new();
    let mut ran = 0;
    for c in cases() {
        if c.minisign && !have_minisign {
            println!(
                "note: skipping `{}`: the `minisign` tool is not installed (CI installs it)",
                c.name
            );
            continue;
        }
        let mut fx = Fx::new();
        let extra = (c.mutate)(&mut fx);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let r = validate_run(&fx.dir, &extra);
        ran += 1;
        let ok = match c.expect {
            Pass => r.code == 0,
            Fail { file, why } => {
                r.code == 1 && r.stdout.lines().any(|l| l.contains(file) && l.contains(why))
            }
        };
        if !ok {
            failures.push(format!(
                "case `{}`: expected {:?} from `odi validate {}`\n{}",
                c.name,
                c.expect,
                extra.join(" "),
                r.both()
            ));
        }
    }
    assert!(ran >= 40, "only {ran} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn odi_sign_verifies_with_minisign() {
    let tmp = tempfile::tempdir().unwrap();
    let name = tmp.path().join("alice");
    let r = run_odi([Path::new("keygen").as_os_str(), name.as_os_str()]);
    assert_eq!(r.code, 0, "{}", r.both());
    let (sk, pk) = (tmp.path().join("alice.key"), tmp.path().join("alice.pub"));
    assert!(sk.is_file() && pk.is_file(), "{}", r.both());
    // Refuses to overwrite a key.
    let again = run_odi([Path::new("keygen").as_os_str(), name.as_os_str()]);
    assert_ne!(again.code, 0, "{}", again.both());
    let file = tmp.path().join("doc.toml");
    std::fs::write(&file, "serial = 1\n").unwrap();
    let r = run_odi([
        Path::new("sign").as_os_str(),
        "--key".as_ref(),
        sk.as_os_str(),
        file.as_os_str(),
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(tmp.path().join("doc.toml.minisig").is_file());
    if !have_minisign() {
        println!("note: skipping the `minisign -V` check: the `minisign` tool is not installed (CI installs it)");
        return;
    }
    let verify = |f: &Path| {
        let mut c = Command::new("minisign");
        c.arg("-V").arg("-p").arg(&pk).arg("-m").arg(f);
        support::run(c)
    };
    let r = verify(&file);
    assert_eq!(r.code, 0, "minisign -V must accept odi's signature: {}", r.both());
    // And refuses it once the file changes.
    std::fs::write(&file, "serial = 2\n").unwrap();
    let r = verify(&file);
    assert_ne!(r.code, 0, "minisign -V must refuse a changed file: {}", r.both());
}

#[test]
fn plan_prints_holdings_and_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let b = small_network();
    let dir = write_repo(&b, tmp.path());
    // The same table computed in-process.
    let loaded = odi_network::load(
        &b.tree().unwrap(),
        &Default::default(),
        &Default::default(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let table = odi_network::assign::assign(&loaded.network, &Default::default());
    for relay in ["relay-1", "relay-2", "relay-3"] {
        let share = table.share(relay).unwrap();
        let r = run_odi([
            Path::new("plan").as_os_str(),
            "--node".as_ref(),
            relay.as_ref(),
            dir.as_os_str(),
            "-v".as_ref(),
        ]);
        assert_eq!(r.code, 0, "{}", r.both());
        assert!(
            r.stdout.contains(&format!("relay `{relay}`: holds {} artifacts", share.artifacts)),
            "{relay}: {}",
            r.both()
        );
        let quota = b.relays[relay].quota.to_string();
        assert!(
            r.stdout.contains(&format!("quota {quota}")),
            "{relay} quota {quota}: {}",
            r.both()
        );
        for p in table.artifacts_of(share) {
            assert!(
                r.stdout.contains(&format!("{}/{}", p.catalog, p.path)),
                "{relay} holds {}: {}",
                p.path,
                r.both()
            );
        }
        assert!(!r.stdout.contains(EXPUNGED), "expunged artifacts are never held: {}", r.both());
    }
    // A directory holds its whole catalog.
    let r = run_odi([
        Path::new("plan").as_os_str(),
        "--node".as_ref(),
        "dir-a".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let live = artifact_bytes().len() - 1;
    assert!(
        r.stdout.contains(&format!("directory `dir-a`: holds {live} artifacts")),
        "{}",
        r.both()
    );
    // An unknown node is an error.
    let r = run_odi([
        Path::new("plan").as_os_str(),
        "--node".as_ref(),
        "nobody".as_ref(),
        dir.as_os_str(),
    ]);
    assert_ne!(r.code, 0, "{}", r.both());
    assert!(r.stderr.contains("nobody"), "{}", r.both());
}

#[test]
fn plan_base_shows_a_download_after_adding_an_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = small_network();
    let dir = write_repo(&b, tmp.path());
    let base = head(&dir);
    let bytes = generated_bytes("new/extra.bin", 5000);
    let c = b.catalogs.get_mut(CATALOG).unwrap();
    c.serial += 1;
    c.artifacts.push(entry("new/extra.bin", &bytes));
    write_repo(&b, &dir);
    let loaded = odi_network::load(
        &b.tree().unwrap(),
        &Default::default(),
        &Default::default(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let table = odi_network::assign::assign(&loaded.network, &Default::default());
    let holders = table.holders(CATALOG, "new/extra.bin");
    assert_eq!(holders.len(), 2, "replicas = 2 and every relay has room");
    for relay in ["relay-1", "relay-2", "relay-3"] {
        let r = run_odi([
            Path::new("plan").as_os_str(),
            "--node".as_ref(),
            relay.as_ref(),
            dir.as_os_str(),
            "--base".as_ref(),
            base.as_ref(),
            "--commit".as_ref(),
            "HEAD".as_ref(),
        ]);
        assert_eq!(r.code, 0, "{}", r.both());
        let line = "  + demo/new/extra.bin";
        if holders.contains(&relay) {
            assert!(r.stdout.contains("change: download 1 ("), "{relay}: {}", r.both());
            assert!(r.stdout.contains(line), "{relay}: {}", r.both());
        } else {
            assert!(!r.stdout.contains(line), "{relay}: {}", r.both());
        }
    }
    // The JSON form carries the same change.
    let relay = holders[0];
    let r = run_odi([
        Path::new("plan").as_os_str(),
        "--node".as_ref(),
        relay.as_ref(),
        dir.as_os_str(),
        "--base".as_ref(),
        base.as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let downloads = v["change"]["download"].as_array().unwrap();
    assert_eq!(downloads.len(), 1, "{}", r.stdout);
    assert_eq!(downloads[0]["path"], "new/extra.bin");
    assert_eq!(downloads[0]["sha256"], sha256_hex(&bytes));
}
