//! Delivering records with PutRecords: checked against Kinesis' limits before anything is sent,
//! split into batches, and only the entries Kinesis reports as failed are sent again.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};

use super::error::{AwsError, AwsErrorKind, classify_code, failure};
use super::{AwsConfig, Inner, Session};
use crate::arn::StreamArn;
use crate::records::Record;

/// Kinesis' limits per call, in records and in bytes (per record: `crate::records`).
pub const MAX_CALL_RECORDS: usize = 500;
pub const MAX_CALL_BYTES: usize = 5 << 20;

/// What a [`put_records`](super::Aws::put_records) call delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Records accepted, each counted once however often it was sent.
    pub records: u64,
    /// Their size as Kinesis counts it (data plus partition keys).
    pub bytes: u64,
    /// PutRecords calls made, retries included.
    pub calls: u32,
    /// Entries sent again after Kinesis reported them failed or the call failed transiently.
    pub retried_records: u64,
}

/// Who is putting where, for calls and messages.
pub(super) struct Target<'a> {
    pub client: aws_sdk_kinesis::Client,
    pub stream_arn: &'a str,
    pub role_arn: &'a str,
}

pub(super) async fn put_records(
    aws: &Inner,
    session: &Session,
    stream_arn: &StreamArn,
    records: &[Record],
) -> Result<Delivered, AwsError> {
    check(records)?;
    let mut delivered = Delivered {
        records: records.len() as u64,
        bytes: records.iter().map(|r| r.size() as u64).sum(),
        ..Delivered::default()
    };
    if records.is_empty() {
        return Ok(delivered);
    }
    let client = session.kinesis(aws, stream_arn.region());
    let target = Target { client, stream_arn: stream_arn.as_str(), role_arn: session.role_arn() };
    let sizes: Vec<usize> = records.iter().map(Record::size).collect();
    for batch in batches(&sizes) {
        aws.counters.put_records.fetch_add(1, Ordering::Relaxed);
        delivered.calls += 1;
        let first = send(&target, records, &batch.collect::<Vec<_>>()).await?;
        retry_failed(aws, &target, records, first, &mut delivered).await?;
    }
    Ok(delivered)
}

/// Like [`put_records`], but records that fit in one call share it with other callers
/// delivering to the same stream with the same session at the same time (see `coalesce.rs`).
/// The records are given back with the result.
pub(super) async fn put_records_coalesced(
    aws: &std::sync::Arc<Inner>,
    session: &Session,
    stream_arn: &StreamArn,
    records: Vec<Record>,
) -> (Vec<Record>, Result<Delivered, AwsError>) {
    let sizes: Vec<usize> = records.iter().map(Record::size).collect();
    if !aws.config.put_coalesce || records.is_empty() || check(&records).is_err() || batches(&sizes).len() > 1 {
        let result = put_records(aws, session, stream_arn, &records).await;
        return (records, result);
    }
    let (records, first) = super::coalesce::submit(aws, session, stream_arn, records).await;
    let mut delivered = Delivered {
        records: records.len() as u64,
        bytes: sizes.iter().sum::<usize>() as u64,
        calls: 1,
        ..Delivered::default()
    };
    let result = match first {
        Ok(first) if first.failed.is_empty() => Ok(delivered),
        Ok(first) => {
            let client = session.kinesis(aws, stream_arn.region());
            let target = Target { client, stream_arn: stream_arn.as_str(), role_arn: session.role_arn() };
            retry_failed(aws, &target, &records, first, &mut delivered).await.map(|()| delivered)
        }
        Err(error) => Err(error),
    };
    (records, result)
}

/// Sends the entries an attempt left failed (`retry`) again, only those, until all are accepted,
/// an error that a retry cannot fix occurs, or the attempts run out. Retried entries go after the
/// ones that succeeded, which is why order within a partition key is only best effort.
async fn retry_failed(
    aws: &Inner,
    target: &Target<'_>,
    records: &[Record],
    mut retry: Retry,
    delivered: &mut Delivered,
) -> Result<(), AwsError> {
    let mut attempt = 1;
    loop {
        let Retry { failed, error, throttled } = retry;
        if failed.is_empty() {
            return Ok(());
        }
        if attempt >= aws.config.put_max_attempts {
            let hint = if throttled { "add shards or use on-demand capacity if this persists" } else { "retry later" };
            return Err(AwsError::new(
                AwsErrorKind::Transient,
                format!(
                    "kinesis did not accept {} of {} records on {} after {attempt} attempts (last error: {error}); {hint}",
                    failed.len(),
                    records.len(),
                    target.stream_arn
                ),
            ));
        }
        delivered.retried_records += failed.len() as u64;
        tokio::time::sleep(backoff(attempt, &aws.config)).await;
        attempt += 1;
        aws.counters.put_records.fetch_add(1, Ordering::Relaxed);
        delivered.calls += 1;
        retry = send(target, records, &failed).await?;
    }
}

