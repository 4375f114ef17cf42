//! The platform principal: the AWS identity Sluice runs as, which tenants' roles must trust.

use anyhow::Context;
use aws_config::BehaviorVersion;

/// Asks STS who we are (GetCallerIdentity) and returns the principal a trust policy can name.
pub async fn platform_principal() -> anyhow::Result<String> {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let sts = aws_sdk_sts::Client::new(&config);
    let identity = sts.get_caller_identity().send().await.map_err(|e| {
        anyhow::anyhow!(
            "{}; give the daemon AWS credentials, or set platform_principal_arn (SLUICE_PLATFORM_PRINCIPAL_ARN)",
            aws_sdk_sts::error::DisplayErrorContext(&e)
        )
    })?;
    let arn = identity.arn().context("STS GetCallerIdentity returned no ARN")?;
    Ok(principal_from_caller_arn(arn))
}

/// Turns a caller ARN into one a trust policy can name: an assumed-role session
/// (`arn:aws:sts::123456789012:assumed-role/Name/session`) becomes its role
/// (`arn:aws:iam::123456789012:role/Name`); users and roles stay as they are.
///
/// A role's path is not part of an assumed-role ARN, so a role with a path must be configured
/// with `platform_principal_arn` instead.
pub fn principal_from_caller_arn(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts.as_slice()
        && let Some(rest) = resource.strip_prefix("assumed-role/")
        && let Some((role, _session)) = rest.split_once('/')
    {
        return format!("arn:{partition}:iam::{account}:role/{role}");
    }
    arn.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assumed_role_sessions_become_their_role() {
        assert_eq!(
            principal_from_caller_arn("arn:aws:sts::123456789012:assumed-role/sluice-host/i-0abc"),
            "arn:aws:iam::123456789012:role/sluice-host"
        );
        assert_eq!(
            principal_from_caller_arn("arn:aws:iam::123456789012:user/ops"),
            "arn:aws:iam::123456789012:user/ops"
        );
    }
}
