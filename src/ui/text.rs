//! The one door for untrusted text into the terminal, and display-width arithmetic.
//!
//! Every string that came from a server or a message (subjects, senders, folder names, file
//! names, bodies, error messages quoting a server) becomes a ratatui [`Span`] only through
//! [`untrusted`] or [`untrusted_text`], which run [`crate::sanitize`]: escape sequences, C0/C1
//! controls, BEL, backspace and bidi overrides are shown visibly and never reach the terminal.
//!
//! Widths are display columns measured exactly as ratatui measures them when it fills its
//! buffer: per grapheme cluster (UAX #29, via [`Span::styled_graphemes`]) with ratatui's
//! [`CellWidth`] (UAX #11 widths from `unicode-width`). So CJK and emoji take two columns,
//! combining marks stay with their letter, an emoji ZWJ sequence or a VS16 emoji is one glyph,
//! and a column is never cut in the middle of a wide glyph: [`fit`] pads with a space instead.

use ratatui::buffer::CellWidth;
use ratatui::style::Style;
use ratatui::text::Span;

/// Columns a tab advances to (multiples of this).
const TAB: usize = 8;

/// A sanitised one-line span of untrusted text.
pub fn untrusted(s: &str, style: Style) -> Span<'static> {
    Span::styled(crate::sanitize::line(s).into_owned(), style)
}

/// Untrusted text cut or padded to exactly `width` columns, as one span.
pub fn untrusted_fit(s: &str, width: usize, style: Style) -> Span<'static> {
    Span::styled(fit(&crate::sanitize::line(s), width), style)
}

/// Sanitised multi-line text (a message body): newlines kept, tabs kept for [`wrap`].
pub fn untrusted_text(s: &str) -> String {
    crate::sanitize::text(s).into_owned()
}

/// Call `f(grapheme, columns)` for each grapheme cluster of `s` until it returns false.
fn each_grapheme(s: &str, mut f: impl FnMut(&str, usize) -> bool) {
    let span = Span::raw(s);
    for g in span.styled_graphemes(Style::default()) {
        if !f(g.symbol, g.symbol.cell_width() as usize) {
            break;
        }
    }
}

/// Display width in terminal columns, as ratatui will draw it.
pub fn width(s: &str) -> usize {
    let mut total = 0;
    each_grapheme(s, |_, w| {
        total += w;
        true
    });
    total
}

/// Cut `s` to at most `width` columns (ending in `…` when cut) and pad it with spaces to
/// exactly `width`. Combining marks stay with their base character; a wide character that
/// does not fit is replaced by padding, never split.
pub fn fit(s: &str, width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let total = self::width(s);
    let mut out = String::with_capacity(s.len().min(width * 4) + 3);
    if total <= width {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', width - total));
        return out;
    }
    let limit = width - 1; // room for the ellipsis
    let mut used = 0;
    each_grapheme(s, |g, w| {
        if used + w > limit {
            return false;
        }
        // NOTE: ratatui skips zero-width clusters (a stray combining mark at the start).
        if w > 0 {
            out.push_str(g);
            used += w;
        }
        true
    });
    out.push('…');
    used += 1;
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    out
}

/// Expand tabs to spaces (tab stops every 8 columns).
fn expand_tabs(line: &str) -> String {
    if !line.contains('\t') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len() + 8);
    let mut col = 0;
    let mut pieces = line.split('\t').peekable();
    while let Some(piece) = pieces.next() {
        out.push_str(piece);
        col += width(piece);
        if pieces.peek().is_some() {
            let n = TAB - col % TAB;
            out.extend(std::iter::repeat_n(' ', n));
            col += n;
        }
    }
    out
}

