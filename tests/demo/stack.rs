//! The tenant's side of onboarding: deploying `tenant-stack/template.yaml` with CloudFormation
//! and reading its outputs, through the same API calls a tenant's `aws cloudformation` commands
//! make. Tenant trust makes it one deployment: no update per project.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::DisplayErrorContext;
use aws_sdk_cloudformation::types::{Capability, Parameter, Stack};

/// The outputs the project needs. `secret_arn` is `None` when the stack has no such output,
/// which is what moto's CloudFormation gives: it does not create Secrets Manager secrets.
pub struct Outputs {
    pub role_arn: String,
    pub stream_arn: String,
    pub secret_arn: Option<String>,
}

/// Creates the stack and waits until it is complete.
pub async fn create(
    client: &Client,
    name: &str,
    template: &str,
    parameters: &[(&str, &str)],
    deadline: Instant,
) -> Result<Outputs> {
    let mut request = client
        .create_stack()
        .stack_name(name)
        .template_body(template)
        // The template creates an IAM role, which CloudFormation accepts only when told so.
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam);
    for (key, value) in parameters {
        request = request.parameters(Parameter::builder().parameter_key(*key).parameter_value(*value).build());
    }
    request.send().await.map_err(|e| anyhow::anyhow!("CreateStack failed: {}", DisplayErrorContext(&e)))?;
    let stack = wait(client, name, "CREATE_COMPLETE", deadline).await?;
    outputs(&stack)
}

async fn describe(client: &Client, name: &str) -> Result<Stack> {
    let described = client
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DescribeStacks failed: {}", DisplayErrorContext(&e)))?;
    described.stacks().first().cloned().with_context(|| format!("stack {name} does not exist"))
}

/// Polls the stack until its status is `done`, fails on any failed or rolled-back status, and
/// gives up at `deadline`. moto completes stacks at once; real CloudFormation takes minutes,
/// which is why this polls instead of assuming.
async fn wait(client: &Client, name: &str, done: &str, deadline: Instant) -> Result<Stack> {
    loop {
        let stack = describe(client, name).await?;
        let status = stack.stack_status().map(|s| s.as_str().to_string()).unwrap_or_default();
        if status == done {
            return Ok(stack);
        }
        if status.ends_with("FAILED") || status.contains("ROLLBACK") {
            let reason = stack.stack_status_reason().unwrap_or("no reason given");
            bail!("stack {name} ended in {status}: {reason}");
        }
        if Instant::now() >= deadline {
            bail!("stack {name} was still {status} at the deadline");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn outputs(stack: &Stack) -> Result<Outputs> {
    let output = |key: &str| {
        stack.outputs().iter().find(|o| o.output_key() == Some(key)).and_then(|o| o.output_value()).map(str::to_string)
    };
    let required = |key: &str| {
        output(key).with_context(|| format!("the stack has no {key} output; check tenant-stack/template.yaml"))
    };
    Ok(Outputs { role_arn: required("RoleArn")?, stream_arn: required("StreamArn")?, secret_arn: output("SecretArn") })
}

/// The ARN of the stack's secret, if Secrets Manager has it; otherwise creates a secret named
/// `name` holding `value`, as the stack would have, and returns its ARN with `true`.
pub async fn ensure_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    from_stack: Option<&str>,
    name: &str,
    value: &str,
) -> Result<(String, bool)> {
    if let Some(arn) = from_stack
        && secrets.describe_secret().secret_id(arn).send().await.is_ok()
    {
        return Ok((arn.to_string(), false));
    }
    let created = secrets.create_secret().name(name).secret_string(value).send().await.map_err(|e| {
        anyhow::anyhow!("CreateSecret failed: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e))
    })?;
    let arn = created.arn().context("CreateSecret returned no ARN")?;
    Ok((arn.to_string(), true))
}
