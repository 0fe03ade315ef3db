//! HTTP/1.1 request-head parser and response writers (RFC 9110, RFC 9112).
//!
//! [`parse_head`] turns the bytes a client has sent so far into a
//! [`RequestHead`] (method, target, version, header fields), or says
//! `Partial` (send more), or names the rule the client broke ([`HttpError`],
//! which maps to the status to answer before closing). It is incremental:
//! the caller keeps a `scanned` position, so a client that drips one byte at
//! a time costs O(n) in total, and every limit (head size, target length)
//! fails as soon as it is crossed, not when the head finally ends.
//!
//! Guarantees: no allocation while parsing (names and values borrow from the
//! read buffer, fields go into the caller's fixed array), no panic on any
//! input, and strictness: each leniency has a comment saying why.
//!
//! The rest are small helpers for the server: header lookups, query strings,
//! percent-decoding, Basic credentials, and writers for response heads, short
//! text responses and `multipart/x-mixed-replace` (MJPEG) streams.
//!
//! This file does no I/O and knows nothing about sockets, routes or cameras.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub use super::Status;

/// Most headers a request may carry; a full array is 431, never a `Vec` push.
pub const MAX_HEADERS: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header<'b> {
    pub name: &'b str,
    pub value: &'b [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    /// The request target exactly as sent (origin-form: path and query).
    pub target: &'b str,
    pub version: Version,
    pub headers: &'h [Header<'b>],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line + headers + final CRLF.
    pub max_head_bytes: usize,
    /// Request target length (414 past it).
    pub max_target_bytes: usize,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a request head was refused. Every variant means "answer
/// [`HttpError::status`] with the [`Display`](std::fmt::Display) text as the
/// body, then close the connection": after a framing error we cannot know
/// where the next request would start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The request line is not `method SP target SP version` (RFC 9112 §3),
    /// or too many empty lines came before it.
    BadRequestLine,
    /// The method is not a token (RFC 9110 §9.1) or is absurdly long.
    BadMethod,
    /// The target is not origin-form (RFC 9112 §3.2.1), holds bytes that are
    /// not visible ASCII, or has a broken `%XX` escape.
    BadTarget,
    /// The version is not `HTTP/<digit>.<digit>` (RFC 9112 §2.3).
    BadVersion,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    VersionNotSupported,
    /// A line ended in LF without CR (RFC 9112 §2.2; see `find_head_end`).
    BareLf,
    /// A field line without a colon, or a field name that is not a token
    /// (RFC 9110 §5.1).
    BadHeaderName,
    /// Whitespace between the field name and the colon (RFC 9112 §5.1).
    SpaceBeforeColon,
    /// A field value with a control byte, e.g. NUL or a bare CR (RFC 9110 §5.5).
    BadHeaderValue,
    /// A line starting with SP or HTAB: obsolete line folding (RFC 9112 §5.2).
    ObsFold,
    /// More than [`MAX_HEADERS`] field lines.
    TooManyHeaders,
    /// The head is longer than `Limits::max_head_bytes`.
    HeadTooLarge,
    /// The target is longer than `Limits::max_target_bytes`.
    TargetTooLong,
    /// An HTTP/1.1 request without Host (RFC 9112 §3.2).
    MissingHost,
    /// More than one Host field line (RFC 9112 §3.2).
    DuplicateHost,
    /// A Host value that is not `uri-host [":" port]` (RFC 9112 §3.2).
    BadHost,
    /// A Content-Length that is not digits, or several that differ
    /// (RFC 9110 §8.6).
    BadContentLength,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.1).
    ContentLengthWithTransferEncoding,
    /// The request has a body. picamd serves only GET and HEAD, so it
    /// refuses bodies instead of reading and discarding them.
    BodyNotAllowed,
}

impl HttpError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            // RFC 9110 §15.5.20: 431 when the header fields are too large,
            // "either individually or collectively".
            HttpError::TooManyHeaders | HttpError::HeadTooLarge => 431,
            // RFC 9110 §15.5.15: 414 URI Too Long.
            HttpError::TargetTooLong => 414,
            // RFC 9110 §15.5.14: 413 Content Too Large.
            HttpError::BodyNotAllowed => 413,
            // RFC 9110 §15.6.6: 505 HTTP Version Not Supported.
            HttpError::VersionNotSupported => 505,
            HttpError::BadRequestLine
            | HttpError::BadMethod
            | HttpError::BadTarget
            | HttpError::BadVersion
            | HttpError::BareLf
            | HttpError::BadHeaderName
            | HttpError::SpaceBeforeColon
            | HttpError::BadHeaderValue
            | HttpError::ObsFold
            | HttpError::MissingHost
            | HttpError::DuplicateHost
            | HttpError::BadHost
            | HttpError::BadContentLength
            | HttpError::ContentLengthWithTransferEncoding => 400,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = match self {
            HttpError::BadRequestLine => "malformed request line",
            HttpError::BadMethod => "invalid method",
            HttpError::BadTarget => "invalid request target",
            HttpError::BadVersion => "malformed HTTP version",
            HttpError::VersionNotSupported => {
                "HTTP version not supported (use HTTP/1.1 or HTTP/1.0)"
            }
            HttpError::BareLf => "line ends in LF without CR",
            HttpError::BadHeaderName => "invalid header field name",
            HttpError::SpaceBeforeColon => "whitespace before the colon of a header field",
            HttpError::BadHeaderValue => "invalid header field value",
            HttpError::ObsFold => "obsolete line folding in header fields",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::HeadTooLarge => "request head too large",
            HttpError::TargetTooLong => "request target too long",
            HttpError::MissingHost => "missing Host header",
            HttpError::DuplicateHost => "more than one Host header",
            HttpError::BadHost => "invalid Host header",
            HttpError::BadContentLength => "invalid Content-Length",
            HttpError::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            HttpError::BodyNotAllowed => "request bodies are not accepted",
        };
        f.write_str(reason)
    }
}

impl std::error::Error for HttpError {}

// ---------------------------------------------------------------------------
// Request head parser
// ---------------------------------------------------------------------------

/// RFC 9112 §2.2: a server "SHOULD ignore at least one empty line (CRLF)
/// received prior to the request-line" (old clients send CRLF after a POST
/// body). We ignore a few; a client sending more is not an HTTP client.
const MAX_EMPTY_LINES_BEFORE_REQUEST: usize = 4;

/// Longest method we accept. The longest registered method
/// (`UPDATEREDIRECTREF`) has 17 bytes; the bound keeps the request line
/// limit in `find_head_end` a simple sum.
const MAX_METHOD_BYTES: usize = 24;

