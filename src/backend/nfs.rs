//! `type=nfs`: an NFS export, mounted by the kernel with mount(2).
//!
//! No shell and no mount helper: the server name is resolved here and
//! handed to the kernel as `addr=`, the options were validated against a
//! fixed list at Create, and the source `server:/path` is built from
//! checked parts. The kernel's NFS client must be there: this is detected
//! and refused with a sentence, since many container hosts lack it.

use crate::spec::NfsSpec;
use std::ffi::CString;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    #[error(
        "type=nfs needs the kernel's NFS client, which this host does not have (/proc/filesystems lists no nfs and no nfs kernel module is installed); load it with `modprobe nfs` or use another volume type"
    )]
    NoKernelSupport,
    #[error("the NFS server {server:?} cannot be resolved: {reason}")]
    Resolve { server: String, reason: String },
    #[error("the NFS export {source_spec} could not be mounted at {target:?}: {error}")]
    Mount {
        source_spec: String,
        target: PathBuf,
        error: io::Error,
    },
}

/// What mount(2) gets for one NFS volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsMountRequest {
    /// `server:/path`, IPv6 servers in brackets.
    pub source: String,
    pub fstype: &'static str,
    /// The validated options, then `addr=` (the kernel does no DNS).
    pub data: String,
    pub read_only: bool,
}

/// The mount(2) arguments for `spec` with the server resolved to `addr`.
pub fn mount_request(spec: &NfsSpec, addr: IpAddr, read_only: bool) -> NfsMountRequest {
    let mut data: Vec<String> = spec.options.clone();
    data.push(format!("addr={addr}"));
    NfsMountRequest {
        source: format!("{}:{}", spec.server, spec.path),
        fstype: "nfs",
        data: data.join(","),
        read_only: read_only || spec.options.iter().any(|o| o == "ro"),
    }
}

/// Whether the kernel can mount NFS: the filesystem is registered
/// (`/proc/filesystems`), or a module for it is installed (the kernel
/// loads it on the first mount).
pub fn kernel_supports_nfs(proc_filesystems: &str, module_lists: &[String]) -> bool {
    let registered = proc_filesystems
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .any(|fs| fs == "nfs" || fs == "nfs4");
    registered
        || module_lists
            .iter()
            .any(|list| list.lines().any(|l| l.contains("/fs/nfs/nfs.ko")))
}

fn host_supports_nfs() -> bool {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    // SAFETY: an all-zero utsname is a valid out-parameter for uname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    let release = if unsafe { libc::uname(&mut uts) } == 0 {
        // SAFETY: uname NUL-terminates release.
        unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    let modules = Path::new("/lib/modules").join(release);
    let lists: Vec<String> = ["modules.dep", "modules.builtin"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(modules.join(f)).ok())
        .collect();
    kernel_supports_nfs(&filesystems, &lists)
}

fn resolve(server: &str) -> Result<IpAddr, NfsError> {
    let host = server.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let err = |reason: String| NfsError::Resolve {
        server: server.into(),
        reason,
    };
    (host, 2049)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| err("no address".into()))
}

#[derive(Debug, Default)]
pub struct NfsBackend;

impl NfsBackend {
    /// At Create: a host without the NFS client is told so at once.
    pub fn validate(&self) -> Result<(), NfsError> {
        if !host_supports_nfs() {
            return Err(NfsError::NoKernelSupport);
        }
        Ok(())
    }

    pub fn attach(&self, spec: &NfsSpec, target: &Path, read_only: bool) -> Result<(), NfsError> {
        self.validate()?;
        let request = mount_request(spec, resolve(&spec.server)?, read_only);
        let failed = |error: io::Error| NfsError::Mount {
            source_spec: request.source.clone(),
            target: target.into(),
            error,
        };
        std::fs::create_dir_all(target).map_err(failed)?;
        let cstr = |s: &str| {
            CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL"))
        };
        let source = cstr(&request.source).map_err(failed)?;
        let fstype = cstr(request.fstype).map_err(failed)?;
        let data = cstr(&request.data).map_err(failed)?;
        let dst = cstr(&target.to_string_lossy()).map_err(failed)?;
        let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
        if request.read_only {
            flags |= libc::MS_RDONLY;
        }
        // SAFETY: valid NUL-terminated strings for the duration of the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                dst.as_ptr(),
                fstype.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(server: &str, options: &[&str]) -> NfsSpec {
        NfsSpec {
            server: server.into(),
            path: "/exports/team".into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn mount_arguments_carry_the_checked_parts_and_the_address() {
        let r = mount_request(
            &spec("nfs.example.com", &["nfsvers=4.1", "hard"]),
            "10.0.0.5".parse().unwrap(),
            false,
        );
        assert_eq!(
            r,
            NfsMountRequest {
                source: "nfs.example.com:/exports/team".into(),
                fstype: "nfs",
                data: "nfsvers=4.1,hard,addr=10.0.0.5".into(),
                read_only: false,
            }
        );
        let r = mount_request(&spec("[fd00::1]", &[]), "fd00::1".parse().unwrap(), true);
        assert_eq!(r.source, "[fd00::1]:/exports/team");
        assert_eq!(r.data, "addr=fd00::1");
        assert!(r.read_only);
        // `ro` among the options also makes the mount read-only.
        assert!(mount_request(&spec("s", &["ro"]), "1.2.3.4".parse().unwrap(), false).read_only);
    }

    #[test]
    fn kernel_support_is_read_from_filesystems_or_modules() {
        let without = "nodev\tsysfs\nnodev\tproc\n\text4\nnodev\tfuse\n";
        assert!(!kernel_supports_nfs(without, &[]));
        assert!(kernel_supports_nfs(&format!("{without}nodev\tnfs\n"), &[]));
        assert!(kernel_supports_nfs(&format!("{without}nodev\tnfs4\n"), &[]));
        let dep = "kernel/fs/nfs/nfs.ko.xz: kernel/net/sunrpc/sunrpc.ko.xz\n".to_string();
        assert!(kernel_supports_nfs(without, &[dep]));
        // nfsd (the server) is not the client.
        assert!(!kernel_supports_nfs(
            "nodev\tnfsd\n",
            &["kernel/fs/nfsd/nfsd.ko\n".into()]
        ));
    }

    #[test]
    fn literal_addresses_need_no_lookup() {
        assert_eq!(
            resolve("10.1.2.3").unwrap(),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolve("[fd00::1]").unwrap(),
            "fd00::1".parse::<IpAddr>().unwrap()
        );
        assert!(resolve("localhost").unwrap().is_loopback());
    }
}
