//! One place that hides secrets in what kolla-oci shows or writes: logs, error messages, and the
//! provenance and SBOM documents that are pushed beside every image. Two kinds of secrets reach those:
//! a password in a URL's user info (a source `location = https://user:token@host/…`, a proxy build arg,
//! git's messages quoting the URL it cloned), and the value of an option whose name says it is one
//! (`--build-arg DB_PASSWORD=…`). Everything that prints or records such a value goes through here.

/// The replacement of a hidden secret.
pub const MASK: &str = "***";

/// `text` with the password of every URL's user info replaced by [`MASK`]: `https://u:***@host/p`. A
/// user info without a password is taken for a token (`https://ghp_x@github.com`) and masked as one:
/// `https://***@github.com`. Text that holds no URL comes back unchanged.
pub fn urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // The authority ends at the path, query, fragment, or anything that cannot be in a URL.
        let end = after.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || "\"'<>()`,".contains(c));
        let authority = &after[..end.unwrap_or(after.len())];
        match authority.rfind('@') {
            Some(at) => {
                match authority[..at].split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:{MASK}")),
                    None => out.push_str(MASK),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority.len()..];
    }
    out.push_str(rest);
    out
}

/// Whether an option or variable called `name` holds a secret by its name (`DB_PASSWORD`,
/// `api-token`, `client_secret`, …).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "credential", "apikey", "api_key", "api-key", "private_key"]
        .iter()
        .any(|s| n.contains(s))
}

/// The value of option `name` as it may be shown: [`MASK`] when the name says it is a secret, else
/// with the passwords of its URLs masked ([`urls`]).
pub fn value(name: &str, value: &str) -> String {
    if is_secret_name(name) && !value.is_empty() { MASK.to_owned() } else { urls(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_and_tokens_are_masked() {
        assert_eq!(urls("http://u:s3cret@proxy:3128/"), "http://u:***@proxy:3128/");
        assert_eq!(urls("https://ghp_token@github.com/o/r.git"), "https://***@github.com/o/r.git");
        assert_eq!(urls("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(urls("localhost,127.0.0.1"), "localhost,127.0.0.1");
        assert_eq!(urls("https://h/p@x"), "https://h/p@x", "an @ in the path is no user info");
        assert_eq!(
            urls("git clone 'https://a:b@h/r' failed; retry http://c:d@e?x=1"),
            "git clone 'https://a:***@h/r' failed; retry http://c:***@e?x=1"
        );
        assert_eq!(
            urls("error sending request for url (https://u:p@h/f.tgz)"),
            "error sending request for url (https://u:***@h/f.tgz)"
        );
        assert_eq!(urls("https://u:p@w:rd@h/x"), "https://u:***@h/x", "the last @ ends the user info");
        assert_eq!(urls("trailing ://"), "trailing ://");
    }

    #[test]
    fn secret_names_hide_the_whole_value() {
        assert_eq!(value("DB_PASSWORD", "hunter2"), MASK);
        assert_eq!(value("api-token", "x"), MASK);
        assert_eq!(value("http_proxy", "http://u:p@proxy:3128"), "http://u:***@proxy:3128");
        assert_eq!(value("base", "debian"), "debian");
        assert_eq!(value("PASSWORD", ""), "", "nothing to hide");
    }
}
