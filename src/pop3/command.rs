//! POP3 commands and their wire encoding (RFC 1939 §3–§7, RFC 2449 §5, RFC 2595 §4,
//! RFC 5034 §4).
//!
//! A command is encoded as one CRLF-terminated line. Arguments that come from the user (names,
//! passwords) are checked for CR, LF and NUL first, so a crafted user name can never smuggle a
//! second command onto the wire.

use std::fmt;

use thiserror::Error;

use super::md5;

/// RFC 5034 §4: a whole `AUTH` command line with its initial response may be at most 255 octets
/// (including CRLF); longer responses go in reply to the server's empty challenge instead.
pub const MAX_AUTH_INITIAL_LINE: usize = 255;

/// A secret string (a password) whose `Debug` output never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value; only encoders should call this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// A command that cannot be encoded. The message never contains the argument's value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// The argument contains CR, LF or NUL, which would end the command line early.
    #[error("the {what} contains a line break or nul byte")]
    ForbiddenByte { what: &'static str },
    /// The argument contains a space where the command allows only one word.
    #[error("the {what} must not contain a space")]
    ForbiddenSpace { what: &'static str },
    /// The argument is empty.
    #[error("the {what} is empty")]
    Empty { what: &'static str },
    /// Message numbers start at 1 (RFC 1939 §3).
    #[error("message number 0 does not exist (numbers start at 1)")]
    ZeroMessageNumber,
}

/// One POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(String),
    /// `PASS secret` (RFC 1939 §7).
    Pass(Secret),
    /// `APOP name digest` (RFC 1939 §7); build it with [`Command::apop`].
    Apop { name: String, digest: String },
    /// `AUTH PLAIN` with an initial response (RFC 5034, RFC 4616).
    AuthPlain {
        /// Authorisation identity; `None` means "the same as `authcid`".
        authzid: Option<String>,
        /// Authentication identity (the login name).
        authcid: String,
        password: Secret,
    },
    /// `AUTH mechanism` with an initial response (RFC 5034 §4) for a one-step mechanism
    /// that carries a bearer token: OAUTHBEARER (RFC 7628) or XOAUTH2.
    AuthBearer {
        /// The mechanism name, e.g. `OAUTHBEARER`.
        mechanism: &'static str,
        /// The client's message, unencoded (it holds the token).
        message: Secret,
        /// What to answer (unencoded) when the server sends its error challenge instead of
        /// `-ERR` (RFC 7628 §3.2.3): `\x01` for OAUTHBEARER, empty for XOAUTH2.
        error_answer: &'static [u8],
    },
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `STAT` (RFC 1939 §5).
    Stat,
    /// `LIST [msg]` (RFC 1939 §5).
    List(Option<u32>),
    /// `UIDL [msg]` (RFC 1939 §7).
    Uidl(Option<u32>),
    /// `RETR msg` (RFC 1939 §5).
    Retr(u32),
    /// `TOP msg lines` (RFC 1939 §7).
    Top(u32, u32),
    /// `DELE msg` (RFC 1939 §5).
    Dele(u32),
    /// `RSET` (RFC 1939 §5).
    Rset,
    /// `NOOP` (RFC 1939 §5).
    Noop,
    /// `QUIT` (RFC 1939 §4, §6).
    Quit,
}

/// Which command a reply answers, without any secret the command carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    User,
    Pass,
    Apop,
    AuthPlain,
    AuthBearer,
    Capa,
    Stls,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Top(u32, u32),
    Dele(u32),
    Rset,
    Noop,
    Quit,
}

impl CommandKind {
    /// Whether a `+OK` reply to this command is followed by a multi-line body ending in `.`.
    ///
    /// RFC 2449 §5 (CAPA) and RFC 1939 §5, §7 (LIST and UIDL without an argument, RETR, TOP).
    /// A `-ERR` reply is always a single line.
    pub fn is_multiline(self) -> bool {
        matches!(
            self,
            CommandKind::Capa
                | CommandKind::List(None)
                | CommandKind::Uidl(None)
                | CommandKind::Retr(_)
                | CommandKind::Top(_, _)
        )
    }

