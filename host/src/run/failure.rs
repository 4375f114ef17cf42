//! Why a run failed: the [`Stage`] it failed in, a message for the tenant, and who can fix it.

use std::time::Duration;

use crate::aws::AwsErrorKind;
use crate::runtime::LoadError;
use crate::store::{Stage, StoreError};

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
    /// The host lost the lease the run began under (in a cluster): the store refused its
    /// writes, and the partition's new owner runs the project.
    Fenced,
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
    pub stage: Stage,
    pub message: String,
    pub kind: FailureKind,
    /// The source's Retry-After, if it sent one.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that may pass by itself.
    pub fn new(stage: Stage, message: impl Into<String>) -> Self {
        Self { stage, message: message.into(), kind: FailureKind::Transient, retry_after: None }
    }

    /// A failure the tenant must fix.
    pub fn tenant(stage: Stage, message: impl Into<String>) -> Self {
        Self::new(stage, message).with_kind(FailureKind::Tenant)
    }

    /// A failure of the host's own storage, or a write its lease no longer allows.
    pub fn host(error: impl std::fmt::Display + 'static) -> Self {
        let fenced = matches!((&error as &dyn std::any::Any).downcast_ref(), Some(StoreError::Fenced { .. }));
        Self::new(Stage::Host, format!("internal error, not caused by the project: {error}")).with_kind(if fenced {
            FailureKind::Fenced
        } else {
            FailureKind::Host
        })
    }

    pub fn with_kind(mut self, kind: impl Into<FailureKind>) -> Self {
        self.kind = kind.into();
        self
    }
}

impl From<LoadError> for Failure {
    /// A plugin that no longer loads is the tenant's to fix, unless the host failed.
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Host(_) | LoadError::Cache(_) => Failure::host(e),
            other => Failure::tenant(Stage::LoadPlugin, other.to_string()),
        }
    }
}
