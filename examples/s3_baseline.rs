//! Raw S3 baseline for `bench/objectfs.sh`: what the store itself gives a
//! well-behaved parallel client, measured with the crate's own `S3Store`
//! (same SDK, same HTTP stack as the mount), so the mount's figures can be
//! read as a fraction of it.
//!
//! ```text
//! OSV_ACCESS_KEY_ID=… OSV_ACCESS_KEY_SECRET=… \
//! cargo run --release --example s3_baseline -- \
//!     --endpoint http://127.0.0.1:3900 --bucket B MODE [options]
//!
//! MODE
//!   seq-write  multipart upload of --size bytes (random data generated
//!              before the clock starts), --part-size parts, --jobs in flight
//!   seq-read   ranged GETs of --part-size over the whole object, --jobs in flight
//!   small      --count PutObjects of --size bytes (default 4096) under
//!              --prefix, --jobs in flight (default 32)
//!   head       prints the object's size, or `missing`
//!   count      counts the objects under --prefix (paginated ListObjectsV2)
//!   stat       lists --prefix (with delimiter) and HEADs every object,
//!              --jobs in flight (default 32): what `ls -l` costs over S3
//!   fetch      lists --prefix (with delimiter) and GETs every object whole
//!              (metadata with it), --jobs in flight (default 32): what a
//!              first read of each file costs over S3
//! ```
//!
//! Each mode prints one machine-readable line on stdout, e.g.
//! `RESULT mode=seq-read bytes=1073741824 ops=128 seconds=1.234 mib_per_s=829.9 ops_per_s=103.7`
//! (`head`: `RESULT mode=head key=K size=N` or `size=missing`;
//! `count`, `stat` and `fetch`: `RESULT mode=M prefix=P objects=N seconds=S ops_per_s=R`).

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use objectfs::store::s3::{S3Config, S3Store};
use objectfs::store::{ObjectStore, PutMeta};
use std::sync::Arc;
use std::time::Instant;

const MIB: u64 = 1024 * 1024;

#[derive(Debug)]
struct Opts {
    mode: String,
    endpoint: String,
    bucket: String,
    region: Option<String>,
    key: String,
    prefix: String,
    size: Option<u64>,
    part_size: u64,
    jobs: Option<usize>,
    count: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: s3_baseline --endpoint URL --bucket B [--region R] \
         (seq-write|seq-read|small|head|count|stat|fetch) [--key K] [--prefix P] [--size BYTES] \
         [--part-size BYTES] [--jobs N] [--count N]\n\
         credentials: OSV_ACCESS_KEY_ID / OSV_ACCESS_KEY_SECRET"
    );
    std::process::exit(2)
}

/// `1073741824`, `1024M`, `1G`, `4K` (binary units).
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1024),
        Some('m' | 'M') => (&s[..s.len() - 1], MIB),
        Some('g' | 'G') => (&s[..s.len() - 1], 1024 * MIB),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size"))?;
    Ok(n * mult)
}

