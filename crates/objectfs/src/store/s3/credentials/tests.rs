//! Unit tests of the credential sources: the refresh plan alone, the ECS
//! metadata answers alone, and the provider against profile files in a
//! temporary directory and a fake metadata service on 127.0.0.1, with a
//! clock the tests move ahead (no test waits for time to pass).

use super::ecs::{
    TOKEN_HEADER, TOKEN_TTL_HEADER, TOKEN_TTL_SECS, parse_credentials, parse_endpoint,
    parse_role_list,
};
use super::fake_metadata::{FakeMetadata, Flavor, Issued};
use super::*;
use std::os::unix::fs::PermissionsExt;

pub(crate) const MIN: Duration = Duration::from_secs(60);

/// Every secret a test hands out contains this; none may show.
const SECRET_MARK: &str = "zzQ";

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET_MARK), "a secret leaked into: {text}");
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn held(since: SystemTime, expires: Option<SystemTime>, stale: bool) -> Option<Held> {
    Some(Held {
        since,
        expires,
        stale,
    })
}

#[test]
fn plan_fetches_refreshes_ahead_and_waits_out_failures() {
    use Plan::*;
    let t = t0();
    // Nothing yet: fetch, unless a fetch just failed.
    assert_eq!(plan(t, None, false), Fetch);
    assert_eq!(plan(t, None, true), Fail);
    // Keys for an hour: used until 5 minutes before expiry, then one
    // request fetches ahead; expired, every request waits for a fetch.
    let hour = held(t, Some(t + 60 * MIN), false);
    assert_eq!(plan(t + 54 * MIN, hour, false), Use);
    assert_eq!(plan(t + 55 * MIN, hour, false), RefreshAhead);
    assert_eq!(plan(t + 55 * MIN, hour, true), Use);
    assert_eq!(plan(t + 60 * MIN, hour, false), Fetch);
    assert_eq!(plan(t + 60 * MIN, hour, true), Fail);
    // Keys for 20 s: fetched again after half their lifetime.
    let short = held(t, Some(t + Duration::from_secs(20)), false);
    assert_eq!(plan(t + Duration::from_secs(9), short, false), Use);
    assert_eq!(
        plan(t + Duration::from_secs(10), short, false),
        RefreshAhead
    );
    // Keys without expiry: used until the source says they are outdated.
    let forever = held(t, None, false);
    assert_eq!(plan(t + 10_000 * MIN, forever, false), Use);
    let stale = held(t, None, true);
    assert_eq!(plan(t, stale, false), Fetch);
    assert_eq!(plan(t, stale, true), Use);
    let stale_expired = held(t, Some(t + MIN), true);
    assert_eq!(plan(t + 2 * MIN, stale_expired, true), Fail);
}

#[test]
fn refresh_margin_is_five_minutes_or_half_the_lifetime() {
    let t = t0();
    assert_eq!(refresh_margin(t, t + 12 * 60 * MIN), REFRESH_AHEAD);
    assert_eq!(refresh_margin(t, t + 15 * MIN), REFRESH_AHEAD);
    assert_eq!(refresh_margin(t, t + 6 * MIN), 3 * MIN);
    // Already expired when obtained: no margin.
    assert_eq!(refresh_margin(t, t - MIN), Duration::ZERO);
}

