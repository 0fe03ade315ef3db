//! RFC 6455 WebSocket, server side: the opening handshake (§4.2), the frame
//! format (§5.2), masking (§5.3), fragmentation (§5.4), control frames
//! (§5.5), close codes (§7.4) and the UTF-8 rule for text messages (§8.1).
//!
//! A frame on the wire (§5.2), in the order its bytes arrive:
//!
//! ```text
//! byte 0        FIN (1 bit) | RSV1 RSV2 RSV3 (3 bits) | opcode (4 bits)
//! byte 1        MASK (1 bit) | payload length (7 bits):
//!                 0..=125  that is the length
//!                 126      the length follows as 2 bytes, big-endian
//!                 127      the length follows as 8 bytes, big-endian
//! 0, 2 or 8     extended payload length
//! 0 or 4        masking key, present when MASK is set
//! rest          payload; when masked, byte i is XORed with key[i % 4]
//! ```
//!
//! [`Decoder`] turns the bytes a client sends into [`Event`]s: whole
//! messages (text or binary, reassembled from fragments) and control frames
//! (ping, pong, close). It is incremental and strict: payload bytes are
//! unmasked and, for text, UTF-8-checked as they arrive, so a broken rule
//! fails the connection at the first byte that breaks it, even in the middle
//! of a frame whose payload has only partly arrived. Every error is a
//! [`WsError`] that names the rule and maps to the close code to send.
//!
//! Guarantees: no panic on any input; memory bounded by the caller's
//! `max_message_bytes` (checked at the frame header, before any payload is
//! buffered) plus 125 bytes for a control frame and 14 for a header; every
//! input byte is looked at once (plus one final `str::from_utf8` over a
//! completed text message, the price of `#![forbid(unsafe_code)]`).
//!
//! This file does no I/O and knows nothing about sockets, timers, routes,
//! authentication or `Origin` policy: `conn` decides what to do with the
//! values it returns. We negotiate no extension and no subprotocol, so the
//! RSV bits must always be 0.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Status;
use super::http::{Header, RequestHead, Version};

// ---------------------------------------------------------------------------
// Opening handshake (§4.2)
// ---------------------------------------------------------------------------

/// The fixed GUID that §1.3 appends to the client's key: it proves the
/// server read the handshake as WebSocket, not as some other protocol.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version we speak (§4.1: "The value of this header field
/// MUST be 13").
pub const VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of
/// the key (as sent, still base64) followed by [`GUID`] (§1.3, §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(GUID.as_bytes());
    BASE64.encode(sha1.digest().bytes())
}

/// Whether a request asks to become a WebSocket (its `Upgrade` list holds
/// `websocket`). Such a request goes to [`validate_handshake`] instead of
/// the page at the same path, so a half-right handshake gets a precise
/// error rather than HTML.
pub fn is_upgrade(head: &RequestHead<'_, '_>) -> bool {
    head.has_token("upgrade", "websocket")
}

/// Why an opening handshake was refused (§4.2.1: the server "MUST stop
/// processing the client's handshake and return an HTTP response with an
/// appropriate error code"). Answer [`status`](Self::status) plus
/// [`extra_header`](Self::extra_header), with the Display text as the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// §4.2.1 item 1: the method must be GET.
    NotGet,
    /// §4.2.1 item 1: the request must be HTTP/1.1 or higher.
    NotHttp11,
    /// §4.2.1 item 3: `Upgrade` must hold `websocket`.
    NoUpgradeWebsocket,
    /// §4.2.1 item 4: `Connection` must hold the token `Upgrade`.
    NoConnectionUpgrade,
    /// §4.2.1 item 5: no `Sec-WebSocket-Key`.
    MissingKey,
    /// §4.2.1 item 5: the key is not base64 of exactly 16 bytes.
    BadKey,
    /// §4.2.1 item 6: no `Sec-WebSocket-Version`.
    MissingVersion,
    /// §4.2.1 item 6: a version other than 13.
    UnsupportedVersion,
    /// §11.3.1, §11.3.5 (and RFC 6454 §7.3 for `Origin`): this field "MUST
    /// NOT appear more than once in an HTTP request".
    DuplicateHeader(&'static str),
}

impl HandshakeError {
    /// The HTTP status to answer with.
    pub fn status(self) -> u16 {
        match self {
            // §4.2.2: a version we don't understand gets "an appropriate HTTP
            // error code (such as 426 Upgrade Required)". A request with no
            // version at all is most likely a client from before RFC 6455
            // (hixie-76 sent none); 426 with our version tells it what we
            // speak, which a plain 400 would not.
            Self::MissingVersion | Self::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// A header to add to the error response: with 426, §4.2.2 requires "a
    /// |Sec-WebSocket-Version| header field indicating the version(s) the
    /// server is capable of understanding". (§4.4's example sends it with a
    /// 400; we follow §4.2.2's "such as 426 Upgrade Required".)
    pub fn extra_header(self) -> Option<(&'static str, &'static str)> {
        match self.status() {
            426 => Some(("Sec-WebSocket-Version", VERSION)),
            _ => None,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NotGet => "WebSocket handshake must be a GET request",
            Self::NotHttp11 => "WebSocket handshake needs HTTP/1.1",
            Self::NoUpgradeWebsocket => "Upgrade header must hold websocket",
            Self::NoConnectionUpgrade => "Connection header must hold Upgrade",
            Self::MissingKey => "missing Sec-WebSocket-Key",
            Self::BadKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            Self::MissingVersion => "missing Sec-WebSocket-Version (this server speaks 13)",
            Self::UnsupportedVersion => "unsupported Sec-WebSocket-Version (this server speaks 13)",
            Self::DuplicateHeader(name) => return write!(f, "{name} header sent more than once"),
        };
        f.write_str(text)
    }
}

/// What a valid handshake tells the server; borrows from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake<'b> {
    /// `Sec-WebSocket-Key` as sent: the input of [`accept_key`].
    pub key: &'b [u8],
    /// `Origin`, sent by every browser (§4.2.1 item 7, §10.2); the caller
    /// decides whether to trust it.
    pub origin: Option<&'b [u8]>,
}

/// Checks a request head against the client handshake rules of §4.2.1.
///
/// Host (§4.2.1 item 2) is not checked here: `parse_head` already refuses an
/// HTTP/1.1 request without exactly one valid Host (RFC 9112 §3.2), and
/// HTTP/1.0 is refused below. Field values arrive without surrounding
/// whitespace (`parse_head` strips it, RFC 9112 §5), which is also what §1.3
/// asks of the key ("minus any leading and trailing whitespace").
pub fn validate_handshake<'b>(head: &RequestHead<'_, 'b>) -> Result<Handshake<'b>, HandshakeError> {
    if head.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if head.version != Version::Http11 {
        return Err(HandshakeError::NotHttp11);
    }
    // Both are token lists compared "as an ASCII case-insensitive value":
    // Firefox sends `Connection: keep-alive, Upgrade`.
    if !head.has_token("upgrade", "websocket") {
        return Err(HandshakeError::NoUpgradeWebsocket);
    }
    if !head.has_token("connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    // The version goes before the key: a client of another version may
    // format its key differently (hixie-76 had Key1/Key2), and what it needs
    // to hear is the 426 that names the version we speak.
    match single_field(head.headers, "Sec-WebSocket-Version")? {
        None => return Err(HandshakeError::MissingVersion),
        Some(version) if version != VERSION.as_bytes() => {
            return Err(HandshakeError::UnsupportedVersion);
        }
        Some(_) => {}
    }
    let key = single_field(head.headers, "Sec-WebSocket-Key")?.ok_or(HandshakeError::MissingKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    let origin = single_field(head.headers, "Origin")?;
    Ok(Handshake { key, origin })
}

/// The value of a field that may appear at most once.
fn single_field<'b>(
    headers: &[Header<'b>],
    name: &'static str,
) -> Result<Option<&'b [u8]>, HandshakeError> {
    let mut values = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(header), None) => Ok(Some(header.value)),
        (Some(_), Some(_)) => Err(HandshakeError::DuplicateHeader(name)),
    }
}

/// §4.1: the key is "a randomly selected 16-byte value that has been
/// base64-encoded". Canonical base64 of 16 bytes is always 24 characters
/// ending in `==`; the decoder also refuses non-zero trailing bits, so each
/// 16-byte value has exactly one accepted spelling.
fn is_valid_key(key: &[u8]) -> bool {
    // `decode_slice` wants room for its estimate (18 bytes for 24 chars).
    let mut nonce = [0u8; 18];
    key.len() == 24 && BASE64.decode_slice(key, &mut nonce) == Ok(16)
}

