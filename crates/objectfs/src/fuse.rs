//! The fuser adapter: translates kernel requests into [`ObjectFs`] calls
//! and their results into replies, counting each request by operation
//! (`metrics`). No filesystem logic lives here.

use super::iomode::{IoMode, IoModes};
use super::metrics::{FuseOp, Metrics};
use super::{Attr, Errno, FsResult, Kind, ObjectFs, OpenFlags as FsOpenFlags, Opened, SetAttr};
use fuser::{
    BackingId, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

pub struct FuseAdapter {
    fs: ObjectFs,
    ttl: Duration,
    io: Mutex<OpenFiles>,
    /// Counts every request by operation.
    metrics: Arc<Metrics>,
}

/// The kernel's I/O mode of every open file, and the backing file
/// registered for each inode in passthrough mode (the kernel wants the same
/// one for all of an inode's passthrough opens).
#[derive(Default)]
struct OpenFiles {
    /// The kernel offered passthrough at init, and registering a backing
    /// file has not failed yet.
    passthrough: bool,
    modes: IoModes,
    backing: std::collections::HashMap<u64, BackingId>,
}

impl FuseAdapter {
    pub fn new(fs: ObjectFs, ttl: Duration, metrics: Arc<Metrics>) -> Self {
        FuseAdapter {
            fs,
            ttl,
            io: Mutex::new(OpenFiles::default()),
            metrics,
        }
    }

    fn io(&self) -> MutexGuard<'_, OpenFiles> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers the open of `ino` the core made, in the mode `iomode`
    /// chooses: passthrough to its local copy when it has one and the
    /// kernel allows it, or when the inode is in passthrough mode already.
    /// (`caller`: the opener's uid; a writer in passthrough mode writes
    /// where the mount does not see it, so set-ID bits go at its open.)
    fn reply_open(&self, reply: ReplyOpen, ino: u64, r: FsResult<Opened>, caller: u32) {
        let o = match r {
            Ok(o) => o,
            Err(e) => return reply.error(errno(e)),
        };
        let mut io = self.io();
        let local = o.local.as_ref().filter(|_| io.passthrough);
        let mut mode = io.modes.choose(ino, local.is_some());
        if mode == IoMode::Passthrough && !io.backing.contains_key(&ino) {
            let registered = match local {
                Some(file) => reply.open_backing(file.as_ref()),
                None => Err(std::io::Error::from_raw_os_error(libc::EIO)),
            };
            match registered {
                Ok(id) => {
                    io.backing.insert(ino, id);
                }
                Err(e) => {
                    // No second try: the cause (no CAP_SYS_ADMIN, a cache
                    // directory on a stacked filesystem) does not go away.
                    tracing::warn!(error = %e, "the kernel refused a local copy for passthrough reads; reads go through this process");
                    io.passthrough = false;
                    mode = IoMode::Cached;
                }
            }
        }
        if mode == IoMode::Passthrough
            && let Err(e) = self.fs.writes_directly(o.fh, caller != 0)
        {
            drop(io);
            let _ = self.fs.release(o.fh);
            return reply.error(errno(e));
        }
        io.modes.opened(o.fh, ino, mode);
        let fh = FileHandle(o.fh);
        let flush = self.flush_flag(o.fh);
        match mode {
            IoMode::Passthrough => {
                self.fs.lend_to_kernel(ino);
                reply.opened_passthrough(fh, flush, &io.backing[&ino])
            }
            IoMode::Cached if o.keep_cache => {
                reply.opened(fh, flush | FopenFlags::FOPEN_KEEP_CACHE)
            }
            IoMode::Cached => reply.opened(fh, flush),
        }
    }

    /// `FOPEN_NOFLUSH` for an open whose closes need not reach the mount.
    fn flush_flag(&self, fh: u64) -> FopenFlags {
        match self.fs.flush_needed(fh) {
            true => FopenFlags::empty(),
            false => FopenFlags::FOPEN_NOFLUSH,
        }
    }

    /// Forgets open file `fh`; the inode's backing file goes with its last
    /// passthrough open.
    fn forget_open(&self, fh: u64) {
        let mut io = self.io();
        if let Some(ino) = io.modes.released(fh) {
            io.backing.remove(&ino);
        }
    }
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e)
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm as u16,
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 1024 * 1024,
        flags: 0,
    }
}