#[test]
fn sources_round_trip_as_json_and_describe_themselves() {
    let cases = [
        (
            CredentialSource::Profile {
                dir: "/etc/osv/credentials".into(),
                name: "team-a".into(),
            },
            serde_json::json!({"source": "profile", "dir": "/etc/osv/credentials", "name": "team-a"}),
            "profile team-a",
        ),
        (
            CredentialSource::EcsRamRole {
                role: Some("web-role".into()),
                endpoint: Some("http://127.0.0.1:8080".into()),
            },
            serde_json::json!({"source": "ecs_ram_role", "role": "web-role", "endpoint": "http://127.0.0.1:8080"}),
            "ECS RAM role web-role",
        ),
        (
            CredentialSource::EcsRamRole {
                role: None,
                endpoint: None,
            },
            serde_json::json!({"source": "ecs_ram_role"}),
            "ECS RAM role of the instance",
        ),
        (
            CredentialSource::AwsDefault {
                imds_endpoint: None,
            },
            serde_json::json!({"source": "aws_default"}),
            "AWS default chain",
        ),
    ];
    for (source, json, description) in cases {
        assert_eq!(serde_json::to_value(&source).unwrap(), json);
        assert_eq!(
            serde_json::from_value::<CredentialSource>(json).unwrap(),
            source
        );
        assert_eq!(source.describe(), description);
    }
    // Unknown fields and sources are refused, not ignored.
    for bad in [
        serde_json::json!({"source": "profile", "dir": "/d", "name": "a", "key": "x"}),
        serde_json::json!({"source": "vault"}),
    ] {
        assert!(serde_json::from_value::<CredentialSource>(bad).is_err());
    }
    // In a store config: absent means None, and None is not written.
    let config = crate::store::s3::S3Config {
        bucket: "b".into(),
        ..Default::default()
    };
    let json = serde_json::to_value(&config).unwrap();
    assert!(json.get("credential_source").is_none(), "{json}");
    let with = crate::store::s3::S3Config {
        credential_source: Some(CredentialSource::AwsDefault {
            imds_endpoint: Some("http://127.0.0.1:1".into()),
        }),
        ..config
    };
    let back: crate::store::s3::S3Config =
        serde_json::from_slice(&serde_json::to_vec(&with).unwrap()).unwrap();
    assert_eq!(back, with);
    assert!(format!("{with:?}").contains("AwsDefault"), "{with:?}");
}

#[test]
fn a_source_and_static_keys_together_are_refused() {
    let config = crate::store::s3::S3Config {
        bucket: "b".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        access_key_id: Some("AKID".into()),
        access_key_secret: Some("SECRET-zzQ".into()),
        credential_source: Some(CredentialSource::EcsRamRole {
            role: None,
            endpoint: None,
        }),
        ..Default::default()
    };
    let err = crate::store::s3::S3Store::new(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "the S3 keys and a credential source (ECS RAM role of the instance) are both set"
        ),
        "{err}"
    );
    assert_no_secret(&err);
}

#[test]
fn every_store_describes_its_credentials() {
    let mut config = crate::store::s3::S3Config {
        bucket: "b".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    };
    let store = crate::store::s3::S3Store::new(&config).unwrap();
    assert_eq!(store.credential_state().describe(), "anonymous");
    config.access_key_id = Some("AKID".into());
    config.access_key_secret = Some("SECRET-zzQ-long".into());
    let store = crate::store::s3::S3Store::new(&config).unwrap();
    let state = store.credential_state();
    assert_eq!(state.describe(), "static keys");
    assert_eq!(state.expires_at(), None);
    assert_eq!(
        state.scrub("a SECRET-zzQ-long b".into()),
        "a <redacted> b".to_string()
    );
    // Metadata sources are built without a runtime and without I/O.
    config.access_key_id = None;
    config.access_key_secret = None;
    config.credential_source = Some(CredentialSource::EcsRamRole {
        role: None,
        endpoint: None,
    });
    let store = crate::store::s3::S3Store::new(&config).unwrap();
    assert_eq!(
        store.credential_state().describe(),
        "ECS RAM role of the instance"
    );
    assert_eq!(store.credential_state().expires_at(), None);
    for imds_endpoint in [None, Some("http://127.0.0.1:1".to_string())] {
        config.credential_source = Some(CredentialSource::AwsDefault { imds_endpoint });
        let store = crate::store::s3::S3Store::new(&config).unwrap();
        assert_eq!(store.credential_state().describe(), "AWS default chain");
    }
    config.credential_source = Some(CredentialSource::AwsDefault {
        imds_endpoint: Some("not a url".into()),
    });
    let err = crate::store::s3::S3Store::new(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "AWS default chain: the instance metadata endpoint \"not a url\" is not a URL"
        ),
        "{err}"
    );
}

