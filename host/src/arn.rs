//! Amazon Resource Names for the three resources a project names: the tenant's Secrets Manager
//! secret, Kinesis stream and IAM role. Parsed where they enter, so that a typo is a clear 400
//! instead of an AccessDenied at run time.

use std::fmt;

/// The kind of resource an ARN must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArnKind {
    /// `arn:aws:secretsmanager:<region>:<account>:secret:<name>`
    Secret,
    /// `arn:aws:kinesis:<region>:<account>:stream/<name>`
    Stream,
    /// `arn:aws:iam::<account>:role/<path/><name>`
    Role,
}

impl ArnKind {
    fn example(self) -> &'static str {
        match self {
            ArnKind::Secret => "arn:aws:secretsmanager:eu-central-1:123456789012:secret:weather-api-key-AbCdEf",
            ArnKind::Stream => "arn:aws:kinesis:eu-central-1:123456789012:stream/weather",
            ArnKind::Role => "arn:aws:iam::123456789012:role/sluice-delivery",
        }
    }

    fn service(self) -> &'static str {
        match self {
            ArnKind::Secret => "secretsmanager",
            ArnKind::Stream => "kinesis",
            ArnKind::Role => "iam",
        }
    }
}

/// A checked ARN of one of the [`ArnKind`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    text: String,
    partition: String,
    region: String,
    account: String,
    name: String,
}

