//! HTTP/1.1 message heads for the fast path: a strict parser for the common
//! subset of requests and for responses, and a scanner that finds the end of
//! a chunked body without decoding it (the bytes are relayed as they are).
//!
//! Sans-IO: functions take the bytes received so far and say whether a head
//! is complete, incomplete, or outside what the fast path handles. Anything
//! unusual in a request (HTTP/1.0, `Transfer-Encoding`, `Upgrade`, `Expect`,
//! obsolete line folding, duplicate or odd `Content-Length`, ...) is
//! [`ReqParse::Unsupported`]: the connection is handed to hyper, which
//! decides (including the 400 for malformed input). RFC 9112 section 2-7.

use std::ops::Range;

/// Most header fields a head may carry (hyper's default too).
pub const MAX_HEADERS: usize = 100;

/// One header field: byte ranges of name and value (value without
/// surrounding whitespace) in the buffer the head was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// A parsed request head (fast-path subset: `HTTP/1.1`, origin-form target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReqHead {
    /// Length of the head including the final CRLF CRLF.
    pub len: usize,
    pub method: Range<usize>,
    pub target: Range<usize>,
    pub fields: Vec<Field>,
    /// `Content-Length`, 0 when absent.
    pub content_length: u64,
    /// The client asked to close after this exchange (`Connection: close`).
    pub close: bool,
    /// Index in `fields` of `Host`.
    pub host: Option<usize>,
}

/// Outcome of parsing a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReqParse {
    Complete(ReqHead),
    /// More bytes are needed.
    Partial,
    /// Valid or not, this is for hyper to handle.
    Unsupported,
}

/// How a response body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD request, 1xx, 204, 304).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespHead {
    pub len: usize,
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: Range<usize>,
    pub fields: Vec<Field>,
    pub framing: Framing,
    /// The server keeps the connection open after this response
    /// (`HTTP/1.1` without `Connection: close`).
    pub keep_alive: bool,
}

/// Outcome of parsing a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespParse {
    Complete(RespHead),
    Partial,
    /// Not a valid HTTP/1 response head.
    Invalid(&'static str),
}