#[test]
fn ecs_endpoints_are_plain_http_hosts() {
    assert_eq!(
        parse_endpoint("http://100.100.100.200").unwrap(),
        "http://100.100.100.200"
    );
    assert_eq!(
        parse_endpoint("http://127.0.0.1:8080/").unwrap(),
        "http://127.0.0.1:8080"
    );
    for (bad, why) in [
        ("https://100.100.100.200", "is not plain http"),
        ("100.100.100.200", "has no http://"),
        ("http://user:pw@100.100.100.200", "user information"),
        ("http://100.100.100.200/latest", "path or query"),
        ("http://100.100.100.200/?a=b", "path or query"),
        ("", "is not a URL"),
    ] {
        let err = parse_endpoint(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
        assert!(err.contains("give http://HOST[:PORT]"), "{err}");
    }
    let err = ecs::EcsMetadata::new(None, Some("../etc")).unwrap_err();
    assert!(err.contains("is not a RAM role name"), "{err}");
}

#[test]
fn ecs_answers_are_parsed_without_quoting_them() {
    let good = br#"{"AccessKeyId":"STS.zzQKEY","AccessKeySecret":"zzQSECRET","SecurityToken":"zzQTOKEN",
        "Expiration":"2025-06-01T12:00:00Z","LastUpdated":"2025-06-01T06:00:00Z","Code":"Success"}"#;
    let keys = parse_credentials(good).unwrap();
    assert_eq!(keys.access_key_id, "STS.zzQKEY");
    assert_eq!(keys.access_key_secret, "zzQSECRET");
    assert_eq!(keys.session_token.as_deref(), Some("zzQTOKEN"));
    assert_eq!(
        keys.expiration,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_779_200))
    );
    let cases: [(&[u8], &str); 8] = [
        (b"zzQSECRET", "is not a JSON object"),
        (br#"["zzQSECRET"]"#, "is not a JSON object"),
        (
            br#"{"Code":"Failed","AccessKeyId":"zzQKEY"}"#,
            r#"says Code "Failed""#,
        ),
        (
            br#"{"Code":"zzQ SECRET with spaces","AccessKeyId":"zzQKEY"}"#,
            "has a Code that is not",
        ),
        (
            br#"{"Code":"Success","AccessKeySecret":"zzQSECRET","SecurityToken":"zzQT","Expiration":"2025-06-01T12:00:00Z"}"#,
            "has no field `AccessKeyId`",
        ),
        (
            br#"{"AccessKeyId":"zzQKEY","AccessKeySecret":7,"SecurityToken":"zzQT","Expiration":"2025-06-01T12:00:00Z"}"#,
            "`AccessKeySecret` that is not a string",
        ),
        (
            br#"{"AccessKeyId":"zzQKEY","AccessKeySecret":"zzQ S","SecurityToken":"zzQT","Expiration":"2025-06-01T12:00:00Z"}"#,
            "`AccessKeySecret` that is empty or contains whitespace",
        ),
        (
            br#"{"AccessKeyId":"zzQKEY","AccessKeySecret":"zzQS","SecurityToken":"zzQT","Expiration":"zzQSOON"}"#,
            "`Expiration` that is not an RFC 3339 time",
        ),
    ];
    for (body, expected) in cases {
        let err = parse_credentials(body).unwrap_err();
        assert!(err.contains(expected), "{expected}: {err}");
        assert_no_secret(&err);
    }
    assert_eq!(parse_role_list(b"web-role\n").unwrap(), "web-role");
    assert_eq!(
        parse_role_list(b"\n  web-role  \nother\n").unwrap(),
        "web-role"
    );
    assert!(
        parse_role_list(b"")
            .unwrap_err()
            .contains("names no RAM role")
    );
    assert!(
        parse_role_list(b"a/../b")
            .unwrap_err()
            .contains("not a RAM role name")
    );
}

fn ecs_source(fake: &FakeMetadata, role: Option<&str>) -> CredentialSource {
    CredentialSource::EcsRamRole {
        role: role.map(str::to_string),
        endpoint: Some(fake.endpoint()),
    }
}

