//! A tenant's onboarding end to end, as `tenant-stack/README.md` tells it: deploy the tenant
//! stack in the tenant's account, create the project with the stack's outputs, see it `pending`
//! with its onboarding values, update the stack with them, and see the project `active` with its
//! records in the stack's stream.
//!
//! The stack is deployed from `tenant-stack/template.yaml` with the real CloudFormation client
//! into moto, the daemon is the real `sluice` binary, and the fault proxy in front of moto holds
//! every AssumeRole to the role's trust policy, which moto itself never checks.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudformation::types::{Capability, Parameter, Stack};
use serde_json::json;
use sluice_tests::fault_proxy::one_or_many;
use sluice_tests::tenant_account::role_config;
use sluice_tests::world::{Tenant, World, block_on, wait_for};
use sluice_tests::{PLATFORM_PRINCIPAL, root};

/// The tenant's AWS account, apart from the accounts other tests use.
const ACCOUNT: &str = "444455556666";
const STACK: &str = "sluice-tenant";
const STREAM: &str = "weather-records";
const API_KEY: &str = "k-tenant-stack";
/// The template's default `ExternalId`, which no project ever gets.
const PLACEHOLDER_EXTERNAL_ID: &str = "set-after-creating-the-project";
const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_stack_takes_a_project_from_pending_to_active() {
    let (world, tenant, cloudformation, template) = onboarding().await;

    // 1. The tenant deploys the stack before the project exists, with the trust defaults.
    create_stack(&cloudformation, STACK, &template, &[("StreamName", STREAM)]).await;
    let outputs = stack_outputs(&stack_reaching(&cloudformation, STACK, "CREATE_COMPLETE"));
    let (role_arn, stream_arn) = (outputs["RoleArn"].clone(), outputs["StreamArn"].clone());
    assert_eq!(stream_arn, format!("arn:aws:kinesis:eu-central-1:{ACCOUNT}:stream/{STREAM}"));
    assert!(role_arn.starts_with(&format!("arn:aws:iam::{ACCOUNT}:role/")), "{role_arn}");
    let (principal, external_id) = trusted(&world, &role_arn);
    assert_eq!(
        (principal.as_str(), external_id.as_str()),
        (format!("arn:aws:iam::{ACCOUNT}:root").as_str(), PLACEHOLDER_EXTERNAL_ID),
        "before the project exists the role trusts only its own account, with the placeholder id"
    );
    let secret_arn = api_key_secret(&tenant, &outputs).await;

    // 2. The tenant creates the project from the outputs.
    world.source.require_key("x-api-key", API_KEY);
    world.source.add_items(0..5);
    let id = &create_project(&world, &tenant, &outputs, &secret_arn);

    // 3. It is pending, and says what the stack must trust.
    let project = world.show(&tenant, id);
    assert_eq!(project["status"], "pending");
    let onboarding = &project["onboarding"];
    assert_eq!(onboarding["platform_principal_arn"], PLATFORM_PRINCIPAL);
    let onboarding_id = onboarding["external_id"].as_str().unwrap().to_string();
    assert_ne!(onboarding_id, PLACEHOLDER_EXTERNAL_ID);
    // Until the stack trusts the project, AssumeRole is denied and the project stays pending.
    let run = world.run_now(&tenant, id, MINUTE);
    assert_eq!(
        (run["outcome"].as_str(), run["error"]["stage"].as_str()),
        (Some("failed"), Some("assume_role")),
        "{run}"
    );
    assert_eq!(world.show(&tenant, id)["status"], "pending");

    // 4. The tenant updates the stack with the onboarding values.
    let principal_arn = onboarding["platform_principal_arn"].as_str().unwrap();
    let parameters = [("StreamName", STREAM), ("PlatformPrincipalArn", principal_arn), ("ExternalId", &onboarding_id)];
    update_trust(&world, &cloudformation, &template, &parameters, &role_arn).await;

    // 5. The next run assumes the role: the project is active and its records are in the stream.
    let run = world.run_now(&tenant, id, MINUTE);
    assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(5)), "{run}");
    let project = world.show(&tenant, id);
    assert_eq!((project["status"].as_str(), project["status_message"].as_str()), (Some("active"), Some("")));
    assert_eq!(tenant.aws.read(&stream_arn).await.len(), 5);
    assert_eq!(trusted(&world, &role_arn), (PLATFORM_PRINCIPAL.to_string(), onboarding_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_that_trusts_the_platform_for_another_external_id_keeps_the_project_pending() {
    let (world, tenant, cloudformation, template) = onboarding().await;
    // The right principal, but the external id of some other project: the confused-deputy guard.
    let pairs =
        [("StreamName", STREAM), ("PlatformPrincipalArn", PLATFORM_PRINCIPAL), ("ExternalId", "another-project")];
    create_stack(&cloudformation, STACK, &template, &pairs).await;
    let outputs = stack_outputs(&stack_reaching(&cloudformation, STACK, "CREATE_COMPLETE"));
    assert_eq!(trusted(&world, &outputs["RoleArn"]), (PLATFORM_PRINCIPAL.to_string(), "another-project".to_string()));
    let secret_arn = api_key_secret(&tenant, &outputs).await;
    world.source.add_items(0..5);
    let id = &create_project(&world, &tenant, &outputs, &secret_arn);

    let run = world.run_now(&tenant, id, MINUTE);
    assert_eq!(
        (run["outcome"].as_str(), run["error"]["stage"].as_str()),
        (Some("failed"), Some("assume_role")),
        "{run}"
    );
    let project = world.show(&tenant, id);
    assert_eq!(project["status"], "pending");
    let message = project["status_message"].as_str().unwrap();
    assert!(message.contains(project["onboarding"]["external_id"].as_str().unwrap()), "{message}");
    assert!(world.source.seen().is_empty(), "nothing was fetched without the role");
}

/// With tenant trust, the tenant deploys its stack once, trusting the tenant's external id from
/// `GET /v1/me`, and creates three projects over two streams and two secrets (the second of each
/// made later, under the stack's name prefix): all three run on their first run with no stack
/// update, on one assumed-role session. Another tenant naming the same role is refused. A
/// project with trust of its own runs once the stack lists its id, and removing that id stops
/// it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stack_trusting_the_tenant_serves_every_project_of_the_tenant_at_once() {
    let (mut world, tenant, cloudformation, template) = onboarding().await;
    let (status, me) = world.call("GET", "/v1/me", &tenant.key, None);
    assert_eq!(status, 200, "{me}");
    let tenant_id = me["external_id"].as_str().unwrap().to_string();
    // Everything the stack needs is known before the first project: one deployment.
    assert_eq!(me["platform_principal_arn"], PLATFORM_PRINCIPAL);
    let trust = |project_ids: &str| {
        [
            ("StreamName", STREAM.to_string()),
            ("PlatformPrincipalArn", me["platform_principal_arn"].as_str().unwrap().to_string()),
            ("ExternalId", tenant_id.clone()),
            ("ProjectExternalIds", project_ids.to_string()),
        ]
    };
    create_stack(&cloudformation, STACK, &template, &borrowed(&trust(""))).await;
    let stack = stack_reaching(&cloudformation, STACK, "CREATE_COMPLETE");
    let outputs = stack_outputs(&stack);
    let first_secret = api_key_secret(&tenant, &outputs).await;
    // Created after the stack, under its default name prefix `sluice-`: no stack update.
    let second_stream = tenant.aws.stream("sluice-orders").await;
    let second_secret = tenant.aws.secret("sluice-orders-key", API_KEY).await;
    let role_policy = world.proxy.role_policy(&outputs["RoleArn"], "sluice-delivery").expect("the role's policy");
    assert_least_privilege(&role_policy, &[&outputs["StreamArn"], &second_stream], &[&first_secret, &second_secret]);
    world.source.require_key("x-api-key", API_KEY);
    world.source.add_items(0..5);

    let targets = [
        (outputs["StreamArn"].as_str(), first_secret.as_str()),
        (second_stream.as_str(), second_secret.as_str()),
        (second_stream.as_str(), first_secret.as_str()),
    ];
    let assumed_before = world.proxy.count("AssumeRole");
    let mut ours = Vec::new();
    for (stream_arn, secret_arn) in targets {
        let id = create_project_on(&world, &tenant, &outputs["RoleArn"], stream_arn, secret_arn, json!({}));
        let project = world.show(&tenant, &id);
        assert_eq!(
            (project["trust"].as_str(), project["onboarding"]["external_id"].as_str()),
            (Some("tenant"), Some(tenant_id.as_str()))
        );
        let run = world.run_now(&tenant, &id, MINUTE);
        assert_eq!(run["outcome"], "succeeded", "active on its first run, no stack update: {run}");
        assert_eq!(world.show(&tenant, &id)["status"], "active");
        ours.push(id);
    }
    assert_eq!(world.proxy.count("AssumeRole") - assumed_before, 1, "the three projects share one session");
    assert_eq!(tenant.aws.read(&outputs["StreamArn"]).await.len(), 5);
    assert_eq!(tenant.aws.read(&second_stream).await.len(), 10, "two projects deliver to the second stream");

    // Another tenant cannot ride on this tenant's trust by naming its role.
    let other = world.tenant("intruder", "777788889999").await;
    let intruder = create_project(&world, &other, &outputs, &first_secret);
    let run = world.run_now(&other, &intruder, MINUTE);
    assert_eq!(
        (run["outcome"].as_str(), run["error"]["stage"].as_str()),
        (Some("failed"), Some("assume_role")),
        "{run}"
    );
    assert_eq!(world.show(&other, &intruder)["status"], "pending");

    // A project with trust of its own has another id, which the stack must list.
    let own = create_project_on(
        &world,
        &tenant,
        &outputs["RoleArn"],
        &second_stream,
        &second_secret,
        json!({"trust": "project"}),
    );
    let own_id = world.show(&tenant, &own)["onboarding"]["external_id"].as_str().unwrap().to_string();
    assert_ne!(own_id, tenant_id);
    assert_eq!(world.run_now(&tenant, &own, MINUTE)["error"]["stage"], "assume_role");
    update_trust(&world, &cloudformation, &template, &borrowed(&trust(&own_id)), &outputs["RoleArn"]).await;
    let run = world.run_now(&tenant, &own, MINUTE);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(world.show(&tenant, &own)["status"], "active");

    // Removing its id stops it alone. A session already assumed lasts until it expires, in AWS
    // as here; a restart makes every project assume the role again at once.
    update_trust(&world, &cloudformation, &template, &borrowed(&trust("")), &outputs["RoleArn"]).await;
    world.restart();
    world.wait_ready();
    let run = world.run_now(&tenant, &own, MINUTE);
    assert_eq!(
        (run["outcome"].as_str(), run["error"]["stage"].as_str()),
        (Some("failed"), Some("assume_role")),
        "{run}"
    );
    for id in &ours {
        let run = world.run_now(&tenant, id, MINUTE);
        assert_eq!(run["outcome"], "succeeded", "tenant-trust projects go on: {run}");
    }
}

/// A project may switch trust with a PATCH: to its own id, which the stack does not trust yet,
/// and back to the tenant's, which it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_switches_between_tenant_and_project_trust() {
    let (world, tenant, cloudformation, template) = onboarding().await;
    let (_, me) = world.call("GET", "/v1/me", &tenant.key, None);
    let tenant_id = me["external_id"].as_str().unwrap().to_string();
    let pairs = [("StreamName", STREAM), ("PlatformPrincipalArn", PLATFORM_PRINCIPAL), ("ExternalId", &tenant_id)];
    create_stack(&cloudformation, STACK, &template, &pairs).await;
    let outputs = stack_outputs(&stack_reaching(&cloudformation, STACK, "CREATE_COMPLETE"));
    let secret_arn = api_key_secret(&tenant, &outputs).await;
    world.source.add_items(0..5);
    let id = create_project(&world, &tenant, &outputs, &secret_arn);

    let (status, patched) =
        world.call("PATCH", &format!("/v1/projects/{id}"), &tenant.key, Some(json!({"trust": "project"})));
    assert_eq!(status, 200, "{patched}");
    let own_id = patched["onboarding"]["external_id"].as_str().unwrap();
    assert!(own_id != tenant_id && patched["status"] == "pending", "{patched}");
    let run = world.run_now(&tenant, &id, MINUTE);
    assert_eq!(run["error"]["stage"], "assume_role", "{run}");
    let (_, back) = world.call("PATCH", &format!("/v1/projects/{id}"), &tenant.key, Some(json!({"trust": "tenant"})));
    assert_eq!(back["onboarding"]["external_id"].as_str(), Some(tenant_id.as_str()), "{back}");
    assert_eq!(world.run_now(&tenant, &id, MINUTE)["outcome"], "succeeded");
}