    /// The command's keyword, e.g. `"RETR"`.
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::User => "USER",
            CommandKind::Pass => "PASS",
            CommandKind::Apop => "APOP",
            CommandKind::AuthPlain | CommandKind::AuthBearer => "AUTH",
            CommandKind::Capa => "CAPA",
            CommandKind::Stls => "STLS",
            CommandKind::Stat => "STAT",
            CommandKind::List(_) => "LIST",
            CommandKind::Uidl(_) => "UIDL",
            CommandKind::Retr(_) => "RETR",
            CommandKind::Top(_, _) => "TOP",
            CommandKind::Dele(_) => "DELE",
            CommandKind::Rset => "RSET",
            CommandKind::Noop => "NOOP",
            CommandKind::Quit => "QUIT",
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The bytes to write for one command.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The command line, CRLF-terminated.
    pub line: Vec<u8>,
    /// For `AUTH PLAIN` whose initial response did not fit on the line (RFC 5034 §4): the
    /// base64 response line to send when the server answers with an empty `+ ` challenge.
    pub continuation: Option<Vec<u8>>,
    /// For `AUTH` with a bearer token: the line answering the server's error challenge, sent
    /// on the `+ ` that comes after `continuation` has been used (or on the first one).
    pub error_answer: Option<Vec<u8>>,
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // NOTE: both fields may carry a password (PASS, AUTH PLAIN); never print them.
        f.debug_struct("Encoded")
            .field("line_len", &self.line.len())
            .field("has_continuation", &self.continuation.is_some())
            .field("has_error_answer", &self.error_answer.is_some())
            .finish()
    }
}

impl Command {
    /// Build `APOP name digest` from the greeting's timestamp and the shared secret.
    ///
    /// RFC 1939 §7: the digest is the MD5 of the timestamp (including its angle brackets)
    /// followed by the secret, as 32 lower-case hex digits.
    pub fn apop(name: impl Into<String>, timestamp: &str, secret: &Secret) -> Command {
        let mut input = Vec::with_capacity(timestamp.len() + secret.expose().len());
        input.extend_from_slice(timestamp.as_bytes());
        input.extend_from_slice(secret.expose().as_bytes());
        Command::Apop {
            name: name.into(),
            digest: md5::hex_digest(&input),
        }
    }

