//! A fast reader for the FETCH responses of new messages (RFC 3501 §7.4.2).
//!
//! The initial sync of a large folder is one `UID FETCH n:* (UID FLAGS RFC822.SIZE MODSEQ
//! BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (...)])` with one response per message. imap-proto
//! builds a full tree of each BODYSTRUCTURE, where mailbag only asks whether a part is an
//! attachment: that was 20,000 instructions a response, 40 % of the reading thread. This
//! reader takes exactly that shape of response and nothing else. Anything it does not
//! expect — another response, another item, a literal inside BODYSTRUCTURE, a malformed
//! byte — is [`Quick::Other`], and the response goes to imap-proto as before. A property
//! test checks that it agrees with imap-proto wherever it answers.

use super::Fetched;
use super::session::Quick;
use crate::backend::Flags;

/// Nesting deeper than this in a BODYSTRUCTURE is left to imap-proto.
const MAX_DEPTH: usize = 32;

/// Read one `* n FETCH (...)` response of new-message items from the front of `bytes`.
/// `Done(len, None)` for a FETCH without a UID (mailbag skips those, as before).
pub(crate) fn fetch(bytes: &[u8]) -> Quick<Option<Fetched>> {
    let mut c = Cursor { b: bytes, i: 0 };
    match c.fetch() {
        Ok(f) => Quick::Done(c.i, f),
        Err(Stop::Incomplete) => Quick::Incomplete,
        Err(Stop::Other) => Quick::Other,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The bytes so far fit; more are needed.
    Incomplete,
    /// Not a response this reader takes.
    Other,
}

type Read<T> = Result<T, Stop>;

/// A value inside BODYSTRUCTURE.
#[derive(Debug)]
enum Node<'a> {
    Nil,
    Number,
    Str(&'a [u8]),
    List(Vec<Node<'a>>),
}

impl Node<'_> {
    fn text(&self) -> Option<&[u8]> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Read<u8> {
        self.b.get(self.i).copied().ok_or(Stop::Incomplete)
    }

    fn byte(&mut self, want: u8) -> Read<()> {
        if self.peek()? != want {
            return Err(Stop::Other);
        }
        self.i += 1;
        Ok(())
    }

    /// `want` exactly, in any case.
    fn tag(&mut self, want: &[u8]) -> Read<()> {
        let have = &self.b[self.i..];
        let n = have.len().min(want.len());
        if !have[..n].eq_ignore_ascii_case(&want[..n]) {
            return Err(Stop::Other);
        }
        if n < want.len() {
            return Err(Stop::Incomplete);
        }
        self.i += n;
        Ok(())
    }

    fn number(&mut self) -> Read<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(&d) = self.b.get(self.i) {
            if !d.is_ascii_digit() {
                break;
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(Stop::Other)?;
            self.i += 1;
        }
        if self.i == self.b.len() {
            return Err(Stop::Incomplete);
        }
        if self.i == start {
            return Err(Stop::Other);
        }
        Ok(n)
    }

    /// An atom (a flag, an item name): up to a space, a bracket, a parenthesis or a CR.
    fn atom(&mut self) -> Read<&'a [u8]> {
        let start = self.i;
        loop {
            match self.peek()? {
                b' ' | b'(' | b')' | b'[' | b']' | b'\r' | b'\n' | b'"' | b'{' => break,
                c if !(0x20..0x7f).contains(&c) => return Err(Stop::Other),
                _ => self.i += 1,
            }
        }
        if self.i == start {
            return Err(Stop::Other);
        }
        Ok(&self.b[start..self.i])
    }

    /// A quoted string (RFC 3501 §4.3) without escapes.
    fn quoted(&mut self) -> Read<&'a [u8]> {
        self.byte(b'"')?;
        let start = self.i;
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Ok(&self.b[start..self.i - 1]),
                // NOTE: imap-proto keeps a quoted string's escapes as they are; a string with
                // one is left to it, so that both read it alike.
                b'\\' => return Err(Stop::Other),
                b'\r' | b'\n' | 0 => return Err(Stop::Other),
                _ => {}
            }
        }
    }

    /// A literal `{n}` CRLF and its n bytes.
    fn literal(&mut self) -> Read<&'a [u8]> {
        self.byte(b'{')?;
        let n = usize::try_from(self.number()?).map_err(|_| Stop::Other)?;
        self.byte(b'}')?;
        self.byte(b'\r')?;
        self.byte(b'\n')?;
        let end = self.i.checked_add(n).ok_or(Stop::Other)?;
        if end > self.b.len() {
            return Err(Stop::Incomplete);
        }
        let data = &self.b[self.i..end];
        self.i = end;
        Ok(data)
    }

    /// `* n FETCH (item *(SP item))` CRLF.
    fn fetch(&mut self) -> Read<Option<Fetched>> {
        self.tag(b"* ")?;
        self.number()?;
        self.tag(b" FETCH (")?;
        let mut m = Fetched::default();
        let mut has_uid = false;
        loop {
            let name = self.atom()?;
            if name.eq_ignore_ascii_case(b"UID") {
                self.byte(b' ')?;
                m.uid = u32::try_from(self.number()?).map_err(|_| Stop::Other)?;
                has_uid = true;
            } else if name.eq_ignore_ascii_case(b"FLAGS") {
                self.byte(b' ')?;
                m.flags = self.flags()?;
            } else if name.eq_ignore_ascii_case(b"RFC822.SIZE") {
                self.byte(b' ')?;
                m.size = u64::from(u32::try_from(self.number()?).map_err(|_| Stop::Other)?);
            } else if name.eq_ignore_ascii_case(b"MODSEQ") {
                self.tag(b" (")?;
                m.modseq = Some(self.number()?);
                self.byte(b')')?;
            } else if name.eq_ignore_ascii_case(b"BODYSTRUCTURE") {
                self.byte(b' ')?;
                let node = self.node(0)?;
                m.attachments = Some(attachment(&node, 0).ok_or(Stop::Other)?);
            } else if name.eq_ignore_ascii_case(b"BODY") {
                self.section()?;
                self.byte(b' ')?;
                m.header = match self.peek()? {
                    b'{' => self.literal()?.to_vec(),
                    b'"' => self.quoted()?.to_vec(),
                    _ => {
                        self.tag(b"NIL")?;
                        Vec::new()
                    }
                };
            } else {
                return Err(Stop::Other);
            }
            match self.peek()? {
                b' ' => self.i += 1,
                b')' => {
                    self.i += 1;
                    break;
                }
                _ => return Err(Stop::Other),
            }
        }
        self.tag(b"\r\n")?;
        Ok(has_uid.then_some(m))
    }

    /// `(flag *(SP flag))`, or `()`.
    fn flags(&mut self) -> Read<Flags> {
        self.byte(b'(')?;
        let mut flags = Flags::default();
        if self.peek()? == b')' {
            self.i += 1;
            return Ok(flags);
        }
        loop {
            let start = self.i;
            if self.peek()? == b'\\' {
                self.i += 1;
            }
            self.atom()?;
            if let Some(flag) = super::system_flag(&self.b[start..self.i]) {
                flags.insert(flag);
            }
            match self.peek()? {
                b' ' => self.i += 1,
                b')' => {
                    self.i += 1;
                    return Ok(flags);
                }
                _ => return Err(Stop::Other),
            }
        }
    }

    /// `[HEADER.FIELDS (name *(SP name))]` (the section mailbag asks for) and an optional
    /// `<origin>` after `BODY`.
    fn section(&mut self) -> Read<()> {
        self.tag(b"[HEADER.FIELDS (")?;
        loop {
            let start = self.i;
            while matches!(self.peek()?, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-') {
                self.i += 1;
            }
            if self.i == start {
                return Err(Stop::Other);
            }
            match self.peek()? {
                b' ' => self.i += 1,
                b')' => break,
                _ => return Err(Stop::Other),
            }
        }
        self.tag(b")]")?;
        if self.peek()? == b'<' {
            self.i += 1;
            self.number()?;
            self.byte(b'>')?;
        }
        Ok(())
    }

    /// One BODYSTRUCTURE value: a list, a quoted string, a number or NIL.
    fn node(&mut self, depth: usize) -> Read<Node<'a>> {
        if depth > MAX_DEPTH {
            return Err(Stop::Other);
        }
        match self.peek()? {
            b'(' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    items.push(self.node(depth + 1)?);
                    match self.peek()? {
                        b' ' => self.i += 1,
                        // Parts of a multipart follow each other without a space.
                        b'(' => {}
                        b')' => {
                            self.i += 1;
                            return Ok(Node::List(items));
                        }
                        _ => return Err(Stop::Other),
                    }
                }
            }
            b'"' => Ok(Node::Str(self.quoted()?)),
            b'0'..=b'9' => {
                self.number()?;
                Ok(Node::Number)
            }
            b'N' | b'n' => {
                self.tag(b"NIL")?;
                Ok(Node::Nil)
            }
            _ => Err(Stop::Other),
        }
    }
}