/// Appends the server's handshake answer (§4.2.2 item 5, §1.3). We select
/// no subprotocol and no extension, so neither header is sent, and the
/// client must not use RSV bits.
pub fn encode_handshake_response(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    out.extend_from_slice(b"Upgrade: websocket\r\n");
    out.extend_from_slice(b"Connection: Upgrade\r\n");
    out.extend_from_slice(b"Sec-WebSocket-Accept: ");
    out.extend_from_slice(accept_key(key).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

// ---------------------------------------------------------------------------
// Frames (§5.2)
// ---------------------------------------------------------------------------

/// The frame types of §5.2 and §11.8. The other 10 values of the 4-bit
/// field are reserved, and a frame using one fails the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// `0x0`: the next fragment of a message (§5.4).
    Continuation = 0x0,
    /// `0x1`: the first frame of a UTF-8 text message.
    Text = 0x1,
    /// `0x2`: the first frame of a binary message.
    Binary = 0x2,
    /// `0x8`: the closing handshake (§5.5.1).
    Close = 0x8,
    /// `0x9`: keep-alive or liveness probe; answered with a Pong (§5.5.2).
    Ping = 0x9,
    /// `0xA`: the answer to a Ping, or an unsolicited heartbeat (§5.5.3).
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for a 4-bit value, or `None` for a reserved one.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit value on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// §5.5: control frames are those whose opcode has the high bit set.
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// Everything before the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// This is the final fragment of its message.
    pub fin: bool,
    /// RSV1..RSV3 as the low 3 bits (RSV1 = 0b100).
    pub rsv: u8,
    pub opcode: Opcode,
    /// The masking key; every client-to-server frame has one (§5.3).
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// 2 fixed bytes + 8 of extended length + 4 of masking key.
pub const MAX_FRAME_HEADER_BYTES: usize = 14;

/// §5.5: "All control frames MUST have a payload length of 125 bytes or
/// less", so a length always fits the 7-bit field and a receiver can hold
/// a whole control frame in a small fixed buffer.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Parses the frame header at the start of `buf`, returning it and its
/// length in bytes, or `Partial` if `buf` is a valid prefix of one.
///
/// This checks the rules of the frame format itself, for any endpoint:
/// known opcode, control frames unfragmented and at most 125 bytes, 64-bit
/// lengths with the top bit clear, lengths in minimal form. The rules of a
/// connection (RSV bits without extensions, masking by role, fragmentation
/// order, size limits) are the [`Decoder`]'s. A client reading server frames
/// (tests, benchmarks) can use this directly. Each check runs as soon as the
/// field it reads is complete, before later fields are waited for.
pub fn parse_frame_header(buf: &[u8]) -> Result<Status<(FrameHeader, usize)>, WsError> {
    let Some((&[byte0, byte1], rest)) = buf.split_first_chunk::<2>() else {
        return Ok(Status::Partial);
    };
    let fin = byte0 & 0x80 != 0;
    let rsv = (byte0 >> 4) & 0x7;
    let opcode = Opcode::from_u8(byte0 & 0xF).ok_or(WsError::BadOpcode(byte0 & 0xF))?;
    let masked = byte1 & 0x80 != 0;
    let length_code = byte1 & 0x7F;

    if opcode.is_control() {
        // §5.5: control frames "MUST NOT be fragmented" and "MUST have a
        // payload length of 125 bytes or less".
        if !fin {
            return Err(WsError::FragmentedControl);
        }
        if usize::from(length_code) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::ControlTooLong);
        }
    }

    // §5.2: "the minimal number of bytes MUST be used to encode the length".
    // Enforcing it leaves one encoding per frame, so nothing can hide behind
    // an odd one; every client we know of complies.
    let (payload_len, rest) = match length_code {
        126 => {
            let Some((extended, rest)) = rest.split_first_chunk::<2>() else {
                return Ok(Status::Partial);
            };
            let len = u16::from_be_bytes(*extended);
            if len < 126 {
                return Err(WsError::NonMinimalLength);
            }
            (u64::from(len), rest)
        }
        127 => {
            let Some((extended, rest)) = rest.split_first_chunk::<8>() else {
                return Ok(Status::Partial);
            };
            let len = u64::from_be_bytes(*extended);
            // §5.2: "the most significant bit MUST be 0".
            if len >> 63 != 0 {
                return Err(WsError::LengthMsbSet);
            }
            if len <= u64::from(u16::MAX) {
                return Err(WsError::NonMinimalLength);
            }
            (len, rest)
        }
        len => (u64::from(len), rest),
    };

    let mask = match (masked, rest.first_chunk::<4>()) {
        (false, _) => None,
        (true, Some(key)) => Some(*key),
        (true, None) => return Ok(Status::Partial),
    };
    let header_len = buf.len() - rest.len() + if masked { 4 } else { 0 };
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len,
    };
    Ok(Status::Complete((header, header_len)))
}

/// Writes a frame header into `out` and returns its length, using the
/// shortest length form (§5.2 requires it). RSV bits are 0: we negotiate no
/// extension. `payload_len` must be below 2^63, which any payload that fits
/// in memory is.
pub fn encode_frame_header(
    fin: bool,
    opcode: Opcode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
    out: &mut [u8; MAX_FRAME_HEADER_BYTES],
) -> usize {
    debug_assert!(payload_len >> 63 == 0, "§5.2: a payload length has 63 bits");
    let fin_bit = if fin { 0x80 } else { 0 };
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len16;
    let len64;
    let (length_code, extended): (u8, &[u8]) = match u16::try_from(payload_len) {
        Ok(len @ 0..=125) => (len as u8, &[]),
        Ok(len) => {
            len16 = len.to_be_bytes();
            (126, &len16)
        }
        Err(_) => {
            len64 = payload_len.to_be_bytes();
            (127, &len64)
        }
    };
    let key: &[u8] = match &mask {
        Some(key) => key,
        None => &[],
    };
    let fixed = [fin_bit | opcode.as_u8(), mask_bit | length_code];
    let header = fixed.iter().chain(extended).chain(key);
    let mut len = 0;
    for (slot, byte) in out.iter_mut().zip(header) {
        *slot = *byte;
        len += 1;
    }
    len
}

/// XORs `data` with the masking key (§5.3). `offset` is the position of
/// `data[0]` within the payload, so a payload can be unmasked piece by piece
/// as it arrives: byte `i` of the payload uses `mask[i % 4]`. Masking is its
/// own inverse, so this also masks.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    // Rotate the key so that key[0] applies to data[0]; then every aligned
    // 4-byte chunk uses the key as is, which the compiler vectorizes.
    let mut key = mask;
    key.rotate_left(offset % 4);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (byte, k) in chunk.iter_mut().zip(key) {
            *byte ^= k;
        }
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

/// Appends one whole, unfragmented server frame: FIN set, unmasked (§5.1:
/// "A server MUST NOT mask any frames that it sends to the client").
/// A control frame's payload must be at most 125 bytes; the caller's
/// payloads (Pong echoing a Ping, our own Ping) are.
pub fn encode_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    let mut header = [0; MAX_FRAME_HEADER_BYTES];
    let header_len = encode_frame_header(true, opcode, payload.len() as u64, None, &mut header);
    out.reserve(header_len + payload.len());
    out.extend_from_slice(header.get(..header_len).unwrap_or_default());
    out.extend_from_slice(payload);
}

/// Appends a server Close frame with `code` and `reason` (§5.5.1). The reason
/// is cut, at a character boundary, to the 123 bytes that fit a control
/// frame after the code. `code` must be one an endpoint may send: not 1005,
/// 1006 or 1015 (§7.4.1); `close::*` and any received code that passed
/// [`is_valid_received_close_code`] are fine.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let reason = truncate_at_char_boundary(reason, MAX_CONTROL_PAYLOAD - 2);
    let mut payload = [0; MAX_CONTROL_PAYLOAD];
    let body = code.to_be_bytes().into_iter().chain(reason.bytes());
    let mut len = 0;
    for (slot, byte) in payload.iter_mut().zip(body) {
        *slot = byte;
        len += 1;
    }
    encode_frame(out, Opcode::Close, payload.get(..len).unwrap_or_default());
}

/// The longest prefix of `text` that is at most `max_bytes` long and still
/// valid UTF-8.
fn truncate_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Close codes (§7.4)
// ---------------------------------------------------------------------------

/// Status codes for Close frames (§7.4.1; IANA "WebSocket Close Code
/// Number Registry").
pub mod close {
    /// The purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The server is going down (shutdown) or the browser left the page.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A type of data the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Data inconsistent with its type: non-UTF-8 text (§8.1).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message that violates the endpoint's policy.
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An unexpected condition in the server.
    pub const INTERNAL: u16 = 1011;
}

/// Whether a code received in a Close frame is one a peer may send
/// (§7.4.1, §7.4.2). An invalid one fails the connection with 1002.
///
/// - below 1000: "not used";
/// - 1004 is reserved; 1005 and 1006 "MUST NOT be set as a status code in a
///   Close control frame by an endpoint" (they mean "no code" and "closed
///   abnormally" to the local API); 1015 likewise (TLS handshake failure);
/// - 1012 (Service Restart), 1013 (Try Again Later) and 1014 (Bad Gateway)
///   were registered with IANA after RFC 6455 (a server restarting or
///   overloaded, a gateway whose upstream failed). They are real codes a
///   peer may send, so we accept them. The Autobahn TestSuite moved the same
///   way: early releases listed 1012-1014 in cases 7.9.x (invalid codes);
///   the current one tests them in neither 7.7.x (valid) nor 7.9.x;
/// - 1016-2999: reserved for future IANA registration, so a peer cannot
///   mean anything by them yet;
/// - 3000-3999 (IANA-registered for libraries) and 4000-4999 (private use)
///   are valid; 5000 and up are not defined.
pub fn is_valid_received_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Splits a Close payload into its code and reason (§5.5.1): empty means no
/// code; otherwise "the first two bytes of the body MUST be a 2-byte
/// unsigned integer" and the rest is UTF-8.
pub fn parse_close_payload(payload: &[u8]) -> Result<(Option<u16>, &str), WsError> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return match payload {
            [] => Ok((None, "")),
            _ => Err(WsError::BadClosePayload),
        };
    };
    let code = u16::from_be_bytes(*code);
    if !is_valid_received_close_code(code) {
        return Err(WsError::BadCloseCode(code));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| WsError::BadCloseReason)?;
    Ok((Some(code), reason))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A rule the client broke; the connection must be failed (§7.1.7): send a
/// Close with [`close_code`](Self::close_code) (the Display text fits as its
/// reason), then close TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// §5.2: an RSV bit is set, but no extension was negotiated.
    ReservedBits,
    /// §5.1: "The server MUST close the connection upon receiving a frame
    /// that is not masked."
    UnmaskedFromClient,
    /// §5.5: control frames "MUST NOT be fragmented".
    FragmentedControl,
    /// §5.5: control frames carry at most 125 payload bytes.
    ControlTooLong,
    /// §5.2: an opcode reserved for future use (3-7, 0xB-0xF).
    BadOpcode(u8),
    /// §5.2: a 64-bit payload length with its most significant bit set.
    LengthMsbSet,
    /// §5.2: a length written with more bytes than needed.
    NonMinimalLength,
    /// The message would exceed `max_message_bytes`; `len` is its total
    /// length with this frame.
    TooLarge { len: u64 },
    /// §8.1: text that is not UTF-8, or stops in the middle of a character.
    BadUtf8,
    /// §5.4: a continuation frame with no fragmented message in progress.
    UnexpectedContinuation,
    /// §5.4: a new text or binary frame before the fragmented message in
    /// progress got its final fragment.
    ExpectedContinuation,
    /// §5.5.1: a Close body of one byte (a code takes two).
    BadClosePayload,
    /// §7.4: a close code that may not be sent (see
    /// [`is_valid_received_close_code`]).
    BadCloseCode(u16),
    /// §5.5.1: a close reason that is not UTF-8.
    BadCloseReason,
}