/// The role's permissions are what the README promises: delivery to the stack's stream and to
/// streams under the name prefix, reading the stack's secret and secrets under the prefix, and
/// nothing else, judged by IAM's rules for `Allow` statements with `*` in resources (moto itself
/// does not enforce permissions).
fn assert_least_privilege(policy: &serde_json::Value, streams: &[&str], secrets: &[&str]) {
    let others = |arn: &str, from: &str, to: &str| arn.replacen(from, to, 1);
    for stream in streams {
        assert!(allows(policy, "kinesis:PutRecords", stream), "PutRecords on {stream}: {policy}");
        assert!(!allows(policy, "kinesis:DeleteStream", stream), "DeleteStream on {stream}: {policy}");
    }
    for secret in secrets {
        assert!(allows(policy, "secretsmanager:GetSecretValue", secret), "GetSecretValue on {secret}: {policy}");
        assert!(!allows(policy, "secretsmanager:PutSecretValue", secret), "PutSecretValue on {secret}: {policy}");
    }
    let outside_stream = others(streams[1], "stream/sluice-", "stream/billing-");
    let outside_secret = others(secrets[1], "secret:sluice-", "secret:billing-");
    assert!(!allows(policy, "kinesis:PutRecords", &outside_stream), "{outside_stream}: {policy}");
    assert!(!allows(policy, "secretsmanager:GetSecretValue", &outside_secret), "{outside_secret}: {policy}");
    let other_account = others(streams[1], ACCOUNT, "777788889999");
    assert!(!allows(policy, "kinesis:PutRecords", &other_account), "{other_account}: {policy}");
}

