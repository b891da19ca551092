//! Path attacks against `type=host` paths, `subPath` (of host and pvc
//! volumes), pvc `claimName` and volume names, run through the real plugin
//! binary over its unix socket with real bind mounts (the tests run as
//! root).
//!
//! Every attack is either refused with one sentence (at Create or at
//! Mount), or accepted and confined: what gets mounted is a directory
//! inside the allow-list (or inside the claimed volume). After every case
//! the mount table is checked: each mount under the plugin's mount root
//! must be, by device and inode, a directory of the allowed tree, its root
//! within the filesystem (mountinfo field 4) must lie under the allowed
//! directory's, and the directory outside the allow-list must be
//! untouched. Symlinks swapped in between Create and Mount, and a thread
//! flipping a path component between a directory and a symlink while
//! Mount runs in a loop (`OSV_RACE_ROUNDS` rounds, default 150), must
//! never get anything outside mounted.

use crate::common;

use common::http::{call, err_of};
use common::{Plugin, unmount_all_under};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A plugin whose allow-list is `base/allowed`, with a directory
/// `base/outside` that nothing may ever mount or change.
struct Env {
    plugin: Plugin,
    base: PathBuf,
    allowed: PathBuf,
    outside: PathBuf,
    /// Directories outside the allow-list that pvc claims legitimately
    /// reach (local Docker volumes).
    claim_roots: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        let allowed = base.join("allowed");
        let outside = base.join("outside");
        for d in ["sub", "leaf", "inner", "s", "s/inner"] {
            fs::create_dir_all(outside.join(d)).unwrap();
        }
        fs::write(outside.join("SECRET"), b"outside the allow-list").unwrap();
        fs::create_dir_all(&allowed).unwrap();
        fs::create_dir_all(base.join("allowed2")).unwrap();
        let plugin = Plugin::start(
            &base.join("osv.sock"),
            &base,
            std::slice::from_ref(&allowed),
        );
        Env {
            plugin,
            base,
            allowed,
            outside,
            claim_roots: Vec::new(),
            _dir: dir,
        }
    }

    fn socket(&self) -> &Path {
        &self.plugin.socket
    }

    fn create(&self, name: &str, opts: &Value) -> Result<(), String> {
        let body = json!({"Name": name, "Opts": opts}).to_string();
        match err_of(&call(self.socket(), "VolumeDriver.Create", &body)).as_str() {
            "" => Ok(()),
            e => Err(e.to_string()),
        }
    }

    fn mount(&self, name: &str, id: &str) -> Result<PathBuf, String> {
        let body = json!({"Name": name, "ID": id}).to_string();
        let r = call(self.socket(), "VolumeDriver.Mount", &body);
        match err_of(&r).as_str() {
            "" => Ok(PathBuf::from(r.body["Mountpoint"].as_str().unwrap())),
            e => Err(e.to_string()),
        }
    }

    fn unmount(&self, name: &str, id: &str) -> Result<(), String> {
        let body = json!({"Name": name, "ID": id}).to_string();
        match err_of(&call(self.socket(), "VolumeDriver.Unmount", &body)).as_str() {
            "" => Ok(()),
            e => Err(e.to_string()),
        }
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        let body = json!({"Name": name}).to_string();
        match err_of(&call(self.socket(), "VolumeDriver.Remove", &body)).as_str() {
            "" => Ok(()),
            e => Err(e.to_string()),
        }
    }

    /// Makes `rel` (a directory under the allow-list) and returns it.
    fn dir(&self, rel: &str) -> PathBuf {
        let p = self.allowed.join(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// The fixture of one volume directory: real directories, a file, and
    /// symlinks to `/`, to outside (absolute and relative), at the end and
    /// in the middle, and one to a directory inside.
    fn populate(&self, rel: &str) -> PathBuf {
        let d = self.dir(rel);
        for sub in ["a", "d", "s/inner"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(d.join("file"), b"x").unwrap();
        symlink("/", d.join("esc-root")).unwrap();
        symlink(&self.outside, d.join("esc-out")).unwrap();
        let up = "../".repeat(rel.split('/').count() + 1);
        symlink(format!("{up}outside"), d.join("esc-rel")).unwrap();
        symlink(&self.outside, d.join("d/esc")).unwrap();
        symlink("a", d.join("in-link")).unwrap();
        d
    }

    /// Every mount under the mount root is a directory of the allowed
    /// tree (or of a claimed volume): same device and inode, and a
    /// mountinfo root under that tree's; never `/`, `/etc`, the outside
    /// directory or the plugin's own directories.
    fn assert_confined(&self, context: &str) {
        let mut permitted = HashSet::new();
        for root in std::iter::once(&self.allowed).chain(&self.claim_roots) {
            dir_ids(root, &mut permitted);
        }
        let mut forbidden = HashSet::new();
        dir_ids(&self.outside, &mut forbidden);
        for p in [
            Path::new("/"),
            Path::new("/etc"),
            &self.base,
            &self.plugin.state_dir,
        ] {
            forbidden.insert(id_of(p));
        }
        let entries = mountinfo();
        let roots: Vec<(String, PathBuf)> = std::iter::once(&self.allowed)
            .chain(&self.claim_roots)
            .map(|p| fs_location(&entries, p))
            .collect();
        for e in &entries {
            if !e.mount_point.starts_with(&self.plugin.mount_root) {
                continue;
            }
            let id = id_of(&e.mount_point);
            assert!(
                !forbidden.contains(&id),
                "{context}: {:?} mounts a forbidden directory",
                e.mount_point
            );
            assert!(
                permitted.contains(&id),
                "{context}: {:?} is not a directory of the allow-list",
                e.mount_point
            );
            assert!(
                roots
                    .iter()
                    .any(|(dev, root)| &e.majmin == dev && e.root.starts_with(root)),
                "{context}: {:?} has root {:?} on {}, outside {roots:?}",
                e.mount_point,
                e.root,
                e.majmin
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.plugin.kill();
        unmount_all_under(&self.base);
    }
}

/// `(device, inode)` of `p`, symlinks followed.
fn id_of(p: &Path) -> (u64, u64) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    (m.dev(), m.ino())
}

/// `(device, inode)` of every directory under `root`, symlinks not
/// followed.
fn dir_ids(root: &Path, out: &mut HashSet<(u64, u64)>) {
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        out.insert((meta.dev(), meta.ino()));
        if let Ok(entries) = fs::read_dir(&dir) {
            todo.extend(entries.flatten().map(|e| e.path()));
        }
    }
}

/// Relative paths of everything under `dir`, with their kind.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            out.push(format!(
                "{:?} {}",
                e.path().strip_prefix(dir).unwrap(),
                if t.is_dir() { "dir" } else { "other" }
            ));
            if t.is_dir() {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// One line of /proc/self/mountinfo: field 3 (device), field 4 (root of
/// the mount within its filesystem), field 5 (mount point).
struct MountEntry {
    majmin: String,
    root: PathBuf,
    mount_point: PathBuf,
}

fn mountinfo() -> Vec<MountEntry> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            Some(MountEntry {
                majmin: f.get(2)?.to_string(),
                root: unescape(f.get(3)?),
                mount_point: unescape(f.get(4)?),
            })
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Where directory `p` is within its filesystem: the device of the mount
/// it is on, and that mount's root joined with the rest of `p`.
fn fs_location(entries: &[MountEntry], p: &Path) -> (String, PathBuf) {
    let e = entries
        .iter()
        .filter(|e| p.starts_with(&e.mount_point))
        .max_by_key(|e| e.mount_point.components().count())
        .unwrap();
    (
        e.majmin.clone(),
        e.root.join(p.strip_prefix(&e.mount_point).unwrap()),
    )
}

/// Why `e` is not one sentence, if it is not.
fn not_a_sentence(e: &str) -> Option<&'static str> {
    if e.is_empty() {
        Some("empty")
    } else if e.chars().any(char::is_control) {
        Some("has control characters")
    } else if e.trim() != e {
        Some("has surrounding whitespace")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// The attack table.

#[derive(Debug)]
enum Expect {
    /// Refused at Create; the sentence contains this.
    AtCreate(&'static str),
    /// Created, refused at Mount; the sentence contains this.
    AtMount(&'static str),
    /// Mounted: exactly this directory (relative to the allowed one).
    Confined(String),
    /// Either refused with a sentence, or mounted inside the allow-list.
    RefusedOrConfined,
}

struct Attack {
    target: &'static str,
    what: String,
    opts: Value,
    expect: Expect,
}

fn attack(target: &'static str, what: impl Into<String>, opts: Value, expect: Expect) -> Attack {
    Attack {
        target,
        what: what.into(),
        opts,
        expect,
    }
}

/// Runs every attack with its own volume; returns the failures. Prints
/// one line per attack (target, attack, outcome) for docs/RELIABILITY.
fn run_table(env: &Env, attacks: &[Attack], prefix: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let outside_before = tree(&env.outside);
    for (i, a) in attacks.iter().enumerate() {
        let name = format!("{prefix}{i}");
        let label = format!("{} / {}", a.target, a.what);
        let outcome = match env.create(&name, &a.opts) {
            Err(e) => format!("refused at Create: {e}"),
            Ok(()) => match env.mount(&name, "id") {
                Err(e) => format!("refused at Mount: {e}"),
                Ok(mp) => {
                    env.assert_confined(&label);
                    let got = id_of(&mp);
                    let shown = match &a.expect {
                        Expect::Confined(rel) => {
                            let want = id_of(&env.allowed.join(rel));
                            if got != want {
                                failures.push(format!("{label}: mounted {got:?}, not {rel:?}"));
                            }
                            format!("accepted, confined to {rel:?}")
                        }
                        _ => "accepted, confined".to_string(),
                    };
                    if mp.parent() != Some(env.plugin.mount_root.as_path()) {
                        failures.push(format!("{label}: mount point {mp:?}"));
                    }
                    if let Err(e) = env.unmount(&name, "id") {
                        failures.push(format!("{label}: unmount: {e}"));
                    }
                    shown
                }
            },
        };
        let _ = env.remove(&name);
        let refusal = outcome
            .strip_prefix("refused at Create: ")
            .map(|e| ("Create", e))
            .or_else(|| {
                outcome
                    .strip_prefix("refused at Mount: ")
                    .map(|e| ("Mount", e))
            });
        if let Some((_, e)) = refusal
            && let Some(why) = not_a_sentence(e)
        {
            failures.push(format!("{label}: the error is {why}: {e:?}"));
        }
        let ok = match (&a.expect, refusal) {
            (Expect::AtCreate(want), Some(("Create", e))) => e.contains(want),
            (Expect::AtMount(want), Some(("Mount", e))) => e.contains(want),
            (Expect::Confined(_), None) => true,
            (Expect::RefusedOrConfined, _) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!("{label}: expected {:?}, got {outcome}", a.expect));
        }
        env.assert_confined(&label);
        if tree(&env.outside) != outside_before {
            failures.push(format!("{label}: the outside directory changed"));
        }
        eprintln!(
            "| {} | {} | {} |",
            a.target,
            a.what,
            outcome.replace('|', "\\|")
        );
    }
    failures
}

const NORMALISED: &str = "must be an absolute, normalised path";
const OUTSIDE: &str = "outside the allowed host paths";
const SUB_PATH: &str = "option `subPath`=";
const SYMLINK: &str = "is a symlink or not a directory";

#[test]
fn host_paths() {
    require!(Root);
    let env = Env::new();
    let p = env.allowed.display().to_string();
    env.populate("vol");
    let a = &env.allowed;
    fs::create_dir_all(a.join("data/inner")).unwrap();
    fs::write(a.join("file"), b"x").unwrap();
    symlink("/", a.join("link-root")).unwrap();
    symlink("/etc", a.join("link-etc")).unwrap();
    symlink(&env.outside, a.join("link-out")).unwrap();
    symlink("../outside", a.join("link-rel-out")).unwrap();
    symlink("../".repeat(40) + "etc", a.join("link-climb")).unwrap();
    symlink("/proc/self/root/etc", a.join("link-magic")).unwrap();
    symlink("link-loop", a.join("link-loop")).unwrap();
    symlink("/osv-no-such-dir", a.join("link-dangling")).unwrap();
    symlink("data", a.join("link-in")).unwrap();
    symlink(a.join("data"), a.join("link-abs-in")).unwrap();
    fs::create_dir_all(a.join("%2e%2e")).unwrap();
    fs::create_dir_all(a.join("a\nb")).unwrap();
    fs::create_dir_all(a.join("c".repeat(255))).unwrap();
    let host = |path: String| json!({"type": "host", "path": path});
    let t = "host path";
    let attacks = vec![
        attack(
            t,
            "`..` after the prefix: /allowed/../outside",
            host(format!("{p}/../outside")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "`..` from below: /allowed/data/../../outside",
            host(format!("{p}/data/../../outside")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "`..` at the end: /allowed/..",
            host(format!("{p}/..")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "`..` first: /../allowed",
            host(format!("/..{p}")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "`..` inside: /allowed/data/../data",
            host(format!("{p}/data/../data")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "`.` component: /allowed/./data",
            host(format!("{p}/./data")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "empty component: /allowed//data",
            host(format!("{p}//data")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "trailing slash: /allowed/data/",
            host(format!("{p}/data/")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "relative path: allowed/data",
            host(format!("{}/data", &p[1..])),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "empty path",
            host(String::new()),
            Expect::AtCreate("option `path` is required"),
        ),
        attack(t, "`/`", host("/".into()), Expect::AtCreate(OUTSIDE)),
        attack(t, "/etc", host("/etc".into()), Expect::AtCreate(OUTSIDE)),
        attack(
            t,
            "/etc/passwd (a file outside)",
            host("/etc/passwd".into()),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "a missing directory outside: /etc/osv-no-such-dir",
            host("/etc/osv-no-such-dir".into()),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "below a file outside: /etc/passwd/x",
            host("/etc/passwd/x".into()),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "/proc/self/root/etc (a magic link)",
            host("/proc/self/root/etc".into()),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "a directory outside",
            host(env.outside.display().to_string()),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "a sibling sharing the prefix: /allowed2",
            host(format!("{p}2")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "percent-encoded `..`: /allowed/%2e%2e/outside (no such directory)",
            host(format!("{p}/%2e%2e/outside")),
            Expect::AtCreate("does not exist"),
        ),
        attack(
            t,
            "percent-encoded `/..`: /allowed%2F..%2Foutside",
            host(format!("{p}%2F..%2Foutside")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "a directory really named %2e%2e",
            host(format!("{p}/%2e%2e")),
            Expect::Confined("%2e%2e".into()),
        ),
        attack(
            t,
            "percent-encoded `/`: /allowed/data%2Finner",
            host(format!("{p}/data%2Finner")),
            Expect::AtCreate("does not exist"),
        ),
        attack(
            t,
            "symlink to `/`",
            host(format!("{p}/link-root")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "symlink to /etc",
            host(format!("{p}/link-etc")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "symlink to a directory outside (absolute)",
            host(format!("{p}/link-out")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "symlink to a directory outside (relative)",
            host(format!("{p}/link-rel-out")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "symlink climbing with 40 `..`",
            host(format!("{p}/link-climb")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "symlink to `/` as an intermediate component: link-root/etc",
            host(format!("{p}/link-root/etc")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "symlink outside as an intermediate component: link-out/sub",
            host(format!("{p}/link-out/sub")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "relative symlink outside as an intermediate component",
            host(format!("{p}/link-rel-out/leaf")),
            Expect::AtCreate(OUTSIDE),
        ),
        attack(
            t,
            "symlink to /proc/self/root/etc (magic link)",
            host(format!("{p}/link-magic")),
            Expect::AtCreate("could not resolve"),
        ),
        attack(
            t,
            "symlink loop",
            host(format!("{p}/link-loop")),
            Expect::AtCreate("could not resolve"),
        ),
        attack(
            t,
            "dangling symlink",
            host(format!("{p}/link-dangling")),
            Expect::AtCreate("does not exist"),
        ),
        attack(
            t,
            "relative symlink to a directory inside",
            host(format!("{p}/link-in")),
            Expect::Confined("data".into()),
        ),
        attack(
            t,
            "absolute symlink to a directory inside",
            host(format!("{p}/link-abs-in")),
            Expect::Confined("data".into()),
        ),
        attack(
            t,
            "a file inside",
            host(format!("{p}/file")),
            Expect::AtCreate("is not a directory"),
        ),
        attack(
            t,
            "below a file inside: /allowed/file/x",
            host(format!("{p}/file/x")),
            Expect::AtCreate("is not a directory"),
        ),
        attack(
            t,
            "a component of 256 bytes",
            host(format!("{p}/{}", "c".repeat(256))),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "a component of 255 bytes (exists)",
            host(format!("{p}/{}", "c".repeat(255))),
            Expect::Confined("c".repeat(255)),
        ),
        attack(
            t,
            "a path over 4096 bytes",
            host(format!("{p}{}", "/d".repeat(2100))),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "NUL byte: /allowed/a\\0b",
            host(format!("{p}/a\0b")),
            Expect::AtCreate(NORMALISED),
        ),
        attack(
            t,
            "newline in a name (exists): /allowed/a\\nb",
            host(format!("{p}/a\nb")),
            Expect::Confined("a\nb".into()),
        ),
        attack(
            t,
            "terminal escape in a name (missing)",
            host(format!("{p}/\u{1b}[2J")),
            Expect::AtCreate("does not exist"),
        ),
        attack(
            t,
            "the allowed directory itself",
            host(p.clone()),
            Expect::Confined(String::new()),
        ),
    ];
    let failures = run_table(&env, &attacks, "h");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// subPath attacks, the same for a host volume and a pvc volume whose
/// claim is a volume of this plugin.
fn sub_path_attacks(target: &'static str, opts: &dyn Fn(&str) -> Value, dir: &str) -> Vec<Attack> {
    let long = "c".repeat(255);
    let deep = vec!["a"; 1500].join("/");
    let c = |sub: &str| opts(sub);
    let inside = |rel: &str| Expect::Confined(format!("{dir}/{rel}"));
    vec![
        attack(target, "`..`", c(".."), Expect::AtCreate(SUB_PATH)),
        attack(
            target,
            "`..` first: ../outside",
            c("../outside"),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            target,
            "`..` twice: ../../outside",
            c("../../outside"),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            target,
            "`..` in the middle: a/../../outside",
            c("a/../../outside"),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            target,
            "`..` at the end: a/..",
            c("a/.."),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            target,
            "`..` that stays inside: a/../a",
            c("a/../a"),
            Expect::AtCreate(SUB_PATH),
        ),
        // `.` and empty components are dropped, as the OpenSandbox server
        // joins a subPath onto a path: what is left stays inside.
        attack(target, "`.`", c("."), Expect::Confined(dir.to_string())),
        attack(target, "`.` first: ./a", c("./a"), inside("a")),
        attack(
            target,
            "`.` in the middle: a/./s",
            c("a/./s"),
            inside("a/s"),
        ),
        attack(
            target,
            "absolute: /etc",
            c("/etc"),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(target, "absolute: /", c("/"), Expect::AtCreate(SUB_PATH)),
        attack(target, "empty component: a//s", c("a//s"), inside("a/s")),
        attack(
            target,
            "`.` then `..`: ./..",
            c("./.."),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            target,
            "empty components, then `..`: a//..//..",
            c("a//..//.."),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            target,
            "NUL byte: a\\0b",
            c("a\0b"),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            target,
            "a component of 256 bytes",
            c(&"c".repeat(256)),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            target,
            "over 4096 bytes",
            c(&"s/".repeat(2100)),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(target, "trailing slash: a/", c("a/"), inside("a")),
        attack(
            target,
            "percent-encoded `..`: %2e%2e",
            c("%2e%2e"),
            inside("%2e%2e"),
        ),
        attack(
            target,
            "percent-encoded path: %2e%2e%2f%2e%2e%2fetc",
            c("%2e%2e%2f%2e%2e%2fetc"),
            inside("%2e%2e%2f%2e%2e%2fetc"),
        ),
        attack(
            target,
            "percent-encoded `/`: ..%2F..%2Foutside",
            c("..%2F..%2Foutside"),
            inside("..%2F..%2Foutside"),
        ),
        attack(
            target,
            "newline in a name: a\\nb",
            c("a\nb"),
            inside("a\nb"),
        ),
        attack(target, "a component of 255 bytes", c(&long), inside(&long)),
        attack(
            target,
            "1500 components deep",
            c(&deep),
            Expect::RefusedOrConfined,
        ),
        attack(
            target,
            "symlink to `/`",
            c("esc-root"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            target,
            "symlink to `/`, then etc",
            c("esc-root/etc"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            target,
            "symlink outside (absolute)",
            c("esc-out"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            target,
            "symlink outside, then a directory",
            c("esc-out/sub"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            target,
            "symlink outside (relative)",
            c("esc-rel"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            target,
            "symlink outside as the last component: d/esc",
            c("d/esc"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            target,
            "symlink outside in the middle: d/esc/sub",
            c("d/esc/sub"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            target,
            "symlink to a directory inside",
            c("in-link"),
            Expect::AtMount(SYMLINK),
        ),
        attack(target, "a file", c("file"), Expect::AtMount(SYMLINK)),
        attack(
            target,
            "below a file: file/x",
            c("file/x"),
            Expect::AtMount(SYMLINK),
        ),
    ]
}

#[test]
fn host_sub_paths() {
    require!(Root);
    let env = Env::new();
    env.populate("vol");
    let path = env.allowed.join("vol");
    let opts = |sub: &str| json!({"type": "host", "path": path, "subPath": sub});
    let attacks = sub_path_attacks("host subPath", &opts, "vol");
    let failures = run_table(&env, &attacks, "s");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pvc_sub_paths_and_claim_names() {
    require!(Root);
    let env = Env::new();
    env.populate("claim");
    let claim_dir = env.allowed.join("claim");
    env.create("claim", &json!({"type": "host", "path": claim_dir}))
        .unwrap();
    let opts = |sub: &str| json!({"type": "pvc", "claimName": "claim", "subPath": sub});
    let mut attacks = sub_path_attacks("pvc subPath", &opts, "claim");
    let t = "pvc claimName";
    let claim = |c: &str| json!({"type": "pvc", "claimName": c});
    for (what, c) in [
        ("`..` before a volume name: ../claim", "../claim"),
        ("`..` after a volume name: claim/../x", "claim/../x"),
        ("a path: /etc", "/etc"),
        (
            "a host path: /var/lib/docker/volumes",
            "/var/lib/docker/volumes",
        ),
        ("upper case: CLAIM", "CLAIM"),
        ("percent-encoded: %2e%2e", "%2e%2e"),
        ("NUL byte", "claim\0"),
        ("254 characters", &"c".repeat(254)),
        ("a dot: claim.x", "claim.x"),
    ] {
        attacks.push(attack(
            t,
            what,
            claim(c),
            Expect::AtCreate("is not a claim name"),
        ));
    }
    attacks.push(attack(
        t,
        "empty",
        claim(""),
        Expect::AtCreate("`claimName` is required"),
    ));
    // Not created here (`createIfNotExists=false`): this test must leave
    // nothing in the Docker daemon the plugin may reach.
    attacks.push(attack(
        t,
        "a volume nobody created",
        json!({"type": "pvc", "claimName": "osv-no-such-claim", "createIfNotExists": false}),
        Expect::AtMount("osv-no-such-claim"),
    ));
    attacks.push(attack(
        t,
        "the plugin's own volume",
        claim("claim"),
        Expect::Confined("claim".into()),
    ));
    let mut failures = run_table(&env, &attacks, "p");
    // A pvc volume claiming itself, by its own name.
    match env.create("selfclaim", &claim("selfclaim")) {
        Err(e) if e.contains("cannot claim itself") => {
            eprintln!("| pvc claimName | the volume's own name | refused at Create: {e} |")
        }
        other => failures.push(format!("self claim: {other:?}")),
    }
    // A pvc claiming a pvc volume.
    env.create("chain1", &claim("claim")).unwrap();
    env.create("chain2", &claim("chain1")).unwrap();
    match env.mount("chain2", "id") {
        Err(e) if e.contains("itself a pvc volume") => {
            eprintln!("| pvc claimName | another pvc volume | refused at Mount: {e} |")
        }
        other => failures.push(format!("chained claim: {other:?}")),
    }
    env.assert_confined("chained claim");
    env.remove("chain2").unwrap();
    env.remove("chain1").unwrap();
    env.remove("claim").unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A local Docker volume as the claim (when a dockerd answers): links in
/// it lead nowhere, and only its own directories are ever mounted.
#[test]
fn pvc_claims_of_a_local_docker_volume() {
    require!(Root, Dockerd);
    let volume = format!("osv-path-attacks-{}", std::process::id());
    let created = std::process::Command::new("docker")
        .args(["volume", "create", &volume])
        .output();
    match created {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("skipped: `docker volume create` failed: {other:?}");
            return;
        }
    }
    let inspect = std::process::Command::new("docker")
        .args(["volume", "inspect", "-f", "{{.Mountpoint}}", &volume])
        .output()
        .unwrap();
    let data = PathBuf::from(String::from_utf8(inspect.stdout).unwrap().trim());
    let mut env = Env::new();
    env.claim_roots.push(data.clone());
    for sub in ["a", "d", "s"] {
        fs::create_dir_all(data.join(sub)).unwrap();
    }
    fs::write(data.join("file"), b"x").unwrap();
    symlink("/", data.join("esc-root")).unwrap();
    symlink(&env.outside, data.join("esc-out")).unwrap();
    symlink("../../../../../../etc", data.join("esc-rel")).unwrap();
    symlink(&env.outside, data.join("d/esc")).unwrap();
    let opts = |sub: &str| json!({"type": "pvc", "claimName": volume, "subPath": sub});
    let t = "pvc subPath (local volume)";
    let attacks = vec![
        attack(t, "`..`", opts(".."), Expect::AtCreate(SUB_PATH)),
        attack(
            t,
            "`..` in the middle: a/../../../etc",
            opts("a/../../../etc"),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            t,
            "absolute: /etc",
            opts("/etc"),
            Expect::AtCreate(SUB_PATH),
        ),
        attack(
            t,
            "symlink to `/`",
            opts("esc-root"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            t,
            "symlink to `/`, then etc",
            opts("esc-root/etc"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            t,
            "symlink outside",
            opts("esc-out/sub"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            t,
            "relative symlink climbing to /etc",
            opts("esc-rel"),
            Expect::AtMount(SYMLINK),
        ),
        attack(
            t,
            "symlink in the middle: d/esc/sub",
            opts("d/esc/sub"),
            Expect::AtMount(SYMLINK),
        ),
        attack(t, "a file", opts("file"), Expect::AtMount(SYMLINK)),
        attack(
            t,
            "a directory of the volume",
            opts("a"),
            Expect::RefusedOrConfined,
        ),
        attack(
            t,
            "percent-encoded `..`",
            opts("%2e%2e"),
            Expect::RefusedOrConfined,
        ),
    ];
    let failures = run_table(&env, &attacks, "l");
    // The volume's mounts were checked by device and inode; make sure the
    // accepted ones really were inside it.
    assert!(data.join("a").is_dir() && data.join("%2e%2e").is_dir());
    drop(env);
    let _ = std::process::Command::new("docker")
        .args(["volume", "rm", "-f", &volume])
        .output();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn volume_names_stay_apart() {
    require!(Root);
    let env = Env::new();
    let long_a = format!("{}1", "n".repeat(250));
    let long_b = format!("{}2", "n".repeat(250));
    let wide = "é".repeat(127);
    let names: Vec<&str> = vec![
        "victim",
        "../victim",
        "victim/../victim",
        "./victim",
        "victim/",
        "/victim",
        "%76ictim",
        "..",
        ".",
        "/",
        "a/b",
        "a%2Fb",
        "%2E%2E",
        "x y",
        "x%20y",
        "~victim",
        "VICTIM",
        "-victim",
        "\u{202e}mitciv",
        &long_a,
        &long_b,
        &wide,
    ];
    // Each name gets its own directory, mounted at once, and every mount
    // must be its own directory, directly under the mount root.
    let mut mounted = Vec::new();
    let mut failures = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let dir = env.dir(&format!("names/{i}"));
        fs::write(dir.join("owner"), name.as_bytes()).unwrap();
        if let Err(e) = env.create(name, &json!({"type": "host", "path": dir})) {
            failures.push(format!("{name:?}: {e}"));
            continue;
        }
        match env.mount(name, "id") {
            Ok(mp) => {
                if mp.parent() != Some(env.plugin.mount_root.as_path()) {
                    failures.push(format!("{name:?}: mount point {mp:?}"));
                }
                if id_of(&mp) != id_of(&dir) {
                    failures.push(format!("{name:?}: {mp:?} is not {dir:?}"));
                }
                mounted.push((name.to_string(), mp));
            }
            Err(e) => failures.push(format!("{name:?}: {e}")),
        }
    }
    let distinct: HashSet<&PathBuf> = mounted.iter().map(|(_, mp)| mp).collect();
    assert_eq!(
        distinct.len(),
        mounted.len(),
        "two names share a mount point"
    );
    for (name, mp) in &mounted {
        assert_eq!(fs::read_to_string(mp.join("owner")).unwrap(), *name);
    }
    env.assert_confined("all names mounted");
    // Unmount and remove every name but the victim: its mount stays.
    let victim_mp = mounted[0].1.clone();
    for (name, _) in mounted.iter().skip(1) {
        env.unmount(name, "id").unwrap();
        env.remove(name).unwrap();
        assert_eq!(
            fs::read_to_string(victim_mp.join("owner")).unwrap(),
            "victim"
        );
    }
    // Calls naming the victim in other spellings do not reach it.
    for other in ["../victim", "victim/", "./victim", "victim\0", "Victim"] {
        assert!(env.unmount(other, "id").is_err(), "{other:?}");
        assert!(env.remove(other).is_err(), "{other:?}");
    }
    assert_eq!(
        fs::read_to_string(victim_mp.join("owner")).unwrap(),
        "victim"
    );
    // Names that no path may hold are refused with a sentence.
    let dir = env.dir("names/refused");
    for (name, want) in [
        ("", "name is empty"),
        ("a\0b", "control character"),
        ("a\nb", "control character"),
        ("\u{1b}[2J", "control character"),
        (&*"n".repeat(256), "longer than 255 bytes"),
    ] {
        match env.create(name, &json!({"type": "host", "path": dir})) {
            Err(e) if e.contains(want) && not_a_sentence(&e).is_none() => {}
            other => failures.push(format!("{name:?}: {other:?}")),
        }
    }
    env.unmount("victim", "id").unwrap();
    env.remove("victim").unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn symlinks_swapped_in_between_create_and_mount() {
    require!(Root);
    let env = Env::new();
    let outside = &env.outside;
    let mut failures = Vec::new();
    let mut expect_refused = |what: &str, result: Result<PathBuf, String>, want: &str| match result
    {
        Err(e) if e.contains(want) && not_a_sentence(&e).is_none() => {
            eprintln!("| swap | {what} | refused at Mount: {e} |")
        }
        other => failures.push(format!("{what}: {other:?}")),
    };

    // The volume's path itself.
    let swap = env.dir("swap");
    env.create("swap", &json!({"type": "host", "path": swap}))
        .unwrap();
    fs::rename(&swap, env.allowed.join("swap-old")).unwrap();
    symlink(outside, &swap).unwrap();
    expect_refused(
        "the path replaced by a symlink outside",
        env.mount("swap", "id"),
        OUTSIDE,
    );

    // An intermediate component of the path.
    let leaf = env.dir("mid/leaf");
    env.create("mid", &json!({"type": "host", "path": leaf}))
        .unwrap();
    fs::rename(env.allowed.join("mid"), env.allowed.join("mid-old")).unwrap();
    symlink(outside, env.allowed.join("mid")).unwrap();
    expect_refused(
        "an intermediate component replaced by a symlink outside",
        env.mount("mid", "id"),
        OUTSIDE,
    );

    // A subPath component, after a first successful mount.
    let vol = env.dir("vol2");
    fs::create_dir_all(vol.join("s/inner")).unwrap();
    let opts = json!({"type": "host", "path": vol, "subPath": "s/inner"});
    env.create("sub", &opts).unwrap();
    env.mount("sub", "id").unwrap();
    env.unmount("sub", "id").unwrap();
    fs::rename(vol.join("s"), vol.join("s-old")).unwrap();
    symlink(outside, vol.join("s")).unwrap();
    expect_refused(
        "a subPath component replaced by a symlink outside",
        env.mount("sub", "id"),
        SYMLINK,
    );

    // A pvc subPath component inside the claim.
    let claim = env.dir("claim");
    fs::create_dir_all(claim.join("s/inner")).unwrap();
    env.create("claim", &json!({"type": "host", "path": claim}))
        .unwrap();
    let opts = json!({"type": "pvc", "claimName": "claim", "subPath": "s/inner"});
    env.create("pvc", &opts).unwrap();
    env.mount("pvc", "id").unwrap();
    env.unmount("pvc", "id").unwrap();
    fs::rename(claim.join("s"), claim.join("s-old")).unwrap();
    symlink(outside, claim.join("s")).unwrap();
    expect_refused(
        "a pvc subPath component replaced by a symlink outside",
        env.mount("pvc", "id"),
        SYMLINK,
    );

    env.assert_confined("swaps");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `renameat2(RENAME_EXCHANGE)`: swaps two names atomically.
fn exchange(a: &Path, b: &Path) {
    let ca = CString::new(a.as_os_str().as_bytes()).unwrap();
    let cb = CString::new(b.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings; renameat2 touches nothing else.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
}

/// A thread that swaps `real` (a directory) and `decoy` (a symlink to
/// outside) until stopped; returns how many swaps it made.
struct Flipper {
    stop: Arc<AtomicBool>,
    flips: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    real: PathBuf,
    decoy: PathBuf,
}

impl Flipper {
    fn start(real: &Path, decoy: &Path) -> Flipper {
        let stop = Arc::new(AtomicBool::new(false));
        let flips = Arc::new(AtomicU64::new(0));
        let (s, f, a, b) = (
            stop.clone(),
            flips.clone(),
            real.to_path_buf(),
            decoy.to_path_buf(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                exchange(&a, &b);
                f.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        });
        Flipper {
            stop,
            flips,
            thread: Some(thread),
            real: real.to_path_buf(),
            decoy: decoy.to_path_buf(),
        }
    }

    /// Stops, leaving the directory under its real name.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        if fs::symlink_metadata(&self.real)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            exchange(&self.real, &self.decoy);
        }
        self.flips.load(Ordering::Relaxed)
    }
}

fn race_rounds() -> usize {
    std::env::var("OSV_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

/// Mounts `name` `rounds` times while `flipper` swaps a component; every
/// successful mount must be the directory `want` (device and inode),
/// every failure a sentence containing one of `refusals`.
fn race(
    env: &Env,
    what: &str,
    name: &str,
    want: (u64, u64),
    flipper: Flipper,
    refusals: &[&str],
) -> String {
    let rounds = race_rounds();
    let (mut mounted, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for round in 0..rounds {
        let id = format!("race-{round}");
        match env.mount(name, &id) {
            Ok(mp) => {
                mounted += 1;
                let got = id_of(&mp);
                if got != want {
                    failures.push(format!("round {round}: mounted {got:?}, not {want:?}"));
                }
                env.unmount(name, &id).unwrap();
            }
            Err(e) => {
                refused += 1;
                if !refusals.iter().any(|r| e.contains(r)) || not_a_sentence(&e).is_some() {
                    failures.push(format!("round {round}: {e:?}"));
                }
            }
        }
    }
    let flips = flipper.stop();
    env.assert_confined(what);
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n"));
    let line = format!(
        "| race | {what} | {rounds} Mounts during {flips} swaps: {mounted} mounted the real directory, {refused} refused, 0 escaped |"
    );
    eprintln!("{line}");
    line
}

#[test]
fn a_component_flipping_between_directory_and_symlink_never_mounts_outside() {
    require!(Root);
    let env = Env::new();
    let outside = &env.outside;

    // The volume's path itself.
    let real = env.dir("race");
    let decoy = env.allowed.join("race-decoy");
    symlink(outside, &decoy).unwrap();
    env.create("race-path", &json!({"type": "host", "path": real}))
        .unwrap();
    let want = id_of(&real);
    let f = Flipper::start(&real, &decoy);
    race(&env, "the volume's path", "race-path", want, f, &[OUTSIDE]);

    // An intermediate component of the path.
    let leaf = env.dir("rmid/leaf");
    let decoy = env.allowed.join("rmid-decoy");
    symlink(outside, &decoy).unwrap();
    env.create("race-mid", &json!({"type": "host", "path": leaf}))
        .unwrap();
    let want = id_of(&leaf);
    let f = Flipper::start(&env.allowed.join("rmid"), &decoy);
    race(
        &env,
        "an intermediate component of the path",
        "race-mid",
        want,
        f,
        &[OUTSIDE],
    );

    // A subPath component of a host volume.
    let vol = env.dir("rvol");
    let flip = env.dir("rvol/flip");
    symlink(outside, vol.join("flip-decoy")).unwrap();
    let opts = json!({"type": "host", "path": vol, "subPath": "flip"});
    env.create("race-sub", &opts).unwrap();
    let want = id_of(&flip);
    let f = Flipper::start(&flip, &vol.join("flip-decoy"));
    race(
        &env,
        "a host subPath component",
        "race-sub",
        want,
        f,
        &[SYMLINK],
    );

    // A subPath component inside a pvc claim.
    let claim = env.dir("rclaim");
    let flip = env.dir("rclaim/flip/inner");
    symlink(outside, claim.join("flip-decoy")).unwrap();
    env.create("rclaim", &json!({"type": "host", "path": claim}))
        .unwrap();
    let opts = json!({"type": "pvc", "claimName": "rclaim", "subPath": "flip/inner"});
    env.create("race-pvc", &opts).unwrap();
    let want = id_of(&flip);
    let f = Flipper::start(&claim.join("flip"), &claim.join("flip-decoy"));
    race(
        &env,
        "a pvc subPath component",
        "race-pvc",
        want,
        f,
        &[SYMLINK],
    );

    // A path through a symlink that climbs with `..` (inside the
    // allow-list) while renames happen elsewhere on the host: the kernel
    // asks openat2 to retry such lookups (EAGAIN), and none may fail.
    let data = env.dir("updata");
    symlink("../allowed/updata", env.allowed.join("up-link")).unwrap();
    let path = env.allowed.join("up-link");
    env.create("race-dotdot", &json!({"type": "host", "path": path}))
        .unwrap();
    let want = id_of(&data);
    let busy = env.dir("busy");
    symlink(outside, env.allowed.join("busy-decoy")).unwrap();
    let f = Flipper::start(&busy, &env.allowed.join("busy-decoy"));
    let what = "a `..` symlink while renames happen elsewhere";
    let line = race(&env, what, "race-dotdot", want, f, &[]);
    assert!(line.contains(", 0 refused"), "{line}");
}
