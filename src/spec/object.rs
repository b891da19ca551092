//! `type=s3` and `type=ossfs`: an object-storage volume ([`ObjectSpec`]).
//! The bucket, region and key prefix rules, and the mount settings both
//! types share; the keys are `credentials`' business, ossfs's `options`
//! list `ossfs_options`'.

use super::credentials::parse_credentials;
use super::endpoint::parse_endpoint;
use super::error::SpecError;
use super::model::{MountTuning, ObjectSpec};
use super::opts::Opts;
use super::ossfs_options::{
    OssfsMountOptions, merge_ossfs_tuning, merge_read_only, merge_region, parse_ossfs_options,
};
use super::values::{
    is_region_name, parse_cache_size, parse_id, parse_seconds_ms, parse_umask, parse_upload,
    parse_version, starts_and_ends_alphanumeric,
};

/// Longest key prefix; S3's and OSS's limit on a whole key.
const MAX_PREFIX_LEN: usize = 1024;

/// The ossfs `version` when none is given.
const DEFAULT_OSSFS_VERSION: &str = "2.0";

pub(super) fn parse_s3(opts: &Opts) -> Result<ObjectSpec, SpecError> {
    let bucket = opts.required("bucket")?;
    if !is_s3_bucket_name(bucket) {
        return Err(SpecError::BadS3Bucket(bucket.to_string()));
    }
    let endpoint = match opts.get("endpoint") {
        None => None,
        Some(v) if v.trim().is_empty() => {
            return Err(SpecError::EmptyOption {
                option: "endpoint",
                hint: "leave it out for AWS S3 or give a host name or an http(s) URL",
            });
        }
        Some(v) => Some(parse_endpoint(v)?),
    };
    Ok(ObjectSpec {
        bucket: bucket.to_string(),
        endpoint,
        region: parse_region(opts)?,
        prefix: parse_prefix("prefix", opts.get("prefix"))?,
        path_style: opts.bool("pathStyle")?,
        credentials: parse_credentials(opts)?,
        version: None,
        ignored_options: Vec::new(),
        tuning: parse_tuning(opts)?,
    })
}

/// An OpenSandbox `ossfs` volume. Returns the spec and the volume's
/// read-only flag, which `ro` in `options` may set.
pub(super) fn parse_ossfs(
    opts: &Opts,
    read_only: Option<bool>,
) -> Result<(ObjectSpec, bool), SpecError> {
    let bucket = opts.required("bucket")?;
    if !is_oss_bucket_name(bucket) {
        return Err(SpecError::BadOssBucket(bucket.to_string()));
    }
    let endpoint = opts.required("endpoint")?;
    let endpoint = parse_endpoint(endpoint)?;
    let version = opts
        .value("version", parse_version)?
        .unwrap_or_else(|| DEFAULT_OSSFS_VERSION.to_string());
    let mount = match opts.get("options") {
        None => OssfsMountOptions::default(),
        Some(v) => parse_ossfs_options(v, &version)?,
    };
    let tuning = merge_ossfs_tuning(opts, parse_tuning(opts)?, &mount)?;
    let read_only = merge_read_only(opts, read_only, mount.read_only())?;
    let object = ObjectSpec {
        bucket: bucket.to_string(),
        endpoint: Some(endpoint),
        region: merge_region(opts, parse_region(opts)?, &mount)?,
        prefix: parse_prefix("path", opts.get("path"))?,
        path_style: None,
        credentials: parse_credentials(opts)?,
        version: Some(version),
        ignored_options: mount.ignored(),
        tuning,
    };
    Ok((object, read_only))
}

fn parse_tuning(opts: &Opts) -> Result<MountTuning, SpecError> {
    Ok(MountTuning {
        uid: opts.value("uid", parse_id)?,
        gid: opts.value("gid", parse_id)?,
        umask: opts.value("umask", parse_umask)?,
        upload: opts.value("upload", parse_upload)?,
        metadata_ttl_ms: opts.value("metadataTtl", parse_seconds_ms)?,
        attrs_from_listing: opts.bool("attrsFromListing")?,
        cache_size: opts.value("cacheSize", parse_cache_size)?,
    })
}

fn parse_region(opts: &Opts) -> Result<Option<String>, SpecError> {
    match opts.get("region") {
        None => Ok(None),
        Some("") => Err(SpecError::EmptyOption {
            option: "region",
            hint: "leave it out or name a region, e.g. region=us-west-2",
        }),
        Some(r) if is_region_name(r) => Ok(Some(r.to_string())),
        Some(r) => Err(SpecError::BadRegion(r.to_string())),
    }
}

