//! POP3 reply parsing from bytes that may arrive in any split (RFC 1939 §3, RFC 2449 §6, §8).
//!
//! Every parser here looks at a byte slice and either finds a whole line in it, answers
//! "incomplete" (`Ok(None)`) so the caller waits for more bytes, or fails. Lines end in CRLF;
//! a bare LF is tolerated because some servers send one. Lines are bounded by
//! [`MAX_LINE_LEN`], so a server that never sends a line break cannot make us buffer without
//! limit. Message bodies (RETR, TOP) are not line-bounded: [`BodyDecoder`] streams them out in
//! chunks as they arrive, undoing dot-stuffing (RFC 1939 §3) on the way.

use std::fmt::Write as _;

use thiserror::Error;

/// The longest status or listing line accepted, without its line ending.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// The most lines accepted in one CAPA, LIST or UIDL listing.
///
/// NOTE: a listing is collected in memory; this caps what a hostile server can make us hold.
pub const MAX_LISTING_LINES: usize = 1_000_000;

/// The longest APOP timestamp accepted (RFC 1939 §7 sets no limit; real ones are < 100).
const MAX_TIMESTAMP_LEN: usize = 512;

/// A reply that does not follow the protocol. Lines are shown escaped and truncated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// A line was longer than the limit (and may not even have ended yet).
    #[error("line from server is longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// The line is neither `+OK ...` nor `-ERR ...`.
    #[error("malformed status line: {line}")]
    Status { line: String },
    /// A line inside (or the text of) a reply does not have the expected shape.
    #[error("malformed {what} line: {line}")]
    Listing { what: &'static str, line: String },
    /// A listing had more than [`MAX_LISTING_LINES`] lines.
    #[error("listing has more than {limit} lines")]
    TooManyLines { limit: usize },
}

/// `+OK` or `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    Err,
}

/// An extended response code (RFC 2449 §8), e.g. `[IN-USE]` or `[SYS/TEMP]`.
///
/// Codes are hierarchical, separated by `/`; a known code with more levels than we know of
/// is reported as the known code (RFC 2449 §8: clients use the levels they understand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseCode {
    /// `IN-USE`: the maildrop is locked by another session (RFC 2449 §8.1.1).
    InUse,
    /// `LOGIN-DELAY`: logged in too recently (RFC 2449 §8.1.2).
    LoginDelay,
    /// `SYS/TEMP`: a temporary system problem; retry later (RFC 3206 §4).
    SysTemp,
    /// `SYS/PERM`: a permanent system problem; do not retry (RFC 3206 §4).
    SysPerm,
    /// `AUTH`: the credentials were wrong (RFC 3206 §5).
    Auth,
    /// Any other code, exactly as the server sent it (between the brackets).
    Other(String),
}

impl ResponseCode {
    /// Classify the text between `[` and `]`.
    pub fn parse(code: &str) -> ResponseCode {
        let mut levels = code.split('/');
        let first = levels.next().unwrap_or("");
        let second = levels.next();
        if first.eq_ignore_ascii_case("IN-USE") {
            ResponseCode::InUse
        } else if first.eq_ignore_ascii_case("LOGIN-DELAY") {
            ResponseCode::LoginDelay
        } else if first.eq_ignore_ascii_case("AUTH") {
            ResponseCode::Auth
        } else if first.eq_ignore_ascii_case("SYS")
            && second.is_some_and(|s| s.eq_ignore_ascii_case("TEMP"))
        {
            ResponseCode::SysTemp
        } else if first.eq_ignore_ascii_case("SYS")
            && second.is_some_and(|s| s.eq_ignore_ascii_case("PERM"))
        {
            ResponseCode::SysPerm
        } else {
            ResponseCode::Other(code.to_owned())
        }
    }

    /// The code as written on the wire (without brackets).
    pub fn as_str(&self) -> &str {
        match self {
            ResponseCode::InUse => "IN-USE",
            ResponseCode::LoginDelay => "LOGIN-DELAY",
            ResponseCode::SysTemp => "SYS/TEMP",
            ResponseCode::SysPerm => "SYS/PERM",
            ResponseCode::Auth => "AUTH",
            ResponseCode::Other(code) => code,
        }
    }
}