/// `tchar` of RFC 9110 section 5.6.2.
fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// Field value octet: VCHAR, SP, HTAB or obs-text.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        match buf[i..].iter().position(|&b| b == b'\r') {
            None => return None,
            Some(p) => {
                let at = i + p;
                if at + 1 >= buf.len() {
                    return None;
                }
                if buf[at + 1] == b'\n' {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// Whether the buffer holds a complete head (an empty line after the start
/// line). `None` if not yet.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Eq ignoring ASCII case.
pub fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

enum FieldsError {
    /// The head is not for the fast path / not valid.
    Bad(&'static str),
}

/// Parse header lines from `at` up to the empty line; returns the fields.
fn parse_fields(buf: &[u8], mut at: usize, end: usize) -> Result<Vec<Field>, FieldsError> {
    let mut fields = Vec::with_capacity(16);
    loop {
        let Some(eol) = find_crlf(buf, at) else {
            return Err(FieldsError::Bad("unterminated line"));
        };
        if eol == at {
            // The empty line.
            if eol + 2 != end {
                return Err(FieldsError::Bad("head ends early"));
            }
            return Ok(fields);
        }
        let line = &buf[at..eol];
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(FieldsError::Bad("obsolete line folding"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(FieldsError::Bad("field without colon"));
        };
        if colon == 0 || !line[..colon].iter().all(|&b| is_tchar(b)) {
            return Err(FieldsError::Bad("bad field name"));
        }
        let mut vs = colon + 1;
        let mut ve = line.len();
        while vs < ve && (line[vs] == b' ' || line[vs] == b'\t') {
            vs += 1;
        }
        while ve > vs && (line[ve - 1] == b' ' || line[ve - 1] == b'\t') {
            ve -= 1;
        }
        if !line[vs..ve].iter().all(|&b| is_value_byte(b)) {
            return Err(FieldsError::Bad("bad field value"));
        }
        if fields.len() == MAX_HEADERS {
            return Err(FieldsError::Bad("too many fields"));
        }
        fields.push(Field {
            name: at..at + colon,
            value: at + vs..at + ve,
        });
        at = eol + 2;
    }
}

/// Comma-separated tokens of a field value, trimmed, non-empty.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').filter_map(|t| {
        let s = t.iter().position(|&b| b != b' ' && b != b'\t')?;
        let e = t.iter().rposition(|&b| b != b' ' && b != b'\t')?;
        Some(&t[s..=e])
    })
}

/// Parse a request head at the start of `buf`. An incomplete head is
/// `Partial` however long it is: the caller enforces its size limit.
pub fn parse_request(buf: &[u8]) -> ReqParse {
    // Leading empty lines before a request are allowed (RFC 9112 2.2);
    // leave them to hyper.
    let Some(end) = head_end(buf) else {
        // Reject early what can never become a fast-path request line.
        if let Some(&b) = buf.first() {
            if !is_tchar(b) {
                return ReqParse::Unsupported;
            }
        }
        return ReqParse::Partial;
    };
    let Some(eol) = find_crlf(buf, 0) else {
        return ReqParse::Unsupported;
    };
    let line = &buf[..eol];
    let Some(sp1) = line.iter().position(|&b| b == b' ') else {
        return ReqParse::Unsupported;
    };
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) || method == b"CONNECT" {
        return ReqParse::Unsupported;
    }
    let rest = &line[sp1 + 1..];
    let Some(sp2) = rest.iter().position(|&b| b == b' ') else {
        return ReqParse::Unsupported;
    };
    let target = &rest[..sp2];
    if target.first() != Some(&b'/') || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return ReqParse::Unsupported;
    }
    if &rest[sp2 + 1..] != b"HTTP/1.1" {
        return ReqParse::Unsupported;
    }
    let fields = match parse_fields(buf, eol + 2, end) {
        Ok(f) => f,
        Err(FieldsError::Bad(_)) => return ReqParse::Unsupported,
    };
    let mut content_length: Option<u64> = None;
    let mut close = false;
    let mut host = None;
    for (i, f) in fields.iter().enumerate() {
        let name = &buf[f.name.clone()];
        let value = &buf[f.value.clone()];
        if eq_ic(name, b"content-length") {
            let Some(n) = parse_u64(value) else {
                return ReqParse::Unsupported;
            };
            if content_length.is_some_and(|c| c != n) {
                return ReqParse::Unsupported;
            }
            content_length = Some(n);
        } else if eq_ic(name, b"transfer-encoding")
            || eq_ic(name, b"upgrade")
            || eq_ic(name, b"expect")
            || eq_ic(name, b"http2-settings")
        {
            return ReqParse::Unsupported;
        } else if eq_ic(name, b"connection") {
            for t in tokens(value) {
                if eq_ic(t, b"close") {
                    close = true;
                } else if eq_ic(t, b"upgrade") {
                    return ReqParse::Unsupported;
                }
            }
        } else if eq_ic(name, b"host") {
            if host.is_some() {
                return ReqParse::Unsupported;
            }
            host = Some(i);
        }
    }
    // A request without Host is invalid in HTTP/1.1 (RFC 9112 3.2): hyper
    // answers it.
    if host.is_none() {
        return ReqParse::Unsupported;
    }
    ReqParse::Complete(ReqHead {
        len: end,
        method: 0..sp1,
        target: sp1 + 1..sp1 + 1 + sp2,
        fields,
        content_length: content_length.unwrap_or(0),
        close,
        host,
    })
}

/// Parse a response head at the start of `buf`; `head_request` says the
/// request was `HEAD` (no body whatever the head says).
pub fn parse_response(buf: &[u8], head_request: bool) -> RespParse {
    let Some(end) = head_end(buf) else {
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return RespParse::Invalid("not an HTTP/1 response");
        }
        return RespParse::Partial;
    };
    let Some(eol) = find_crlf(buf, 0) else {
        return RespParse::Invalid("no status line");
    };
    let line = &buf[..eol];
    let http11 = line.starts_with(b"HTTP/1.1 ");
    if !http11 && !line.starts_with(b"HTTP/1.0 ") {
        return RespParse::Invalid("not HTTP/1.0 or 1.1");
    }
    if line.len() < 12 || !line[9..12].iter().all(u8::is_ascii_digit) {
        return RespParse::Invalid("bad status code");
    }
    let status = line[9..12]
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    if !(100..=999).contains(&status) {
        return RespParse::Invalid("bad status code");
    }
    let reason = if line.len() == 12 {
        12..12
    } else if line[12] == b' ' && line[13..].iter().all(|&b| is_value_byte(b)) {
        13..eol
    } else {
        return RespParse::Invalid("bad reason phrase");
    };
    let fields = match parse_fields(buf, eol + 2, end) {
        Ok(f) => f,
        Err(FieldsError::Bad(why)) => return RespParse::Invalid(why),
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut close = !http11;
    for f in &fields {
        let name = &buf[f.name.clone()];
        let value = &buf[f.value.clone()];
        if eq_ic(name, b"content-length") {
            let Some(n) = parse_u64(value) else {
                return RespParse::Invalid("bad content-length");
            };
            if content_length.is_some_and(|c| c != n) {
                return RespParse::Invalid("conflicting content-length");
            }
            content_length = Some(n);
        } else if eq_ic(name, b"transfer-encoding") {
            te = true;
            // Chunked only counts as the final coding.
            chunked = tokens(value).last().is_some_and(|t| eq_ic(t, b"chunked"));
        } else if eq_ic(name, b"connection") {
            for t in tokens(value) {
                if eq_ic(t, b"close") {
                    close = true;
                } else if eq_ic(t, b"keep-alive") && !http11 {
                    // An HTTP/1.0 server's keep-alive is not relied upon.
                }
            }
        }
    }
    let framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::None
    } else if te {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    RespParse::Complete(RespHead {
        len: end,
        status,
        reason,
        fields,
        keep_alive: !close && framing != Framing::Close,
        framing,
    })
}

