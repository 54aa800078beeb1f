//! MIME to displayable text, and envelopes out of raw messages.
//!
//! Parsing is mail-parser's (RFC 5322, RFC 2045-2049 MIME, RFC 2047 encoded words, RFC 2231
//! parameters, and with its `full_encoding` feature the legacy CJK charsets). Everything this
//! module returns for display has passed [`crate::sanitize`], so a hostile message can't send
//! control sequences to the terminal. HTML is turned into text; nothing remote is ever fetched.

use std::path::{Path, PathBuf};

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use crate::backend::{Envelope, Flags};
use crate::sanitize;

mod plain;

/// Format an address header as `Name <addr>, Other <addr2>` (raw, not yet sanitised).
fn addresses(addr: Option<&Address<'_>>) -> String {
    let Some(addr) = addr else {
        return String::new();
    };
    let mut out = String::with_capacity(64);
    // NOTE: written into one string: this runs for every downloaded message.
    for a in addr.iter() {
        let (name, email) = (a.name().filter(|n| !n.is_empty()), a.address());
        if name.is_none() && email.is_none_or(str::is_empty) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        match (name, email) {
            (Some(n), Some(e)) => {
                out.push_str(n);
                out.push_str(" <");
                out.push_str(e);
                out.push('>');
            }
            (Some(n), None) => out.push_str(n),
            (None, Some(e)) => out.push_str(e),
            (None, None) => {}
        }
    }
    out
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
    match MessageParser::default().parse(raw) {
        Some(msg) => envelope_fields(&msg, raw.len() as u64, msg.attachment_count() > 0),
        None => Envelope {
            size: raw.len() as u64,
            ..Envelope::default()
        },
    }
}

/// The envelope of a message of which only the start is at hand (a large download being
/// streamed to disk): headers only, `size` given, attachments guessed from the content type.
pub fn envelope_of_head(head: &[u8], size: u64) -> Envelope {
    parse_head_of(head, size).envelope
}

/// [`envelope_of_head`] of a header that holds only the fields an envelope is made of (an
/// IMAP server's `BODY[HEADER.FIELDS (...)]`).
pub fn envelope_of_fields(fields: &[u8], size: u64) -> Envelope {
    parse_head_of(fields, size).envelope
}

/// What recording a message needs before its body is looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// As [`envelope_of_head`]: `has_attachments` is a guess from the top-level content type,
    /// which indexing the message later corrects (see [`index_words`]).
    pub envelope: Envelope,
    /// As [`envelope_sender`].
    pub sender: String,
}

/// The header fields an envelope, an mbox `From ` line and the attachment guess are made of.
const ENVELOPE_FIELDS: [&[u8]; 10] = [
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"return-path",
    b"content-type",
];

/// The fields of `raw`'s header named in [`ENVELOPE_FIELDS`] (with their continuation lines,
/// in their order), ended by an empty line.
///
/// NOTE: a header often is most of a small message, and most of a header is fields nobody
/// lists by (Received, DKIM and ARC signatures, list headers). Parsing only the fields wanted
/// gives the same envelope for a fraction of the work.
fn envelope_header(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut keep = false;
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, after) = rest.split_at(end);
        rest = after;
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            keep = line.iter().position(|&b| b == b':').is_some_and(|colon| {
                let name = line[..colon].trim_ascii_end();
                ENVELOPE_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
            });
        }
        if keep {
            if !out.is_empty() && !matches!(line.first(), Some(b' ' | b'\t')) {
                // NOTE: mail-parser reads a malformed value (a Date of `0-A`) on into the
                // next line. In a whole header that line is seldom one wanted here; a field
                // of no meaning keeps the next wanted one from being taken the same way.
                out.extend_from_slice(b"X-Mailbag-Gap: .\n");
            }
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
    }
    out.push(b'\n');
    out
}

/// [`Head`] of a whole message, or of the start of one that has `size` bytes in all.
pub fn parse_head(raw: &[u8]) -> Head {
    parse_head_of(raw, raw.len() as u64)
}

fn parse_head_of(raw: &[u8], size: u64) -> Head {
    plain::head(raw, size).unwrap_or_else(|| parse_fields(&envelope_header(raw), size))
}