/// Parses one request head from the start of `buf`.
///
/// Returns `Complete((head, consumed))` where `consumed` counts every byte of
/// the head including the final empty line: bytes after it are the next
/// pipelined request. `Partial` means `buf` is a valid prefix so far.
///
/// `scanned` is the caller's state for this one head: start it at 0, pass it
/// back unchanged with the grown buffer, reset it to 0 after `Complete`.
/// Bytes before it are never looked at again while searching for the end of
/// the head.
pub fn parse_head<'h, 'b>(
    buf: &'b [u8],
    scanned: &mut usize,
    limits: &Limits,
    headers: &'h mut [Header<'b>; MAX_HEADERS],
) -> Result<Status<(RequestHead<'h, 'b>, usize)>, HttpError> {
    let Some(start) = skip_empty_lines(buf)? else {
        return Ok(Status::Partial);
    };
    let Some(consumed) = find_head_end(buf, start, scanned, limits)? else {
        return Ok(Status::Partial);
    };

    // The head is complete, so it is parsed once, in full. `lines` holds the
    // request line and the field lines, each still ending in CRLF; the final
    // empty line (the last two bytes) is left out.
    let lines = buf
        .get(start..consumed.saturating_sub(2))
        .unwrap_or_default();
    // find_head_end proved that every LF here follows a CR.
    let mut lines = lines
        .split_inclusive(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r\n").unwrap_or(line));

    let (method, target, version) = parse_request_line(lines.next().unwrap_or_default(), limits)?;

    let mut count = 0;
    for line in lines {
        let slot = headers.get_mut(count).ok_or(HttpError::TooManyHeaders)?;
        *slot = parse_field_line(line)?;
        count += 1;
    }
    let headers: &'h [Header<'b>] = headers;
    let head = RequestHead {
        method,
        target,
        version,
        headers: headers.get(..count).unwrap_or_default(),
    };

    check_host(&head)?;
    check_no_body(&head)?;
    Ok(Status::Complete((head, consumed)))
}

/// Skips the empty lines allowed before the request line. Returns where the
/// request line starts, or `None` if `buf` holds nothing else yet.
fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    let mut start = 0;
    let mut rest = buf;
    for _ in 0..MAX_EMPTY_LINES_BEFORE_REQUEST {
        match rest.strip_prefix(b"\r\n") {
            Some(after) => {
                rest = after;
                start += 2;
            }
            None => break,
        }
    }
    match rest {
        [] | [b'\r'] => Ok(None),
        [b'\r', b'\n', ..] => Err(HttpError::BadRequestLine),
        _ => Ok(Some(start)),
    }
}

/// Searches for the empty line that ends the head, resuming at `*scanned`.
/// Returns the head's length (up to and including that empty line) once it
/// is there.
///
/// Errors are reported in the order of the byte that causes them, so feeding
/// the same bytes in any number of pieces gives the same answer.
fn find_head_end(
    buf: &[u8],
    start: usize,
    scanned: &mut usize,
    limits: &Limits,
) -> Result<Option<usize>, HttpError> {
    // The head may not end past max_head_bytes, so no need to look further
    // (later bytes may be a pipelined request: they are not ours to judge).
    let scan_end = buf.len().min(limits.max_head_bytes);
    let from = (*scanned).max(start).min(scan_end);

    // A request line longer than the longest one the target limit allows
    // gets 414 as soon as that is known, not when the line ends: a client
    // must not keep us buffering a target we will refuse. `line_limit` is
    // where the LF of the longest allowed line would be. This runs in the
    // one call whose new bytes cross `line_limit`, so it looks at most at one
    // request line per head: the total work stays O(n).
    // The longest line is: method SP target SP "HTTP/1.1" CR, then the LF.
    let max_line = MAX_METHOD_BYTES
        .saturating_add(" ".len())
        .saturating_add(limits.max_target_bytes)
        .saturating_add(" HTTP/1.1\r".len());
    let line_limit = start.saturating_add(max_line);
    if from <= line_limit && line_limit < scan_end {
        let longest_line = buf.get(start..=line_limit).unwrap_or_default();
        if memchr::memchr(b'\n', longest_line).is_none() {
            return Err(HttpError::TargetTooLong);
        }
    }

    let new_bytes = buf.get(from..scan_end).unwrap_or_default();
    for lf in memchr::memchr_iter(b'\n', new_bytes).map(|i| i + from) {
        // RFC 9112 §2.2 lets a recipient accept a bare LF as a line end. We
        // don't: a proxy in front of us that disagrees about where a line
        // ends would see different headers than we do (request smuggling),
        // and every real client sends CRLF.
        let before = lf.checked_sub(1).and_then(|i| buf.get(i));
        if before != Some(&b'\r') {
            return Err(HttpError::BareLf);
        }
        // An LF ends the head when it ends an empty line: "\r\n\r\n".
        let blank_line_end = lf
            .checked_sub(3)
            .filter(|&i| i >= start)
            .and_then(|i| buf.get(i..lf));
        if blank_line_end == Some(b"\r\n\r".as_slice()) {
            return Ok(Some(lf + 1));
        }
    }
    *scanned = scan_end;

    if buf.len() > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    Ok(None)
}

/// `request-line = method SP request-target SP HTTP-version` (RFC 9112 §3),
/// with exactly one SP between the parts.
fn parse_request_line<'b>(
    line: &'b [u8],
    limits: &Limits,
) -> Result<(&'b str, &'b str, Version), HttpError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().ok_or(HttpError::BadRequestLine)?;
    let version = parts.next().ok_or(HttpError::BadRequestLine)?;
    // An empty part means two SPs in a row; a SP in the version means a
    // fourth part. Both are "not exactly one SP".
    if method.is_empty() || target.is_empty() || version.contains(&b' ') {
        return Err(HttpError::BadRequestLine);
    }

    if method.len() > MAX_METHOD_BYTES || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadMethod);
    }

    if target.len() > limits.max_target_bytes {
        return Err(HttpError::TargetTooLong);
    }
    // We are an origin server, so only origin-form is valid here
    // (RFC 9112 §3.2.1): absolute-path [ "?" query ]. absolute-form is for
    // proxies, authority-form for CONNECT, asterisk-form for OPTIONS, and we
    // answer none of those. Escapes are checked by `percent_decode` when the
    // path is used; here we only refuse bytes that are not visible ASCII.
    if target.first() != Some(&b'/') || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadTarget);
    }

    // RFC 9112 §2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive.
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::VersionNotSupported);
        }
        _ => return Err(HttpError::BadVersion),
    };

    // Visible ASCII is valid UTF-8, so these conversions cannot fail.
    let method = std::str::from_utf8(method).map_err(|_| HttpError::BadMethod)?;
    let target = std::str::from_utf8(target).map_err(|_| HttpError::BadTarget)?;
    Ok((method, target, version))
}

