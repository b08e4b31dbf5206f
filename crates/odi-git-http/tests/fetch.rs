//! Fetching over http:// from a real `git http-backend`, and the errors a broken server
//! must produce. This process registers the transport with default options.

mod common;

use std::sync::Once;

use common::{add_commit, canned_server, fetch, make_source};
use odi_git_http::{register, testing, HttpOptions};

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| register(HttpOptions::default()).unwrap());
    // Later calls must be harmless no-ops.
    register(HttpOptions::default()).unwrap();
}

#[test]
fn fetch_then_incremental_fetch() {
    setup();
    let root = tempfile::tempdir().unwrap();
    let (source, head) = make_source(&root.path().join("network.git"), 3);
    let server = testing::serve(root.path()).unwrap();
    let url = format!("{}/network.git", server.base_url);
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("clone.git");

    let (fetched, received) = fetch(&url, &dest).unwrap();
    assert_eq!(fetched, head);
    // 3 commits, 3 trees, 3 blobs.
    assert_eq!(received, 9);

    let head2 = add_commit(&source, "second round\n");
    let (fetched, received) = fetch(&url, &dest).unwrap();
    assert_eq!(fetched, head2);
    // Negotiation told the server what we have: only the new commit, tree and blob came.
    assert_eq!(received, 3, "incremental fetch must not resend everything");

    // Nothing new: still succeeds and transfers nothing.
    let (fetched, received) = fetch(&url, &dest).unwrap();
    assert_eq!(fetched, head2);
    assert_eq!(received, 0);
}

#[test]
fn fetch_with_trailing_slash_and_many_commits() {
    setup();
    let root = tempfile::tempdir().unwrap();
    // Enough history for libgit2 to need more than one negotiation round later on.
    let (source, _) = make_source(&root.path().join("big.git"), 60);
    let server = testing::serve(root.path()).unwrap();
    let url = format!("{}/big.git/", server.base_url);
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("clone.git");
    fetch(&url, &dest).unwrap();
    for i in 0..40 {
        add_commit(&source, &format!("more {i}\n"));
    }
    let head = source.refname_to_id("refs/heads/main").unwrap();
    let (fetched, received) = fetch(&url, &dest).unwrap();
    assert_eq!(fetched, head);
    assert_eq!(received, 120);
}

#[test]
fn missing_repository_names_status_and_url() {
    setup();
    let root = tempfile::tempdir().unwrap();
    let server = testing::serve(root.path()).unwrap();
    let url = format!("{}/absent.git", server.base_url);
    let dest = tempfile::tempdir().unwrap();
    let err = fetch(&url, &dest.path().join("d.git")).unwrap_err();
    let message = err.message();
    assert!(message.contains("404"), "{message}");
    assert!(message.contains(&url), "{message}");
    assert_eq!(err.class(), git2::ErrorClass::Http);
}

#[test]
fn http_errors_are_reported_with_status() {
    setup();
    let dest = tempfile::tempdir().unwrap();
    for (status, expect) in [
        ("404 Not Found", "HTTP 404 Not Found"),
        ("500 Internal Server Error", "HTTP 500 Internal Server Error"),
        ("401 Unauthorized", "authentication is not supported"),
    ] {
        let base = canned_server(status, vec!["Content-Type: text/plain".into()], "no\n");
        let url = format!("{base}/network.git");
        let err = fetch(&url, &dest.path().join("d.git")).unwrap_err();
        let message = err.message();
        assert!(message.contains(expect), "{status}: {message}");
        assert!(message.contains(&format!("{url}/info/refs?service=git-upload-pack")), "{message}");
    }
}

#[test]
fn wrong_content_type_is_rejected() {
    setup();
    let base = canned_server(
        "200 OK",
        vec!["Content-Type: text/html; charset=utf-8".into()],
        "<html>dumb or not git at all</html>",
    );
    let dest = tempfile::tempdir().unwrap();
    let err = fetch(&format!("{base}/network.git"), &dest.path().join("d.git")).unwrap_err();
    let message = err.message();
    assert!(message.contains("text/html"), "{message}");
    assert!(message.contains("not a smart git HTTP server"), "{message}");
}

#[test]
fn redirected_repository_is_fetched_from_its_new_place() {
    setup();
    let root = tempfile::tempdir().unwrap();
    let (_, head) = make_source(&root.path().join("network.git"), 2);
    let server = testing::serve(root.path()).unwrap();
    let target = format!("{}/network.git/info/refs?service=git-upload-pack", server.base_url);
    // The old place answers everything, the POST included, with a redirect: the fetch only
    // works if the pack request goes to where the advertisement came from.
    let location: &'static str = Box::leak(format!("Location: {target}").into_boxed_str());
    let old = canned_server("301 Moved Permanently", vec![location.into()], "");
    let dest = tempfile::tempdir().unwrap();
    let (fetched, _) = fetch(&format!("{old}/moved.git"), &dest.path().join("d.git")).unwrap();
    assert_eq!(fetched, head);
}

#[test]
fn connection_refused_names_url() {
    setup();
    // Bind then drop, so the port is very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/network.git");
    let dest = tempfile::tempdir().unwrap();
    let err = fetch(&url, &dest.path().join("d.git")).unwrap_err();
    assert!(err.message().contains(&url), "{}", err.message());
}

#[test]
fn push_is_refused() {
    setup();
    let root = tempfile::tempdir().unwrap();
    let (source, _) = make_source(&root.path().join("network.git"), 1);
    let server = testing::serve(root.path()).unwrap();
    let mut remote = source.remote_anonymous(&format!("{}/network.git", server.base_url)).unwrap();
    let err = remote.push(&["refs/heads/main:refs/heads/other"], None).unwrap_err();
    assert!(err.message().contains("push is not supported"), "{}", err.message());
}

#[test]
fn https_with_untrusted_certificate_fails() {
    setup();
    let root = tempfile::tempdir().unwrap();
    make_source(&root.path().join("network.git"), 1);
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let server = testing::serve_tls(
        root.path(),
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    assert!(server.base_url.starts_with("https://"));
    let dest = tempfile::tempdir().unwrap();
    let err =
        fetch(&format!("{}/network.git", server.base_url), &dest.path().join("d.git")).unwrap_err();
    let message = err.message().to_ascii_lowercase();
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(err.class(), git2::ErrorClass::Ssl, "{message}");
}
