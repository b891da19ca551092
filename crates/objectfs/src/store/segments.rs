//! The body of a GET kept as the HTTP client received it: a list of
//! buffers, never joined into one.
//!
//! Joining a 4 MiB read-ahead chunk costs a fresh 4 MiB allocation (page
//! faults and zeroing of every page, then an munmap) plus a copy of every
//! byte; on the 2-core bench machine that was about a quarter of the mount
//! process's CPU during a sequential read. A FUSE reply is at most one
//! read request (128 KiB by default), so it is served as a slice of one
//! buffer when it falls inside one, and copied only when it straddles two.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, Default)]
pub struct Segments {
    parts: Vec<Bytes>,
    /// `starts[i]` is the offset of `parts[i]`'s first byte.
    starts: Vec<usize>,
    len: usize,
}

impl Segments {
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let mut s = Segments::default();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            s.starts.push(s.len);
            s.len += part.len();
            s.parts.push(part);
        }
        s
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `[from, to)`, clamped to the end: no copy when they lie in
    /// one buffer.
    pub fn slice(&self, from: usize, to: usize) -> Bytes {
        let to = to.min(self.len);
        if from >= to {
            return Bytes::new();
        }
        let first = self.part_at(from);
        let last = self.part_at(to - 1);
        if first == last {
            let base = self.starts[first];
            return self.parts[first].slice(from - base..to - base);
        }
        let mut out = BytesMut::with_capacity(to - from);
        self.copy_into(from, to, &mut out);
        out.freeze()
    }

    /// Appends bytes `[from, to)`, clamped to the end, to `out`.
    pub fn copy_into(&self, from: usize, to: usize, out: &mut BytesMut) {
        let to = to.min(self.len);
        if from >= to {
            return;
        }
        for i in self.part_at(from)..=self.part_at(to - 1) {
            let base = self.starts[i];
            let part = &self.parts[i];
            let a = from.max(base) - base;
            let b = to.min(base + part.len()) - base;
            out.extend_from_slice(&part[a..b]);
        }
    }

    /// Index of the part holding byte `offset` (`offset < len`).
    fn part_at(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset) - 1
    }
}

impl From<Bytes> for Segments {
    fn from(b: Bytes) -> Self {
        Segments::new([b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(data: &[u8], cuts: &[usize]) -> Segments {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain([data.len()]) {
            parts.push(Bytes::copy_from_slice(&data[at..c]));
            at = c;
        }
        Segments::new(parts)
    }

    #[test]
    fn a_slice_inside_one_part_shares_its_buffer() {
        let a = Bytes::from(vec![1u8; 100]);
        let s = Segments::new([a.clone(), Bytes::from(vec![2u8; 100])]);
        let got = s.slice(10, 90);
        assert_eq!(got.as_ptr(), a[10..].as_ptr());
        assert_eq!(s.slice(90, 110)[..], [[1u8; 10], [2u8; 10]].concat()[..]);
        assert!(s.slice(200, 300).is_empty());
        assert_eq!(s.slice(150, 1000).len(), 50);
    }

    proptest! {
        #[test]
        fn slices_equal_the_joined_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            from in 0usize..700,
            len in 0usize..700,
        ) {
            let s = split(&data, &cuts);
            prop_assert_eq!(s.len(), data.len());
            let to = from + len;
            let want = if from < data.len() { &data[from..to.min(data.len())] } else { &[][..] };
            prop_assert_eq!(&s.slice(from, to)[..], want);
            let mut out = BytesMut::new();
            s.copy_into(from, to, &mut out);
            prop_assert_eq!(&out[..], want);
        }
    }
}
