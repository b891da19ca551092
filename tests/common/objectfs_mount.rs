//! `opensandbox-volume mount` as a child process over a bucket of the test
//! S3 server, and an independent client to check what reached the bucket.

use super::{BIN, is_mounted, spawn_tied_to_test_process, wait_for_within};
use objectfs::store::ObjectStore;
use objectfs::store::s3::{S3Config, S3Store};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub struct Mounted {
    child: Option<Child>,
    pub dir: PathBuf,
    pub cache: PathBuf,
    pub log: PathBuf,
    pub config: S3Config,
    pub prefix: String,
    extra: Vec<String>,
}

impl Mounted {
    /// Mounts `config`'s bucket under a fresh directory in `base`.
    pub fn start(base: &Path, config: &S3Config, prefix: &str, extra: &[&str]) -> Mounted {
        let mut m = Mounted {
            child: None,
            dir: base.join("mnt"),
            cache: base.join("cache"),
            log: base.join("mount.log"),
            config: config.clone(),
            prefix: prefix.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        std::fs::create_dir_all(&m.dir).unwrap();
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        // A mount killed just before still answers from the kernel's
        // attribute cache for a moment: wait for this process's own
        // "mounted" line as well.
        let mounted_before = self.mounted_lines();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("mount")
            .arg(&self.dir)
            .arg("--bucket")
            .arg(&self.config.bucket)
            .arg("--endpoint")
            .arg(self.config.endpoint.as_deref().unwrap())
            .arg("--prefix")
            .arg(&self.prefix)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--log-level")
            .arg("info")
            .args(&self.extra)
            .env("OSV_ACCESS_KEY_ID", "test")
            .env("OSV_ACCESS_KEY_SECRET", "test")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(spawn_tied_to_test_process(cmd));
        let dir = self.dir.clone();
        let log = self.log.clone();
        let child = self.child.as_mut().unwrap();
        wait_for_within("the FUSE mount", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mount exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // A dead mount is still listed but answers ENOTCONN: wait for
            // the live one.
            is_mounted(&dir) && std::fs::metadata(&dir).is_ok()
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.mounted_lines() <= mounted_before {
            assert!(
                std::time::Instant::now() < deadline,
                "the mount did not come up:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many times the log says a mount came up.
    fn mounted_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("objectfs::mount: mounted "))
            .count()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// SIGTERM, as an operator or the plugin would: unmount and upload.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("mounted");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "mount exited with {status}:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        assert!(!is_mounted(&self.dir));
    }

    /// SIGTERM, and the exit status whatever it is, and how long the
    /// process took to exit.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("mounted");
        let start = std::time::Instant::now();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        (status, start.elapsed())
    }

    /// The mount's status file, as JSON (`Null` before the first one).
    pub fn status(&self) -> serde_json::Value {
        std::fs::read(self.cache.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The mount's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the mount dies with whatever it had staged.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("mounted");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Mounts again with the same cache directory.
    pub fn restart(&mut self) {
        self.spawn();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = opensandbox_volume::mounts::unmount(&self.dir);
    }
}

/// An S3 client independent of any mount, for checking the bucket.
pub struct Bucket {
    store: Arc<S3Store>,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    pub fn new(config: &S3Config) -> Bucket {
        Bucket {
            store: Arc::new(S3Store::new(config).unwrap()),
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// Every key under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .rt
                .block_on(self.store.list(prefix, None, token, 1000))
                .unwrap();
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next_token {
                Some(t) => token = Some(t),
                None => return keys,
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let meta = self.rt.block_on(self.store.head(key)).unwrap()?;
        let data = self
            .rt
            .block_on(self.store.get_range(key, 0, meta.size.max(1)))
            .unwrap();
        Some(data.to_vec())
    }

    pub fn metadata(&self, key: &str) -> std::collections::BTreeMap<String, String> {
        self.rt
            .block_on(self.store.head(key))
            .unwrap()
            .expect("object exists")
            .metadata
    }

    /// HEAD: size, content type and user metadata; `None` if absent.
    pub fn head(&self, key: &str) -> Option<objectfs::store::ObjectMeta> {
        self.rt.block_on(self.store.head(key)).unwrap()
    }

    /// The object's size and the SHA-256 of its bytes (lower-case hex),
    /// read with 64 MiB ranged GETs so a large object never sits in memory
    /// whole. Panics if it does not exist.
    pub fn size_and_sha256(&self, key: &str) -> (u64, String) {
        const CHUNK: u64 = 64 << 20;
        let size = self.head(key).expect("object exists").size;
        let mut hash = super::sha256::Sha256Pipe::new();
        // The next chunk downloads while the last one is hashed.
        let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(1);
        std::thread::scope(|s| {
            let hashing = s.spawn(move || {
                for data in rx {
                    hash.write(&data);
                }
                hash.finish()
            });
            let mut read = 0;
            while read < size {
                let len = CHUNK.min(size - read);
                let data = self
                    .rt
                    .block_on(self.store.get_range(key, read, len))
                    .unwrap();
                assert_eq!(data.len() as u64, len, "GET {key} bytes {read}+{len}");
                tx.send(data).unwrap();
                read += len;
            }
            drop(tx);
            (size, hashing.join().unwrap())
        })
    }

    /// Rewrites `key`'s metadata in place (a copy onto itself with new
    /// metadata, as s3fs's chmod does): same content and ETag, new date.
    pub fn set_metadata(&self, key: &str, meta: &objectfs::store::PutMeta) {
        self.rt
            .block_on(self.store.copy(key, None, key, Some(meta)))
            .unwrap();
    }

    pub fn put(&self, key: &str, data: &[u8]) {
        self.rt
            .block_on(
                self.store
                    .put(key, data.to_vec().into(), &Default::default()),
            )
            .unwrap();
    }
}