impl WsError {
    /// The status code of the Close frame that fails the connection.
    pub fn close_code(self) -> u16 {
        match self {
            // §7.4.1: 1007 for "data within a message that was not
            // consistent with the type of the message (e.g., non-UTF-8
            // [RFC3629] data within a text message)".
            Self::BadUtf8 | Self::BadCloseReason => close::INVALID_PAYLOAD,
            // §7.4.1: 1009 for "a message that is too big for it to process".
            Self::TooLarge { .. } => close::MESSAGE_TOO_BIG,
            // Everything else breaks the framing rules: 1002.
            Self::ReservedBits
            | Self::UnmaskedFromClient
            | Self::FragmentedControl
            | Self::ControlTooLong
            | Self::BadOpcode(_)
            | Self::LengthMsbSet
            | Self::NonMinimalLength
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::BadClosePayload
            | Self::BadCloseCode(_) => close::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for WsError {
    // These texts become the Close reason, so each must stay well under the
    // 123 bytes a Close frame has room for (a test checks).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits => f.write_str("RSV bits set, but no extension was negotiated"),
            Self::UnmaskedFromClient => f.write_str("client frames must be masked"),
            Self::FragmentedControl => f.write_str("control frames must not be fragmented"),
            Self::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::BadOpcode(opcode) => write!(f, "reserved opcode {opcode:#x}"),
            Self::LengthMsbSet => f.write_str("64-bit payload length with the top bit set"),
            Self::NonMinimalLength => f.write_str("payload length not in its shortest form"),
            Self::TooLarge { len } => write!(f, "message of {len} bytes is over the limit"),
            Self::BadUtf8 => f.write_str("text message is not valid UTF-8"),
            Self::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            Self::ExpectedContinuation => {
                f.write_str("new message before the fragmented one was finished")
            }
            Self::BadClosePayload => f.write_str("close frame body of 1 byte"),
            Self::BadCloseCode(code) => write!(f, "invalid close code {code}"),
            Self::BadCloseReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

// ---------------------------------------------------------------------------
// Incremental UTF-8 validation (§8.1)
// ---------------------------------------------------------------------------

/// Checks UTF-8 piece by piece, failing at the first byte after which no
/// continuation could make the text valid.
///
/// §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds
/// that the byte stream is not, in fact, a valid UTF-8 stream, that endpoint
/// MUST _Fail the WebSocket Connection_." Checking as bytes arrive, rather
/// than once the message is complete, fails a bad client at once instead of
/// after it has sent (and we have buffered) the rest of its message; the
/// Autobahn TestSuite (cases 6.4.x) calls a later failure NON-STRICT.
///
/// The rules are the well-formed byte sequences of the Unicode Standard,
/// chapter 3, Table 3-7:
///
/// ```text
/// code points          byte 1   byte 2   byte 3   byte 4
/// U+0000..U+007F       00..7F
/// U+0080..U+07FF       C2..DF   80..BF
/// U+0800..U+0FFF       E0       A0..BF   80..BF
/// U+1000..U+CFFF       E1..EC   80..BF   80..BF
/// U+D000..U+D7FF       ED       80..9F   80..BF
/// U+E000..U+FFFF       EE..EF   80..BF   80..BF
/// U+10000..U+3FFFF     F0       90..BF   80..BF   80..BF
/// U+40000..U+FFFFF     F1..F3   80..BF   80..BF   80..BF
/// U+100000..U+10FFFF   F4       80..8F   80..BF   80..BF
/// ```
///
/// The first byte fixes how many bytes follow and the range of the second;
/// the narrow second-byte ranges are what exclude overlong forms (E0, F0),
/// UTF-16 surrogates (ED) and values past U+10FFFF (F4). C0, C1 and F5..FF
/// never appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still needed to finish the current character;
    /// 0 between characters.
    needed: u8,
    /// The range the next continuation byte must fall in.
    lower: u8,
    upper: u8,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Utf8Validator {
    /// A validator at the start of a text, between characters.
    pub const fn new() -> Self {
        Self {
            needed: 0,
            lower: 0x80,
            upper: 0xBF,
        }
    }

    /// Checks the next bytes of the text. `Err(BadUtf8)` means the text is
    /// invalid whatever follows; the validator must not be fed again.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), WsError> {
        loop {
            if self.needed == 0 {
                bytes = skip_ascii(bytes);
            }
            let Some((&byte, rest)) = bytes.split_first() else {
                return Ok(());
            };
            bytes = rest;
            if self.needed == 0 {
                (self.needed, self.lower, self.upper) = match byte {
                    0x00..=0x7F => (0, 0x80, 0xBF),
                    0xC2..=0xDF => (1, 0x80, 0xBF),
                    0xE0 => (2, 0xA0, 0xBF),
                    0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                    0xED => (2, 0x80, 0x9F),
                    0xF0 => (3, 0x90, 0xBF),
                    0xF1..=0xF3 => (3, 0x80, 0xBF),
                    0xF4 => (3, 0x80, 0x8F),
                    // 80..BF: a continuation byte with no lead byte;
                    // C0, C1: could only start overlong 2-byte forms;
                    // F5..FF: could only start values past U+10FFFF.
                    _ => return Err(WsError::BadUtf8),
                };
            } else if (self.lower..=self.upper).contains(&byte) {
                (self.needed, self.lower, self.upper) = (self.needed - 1, 0x80, 0xBF);
            } else {
                return Err(WsError::BadUtf8);
            }
        }
    }

    /// Whether the text so far ends on a character boundary. A text message
    /// whose final fragment leaves a character unfinished is invalid.
    pub fn is_complete(&self) -> bool {
        self.needed == 0
    }
}

/// The rest of `bytes` after its leading ASCII, skipped 8 bytes at a time
/// where possible: most text on a WebSocket is ASCII (JSON, commands).
fn skip_ascii(mut bytes: &[u8]) -> &[u8] {
    while let Some((chunk, rest)) = bytes.split_first_chunk::<8>() {
        // ASCII bytes are exactly those with the high bit clear.
        if u64::from_ne_bytes(*chunk) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        bytes = rest;
    }
    while let Some((byte, rest)) = bytes.split_first() {
        if !byte.is_ascii() {
            break;
        }
        bytes = rest;
    }
    bytes
}

// ---------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------

/// What a client sent: a whole message or a control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (all fragments joined), valid UTF-8.
    Text(&'a str),
    /// A complete binary message (all fragments joined).
    Binary(&'a [u8]),
    /// §5.5.2: answer with a Pong carrying the same payload.
    Ping(&'a [u8]),
    /// §5.5.3: a Pong; only proves the peer is alive.
    Pong(&'a [u8]),
    /// §5.5.1: the client starts (or answers) the closing handshake. `code`
    /// is `None` for an empty Close body; a present code is valid.
    Close { code: Option<u16>, reason: &'a str },
}

/// Turns the bytes a client sends into [`Event`]s, enforcing the server side
/// of RFC 6455 with no extension negotiated.
///
/// Usage (as `conn` does): feed each read, then feed what is left after
/// each event, until `feed` says it needs more:
///
/// ```
/// use picamd::proto::ws::{Decoder, Event};
///
/// let mut decoder = Decoder::new(1 << 20);
/// // A masked "Hello" (RFC 6455 §5.7).
/// let mut read: &[u8] = &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// loop {
///     let (used, event) = decoder.feed(read).expect("valid frames");
///     read = &read[used..];
///     match event {
///         Some(Event::Text(text)) => assert_eq!(text, "Hello"),
///         Some(_) => unreachable!(),
///         None => break, // all of `read` is consumed; wait for the next read
///     }
/// }
/// ```
///
/// Memory: the message buffer grows as payload arrives, never past
/// `max_message_bytes` (a frame that would take it past is refused at its
/// header); control payloads go to a fixed 125-byte array.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// Largest message we accept, fragments included (close 1009 past it).
    max_message_bytes: usize,
    /// Where we are in the current frame.
    frame: FrameState,
    /// The data message being assembled from its fragments (§5.4).
    message: MessageState,
    /// That message's payload so far, unmasked.
    message_bytes: Vec<u8>,
    /// The current control frame's payload, unmasked. Control frames may
    /// arrive between the fragments of a message (§5.4), so they get their
    /// own buffer and leave `message_bytes` alone.
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
    /// Set by the first error; every later `feed` returns it, because after
    /// a protocol error the rest of the stream has no meaning (§7.1.7).
    failed: Option<WsError>,
}

#[derive(Debug, Clone, Copy)]
enum FrameState {
    /// Collecting header bytes; a header may arrive split across reads.
    Header {
        bytes: [u8; MAX_FRAME_HEADER_BYTES],
        len: usize,
    },
    /// Receiving the payload; `received` of `header.payload_len` bytes so far.
    Payload { header: FrameHeader, received: u64 },
}

impl FrameState {
    const START: Self = Self::Header {
        bytes: [0; MAX_FRAME_HEADER_BYTES],
        len: 0,
    };
}

#[derive(Debug, Clone, Copy)]
enum MessageState {
    /// No message in progress: the next data frame must be Text or Binary.
    Idle,
    /// A text message has begun; its UTF-8 is checked up to here.
    Text(Utf8Validator),
    /// A binary message has begun.
    Binary,
    /// The last `feed` returned this message; its bytes are dropped when
    /// the next `feed` starts, since the returned event borrowed them.
    Delivered,
}

/// A frame that completed an event; `feed` turns it into the [`Event`]
/// that borrows the decoder's buffers.
#[derive(Debug, Clone, Copy)]
enum Finished {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

/// A message buffer grown past this for one big message is freed once that
/// message is delivered, rather than kept for the rest of the connection.
const RETAINED_MESSAGE_CAPACITY: usize = 16 * 1024;

impl Decoder {
    /// A decoder for frames a client sends to a server: masked (§5.1), no
    /// extension, messages of at most `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes,
            frame: FrameState::START,
            message: MessageState::Idle,
            message_bytes: Vec::new(),
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            failed: None,
        }
    }

    /// Consumes a prefix of `input`. Returns `(consumed, Some(event))` when
    /// a message or control frame completes (`consumed` counts the bytes up
    /// to the end of that frame: feed the rest again), or
    /// `(input.len(), None)` when everything was taken and more is needed.
    ///
    /// Payload bytes are unmasked and, for text, validated as they arrive,
    /// so an invalid UTF-8 byte fails now even mid-frame. After an `Err` the
    /// decoder is poisoned and keeps returning that error. The event borrows
    /// the decoder's buffers; the next call may reuse them. After a Close
    /// event the client may send nothing more (§5.5.1), so the caller stops
    /// feeding.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Event<'_>>), WsError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if let MessageState::Delivered = self.message {
            self.release_message();
        }
        let (consumed, finished) = match self.advance(input) {
            Ok(step) => step,
            Err(error) => {
                self.failed = Some(error);
                return Err(error);
            }
        };
        let control = self.control.get(..self.control_len).unwrap_or_default();
        let event = match finished {
            None => return Ok((consumed, None)),
            Some(Finished::Binary) => Event::Binary(&self.message_bytes),
            Some(Finished::Text) => match std::str::from_utf8(&self.message_bytes) {
                Ok(text) => Event::Text(text),
                // Cannot happen: the validator accepted every byte and saw
                // the message end on a character boundary. std checks again
                // only because, without `unsafe`, that is how to get a
                // `&str`. A debug build (tests, fuzzing) stops here if the
                // validator is ever wrong; a release build still fails the
                // connection with 1007.
                Err(_) => {
                    debug_assert!(false, "the UTF-8 validator accepted invalid text");
                    self.failed = Some(WsError::BadUtf8);
                    return Err(WsError::BadUtf8);
                }
            },
            Some(Finished::Ping) => Event::Ping(control),
            Some(Finished::Pong) => Event::Pong(control),
            Some(Finished::Close) => match parse_close_payload(control) {
                Ok((code, reason)) => Event::Close { code, reason },
                Err(error) => {
                    self.failed = Some(error);
                    return Err(error);
                }
            },
        };
        Ok((consumed, Some(event)))
    }

    /// Bytes the decoder holds: a partial header, a partial control frame
    /// and the message assembled so far (or the one just delivered).
    pub fn buffered_bytes(&self) -> usize {
        let header = match self.frame {
            FrameState::Header { len, .. } => len,
            FrameState::Payload { .. } => 0,
        };
        header + self.control_len + self.message_bytes.len()
    }

    /// Runs frames through until one finishes an event or `input` runs out.
    fn advance(&mut self, input: &[u8]) -> Result<(usize, Option<Finished>), WsError> {
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            match &mut self.frame {
                FrameState::Header { bytes, len } => {
                    // Copy what may belong to the header (at most 14 bytes,
                    // so re-parsing the prefix each time stays O(1)), then
                    // count only what it really used.
                    let had = *len;
                    let copied = copy_into(bytes, len, rest);
                    match parse_frame_header(bytes.get(..*len).unwrap_or_default())? {
                        Status::Partial => return Ok((consumed + copied, None)),
                        Status::Complete((header, header_len)) => {
                            consumed += header_len.saturating_sub(had);
                            self.start_frame(header)?;
                        }
                    }
                }
                FrameState::Payload { header, received } => {
                    let (header, received) = (*header, *received);
                    let taken = self.take_payload(header, received, rest)?;
                    consumed += taken;
                    let received = received + taken as u64;
                    if received < header.payload_len {
                        // `rest` is used up: wait for more.
                        self.frame = FrameState::Payload { header, received };
                        return Ok((consumed, None));
                    }
                    self.frame = FrameState::START;
                    if let Some(finished) = self.finish_frame(header)? {
                        return Ok((consumed, Some(finished)));
                    }
                }
            }
        }
    }

    /// Applies the connection's rules to a parsed header and gets ready for
    /// its payload.
    fn start_frame(&mut self, header: FrameHeader) -> Result<(), WsError> {
        // §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that
        // defines meanings for non-zero values"; we negotiate none.
        if header.rsv != 0 {
            return Err(WsError::ReservedBits);
        }
        // §5.1: the client masks every frame, so that script in a browser
        // cannot choose the bytes a proxy sees; "The server MUST close the
        // connection upon receiving a frame that is not masked."
        if header.mask.is_none() {
            return Err(WsError::UnmaskedFromClient);
        }
        match (header.opcode, self.message) {
            // §5.4: "Control frames MAY be injected in the middle of a
            // fragmented message"; parse_frame_header bounded them to 125.
            (Opcode::Close | Opcode::Ping | Opcode::Pong, _) => self.control_len = 0,
            // §5.4: a fragmented message is one Text/Binary frame with FIN
            // clear, then Continuation frames, the last with FIN set.
            (Opcode::Continuation, MessageState::Text(_) | MessageState::Binary) => {
                self.check_message_size(header.payload_len)?;
            }
            (Opcode::Continuation, MessageState::Idle | MessageState::Delivered) => {
                return Err(WsError::UnexpectedContinuation);
            }
            (Opcode::Text | Opcode::Binary, MessageState::Text(_) | MessageState::Binary) => {
                return Err(WsError::ExpectedContinuation);
            }
            (Opcode::Text | Opcode::Binary, MessageState::Idle | MessageState::Delivered) => {
                self.check_message_size(header.payload_len)?;
                self.message = match header.opcode {
                    Opcode::Text => MessageState::Text(Utf8Validator::new()),
                    _ => MessageState::Binary,
                };
            }
        }
        self.frame = FrameState::Payload {
            header,
            received: 0,
        };
        Ok(())
    }

    /// Refuses a data frame that would take the message past the limit, at
    /// its header: before any of its payload is buffered, or even read.
    fn check_message_size(&self, payload_len: u64) -> Result<(), WsError> {
        let len = (self.message_bytes.len() as u64).saturating_add(payload_len);
        if len > self.max_message_bytes as u64 {
            return Err(WsError::TooLarge { len });
        }
        Ok(())
    }

    /// Takes as much of the current frame's payload from `input` as is
    /// there: copies it to its buffer, unmasks it and, for text, checks it.
    /// Returns how many bytes it took.
    fn take_payload(
        &mut self,
        header: FrameHeader,
        received: u64,
        input: &[u8],
    ) -> Result<usize, WsError> {
        let remaining = header.payload_len - received;
        let n = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
        let chunk = input.get(..n).unwrap_or_default();
        let offset = (received % 4) as usize;

        let new_bytes = if header.opcode.is_control() {
            let start = self.control_len;
            copy_into(&mut self.control, &mut self.control_len, chunk);
            self.control
                .get_mut(start..self.control_len)
                .unwrap_or_default()
        } else {
            let start = self.message_bytes.len();
            self.reserve_message(chunk.len());
            self.message_bytes.extend_from_slice(chunk);
            self.message_bytes.get_mut(start..).unwrap_or_default()
        };
        if let Some(mask) = header.mask {
            apply_mask(new_bytes, mask, offset);
        }
        if let (false, MessageState::Text(utf8)) = (header.opcode.is_control(), &mut self.message) {
            utf8.feed(new_bytes)?;
        }
        Ok(n)
    }

    /// Called when a frame's payload is complete; says which event, if any,
    /// it finished.
    fn finish_frame(&mut self, header: FrameHeader) -> Result<Option<Finished>, WsError> {
        let finished = match (header.opcode, self.message) {
            (Opcode::Ping, _) => Finished::Ping,
            (Opcode::Pong, _) => Finished::Pong,
            (Opcode::Close, _) => Finished::Close,
            // More fragments follow.
            _ if !header.fin => return Ok(None),
            // §8.1: a text message must not end inside a character.
            (_, MessageState::Text(utf8)) if !utf8.is_complete() => {
                return Err(WsError::BadUtf8);
            }
            (_, MessageState::Text(_)) => Finished::Text,
            (_, MessageState::Binary) => Finished::Binary,
            // start_frame admitted no data frame without a message.
            (_, MessageState::Idle | MessageState::Delivered) => {
                return Err(WsError::UnexpectedContinuation);
            }
        };
        if let Finished::Text | Finished::Binary = finished {
            self.message = MessageState::Delivered;
        }
        Ok(Some(finished))
    }

    /// Makes room for `additional` more message bytes. Growth is geometric,
    /// so a message sent as many small fragments costs amortized O(n), but
    /// capped at `max_message_bytes`, the most a client may make us hold.
    fn reserve_message(&mut self, additional: usize) {
        let len = self.message_bytes.len();
        let needed = len.saturating_add(additional);
        let capacity = self.message_bytes.capacity();
        if needed > capacity {
            let target = capacity
                .saturating_mul(2)
                .min(self.max_message_bytes)
                .max(needed);
            self.message_bytes.reserve_exact(target - len);
        }
    }

    /// Drops the message the previous `feed` returned.
    fn release_message(&mut self) {
        if self.message_bytes.capacity() > RETAINED_MESSAGE_CAPACITY {
            self.message_bytes = Vec::new();
        } else {
            self.message_bytes.clear();
        }
        self.message = MessageState::Idle;
    }
}

/// Appends as much of `src` as fits to `buf[*len..]`, advances `*len`, and
/// returns how many bytes it copied.
fn copy_into(buf: &mut [u8], len: &mut usize, src: &[u8]) -> usize {
    let free = buf.get_mut(*len..).unwrap_or_default();
    let n = free.len().min(src.len());
    for (slot, byte) in free.iter_mut().zip(src) {
        *slot = *byte;
    }
    *len += n;
    n
}

// ---------------------------------------------------------------------------
// Fuzzing entry points (see `crate::fuzzing`)
// ---------------------------------------------------------------------------

/// An [`Event`] that owns its bytes, so that runs can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedEvent {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

impl From<Event<'_>> for OwnedEvent {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Text(text) => Self::Text(text.to_owned()),
            Event::Binary(bytes) => Self::Binary(bytes.to_vec()),
            Event::Ping(bytes) => Self::Ping(bytes.to_vec()),
            Event::Pong(bytes) => Self::Pong(bytes.to_vec()),
            Event::Close { code, reason } => Self::Close(code, reason.to_owned()),
        }
    }
}