/// Soft-wrap sanitised text to `width` columns: at spaces when possible, inside a word when
/// it is longer than a line. Tabs are expanded (a tab must never reach the terminal: it would
/// move the cursor past cells ratatui thinks it drew).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    for raw in text.split('\n') {
        let line = expand_tabs(raw);
        if self::width(&line) <= width {
            lines.push(line);
            continue;
        }
        let mut current = String::new();
        let mut current_w = 0;
        // Split into words keeping their leading spaces, so indentation survives.
        for (i, word) in split_keep_spaces(&line).into_iter().enumerate() {
            let w = self::width(word);
            if current_w + w <= width {
                current.push_str(word);
                current_w += w;
                continue;
            }
            if !current.is_empty() {
                lines.push(current.trim_end().to_string());
                current = String::new();
                current_w = 0;
            }
            // Only the line's first word keeps its indentation on a fresh line.
            let word = if i == 0 { word } else { word.trim_start() };
            each_grapheme(word, |g, gw| {
                if current_w + gw > width && !current.is_empty() {
                    lines.push(std::mem::take(&mut current));
                    current_w = 0;
                }
                current.push_str(g);
                current_w += gw;
                true
            });
        }
        lines.push(current.trim_end().to_string());
    }
    lines
}

/// `"  a bb  c"` → `["  a", " bb", "  c"]`.
fn split_keep_spaces(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in s.char_indices() {
        if c == ' ' && in_word {
            parts.push(&s[start..i]);
            start = i;
            in_word = false;
        } else if c != ' ' {
            in_word = true;
        }
    }
    if start < s.len() {
        parts.push(&s[start..]);
    }
    parts
}

/// A byte count as `812`, `12K`, `3.4M`.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes}"),
        1_000..1_000_000 => format!("{}K", bytes / 1_000),
        1_000_000..10_000_000 => format!("{:.1}M", bytes as f64 / 1e6),
        _ => format!("{}M", bytes / 1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_measures_display_columns() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 4), "abc…");
        // CJK: two columns each; the third does not fit next to the ellipsis: pad instead.
        assert_eq!(fit("日本語テキスト", 6), "日本… ");
        assert_eq!(width(&fit("日本語テキスト", 6)), 6);
        // Combining marks take no column and stay with their letter.
        assert_eq!(fit("Tie\u{302}\u{301}ng", 8), "Tie\u{302}\u{301}ng   ");
        assert_eq!(width(&fit("e\u{301}e\u{301}e\u{301}e\u{301}", 3)), 3);
        assert_eq!(fit("👋🎉x", 4), "👋… ");
        assert_eq!(fit("x", 0), "");
        assert_eq!(fit("\u{301}abc", 2), "a…");
        // Emoji sequences are one glyph of two columns, as ratatui draws them.
        assert_eq!(width("👨\u{200d}👩\u{200d}👧"), 2);
        assert_eq!(width("🗺\u{fe0f}"), 2);
        assert_eq!(
            fit("a👨\u{200d}👩\u{200d}👧bcdef", 5),
            "a👨\u{200d}👩\u{200d}👧b…"
        );
    }

    #[test]
    fn untrusted_text_is_sanitised() {
        let span = untrusted("hi\x1b]0;owned\x07", Style::default());
        assert_eq!(span.content, "hi^[]0;owned^G");
        assert_eq!(
            untrusted_fit("\u{202e}abc", 3, Style::default()).content,
            "\u{FFFD}a…"
        );
    }

    #[test]
    fn wrap_breaks_at_spaces_and_inside_long_words() {
        assert_eq!(wrap("aaa bbb ccc", 7), vec!["aaa bbb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\tb", 20), vec!["a       b"]);
        assert_eq!(wrap("日本語です", 4), vec!["日本", "語で", "す"]);
        assert_eq!(wrap("x\n\ny", 3), vec!["x", "", "y"]);
        for line in wrap("> quoted text that goes on and on and on", 10) {
            assert!(width(&line) <= 10, "{line}");
        }
    }

    #[test]
    fn sizes_are_short() {
        assert_eq!(size(999), "999");
        assert_eq!(size(12_345), "12K");
        assert_eq!(size(3_400_000), "3.4M");
        assert_eq!(size(45_000_000), "45M");
    }
}