/// [`Head`] of a header block that holds the wanted fields (and maybe others).
fn parse_fields(header: &[u8], size: u64) -> Head {
    let Some(msg) = MessageParser::default().parse_headers(header) else {
        return Head {
            envelope: Envelope {
                size,
                ..Envelope::default()
            },
            sender: String::new(),
        };
    };
    Head {
        envelope: envelope_fields(&msg, size, is_multipart_mixed(&msg)),
        sender: sender_of(&msg),
    }
}

/// The value of base64 digit `b` (RFC 4648 §4), whose 64th digit is `last` (`/`, or `,` in
/// IMAP's modified UTF-7).
fn base64_digit(b: u8, last: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        _ if b == last => Some(63),
        _ => None,
    }
}

/// Whether `msg`'s top-level type is multipart/mixed: the guess that it has attachments.
fn is_multipart_mixed(msg: &Message<'_>) -> bool {
    msg.content_type().is_some_and(|ct| {
        ct.c_type.eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("mixed"))
    })
}

fn envelope_fields(msg: &Message<'_>, size: u64, has_attachments: bool) -> Envelope {
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
        has_attachments,
    }
}

/// The address for an mbox `From ` line: Return-Path if present, else the first From address.
pub fn envelope_sender(head: &[u8]) -> String {
    parse_head(head).sender
}

fn sender_of(msg: &Message<'_>) -> String {
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

/// What indexing a whole message finds in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexWords {
    /// The plain text of its body, for the search index (not sanitised: never displayed).
    pub body: String,
    pub has_attachments: bool,
    /// As the envelope has it, to tell that these are the words of the message expected.
    pub message_id: Option<String>,
}

/// [`IndexWords`] of a whole message.
pub fn index_words(raw: &[u8]) -> IndexWords {
    match MessageParser::default().parse(raw) {
        Some(msg) => IndexWords {
            body: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            has_attachments: msg.attachment_count() > 0,
            message_id: msg.message_id().map(str::to_string),
        },
        None => IndexWords::default(),
    }
}

