//! The kernel's mount table and the two mount operations the plugin uses.
//!
//! Parsing `/proc/self/mountinfo` is pure and unit-tested; the syscalls are
//! thin wrappers that turn errno into sentences a person can act on.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Mount points listed in a mountinfo text (field 5), unescaped.
pub fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .collect()
}

/// The kernel escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether something is mounted exactly at `path` in this mount namespace.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mount_points(&text).iter().any(|p| p == path))
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Bind-mounts the directory open as `source` onto `target`, read-only when
/// asked.
///
/// The source is an already opened and checked directory (O_PATH): the
/// kernel mounts exactly that inode, so a symlink swapped in after the check
/// cannot redirect the mount.
///
/// Read-only is set on the new mount *before* it is attached. Under a
/// shared mount (the managed plugin's propagated mount) the copies Docker
/// sees on the host are made when the mount is attached and keep the flags
/// it has then; a remount afterwards would change the plugin's copy alone,
/// leaving the host's, the one containers get, writable.
pub fn bind_mount(source: BorrowedFd<'_>, target: &Path, read_only: bool) -> io::Result<()> {
    match bind_mount_detached(source, target, read_only) {
        // Kernels before 5.12 lack the new mount API.
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            bind_mount_remount(source, target, read_only)
        }
        other => other,
    }
}

/// `struct mount_attr` of mount_setattr(2) (not in the libc crate).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// open_tree(OPEN_TREE_CLONE) → mount_setattr(RDONLY) → move_mount: the
/// mount is complete, flags included, when it appears at `target`.
fn bind_mount_detached(source: BorrowedFd<'_>, target: &Path, read_only: bool) -> io::Result<()> {
    let empty = c"";
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: valid fd and C string; the result is a new fd we own.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            empty.as_ptr(),
            flags,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, valid descriptor.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
    if read_only {
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: valid fd, C string and attr of the size passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_EMPTY_PATH as libc::c_uint,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let dst = cstring(target)?;
    // SAFETY: valid fds and C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The classic way, through `/proc/self/fd/N` and a remount for read-only.
fn bind_mount_remount(source: BorrowedFd<'_>, target: &Path, read_only: bool) -> io::Result<()> {
    let src = cstring(Path::new(&format!("/proc/self/fd/{}", source.as_raw_fd())))?;
    let dst = cstring(target)?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if read_only {
        // A bind mount inherits the source's flags; read-only needs a remount
        // of the new mount alone. NOSUID/NODEV stay as they were.
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        // SAFETY: as above.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                dst.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            let _ = unmount(target);
            return Err(err);
        }
    }
    Ok(())
}

/// Detaches whatever is mounted at `target` (lazily, so a process still
/// inside it does not make Unmount fail); not mounted is success. One
/// implementation, shared with objectfs's own unmount.
pub use objectfs::mount::detach as unmount;

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 0:31 / /var/lib/osv/mounts/a\\040b rw shared:2 - ext4 /dev/sda1 rw
37 22 0:32 /data /mnt/back\\134slash rw - ext4 /dev/sda1 rw
";

    #[test]
    fn parses_and_unescapes_mount_points() {
        let points = parse_mount_points(SAMPLE);
        assert_eq!(
            points,
            vec![
                PathBuf::from("/"),
                PathBuf::from("/var/lib/osv/mounts/a b"),
                PathBuf::from("/mnt/back\\slash"),
            ]
        );
    }

    #[test]
    fn partial_escapes_are_left_alone() {
        assert_eq!(unescape_octal("a\\04"), "a\\04");
        assert_eq!(unescape_octal("a\\x41"), "a\\x41");
        assert_eq!(unescape_octal("\\011"), "\t");
    }

    #[test]
    fn root_is_a_mount_point_and_a_temp_dir_is_not() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()).unwrap());
    }
}
