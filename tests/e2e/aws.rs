//! `sluice::aws` in process against real moto, through the fault proxy: assumed-role sessions and
//! their cache, secrets, PutRecords batching and retries, the errors tenants see, and isolation
//! between tenants' accounts.
//!
//! Each test starts its own moto. Tenants' resources are set up and read back straight from moto
//! (not through the proxy) with credentials of the tenant's role, so that the proxy's counts are
//! the calls of the code under test. moto's STS accepts AssumeRole for any role ARN and serves
//! requests signed with the credentials it issued from the role's account, so a role in account
//! 111111111111 sees only that account's streams.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_kinesis::config::Credentials;
use sluice::arn::{SecretArn, StreamArn};
use sluice::aws::{Aws, AwsConfig, AwsErrorKind, RoleRef, Session};
use sluice::records::Record;
use sluice_tests::Moto;
use sluice_tests::fault_proxy::{Fault, FaultProxy};
use sluice_tests::tenant_account::{TenantAccount as Tenant, sdk_config};

const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
const GET_SECRET_VALUE: &str = "secretsmanager.GetSecretValue";
const ASSUME_ROLE: &str = "AssumeRole";
const EXTERNAL_ID: &str = "ext-0123456789abcdef";

/// moto, the proxy in front of it, and the platform's SDK configuration pointing at the proxy.
struct Setup {
    moto: Moto,
    proxy: FaultProxy,
    base: SdkConfig,
}

impl Setup {
    async fn new() -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.endpoint);
        let base = sdk_config(&proxy.endpoint, Credentials::new("testing", "testing", None, None, "platform")).await;
        Self { moto, proxy, base }
    }

    /// An `Aws` with small backoffs, so that retries cost milliseconds.
    fn aws(&self, config: AwsConfig) -> Aws {
        Aws::from_sdk_config(self.base.clone(), config)
    }

    /// A tenant with a role in `account`, acting on moto directly.
    async fn tenant(&self, account: &str) -> Tenant {
        Tenant::assume(&self.moto.endpoint, account).await
    }
}

fn fast() -> AwsConfig {
    AwsConfig { put_backoff_base_ms: 5, put_backoff_max_ms: 20, ..AwsConfig::default() }
}

/// The role every test here assumes, with one fixed external id.
trait Role {
    fn role(&self) -> RoleRef<'_>;
}

impl Role for Tenant {
    fn role(&self) -> RoleRef<'_> {
        RoleRef { role_arn: &self.role, external_id: EXTERNAL_ID, session_name: "sluice-t-1-p-1" }
    }
}

/// The ARNs the tests get from moto as text, typed as the daemon's projects hold them.
trait Typed {
    fn secret_arn(&self) -> SecretArn;
    fn stream_arn(&self) -> StreamArn;
}

impl Typed for str {
    fn secret_arn(&self) -> SecretArn {
        SecretArn::parse(self).unwrap()
    }

    fn stream_arn(&self) -> StreamArn {
        StreamArn::parse(self).unwrap()
    }
}

fn records(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            data: format!("{prefix}-{i}").into_bytes(),
            partition_key: format!("pk-{}", i % 7),
            explicit_hash_key: None,
        })
        .collect()
}

fn as_read(records: &[Record]) -> Vec<(String, String)> {
    records.iter().map(|r| (r.partition_key.clone(), String::from_utf8(r.data.clone()).unwrap())).collect()
}