#[tokio::test]
async fn ecs_keys_come_with_a_session_token_and_are_refreshed_ahead_of_expiry() {
    let first = Issued::numbered(1, 60 * MIN);
    let fake = FakeMetadata::start(Flavor::Aliyun, "web-role", first.clone()).await;
    let clock = Clock::default();
    let provider =
        RefreshingProvider::new(&ecs_source(&fake, None), "cn-hangzhou", clock.clone()).unwrap();
    assert!(fake.seen().is_empty(), "no request before the first use");

    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-ISSUED-1");
    assert_eq!(creds.secret_access_key(), first.secret);
    assert_eq!(creds.session_token(), Some(first.token.as_str()));
    let seen = fake.seen();
    let lines: Vec<_> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        lines,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/ram/security-credentials/",
            "GET /latest/meta-data/ram/security-credentials/web-role",
        ]
    );
    assert_eq!(
        seen[0].header(TOKEN_TTL_HEADER),
        Some(TOKEN_TTL_SECS.to_string().as_str())
    );
    let token = &fake.tokens()[0];
    for get in &seen[1..] {
        assert_eq!(get.header(TOKEN_HEADER), Some(token.as_str()));
    }
    let state = provider.state();
    assert_eq!(state.describe(), "ECS RAM role web-role");
    assert_eq!(state.expires_at(), Some(first.expiration));
    assert_eq!(state.last_failure(), None);

    // Cached: no request while the keys are far from expiry.
    let second = Issued::numbered(2, 120 * MIN);
    fake.issue(second.clone());
    clock.advance(50 * MIN);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-ISSUED-1");
    assert_eq!(fake.seen().len(), 3);

    // Within five minutes of expiry: fetched again, with a new token.
    clock.advance(6 * MIN);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-ISSUED-2");
    assert_eq!(creds.session_token(), Some(second.token.as_str()));
    let seen = fake.seen();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[3].method, "PUT");
    let token = &fake.tokens()[1];
    assert!(
        seen[4..]
            .iter()
            .all(|s| s.header(TOKEN_HEADER) == Some(token.as_str()))
    );
    assert_eq!(state.expires_at(), Some(second.expiration));
    let debug = format!("{provider:?} {state:?}");
    assert_no_secret(&debug);
    assert!(debug.contains("ECS RAM role web-role"), "{debug}");
}

#[tokio::test]
async fn ecs_failures_keep_valid_keys_then_fail_with_the_source_named() {
    let fake = FakeMetadata::start(Flavor::Aliyun, "web-role", Issued::numbered(1, 60 * MIN)).await;
    let clock = Clock::default();
    let source = ecs_source(&fake, Some("web-role"));
    let provider = RefreshingProvider::new(&source, "cn-hangzhou", clock.clone()).unwrap();
    assert_eq!(provider.state().describe(), "ECS RAM role web-role");
    provider.provide_credentials().await.unwrap();
    // The role was given: it is not asked for.
    assert!(
        fake.seen()
            .iter()
            .all(|s| s.path != "/latest/meta-data/ram/security-credentials/")
    );

    // Ahead of expiry the service fails: the keys in hand go on working.
    fake.set_down(true);
    clock.advance(56 * MIN);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-ISSUED-1");
    let failure = provider.state().last_failure().unwrap();
    assert!(
        failure
            .message
            .contains("answered 500 Internal Server Error for the role's credentials"),
        "{}",
        failure.message
    );

    // Expired, and the service still fails: the request fails, naming the
    // source and the reason, with no key.
    clock.advance(5 * MIN);
    let err = provider.provide_credentials().await.unwrap_err();
    let text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
    assert!(
        text.contains(
            "no valid credentials from the ECS RAM role web-role: the metadata service at"
        ),
        "{text}"
    );
    assert!(text.contains("500"), "{text}");
    assert_no_secret(&text);
    assert_eq!(
        provider.state().last_failure().unwrap().since,
        failure.since
    );
    // Until the retry interval has passed, the service is not asked again.
    let asked = fake.seen().len();
    assert!(provider.provide_credentials().await.is_err());
    assert_eq!(fake.seen().len(), asked);

    // The service recovers: the next fetch after the interval succeeds.
    fake.set_down(false);
    fake.issue(Issued::numbered(2, 180 * MIN));
    clock.advance(REMOTE_RETRY);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-ISSUED-2");
    assert_eq!(provider.state().last_failure(), None);
}

