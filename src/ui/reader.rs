//! The reader: one message's headers, body (soft-wrapped, quotes dimmed) and attachments.
//!
//! The message is rendered once when opened ([`crate::render::render`]: text/plain preferred,
//! else HTML turned into text with numbered links, headers decoded per RFC 2047) and wrapped
//! once per width; drawing only slices the wrapped lines. A message whose body is not held
//! locally shows "loading" until the engine reports [`crate::engine::EngineEvent::BodyFetched`].

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::text;
use crate::render::Rendered;

/// What the reader shows.
#[derive(Debug, Clone)]
pub enum Content {
    /// Waiting for the engine to fetch the body.
    Loading,
    /// The body could not be had (the reason, untrusted).
    Failed(String),
    /// The rendered message and its raw bytes (for saving attachments).
    Ready {
        rendered: Box<Rendered>,
        raw: Vec<u8>,
    },
}

/// The reader's state.
#[derive(Debug, Clone)]
pub struct Reader {
    /// The message's cache id.
    pub id: i64,
    pub content: Content,
    pub scroll: usize,
    /// Lines that fit, as of the last draw.
    pub height: usize,
    wrapped: Option<(usize, Vec<Line<'static>>)>,
}

impl Reader {
    /// A reader for message `id` showing `content`.
    pub fn new(id: i64, content: Content) -> Reader {
        Reader {
            id,
            content,
            scroll: 0,
            height: 10,
            wrapped: None,
        }
    }

    /// Replace what is shown (the body arrived, or failed).
    pub fn set_content(&mut self, content: Content) {
        self.content = content;
        self.wrapped = None;
    }

    /// The attachments of the message, if it is loaded.
    pub fn attachments(&self) -> &[crate::render::Attachment] {
        match &self.content {
            Content::Ready { rendered, .. } => &rendered.attachments,
            _ => &[],
        }
    }

    /// The raw bytes, if loaded.
    pub fn raw(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Ready { raw, .. } => Some(raw),
            _ => None,
        }
    }

    /// Scroll by `delta` lines (clamped to the text).
    pub fn scroll_by(&mut self, delta: isize) {
        let total = self.wrapped.as_ref().map_or(0, |(_, l)| l.len());
        let max = total.saturating_sub(self.height.max(1));
        self.scroll = (self.scroll as isize + delta).clamp(0, max as isize) as usize;
    }

    /// Scroll to the end.
    pub fn scroll_to_end(&mut self) {
        self.scroll_by(isize::MAX / 2);
    }

    fn lines(&mut self, width: usize) -> &[Line<'static>] {
        if self.wrapped.as_ref().is_none_or(|(w, _)| *w != width) {
            self.wrapped = Some((width, build_lines(&self.content, width)));
        }
        self.wrapped.as_ref().map_or(&[], |(_, l)| l.as_slice())
    }

    /// Draw into `area` with a border.
    pub fn draw(&mut self, frame: &mut Frame, area: Rect, focused: bool) {
        let block = Block::default().borders(Borders::ALL).title(Span::styled(
            "Message",
            if focused {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            },
        ));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        self.height = inner.height as usize;
        let height = self.height;
        let width = inner.width as usize;
        let total = self.lines(width).len();
        self.scroll = self.scroll.min(total.saturating_sub(height.max(1)));
        let scroll = self.scroll;
        let visible: Vec<Line<'static>> = self
            .lines(width)
            .iter()
            .skip(scroll)
            .take(height)
            .cloned()
            .collect();
        frame.render_widget(Paragraph::new(visible), inner);
    }
}

/// Headers, a blank line, the wrapped body, and the attachment list.
fn build_lines(content: &Content, width: usize) -> Vec<Line<'static>> {
    let dim = Style::default().add_modifier(Modifier::DIM);
    let (rendered, _) = match content {
        Content::Loading => return vec![Line::styled("loading…", dim)],
        Content::Failed(why) => {
            return text::wrap(&text::untrusted_text(why), width)
                .into_iter()
                .map(|l| Line::from(text::untrusted(&l, dim)))
                .collect();
        }
        Content::Ready { rendered, raw } => (rendered, raw),
    };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut lines = Vec::new();
    for (name, value) in &rendered.headers {
        let label = format!("{name}: ");
        let label_w = text::width(&label);
        let value = text::untrusted_text(value);
        for (i, part) in text::wrap(&value, width.saturating_sub(label_w).max(1))
            .into_iter()
            .enumerate()
        {
            let head = if i == 0 {
                label.clone()
            } else {
                " ".repeat(label_w)
            };
            lines.push(Line::from(vec![
                Span::styled(head, bold),
                text::untrusted(&part, Style::default()),
            ]));
        }
    }
    lines.push(Line::raw(""));
    let body = text::untrusted_text(&rendered.body);
    for source in body.trim_end().split('\n') {
        let quoted = source.trim_start().starts_with('>');
        let style = if quoted { dim } else { Style::default() };
        for part in text::wrap(source, width) {
            lines.push(Line::from(text::untrusted(&part, style)));
        }
    }
    if !rendered.attachments.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled("Attachments (a to save or open):", bold));
        for a in &rendered.attachments {
            let line = format!(
                "  {}  ({}, {})",
                a.name,
                a.content_type,
                text::size(a.size as u64)
            );
            for part in text::wrap(&text::untrusted_text(&line), width) {
                lines.push(Line::from(text::untrusted(&part, Style::default())));
            }
        }
    }
    lines
}
