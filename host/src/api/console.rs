//! The console: a page for tenants and the operator, served at `/console` from static files
//! embedded in the binary (`host/console/`), so that nothing is fetched at run time and no
//! toolchain beyond cargo builds it.
//!
//! The console holds no privilege of its own: its script calls the same public `/v1` API with the
//! bearer token the person pastes in, so it can do nothing the API would refuse. These routes are
//! public and identical for every caller; they read no state and take no credentials. They are
//! not part of the JSON API, so the OpenAPI document does not list them.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// One embedded file of `host/console/`, named as it is served.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset { name: $name, content_type: $content_type, body: include_bytes!(concat!("../../console/", $name)) }
    };
}

/// Every file the console is made of. Scripts load in this order (see `index.html`), each
/// adding to the one `sluice` object the first creates.
const ASSETS: [Asset; 7] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("chart.js", "text/javascript; charset=utf-8"),
    asset!("tenant.js", "text/javascript; charset=utf-8"),
    asset!("operator.js", "text/javascript; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
];

/// Only this origin's files run, and the page talks only to this origin: no inline script or
/// style (so injected markup cannot run), no foreign origin, no plugins, no framing, and no form
/// submission (the forms are handled by script; a form that submitted by itself would put its
/// fields, the token among them, into a URL).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new().route("/console", get(index)).route("/console/", get(index)).route("/console/{asset}", get(asset))
}

async fn index() -> Response {
    serve(&ASSETS[0])
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => serve(asset),
        None => ApiError::NotFound("no such console file; open /console".into()).into_response(),
    }
}

fn serve(asset: &Asset) -> Response {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        // The page's URL never holds a secret, but nothing it links to needs to know it either.
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // The files change with the binary: revalidate rather than run an old script on a new API.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy forbids inline script only if no page relies on it: the markup has no inline
    /// script, event handler attribute or style attribute, and names no other origin.
    #[test]
    fn the_markup_needs_nothing_the_policy_forbids() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap();
            assert!(tag.contains("src=\"/console/"), "a script without a src of this origin: <script{tag}>");
            assert!(script.split('>').nth(1).is_some_and(|rest| rest.starts_with("</script")), "inline script");
        }
        let words = html.split(|c: char| c.is_whitespace() || c == '<');
        assert!(!words.into_iter().any(|w| w.starts_with("on") && w.contains('=')), "an event handler attribute");
        assert!(!html.contains("style="), "an inline style");
        assert!(!html.contains("http://") && !html.contains("https://"), "another origin");
        for asset in &ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            assert!(!text.contains("innerHTML"), "{} writes markup from strings", asset.name);
            assert!(!text.contains("eval("), "{} evaluates strings", asset.name);
            assert!(
                !text.contains("localStorage") && !text.contains("document.cookie"),
                "{} stores the token",
                asset.name
            );
        }
    }
}