/// AWS's rules for new buckets (which S3-compatible servers follow), so a
/// typo is caught at Create instead of as a signature or DNS error later.
fn is_s3_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && starts_and_ends_alphanumeric(name)
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// OSS's rules: like S3's, without dots.
fn is_oss_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && starts_and_ends_alphanumeric(name)
}

/// A key prefix (`prefix` for s3, `path` for ossfs) → "" or "a/b/".
///
/// A leading `/` is tolerated because OpenSandbox users write
/// `path=/agents/run1` for an ossfs volume, as ossfs's `bucket:/path` does.
fn parse_prefix(option: &'static str, value: Option<&str>) -> Result<String, SpecError> {
    let Some(value) = value else {
        return Ok(String::new());
    };
    if value.is_empty() || value == "/" {
        return Ok(String::new());
    }
    let bad = || SpecError::BadPrefix {
        option,
        value: value.to_string(),
    };
    let rest = value.strip_prefix('/').unwrap_or(value);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let plain = |c: &str| !c.is_empty() && c != "." && c != "..";
    if rest.chars().any(char::is_control) || !rest.split('/').all(plain) {
        return Err(bad());
    }
    let prefix = format!("{rest}/");
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(bad());
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use crate::spec::*;
    use serde_json::json;

    #[test]
    fn s3_defaults() {
        let spec = parse(s3()).unwrap();
        assert_eq!(
            spec,
            VolumeSpec {
                backend: BackendSpec::S3(ObjectSpec {
                    bucket: "my-bucket".into(),
                    endpoint: None,
                    region: None,
                    prefix: String::new(),
                    path_style: None,
                    credentials: Credentials::Default,
                    version: None,
                    ignored_options: Vec::new(),
                    tuning: MountTuning::default(),
                }),
                sub_path: None,
                read_only: false,
            }
        );
        assert_eq!(spec.backend.type_name(), "s3");
    }

    #[test]
    fn s3_with_every_option_case_insensitive() {
        let spec = parse(json!({
            "Type": "S3", "BUCKET": "logs.example-1", "endpoint": " http://127.0.0.1:9000 ",
            "Region": "eu-west-1", "prefix": "/agents/run1/", "pathstyle": "true",
            "accesskeyid": "AKID", "ACCESSKEYSECRET": "s3cr3t/+=", "sessionToken": "tok",
            "upload": "SYNC", "metadatattl": "2.5", "uid": "1000", "gid": 100, "umask": "027",
            "attrsFromListing": "true", "cachesize": "2GiB", "subPath": "work", "readOnly": "yes",
        }))
        .unwrap();
        assert_eq!(
            spec,
            VolumeSpec {
                backend: BackendSpec::S3(ObjectSpec {
                    bucket: "logs.example-1".into(),
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    region: Some("eu-west-1".into()),
                    prefix: "agents/run1/".into(),
                    path_style: Some(true),
                    credentials: Credentials::Inline {
                        access_key_id: "AKID".into(),
                        access_key_secret: "s3cr3t/+=".into(),
                        session_token: Some("tok".into()),
                    },
                    version: None,
                    ignored_options: Vec::new(),
                    tuning: MountTuning {
                        uid: Some(1000),
                        gid: Some(100),
                        umask: Some(0o027),
                        upload: Some(objectfs::UploadMode::Sync),
                        metadata_ttl_ms: Some(2500),
                        attrs_from_listing: Some(true),
                        cache_size: Some(2 << 30),
                    },
                }),
                sub_path: Some("work".into()),
                read_only: true,
            }
        );
    }

    #[test]
    fn s3_unknown_option_lists_accepted_ones() {
        let e = err(with(&s3(), json!({"version": "2.0"})));
        assert_eq!(
            e.to_string(),
            "option `version` is not accepted for type=s3; accepted options: type, subPath, readOnly, \
             bucket, endpoint, region, prefix, pathStyle, credentials, accessKeyId, accessKeySecret, \
             sessionToken, upload, metadataTtl, attrsFromListing, uid, gid, umask, cacheSize, credentialSource, ramRole, metadataEndpoint"
        );
        assert!(matches!(
            err(with(&s3(), json!({"options": "ro"}))),
            SpecError::UnknownOption { .. }
        ));
    }

    #[test]
    fn s3_bucket_is_required_and_checked() {
        for missing in [json!({"type": "s3"}), json!({"type": "s3", "bucket": ""})] {
            let e = err(missing);
            assert_eq!(
                e.to_string(),
                "option `bucket` is required for type=s3; set it, e.g. bucket=my-bucket"
            );
        }
        for good in ["abc", "a.b-c", "1bucket", &"a".repeat(63), "192.168.5"] {
            assert!(
                parse(with(&s3(), json!({"bucket": good}))).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-bucket",
            "my_bucket",
            "-abc",
            "abc-",
            ".abc",
            "abc.",
            "a..b",
            "192.168.5.4",
            "a b",
            "ab/c",
        ] {
            let e = err(with(&s3(), json!({"bucket": bad})));
            assert_eq!(e, SpecError::BadS3Bucket(bad.to_string()), "{bad}");
            assert!(e.to_string().contains("not an S3 bucket name"));
        }
    }

    #[test]
    fn region_rules() {
        for good in ["us-east-1", "cn-hangzhou", "EU-West-1", &"a".repeat(64)] {
            let spec = parse(with(&s3(), json!({"region": good}))).unwrap();
            assert_eq!(object(&spec).region.as_deref(), Some(good));
        }
        for bad in [
            "us east",
            "us_east_1",
            "eu/1",
            &"a".repeat(65),
            " us-east-1",
        ] {
            let e = err(with(&s3(), json!({"region": bad})));
            assert_eq!(e, SpecError::BadRegion(bad.to_string()), "{bad}");
        }
        assert!(matches!(
            err(with(&s3(), json!({"region": ""}))),
            SpecError::EmptyOption {
                option: "region",
                ..
            }
        ));
        let spec = parse(with(&ossfs(), json!({"region": "cn-hangzhou"}))).unwrap();
        assert_eq!(object(&spec).region.as_deref(), Some("cn-hangzhou"));
    }

    #[test]
    fn prefix_is_normalised() {
        for (given, want) in [
            ("", ""),
            ("/", ""),
            ("a", "a/"),
            ("a/", "a/"),
            ("/agents/run1", "agents/run1/"),
            ("/agents/run1/", "agents/run1/"),
            ("a b/ü..x/.c", "a b/ü..x/.c/"),
        ] {
            let spec = parse(with(&s3(), json!({"prefix": given}))).unwrap();
            assert_eq!(object(&spec).prefix, want, "{given:?}");
            let spec = parse(with(&ossfs(), json!({"path": given}))).unwrap();
            assert_eq!(object(&spec).prefix, want, "{given:?}");
        }
        let longest = "a".repeat(MAX_PREFIX_LEN - 1);
        assert!(parse(with(&s3(), json!({"prefix": longest}))).is_ok());
        let too_long = "a".repeat(MAX_PREFIX_LEN);
        for bad in [
            "//",
            "//a",
            "a//b",
            "a//",
            ".",
            "..",
            "a/./b",
            "a/../b",
            "/..",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            too_long.as_str(),
        ] {
            let e = err(with(&s3(), json!({"prefix": bad})));
            assert_eq!(
                e,
                SpecError::BadPrefix {
                    option: "prefix",
                    value: bad.into()
                },
                "{bad:?}"
            );
            let e = err(with(&ossfs(), json!({"path": bad})));
            assert!(e.to_string().starts_with("option `path`="), "{bad:?}: {e}");
        }
    }

    #[test]
    fn path_style_is_a_boolean() {
        let spec = parse(with(&s3(), json!({"pathStyle": false}))).unwrap();
        assert_eq!(object(&spec).path_style, Some(false));
        let e = err(with(&s3(), json!({"pathStyle": "sometimes"})));
        assert_eq!(
            e.to_string(),
            r#"option `pathStyle`="sometimes" must be true or false"#
        );
    }

    #[test]
    fn ossfs_defaults() {
        let spec = parse(ossfs()).unwrap();
        assert_eq!(
            spec,
            VolumeSpec {
                backend: BackendSpec::Ossfs(ObjectSpec {
                    bucket: "my-bucket".into(),
                    endpoint: Some("oss-cn-hangzhou.aliyuncs.com".into()),
                    region: None,
                    prefix: String::new(),
                    path_style: None,
                    credentials: Credentials::Default,
                    version: Some("2.0".into()),
                    ignored_options: Vec::new(),
                    tuning: MountTuning::default(),
                }),
                sub_path: None,
                read_only: false,
            }
        );
        assert_eq!(spec.backend.type_name(), "ossfs");
    }

    #[test]
    fn ossfs_as_the_opensandbox_api_sends_it() {
        let spec = parse(json!({
            "type": "ossfs", "bucket": "my-bucket", "endpoint": "oss-cn-hangzhou.aliyuncs.com",
            "path": "/sandbox/user-a", "accessKeyId": "AKIDEXAMPLE",
            "accessKeySecret": "SECRETEXAMPLE", "version": "1.0",
            "options": "allow_other,umask=0022", "subPath": "task-001",
        }))
        .unwrap();
        let o = object(&spec);
        assert_eq!(o.prefix, "sandbox/user-a/");
        assert_eq!(o.version.as_deref(), Some("1.0"));
        assert_eq!(o.tuning.umask, Some(0o022));
        assert_eq!(spec.sub_path.as_deref(), Some("task-001"));
        assert!(!spec.read_only);
    }

    #[test]
    fn ossfs_requires_bucket_and_endpoint() {
        let e = err(json!({"type": "ossfs", "endpoint": "oss-cn-hangzhou.aliyuncs.com"}));
        assert_eq!(
            e.to_string(),
            "option `bucket` is required for type=ossfs; set it, e.g. bucket=my-bucket"
        );
        for missing in [
            json!({"type": "ossfs", "bucket": "b-1"}),
            json!({"type": "ossfs", "bucket": "b-1", "endpoint": ""}),
        ] {
            assert_eq!(
                err(missing).to_string(),
                "option `endpoint` is required for type=ossfs; set it, e.g. endpoint=oss-cn-hangzhou.aliyuncs.com"
            );
        }
        let e = err(with(&ossfs(), json!({"endpoint": "ftp://oss"})));
        assert!(matches!(e, SpecError::BadEndpoint { .. }), "{e:?}");
        let spec = parse(with(
            &ossfs(),
            json!({"endpoint": "https://oss-cn-beijing-internal.aliyuncs.com"}),
        ))
        .unwrap();
        assert_eq!(
            object(&spec).endpoint.as_deref(),
            Some("https://oss-cn-beijing-internal.aliyuncs.com")
        );
    }

    #[test]
    fn ossfs_bucket_rules() {
        for good in ["abc", "a-1-b", &"a".repeat(63)] {
            assert!(
                parse(with(&ossfs(), json!({"bucket": good}))).is_ok(),
                "{good}"
            );
        }
        for bad in ["ab", &"a".repeat(64), "a.b", "Abc", "a_b", "-ab", "ab-"] {
            let e = err(with(&ossfs(), json!({"bucket": bad})));
            assert_eq!(e, SpecError::BadOssBucket(bad.into()), "{bad}");
            assert!(e.to_string().contains("not an OSS bucket name"));
        }
    }

    #[test]
    fn ossfs_version() {
        for v in ["1.0", "2.0", " 2.0 "] {
            let spec = parse(with(&ossfs(), json!({"VERSION": v}))).unwrap();
            assert_eq!(object(&spec).version.as_deref(), Some(v.trim()));
        }
        for bad in ["1", "2", "3.0", "", "v2"] {
            let e = err(with(&ossfs(), json!({"version": bad})));
            assert_eq!(
                e.to_string(),
                format!("option `version`={bad:?} must be 1.0 or 2.0")
            );
        }
    }

    #[test]
    fn ossfs_unknown_option_lists_accepted_ones() {
        let e = err(with(&ossfs(), json!({"prefix": "a"})));
        assert_eq!(
            e.to_string(),
            "option `prefix` is not accepted for type=ossfs; accepted options: type, subPath, readOnly, \
             bucket, endpoint, path, version, options, accessKeyId, accessKeySecret, sessionToken, \
             credentials, region, upload, metadataTtl, attrsFromListing, uid, gid, umask, cacheSize, credentialSource, ramRole, metadataEndpoint"
        );
        assert!(matches!(
            err(with(&ossfs(), json!({"pathStyle": "true"}))),
            SpecError::UnknownOption { .. }
        ));
    }

    #[test]
    fn object_specs_round_trip_through_json() {
        for opts in [
            with(
                &s3(),
                json!({"endpoint": "http://127.0.0.1:9000", "prefix": "a", "pathStyle": true,
                               "accessKeyId": "i", "accessKeySecret": "s", "sessionToken": "t",
                               "metadataTtl": "0.1", "subPath": "x", "readOnly": true}),
            ),
            with(&s3(), json!({"credentials": "team-a", "umask": "022"})),
            with(
                &ossfs(),
                json!({"options": "ro,uid=1", "path": "/p", "version": "1.0",
                                  "region": "cn-hangzhou", "upload": "sync", "cacheSize": "100MB"}),
            ),
            ossfs(),
        ] {
            let spec = parse(opts).unwrap();
            let text = serde_json::to_string(&spec).unwrap();
            let back: VolumeSpec = serde_json::from_str(&text).unwrap();
            assert_eq!(back, spec, "{text}");
        }
        let spec = parse(with(&ossfs(), json!({"credentials": "p"}))).unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains(r#""type":"ossfs""#), "{text}");
        assert!(
            text.contains(r#""credentials":{"source":"profile","name":"p"}"#),
            "{text}"
        );
    }
}
