//! A fast reader for the header fields an envelope is made of, where they are plain.
//!
//! mail-parser reads any header RFC 5322 and its obsolete forms allow, with RFC 2047 encoded
//! words, comments, groups and quoted strings. That generality costs some 15,000–30,000
//! instructions for the ten fields of a typical envelope, and every downloaded message pays it
//! (IMAP and POP3 alike). Most fields are plain: `Name <local@domain>` addresses, `<id>`
//! lists, a date in the one format RFC 5322 §3.3 recommends, an ASCII subject on one line.
//!
//! This reader picks our fields out of the header in one pass and reads each one that is
//! plain itself. A field that is not (an encoded word, a comment, a group, a quote with an
//! escape, an obsolete date...) goes to mail-parser, alone with the others like it, so one
//! encoded display name costs a parse of one field rather than ten. A header whose shape is
//! unusual (a field of ours given twice, a control character or a bare CR in one, a stray
//! continuation line, no empty line at its end) goes to mail-parser whole, as before.
//! Tests check that the result is always the one mail-parser gives for the whole header.

use mail_parser::{HeaderValue, MessageParser};

use super::Head;
use crate::backend::Envelope;

/// Our fields, in slot order.
const FROM: usize = 0;
const TO: usize = 1;
const CC: usize = 2;
const SUBJECT: usize = 3;
const DATE: usize = 4;
const MESSAGE_ID: usize = 5;
const IN_REPLY_TO: usize = 6;
const REFERENCES: usize = 7;
const RETURN_PATH: usize = 8;
const CONTENT_TYPE: usize = 9;
const SLOTS: usize = 10;

/// The slot of field `name`, if it is one of ours.
fn slot(name: &[u8]) -> Option<usize> {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is(b"to") => Some(TO),
        2 if is(b"cc") => Some(CC),
        4 if is(b"from") => Some(FROM),
        4 if is(b"date") => Some(DATE),
        7 if is(b"subject") => Some(SUBJECT),
        10 if is(b"message-id") => Some(MESSAGE_ID),
        10 if is(b"references") => Some(REFERENCES),
        11 if is(b"in-reply-to") => Some(IN_REPLY_TO),
        11 if is(b"return-path") => Some(RETURN_PATH),
        12 if is(b"content-type") => Some(CONTENT_TYPE),
        _ => None,
    }
}

/// Where one of our fields is in the header.
#[derive(Clone, Copy)]
struct Field {
    /// Its first line's start.
    line: usize,
    /// Its value's start (after the colon) and end (before its last line's line break).
    value: (usize, usize),
    /// Past its last line's line break.
    end: usize,
}

