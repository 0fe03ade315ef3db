//! Who may talk to us: HTTP Basic credentials, tokens, and the WebSocket
//! Origin policy. Pure: request head in, verdict out.
//!
//! Secrets are compared in constant time (the time taken does not depend on
//! where the first differing byte is), so a network attacker cannot guess a
//! password byte by byte from response times. Credentials are never logged.

use crate::config::Auth;
use crate::proto::http::{self, RequestHead};

/// Compares two secrets in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // Fold the length difference in rather than returning early, so a wrong
    // length costs the same as a wrong byte.
    let mut diff = (a.len() ^ b.len()) as u64;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// Whether any accepted secret equals `given`; every candidate is compared
/// so the number of configured secrets is the only thing timing reveals.
fn any_ct_eq(accepted: &[Vec<u8>], given: &[u8]) -> bool {
    let mut ok = false;
    for a in accepted {
        ok |= ct_eq(a, given);
    }
    ok
}

/// True when the request may proceed: auth is off, or it carries valid
/// Basic credentials, a valid `Bearer` token, or a valid `?token=`.
pub fn authorized(auth: &Auth, head: &RequestHead<'_, '_>) -> bool {
    if !auth.enabled() {
        return true;
    }
    if let Some(value) = head.header("authorization") {
        if let Some(creds) = http::basic_auth_credentials(value)
            && any_ct_eq(&auth.basic, &creds)
        {
            return true;
        }
        if let Some(token) = bearer_token(value)
            && any_ct_eq(&auth.tokens, token)
        {
            return true;
        }
    }
    if !auth.tokens.is_empty()
        && let Some(t) = head.query().and_then(|q| http::query_param(q, "token"))
    {
        let mut decoded = Vec::new();
        if http::percent_decode(t, &mut decoded).is_ok() && any_ct_eq(&auth.tokens, &decoded) {
            return true;
        }
    }
    false
}

fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// The `WWW-Authenticate` challenge for a 401 (RFC 7617).
pub const CHALLENGE: &str = "Basic realm=\"picamd\", charset=\"UTF-8\"";

/// RFC 6455 §10.2: browsers send `Origin`; a page on another site must not
/// open our stream with the user's credentials. Accepted: no Origin (not a
/// browser: curl, ws, websockets, VLC), an Origin whose host:port is the
/// request's `Host`, or one listed with `--allow-origin` (`*` for any).
pub fn origin_allowed(origin: Option<&[u8]>, host: Option<&[u8]>, allow: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    if allow
        .iter()
        .any(|a| a == "*" || a.as_bytes().eq_ignore_ascii_case(origin))
    {
        return true;
    }
    // Origin is scheme "://" host [ ":" port ]; compare its authority with
    // the Host header (which carries the port the client connected to).
    let authority = origin
        .iter()
        .position(|&b| b == b':')
        .and_then(|i| origin.get(i..))
        .and_then(|rest| rest.strip_prefix(b"://"));
    match (authority, host) {
        (Some(a), Some(h)) => {
            let a = strip_default_port(a, origin);
            let h = strip_default_port(h, origin);
            a.eq_ignore_ascii_case(h)
        }
        _ => false,
    }
}

fn strip_default_port<'a>(authority: &'a [u8], origin: &[u8]) -> &'a [u8] {
    let default = if origin.starts_with(b"https:") {
        &b":443"[..]
    } else {
        &b":80"[..]
    };
    authority.strip_suffix(default).unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(!ct_eq(b"", b"x"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn origin_policy() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed(None, Some(b"pi:8080"), &none));
        assert!(origin_allowed(
            Some(b"http://pi:8080"),
            Some(b"pi:8080"),
            &none
        ));
        assert!(origin_allowed(Some(b"http://PI"), Some(b"pi:80"), &none));
        assert!(!origin_allowed(
            Some(b"http://evil.example"),
            Some(b"pi:8080"),
            &none
        ));
        assert!(!origin_allowed(Some(b"null"), Some(b"pi:8080"), &none));
        let allow = vec!["http://dash.local".to_string()];
        assert!(origin_allowed(
            Some(b"http://dash.local"),
            Some(b"pi:8080"),
            &allow
        ));
        assert!(origin_allowed(Some(b"http://x"), None, &["*".to_string()]));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }
}