    /// Which command this is, without its secrets.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::User(_) => CommandKind::User,
            Command::Pass(_) => CommandKind::Pass,
            Command::Apop { .. } => CommandKind::Apop,
            Command::AuthPlain { .. } => CommandKind::AuthPlain,
            Command::AuthBearer { .. } => CommandKind::AuthBearer,
            Command::Capa => CommandKind::Capa,
            Command::Stls => CommandKind::Stls,
            Command::Stat => CommandKind::Stat,
            Command::List(m) => CommandKind::List(*m),
            Command::Uidl(m) => CommandKind::Uidl(*m),
            Command::Retr(m) => CommandKind::Retr(*m),
            Command::Top(m, n) => CommandKind::Top(*m, *n),
            Command::Dele(m) => CommandKind::Dele(*m),
            Command::Rset => CommandKind::Rset,
            Command::Noop => CommandKind::Noop,
            Command::Quit => CommandKind::Quit,
        }
    }

    /// Whether a `+OK` reply to this command is multi-line; see [`CommandKind::is_multiline`].
    pub fn is_multiline(&self) -> bool {
        self.kind().is_multiline()
    }

    /// Append this command's CRLF-terminated line to `out`.
    ///
    /// For `AUTH PLAIN` whose initial response is too long for one line this appends only
    /// `AUTH PLAIN\r\n`; use [`Command::encode_full`] to get the response line as well.
    /// On error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CommandError> {
        let encoded = self.encode_full()?;
        out.extend_from_slice(&encoded.line);
        Ok(())
    }

    /// Encode this command: its line and, for a long `AUTH PLAIN`, the deferred response.
    pub fn encode_full(&self) -> Result<Encoded, CommandError> {
        let mut line = Vec::with_capacity(32);
        let mut continuation = None;
        let mut error_answer = None;
        match self {
            Command::User(name) => {
                check_arg(name, "user name", true)?;
                push_words(&mut line, &["USER", name]);
            }
            Command::Pass(secret) => {
                // NOTE: RFC 1939 §7 lets a password contain spaces; the server takes the rest
                // of the line. Empty passwords are legal too.
                check_bytes(secret.expose(), "password")?;
                push_words(&mut line, &["PASS", secret.expose()]);
            }
            Command::Apop { name, digest } => {
                check_arg(name, "user name", false)?;
                check_arg(digest, "apop digest", false)?;
                push_words(&mut line, &["APOP", name, digest]);
            }
            Command::AuthPlain {
                authzid,
                authcid,
                password,
            } => {
                let authzid = authzid.as_deref().unwrap_or("");
                check_bytes(authzid, "authorisation identity")?;
                check_bytes(authcid, "user name")?;
                check_bytes(password.expose(), "password")?;
                if authcid.is_empty() {
                    return Err(CommandError::Empty { what: "user name" });
                }
                // RFC 4616 §2: message = [authzid] NUL authcid NUL passwd.
                let mut message = Vec::with_capacity(authzid.len() + authcid.len() + 32);
                message.extend_from_slice(authzid.as_bytes());
                message.push(0);
                message.extend_from_slice(authcid.as_bytes());
                message.push(0);
                message.extend_from_slice(password.expose().as_bytes());
                let response = base64_encode(&message);
                if "AUTH PLAIN ".len() + response.len() + 2 <= MAX_AUTH_INITIAL_LINE {
                    push_words(&mut line, &["AUTH", "PLAIN", &response]);
                } else {
                    push_words(&mut line, &["AUTH", "PLAIN"]);
                    let mut deferred = response.into_bytes();
                    deferred.extend_from_slice(b"\r\n");
                    continuation = Some(deferred);
                }
            }
            Command::AuthBearer {
                mechanism,
                message,
                error_answer: answer,
            } => {
                check_arg(mechanism, "mechanism", false)?;
                let response = base64_encode(message.expose().as_bytes());
                if "AUTH  ".len() + mechanism.len() + response.len() + 2 <= MAX_AUTH_INITIAL_LINE {
                    push_words(&mut line, &["AUTH", mechanism, &response]);
                } else {
                    push_words(&mut line, &["AUTH", mechanism]);
                    let mut deferred = response.into_bytes();
                    deferred.extend_from_slice(b"\r\n");
                    continuation = Some(deferred);
                }
                let mut answer_line = base64_encode(answer).into_bytes();
                answer_line.extend_from_slice(b"\r\n");
                error_answer = Some(answer_line);
            }
            Command::Capa => push_words(&mut line, &["CAPA"]),
            Command::Stls => push_words(&mut line, &["STLS"]),
            Command::Stat => push_words(&mut line, &["STAT"]),
            Command::List(msg) => push_optional_msg(&mut line, "LIST", *msg)?,
            Command::Uidl(msg) => push_optional_msg(&mut line, "UIDL", *msg)?,
            Command::Retr(msg) => {
                push_words(&mut line, &["RETR", &msg_number(*msg)?]);
            }
            Command::Top(msg, lines) => {
                push_words(&mut line, &["TOP", &msg_number(*msg)?, &lines.to_string()]);
            }
            Command::Dele(msg) => {
                push_words(&mut line, &["DELE", &msg_number(*msg)?]);
            }
            Command::Rset => push_words(&mut line, &["RSET"]),
            Command::Noop => push_words(&mut line, &["NOOP"]),
            Command::Quit => push_words(&mut line, &["QUIT"]),
        }
        Ok(Encoded {
            line,
            continuation,
            error_answer,
        })
    }
}

/// Reject CR, LF and NUL in an argument.
fn check_bytes(value: &str, what: &'static str) -> Result<(), CommandError> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(CommandError::ForbiddenByte { what });
    }
    Ok(())
}

/// Reject empty arguments, CR/LF/NUL, and (unless `spaces_ok`) spaces.
fn check_arg(value: &str, what: &'static str, spaces_ok: bool) -> Result<(), CommandError> {
    check_bytes(value, what)?;
    if value.is_empty() {
        return Err(CommandError::Empty { what });
    }
    if !spaces_ok && value.contains(' ') {
        return Err(CommandError::ForbiddenSpace { what });
    }
    Ok(())
}

fn msg_number(msg: u32) -> Result<String, CommandError> {
    if msg == 0 {
        return Err(CommandError::ZeroMessageNumber);
    }
    Ok(msg.to_string())
}

fn push_optional_msg(
    line: &mut Vec<u8>,
    keyword: &str,
    msg: Option<u32>,
) -> Result<(), CommandError> {
    match msg {
        Some(msg) => push_words(line, &[keyword, &msg_number(msg)?]),
        None => push_words(line, &[keyword]),
    }
    Ok(())
}