/// Attributes for a readdirplus entry sent without a node (id 0).
fn unlinked_attr(kind: Kind) -> FileAttr {
    let mut attr = file_attr(&Attr {
        ino: 0,
        kind,
        size: 0,
        perm: 0,
        uid: 0,
        gid: 0,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        confirmed: None,
    });
    attr.ino = INodeNo(0);
    attr
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

/// Names from the kernel are bytes; object keys are UTF-8.
fn name_str(name: &OsStr) -> FsResult<&str> {
    std::str::from_utf8(name.as_bytes()).map_err(|_| libc::EINVAL)
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// How long the kernel may keep attributes `a` (and the name they came
/// with): what is left of the metadata TTL `ttl` since the store confirmed
/// them, so that another host's change shows within one TTL of the mount's
/// own look, not two.
fn kernel_ttl(ttl: Duration, a: &Attr) -> Duration {
    match a.confirmed {
        Some(at) => ttl.saturating_sub(at.elapsed()),
        None => ttl,
    }
}

impl FuseAdapter {
    fn entry(&self, reply: ReplyEntry, r: FsResult<Attr>) {
        match r {
            Ok(a) => reply.entry(&kernel_ttl(self.ttl, &a), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

fn data(reply: ReplyData, r: FsResult<bytes::Bytes>) {
    match r {
        Ok(d) => reply.data(&d),
        Err(e) => reply.error(errno(e)),
    }
}

/// A directory's open.
fn opened(reply: ReplyOpen, r: FsResult<u64>) {
    match r {
        Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
        Err(e) => reply.error(errno(e)),
    }
}

fn empty(reply: ReplyEmpty, r: FsResult<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl Filesystem for FuseAdapter {
    /// readdirplus hands the kernel every entry's attributes with the
    /// listing, so `ls -l` needs no LOOKUP per entry afterwards.
    /// Passthrough needs a stacking depth of 1: local copies must be on a
    /// filesystem that is not itself stacked (overlayfs), and this mount
    /// can still be stacked under one.
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS) {
            tracing::info!(
                ?missing,
                "the kernel has no readdirplus; plain readdir it is"
            );
        }
        // Clearing set-user/group-ID bits is ours (write, truncate, chown):
        // the kernel then sends no GETATTR before every chown.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV) {
            tracing::info!(?missing, "the kernel clears set-ID bits itself");
        }
        let passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        if !passthrough {
            tracing::info!("the kernel has no FUSE passthrough; reads go through this process");
        }
        self.io().passthrough = passthrough;
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.metrics.fuse(FuseOp::Lookup);
        let r = name_str(name).and_then(|n| self.fs.lookup(parent.0, n));
        if r == Err(libc::ENOENT) {
            // A miss the kernel may keep (a negative entry) for what is
            // left of the mount's own TTL on it: git's and Python's
            // repeated looks for absent files cost no request.
            let ttl = name_str(name).map_or(Duration::ZERO, |n| self.fs.miss_ttl(parent.0, n));
            if !ttl.is_zero() {
                reply.entry(&ttl, &unlinked_attr(Kind::File), Generation(0));
                return;
            }
        }
        self.entry(reply, r);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.metrics.fuse(FuseOp::Forget);
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.metrics.fuse(FuseOp::Getattr);
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&kernel_ttl(self.ttl, &a), &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.metrics.fuse(FuseOp::Setattr);
        let set = SetAttr {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            mtime: mtime.map(time_of),
            kill_set_ids: uid.is_some() || gid.is_some() || (size.is_some() && req.uid() != 0),
        };
        match self.fs.setattr(ino.0, set) {
            Ok(a) => reply.attr(&kernel_ttl(self.ttl, &a), &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.metrics.fuse(FuseOp::Readlink);
        data(reply, self.fs.readlink(ino.0));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.metrics.fuse(FuseOp::Mknod);
        // Only regular files have an object form.
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(errno(libc::EPERM));
        }
        let r = name_str(name).and_then(|n| {
            let (attr, fh) = self
                .fs
                .create(parent.0, n, mode, req.uid(), req.gid(), true)?;
            self.fs.flush(fh)?;
            self.fs.release(fh)?;
            Ok(attr)
        });
        self.entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.metrics.fuse(FuseOp::Mkdir);
        let r = name_str(name).and_then(|n| self.fs.mkdir(parent.0, n, mode, req.uid(), req.gid()));
        self.entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.metrics.fuse(FuseOp::Unlink);
        empty(
            reply,
            name_str(name).and_then(|n| self.fs.unlink(parent.0, n)),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.metrics.fuse(FuseOp::Rmdir);
        empty(
            reply,
            name_str(name).and_then(|n| self.fs.rmdir(parent.0, n)),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.metrics.fuse(FuseOp::Symlink);
        let r = name_str(link_name).and_then(|n| {
            self.fs.symlink(
                parent.0,
                n,
                target.as_os_str().as_bytes(),
                req.uid(),
                req.gid(),
            )
        });
        self.entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.metrics.fuse(FuseOp::Rename);
        let r = name_str(name).and_then(|n| {
            let nn = name_str(newname)?;
            self.fs.rename(parent.0, n, newparent.0, nn, flags.bits())
        });
        empty(reply, r);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        self.metrics.fuse(FuseOp::Link);
        // Object storage has no hard links (docs/SEMANTICS.md).
        reply.error(errno(libc::EPERM));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.metrics.fuse(FuseOp::Open);
        let r = self
            .fs
            .open_file_by(ino.0, FsOpenFlags::from_libc(flags.0), req.pid());
        self.reply_open(reply, ino.0, r, req.uid());
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.metrics.fuse(FuseOp::Read);
        data(reply, self.fs.read(fh.0, offset, size));
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.metrics.fuse(FuseOp::Write);
        // Root keeps set-ID bits on write (CAP_FSETID); anyone else not.
        match self.fs.write_by(fh.0, offset, data, req.uid() == 0) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.metrics.fuse(FuseOp::Flush);
        empty(reply, self.fs.flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.metrics.fuse(FuseOp::Release);
        self.forget_open(fh.0);
        empty(reply, self.fs.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.metrics.fuse(FuseOp::Fsync);
        empty(reply, self.fs.fsync(fh.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.metrics.fuse(FuseOp::Opendir);
        opened(reply, self.fs.opendir(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.metrics.fuse(FuseOp::Readdir);
        match self.fs.readdir(fh.0, offset as usize) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    let next = offset + i as u64 + 1;
                    if reply.add(INodeNo(e.ino), next, file_type(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.metrics.fuse(FuseOp::Readdirplus);
        match self.fs.readdir_plus(fh.0, offset as usize) {
            Ok(entries) => {
                for (i, p) in entries.iter().enumerate() {
                    let next = offset + i as u64 + 1;
                    let e = &p.entry;
                    // The kernel never links "." and "..".
                    let linked = e.name != "." && e.name != "..";
                    let (attr, ttl) = match &p.attr {
                        Some(a) if p.exact && linked => (file_attr(a), kernel_ttl(self.ttl, a)),
                        Some(a) => (file_attr(a), Duration::ZERO),
                        // Node id 0: listed without being linked; the name
                        // is looked up when used.
                        None => (unlinked_attr(e.kind), Duration::ZERO),
                    };
                    let ino = attr.ino;
                    if reply.add(ino, next, &e.name, &ttl, &attr, Generation(0)) {
                        break;
                    }
                    // Every linked entry counts as a lookup the kernel
                    // will forget.
                    if linked && ino.0 != 0 {
                        self.fs.note_lookup(ino.0);
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.metrics.fuse(FuseOp::Releasedir);
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.metrics.fuse(FuseOp::Fsyncdir);
        empty(reply, self.fs.fsyncdir());
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        self.metrics.fuse(FuseOp::Getxattr);
        // No extended attributes on objects; ENOSYS makes the kernel stop
        // asking (instead of one request per exec for security.capability).
        reply.error(errno(libc::ENOSYS));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        self.metrics.fuse(FuseOp::Listxattr);
        reply.error(errno(libc::ENOSYS));
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        self.metrics.fuse(FuseOp::Ioctl);
        // No ioctl is supported (file flags, FIEMAP, …). ENOTTY is what the
        // caller got before too (the kernel turns the library default's
        // ENOSYS into it), minus the library's warning line per call: a
        // venv or git run wrote about 1,500 of them into the mount's log.
        reply.error(errno(libc::ENOTTY));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.metrics.fuse(FuseOp::Statfs);
        // Buckets have no fixed size: report a large, mostly free volume so
        // tools that check free space proceed.
        let blocks = 1u64 << 40; // 1 PiB in 1 KiB blocks
        reply.statfs(blocks, blocks, blocks, 1 << 32, 1 << 32, 1024, 1024, 1024);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.metrics.fuse(FuseOp::Create);
        let exclusive = flags & libc::O_EXCL != 0;
        let r = name_str(name).and_then(|n| {
            self.fs
                .create(parent.0, n, mode, req.uid(), req.gid(), exclusive)
        });
        let (a, fh) = match r {
            Ok(created) => created,
            Err(e) => return reply.error(errno(e)),
        };
        // An existing file opened by a non-exclusive create may have
        // passthrough readers: then this open is passthrough too.
        let mut io = self.io();
        let mode = io.modes.choose(a.ino, false);
        if mode == IoMode::Passthrough
            && let Err(e) = self.fs.writes_directly(fh, req.uid() != 0)
        {
            drop(io);
            let _ = self.fs.release(fh);
            return reply.error(errno(e));
        }
        io.modes.opened(fh, a.ino, mode);
        let flush = self.flush_flag(fh);
        let (ttl, attr, fh) = (&kernel_ttl(self.ttl, &a), &file_attr(&a), FileHandle(fh));
        match mode {
            IoMode::Passthrough => {
                self.fs.lend_to_kernel(a.ino);
                let id = &io.backing[&a.ino];
                reply.created_passthrough(ttl, attr, Generation(0), fh, flush, id)
            }
            IoMode::Cached => reply.created(ttl, attr, Generation(0), fh, flush),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn attr(confirmed: Option<Instant>) -> Attr {
        Attr {
            ino: 2,
            kind: Kind::File,
            size: 0,
            perm: 0o644,
            uid: 0,
            gid: 0,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            confirmed,
        }
    }

    /// Attributes the store confirmed 3 s ago, with a 4 s TTL, may be kept
    /// for what is left (about 1 s), not a whole TTL more; local state for
    /// the whole TTL; confirmed longer ago than the TTL, not at all.
    #[test]
    fn the_kernel_keeps_attributes_for_what_is_left_of_the_ttl() {
        let ttl = Duration::from_secs(4);
        let three_s_ago = Instant::now() - Duration::from_secs(3);
        let left = kernel_ttl(ttl, &attr(Some(three_s_ago)));
        assert!(left <= Duration::from_secs(1), "{left:?}");
        assert!(left > Duration::from_millis(500), "{left:?}");
        assert_eq!(kernel_ttl(ttl, &attr(None)), ttl);
        let long_ago = Instant::now() - Duration::from_secs(10);
        assert_eq!(kernel_ttl(ttl, &attr(Some(long_ago))), Duration::ZERO);
    }
}
