//! Wire tests of conditional writes, what crash recovery uploads with: the
//! headers a PutObject and a CompleteMultipartUpload carry for "no object
//! at the key" (`If-None-Match: *`, and on OSS also
//! `x-oss-forbid-overwrite: true`) and for "the object this mount last
//! saw" (`If-Match: ETAG`), all of them signed; plain writes carry none;
//! and each way a store refuses such a write (412, S3's and OSS's 409s, no
//! object for `If-Match`) is a `PreconditionFailed`, after which a
//! multipart upload is aborted. The replies are canned: this is the test
//! of the refusal path against stores whose answers the test servers do
//! not reproduce (OSS's 409, S3's 409 under concurrent writers).

use super::*;
use crate::store::WriteCondition;
use crate::transfer::{RetryPolicy, SINGLE_PUT_MAX, upload_file_if};

fn etag_reply() -> String {
    reply("200 OK", &[("ETag", "\"new\"")], "")
}

/// An S3 error answer with `status`, `code` and a message.
fn error(status: &str, code: &str) -> String {
    reply(
        status,
        &[("Content-Type", "application/xml")],
        &format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Error><Code>{code}</Code><Message>refused by the test</Message></Error>"
        ),
    )
}

/// Whether `name` is among the headers the request's signature covers.
fn signs(request: &Request, name: &str) -> bool {
    let auth = request.header("authorization").unwrap_or("");
    auth.split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .is_some_and(|list| list.split(';').any(|h| h == name))
}

/// The conditional headers of `request`: If-None-Match, If-Match,
/// x-oss-forbid-overwrite.
fn conditions(request: &Request) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        request.header("if-none-match"),
        request.header("if-match"),
        request.header("x-oss-forbid-overwrite"),
    )
}

const S3: &str = "http://storage.example.com";
const OSS: &str = "http://oss-cn-hangzhou.aliyuncs.com";

/// A PutObject for each condition, on S3 and on OSS: the headers sent,
/// and that each is signed.
#[tokio::test]
async fn conditional_puts_carry_their_headers() {
    let etag = WriteCondition::Etag("\"seen\"".into());
    for (endpoint, condition, want) in [
        (S3, None, (None, None, None)),
        (S3, Some(&WriteCondition::Absent), (Some("*"), None, None)),
        (S3, Some(&etag), (None, Some("\"seen\""), None)),
        (OSS, None, (None, None, None)),
        (
            OSS,
            Some(&WriteCondition::Absent),
            (Some("*"), None, Some("true")),
        ),
        (OSS, Some(&etag), (None, Some("\"seen\""), None)),
    ] {
        let what = format!("{endpoint} {condition:?}");
        let (requests, _, out) =
            capture(signed(endpoint), vec![etag_reply()], async |s: &S3Store| {
                let (body, meta) = (Bytes::from_static(b"data"), PutMeta::default());
                match condition {
                    Some(c) => s.put_if("f.txt", body, &meta, c).await,
                    None => s.put("f.txt", body, &meta).await,
                }
            })
            .await;
        assert_eq!(out, Ok(Some("\"new\"".into())), "{what}");
        let [request] = &requests[..] else {
            panic!("{what}: {requests:?}")
        };
        assert!(
            request.line().starts_with("PUT /f.txt?x-id=PutObject "),
            "{what}: {}",
            request.head
        );
        assert_eq!(conditions(request), want, "{what}: {}", request.head);
        for (name, value) in [
            ("if-none-match", want.0),
            ("if-match", want.1),
            ("x-oss-forbid-overwrite", want.2),
        ] {
            if value.is_some() {
                assert!(signs(request, name), "{what}: {name} unsigned");
            }
        }
    }
}

/// The completion of a multipart upload carries the condition; the
/// initiation and the parts do not.
#[tokio::test]
async fn conditional_completions_carry_their_headers() {
    let done = || {
        xml(
            "<CompleteMultipartUploadResult><Bucket>mybucket</Bucket><Key>big</Key>\
             <ETag>\"new-1\"</ETag></CompleteMultipartUploadResult>",
        )
    };
    let etag = WriteCondition::Etag("\"seen-2\"".into());
    for (endpoint, condition, want) in [
        (S3, Some(&WriteCondition::Absent), (Some("*"), None, None)),
        (S3, Some(&etag), (None, Some("\"seen-2\""), None)),
        (
            OSS,
            Some(&WriteCondition::Absent),
            (Some("*"), None, Some("true")),
        ),
        (S3, None, (None, None, None)),
    ] {
        let what = format!("{endpoint} {condition:?}");
        let (requests, _, out) = capture(signed(endpoint), vec![done()], async |s: &S3Store| {
            let parts = vec![(1, "\"p1\"".to_string())];
            match condition {
                Some(c) => s.complete_multipart_if("big", "UP1", parts, c).await,
                None => s.complete_multipart("big", "UP1", parts).await,
            }
        })
        .await;
        assert_eq!(out, Ok(Some("\"new-1\"".into())), "{what}");
        let [request] = &requests[..] else {
            panic!("{what}: {requests:?}")
        };
        assert!(
            request.line().starts_with("POST /big?uploadId=UP1"),
            "{what}: {}",
            request.head
        );
        assert_eq!(conditions(request), want, "{what}: {}", request.head);
    }
}