/// Whether some `Allow` statement of `policy` names `action` (or a `*` pattern of it) on a
/// resource pattern matching `arn`.
fn allows(policy: &serde_json::Value, action: &str, arn: &str) -> bool {
    one_or_many(&policy["Statement"]).iter().any(|statement| {
        statement["Effect"] == "Allow"
            && texts(&statement["Action"]).iter().any(|a| glob(&a.to_lowercase(), &action.to_lowercase()))
            && texts(&statement["Resource"]).iter().any(|r| glob(r, arn))
    })
}

/// The text values of a policy element that may be one value or a list of them.
fn texts(value: &serde_json::Value) -> Vec<&str> {
    one_or_many(value).iter().filter_map(serde_json::Value::as_str).collect()
}

/// IAM's wildcard match: `*` is any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.chars().next() {
        None => text.is_empty(),
        Some('*') => (0..=text.len()).filter(|&i| text.is_char_boundary(i)).any(|i| glob(&pattern[1..], &text[i..])),
        Some(p) => text
            .chars()
            .next()
            .is_some_and(|t| (p == '?' || p == t) && glob(&pattern[p.len_utf8()..], &text[t.len_utf8()..])),
    }
}

/// Creates the project from the stack's outputs as the README does; returns its id.
fn create_project(world: &World, tenant: &Tenant, outputs: &BTreeMap<String, String>, secret_arn: &str) -> String {
    create_project_on(world, tenant, &outputs["RoleArn"], &outputs["StreamArn"], secret_arn, json!({}))
}

