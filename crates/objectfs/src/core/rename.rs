//! A directory rename queued (`upload=async`): the table takes the new
//! name at once and holds the directory's whole content, read from one
//! listing of the old prefix, so the new tree is served immediately; each
//! object is read from its old key until the background rename has copied
//! it. The copies and deletes are one journalled change (`NsOp::RenameDir`,
//! sent by `ops`), which never deletes a source before its copy exists and
//! can be repeated after a crash. Another host sees the rename as it lands.

use super::super::layout::{self, Kind};
use super::super::oplog::NsOp;
use super::ObjectFs;
use super::inodes::InodeTable;
use crate::store::ObjectMeta;
use std::time::{Instant, SystemTime};

impl ObjectFs {
    /// Renames directory `src` (whose objects under `old` are `objects`)
    /// to `new_name` in `new_parent`, at prefix `new`, replacing the empty
    /// directory `dst`; true once the table has it and the change is
    /// journalled. False, with nothing done, when a change below `old` was
    /// queued meanwhile (the listing may miss it): send it and list again.
    pub(super) fn queue_dir_rename(
        &self,
        src: u64,
        to: (u64, &str),
        dst: Option<u64>,
        (old, new): (&str, &str),
        objects: &[ObjectMeta],
    ) -> bool {
        let mut st = self.lock();
        if self.ops().pending_under(old) {
            return false;
        }
        if let Some(d) = dst {
            // Sent before the rename, which copies the old marker there.
            let key = self.dir_prefix_of(&st, d);
            self.queue_op(&mut st, NsOp::Delete { key }, None);
        }
        self.move_dir_node(&mut st, src, to, dst);
        st.pinned.insert(src, new.to_string());
        let mut names = Vec::with_capacity(objects.len());
        for o in objects {
            let name = &o.key[old.len()..];
            names.push(name.to_string());
            self.fill_from_listing(&mut st, src, name, o, new);
        }
        let marker = match names.iter().any(|n| n.is_empty()) {
            true => None,
            false => st.nodes.get(&src).map(|n| layout::encode(&n.posix())),
        };
        let op = NsOp::RenameDir {
            from: old.to_string(),
            to: new.to_string(),
            names,
            marker,
        };
        self.queue_op(&mut st, op, Some(src));
        true
    }

    /// Puts object `o`, at `name` below renamed directory `top`, into the
    /// table: its directories (pinned: complete until the rename is done)
    /// and its own node, which reads from the old key meanwhile.
    fn fill_from_listing(
        &self,
        st: &mut InodeTable,
        top: u64,
        name: &str,
        o: &ObjectMeta,
        new: &str,
    ) {
        let (path, is_marker) = match name.strip_suffix('/') {
            Some(dir) => (dir, true),
            None => (name, false),
        };
        let mut parent = top;
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let leaf = if is_marker || name.is_empty() {
            None
        } else {
            parts.pop()
        };
        for part in parts {
            parent = self.dir_child(st, parent, part);
            st.pinned.insert(parent, new.to_string());
        }
        let ino = match leaf {
            // The directory's own marker: its attributes are there.
            None => parent,
            Some(file) => match st.children.get(&(parent, file.to_string())) {
                Some(&ino) => ino,
                None => {
                    let defaults = self.opts().defaults;
                    let posix =
                        layout::decode(&Default::default(), Kind::File, o.last_modified, &defaults);
                    let ino = st.new_node(parent, file, Kind::File, posix);
                    let n = st.nodes.get_mut(&ino).expect("just added");
                    n.size = o.size;
                    n.etag = o.etag.clone();
                    n.remote = true;
                    n.meta_known = false;
                    ino
                }
            },
        };
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.source = Some(o.key.clone());
            if is_marker || name.is_empty() {
                n.validated = Instant::now() - self.opts().metadata_ttl;
            }
        }
        st.sourced.insert(o.key.clone(), ino);
    }

    /// The directory `name` in `parent`, added (with the default
    /// attributes of a directory without a marker) when the table has none.
    fn dir_child(&self, st: &mut InodeTable, parent: u64, name: &str) -> u64 {
        if let Some(&ino) = st.children.get(&(parent, name.to_string())) {
            return ino;
        }
        let defaults = self.opts().defaults;
        let mut posix = layout::decode(&Default::default(), Kind::Dir, None, &defaults);
        posix.mtime = SystemTime::now();
        let ino = st.new_node(parent, name, Kind::Dir, posix);
        let n = st.nodes.get_mut(&ino).expect("just added");
        n.remote = true;
        ino
    }
}
