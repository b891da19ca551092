//! What a test needs from the machine (root, /dev/fuse, an S3 server, s3fs,
//! Prometheus, a running dockerd) and what happens when something is missing: the test
//! prints one line `TEST: skipped: needs …` to stderr and returns, so a plain
//! `cargo test` as a normal user runs everything else. Under
//! `OSV_TEST_REQUIRE_ALL=1` (scripts/test.sh exports it) a missing
//! requirement fails the test instead, so the test command never skips
//! silently. Tests start with `require!(Root, Moto);` (the macro is below).

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

/// The variable that turns a missing requirement into a failure.
pub const REQUIRE_ALL: &str = "OSV_TEST_REQUIRE_ALL";

/// One thing a test needs.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// Root: bind and FUSE mounts, sockets in /run/docker/plugins.
    Root,
    /// /dev/fuse and fusermount3.
    Fuse,
    /// moto_server (`$OSV_MOTO_SERVER`, else on PATH).
    Moto,
    /// s3s-fs (`$OSV_FAST_S3_SERVER`, else on PATH).
    FastS3,
    /// s3fs on PATH.
    S3fs,
    /// A dockerd that answers `docker info`.
    Dockerd,
    /// prometheus and promtool on PATH (Debian's `prometheus`).
    Prometheus,
}

impl Need {
    /// Why the test cannot run here, or None when the need is met.
    fn unmet(self) -> Option<String> {
        match self {
            // SAFETY: geteuid cannot fail and touches no memory.
            Need::Root => (unsafe { libc::geteuid() } != 0)
                .then(|| "needs root (bind and FUSE mounts, /run/docker/plugins)".to_string()),
            Need::Fuse => (!Path::new("/dev/fuse").exists() || !on_path("fusermount3"))
                .then(|| "needs FUSE (/dev/fuse and fusermount3)".to_string()),
            Need::Moto => {
                let binary = super::s3server::moto_binary();
                (!runnable(&binary)).then(|| {
                    format!(
                        "needs moto_server (set OSV_MOTO_SERVER; {} not found)",
                        binary.display()
                    )
                })
            }
            Need::FastS3 => {
                let binary = super::fast_s3::fast_s3_binary();
                (!runnable(&binary)).then(|| {
                    format!(
                        "needs s3s-fs (set OSV_FAST_S3_SERVER; {} not found)",
                        binary.display()
                    )
                })
            }
            Need::S3fs => (!on_path("s3fs")).then(|| "needs s3fs on PATH".to_string()),
            Need::Prometheus => (!on_path("prometheus") || !on_path("promtool"))
                .then(|| "needs prometheus and promtool on PATH (Debian's prometheus)".to_string()),
            Need::Dockerd => (!dockerd_answers())
                .then(|| "needs a running dockerd (`docker info` failed)".to_string()),
        }
    }
}

/// Whether the test named `test` must skip for want of `needs`: prints the
/// one-line reason and returns true, or panics under
/// `OSV_TEST_REQUIRE_ALL=1`. Use it through [`require!`].
pub fn must_skip(test: &str, needs: &[Need]) -> bool {
    let Some(reason) = needs.iter().find_map(|need| need.unmet()) else {
        return false;
    };
    let required = std::env::var_os(REQUIRE_ALL).is_some_and(|v| v == "1");
    assert!(!required, "{test}: {reason} ({REQUIRE_ALL}=1 is set)");
    note_skip(test, &reason);
    true
}

/// Prints `TEST: skipped: REASON` straight to stderr: the test harness
/// captures `eprintln!` of passing tests, not writes to the stream itself.
pub fn note_skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {reason}");
}

/// The running test's name (the harness names each test's thread after it).
pub fn test_name(fallback: &str) -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or(fallback)
        .to_string()
}

/// `require!(Root, Moto);` at the top of a test: returns from the test
/// with a one-line note when a need is unmet (see [`must_skip`]).
macro_rules! require {
    ($($need:ident),+ $(,)?) => {
        if $crate::common::requirements::must_skip(
            &$crate::common::requirements::test_name(module_path!()),
            &[$($crate::common::requirements::Need::$need),+],
        ) {
            return;
        }
    };
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// A binary given as a path that exists, or as a bare name found on PATH.
fn runnable(binary: &Path) -> bool {
    if binary.components().count() == 1 {
        on_path(&binary.to_string_lossy())
    } else {
        binary.is_file()
    }
}

/// `docker info` succeeds (asked once per test binary).
fn dockerd_answers() -> bool {
    static ANSWERS: OnceLock<bool> = OnceLock::new();
    *ANSWERS.get_or_init(|| {
        std::process::Command::new("docker")
            .arg("info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}
