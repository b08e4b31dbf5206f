//! HTTPS as operators run it: an agent serving certificate files and picking up a renewed
//! pair without a restart; HTTP/2 by ALPN and HSTS in both modes (curl and h2load); and a
//! certificate obtained and renewed by ACME from a real Pebble CA.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{run, CATALOG};
use crate::testnet::{eventually, reserve_port, TestNet};

fn cert() -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

async fn served_cert(
    addr: std::net::SocketAddr,
    trust: &str,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(trust.as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    Ok(client.get(format!("https://127.0.0.1:{}/healthz", addr.port())).send().await?.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_certificate_reload() {
    let net = TestNet::small().await;
    let dir = net.tmp.path().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (c1, k1) = cert();
    std::fs::write(dir.join("cert.pem"), &c1).unwrap();
    std::fs::write(dir.join("key.pem"), &k1).unwrap();
    let tls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    // A table of its own, so appending it after the helper's config is valid TOML.
    let mut text = std::fs::read_to_string(net.config_file("relay-3")).unwrap();
    text.push_str(&tls);
    let cfg_path = net.data_dir("relay-3").join("agent-tls.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let config = odi_agent::config::Config::load(&cfg_path).unwrap();
    let agent = odi_agent::app::start(config, Default::default()).await.unwrap();
    let addr = agent.addrs[0];
    assert_eq!(served_cert(addr, &c1).await.unwrap(), 200);

    // Renew: the new certificate is served without a restart; the old trust no longer works.
    let (c2, k2) = cert();
    std::fs::write(dir.join("key.pem"), &k2).unwrap();
    std::fs::write(dir.join("cert.pem"), &c2).unwrap();
    eventually("renewed certificate served", Duration::from_secs(20), || async {
        served_cert(addr, &c2).await.is_ok()
    })
    .await;
    assert!(served_cert(addr, &c1).await.is_err());
    agent.stop().await;
}

/// Runs `agent` with `[tls]` lines appended to its test config.
async fn start_with(net: &TestNet, name: &str, tls: &str) -> odi_agent::app::RunningAgent {
    let mut text = std::fs::read_to_string(net.config_file(name)).unwrap();
    text.push_str(tls);
    let cfg_path = net.data_dir(name).join("agent-tls.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let config = odi_agent::config::Config::load(&cfg_path).unwrap();
    odi_agent::app::start(config, Default::default()).await.unwrap()
}

/// A certificate for `127.0.0.1` and `localhost` in `dir`, as `[tls]` lines, and its PEM.
fn cert_files(dir: &Path) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let (c, k) = cert();
    std::fs::write(dir.join("cert.pem"), &c).unwrap();
    std::fs::write(dir.join("key.pem"), &k).unwrap();
    let lines = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    (lines, c)
}

/// `curl -sS -D -` of `url` with extra arguments; (exit code, head, http version).
fn curl(ca: &Path, url: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_version}", "--cacert"])
        .arg(ca)
        .args(args)
        .arg(url);
    let r = run(cmd);
    let version = r.stdout.lines().last().unwrap_or("").to_owned();
    (r.code, r.stdout, version + &r.stderr)
}

/// `h2load` of `url`: the numbers of its summary line, or the whole output.
fn h2load(url: &str, n: usize) -> Result<(usize, usize), String> {
    let mut cmd = Command::new("h2load");
    cmd.args(["-n", &n.to_string(), "-c", "4", "-m", "8", url]);
    let r = run(cmd);
    let line = r.stdout.lines().find(|l| l.starts_with("requests:")).ok_or_else(|| r.both())?;
    let num = |what: &str| -> Option<usize> {
        line.split(',').find(|p| p.trim().ends_with(what))?.split_whitespace().next()?.parse().ok()
    };
    match (num("succeeded"), num("failed"), r.stdout.contains("h2")) {
        (Some(ok), Some(failed), true) => Ok((ok, failed)),
        _ => Err(r.both()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_hsts_in_both_modes() {
    let net = TestNet::small().await;
    for name in ["relay-3", "dir-a"] {
        let (lines, pem) = cert_files(&net.data_dir(name).join("tls"));
        let ca = net.data_dir(name).join("tls").join("cert.pem");
        let agent = start_with(&net, name, &lines).await;
        let port = agent.addrs[0].port();
        let base = format!("https://localhost:{port}");
        let resolve = format!("localhost:{port}:127.0.0.1");
        eventually("the agent answers over HTTPS", Duration::from_secs(20), || async {
            served_cert(agent.addrs[0], &pem).await.is_ok()
        })
        .await;
        // The relay serves bytes of its share, the directory pages (its relays are plain
        // HTTP, so HTTPS clients get no redirect from it: routing tests that).
        let share = if name.starts_with("relay") {
            crate::relay::expected_share(&net, name)
        } else {
            vec![]
        };
        let path = match share.last() {
            Some(p) => format!("/r/{CATALOG}/{p}"),
            None => "/".into(),
        };
        let url = format!("{base}{path}");
        let start = std::time::Instant::now();
        loop {
            let (code, head, rest) = curl(&ca, &url, &["--resolve", &resolve, "--http1.1"]);
            if head.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} {path}: {code} {head}{rest}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (code, head, version) = curl(&ca, &url, &["--http2", "--resolve", &resolve]);
        assert_eq!(code, 0, "{name}: {head}{version}");
        assert!(head.starts_with("HTTP/2 200"), "{name} over h2: {head}");
        assert_eq!(version, "2", "{name}");
        let hsts =
            head.lines().find(|l| l.to_ascii_lowercase().starts_with("strict-transport-security:"));
        assert_eq!(
            hsts.map(|l| l.split_once(':').unwrap().1.trim()),
            Some("max-age=31536000"),
            "{name}: {head}"
        );
        // HTTP/1.1 still works, with HSTS on the fast path too.
        let (code, head, _) = curl(&ca, &url, &["--http1.1", "--resolve", &resolve]);
        assert!(code == 0 && head.starts_with("HTTP/1.1 200"), "{name} over HTTP/1.1: {head}");
        assert!(
            head.to_ascii_lowercase().contains("strict-transport-security: max-age=31536000"),
            "{head}"
        );
        // h2load: many streams over a few connections, every one answered.
        let (ok, failed) = h2load(&format!("https://127.0.0.1:{port}{path}"), 400)
            .unwrap_or_else(|out| panic!("{name}: h2load: {out}"));
        assert_eq!((ok, failed), (400, 0), "{name}");
        agent.stop().await;
    }
}

/// A Pebble ACME server on loopback, killed when dropped.
struct Pebble {
    child: std::process::Child,
    /// Its directory URL.
    directory: String,
    /// The certificate of its own HTTPS endpoints.
    own_ca: std::path::PathBuf,
    management: u16,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// Starts Pebble validating TLS-ALPN-01 on `tls_port`, issuing certificates valid for
    /// `validity_secs`.
    async fn start(dir: &Path, tls_port: u16, validity_secs: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let (c, k) = cert();
        std::fs::write(dir.join("pebble.crt"), &c).unwrap();
        std::fs::write(dir.join("pebble.key"), &k).unwrap();
        let (api, management) = (reserve_port(), reserve_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble.crt"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": reserve_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            // No random sleeps before validating; no nonce rejections; every order validated
            // afresh, so a renewal is a second real validation.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble (Debian package pebble; ci/install-test-deps.sh installs it)");
        let p = Pebble {
            child,
            directory: format!("https://127.0.0.1:{api}/dir"),
            own_ca: dir.join("pebble.crt"),
            management,
        };
        let client = trusting(&c);
        eventually("Pebble answers", Duration::from_secs(20), || async {
            client.get(&p.directory).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        p
    }

    /// The root CA of the certificates Pebble issues (new on every start).
    async fn root(&self) -> String {
        let pem = std::fs::read_to_string(&self.own_ca).unwrap();
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        trusting(&pem).get(url).send().await.unwrap().text().await.unwrap()
    }
}

fn trusting(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

/// The end-entity certificate (PEM) a TLS server at `port` presents for `localhost`, as
/// `openssl s_client` sees it (unverified).
async fn presented(port: u16) -> Option<String> {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    Some(text[start..end].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificate_from_pebble_is_verified_and_renewed_without_a_restart() {
    let net = TestNet::small().await;
    let port = net.ports["relay-3"];
    // Certificates live 30 seconds: renewed a third before expiry, 20 seconds in.
    let pebble = Pebble::start(&net.tmp.path().join("pebble"), port, 30).await;
    let tls = format!(
        "[tls]\n[tls.acme]\ndirectory = \"{}\"\nnames = [\"localhost\"]\ncontact = [\"mailto:ops@example.org\"]\nca_file = \"{}\"\n",
        pebble.directory,
        pebble.own_ca.display()
    );
    let agent = start_with(&net, "relay-3", &tls).await;
    let root = net.tmp.path().join("pebble").join("root.pem");
    std::fs::write(&root, pebble.root().await).unwrap();
    let url = format!("https://localhost:{port}/healthz");
    let resolve = format!("localhost:{port}:127.0.0.1");
    // Until issued, a self-signed placeholder: curl refuses it; then Pebble's chain verifies.
    let start = std::time::Instant::now();
    loop {
        let (code, head, rest) = curl(&root, &url, &["--resolve", &resolve]);
        if code == 0 {
            break;
        }
        let log = std::fs::read_to_string(net.tmp.path().join("pebble").join("pebble.log"));
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "curl does not verify the certificate: {code} {head}{rest}\npebble: {}",
            log.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let first = presented(port).await.expect("a certificate");
    let data = net.data_dir("relay-3").join("data").join("tls");
    let accounts = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("acme-account-"))
        .count();
    assert!(data.join("acme.crt").exists() && accounts == 1, "one account, kept");
    let issuer = std::fs::read_to_string(data.join("acme.crt.directory")).unwrap();
    assert_eq!(issuer, pebble.directory, "the issuing CA is recorded");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(data.join("acme.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is private");
    // Renewal: a different certificate, served by the same process, verified again.
    eventually("the renewed certificate is served", Duration::from_secs(60), || async {
        presented(port).await.is_some_and(|c| c != first)
    })
    .await;
    let (code, head, rest) = curl(&root, &url, &["--resolve", &resolve]);
    assert_eq!(code, 0, "{head}{rest}");
    assert!(head.starts_with("HTTP/2 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    agent.stop().await;
}
