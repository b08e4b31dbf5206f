//! Routing by a real MaxMind database: GeoLite2 City (MaxMind's 2018 release as PyPI packages
//! it) and small ASN databases written with mmdb-writer, both fetched by
//! ci/install-test-deps.sh. Clients from several countries (X-Forwarded-For through the
//! trusted loopback proxy) get the relay of the expected tier; steering, relay restrictions,
//! the mirror list, and an ASN database replaced on disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use odi_network::raw::RelayLocation;

use crate::support::{self, CATALOG};
use crate::testnet::{client, eventually, get_json, TestNet};

const WAIT: Duration = Duration::from_secs(40);

fn geo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-data/geo")
}

/// Writes an ASN database mapping 10.1.0.0/16 to `asn` with mmdb-writer.
fn write_asn_db(path: &Path, asn: u32) {
    let script = format!(
        "from mmdb_writer import MMDBWriter, MmdbU32\nfrom netaddr import IPSet\n\
         w = MMDBWriter(ip_version=6, database_type='GeoLite2-ASN', ipv4_compatible=True)\n\
         w.insert_network(IPSet(['10.1.0.0/16']), {{'autonomous_system_number': MmdbU32({asn}), 'autonomous_system_organization': 'ODI test'}})\n\
         w.to_db_file('{}.tmp')\n",
        path.display()
    );
    let out = Command::new("python3")
        .env("PYTHONPATH", geo_dir().join("py"))
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(out.status.success(), "mmdb-writer: {}", String::from_utf8_lossy(&out.stderr));
    // Replaced whole, as a database update would be.
    std::fs::rename(format!("{}.tmp", path.display()), path).unwrap();
}

fn place(country: &str, continent: &str, lat: f64, lon: f64, asn: Option<u32>) -> RelayLocation {
    RelayLocation {
        country: Some(country.into()),
        continent: Some(continent.into()),
        latitude: Some(lat),
        longitude: Some(lon),
        asn,
    }
}

/// The relay a client at `ip` is redirected to (with `query` appended).
async fn target(net: &TestNet, ip: &str, query: &str) -> String {
    let r = client()
        .get(format!("{}/r/{CATALOG}/hello.txt{query}", net.url("dir-a")))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{ip}{query}");
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    ["relay-1", "relay-2", "relay-3"]
        .into_iter()
        .find(|n| loc.starts_with(&format!("{}/", net.url(n))))
        .map(str::to_owned)
        .unwrap_or(loc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_relays_by_asn_country_continent_then_distance_from_a_real_geolite2() {
    let city = geo_dir().join("GeoLite2-City.mmdb");
    assert!(
        city.is_file() && geo_dir().join("py/mmdb_writer").is_dir(),
        "{} or mmdb-writer missing: run ci/install-test-deps.sh",
        city.display()
    );
    let mut b = support::small_network();
    b.catalogs.get_mut(CATALOG).unwrap().replicas = 3;
    let places = [
        ("relay-1", place("SE", "EU", 59.33, 18.05, None)),
        ("relay-2", place("US", "NA", 41.88, -87.63, Some(64500))),
        ("relay-3", place("AU", "OC", -33.87, 151.21, Some(64501))),
    ];
    for (name, p) in places {
        let r = b.relays.get_mut(name).unwrap();
        r.location = Some(p);
        r.serial += 1;
    }
    // Every relay works with dir-a; relay-1 does not serve Germany.
    b.relays.get_mut("relay-2").unwrap().directories = vec!["dir-a".into(), "dir-b".into()];
    b.relays.get_mut("relay-1").unwrap().exclude_countries = vec!["DE".into()];
    let mut net = TestNet::new(b, support::artifact_bytes()).await;
    let asn = net.tmp.path().join("asn.mmdb");
    write_asn_db(&asn, 64500);
    net.extra_config.insert(
        "dir-a".into(),
        format!("geoip_db = \"{}\"\nasn_db = \"{}\"\n", city.display(), asn.display()),
    );
    let dir = net.start("dir-a").await;
    let relays =
        [net.start("relay-1").await, net.start("relay-2").await, net.start("relay-3").await];
    let base = net.url("dir-a");
    eventually("three relays routable", WAIT, || async {
        let d: serde_json::Value = client()
            .get(format!("{base}/.odi/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let healthy = d["directory"]["relays"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|r| r["healthy"] == true).count() == 3);
        healthy
            && d["directory"]["routing"]["current"] == true
            && d["directory"]["routing"]["routable"] == d["directory"]["routing"]["artifacts"]
    })
    .await;

    // (client address, query, relay, why)
    let cases = [
        ("89.160.20.128", "", "relay-1", "Sweden: same country"),
        ("91.198.174.192", "", "relay-1", "the Netherlands: same continent"),
        (
            "78.46.0.1",
            "",
            "relay-2",
            "Germany: relay-1 refuses it, Chicago is nearer than Melbourne",
        ),
        ("8.8.8.8", "", "relay-2", "the United States: same country"),
        ("200.160.0.8", "", "relay-2", "Brazil: Chicago is the nearest"),
        (
            "202.12.27.33",
            "",
            "relay-3",
            "Japan: Sydney (7,800 km) is nearer than Stockholm (8,200 km)",
        ),
        ("10.1.2.3", "", "relay-2", "a private address of AS64500: same network"),
        ("89.160.20.128", "?country=AU", "relay-3", "steered to Australia"),
        ("89.160.20.128", "?avoid=SE", "relay-2", "Sweden avoided: Chicago next"),
    ];
    for (ip, query, want, why) in cases {
        for _ in 0..5 {
            assert_eq!(target(&net, ip, query).await, want, "{why}");
        }
    }

    // The mirror list says the same, with tiers, distances and reasons.
    let list = get_json(
        client()
            .get(format!("{base}/r/{CATALOG}/hello.txt?mirrorlist"))
            .header("x-forwarded-for", "78.46.0.1"),
    )
    .await;
    let relays_listed = list["relays"].as_array().unwrap();
    assert_eq!(relays_listed[0]["relay"], "relay-2", "{list}");
    assert_eq!(relays_listed[0]["tier"], "by-distance", "{list}");
    assert!(
        relays_listed[0]["distance_km"].as_u64().is_some_and(|d| (6500..7500).contains(&d)),
        "{list}"
    );
    let r1 = relays_listed.iter().find(|r| r["relay"] == "relay-1").unwrap();
    assert_eq!(r1["excluded"], "does not serve clients from DE", "{list}");
    assert_eq!(r1["rank"], serde_json::Value::Null);

    // A new ASN database on disk: the next probe round loads it, and AS64501 is relay-3's.
    write_asn_db(&asn, 64501);
    eventually("the new ASN database in use", WAIT, || async {
        target(&net, "10.1.2.3", "").await == "relay-3"
    })
    .await;
    // A broken file keeps the last good database.
    std::fs::write(&asn, b"not a database").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(target(&net, "10.1.2.3", "").await, "relay-3");
    let s = crate::testnet::status(&base).await.unwrap();
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("asn.mmdb")), "{:?}", s.last_error);

    for r in relays {
        r.stop().await;
    }
    dir.stop().await;
}
