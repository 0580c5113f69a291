//! `htu` comparison (RFC 9449 4.3 step 9): both URLs are reduced to scheme, host, port and
//! path, without query and fragment, and normalised as RFC 3986 6.2.2 (syntax) and 6.2.3
//! (scheme-based) describe: lower-case scheme and host, the default port and an empty port
//! dropped, an empty path made `/`, percent-encodings of unreserved characters decoded and the
//! others written in upper case, dot segments removed.

/// The longest URL compared; longer ones are refused.
const MAX_URL: usize = 8 * 1024;

/// The normalised form of an absolute `http` or `https` URL, or `None` when it is not one (no
/// scheme, another scheme, user information, a bad port or percent-encoding, characters outside
/// visible ASCII).
pub(crate) fn normalize(url: &str) -> Option<String> {
    if url.len() > MAX_URL || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        match after {
            "" => (host, ""),
            _ => (host, after.strip_prefix(':')?),
        }
    } else {
        authority.rsplit_once(':').unwrap_or((authority, ""))
    };
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    let port = match port {
        "" => None,
        p if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        _ => return None,
    };
    let mut out = String::with_capacity(url.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&normalize_percent(host)?.to_ascii_lowercase());
    if let Some(port) = port.filter(|p| *p != default_port) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    let path = normalize_percent(path)?;
    let path = remove_dot_segments(&path);
    if path.is_empty() {
        out.push('/');
    } else {
        out.push_str(&path);
    }
    Some(out)
}

/// Decodes percent-encoded unreserved characters and upper-cases the hex digits of the others
/// (RFC 3986 6.2.2.1, 6.2.2.2); `None` on a `%` not followed by two hex digits.
fn normalize_percent(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            let c = u8::try_from(hi * 16 + lo).ok()?;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(c));
            } else {
                out.push('%');
                out.push_str(&format!("{c:02X}"));
            }
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Some(out)
}

/// RFC 3986 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    let pop = |out: &mut String| {
        let cut = out.rfind('/').unwrap_or(0);
        out.truncate(cut);
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop(&mut out);
        } else if input == "/.." {
            input = "/";
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_urls_normalise_alike() {
        let base = "https://server.example.com/token";
        for same in [
            "https://server.example.com/token",
            "HTTPS://Server.Example.COM/token",
            "https://server.example.com:443/token",
            "https://server.example.com:/token",
            "https://server.example.com/token?x=1",
            "https://server.example.com/token#frag",
            "https://server.example.com/token?x=1#frag",
            "https://server.example.com/a/../token",
            "https://server.example.com/./token",
            "https://server.example.com/%74oken",
        ] {
            assert_eq!(normalize(same).as_deref(), Some(base), "{same}");
        }
        assert_eq!(
            normalize("http://h.example:80").as_deref(),
            Some("http://h.example/")
        );
        assert_eq!(
            normalize("http://h.example:8080/a%2fb").as_deref(),
            Some("http://h.example:8080/a%2Fb")
        );
        assert_eq!(
            normalize("https://[::1]:443/x").as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(
            normalize("https://[::1]:8443/x").as_deref(),
            Some("https://[::1]:8443/x")
        );
    }

    #[test]
    fn different_urls_stay_different() {
        let n = |u| normalize(u).unwrap();
        assert_ne!(n("https://a.example/x"), n("http://a.example/x"));
        assert_ne!(n("https://a.example/x"), n("https://a.example:8443/x"));
        assert_ne!(n("https://a.example/x"), n("https://a.example/X"));
        assert_ne!(n("https://a.example/x"), n("https://a.example/x/"));
        assert_ne!(n("https://a.example/x"), n("https://b.example/x"));
        assert_ne!(n("http://a.example:443/x"), n("http://a.example/x"));
    }

    #[test]
    fn refuses_what_is_not_an_http_url() {
        for bad in [
            "",
            "/token",
            "server.example.com/token",
            "ftp://server.example.com/",
            "https://user@server.example.com/",
            "https:///token",
            "https://server.example.com:99999/",
            "https://server.example.com:4x3/",
            "https://server.example.com/a b",
            "https://server.example.com/%zz",
            "https://server.example.com/%4",
            "https://a:b:c/",
            "https://[::1/",
            "https://[::1]x/",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
        assert_eq!(
            normalize(&format!("https://a.example/{}", "a".repeat(MAX_URL))),
            None
        );
    }

    #[test]
    fn dot_segments() {
        // RFC 3986 5.4 examples, paths only.
        for (input, want) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/b/c/..", "/b/"),
            ("/b/c/.", "/b/c/"),
            ("/../g", "/g"),
            ("/./g/.", "/g/"),
            ("/g..", "/g.."),
            ("", ""),
        ] {
            assert_eq!(remove_dot_segments(input), want, "{input}");
        }
    }
}
