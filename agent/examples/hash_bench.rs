//! SHA-256 throughput the way the agent verifies its store, for `bench/run.sh`.
//!
//! ```text
//! cargo run --release -p odi --example hash_bench -- [MODE] FILE [JOBS]
//! ```
//! MODE is one of `memory`, `sync`, `store`, `parallel` or `all` (the default); `run.sh` runs
//! one mode per process so that the shell's `time` gives each its own CPU time.
//! Prints one line per figure, `NAME BYTES SECONDS`:
//! - `memory`: `sha2` over a buffer already in memory (the pure compute ceiling);
//! - `sync`: 256 KiB `std::fs` reads into `sha2` on one thread;
//! - `store`: `odi_agent::store::hash_file` (tokio reads of 256 KiB, as scrub does), one file;
//! - `parallel`: JOBS (default: the core count) `hash_file` tasks at once on the agent's
//!   multi-threaded runtime, all hashing FILE, so every core is busy.
//!
//! Also prints `cpu sha_ni yes|no` from the same runtime detection `sha2` uses.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Instant;

use sha2::Digest as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    const MODES: [&str; 5] = ["memory", "sync", "store", "parallel", "all"];
    let mode = if args.first().is_some_and(|a| MODES.contains(&a.as_str())) {
        args.remove(0)
    } else {
        "all".to_owned()
    };
    let want = |m: &str| mode == "all" || mode == m;
    let file = PathBuf::from(
        args.first().ok_or("usage: hash_bench [memory|sync|store|parallel|all] FILE [JOBS]")?,
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs: usize = args.get(1).map_or(Ok(cores), |s| s.parse())?;
    let len = std::fs::metadata(&file)?.len();

    #[cfg(target_arch = "x86_64")]
    println!(
        "cpu sha_ni {}",
        if std::arch::is_x86_feature_detected!("sha") { "yes" } else { "no" }
    );

    if want("memory") {
        memory();
    }
    if want("sync") {
        let t = Instant::now();
        let d = sync_hash(&file)?;
        println!("sync {len} {:.6} {}", t.elapsed().as_secs_f64(), hex::encode(d));
    }
    if !want("store") && !want("parallel") {
        return Ok(());
    }
    // The agent's own function, on a runtime like the agent's.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let mut first = None;
        if want("store") {
            let t = Instant::now();
            let d = odi_agent::store::hash_file(&file).await?;
            println!("store {len} {:.6} {}", t.elapsed().as_secs_f64(), hex::encode(d));
            first = Some(d);
        }
        if want("parallel") {
            let t = Instant::now();
            let tasks: Vec<_> = (0..jobs)
                .map(|_| {
                    let f = file.clone();
                    tokio::spawn(async move { odi_agent::store::hash_file(&f).await })
                })
                .collect();
            for task in tasks {
                let d = task.await.map_err(std::io::Error::other)??;
                assert!(first.is_none_or(|f| f == d), "hash_file disagrees with itself");
                first = Some(d);
            }
            println!("parallel {} {:.6} jobs={jobs}", len * jobs as u64, t.elapsed().as_secs_f64());
        }
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}

/// Pure compute: 256 MiB in memory.
fn memory() {
    let buf = vec![0x5au8; 256 << 20];
    let t = Instant::now();
    let d = sha2::Sha256::digest(&buf);
    println!("memory {} {:.6}", buf.len(), t.elapsed().as_secs_f64());
    std::hint::black_box(d);
}

/// Synchronous reads, the same chunk size as the store.
fn sync_hash(file: &std::path::Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(file)?;
    let mut h = sha2::Sha256::new();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&chunk[..n]);
    }
}
