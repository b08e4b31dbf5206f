//! Validate and plan a generated network of 100,000 artifacts (100 release files) and 1,000
//! relays. Generating and signing happen once, outside the timed part; what is timed is what
//! `odi validate` and `odi plan` do with an in-memory tree: verify + load, assign, plan.
//!
//! `cargo bench -p odi-network --bench network`. For one wall-clock figure including the git
//! read, see `examples/scale.rs`.

use criterion::{criterion_group, criterion_main, Criterion};
use odi_network::assign::{assign, Extras};
use odi_network::{load, plan, TrustAnchor, TrustState};

#[path = "../examples/scale.rs"]
mod scale;

const ARTIFACTS: usize = 100_000;
const RELAYS: usize = 1_000;

fn network(c: &mut Criterion) {
    let tree = scale::generate(ARTIFACTS, RELAYS).tree().expect("signed tree");
    let (anchor, state) = (TrustAnchor::default(), TrustState::default());
    let now = time::OffsetDateTime::now_utc();
    let net = load(&tree, &anchor, &state, now).expect("valid network").network;
    let table = assign(&net, &Extras::new());
    let relay = scale::relay_name(7);

    let mut g = c.benchmark_group("network_100k_artifacts_1k_relays");
    g.sample_size(10);
    g.bench_function("load", |b| b.iter(|| load(&tree, &anchor, &state, now).expect("valid")));
    g.bench_function("assign", |b| b.iter(|| assign(&net, &Extras::new())));
    g.bench_function("plan_one_relay", |b| {
        b.iter(|| plan::plan(&net, &table, &relay).expect("relay"))
    });
    g.bench_function("load_assign_plan", |b| {
        b.iter(|| {
            let net = load(&tree, &anchor, &state, now).expect("valid").network;
            let table = assign(&net, &Extras::new());
            plan::plan(&net, &table, &relay).expect("relay").holds.len()
        })
    });
    g.finish();
}

criterion_group!(benches, network);
criterion_main!(benches);