/// Creates a project on `role_arn`, delivering to `stream_arn` with the API key in `secret_arn`,
/// with the fields of `extra` added; returns its id.
fn create_project_on(
    world: &World,
    tenant: &Tenant,
    role_arn: &str,
    stream_arn: &str,
    secret_arn: &str,
    extra: serde_json::Value,
) -> String {
    let plugin_id = world.upload(tenant, "incremental");
    let mut body = json!({
        "name": "weather",
        "schedule": "rate(1 hour)",
        "timezone": "UTC",
        "source": {"url": format!("{}/items", world.source.base),
                   "api_key": {"secret_arn": secret_arn, "header": "x-api-key"}},
        "plugin_id": plugin_id,
        "target": {"stream_arn": stream_arn, "role_arn": role_arn},
    });
    for (field, value) in extra.as_object().into_iter().flatten() {
        body[field] = value.clone();
    }
    let (status, created) = world.call("POST", "/v1/projects", &tenant.key, Some(body));
    assert_eq!((status, created["status"].as_str()), (201, Some("pending")), "{created}");
    created["id"].as_str().unwrap().to_string()
}

/// Updates the stack with `pairs` as its parameters and waits for it, then gives the role the
/// trust policy the update renders (see [`apply_the_trust_policy_moto_skipped`]).
async fn update_trust(
    world: &World,
    cloudformation: &aws_sdk_cloudformation::Client,
    template: &str,
    pairs: &[(&str, &str)],
    role_arn: &str,
) {
    cloudformation
        .update_stack()
        .stack_name(STACK)
        .template_body(template)
        .set_parameters(Some(stack_parameters(pairs)))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .unwrap();
    let updated = stack_reaching(cloudformation, STACK, "UPDATE_COMPLETE");
    assert_eq!(stack_outputs(&updated)["RoleArn"], role_arn, "the update keeps the role the projects name");
    apply_the_trust_policy_moto_skipped(world, cloudformation, template, pairs, role_arn).await;
}

