//! Helper methods on the generated `request` type.

use crate::{Request, query};

impl Request {
    /// A `GET` request to `url` with no headers and no body.
    ///
    /// The host keeps requests on the project's configured origin, so `url` must share its
    /// scheme, host and port.
    pub fn get(url: impl Into<String>) -> Self {
        Self { method: "GET".into(), url: url.into(), headers: Vec::new(), body: None }
    }

    /// Sets the query parameter `name` to `value`, both percent-encoded.
    ///
    /// An existing parameter of the same name is replaced in place (further duplicates are
    /// removed); otherwise the parameter is appended. The path and any `#fragment` are kept.
    pub fn with_query(mut self, name: &str, value: &str) -> Self {
        self.url = query::set(&self.url, name, value);
        self
    }

    /// The decoded value of the first query parameter called `name`, if any.
    pub fn query(&self, name: &str) -> Option<String> {
        query::get(&self.url, name)
    }

    /// Appends a header. Names are case-insensitive; an existing header is not replaced.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the request body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_compose() {
        let request = Request::get("https://api.example.com/items?page=1")
            .with_query("since", "2024-01-01T00:00:00Z")
            .with_query("page", "2")
            .with_header("accept", "application/json")
            .with_body("{}");
        assert_eq!(request.url, "https://api.example.com/items?page=2&since=2024-01-01T00%3A00%3A00Z");
        assert_eq!(request.query("since").as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(request.headers, vec![("accept".into(), "application/json".into())]);
        assert_eq!(request.body.as_deref(), Some(&b"{}"[..]));
    }
}
