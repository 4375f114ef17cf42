//! The one error type of `aws`, and the classification of SDK errors into what a caller can do
//! about them: retry later, or tell the tenant what to fix.

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::RequestId;

/// What a failed AWS call means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Throttling, 5xx, timeouts, network errors: nothing is wrong with the project, retry later.
    Transient,
    /// The tenant's role or policies do not allow what Sluice needs.
    AccessDenied,
    /// The role's account has no such stream or secret (or KMS key).
    NotFound,
    /// The request or the resource's content is wrong (a record too large, a malformed secret).
    Invalid,
}

/// A failed AWS operation. The message says what failed and how to fix it; it never contains
/// credentials or secret values.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AwsError {
    pub kind: AwsErrorKind,
    pub message: String,
}

impl AwsError {
    pub fn new(kind: AwsErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(AwsErrorKind::Invalid, message)
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == AwsErrorKind::Transient
    }
}

/// An SDK error reduced to its kind, its error code (when the service answered) and a one-line
/// description for messages.
pub(super) struct Classified {
    pub kind: AwsErrorKind,
    pub code: Option<String>,
    pub detail: String,
}

/// Classifies any SDK operation error. Requests that never got an answer (timeouts, connection
/// errors, unreadable responses) are transient; a request that could not even be built is not.
///
/// The detail is what the service said (code, message, HTTP status, request id), or else the
/// error's chain of causes. `DisplayErrorContext` adds the error's `Debug` form, raw response
/// included, which is too much for a message a tenant reads, so it goes to the debug log only.
pub(super) fn failure<E>(err: &SdkError<E, HttpResponse>) -> Classified
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    tracing::debug!(error = %DisplayErrorContext(err), "aws call failed");
    match err {
        SdkError::ServiceError(context) => {
            let code = context.err().code().map(str::to_string);
            let status = context.raw().status().as_u16();
            let kind = classify_code(code.as_deref(), Some(status));
            let mut detail = code.clone().unwrap_or_else(|| "unknown error".into());
            if let Some(message) = context.err().message().filter(|m| !m.is_empty()) {
                detail.push_str(&format!(": {message}"));
            }
            detail.push_str(&format!(" (HTTP {status}"));
            if let Some(id) = err.request_id() {
                detail.push_str(&format!(", request id {id}"));
            }
            detail.push(')');
            Classified { kind, code, detail }
        }
        SdkError::ConstructionFailure(_) => Classified { kind: AwsErrorKind::Invalid, code: None, detail: causes(err) },
        _ => Classified { kind: AwsErrorKind::Transient, code: None, detail: causes(err) },
    }
}

/// An error and its sources, outermost first, as `DisplayErrorContext` shows them.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Maps an AWS error code (JSON `__type` or query `Code`) and HTTP status to a kind. Codes win
/// over statuses because services reuse 400 for throttling and for bad input alike.
///
/// Errors with Sluice's own credentials or clock (an invalid or expired token, a bad signature)
/// count as transient: they are the operator's to fix, and a retry after the fix succeeds, so
/// they must not be reported to the tenant as a problem with their role.
pub(super) fn classify_code(code: Option<&str>, status: Option<u16>) -> AwsErrorKind {
    use AwsErrorKind::*;
    match code.unwrap_or_default() {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "LimitExceeded"
        | "LimitExceededException"
        | "KMSThrottlingException"
        | "SlowDown"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "PriorRequestNotComplete"
        | "EC2ThrottledException" => Transient,
        "InternalFailure"
        | "InternalFailureException"
        | "InternalServiceError"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "ResourceInUseException"
        | "IDPCommunicationError"
        | "RequestTimeout"
        | "RequestTimeoutException" => Transient,
        "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired" => Transient,
        "AccessDenied"
        | "AccessDeniedException"
        | "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSOptInRequired"
        | "DecryptionFailure"
        | "RegionDisabledException"
        | "NotAuthorized" => AccessDenied,
        "ResourceNotFoundException" | "KMSNotFoundException" | "NoSuchEntity" => NotFound,
        "InvalidArgumentException"
        | "ValidationException"
        | "ValidationError"
        | "InvalidParameterException"
        | "InvalidRequestException"
        | "InvalidParameterValue"
        | "MalformedPolicyDocument"
        | "PackedPolicyTooLarge"
        | "SerializationException" => Invalid,
        _ => match status {
            Some(401 | 403) => AccessDenied,
            Some(404) => NotFound,
            Some(400..=499) if status != Some(408) && status != Some(429) => Invalid,
            _ => Transient,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::AwsErrorKind::*;
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_transient() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "Throttling",
            "LimitExceededException",
            "KMSThrottlingException",
            "InternalFailure",
            "ServiceUnavailable",
        ] {
            assert_eq!(classify_code(Some(code), Some(400)), Transient, "{code}");
        }
        assert_eq!(classify_code(None, Some(503)), Transient);
        assert_eq!(classify_code(Some("SomethingNew"), Some(500)), Transient);
        assert_eq!(classify_code(None, Some(429)), Transient);
        assert_eq!(classify_code(None, None), Transient);
    }

    #[test]
    fn permission_and_missing_resource_errors_are_the_tenants_to_fix() {
        assert_eq!(classify_code(Some("AccessDenied"), Some(403)), AccessDenied);
        assert_eq!(classify_code(Some("AccessDeniedException"), Some(400)), AccessDenied);
        assert_eq!(classify_code(Some("KMSAccessDeniedException"), Some(400)), AccessDenied);
        assert_eq!(classify_code(Some("DecryptionFailure"), Some(400)), AccessDenied);
        assert_eq!(classify_code(Some("ResourceNotFoundException"), Some(400)), NotFound);
        assert_eq!(classify_code(Some("KMSNotFoundException"), Some(400)), NotFound);
        assert_eq!(classify_code(Some("SomethingNew"), Some(403)), AccessDenied);
        assert_eq!(classify_code(None, Some(404)), NotFound);
    }

    #[test]
    fn bad_input_is_invalid_and_our_own_credential_trouble_is_transient() {
        assert_eq!(classify_code(Some("InvalidArgumentException"), Some(400)), Invalid);
        assert_eq!(classify_code(Some("ValidationError"), Some(400)), Invalid);
        assert_eq!(classify_code(Some("SomethingNew"), Some(400)), Invalid);
        assert_eq!(classify_code(Some("InvalidClientTokenId"), Some(403)), Transient);
        assert_eq!(classify_code(Some("ExpiredTokenException"), Some(400)), Transient);
    }

    #[test]
    fn errors_display_only_their_message() {
        let err = AwsError::invalid("record 3 is too large");
        assert_eq!(err.to_string(), "record 3 is too large");
        assert!(!err.is_transient());
    }
}
