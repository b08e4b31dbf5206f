//! Following the network repository: smart HTTP, refusing history rewrites and replays, and
//! the authenticated sync trigger. Each bad commit must leave the last good one serving.

use std::time::Duration;

use crate::testnet::{client, eventually, status, TestNet};

const WAIT: Duration = Duration::from_secs(30);

async fn stalled_with(base: &str, reason: &str) -> bool {
    status(base).await.is_some_and(|s| {
        s.conditions.iter().any(|c| c.kind == "Stalled" && c.status && c.reason == reason)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_smart_http_and_refuses_rewrites_and_replays() {
    let mut net = TestNet::small().await;
    let server = odi_git_http::testing::serve(net.tmp.path()).unwrap();
    net.repo_url = Some(format!("{}/network", server.base_url));
    let relay = net.start("relay-3").await;
    let base = net.url("relay-3");
    eventually("Ready over smart HTTP", WAIT, || async {
        status(&base).await.is_some_and(|s| s.ready())
    })
    .await;
    let first = status(&base).await.unwrap().commit.unwrap();

    // A forward commit is applied.
    let saved_relay_file = std::fs::read(net.repo.join("relays/relay-3.toml")).unwrap();
    let saved_relay_sig = std::fs::read(net.repo.join("relays/relay-3.toml.minisig")).unwrap();
    net.builder.relays.get_mut("relay-3").unwrap().serial += 1;
    net.builder.relays.get_mut("relay-3").unwrap().contact = "new@relay-3.example.net".into();
    let second = net.commit("contact change");
    eventually("second commit applied", WAIT, || async {
        status(&base).await.is_some_and(|s| s.commit.as_deref() == Some(second.as_str()))
    })
    .await;

    // Replay: the old, validly signed relay file with its lower serial.
    std::fs::write(net.repo.join("relays/relay-3.toml"), &saved_relay_file).unwrap();
    std::fs::write(net.repo.join("relays/relay-3.toml.minisig"), &saved_relay_sig).unwrap();
    let replay =
        odi_network::builder::commit_all(&net.repo, "replay old relay file").unwrap().to_string();
    eventually("replay refused", WAIT, || async { stalled_with(&base, "InvalidCommit").await })
        .await;
    let s = status(&base).await.unwrap();
    assert_eq!(s.commit.as_deref(), Some(second.as_str()));
    assert!(s.conditions.iter().any(|c| c.message.contains("serial")), "{:?}", s.conditions);
    assert_ne!(replay, second);

    // History rewrite: main now points at a commit that does not descend from the applied one.
    let repo = git2::Repository::open(&net.repo).unwrap();
    let first_commit = repo.find_commit(git2::Oid::from_str(&first).unwrap()).unwrap();
    let sig = git2::Signature::now("attacker", "a@example.net").unwrap();
    let rewritten = repo
        .commit(None, &sig, &sig, "rewritten history", &first_commit.tree().unwrap(), &[])
        .unwrap();
    repo.reference("refs/heads/main", rewritten, true, "force push").unwrap();
    eventually("rewrite refused", WAIT, || async { stalled_with(&base, "NotDescendant").await })
        .await;
    assert_eq!(
        status(&base).await.unwrap().commit.as_deref(),
        Some(second.as_str()),
        "last good commit keeps serving"
    );
    assert_eq!(client().get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    relay.stop().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_trigger_needs_the_token() {
    let mut net = TestNet::small().await;
    let token_file = net.tmp.path().join("token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").unwrap();
    net.repo_extra = format!("trigger_token_file = \"{}\"", token_file.display());
    let relay = net.start("relay-3").await;
    let url = format!("{}/.odi/v1/sync", net.url("relay-3"));
    let c = client();
    assert_eq!(c.post(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        c.post(&url).bearer_auth("wrong-token-0123456789").send().await.unwrap().status(),
        401
    );
    assert_eq!(
        c.post(&url).bearer_auth("s3cret-token-0123456789").send().await.unwrap().status(),
        202
    );
    assert_eq!(c.get(&url).send().await.unwrap().status(), 405);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_pulls_at_once() {
    let mut net = TestNet::small().await;
    // A pull interval long enough that only the signal can explain a prompt update.
    let cfg = net.config_file("relay-3");
    let text =
        std::fs::read_to_string(&cfg).unwrap().replace("interval = \"300ms\"", "interval = \"1h\"");
    std::fs::write(&cfg, text).unwrap();
    let log = std::fs::File::create(net.data_dir("relay-3").join("agent.log")).unwrap();
    let mut child =
        crate::support::odi().arg("agent").arg("--config").arg(&cfg).stderr(log).spawn().unwrap();
    let base = net.url("relay-3");
    eventually("first commit applied", WAIT, || async {
        status(&base).await.is_some_and(|s| s.commit.is_some())
    })
    .await;
    net.builder.relays.get_mut("relay-3").unwrap().serial += 1;
    net.builder.relays.get_mut("relay-3").unwrap().contact = "hup@relay-3.example.net".into();
    let second = net.commit("after start");
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    eventually("SIGHUP applied the new commit", WAIT, || async {
        status(&base).await.is_some_and(|s| s.commit.as_deref() == Some(second.as_str()))
    })
    .await;
    // SIGTERM stops it cleanly.
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let code = child.wait().unwrap();
    assert!(code.success(), "clean exit on SIGTERM: {code:?}");
}