/// One status line: `+OK` or `-ERR`, an optional response code, and free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub kind: StatusKind,
    pub code: Option<ResponseCode>,
    /// The rest of the line after the indicator and code (lossy UTF-8, not sanitised).
    pub text: String,
}

impl Status {
    /// Whether this is `+OK`.
    pub fn is_ok(&self) -> bool {
        self.kind == StatusKind::Ok
    }
}

/// One line of a multi-line reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingLine<'a> {
    /// A content line, dot-unstuffed, without its line ending.
    Line(&'a [u8]),
    /// The terminating `.` line.
    End,
}

/// A capability from a CAPA listing (RFC 2449 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// `TOP` (RFC 2449 §6.1).
    Top,
    /// `USER` (RFC 2449 §6.2).
    User,
    /// `SASL mech...` (RFC 2449 §6.3), mechanism names upper-cased.
    Sasl(Vec<String>),
    /// `RESP-CODES` (RFC 2449 §6.4).
    RespCodes,
    /// `LOGIN-DELAY seconds [USER]` (RFC 2449 §6.5).
    LoginDelay { seconds: u32, per_user: bool },
    /// `PIPELINING` (RFC 2449 §6.6).
    Pipelining,
    /// `EXPIRE policy [USER]` (RFC 2449 §6.7).
    Expire { policy: Expire, per_user: bool },
    /// `UIDL` (RFC 2449 §6.8).
    Uidl,
    /// `IMPLEMENTATION text` (RFC 2449 §6.9).
    Implementation(String),
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// Anything else, or a known name with arguments we could not read.
    Other { name: String, args: Vec<String> },
}

/// How long the server keeps messages (RFC 2449 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expire {
    /// `NEVER`: messages stay until deleted.
    Never,
    /// Days after first retrieval; `0` means deleted at the end of the session.
    Days(u32),
}

