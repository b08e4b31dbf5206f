//! Fetching over https:// from a server with a self-signed certificate that is trusted
//! through `HttpOptions::extra_root_certs_pem`. Its own process, because the options of
//! the first `register` call win.

mod common;

use common::{add_commit, fetch, make_source};
use odi_git_http::{register, testing, HttpOptions};

#[test]
fn fetch_over_https_with_extra_root() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    register(HttpOptions {
        extra_root_certs_pem: vec![cert_pem.clone().into_bytes()],
        ..HttpOptions::default()
    })
    .unwrap();

    let root = tempfile::tempdir().unwrap();
    let (source, head) = make_source(&root.path().join("network.git"), 2);
    let server = testing::serve_tls(
        root.path(),
        cert_pem.as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let url = format!("{}/network.git", server.base_url);
    assert!(url.starts_with("https://127.0.0.1:"));
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("clone.git");

    let (fetched, _) = fetch(&url, &dest).unwrap();
    assert_eq!(fetched, head);
    let head2 = add_commit(&source, "over tls\n");
    let (fetched, received) = fetch(&url, &dest).unwrap();
    assert_eq!(fetched, head2);
    assert_eq!(received, 3);
}