#[tokio::test]
async fn assumed_sessions_are_cached_single_flight_and_renewed_before_expiry() {
    let setup = Setup::new().await;
    let tenant = setup.tenant("111111111111").await;
    let aws = setup.aws(fast());
    let (a, b) = tokio::join!(aws.assume(tenant.role()), aws.assume(tenant.role()));
    let (a, b) = (a.unwrap(), b.unwrap());
    let c = aws.assume(tenant.role()).await.unwrap();
    assert_eq!(aws.counters().assume_role_calls, 1, "concurrent and later calls share one AssumeRole");
    assert_eq!(setup.proxy.count(ASSUME_ROLE), 1);
    assert_eq!((a.expires_at(), b.expires_at()), (c.expires_at(), c.expires_at()));
    assert_eq!(a.role_arn(), tenant.role_arn);
    let debug = format!("{a:?}");
    assert!(debug.contains(&tenant.role_arn) && debug.contains("redacted"), "{debug}");

    // Another external id is another key (the confused-deputy guard is per project).
    let other = RoleRef { external_id: "ext-other-project", ..tenant.role() };
    aws.assume(other).await.unwrap();
    assert_eq!(aws.counters().assume_role_calls, 2);

    // Renewing "300 s before expiry" with 900 s sessions renews at once; asking to renew more
    // than a session's lifetime ahead makes every call renew.
    let renewing =
        setup.aws(AwsConfig { session_duration_seconds: 900, credentials_refresh_before_ms: 1_000_000, ..fast() });
    let first = renewing.assume(tenant.role()).await.unwrap();
    let second = renewing.assume(tenant.role()).await.unwrap();
    assert_eq!(renewing.counters().assume_role_calls, 2);
    assert_eq!(setup.proxy.count(ASSUME_ROLE), 4);
    let lifetime = first.expires_at().duration_since(std::time::SystemTime::now()).unwrap();
    assert!(lifetime <= Duration::from_secs(900) && lifetime > Duration::from_secs(800), "{lifetime:?}");
    // The renewed session's clients work, and the cache never mixes up the two sessions.
    let stream = tenant.stream("events").await;
    renewing.put_records(&second, &stream.stream_arn(), &records("renewed", 2)).await.unwrap();
    assert_eq!(tenant.read(&stream).await.len(), 2);
}

#[tokio::test]
async fn secrets_are_read_plain_or_by_json_field_cached_and_forgotten() {
    let setup = Setup::new().await;
    let tenant = setup.tenant("111111111111").await;
    let plain = tenant.secret("plain-key", "k-123\n").await;
    let json = tenant.secret("json-key", r#"{"api_key": "k-456", "other": 1}"#).await;
    let aws = setup.aws(fast());
    let session = aws.assume(tenant.role()).await.unwrap();

    assert_eq!(aws.secret(&session, &plain.secret_arn(), None).await.unwrap(), "k-123");
    assert_eq!(aws.secret(&session, &json.secret_arn(), Some("api_key")).await.unwrap(), "k-456");
    let err = aws.secret(&session, &json.secret_arn(), Some("missing")).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Invalid);
    assert!(err.message.contains("no string field `missing`") && !err.message.contains("k-456"), "{err}");
    let err = aws.secret(&session, &plain.secret_arn(), Some("api_key")).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Invalid);
    assert!(err.message.contains("is not a JSON object") && !err.message.contains("k-123"), "{err}");
    assert_eq!(aws.counters().get_secret_value_calls, 2, "the cache served every other read");

    // A rotated secret is seen after forget_secret, not before (the TTL is five minutes).
    tenant.secrets.put_secret_value().secret_id(&plain).secret_string("k-789").send().await.unwrap();
    assert_eq!(aws.secret(&session, &plain.secret_arn(), None).await.unwrap(), "k-123");
    aws.forget_secret(&session, &plain.secret_arn());
    assert_eq!(aws.secret(&session, &plain.secret_arn(), None).await.unwrap(), "k-789");
    assert_eq!(aws.counters().get_secret_value_calls, 3);
    assert_eq!(setup.proxy.count(GET_SECRET_VALUE), 3);

    // With a TTL of 1 ms every read goes to Secrets Manager.
    let short = setup.aws(AwsConfig { secret_ttl_ms: 1, ..fast() });
    let session = short.assume(tenant.role()).await.unwrap();
    short.secret(&session, &plain.secret_arn(), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    short.secret(&session, &plain.secret_arn(), None).await.unwrap();
    assert_eq!(short.counters().get_secret_value_calls, 2);

    let missing = "arn:aws:secretsmanager:eu-central-1:111111111111:secret:nope-AbCdEf";
    let err = aws.secret(&session, &missing.secret_arn(), None).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    assert!(err.message.contains("fix source.api_key.secret_arn"), "{err}");
}