/// Whether a BODYSTRUCTURE has a part the user would call an attachment, by the same rule as
/// `has_attachment` on imap-proto's tree; `None` for a shape it does not know.
fn attachment(node: &Node<'_>, depth: usize) -> Option<bool> {
    let Node::List(items) = node else {
        return None;
    };
    if depth > MAX_DEPTH {
        return None;
    }
    if let Some(Node::List(_)) = items.first() {
        // A multipart: its parts come first, then its subtype.
        let mut any = false;
        for part in items.iter().take_while(|i| matches!(i, Node::List(_))) {
            any |= attachment(part, depth + 1)?;
        }
        return Some(any);
    }
    let ty = items.first()?.text()?;
    let subtype = items.get(1)?.text()?;
    let text = ty.eq_ignore_ascii_case(b"TEXT");
    let message = ty.eq_ignore_ascii_case(b"MESSAGE") && subtype.eq_ignore_ascii_case(b"RFC822");
    // type, subtype, parameters, id, description, encoding, size; then the line count of a
    // text part, or the envelope, body and line count of a message; then MD5, disposition.
    let fields = if text {
        8
    } else if message {
        10
    } else {
        7
    };
    // The fields must have their kinds (size and line counts numbers), or the shape is not
    // the one this reads.
    let number = |i: usize| matches!(items.get(i), Some(Node::Number));
    if items.len() < fields
        || items.get(5).and_then(Node::text).is_none()
        || !number(6)
        || (text && !number(7))
        || (message && !number(9))
    {
        return None;
    }
    if let Some(Node::List(d)) = items.get(fields + 1)
        && d.first()
            .and_then(Node::text)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"attachment"))
    {
        return Some(true);
    }
    if text {
        return Some(false);
    }
    let named = match items.get(2) {
        Some(Node::List(params)) => params
            .iter()
            .step_by(2)
            .any(|k| k.text().is_some_and(|k| k.eq_ignore_ascii_case(b"name"))),
        _ => false,
    };
    Some(named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::imap_proto::{Response, parser::parse_response};
    use proptest::prelude::*;

    /// What imap-proto and mailbag's own mapping make of `bytes`: the response's length and
    /// its message, or `None` if it is not a whole FETCH.
    fn full(bytes: &[u8]) -> Option<(usize, Option<Fetched>)> {
        let (rest, r) = parse_response(bytes).ok()?;
        let Response::Fetch(_, attrs) = r else {
            return None;
        };
        Some((bytes.len() - rest.len(), super::super::new_message(&attrs)))
    }

    fn quick(bytes: &[u8]) -> Quick<Option<Fetched>> {
        fetch(bytes)
    }

    const SEEN_PLAIN: &[u8] = b"* 1 FETCH (UID 7 FLAGS (\\Seen $Forwarded) RFC822.SIZE 634 \
MODSEQ (12) BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"8BIT\" 120 5 \
NIL NIL NIL NIL) BODY[HEADER.FIELDS (DATE FROM)] {17}\r\nSubject: hi\r\n\r\n\r\n)\r\n";

    #[test]
    fn reads_the_initial_sync_response_as_imap_proto_does() {
        let Quick::Done(n, Some(m)) = quick(SEEN_PLAIN) else {
            panic!("not read");
        };
        assert_eq!(n, SEEN_PLAIN.len());
        assert_eq!(m.uid, 7);
        assert_eq!(m.flags, Flags::SEEN);
        assert_eq!(
            (m.size, m.modseq, m.attachments),
            (634, Some(12), Some(false))
        );
        assert_eq!(m.header, b"Subject: hi\r\n\r\n\r\n");
        assert_eq!(full(SEEN_PLAIN), Some((n, Some(m))));
    }

    #[test]
    fn leaves_everything_else_to_imap_proto() {
        for other in [
            &b"mb3 OK done\r\n"[..],
            b"* 5 EXISTS\r\n",
            b"* OK [HIGHESTMODSEQ 4] x\r\n",
            b"* 1 FETCH (UID 1 ENVELOPE NIL)\r\n",
            b"* 1 FETCH (UID 1 BODYSTRUCTURE ({4}\r\nTEXT \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1))\r\n",
            b"* 1 FETCH (UID 1 BODY[] ~{3}\r\nabc)\r\n",
            b"* 1 FETCH (UID 1)\n",
        ] {
            assert!(
                matches!(quick(other), Quick::Other),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        // Every cut of a response it reads is only the start of one.
        for cut in 0..SEEN_PLAIN.len() {
            assert!(
                matches!(quick(&SEEN_PLAIN[..cut]), Quick::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_deep_bodystructure_is_left_to_imap_proto() {
        let mut deep = b"* 1 FETCH (UID 1 BODYSTRUCTURE ".to_vec();
        deep.extend(std::iter::repeat_n(b'(', 100));
        deep.extend(b"\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1");
        deep.extend(std::iter::repeat_n(b')', 100));
        deep.extend(b")\r\n");
        assert!(matches!(quick(&deep), Quick::Other));
    }

    fn params() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "NIL",
            "(\"CHARSET\" \"utf-8\")",
            "(\"NAME\" \"a.pdf\")",
            "(\"charset\" \"us-ascii\" \"name\" \"b.txt\")",
            "(\"FORMAT\" \"flowed\")",
        ])
        .prop_map(str::to_string)
    }

    fn disposition() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "NIL",
            "(\"attachment\" (\"FILENAME\" \"a.pdf\"))",
            "(\"ATTACHMENT\" NIL)",
            "(\"inline\" NIL)",
        ])
        .prop_map(str::to_string)
    }

    /// The optional extension data of a single part: MD5, disposition, language, location.
    fn extension() -> impl Strategy<Value = String> {
        (0usize..5, disposition()).prop_map(|(n, d)| {
            let all = [
                " NIL".to_string(),
                format!(" {d}"),
                " NIL".into(),
                " NIL".into(),
            ];
            all[..n.min(4)].concat()
        })
    }

    fn leaf() -> impl Strategy<Value = String> {
        let text = (params(), extension()).prop_map(|(p, e)| {
            format!("(\"TEXT\" \"PLAIN\" {p} NIL NIL \"QUOTED-PRINTABLE\" 120 5{e})")
        });
        let basic = (params(), extension()).prop_map(|(p, e)| {
            format!("(\"APPLICATION\" \"PDF\" {p} \"<id@x>\" NIL \"BASE64\" 4000{e})")
        });
        prop_oneof![text, basic]
    }

    fn bodystructure() -> impl Strategy<Value = String> {
        leaf().prop_recursive(3, 12, 4, |inner| {
            let multipart = (
                prop::collection::vec(inner.clone(), 1..4),
                prop::sample::select(vec![
                    "",
                    " (\"BOUNDARY\" \"b\")",
                    " (\"BOUNDARY\" \"b\") (\"attachment\" NIL) NIL NIL",
                ]),
            )
                .prop_map(|(parts, ext)| format!("({} \"MIXED\"{ext})", parts.concat()));
            let message = (inner, params(), extension()).prop_map(|(body, p, e)| {
                format!(
                    "(\"MESSAGE\" \"RFC822\" {p} NIL NIL \"7BIT\" 900 (\"Mon, 1 Jan 2024 \
                     00:00:00 +0000\" \"Re: x\" NIL NIL NIL NIL NIL NIL NIL \"<m@x>\") {body} \
                     20{e})"
                )
            });
            prop_oneof![multipart, message]
        })
    }

    fn flags() -> impl Strategy<Value = String> {
        prop::sample::subsequence(
            vec![
                "\\Seen",
                "\\FLAGGED",
                "\\answered",
                "\\Deleted",
                "\\Draft",
                "\\Recent",
                "$Forwarded",
                "NonJunk",
            ],
            0..5,
        )
        .prop_map(|f| format!("FLAGS ({})", f.join(" ")))
    }

    fn header() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
                let mut s = format!("BODY[HEADER.FIELDS (DATE FROM)] {{{}}}\r\n", b.len());
                // SAFETY of the test: bytes are kept as they are; Latin-1 mapping below.
                s.extend(b.iter().map(|&c| char::from(c)));
                s
            }),
            "[a-zA-Z :]{0,20}".prop_map(|t| format!("BODY[HEADER.FIELDS (SUBJECT)] \"{t}\"")),
            Just("BODY[HEADER.FIELDS (SUBJECT)] NIL".to_string()),
        ]
    }

    /// A generated response, as bytes (the header literal may hold any byte).
    fn response() -> impl Strategy<Value = Vec<u8>> {
        (
            1u32..100_000,
            flags(),
            0u32..1_000_000,
            proptest::option::of(1u64..1_000_000),
            bodystructure(),
            header(),
            any::<bool>(),
        )
            .prop_flat_map(|(uid, flags, size, modseq, bs, header, upper)| {
                let mut items = vec![
                    format!("UID {uid}"),
                    flags,
                    format!("RFC822.SIZE {size}"),
                    format!("BODYSTRUCTURE {bs}"),
                    header,
                ];
                if let Some(m) = modseq {
                    items.push(format!("MODSEQ ({m})"));
                }
                if !upper {
                    items[0] = items[0].to_lowercase();
                }
                Just(items).prop_shuffle()
            })
            .prop_map(|items| {
                let text = format!("* 3 FETCH ({})\r\n", items.join(" "));
                // Characters stand for bytes (the literal's may be any byte).
                text.chars().map(|c| c as u32 as u8).collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every generated response is read whole, to what imap-proto reads, and its cuts are
        /// only incomplete.
        #[test]
        fn agrees_with_imap_proto(bytes in response(), cut in any::<prop::sample::Index>()) {
            let Quick::Done(n, m) = quick(&bytes) else {
                return Err(TestCaseError::fail(format!(
                    "not read: {:?}", String::from_utf8_lossy(&bytes)
                )));
            };
            prop_assert_eq!(n, bytes.len());
            prop_assert_eq!(full(&bytes), Some((n, m)));
            let cut = cut.index(bytes.len());
            prop_assert!(matches!(quick(&bytes[..cut]), Quick::Incomplete));
        }

        /// Whatever bytes come, it never panics, and where both answer, they answer the same
        /// (it may read a response imap-proto refuses; it never reads one differently).
        #[test]
        fn answers_only_where_imap_proto_agrees(
            bytes in response(),
            at in any::<prop::sample::Index>(),
            with in prop::sample::select(vec![b' ', b'(', b')', b'"', b'\\', b'{', b'}', b'\r',
                b'\n', b'0', b'N', b'x', b'[', b']']),
        ) {
            let mut bytes = bytes;
            let at = at.index(bytes.len());
            bytes[at] = with;
            if let (Quick::Done(n, m), Some(parsed)) = (quick(&bytes), full(&bytes)) {
                prop_assert_eq!(parsed, (n, m), "{:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
