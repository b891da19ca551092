//! `type=host`: a directory of the Docker host, bind-mounted.
//!
//! The path must lie under an operator-allowed prefix *after* symlinks are
//! resolved. The directory that finally gets mounted is the one that was
//! checked: it is opened with `O_PATH` step by step (`O_NOFOLLOW` on every
//! `subPath` component) and mounted through its file descriptor, so swapping
//! a symlink in between the check and the mount cannot redirect it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "host volumes are disabled on this plugin because no allowed host paths are configured; start it with --allowed-host-paths (or OSV_ALLOWED_HOST_PATHS) listing the directories host volumes may use"
    )]
    Disabled,
    #[error("option `path`={path:?} does not exist on the host; create the directory first")]
    NotFound { path: PathBuf },
    #[error("option `path`={path:?} is not a directory on the host; point it at a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "option `path`={path:?} resolves to {resolved:?}, which is outside the allowed host paths ({allowed}); use a directory under one of them or ask the operator to allow it"
    )]
    NotAllowed {
        path: PathBuf,
        resolved: PathBuf,
        allowed: String,
    },
    #[error(
        "option `subPath`={sub_path:?} is refused: {component:?} is a symlink or not a directory, and subPath must name real directories inside the volume"
    )]
    SubPathNotDirectory { sub_path: String, component: String },
    #[error(
        "option `path`={path:?} is outside the part of the host this plugin sees ({shown}, its hostfs mount); use a directory under {shown}, or have the operator point hostfs at a directory that holds it (docker plugin set PLUGIN hostfs.source=DIR OSV_HOST_ROOT_PATH=DIR)"
    )]
    OutsideHostRoot { path: PathBuf, shown: PathBuf },
    #[error(
        "option `path`={path:?} leads through a symlink that is absolute or climbs out of {shown}, which a plugin that sees only {shown} of the host cannot follow; give the real path"
    )]
    SymlinkOutOfHostRoot { path: PathBuf, shown: PathBuf },
    #[error("could not {action} {path:?} on the host: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

pub struct HostBackend {
    allowed: Vec<PathBuf>,
    /// Where this process sees the host's `/`: `/` for the legacy daemon,
    /// the `hostfs` mount (e.g. `/host`) inside the managed plugin. Paths
    /// in options and in the allow-list are host paths; they are resolved
    /// below this root, symlinks included, as if it were `/`.
    root: PathBuf,
    /// The host path `root` shows: `/` (the whole host), or the directory a
    /// narrowed `hostfs` mount was pointed at. Host paths outside it are
    /// out of reach; under a narrowed root, symlinks may not leave it or
    /// be absolute (their targets are host paths the kernel would read
    /// below `root`).
    shown: PathBuf,
}

/// A host directory, opened (`O_PATH`) and checked against the allow-list.
struct Resolved {
    fd: OwnedFd,
    /// The directory's host path, symlinks resolved.
    host_path: PathBuf,
}

impl HostBackend {
    /// `root` shows the host's `/`.
    pub fn new(allowed: Vec<PathBuf>, root: PathBuf) -> Self {
        Self::narrowed(allowed, root, "/".into())
    }

    /// `root` shows the host directory `shown` (an absolute, normalised path).
    pub fn narrowed(allowed: Vec<PathBuf>, root: PathBuf, shown: PathBuf) -> Self {
        HostBackend {
            allowed,
            root,
            shown,
        }
    }

    /// Whether `root` shows less than the whole host.
    fn is_narrowed(&self) -> bool {
        self.shown != Path::new("/")
    }

    fn allowed_list(&self) -> String {
        let list: Vec<String> = self
            .allowed
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        list.join(", ")
    }

