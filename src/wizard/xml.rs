//! A small XML reader, enough for autoconfig files (XML 1.0, W3C REC-xml-20081126).
//!
//! It builds a tree of elements with attributes and text, and understands the XML
//! declaration, comments, processing instructions, a DOCTYPE without an internal subset,
//! CDATA sections and character references, and the five predefined entities. Everything else
//! (an unknown entity, a mismatched end tag, text after the root) is an error that names the
//! line, so a broken autoconfig file is reported clearly. No external entity is ever fetched.
//!
//! NOTE: written here instead of adding an XML crate: the autoconfig format is small and a
//! few hundred lines cover it with no new dependency.

use thiserror::Error;

/// Why a document could not be read: the line and what is wrong.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct XmlError {
    pub line: usize,
    pub message: String,
}

/// One element: its name (prefix kept), attributes in order, and children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// How deep elements may nest before the document is refused.
const MAX_DEPTH: usize = 64;

impl Element {
    /// The name without a namespace prefix.
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    /// The value of attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Child elements named `name` (local name).
    pub fn children_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a Element> + use<'a, 'n> {
        self.children.iter().filter_map(move |n| match n {
            Node::Element(e) if e.local_name() == name => Some(e),
            _ => None,
        })
    }

    /// The first child element named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children_named(name).next()
    }

    /// All text directly inside this element, trimmed.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out.trim().to_string()
    }

    /// The trimmed text of the first child named `name`, if there is one and it is not empty.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name)
            .map(Element::text)
            .filter(|t| !t.is_empty())
    }
}

/// Parses a whole document and returns its root element.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    let mut p = Parser {
        text,
        pos: 0,
        stack: Vec::new(),
        root: None,
    };
    p.run()?;
    let line = p.line();
    p.root.ok_or_else(|| XmlError {
        line,
        message: "the document has no root element".into(),
    })
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    stack: Vec<Element>,
    root: Option<Element>,
}

