//! The sidebar: accounts and their folders with unread counts.
//!
//! A POP3 or local account has one folder, INBOX; an IMAP account lists what the server has.
//! Folder names come from servers and pass [`super::text::untrusted`].

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::text;
use crate::store::cache::{Cache, CacheError, FolderRow};

/// One line of the sidebar: an account heading, or one of its folders.
#[derive(Debug, Clone)]
pub struct Entry {
    pub account: String,
    pub folder: Option<FolderRow>,
}

/// The sidebar's state.
#[derive(Debug, Clone, Default)]
pub struct Sidebar {
    pub entries: Vec<Entry>,
    /// Index into `entries` of the open folder.
    pub selected: usize,
    scroll: usize,
}

impl Sidebar {
    /// Read accounts and folders (with counts) from the cache, keeping the selected folder.
    pub fn load(&mut self, cache: &Cache) -> Result<(), CacheError> {
        let keep = self.current().map(|f| f.id);
        let mut entries = Vec::new();
        for a in cache.accounts()? {
            entries.push(Entry {
                account: a.name.clone(),
                folder: None,
            });
            for f in cache.folders(a.id)? {
                entries.push(Entry {
                    account: a.name.clone(),
                    folder: Some(f),
                });
            }
        }
        self.entries = entries;
        self.selected = keep
            .and_then(|id| {
                self.entries
                    .iter()
                    .position(|e| e.folder.as_ref().is_some_and(|f| f.id == id))
            })
            .or_else(|| self.entries.iter().position(|e| e.folder.is_some()))
            .unwrap_or(0);
        Ok(())
    }

    /// The open folder.
    pub fn current(&self) -> Option<&FolderRow> {
        self.entries.get(self.selected)?.folder.as_ref()
    }

    /// The account of the open folder.
    pub fn current_account(&self) -> Option<&str> {
        self.entries.get(self.selected).map(|e| e.account.as_str())
    }

    /// Folders of `account`.
    pub fn folders_of<'a>(&'a self, account: &'a str) -> impl Iterator<Item = &'a FolderRow> {
        self.entries
            .iter()
            .filter(move |e| e.account == account)
            .filter_map(|e| e.folder.as_ref())
    }

    /// Total and unread messages of an account.
    pub fn counts(&self, account: &str) -> (u64, u64) {
        self.folders_of(account)
            .fold((0, 0), |(t, u), f| (t + f.total, u + f.unread))
    }

    /// Select the folder `delta` folders away (headings are skipped). Returns whether it moved.
    pub fn move_by(&mut self, delta: isize) -> bool {
        let folders: Vec<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.folder.is_some())
            .map(|(i, _)| i)
            .collect();
        let Some(pos) = folders.iter().position(|i| *i == self.selected) else {
            return false;
        };
        let target = (pos as isize + delta).clamp(0, folders.len() as isize - 1) as usize;
        match folders.get(target) {
            Some(&i) if i != self.selected => {
                self.selected = i;
                true
            }
            _ => false,
        }
    }

    /// Select the folder drawn at row `y` of the sidebar's inside. Returns whether it changed.
    pub fn click(&mut self, y: usize) -> bool {
        let i = self.scroll + y;
        if self.entries.get(i).is_some_and(|e| e.folder.is_some()) && i != self.selected {
            self.selected = i;
            return true;
        }
        false
    }

    /// Draw into `area` with a border.
    pub fn draw(&mut self, frame: &mut Frame, area: Rect, focused: bool) {
        let title_style = if focused {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .title(Span::styled("Folders", title_style));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let h = inner.height as usize;
        if self.selected < self.scroll {
            self.scroll = self.selected;
        } else if h > 0 && self.selected >= self.scroll + h {
            self.scroll = self.selected + 1 - h;
        }
        let width = inner.width as usize;
        let lines: Vec<Line> = self
            .entries
            .iter()
            .enumerate()
            .skip(self.scroll)
            .take(h)
            .map(|(i, e)| match &e.folder {
                None => Line::from(text::untrusted_fit(
                    &e.account,
                    width,
                    Style::default().add_modifier(Modifier::BOLD),
                )),
                Some(f) => {
                    let depth = f.delimiter.map_or(0, |d| f.name.matches(d).count()).min(6);
                    let name = crate::render::folder_label(
                        f.delimiter
                            .and_then(|d| f.name.rsplit(d).next())
                            .unwrap_or(&f.name),
                    );
                    let name = name.as_str();
                    let count = if f.unread > 0 {
                        format!(" {}", f.unread)
                    } else {
                        String::new()
                    };
                    let indent = 1 + depth * 2;
                    let name_w = width.saturating_sub(indent + text::width(&count));
                    let mut style = Style::default();
                    if f.unread > 0 {
                        style = style.add_modifier(Modifier::BOLD);
                    }
                    if i == self.selected {
                        style = style.add_modifier(if focused {
                            Modifier::REVERSED
                        } else {
                            Modifier::UNDERLINED
                        });
                    }
                    Line::from(vec![
                        Span::styled(" ".repeat(indent.min(width)), style),
                        text::untrusted_fit(name, name_w, style),
                        Span::styled(count, style),
                    ])
                }
            })
            .collect();
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