    /// Opens host path `path` below the root, resolving every symlink as
    /// if the root were `/` (an absolute link target, or `..` past the
    /// top, stays inside it), and returns the descriptor and the host path
    /// it resolved to. Under a narrowed root a path outside it fails with
    /// EXDEV, and so does a symlink that is absolute or climbs out.
    fn open_in_root(&self, path: &Path) -> io::Result<(OwnedFd, PathBuf)> {
        let root = open_dir(None, &self.root)?;
        let relative = path
            .strip_prefix(&self.shown)
            .map_err(|_| io::Error::from_raw_os_error(libc::EXDEV))?;
        let fd = if relative.as_os_str().is_empty() {
            root
        } else {
            open_in_root(&root, relative, self.is_narrowed())?
        };
        let seen = fd_path(&fd)?;
        let host_path = match seen.strip_prefix(&self.root) {
            Ok(rest) if rest.as_os_str().is_empty() => self.shown.clone(),
            Ok(rest) => self.shown.join(rest),
            // Cannot happen with RESOLVE_IN_ROOT or RESOLVE_BENEATH;
            // refuse rather than guess.
            Err(_) => return Err(io::Error::from_raw_os_error(libc::EXDEV)),
        };
        Ok((fd, host_path))
    }

    /// Whether host path `resolved` lies under an allowed prefix. Prefixes
    /// are resolved at each check (they may be symlinks themselves, or
    /// created after the plugin started); comparison is per component, so
    /// `/data2` is not under `/data`.
    fn is_allowed(&self, resolved: &Path) -> bool {
        self.allowed
            .iter()
            .any(|prefix| match self.open_in_root(prefix) {
                Ok((_, p)) => resolved.starts_with(p),
                Err(_) => false,
            })
    }

    fn resolve(&self, path: &Path) -> Result<Resolved, HostError> {
        if self.allowed.is_empty() {
            return Err(HostError::Disabled);
        }
        let (fd, host_path) = match self.open_in_root(path) {
            Ok(found) => found,
            Err(e) => return Err(self.unopenable(path, e)),
        };
        // The allow-list first: whether something outside it is a
        // directory is none of the caller's business.
        if !self.is_allowed(&host_path) {
            return Err(HostError::NotAllowed {
                path: path.into(),
                resolved: host_path,
                allowed: self.allowed_list(),
            });
        }
        if !is_dir(&fd) {
            return Err(HostError::NotADirectory { path: path.into() });
        }
        Ok(Resolved { fd, host_path })
    }

    /// The error for a `path` that cannot be opened. Whether a path outside
    /// the allow-list exists, or what it is, is none of the caller's
    /// business either: it is refused as outside, like one that exists.
    fn unopenable(&self, path: &Path, e: io::Error) -> HostError {
        if !path.starts_with(&self.shown) {
            return HostError::OutsideHostRoot {
                path: path.into(),
                shown: self.shown.clone(),
            };
        }
        if e.raw_os_error() == Some(libc::EXDEV) {
            return HostError::SymlinkOutOfHostRoot {
                path: path.into(),
                shown: self.shown.clone(),
            };
        }
        if let Some(resolved) = self.outside_when_missing(path) {
            return HostError::NotAllowed {
                path: path.into(),
                resolved,
                allowed: self.allowed_list(),
            };
        }
        if e.kind() == io::ErrorKind::NotFound {
            HostError::NotFound { path: path.into() }
        } else if e.raw_os_error() == Some(libc::ENOTDIR) {
            HostError::NotADirectory { path: path.into() }
        } else {
            HostError::Io {
                action: "resolve",
                path: path.into(),
                source: e,
            }
        }
    }

    /// Where a `path` that cannot be opened would be (its deepest ancestor
    /// that opens, resolved, with the rest of `path` appended), when that
    /// is outside the allow-list.
    fn outside_when_missing(&self, path: &Path) -> Option<PathBuf> {
        let mut ancestor = path.parent();
        while let Some(dir) = ancestor {
            if let Ok((_, resolved)) = self.open_in_root(dir) {
                let would_be = resolved.join(path.strip_prefix(dir).ok()?);
                return (!self.is_allowed(&would_be)).then_some(would_be);
            }
            ancestor = dir.parent();
        }
        None
    }

    /// Resolves `path` and checks it against the allow-list; returns the
    /// host path it resolves to.
    pub fn check(&self, path: &Path) -> Result<PathBuf, HostError> {
        self.resolve(path).map(|r| r.host_path)
    }