/// `field-line = field-name ":" OWS field-value OWS` (RFC 9112 §5).
fn parse_field_line(line: &[u8]) -> Result<Header<'_>, HttpError> {
    // RFC 9112 §5.2: obs-fold (a line continued on the next one, which
    // starts with SP or HTAB) MUST be rejected with 400 outside
    // message/http. The same test covers §2.2: whitespace between the
    // request line and the first field line "MUST" be rejected or skipped.
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(HttpError::ObsFold);
    }
    let mut parts = line.splitn(2, |&b| b == b':');
    let name = parts.next().unwrap_or_default();
    let value = parts.next().ok_or(HttpError::BadHeaderName)?;
    // RFC 9112 §5.1: "A server MUST reject, with a response status code of
    // 400 (Bad Request), any received request message that contains
    // whitespace between a header field name and colon."
    if matches!(name.last(), Some(b' ' | b'\t')) {
        return Err(HttpError::SpaceBeforeColon);
    }
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadHeaderName);
    }
    let value = trim_ows(value);
    // RFC 9110 §5.5: field-value = *( VCHAR / obs-text / SP / HTAB ).
    // That refuses CR, LF and NUL inside a value, as §5.5 requires.
    if !value
        .iter()
        .all(|&b| is_field_vchar(b) || b == b' ' || b == b'\t')
    {
        return Err(HttpError::BadHeaderValue);
    }
    let name = std::str::from_utf8(name).map_err(|_| HttpError::BadHeaderName)?;
    Ok(Header { name, value })
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code
/// to any HTTP/1.1 request message that lacks a Host header field and to any
/// request message that contains more than one Host header field line or a
/// Host header field with an invalid field value."
fn check_host(head: &RequestHead<'_, '_>) -> Result<(), HttpError> {
    let mut hosts = head.headers_named("host");
    match (hosts.next(), hosts.next()) {
        (None, _) if head.version == Version::Http11 => Err(HttpError::MissingHost),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(HttpError::DuplicateHost),
        (Some(host), None) if host.iter().all(|&b| is_host_byte(b)) => Ok(()),
        (Some(_), None) => Err(HttpError::BadHost),
    }
}

/// RFC 9112 §6: a request has a body if it has Content-Length > 0 or any
/// Transfer-Encoding. We refuse bodies (GET and HEAD have none), but first
/// check the framing rules, because a framing conflict is 400, not 413.
fn check_no_body(head: &RequestHead<'_, '_>) -> Result<(), HttpError> {
    let has_transfer_encoding = head.headers_named("transfer-encoding").next().is_some();
    let content_length = parse_content_length(head)?;
    match (content_length, has_transfer_encoding) {
        // RFC 9112 §6.1: a server MAY reject a request with both, and MUST
        // close the connection after answering it. It is the classic request
        // smuggling vector, so we reject it.
        (Some(_), true) => Err(HttpError::ContentLengthWithTransferEncoding),
        (None, true) => Err(HttpError::BodyNotAllowed),
        (Some(length), false) if length > 0 => Err(HttpError::BodyNotAllowed),
        _ => Ok(()),
    }
}

/// The Content-Length of the request, if it has one.
///
/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. Some intermediaries merge a
/// repeated header into `5, 5`; a recipient MAY accept that when all values
/// are equal, and we do, since it is unambiguous. Values that differ are 400.
fn parse_content_length(head: &RequestHead<'_, '_>) -> Result<Option<u64>, HttpError> {
    let mut length = None;
    for value in head.headers_named("content-length") {
        for item in value.split(|&b| b == b',').map(trim_ows) {
            let item = parse_decimal(item).ok_or(HttpError::BadContentLength)?;
            if length.is_some_and(|seen| seen != item) {
                return Err(HttpError::BadContentLength);
            }
            length = Some(item);
        }
    }
    Ok(length)
}

/// `1*DIGIT` as a number; `None` if empty, not digits, or over `u64::MAX`.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// RFC 9110 §5.6.2: `tchar`, the bytes of a token (methods, field names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §5.5: VCHAR (visible ASCII) or obs-text (0x80..=0xFF).
fn is_field_vchar(b: u8) -> bool {
    b.is_ascii_graphic() || b >= 0x80
}

/// Bytes of `uri-host [":" port]` (RFC 3986 §3.2.2): reg-name (unreserved,
/// pct-encoded, sub-delims), IP-literal brackets, and the port's colon and
/// digits. An empty Host is valid syntax (RFC 9112 §3.2).
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b)
}

/// Removes optional whitespace (SP / HTAB, RFC 9110 §5.6.3) at both ends.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Looking things up in a parsed head
// ---------------------------------------------------------------------------

impl<'h, 'b> RequestHead<'h, 'b> {
    /// The value of the first field named `name` (case-insensitive: field
    /// names are, RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers_named(name).next()
    }

    /// Whether the comma-separated list in the `name` fields holds `token`,
    /// case-insensitively, across all lines of that field (RFC 9110 §5.3: a
    /// repeated field is the same as one with the values joined by commas).
    /// For `Connection: keep-alive, Upgrade`, `Connection` has `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .flat_map(|value| value.split(|&b| b == b','))
            .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The target's path: everything before the first `?`, still
    /// percent-encoded.
    pub fn path(&self) -> &'b str {
        match self.target.split_once('?') {
            Some((path, _)) => path,
            None => self.target,
        }
    }

    /// The target's query: everything after the first `?`, if there is one.
    pub fn query(&self) -> Option<&'b str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// Whether the connection stays open after the response (RFC 9112 §9.3):
    /// HTTP/1.1 is persistent unless the client sends `Connection: close`;
    /// HTTP/1.0 only if it sends `Connection: keep-alive`. `close` wins if a
    /// confused client sends both.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => self.has_token("connection", "keep-alive"),
        }
    }

    /// The values of every field named `name`, in order.
    fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// The raw (still percent-encoded) value of the first `key=value` pair in a
/// `&`-separated query. A bare `key` gives `Some("")`.
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, value)) if k == key => Some(value),
            None if pair == key => Some(""),
            _ => None,
        })
}

/// Appends `s` to `out` with every `%XX` escape decoded (RFC 3986 §2.1).
/// `+` stays `+`: it means space only in HTML form queries, not in paths.
/// A `%` not followed by two hex digits is [`HttpError::BadTarget`], and
/// `out` is left as it was.
pub fn percent_decode(s: &str, out: &mut Vec<u8>) -> Result<(), HttpError> {
    let old_len = out.len();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let high = bytes.next().and_then(hex_value);
        let low = bytes.next().and_then(hex_value);
        match high.zip(low) {
            Some((high, low)) => out.push(high << 4 | low),
            None => {
                out.truncate(old_len);
                return Err(HttpError::BadTarget);
            }
        }
    }
    Ok(())
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The `user:pass` bytes of an `Authorization: Basic <base64>` value
/// (RFC 7617 §2), or `None` if the value is anything else.
pub fn basic_auth_credentials(value: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP token68 ], and the
    // scheme is case-insensitive (§11.1).
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at_checked(space)?;
    if !scheme.eq_ignore_ascii_case(b"Basic") {
        return None;
    }
    let encoded = trim_ows(rest);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    // RFC 7617 §2: user-pass = user-id ":" password.
    decoded.contains(&b':').then_some(decoded)
}

