//! The help overlay, generated from the live keymap so it always shows what is bound.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::keymap::Keymap;
use super::text;

/// Keys that work inside overlays and prompts (fixed, not remappable).
pub const OVERLAY_KEYS: &[(&str, &str)] = &[
    ("Enter", "search / folder picker: accept"),
    ("Esc", "search / picker / attachments: cancel"),
    ("Up/Down", "picker / attachments: choose"),
    ("Enter", "attachments: save to the download folder"),
    ("o", "attachments: save and open with the system opener"),
    ("C-c", "quit at once"),
];

/// The help text as lines: every action with its keys, then the overlay keys.
pub fn lines(keymap: &Keymap) -> Vec<Line<'static>> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let rows = keymap.help_rows();
    let key_w = rows
        .iter()
        .map(|(k, _, _)| text::width(k))
        .chain(OVERLAY_KEYS.iter().map(|(k, _)| text::width(k)))
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = vec![Line::styled(
        "Keys (remap them in [keys] of config.toml)",
        bold,
    )];
    out.push(Line::raw(""));
    for (keys, name, description) in rows {
        out.push(Line::from(vec![
            Span::styled(text::fit(&keys, key_w), bold),
            Span::raw(format!("  {description}  ")),
            Span::styled(
                format!("[{name}]"),
                Style::default().add_modifier(Modifier::DIM),
            ),
        ]));
    }
    out.push(Line::raw(""));
    out.push(Line::styled("In prompts and overlays", bold));
    for (keys, description) in OVERLAY_KEYS {
        out.push(Line::from(vec![
            Span::styled(text::fit(keys, key_w), bold),
            Span::raw(format!("  {description}")),
        ]));
    }
    out
}

/// A rectangle of `w`×`h` centred in `area` (clamped to it).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// Draw the overlay, scrolled by `scroll` lines (clamped; the clamped value is returned).
pub fn draw(frame: &mut Frame, area: Rect, keymap: &Keymap, scroll: usize) -> usize {
    let lines = lines(keymap);
    let rect = centered(area, 84, lines.len() as u16 + 2);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Help — q or Esc closes ");
    let inner = block.inner(rect);
    let scroll = scroll.min(lines.len().saturating_sub(inner.height as usize));
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    frame.render_widget(
        Paragraph::new(lines.into_iter().skip(scroll).collect::<Vec<_>>()),
        inner,
    );
    scroll
}
