//! A project's status follows its runs: `pending` until the first successful AssumeRole,
//! `active` while runs succeed, `failing` after several failures in a row (with its schedule
//! backing off exponentially), and `active` again on the next success. `paused` belongs to the
//! tenant and runs never change it.

use std::time::Duration;

use jiff::Timestamp;

use super::Inner;
use crate::aws::AwsErrorKind;
use crate::scheduler::Outcome;
use crate::store::{Project, ProjectStatus};

/// Every stage name a run can time or fail in; metrics label values come only from here.
pub(super) const STAGES: [&str; 8] =
    ["deliver", "assume_role", "secret", "load_plugin", "prepare", "fetch", "transform", "outbox"];

/// Who can fix a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureKind {
    /// Throttling, timeouts, outages: the next run may well succeed.
    Transient,
    /// The tenant's configuration, plugin or source is wrong.
    Tenant,
    /// The tenant's role does not trust this project, or denies what the run needs.
    Denied,
    /// The host itself failed (storage); the tenant cannot fix it.
    Host,
}

impl From<AwsErrorKind> for FailureKind {
    fn from(kind: AwsErrorKind) -> Self {
        match kind {
            AwsErrorKind::Transient => FailureKind::Transient,
            AwsErrorKind::AccessDenied => FailureKind::Denied,
            AwsErrorKind::NotFound | AwsErrorKind::Invalid => FailureKind::Tenant,
        }
    }
}

/// Why a run failed: the stage, a message for the tenant, and when to try again.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub stage: &'static str,
    pub message: String,
    pub kind: FailureKind,
    /// The source's Retry-After, if it sent one.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that may pass by itself.
    pub fn new(stage: &'static str, message: impl Into<String>) -> Self {
        Self { stage, message: message.into(), kind: FailureKind::Transient, retry_after: None }
    }

    /// A failure the tenant must fix.
    pub fn tenant(stage: &'static str, message: impl Into<String>) -> Self {
        Self::new(stage, message).with_kind(FailureKind::Tenant)
    }

    /// A failure of the host's own storage.
    pub fn host(error: impl std::fmt::Display) -> Self {
        Self::new("host", format!("internal error, not caused by the project: {error}")).with_kind(FailureKind::Host)
    }

    pub fn with_kind(mut self, kind: impl Into<FailureKind>) -> Self {
        self.kind = kind.into();
        self
    }
}

/// How long a failing project waits: its schedule's interval doubled for every failure past
/// the threshold, at most `max`.
pub(super) fn backoff(interval: Duration, failures_past_threshold: u32, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(failures_past_threshold.min(31)).unwrap_or(u32::MAX);
    interval.checked_mul(factor).unwrap_or(max).min(max)
}

impl Inner {
    /// The first successful AssumeRole proves the tenant stack trusts the project.
    pub(super) async fn confirm_trust(&self, project: &Project) {
        if project.status != ProjectStatus::Pending {
            return;
        }
        let updated = self
            .store
            .update_project(&project.tenant_id, &project.id, |p| {
                if p.status == ProjectStatus::Pending {
                    p.status = ProjectStatus::Active;
                    p.status_message.clear();
                }
            })
            .await;
        if let Err(e) = updated {
            tracing::error!(project = %project.id, "cannot mark the project active: {e}");
        }
    }

    /// Updates the project's status after a run and tells the scheduler when to run it next.
    pub(super) async fn settle_status(
        &self,
        project: &Project,
        failure: Option<&super::status::Failure>,
        now: Timestamp,
    ) -> Outcome {
        let healthy = project.consecutive_failures == 0
            && project.backoff_until.is_none()
            && !matches!(project.status, ProjectStatus::Failing | ProjectStatus::Pending);
        if failure.is_none() && healthy {
            // The common case changes nothing: no write, no disk sync.
            return Outcome::default();
        }
        let threshold = self.config.failing_after_failures.max(1);
        let interval = project
            .schedule
            .parse::<crate::schedule::Schedule>()
            .ok()
            .and_then(|s| s.min_interval())
            .unwrap_or(Duration::from_secs(60));
        let max = Duration::from_millis(self.config.max_backoff_ms);
        let mut not_before = None;
        let updated = self
            .store
            .update_project(&project.tenant_id, &project.id, |p| match failure {
                None => {
                    p.consecutive_failures = 0;
                    p.backoff_until = None;
                    if matches!(p.status, ProjectStatus::Failing | ProjectStatus::Pending) {
                        p.status = ProjectStatus::Active;
                        p.status_message.clear();
                    }
                }
                Some(failure) => {
                    p.consecutive_failures = p.consecutive_failures.saturating_add(1);
                    let stillborn = p.status == ProjectStatus::Pending && failure.stage == "assume_role";
                    if stillborn {
                        p.status_message = format!("waiting for the first successful AssumeRole: {}", failure.message);
                    } else if p.status != ProjectStatus::Paused && p.consecutive_failures >= threshold {
                        p.status = ProjectStatus::Failing;
                        p.status_message = format!(
                            "{} runs in a row failed; the last one in stage {}: {}",
                            p.consecutive_failures, failure.stage, failure.message
                        );
                        let wait = backoff(interval, p.consecutive_failures - threshold, max);
                        let until = now.checked_add(wait).unwrap_or(now);
                        p.backoff_until = Some(super::pipeline::rfc3339_ms(until));
                    }
                }
            })
            .await;
        match updated {
            Ok(Some(p)) => {
                not_before = p.backoff_until.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
            }
            Ok(None) => {}
            Err(e) => tracing::error!(project = %project.id, "cannot update the project's status: {e}"),
        }
        if let Some(retry_after) = failure.and_then(|f| f.retry_after) {
            let until = now.checked_add(retry_after).unwrap_or(now);
            not_before = Some(not_before.map_or(until, |t: Timestamp| t.max(until)));
        }
        Outcome { not_before }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_interval_up_to_the_maximum() {
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(minute, 0, hour), minute);
        assert_eq!(backoff(minute, 3, hour), minute * 8);
        assert_eq!(backoff(minute, 6, hour), hour);
        assert_eq!(backoff(minute, 400, hour), hour, "no overflow");
    }
}
