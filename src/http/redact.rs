//! Secrets never reach a log line: a URL's password and the values of
//! credential-carrying headers are replaced before anything prints them.

use reqwest::Url;

const REDACTED: &str = "***";

/// Headers whose values are secrets.
pub const SECRET_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// The URL with any user name and password replaced by `***`.
pub fn redact_url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_username(REDACTED);
    if url.password().is_some() {
        let _ = u.set_password(Some(REDACTED));
    }
    u.to_string()
}

/// Like [`redact_url`] for text that may not even parse as a URL: anything
/// between `://` and an `@` in the authority is hidden.
pub fn redact_url_str(text: &str) -> String {
    if let Ok(u) = Url::parse(text) {
        if u.has_authority() {
            return redact_url(&u);
        }
    }
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let rest = &text[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &text[..start], &rest[at..]),
        None => text.to_string(),
    }
}

/// A `-H` argument with a secret header's value hidden.
pub fn redact_header_arg(text: &str) -> String {
    match text.split_once(':') {
        Some((name, _)) if SECRET_HEADERS.contains(&name.trim().to_ascii_lowercase().as_str()) => {
            format!("{name}: {REDACTED}")
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_credentials() {
        let u = Url::parse("http://alice:s3cret@127.0.0.1:8080/x?y=1").unwrap();
        let r = redact_url(&u);
        assert!(!r.contains("s3cret") && !r.contains("alice"), "{r}");
        assert_eq!(r, "http://***:***@127.0.0.1:8080/x?y=1");
        assert_eq!(
            redact_url_str("ftp://bob:pw@host/x"),
            "ftp://***:***@host/x"
        );
        assert_eq!(
            redact_url_str("ht!tp://bob:pw@ho st/x"),
            "ht!tp://***@ho st/x"
        );
        assert_eq!(
            redact_url_str("http://127.0.0.1/a@b"),
            "http://127.0.0.1/a@b"
        );
    }

    #[test]
    fn hides_secret_headers() {
        assert_eq!(
            redact_header_arg("Authorization: Bearer x"),
            "Authorization: ***"
        );
        assert_eq!(redact_header_arg("cookie:a=b"), "cookie: ***");
        assert_eq!(redact_header_arg("Accept: */*"), "Accept: */*");
    }
}