impl Arn {
    /// Parses `text` as an ARN of `kind`. The error says what is wrong and shows a valid example.
    pub fn parse(text: &str, kind: ArnKind) -> Result<Self, String> {
        let fail = |what: &str| Err(format!("{what}; expected an ARN like {}", kind.example()));
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
            return fail(&format!("`{text}` is not an ARN"));
        };
        if *prefix != "arn" {
            return fail(&format!("`{text}` does not start with arn:"));
        }
        if !matches!(*partition, "aws" | "aws-cn" | "aws-us-gov") {
            return fail(&format!("`{partition}` is not an AWS partition"));
        }
        if *service != kind.service() {
            return fail(&format!("`{text}` is a {service} ARN, not a {} one", kind.service()));
        }
        if kind == ArnKind::Role {
            if !region.is_empty() {
                return fail("IAM role ARNs have no region");
            }
        } else if !is_region(region) {
            return fail(&format!("`{region}` is not an AWS region"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return fail(&format!("`{account}` is not a 12-digit AWS account id"));
        }
        let name = match kind {
            ArnKind::Secret => resource.strip_prefix("secret:").filter(|n| is_name(n, 512, "/_+=.@-")),
            ArnKind::Stream => resource.strip_prefix("stream/").filter(|n| is_name(n, 128, "_.-")),
            ArnKind::Role => resource
                .strip_prefix("role/")
                .filter(|path| path.split('/').all(|segment| is_name(segment, 64, "+=,.@_-"))),
        };
        let Some(name) = name else {
            return fail(&format!("`{resource}` is not a valid {} resource", kind.service()));
        };
        Ok(Self {
            text: text.to_string(),
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            name: name.to_string(),
        })
    }

    /// The region (empty for IAM).
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The 12-digit account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The resource name after the type prefix (a role's name includes its path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ARN as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A checked ARN of one kind, as a project stores it: it serializes as the ARN's text and
/// deserializes only from text that parses as that kind, naming the field when it does not.
macro_rules! typed_arn {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(Arn);

        impl $name {
            /// Parses `text`; the error says what is wrong and shows a valid example.
            pub fn parse(text: &str) -> Result<Self, String> {
                Arn::parse(text, $kind).map($name)
            }
        }

        impl std::ops::Deref for $name {
            type Target = Arn;

            fn deref(&self) -> &Arn {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.0.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&text).map_err(|e| serde::de::Error::custom(format!(concat!("`", $field, "`: {}"), e)))
            }
        }
    };
}

typed_arn!(
    /// The tenant's Secrets Manager secret holding a source's API key.
    SecretArn,
    ArnKind::Secret,
    "source.api_key.secret_arn"
);
typed_arn!(
    /// The tenant's Kinesis stream.
    StreamArn,
    ArnKind::Stream,
    "target.stream_arn"
);
typed_arn!(
    /// The tenant's IAM role that Sluice assumes.
    RoleArn,
    ArnKind::Role,
    "target.role_arn"
);

/// Regions look like `eu-central-1`, `us-gov-west-1` or `cn-north-1`: letters and digits in
/// dash-separated groups ending with a number.
fn is_region(region: &str) -> bool {
    let groups: Vec<&str> = region.split('-').collect();
    groups.len() >= 3
        && groups.iter().all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && groups.last().is_some_and(|g| g.bytes().all(|b| b.is_ascii_digit()))
}

fn is_name(name: &str, max: usize, extra: &str) -> bool {
    !name.is_empty() && name.len() <= max && name.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_kind_and_reads_region_and_account() {
        let stream = Arn::parse("arn:aws:kinesis:eu-central-1:123456789012:stream/weather", ArnKind::Stream).unwrap();
        assert_eq!((stream.region(), stream.account(), stream.name()), ("eu-central-1", "123456789012", "weather"));
        let secret =
            Arn::parse("arn:aws:secretsmanager:us-east-1:123456789012:secret:api/key-AbCdEf", ArnKind::Secret).unwrap();
        assert_eq!(secret.name(), "api/key-AbCdEf");
        let role = Arn::parse("arn:aws:iam::123456789012:role/team/sluice", ArnKind::Role).unwrap();
        assert_eq!((role.region(), role.name()), ("", "team/sluice"));
        assert!(Arn::parse("arn:aws-us-gov:kinesis:us-gov-west-1:123456789012:stream/s", ArnKind::Stream).is_ok());
    }

    #[test]
    fn typed_arns_serialize_as_their_text_and_name_their_field_when_refused() {
        let text = "\"arn:aws:kinesis:eu-central-1:123456789012:stream/weather\"";
        let stream: StreamArn = serde_json::from_str(text).unwrap();
        assert_eq!((stream.region(), serde_json::to_string(&stream).unwrap().as_str()), ("eu-central-1", text));
        let error = serde_json::from_str::<RoleArn>(text).unwrap_err().to_string();
        assert!(error.starts_with("`target.role_arn`: ") && error.contains("not a iam one"), "{error}");
        let error = serde_json::from_str::<SecretArn>("\"x\"").unwrap_err().to_string();
        assert!(error.starts_with("`source.api_key.secret_arn`: `x` is not an ARN"), "{error}");
    }

    #[test]
    fn rejects_with_a_reason_and_an_example() {
        let cases = [
            ("kinesis:stream/x", ArnKind::Stream, "is not an ARN"),
            ("arn:aws:kinesis:eu-central-1:123456789012:stream/x", ArnKind::Role, "is a kinesis ARN, not a iam one"),
            ("arn:aws:kinesis:moon-1:123456789012:stream/x", ArnKind::Stream, "is not an AWS region"),
            ("arn:aws:kinesis:eu-central-1:1234:stream/x", ArnKind::Stream, "12-digit"),
            ("arn:aws:kinesis:eu-central-1:123456789012:table/x", ArnKind::Stream, "not a valid kinesis resource"),
            ("arn:aws:iam:eu-central-1:123456789012:role/x", ArnKind::Role, "have no region"),
            ("arn:aws:kinesis:eu-central-1:123456789012:stream/bad name", ArnKind::Stream, "not a valid"),
            ("arn:gcp:kinesis:eu-central-1:123456789012:stream/x", ArnKind::Stream, "not an AWS partition"),
        ];
        for (text, kind, reason) in cases {
            let error = Arn::parse(text, kind).unwrap_err();
            assert!(error.contains(reason) && error.contains("expected an ARN like arn:aws:"), "{text}: {error}");
        }
    }
}