/// Plain text of a message for the search index (not sanitised: never displayed).
pub fn search_text(raw: &[u8]) -> String {
    index_words(raw).body
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

    let body = body_of(&msg);
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

/// The text to read: the first text/plain body, else the first HTML body turned into text.
fn body_of(msg: &Message<'_>) -> String {
    let plain = msg
        .text_body
        .iter()
        .filter_map(|id| msg.part(*id))
        .find_map(|p| match &p.body {
            PartType::Text(t) => Some(t.to_string()),
            _ => None,
        });
    if let Some(t) = plain {
        return t;
    }
    let html = msg
        .html_body
        .iter()
        .chain(msg.text_body.iter())
        .filter_map(|id| msg.part(*id))
        .find_map(|p| match &p.body {
            PartType::Html(h) => Some(h.to_string()),
            _ => None,
        });
    html.map(|h| html_to_text(&h)).unwrap_or_default()
}

/// The decoded bytes of attachment `index` (in [`Rendered::attachments`] order) and its name.
pub fn attachment_bytes(raw: &[u8], index: usize) -> Option<(String, Vec<u8>)> {
    let msg = MessageParser::default().parse(raw)?;
    let part = msg.attachments().nth(index)?;
    let name = part.attachment_name().unwrap_or("attachment").to_string();
    let bytes = match &part.body {
        PartType::Message(m) => m.raw_message().to_vec(),
        _ => part.contents().to_vec(),
    };
    Some((name, bytes))
}

/// A file name that is safe to create in a directory, made from a name a message gave.
///
/// Nothing of the name is trusted as a path: only its last path component is kept (both `/`
/// and `\` count), control and bidi characters and characters that are awkward in file names
/// are replaced by `_`, leading dots and spaces are dropped (no hidden files, no `..`), and the
/// result is at most 200 bytes. An empty result becomes `attachment`.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out = String::new();
    for c in last.chars() {
        let bad = c.is_control()
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
            || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|');
        let c = if bad { '_' } else { c };
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim_start_matches(['.', ' ']).trim_end();
    if trimmed.is_empty() {
        "attachment".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Save `bytes` in `dir` under a [safe version](safe_file_name) of `name`, never overwriting:
/// `report.pdf` exists → `report (1).pdf`, and so on. Returns the path written.
pub fn save_attachment(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let safe = safe_file_name(name);
    let (stem, ext) = match safe.rfind('.') {
        Some(i) if i > 0 => (&safe[..i], &safe[i..]),
        _ => (safe.as_str(), ""),
    };
    for n in 0..1000 {
        let file = if n == 0 {
            safe.clone()
        } else {
            format!("{stem} ({n}){ext}")
        };
        let path = dir.join(file);
        // NOTE: create_new fails if the name exists (also as a symlink): nothing is overwritten.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(bytes)?;
                f.sync_all()?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("too many files named like {safe}"),
    ))
}

/// HTML to plain text for reading, with links numbered at the end.
///
/// A small tolerant scanner, not a browser: block elements start new lines, paragraphs and
/// headings are separated by a blank line, `br` breaks, list items get `*` or `1.`, table
/// cells are separated by two spaces and rows by a line break, `pre` keeps its spacing,
/// `blockquote` prefixes `> `, character references are decoded, and `script`, `style`,
/// `head` and comments are skipped. A link's text gets `[n]` after it and a "Links:" list at
/// the end. Images show their alt text. Nothing is ever fetched. The result is not sanitised:
/// callers pass it through [`crate::sanitize`] like any other text from a message.
pub fn html_to_text(html: &str) -> String {
    let mut w = HtmlWriter::default();
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            w.text(rest);
            break;
        };
        let (before, after) = rest.split_at(lt);
        w.text(before);
        if let Some(comment) = after.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |i| &comment[i + 3..]);
            continue;
        }
        // NOTE: a '<' that cannot open a tag (`a < b`) is text; decided before looking for
        // the tag's end, since that search would otherwise run to the next '>' for every such
        // '<' (quadratic on a message made of them).
        // HTML's tokenizer opens a tag only on a letter, `/`, `!` or `?` right after the '<'.
        let opens = after.get(1..).unwrap_or_default();
        if !opens.starts_with(|c: char| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?')) {
            w.text("<");
            rest = &after[1..];
            continue;
        }
        let end = tag_end(after);
        let inner_end = if after[..end].ends_with('>') {
            end - 1
        } else {
            end
        };
        let tag = after.get(1..inner_end.max(1)).unwrap_or_default();
        rest = &after[end..];
        let (closing, name, attrs) = split_tag(tag);
        if name.is_empty() || name.starts_with('!') || name.starts_with('?') {
            continue;
        }
        if !closing && matches!(name.as_str(), "script" | "style" | "head" | "title") {
            // Skip to the matching close tag; what is inside is never shown.
            let close = format!("</{name}");
            rest = match find_ignore_case(rest, &close) {
                Some(i) => {
                    let after_close = &rest[i..];
                    &after_close[tag_end(after_close)..]
                }
                None => "",
            };
            continue;
        }
        w.tag(closing, &name, attrs);
    }
    w.finish()
}

/// Where `needle` (lower-case ASCII) first occurs in `hay`, ASCII case ignored.
///
/// NOTE: instead of lower-casing the rest of the document for every skipped element, which
/// made a message of many `<style></style>` quadratic.
fn find_ignore_case(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The index just past the `>` that ends the tag starting at `s[0] == '<'` (quotes respected).
fn tag_end(s: &str) -> usize {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return i + 1,
            _ => {}
        }
    }
    s.len()
}

/// `/a href=x` → (true, "a", " href=x").
fn split_tag(tag: &str) -> (bool, String, &str) {
    let tag = tag.trim_start();
    let (closing, tag) = match tag.strip_prefix('/') {
        Some(t) => (true, t.trim_start()),
        None => (false, tag),
    };
    let end = tag
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len());
    let name = tag[..end].to_ascii_lowercase();
    // A tag name starts with a letter (or ! / ? for declarations); `< 3` is text.
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '!' || c == '?');
    if !valid {
        return (closing, String::new(), "");
    }
    (closing, name, &tag[end..])
}

