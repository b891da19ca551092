//! Gives back what an idle mount process keeps resident without needing it:
//! the pages of code and read-only data that start-up and past bursts of
//! work touched, and the allocator's free memory. Code pages are not
//! freed: they stay in the page cache, shared by every mount process, and
//! a later use maps them again from there (a minor fault, no disk read).
//! What goes is this process's claim on them, which is what its resident
//! size (RSS) counts; 200 idle mounts each counting the whole binary's
//! start-up code made the plugin look many times its real size.
//!
//! Which mappings are safe is pure logic ([`releasable`], from the text of
//! `/proc/self/smaps`): file-backed, private, never writable, and without a
//! single page the process changed (a relocated page would be dropped back
//! to the file's bytes). [`release`] applies it.

use std::time::Duration;

/// How long after start-up, and then between two releases, the mount
/// process gives back its idle pages.
pub const RELEASE_EVERY: Duration = Duration::from_secs(30);

/// A range of the address space: start and length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    pub len: usize,
}

/// The mappings in `smaps` (the text of `/proc/self/smaps`) whose resident
/// pages may be dropped and mapped again from their file unchanged:
/// file-backed (a path, not `[heap]` or an anonymous mapping), private and
/// not writable, with no anonymous (changed) page, and resident at all.
pub fn releasable(smaps: &str) -> Vec<Range> {
    let mut out = Vec::new();
    let mut current: Option<(Range, bool)> = None;
    let mut rss_kb = 0u64;
    let mut anon_kb = 0u64;
    let flush = |current: &Option<(Range, bool)>, rss: u64, anon: u64, out: &mut Vec<Range>| {
        if let Some((range, true)) = current
            && rss > 0
            && anon == 0
        {
            out.push(*range);
        }
    };
    for line in smaps.lines() {
        if let Some((range, candidate)) = mapping_header(line) {
            flush(&current, rss_kb, anon_kb, &mut out);
            current = Some((range, candidate));
            rss_kb = 0;
            anon_kb = 0;
        } else if let Some(v) = field_kb(line, "Rss:") {
            rss_kb = v;
        } else if let Some(v) = field_kb(line, "Anonymous:") {
            anon_kb = v;
        }
    }
    flush(&current, rss_kb, anon_kb, &mut out);
    out
}

/// A mapping's header line (`start-end perms offset dev inode [path]`):
/// its range, and whether its kind allows a release.
fn mapping_header(line: &str) -> Option<(Range, bool)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    if perms.len() != 4 || end <= start {
        return None;
    }
    let (_offset, _dev, _inode) = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.next().unwrap_or("");
    let p = perms.as_bytes();
    let candidate = p[0] == b'r' && p[1] == b'-' && p[3] == b'p' && path.starts_with('/');
    Some((
        Range {
            start,
            len: end - start,
        },
        candidate,
    ))
}

/// The value in kB of a `NAME: N kB` line, when `line` is that field.
fn field_kb(line: &str, name: &str) -> Option<u64> {
    line.strip_prefix(name)?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Gives back the releasable mappings' pages and the allocator's free
/// memory. Best effort: a failure leaves the memory resident, nothing else.
pub fn release() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for range in releasable(&smaps) {
        // SAFETY: the range is a private, read-only file mapping of this
        // process in which no page was changed (no anonymous page), so
        // MADV_DONTNEED only unmaps pages whose next use maps the same
        // bytes from the file again; nothing can write to it in between.
        unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.len,
                libc::MADV_DONTNEED,
            );
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the
    // kernel; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Releases every [`RELEASE_EVERY`], for as long as the runtime runs.
pub async fn release_periodically() {
    loop {
        tokio::time::sleep(RELEASE_EVERY).await;
        tokio::task::spawn_blocking(release).await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d000000000-55d000400000 r--p 00000000 fd:01 123 /usr/bin/osv
Size:               4096 kB
Rss:                1024 kB
Anonymous:             0 kB
55d000400000-55d001000000 r-xp 00400000 fd:01 123 /usr/bin/osv
Size:              12288 kB
Rss:                8000 kB
Anonymous:             0 kB
55d001000000-55d001100000 r--p 01000000 fd:01 123 /usr/bin/osv
Size:               1024 kB
Rss:                1024 kB
Anonymous:           900 kB
55d001100000-55d001200000 rw-p 01100000 fd:01 123 /usr/bin/osv
Size:               1024 kB
Rss:                  12 kB
Anonymous:            12 kB
55d002000000-55d002100000 rw-p 00000000 00:00 0 [heap]
Size:               1024 kB
Rss:                 600 kB
Anonymous:           600 kB
7f0000000000-7f0000100000 r--s 00000000 fd:01 9 /var/cache/shared
Size:               1024 kB
Rss:                 100 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 r-xp 00000000 fd:01 7 /usr/lib/libc.so.6
Size:               1024 kB
Rss:                   0 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 r-xp 00000000 00:00 0 [vdso]
Size:               1024 kB
Rss:                   4 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 r-xp 00000000 fd:01 7 /usr/lib/libm.so.6
Size:               1024 kB
Rss:                  64 kB
Anonymous:             0 kB
";

    #[test]
    fn only_unchanged_private_read_only_file_mappings_are_released() {
        assert_eq!(
            releasable(SMAPS),
            vec![
                // The binary's read-only data and code.
                Range {
                    start: 0x55d0_0000_0000,
                    len: 0x40_0000
                },
                Range {
                    start: 0x55d0_0040_0000,
                    len: 0xc0_0000
                },
                // libm's code. Not: relocated read-only data (anonymous
                // pages), writable data, the heap, a shared mapping, a
                // mapping with nothing resident, the vdso.
                Range {
                    start: 0x7f00_0030_0000,
                    len: 0x10_0000
                },
            ]
        );
    }

    #[test]
    fn garbage_yields_nothing() {
        assert!(releasable("").is_empty());
        assert!(releasable("not smaps\nRss: 12 kB\n").is_empty());
        assert!(releasable("5-4 r--p 0 fd:01 1 /x\nRss: 4 kB\nAnonymous: 0 kB\n").is_empty());
    }

    /// Resident kB of `/proc/self/smaps` summed over file-backed,
    /// read-only private mappings.
    fn resident_read_only_kb() -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut total = 0;
        let mut counting = false;
        for line in smaps.lines() {
            if let Some((_, candidate)) = mapping_header(line) {
                counting = candidate;
            } else if let Some(kb) = field_kb(line, "Rss:")
                && counting
            {
                total += kb;
            }
        }
        total
    }

    #[test]
    fn this_process_gives_back_its_code_pages_and_runs_on() {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        assert!(
            !releasable(&smaps).is_empty(),
            "no releasable mapping in this test binary"
        );
        let before = resident_read_only_kb();
        release();
        let after = resident_read_only_kb();
        // Other tests run on in other threads and map some pages again;
        // most of what this binary touched stays given back.
        assert!(
            after < before / 2,
            "resident read-only file pages: {before} kB before, {after} kB after"
        );
        // The code runs on, mapped again from the file.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