#[tokio::test]
async fn ecs_refusals_and_silence_are_named() {
    let fake = FakeMetadata::start(Flavor::Aliyun, "web-role", Issued::numbered(1, 60 * MIN)).await;
    let provider =
        RefreshingProvider::new(&ecs_source(&fake, Some("other")), "r", Clock::default()).unwrap();
    let err = provider.provide_credentials().await.unwrap_err();
    let text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
    assert!(text.contains("answered 404 Not Found"), "{text}");
    assert!(text.contains("is a RAM role attached"), "{text}");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let source = CredentialSource::EcsRamRole {
        role: None,
        endpoint: Some(format!("http://127.0.0.1:{port}")),
    };
    let provider = RefreshingProvider::new(&source, "r", Clock::default()).unwrap();
    let err = provider.provide_credentials().await.unwrap_err();
    let text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
    assert!(
        text.contains("could not be reached for a session token (PUT /latest/api/token"),
        "{text}"
    );
}

/// Writes profile `name` as a rotation job would: a new file renamed over
/// the old one.
pub(crate) fn rotate(dir: &Path, name: &str, n: u32, expiration: Option<&str>) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, profile_json(n, expiration)).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.json"))).unwrap();
}

fn profile_json(n: u32, expiration: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "accessKeyId": format!("AKID-PROFILE-{n}"),
        "accessKeySecret": format!("SECRET-PROFILE-{n}-zzQ"),
        "sessionToken": format!("TOKEN-PROFILE-{n}-zzQ"),
    });
    if let Some(e) = expiration {
        v["expiration"] = e.into();
    }
    v.to_string()
}

fn profile_source(dir: &Path) -> CredentialSource {
    CredentialSource::Profile {
        dir: dir.into(),
        name: "team-a".into(),
    }
}

/// An RFC 3339 time `from_now` ahead of the real clock, whole seconds.
fn rfc3339_in(from_now: Duration) -> (String, SystemTime) {
    let at = Issued::numbered(0, from_now).expiration;
    let text = aws_smithy_types::DateTime::from(at)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap();
    (text, at)
}

#[tokio::test]
async fn a_rotated_profile_is_read_again_at_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    rotate(dir.path(), "team-a", 1, None);
    let clock = Clock::default();
    let provider =
        RefreshingProvider::new(&profile_source(dir.path()), "r", clock.clone()).unwrap();
    let state = provider.state();
    assert_eq!(state.describe(), "profile team-a");
    assert!(state.obtained_at().is_some());
    assert_eq!(state.expires_at(), None);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-PROFILE-1");

    rotate(dir.path(), "team-a", 2, None);
    clock.advance(PROFILE_CHECK_INTERVAL);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-PROFILE-2");
    assert_eq!(creds.session_token(), Some("TOKEN-PROFILE-2-zzQ"));
    // An in-place rewrite (a new size) is seen too.
    let path = dir.path().join("team-a.json");
    std::fs::write(&path, profile_json(33, None)).unwrap();
    clock.advance(PROFILE_CHECK_INTERVAL);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-PROFILE-33");
    assert_no_secret(&format!("{provider:?}"));
}

