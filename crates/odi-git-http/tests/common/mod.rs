//! Helpers shared by the integration tests (each test file is its own process, which
//! matters because the transport is registered once per process).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use git2::{Oid, Repository, Signature};

/// Creates a bare repository with `commits` commits on `main`; returns it and HEAD.
pub fn make_source(path: &Path, commits: usize) -> (Repository, Oid) {
    let repo = Repository::init_bare(path).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let mut head = None;
    for i in 0..commits {
        head = Some(add_commit(&repo, &format!("file {i}\n")));
    }
    (repo, head.expect("at least one commit"))
}

/// Commits one more file to `main` (on top of the current tip, if any).
pub fn add_commit(repo: &Repository, content: &str) -> Oid {
    let parent = repo.find_reference("refs/heads/main").ok().map(|r| r.peel_to_commit().unwrap());
    let mut tree = repo.treebuilder(parent.as_ref().map(|c| c.tree().unwrap()).as_ref()).unwrap();
    let blob = repo.blob(content.as_bytes()).unwrap();
    let name = format!("f{}.txt", tree.len());
    tree.insert(&name, blob, 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = Signature::now("Test", "test@example.invalid").unwrap();
    let parents: Vec<_> = parent.iter().collect();
    repo.commit(Some("refs/heads/main"), &sig, &sig, content, &tree, &parents).unwrap()
}

/// Fetches all branches of `url` into the bare repository at `dest` (created if needed);
/// returns the fetched `main` and how many objects the fetch transferred.
pub fn fetch(url: &str, dest: &Path) -> Result<(Oid, usize), git2::Error> {
    let repo = match Repository::open_bare(dest) {
        Ok(repo) => repo,
        Err(_) => Repository::init_bare(dest)?,
    };
    let mut remote = repo.remote_anonymous(url)?;
    remote.fetch(&["+refs/heads/*:refs/remotes/origin/*"], None, None)?;
    let received = remote.stats().received_objects();
    Ok((repo.refname_to_id("refs/remotes/origin/main")?, received))
}

/// A server that answers every request with the same canned response and closes;
/// returns its base URL. Its thread lives as long as the test process.
pub fn canned_server(status: &'static str, headers: Vec<String>, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut discard = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut discard);
            let mut response = format!("HTTP/1.1 {status}\r\n");
            for header in &headers {
                response.push_str(header);
                response.push_str("\r\n");
            }
            response.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ));
            let _ = stream.write_all(response.as_bytes());
        }
    });
    base
}