/// The [`Head`] of `raw` (a message, its start, or a block of header fields) as mail-parser
/// reads its envelope fields (`parse_fields(&envelope_header(raw))`), or `None` when its
/// shape is unusual and all of it should go to mail-parser.
pub(super) fn head(raw: &[u8], size: u64) -> Option<Head> {
    let fields = pick(raw)?;
    let value = |slot: usize| fields[slot].map(|f| &raw[f.value.0..f.value.1]);
    // Each field read fast where it is plain; the rest are marked for mail-parser.
    let mut slow = [false; SLOTS];
    let mut envelope = Envelope {
        size,
        ..Envelope::default()
    };
    let mut first_from: Option<String> = None;
    let mut return_path: Option<String> = None;
    for (slot, is_slow) in slow.iter_mut().enumerate() {
        let Some(v) = value(slot) else { continue };
        let read = plain_str(v, slot).and_then(|v| match slot {
            FROM => {
                let mut first = None;
                let from = addresses(v, Some(&mut first))?;
                first_from = first.map(str::to_string);
                envelope.from = from;
                Some(())
            }
            TO => addresses(v, None).map(|a| envelope.to = a),
            CC => addresses(v, None).map(|a| envelope.cc = a),
            SUBJECT => subject(v).map(|s| envelope.subject = s),
            DATE => date(v).map(|d| envelope.date = Some(d)),
            MESSAGE_ID => one_id(v).map(|i| envelope.message_id = Some(i)),
            IN_REPLY_TO => ids(v).map(|l| envelope.in_reply_to = l.into_iter().next()),
            REFERENCES => ids(v).map(|l| envelope.references = l),
            RETURN_PATH => one_id(v).map(|i| return_path = Some(i)),
            _ => multipart_mixed(v).map(|m| envelope.has_attachments = m),
        });
        *is_slow = read.is_none();
    }
    if slow.iter().any(|&s| s) {
        // NOTE: the fields left over, each on its own and apart from the next as in
        // `envelope_header`, so that mail-parser reads each as it would in the whole header.
        let mut mini = Vec::with_capacity(256);
        for f in fields
            .iter()
            .zip(slow)
            .filter(|(_, s)| *s)
            .filter_map(|(f, _)| *f)
        {
            if !mini.is_empty() {
                mini.extend_from_slice(b"X-Mailbag-Gap: .\n");
            }
            // NOTE: ends with its line break: `pick` only answers for a header that goes on
            // to its empty line.
            mini.extend_from_slice(&raw[f.line..f.end]);
        }
        mini.push(b'\n');
        let msg = MessageParser::default().parse_headers(&mini[..])?;
        if slow[FROM] {
            envelope.from = super::addresses(msg.from());
            first_from = msg
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string);
        }
        if slow[TO] {
            envelope.to = super::addresses(msg.to());
        }
        if slow[CC] {
            envelope.cc = super::addresses(msg.cc());
        }
        if slow[SUBJECT] {
            envelope.subject = msg.subject().unwrap_or_default().to_string();
        }
        if slow[DATE] {
            envelope.date = msg.date().map(|d| d.to_timestamp());
        }
        if slow[MESSAGE_ID] {
            envelope.message_id = msg.message_id().map(str::to_string);
        }
        if slow[IN_REPLY_TO] {
            envelope.in_reply_to = super::id_list(msg.in_reply_to()).into_iter().next();
        }
        if slow[REFERENCES] {
            envelope.references = super::id_list(msg.references());
        }
        if slow[RETURN_PATH] {
            return_path = match msg.return_path() {
                HeaderValue::Text(t) => Some(t.to_string()),
                HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
                _ => None,
            };
        }
        if slow[CONTENT_TYPE] {
            envelope.has_attachments = super::is_multipart_mixed(&msg);
        }
    }
    let sender = return_path
        .filter(|r| !r.is_empty())
        .or(first_from)
        .unwrap_or_default();
    Some(Head { envelope, sender })
}

/// Our fields in `raw`, picked as [`super::envelope_header`] picks them; `None` for a shape
/// left to mail-parser whole: a field of ours given twice or holding a control character or
/// a bare CR, a continuation line first or of blanks alone in one of ours, no empty line
/// where the header ends.
fn pick(raw: &[u8]) -> Option<[Option<Field>; SLOTS]> {
    let mut fields: [Option<Field>; SLOTS] = [None; SLOTS];
    // The field being read, when it is ours.
    let mut open: Option<usize> = None;
    let mut offset = 0;
    while offset < raw.len() {
        let rest = &raw[offset..];
        let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let line = &rest[..len];
        if line == b"\n" || line == b"\r\n" {
            return Some(fields);
        }
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let next = offset + len;
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(slot) = open {
                if offset == 0 || body.iter().all(|&b| b == b' ' || b == b'\t') {
                    return None;
                }
                let f = fields[slot].as_mut()?;
                f.value.1 = offset + body.len();
                f.end = next;
            }
        } else {
            open = None;
            if let Some(colon) = memchr::memchr(b':', line)
                && let Some(slot) = slot(line[..colon].trim_ascii_end())
            {
                if fields[slot].is_some() {
                    return None;
                }
                fields[slot] = Some(Field {
                    line: offset,
                    value: (offset + colon + 1, offset + body.len()),
                    end: next,
                });
                open = Some(slot);
            }
        }
        if open.is_some() && !clean(body) {
            return None;
        }
        offset = next;
    }
    None
}

/// No control character but tab (and so no bare CR). Branch-free, so that it runs a word or a
/// vector at a time.
fn clean(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20 && b != 0x7f || b == b'\t'))
}

