//! A project's source URL, checked once where it enters: absolute, http or https, with a host and
//! without credentials (those belong in the tenant's secret).

use std::fmt;

use url::Url;

/// The longest source URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A checked source URL. It serializes as the URL's text and deserializes only from text that
/// passes [`SourceUrl::parse`], so a stored project's source is always one the fetcher can use.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceUrl {
    text: String,
    url: Url,
}

impl SourceUrl {
    /// Parses and checks `text`; the error says what is wrong and how to fix it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_URL_LEN {
            return Err(format!("is longer than {MAX_URL_LEN} characters"));
        }
        let url = Url::parse(text)
            .map_err(|e| format!("is not an absolute URL ({e}); use one like https://api.example.com/v1/obs"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("uses {}:, but only http and https are supported", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("has no host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("carries credentials; keep them in the tenant's secret and name it in `source.api_key`".into());
        }
        Ok(Self { text: text.to_string(), url })
    }

    /// The URL as the tenant gave it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL: its origin is where every request of the project must stay.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for SourceUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for SourceUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SourceUrl::parse(&text).map_err(|e| serde::de::Error::custom(format!("`source.url` {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_with_a_host_and_no_credentials() {
        assert_eq!(
            SourceUrl::parse("https://api.example.com/v1?x=1").unwrap().url().host_str(),
            Some("api.example.com")
        );
        for (bad, reason) in [
            ("/v1/obs", "not an absolute URL"),
            ("ftp://example.com/", "uses ftp:"),
            ("https://user:pw@example.com/", "carries credentials"),
            ("file:///etc/passwd", "uses file:"),
        ] {
            let error = SourceUrl::parse(bad).unwrap_err();
            assert!(error.contains(reason), "{bad}: {error}");
        }
        assert!(SourceUrl::parse(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
        let json: Result<SourceUrl, _> = serde_json::from_str("\"ftp://x/\"");
        assert!(json.unwrap_err().to_string().starts_with("`source.url` uses ftp:"));
    }
}