#[tokio::test]
async fn records_arrive_in_the_roles_account_in_batches_and_oversized_ones_fail_first() {
    let setup = Setup::new().await;
    let tenant = setup.tenant("111111111111").await;
    let stream = tenant.stream("events").await;
    let aws = setup.aws(fast());
    let session = aws.assume(tenant.role()).await.unwrap();

    let sent = records("r", 1200);
    let delivered = aws.put_records(&session, &stream.stream_arn(), &sent).await.unwrap();
    assert_eq!((delivered.records, delivered.calls, delivered.retried_records), (1200, 3, 0));
    assert_eq!(delivered.bytes, sent.iter().map(|r| r.size() as u64).sum::<u64>());
    assert_eq!(setup.proxy.count(PUT_RECORDS), 3);
    assert_eq!(tenant.read(&stream).await, as_read(&sent), "every record, in order, with its partition key");

    let mut oversized = records("big", 2);
    oversized[1].data = vec![b'x'; (1 << 20) + 1 - oversized[1].partition_key.len()];
    let err = aws.put_records(&session, &stream.stream_arn(), &oversized).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Invalid);
    assert!(err.message.contains("record 1 is 1048577 bytes"), "{err}");
    assert_eq!(setup.proxy.count(PUT_RECORDS), 3, "nothing was sent");
    assert_eq!(aws.counters().put_records_calls, 3);
    assert_eq!(tenant.read(&stream).await.len(), 1200);
}

#[tokio::test]
async fn a_partial_failure_resends_only_the_failed_entries() {
    let setup = Setup::new().await;
    let tenant = setup.tenant("111111111111").await;
    let stream = tenant.stream("events").await;
    let aws = setup.aws(fast());
    let session = aws.assume(tenant.role()).await.unwrap();

    setup.proxy.inject(PUT_RECORDS, Fault::PartialFailure, 1);
    let sent = records("p", 10);
    let delivered = aws.put_records(&session, &stream.stream_arn(), &sent).await.unwrap();
    assert_eq!((delivered.records, delivered.calls, delivered.retried_records), (10, 2, 5));
    // moto kept the entries the proxy marked failed, so exactly those arrive twice, after the rest.
    let mut expected = as_read(&sent);
    expected.extend(as_read(&sent).into_iter().step_by(2));
    assert_eq!(tenant.read(&stream).await, expected);
}

#[tokio::test]
async fn throttling_server_errors_and_outages_are_retried_then_transient() {
    let setup = Setup::new().await;
    let tenant = setup.tenant("111111111111").await;
    let stream = tenant.stream("events").await;
    let aws = setup.aws(AwsConfig { put_max_attempts: 3, ..fast() });
    let session = aws.assume(tenant.role()).await.unwrap();

    setup.proxy.inject(PUT_RECORDS, Fault::Throttle, 2);
    let delivered = aws.put_records(&session, &stream.stream_arn(), &records("a", 3)).await.unwrap();
    assert_eq!((delivered.calls, delivered.retried_records), (3, 6));
    assert_eq!(setup.proxy.count(PUT_RECORDS), 3);

    setup.proxy.inject(PUT_RECORDS, Fault::ServerError, 1);
    let delivered = aws.put_records(&session, &stream.stream_arn(), &records("b", 3)).await.unwrap();
    assert_eq!(delivered.calls, 2);
    assert_eq!(tenant.read(&stream).await, [as_read(&records("a", 3)), as_read(&records("b", 3))].concat());

    setup.proxy.inject(PUT_RECORDS, Fault::Throttle, 3);
    let err = aws.put_records(&session, &stream.stream_arn(), &records("c", 3)).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Transient);
    assert!(err.message.contains("did not accept 3 of 3 records") && err.message.contains("after 3 attempts"), "{err}");

    setup.proxy.set_down("Kinesis_20131202.", true);
    let err = aws.put_records(&session, &stream.stream_arn(), &records("d", 3)).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Transient, "{err}");
    setup.proxy.set_down("Kinesis_20131202.", false);
    aws.put_records(&session, &stream.stream_arn(), &records("e", 3)).await.unwrap();
    assert_eq!(tenant.read(&stream).await.len(), 9, "nothing from the failed calls arrived");
}

