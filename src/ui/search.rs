//! The search prompt for `/`: the list is filtered as you type (FTS5 over subject, sender,
//! recipients and cached body text; see [`crate::store::cache::Cache::search`]).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::text;

/// The prompt's state while the user types.
#[derive(Debug, Clone, Default)]
pub struct SearchPrompt {
    pub query: String,
    /// Hits for the current query.
    pub hits: usize,
}

impl SearchPrompt {
    /// Draw on the bottom line.
    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let line = Line::from(vec![
            Span::styled("/", Style::default().add_modifier(Modifier::BOLD)),
            text::untrusted(&self.query, Style::default()),
            Span::styled("▏", Style::default()),
            Span::styled(
                format!(
                    "   {} hit{} — Enter keeps the filter, Esc clears it",
                    self.hits,
                    if self.hits == 1 { "" } else { "s" }
                ),
                Style::default().add_modifier(Modifier::DIM),
            ),
        ]);
        frame.render_widget(Paragraph::new(line), area);
    }
}
