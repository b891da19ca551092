//! A directory rename queued (`upload=async`): it returns once the table
//! has the new name and the change is journalled, before any request. The
//! directory's content is then read from one listing of the old prefix
//! into the table (what is below the new name waits for that), and the
//! whole new tree is served from the table; each object is read from its
//! old key until the background rename has copied it. The copies and
//! deletes are one journalled change (`NsOp::RenameDir`, sent by `ops`,
//! which lists the old prefix itself), which never deletes a source before
//! its copy exists and can be repeated after a crash. Another host sees the
//! rename as it lands.

use super::super::layout::{self, Kind};
use super::super::oplog::NsOp;
use super::super::transfer::{RetryPolicy, retry};
use super::inodes::InodeTable;
use super::ops::NotJournalled;
use super::{Inner, ObjectFs};
use crate::store::{ObjectMeta, StoreResult};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

/// Between rounds of listing a renamed directory's old prefix while the
/// store fails.
const FILL_PAUSE: Duration = Duration::from_secs(2);

impl ObjectFs {
    /// Renames directory `src` to `new_name` in `new_parent`, at prefix
    /// `new` (from `old`), replacing the empty directory `dst`; once the
    /// table has the new name and the change is queued, its content being
    /// read in the background, what the journal could not record (see
    /// [`ObjectFs::settle`]). None, with nothing done, when a change below
    /// `old` is queued (it must reach the store first).
    pub(super) fn queue_dir_rename(
        &self,
        src: u64,
        to: (u64, &str),
        dst: Option<u64>,
        (old, new): (&str, &str),
    ) -> Option<NotJournalled> {
        let mut st = self.lock();
        if self.ops().pending_under(old) {
            return None;
        }
        let mut missed = NotJournalled::none();
        if let Some(d) = dst {
            // Sent before the rename, which copies the old marker there.
            let key = self.dir_prefix_of(&st, d);
            missed = self.queue_op(&mut st, NsOp::Delete { key }, None);
        }
        // Files known below read from their old keys until copied; the
        // directories known below are whole in the table once it is filled.
        let below = st.descendants(src);
        let moving: Vec<(u64, String)> = below
            .iter()
            .filter(|i| {
                st.nodes
                    .get(i)
                    .is_some_and(|n| n.remote && n.kind != Kind::Dir)
            })
            .map(|&i| (i, self.key_of(&st, i)))
            .collect();
        self.move_dir_node(&mut st, src, to, dst);
        st.pinned.insert(src, new.to_string());
        for i in below {
            if st.nodes.get(&i).is_some_and(|n| n.kind == Kind::Dir) {
                st.pinned.insert(i, new.to_string());
            }
        }
        for (ino, key) in moving {
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.source = Some(key.clone());
                st.sourced.insert(key, ino);
            }
        }
        st.filling.insert(src);
        self.ops().hold(old);
        let marker = st.nodes.get(&src).map(|n| layout::encode(&n.posix()));
        let op = NsOp::RenameDir {
            from: old.to_string(),
            to: new.to_string(),
            names: Vec::new(),
            marker,
            list: true,
        };
        let missed = missed.and(self.queue_op(&mut st, op, Some(src)));
        drop(st);
        // (Weak: a mount going away while the store fails stops it.)
        let weak = Arc::downgrade(&self.inner);
        let (old, new) = (old.to_string(), new.to_string());
        self.inner.rt.spawn(async move {
            let Some((fs, objects)) = list_renamed(weak, &old).await else {
                return;
            };
            let _ = tokio::task::spawn_blocking(move || fs.fill_renamed(src, &old, &new, &objects))
                .await;
        });
        Some(missed)
    }

    /// Every object below `prefix` (the whole subtree, every page), each
    /// page retried by `policy`: what a directory rename moves.
    pub(super) async fn list_subtree(
        &self,
        prefix: &str,
        policy: RetryPolicy,
    ) -> StoreResult<Vec<ObjectMeta>> {
        let store = &self.inner.store;
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let page = retry(policy, "list", || {
                store.list(prefix, None, token.clone(), 1000)
            })
            .await?;
            objects.extend(page.objects);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(objects),
            }
        }
    }

    /// Puts the listing `objects` of renamed directory `src`'s old prefix
    /// `old` into the table below it, then lets what waited for it go on
    /// (and the rename be sent).
    fn fill_renamed(&self, src: u64, old: &str, new: &str, objects: &[ObjectMeta]) {
        let mut st = self.lock();
        // (Waited for by everything below it, so it is still there.)
        let objects = if st.nodes.contains_key(&src) {
            objects
        } else {
            &[]
        };
        for o in objects {
            let name = &o.key[old.len()..];
            self.fill_from_listing(&mut st, src, name, o, new);
        }
        st.filling.remove(&src);
        self.ops().release(old);
        drop(st);
        self.inner.changed.notify_all();
        self.inner.ops_notify.notify_one();
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
        posix.ctime = posix.mtime;
        let ino = st.new_node(parent, name, Kind::Dir, posix);
        let n = st.nodes.get_mut(&ino).expect("just added");
        n.remote = true;
        ino
    }
}

/// Every object below `old`, listed until the store answers (or the mount
/// is gone).
async fn list_renamed(weak: Weak<Inner>, old: &str) -> Option<(ObjectFs, Vec<ObjectMeta>)> {
    loop {
        let fs = ObjectFs {
            inner: weak.upgrade()?,
        };
        match fs.list_subtree(old, RetryPolicy::INTERACTIVE).await {
            Ok(objects) => return Some((fs, objects)),
            Err(e) => {
                fs.note_store_result(Err(&e));
                drop(fs);
                tokio::time::sleep(FILL_PAUSE).await;
            }
        }
    }
}