/// `pairs` with their values borrowed, as the stack helpers take them.
fn borrowed<'a>(pairs: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().map(|(key, value)| (*key, value.as_str())).collect()
}

/// The daemon, moto and a tenant with an account on moto; the tenant's CloudFormation client and
/// the template. The daemon runs as PLATFORM_PRINCIPAL (World configures it so), and from now on
/// it may assume only roles whose trust policy says so.
async fn onboarding() -> (World, Tenant, aws_sdk_cloudformation::Client, String) {
    let world = World::start();
    world.proxy.enforce_trust(PLATFORM_PRINCIPAL);
    let tenant = world.tenant("acme", ACCOUNT).await;
    let cloudformation = tenant_cloudformation(&world.moto.endpoint, ACCOUNT).await;
    let template = std::fs::read_to_string(root().join("tenant-stack/template.yaml")).unwrap();
    (world, tenant, cloudformation, template)
}

/// A CloudFormation client acting as the tenant's administrator in `account` on moto at
/// `endpoint`: moto serves requests signed with credentials it issued for a role from that
/// role's account.
async fn tenant_cloudformation(endpoint: &str, account: &str) -> aws_sdk_cloudformation::Client {
    let admin = role_config(endpoint, &format!("arn:aws:iam::{account}:role/tenant-admin"), "tenant-admin").await;
    aws_sdk_cloudformation::Client::new(&admin)
}

/// Every parameter is named: moto 5.2 fails an update that keeps the previous value of a
/// parameter left at its default at creation (`UsePreviousValue`), which AWS accepts.
fn stack_parameters(pairs: &[(&str, &str)]) -> Vec<Parameter> {
    pairs.iter().map(|(key, value)| Parameter::builder().parameter_key(*key).parameter_value(*value).build()).collect()
}

/// Creates a stack with CreateStack. The README's `aws cloudformation deploy` goes through a
/// change set instead, but moto 5.2 gives a stack created from a change set no outputs.
async fn create_stack(
    cloudformation: &aws_sdk_cloudformation::Client,
    name: &str,
    template: &str,
    pairs: &[(&str, &str)],
) {
    cloudformation
        .create_stack()
        .stack_name(name)
        .template_body(template)
        .set_parameters(Some(stack_parameters(pairs)))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .unwrap();
}