/// The value of attribute `want` in a tag's attribute text.
fn attribute(attrs: &str, want: &str) -> Option<String> {
    let mut rest = attrs;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '>')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(v) = rest.strip_prefix('=') {
            let v = v.trim_start();
            let (value, after) = match v.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let inner = &v[1..];
                    let close = inner.find(q).unwrap_or(inner.len());
                    (&inner[..close], inner.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let e = v.find(char::is_whitespace).unwrap_or(v.len());
                    (&v[..e], &v[e..])
                }
            };
            rest = after;
            Some(value)
        } else {
            None
        };
        if name == want {
            return value.map(decode_entities);
        }
        if name_end == 0 && value.is_none() {
            // Not an attribute at all: skip one character so the loop always advances.
            let mut chars = rest.chars();
            chars.next();
            rest = chars.as_str();
        }
    }
}

/// Decode character references: `&amp;`, `&#233;`, `&#x1F600;` and common named ones.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let mut end = 1;
        for (j, c) in rest.char_indices().skip(1) {
            if !(c.is_ascii_alphanumeric() || c == '#') || j > 32 {
                break;
            }
            end = j + c.len_utf8();
        }
        let name = &rest[1..end];
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let n = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse::<u32>().ok(),
            };
            n.map(|n| char::from_u32(n).unwrap_or('\u{FFFD}'))
        } else {
            named_entity(name)
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => '\u{A0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "times" => '×',
        "divide" => '÷',
        "deg" => '°',
        "shy" => '\u{AD}',
        "zwnj" => '\u{200C}',
        "zwj" => '\u{200D}',
        "auml" => 'ä',
        "ouml" => 'ö',
        "uuml" => 'ü',
        "Auml" => 'Ä',
        "Ouml" => 'Ö',
        "Uuml" => 'Ü',
        "szlig" => 'ß',
        "eacute" => 'é',
        "egrave" => 'è',
        "agrave" => 'à',
        "ccedil" => 'ç',
        _ => return None,
    })
}

/// How many levels of quoting or list indentation are drawn at most.
///
/// NOTE: every line repeats its prefix, so a message nesting thousands of `blockquote`s
/// around thousands of lines would otherwise grow quadratically.
const MAX_NESTING: usize = 16;

/// The text being built by [`html_to_text`].
#[derive(Default)]
struct HtmlWriter {
    out: String,
    /// Newlines owed before the next text (1 = line break, 2 = blank line).
    pending_breaks: usize,
    /// A space is owed before the next word.
    pending_space: bool,
    pre: usize,
    quote: usize,
    /// Open lists: `None` for `ul`, `Some(next number)` for `ol`.
    lists: Vec<Option<u32>>,
    links: Vec<String>,
    /// The link whose text is being written: its number, once text was written.
    open_link: Option<usize>,
    cell_in_row: usize,
}

impl HtmlWriter {
    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn brk(&mut self, n: usize) {
        self.pending_breaks = self.pending_breaks.max(n);
        self.pending_space = false;
    }

    fn flush_breaks(&mut self) {
        if !self.out.is_empty() {
            let have = self.out.chars().rev().take_while(|c| *c == '\n').count();
            for _ in have..self.pending_breaks.min(2) {
                self.out.push('\n');
            }
        }
        self.pending_breaks = 0;
    }

    fn start_line_if_needed(&mut self) {
        if self.pending_breaks > 0 {
            // Trim trailing spaces of the line being ended.
            while self.out.ends_with(' ') {
                self.out.pop();
            }
            self.flush_breaks();
        }
        if self.at_line_start() && self.quote > 0 {
            for _ in 0..self.quote.min(MAX_NESTING) {
                self.out.push_str("> ");
            }
        }
    }

    fn text(&mut self, raw: &str) {
        if raw.is_empty() {
            return;
        }
        let text = decode_entities(raw);
        if self.pre > 0 {
            for (i, line) in text.split('\n').enumerate() {
                if i > 0 {
                    self.out.push('\n');
                }
                self.start_line_if_needed();
                self.out.push_str(line);
            }
            return;
        }
        for (i, word) in text
            .split(|c: char| c.is_whitespace() && c != '\u{A0}')
            .enumerate()
        {
            if i > 0 {
                self.pending_space = true;
            }
            if word.is_empty() {
                continue;
            }
            self.start_line_if_needed();
            if self.pending_space && !self.at_line_start() && !self.out.ends_with("> ") {
                self.out.push(' ');
            }
            self.pending_space = false;
            self.out.push_str(&word.replace('\u{A0}', " "));
        }
        if text.ends_with(|c: char| c.is_whitespace() && c != '\u{A0}') {
            self.pending_space = true;
        }
    }

