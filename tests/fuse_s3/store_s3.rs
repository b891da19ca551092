//! S3Store against a real S3 API (moto_server, see tests/common/s3server.rs).

use crate::common;

use bytes::Bytes;
use common::s3server::{free_port, moto};
use objectfs::store::s3::{S3Config, S3Store};
use objectfs::store::{MIN_PART_SIZE, ObjectStore, PutMeta, StoreError};
use std::collections::BTreeMap;

/// Keys that need escaping somewhere: in the URL path, the copy source
/// header, or the listing XML.
const ODD_KEYS: &[&str] = &[
    "odd/with space.txt",
    "odd/unicode-日本語-ü.txt",
    "odd/plus+sign",
    "odd/percent%20not-a-space%",
    "odd/all of them +%ü ~*'()&=;:,?#[]@!$",
];

fn store(name: &str) -> S3Store {
    S3Store::new(&moto().new_bucket(name)).unwrap()
}

fn meta(content_type: &str, pairs: &[(&str, &str)]) -> PutMeta {
    PutMeta {
        content_type: Some(content_type.to_string()),
        metadata: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// Every key under `prefix`, following continuation tokens.
async fn list_all(
    s: &S3Store,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: i32,
) -> (Vec<String>, Vec<String>, usize) {
    let (mut keys, mut prefixes, mut pages) = (Vec::new(), Vec::new(), 0);
    let mut token = None;
    loop {
        let page = s.list(prefix, delimiter, token, max_keys).await.unwrap();
        pages += 1;
        assert!(pages < 10_000, "listing does not end");
        keys.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.common_prefixes);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return (keys, prefixes, pages),
        }
    }
}

#[tokio::test]
async fn head_missing_is_none() {
    require!(Moto);
    let s = store("head-missing");
    assert_eq!(s.head("nope").await.unwrap(), None);
    assert_eq!(s.head("dir/nope/").await.unwrap(), None);
}