#[tokio::test]
async fn denied_and_missing_resources_fail_at_once_saying_what_to_fix() {
    let setup = Setup::new().await;
    let tenant = setup.tenant("111111111111").await;
    let stream = tenant.stream("events").await;
    let secret = tenant.secret("key", "k-1").await;
    let aws = setup.aws(fast());

    setup.proxy.inject(ASSUME_ROLE, Fault::AccessDenied, 1);
    let err = aws.assume(tenant.role()).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::AccessDenied, "{err}");
    assert!(err.message.contains("trust policy") && err.message.contains("sts:ExternalId"), "{err}");
    let session = aws.assume(tenant.role()).await.expect("a failure is not cached");
    assert_eq!(aws.counters().assume_role_calls, 2);

    setup.proxy.inject(PUT_RECORDS, Fault::AccessDenied, 1);
    let err = aws.put_records(&session, &stream.stream_arn(), &records("x", 3)).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::AccessDenied);
    let fix = format!("kinesis denied PutRecords on {stream} to role {}", tenant.role_arn);
    assert!(err.message.contains(&fix) && err.message.contains("allow kinesis:PutRecords on the stream"), "{err}");
    assert_eq!(setup.proxy.count(PUT_RECORDS), 1, "not retried");

    setup.proxy.inject(GET_SECRET_VALUE, Fault::AccessDenied, 1);
    let err = aws.secret(&session, &secret.secret_arn(), None).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::AccessDenied);
    assert!(err.message.contains("allow secretsmanager:GetSecretValue"), "{err}");

    let missing = "arn:aws:kinesis:eu-central-1:111111111111:stream/missing";
    let err = aws.put_records(&session, &missing.stream_arn(), &records("x", 3)).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    assert!(err.message.contains("kinesis stream arn:aws:kinesis:eu-central-1:111111111111:stream/missing"), "{err}");
    assert!(tenant.read(&stream).await.is_empty());
}

#[tokio::test]
async fn roles_in_two_accounts_reach_only_their_own_streams() {
    let setup = Setup::new().await;
    let (a, b) = (setup.tenant("111111111111").await, setup.tenant("222222222222").await);
    let (stream_a, stream_b) = (a.stream("events").await, b.stream("events").await);
    let aws = setup.aws(fast());
    let sessions: HashMap<&str, Session> =
        HashMap::from([("a", aws.assume(a.role()).await.unwrap()), ("b", aws.assume(b.role()).await.unwrap())]);

    aws.put_records(&sessions["a"], &stream_a.stream_arn(), &records("for-a", 5)).await.unwrap();
    aws.put_records(&sessions["b"], &stream_b.stream_arn(), &records("for-b", 3)).await.unwrap();
    // Role A naming B's stream does not reach it (moto says not found; AWS would deny).
    assert!(aws.put_records(&sessions["a"], &stream_b.stream_arn(), &records("stray", 2)).await.is_err());

    assert_eq!(a.read(&stream_a).await, as_read(&records("for-a", 5)));
    assert_eq!(b.read(&stream_b).await, as_read(&records("for-b", 3)));
}

#[tokio::test]
async fn sts_throttling_and_secrets_manager_server_errors_are_retried_by_the_sdk() {
    let setup = Setup::new().await;
    let tenant = setup.tenant("111111111111").await;
    let secret = tenant.secret("key", "k-1").await;
    let aws = setup.aws(fast());

    setup.proxy.inject(ASSUME_ROLE, Fault::Throttle, 1);
    let session = aws.assume(tenant.role()).await.unwrap();
    assert_eq!((aws.counters().assume_role_calls, setup.proxy.count(ASSUME_ROLE)), (1, 2));

    setup.proxy.inject(GET_SECRET_VALUE, Fault::ServerError, 1);
    assert_eq!(aws.secret(&session, &secret.secret_arn(), None).await.unwrap(), "k-1");
    assert_eq!((aws.counters().get_secret_value_calls, setup.proxy.count(GET_SECRET_VALUE)), (1, 2));
}

/// The SDK bounds retries with a token bucket; by default every Secrets Manager client of a
/// region in the process shares one, so one tenant's failing reads would cost every other tenant
/// its retries.
#[tokio::test]
async fn one_tenants_failing_secret_reads_do_not_use_up_another_tenants_retries() {
    let setup = Setup::new().await;
    let (a, b) = (setup.tenant("111111111111").await, setup.tenant("222222222222").await);
    let (secret_a, secret_b) = (a.secret("key", "k-a").await, b.secret("key", "k-b").await);
    // Retries that wait a millisecond, so that using up a bucket takes a moment.
    let retry = aws_config::retry::RetryConfig::standard()
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(2));
    let aws = Aws::from_sdk_config(setup.base.to_builder().retry_config(retry).build(), fast());
    let (session_a, session_b) = (aws.assume(a.role()).await.unwrap(), aws.assume(b.role()).await.unwrap());

    // Each read of A's gets three server errors queued, enough for all its attempts, until A's
    // bucket refuses a retry (a bucket holds 500 tokens and a retry costs 14).
    let mut queued = 0;
    for _ in 0..100 {
        setup.proxy.inject(GET_SECRET_VALUE, Fault::ServerError, 3);
        let sent = setup.proxy.count(GET_SECRET_VALUE);
        let err = aws.secret(&session_a, &secret_a.secret_arn(), None).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Transient, "{err}");
        let attempts = setup.proxy.count(GET_SECRET_VALUE) - sent;
        if attempts < 3 {
            queued = 3 - attempts;
            break;
        }
    }
    assert!(queued > 0, "a hundred failing reads never used up the retries of A's session");

    // B's read meets the errors still queued and retries past them.
    assert_eq!(aws.secret(&session_b, &secret_b.secret_arn(), None).await.unwrap(), "k-b");
    // A's bucket is still empty: one error is one failed read.
    setup.proxy.inject(GET_SECRET_VALUE, Fault::ServerError, 1);
    assert_eq!(aws.secret(&session_a, &secret_a.secret_arn(), None).await.unwrap_err().kind, AwsErrorKind::Transient);
    assert_eq!(aws.secret(&session_a, &secret_a.secret_arn(), None).await.unwrap(), "k-a");
}