/// Append words separated by single spaces, then CRLF.
fn push_words(line: &mut Vec<u8>, words: &[&str]) {
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.extend_from_slice(word.as_bytes());
    }
    line.extend_from_slice(b"\r\n");
}

/// Standard base64 with padding (RFC 4648 §4), as SASL uses (RFC 5034 §4).
pub fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let symbol = |index: u32| char::from(ALPHABET[(index & 0x3f) as usize]);
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let group = (b0 << 16) | (b1 << 8) | b2;
        out.push(symbol(group >> 18));
        out.push(symbol(group >> 12));
        out.push(if chunk.len() > 1 {
            symbol(group >> 6)
        } else {
            '='
        });
        out.push(if chunk.len() > 2 { symbol(group) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(cmd: &Command) -> Vec<u8> {
        let mut out = Vec::new();
        cmd.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn known_answer_bytes_for_every_command() {
        let cases: Vec<(Command, &[u8])> = vec![
            (Command::User("mrose".into()), b"USER mrose\r\n"),
            (Command::Pass("secret".into()), b"PASS secret\r\n"),
            (Command::Pass("with space".into()), b"PASS with space\r\n"),
            (
                Command::Apop {
                    name: "mrose".into(),
                    digest: "c4c9334bac560ecc979e58001b3e22fb".into(),
                },
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
            ),
            (
                Command::AuthPlain {
                    authzid: Some("test".into()),
                    authcid: "test".into(),
                    password: "test".into(),
                },
                b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
            ),
            (
                Command::AuthPlain {
                    authzid: None,
                    authcid: "tim".into(),
                    password: "tanstaaftanstaaf".into(),
                },
                b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n",
            ),
            (Command::Capa, b"CAPA\r\n"),
            (Command::Stls, b"STLS\r\n"),
            (Command::Stat, b"STAT\r\n"),
            (Command::List(None), b"LIST\r\n"),
            (Command::List(Some(2)), b"LIST 2\r\n"),
            (Command::Uidl(None), b"UIDL\r\n"),
            (Command::Uidl(Some(4294967295)), b"UIDL 4294967295\r\n"),
            (Command::Retr(1), b"RETR 1\r\n"),
            (Command::Top(10, 0), b"TOP 10 0\r\n"),
            (Command::Dele(7), b"DELE 7\r\n"),
            (Command::Rset, b"RSET\r\n"),
            (Command::Noop, b"NOOP\r\n"),
            (Command::Quit, b"QUIT\r\n"),
        ];
        for (cmd, expected) in cases {
            assert_eq!(
                encoded(&cmd),
                expected,
                "{cmd:?} encoded as {:?}",
                String::from_utf8_lossy(&encoded(&cmd))
            );
        }
    }

    #[test]
    fn apop_digest_matches_rfc1939_example() {
        // RFC 1939 §7 example.
        let cmd = Command::apop(
            "mrose",
            "<1896.697170952@dbc.mtview.ca.us>",
            &Secret::new("tanstaaf"),
        );
        assert_eq!(
            encoded(&cmd),
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
        );
    }

    #[test]
    fn injection_is_rejected_and_nothing_is_written() {
        let bad = [
            Command::User("mrose\r\nDELE 1".into()),
            Command::User("a\nb".into()),
            Command::User("nul\0".into()),
            Command::Pass("pw\rQUIT".into()),
            Command::Apop {
                name: "x\n".into(),
                digest: "d".into(),
            },
            Command::AuthPlain {
                authzid: Some("a\0b".into()),
                authcid: "u".into(),
                password: "p".into(),
            },
            Command::AuthPlain {
                authzid: None,
                authcid: "u".into(),
                password: "p\r\n".into(),
            },
        ];
        for cmd in bad {
            let mut out = b"prefix".to_vec();
            let err = cmd.encode(&mut out).unwrap_err();
            assert!(
                matches!(err, CommandError::ForbiddenByte { .. }),
                "{cmd:?}: {err}"
            );
            assert_eq!(out, b"prefix");
        }
    }

    #[test]
    fn other_invalid_arguments() {
        let mut out = Vec::new();
        assert_eq!(
            Command::User(String::new()).encode(&mut out),
            Err(CommandError::Empty { what: "user name" })
        );
        assert_eq!(
            Command::Apop {
                name: "a b".into(),
                digest: "d".into()
            }
            .encode(&mut out),
            Err(CommandError::ForbiddenSpace { what: "user name" })
        );
        for cmd in [
            Command::Retr(0),
            Command::Dele(0),
            Command::Top(0, 1),
            Command::List(Some(0)),
            Command::Uidl(Some(0)),
        ] {
            assert_eq!(cmd.encode(&mut out), Err(CommandError::ZeroMessageNumber));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let cmd = Command::Pass("hunter2\n".into());
        let err = cmd.encode(&mut Vec::new()).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{cmd:?}").contains("hunter2"));
        let auth = Command::AuthPlain {
            authzid: None,
            authcid: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let full = auth.encode_full().unwrap();
        assert!(!format!("{full:?}").contains("AHUAaHVudGVyMg"));
    }

    #[test]
    fn auth_bearer_sends_the_token_inline_or_on_the_challenge() {
        let short = Command::AuthBearer {
            mechanism: "XOAUTH2",
            message: Secret::new("user=a\x01auth=Bearer t\x01\x01"),
            error_answer: b"",
        };
        let e = short.encode_full().expect("encode");
        assert_eq!(
            e.line,
            format!(
                "AUTH XOAUTH2 {}\r\n",
                base64_encode(b"user=a\x01auth=Bearer t\x01\x01")
            )
            .into_bytes()
        );
        assert_eq!(e.continuation, None);
        assert_eq!(e.error_answer.as_deref(), Some(&b"\r\n"[..]));
        let long = Command::AuthBearer {
            mechanism: "OAUTHBEARER",
            message: Secret::new("x".repeat(400)),
            error_answer: b"\x01",
        };
        let e = long.encode_full().expect("encode");
        assert_eq!(e.line, b"AUTH OAUTHBEARER\r\n");
        assert!(e.continuation.as_ref().is_some_and(|c| c.len() > 500));
        assert_eq!(e.error_answer.as_deref(), Some(&b"AQ==\r\n"[..]));
        assert!(!format!("{long:?} {e:?}").contains("xxxx"));
    }

    #[test]
    fn long_auth_plain_defers_the_response() {
        let cmd = Command::AuthPlain {
            authzid: None,
            authcid: "user".into(),
            password: Secret::new("p".repeat(300)),
        };
        let full = cmd.encode_full().unwrap();
        assert_eq!(full.line, b"AUTH PLAIN\r\n");
        let continuation = full.continuation.unwrap();
        let mut message = b"\0user\0".to_vec();
        message.extend(std::iter::repeat_n(b'p', 300));
        let mut expected = base64_encode(&message).into_bytes();
        expected.extend_from_slice(b"\r\n");
        assert_eq!(continuation, expected);

        // Near the boundary: "AUTH PLAIN " (11) + 240 base64 chars (180 bytes) + CRLF (2) = 253
        // octets fits; 3 more bytes would make 244 chars and 257 octets, which does not.
        let fits = Command::AuthPlain {
            authzid: None,
            authcid: "u".into(),
            password: Secret::new("p".repeat(180 - 3)),
        };
        let full = fits.encode_full().unwrap();
        assert_eq!(full.line.len(), 253);
        assert!(full.continuation.is_none());
        let just_over = Command::AuthPlain {
            authzid: None,
            authcid: "u".into(),
            password: Secret::new("p".repeat(180)),
        };
        let full = just_over.encode_full().unwrap();
        assert_eq!(full.line, b"AUTH PLAIN\r\n");
        assert_eq!(full.continuation.map(|c| c.len()), Some(244 + 2));
    }

    #[test]
    fn base64_rfc4648_vectors() {
        // RFC 4648 §10.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
        assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn multiline_classification() {
        let multi = [
            CommandKind::Capa,
            CommandKind::List(None),
            CommandKind::Uidl(None),
            CommandKind::Retr(1),
            CommandKind::Top(1, 0),
        ];
        let single = [
            CommandKind::User,
            CommandKind::Pass,
            CommandKind::Apop,
            CommandKind::AuthPlain,
            CommandKind::Stls,
            CommandKind::Stat,
            CommandKind::List(Some(1)),
            CommandKind::Uidl(Some(1)),
            CommandKind::Dele(1),
            CommandKind::Rset,
            CommandKind::Noop,
            CommandKind::Quit,
        ];
        assert!(multi.iter().all(|k| k.is_multiline()));
        assert!(single.iter().all(|k| !k.is_multiline()));
    }
}