#[tokio::test]
async fn head_returns_size_type_and_lowercased_metadata() {
    require!(Moto);
    let s = store("head-meta");
    let m = meta(
        "text/plain",
        &[
            ("mode", "33188"),
            ("MiXeD-Case", "Value Kept"),
            ("UID", "1000"),
        ],
    );
    s.put("f.txt", Bytes::from_static(b"hello"), &m)
        .await
        .unwrap();
    let h = s.head("f.txt").await.unwrap().expect("object exists");
    assert_eq!(h.key, "f.txt");
    assert_eq!(h.size, 5);
    assert_eq!(h.content_type.as_deref(), Some("text/plain"));
    assert!(h.etag.is_some());
    assert!(h.last_modified.is_some());
    let want: BTreeMap<String, String> = [
        ("mode", "33188"),
        ("mixed-case", "Value Kept"),
        ("uid", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(h.metadata, want);
}

#[tokio::test]
async fn get_range_middle_end_and_whole() {
    require!(Moto);
    let s = store("get-range");
    let data = pattern(10_000, 1);
    s.put("obj", data.clone(), &PutMeta::default())
        .await
        .unwrap();
    assert_eq!(
        s.get_range("obj", 100, 50).await.unwrap(),
        data.slice(100..150)
    );
    assert_eq!(s.get_range("obj", 0, 10_000).await.unwrap(), data);
    assert_eq!(s.get_range("obj", 0, 1 << 30).await.unwrap(), data);
    // Running over the end: shorter.
    assert_eq!(
        s.get_range("obj", 9_990, 100).await.unwrap(),
        data.slice(9_990..)
    );
    // Starting at or after the end: empty.
    assert!(s.get_range("obj", 10_000, 10).await.unwrap().is_empty());
    assert!(s.get_range("obj", 50_000, 10).await.unwrap().is_empty());
    assert!(s.get_range("obj", 5, 0).await.unwrap().is_empty());
    // An empty object.
    s.put("empty", Bytes::new(), &PutMeta::default())
        .await
        .unwrap();
    assert!(s.get_range("empty", 0, 4096).await.unwrap().is_empty());
    // A missing object.
    assert!(matches!(
        s.get_range("missing", 0, 10).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

/// One GET says what a HEAD says, and brings the body unless it is
/// larger than asked for.
#[tokio::test]
async fn get_whole_is_a_head_and_the_body_in_one() {
    require!(Moto);
    let s = store("get-whole");
    let body = pattern(70_000, 3);
    s.put(
        "f",
        body.clone(),
        &meta("text/plain", &[("mode", "33188"), ("UiD", "7")]),
    )
    .await
    .unwrap();
    let head = s.head("f").await.unwrap().unwrap();
    let (got, data) = s.get_whole("f", 70_000).await.unwrap().unwrap();
    assert_eq!(got, head);
    assert_eq!(data.as_deref(), Some(&body[..]));
    let (got, data) = s.get_whole("f", 69_999).await.unwrap().unwrap();
    assert_eq!(got, head);
    assert_eq!(data, None, "larger than asked for: the body is not read");
    assert_eq!(s.get_whole("nope", 10).await.unwrap(), None);
    // The connection the unread body was on is not reused half read.
    let (_, data) = s.get_whole("f", 1 << 20).await.unwrap().unwrap();
    assert_eq!(data.as_deref(), Some(&body[..]));
}

#[tokio::test]
async fn list_with_delimiter_and_small_pages() {
    require!(Moto);
    let s = store("list-delim");
    for key in [
        "a.txt",
        "dir/",
        "dir/b.txt",
        "dir/sub/c.txt",
        "dir/sub/d.txt",
        "dir2/e.txt",
        "z.txt",
    ] {
        s.put(key, Bytes::from_static(b"x"), &PutMeta::default())
            .await
            .unwrap();
    }
    let root = s.list("", Some("/"), None, 1000).await.unwrap();
    let keys: Vec<_> = root.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["a.txt", "z.txt"]);
    assert_eq!(root.common_prefixes, ["dir/", "dir2/"]);
    assert_eq!(root.next_token, None);
    assert!(
        root.objects
            .iter()
            .all(|o| o.size == 1 && o.metadata.is_empty())
    );

    let dir = s.list("dir/", Some("/"), None, 1000).await.unwrap();
    let keys: Vec<_> = dir.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["dir/", "dir/b.txt"]);
    assert_eq!(dir.common_prefixes, ["dir/sub/"]);

    // No delimiter: everything under the prefix, two keys a page.
    let (keys, prefixes, pages) = list_all(&s, "dir", None, 2).await;
    assert_eq!(
        keys,
        [
            "dir/",
            "dir/b.txt",
            "dir/sub/c.txt",
            "dir/sub/d.txt",
            "dir2/e.txt"
        ]
    );
    assert!(prefixes.is_empty());
    assert_eq!(pages, 3);

    // With a delimiter, prefixes count towards the page size.
    let (keys, prefixes, _) = list_all(&s, "", Some("/"), 1).await;
    assert_eq!(keys, ["a.txt", "z.txt"]);
    assert_eq!(prefixes, ["dir/", "dir2/"]);
}

#[tokio::test]
async fn list_more_than_one_default_page() {
    require!(Moto);
    let s = store("list-1100");
    // 1,100 keys, some in parallel so moto (Python) is not the bottleneck.
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..10 {
        let s = s.clone();
        tasks.spawn(async move {
            for i in (chunk * 110)..(chunk * 110 + 110) {
                s.put(&format!("many/k{i:05}"), Bytes::new(), &PutMeta::default())
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let first = s.list("many/", Some("/"), None, 1000).await.unwrap();
    assert_eq!(first.objects.len(), 1000);
    let token = first.next_token.expect("a second page");
    let second = s.list("many/", Some("/"), Some(token), 1000).await.unwrap();
    assert_eq!(second.objects.len(), 100);
    assert_eq!(second.next_token, None);
    let all: Vec<String> = first
        .objects
        .into_iter()
        .chain(second.objects)
        .map(|o| o.key)
        .collect();
    let want: Vec<String> = (0..1100).map(|i| format!("many/k{i:05}")).collect();
    assert_eq!(all, want);

    // max_keys 0 leaves the server's default (1,000).
    let default = s.list("many/", None, None, 0).await.unwrap();
    assert_eq!(default.objects.len(), 1000);
    assert!(default.next_token.is_some());

    // Small pages over the same keys.
    let (keys, _, pages) = list_all(&s, "many/", None, 300).await;
    assert_eq!(keys, want);
    assert_eq!(pages, 4);
}

#[tokio::test]
async fn multipart_upload_and_boundary_read() {
    require!(Moto);
    let s = store("multipart");
    let part = MIN_PART_SIZE as usize;
    let (p1, p2, p3) = (pattern(part, 1), pattern(part, 2), pattern(1234, 3));
    let m = meta("application/octet-stream", &[("mode", "33188")]);
    let id = s.create_multipart("big/file", &m).await.unwrap();
    // Parts uploaded out of order and completed unsorted.
    let e3 = s.upload_part("big/file", &id, 3, p3.clone()).await.unwrap();
    let e1 = s.upload_part("big/file", &id, 1, p1.clone()).await.unwrap();
    let e2 = s.upload_part("big/file", &id, 2, p2.clone()).await.unwrap();
    assert_eq!(
        s.head("big/file").await.unwrap(),
        None,
        "not visible before complete"
    );
    s.complete_multipart("big/file", &id, vec![(2, e2), (1, e1), (3, e3)])
        .await
        .unwrap();
    let h = s.head("big/file").await.unwrap().unwrap();
    assert_eq!(h.size, (2 * part + 1234) as u64);
    assert_eq!(h.metadata.get("mode").map(String::as_str), Some("33188"));
    assert_eq!(h.content_type.as_deref(), Some("application/octet-stream"));
    // Across the first boundary and into the last part.
    let got = s.get_range("big/file", part as u64 - 10, 20).await.unwrap();
    let mut want = p1.slice(part - 10..).to_vec();
    want.extend_from_slice(&p2[..10]);
    assert_eq!(got, want);
    let got = s
        .get_range("big/file", 2 * part as u64 - 5, 100)
        .await
        .unwrap();
    let mut want = p2.slice(part - 5..).to_vec();
    want.extend_from_slice(&p3[..95]);
    assert_eq!(got, want);
    let tail = s
        .get_range("big/file", 2 * part as u64 + 1000, 1000)
        .await
        .unwrap();
    assert_eq!(tail, p3.slice(1000..));
}

#[tokio::test]
async fn abort_multipart_discards_the_upload() {
    require!(Moto);
    let s = store("abort");
    let id = s
        .create_multipart("gone", &PutMeta::default())
        .await
        .unwrap();
    let etag = s
        .upload_part("gone", &id, 1, pattern(1000, 9))
        .await
        .unwrap();
    s.abort_multipart("gone", &id).await.unwrap();
    assert_eq!(s.head("gone").await.unwrap(), None);
    // The upload no longer exists. (moto 5.2 answers UploadPart and
    // CompleteMultipartUpload on an aborted upload with a 500, so only a
    // second abort is checked: NoSuchUpload.)
    let _ = etag;
    assert!(matches!(
        s.abort_multipart("gone", &id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        s.abort_multipart("gone", "no-such-upload-id")
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

#[tokio::test]
async fn delete_existing_and_missing() {
    require!(Moto);
    let s = store("delete");
    s.put("d", Bytes::from_static(b"1"), &PutMeta::default())
        .await
        .unwrap();
    s.delete("d").await.unwrap();
    assert_eq!(s.head("d").await.unwrap(), None);
    s.delete("d").await.unwrap();
    s.delete("never/existed").await.unwrap();
}

/// DeleteObjects against moto: existing, missing and odd keys, more than
/// 1,000 of them (two requests), and only the named keys are gone. (moto
/// does not check Content-MD5; the wire tests of store::s3 do.)
#[tokio::test]
async fn delete_many_existing_missing_and_odd_keys() {
    require!(Moto);
    let s = store("delete-many");
    let mut keys: Vec<String> = ODD_KEYS.iter().map(|k| k.to_string()).collect();
    keys.extend((0..1005).map(|i| format!("many/{i:04}")));
    for key in &keys {
        s.put(key, Bytes::from_static(b"1"), &PutMeta::default())
            .await
            .unwrap();
    }
    s.put("kept", Bytes::from_static(b"1"), &PutMeta::default())
        .await
        .unwrap();
    keys.push("never/existed".to_string());
    s.delete_many(&keys).await.unwrap();
    let (left, _, _) = list_all(&s, "", None, 1000).await;
    assert_eq!(left, ["kept"]);
    s.delete_many(&keys).await.unwrap();
}

#[tokio::test]
async fn copy_keeps_or_replaces_metadata() {
    require!(Moto);
    let s = store("copy");
    let data = pattern(3000, 4);
    s.put(
        "src",
        data.clone(),
        &meta("text/x-src", &[("mode", "33188"), ("mtime", "1")]),
    )
    .await
    .unwrap();

    let etag = s.copy("src", None, "kept", None).await.unwrap();
    let h = s.head("kept").await.unwrap().unwrap();
    // The copy's ETag as a HEAD shows it (the mount keeps it as the node's).
    assert!(etag.is_some() && etag == h.etag, "{etag:?} {:?}", h.etag);
    assert_eq!(h.content_type.as_deref(), Some("text/x-src"));
    assert_eq!(h.metadata.get("mode").map(String::as_str), Some("33188"));
    assert_eq!(h.metadata.get("mtime").map(String::as_str), Some("1"));
    assert_eq!(s.get_range("kept", 0, 1 << 20).await.unwrap(), data);

    let new = meta("text/x-new", &[("mode", "33261")]);
    s.copy("src", None, "replaced", Some(&new)).await.unwrap();
    let h = s.head("replaced").await.unwrap().unwrap();
    assert_eq!(h.content_type.as_deref(), Some("text/x-new"));
    assert_eq!(h.metadata, new.metadata);
    assert_eq!(s.get_range("replaced", 0, 1 << 20).await.unwrap(), data);

    // The size known from a listing: the same copy, without asking it.
    s.copy("src", Some(3000), "sized", None).await.unwrap();
    let h = s.head("sized").await.unwrap().unwrap();
    assert_eq!(h.metadata.get("mode").map(String::as_str), Some("33188"));
    assert_eq!(s.get_range("sized", 0, 1 << 20).await.unwrap(), data);

    // In place, as chmod does: replace the metadata of the object itself.
    s.copy("src", None, "src", Some(&new)).await.unwrap();
    assert_eq!(s.head("src").await.unwrap().unwrap().metadata, new.metadata);

    assert!(matches!(
        s.copy("missing", None, "x", None).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

#[tokio::test]
async fn multipart_copy_for_large_objects() {
    require!(Moto);
    // The 5 GiB limit lowered to 10 MiB so UploadPartCopy runs here.
    let s = store("copy-multipart").with_multipart_copy(10 << 20, MIN_PART_SIZE);
    let data = pattern((11 << 20) + 77, 5);
    let src = "odd/big source+ü";
    s.put(
        src,
        data.clone(),
        &meta("video/x-big", &[("mode", "33188")]),
    )
    .await
    .unwrap();
    let etag = s.copy(src, None, "odd/big copy%", None).await.unwrap();
    let h = s.head("odd/big copy%").await.unwrap().unwrap();
    assert!(etag.is_some() && etag == h.etag, "{etag:?} {:?}", h.etag);
    assert_eq!(h.size, data.len() as u64);
    assert_eq!(h.content_type.as_deref(), Some("video/x-big"));
    assert_eq!(h.metadata.get("mode").map(String::as_str), Some("33188"));
    assert_eq!(
        s.get_range("odd/big copy%", 0, 1 << 30).await.unwrap(),
        data
    );

    let new = meta("video/x-new", &[("uid", "7")]);
    s.copy(src, None, "replaced", Some(&new)).await.unwrap();
    let h = s.head("replaced").await.unwrap().unwrap();
    assert_eq!(h.metadata, new.metadata);
    assert_eq!(h.content_type.as_deref(), Some("video/x-new"));
    let boundary = s.get_range("replaced", MIN_PART_SIZE - 3, 6).await.unwrap();
    let b = MIN_PART_SIZE as usize;
    assert_eq!(boundary, data.slice(b - 3..b + 3));
    // Small objects still take CopyObject.
    s.put("small", Bytes::from_static(b"s"), &PutMeta::default())
        .await
        .unwrap();
    s.copy("small", None, "small2", None).await.unwrap();
    assert_eq!(
        s.get_range("small2", 0, 10).await.unwrap(),
        Bytes::from_static(b"s")
    );
}

#[tokio::test]
async fn odd_keys_through_put_head_get_copy_list() {
    require!(Moto);
    let s = store("odd-keys");
    for (i, key) in ODD_KEYS.iter().enumerate() {
        let body = Bytes::from(format!("body {i}"));
        s.put(
            key,
            body.clone(),
            &meta("text/plain", &[("n", &i.to_string())]),
        )
        .await
        .unwrap();
        let h = s
            .head(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key:?}"));
        assert_eq!(h.key, *key);
        assert_eq!(h.metadata.get("n"), Some(&i.to_string()));
        assert_eq!(s.get_range(key, 0, 100).await.unwrap(), body, "{key:?}");
        let copy = format!("copies/{key}");
        s.copy(key, None, &copy, None).await.unwrap();
        assert_eq!(s.get_range(&copy, 0, 100).await.unwrap(), body, "{copy:?}");
        let replaced = format!("replaced/{key}");
        s.copy(key, None, &replaced, Some(&meta("a/b", &[("k", "v")])))
            .await
            .unwrap();
        let h = s.head(&replaced).await.unwrap().unwrap();
        assert_eq!(h.metadata.get("k").map(String::as_str), Some("v"));
    }
    let mut want: Vec<String> = ODD_KEYS.iter().map(|k| k.to_string()).collect();
    want.sort();
    let (keys, _, _) = list_all(&s, "odd/", None, 2).await;
    assert_eq!(keys, want);
    let (keys, _, _) = list_all(&s, "copies/odd/", None, 1000).await;
    let want_copies: Vec<String> = want.iter().map(|k| format!("copies/{k}")).collect();
    assert_eq!(keys, want_copies);
    // Odd characters in the prefix and in common prefixes.
    s.put("dir +%ü/sub dir+/f", Bytes::new(), &PutMeta::default())
        .await
        .unwrap();
    let page = s.list("dir +%ü/", Some("/"), None, 1000).await.unwrap();
    assert_eq!(page.common_prefixes, ["dir +%ü/sub dir+/"]);
    let page = s
        .list("dir +%ü/sub dir+/", Some("/"), None, 1000)
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.objects[0].key, "dir +%ü/sub dir+/f");
    for key in ODD_KEYS {
        s.delete(key).await.unwrap();
        assert_eq!(s.head(key).await.unwrap(), None);
    }
}

/// Without keys requests go unsigned: moto serves the signed GET of a
/// private object and refuses the same GET unsigned.
#[tokio::test]
async fn anonymous_requests_are_unsigned() {
    require!(Moto);
    let config = moto().new_bucket("anon");
    let signed = S3Store::new(&config).unwrap();
    signed
        .put("a", Bytes::from_static(b"data"), &PutMeta::default())
        .await
        .unwrap();
    assert_eq!(
        signed.get_range("a", 0, 10).await.unwrap(),
        Bytes::from_static(b"data")
    );
    let anonymous = S3Store::new(&S3Config {
        access_key_id: None,
        access_key_secret: None,
        ..config
    })
    .unwrap();
    match anonymous.get_range("a", 0, 10).await {
        Err(
            StoreError::AccessDenied { message: text, .. }
            | StoreError::Permanent { message: text, .. },
        ) => assert!(text.contains("403"), "{text}"),
        other => panic!("expected a 403, got {other:?}"),
    }
}

const SECRET: &str = "sEcReT-Key-9f8e7d6c5b4a-do-not-leak";
const TOKEN: &str = "session-TOKEN-0a1b2c3d4e5f-do-not-leak";

fn assert_no_secret(err: &StoreError) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(SECRET), "secret in error: {text}");
    assert!(!text.contains(TOKEN), "session token in error: {text}");
}

#[tokio::test]
async fn missing_bucket_is_permanent() {
    require!(Moto);
    let mut config = moto().config_for("osv-no-such-bucket");
    config.access_key_secret = Some(SECRET.to_string());
    config.session_token = Some(TOKEN.to_string());
    let s = S3Store::new(&config).unwrap();
    let errors = [
        s.get_range("k", 0, 10).await.unwrap_err(),
        s.put("k", Bytes::from_static(b"x"), &PutMeta::default())
            .await
            .unwrap_err(),
        s.list("", Some("/"), None, 1000).await.unwrap_err(),
        s.create_multipart("k", &PutMeta::default())
            .await
            .unwrap_err(),
    ];
    for err in &errors {
        match err {
            StoreError::Permanent { message: text, .. } => {
                assert!(text.contains("NoSuchBucket"), "{text}");
                assert!(text.contains("osv-no-such-bucket"), "{text}");
            }
            other => panic!("expected Permanent, got {other:?}"),
        }
        assert_no_secret(err);
    }
    assert!(!format!("{config:?}").contains(SECRET));
    assert!(!format!("{config:?}").contains(TOKEN));
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let config = S3Config {
        bucket: "b".into(),
        endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
        region: Some("us-east-1".into()),
        access_key_id: Some("AKIDEXAMPLE".into()),
        access_key_secret: Some(SECRET.into()),
        session_token: Some(TOKEN.into()),
        path_style: None,
        kind: None,
        credential_source: None,
    };
    let s = S3Store::new(&config).unwrap();
    let errors = [
        s.head("k").await.unwrap_err(),
        s.get_range("k", 0, 1).await.unwrap_err(),
        s.put("k", Bytes::from_static(b"x"), &PutMeta::default())
            .await
            .unwrap_err(),
        s.list("", None, None, 10).await.unwrap_err(),
        s.delete("k").await.unwrap_err(),
    ];
    for err in &errors {
        assert!(err.is_transient(), "expected Transient, got {err:?}");
        assert_no_secret(err);
    }
}