/// `value` of the field in `slot` as text when it is plain: not blank, ASCII (a subject may
/// also be UTF-8, RFC 6532), and no encoded word (RFC 2047) but in the addresses and the
/// subject, whose readers decode the simplest ones themselves.
fn plain_str(value: &[u8], slot: usize) -> Option<&str> {
    let text = matches!(slot, FROM | TO | CC | SUBJECT);
    let plain = (value.is_ascii() || slot == SUBJECT)
        && !value.trim_ascii().is_empty()
        && (text || !has_encoded_word(value));
    if !plain {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// Whether `value` has the start of an RFC 2047 encoded word.
fn has_encoded_word(value: &[u8]) -> bool {
    memchr::memchr_iter(b'=', value).any(|i| value.get(i + 1) == Some(&b'?'))
}

/// The text of `words`, when it is nothing but RFC 2047 encoded words of UTF-8 or US-ASCII
/// apart by spaces (`=?UTF-8?B?...?= =?utf-8?q?...?=`): decoded and joined, as §6.2 says
/// (the space between two encoded words is not shown). `None` for anything else, or a
/// decoded text that holds a control character or begins or ends with a space, which
/// mail-parser's rules decide.
fn encoded_words(words: &str) -> Option<String> {
    let mut out = Vec::with_capacity(words.len());
    for word in words.split_ascii_whitespace() {
        let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
        let mut parts = inner.splitn(3, '?');
        let (charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
        if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii"))
            || text.is_empty()
            || text.contains('?')
        {
            return None;
        }
        match encoding {
            "B" | "b" => base64(text.as_bytes(), &mut out)?,
            "Q" | "q" => quoted_printable(text.as_bytes(), &mut out)?,
            _ => return None,
        }
    }
    let text = String::from_utf8(out).ok()?;
    let shown = !text.is_empty()
        && !text.starts_with(char::is_whitespace)
        && !text.ends_with(char::is_whitespace)
        && !text.chars().any(char::is_control)
        && !text.contains("=?");
    shown.then_some(text)
}

/// RFC 2047 §4.1 "B": base64 with its padding, nothing else.
fn base64(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |b: u8| super::base64_digit(b, b'/').map(u32::from);
    let quads = text.len() / 4;
    for (n, quad) in text.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && n + 1 != quads) {
            return None;
        }
        let mut bits = 0u32;
        for &b in &quad[..4 - pad] {
            bits = bits << 6 | value(b)?;
        }
        bits <<= 6 * pad as u32;
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(())
}

/// RFC 2047 §4.2 "Q": `_` for a space, `=XX` for a byte, printable ASCII for itself.
fn quoted_printable(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let (hi, lo) = (hex(*text.get(i + 1)?)?, hex(*text.get(i + 2)?)?);
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b @ b'!'..=b'~' => out.push(b),
            _ => return None,
        }
        i += 1;
    }
    Some(())
}

/// The one `<id>` of `value`, without brackets.
fn one_id(value: &str) -> Option<String> {
    let mut ids = ids(value)?;
    if ids.len() != 1 {
        return None;
    }
    ids.pop()
}

/// An unstructured field on one line: trimmed, or decoded when it is all encoded words.
fn subject(value: &str) -> Option<String> {
    if value.contains('\n') {
        return None;
    }
    let value = value.trim_ascii();
    if has_encoded_word(value.as_bytes()) {
        return encoded_words(value);
    }
    Some(value.to_string())
}