/// Everything a decoder said about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transcript {
    events: Vec<OwnedEvent>,
    error: Option<WsError>,
    buffered_bytes: usize,
}

/// Decodes a stream that arrives as `reads`, asserting the `feed` contract
/// (consumed ≤ len; `None` only once everything is consumed) on each call.
fn decode_reads<'a>(
    max_message_bytes: usize,
    reads: impl IntoIterator<Item = &'a [u8]>,
) -> Transcript {
    let mut decoder = Decoder::new(max_message_bytes);
    let mut events = Vec::new();
    for mut read in reads {
        loop {
            match decoder.feed(read) {
                Ok((consumed, event)) => {
                    assert!(consumed <= read.len(), "consumed past the input");
                    read = read.get(consumed..).unwrap_or_default();
                    match event {
                        Some(event) => events.push(OwnedEvent::from(event)),
                        None => {
                            assert!(read.is_empty(), "asked for more with input left");
                            break;
                        }
                    }
                }
                Err(error) => {
                    assert_eq!(decoder.feed(read), Err(error), "errors are sticky");
                    return Transcript {
                        events,
                        error: Some(error),
                        buffered_bytes: 0,
                    };
                }
            }
        }
    }
    Transcript {
        events,
        error: None,
        buffered_bytes: decoder.buffered_bytes(),
    }
}

/// Frame decoder invariants on arbitrary input. The first bytes pick a
/// message size limit and a cycle of read sizes; the rest is the stream.
/// Fed in those reads, one byte at a time, or whole, it gives the same
/// events and the same error. Then messages built from `data` must survive
/// encode → decode, and their stream too must decode the same in any reads.
#[doc(hidden)]
pub fn fuzz_frames(data: &[u8]) {
    let (config, stream) = data.split_at(data.len().min(4));
    let max_message_bytes = match config.first().map(|b| b % 6) {
        Some(0) => 0,
        Some(1) => 5,
        Some(2) => 125,
        Some(3) => 300,
        Some(4) => 70_000,
        _ => usize::MAX,
    };
    let read_sizes: Vec<usize> = config
        .iter()
        .skip(1)
        .map(|&b| usize::from(b % 32) + 1)
        .collect();

    check_reads_agree(max_message_bytes, stream, &read_sizes);
    let built = fuzz_round_trip(data);
    check_reads_agree(max_message_bytes, &built, &read_sizes);
}

/// Decoding `stream` in reads of `read_sizes` (cycled), one byte at a time,
/// or whole gives the same transcript.
fn check_reads_agree(max_message_bytes: usize, stream: &[u8], read_sizes: &[usize]) {
    let whole = decode_reads(max_message_bytes, [stream]);
    let mut reads = Vec::new();
    let mut rest = stream;
    for &size in read_sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at(size.min(rest.len()));
        reads.push(read);
        rest = tail;
    }
    let in_reads = decode_reads(max_message_bytes, reads);
    assert_eq!(in_reads, whole, "reads of {read_sizes:?}");
    let one_by_one = decode_reads(max_message_bytes, stream.chunks(1));
    assert_eq!(one_by_one, whole, "one byte at a time");
}

