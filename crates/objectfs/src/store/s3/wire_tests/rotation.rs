//! Wire tests of credentials that change under a running store: after a
//! profile file is rotated, or a metadata service (Alibaba Cloud ECS in
//! hardened mode, AWS EC2 IMDSv2 through the SDK's default chain) hands
//! out new keys, the next request's SigV4 scope names the new access key
//! id and its `x-amz-security-token` is the new token. The provider's
//! clock is moved ahead by the tests; nothing waits for time to pass.

use super::*;
use crate::store::s3::credentials::fake_metadata::{FakeMetadata, Flavor, Issued};
use crate::store::s3::credentials::tests::{MIN, rotate};
use crate::store::s3::credentials::{Clock, CredentialSource, PROFILE_CHECK_INTERVAL};

/// The access key id a request was signed with, and its session token.
fn signed_with(request: &Request) -> (String, Option<String>) {
    let scope = request.scope();
    (
        scope.first().map_or(String::new(), |s| s.to_string()),
        request.header("x-amz-security-token").map(str::to_string),
    )
}

/// A store on the keys a fake metadata service of `flavor` hands out for
/// `role` (`source` given the service's endpoint): one request, a rotation
/// at the service, the clock moved past the refresh point, a second
/// request. Checks that each request was signed with the keys handed out
/// at its time; returns the service and the store's credential state, which
/// must name the second keys' expiry.
async fn rotated_on_the_wire(
    flavor: Flavor,
    role: &str,
    source: impl FnOnce(String) -> CredentialSource,
) -> (
    FakeMetadata,
    Arc<crate::store::s3::credentials::CredentialState>,
) {
    let first = Issued::numbered(1, 60 * MIN);
    let second = Issued::numbered(2, 120 * MIN);
    let fake = FakeMetadata::start(flavor, role, first.clone()).await;
    let clock = Clock::default();
    let (requests, _, (out, state)) = capture_with_clock(
        sourced(source(fake.endpoint())),
        vec![not_found(), not_found()],
        clock.clone(),
        async |s: &S3Store| {
            let first = s.head("key").await;
            fake.issue(second.clone());
            clock.advance(56 * MIN);
            ((first, s.head("key").await), s.credential_state())
        },
    )
    .await;
    assert_eq!(out, (Ok(None), Ok(None)));
    assert_eq!(
        signed_with(&requests[0]),
        (first.key_id.clone(), Some(first.token.clone()))
    );
    assert_eq!(
        signed_with(&requests[1]),
        (second.key_id.clone(), Some(second.token.clone()))
    );
    assert_eq!(state.expires_at(), Some(second.expiration));
    (fake, state)
}

fn sourced(source: CredentialSource) -> S3Config {
    S3Config {
        bucket: "mybucket".into(),
        endpoint: Some("http://s3.us-east-1.amazonaws.com".into()),
        credential_source: Some(source),
        ..S3Config::default()
    }
}

#[tokio::test]
async fn a_rotated_profile_signs_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    rotate(dir.path(), "team-a", 1, None);
    let clock = Clock::default();
    let source = CredentialSource::Profile {
        dir: dir.path().into(),
        name: "team-a".into(),
    };
    let (requests, _, out) = capture_with_clock(
        sourced(source),
        vec![not_found(), not_found()],
        clock.clone(),
        async |s: &S3Store| {
            let first = s.head("key").await;
            rotate(dir.path(), "team-a", 2, None);
            clock.advance(PROFILE_CHECK_INTERVAL);
            (first, s.head("key").await)
        },
    )
    .await;
    assert_eq!(out, (Ok(None), Ok(None)));
    assert_eq!(requests.len(), 2);
    assert_eq!(
        signed_with(&requests[0]),
        ("AKID-PROFILE-1".into(), Some("TOKEN-PROFILE-1-zzQ".into()))
    );
    assert_eq!(
        signed_with(&requests[1]),
        ("AKID-PROFILE-2".into(), Some("TOKEN-PROFILE-2-zzQ".into()))
    );
}

