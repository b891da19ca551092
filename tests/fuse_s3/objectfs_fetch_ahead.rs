//! A new mount reading, in name order, a directory another client wrote
//! (`diff -r`, `grep -r` on a fresh host): past the first two files, the
//! next small files are fetched ahead of the reader, each object is still
//! read once, and every byte read is the object's.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use std::fs;
use std::time::{Duration, Instant};

/// GetObjects `m` has sent, from its status file once it counts at least
/// `at_least` (or after 15 s, whatever it says then).
fn gets_sent(m: &Mounted, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = m.status()["metrics"]["storeRequests"]["GetObject"]["ok"]
            .as_u64()
            .unwrap_or(0);
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn files_read_in_name_order_are_fetched_ahead_once_each() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("fetchahead");
    let bucket = Bucket::new(&config);
    let files: Vec<(String, Vec<u8>)> = (0..48)
        .map(|i| {
            let data: Vec<u8> = (0..(900 + i * 53)).map(|j| (j * 7 + i) as u8).collect();
            (format!("f{i:02}.txt"), data)
        })
        .collect();
    for (name, data) in &files {
        bucket.put(&format!("d/{name}"), data);
    }
    let m = Mounted::start(base.path(), &config, "", &["--upload", "async"]);
    let mut names: Vec<String> = fs::read_dir(m.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), files.len());
    for (name, data) in &files[..2] {
        assert_eq!(&fs::read(m.path(&format!("d/{name}"))).unwrap(), data);
    }
    // The two opens were a walk: the next 32 come without being opened.
    assert_eq!(gets_sent(&m, 2 + 32), 2 + 32, "fetched ahead");
    for (name, data) in &files[2..] {
        assert_eq!(
            &fs::read(m.path(&format!("d/{name}"))).unwrap(),
            data,
            "{name}"
        );
    }
    assert_eq!(
        gets_sent(&m, files.len() as u64),
        files.len() as u64,
        "one GET per object, none twice"
    );
}
