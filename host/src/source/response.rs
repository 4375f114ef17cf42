//! Reading a response: the body under its cap, the headers, and `Retry-After`.

use std::time::Duration;

use jiff::Timestamp;
use jiff::fmt::rfc2822::DateTimeParser;
use reqwest::header::HeaderMap;

use super::FetchError;

/// The longest `Retry-After` the fetcher reports. A source asking for more is either confused or
/// hostile, and a project should not go silent for days because of one header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much body space to reserve up front: enough for most pages, without letting a
/// `Content-Length` header make the host allocate the whole cap before a byte arrives.
const INITIAL_CAPACITY: u64 = 64 * 1024;

/// Reads the body chunk by chunk, failing as soon as it would exceed `limit_bytes`.
///
/// reqwest has already undone gzip or deflate by the time chunks arrive, so the cap counts the
/// decoded size and a small compressed bomb fails like a large plain body. At most the cap plus
/// the chunk that crossed it is ever held in memory.
pub(super) async fn read_capped(
    response: &mut reqwest::Response,
    limit_bytes: u64,
    map_err: impl Fn(reqwest::Error) -> FetchError,
) -> Result<Vec<u8>, FetchError> {
    // A declared length over the cap fails before reading; a decoded body declares none.
    let declared = response.content_length();
    if declared.is_some_and(|length| length > limit_bytes) {
        return Err(FetchError::TooLarge { limit_bytes });
    }
    let capacity = declared.unwrap_or(0).min(limit_bytes).min(INITIAL_CAPACITY);
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(&map_err)? {
        if body.len() as u64 + chunk.len() as u64 > limit_bytes {
            return Err(FetchError::TooLarge { limit_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The response headers as name-value pairs, in the order received. Names are lowercase; a value
/// that is not UTF-8 is converted lossily rather than dropped, so the plugin still sees it.
pub(super) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect()
}

/// The delay a `Retry-After` header asks for, measured from `now`.
///
/// Both forms of RFC 9110 are understood: delta-seconds (`120`) and an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`). A date in the past means "now" (zero); anything unreadable
/// is ignored; the result never exceeds [`MAX_RETRY_AFTER`].
pub(super) fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time", not garbage.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        static PARSER: DateTimeParser = DateTimeParser::new();
        let at = PARSER.parse_timestamp(value).ok()?;
        let delta = at.duration_since(now);
        if delta.is_negative() { Duration::ZERO } else { Duration::try_from(delta).ok()? }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    use super::*;

    #[test]
    fn parses_both_forms_and_caps_the_delay() {
        let now: jiff::Timestamp = "2015-10-21T07:27:00Z".parse().unwrap();
        let parse = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse("99999999999999999999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::from_secs(60)));
        assert_eq!(parse("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("Fri, 23 Oct 2015 07:28:00 GMT"), Some(MAX_RETRY_AFTER));
        for garbage in ["-5", "1.5", "soon", ""] {
            assert_eq!(parse(garbage), None, "{garbage:?}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
