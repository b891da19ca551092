//! s3fs (Debian's `s3fs` package, 1.90 on Debian 12; scripts/test.sh
//! installs it) mounted in the foreground over a bucket of the test S3
//! server, for interoperability tests.

use super::{is_mounted, spawn_tied_to_test_process, wait_for_within};
use objectfs::store::s3::S3Config;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct S3fsMount {
    child: Option<Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl S3fsMount {
    /// Mounts `config`'s bucket (`prefix`, without slashes at either end,
    /// or "" for the whole bucket) at `base/mnt` with s3fs in the
    /// foreground, and waits until the mount answers.
    pub fn start(base: &Path, config: &S3Config, prefix: &str) -> S3fsMount {
        let dir = base.join("mnt");
        let log = base.join("s3fs.log");
        std::fs::create_dir_all(&dir).unwrap();
        // s3fs refuses a password file others can read.
        let passwd = base.join("passwd-s3fs");
        std::fs::write(
            &passwd,
            format!(
                "{}:{}\n",
                config.access_key_id.as_deref().unwrap(),
                config.access_key_secret.as_deref().unwrap()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
        let source = if prefix.is_empty() {
            config.bucket.clone()
        } else {
            format!("{}:/{prefix}", config.bucket)
        };
        let options = [
            format!("url={}", config.endpoint.as_deref().unwrap()),
            "use_path_request_style".to_string(),
            format!("passwd_file={}", passwd.display()),
            format!(
                "endpoint={}",
                config.region.as_deref().unwrap_or("us-east-1")
            ),
            "dbglevel=info".to_string(),
            // A failed request should fail the test, not hang it.
            "retries=2".to_string(),
            "connect_timeout=10".to_string(),
            "readwrite_timeout=30".to_string(),
        ];
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("s3fs");
        cmd.arg(&source)
            .arg(&dir)
            .arg("-f")
            .arg("-o")
            .arg(options.join(","))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWSACCESSKEYID")
            .env_remove("AWSSECRETACCESSKEY")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut child = spawn_tied_to_test_process(cmd);
        wait_for_within("the s3fs mount", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "s3fs exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            is_mounted(&dir) && std::fs::metadata(&dir).is_ok()
        });
        S3fsMount {
            child: Some(child),
            dir,
            log,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `fusermount -u`, retried while the mount is busy, then waits for
    /// s3fs to exit (it has uploaded every file at close already) and checks
    /// it exited cleanly.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("mounted");
        let mut last = String::new();
        wait_for_within("fusermount -u of s3fs", Duration::from_secs(20), || {
            let out = Command::new("fusermount")
                .arg("-u")
                .arg(&self.dir)
                .output()
                .unwrap();
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        });
        let mut status = None;
        wait_for_within(
            "s3fs to exit after unmount",
            Duration::from_secs(30),
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
        );
        let status = status.unwrap();
        assert!(
            status.success(),
            "s3fs exited with {status} (last fusermount: {last}):\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        assert!(!is_mounted(&self.dir));
    }
}

impl Drop for S3fsMount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("fusermount")
                .args(["-u", "-z"])
                .arg(&self.dir)
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
