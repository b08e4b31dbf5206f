//! The test server must also serve the git CLI (protocol v2, chunked request bodies), since
//! other crates' tests may drive it with `git` rather than through this transport.

mod common;

use std::process::Command;

use odi_git_http::testing;

#[test]
fn git_cli_clones_and_fetches_with_chunked_bodies() {
    let root = tempfile::tempdir().unwrap();
    let (source, head) = common::make_source(&root.path().join("network.git"), 30);
    // Each annotated tag is a distinct object the clone must "want"; 3000 of them make the
    // request larger than git's smallest post buffer, so git sends it chunked.
    let target = source.find_object(head, None).unwrap();
    let sig = git2::Signature::now("Test", "test@example.invalid").unwrap();
    for i in 0..3000 {
        source.tag(&format!("t{i}"), &target, &sig, "tag", false).unwrap();
    }
    let server = testing::serve(root.path()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("clone");
    let git = |args: &[&str]| {
        let output = Command::new("git")
            // The smallest post buffer git accepts makes git send its negotiation as a chunked body.
            .args(["-c", "http.postBuffer=70000", "-c", "protocol.version=2"])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", work.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let url = format!("{}/network.git", server.base_url);
    git(&["clone", "--bare", &url, clone.to_str().unwrap()]);
    let cloned = git(&["--git-dir", clone.to_str().unwrap(), "rev-parse", "main"]);
    assert_eq!(cloned.trim(), head.to_string());

    let head2 = common::add_commit(&source, "next\n");
    git(&["--git-dir", clone.to_str().unwrap(), "fetch", &url, "+refs/heads/*:refs/heads/*"]);
    let fetched = git(&["--git-dir", clone.to_str().unwrap(), "rev-parse", "main"]);
    assert_eq!(fetched.trim(), head2.to_string());
}
