//! The fault proxy's model of IAM trust (see [`super::FaultProxy::enforce_trust`]): reading a
//! role's trust policy from moto and deciding whether it lets the caller assume the role with the
//! request's external id, and the IAM requests and policy documents that takes.

use super::{Message, State, forward};

/// Whether an AssumeRole request may go on to moto: always, unless trust is enforced (see
/// [`FaultProxy::enforce_trust`]).
pub(super) fn trusted(state: &State, request: &Message) -> bool {
    let Some(caller) = state.trusted_caller.lock().unwrap().clone() else { return true };
    let form = form_fields(&request.body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(policy) = field("RoleArn").and_then(|role_arn| trust_policy(state, role_arn)) else { return false };
    trusts(&policy, &caller, field("ExternalId"))
}

/// Whether a trust policy lets `caller` assume the role with `external_id` (see
/// [`FaultProxy::enforce_trust`] for what is modelled).
fn trusts(policy: &serde_json::Value, caller: &str, external_id: Option<&str>) -> bool {
    let account_root = caller.split(':').nth(4).map(|account| format!("arn:aws:iam::{account}:root"));
    let names = |value: &serde_json::Value, wanted: &dyn Fn(&str) -> bool| {
        one_or_many(value).iter().filter_map(serde_json::Value::as_str).any(wanted)
    };
    one_or_many(&policy["Statement"]).iter().any(|statement| {
        statement["Effect"] == "Allow"
            // Action names are case-insensitive in IAM.
            && names(&statement["Action"], &|a| a.eq_ignore_ascii_case("sts:AssumeRole"))
            && names(&statement["Principal"]["AWS"], &|p| p == caller || Some(p) == account_root.as_deref())
            && conditions_hold(&statement["Condition"], external_id)
    })
}

/// Whether a statement's `Condition` holds for a request with `external_id`: absent, or only
/// `StringEquals` on `sts:ExternalId` (a key IAM compares case-insensitively) with a matching value.
fn conditions_hold(condition: &serde_json::Value, external_id: Option<&str>) -> bool {
    let Some(operators) = condition.as_object() else { return condition.is_null() };
    operators.iter().all(|(operator, keys)| {
        operator == "StringEquals"
            && keys.as_object().is_some_and(|keys| {
                keys.iter().all(|(key, values)| {
                    key.eq_ignore_ascii_case("sts:ExternalId")
                        && one_or_many(values).iter().any(|v| v.as_str().is_some_and(|v| Some(v) == external_id))
                })
            })
    })
}

/// A policy element that may be one value or a list of them.
pub fn one_or_many(value: &serde_json::Value) -> &[serde_json::Value] {
    match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => &[],
        one => std::slice::from_ref(one),
    }
}

/// The account and the role name in `arn:aws:iam::<account>:role/<path/><name>`.
pub(super) fn role_account_and_name(role_arn: &str) -> (&str, &str) {
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let name = role_arn.rsplit('/').next().unwrap_or_default();
    (account, name)
}

/// The trust policy of a role, read with IAM GetRole from moto in the role's account.
pub(super) fn trust_policy(state: &State, role_arn: &str) -> Option<serde_json::Value> {
    let (account, name) = role_account_and_name(role_arn);
    let response = upstream_iam(state, account, &[("Action", "GetRole"), ("RoleName", name)])?;
    policy_document(&response, "AssumeRolePolicyDocument")
}

/// The policy document in the element `tag` of a successful IAM answer.
pub(super) fn policy_document(response: &Message, tag: &str) -> Option<serde_json::Value> {
    if !response.start.contains(" 200 ") {
        return None;
    }
    let xml = String::from_utf8_lossy(&response.body);
    let (_, rest) = xml.split_once(&format!("<{tag}>"))?;
    let (document, _) = rest.split_once(&format!("</{tag}>"))?;
    let document = document.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    // IAM answers the document URL-encoded, as AWS does.
    let document = if document.starts_with('{') { document } else { percent_decode(&document) };
    serde_json::from_str(&document).ok().or_else(|| serde_json::from_str(&python_literal_as_json(&document)).ok())
}

/// moto 5.2 answers the inline policies CloudFormation gave a role as Python literals
/// (`{'Effect': 'Allow', 'Resource': [None, …]}`) instead of JSON. Policies hold no quotes or
/// backslashes of their own, so swapping the quotes and the three constants is enough.
fn python_literal_as_json(literal: &str) -> String {
    literal.replace('\'', "\"").replace("None", "null").replace("True", "true").replace("False", "false")
}

/// Sends one IAM query-protocol request to moto, acting in `account`: moto takes the account
/// from its `x-moto-account-id` header and the service from the credential scope in
/// `Authorization`, whose signature it does not check.
pub(super) fn upstream_iam(state: &State, account: &str, params: &[(&str, &str)]) -> Option<Message> {
    let mut body = String::from("Version=2010-05-08");
    for (name, value) in params {
        body.push_str(&format!("&{name}={}", percent_encode(value)));
    }
    let scope = "Credential=testing/20260101/us-east-1/iam/aws4_request";
    let headers = [
        ("content-type", "application/x-www-form-urlencoded; charset=utf-8".to_string()),
        ("authorization", format!("AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0")),
        ("x-moto-account-id", account.to_string()),
    ];
    let headers = headers.into_iter().map(|(name, value)| (name.to_string(), value)).collect();
    forward(state, &Message { start: "POST / HTTP/1.1".into(), headers, body: body.into_bytes() })
}

/// The fields of an `application/x-www-form-urlencoded` body, decoded.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let body = String::from_utf8_lossy(body);
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (percent_decode(name), percent_decode(value)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
