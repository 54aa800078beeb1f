//! The one sanitiser every string from a server or a message passes before it is shown.
//!
//! Mail is hostile input: a subject can carry `ESC ]0;title BEL` (set the window title),
//! `ESC ]52;c;...` (write the clipboard), cursor movement, a bell, backspaces that overwrite
//! what was printed, or a bidi override (U+202E) that reverses what the user reads. None of that
//! may reach the terminal. Control characters are shown visibly instead:
//!
//! - C0 controls and DEL become caret notation (`ESC` → `^[`, BEL → `^G`, DEL → `^?`);
//! - C1 controls (U+0080..=U+009F, which some terminals treat as CSI/OSC) and bidi embedding,
//!   override and isolate characters become U+FFFD;
//! - in [`line`], tabs, CR and LF become a space; in [`text`], LF is kept, a tab is kept for the
//!   renderer to expand, and CR is dropped.

use std::borrow::Cow;

/// Whether `c` is a bidi embedding/override/isolate control that can reorder displayed text.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` must be replaced before reaching a terminal.
fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn push_visible(out: &mut String, c: char) {
    match c {
        '\u{0}'..='\u{1f}' => {
            out.push('^');
            out.push(char::from(b'@' + c as u8));
        }
        '\u{7f}' => out.push_str("^?"),
        _ => out.push('\u{FFFD}'),
    }
}

/// Sanitise a one-line string (subject, sender, folder name, file name, status text).
pub fn line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' | '\r' | '\n' => out.push(' '),
            c if is_unsafe(c) => push_visible(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Sanitise multi-line text (a message body): keeps newlines and tabs, drops CR.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && c != '\n' && c != '\t') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if is_unsafe(c) => push_visible(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escape_sequences_become_visible() {
        assert_eq!(line("a\x1b[31mred"), "a^[[31mred");
        assert_eq!(line("\x1b]0;pwned\x07x"), "^[]0;pwned^Gx");
        assert_eq!(line("ab\x08\x08cd\x7f"), "ab^H^Hcd^?");
        assert_eq!(line("\u{9b}31m"), "\u{FFFD}31m");
        assert_eq!(line("abc\u{202E}fdp.exe"), "abc\u{FFFD}fdp.exe");
        assert_eq!(line("two\nlines\ttab"), "two lines tab");
        assert_eq!(text("one\r\ntwo\x1b\n\tx"), "one\ntwo^[\n\tx");
    }

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(line("Grüße 👋 日本"), Cow::Borrowed(_)));
        assert!(matches!(text("a\nb\tc"), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn nothing_unsafe_survives(s in any::<String>()) {
            let l = line(&s);
            prop_assert!(!l.chars().any(|c| c.is_control() || is_bidi_control(c)));
            let t = text(&s);
            prop_assert!(!t.chars().any(|c| (c.is_control() && c != '\n' && c != '\t')
                || is_bidi_control(c)));
        }
    }
}