fn parse_args() -> anyhow::Result<Opts> {
    let mut o = Opts {
        mode: String::new(),
        endpoint: String::new(),
        bucket: String::new(),
        region: None,
        key: "big".into(),
        prefix: String::new(),
        size: None,
        part_size: 8 * MIB,
        jobs: None,
        count: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--endpoint" => o.endpoint = val(),
            "--bucket" => o.bucket = val(),
            "--region" => o.region = Some(val()),
            "--key" => o.key = val(),
            "--prefix" => o.prefix = val(),
            "--size" => o.size = Some(parse_size(&val())?),
            "--part-size" => o.part_size = parse_size(&val())?,
            "--jobs" => o.jobs = Some(val().parse()?),
            "--count" => o.count = val().parse()?,
            "-h" | "--help" => usage(),
            m if !m.starts_with('-') && o.mode.is_empty() => o.mode = m.to_string(),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.mode.is_empty() || o.endpoint.is_empty() || o.bucket.is_empty() {
        usage();
    }
    if o.part_size < objectfs::store::MIN_PART_SIZE {
        bail!("--part-size must be at least 5 MiB");
    }
    Ok(o)
}

/// Cheap non-repeating bytes (xorshift64*), so content-addressed stores
/// such as Garage cannot deduplicate the parts.
fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

fn report(mode: &str, bytes: u64, ops: u64, secs: f64) {
    let secs = secs.max(1e-9);
    println!(
        "RESULT mode={mode} bytes={bytes} ops={ops} seconds={secs:.3} mib_per_s={:.1} ops_per_s={:.1}",
        bytes as f64 / MIB as f64 / secs,
        ops as f64 / secs
    );
}

async fn seq_write(store: Arc<S3Store>, o: &Opts) -> anyhow::Result<()> {
    let size = o.size.unwrap_or(1024 * MIB);
    let jobs = o.jobs.unwrap_or(8);
    let nparts = size.div_ceil(o.part_size).max(1);
    // Data is generated before the clock starts: this measures the store.
    let parts: Vec<(i32, Bytes)> = (0..nparts)
        .map(|i| {
            let len = o.part_size.min(size - i * o.part_size) as usize;
            ((i + 1) as i32, random_bytes(len, i + 1))
        })
        .collect();
    let start = Instant::now();
    let upload_id = store.create_multipart(&o.key, &PutMeta::default()).await?;
    let key = o.key.clone();
    let result: anyhow::Result<Vec<(i32, String)>> = stream::iter(parts)
        .map(|(n, body)| {
            let store = store.clone();
            let key = key.clone();
            let id = upload_id.clone();
            async move {
                let etag = tokio::spawn(async move { store.upload_part(&key, &id, n, body).await })
                    .await??;
                anyhow::Ok((n, etag))
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await;
    let mut etags = match result {
        Ok(e) => e,
        Err(e) => {
            let _ = store.abort_multipart(&o.key, &upload_id).await;
            return Err(e);
        }
    };
    etags.sort_by_key(|(n, _)| *n);
    store.complete_multipart(&o.key, &upload_id, etags).await?;
    report("seq-write", size, nparts, start.elapsed().as_secs_f64());
    Ok(())
}

async fn seq_read(store: Arc<S3Store>, o: &Opts) -> anyhow::Result<()> {
    let jobs = o.jobs.unwrap_or(8);
    let start = Instant::now();
    let size = match o.size {
        Some(s) => s,
        None => {
            store
                .head(&o.key)
                .await?
                .with_context(|| format!("{} does not exist", o.key))?
                .size
        }
    };
    let nparts = size.div_ceil(o.part_size);
    let part = o.part_size;
    let got: u64 = stream::iter(0..nparts)
        .map(|i| {
            let store = store.clone();
            let key = o.key.clone();
            async move {
                let off = i * part;
                let len = part.min(size - off);
                let b =
                    tokio::spawn(async move { store.get_range(&key, off, len).await }).await??;
                if b.len() as u64 != len {
                    bail!("short read at {off}: {} of {len} bytes", b.len());
                }
                anyhow::Ok(b.len() as u64)
            }
        })
        .buffer_unordered(jobs)
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await?;
    report("seq-read", got, nparts, start.elapsed().as_secs_f64());
    Ok(())
}

async fn small(store: Arc<S3Store>, o: &Opts) -> anyhow::Result<()> {
    let jobs = o.jobs.unwrap_or(32);
    let size = o.size.unwrap_or(4096) as usize;
    let bodies: Vec<(String, Bytes)> = (0..o.count)
        .map(|i| (format!("{}f{i:05}", o.prefix), random_bytes(size, i + 7)))
        .collect();
    let start = Instant::now();
    stream::iter(bodies)
        .map(|(key, body)| {
            let store = store.clone();
            async move {
                tokio::spawn(async move { store.put(&key, body, &PutMeta::default()).await })
                    .await??;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(jobs)
        .try_collect::<Vec<()>>()
        .await?;
    report(
        "small",
        o.count * size as u64,
        o.count,
        start.elapsed().as_secs_f64(),
    );
    Ok(())
}

async fn count(store: Arc<S3Store>, o: &Opts) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut token = None;
    let mut n = 0u64;
    // Bounded: 100,000 pages of 1,000 keys.
    for _ in 0..100_000 {
        let page = store.list(&o.prefix, None, token, 1000).await?;
        n += page.objects.len() as u64;
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT mode=count prefix={} objects={n} seconds={secs:.3} ops_per_s={:.1}",
        o.prefix,
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// `stat` (`whole`: false): what `ls -l` needs from S3 when metadata lives
/// in headers, one listing of --prefix, then a HEAD of every key; `fetch`
/// (true): the listing, then a whole GET of every object. --jobs in flight.
async fn stat(store: Arc<S3Store>, o: &Opts, whole: bool) -> anyhow::Result<()> {
    let jobs = o.jobs.unwrap_or(32);
    let start = Instant::now();
    let mut keys = Vec::new();
    let mut token = None;
    for _ in 0..100_000 {
        let page = store.list(&o.prefix, Some("/"), token, 1000).await?;
        keys.extend(page.objects.into_iter().map(|m| m.key));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let listed = keys.len();
    let found: u64 = stream::iter(keys)
        .map(|k| {
            let store = store.clone();
            async move {
                match whole {
                    true => store.get_whole(&k, u64::MAX).await.map(|m| m.is_some()),
                    false => store.head(&k).await.map(|m| m.is_some()),
                }
                .map(u64::from)
            }
        })
        .buffer_unordered(jobs)
        .try_fold(0, |a, b| async move { Ok(a + b) })
        .await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT mode={} prefix={} objects={found} seconds={secs:.3} ops_per_s={:.1}",
        o.mode,
        o.prefix,
        listed as f64 / secs.max(1e-9)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    let config = S3Config {
        bucket: o.bucket.clone(),
        endpoint: Some(o.endpoint.clone()),
        region: o.region.clone(),
        access_key_id: std::env::var("OSV_ACCESS_KEY_ID").ok(),
        access_key_secret: std::env::var("OSV_ACCESS_KEY_SECRET").ok(),
        session_token: None,
        path_style: Some(true),
        kind: None,
        credential_source: None,
    };
    let store = Arc::new(S3Store::new(&config)?);
    match o.mode.as_str() {
        "seq-write" => seq_write(store, &o).await,
        "seq-read" => seq_read(store, &o).await,
        "small" => small(store, &o).await,
        "head" => {
            match store.head(&o.key).await? {
                Some(m) => println!("RESULT mode=head key={} size={}", o.key, m.size),
                None => println!("RESULT mode=head key={} size=missing", o.key),
            }
            Ok(())
        }
        "count" => count(store, &o).await,
        "stat" => stat(store, &o, false).await,
        "fetch" => stat(store, &o, true).await,
        m => bail!("unknown mode {m:?}"),
    }
}