/// `[Day, ]D Mon YYYY HH:MM[:SS] ±HHMM`, as seconds since the epoch (UTC).
fn date(value: &str) -> Option<i64> {
    let mut words = value.split_ascii_whitespace();
    let mut word = words.next()?;
    if let Some(day) = word.strip_suffix(',') {
        if !DAYS.contains(&day) {
            return None;
        }
        word = words.next()?;
    }
    let day: u32 = number(word, 1, 2)?;
    let month = words.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let year: i64 = i64::from(number(words.next()?, 4, 4)?);
    let mut clock = words.next()?.split(':');
    let hour = number(clock.next()?, 2, 2)?;
    let minute = number(clock.next()?, 2, 2)?;
    let second = match clock.next() {
        Some(s) => number(s, 2, 2)?,
        None => 0,
    };
    let zone = words.next()?.as_bytes();
    if clock.next().is_some() || words.next().is_some() || zone.len() != 5 {
        return None;
    }
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zone = std::str::from_utf8(&zone[1..]).ok()?;
    let (zh, zm) = (number(&zone[..2], 2, 2)?, number(&zone[2..], 2, 2)?);
    if !(1970..=9999).contains(&year)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
        || zh > 23
        || zm > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(local - sign * i64::from(zh * 3600 + zm * 60))
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A number of `min..=max` ASCII digits.
fn number(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Characters of an atom (RFC 5322 §3.2.3 atext), as a table: this runs for every byte of
/// every address and id.
const ATEXT: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let specials = b"!#$%&'*+-/=?^_`{|}~";
    let mut i = 0;
    while i < specials.len() {
        t[specials[i] as usize] = true;
        i += 1;
    }
    t
};

fn atext(b: u8) -> bool {
    ATEXT[usize::from(b)]
}

/// `local@domain` of dot-atoms, as RFC 5322 §3.4.1 writes it without quotes or literals.
fn addr_spec(s: &[u8]) -> bool {
    let Some(at) = memchr::memchr(b'@', s) else {
        return false;
    };
    dot_atom(&s[..at]) && dot_atom(&s[at + 1..])
}

/// Atoms joined by single dots.
fn dot_atom(s: &[u8]) -> bool {
    separated(s, b'.', atext)
}

/// A list of `local@domain`, `<local@domain>`, `Words Of A Name <local@domain>` and
/// `"Any Name, Even With Commas" <local@domain>`, separated by commas: formatted as
/// [`super::addresses`] does. `first` gets the first address.
fn addresses<'v>(value: &'v str, mut first: Option<&mut Option<&'v str>>) -> Option<String> {
    let text = value;
    let value = value.as_bytes();
    // The text of a part of `value` (ASCII, so any cut is a character boundary).
    let sub = |part: &[u8]| -> Option<&'v str> {
        if part.is_empty() {
            return Some("");
        }
        let at = (part.as_ptr() as usize).checked_sub(value.as_ptr() as usize)?;
        text.get(at..at + part.len())
    };
    let mut out = String::with_capacity(value.len());
    let mut rest = value.trim_ascii_start();
    loop {
        let (name, addr);
        if let Some(quoted) = rest.strip_prefix(b"\"") {
            let close = memchr::memchr(b'"', quoted)?;
            name = &quoted[..close];
            // NOTE: a name as it would be shown: no escape, fold or tab, no space at either
            // end or twice in a row.
            if !spaced_words(name, |b| b != b'\\' && (b' '..=b'~').contains(&b))
                || has_encoded_word(name)
            {
                return None;
            }
            let inner = quoted[close + 1..].trim_ascii_start().strip_prefix(b"<")?;
            let close = memchr::memchr(b'>', inner)?;
            addr = &inner[..close];
            rest = &inner[close + 1..];
        } else {
            let end = memchr::memchr(b',', rest).unwrap_or(rest.len());
            let item = rest[..end].trim_ascii();
            rest = &rest[end..];
            (name, addr) = match item.strip_suffix(b">") {
                Some(front) => {
                    let open = memchr::memchr(b'<', front)?;
                    let name = front[..open].trim_ascii();
                    // NOTE: atoms one space apart: anything else (a dot, a comment, runs of
                    // spaces, a fold) is left to mail-parser.
                    // NOTE: an encoded word is atoms to this test (RFC 2047 §5 (3) puts it
                    // where a word of a phrase goes); one with other characters is
                    // mail-parser's.
                    if !name.is_empty() && !spaced_words(name, atext) {
                        return None;
                    }
                    (name, &front[open + 1..])
                }
                None => (&b""[..], item),
            };
        }
        if !addr_spec(addr) || has_encoded_word(addr) {
            return None;
        }
        let (name, addr) = (sub(name)?, sub(addr)?);
        let decoded;
        let name = if has_encoded_word(name.as_bytes()) {
            decoded = encoded_words(name)?;
            decoded.as_str()
        } else {
            name
        };
        if !out.is_empty() {
            out.push_str(", ");
        }
        if name.is_empty() {
            out.push_str(addr);
        } else {
            out.push_str(name);
            out.push_str(" <");
            out.push_str(addr);
            out.push('>');
        }
        if let Some(first) = first.take() {
            *first = Some(addr);
        }
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            return Some(out);
        }
        rest = rest.strip_prefix(b",")?.trim_ascii_start();
    }
}

/// Words of bytes `ok` takes, one space apart, with none at either end.
fn spaced_words(s: &[u8], ok: impl Fn(u8) -> bool) -> bool {
    separated(s, b' ', ok)
}

/// Runs of bytes `ok` takes, one `sep` apart, with none at either end.
fn separated(s: &[u8], sep: u8, ok: impl Fn(u8) -> bool) -> bool {
    let mut prev = sep;
    for &b in s {
        if b == sep {
            if prev == sep {
                return false;
            }
        } else if !ok(b) {
            return false;
        }
        prev = b;
    }
    prev != sep
}