/// What to send again after one PutRecords call.
pub(super) struct Retry {
    /// Indices (into the caller's records) of the entries to send again; empty when all succeeded.
    pub failed: Vec<usize>,
    /// The last error, for the message if the attempts run out.
    pub error: String,
    /// Whether that error was throttling, which more stream capacity would fix.
    pub throttled: bool,
}

/// One PutRecords call of the records at `pending`. Errors are those a retry cannot fix.
async fn send(target: &Target<'_>, records: &[Record], pending: &[usize]) -> Result<Retry, AwsError> {
    let entries = pending.iter().map(|&i| entry(&records[i])).collect();
    match call(target, entries).await? {
        Answered::Entries(output) => {
            let Retry { failed, error, throttled } = split(target, output.records(), pending)?;
            Ok(Retry { failed: failed.iter().map(|&position| pending[position]).collect(), error, throttled })
        }
        Answered::Whole { error, throttled } => Ok(Retry { failed: pending.to_vec(), error, throttled }),
    }
}

/// How a PutRecords call went, short of an error no retry fixes.
pub(super) enum Answered {
    /// Kinesis answered for every entry, in order.
    Entries(PutRecordsOutput),
    /// The call as a whole failed for a reason a retry may fix; nothing is known of any entry.
    Whole { error: String, throttled: bool },
}

/// One PutRecords call of `entries`.
pub(super) async fn call(target: &Target<'_>, entries: Vec<PutRecordsRequestEntry>) -> Result<Answered, AwsError> {
    let sent = entries.len();
    let result = target.client.put_records().stream_arn(target.stream_arn).set_records(Some(entries)).send().await;
    let output = match result {
        Ok(output) => output,
        Err(err) => {
            let failure = failure(&err);
            let code = failure.code.unwrap_or_default();
            if failure.kind != AwsErrorKind::Transient {
                return Err(call_error(target, failure.kind, &code, &failure.detail));
            }
            return Ok(Answered::Whole { error: failure.detail, throttled: is_throttling(&code) });
        }
    };
    if output.records().len() != sent {
        let error = format!("kinesis answered {} entries for {sent} records", output.records().len());
        return Ok(Answered::Whole { error, throttled: false });
    }
    Ok(Answered::Entries(output))
}

/// What a call's answer for some records leaves: the positions (into `entries`) of the records
/// that failed for a reason a retry can fix, or the error of the first one a retry cannot fix.
/// `numbers` names each position's record in messages.
pub(super) fn split(
    target: &Target<'_>,
    entries: &[PutRecordsResultEntry],
    numbers: &[usize],
) -> Result<Retry, AwsError> {
    let codes: Vec<Option<&str>> = entries.iter().map(|e| e.error_code()).collect();
    let describe = |position: usize| {
        let entry = &entries[position];
        let code = entry.error_code().unwrap_or_default();
        (code, format!("record {}: {code}: {}", numbers[position], entry.error_message().unwrap_or_default()))
    };
    let failed = failed_entries(&codes).map_err(|(position, kind)| {
        let (code, detail) = describe(position);
        call_error(target, kind, code, &detail)
    })?;
    let (code, error) = failed.last().map(|&position| describe(position)).unwrap_or_default();
    Ok(Retry { failed, error, throttled: is_throttling(code) })
}

fn is_throttling(code: &str) -> bool {
    code.contains("Throughput") || code.contains("Throttl") || code.contains("LimitExceeded")
}

pub(super) fn entry(record: &Record) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .data(Blob::new(record.data.clone()))
        .partition_key(&record.partition_key)
        .set_explicit_hash_key(record.explicit_hash_key.clone())
        .build()
        .expect("data and partition key are set")
}

/// The error for a call (or an entry) that a retry cannot fix, saying what the tenant must do.
fn call_error(target: &Target<'_>, kind: AwsErrorKind, code: &str, detail: &str) -> AwsError {
    let (stream, role) = (target.stream_arn, target.role_arn);
    let message = match kind {
        AwsErrorKind::AccessDenied if code.starts_with("KMS") => format!(
            "kinesis could not use the KMS key of stream {stream} for role {role} ({detail}); allow \
             kms:GenerateDataKey on the stream's key in the role's policy, and make sure the key is enabled"
        ),
        AwsErrorKind::AccessDenied => format!(
            "kinesis denied PutRecords on {stream} to role {role} ({detail}); allow kinesis:PutRecords on the \
             stream in the role's policy"
        ),
        AwsErrorKind::NotFound if code.starts_with("KMS") => {
            format!("the KMS key of stream {stream} was not found ({detail}); fix the stream's encryption settings")
        }
        AwsErrorKind::NotFound => format!(
            "kinesis stream {stream} was not found by role {role} ({detail}); create the stream in the role's \
             account, or fix target.stream_arn"
        ),
        AwsErrorKind::Invalid => {
            format!("kinesis rejected PutRecords on {stream} ({detail}); check target.stream_arn and the records")
        }
        AwsErrorKind::Transient => format!("kinesis PutRecords on {stream} failed ({detail}); retry later"),
    };
    AwsError::new(kind, message)
}

