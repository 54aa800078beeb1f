//! The folder picker for `m` (move): type to filter folders fuzzily, Enter picks.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::help::centered;
use super::text;

/// The picker's state.
#[derive(Debug, Clone)]
pub struct FolderPicker {
    pub query: String,
    candidates: Vec<String>,
    pub selected: usize,
}

/// How well `query` matches `name` as a subsequence (case-insensitive); higher is better.
///
/// Consecutive matched characters and matches at the start of a path component score extra,
/// so `arch` prefers `Archive` over `Work/Research/Charts`.
pub fn fuzzy_score(query: &str, name: &str) -> Option<i64> {
    let q: Vec<char> = query.chars().flat_map(char::to_lowercase).collect();
    if q.is_empty() {
        return Some(0);
    }
    let n: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    let mut qi = 0;
    let mut score = 0i64;
    let mut prev_match: Option<usize> = None;
    for (i, c) in n.iter().enumerate() {
        if q.get(qi) == Some(c) {
            score += 1;
            if prev_match.is_some_and(|p| p + 1 == i) {
                score += 5;
            }
            if i == 0 || matches!(n.get(i - 1), Some('/' | '.' | ' ' | '_' | '-')) {
                score += 8;
            }
            prev_match = Some(i);
            qi += 1;
            if qi == q.len() {
                return Some(score * 100 - n.len() as i64);
            }
        }
    }
    None
}

impl FolderPicker {
    /// A picker over these folder names.
    pub fn new(candidates: Vec<String>) -> FolderPicker {
        FolderPicker {
            query: String::new(),
            candidates,
            selected: 0,
        }
    }

    /// The folders matching the query, best first.
    pub fn matches(&self) -> Vec<&str> {
        let mut scored: Vec<(i64, &str)> = self
            .candidates
            .iter()
            .filter_map(|c| fuzzy_score(&self.query, c).map(|s| (s, c.as_str())))
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        scored.into_iter().map(|(_, c)| c).collect()
    }

    /// The highlighted folder.
    pub fn choice(&self) -> Option<String> {
        self.matches().get(self.selected).map(|s| s.to_string())
    }

    /// Type a character / delete one.
    pub fn edit(&mut self, c: Option<char>) {
        match c {
            Some(c) => self.query.push(c),
            None => {
                self.query.pop();
            }
        }
        self.selected = 0;
    }

    /// Move the highlight.
    pub fn move_by(&mut self, delta: isize) {
        let n = self.matches().len();
        if n > 0 {
            self.selected = (self.selected as isize + delta).clamp(0, n as isize - 1) as usize;
        }
    }

    /// Draw as a centred overlay.
    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let matches = self.matches();
        let rect = centered(area, 50, (matches.len().min(16) as u16 + 4).max(6));
        let block = Block::default()
            .borders(Borders::ALL)
            .title(" Move to folder ");
        let inner = block.inner(rect);
        frame.render_widget(Clear, rect);
        frame.render_widget(block, rect);
        let width = inner.width as usize;
        let mut lines = vec![Line::from(vec![
            Span::raw("> "),
            text::untrusted(&self.query, Style::default()),
            Span::styled("▏", Style::default().add_modifier(Modifier::SLOW_BLINK)),
        ])];
        let visible = (inner.height as usize).saturating_sub(1);
        let skip = self.selected.saturating_sub(visible.saturating_sub(1));
        for (i, m) in matches.iter().enumerate().skip(skip).take(visible) {
            let style = if i == self.selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            lines.push(Line::from(text::untrusted_fit(m, width, style)));
        }
        if matches.is_empty() {
            lines.push(Line::styled(
                "no folder matches",
                Style::default().add_modifier(Modifier::DIM),
            ));
        }
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzy_prefers_word_starts_and_runs() {
        assert!(
            fuzzy_score("arch", "Archive").unwrap()
                > fuzzy_score("arch", "Work/Research/Charts").unwrap()
        );
        assert!(fuzzy_score("xyz", "Archive").is_none());
        let p = FolderPicker::new(vec![
            "Trash".into(),
            "Archive".into(),
            "Work/Archive 2024".into(),
        ]);
        let mut p2 = p.clone();
        for c in "arch".chars() {
            p2.edit(Some(c));
        }
        assert_eq!(p2.matches(), vec!["Archive", "Work/Archive 2024"]);
        assert_eq!(p.matches().len(), 3);
        p2.move_by(5);
        assert_eq!(p2.choice().as_deref(), Some("Work/Archive 2024"));
    }
}