/// `<id> <id> ...` (whitespace, folds included, between them): the ids without brackets.
fn ids(value: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = value.trim_ascii();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('<')?;
        let close = inner.bytes().position(|b| b == b'>')?;
        let id = &inner[..close];
        if id.is_empty() || !id.bytes().all(|b| atext(b) || b == b'.' || b == b'@') {
            return None;
        }
        out.push(id.to_string());
        rest = inner[close + 1..].trim_ascii_start();
    }
    Some(out)
}

/// Whether a Content-Type of `type/subtype[; parameters]` is multipart/mixed.
fn multipart_mixed(value: &str) -> Option<bool> {
    let value = value.trim_ascii().as_bytes();
    let end = memchr::memchr(b';', value).unwrap_or(value.len());
    let kind = &value[..end];
    let slash = memchr::memchr(b'/', kind)?;
    let token = |t: &[u8]| {
        !t.is_empty()
            && t.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'+' || b == b'.')
    };
    let (t, s) = (&kind[..slash], &kind[slash + 1..]);
    if !token(t) || !token(s) {
        return None;
    }
    // NOTE: the parameters are not needed, but anything unusual in them (a comment, an
    // escape, a fold, an open quote) goes to mail-parser, which might read the type
    // differently around it.
    if !plain_parameters(&value[end..]) {
        return None;
    }
    Some(t.eq_ignore_ascii_case(b"multipart") && s.eq_ignore_ascii_case(b"mixed"))
}