    fn tag(&mut self, closing: bool, name: &str, attrs: &str) {
        match (name, closing) {
            ("br", _) => {
                self.start_line_if_needed();
                self.out.push('\n');
                self.pending_space = false;
            }
            ("p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "ul" | "ol" | "dl", _)
                if self.lists.is_empty() || !matches!(name, "ul" | "ol") =>
            {
                self.brk(2);
                match (name, closing) {
                    ("ul", false) => self.lists.push(None),
                    ("ol", false) => self.lists.push(Some(1)),
                    ("ul" | "ol", true) => {
                        self.lists.pop();
                    }
                    _ => {}
                }
            }
            ("ul", false) => {
                self.brk(1);
                self.lists.push(None);
            }
            ("ol", false) => {
                self.brk(1);
                self.lists.push(Some(1));
            }
            ("ul" | "ol", true) => {
                self.lists.pop();
                self.brk(if self.lists.is_empty() { 2 } else { 1 });
            }
            ("li", false) => {
                self.brk(1);
                self.start_line_if_needed();
                let depth = self.lists.len().max(1);
                for _ in 1..depth.min(MAX_NESTING) {
                    self.out.push_str("  ");
                }
                match self.lists.last_mut() {
                    Some(Some(n)) => {
                        self.out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => self.out.push_str("* "),
                }
            }
            ("li" | "dt" | "dd" | "tr", true) => self.brk(1),
            ("tr", false) => {
                self.brk(1);
                self.cell_in_row = 0;
            }
            ("td" | "th", false) => {
                if self.cell_in_row > 0 {
                    self.start_line_if_needed();
                    self.out.push_str("  ");
                    self.pending_space = false;
                }
                self.cell_in_row += 1;
            }
            ("pre", false) => {
                self.brk(2);
                self.pre += 1;
            }
            ("pre", true) => {
                self.pre = self.pre.saturating_sub(1);
                self.brk(2);
            }
            ("blockquote", false) => {
                self.brk(1);
                self.quote += 1;
            }
            ("blockquote", true) => {
                self.brk(1);
                self.quote = self.quote.saturating_sub(1);
            }
            ("hr", _) => {
                self.brk(1);
                self.start_line_if_needed();
                self.out.push_str("----------");
                self.brk(1);
            }
            (
                "div" | "section" | "article" | "header" | "footer" | "nav" | "address" | "center"
                | "form" | "fieldset" | "dt" | "dd" | "figure" | "main" | "aside" | "caption",
                _,
            ) => self.brk(1),
            ("a", false) => {
                let href = attribute(attrs, "href").map(|h| h.trim().to_string());
                self.open_link = href
                    .filter(|h| {
                        let lower = h.to_ascii_lowercase();
                        !h.is_empty()
                            && !h.starts_with('#')
                            && !lower.starts_with("javascript:")
                            && !lower.starts_with("data:")
                    })
                    .map(|h| {
                        self.links.push(h);
                        self.links.len()
                    });
            }
            ("a", true) => {
                if let Some(n) = self.open_link.take() {
                    self.out.push_str(&format!("[{n}]"));
                }
            }
            ("img", false) => {
                if let Some(alt) = attribute(attrs, "alt").filter(|a| !a.trim().is_empty()) {
                    self.text(&format!(" [image: {}] ", alt.trim()));
                }
            }
            _ => {}
        }
    }

    fn finish(mut self) -> String {
        let mut text = String::with_capacity(self.out.len());
        let mut blank = 0;
        for line in self.out.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                blank += 1;
                if blank > 1 || text.is_empty() {
                    continue;
                }
            } else {
                blank = 0;
            }
            text.push_str(line);
            text.push('\n');
        }
        while text.ends_with("\n\n") {
            text.pop();
        }
        if !self.links.is_empty() {
            text.push_str("\nLinks:\n");
            for (i, link) in std::mem::take(&mut self.links).iter().enumerate() {
                text.push_str(&format!("[{}] {}\n", i + 1, link));
            }
        }
        text
    }
}

