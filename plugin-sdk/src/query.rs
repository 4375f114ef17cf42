//! Query-string editing for [`Request::with_query`](crate::Request::with_query), without a URL
//! parsing dependency: only the part between the first `?` and the first `#` is touched.

/// Percent-encodes `text` for a query name or value: everything but the RFC 3986 unreserved
/// characters is encoded, so `&`, `=`, `+` and `#` in values survive the round trip.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes a query name or value as form encoding does: `+` is a space, `%XX` a byte.
///
/// Malformed escapes are kept as they are, and invalid UTF-8 is replaced, because this is only
/// used to compare names and to read values back.
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3).and_then(|hex| hex_pair(hex[0], hex[1])) {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| char::from(c).to_digit(16);
    Some((digit(high)? * 16 + digit(low)?) as u8)
}

/// Splits `url` into the part before the query, the query (without `?`), and the fragment
/// (with its `#`), any of which may be empty.
fn split(url: &str) -> (&str, &str, &str) {
    let (rest, fragment) = match url.find('#') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    match rest.split_once('?') {
        Some((base, query)) => (base, query, fragment),
        None => (rest, "", fragment),
    }
}

/// Returns `url` with the query parameter `name` set to `value`: the first existing parameter
/// of that name is replaced in place and any others of that name are removed; otherwise the
/// parameter is appended.
pub(crate) fn set(url: &str, name: &str, value: &str) -> String {
    let (base, query, fragment) = split(url);
    let pair = format!("{}={}", encode(name), encode(value));
    let mut pairs: Vec<&str> = Vec::new();
    let mut replaced = false;
    for part in query.split('&').filter(|part| !part.is_empty()) {
        let part_name = part.split_once('=').map_or(part, |(n, _)| n);
        if decode(part_name) != name {
            pairs.push(part);
        } else if !replaced {
            pairs.push(&pair);
            replaced = true;
        }
    }
    if !replaced {
        pairs.push(&pair);
    }
    format!("{base}?{}{fragment}", pairs.join("&"))
}

/// The decoded value of the first query parameter called `name` in `url`, if any.
pub(crate) fn get(url: &str, name: &str) -> Option<String> {
    let (_, query, _) = split(url);
    query.split('&').find_map(|part| {
        let (part_name, value) = part.split_once('=').unwrap_or((part, ""));
        (decode(part_name) == name).then(|| decode(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_and_non_ascii_characters() {
        assert_eq!(encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(encode("a b&c=d+e#f/g?h"), "a%20b%26c%3Dd%2Be%23f%2Fg%3Fh");
        assert_eq!(encode("2024-01-01T00:00:00+01:00"), "2024-01-01T00%3A00%3A00%2B01%3A00");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn decodes_plus_escapes_and_keeps_malformed_escapes() {
        assert_eq!(decode("a+b%20c%C3%A9"), "a b cé");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn appends_to_a_url_without_query() {
        assert_eq!(set("https://x.io/a", "since", "1 2"), "https://x.io/a?since=1%202");
        assert_eq!(set("https://x.io/a?", "k", "v"), "https://x.io/a?k=v");
    }

    #[test]
    fn appends_after_existing_parameters_and_keeps_fragment() {
        assert_eq!(set("https://x.io/a?page=2&q=a%20b#top", "since", "t"), "https://x.io/a?page=2&q=a%20b&since=t#top");
    }

    #[test]
    fn replaces_first_parameter_of_same_name_and_drops_duplicates() {
        assert_eq!(
            set("https://x.io/a?since=old&page=2&since=older", "since", "new"),
            "https://x.io/a?since=new&page=2"
        );
        // Names are compared decoded, so an encoded spelling of the same name is replaced too.
        assert_eq!(set("https://x.io/?s%69nce=old", "since", "n"), "https://x.io/?since=n");
        // A parameter without `=` still counts as present.
        assert_eq!(set("https://x.io/?flag&x=1", "flag", "on"), "https://x.io/?flag=on&x=1");
    }

    #[test]
    fn get_reads_decoded_values() {
        let url = set("https://x.io/?a=1", "since", "2024-01-01T00:00:00+01:00");
        assert_eq!(get(&url, "since").as_deref(), Some("2024-01-01T00:00:00+01:00"));
        assert_eq!(get(&url, "a").as_deref(), Some("1"));
        assert_eq!(get(&url, "missing"), None);
        assert_eq!(get("https://x.io/?flag#frag", "flag").as_deref(), Some(""));
    }
}