/// Messages built from `data`, encoded as a client would (masked, text
/// fragmented with a Ping in between), must decode to themselves; every
/// header must parse back to what was encoded, and each prefix of it must
/// be `Partial`. Returns the encoded stream.
fn fuzz_round_trip(data: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut rest = data;
    while let Some((&[kind, len, m0, m1], tail)) = rest.split_first_chunk::<4>() {
        let mask = [m0, m1, kind, len];
        let (payload, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        match kind % 6 {
            0 => {
                let text = String::from_utf8_lossy(payload).into_owned();
                // Fragments may split a character: UTF-8 is checked
                // across them.
                let cut = usize::from(m0) % (text.len() + 1);
                let (first, second) = text.as_bytes().split_at_checked(cut).unwrap_or_default();
                push_client_frame(&mut stream, false, Opcode::Text, first, mask);
                push_client_frame(&mut stream, true, Opcode::Ping, &[], mask);
                push_client_frame(&mut stream, true, Opcode::Continuation, second, mask);
                expected.push(OwnedEvent::Ping(Vec::new()));
                expected.push(OwnedEvent::Text(text));
            }
            1 => {
                push_client_frame(&mut stream, true, Opcode::Binary, payload, mask);
                expected.push(OwnedEvent::Binary(payload.to_vec()));
            }
            2 | 3 => {
                let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
                let (opcode, event) = match kind % 6 {
                    2 => (Opcode::Ping, OwnedEvent::Ping(payload.to_vec())),
                    _ => (Opcode::Pong, OwnedEvent::Pong(payload.to_vec())),
                };
                push_client_frame(&mut stream, true, opcode, payload, mask);
                expected.push(event);
            }
            4 => {
                let code = match m1 % 4 {
                    0 => close::NORMAL,
                    1 => 1014,
                    2 => 3000,
                    _ => 4999,
                };
                let reason = String::from_utf8_lossy(payload);
                let reason = truncate_at_char_boundary(&reason, MAX_CONTROL_PAYLOAD - 2);
                let mut body = code.to_be_bytes().to_vec();
                body.extend_from_slice(reason.as_bytes());
                push_client_frame(&mut stream, true, Opcode::Close, &body, mask);
                expected.push(OwnedEvent::Close(Some(code), reason.to_owned()));
            }
            _ => {
                // A header alone, with a length from the data (63 bits).
                let payload_len = u64::from_be_bytes([len, m0, m1, kind, len, m0, m1, kind]) >> 1;
                let opcode = match m1 % 3 {
                    0 => Opcode::Text,
                    1 => Opcode::Binary,
                    _ => Opcode::Continuation,
                };
                let fin = m0 & 1 == 1;
                let mask = (m1 & 1 == 1).then_some(mask);
                check_header_round_trip(fin, opcode, payload_len, mask);
            }
        }
    }
    let decoded = decode_reads(usize::MAX, [stream.as_slice()]);
    assert_eq!(decoded.error, None, "a valid stream failed");
    assert_eq!(decoded.events, expected, "decode(encode(x)) != x");
    stream
}

/// Appends one frame as a client sends it: masked.
fn push_client_frame(out: &mut Vec<u8>, fin: bool, opcode: Opcode, payload: &[u8], mask: [u8; 4]) {
    check_header_round_trip(fin, opcode, payload.len() as u64, Some(mask));
    let mut header = [0; MAX_FRAME_HEADER_BYTES];
    let len = encode_frame_header(fin, opcode, payload.len() as u64, Some(mask), &mut header);
    out.extend_from_slice(header.get(..len).unwrap_or_default());
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(out.get_mut(start..).unwrap_or_default(), mask, 0);
}

/// encode_frame_header → parse_frame_header gives the header back, and
/// every proper prefix of the encoding is `Partial`.
fn check_header_round_trip(fin: bool, opcode: Opcode, payload_len: u64, mask: Option<[u8; 4]>) {
    let mut buf = [0; MAX_FRAME_HEADER_BYTES];
    let len = encode_frame_header(fin, opcode, payload_len, mask, &mut buf);
    let encoded = buf.get(..len).unwrap_or_default();
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len,
    };
    assert_eq!(
        parse_frame_header(encoded),
        Ok(Status::Complete((header, len)))
    );
    for cut in 0..len {
        let prefix = encoded.get(..cut).unwrap_or_default();
        assert_eq!(
            parse_frame_header(prefix),
            Ok(Status::Partial),
            "prefix of {cut}"
        );
    }
}

/// Handshake invariants on arbitrary bytes: whatever `parse_head` accepts,
/// `validate_handshake` either refuses with a 400/426 (426 always with the
/// version header) or accepts a key that is base64 of 16 bytes, whose
/// accept value is 28 characters and appears in the 101 answer.
#[doc(hidden)]
pub fn fuzz_handshake(data: &[u8]) {
    use super::http::{Limits, MAX_HEADERS, parse_head};

    let mut headers = [Header::default(); MAX_HEADERS];
    let mut scanned = 0;
    let limits = Limits {
        max_head_bytes: 8 * 1024,
        max_target_bytes: 2 * 1024,
    };
    if let Ok(Status::Complete((head, _))) = parse_head(data, &mut scanned, &limits, &mut headers) {
        check_handshake(&head);
    }
}