/// How long the call others queue up behind takes.
const SLOW_CALL: Duration = Duration::from_secs(2);

/// Deliveries to one stream with one session at the same time share PutRecords calls: while the
/// first call is slow, nineteen more deliveries queue up and go out together in the next one.
/// Each caller is answered for its own records, and a partial failure of a shared call makes
/// each caller resend only its own failed entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_put_records_calls_and_retry_only_their_own_failures() {
    let setup = Setup::new().await;
    let tenant = setup.tenant("111111111111").await;
    let stream = tenant.stream("events").await;
    let aws = setup.aws(fast());
    let session = aws.assume(tenant.role()).await.unwrap();

    let deliver_all = |prefix: &'static str, callers: usize, each: usize| {
        let tasks: Vec<_> = (0..callers)
            .map(|i| {
                let (aws, session, arn) = (aws.clone(), session.clone(), stream.stream_arn());
                tokio::spawn(async move {
                    let sent = records(&format!("{prefix}{i}"), each);
                    let (back, result) = aws.put_records_shared(&session, &arn, sent.clone()).await;
                    assert_eq!(back, sent, "the records are given back as they were");
                    result.unwrap()
                })
            })
            .collect();
        async move {
            let mut delivered = Vec::new();
            for task in tasks {
                delivered.push(task.await.unwrap());
            }
            delivered
        }
    };

    // The slow call gives the other callers time to queue up behind it: long enough for a
    // machine busy with other tests to spawn them all.
    setup.proxy.inject(PUT_RECORDS, Fault::Slow(SLOW_CALL), 1);
    let delivered = deliver_all("a", 20, 10).await;
    assert!(delivered.iter().all(|d| (d.records, d.retried_records) == (10, 0)), "{delivered:?}");
    assert_eq!(setup.proxy.count(PUT_RECORDS), 2, "the first caller's call, then one for the other nineteen");
    let mut expected: Vec<String> =
        (0..20).flat_map(|i| records(&format!("a{i}"), 10)).map(|r| String::from_utf8(r.data).unwrap()).collect();
    let mut arrived: Vec<String> = tenant.read(&stream).await.into_iter().map(|(_, data)| data).collect();
    expected.sort();
    arrived.sort();
    assert_eq!(arrived, expected, "every record once");

    // The shared call marks every other entry of all ten callers failed: 2 of each caller's 4
    // entries (positions 0 and 2), which that caller alone sends again.
    setup.proxy.inject(PUT_RECORDS, Fault::Slow(SLOW_CALL), 1);
    setup.proxy.inject(PUT_RECORDS, Fault::PartialFailure, 1);
    let before = setup.proxy.count(PUT_RECORDS);
    let delivered = deliver_all("b", 11, 4).await;
    assert!(delivered.iter().all(|d| d.records == 4), "{delivered:?}");
    let retried: u64 = delivered.iter().map(|d| d.retried_records).sum();
    assert_eq!(retried, 20, "half of the shared call's 40 entries: {delivered:?}");
    assert_eq!(setup.proxy.count(PUT_RECORDS) - before, 2 + 10, "slow call, shared call, one retry per caller");
    let arrived = tenant.read(&stream).await;
    let mut copies: Vec<usize> =
        (0..11).map(|i| arrived.iter().filter(|(_, data)| data.starts_with(&format!("b{i}-"))).count()).collect();
    copies.sort();
    // Whichever caller went first had the slow call to itself; the others' 2 failed entries
    // arrived twice.
    assert_eq!(copies, [vec![4], vec![6; 10]].concat());
}
