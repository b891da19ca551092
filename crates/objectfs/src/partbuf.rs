//! Buffers for upload bodies read back from staged files, reused while
//! uploads run. A part's 8 MiB comes from mmap (so that freeing it gives it
//! back to the kernel), and a fresh one is faulted in page by page, zeroed
//! by the kernel and unmapped again for every part: about a tenth of the
//! mount's CPU during a large upload. A body's buffer returns here when the
//! request that sent it lets the body go (or at once, when the read
//! failed); the pool empties itself whenever no body is out, so an idle
//! mount holds none of it. Kept and lent buffers together stay within twice
//! the upload budget.

use bytes::Bytes;
use std::sync::Mutex;

/// Bodies smaller than this are ordinary heap allocations, not pooled.
const POOLED_MIN: usize = 1 << 20;

/// Buffers kept for reuse, in bytes, at most (the upload memory budget:
/// the bodies out are already bounded by it).
const KEPT_MAX: usize = crate::transfer::UPLOAD_BUFFER as usize;

#[derive(Default)]
struct Pool {
    free: Vec<Vec<u8>>,
    /// Pooled bodies handed out and not returned yet.
    out: usize,
}

impl Pool {
    /// A kept buffer for a body of `len` bytes, if one fits; counts the
    /// body out either way.
    fn lend(&mut self, len: usize) -> Option<Vec<u8>> {
        self.out += 1;
        let fit = self
            .free
            .iter()
            .position(|b| b.capacity() >= len && b.capacity() <= 2 * len)?;
        Some(self.free.swap_remove(fit))
    }

    /// A body's buffer is back: kept while other bodies are out (within
    /// the bound); everything is let go when none is. Returns what to free.
    fn back(&mut self, buf: Vec<u8>) -> Vec<Vec<u8>> {
        self.out = self.out.saturating_sub(1);
        if self.out == 0 {
            let mut all = std::mem::take(&mut self.free);
            all.push(buf);
            return all;
        }
        let kept: usize = self.free.iter().map(Vec::capacity).sum();
        if kept + buf.capacity() <= KEPT_MAX {
            self.free.push(buf);
            Vec::new()
        } else {
            vec![buf]
        }
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    out: 0,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A buffer of `len` bytes to read a body into (its old content, if any,
/// is to be overwritten whole). It goes back to the pool when dropped, or
/// when the body made of it is ([`Buffer::into_body`]).
pub fn take(len: usize) -> Buffer {
    if len < POOLED_MIN {
        return Buffer {
            buf: vec![0; len],
            pooled: false,
        };
    }
    let reused = pool().lend(len);
    let buf = match reused {
        Some(mut buf) => {
            buf.resize(len, 0);
            buf
        }
        None => {
            // Whole MiB, so that the next body of about this size fits it.
            let mut buf = Vec::with_capacity(len.next_multiple_of(POOLED_MIN));
            buf.resize(len, 0);
            buf
        }
    };
    Buffer { buf, pooled: true }
}

/// A body's buffer, lent from the pool (or not, when small).
pub struct Buffer {
    buf: Vec<u8>,
    pooled: bool,
}

impl Buffer {
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The body: when the last holder drops it, the buffer goes back to
    /// the pool.
    pub fn into_body(mut self) -> Bytes {
        let buf = std::mem::take(&mut self.buf);
        if std::mem::take(&mut self.pooled) {
            Bytes::from_owner(Returned(buf))
        } else {
            Bytes::from(buf)
        }
    }
}

impl Drop for Buffer {
    /// Not made into a body (the read failed): back to the pool at once.
    fn drop(&mut self) {
        if self.pooled {
            drop(Returned(std::mem::take(&mut self.buf)));
        }
    }
}

/// A pooled buffer lent out as a body.
struct Returned(Vec<u8>);

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        let freed = pool().back(std::mem::take(&mut self.0));
        drop(freed); // outside the lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_while_bodies_are_out_and_go_when_none_is() {
        let mut p = Pool::default();
        let len = 2 * POOLED_MIN;
        assert!(p.lend(len).is_none(), "nothing kept yet");
        let a = vec![0u8; len];
        assert!(p.lend(len).is_none());
        let b = vec![0u8; len];
        let b_ptr = b.as_ptr();
        assert!(p.back(b).is_empty(), "`a` is still out: kept");
        let again = p.lend(len).expect("the kept buffer");
        assert_eq!(again.as_ptr(), b_ptr);
        assert!(p.lend(4 * len).is_none(), "too small for a larger body");
        assert!(p.back(vec![0u8; 4 * len]).is_empty());
        assert!(p.lend(len).is_none(), "too large for a smaller body");
        assert_eq!(p.back(vec![0u8; len]).len(), 0);
        assert_eq!(p.back(again).len(), 0);
        let freed = p.back(a);
        assert_eq!(freed.len(), 4, "the last body back: everything goes");
        assert_eq!((p.out, p.free.len()), (0, 0));
    }

    #[test]
    fn the_pool_keeps_no_more_than_the_budget() {
        let mut p = Pool::default();
        let len = KEPT_MAX / 2;
        for _ in 0..4 {
            p.lend(len);
        }
        assert!(p.back(vec![0u8; len]).is_empty());
        assert!(p.back(vec![0u8; len]).is_empty());
        assert_eq!(p.back(vec![0u8; len]).len(), 1, "over the budget: freed");
    }

    #[test]
    fn bodies_hold_what_was_read_and_unused_buffers_go_back() {
        let mut buf = take(POOLED_MIN + 5);
        buf.as_mut_slice().fill(7);
        let body = buf.into_body();
        assert_eq!(body.len(), POOLED_MIN + 5);
        assert!(body.iter().all(|b| *b == 7));
        assert_eq!(take(100).into_body().len(), 100, "small bodies too");
    }
}
