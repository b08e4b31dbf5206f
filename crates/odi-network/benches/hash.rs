//! SHA-256 throughput of the `sha2` crate as the agents use it: `update` with 64 KiB chunks
//! (the fetcher's `file://` reads), 256 KiB chunks (the store's `hash_file`) and 1 MiB chunks,
//! from a buffer in cache. With SHA-NI (detected at run time) expect the same as
//! `openssl speed -elapsed -evp sha256`; `bench/run.sh` compares whole-file hashing with
//! `openssl dgst -sha256` on the same file.
//!
//! `cargo bench -p odi-network --bench hash`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};

const TOTAL: usize = 16 << 20;

fn hash(c: &mut Criterion) {
    let data = vec![0x5au8; TOTAL];
    let mut g = c.benchmark_group("sha256_16MiB");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(20);
    for chunk in [64 << 10, 256 << 10, 1 << 20] {
        g.bench_function(format!("chunks_of_{}KiB", chunk >> 10), |b| {
            b.iter(|| {
                let mut h = Sha256::new();
                for c in data.chunks(chunk) {
                    h.update(c);
                }
                h.finalize()
            })
        });
    }
    g.bench_function("one_shot", |b| b.iter(|| Sha256::digest(&data)));
    g.finish();
}

criterion_group!(benches, hash);
criterion_main!(benches);
