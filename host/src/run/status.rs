//! A project's status follows its runs: `pending` until the first successful AssumeRole,
//! `active` while runs succeed, `failing` after several failures in a row (with its schedule
//! backing off exponentially), and `active` again on the next success. `paused` belongs to the
//! tenant and runs never change it.

use std::time::Duration;

use jiff::Timestamp;

use super::Inner;
use super::failure::Failure;
use crate::scheduler::Outcome;
use crate::store::{Project, ProjectStatus, Stage};

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
    pub(super) async fn settle_status(&self, project: &Project, failure: Option<&Failure>, now: Timestamp) -> Outcome {
        let healthy = project.consecutive_failures == 0
            && project.backoff_until.is_none()
            && !matches!(project.status, ProjectStatus::Failing | ProjectStatus::Pending);
        if failure.is_none() && healthy {
            // The common case changes nothing: no write, no disk sync.
            return Outcome::default();
        }
        let threshold = self.config.failing_after_failures.max(1);
        let interval = project.schedule.min_interval().unwrap_or(Duration::from_secs(60));
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
                    let stillborn = p.status == ProjectStatus::Pending && failure.stage == Stage::AssumeRole;
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
                        p.backoff_until = Some(crate::store::rfc3339_ms(until));
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
