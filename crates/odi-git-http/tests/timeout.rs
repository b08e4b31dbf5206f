//! A server that accepts but never answers must fail the fetch after the configured
//! timeout, not hang. Its own process, because the options of the first `register` win.

mod common;

use std::time::{Duration, Instant};

use odi_git_http::{register, HttpOptions};

#[test]
fn silent_server_times_out() {
    register(HttpOptions {
        timeout: Some(Duration::from_secs(1)),
        connect_timeout: Some(Duration::from_secs(1)),
        ..HttpOptions::default()
    })
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/network.git", listener.local_addr().unwrap());
    // Keep accepted connections open and silent for the whole test.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let dest = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = common::fetch(&url, &dest.path().join("d.git")).unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    assert_eq!(err.code(), git2::ErrorCode::Timeout, "{}", err.message());
    assert!(err.message().contains(&url), "{}", err.message());
}