/// Show a server line safely in an error: printable ASCII as-is, everything else as `\xNN`
/// (or `\r`, `\n`, `\t`), cut to about 100 characters.
pub fn escape_line(line: &[u8]) -> String {
    const SHOWN: usize = 100;
    let mut out = String::with_capacity(line.len().min(SHOWN) + 8);
    for &byte in line.iter().take(SHOWN) {
        match byte {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    if line.len() > SHOWN {
        let _ = write!(out, "... ({} bytes)", line.len());
    }
    out
}

/// Find the first whole line in `input`.
///
/// Returns the line without its CRLF (or bare LF) and the number of bytes it used, `Ok(None)`
/// if no line has ended yet, or [`ParseError::LineTooLong`] once the line exceeds `limit`.
pub fn find_line(input: &[u8], limit: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    // NOTE: search at most limit + 2 bytes (content, CR, LF) so a long tail costs nothing.
    let window = &input[..input.len().min(limit.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let content = &window[..lf];
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if content.len() > limit {
                return Err(ParseError::LineTooLong { limit });
            }
            Ok(Some((content, lf + 1)))
        }
        None if input.len() > limit.saturating_add(1) => Err(ParseError::LineTooLong { limit }),
        None => Ok(None),
    }
}

/// Parse one status line from the start of `input`.
///
/// Returns the status and the bytes consumed, or `Ok(None)` until a whole line has arrived.
pub fn parse_status_line(input: &[u8]) -> Result<Option<(Status, usize)>, ParseError> {
    match find_line(input, MAX_LINE_LEN)? {
        Some((line, used)) => Ok(Some((parse_status(line)?, used))),
        None => Ok(None),
    }
}

/// Parse a status line (without its line ending): `+OK [CODE] text` or `-ERR [CODE] text`.
pub fn parse_status(line: &[u8]) -> Result<Status, ParseError> {
    let (kind, rest) = if let Some(rest) = strip_prefix_ignore_case(line, b"+OK") {
        (StatusKind::Ok, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(line, b"-ERR") {
        (StatusKind::Err, rest)
    } else {
        return Err(ParseError::Status {
            line: escape_line(line),
        });
    };
    let rest = match rest {
        [] => rest,
        [b' ', tail @ ..] => tail,
        _ => {
            return Err(ParseError::Status {
                line: escape_line(line),
            });
        }
    };
    let (code, text) = split_response_code(rest);
    Ok(Status {
        kind,
        code,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// Split `[CODE] text` into the code and the text; text without a valid code is returned whole.
fn split_response_code(rest: &[u8]) -> (Option<ResponseCode>, &[u8]) {
    let Some(inner) = rest.strip_prefix(b"[") else {
        return (None, rest);
    };
    let Some(close) = inner.iter().position(|&b| b == b']') else {
        return (None, rest);
    };
    let code = &inner[..close];
    // RFC 2449 §8: resp-level = 1*rchar, rchar = %x21-2E / %x30-5C / %x5E-7F, levels joined
    // by "/".
    let valid = !code.is_empty()
        && code
            .split(|&b| b == b'/')
            .all(|level| !level.is_empty() && level.iter().all(|&b| (0x21..=0x7e).contains(&b)))
        && code.iter().all(|&b| b != b'[');
    if !valid {
        return (None, rest);
    }
    let text = &inner[close + 1..];
    let text = text.strip_prefix(b" ").unwrap_or(text);
    // The code is checked to be printable ASCII above, so this is lossless.
    let code = String::from_utf8_lossy(code);
    (Some(ResponseCode::parse(&code)), text)
}

fn strip_prefix_ignore_case<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        line.get(prefix.len()..)
    } else {
        None
    }
}

/// Parse one line of a multi-line listing (CAPA, LIST, UIDL) from the start of `input`.
///
/// The terminating `.` line gives [`ListingLine::End`]; a line starting with `.` otherwise
/// loses that dot (RFC 1939 §3).
pub fn parse_listing_line(input: &[u8]) -> Result<Option<(ListingLine<'_>, usize)>, ParseError> {
    let Some((line, used)) = find_line(input, MAX_LINE_LEN)? else {
        return Ok(None);
    };
    let parsed = match line.strip_prefix(b".") {
        Some([]) => ListingLine::End,
        Some(unstuffed) => ListingLine::Line(unstuffed),
        None => ListingLine::Line(line),
    };
    Ok(Some((parsed, used)))
}

/// A decimal number made only of ASCII digits (no sign, no spaces).
fn parse_decimal<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// Split a line into space-separated tokens, ignoring runs of spaces and tabs.
fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ' || b == b'\t')
        .filter(|t| !t.is_empty())
}

/// Two numbers at the start of a line; RFC 1939 §5 lets servers add more after them.
fn parse_two_numbers(line: &[u8], what: &'static str) -> Result<(u32, u64), ParseError> {
    let mut parts = tokens(line);
    let first = parts.next().and_then(parse_decimal::<u32>);
    let second = parts.next().and_then(parse_decimal::<u64>);
    match (first, second) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(ParseError::Listing {
            what,
            line: escape_line(line),
        }),
    }
}

/// Parse the text of a `+OK` reply to STAT: `count size` (RFC 1939 §5, the "drop listing").
pub fn parse_stat(text: &[u8]) -> Result<(u32, u64), ParseError> {
    parse_two_numbers(text, "stat")
}

/// Parse a scan listing, `msg size` (RFC 1939 §5, LIST). Message numbers start at 1.
pub fn parse_scan_line(line: &[u8]) -> Result<(u32, u64), ParseError> {
    let (msg, size) = parse_two_numbers(line, "scan listing")?;
    if msg == 0 {
        return Err(ParseError::Listing {
            what: "scan listing",
            line: escape_line(line),
        });
    }
    Ok((msg, size))
}

/// Parse a unique-id listing, `msg uid` (RFC 1939 §7, UIDL).
///
/// The uid is 1 to 70 characters in 0x21–0x7E; anything else is an error, so a uid is always
/// safe to store and show. Text after the uid is ignored.
pub fn parse_uidl_line(line: &[u8]) -> Result<(u32, String), ParseError> {
    let malformed = || ParseError::Listing {
        what: "unique-id listing",
        line: escape_line(line),
    };
    let mut parts = tokens(line);
    let msg = parts
        .next()
        .and_then(parse_decimal::<u32>)
        .filter(|&m| m > 0)
        .ok_or_else(malformed)?;
    let uid = parts.next().ok_or_else(malformed)?;
    if uid.len() > 70 || !uid.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(malformed());
    }
    Ok((msg, String::from_utf8_lossy(uid).into_owned()))
}

/// Parse one CAPA line (RFC 2449 §6). Names are matched case-insensitively.
pub fn parse_capability(line: &[u8]) -> Result<Capability, ParseError> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_ascii_whitespace();
    let Some(name) = parts.next() else {
        return Err(ParseError::Listing {
            what: "capability",
            line: escape_line(line),
        });
    };
    let args: Vec<String> = parts.map(str::to_owned).collect();
    let upper = name.to_ascii_uppercase();
    let per_user = args.get(1).is_some_and(|a| a.eq_ignore_ascii_case("USER"));
    let known = match (upper.as_str(), args.as_slice()) {
        ("TOP", []) => Some(Capability::Top),
        ("USER", []) => Some(Capability::User),
        ("SASL", mechs) => Some(Capability::Sasl(
            mechs.iter().map(|m| m.to_ascii_uppercase()).collect(),
        )),
        ("RESP-CODES", []) => Some(Capability::RespCodes),
        ("PIPELINING", []) => Some(Capability::Pipelining),
        ("UIDL", []) => Some(Capability::Uidl),
        ("STLS", []) => Some(Capability::Stls),
        ("LOGIN-DELAY", [seconds, ..]) => parse_decimal::<u32>(seconds.as_bytes())
            .map(|seconds| Capability::LoginDelay { seconds, per_user }),
        ("EXPIRE", [policy, ..]) => {
            let policy = if policy.eq_ignore_ascii_case("NEVER") {
                Some(Expire::Never)
            } else {
                parse_decimal::<u32>(policy.as_bytes()).map(Expire::Days)
            };
            policy.map(|policy| Capability::Expire { policy, per_user })
        }
        ("IMPLEMENTATION", _) => {
            // NOTE: the argument is free text; keep it as sent after the name.
            let rest = text.trim_start();
            let rest = rest.get(name.len()..).unwrap_or("").trim();
            Some(Capability::Implementation(rest.to_owned()))
        }
        _ => None,
    };
    Ok(known.unwrap_or(Capability::Other { name: upper, args }))
}

/// The APOP timestamp from a greeting's text: the first `<...>` (RFC 1939 §7), brackets
/// included, as the digest needs it. Only printable ASCII without spaces is accepted.
pub fn apop_timestamp(text: &str) -> Option<String> {
    let start = text.find('<')?;
    let after = text.get(start..)?;
    let end = after.find('>')?;
    let candidate = after.get(..=end)?;
    let inner = candidate.get(1..candidate.len() - 1)?;
    let ok = !inner.is_empty()
        && candidate.len() <= MAX_TIMESTAMP_LEN
        && inner
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'<');
    ok.then(|| candidate.to_owned())
}

