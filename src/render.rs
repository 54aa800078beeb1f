//! MIME to displayable text, and envelopes out of raw messages.
//!
//! Parsing is mail-parser's (RFC 5322, RFC 2045-2049 MIME, RFC 2047 encoded words, RFC 2231
//! parameters, and with its `full_encoding` feature the legacy CJK charsets). Everything this
//! module returns for display has passed [`crate::sanitize`], so a hostile message can't send
//! control sequences to the terminal. HTML is turned into text; nothing remote is ever fetched.

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};

use crate::backend::{Envelope, Flags};
use crate::sanitize;

/// Format an address header as `Name <addr>, Other <addr2>` (raw, not yet sanitised).
fn addresses(addr: Option<&Address<'_>>) -> String {
    let Some(addr) = addr else {
        return String::new();
    };
    addr.iter()
        .map(|a| match (a.name(), a.address()) {
            (Some(n), Some(e)) if !n.is_empty() => format!("{n} <{e}>"),
            (_, Some(e)) => e.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Parse the envelope of a raw message. A message that can't be parsed still gets its size.
pub fn envelope_of(raw: &[u8]) -> Envelope {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Envelope {
            size: raw.len() as u64,
            ..Envelope::default()
        };
    };
    Envelope {
        message_id: msg.message_id().map(str::to_string),
        in_reply_to: id_list(msg.in_reply_to()).into_iter().next(),
        references: id_list(msg.references()),
        date: msg.date().map(|d| d.to_timestamp()),
        from: addresses(msg.from()),
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        subject: msg.subject().unwrap_or_default().to_string(),
        size: raw.len() as u64,
        has_attachments: msg.attachment_count() > 0,
    }
}

/// The envelope of a message of which only the start is at hand (a large download being
/// streamed to disk): headers only, `size` given, attachments guessed from the content type.
pub fn envelope_of_head(head: &[u8], size: u64) -> Envelope {
    let Some(msg) = MessageParser::default().parse_headers(head) else {
        return Envelope {
            size,
            ..Envelope::default()
        };
    };
    let mixed = msg.content_type().is_some_and(|ct| {
        ct.c_type.eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("mixed"))
    });
    Envelope {
        message_id: msg.message_id().map(str::to_string),
        in_reply_to: id_list(msg.in_reply_to()).into_iter().next(),
        references: id_list(msg.references()),
        date: msg.date().map(|d| d.to_timestamp()),
        from: addresses(msg.from()),
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        subject: msg.subject().unwrap_or_default().to_string(),
        size,
        has_attachments: mixed,
    }
}

/// The address for an mbox `From ` line: Return-Path if present, else the first From address.
pub fn envelope_sender(head: &[u8]) -> String {
    let Some(msg) = MessageParser::default().parse_headers(head) else {
        return String::new();
    };
    let return_path = match msg.return_path() {
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
        _ => None,
    };
    return_path
        .filter(|r| !r.is_empty())
        .or_else(|| {
            msg.from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Local flags recorded in an mbox message's `Status:` / `X-Status:` headers (mutt's convention).
pub fn mbox_flags(raw: &[u8]) -> Flags {
    let mut flags = Flags::default();
    // Only the header block matters; stop at the first empty line.
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let value = if let Some(v) = line.strip_prefix(b"Status:") {
            v
        } else if let Some(v) = line.strip_prefix(b"X-Status:") {
            v
        } else {
            continue;
        };
        for &c in value {
            match c {
                b'R' => flags.insert(Flags::SEEN),
                b'F' => flags.insert(Flags::FLAGGED),
                b'A' => flags.insert(Flags::ANSWERED),
                b'D' => flags.insert(Flags::DELETED),
                b'T' => flags.insert(Flags::DRAFT),
                _ => {}
            }
        }
    }
    flags
}

/// One attachment of a message, as the reader lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name the message gives (sanitised; never trusted as a path).
    pub name: String,
    pub content_type: String,
    pub size: usize,
}

/// A message ready to display: sanitised headers, body text and attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `(name, value)` pairs for From, To, Cc, Date, Subject.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub attachments: Vec<Attachment>,
}