    /// Opens the directory to mount: `path` (checked) and then `sub_path`
    /// below it, creating missing components, following no symlink. The
    /// descriptor checked is the one returned, so nothing can be swapped in
    /// between.
    pub fn open_source(&self, path: &Path, sub_path: Option<&str>) -> Result<OwnedFd, HostError> {
        let Resolved { fd, host_path } = self.resolve(path)?;
        let io_err = |action, source| HostError::Io {
            action,
            path: path.into(),
            source,
        };
        if let Some(sub) = sub_path {
            let fd = descend(fd, path, sub)?;
            // Defence in depth: the final directory must still be inside.
            let seen = fd_path(&fd).map_err(|e| io_err("open", e))?;
            let held = seen
                .strip_prefix(&self.root)
                .map(|rest| self.shown.join(rest))
                .unwrap_or(seen);
            if !held.starts_with(&host_path) || !self.is_allowed(&held) {
                return Err(HostError::NotAllowed {
                    path: path.into(),
                    resolved: held,
                    allowed: self.allowed_list(),
                });
            }
            return Ok(fd);
        }
        Ok(fd)
    }

    /// Opens the directory of a `pvc` claim (Docker told us where it is, so
    /// no allow-list applies) and then `sub_path` below it, creating missing
    /// components and following no symlink: a link inside the claimed
    /// volume cannot lead out of it. `in_host_root`: `path` is a host path
    /// (a local volume's `_data`), else a path of this process (a volume of
    /// this plugin, mounted by it).
    pub fn open_claim(
        &self,
        path: &Path,
        in_host_root: bool,
        sub_path: Option<&str>,
    ) -> Result<OwnedFd, HostError> {
        let opened = if in_host_root {
            if !path.starts_with(&self.shown) {
                return Err(HostError::OutsideHostRoot {
                    path: path.into(),
                    shown: self.shown.clone(),
                });
            }
            self.open_in_root(path).map(|(fd, _)| fd)
        } else {
            open_dir(None, path)
        };
        let fd = match opened {
            Ok(fd) if is_dir(&fd) => fd,
            Ok(_) => return Err(HostError::NotADirectory { path: path.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(HostError::NotFound { path: path.into() });
            }
            Err(source) => {
                return Err(HostError::Io {
                    action: "open",
                    path: path.into(),
                    source,
                });
            }
        };
        match sub_path {
            Some(sub) => descend(fd, path, sub),
            None => Ok(fd),
        }
    }
}

/// Walks `sub` down from `fd` one component at a time, creating missing
/// directories, refusing symlinks and files (`O_NOFOLLOW|O_DIRECTORY`).
fn descend(mut fd: OwnedFd, path: &Path, sub: &str) -> Result<OwnedFd, HostError> {
    for component in sub.split('/') {
        fd = open_or_create_child(&fd, component).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => HostError::SubPathNotDirectory {
                sub_path: sub.to_string(),
                component: component.to_string(),
            },
            _ => HostError::Io {
                action: "create subPath under",
                path: path.into(),
                source: e,
            },
        })?;
    }
    Ok(fd)
}

const DIR_FLAGS: libc::c_int =
    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// `openat(parent or AT_FDCWD, name, O_PATH|O_DIRECTORY|O_NOFOLLOW)`.
fn open_dir(parent: Option<&OwnedFd>, name: &Path) -> io::Result<OwnedFd> {
    let c = c_path(name)?;
    let dirfd = parent.map_or(libc::AT_FDCWD, |p| p.as_raw_fd());
    // SAFETY: valid C string; the returned fd is owned by us alone.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), DIR_FLAGS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How often openat2 is retried when it fails with EAGAIN.
const OPENAT2_ATTEMPTS: u32 = 200;

/// `openat2(root, relative, O_PATH, RESOLVE_IN_ROOT)`: symlinks and `..`
/// are resolved as if `root` were the filesystem's root. `beneath`:
/// RESOLVE_BENEATH instead, where an absolute symlink or a `..` that would
/// leave `root` fails with EXDEV.
///
/// The kernel fails a lookup that crossed `..` with EAGAIN when any rename
/// or mount happened on the host meanwhile (it cannot then prove that the
/// `..` stayed inside) and asks the caller to retry: a busy host makes
/// that common, so it is retried rather than reported.
fn open_in_root(root: &OwnedFd, relative: &Path, beneath: bool) -> io::Result<OwnedFd> {
    let c = c_path(relative)?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = if beneath {
        libc::RESOLVE_BENEATH
    } else {
        libc::RESOLVE_IN_ROOT
    } | libc::RESOLVE_NO_MAGICLINKS;
    let mut attempts = 0;
    loop {
        attempts += 1;
        // SAFETY: valid fd, C string and open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: fd is a fresh, valid descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EAGAIN) || attempts >= OPENAT2_ATTEMPTS {
            return Err(err);
        }
        std::thread::yield_now();
    }
}