/// Every way a store refuses a conditional write is `PreconditionFailed`,
/// whatever the condition: the caller then keeps the other client's
/// object. A missing upload stays a plain "not found".
#[tokio::test]
async fn refused_conditional_writes_are_precondition_failures() {
    let etag = WriteCondition::Etag("\"seen\"".into());
    for (what, endpoint, condition, answer) in [
        (
            "412",
            S3,
            &WriteCondition::Absent,
            error("412 Precondition Failed", "PreconditionFailed"),
        ),
        (
            "412, If-Match",
            S3,
            &etag,
            error("412 Precondition Failed", "PreconditionFailed"),
        ),
        (
            "S3's concurrent writer",
            S3,
            &WriteCondition::Absent,
            error("409 Conflict", "ConditionalRequestConflict"),
        ),
        (
            "OSS's forbid-overwrite",
            OSS,
            &WriteCondition::Absent,
            error("409 Conflict", "FileAlreadyExists"),
        ),
        (
            "no object for If-Match",
            S3,
            &etag,
            error("404 Not Found", "NoSuchKey"),
        ),
    ] {
        let (_, _, out) = capture(signed(endpoint), vec![answer.clone()], async |s| {
            s.put_if(
                "f.txt",
                Bytes::from_static(b"x"),
                &PutMeta::default(),
                condition,
            )
            .await
        })
        .await;
        let err = out.unwrap_err();
        assert!(
            matches!(err, StoreError::PreconditionFailed { .. }),
            "{what}: {err:?}"
        );
        assert_eq!((err.op(), err.key()), ("PutObject", "f.txt"), "{what}");
        let (_, _, out) = capture(signed(endpoint), vec![answer], async |s| {
            s.complete_multipart_if("f.txt", "UP1", vec![(1, "\"p1\"".into())], condition)
                .await
        })
        .await;
        let err = out.unwrap_err();
        assert!(
            matches!(err, StoreError::PreconditionFailed { .. }),
            "{what}, completion: {err:?}"
        );
    }
    let (_, _, out) = capture(
        signed(S3),
        vec![error("404 Not Found", "NoSuchUpload")],
        async |s| {
            s.complete_multipart_if("f.txt", "UP1", vec![(1, "\"p1\"".into())], &etag)
                .await
        },
    )
    .await;
    assert_eq!(
        out,
        Err(StoreError::not_found("CompleteMultipartUpload", "f.txt"))
    );
}

/// A whole conditional upload of a file too large for one PutObject:
/// initiation and parts without a condition, the completion with
/// `If-Match`; refused with a 412, the upload is aborted and the refusal
/// returned, not retried.
#[tokio::test]
async fn a_refused_multipart_upload_is_aborted() {
    let size = SINGLE_PUT_MAX + 1;
    let mut data = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut data, &vec![7u8; size as usize]).unwrap();
    let file = Arc::new(data);
    let part = || reply("200 OK", &[("ETag", "\"part\"")], "");
    let replies = vec![
        xml(
            "<InitiateMultipartUploadResult><Bucket>mybucket</Bucket><Key>big</Key>\
             <UploadId>UP1</UploadId></InitiateMultipartUploadResult>",
        ),
        part(),
        part(),
        part(),
        error("412 Precondition Failed", "PreconditionFailed"),
        reply("204 No Content", &[], ""),
    ];
    let condition = WriteCondition::Etag("\"seen\"".into());
    let (requests, _, out) = capture(signed(S3), replies, async |s: &S3Store| {
        let store: Arc<dyn ObjectStore> = Arc::new(s.clone());
        upload_file_if(
            &store,
            RetryPolicy::INTERACTIVE,
            "big",
            file,
            size,
            &PutMeta::default(),
            Some(&condition),
        )
        .await
    })
    .await;
    let err = out.unwrap_err();
    assert!(
        matches!(err, StoreError::PreconditionFailed { .. }),
        "{err:?}"
    );
    let lines: Vec<&str> = requests.iter().map(|r| r.line()).collect();
    assert_eq!(requests.len(), 6, "{lines:#?}");
    assert!(lines[0].starts_with("POST /big?uploads"), "{lines:#?}");
    for r in &requests[..4] {
        assert_eq!(conditions(r), (None, None, None), "{}", r.head);
    }
    assert!(lines[4].starts_with("POST /big?uploadId=UP1"), "{lines:#?}");
    assert_eq!(conditions(&requests[4]), (None, Some("\"seen\""), None));
    assert!(lines[5].starts_with("DELETE /big?"), "{lines:#?}");
    assert!(lines[5].contains("uploadId=UP1"), "{lines:#?}");
}

