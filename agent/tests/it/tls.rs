//! An agent serving HTTPS with rustls, and picking up a renewed certificate without a restart.

use std::time::Duration;

use crate::testnet::{eventually, TestNet};

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
