//! A hostile repository host: real agents following a real git repository of a network with a
//! snapshot role. Every attack is a commit (or a frozen head) that someone with push access but
//! no signing key can make; each must be refused naming the path, with the last good state
//! serving. Then expiry (frozen head, expired root, restart), k-of-n delegations, and rotted
//! bytes on a relay's disk.

use std::time::Duration;

use odi_network::builder::{commit_all, GroupDelegation, Key};

use crate::support::{self, CATALOG, RELEASE};
use crate::testnet::{client, eventually, status, TestNet};

const WAIT: Duration = Duration::from_secs(40);

/// An artifact of the release file, served by `dir-a` itself (no relay runs).
fn release_artifact() -> (String, Vec<u8>) {
    support::release_artifacts().into_iter().next().unwrap()
}

async fn snapshot_net() -> TestNet {
    let b = support::small_network().with_snapshot().unwrap();
    TestNet::new(b, support::artifact_bytes()).await
}

/// The Stalled condition's (reason, message), when it holds.
async fn stalled(base: &str) -> Option<(String, String)> {
    let s = status(base).await?;
    s.conditions
        .iter()
        .find(|c| c.kind == "Stalled" && c.status)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

async fn get(base: &str, path: &str) -> (u16, Vec<u8>) {
    let r = client().get(format!("{base}/r/{CATALOG}/{path}")).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.bytes().await.unwrap().to_vec())
}

async fn ready(base: &str) {
    eventually("Ready", WAIT, || async { status(base).await.is_some_and(|s| s.ready()) }).await;
}

