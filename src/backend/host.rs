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
    #[error("could not {action} {path:?} on the host: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

pub struct HostBackend {
    allowed: Vec<PathBuf>,
}

impl HostBackend {
    pub fn new(allowed: Vec<PathBuf>) -> Self {
        HostBackend { allowed }
    }

    fn allowed_list(&self) -> String {
        let list: Vec<String> = self
            .allowed
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        list.join(", ")
    }

    /// Whether the fully resolved `resolved` lies under an allowed prefix.
    /// Prefixes are resolved at each check (they may be symlinks themselves,
    /// or created after the plugin started); comparison is per component,
    /// so `/data2` is not under `/data`.
    fn is_allowed(&self, resolved: &Path) -> bool {
        self.allowed
            .iter()
            .any(|prefix| match fs::canonicalize(prefix) {
                Ok(p) => resolved.starts_with(p),
                Err(_) => false,
            })
    }

    /// Resolves `path` and checks it against the allow-list.
    pub fn check(&self, path: &Path) -> Result<PathBuf, HostError> {
        if self.allowed.is_empty() {
            return Err(HostError::Disabled);
        }
        let resolved = match fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(HostError::NotFound { path: path.into() });
            }
            Err(source) => {
                return Err(HostError::Io {
                    action: "resolve",
                    path: path.into(),
                    source,
                });
            }
        };
        if !self.is_allowed(&resolved) {
            return Err(HostError::NotAllowed {
                path: path.into(),
                resolved,
                allowed: self.allowed_list(),
            });
        }
        if !resolved.is_dir() {
            return Err(HostError::NotADirectory { path: path.into() });
        }
        Ok(resolved)
    }

    /// Opens the directory to mount: `path` (checked) and then `sub_path`
    /// below it, creating missing components, following no symlink.
    pub fn open_source(&self, path: &Path, sub_path: Option<&str>) -> Result<OwnedFd, HostError> {
        let resolved = self.check(path)?;
        let io_err = |action, source| HostError::Io {
            action,
            path: path.into(),
            source,
        };
        let mut dir = open_dir(None, &resolved).map_err(|e| io_err("open", e))?;
        // The path was resolved before the open: make sure the directory we
        // now hold is still the one that was allowed.
        let held = fd_path(&dir).map_err(|e| io_err("open", e))?;
        if !self.is_allowed(&held) {
            return Err(HostError::NotAllowed {
                path: path.into(),
                resolved: held,
                allowed: self.allowed_list(),
            });
        }
        if let Some(sub) = sub_path {
            for component in sub.split('/') {
                dir =
                    open_or_create_child(&dir, component).map_err(|e| match e.raw_os_error() {
                        Some(libc::ELOOP) | Some(libc::ENOTDIR) => HostError::SubPathNotDirectory {
                            sub_path: sub.to_string(),
                            component: component.to_string(),
                        },
                        _ => io_err("create subPath under", e),
                    })?;
            }
            // Defence in depth: the final directory must still be inside.
            let held = fd_path(&dir).map_err(|e| io_err("open", e))?;
            if !held.starts_with(&resolved) || !self.is_allowed(&held) {
                return Err(HostError::NotAllowed {
                    path: path.into(),
                    resolved: held,
                    allowed: self.allowed_list(),
                });
            }
        }
        Ok(dir)
    }
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
        let b = HostBackend::new(vec![]);
        assert!(matches!(
            b.check(Path::new("/tmp")),
            Err(HostError::Disabled)
        ));
    }

    #[test]
    fn prefix_is_per_component() {
        let f = fixture();
        let b = HostBackend::new(vec![f.allowed.clone()]);
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
        let b = HostBackend::new(vec![f.allowed.clone()]);
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
        let b = HostBackend::new(vec![f.allowed.clone()]);
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
        let b = HostBackend::new(vec![f.allowed.clone()]);
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
}
