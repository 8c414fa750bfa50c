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
    let replaced = u.set_username(REDACTED).is_ok()
        && (url.password().is_none() || u.set_password(Some(REDACTED)).is_ok());
    if replaced {
        u.to_string()
    } else {
        // A URL that cannot carry credentials (no host) yet holds some.
        redact_authority(url.as_str())
    }
}

/// Like [`redact_url`] for text that may not even parse as a URL.
pub fn redact_url_str(text: &str) -> String {
    if let Ok(u) = Url::parse(text) {
        if u.has_authority() {
            return redact_url(&u);
        }
    }
    redact_authority(text)
}

/// Text that is no usable URL: everything up to the last `@` is hidden,
/// but for a leading `scheme://`. A password may hold unencoded `/`, `?`,
/// `#` or even `://`, so this hides too much rather than too little; it
/// only ever shows up in an error message.
fn redact_authority(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_string();
    };
    let start = match text[..at].find("://") {
        Some(i)
            if i > 0
                && text[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            i + 3
        }
        _ => 0,
    };
    format!("{}{REDACTED}{}", &text[..start], &text[at..])
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
        // Not a scheme: hidden with the rest.
        assert_eq!(redact_url_str("ht!tp://bob:pw@ho st/x"), "***@ho st/x");
        assert_eq!(redact_url_str("htt p://bob:pw@ho st/x"), "***@ho st/x");
        assert_eq!(
            redact_url_str("http://127.0.0.1/a@b"),
            "http://127.0.0.1/a@b"
        );
        // Not URLs at all, or not ones that can carry credentials.
        assert_eq!(redact_url_str("alice:s3cret@host"), "***@host");
        assert_eq!(redact_url_str("http://a:p/w@d@ho st/"), "http://***@ho st/");
        assert_eq!(redact_url_str("http::s3cret@"), "***@");
        assert_eq!(redact_url_str("a:s3c://ret@host"), "***@host");
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

    // Case counts come from proptest's default config, which honours
    // PROPTEST_CASES (scripts/fuzz runs 100,000 per parser).
    proptest::proptest! {
        #[test]
        fn never_panics(text in ".*") {
            let _ = redact_url_str(&text);
            let _ = redact_header_arg(&text);
        }

        #[test]
        fn passwords_never_survive(
            scheme in "(https?|ftp|postgres(ql)?|[a-z]{1,6})",
            sep in "(://|:)",
            user in "[a-z]{0,6}",
            host in "[a-z0-9.:\\[\\] ]{0,20}",
            rest in "[/?#][ -~]{0,20}",
        ) {
            // The password is a marker that cannot occur by chance in the rest.
            let secret = "S3CRET";
            let text = format!("{scheme}{sep}{user}:{secret}@{host}{rest}");
            let shown = redact_url_str(&text);
            proptest::prop_assert!(!shown.contains(secret), "{} -> {}", text, shown);
        }

        #[test]
        fn secret_header_values_never_survive(
            name in proptest::sample::select(SECRET_HEADERS.to_vec()),
            upper in proptest::collection::vec(proptest::bool::ANY, 20),
            pad in "[ \t]{0,2}",
            value in "[ -~]{0,20}",
        ) {
            let name: String = name
                .chars()
                .zip(upper)
                .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                .collect();
            let text = format!("{pad}{name}{pad}:{pad}S3CRET{value}");
            let shown = redact_header_arg(&text);
            proptest::prop_assert!(!shown.contains("S3CRET"), "{} -> {}", text, shown);
        }
    }
}