/// Finds the end of a chunked body in the bytes that pass by, without
/// changing them (RFC 9112 section 7.1).
#[derive(Debug, Clone, Default)]
pub struct ChunkScanner {
    state: ChunkState,
    /// The chunk size being read.
    size: u64,
    /// Bytes seen on the current size or trailer line (bounded).
    line: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of a chunk size.
    #[default]
    Size,
    /// After the size: extensions up to CR.
    Ext,
    /// Expecting LF after the size line.
    SizeLf,
    /// Inside chunk data: bytes left.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Expecting LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body ended.
    Done,
}

/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// A scanner result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// All of the input belongs to the body, which goes on.
    More,
    /// The body ends after this many bytes of the input.
    End(usize),
    /// Not valid chunked coding.
    Invalid,
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl ChunkScanner {
    /// Whether the body has ended.
    #[cfg(test)]
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Feed the next bytes of the body.
    pub fn feed(&mut self, input: &[u8]) -> Scan {
        let mut i = 0;
        while i < input.len() {
            if let ChunkState::Data(left) = self.state {
                let avail = (input.len() - i) as u64;
                let take = avail.min(left);
                // `take` <= avail, which came from a usize.
                i += usize::try_from(take).unwrap_or(input.len() - i);
                self.state = if take == left {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data(left - take)
                };
                continue;
            }
            if self.state == ChunkState::Done {
                return Scan::End(i);
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                ChunkState::Size => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Scan::Invalid;
                    }
                    match (b, hex_digit(b)) {
                        (_, Some(d)) => {
                            let Some(v) = self
                                .size
                                .checked_mul(16)
                                .and_then(|v| v.checked_add(u64::from(d)))
                            else {
                                return Scan::Invalid;
                            };
                            self.size = v;
                            ChunkState::Size
                        }
                        (b'\r', None) if self.line > 1 => ChunkState::SizeLf,
                        (b';' | b' ' | b'\t', None) if self.line > 1 => ChunkState::Ext,
                        _ => return Scan::Invalid,
                    }
                }
                ChunkState::Ext => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Scan::Invalid;
                    }
                    match b {
                        b'\r' => ChunkState::SizeLf,
                        b'\n' => return Scan::Invalid,
                        _ => ChunkState::Ext,
                    }
                }
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Scan::Invalid;
                    }
                    let size = std::mem::take(&mut self.size);
                    self.line = 0;
                    if size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data(size)
                    }
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Scan::Invalid;
                    }
                    ChunkState::DataLf
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Scan::Invalid;
                    }
                    self.line = 0;
                    ChunkState::Size
                }
                ChunkState::TrailerStart => match b {
                    b'\r' => ChunkState::EndLf,
                    b'\n' => return Scan::Invalid,
                    _ => {
                        self.line = 1;
                        ChunkState::Trailer
                    }
                },
                ChunkState::Trailer => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Scan::Invalid;
                    }
                    match b {
                        b'\r' => ChunkState::TrailerLf,
                        b'\n' => return Scan::Invalid,
                        _ => ChunkState::Trailer,
                    }
                }
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Scan::Invalid;
                    }
                    ChunkState::TrailerStart
                }
                ChunkState::EndLf => {
                    if b != b'\n' {
                        return Scan::Invalid;
                    }
                    self.state = ChunkState::Done;
                    return Scan::End(i);
                }
                // Handled before the byte was taken.
                ChunkState::Data(_) | ChunkState::Done => return Scan::Invalid,
            };
        }
        if self.state == ChunkState::Done {
            Scan::End(i)
        } else {
            Scan::More
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(s: &str) -> ReqParse {
        parse_request(s.as_bytes())
    }

    fn field<'a>(buf: &'a [u8], h: &ReqHead, name: &str) -> Option<&'a [u8]> {
        h.fields
            .iter()
            .find(|f| eq_ic(&buf[f.name.clone()], name.as_bytes()))
            .map(|f| &buf[f.value.clone()])
    }

    #[test]
    fn simple_get_parses() {
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: example.org\r\nX-A:  spaced value \t\r\nConnection: keep-alive, Close\r\n\r\nNEXT";
        let ReqParse::Complete(h) = req(text) else {
            panic!("not complete")
        };
        let b = text.as_bytes();
        assert_eq!(&b[h.method.clone()], b"GET");
        assert_eq!(&b[h.target.clone()], b"/a?b=1");
        assert_eq!(h.len, text.len() - 4);
        assert_eq!(field(b, &h, "x-a"), Some(&b"spaced value"[..]));
        assert_eq!(field(b, &h, "HOST"), Some(&b"example.org"[..]));
        assert_eq!(h.host, Some(0));
        assert!(h.close);
        assert_eq!(h.content_length, 0);
    }

    #[test]
    fn partial_until_the_empty_line() {
        let full = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..full.find("\r\n\r\n").unwrap() + 3 {
            assert_eq!(req(&full[..cut]), ReqParse::Partial, "cut at {cut}");
        }
        let ReqParse::Complete(h) = req(full) else {
            panic!()
        };
        assert_eq!(h.content_length, 5);
        assert_eq!(&full[h.len..], "hello");
    }

    #[test]
    fn unusual_requests_go_to_hyper() {
        for text in [
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost x\r\nBad Header\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
            "GET / HTTP/1.1\r\n: empty\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "\r\nGET / HTTP/1.1\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(req(text), ReqParse::Unsupported, "{text:?}");
        }
        // Also before the head is complete when the first byte rules it out.
        assert_eq!(req("\r\n"), ReqParse::Unsupported);
    }

    #[test]
    fn duplicate_equal_content_length_is_one() {
        let ReqParse::Complete(h) =
            req("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc")
        else {
            panic!()
        };
        assert_eq!(h.content_length, 3);
    }

    #[test]
    fn too_many_fields_go_to_hyper() {
        let mut text = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            text.push_str(&format!("X-{i}: v\r\n"));
        }
        text.push_str("\r\n");
        assert_eq!(req(&text), ReqParse::Unsupported);
    }

    fn resp(s: &str, head: bool) -> RespParse {
        parse_response(s.as_bytes(), head)
    }

    #[test]
    fn response_framing() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                false,
                Framing::Length(12),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                Framing::Close,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::Close, false),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::None,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Framing::None,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                true,
                Framing::None,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n",
                false,
                Framing::Length(9),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\n",
                false,
                Framing::Length(9),
                false,
            ),
            (
                "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                false,
                Framing::None,
                true,
            ),
        ];
        for (text, head, framing, keep) in cases {
            let RespParse::Complete(h) = resp(text, head) else {
                panic!("{text:?}")
            };
            assert_eq!(h.framing, framing, "{text:?}");
            assert_eq!(h.keep_alive, keep, "{text:?}");
            assert_eq!(h.len, text.len());
        }
        let RespParse::Complete(h) =
            resp("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false)
        else {
            panic!()
        };
        assert_eq!(h.status, 404);
        assert_eq!(&b"HTTP/1.1 404 Not Found"[h.reason.clone()], b"Not Found");
        let RespParse::Complete(h) = resp("HTTP/1.1 200\r\n\r\n", false) else {
            panic!()
        };
        assert!(h.reason.is_empty());
    }

    #[test]
    fn bad_responses_are_invalid() {
        for text in [
            "HTTP/2.0 200 OK\r\n\r\n",
            "HTTP/1.1 2x0 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(
                matches!(resp(text, false), RespParse::Invalid(_)),
                "{text:?}"
            );
        }
        assert!(matches!(resp("garbage", false), RespParse::Invalid(_)));
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nX: y\r\n", false),
            RespParse::Partial
        );
    }

    #[test]
    fn chunk_scanner_finds_the_end_in_any_split() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut s = ChunkScanner::default();
            let (a, b) = body.split_at(split);
            let got = match s.feed(a) {
                Scan::End(n) => n,
                Scan::More => match s.feed(b) {
                    Scan::End(n) => split + n,
                    other => panic!("split {split}: {other:?}"),
                },
                Scan::Invalid => panic!("split {split}: invalid"),
            };
            assert_eq!(got, end, "split {split}");
            assert!(s.done());
        }
        // Byte by byte.
        let mut s = ChunkScanner::default();
        let mut seen = 0;
        for (i, b) in body.iter().enumerate() {
            match s.feed(std::slice::from_ref(b)) {
                Scan::More => {}
                Scan::End(n) => {
                    seen = i + n;
                    break;
                }
                Scan::Invalid => panic!("byte {i}"),
            }
        }
        assert_eq!(seen, end);
    }

    #[test]
    fn chunk_scanner_rejects_bad_coding() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXY",
            b"\r\n",
            b"5\nhello",
            b"fffffffffffffffff\r\n",
            b"0\r\nbad\ntrailer",
        ] {
            let mut s = ChunkScanner::default();
            assert_eq!(s.feed(bad), Scan::Invalid, "{bad:?}");
        }
        let mut s = ChunkScanner::default();
        assert_eq!(s.feed(&[b'1'; MAX_CHUNK_LINE + 1]), Scan::Invalid);
    }
}