#[tokio::test]
async fn ecs_ram_role_keys_sign_and_rotate_on_the_wire() {
    let (fake, state) = rotated_on_the_wire(Flavor::Aliyun, "web-role", |endpoint| {
        CredentialSource::EcsRamRole {
            role: None,
            endpoint: Some(endpoint),
        }
    })
    .await;
    assert_eq!(state.describe(), "ECS RAM role web-role");
    // Hardened mode: each fetch asks for a session token with its
    // lifetime, and every GET carries one the service handed out.
    let seen = fake.seen();
    let puts: Vec<_> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(puts.len(), 2);
    assert!(puts.iter().all(|p| {
        p.header("x-aliyun-ecs-metadata-token-ttl-seconds")
            .is_some()
    }));
    let tokens = fake.tokens();
    for get in seen.iter().filter(|s| s.method == "GET") {
        let token = get.header("x-aliyun-ecs-metadata-token").unwrap_or("");
        assert!(tokens.iter().any(|t| t == token), "{get:?}");
    }
}

/// No valid keys at all: the request never reaches the store, and its
/// error names the source and the reason.
#[tokio::test]
async fn no_valid_keys_fail_the_request_before_it_is_sent() {
    let fake = FakeMetadata::start(Flavor::Aliyun, "web-role", Issued::numbered(1, 60 * MIN)).await;
    fake.set_down(true);
    let source = CredentialSource::EcsRamRole {
        role: Some("web-role".into()),
        endpoint: Some(fake.endpoint()),
    };
    let (requests, _, out) = capture_with_clock(
        sourced(source),
        vec![not_found()],
        Clock::default(),
        async |s: &S3Store| s.head("key").await,
    )
    .await;
    assert!(requests.is_empty(), "{requests:?}");
    let err = out.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no valid credentials from the ECS RAM role web-role"),
        "{err:?}"
    );
    assert!(!text.contains("zzQ"), "{text}");
}

/// The AWS SDK's default chain, its instance metadata endpoint pointed at
/// a fake IMDSv2. It also consults this process's environment and
/// `~/.aws`; where those hold credentials, the chain takes them first and
/// this test cannot see the metadata path, so it says so and passes
/// nothing (it fails instead with OSV_TEST_REQUIRE_ALL=1).
#[tokio::test]
async fn aws_default_chain_reads_instance_metadata_on_the_wire() {
    let env_sources = [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_EC2_METADATA_DISABLED",
    ];
    let home_files = std::env::var_os("HOME").is_some_and(|h| {
        let aws = std::path::Path::new(&h).join(".aws");
        aws.join("credentials").exists() || aws.join("config").exists()
    });
    if let Some(var) = env_sources.iter().find(|v| std::env::var_os(v).is_some()) {
        let why = format!("{var} is set, so the AWS chain would not reach instance metadata");
        assert!(std::env::var_os("OSV_TEST_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    if home_files {
        let why = "~/.aws has a config or credentials file, which the AWS chain reads first";
        assert!(std::env::var_os("OSV_TEST_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }

    let (fake, state) = rotated_on_the_wire(Flavor::Aws, "ec2-role", |endpoint| {
        CredentialSource::AwsDefault {
            imds_endpoint: Some(endpoint),
        }
    })
    .await;
    assert_eq!(state.describe(), "AWS default chain");
    // IMDSv2: a session token asked for with its lifetime, then the role
    // and its credentials, each GET with the token.
    let seen = fake.seen();
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].path, "/latest/api/token");
    assert!(
        seen[0]
            .header("x-aws-ec2-metadata-token-ttl-seconds")
            .is_some()
    );
    let paths: Vec<_> = seen.iter().map(|s| s.path.as_str()).collect();
    assert!(
        paths.contains(&"/latest/meta-data/iam/security-credentials/")
            && paths.contains(&"/latest/meta-data/iam/security-credentials/ec2-role"),
        "{paths:?}"
    );
    let tokens = fake.tokens();
    for get in seen.iter().filter(|s| s.method == "GET") {
        let token = get.header("x-aws-ec2-metadata-token").unwrap_or("");
        assert!(tokens.iter().any(|t| t == token), "{get:?}");
    }
}