impl Parser<'_> {
    fn line(&self) -> usize {
        let upto = self.text.get(..self.pos).unwrap_or(self.text);
        upto.bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, XmlError> {
        Err(XmlError {
            line: self.line(),
            message: message.into(),
        })
    }

    fn rest(&self) -> &str {
        self.text.get(self.pos..).unwrap_or("")
    }

    /// Skips past `end`, or fails with `what` if it never comes.
    fn skip_past(&mut self, end: &str, what: &str) -> Result<String, XmlError> {
        match self.rest().find(end) {
            Some(i) => {
                let inside = self.rest().get(..i).unwrap_or("").to_string();
                self.pos += i + end.len();
                Ok(inside)
            }
            None => self.err(format!("{what} is never closed")),
        }
    }

    fn run(&mut self) -> Result<(), XmlError> {
        // NOTE: a byte order mark may precede the declaration (XML 1.0 §4.3.3).
        if self.rest().starts_with('\u{feff}') {
            self.pos += '\u{feff}'.len_utf8();
        }
        while self.pos < self.text.len() {
            let rest = self.rest();
            if rest.starts_with("<!--") {
                self.pos += 4;
                self.skip_past("-->", "a comment")?;
            } else if rest.starts_with("<?") {
                self.pos += 2;
                self.skip_past("?>", "a processing instruction")?;
            } else if rest.starts_with("<![CDATA[") {
                self.pos += 9;
                let data = self.skip_past("]]>", "a CDATA section")?;
                self.text_node(data)?;
            } else if rest.starts_with("<!DOCTYPE") {
                let decl = self.skip_past(">", "the DOCTYPE")?;
                if decl.contains('[') {
                    return self.err("a DOCTYPE with an internal subset is not accepted");
                }
            } else if rest.starts_with("</") {
                self.end_tag()?;
            } else if rest.starts_with('<') {
                self.start_tag()?;
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                let raw = rest.get(..end).unwrap_or("").to_string();
                self.pos += end;
                let decoded = self.decode(&raw)?;
                self.text_node(decoded)?;
            }
        }
        if let Some(open) = self.stack.last() {
            return self.err(format!("<{}> is never closed", open.name));
        }
        Ok(())
    }

    fn text_node(&mut self, text: String) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(e) => {
                e.children.push(Node::Text(text));
                Ok(())
            }
            None if text.trim().is_empty() => Ok(()),
            None => self.err("text outside the root element"),
        }
    }

    fn name(&mut self) -> Result<String, XmlError> {
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '>' | '/' | '='))
            .unwrap_or(rest.len());
        let name = rest.get(..end).unwrap_or("").to_string();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'));
        if !valid {
            return self.err(format!(
                "expected a name, found {:?}",
                rest.chars().take(12).collect::<String>()
            ));
        }
        self.pos += end;
        Ok(name)
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        let n = rest.len() - rest.trim_start().len();
        self.pos += n;
    }

    fn start_tag(&mut self) -> Result<(), XmlError> {
        self.pos += 1;
        let name = self.name()?;
        let mut element = Element {
            name,
            ..Element::default()
        };
        loop {
            self.skip_space();
            let rest = self.rest();
            if rest.starts_with("/>") {
                self.pos += 2;
                return self.close(element);
            }
            if rest.starts_with('>') {
                self.pos += 1;
                if self.stack.len() >= MAX_DEPTH {
                    return self.err(format!("elements nest deeper than {MAX_DEPTH}"));
                }
                if self.root.is_some() && self.stack.is_empty() {
                    return self.err("a second root element");
                }
                self.stack.push(element);
                return Ok(());
            }
            if rest.is_empty() {
                return self.err(format!("<{}> is cut off", element.name));
            }
            let attr = self.name()?;
            self.skip_space();
            if !self.rest().starts_with('=') {
                return self.err(format!("attribute {attr} has no value"));
            }
            self.pos += 1;
            self.skip_space();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return self.err(format!("the value of attribute {attr} is not quoted")),
            };
            self.pos += 1;
            let Some(end) = self.rest().find(quote) else {
                return self.err(format!("the value of attribute {attr} is never closed"));
            };
            let raw = self.rest().get(..end).unwrap_or("").to_string();
            if raw.contains('<') {
                return self.err(format!("the value of attribute {attr} contains <"));
            }
            self.pos += end + 1;
            let value = self.decode(&raw)?;
            if element.attr(&attr).is_some() {
                return self.err(format!("attribute {attr} appears twice"));
            }
            element.attrs.push((attr, value));
        }
    }

    fn end_tag(&mut self) -> Result<(), XmlError> {
        self.pos += 2;
        let name = self.name()?;
        self.skip_space();
        if !self.rest().starts_with('>') {
            return self.err(format!("</{name} is not closed with >"));
        }
        self.pos += 1;
        match self.stack.pop() {
            Some(open) if open.name == name => self.close(open),
            Some(open) => self.err(format!("</{name}> closes <{}>", open.name)),
            None => self.err(format!("</{name}> without a start tag")),
        }
    }

    fn close(&mut self, element: Element) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(element));
                Ok(())
            }
            None if self.root.is_some() => self.err("a second root element"),
            None => {
                self.root = Some(element);
                Ok(())
            }
        }
    }

    /// Replaces entity and character references in `raw`.
    fn decode(&self, raw: &str) -> Result<String, XmlError> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(amp) = rest.find('&') {
            out.push_str(rest.get(..amp).unwrap_or(""));
            let after = rest.get(amp + 1..).unwrap_or("");
            let Some(semi) = after.find(';').filter(|s| *s <= 10) else {
                return self.err("an & that does not start an entity (write &amp;)");
            };
            let entity = after.get(..semi).unwrap_or("");
            let c = match entity {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = if let Some(hex) = entity.strip_prefix("#x") {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse::<u32>().ok()
                    } else {
                        return self.err(format!("unknown entity &{entity};"));
                    };
                    code.and_then(char::from_u32).filter(|c| *c != '\0')
                }
            };
            match c {
                Some(c) => out.push(c),
                None => return self.err(format!("invalid character reference &{entity};")),
            }
            rest = after.get(semi + 1..).unwrap_or("");
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_elements_attributes_text_and_references() {
        let doc = parse(
            "\u{feff}<?xml version=\"1.0\"?>\n<!DOCTYPE x>\n<!-- hi -->\n<a x='1' y=\"&lt;&#65;&#x42;\">\
             <b>one &amp; two</b><c/><b><![CDATA[<raw>]]></b></a>\n",
        )
        .expect("valid");
        assert_eq!(doc.name, "a");
        assert_eq!(doc.attr("y"), Some("<AB"));
        let bs: Vec<String> = doc.children_named("b").map(Element::text).collect();
        assert_eq!(bs, ["one & two", "<raw>"]);
        assert!(doc.child("c").is_some());
    }

    #[test]
    fn broken_documents_name_the_line_and_problem() {
        let cases = [
            ("<a><b></a>", 1, "</a> closes <b>"),
            ("<a>\n<b>", 2, "<b> is never closed"),
            ("<a>&nbsp;</a>", 1, "unknown entity"),
            ("<a x=1/>", 1, "not quoted"),
            ("<a></a><b/>", 1, "second root"),
            ("text", 1, "outside the root"),
            ("", 1, "no root element"),
            ("<a><!-- x</a>", 1, "comment is never closed"),
            ("<!DOCTYPE a [<!ENTITY x 'y'>]><a/>", 1, "internal subset"),
            ("<a & b/>", 1, "expected a name"),
            ("<a>\n\n</b>", 3, "</b> closes <a>"),
            ("<a x='1' x='2'/>", 1, "appears twice"),
            ("<a>&#0;</a>", 1, "invalid character reference"),
        ];
        for (text, line, want) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "<a>".repeat(100) + &"</a>".repeat(100);
        let e = parse(&text).expect_err("too deep");
        assert!(e.message.contains("nest deeper"), "{e}");
    }
}