/// Format a Unix time as RFC 3339 in UTC (e.g. `2026-11-26T06:20:41Z`).
pub fn rfc3339(time: i64) -> String {
    mail_parser::DateTime::from_timestamp(time).to_rfc3339()
}

/// A folder name for display: IMAP's modified UTF-7 (RFC 3501 §5.1.3, e.g. `Entw&APw-rfe`)
/// decoded to text (`Entwürfe`). A name that is not valid modified UTF-7 is shown as it is.
/// The result is not sanitised; it goes through the UI's one door like all untrusted text.
pub fn folder_label(raw: &str) -> String {
    decode_modified_utf7(raw).unwrap_or_else(|| raw.to_string())
}

fn decode_modified_utf7(raw: &str) -> Option<String> {
    if !raw.contains('&') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('-')?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let mut bits = 0u32;
            let mut nbits = 0;
            let mut units = Vec::new();
            for c in encoded.bytes() {
                let v = base64_digit(c, b',')?;
                bits = (bits << 6) | u32::from(v);
                nbits += 6;
                if nbits >= 16 {
                    nbits -= 16;
                    units.push(((bits >> nbits) & 0xFFFF) as u16);
                }
            }
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
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

    /// The envelope a whole parse gives, but for the attachment flag (a header only guesses).
    fn whole(raw: &[u8]) -> Envelope {
        Envelope {
            has_attachments: false,
            ..envelope_of(raw)
        }
    }

    #[test]
    fn the_envelope_of_the_wanted_fields_is_the_envelope_of_the_whole_message() {
        let busy = [
            b"Received: from mx.example.net (mx.example.net [192.0.2.1])\r\n\
              \tby mail.example.com with ESMTPS id 1; Thu, 26 Nov 2026 07:20:41 +0100\r\n\
DKIM-Signature: v=1; a=rsa-sha256; d=example.com;\r\n b=From: <forged@example.org>\r\n\
Return-Path: <bounce@example.net>\r\n"
                .as_slice(),
            SAMPLE,
        ]
        .concat();
        let folded = b"Subject: a long\n subject line\nfrom : Ann <ann@example.com>\n\
X-Note:\n\tTo: not@example.com\nTO: Bob <bob@example.com>\nSubject: second\n\nbody\n";
        let no_body = b"Subject: only a header\r\nFrom: c@example.com\r\n";
        let lf_first = b"\nSubject: after an empty line\n";
        for raw in [
            SAMPLE,
            busy.as_slice(),
            folded.as_slice(),
            no_body.as_slice(),
            lf_first.as_slice(),
            b"",
            b"garbage without headers",
        ] {
            let head = parse_head(raw);
            assert_eq!(
                Envelope {
                    has_attachments: false,
                    ..head.envelope
                },
                whole(raw),
                "{}",
                String::from_utf8_lossy(raw)
            );
            let sender = MessageParser::default()
                .parse(raw)
                .map(|m| sender_of(&m))
                .unwrap_or_default();
            assert_eq!(head.sender, sender);
        }
        assert_eq!(parse_head(&busy).sender, "bounce@example.net");
        assert_eq!(parse_head(folded).envelope.to, "Bob <bob@example.com>");
        // NOTE: here the header alone does better: a whole parse drops a last field that
        // no line break ends.
        let unended = b"Subject: x\r\nFrom: c@example.com";
        assert_eq!(parse_head(unended).envelope.from, "c@example.com");
        // And a From after a field with an empty value.
        let after_empty = b"X-Mailer: \nFrom: 0\n\n";
        assert_eq!(parse_head(after_empty).envelope.from, "0");
        // And a From right after a malformed Date, which mail-parser reads on into.
        let bad_date = b"Date: 0-A\nFrom: A\n\n";
        assert_eq!(parse_head(bad_date).envelope.from, "A");
    }

    #[test]
    fn a_header_guesses_attachments_and_indexing_knows_them() {
        let mixed = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nthe words\r\n--b\r\n\
Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\
AAAA\r\n--b--\r\n";
        assert!(parse_head(mixed).envelope.has_attachments);
        let words = index_words(mixed);
        assert!(words.has_attachments);
        assert_eq!(words.body.trim(), "the words");
        let plain = index_words(SAMPLE);
        assert!(!plain.has_attachments);
        assert_eq!(plain.message_id.as_deref(), Some("m1@example.com"));
    }

    proptest::proptest! {
        #[test]
        fn any_mix_of_fields_gives_the_same_envelope(
            fields in proptest::collection::vec(
                (0usize..14, "[ -~]{0,30}", proptest::bool::ANY, proptest::bool::ANY),
                0..12,
            ),
            body in "[ -~\n]{0,40}",
        ) {
            const NAMES: [&str; 14] = [
                "From", "to", "CC", "Subject", "Date", "Message-ID", "In-Reply-To",
                "References", "Return-Path", "Content-Type", "Received", "X-Mailer",
                "DKIM-Signature", "Reply-To",
            ];
            let mut raw = Vec::new();
            let mut seen = [false; 10];
            for (name, value, folded, crlf) in &fields {
                // NOTE: each of the wanted fields at most once (RFC 5322 §3.6 allows no more);
                // of two, which one counts depends on what a malformed value before it eats.
                if let Some(s) = seen.get_mut(*name) {
                    if *s {
                        continue;
                    }
                    *s = true;
                }
                let nl: &[u8] = if *crlf { b"\r\n" } else { b"\n" };
                raw.extend_from_slice(NAMES[*name].as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(value.as_bytes());
                if *folded {
                    raw.extend_from_slice(nl);
                    raw.extend_from_slice(b"\t");
                    raw.extend_from_slice(value.as_bytes());
                }
                raw.extend_from_slice(nl);
            }
            raw.extend_from_slice(b"\n");
            raw.extend_from_slice(body.as_bytes());
            let head = parse_head(&raw).envelope;
            let whole = whole(&raw);
            // NOTE: field by field, the header alone finds what a whole parse finds. Where
            // mail-parser reads a malformed value on into the next line, a whole parse can
            // lose a wanted field that the header alone (with its gap lines) keeps; it never
            // goes the other way.
            fn kept<T: PartialEq + Default>(head: &T, whole: &T) -> bool {
                head == whole || *whole == T::default()
            }
            proptest::prop_assert!(
                kept(&head.message_id, &whole.message_id)
                    && kept(&head.in_reply_to, &whole.in_reply_to)
                    && kept(&head.references, &whole.references)
                    && kept(&head.date, &whole.date)
                    && kept(&head.from, &whole.from)
                    && kept(&head.to, &whole.to)
                    && kept(&head.cc, &whole.cc)
                    && kept(&head.subject, &whole.subject)
                    && head.size == whole.size,
                "header alone {:?}\nwhole {:?}",
                head,
                whole
            );
        }
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
    fn html_becomes_readable_text_with_numbered_links() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
            <h1>Hello&nbsp;there</h1><p>First   paragraph with <b>bold</b> and a \
            <a href=\"https://example.com/a?x=1&amp;y=2\">link</a>.<br>Next line</p>\
            <script>alert('x')</script><ul><li>one</li><li>two<ol><li>inner</li></ol></li></ul>\
            <blockquote><p>quoted text</p></blockquote><table><tr><td>a</td><td>b</td></tr>\
            <tr><td>c</td><td>d</td></tr></table><pre>  keep   this\n  too</pre>\
            <p>&lt;tag&gt; &#233;&#x1F600; &bogus; 3 < 4</p><img src=\"http://t/x.gif\" alt=\"logo\">\
            <a href=\"javascript:evil()\">no</a><!-- <p>hidden</p> --></body></html>";
        let text = html_to_text(html);
        let expected = "Hello there\n\nFirst paragraph with bold and a link[1].\nNext line\n\n\
            * one\n* two\n  1. inner\n\n> quoted text\n\na  b\nc  d\n\n  keep   this\n  too\n\n\
            <tag> é😀 &bogus; 3 < 4\n\n[image: logo] no\n\nLinks:\n[1] https://example.com/a?x=1&y=2\n";
        assert_eq!(text, expected, "{text}");
        assert!(!text.contains("alert") && !text.contains("color") && !text.contains("hidden"));
    }

    #[test]
    fn html_only_mail_is_rendered_from_html() {
        let raw = b"From: a@example.com\r\nSubject: h\r\nContent-Type: text/html\r\n\r\n\
            <p>Hi <a href='https://x.example/'>you</a></p>\r\n";
        let r = render(raw);
        assert!(r.body.starts_with("Hi you[1]"), "{}", r.body);
        assert!(r.body.contains("[1] https://x.example/"), "{}", r.body);
    }

    #[test]
    fn html_to_text_survives_broken_markup() {
        for s in [
            "<",
            "<a href=",
            "<<<>>>",
            "&#xFFFFFFFF;",
            "<p",
            "</",
            "<a href='x'>y",
            "&",
            "<!--",
        ] {
            let _ = html_to_text(s);
        }
        assert_eq!(html_to_text("&#xD800;x"), "\u{FFFD}x\n");
    }

    #[test]
    fn hostile_html_stays_small_and_skips_case_insensitively() {
        let deep = format!(
            "{}{}",
            "<blockquote><ul>".repeat(2000),
            "<li>x<br>".repeat(2000)
        );
        let text = html_to_text(&deep);
        assert!(text.len() < 200_000, "{} bytes", text.len());
        let quoted = "> ".repeat(MAX_NESTING);
        assert!(
            text.lines()
                .any(|l| l.starts_with(&quoted) && l.ends_with("* x")),
            "{}",
            &text[..text.len().min(200)]
        );
        assert_eq!(html_to_text("<STYLE>p{}</Style >shown"), "shown\n");
        assert_eq!(html_to_text("1 < 2 <> 3"), "1 < 2 <> 3\n");
        assert_eq!(html_to_text("if a < b then c > d"), "if a < b then c > d\n");
        assert_eq!(html_to_text(&"<".repeat(10_000)).len(), 10_001);
    }

    #[test]
    fn attachment_names_are_made_safe() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\x\\evil.exe"), "evil.exe");
        assert_eq!(safe_file_name("..hidden"), "hidden");
        assert_eq!(safe_file_name("a\x1b]0;x\x07b.txt"), "a_]0;x_b.txt");
        assert_eq!(safe_file_name("abc\u{202E}fdp.exe"), "abc_fdp.exe");
        assert_eq!(safe_file_name(""), "attachment");
        assert_eq!(safe_file_name("/"), "attachment");
        assert_eq!(safe_file_name(".."), "attachment");
        assert!(safe_file_name(&"x".repeat(1000)).len() <= 200);
    }

    #[test]
    fn saving_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let a = save_attachment(dir.path(), "../r.pdf", b"1").unwrap();
        let b = save_attachment(dir.path(), "r.pdf", b"2").unwrap();
        let c = save_attachment(dir.path(), "noext", b"3").unwrap();
        let d = save_attachment(dir.path(), "noext", b"4").unwrap();
        assert_eq!(a, dir.path().join("r.pdf"));
        assert_eq!(b, dir.path().join("r (1).pdf"));
        assert_eq!(d, dir.path().join("noext (1)"));
        assert_eq!(std::fs::read(&a).unwrap(), b"1");
        assert_eq!(std::fs::read(&c).unwrap(), b"3");
    }

    #[test]
    fn folder_names_in_modified_utf7_are_decoded() {
        assert_eq!(folder_label("Entw&APw-rfe"), "Entwürfe");
        assert_eq!(folder_label("&ZeVnLIqe-"), "日本語");
        assert_eq!(folder_label("Tom &- Jerry"), "Tom & Jerry");
        assert_eq!(folder_label("INBOX/Sent"), "INBOX/Sent");
        assert_eq!(folder_label("broken &AB"), "broken &AB");
        assert_eq!(folder_label("bad &*-"), "bad &*-");
    }

    #[test]
    fn garbage_does_not_panic() {
        let e = envelope_of(b"\xff\xfe\x00garbage");
        assert_eq!(e.size, 10);
        let _ = render(b"");
    }
}