fn is_dir(fd: &OwnedFd) -> bool {
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    rc == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFDIR
}

fn open_or_create_child(parent: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let name = Path::new(name);
    match open_dir(Some(parent), name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let c = c_path(name)?;
            // SAFETY: valid fd and C string.
            let rc = unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o755) };
            if rc != 0 {
                let err = io::Error::last_os_error();
                // Another Mount may have created it first: that is fine.
                if err.raw_os_error() != Some(libc::EEXIST) {
                    return Err(err);
                }
            }
            open_dir(Some(parent), name)
        }
        other => other,
    }
}

/// The path the kernel reports for an open descriptor.
fn fd_path(fd: &OwnedFd) -> io::Result<PathBuf> {
    fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _root: tempfile::TempDir,
        allowed: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("allowed");
        let outside = root.path().join("allowed2");
        fs::create_dir_all(allowed.join("data")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        Fixture {
            allowed: fs::canonicalize(&allowed).unwrap(),
            outside: fs::canonicalize(&outside).unwrap(),
            _root: root,
        }
    }

    #[test]
    fn empty_allow_list_disables_host_volumes() {
        let b = HostBackend::new(vec![], "/".into());
        assert!(matches!(
            b.check(Path::new("/tmp")),
            Err(HostError::Disabled)
        ));
    }

    #[test]
    fn prefix_is_per_component() {
        let f = fixture();
        let b = HostBackend::new(vec![f.allowed.clone()], "/".into());
        assert!(b.check(&f.allowed.join("data")).is_ok());
        assert!(b.check(&f.allowed).is_ok());
        let err = b.check(&f.outside).unwrap_err();
        assert!(matches!(err, HostError::NotAllowed { .. }), "{err}");
        assert!(err.to_string().contains("outside the allowed host paths"));
    }

    #[test]
    fn symlink_escaping_the_allow_list_is_refused() {
        let f = fixture();
        symlink(&f.outside, f.allowed.join("link")).unwrap();
        symlink("data", f.allowed.join("inside-link")).unwrap();
        let b = HostBackend::new(vec![f.allowed.clone()], "/".into());
        assert!(matches!(
            b.check(&f.allowed.join("link")),
            Err(HostError::NotAllowed { .. })
        ));
        assert_eq!(
            b.check(&f.allowed.join("inside-link")).unwrap(),
            f.allowed.join("data")
        );
    }

    #[test]
    fn missing_and_non_directory_paths() {
        let f = fixture();
        fs::write(f.allowed.join("file"), b"x").unwrap();
        let b = HostBackend::new(vec![f.allowed.clone()], "/".into());
        assert!(matches!(
            b.check(&f.allowed.join("nope")),
            Err(HostError::NotFound { .. })
        ));
        assert!(matches!(
            b.check(&f.allowed.join("file")),
            Err(HostError::NotADirectory { .. })
        ));
    }

    #[test]
    fn sub_path_is_created_and_symlinks_in_it_are_refused() {
        let f = fixture();
        let b = HostBackend::new(vec![f.allowed.clone()], "/".into());
        let fd = b.open_source(&f.allowed.join("data"), Some("a/b")).unwrap();
        assert!(f.allowed.join("data/a/b").is_dir());
        assert_eq!(fd_path(&fd).unwrap(), f.allowed.join("data/a/b"));

        symlink(&f.outside, f.allowed.join("data/esc")).unwrap();
        let err = b
            .open_source(&f.allowed.join("data"), Some("esc/x"))
            .unwrap_err();
        assert!(
            matches!(err, HostError::SubPathNotDirectory { .. }),
            "{err}"
        );
        assert!(!f.outside.join("x").exists());

        fs::write(f.allowed.join("data/plain"), b"x").unwrap();
        let err = b
            .open_source(&f.allowed.join("data"), Some("plain"))
            .unwrap_err();
        assert!(
            matches!(err, HostError::SubPathNotDirectory { .. }),
            "{err}"
        );
    }

    /// Inside the managed plugin the host's `/` is a directory: host paths,
    /// the allow-list and absolute symlink targets are all read below it,
    /// and nothing resolves to the plugin's own files.
    #[test]
    fn paths_resolve_inside_the_host_root() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        fs::create_dir_all(root_path.join("srv/data/sub")).unwrap();
        fs::create_dir_all(root_path.join("etc")).unwrap();
        symlink("/srv/data", root_path.join("srv/abs-link")).unwrap();
        symlink("../../../../etc", root_path.join("srv/climb")).unwrap();
        let b = HostBackend::new(vec!["/srv".into()], root_path.clone());

        assert_eq!(
            b.check(Path::new("/srv/data")).unwrap(),
            Path::new("/srv/data")
        );
        // An absolute target means the host's /srv/data, not the plugin's.
        assert_eq!(
            b.check(Path::new("/srv/abs-link")).unwrap(),
            Path::new("/srv/data")
        );
        // `..` past the top stops at the root: /etc, outside the allow-list.
        let err = b.check(Path::new("/srv/climb")).unwrap_err();
        assert!(
            matches!(&err, HostError::NotAllowed { resolved, .. } if resolved == Path::new("/etc")),
            "{err}"
        );
        let fd = b
            .open_source(Path::new("/srv/abs-link"), Some("sub"))
            .unwrap();
        assert_eq!(fd_path(&fd).unwrap(), root_path.join("srv/data/sub"));
        // /srv of the machine running the test is not what gets checked.
        assert!(matches!(
            b.check(Path::new("/srv/nope")),
            Err(HostError::NotFound { .. })
        ));
    }

    /// A narrowed hostfs: the root shows only the host's /srv/sandboxes.
    /// Paths under it work (relative symlinks too); paths outside it, and
    /// symlinks that are absolute or climb out, get their own sentence.
    #[test]
    fn a_narrowed_root_shows_only_its_host_directory() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        fs::create_dir_all(root_path.join("team/data")).unwrap();
        symlink("data", root_path.join("team/rel-link")).unwrap();
        symlink("/srv/sandboxes/team/data", root_path.join("team/abs-link")).unwrap();
        symlink("../../etc", root_path.join("team/climb")).unwrap();
        let shown = PathBuf::from("/srv/sandboxes");
        let b = HostBackend::narrowed(
            vec!["/srv/sandboxes/team".into()],
            root_path.clone(),
            shown.clone(),
        );
        assert_eq!(
            b.check(Path::new("/srv/sandboxes/team/data")).unwrap(),
            Path::new("/srv/sandboxes/team/data")
        );
        assert_eq!(
            b.check(Path::new("/srv/sandboxes/team/rel-link")).unwrap(),
            Path::new("/srv/sandboxes/team/data")
        );
        let fd = b
            .open_source(Path::new("/srv/sandboxes/team/data"), Some("run1"))
            .unwrap();
        assert_eq!(fd_path(&fd).unwrap(), root_path.join("team/data/run1"));

        let err = b.check(Path::new("/etc")).unwrap_err();
        assert!(matches!(err, HostError::OutsideHostRoot { .. }), "{err}");
        assert!(err.to_string().contains("hostfs.source=DIR"), "{err}");
        for link in ["abs-link", "climb"] {
            let err = b
                .check(&Path::new("/srv/sandboxes/team").join(link))
                .unwrap_err();
            assert!(
                matches!(err, HostError::SymlinkOutOfHostRoot { .. }),
                "{link}: {err}"
            );
        }
        // A claim (a local volume's directory) outside what the root shows.
        let err = b
            .open_claim(Path::new("/var/lib/docker/volumes/c/_data"), true, None)
            .unwrap_err();
        assert!(matches!(err, HostError::OutsideHostRoot { .. }), "{err}");
    }
}
