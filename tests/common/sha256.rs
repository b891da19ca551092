//! SHA-256 of large streams without a hashing crate: python3's hashlib (on
//! every test machine: scripts/test.sh needs it for moto) in a child
//! process. It runs at OpenSSL speed, about twice coreutils' sha256sum,
//! which matters at a GiB.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

const HASHER: &str = "import hashlib, sys\n\
h = hashlib.sha256()\n\
for chunk in iter(lambda: sys.stdin.buffer.read(1 << 20), b''):\n    h.update(chunk)\n\
print(h.hexdigest())";

fn hasher(stdin: Stdio) -> Child {
    Command::new("python3")
        .args(["-c", HASHER])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting python3 to hash")
}

fn hex_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the python3 hasher failed");
    let hex = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(hex.len(), 64, "not a SHA-256: {hex:?}");
    hex
}

/// Bytes written to it are hashed in a child process, concurrently.
pub struct Sha256Pipe {
    child: Child,
    stdin: ChildStdin,
}

impl Sha256Pipe {
    pub fn new() -> Sha256Pipe {
        let mut child = hasher(Stdio::piped());
        let stdin = child.stdin.take().unwrap();
        Sha256Pipe { child, stdin }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.stdin.write_all(data).unwrap();
    }

    /// The SHA-256 of everything written, lower-case hex.
    pub fn finish(self) -> String {
        drop(self.stdin);
        hex_of(self.child)
    }
}

/// The SHA-256 of a file's content (read by the child itself, in 1 MiB
/// reads), lower-case hex.
pub fn sha256_of_file(path: &Path) -> String {
    let file = std::fs::File::open(path).unwrap();
    hex_of(hasher(Stdio::from(file)))
}