/// Checks every record against Kinesis' rules, so that a bad record fails the whole call before
/// anything is sent, instead of being dropped or failing one batch among several. Runs check
/// their records when `transform` returns (`crate::records`); this catches entries stored before
/// that check existed.
fn check(records: &[Record]) -> Result<(), AwsError> {
    for (i, record) in records.iter().enumerate() {
        if let Some(problem) = crate::records::record_problem(
            i as u64,
            &record.data,
            &record.partition_key,
            record.explicit_hash_key.as_deref(),
        ) {
            return Err(AwsError::invalid(problem));
        }
    }
    Ok(())
}

/// Splits records (by size) into consecutive batches within the per-call limits.
fn batches(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start == MAX_CALL_RECORDS || bytes + size > MAX_CALL_BYTES) {
            batches.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        batches.push(start..sizes.len());
    }
    batches
}

/// The positions of the entries to send again, given each entry's error code; or the position
/// and kind of the first entry whose error a retry cannot fix.
fn failed_entries(codes: &[Option<&str>]) -> Result<Vec<usize>, (usize, AwsErrorKind)> {
    let mut failed = Vec::new();
    for (position, code) in codes.iter().enumerate() {
        if let Some(code) = code {
            match classify_code(Some(code), None) {
                AwsErrorKind::Transient => failed.push(position),
                kind => return Err((position, kind)),
            }
        }
    }
    Ok(failed)
}

/// Exponential backoff with full jitter: a uniform wait between zero and the attempt's bound.
fn backoff(attempt: u32, config: &AwsConfig) -> Duration {
    let bound = backoff_bound(attempt, config.put_backoff_base_ms, config.put_backoff_max_ms);
    // Without randomness the middle of the range still spreads retries out.
    let random = getrandom::u64().unwrap_or(bound / 2);
    Duration::from_millis(random % (bound + 1))
}

/// The bound on the wait after attempt `attempt` (1-based): base, 2 × base, 4 × base, … up to max.
fn backoff_bound(attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
    base_ms.saturating_mul(1 << attempt.saturating_sub(1).min(32)).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MAX_RECORD_BYTES;

    fn record(data: usize, key: &str) -> Record {
        Record { data: vec![b'x'; data], partition_key: key.into(), explicit_hash_key: None }
    }

    #[test]
    fn batches_hold_at_most_500_records_and_5_mib() {
        assert!(batches(&[]).is_empty());
        assert_eq!(batches(&[10; 1200]), vec![0..500, 500..1000, 1000..1200]);
        // Five records of 1 MiB fill a call exactly; the sixth starts the next one.
        assert_eq!(batches(&[MAX_RECORD_BYTES; 6]), vec![0..5, 5..6]);
        assert_eq!(batches(&[MAX_RECORD_BYTES, 1, MAX_RECORD_BYTES * 4]), vec![0..2, 2..3]);
        assert_eq!(batches(&[3 << 20, 3 << 20, 1]), vec![0..1, 1..3]);
    }

    #[test]
    fn a_record_over_1_mib_fails_naming_its_index_and_size() {
        let mut records = vec![record(10, "a"), record(MAX_RECORD_BYTES - 1, "b")];
        assert!(check(&records).is_ok(), "exactly 1 MiB with its key fits");
        records.push(record(MAX_RECORD_BYTES, "c"));
        let err = check(&records).unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Invalid);
        assert!(err.message.contains("record 2 is 1048577 bytes"), "{}", err.message);
    }

    #[test]
    fn only_retryable_entry_failures_are_retried() {
        let codes = [None, Some("ProvisionedThroughputExceededException"), None, Some("InternalFailure")];
        assert_eq!(failed_entries(&codes), Ok(vec![1, 3]));
        assert_eq!(failed_entries(&[None, None]), Ok(vec![]));
        let codes = [Some("ProvisionedThroughputExceededException"), Some("KMSAccessDeniedException")];
        assert_eq!(failed_entries(&codes), Err((1, AwsErrorKind::AccessDenied)));
    }

    #[test]
    fn backoff_doubles_up_to_the_bound_with_full_jitter() {
        assert_eq!((1..=6).map(|a| backoff_bound(a, 100, 2000)).collect::<Vec<_>>(), [100, 200, 400, 800, 1600, 2000]);
        assert_eq!(backoff_bound(200, 100, 2000), 2000);
        assert_eq!(backoff_bound(1, u64::MAX, u64::MAX), u64::MAX);
        let config = AwsConfig { put_backoff_base_ms: 50, put_backoff_max_ms: 60, ..AwsConfig::default() };
        let waits: Vec<Duration> = (0..50).map(|_| backoff(3, &config)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(60)));
        assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
    }
}