/// The number at the start of a `+OK` text, e.g. `120` in `120 octets` (the size RETR replies
/// usually announce; RFC 1939 §5 example).
pub fn leading_number(text: &str) -> Option<u64> {
    let token = text.split_ascii_whitespace().next()?;
    parse_decimal(token.as_bytes())
}

/// Where the body decoder is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// At the start of a line.
    LineStart,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` and CR at the start of a line.
    DotCr,
    /// Inside a line.
    Mid,
    /// Saw the terminating `.` line.
    Finished,
}

/// Streams the body of a multi-line reply (RETR, TOP) out of input in any split.
///
/// It undoes dot-stuffing (a line starting with `.` loses that dot) and stops at the `.` line
/// (CRLF or bare LF). Line endings in the body are passed through as received. It holds no
/// bytes itself, so memory does not grow with the message.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: BodyState,
}

impl Default for BodyDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyDecoder {
    /// A decoder positioned right after the `+OK` line.
    pub fn new() -> Self {
        BodyDecoder {
            state: BodyState::LineStart,
        }
    }

    /// Whether the terminating `.` line has been seen.
    pub fn is_finished(&self) -> bool {
        self.state == BodyState::Finished
    }

    /// Decode as much of `input` as possible, appending body bytes to `out`.
    ///
    /// Returns how many bytes of `input` were used; after the terminator, nothing more is
    /// used, so the rest of `input` belongs to the next reply.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            match self.state {
                BodyState::Finished => break,
                BodyState::LineStart => {
                    if rest.first() == Some(&b'.') {
                        pos += 1;
                        self.state = BodyState::Dot;
                    } else {
                        self.state = BodyState::Mid;
                    }
                }
                BodyState::Dot => match rest.first() {
                    Some(b'\r') => {
                        pos += 1;
                        self.state = BodyState::DotCr;
                    }
                    Some(b'\n') => {
                        pos += 1;
                        self.state = BodyState::Finished;
                    }
                    // NOTE: RFC 1939 §3: a leading dot followed by anything else is stripped
                    // (normally it is the doubled dot of a stuffed line).
                    _ => self.state = BodyState::Mid,
                },
                BodyState::DotCr => {
                    if rest.first() == Some(&b'\n') {
                        pos += 1;
                        self.state = BodyState::Finished;
                    } else {
                        // ".\r" then something other than LF: the dot goes, the CR stays.
                        out.push(b'\r');
                        self.state = BodyState::Mid;
                    }
                }
                // NOTE: only a line that starts with a dot needs a look; everything up to the
                // next one is body as it stands, copied at once.
                BodyState::Mid => match memchr::memmem::find(rest, b"\n.") {
                    Some(lf) => {
                        out.extend_from_slice(&rest[..=lf]);
                        pos += lf + 1;
                        self.state = BodyState::LineStart;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        pos = input.len();
                        if rest.ends_with(b"\n") {
                            self.state = BodyState::LineStart;
                        }
                    }
                },
            }
        }
        pos
    }
}

/// Dot-stuff `body` and append it with the terminating `.` line to `out` (RFC 1939 §3).
///
/// The inverse of [`BodyDecoder`]: lines starting with `.` get a second one. If `body` does
/// not end with a line break, CRLF is added before the terminator.
pub fn dot_stuff(body: &[u8], out: &mut Vec<u8>) {
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !body.is_empty() && !body.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status(line: &[u8]) -> Status {
        parse_status(line).unwrap()
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status(b"+OK POP3 server ready"),
            Status {
                kind: StatusKind::Ok,
                code: None,
                text: "POP3 server ready".into()
            }
        );
        assert_eq!(status(b"+OK").text, "");
        assert_eq!(status(b"-ERR").kind, StatusKind::Err);
        assert_eq!(status(b"+ok lower").kind, StatusKind::Ok);
        let s = status(b"-ERR [IN-USE] mailbox locked");
        assert_eq!(s.kind, StatusKind::Err);
        assert_eq!(s.code, Some(ResponseCode::InUse));
        assert_eq!(s.text, "mailbox locked");
        let s = status(b"-ERR [LOGIN-DELAY] wait 15 minutes");
        assert_eq!(s.code, Some(ResponseCode::LoginDelay));
        assert_eq!(
            status(b"-ERR [SYS/TEMP] try later").code,
            Some(ResponseCode::SysTemp)
        );
        assert_eq!(
            status(b"-ERR [SYS/PERM] gone").code,
            Some(ResponseCode::SysPerm)
        );
        assert_eq!(
            status(b"-ERR [AUTH] bad password").code,
            Some(ResponseCode::Auth)
        );
        assert_eq!(
            status(b"-ERR [SYS/TEMP/DISK] full").code,
            Some(ResponseCode::SysTemp)
        );
        assert_eq!(
            status(b"-ERR [X-VENDOR/THING] hm").code,
            Some(ResponseCode::Other("X-VENDOR/THING".into()))
        );
        // Not a valid code: kept as text.
        let s = status(b"-ERR [oops no close");
        assert_eq!((s.code, s.text.as_str()), (None, "[oops no close"));
        let s = status(b"-ERR [A//B] x");
        assert_eq!((s.code, s.text.as_str()), (None, "[A//B] x"));
        let s = status(b"-ERR [] x");
        assert_eq!((s.code, s.text.as_str()), (None, "[] x"));
        assert_eq!(status(b"-ERR [IN-USE]").text, "");
    }

    #[test]
    fn malformed_status_lines() {
        for line in [
            &b"+WHAT"[..],
            b"+OKAY",
            b"OK",
            b"",
            b"* OK imap?",
            b"-ER",
            b"+O",
        ] {
            assert!(
                matches!(parse_status(line), Err(ParseError::Status { .. })),
                "{line:?}"
            );
        }
        let err = parse_status(b"+WHAT\x1b[31m").unwrap_err();
        assert_eq!(err.to_string(), "malformed status line: +WHAT\\x1b[31m");
    }

    #[test]
    fn status_line_framing() {
        assert_eq!(parse_status_line(b"+OK hi"), Ok(None));
        assert_eq!(parse_status_line(b"+OK hi\r"), Ok(None));
        let (s, used) = parse_status_line(b"+OK hi\r\n-ERR next").unwrap().unwrap();
        assert_eq!((s.text.as_str(), used), ("hi", 8));
        let (s, used) = parse_status_line(b"+OK bare\nrest").unwrap().unwrap();
        assert_eq!((s.text.as_str(), used), ("bare", 9));
    }

    #[test]
    fn overlong_lines_are_errors() {
        let mut long = b"+OK ".to_vec();
        long.resize(MAX_LINE_LEN + 10, b'x');
        assert_eq!(
            parse_status_line(&long),
            Err(ParseError::LineTooLong {
                limit: MAX_LINE_LEN
            })
        );
        // Exactly at the limit is fine, one more is not.
        let mut at_limit = vec![b'a'; 10];
        assert_eq!(find_line(&at_limit, 10), Ok(None));
        at_limit.push(b'\r');
        assert_eq!(find_line(&at_limit, 10), Ok(None));
        at_limit.push(b'\n');
        assert_eq!(find_line(&at_limit, 10).unwrap().unwrap().1, 12);
        let over = [b'a'; 12];
        assert!(find_line(&over, 10).is_err());
        assert!(find_line(b"aaaaaaaaaaa\n", 10).is_err());
    }

    #[test]
    fn listing_lines() {
        assert_eq!(
            parse_listing_line(b"1 120\r\n"),
            Ok(Some((ListingLine::Line(b"1 120"), 7)))
        );
        assert_eq!(
            parse_listing_line(b".\r\n"),
            Ok(Some((ListingLine::End, 3)))
        );
        assert_eq!(parse_listing_line(b".\n"), Ok(Some((ListingLine::End, 2))));
        assert_eq!(
            parse_listing_line(b"..\r\n"),
            Ok(Some((ListingLine::Line(b"."), 4)))
        );
        assert_eq!(parse_listing_line(b"."), Ok(None));
    }

    #[test]
    fn scan_stat_and_uidl_lines() {
        assert_eq!(parse_scan_line(b"1 120"), Ok((1, 120)));
        assert_eq!(parse_scan_line(b"2 200 extra info"), Ok((2, 200)));
        assert_eq!(parse_stat(b"2 320"), Ok((2, 320)));
        assert_eq!(parse_stat(b"0 0"), Ok((0, 0)));
        assert_eq!(parse_stat(b"5 99999999999"), Ok((5, 99_999_999_999)));
        for bad in [
            &b"1"[..],
            b"",
            b"x 1",
            b"1 -2",
            b"+1 2",
            b"0 10",
            b"99999999999 1",
        ] {
            assert!(parse_scan_line(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_uidl_line(b"1 whqtswO00WBw418f9t5JxYwZ"),
            Ok((1, "whqtswO00WBw418f9t5JxYwZ".into()))
        );
        let uid70 = "u".repeat(70);
        assert_eq!(
            parse_uidl_line(format!("3 {uid70}").as_bytes()),
            Ok((3, uid70))
        );
        let uid71 = "u".repeat(71);
        assert!(parse_uidl_line(format!("3 {uid71}").as_bytes()).is_err());
        for bad in [
            &b"1"[..],
            b"1 \x7f",
            b"1 caf\xc3\xa9",
            b"0 abc",
            b"a abc",
            b"",
        ] {
            assert!(parse_uidl_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn capabilities() {
        let cases: Vec<(&[u8], Capability)> = vec![
            (b"TOP", Capability::Top),
            (b"user", Capability::User),
            (
                b"SASL PLAIN login",
                Capability::Sasl(vec!["PLAIN".into(), "LOGIN".into()]),
            ),
            (b"RESP-CODES", Capability::RespCodes),
            (
                b"LOGIN-DELAY 900",
                Capability::LoginDelay {
                    seconds: 900,
                    per_user: false,
                },
            ),
            (
                b"LOGIN-DELAY 0 USER",
                Capability::LoginDelay {
                    seconds: 0,
                    per_user: true,
                },
            ),
            (b"PIPELINING", Capability::Pipelining),
            (
                b"EXPIRE NEVER",
                Capability::Expire {
                    policy: Expire::Never,
                    per_user: false,
                },
            ),
            (
                b"EXPIRE 31 USER",
                Capability::Expire {
                    policy: Expire::Days(31),
                    per_user: true,
                },
            ),
            (b"UIDL", Capability::Uidl),
            (
                b"IMPLEMENTATION Shlemazle Plotz v302",
                Capability::Implementation("Shlemazle Plotz v302".into()),
            ),
            (b"STLS", Capability::Stls),
            (
                b"X-FOO bar baz",
                Capability::Other {
                    name: "X-FOO".into(),
                    args: vec!["bar".into(), "baz".into()],
                },
            ),
            (
                b"LOGIN-DELAY soon",
                Capability::Other {
                    name: "LOGIN-DELAY".into(),
                    args: vec!["soon".into()],
                },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_capability(line), Ok(expected), "{line:?}");
        }
        assert!(parse_capability(b"  ").is_err());
    }

    #[test]
    fn apop_timestamps() {
        assert_eq!(
            apop_timestamp("POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            Some("<1896.697170952@dbc.mtview.ca.us>".into())
        );
        assert_eq!(apop_timestamp("Dovecot ready."), None);
        assert_eq!(apop_timestamp("a <> b"), None);
        assert_eq!(apop_timestamp("a <x y> b"), None);
        assert_eq!(apop_timestamp("a <unclosed"), None);
        assert_eq!(apop_timestamp("a <\u{e9}> b"), None);
    }

    #[test]
    fn escape_line_is_safe_and_bounded() {
        assert_eq!(escape_line(b"a\r\n\x1b\\\xff"), "a\\r\\n\\x1b\\\\\\xff");
        let long = escape_line(&[b'x'; 500]);
        assert!(long.ends_with("... (500 bytes)"));
        assert!(long.len() < 130);
    }

    fn decode_all(input: &[u8]) -> (Vec<u8>, usize, bool) {
        let mut decoder = BodyDecoder::new();
        let mut out = Vec::new();
        let used = decoder.decode(input, &mut out);
        (out, used, decoder.is_finished())
    }

    #[test]
    fn body_dot_unstuffing() {
        let wire = b"Subject: x\r\n\r\n..\r\n...leading\r\n.middle.\r\nlast\r\n.\r\nNEXT";
        let (body, used, done) = decode_all(wire);
        assert!(done);
        assert_eq!(used, wire.len() - 4);
        assert_eq!(
            body,
            b"Subject: x\r\n\r\n.\r\n..leading\r\nmiddle.\r\nlast\r\n"
        );
    }

    #[test]
    fn empty_body_and_bare_lf() {
        assert_eq!(decode_all(b".\r\n"), (Vec::new(), 3, true));
        assert_eq!(decode_all(b"a\n..\n.\nX"), (b"a\n.\n".to_vec(), 7, true));
        // Unfinished: everything so far is body, and the decoder wants more.
        assert_eq!(decode_all(b"a\r\n."), (b"a\r\n".to_vec(), 4, false));
        assert_eq!(decode_all(b"a\r\n.\r"), (b"a\r\n".to_vec(), 5, false));
        // ".\r" not followed by LF: the dot is stripped, the CR kept.
        assert_eq!(decode_all(b".\rx\r\n.\r\n"), (b"\rx\r\n".to_vec(), 8, true));
    }

    #[test]
    fn body_byte_at_a_time_matches_one_shot() {
        let wire = b"..\r\n.x\r\n\r\n.\r\n";
        let mut decoder = BodyDecoder::new();
        let mut out = Vec::new();
        for (i, byte) in wire.iter().enumerate() {
            assert!(!decoder.is_finished(), "finished early at {i}");
            assert_eq!(decoder.decode(std::slice::from_ref(byte), &mut out), 1);
        }
        assert!(decoder.is_finished());
        assert_eq!(out, decode_all(wire).0);
        assert_eq!(out, b".\r\nx\r\n\r\n");
    }

    #[test]
    fn dot_stuff_known_answers() {
        let mut out = Vec::new();
        dot_stuff(b"", &mut out);
        assert_eq!(out, b".\r\n");
        out.clear();
        dot_stuff(b".\r\n..\r\nno dot\r\n", &mut out);
        assert_eq!(out, b"..\r\n...\r\nno dot\r\n.\r\n");
        out.clear();
        dot_stuff(b"unterminated", &mut out);
        assert_eq!(out, b"unterminated\r\n.\r\n");
    }

    /// Decode `wire` fed in pieces cut at `cuts` (positions taken modulo the length).
    fn decode_split(wire: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, bool) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut decoder = BodyDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        // The caller keeps unused bytes and offers them again with the next piece.
        for end in points {
            if end > used {
                used += decoder.decode(&wire[used..end], &mut out);
            }
        }
        (out, used, decoder.is_finished())
    }

    proptest! {
        #[test]
        fn stuffed_bodies_round_trip_in_any_split(
            lines in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), any::<u8>()], 0..20)
                    .prop_map(|mut l| { l.retain(|&b| b != b'\n'); l }),
                0..12,
            ),
            bare_lf in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut body = Vec::new();
            for line in &lines {
                body.extend_from_slice(line);
                body.extend_from_slice(if bare_lf { b"\n" } else { b"\r\n" });
            }
            let mut wire = Vec::new();
            dot_stuff(&body, &mut wire);
            wire.extend_from_slice(b"+OK next reply\r\n");
            let (decoded, used, done) = decode_split(&wire, &cuts);
            prop_assert!(done);
            prop_assert_eq!(&decoded, &body);
            prop_assert_eq!(&wire[used..], b"+OK next reply\r\n");
        }

        #[test]
        fn decoding_arbitrary_bytes_is_split_independent(
            wire in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = decode_all(&wire);
            prop_assert_eq!(decode_split(&wire, &cuts), whole.clone());
            // decode -> stuff -> decode gives the same body again.
            if whole.2 {
                let mut restuffed = Vec::new();
                dot_stuff(&whole.0, &mut restuffed);
                let again = decode_all(&restuffed);
                prop_assert_eq!(again, (whole.0.clone(), restuffed.len(), true));
            }
        }

        #[test]
        fn line_parsers_never_panic(line in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse_status(&line);
            let _ = parse_status_line(&line);
            let _ = parse_listing_line(&line);
            let _ = parse_scan_line(&line);
            let _ = parse_uidl_line(&line);
            let _ = parse_capability(&line);
            let _ = apop_timestamp(&String::from_utf8_lossy(&line));
            prop_assert!(escape_line(&line).chars().all(|c| (' '..='~').contains(&c)));
        }
    }
}