/// Waits (at most a minute) for the stack to reach `wanted`; fails at once on a failure or
/// rollback.
fn stack_reaching(cloudformation: &aws_sdk_cloudformation::Client, name: &str, wanted: &str) -> Stack {
    wait_for(MINUTE, &format!("stack {name} to be {wanted}"), || {
        let described = block_on(cloudformation.describe_stacks().stack_name(name).send()).unwrap();
        let stack = described.stacks().first().expect("the stack exists").clone();
        let status = stack.stack_status().map(|s| s.as_str().to_string()).unwrap_or_default();
        assert!(
            !status.contains("FAILED") && !status.contains("ROLLBACK"),
            "stack {name} is {status}: {}",
            stack.stack_status_reason().unwrap_or_default()
        );
        (status == wanted).then_some(stack)
    })
}

fn stack_outputs(stack: &Stack) -> BTreeMap<String, String> {
    let pairs =
        stack.outputs().iter().filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())));
    pairs.collect()
}

/// The principal and external id the role's (one) trust statement names, as moto stores them.
fn trusted(world: &World, role_arn: &str) -> (String, String) {
    let policy = world.proxy.trust_policy(role_arn).expect("the role exists");
    let statement = &policy["Statement"][0];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_else(|| panic!("not text in {policy}")).to_string();
    (text(&statement["Principal"]["AWS"]), text(&statement["Condition"]["StringEquals"]["sts:ExternalId"]))
}

/// The secret holding the source's API key. moto's CloudFormation does not implement
/// `AWS::SecretsManager::Secret` (moto 5.2 logs "No Moto CloudFormation support" and the stack
/// has no `SecretArn` output), so the test creates the secret the stack would have created. Where
/// the stack did create it, the key is set as the README says, with PutSecretValue.
async fn api_key_secret(tenant: &Tenant, outputs: &BTreeMap<String, String>) -> String {
    match outputs.get("SecretArn") {
        Some(arn) if arn.starts_with("arn:") => {
            tenant.aws.secrets.put_secret_value().secret_id(arn).secret_string(API_KEY).send().await.unwrap();
            arn.clone()
        }
        _ => tenant.aws.secret("sluice-api-key", API_KEY).await,
    }
}

/// moto's CloudFormation (5.2) applies a stack update to an existing role's description only,
/// never to its trust policy, which AWS updates in place. So that the update still decides
/// whether the platform may assume the role, moto renders the template's trust policy for the
/// updated stack's parameters where it does render one, in a role it creates (a throwaway stack
/// of the same template), and the test copies that policy onto the stack's role, as CloudFormation
/// would have. moto shows a list parameter of a stack as a Python literal, so the parameters
/// are the ones the update was given rather than the ones the stack reports.
async fn apply_the_trust_policy_moto_skipped(
    world: &World,
    cloudformation: &aws_sdk_cloudformation::Client,
    template: &str,
    parameters: &[(&str, &str)],
    role_arn: &str,
) {
    // A name of its own each time: moto may keep a deleted stack's stream for a while.
    static RENDERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let render = &format!("trust-policy-render-{}", RENDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    // Every parameter but the stream's name (the throwaway stack's stream is its own) and the
    // API key (which CloudFormation does not show).
    let kept = parameters.iter().copied();
    let mut pairs: Vec<(&str, &str)> = kept.filter(|(key, _)| !["StreamName", "ApiKey"].contains(key)).collect();
    pairs.push(("StreamName", render));
    create_stack(cloudformation, render, template, &pairs).await;
    let rendered_role = stack_outputs(&stack_reaching(cloudformation, render, "CREATE_COMPLETE"))["RoleArn"].clone();
    let policy = world.proxy.trust_policy(&rendered_role).expect("moto created the rendering stack's role");
    cloudformation.delete_stack().stack_name(render).send().await.unwrap();
    if world.proxy.trust_policy(role_arn).as_ref() != Some(&policy) {
        world.proxy.set_trust_policy(role_arn, &policy);
    }
}