// ---------------------------------------------------------------------------
// Response writers
// ---------------------------------------------------------------------------

/// The reason phrase for each status picamd sends (RFC 9110 §15). Clients
/// ignore it (RFC 9112 §4); it is for people reading a capture.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        // RFC 9112 §4: the reason-phrase may be empty.
        _ => "",
    }
}

/// Appends `HTTP/1.1 <status> <reason>`, the `headers`, and the empty line.
pub fn encode_response_head(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)]) {
    push_status_line(out, status);
    for &(name, value) in headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole `text/plain` response: `body` with its Content-Length,
/// `Cache-Control: no-store`, `Connection: keep-alive` or `close`, then
/// `extra_headers`. For HEAD (`head_only`) the body is left out but
/// Content-Length stays the body's length (RFC 9110 §9.3.2).
pub fn encode_simple_response(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &str,
    head_only: bool,
    keep_alive: bool,
) {
    push_status_line(out, status);
    push_header(out, "Content-Type", "text/plain; charset=utf-8");
    push_header(out, "Content-Length", &body.len().to_string());
    push_header(out, "Cache-Control", "no-store");
    push_header(
        out,
        "Connection",
        if keep_alive { "keep-alive" } else { "close" },
    );
    for &(name, value) in extra_headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// The multipart boundary of MJPEG streams (RFC 2046 §5.1.1).
pub const MJPEG_BOUNDARY: &str = "picamdframe";

/// Sent right after each JPEG: the CRLF that ends the part and the *next*
/// boundary. Sending the boundary now, not before the next frame, lets
/// Chrome see that the part is over and paint it at once instead of one
/// frame late.
pub const MJPEG_PART_TAIL: &[u8] = b"\r\n--picamdframe\r\n";

/// Appends the head of an endless `multipart/x-mixed-replace` response and
/// the first boundary line. Each frame then goes out as
/// [`encode_mjpeg_part_head`], the JPEG, and [`MJPEG_PART_TAIL`].
pub fn encode_mjpeg_response_head(out: &mut Vec<u8>) {
    let content_type = format!("multipart/x-mixed-replace;boundary={MJPEG_BOUNDARY}");
    encode_response_head(
        out,
        200,
        &[
            ("Content-Type", &content_type),
            ("Cache-Control", "no-store"),
            // The stream ends only when the connection does.
            ("Connection", "close"),
            // For HTTP/1.0 caches that ignore Cache-Control.
            ("Pragma", "no-cache"),
        ],
    );
    out.extend_from_slice(b"--");
    out.extend_from_slice(MJPEG_BOUNDARY.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the header lines of one MJPEG part. Content-Length lets clients
/// (VLC, ffmpeg, Home Assistant) read the frame without searching for the
/// boundary.
pub fn encode_mjpeg_part_head(out: &mut Vec<u8>, content_length: usize) {
    push_header(out, "Content-Type", "image/jpeg");
    push_header(out, "Content-Length", &content_length.to_string());
    out.extend_from_slice(b"\r\n");
}

fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    push_field_text(out, name);
    out.extend_from_slice(b": ");
    push_field_text(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Writes a name or value with CR and LF replaced by SP, so a value built
/// from request data (a redirect's Location, say) can never end the head
/// early and inject headers (response splitting).
fn push_field_text(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

// ---------------------------------------------------------------------------
// Fuzzing
// ---------------------------------------------------------------------------

/// Invariants of [`parse_head`] for the fuzzer: parsing `data` whole and in
/// two feeds (cut at `data[0] % len`, `scanned` carried over) agree, and a
/// complete head lies inside `data`. Panics only if an invariant is broken.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    // Small limits so that fuzz inputs actually reach them.
    let limits = Limits {
        max_head_bytes: 1024,
        max_target_bytes: 256,
    };
    let mut whole_headers = [Header::default(); MAX_HEADERS];
    let whole = parse_head(data, &mut 0, &limits, &mut whole_headers);

    let cut = data.first().map_or(0, |&b| usize::from(b) % data.len());
    let mut scanned = 0;
    let mut first_headers = [Header::default(); MAX_HEADERS];
    let first = parse_head(
        data.get(..cut).unwrap_or_default(),
        &mut scanned,
        &limits,
        &mut first_headers,
    );
    let mut second_headers = [Header::default(); MAX_HEADERS];
    let split = match first {
        Ok(Status::Partial) => parse_head(data, &mut scanned, &limits, &mut second_headers),
        done => done,
    };
    assert_eq!(whole, split, "whole and split at {cut} disagree");

    if let Ok(Status::Complete((head, consumed))) = whole {
        assert!(consumed <= data.len() && consumed <= limits.max_head_bytes);
        assert!(
            data.get(..consumed)
                .is_some_and(|h| h.ends_with(b"\r\n\r\n"))
        );
        assert!(head.target.len() <= limits.max_target_bytes);
        assert!(head.headers.len() <= MAX_HEADERS);
        let inside = |part: &[u8]| {
            let (lo, part_lo) = (data.as_ptr() as usize, part.as_ptr() as usize);
            part_lo >= lo && part_lo + part.len() <= lo + consumed
        };
        assert!(inside(head.method.as_bytes()) && inside(head.target.as_bytes()));
        for h in head.headers {
            assert!(
                inside(h.name.as_bytes()) && inside(h.value),
                "{h:?} outside the input"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 1024,
        max_target_bytes: 64,
    };

    const REQ: &[u8] = b"GET /pi.jpg?token=a%20b&x HTTP/1.1\r\n\
        Host: cam.local:8080\r\n\
        User-Agent: test\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Upgrade: websocket\r\n\
        X-Empty:\r\n\
        X-Trim: \t padded \t\r\n\
        connection: x-other\r\n\
        \r\n";

    /// An owned copy of a parse result, so that results from different
    /// buffers and header arrays can be compared.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        method: String,
        target: String,
        version: Version,
        headers: Vec<(String, Vec<u8>)>,
        consumed: usize,
    }

    type Outcome = Result<Option<Parsed>, HttpError>;

    fn to_outcome(result: Result<Status<(RequestHead<'_, '_>, usize)>, HttpError>) -> Outcome {
        result.map(|status| match status {
            Status::Partial => None,
            Status::Complete((head, consumed)) => Some(Parsed {
                method: head.method.to_string(),
                target: head.target.to_string(),
                version: head.version,
                headers: head
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect(),
                consumed,
            }),
        })
    }

    fn parse_with(buf: &[u8], limits: &Limits) -> Outcome {
        let mut headers = [Header::default(); MAX_HEADERS];
        to_outcome(parse_head(buf, &mut 0, limits, &mut headers))
    }

    fn parse_whole(buf: &[u8]) -> Outcome {
        parse_with(buf, &LIMITS)
    }

    /// Feeds `buf[..cut]`, then (if that was Partial) all of `buf`, carrying
    /// `scanned` over, as a connection does across two reads.
    fn feed_in_two(buf: &[u8], cut: usize) -> Outcome {
        let mut scanned = 0;
        let mut headers = [Header::default(); MAX_HEADERS];
        match to_outcome(parse_head(&buf[..cut], &mut scanned, &LIMITS, &mut headers)) {
            Ok(None) => {}
            done => return done,
        }
        to_outcome(parse_head(buf, &mut scanned, &LIMITS, &mut headers))
    }

    /// Feeds one more byte per call until the answer is not Partial.
    fn feed_bytewise(buf: &[u8], limits: &Limits) -> Outcome {
        let mut scanned = 0;
        for len in 0..=buf.len() {
            let mut headers = [Header::default(); MAX_HEADERS];
            match to_outcome(parse_head(&buf[..len], &mut scanned, limits, &mut headers)) {
                Ok(None) => {}
                done => return done,
            }
        }
        Ok(None)
    }

    /// Every way of feeding `buf` gives the same answer, and the fuzz
    /// invariants hold.
    fn assert_feeds_agree(buf: &[u8]) -> Outcome {
        let whole = parse_whole(buf);
        assert_eq!(
            feed_bytewise(buf, &LIMITS),
            whole,
            "bytewise: {:?}",
            String::from_utf8_lossy(buf)
        );
        for cut in 0..=buf.len() {
            assert_eq!(
                feed_in_two(buf, cut),
                whole,
                "cut at {cut}: {:?}",
                String::from_utf8_lossy(buf)
            );
        }
        fuzz_check(buf);
        whole
    }

    fn request(lines: &str) -> Vec<u8> {
        format!("{lines}\r\n\r\n").into_bytes()
    }

    #[test]
    fn parses_a_full_request() {
        let parsed = parse_whole(REQ).unwrap().unwrap();
        assert_eq!(parsed.method, "GET");
        assert_eq!(parsed.target, "/pi.jpg?token=a%20b&x");
        assert_eq!(parsed.version, Version::Http11);
        assert_eq!(parsed.consumed, REQ.len());
        let names: Vec<&str> = parsed.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Host",
                "User-Agent",
                "Connection",
                "Upgrade",
                "X-Empty",
                "X-Trim",
                "connection"
            ]
        );
        assert_eq!(parsed.headers[0].1, b"cam.local:8080");
        assert_eq!(parsed.headers[4].1, b"");
        assert_eq!(
            parsed.headers[5].1, b"padded",
            "OWS is trimmed at both ends"
        );
    }

    #[test]
    fn every_prefix_is_partial() {
        for len in 0..REQ.len() {
            assert_eq!(parse_whole(&REQ[..len]), Ok(None), "prefix of {len} bytes");
        }
    }

    #[test]
    fn every_split_point_and_bytewise_agree() {
        assert!(assert_feeds_agree(REQ).unwrap().is_some());
    }

    #[test]
    fn borrows_from_the_buffer() {
        let mut headers = [Header::default(); MAX_HEADERS];
        let Ok(Status::Complete((head, _))) = parse_head(REQ, &mut 0, &LIMITS, &mut headers) else {
            panic!("not complete");
        };
        let range = REQ.as_ptr_range();
        assert!(range.contains(&head.target.as_ptr()));
        assert!(range.contains(&head.headers[1].value.as_ptr()));
    }

    #[test]
    fn pipelined_requests() {
        let first = request("GET /a HTTP/1.1\r\nHost: x");
        let second = request("HEAD /b HTTP/1.1\r\nHost: y");
        let both = [first.as_slice(), second.as_slice()].concat();

        let one = parse_whole(&both).unwrap().unwrap();
        assert_eq!((one.target.as_str(), one.consumed), ("/a", first.len()));
        let two = parse_whole(&both[one.consumed..]).unwrap().unwrap();
        assert_eq!((two.method.as_str(), two.target.as_str()), ("HEAD", "/b"));
        assert_eq!(two.consumed, second.len());

        // Garbage after the first head belongs to the next request: it does
        // not spoil the first one, even past max_head_bytes.
        let junk = [first.as_slice(), b"\n\0\n", &[b'x'; 2000]].concat();
        assert_eq!(parse_whole(&junk).unwrap().unwrap().consumed, first.len());
        assert_eq!(
            assert_feeds_agree(&junk).unwrap().unwrap().consumed,
            first.len()
        );
    }

    #[test]
    fn empty_lines_before_the_request_line() {
        for n in 1..=MAX_EMPTY_LINES_BEFORE_REQUEST {
            let buf = [b"\r\n".repeat(n), request("GET / HTTP/1.1\r\nHost: x")].concat();
            let parsed = assert_feeds_agree(&buf).unwrap().unwrap();
            assert_eq!((parsed.target.as_str(), parsed.consumed), ("/", buf.len()));
        }
        let too_many = [
            b"\r\n".repeat(MAX_EMPTY_LINES_BEFORE_REQUEST + 1),
            request("GET / HTTP/1.1"),
        ]
        .concat();
        assert_eq!(
            assert_feeds_agree(&too_many),
            Err(HttpError::BadRequestLine)
        );
    }

    const ALL_ERRORS: [HttpError; 19] = [
        HttpError::BadRequestLine,
        HttpError::BadMethod,
        HttpError::BadTarget,
        HttpError::BadVersion,
        HttpError::VersionNotSupported,
        HttpError::BareLf,
        HttpError::BadHeaderName,
        HttpError::SpaceBeforeColon,
        HttpError::BadHeaderValue,
        HttpError::ObsFold,
        HttpError::TooManyHeaders,
        HttpError::HeadTooLarge,
        HttpError::TargetTooLong,
        HttpError::MissingHost,
        HttpError::DuplicateHost,
        HttpError::BadHost,
        HttpError::BadContentLength,
        HttpError::ContentLengthWithTransferEncoding,
        HttpError::BodyNotAllowed,
    ];

    /// Each broken rule, as a whole request, with the error it must give.
    fn bad_requests() -> Vec<(Vec<u8>, HttpError)> {
        use HttpError::*;
        let h = |field: &str| request(&format!("GET / HTTP/1.1\r\nHost: x\r\n{field}"));
        let line = |request_line: &str| request(&format!("{request_line}\r\nHost: x"));
        let many_fields = (0..MAX_HEADERS)
            .map(|i| format!("X-{i}: y"))
            .collect::<Vec<_>>()
            .join("\r\n");
        vec![
            (line("GET /"), BadRequestLine),
            (line("GET"), BadRequestLine),
            (line("GET  / HTTP/1.1"), BadRequestLine),
            (line(" GET / HTTP/1.1"), BadRequestLine),
            (line("GET / HTTP/1.1 "), BadRequestLine),
            (line("GET /a b HTTP/1.1"), BadRequestLine),
            (line("G(T / HTTP/1.1"), BadMethod),
            (line("GÉT / HTTP/1.1"), BadMethod),
            (
                line(&format!("{} / HTTP/1.1", "A".repeat(MAX_METHOD_BYTES + 1))),
                BadMethod,
            ),
            (line("GET http://x/ HTTP/1.1"), BadTarget),
            (line("OPTIONS * HTTP/1.1"), BadTarget),
            (line("GET /a\x7f HTTP/1.1"), BadTarget),
            (line("GET /é HTTP/1.1"), BadTarget),
            (line("GET /a\tb HTTP/1.1"), BadTarget),
            (line("GET / http/1.1"), BadVersion),
            (line("GET / HTTP/11"), BadVersion),
            (line("GET / HTTP/1.1x"), BadVersion),
            (line("GET / HTTP/1.a"), BadVersion),
            (line("GET / HTTP/2.0"), VersionNotSupported),
            (line("GET / HTTP/0.9"), VersionNotSupported),
            (line("GET / HTTP/1.2"), VersionNotSupported),
            (b"GET / HTTP/1.1\nHost: x\r\n\r\n".to_vec(), BareLf),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n".to_vec(), BareLf),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\n".to_vec(), BareLf),
            (b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), BareLf),
            (b"\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), BareLf),
            (h("X-No-Colon"), BadHeaderName),
            (h(": empty name"), BadHeaderName),
            (h("X(y): z"), BadHeaderName),
            (h("Hóst: z"), BadHeaderName),
            (h("X-A : z"), SpaceBeforeColon),
            (h("X-A\t: z"), SpaceBeforeColon),
            (h("X-A: a\0b"), BadHeaderValue),
            (h("X-A: a\rb"), BadHeaderValue),
            (h("X-A: a\r"), BadHeaderValue),
            (h("X-A: \x7f"), BadHeaderValue),
            (h("X-A: a\x01"), BadHeaderValue),
            (h("X-A: a\r\n b"), ObsFold),
            (h("X-A: a\r\n\tb"), ObsFold),
            (request("GET / HTTP/1.1\r\n Host: x"), ObsFold),
            (h(&many_fields), TooManyHeaders),
            (
                h(&format!("X-Big: {}", "y".repeat(LIMITS.max_head_bytes))),
                HeadTooLarge,
            ),
            (
                line(&format!(
                    "GET /{} HTTP/1.1",
                    "a".repeat(LIMITS.max_target_bytes)
                )),
                TargetTooLong,
            ),
            (
                line(&format!("GET /{}", "a".repeat(2 * LIMITS.max_target_bytes))),
                TargetTooLong,
            ),
            (request("GET / HTTP/1.1\r\nX-A: b"), MissingHost),
            (request("GET / HTTP/1.1"), MissingHost),
            (h("Host: y"), DuplicateHost),
            (h("host: x"), DuplicateHost),
            (
                request("GET / HTTP/1.0\r\nHost: x\r\nHost: y"),
                DuplicateHost,
            ),
            (request("GET / HTTP/1.1\r\nHost: a b"), BadHost),
            (request("GET / HTTP/1.1\r\nHost: a/b"), BadHost),
            (request("GET / HTTP/1.1\r\nHost: a@b"), BadHost),
            (h("Content-Length: abc"), BadContentLength),
            (h("Content-Length:"), BadContentLength),
            (h("Content-Length: -1"), BadContentLength),
            (h("Content-Length: +0"), BadContentLength),
            (h("Content-Length: 0 0"), BadContentLength),
            (h("Content-Length: 0,"), BadContentLength),
            (h("Content-Length: 0, 1"), BadContentLength),
            (
                h("Content-Length: 0\r\nContent-Length: 1"),
                BadContentLength,
            ),
            (
                h("Content-Length: 99999999999999999999999"),
                BadContentLength,
            ),
            (
                h("Content-Length: 0\r\nTransfer-Encoding: chunked"),
                ContentLengthWithTransferEncoding,
            ),
            (
                h("Transfer-Encoding: chunked\r\nContent-Length: 5"),
                ContentLengthWithTransferEncoding,
            ),
            (h("Content-Length: 1"), BodyNotAllowed),
            (h("Content-Length: 5, 5"), BodyNotAllowed),
            (h("Transfer-Encoding: chunked"), BodyNotAllowed),
            (h("transfer-encoding: identity"), BodyNotAllowed),
            (
                request("POST / HTTP/1.0\r\nTransfer-Encoding: chunked"),
                BodyNotAllowed,
            ),
        ]
    }

    #[test]
    fn every_broken_rule_has_its_error() {
        for (buf, expected) in bad_requests() {
            assert_eq!(
                assert_feeds_agree(&buf),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
        }
        for variant in ALL_ERRORS {
            assert!(
                bad_requests().iter().any(|(_, e)| *e == variant),
                "no test produces {variant:?}"
            );
        }
    }

    #[test]
    fn status_and_reason_of_every_error() {
        use HttpError::*;
        let expected_status = |e: HttpError| match e {
            TooManyHeaders | HeadTooLarge => 431,
            TargetTooLong => 414,
            BodyNotAllowed => 413,
            VersionNotSupported => 505,
            _ => 400,
        };
        let mut reasons = Vec::new();
        for e in ALL_ERRORS {
            assert_eq!(e.status(), expected_status(e), "{e:?}");
            let reason = e.to_string();
            assert!(
                !reason.is_empty() && !reasons.contains(&reason),
                "{e:?}: {reason}"
            );
            reasons.push(reason);
        }
        assert_eq!(ContentLengthWithTransferEncoding.status(), 400);
        assert_eq!(HeadTooLarge.to_string(), "request head too large");
    }

    #[test]
    fn accepted_edge_cases() {
        let ok = |buf: Vec<u8>| assert_feeds_agree(&buf).unwrap().unwrap();
        let h = |field: &str| request(&format!("GET / HTTP/1.1\r\nHost: x\r\n{field}"));
        ok(h("Content-Length: 0"));
        ok(h("Content-Length: 0, 0"));
        ok(h("Content-Length: 0\r\nContent-Length: 00"));
        ok(request("GET / HTTP/1.1\r\nHost:"));
        ok(request("GET / HTTP/1.1\r\nHost: [::1]:8080"));
        ok(request("GET / HTTP/1.0"));
        ok(request("DELETE /x HTTP/1.1\r\nHost: x")); // 405 is the router's job
        assert_eq!(
            ok(h("X-A: caf\u{e9}\tau lait")).headers[1].1,
            "caf\u{e9}\tau lait".as_bytes()
        );
        let fields = (1..MAX_HEADERS)
            .map(|i| format!("X-{i}: y"))
            .collect::<Vec<_>>()
            .join("\r\n");
        assert_eq!(ok(h(&fields)).headers.len(), MAX_HEADERS);
        let target = format!("/{}", "a".repeat(LIMITS.max_target_bytes - 1));
        assert_eq!(
            ok(request(&format!("GET {target} HTTP/1.1\r\nHost: x"))).target,
            target
        );
    }

    #[test]
    fn head_too_large_fires_before_the_head_ends() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: x\r\nX-Flood: ".to_vec();
        buf.resize(LIMITS.max_head_bytes, b'y');
        assert_eq!(parse_whole(&buf), Ok(None), "at the limit we still wait");
        buf.push(b'y');
        assert_eq!(parse_whole(&buf), Err(HttpError::HeadTooLarge));
        assert_eq!(feed_bytewise(&buf, &LIMITS), Err(HttpError::HeadTooLarge));

        // A head that ends exactly at the limit is fine.
        let head = request("GET / HTTP/1.1\r\nHost: x");
        let exact = Limits {
            max_head_bytes: head.len(),
            ..LIMITS
        };
        assert!(parse_with(&head, &exact).unwrap().is_some());
        let short = Limits {
            max_head_bytes: head.len() - 1,
            ..LIMITS
        };
        assert_eq!(parse_with(&head, &short), Err(HttpError::HeadTooLarge));
        assert_eq!(feed_bytewise(&head, &short), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn target_too_long_fires_before_the_line_ends() {
        // Longest allowed request line: longest method, longest target.
        let method = "M".repeat(MAX_METHOD_BYTES);
        let target = format!("/{}", "a".repeat(LIMITS.max_target_bytes - 1));
        let longest = request(&format!("{method} {target} HTTP/1.1\r\nHost: x"));
        assert_eq!(
            assert_feeds_agree(&longest).unwrap().unwrap().target,
            target
        );

        // A request line that never ends fails once it passes that length,
        // long before max_head_bytes.
        let endless = format!("GET /{}", "a".repeat(10 * LIMITS.max_target_bytes)).into_bytes();
        let longest_with_crlf =
            MAX_METHOD_BYTES + 1 + LIMITS.max_target_bytes + " HTTP/1.1\r\n".len();
        assert_eq!(
            longest_with_crlf,
            longest.iter().position(|&b| b == b'\n').unwrap() + 1
        );
        assert_eq!(parse_whole(&endless[..longest_with_crlf - 1]), Ok(None));
        assert_eq!(
            parse_whole(&endless[..longest_with_crlf]),
            Err(HttpError::TargetTooLong)
        );
        assert_eq!(
            feed_bytewise(&endless, &LIMITS),
            Err(HttpError::TargetTooLong)
        );
        assert!(longest_with_crlf < LIMITS.max_head_bytes);
    }

    #[test]
    fn a_drip_feed_never_rescans() {
        // After each Partial, `scanned` is the buffer's end: the next call
        // starts there, so n one-byte calls cost O(n) in total.
        let mut scanned = 0;
        for len in 1..REQ.len() {
            let mut headers = [Header::default(); MAX_HEADERS];
            let result = parse_head(&REQ[..len], &mut scanned, &LIMITS, &mut headers);
            assert_eq!(result, Ok(Status::Partial));
            assert_eq!(scanned, len);
        }
        // Proof that bytes before `scanned` are not read again: a bare LF
        // there would be an error, but it is skipped as already checked.
        let buf = b"GET /a\nb HTTP/1.1\r\nHost: x\r\n";
        let mut headers = [Header::default(); MAX_HEADERS];
        assert_eq!(
            parse_head(buf, &mut 10, &LIMITS, &mut headers),
            Ok(Status::Partial)
        );
        assert_eq!(
            parse_head(buf, &mut 0, &LIMITS, &mut headers),
            Err(HttpError::BareLf)
        );
    }

    #[test]
    fn nonsense_scanned_values_do_not_panic() {
        for scanned in [usize::MAX, REQ.len() + 1, 3] {
            let mut headers = [Header::default(); MAX_HEADERS];
            let mut s = scanned;
            assert!(parse_head(REQ, &mut s, &LIMITS, &mut headers).is_ok());
        }
        let huge = Limits {
            max_head_bytes: usize::MAX,
            max_target_bytes: usize::MAX,
        };
        assert!(parse_with(REQ, &huge).unwrap().is_some());
        let zero = Limits {
            max_head_bytes: 0,
            max_target_bytes: 0,
        };
        assert_eq!(parse_with(REQ, &zero), Err(HttpError::HeadTooLarge));
    }

    fn with_head<R>(buf: &[u8], check: impl FnOnce(&RequestHead<'_, '_>) -> R) -> R {
        let mut headers = [Header::default(); MAX_HEADERS];
        match parse_head(buf, &mut 0, &LIMITS, &mut headers) {
            Ok(Status::Complete((head, _))) => check(&head),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn header_lookup_and_token_lists() {
        with_head(REQ, |head| {
            assert_eq!(head.header("host"), Some(b"cam.local:8080".as_slice()));
            assert_eq!(
                head.header("CONNECTION"),
                Some(b"keep-alive, Upgrade".as_slice())
            );
            assert_eq!(head.header("X-Empty"), Some(b"".as_slice()));
            assert_eq!(head.header("Missing"), None);
            assert!(head.has_token("Connection", "upgrade"));
            assert!(head.has_token("connection", "Keep-Alive"));
            assert!(
                head.has_token("connection", "x-other"),
                "second Connection line counts"
            );
            assert!(head.has_token("upgrade", "WebSocket"));
            assert!(!head.has_token("connection", "close"));
            assert!(!head.has_token("connection", "keep"), "whole tokens only");
            assert!(!head.has_token("missing", "x"));
        });
        let spaced = request("GET / HTTP/1.1\r\nHost: x\r\nConnection: ,\t Upgrade\t,, close ");
        with_head(&spaced, |head| {
            assert!(
                head.has_token("connection", "upgrade") && head.has_token("connection", "close")
            );
            assert!(!head.keep_alive());
        });
    }

    #[test]
    fn path_and_query() {
        with_head(REQ, |head| {
            assert_eq!(head.path(), "/pi.jpg");
            assert_eq!(head.query(), Some("token=a%20b&x"));
        });
        with_head(&request("GET /stream HTTP/1.0"), |head| {
            assert_eq!((head.path(), head.query()), ("/stream", None));
        });
        with_head(&request("GET /?a=1?b HTTP/1.0"), |head| {
            assert_eq!((head.path(), head.query()), ("/", Some("a=1?b")));
        });
        with_head(&request("GET /x? HTTP/1.0"), |head| {
            assert_eq!(head.query(), Some(""))
        });
    }

    #[test]
    fn keep_alive_rules() {
        let cases = [
            ("HTTP/1.1\r\nHost: x", true),
            ("HTTP/1.1\r\nHost: x\r\nConnection: close", false),
            ("HTTP/1.1\r\nHost: x\r\nConnection: Close", false),
            ("HTTP/1.1\r\nHost: x\r\nConnection: keep-alive", true),
            ("HTTP/1.0", false),
            ("HTTP/1.0\r\nConnection: keep-alive", true),
            ("HTTP/1.0\r\nConnection: Keep-Alive", true),
            ("HTTP/1.0\r\nConnection: keep-alive, close", false),
            ("HTTP/1.0\r\nKeep-Alive: timeout=5", false),
        ];
        for (rest, expected) in cases {
            let buf = request(&format!("GET / {rest}"));
            assert_eq!(
                with_head(&buf, |head| head.keep_alive()),
                expected,
                "{rest}"
            );
        }
    }

    #[test]
    fn query_params() {
        let q = "encoding=base64&token=s3cr%2Bt&flag&empty=&encoding=other";
        assert_eq!(query_param(q, "encoding"), Some("base64"), "first one wins");
        assert_eq!(
            query_param(q, "token"),
            Some("s3cr%2Bt"),
            "raw, not decoded"
        );
        assert_eq!(query_param(q, "flag"), Some(""));
        assert_eq!(query_param(q, "empty"), Some(""));
        assert_eq!(query_param(q, "tok"), None);
        assert_eq!(query_param(q, "Token"), None, "keys are case-sensitive");
        assert_eq!(query_param("", "a"), None);
        assert_eq!(query_param("action=snapshot", "action"), Some("snapshot"));
        assert_eq!(query_param("a=b=c", "a"), Some("b=c"));
    }

    #[test]
    fn percent_decoding() {
        let decode = |s: &str| {
            let mut out = b"keep".to_vec();
            percent_decode(s, &mut out).map(|()| out)
        };
        assert_eq!(decode("/a%20b/%2e%2E/c+d").unwrap(), b"keep/a b/../c+d");
        assert_eq!(decode("%00%ff%FF").unwrap(), b"keep\0\xff\xff");
        assert_eq!(decode("").unwrap(), b"keep");
        for bad in ["%", "%2", "/x%g0", "%0g", "%%41", "/a%2"] {
            let mut out = b"keep".to_vec();
            assert_eq!(
                percent_decode(bad, &mut out),
                Err(HttpError::BadTarget),
                "{bad}"
            );
            assert_eq!(out, b"keep", "{bad}: output restored");
        }
    }

    #[test]
    fn basic_credentials() {
        // RFC 7617 §2's example.
        let aladdin = Some(b"Aladdin:open sesame".to_vec());
        assert_eq!(
            basic_auth_credentials(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            aladdin
        );
        assert_eq!(
            basic_auth_credentials(b"basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            aladdin
        );
        assert_eq!(basic_auth_credentials(b"BASIC Ojo="), Some(b"::".to_vec()));
        for bad in [
            b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==".as_slice(),
            b"Basic",
            b"Basic ",
            b"BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ", // padding missing
            b"Basic !!!!",
            b"Basic dXNlcg==",                      // "user": no colon
            b"Basic QWxhZGRpbjpvcGVu IHNlc2FtZQ==", // space inside
            b"",
        ] {
            assert_eq!(
                basic_auth_credentials(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn reason_phrases() {
        let used = [
            101, 200, 204, 301, 304, 400, 401, 403, 404, 405, 413, 414, 426, 431, 500, 502, 503,
            504, 505,
        ];
        for status in used {
            assert!(!reason_phrase(status).is_empty(), "{status}");
        }
        for e in ALL_ERRORS {
            assert!(!reason_phrase(e.status()).is_empty(), "{e:?}");
        }
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(299), "");
    }

    #[test]
    fn response_heads() {
        let mut out = Vec::new();
        encode_response_head(
            &mut out,
            301,
            &[("Location", "/stream"), ("Content-Length", "0")],
        );
        assert_eq!(
            out,
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: /stream\r\nContent-Length: 0\r\n\r\n"
        );

        out.clear();
        encode_response_head(&mut out, 204, &[]);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");

        out.clear();
        encode_response_head(&mut out, 302, &[("Location", "/a\r\nSet-Cookie: x=y")]);
        assert_eq!(
            out, b"HTTP/1.1 302 \r\nLocation: /a  Set-Cookie: x=y\r\n\r\n",
            "no response splitting"
        );
    }

    #[test]
    fn simple_responses() {
        let mut out = Vec::new();
        encode_simple_response(&mut out, 404, &[], "not found\n", false, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 10\r\n\
             Cache-Control: no-store\r\n\
             Connection: keep-alive\r\n\
             \r\n\
             not found\n"
        );

        let mut out = Vec::new();
        encode_simple_response(
            &mut out,
            405,
            &[("Allow", "GET, HEAD")],
            "method not allowed",
            true,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 18\r\n\
             Cache-Control: no-store\r\n\
             Connection: close\r\n\
             Allow: GET, HEAD\r\n\
             \r\n"
        );
    }

    #[test]
    fn mjpeg_stream_bytes() {
        let mut out = Vec::new();
        encode_mjpeg_response_head(&mut out);
        encode_mjpeg_part_head(&mut out, 4);
        out.extend_from_slice(b"\xff\xd8\xff\xd9");
        out.extend_from_slice(MJPEG_PART_TAIL);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: multipart/x-mixed-replace;boundary=picamdframe\r\n\
              Cache-Control: no-store\r\n\
              Connection: close\r\n\
              Pragma: no-cache\r\n\
              \r\n\
              --picamdframe\r\n\
              Content-Type: image/jpeg\r\n\
              Content-Length: 4\r\n\
              \r\n\
              \xff\xd8\xff\xd9\r\n\
              --picamdframe\r\n"
        );
        assert_eq!(
            MJPEG_PART_TAIL,
            format!("\r\n--{MJPEG_BOUNDARY}\r\n").as_bytes()
        );
    }

    #[test]
    fn fuzz_check_on_seeds_and_mutations() {
        for seed in [
            b"".as_slice(),
            b"\r",
            b"\r\n\r\n",
            b"\n",
            REQ,
            b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            fuzz_check(seed);
        }
        // Deterministic mutations of a valid request (xorshift), checking
        // the same invariants the fuzzer does.
        let mut state: u32 = 0x9e37_79b9;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize
        };
        let alphabet = b"\r\n :/?%aZ0\t\x00\x80GETHTP1.";
        for _ in 0..3000 {
            let mut buf = REQ.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = next() % (buf.len() + 1);
                let byte = alphabet[next() % alphabet.len()];
                match next() % 3 {
                    0 => buf.insert(at, byte),
                    1 if at < buf.len() => buf[at] = byte,
                    _ if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => {}
                }
            }
            buf.insert(0, next() as u8);
            fuzz_check(&buf[1..]);
            fuzz_check(&buf);
        }
    }
}