fn remove(net: &TestNet, rel: &str) {
    for p in [rel.to_owned(), format!("{rel}.minisig")] {
        let _ = std::fs::remove_file(net.repo.join(p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_that_do_not_match_the_snapshot_are_refused_naming_the_path() {
    let net = snapshot_net().await;
    let dir = net.start("dir-a").await;
    let base = net.url("dir-a");
    ready(&base).await;
    let mut good = status(&base).await.unwrap().commit.unwrap();
    let (path, bytes) = release_artifact();
    let release = format!("catalogs/{CATALOG}/releases/{RELEASE}.toml");

    // (what, how the attacker changes the work tree, a path the refusal must name)
    type Attack = Box<dyn Fn(&TestNet)>;
    let attacks: Vec<(&str, Attack, String)> = vec![
        (
            "delete a release file",
            Box::new(move |n: &TestNet| {
                remove(n, &format!("catalogs/{CATALOG}/releases/{RELEASE}.toml"))
            }),
            release.clone(),
        ),
        (
            "delete a relay file",
            Box::new(|n: &TestNet| remove(n, "relays/relay-1.toml")),
            "relays/relay-1.toml".into(),
        ),
        (
            "delete every catalog, directory and relay file",
            Box::new(|n: &TestNet| {
                for sub in ["catalogs", "directories", "relays"] {
                    std::fs::remove_dir_all(n.repo.join(sub)).unwrap();
                }
            }),
            "directories/dir-a.toml".into(),
        ),
        (
            "re-sign the snapshot with a key that is not a snapshot key",
            Box::new(|n: &TestNet| {
                let p = n.repo.join("trust/snapshot.toml");
                // Only the snapshot's own serial changes: the list still matches the tree, so
                // the signature is all that can refuse it.
                let text =
                    std::fs::read_to_string(&p).unwrap().replacen("serial = ", "serial = 9", 1);
                std::fs::write(&p, &text).unwrap();
                let other = Key::generate("snapshot").unwrap();
                std::fs::write(
                    n.repo.join("trust/snapshot.toml.snapshot.minisig"),
                    other.sign(text.as_bytes()).unwrap(),
                )
                .unwrap();
            }),
            "no signature by the key of the snapshot role".into(),
        ),
    ];
    for (what, attack, names) in &attacks {
        attack(&net);
        let bad = commit_all(&net.repo, what).unwrap().to_string();
        eventually(what, WAIT, || async {
            stalled(&base).await.is_some_and(|(r, m)| r == "InvalidCommit" && m.contains(&bad))
        })
        .await;
        let (reason, message) = stalled(&base).await.unwrap();
        assert!(message.contains(names.as_str()), "{what}: {reason}: {message}");
        let s = status(&base).await.unwrap();
        assert_eq!(s.commit.as_deref(), Some(good.as_str()), "{what}: last good commit applied");
        assert_eq!(get(&base, &path).await, (200, bytes.clone()), "{what}: still serving");
        // Put the good tree back (as a new commit: agents never go back in history).
        good = net.commit("restore");
        eventually("restored", WAIT, || async {
            status(&base).await.is_some_and(|s| s.commit.as_deref() == Some(good.as_str()))
        })
        .await;
    }

    // An older snapshot (lower serial) than the one applied.
    net.builder.set_snapshot_serial(1);
    let bad = net.commit("replay an old snapshot serial");
    eventually("old snapshot refused", WAIT, || async {
        stalled(&base).await.is_some_and(|(_, m)| {
            m.contains(&bad) && m.contains("trust/snapshot.toml") && m.contains("serial")
        })
    })
    .await;
    assert_eq!(status(&base).await.unwrap().commit.as_deref(), Some(good.as_str()));
    assert_eq!(get(&base, &path).await, (200, bytes.clone()), "still serving the last good state");
    dir.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_agent_applies_nothing_from_an_expired_snapshot() {
    let mut b = support::small_network().with_snapshot().unwrap();
    b.snapshot_valid = time::Duration::seconds(-60);
    let net = TestNet::new(b, support::artifact_bytes()).await;
    let dir = net.start("dir-a").await;
    let base = net.url("dir-a");
    eventually("refused", WAIT, || async {
        stalled(&base).await.is_some_and(|(r, m)| r == "InvalidCommit" && m.contains("expired"))
    })
    .await;
    let s = status(&base).await.unwrap();
    assert_eq!(s.commit, None, "nothing applied");
    let (path, _) = release_artifact();
    assert_eq!(get(&base, &path).await.0, 503);
    dir.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_head_is_noticed_and_served_by_policy_also_after_a_restart() {
    let mut b = support::small_network().with_snapshot().unwrap();
    b.snapshot_valid = time::Duration::seconds(6);
    let mut net = TestNet::new(b, support::artifact_bytes()).await;
    // dir-b refuses once the trust expired; dir-a (the default) keeps serving.
    let refuse = "on_expiry = \"refuse\"".to_owned();
    let dir_a = net.start("dir-a").await;
    net.repo_extra = refuse;
    let dir_b = net.start("dir-b").await;
    net.repo_extra = String::new();
    let (a, bb) = (net.url("dir-a"), net.url("dir-b"));
    ready(&a).await;
    ready(&bb).await;
    let (path, bytes) = release_artifact();
    eventually("snapshot expiry noticed", WAIT, || async {
        stalled(&a).await.is_some_and(|(r, _)| r == "SnapshotExpired")
            && stalled(&bb).await.is_some_and(|(r, _)| r == "SnapshotExpired")
    })
    .await;
    let metrics = client().get(format!("{a}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("odi_trust_expired 1"), "{metrics}");
    assert_eq!(get(&a, &path).await, (200, bytes.clone()), "serve: last good state still served");
    let (code, body) = get(&bb, &path).await;
    assert_eq!(code, 503, "refuse: {}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    let s = status(&bb).await.unwrap();
    assert!(s
        .conditions
        .iter()
        .any(|c| c.kind == "Ready" && !c.status && c.reason == "TrustExpired"));

    // Restarted after the expiry: the last good state serves again (default policy).
    let commit = status(&a).await.unwrap().commit;
    dir_a.stop().await;
    let dir_a = net.start("dir-a").await;
    eventually("resumed", WAIT, || async { status(&a).await.is_some_and(|s| s.commit == commit) })
        .await;
    assert!(stalled(&a).await.is_some_and(|(r, _)| r == "SnapshotExpired"));
    eventually("served after restart", WAIT, || async { get(&a, &path).await.0 == 200 }).await;

    // A fresh snapshot (CI renewed it) brings both back.
    net.builder.snapshot_valid = time::Duration::days(1);
    net.commit("snapshot refreshed");
    eventually("fresh again", WAIT, || async {
        stalled(&a).await.is_none()
            && stalled(&bb).await.is_none()
            && get(&bb, &path).await.0 == 200
    })
    .await;
    dir_a.stop().await;
    dir_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_expiry_is_noticed_while_running_and_survives_a_restart() {
    let mut b = support::small_network();
    b.root_valid = time::Duration::seconds(6);
    let net = TestNet::new(b, support::artifact_bytes()).await;
    let dir = net.start("dir-a").await;
    let base = net.url("dir-a");
    ready(&base).await;
    eventually("root expiry noticed", WAIT, || async {
        stalled(&base).await.is_some_and(|(r, _)| r == "RootExpired")
    })
    .await;
    let (path, bytes) = release_artifact();
    assert_eq!(get(&base, &path).await, (200, bytes.clone()));
    dir.stop().await;
    // Before, a restart past the root's expiry exited with "root expired" and served nothing.
    let dir = net.start("dir-a").await;
    eventually("resumed", WAIT, || async {
        status(&base).await.is_some_and(|s| s.commit.is_some())
    })
    .await;
    assert!(stalled(&base).await.is_some_and(|(r, _)| r == "RootExpired"));
    eventually("served after restart", WAIT, || async {
        get(&base, &path).await == (200, bytes.clone())
    })
    .await;
    dir.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_of_three_delegation_needs_two_signatures() {
    let mut b = support::small_network().with_snapshot().unwrap();
    b.maintainer_paths = vec!["directories/".into(), "relays/".into()];
    let keys = (1..=3).map(|i| Key::generate(&format!("rm{i}")).unwrap()).collect();
    b.groups.push(GroupDelegation {
        name: "release managers".into(),
        keys,
        threshold: 2,
        paths: vec!["catalogs/".into()],
        signers: 1,
    });
    let tmp = tempfile::tempdir().unwrap();
    let repo = support::write_repo(&b, tmp.path());
    let (code, out) = support::validate(&repo, &[]);
    assert_eq!(code, 1, "one signature of two: {out}");
    assert!(
        out.contains("signed by 1 of 3 keys of delegation `release managers` (threshold 2)")
            && out.contains("rm2")
            && out.contains("rm3"),
        "names the signatures still missing: {out}"
    );
    b.groups[0].signers = 2;
    let repo = support::write_repo(&b, &tmp.path().join("two"));
    let (code, out) = support::validate(&repo, &[]);
    assert_eq!(code, 0, "two signatures of two: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotted_bytes_on_a_relay_are_never_served_and_are_fetched_again() {
    let net = TestNet::small().await;
    let dir = net.start("dir-a").await;
    let relay = net.start("relay-3").await;
    let rb = net.url("relay-3");
    ready(&rb).await;
    // Every artifact relay-3 holds, large and small: rot 16 bytes of each on disk.
    let store = crate::testnet::store_root(&net, "relay-3");
    let held: Vec<(String, Vec<u8>)> = support::artifact_bytes()
        .into_iter()
        .filter(|(p, _)| p != support::EXPUNGED)
        .filter(|(_, b)| store.join(objects_path(b)).exists())
        .collect();
    assert!(!held.is_empty(), "relay-3 holds something");
    for (_, bytes) in &held {
        use std::io::{Seek as _, Write as _};
        let p = store.join(objects_path(bytes));
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.seek(std::io::SeekFrom::Start((bytes.len() / 2) as u64)).unwrap();
        f.write_all(&[0xA5; 16][..16.min(bytes.len())]).unwrap();
    }
    for (path, bytes) in &held {
        // Never a success with wrong bytes; the relay sends the client on or says it has none.
        let r = client().get(format!("{rb}/r/{CATALOG}/{path}")).send().await.unwrap();
        let code = r.status().as_u16();
        let body = r.bytes().await.unwrap();
        assert!(
            code != 200 || body.as_ref() == bytes.as_slice(),
            "{path}: {code} with wrong bytes"
        );
    }
    // Quarantined and fetched again: served correctly once more.
    for (path, bytes) in &held {
        eventually("fetched again", WAIT, || async {
            let r = client().get(format!("{rb}/r/{CATALOG}/{path}")).send().await.unwrap();
            r.status() == 200 && r.bytes().await.unwrap().as_ref() == bytes.as_slice()
        })
        .await;
    }
    let quarantine = store.join("quarantine");
    assert!(
        std::fs::read_dir(&quarantine).unwrap().count() >= held.len(),
        "rotted objects kept aside"
    );
    relay.stop().await;
    dir.stop().await;
}

/// `objects/<ab>/<sha>` of some bytes.
fn objects_path(bytes: &[u8]) -> String {
    let hex = support::sha256_hex(bytes);
    format!("objects/{}/{hex}", &hex[..2])
}

/// Signs `file` with the standard tool into `sig` (`minisign -S`, prehashed; `-l` legacy).
fn minisign_sign_into(
    sk: &std::path::Path,
    file: &std::path::Path,
    sig: &std::path::Path,
    legacy: bool,
) {
    let mut c = std::process::Command::new("minisign");
    c.arg("-S");
    if legacy {
        c.arg("-l");
    }
    c.arg("-s").arg(sk).arg("-m").arg(file).arg("-x").arg(sig).arg("-t").arg("signed by minisign");
    let r = support::run(c);
    assert_eq!(r.code, 0, "minisign -S failed: {}", r.both());
}

#[test]
fn minisign_signatures_count_for_every_role() {
    assert!(support::have_minisign(), "the test setup installs minisign");
    let b = support::small_network().with_snapshot().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = support::write_repo(&b, &tmp.path().join("net"));
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (root_sk, _, root_pub) = support::minisign_keygen(&keys, "mroot");
    let (snap_sk, _, snap_pub) = support::minisign_keygen(&keys, "msnap");
    let (op_sk, _, op_pub) = support::minisign_keygen(&keys, "operator");
    // Root: a second root key made by minisign, and a threshold of two, so its signature is
    // needed; the snapshot role's key is minisign's; one relay file delegated to minisign's.
    b.write_keys(&keys).unwrap();
    support::edit(&repo, "trust/roots/1.toml", |t| {
        let t = support::replace_once(&t, "threshold = 1\n", "threshold = 2\n");
        format!("{t}\n[[keys]]\nname = \"mroot\"\npublic = \"{root_pub}\"\n\n[[delegations]]\nname = \"operator\"\npublic = \"{op_pub}\"\npaths = [\"relays/relay-1.toml\"]\n\n[[snapshot.keys]]\nname = \"msnap\"\npublic = \"{snap_pub}\"\n")
    });
    support::resign_root(&b, &repo, 1);
    let root = repo.join("trust/roots/1.toml");
    minisign_sign_into(&root_sk, &root, &repo.join("trust/roots/1.toml.mroot.minisig"), false);
    let relay = repo.join("relays/relay-1.toml");
    minisign_sign_into(&op_sk, &relay, &repo.join("relays/relay-1.toml.minisig"), false);
    // The snapshot written by odi (it lists the new root bytes) with the builder's snapshot
    // key; then that signature replaced by minisign's, with the role's other key (1 of 2).
    let odi_key = keys.join("snapshot.key");
    let r =
        support::run_odi(["snapshot", "--key", odi_key.to_str().unwrap(), repo.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.both());
    let snap = repo.join("trust/snapshot.toml");
    let odi_sig = repo.join("trust/snapshot.toml.snapshot.minisig");
    assert!(odi_sig.exists(), "named after the role's key: {}", r.stdout);
    std::fs::remove_file(&odi_sig).unwrap();
    let snap_sig = repo.join("trust/snapshot.toml.msnap.minisig");
    minisign_sign_into(&snap_sk, &snap, &snap_sig, false);
    let (code, out) = support::validate(&repo, &[]);
    assert_eq!(code, 0, "every role signed by minisign -S: {out}");

    // A legacy (non-prehashed) snapshot signature is refused, naming the file.
    minisign_sign_into(&snap_sk, &snap, &snap_sig, true);
    let (code, out) = support::validate(&repo, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("trust/snapshot.toml") && out.contains("legacy"), "{out}");
}

/// A relay that lists an artifact with the right hash but serves `bytes` for it (with exact
/// single ranges, as a real relay does): what the directory's content checks are for.
async fn lying_relay(
    port: u16,
    name: &'static str,
    catalog: &'static str,
    path: &'static str,
    listed_sha: String,
    bytes: std::sync::Arc<Vec<u8>>,
    commit: std::sync::Arc<std::sync::Mutex<String>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (bytes, commit, sha) = (bytes.clone(), commit.clone(), listed_sha.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let json = |v: serde_json::Value| {
                    let body = v.to_string();
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()
                };
                let commit = commit.lock().unwrap().clone();
                let out: Vec<u8> = if target == "/.odi/v1/status" {
                    json(serde_json::json!({"name": name, "mode": "relay", "commit": commit}))
                } else if target == "/.odi/v1/inventory" {
                    json(serde_json::json!({"name": name, "commit": commit, "artifacts": [
                        {"catalog": catalog, "path": path, "sha256": sha, "size": bytes.len()}]}))
                } else if target == format!("/r/{catalog}/{path}") {
                    let range =
                        head.lines().find_map(|l| l.strip_prefix("range: bytes=")).and_then(|r| {
                            let (a, b) = r.trim().split_once('-')?;
                            Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                        });
                    match range {
                        Some((a, b)) if a <= b && b < bytes.len() => {
                            let mut o = format!("HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {a}-{b}/{}\r\nconnection: close\r\n\r\n", b - a + 1, bytes.len()).into_bytes();
                            o.extend_from_slice(&bytes[a..=b]);
                            o
                        }
                        _ => {
                            let mut o = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", bytes.len()).into_bytes();
                            o.extend_from_slice(&bytes);
                            o
                        }
                    }
                } else {
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_vec()
                };
                let _ = sock.write_all(&out).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_serving_16_wrong_bytes_of_8_mib_is_out_within_the_stated_rounds() {
    const MIB8: usize = 8 << 20;
    let good = odi_agent::demo::catalogs::generated_bytes("big.bin", MIB8);
    let mut bad = good.clone();
    // Far into the object, so that many passing rounds come first.
    let at = 5 * (1 << 20) + 12_345;
    for b in &mut bad[at..at + 16] {
        *b ^= 0xff;
    }
    let mut b = support::small_network();
    b.catalogs.insert(
        "big".into(),
        odi_network::raw::CatalogFile {
            serial: 1,
            name: "big".into(),
            description: "one large artifact".into(),
            origins: vec!["https://origin.invalid/".into()],
            replicas: 1,
            import: None,
            artifacts: vec![support::entry("big.bin", &good)],
            ..Default::default()
        },
    );
    b.directories.get_mut("dir-a").unwrap().catalogs.push("big".into());
    let mut liar = b.relays["relay-1"].clone();
    liar.name = "liar".into();
    liar.catalogs = vec!["big".into()];
    liar.tags = vec![];
    liar.quota = odi_network::units::ByteSize(64 << 20);
    b.relays.insert("liar".into(), liar);
    let mut files = support::artifact_bytes();
    files.push(("big.bin".into(), good.clone()));
    let net = TestNet::new(b, files).await;
    let commit = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sha = support::sha256_hex(&good);
    lying_relay(
        net.ports["liar"],
        "liar",
        "big",
        "big.bin",
        sha,
        std::sync::Arc::new(bad),
        commit.clone(),
    )
    .await;
    let dir = net.start("dir-a").await;
    let base = net.url("dir-a");
    ready(&base).await;
    *commit.lock().unwrap() = status(&base).await.unwrap().commit.unwrap();

    let liar_state = || async {
        let s = status(&base).await?;
        s.directory?.relays.into_iter().find(|r| r.name == "liar")
    };
    eventually("the liar passes its first probes", WAIT, || async {
        liar_state().await.is_some_and(|r| r.healthy)
    })
    .await;
    eventually("the liar is caught", WAIT, || async {
        liar_state().await.is_some_and(|r| !r.healthy && r.last_probe.is_some())
    })
    .await;
    let r = liar_state().await.unwrap();
    let reason = r.reason.unwrap_or_default();
    assert!(reason.contains("content check of big/big.bin"), "{reason}");
    // Stated in docs/security.adoc: every byte within ceil(W / 4) rounds, W = 64 windows.
    let metrics =
        client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let passed: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("odi_probes_total{")
                && l.contains("relay=\"liar\"")
                && l.contains("outcome=\"ok\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    let windows = MIB8.div_ceil(128 << 10) as u64;
    assert!(
        passed >= 1 && passed <= windows / 4,
        "{passed} passing rounds before the damage was found"
    );
    dir.stop().await;
}

#[test]
fn odi_snapshot_never_signs_a_deletion_it_was_not_told_of() {
    let b = support::small_network().with_snapshot().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = support::write_repo(&b, &tmp.path().join("net"));
    let keys = tmp.path().join("keys");
    b.write_keys(&keys).unwrap();
    let key = keys.join("snapshot.key");
    for p in ["relays/relay-1.toml", "relays/relay-1.toml.minisig"] {
        std::fs::remove_file(repo.join(p)).unwrap();
    }
    // What the network's CI runs after a push: it refuses, naming the deleted document.
    let r = support::run_odi(["snapshot", "--key", key.to_str().unwrap(), repo.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.both());
    assert!(
        r.stderr.contains("relays/relay-1.toml") && r.stderr.contains("--remove"),
        "{}",
        r.both()
    );
    let (code, _) = support::validate(&repo, &[]);
    assert_eq!(code, 1, "the unsigned deletion still fails validation");
    // A key holder who means it names the deletion.
    let r = support::run_odi([
        "snapshot",
        "--key",
        key.to_str().unwrap(),
        "--remove",
        "relays/relay-1.toml",
        repo.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let (code, out) = support::validate(&repo, &[]);
    assert_eq!(code, 0, "{out}");
}