fn check_handshake(head: &RequestHead<'_, '_>) {
    match validate_handshake(head) {
        Ok(handshake) => {
            assert!(is_upgrade(head), "accepted without Upgrade: websocket");
            let mut nonce = [0u8; 18];
            assert_eq!(BASE64.decode_slice(handshake.key, &mut nonce), Ok(16));
            let accept = accept_key(handshake.key);
            assert_eq!(accept.len(), 28);
            let mut response = Vec::new();
            encode_handshake_response(&mut response, handshake.key);
            let line = format!("\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
            assert!(response.ends_with(line.as_bytes()));
        }
        Err(error) => {
            assert!(matches!(error.status(), 400 | 426));
            assert_eq!(error.extra_header().is_some(), error.status() == 426);
            assert!(!error.to_string().is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// One client frame: masked with `mask`.
    fn client_frame(fin: bool, opcode: Opcode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        push_client_frame(&mut out, fin, opcode, payload, mask);
        out
    }

    fn text(s: &str) -> OwnedEvent {
        OwnedEvent::Text(s.to_owned())
    }

    fn decode(max: usize, stream: &[u8]) -> Transcript {
        decode_reads(max, [stream])
    }

    fn events(stream: &[u8]) -> Vec<OwnedEvent> {
        let transcript = decode(1 << 20, stream);
        assert_eq!(transcript.error, None);
        transcript.events
    }

    fn error(max: usize, stream: &[u8]) -> WsError {
        decode(max, stream).error.expect("an error")
    }

    // --- handshake -------------------------------------------------------

    #[test]
    fn accept_key_matches_rfc_6455_section_1_3() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// A handshake in the form Chrome sends it (its field order and
    /// values), with the RFC 6455 §1.3 sample key.
    const CHROME: &[(&str, &[u8])] = &[
        ("Host", b"localhost:8080"),
        ("Connection", b"Upgrade"),
        ("Pragma", b"no-cache"),
        ("Cache-Control", b"no-cache"),
        (
            "User-Agent",
            b"Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36",
        ),
        ("Upgrade", b"websocket"),
        ("Origin", b"http://localhost:8080"),
        ("Sec-WebSocket-Version", b"13"),
        ("Accept-Encoding", b"gzip, deflate, br, zstd"),
        ("Accept-Language", b"en-US,en;q=0.9"),
        ("Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (
            "Sec-WebSocket-Extensions",
            b"permessage-deflate; client_max_window_bits",
        ),
    ];

    fn headers(fields: &[(&'static str, &'static [u8])]) -> Vec<Header<'static>> {
        fields
            .iter()
            .map(|&(name, value)| Header { name, value })
            .collect()
    }

    /// CHROME with the field `name` removed, or given `value` instead.
    fn chrome_with(name: &'static str, value: Option<&'static [u8]>) -> Vec<Header<'static>> {
        let mut fields = headers(CHROME);
        fields.retain(|h| h.name != name);
        fields.extend(value.map(|value| Header { name, value }));
        fields
    }

    fn get<'h>(version: Version, headers: &'h [Header<'static>]) -> RequestHead<'h, 'static> {
        RequestHead {
            method: "GET",
            target: "/stream",
            version,
            headers,
        }
    }

    #[test]
    fn chrome_handshake_is_accepted() {
        let fields = headers(CHROME);
        let head = get(Version::Http11, &fields);
        assert!(is_upgrade(&head));
        let handshake = validate_handshake(&head).unwrap();
        assert_eq!(handshake.key, b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(handshake.origin, Some(&b"http://localhost:8080"[..]));
        check_handshake(&head);
    }

    #[test]
    fn ws_and_firefox_style_handshakes_are_accepted() {
        // npm `ws`: lowercase names, no Origin.
        let ws = headers(&[
            ("host", b"127.0.0.1:8080"),
            ("sec-websocket-version", b"13"),
            ("sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            ("connection", b"Upgrade"),
            ("upgrade", b"websocket"),
        ]);
        let handshake = validate_handshake(&get(Version::Http11, &ws)).unwrap();
        assert_eq!(handshake.origin, None);
        // Firefox: Connection is a list; some clients capitalize WebSocket.
        // (The key and its accept value are the well-known pair from
        // Wikipedia's and MDN's handshake examples.)
        let firefox = headers(&[
            ("Host", b"localhost:8080"),
            ("Sec-WebSocket-Version", b"13"),
            ("Origin", b"http://localhost:8080"),
            ("Sec-WebSocket-Key", b"x3JJHMbDL1EzLkh9GBhXDw=="),
            ("Connection", b"keep-alive, Upgrade"),
            ("Upgrade", b"WebSocket"),
        ]);
        let handshake = validate_handshake(&get(Version::Http11, &firefox)).unwrap();
        assert_eq!(accept_key(handshake.key), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    }

    #[test]
    fn every_handshake_error() {
        use HandshakeError::*;
        let check = |head: RequestHead<'_, 'static>, want: HandshakeError| {
            assert_eq!(validate_handshake(&head), Err(want), "{head:?}");
            check_handshake(&head);
        };
        let chrome = headers(CHROME);
        for method in ["HEAD", "POST", "get"] {
            let head = get(Version::Http11, &chrome);
            check(RequestHead { method, ..head }, NotGet);
        }
        check(get(Version::Http10, &chrome), NotHttp11);
        // CHROME with one field removed (None) or changed.
        let with = |name, value: Option<&'static [u8]>, want| {
            check(get(Version::Http11, &chrome_with(name, value)), want)
        };
        with("Upgrade", None, NoUpgradeWebsocket);
        with("Upgrade", Some(b"h2c"), NoUpgradeWebsocket);
        with("Upgrade", Some(b"websocket/13"), NoUpgradeWebsocket);
        with("Connection", None, NoConnectionUpgrade);
        with("Connection", Some(b"keep-alive"), NoConnectionUpgrade);
        with("Sec-WebSocket-Key", None, MissingKey);
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ",       // no padding
            b"dGhlIHNhbXBsZSBub25jZR==",     // non-zero trailing bits
            b"dGhlIHNhbXBsZSBub25jZQ==dGhl", // too long
            b"dGhlIHNhbXBsZSBub25j",         // 15 bytes
            b"dGhlIHNhbXBsZSBub25jZGU=",     // 17 bytes
            b"dGhlIHNhbXBsZSBub25jZQ=!",     // not base64
            b"dGhlIHNhbXBsZSBub25jZQ==\0",
        ] {
            with("Sec-WebSocket-Key", Some(bad), BadKey);
        }
        with("Sec-WebSocket-Version", None, MissingVersion);
        for bad in [&b"8"[..], b"12", b"13, 8", b"013", b""] {
            with("Sec-WebSocket-Version", Some(bad), UnsupportedVersion);
        }
        for name in ["Sec-WebSocket-Key", "Sec-WebSocket-Version", "Origin"] {
            let mut fields = headers(CHROME);
            let again = *fields.iter().find(|h| h.name == name).unwrap();
            fields.push(again);
            check(get(Version::Http11, &fields), DuplicateHeader(name));
        }
    }

    #[test]
    fn handshake_error_statuses() {
        use HandshakeError::*;
        let all = [
            NotGet,
            NotHttp11,
            NoUpgradeWebsocket,
            NoConnectionUpgrade,
            MissingKey,
            BadKey,
            MissingVersion,
            UnsupportedVersion,
            DuplicateHeader("Origin"),
        ];
        for error in all {
            let (status, extra) = match error {
                MissingVersion | UnsupportedVersion => (426, Some(("Sec-WebSocket-Version", "13"))),
                _ => (400, None),
            };
            assert_eq!(
                (error.status(), error.extra_header()),
                (status, extra),
                "{error:?}"
            );
            assert!(!error.to_string().is_empty());
        }
        assert_eq!(
            DuplicateHeader("Origin").to_string(),
            "Origin header sent more than once"
        );
    }

    #[test]
    fn is_upgrade_looks_only_at_the_upgrade_list() {
        let plain = headers(&[("Host", b"x"), ("Connection", b"Upgrade")]);
        assert!(!is_upgrade(&get(Version::Http11, &plain)));
        let list = headers(&[("Upgrade", b"foo, WebSocket")]);
        let post = RequestHead {
            method: "POST",
            ..get(Version::Http10, &list)
        };
        assert!(is_upgrade(&post));
    }

    #[test]
    fn handshake_response_is_exact() {
        let mut out = Vec::new();
        encode_handshake_response(&mut out, b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    // --- RFC 6455 §5.7 examples ------------------------------------------

    /// The unmasked §5.7 frames are what a server sends, so they are checked
    /// with parse_frame_header and encode_frame; our Decoder (a server)
    /// refuses them by §5.1, and gets the masked forms instead.
    #[test]
    fn rfc_5_7_unmasked_frames() {
        let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let header = |fin, opcode, payload_len| FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len,
        };
        assert_eq!(
            parse_frame_header(&hello),
            Ok(Status::Complete((header(true, Opcode::Text, 5), 2)))
        );
        let mut out = Vec::new();
        encode_frame(&mut out, Opcode::Text, b"Hello");
        assert_eq!(out, hello);
        assert_eq!(error(100, &hello), WsError::UnmaskedFromClient);

        // Fragmented "Hello": "Hel" then "lo".
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            parse_frame_header(&first),
            Ok(Status::Complete((header(false, Opcode::Text, 3), 2)))
        );
        assert_eq!(
            parse_frame_header(&second),
            Ok(Status::Complete((header(true, Opcode::Continuation, 2), 2)))
        );

        // Unmasked Ping with "Hello".
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let mut out = Vec::new();
        encode_frame(&mut out, Opcode::Ping, b"Hello");
        assert_eq!(out, ping);

        // 256 bytes and 64 KiB of binary data in a single unmasked frame.
        let mut out = Vec::new();
        encode_frame(&mut out, Opcode::Binary, &[0xAB; 256]);
        assert_eq!(out[..4], [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        assert_eq!(
            parse_frame_header(&out),
            Ok(Status::Complete((header(true, Opcode::Binary, 256), 4)))
        );
        let mut out = Vec::new();
        encode_frame(&mut out, Opcode::Binary, &[0xCD; 65536]);
        assert_eq!(
            out[..10],
            [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        assert_eq!(out.len(), 10 + 65536);
        assert_eq!(
            parse_frame_header(&out),
            Ok(Status::Complete((header(true, Opcode::Binary, 65536), 10)))
        );
    }

    #[test]
    fn rfc_5_7_masked_frames() {
        // Verbatim: a masked "Hello", and the masked Pong answering a Ping.
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(events(&hello), [text("Hello")]);
        assert_eq!(client_frame(true, Opcode::Text, b"Hello", MASK), hello);
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(events(&pong), [OwnedEvent::Pong(b"Hello".to_vec())]);

        // The other examples, masked as a client must send them.
        let fragmented = [
            client_frame(false, Opcode::Text, b"Hel", MASK),
            client_frame(true, Opcode::Continuation, b"lo", MASK),
        ]
        .concat();
        assert_eq!(fragmented[..2], [0x01, 0x83]);
        assert_eq!(fragmented[9..11], [0x80, 0x82]);
        assert_eq!(events(&fragmented), [text("Hello")]);
        let ping = client_frame(true, Opcode::Ping, b"Hello", MASK);
        assert_eq!(events(&ping), [OwnedEvent::Ping(b"Hello".to_vec())]);
        let payload: Vec<u8> = (0..=255).collect();
        let binary = client_frame(true, Opcode::Binary, &payload, MASK);
        assert_eq!(binary[..4], [0x82, 0xFE, 0x01, 0x00]);
        assert_eq!(events(&binary), [OwnedEvent::Binary(payload)]);
        let payload: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
        let binary = client_frame(true, Opcode::Binary, &payload, MASK);
        assert_eq!(binary[..10], [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(events(&binary), [OwnedEvent::Binary(payload)]);
    }

    // --- frame headers ---------------------------------------------------

    #[test]
    fn header_lengths_are_minimal_at_every_boundary() {
        for (len, header_len) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (u64::MAX >> 1, 10),
        ] {
            let mut buf = [0; MAX_FRAME_HEADER_BYTES];
            assert_eq!(
                encode_frame_header(true, Opcode::Binary, len, None, &mut buf),
                header_len
            );
            assert_eq!(
                encode_frame_header(false, Opcode::Text, len, Some(MASK), &mut buf),
                header_len + 4
            );
            for opcode in [Opcode::Continuation, Opcode::Text, Opcode::Binary] {
                check_header_round_trip(false, opcode, len, Some(MASK));
                check_header_round_trip(true, opcode, len, None);
            }
        }
        for opcode in [Opcode::Close, Opcode::Ping, Opcode::Pong] {
            for len in [0, 1, 125] {
                check_header_round_trip(true, opcode, len, Some(MASK));
            }
        }
    }

    #[test]
    fn opcodes() {
        for value in 0..=255u8 {
            match Opcode::from_u8(value) {
                Some(opcode) => {
                    assert_eq!(opcode.as_u8(), value);
                    assert_eq!(opcode.is_control(), value >= 8);
                }
                None => assert!(matches!(value, 3..=7 | 0xB..)),
            }
        }
    }

    #[test]
    fn header_errors_come_as_soon_as_their_bytes() {
        // Each error needs exactly the bytes shown: every shorter prefix is
        // still Partial, and nothing after them is waited for.
        let cases: &[(&[u8], WsError)] = &[
            (&[0x83, 0x80], WsError::BadOpcode(3)),
            (&[0x8F, 0x80], WsError::BadOpcode(0xF)),
            (&[0x09, 0x80], WsError::FragmentedControl),
            (&[0x89, 0xFE], WsError::ControlTooLong),
            (&[0x88, 0xFF], WsError::ControlTooLong),
            (&[0x82, 0xFE, 0x00, 0x7D], WsError::NonMinimalLength),
            (
                &[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
                WsError::NonMinimalLength,
            ),
            (
                &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                WsError::LengthMsbSet,
            ),
        ];
        for &(bytes, want) in cases {
            assert_eq!(parse_frame_header(bytes), Err(want), "{bytes:02x?}");
            for cut in 0..bytes.len() {
                assert_eq!(parse_frame_header(&bytes[..cut]), Ok(Status::Partial));
            }
        }
        // RSV bits are reported, not refused: whether they are allowed
        // depends on the extensions a connection negotiated.
        let header = FrameHeader {
            fin: true,
            rsv: 0b111,
            opcode: Opcode::Text,
            mask: None,
            payload_len: 0,
        };
        assert_eq!(
            parse_frame_header(&[0xF1, 0x00]),
            Ok(Status::Complete((header, 2)))
        );
    }

    #[test]
    fn apply_mask_in_pieces_equals_whole() {
        let data: Vec<u8> = (0..40).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, MASK, 0);
        assert_eq!(whole[..4], [0x37, 0xfa ^ 1, 0x21 ^ 2, 0x3d ^ 3]);
        for a in 0..=data.len() {
            for b in a..=data.len() {
                let mut pieces = data.clone();
                let (left, rest) = pieces.split_at_mut(a);
                let (middle, right) = rest.split_at_mut(b - a);
                apply_mask(left, MASK, 0);
                apply_mask(middle, MASK, a);
                apply_mask(right, MASK, b);
                assert_eq!(pieces, whole, "{a} {b}");
            }
        }
        let mut again = whole.clone();
        apply_mask(&mut again, MASK, 0);
        assert_eq!(again, data, "masking is its own inverse");
        let mut big_offset = data.clone();
        apply_mask(&mut big_offset, MASK, usize::MAX - 3);
        assert_eq!(big_offset, whole, "usize::MAX - 3 is a multiple of 4");
    }

    // --- the decoder: every error ----------------------------------------

    #[test]
    fn every_decoder_error_and_its_close_code() {
        use WsError::*;
        let fails = |max: usize, stream: &[u8], want: WsError, close_code: u16| {
            assert_eq!(decode(max, stream).error, Some(want), "{stream:02x?}");
            assert_eq!(want.close_code(), close_code, "{want:?}");
            // The error text goes out as the Close reason: 123 bytes at most.
            let reason = want.to_string();
            assert!(!reason.is_empty() && reason.len() <= 123, "{reason}");
        };
        let frame = |fin, opcode, payload: &[u8]| client_frame(fin, opcode, payload, MASK);
        let with_rsv = |bits: u8| {
            let mut frame = frame(true, Opcode::Binary, b"x");
            frame[0] |= bits << 4;
            frame
        };
        let start = frame(false, Opcode::Text, b"ab");
        let ping = frame(true, Opcode::Ping, b"");

        fails(100, &with_rsv(0b100), ReservedBits, 1002);
        fails(100, &with_rsv(0b010), ReservedBits, 1002);
        fails(100, &with_rsv(0b001), ReservedBits, 1002);
        fails(100, &[0x82, 0x01, b'x'], UnmaskedFromClient, 1002);
        fails(100, &[0x09, 0x80, 1, 2, 3, 4], FragmentedControl, 1002);
        fails(100, &[0x89, 0xFE, 0, 126], ControlTooLong, 1002);
        fails(100, &[0x85, 0x80, 1, 2, 3, 4], BadOpcode(5), 1002);
        fails(100, &[0x8B, 0x80, 1, 2, 3, 4], BadOpcode(0xB), 1002);
        let msb_set = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        fails(100, &msb_set, LengthMsbSet, 1002);
        fails(100, &[0x82, 0xFE, 0, 5, 1, 2, 3, 4], NonMinimalLength, 1002);
        let five = frame(true, Opcode::Binary, b"12345");
        fails(4, &five, TooLarge { len: 5 }, 1009);
        let continued = frame(true, Opcode::Continuation, b"cde");
        let two_plus_three = [&start[..], &continued].concat();
        fails(4, &two_plus_three, TooLarge { len: 5 }, 1009);
        fails(100, &frame(true, Opcode::Text, b"\xff"), BadUtf8, 1007);
        fails(100, &continued, UnexpectedContinuation, 1002);
        let restart = [&start[..], &start].concat();
        fails(100, &restart, ExpectedContinuation, 1002);
        let binary = frame(true, Opcode::Binary, b"");
        let restart_after_ping = [&start[..], &ping, &binary].concat();
        fails(100, &restart_after_ping, ExpectedContinuation, 1002);
        let one_byte = frame(true, Opcode::Close, &[0x03]);
        fails(100, &one_byte, BadClosePayload, 1002);
        let code_1005 = frame(true, Opcode::Close, &[0x03, 0xED]);
        fails(100, &code_1005, BadCloseCode(1005), 1002);
        let bad_reason = frame(true, Opcode::Close, b"\x03\xe8\xc3");
        fails(100, &bad_reason, BadCloseReason, 1007);

        let longest = TooLarge { len: u64::MAX }.to_string();
        assert!(longest.len() <= 123, "{longest}");
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = Decoder::new(100);
        let bad = [0x82, 0x01, b'x'];
        assert_eq!(decoder.feed(&bad), Err(WsError::UnmaskedFromClient));
        let good = client_frame(true, Opcode::Text, b"ok", MASK);
        assert_eq!(decoder.feed(&good), Err(WsError::UnmaskedFromClient));
        assert_eq!(decoder.feed(&[]), Err(WsError::UnmaskedFromClient));
    }

    #[test]
    fn too_large_fails_at_the_header_before_any_payload() {
        // Only the header of a 1 MiB frame: refused before the payload.
        let mut header = [0; MAX_FRAME_HEADER_BYTES];
        let len = encode_frame_header(true, Opcode::Binary, 1 << 20, Some(MASK), &mut header);
        let mut decoder = Decoder::new(1000);
        assert_eq!(
            decoder.feed(&header[..len]),
            Err(WsError::TooLarge { len: 1 << 20 })
        );
        // Exactly the limit is fine, fragments included.
        let stream = [
            client_frame(false, Opcode::Binary, &[1; 600], MASK),
            client_frame(true, Opcode::Continuation, &[2; 400], MASK),
        ]
        .concat();
        let transcript = decode(1000, &stream);
        assert_eq!(transcript.error, None);
        assert_eq!(transcript.events.len(), 1);
        // A zero limit allows only empty messages; control frames are apart.
        let empty = [
            client_frame(true, Opcode::Text, b"", MASK),
            client_frame(true, Opcode::Ping, b"p", MASK),
        ]
        .concat();
        assert_eq!(
            decode(0, &empty).events,
            [text(""), OwnedEvent::Ping(b"p".to_vec())]
        );
    }

    // --- the decoder: UTF-8 fails fast -------------------------------------

    /// Autobahn 6.4.x: invalid UTF-8 must fail at the bad byte, not at the
    /// end of the frame or the message.
    #[test]
    fn invalid_utf8_fails_at_the_first_bad_byte() {
        // 6.4.1-like: a fragment with valid text, then a fragment whose
        // first bytes are invalid (F4 90 is past U+10FFFF), then more.
        let payload = "κόσμε".as_bytes();
        let bad = b"\xf4\x90\x80\x80edited";
        for (frames, bad_at) in [
            // Single frame: bad byte inside a partly received payload.
            (
                client_frame(true, Opcode::Text, &[payload, bad].concat(), MASK),
                6 + payload.len() + 1,
            ),
            // Fragmented: bad byte in the second fragment.
            (
                [
                    client_frame(false, Opcode::Text, payload, MASK),
                    client_frame(false, Opcode::Continuation, bad, MASK),
                ]
                .concat(),
                6 + payload.len() + 6 + 1,
            ),
        ] {
            let mut decoder = Decoder::new(1000);
            // Everything before the bad byte is accepted...
            assert_eq!(decoder.feed(&frames[..bad_at]), Ok((bad_at, None)));
            // ...and the bad byte alone fails.
            assert_eq!(
                decoder.feed(&frames[bad_at..=bad_at]),
                Err(WsError::BadUtf8)
            );
        }
    }

    #[test]
    fn text_may_not_end_inside_a_character() {
        // "€" is E2 82 AC; cut after two bytes, across fragments.
        let split = [
            client_frame(false, Opcode::Text, b"\xe2", MASK),
            client_frame(true, Opcode::Continuation, b"\x82\xac", MASK),
        ]
        .concat();
        assert_eq!(events(&split), [text("€")]);
        let unfinished = [
            client_frame(false, Opcode::Text, b"\xe2", MASK),
            client_frame(true, Opcode::Continuation, b"\x82", MASK),
        ]
        .concat();
        assert_eq!(error(100, &unfinished), WsError::BadUtf8);
        // Binary messages are not UTF-8-checked.
        let binary = client_frame(true, Opcode::Binary, b"\xe2\x82", MASK);
        assert_eq!(events(&binary), [OwnedEvent::Binary(b"\xe2\x82".to_vec())]);
    }

    // --- the decoder: close frames -------------------------------------------

    #[test]
    fn close_frames() {
        let close = |body: &[u8]| client_frame(true, Opcode::Close, body, MASK);
        assert_eq!(
            events(&close(b"")),
            [OwnedEvent::Close(None, String::new())]
        );
        assert_eq!(
            events(&close(b"\x03\xe8")),
            [OwnedEvent::Close(Some(1000), String::new())]
        );
        let body = [&[0x0F, 0xA0][..], "bye ✓".as_bytes()].concat();
        assert_eq!(
            events(&close(&body)),
            [OwnedEvent::Close(Some(4000), "bye ✓".into())]
        );
        let longest = [&[0x03, 0xE8][..], &[b'r'; 123]].concat();
        assert_eq!(events(&close(&longest)).len(), 1);
    }

    #[test]
    fn received_close_codes() {
        // Autobahn 7.7.x sends these and expects a clean close: valid.
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_received_close_code(code), "{code}");
        }
        // Autobahn 7.9.x sends these and expects 1002: invalid.
        for code in [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999] {
            assert!(!is_valid_received_close_code(code), "{code}");
            let frame = client_frame(true, Opcode::Close, &code.to_be_bytes(), MASK);
            assert_eq!(error(100, &frame), WsError::BadCloseCode(code));
            assert_eq!(
                WsError::BadCloseCode(code).close_code(),
                close::PROTOCOL_ERROR
            );
        }
        // Registered with IANA after RFC 6455: valid. 1015: never sent.
        for code in [1012, 1013, 1014] {
            assert!(is_valid_received_close_code(code));
        }
        for code in [1015, 5000, u16::MAX] {
            assert!(!is_valid_received_close_code(code));
        }
        let valid = (0..=u16::MAX)
            .filter(|&c| is_valid_received_close_code(c))
            .count();
        assert_eq!(valid, 4 + 8 + 2000);
        // Our own codes are all valid to receive.
        for code in [
            close::NORMAL,
            close::GOING_AWAY,
            close::PROTOCOL_ERROR,
            close::UNSUPPORTED_DATA,
            close::INVALID_PAYLOAD,
            close::POLICY,
            close::MESSAGE_TOO_BIG,
            close::INTERNAL,
        ] {
            assert!(is_valid_received_close_code(code));
        }
    }

    #[test]
    fn encode_close_fits_a_control_frame() {
        let mut out = Vec::new();
        encode_close(&mut out, close::GOING_AWAY, "bye");
        assert_eq!(out, [0x88, 0x05, 0x03, 0xE9, b'b', b'y', b'e']);
        // A long reason is cut at a character boundary: "é" is 2 bytes, so
        // 62 of them (124 bytes) become 61 (122 bytes).
        let mut out = Vec::new();
        encode_close(&mut out, close::INTERNAL, &"é".repeat(62));
        assert_eq!(out[1], 2 + 122);
        let Ok(Status::Complete((header, 2))) = parse_frame_header(&out) else {
            panic!("{out:02x?}");
        };
        assert_eq!(header.payload_len, 124);
        assert_eq!(
            parse_close_payload(&out[2..]),
            Ok((Some(1011), "é".repeat(61).as_str()))
        );
        let mut out = Vec::new();
        encode_close(&mut out, close::NORMAL, "");
        assert_eq!(out, [0x88, 0x02, 0x03, 0xE8]);
    }

    // --- the decoder: streams ------------------------------------------------

    /// A stream with a bit of everything: fragments with control frames
    /// between them, every length form, empty frames, text and binary.
    /// `big_len` over 65535 gives a frame with a 64-bit length.
    fn mixed_stream(big_len: u32) -> (Vec<u8>, Vec<OwnedEvent>) {
        let long_text = "ünïcödé ".repeat(40); // 360 bytes: 16-bit length
        let big: Vec<u8> = (0..big_len).map(|i| (i % 251) as u8).collect();
        let frames = [
            client_frame(true, Opcode::Text, b"", MASK),
            client_frame(
                false,
                Opcode::Text,
                "ab😀".as_bytes().split_at(4).0,
                [1, 2, 3, 4],
            ),
            client_frame(true, Opcode::Ping, b"are you there?", [9, 8, 7, 6]),
            client_frame(false, Opcode::Continuation, b"", MASK),
            client_frame(true, Opcode::Pong, b"", MASK),
            client_frame(
                true,
                Opcode::Continuation,
                "ab😀".as_bytes().split_at(4).1,
                [0, 0, 0, 0],
            ),
            client_frame(true, Opcode::Binary, &big, [0xFF, 0, 0xFF, 0]),
            client_frame(false, Opcode::Binary, b"x", MASK),
            client_frame(true, Opcode::Continuation, b"yz", MASK),
            client_frame(true, Opcode::Text, long_text.as_bytes(), MASK),
            client_frame(true, Opcode::Close, b"\x03\xe8done", MASK),
        ];
        let events = vec![
            text(""),
            OwnedEvent::Ping(b"are you there?".to_vec()),
            OwnedEvent::Pong(Vec::new()),
            text("ab😀"),
            OwnedEvent::Binary(big),
            OwnedEvent::Binary(b"xyz".to_vec()),
            OwnedEvent::Text(long_text),
            OwnedEvent::Close(Some(1000), "done".into()),
        ];
        (frames.concat(), events)
    }

    #[test]
    fn one_byte_at_a_time_all_at_once_and_every_split_agree() {
        // Every split point of a stream of small frames...
        let (stream, want) = mixed_stream(300);
        let whole = decode(1 << 20, &stream);
        assert_eq!(whole.events, want);
        assert_eq!(whole.error, None);
        assert_eq!(decode_reads(1 << 20, stream.chunks(1)), whole);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_reads(1 << 20, [a, b]), whole, "cut at {cut}");
        }
        // ...and reads of many sizes through one with a 64 KiB frame.
        let (stream, want) = mixed_stream(70_000);
        let whole = decode(1 << 20, &stream);
        assert_eq!(whole.events, want);
        for size in [1, 2, 3, 5, 13, 64, 1000, 4096] {
            assert_eq!(
                decode_reads(1 << 20, stream.chunks(size)),
                whole,
                "reads of {size}"
            );
        }
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete() {
        let frame = client_frame(true, Opcode::Text, "hello wörld".as_bytes(), MASK);
        for cut in 0..frame.len() {
            let mut decoder = Decoder::new(100);
            assert_eq!(
                decoder.feed(&frame[..cut]),
                Ok((cut, None)),
                "prefix of {cut}"
            );
            // A partial header is buffered until it is whole (6 bytes:
            // 2 + the masking key); then the payload bytes are.
            let buffered = if cut < 6 { cut } else { cut - 6 };
            assert_eq!(decoder.buffered_bytes(), buffered, "prefix of {cut}");
        }
    }

    #[test]
    fn consumed_stops_at_the_end_of_the_frame() {
        let stream = [
            client_frame(true, Opcode::Text, b"one", MASK),
            client_frame(true, Opcode::Binary, b"two", MASK),
        ]
        .concat();
        let mut decoder = Decoder::new(100);
        let (used, event) = decoder.feed(&stream).unwrap();
        assert_eq!((used, event), (9, Some(Event::Text("one"))));
        let (used, event) = decoder.feed(&stream[9..]).unwrap();
        assert_eq!((used, event), (9, Some(Event::Binary(b"two"))));
        assert_eq!(decoder.feed(&[]), Ok((0, None)));
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn message_buffer_never_outgrows_the_limit() {
        let max = 100_000;
        let payload: Vec<u8> = (0..max).map(|i| i as u8).collect();
        // Many small fragments, then one big frame in small reads.
        let mut stream = client_frame(false, Opcode::Binary, &payload[..1], MASK);
        for chunk in payload[1..].chunks(997) {
            stream.extend(client_frame(false, Opcode::Continuation, chunk, MASK));
        }
        stream.extend(client_frame(true, Opcode::Continuation, b"", MASK));
        stream.extend(client_frame(true, Opcode::Binary, &payload, MASK));
        let mut decoder = Decoder::new(max);
        let mut delivered = 0;
        for mut read in stream.chunks(4096) {
            loop {
                let (used, event) = decoder.feed(read).unwrap();
                read = &read[used..];
                let more = match event {
                    Some(Event::Binary(bytes)) => {
                        assert_eq!(bytes, payload);
                        delivered += 1;
                        true
                    }
                    Some(other) => panic!("{other:?}"),
                    None => false,
                };
                assert!(decoder.message_bytes.capacity() <= max);
                if !more {
                    break;
                }
            }
        }
        assert_eq!(delivered, 2);
        // A big delivered message is freed by the next feed.
        assert_eq!(decoder.feed(&[]), Ok((0, None)));
        assert_eq!(
            (decoder.buffered_bytes(), decoder.message_bytes.capacity()),
            (0, 0)
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut encoded = 0;
        for _ in 0..300 {
            let len = rng.below(600);
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            encoded += fuzz_round_trip(&data).len();
        }
        // The messages really were there (about 300 * 300 bytes of input).
        assert!(encoded > 50_000, "{encoded}");
    }

    // --- UTF-8 validator against std -------------------------------------

    /// std's answer to "is this a prefix of some valid UTF-8?": valid, or
    /// invalid only because it stops inside a character.
    fn std_valid_prefix(bytes: &[u8]) -> bool {
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(error) => error.error_len().is_none(),
        }
    }

    /// Index of the first byte our validator refuses, fed one byte at a
    /// time, and whether it ended at a character boundary.
    fn ours(bytes: &[u8]) -> (Option<usize>, bool) {
        let mut validator = Utf8Validator::new();
        for (i, byte) in bytes.iter().enumerate() {
            if validator.feed(std::slice::from_ref(byte)).is_err() {
                return (Some(i), false);
            }
        }
        (None, validator.is_complete())
    }

    fn check_against_std(bytes: &[u8]) {
        let first_bad = (1..=bytes.len())
            .find(|&n| !std_valid_prefix(&bytes[..n]))
            .map(|n| n - 1);
        let complete = first_bad.is_none() && std::str::from_utf8(bytes).is_ok();
        assert_eq!(ours(bytes), (first_bad, complete), "{bytes:02x?}");
        // Any split: fed in two pieces, same verdict.
        let whole_ok = first_bad.is_none();
        for cut in 0..=bytes.len() {
            let mut validator = Utf8Validator::new();
            let ok = validator.feed(&bytes[..cut]).is_ok() && validator.feed(&bytes[cut..]).is_ok();
            assert_eq!(ok, whole_ok, "{bytes:02x?} cut {cut}");
            assert_eq!(ok && validator.is_complete(), complete);
        }
    }

    #[test]
    fn utf8_all_strings_of_up_to_two_bytes() {
        for a in 0..=255u8 {
            check_against_std(&[a]);
            for b in 0..=255u8 {
                check_against_std(&[a, b]);
            }
        }
    }

    /// Boundary bytes of every range in Table 3-7.
    const INTERESTING: [u8; 22] = [
        0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
        0xEC, 0xED, 0xEE, 0xF0, 0xF3, 0xF4, 0xF5,
    ];

    #[test]
    fn utf8_three_and_four_bytes_from_boundary_values() {
        for &a in &INTERESTING {
            for &b in &INTERESTING {
                for &c in &INTERESTING {
                    check_against_std(&[a, b, c]);
                    for &d in &INTERESTING[3..9] {
                        check_against_std(&[a, b, c, d]);
                    }
                }
            }
        }
    }

    #[test]
    fn utf8_every_scalar_value_and_every_surrogate() {
        let mut buf = [0; 4];
        let mut validator = Utf8Validator::new();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            validator.feed(c.encode_utf8(&mut buf).as_bytes()).unwrap();
            assert!(validator.is_complete());
        }
        for surrogate in 0xD800..=0xDFFFu32 {
            let bytes = [
                0xED,
                0xA0 | ((surrogate >> 6) & 0x1F) as u8,
                0x80 | (surrogate & 0x3F) as u8,
            ];
            assert_eq!(ours(&bytes), (Some(1), false));
        }
        // Overlong "/" in 2, 3 and 4 bytes, and U+110000.
        for bytes in [
            &[0xC0, 0xAF][..],
            &[0xE0, 0x80, 0xAF],
            &[0xF0, 0x80, 0x80, 0xAF],
            &[0xF4, 0x90, 0x80, 0x80],
        ] {
            assert_eq!(ours(bytes).0, Some(if bytes[0] == 0xC0 { 0 } else { 1 }));
        }
    }

    #[test]
    fn utf8_random_strings_in_every_split() {
        let mut rng = XorShift(12345);
        for _ in 0..3000 {
            let len = rng.below(24);
            let mut bytes = Vec::new();
            while bytes.len() < len {
                match rng.below(4) {
                    // Mostly valid characters of every length...
                    0 | 1 => {
                        let c = char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{FFFD}');
                        bytes.extend_from_slice(c.to_string().as_bytes());
                    }
                    2 => bytes.extend_from_slice("aé€😀".as_bytes()),
                    // ...with boundary bytes dropped in.
                    _ => bytes.push(INTERESTING[rng.below(INTERESTING.len())]),
                }
            }
            check_against_std(&bytes);
            // The same bytes as a text message, split everywhere.
            let frame = client_frame(true, Opcode::Text, &bytes, MASK);
            let whole = decode(1000, &frame);
            assert_eq!(whole.error.is_none(), std::str::from_utf8(&bytes).is_ok());
            for cut in 0..=frame.len() {
                let (a, b) = frame.split_at(cut);
                assert_eq!(decode_reads(1000, [a, b]), whole);
            }
        }
    }

    #[test]
    fn skip_ascii_stops_at_the_first_non_ascii_byte() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![b'a'; len];
                if at < len {
                    bytes[at] = 0x80;
                }
                assert_eq!(skip_ascii(&bytes).len(), len - at);
            }
        }
    }

    // --- fuzz entry points -------------------------------------------------

    #[test]
    fn fuzz_frames_on_generated_input() {
        let (stream, _) = mixed_stream(300);
        for config in [
            [0u8, 1, 7, 31],
            [4, 2, 3, 5],
            [5, 0, 0, 0],
            [1, 200, 1, 9],
            [2, 3, 2, 1],
        ] {
            fuzz_frames(&[&config[..], &stream].concat());
        }
        let mut rng = XorShift(7);
        for _ in 0..500 {
            let len = rng.below(300);
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            fuzz_frames(&data);
        }
        fuzz_frames(&[]);
    }

    #[test]
    fn fuzz_handshake_on_real_requests() {
        let chrome = b"GET /stream HTTP/1.1\r\nHost: pi:8080\r\nConnection: Upgrade\r\n\
            Upgrade: websocket\r\nOrigin: http://pi:8080\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        fuzz_handshake(chrome);
        // What the fuzz target sees: parse_head and validate_handshake
        // together accept this request (so the Ok branch is exercised).
        let mut headers = [Header::default(); crate::proto::http::MAX_HEADERS];
        let limits = crate::proto::http::Limits {
            max_head_bytes: 8 * 1024,
            max_target_bytes: 2 * 1024,
        };
        let parsed = crate::proto::http::parse_head(chrome, &mut 0, &limits, &mut headers);
        let Ok(Status::Complete((head, _))) = parsed else {
            panic!("{parsed:?}");
        };
        let handshake = validate_handshake(&head).unwrap();
        assert_eq!(handshake.origin, Some(&b"http://pi:8080"[..]));
        // Flip the case of each byte in turn, and cut at each byte.
        for cut in 0..chrome.len() {
            fuzz_handshake(&chrome[..cut]);
            let mut mutated = chrome.to_vec();
            mutated[cut] ^= 0x20;
            fuzz_handshake(&mutated);
        }
        fuzz_handshake(b"");
    }

    /// A tiny deterministic PRNG (xorshift64*), so tests need no crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }
}