/// A copy by parts whose source is rewritten under it: the part copied
/// from the newer version is refused (412, its `x-amz-copy-source-if-match`
/// names the version the HEAD saw), the upload is aborted, and the copy
/// starts again from a new HEAD; it spliced the two versions before.
#[tokio::test]
async fn a_copy_by_parts_whose_source_changes_starts_again() {
    let initiated = |id: &str| {
        xml(&format!(
            "<InitiateMultipartUploadResult><Bucket>mybucket</Bucket><Key>dst</Key>\
             <UploadId>{id}</UploadId></InitiateMultipartUploadResult>"
        ))
    };
    let replies = vec![
        head_of(10),
        initiated("UP1"),
        error("412 Precondition Failed", "PreconditionFailed"),
        reply("204 No Content", &[], ""),
        head_of(10),
        initiated("UP2"),
        xml("<CopyPartResult><ETag>\"part\"</ETag></CopyPartResult>"),
        xml(
            "<CompleteMultipartUploadResult><Bucket>mybucket</Bucket><Key>dst</Key>\
             <ETag>\"dst-1\"</ETag></CompleteMultipartUploadResult>",
        ),
    ];
    let (requests, _, out) = capture(
        signed("http://storage.example.com"),
        replies,
        async |s: &S3Store| {
            let s = s.clone().with_multipart_copy(5, 100);
            s.copy("src", None, "dst", None).await
        },
    )
    .await;
    assert_eq!(out, Ok(Some("\"dst-1\"".to_string())));
    let lines: Vec<&str> = requests.iter().map(|r| r.line()).collect();
    assert_eq!(requests.len(), 8, "{lines:#?}");
    for part in [&requests[2], &requests[6]] {
        assert!(part.line().starts_with("PUT /dst?"), "{}", part.head);
        assert_eq!(
            part.header("x-amz-copy-source-if-match"),
            Some("\"src-etag\""),
            "{}",
            part.head
        );
        assert!(signs(part, "x-amz-copy-source-if-match"), "{}", part.head);
    }
    assert!(
        requests[3].line().starts_with("DELETE /dst?")
            && requests[3].line().contains("uploadId=UP1"),
        "{lines:#?}"
    );
    assert!(requests[4].line().starts_with("HEAD /src "), "{lines:#?}");
    assert!(
        requests[7].line().starts_with("POST /dst?uploadId=UP2"),
        "{lines:#?}"
    );
}

/// A completion answered 200 with a body the SDK cannot read (moto 5): the
/// object at the key counts as this upload only with the ETag its parts
/// give; one of as many parts from another upload (a same-size rewrite
/// by another client, or an earlier version) does not.
#[tokio::test]
async fn an_unreadable_completion_is_checked_against_the_parts_etag() {
    let unreadable = xml("<Unexpected><Bucket>mybucket</Bucket></Unexpected>");
    let part = "\"0cc175b9c0f1b6a831c399e269772661\"";
    let head_with = |etag: &str| {
        reply(
            "200 OK",
            &[
                ("Content-Length", "1"),
                ("ETag", etag),
                ("Last-Modified", "Wed, 01 Jan 2025 00:00:00 GMT"),
            ],
            "",
        )
    };
    // MD5 of the part's MD5, one part.
    let ours = "\"b6ff9a06b7e20bcb2858c5b8ff744aea-1\"";
    for (there, landed) in [
        (ours, true),
        ("\"0123456789abcdef0123456789abcdef-1\"", false),
    ] {
        let replies = vec![unreadable.clone(), head_with(there)];
        let (requests, _, out) = capture(
            signed("http://storage.example.com"),
            replies,
            async |s: &S3Store| {
                s.complete_multipart("k", "UP1", vec![(1, part.to_string())])
                    .await
            },
        )
        .await;
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(
            requests[1].line().starts_with("HEAD /k "),
            "{}",
            requests[1].head
        );
        match landed {
            true => assert_eq!(out, Ok(Some(there.to_string()))),
            false => assert!(out.is_err(), "{out:?}"),
        }
    }
}
