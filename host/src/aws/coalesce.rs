//! Coalesced delivery: records bound for one stream with one assumed-role session share a
//! `PutRecords` call, whichever runs they come from.
//!
//! Callers that deliver at the same time to the same (role, external id, stream) join a lane.
//! The first one to find the lane idle starts a task that sends what is waiting, as many whole
//! submissions as fit in one call (500 records, 5 MiB), and keeps going while more arrive; so
//! the busier a lane, the fuller its calls, and an idle lane costs nothing. The answer is split
//! back per submission: each gets the positions of its own records Kinesis reported failed, or
//! its own error for a record a retry cannot fix. Retries are each caller's own (see
//! `kinesis.rs`), so a lane never sleeps: a backoff delays only the submission that needs it.
//!
//! Lanes are per session, and sessions are never shared between tenants (see `credentials.rs`),
//! so one tenant's throttled stream cannot hold up another tenant's records.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use super::error::{AwsError, AwsErrorKind};
use super::kinesis::{Answered, MAX_CALL_BYTES, MAX_CALL_RECORDS, Retry, Target, call, entry, split};
use super::{Inner, Session};
use crate::arn::StreamArn;
use crate::records::Record;

/// Role, external id and stream: who sends where.
type LaneKey = (String, String, String);

/// Every lane with submissions waiting or a call under way.
#[derive(Default)]
pub(super) struct Lanes {
    lanes: Mutex<HashMap<LaneKey, Lane>>,
}

#[derive(Default)]
struct Lane {
    waiting: VecDeque<Submission>,
    /// Whether a task is sending for this lane; it removes the lane once nothing waits.
    sending: bool,
}

struct Submission {
    session: Session,
    stream_arn: StreamArn,
    records: Vec<Record>,
    bytes: usize,
    reply: tokio::sync::oneshot::Sender<Answer>,
}

/// A submission's records, given back, and what the shared call left of them to retry.
type Answer = (Vec<Record>, Result<Retry, AwsError>);

/// Sends `records` (which fit in one call) in a call shared with other submissions of the same
/// lane; answers with the records and what is left to retry.
pub(super) async fn submit(
    aws: &Arc<Inner>,
    session: &Session,
    stream_arn: &StreamArn,
    records: Vec<Record>,
) -> Answer {
    let key = (session.role_arn().to_string(), session.external_id().to_string(), stream_arn.as_str().to_string());
    let bytes = records.iter().map(Record::size).sum();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let submission = Submission { session: session.clone(), stream_arn: stream_arn.clone(), records, bytes, reply };
    let start = {
        let mut lanes = aws.lanes.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let lane = lanes.entry(key.clone()).or_default();
        lane.waiting.push_back(submission);
        !std::mem::replace(&mut lane.sending, true)
    };
    if start {
        tokio::spawn(send_lane(Arc::clone(aws), key));
    }
    answer.await.unwrap_or_else(|_| {
        // The lane's task ended without answering (the runtime is shutting down): nothing is
        // known of the records, so they count as not delivered.
        let error = AwsError::new(AwsErrorKind::Transient, "the delivery was cancelled; retry later");
        (Vec::new(), Err(error))
    })
}

/// Sends the lane's waiting submissions, a call's worth at a time, until none waits.
async fn send_lane(aws: Arc<Inner>, key: LaneKey) {
    loop {
        let batch = {
            let mut lanes = aws.lanes.lanes.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(lane) = lanes.get_mut(&key) else { return };
            let batch = take_call(&mut lane.waiting);
            if batch.is_empty() {
                lanes.remove(&key);
                return;
            }
            batch
        };
        send_call(&aws, batch).await;
    }
}

/// Whole submissions from the front of `waiting`, as many as fit in one call (at least one).
fn take_call(waiting: &mut VecDeque<Submission>) -> Vec<Submission> {
    let (mut records, mut bytes) = (0, 0);
    let mut batch = Vec::new();
    while let Some(next) = waiting.front() {
        let fits = records + next.records.len() <= MAX_CALL_RECORDS && bytes + next.bytes <= MAX_CALL_BYTES;
        if !batch.is_empty() && !fits {
            break;
        }
        records += next.records.len();
        bytes += next.bytes;
        batch.extend(waiting.pop_front());
    }
    batch
}

/// One PutRecords call for every record of `batch`, its answer split per submission.
async fn send_call(aws: &Inner, batch: Vec<Submission>) {
    let first = &batch[0];
    let client = first.session.kinesis(aws, first.stream_arn.region());
    let target = Target { client, stream_arn: first.stream_arn.as_str(), role_arn: first.session.role_arn() };
    let entries = batch.iter().flat_map(|s| s.records.iter().map(entry)).collect();
    aws.counters.put_records.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let all = |s: &Submission| (0..s.records.len()).collect::<Vec<_>>();
    let answers: Vec<Result<Retry, AwsError>> = match call(&target, entries).await {
        Err(error) => batch.iter().map(|_| Err(AwsError::new(error.kind, error.message.clone()))).collect(),
        Ok(Answered::Whole { error, throttled }) => {
            batch.iter().map(|s| Ok(Retry { failed: all(s), error: error.clone(), throttled })).collect()
        }
        Ok(Answered::Entries(output)) => {
            let mut offset = 0;
            let mut answers = Vec::with_capacity(batch.len());
            for submission in &batch {
                let own = &output.records()[offset..offset + submission.records.len()];
                offset += submission.records.len();
                answers.push(split(&target, own, &all(submission)));
            }
            answers
        }
    };
    for (submission, answer) in batch.into_iter().zip(answers) {
        // A caller that stopped waiting (its run was cancelled) needs no answer.
        let _ = submission.reply.send((submission.records, answer));
    }
}
