//! The status bar: every account's state and counts, and the latest notice.

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::sidebar::Sidebar;
use super::text;
use crate::engine::AccountState;

/// How loud a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

/// The status bar's state.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Each account's last reported state.
    pub accounts: BTreeMap<String, AccountState>,
    /// The latest notice (untrusted: may quote a server).
    pub notice: Option<(Level, String)>,
}

impl Status {
    /// Show a notice until the next key.
    pub fn notify(&mut self, level: Level, text: impl Into<String>) {
        self.notice = Some((level, text.into()));
    }

    /// Draw into a one-line `area`; `hint` is shown at the right (e.g. `? help`).
    pub fn draw(&self, frame: &mut Frame, area: Rect, sidebar: &Sidebar, hint: &str) {
        let bar = Style::default().add_modifier(Modifier::REVERSED);
        let mut spans = Vec::new();
        let names: Vec<&str> = {
            let mut v: Vec<&str> = sidebar
                .entries
                .iter()
                .filter(|e| e.folder.is_none())
                .map(|e| e.account.as_str())
                .collect();
            for name in self.accounts.keys() {
                if !v.contains(&name.as_str()) {
                    v.push(name);
                }
            }
            v
        };
        for name in names {
            let state = match self.accounts.get(name) {
                None => "starting".to_string(),
                Some(AccountState::Online) => "online".to_string(),
                Some(AccountState::Offline) => "offline".to_string(),
                Some(AccountState::Syncing(p)) if p.total > 0 => {
                    format!("syncing {}/{}", p.done, p.total)
                }
                Some(AccountState::Syncing(_)) => "syncing".to_string(),
                Some(AccountState::Error(_)) => "error".to_string(),
            };
            let (total, unread) = sidebar.counts(name);
            spans.push(Span::styled(" ", bar));
            spans.push(text::untrusted(name, bar.add_modifier(Modifier::BOLD)));
            spans.push(Span::styled(
                format!(": {state}, {total} messages, {unread} unread "),
                bar,
            ));
        }
        if let Some((level, notice)) = &self.notice {
            let style = match level {
                Level::Info => bar,
                Level::Error => bar.add_modifier(Modifier::BOLD),
            };
            spans.push(Span::styled("│ ", bar));
            spans.push(text::untrusted(notice, style));
        } else if let Some(AccountState::Error(e)) = self
            .accounts
            .values()
            .find(|s| matches!(s, AccountState::Error(_)))
        {
            spans.push(Span::styled("│ ", bar));
            spans.push(text::untrusted(e, bar));
        }
        let used: usize = spans.iter().map(|s| text::width(&s.content)).sum();
        let width = area.width as usize;
        let hint_w = text::width(hint) + 1;
        if used + hint_w < width {
            spans.push(Span::styled(" ".repeat(width - used - hint_w), bar));
            spans.push(Span::styled(format!("{hint} "), bar));
        } else if used < width {
            spans.push(Span::styled(" ".repeat(width - used), bar));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
    }
}