/// `(; name=token | ; name="text")*` with spaces around the parts: RFC 2045 §5.1
/// parameters without comments or escapes.
fn plain_parameters(mut rest: &[u8]) -> bool {
    let token_byte = |b: u8| b > b' ' && b < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b);
    let token_len = |s: &[u8]| s.iter().take_while(|&&b| token_byte(b)).count();
    loop {
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            return true;
        }
        let Some(after) = rest.strip_prefix(b";") else {
            return false;
        };
        let after = after.trim_ascii_start();
        let name = token_len(after);
        if name == 0 {
            return false;
        }
        let Some(after) = after[name..].trim_ascii_start().strip_prefix(b"=") else {
            return false;
        };
        let after = after.trim_ascii_start();
        rest = if let Some(quoted) = after.strip_prefix(b"\"") {
            let Some(close) = memchr::memchr(b'"', quoted) else {
                return false;
            };
            if quoted[..close]
                .iter()
                .any(|&b| b == b'\\' || b < b' ' || b == 0x7f)
            {
                return false;
            }
            &quoted[close + 1..]
        } else {
            let len = token_len(after);
            if len == 0 {
                return false;
            }
            &after[len..]
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    /// What mail-parser makes of the envelope fields of `header`.
    fn fully(header: &[u8]) -> Head {
        super::super::parse_fields(&super::super::envelope_header(header), 1234)
    }

    #[test]
    fn a_plain_header_is_read_as_mail_parser_reads_it() {
        let header = b"From: Ann Example <ann@example.com>\r\n\
            To: bob@example.org, Carol <carol.c@example.net>, \"Doe, Jo\" <jo@x.org>\r\n\
            Cc: <dave@example.com>\r\n\
            Subject:   Lunch on Friday?  \r\n\
            Date: Thu, 20 Feb 2025 10:05:09 +0130\r\n\
            Message-ID: <abc.123@mail.example.com>\r\n\
            In-Reply-To: <parent@example.com>\r\n\
            References: <root@example.com>\r\n <parent@example.com>\r\n\
            Return-Path: <bounce@example.com>\r\n\
            X-Unrelated: (anything) \"at all\" =?utf-8?q?x?=\r\n\
            Content-Type: multipart/mixed; boundary=xyz\r\n\
            \r\n";
        let quick = head(header, 1234).expect("plain");
        assert_eq!(quick, fully(header));
        assert_eq!(quick.envelope.date, Some(1_740_040_509));
        assert_eq!(quick.envelope.references.len(), 2);
        assert!(quick.envelope.has_attachments);
        assert_eq!(quick.sender, "bounce@example.com");
    }

    #[test]
    fn a_field_that_is_not_plain_is_read_by_mail_parser_alone() {
        for header in [
            &b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"[..],
            b"Subject: two\r\n lines\r\n\r\n",
            b"From: a@b.c (comment)\r\nTo: x@y.z\r\n\r\n",
            b"From: Erin Q. Public <e@b.c>\r\nSubject: hi\r\n\r\n",
            b"From: =?UTF-8?B?w6l0w6k=?= <e@b.c>\r\nDate: Thu, 20 Feb 2025 10:05:09 +0130\r\n\r\n",
            b"From: \"Ann \\\"A\\\" Example\" <e@b.c>\r\n\r\n",
            b"To: group: a@b.c;\r\n\r\n",
            b"Date: 20 Feb 25 10:00 GMT\r\n\r\n",
            b"Date: Thu, 30 Feb 2025 10:00:00 +0000\r\n\r\n",
            b"Subject: caf\xc3\xa9\r\n\r\n",
            b"Message-ID: <a@b> <c@d>\r\n\r\n",
            b"Return-Path: <>\r\nFrom: a@b.c\r\n\r\n",
            b"Subject:\r\n\r\n",
            b"Date: 0-A\r\nSubject: next\r\n\r\n",
        ] {
            let text = String::from_utf8_lossy(header);
            assert_eq!(
                head(header, 1234).as_ref(),
                Some(&fully(header)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn an_unusual_shape_goes_to_mail_parser_whole() {
        for header in [
            &b"Subject: one\r\nSubject: two\r\n\r\n"[..],
            b"Subject: a\rb\r\n\r\n",
            b"Subject: a\x1b[31m\r\n\r\n",
            b"Subject: a\r\n \r\n\r\n",
            b"Subject: no end\r\n",
        ] {
            assert_eq!(
                head(header, 1),
                None,
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    fn atom() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,6}"
    }

    fn addr() -> impl Strategy<Value = String> {
        (atom(), proptest::option::of(atom()), atom(), atom()).prop_map(
            |(l, l2, d, tld)| match l2 {
                Some(l2) => format!("{l}.{l2}@{d}.{tld}"),
                None => format!("{l}@{d}.{tld}"),
            },
        )
    }

    fn mailbox() -> impl Strategy<Value = String> {
        prop_oneof![
            addr(),
            addr().prop_map(|a| format!("<{a}>")),
            (proptest::collection::vec(atom(), 1..4), addr())
                .prop_map(|(n, a)| format!("{} <{a}>", n.join(" "))),
            ("[ -~]{0,12}", addr()).prop_map(|(n, a)| format!("\"{n}\" <{a}>")),
            ("[A-Za-z]{1,6}", "[A-Za-z]{1,6}", addr())
                .prop_map(|(l, f, a)| format!("\"{l}, {f}\" <{a}>")),
            (encoded(), addr()).prop_map(|(n, a)| format!("{n} <{a}>")),
            (encoded(), addr()).prop_map(|(n, a)| format!("\"{n}\" <{a}>")),
        ]
    }

    /// Encoded words (RFC 2047) of the kinds read here and of others, alone or in a row.
    fn encoded() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            Just("=?UTF-8?B?w6l0w6k=?="),
            Just("=?utf-8?b?R3LDvMOfZQ==?="),
            Just("=?UTF-8?B?8J+Riw==?="),
            Just("=?UTF-8?B?IA==?="),
            Just("=?UTF-8?B?AQ==?="),
            Just("=?UTF-8?B?w6l0w6k?="),
            Just("=?utf-8?q?Ann_Example?="),
            Just("=?utf-8?Q?J=C3=BCrgen?="),
            Just("=?UTF-8?Q?a=2c_b?="),
            Just("=?us-ascii?q?plain?="),
            Just("=?ISO-8859-1?Q?J=FCrgen?="),
            Just("=?utf-8*en?q?x?="),
            Just("=?utf-8?x?abc?="),
            Just("=?UTF-8?Q?=E2=80?="),
        ];
        (
            proptest::collection::vec(word, 1..4),
            prop_oneof![Just(" "), Just("  "), Just("\t")],
        )
            .prop_map(|(w, sep)| w.join(sep))
    }

    fn separator() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just(" "),
            Just(""),
            Just("  "),
            Just("\r\n "),
            Just("\n\t"),
            Just("\t"),
        ]
    }

    fn id() -> impl Strategy<Value = String> {
        (atom(), atom(), atom()).prop_map(|(a, b, c)| format!("<{a}@{b}.{c}>"))
    }

    fn date_text() -> impl Strategy<Value = String> {
        (
            proptest::option::of(0usize..7),
            1u32..32,
            0usize..12,
            prop_oneof![1970i64..2100, Just(2000), Just(2024)],
            (0u32..24, 0u32..60, proptest::option::of(0u32..60)),
            (
                proptest::bool::ANY,
                0u32..15,
                prop_oneof![Just(0u32), Just(30), Just(45)],
            ),
        )
            .prop_map(|(dow, d, m, y, (h, mi, s), (neg, zh, zm))| {
                let dow = dow.map(|i| format!("{}, ", DAYS[i])).unwrap_or_default();
                let s = s.map(|s| format!(":{s:02}")).unwrap_or_default();
                let sign = if neg { '-' } else { '+' };
                format!(
                    "{dow}{d} {} {y} {h:02}:{mi:02}{s} {sign}{zh:02}{zm:02}",
                    MONTHS[m]
                )
            })
    }

    /// One header field, plain or nearly so.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            (proptest::collection::vec(mailbox(), 1..4), ", | ,|,")
                .prop_map(|(l, sep)| format!("From: {}", l.join(&sep))),
            proptest::collection::vec(mailbox(), 1..4)
                .prop_map(|l| format!("To: {}", l.join(",\r\n "))),
            proptest::collection::vec(mailbox(), 1..3)
                .prop_map(|l| format!("Cc: {}", l.join(", "))),
            "[ -~]{0,30}".prop_map(|s| format!("Subject: {s}")),
            encoded().prop_map(|e| format!("Subject: {e}")),
            "[ -~äöüß€😀\u{a0}]{1,12}".prop_map(|t| format!("Subject: {t}")),
            (encoded(), "[ -~]{0,8}").prop_map(|(e, t)| format!("Subject: {t} {e}")),
            date_text().prop_map(|d| format!("Date: {d}")),
            id().prop_map(|i| format!("Message-ID: {i}")),
            (id(), separator()).prop_map(|(i, s)| format!("In-Reply-To:{s}{i}")),
            (proptest::collection::vec(id(), 1..5), separator())
                .prop_map(|(l, s)| format!("References: {}", l.join(s))),
            addr().prop_map(|a| format!("Return-Path: <{a}>")),
            prop_oneof![
                Just("text/plain; charset=us-ascii"),
                Just("multipart/mixed; boundary=\"b1\""),
                Just("Multipart/Mixed;boundary=x"),
                Just("multipart/alternative; boundary=y"),
                Just("text/html"),
            ]
            .prop_map(|c| format!("Content-Type: {c}")),
            "[ -~]{0,30}".prop_map(|s| format!("X-Other: {s}")),
        ]
    }

    fn header() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(field(), 0..12),
            proptest::bool::ANY,
        )
            .prop_map(|(fields, crlf)| {
                let nl = if crlf { "\r\n" } else { "\n" };
                let mut h = String::new();
                for f in fields {
                    h.push_str(&f.replace("\r\n", nl));
                    h.push_str(nl);
                }
                h.push_str(nl);
                h.into_bytes()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        /// Wherever the fast reader answers, it answers as mail-parser does.
        #[test]
        fn agrees_with_mail_parser(h in header()) {
            if let Some(quick) = head(&h, 1234) {
                prop_assert_eq!(quick, fully(&h), "{:?}", String::from_utf8_lossy(&h));
            }
        }

        /// The same on headers with bytes changed, added or removed anywhere.
        #[test]
        fn agrees_with_mail_parser_on_damaged_headers(
            h in header(),
            edits in proptest::collection::vec((any::<usize>(), 0u8..3, any::<u8>()), 1..4),
        ) {
            let mut h = h;
            for (at, kind, byte) in edits {
                if h.is_empty() {
                    break;
                }
                let at = at % h.len();
                // Mostly characters that mean something in a header.
                let set = b"<>@,;:\"()\\. \t\r\n=?";
                let byte = set[usize::from(byte) % set.len()];
                match kind {
                    0 => h[at] = byte,
                    1 => h.insert(at, byte),
                    _ => {
                        h.remove(at);
                    }
                }
            }
            if let Some(quick) = head(&h, 1234) {
                prop_assert_eq!(quick, fully(&h), "{:?}", String::from_utf8_lossy(&h));
            }
        }
    }

    /// Every message of the demo mailbox (mail of many shapes): read alike both ways.
    #[test]
    fn the_demo_mailbox_is_read_alike() {
        let mbox = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo.mbox"))
            .expect("demo mbox");
        let (mut fast, mut all) = (0, 0);
        for message in mbox
            .split(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .split(|l| l.starts_with(b"From "))
        {
            let raw = message.join(&b'\n');
            if raw.is_empty() {
                continue;
            }
            all += 1;
            if let Some(quick) = head(&raw, 1234) {
                fast += 1;
                assert_eq!(quick, fully(&raw), "{}", String::from_utf8_lossy(&raw));
            }
        }
        assert!(all > 10 && fast > 0, "{fast} of {all} read fast");
    }

    /// A header of the usual shape (each field once), plain or not, is read here: only its
    /// fields that are not plain go to mail-parser.
    #[test]
    fn a_header_of_the_usual_shape_is_read_here() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut shaped, mut read) = (0, 0);
        for _ in 0..500 {
            let h = header().new_tree(&mut runner).expect("tree").current();
            let text = String::from_utf8_lossy(&h).to_ascii_lowercase();
            let names = [
                "from:",
                "to:",
                "cc:",
                "subject:",
                "date:",
                "message-id:",
                "in-reply-to:",
                "references:",
                "return-path:",
                "content-type:",
            ];
            let once = names
                .iter()
                .all(|n| text.lines().filter(|l| l.starts_with(n)).count() <= 1);
            if once {
                shaped += 1;
                read += usize::from(head(&h, 1).is_some());
            }
        }
        assert!(shaped > 100, "only {shaped} headers had each field once");
        assert_eq!(
            read, shaped,
            "some headers of a usual shape went to mail-parser whole"
        );
    }
}