#[tokio::test]
async fn a_bad_rewrite_keeps_the_last_good_keys() {
    let dir = tempfile::tempdir().unwrap();
    rotate(dir.path(), "team-a", 1, None);
    let clock = Clock::default();
    let provider =
        RefreshingProvider::new(&profile_source(dir.path()), "r", clock.clone()).unwrap();

    // Half written, as a reader may catch a writer that does not rename.
    let path = dir.path().join("team-a.json");
    std::fs::write(
        &path,
        r#"{"accessKeyId": "AKID-PROFILE-2", "accessKeySecret": "SECRET-zzQ"#,
    )
    .unwrap();
    clock.advance(PROFILE_CHECK_INTERVAL);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-PROFILE-1");
    let failure = provider.state().last_failure().unwrap();
    assert!(
        failure.message.contains("is not valid"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains(&path.display().to_string()),
        "{}",
        failure.message
    );
    assert_no_secret(&failure.message);

    // Readable by others: refused the same way, still the old keys.
    rotate(dir.path(), "team-a", 2, None);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    clock.advance(PROFILE_RETRY);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-PROFILE-1");
    let failure = provider.state().last_failure().unwrap();
    assert!(failure.message.contains("chmod 600"), "{}", failure.message);

    // Fixed: the new keys, and no failure.
    rotate(dir.path(), "team-a", 3, None);
    clock.advance(PROFILE_RETRY);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-PROFILE-3");
    assert_eq!(provider.state().last_failure(), None);
}

#[tokio::test]
async fn a_profile_is_read_again_before_its_expiration() {
    let dir = tempfile::tempdir().unwrap();
    let (first_exp, _) = rfc3339_in(60 * MIN);
    rotate(dir.path(), "team-a", 1, Some(&first_exp));
    let clock = Clock::default();
    let provider =
        RefreshingProvider::new(&profile_source(dir.path()), "r", clock.clone()).unwrap();
    let path = dir.path().join("team-a.json");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();

    // New keys of the same size, and the old modification time put back:
    // the file looks unchanged, so only the expiration can make the mount
    // read it again.
    let (later_exp, later) = rfc3339_in(120 * MIN);
    assert_eq!(first_exp.len(), later_exp.len());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut &file, profile_json(2, Some(&later_exp)).as_bytes()).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);

    clock.advance(2 * PROFILE_CHECK_INTERVAL);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-PROFILE-1");

    // Five minutes before the expiration: read again.
    clock.advance(56 * MIN);
    let creds = provider.provide_credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "AKID-PROFILE-2");
    assert_eq!(provider.state().expires_at(), Some(later));
}

#[tokio::test]
async fn an_expired_profile_not_rewritten_fails_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, _) = rfc3339_in(MIN);
    rotate(dir.path(), "team-a", 1, Some(&exp));
    let clock = Clock::default();
    let provider =
        RefreshingProvider::new(&profile_source(dir.path()), "r", clock.clone()).unwrap();
    clock.advance(2 * MIN);
    let err = provider.provide_credentials().await.unwrap_err();
    let text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
    assert!(
        text.contains(&format!(
            "no valid credentials from the profile team-a: the keys it gives expired at {exp}"
        )),
        "{text}"
    );
    assert_no_secret(&text);
}

#[test]
fn a_missing_or_misnamed_profile_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        RefreshingProvider::new(&profile_source(dir.path()), "r", Clock::default()).unwrap_err();
    assert!(err.contains("\"team-a\" does not exist"), "{err}");
    let source = CredentialSource::Profile {
        dir: dir.path().into(),
        name: "../x".into(),
    };
    let err = RefreshingProvider::new(&source, "r", Clock::default()).unwrap_err();
    assert!(err.contains("is not a credential profile name"), "{err}");
}

#[test]
fn a_failure_is_worth_a_log_line_once_per_message() {
    let state = CredentialState::new("profile team-a".into());
    let t = t0();
    assert!(state.record_failure("file half written", t));
    assert!(!state.record_failure("file half written", t + MIN));
    assert!(state.record_failure("file too open", t + 2 * MIN));
    // The run of failures began at the first one.
    assert_eq!(
        state.last_failure(),
        Some(RefreshFailure {
            message: "file too open".into(),
            since: t
        })
    );
    state.record_success();
    assert_eq!(state.last_failure(), None);
    assert!(state.record_failure("file too open", t + 3 * MIN));
    assert_eq!(state.last_failure().unwrap().since, t + 3 * MIN);
}