/// Plain text of a message for the search index (not sanitised: never displayed).
pub fn search_text(raw: &[u8]) -> String {
    MessageParser::default()
        .parse(raw)
        .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
        .unwrap_or_default()
}

/// Render a raw message for reading: text/plain preferred, else HTML turned into text.
pub fn render(raw: &[u8]) -> Rendered {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Rendered {
            headers: Vec::new(),
            body: sanitize::text(&String::from_utf8_lossy(raw)).into_owned(),
            attachments: Vec::new(),
        };
    };
    let mut headers = Vec::new();
    let mut push = |name: &'static str, value: String| {
        if !value.is_empty() {
            headers.push((name, sanitize::line(&value).into_owned()));
        }
    };
    push("From", addresses(msg.from()));
    push("To", addresses(msg.to()));
    push("Cc", addresses(msg.cc()));
    push(
        "Date",
        msg.date().map(|d| d.to_rfc822()).unwrap_or_default(),
    );
    push("Subject", msg.subject().unwrap_or_default().to_string());

    let body = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    let attachments = msg
        .attachments()
        .map(|part| Attachment {
            name: sanitize::line(part.attachment_name().unwrap_or("(unnamed)")).into_owned(),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .map(|s| sanitize::line(&s).into_owned())
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: part.len(),
        })
        .collect();
    Rendered {
        headers,
        body: sanitize::text(&body).into_owned(),
        attachments,
    }
}

/// Format a Unix time as RFC 3339 in UTC (e.g. `2026-11-26T06:20:41Z`).
pub fn rfc3339(time: i64) -> String {
    mail_parser::DateTime::from_timestamp(time).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.com>\r\n\
To: a@example.com, \"B\" <b@example.com>\r\n\
Subject: =?UTF-8?B?8J+RiyBoZWxsbw==?=\r\n\
Date: Thu, 26 Nov 2026 07:20:41 +0100\r\n\
Message-ID: <m1@example.com>\r\n\
In-Reply-To: <m0@example.com>\r\n\
References: <a@example.com> <m0@example.com>\r\n\
Status: RO\r\n\
X-Status: F\r\n\
\r\n\
Hello\x1b]0;pwned\x07 there\r\n";

    #[test]
    fn envelope_decodes_headers() {
        let e = envelope_of(SAMPLE);
        assert_eq!(e.from, "Jürgen <j@example.com>");
        assert_eq!(e.to, "a@example.com, B <b@example.com>");
        assert_eq!(e.subject, "👋 hello");
        assert_eq!(e.message_id.as_deref(), Some("m1@example.com"));
        assert_eq!(e.in_reply_to.as_deref(), Some("m0@example.com"));
        assert_eq!(e.references, vec!["a@example.com", "m0@example.com"]);
        assert_eq!(e.date, Some(1_795_674_041));
        assert_eq!(rfc3339(1_795_674_041), "2026-11-26T06:20:41Z");
        assert!(!e.has_attachments);
    }

    #[test]
    fn mbox_status_headers_give_flags() {
        assert_eq!(mbox_flags(SAMPLE), Flags::SEEN | Flags::FLAGGED);
        assert_eq!(mbox_flags(b"Subject: x\n\nStatus: RO\n"), Flags::default());
    }

    #[test]
    fn rendering_sanitises_the_body() {
        let r = render(SAMPLE);
        assert!(r.body.contains("Hello^[]0;pwned^G there"), "{}", r.body);
        assert!(!r.body.contains('\x1b'));
        assert_eq!(r.headers[0], ("From", "Jürgen <j@example.com>".to_string()));
    }

    #[test]
    fn garbage_does_not_panic() {
        let e = envelope_of(b"\xff\xfe\x00garbage");
        assert_eq!(e.size, 10);
        let _ = render(b"");
    }
}