#[cfg(test)]
mod decoding {
    use super::*;

    #[test]
    fn the_simplest_encoded_words_are_decoded_here() {
        assert_eq!(subject(" =?utf-8?q?caf=C3=A9?= ").as_deref(), Some("café"));
        assert_eq!(
            subject("=?UTF-8?B?R3LDvMOfZQ==?= =?utf-8?q?_und_mehr?=").as_deref(),
            Some("Grüße und mehr")
        );
        assert_eq!(
            addresses("=?UTF-8?B?w6l0w6k=?= <e@b.c>, x@y.z", None).as_deref(),
            Some("été <e@b.c>, x@y.z")
        );
        // Left to mail-parser: other charsets, a word with text around it, bad base64,
        // a decoded control character or edge space.
        assert_eq!(subject("=?ISO-8859-1?Q?J=FCrgen?="), None);
        assert_eq!(subject("Re: =?utf-8?q?x?="), None);
        assert_eq!(subject("=?UTF-8?B?w6l0w6k?="), None);
        assert_eq!(subject("=?UTF-8?B?AQ==?="), None);
        assert_eq!(subject("=?UTF-8?B?IA==?="), None);
    }
}

#[cfg(test)]
mod corpus {
    /// A check to run by hand against any collection of real mail:
    /// `MAILBAG_EML_LIST=FILE cargo test --lib envelope_corpus -- --ignored --nocapture`,
    /// where FILE lists one message file per line (for example mail-parser's
    /// `resources/eml` and Python's `test_email/data`, 365 files, all alike).
    #[test]
    #[ignore]
    fn envelope_corpus_is_read_as_mail_parser_reads_it() {
        let list = std::env::var("MAILBAG_EML_LIST")
            .expect("MAILBAG_EML_LIST names a file that lists message files, one per line");
        let list = std::fs::read_to_string(&list).expect("the list of message files");
        let (mut all, mut here, mut differ) = (0, 0, Vec::new());
        for path in list.lines().filter(|l| !l.is_empty()) {
            let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            all += 1;
            let size = raw.len() as u64;
            let full = super::super::parse_fields(&super::super::envelope_header(&raw), size);
            if let Some(quick) = super::head(&raw, size) {
                here += 1;
                if quick != full {
                    differ.push(format!(
                        "{path}
  here: {quick:?}
  mail-parser: {full:?}"
                    ));
                }
            }
        }
        eprintln!("{all} messages, {here} read here, {} differ", differ.len());
        assert!(all > 0, "the list names no message");
        assert!(differ.is_empty(), "{}", differ.join("\n"));
    }
}
