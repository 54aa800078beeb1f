//! The message list: one folder, newest first, flat, threaded or filtered by a search.
//!
//! Only the rows on screen are read from the cache ([`Cache::window`] for the flat view,
//! [`Cache::thread_window`] for conversations, a lookup by id for search hits and the members
//! of an expanded conversation), so a 100,000-message folder costs what a screenful costs,
//! flat or threaded. Moving the selection inside the loaded window reads nothing.

use std::collections::HashMap;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::text;
use crate::backend::Flags;
use crate::store::cache::{Cache, CacheError, MessageRow};

/// How the list is organised.
#[derive(Debug, Clone)]
enum Mode {
    /// Every message, newest first; `total` counted when the folder was (re)loaded.
    Flat { total: usize },
    /// Conversations, newest activity first; expanded ones show their messages.
    Threads {
        /// Conversations in the folder, counted when the folder was (re)loaded.
        total: usize,
        /// The expanded conversations, by position.
        expanded: Vec<Expanded>,
    },
    /// The hits of a search, newest first.
    Search { query: String, hits: Vec<i64> },
}

/// An expanded conversation of the threaded view.
#[derive(Debug, Clone)]
struct Expanded {
    thread: i64,
    /// Its position among the folder's conversations ([`Cache::thread_window`]'s order).
    position: usize,
    /// Its messages as a tree (parents before replies), with their depth.
    members: Vec<(i64, usize)>,
}

impl Expanded {
    /// The rows it takes: one per message (one at least, should it have none left).
    fn rows(&self) -> usize {
        self.members.len().max(1)
    }
}

/// What row `row` of a threaded view shows: the conversation at a position, and which of its
/// messages (with depth) when that conversation is expanded.
fn locate(expanded: &[Expanded], row: usize) -> (usize, Option<(i64, usize)>) {
    // Rows that the expanded conversations above `row` add to one row per conversation.
    let mut extra = 0;
    for e in expanded {
        let start = e.position + extra;
        if row < start {
            break;
        }
        if row < start + e.rows() {
            return (e.position, e.members.get(row - start).copied());
        }
        extra += e.rows() - 1;
    }
    (row - extra, None)
}

/// The first row of the conversation at `position`.
fn first_row(expanded: &[Expanded], position: usize) -> usize {
    position
        + expanded
            .iter()
            .take_while(|e| e.position < position)
            .map(|e| e.rows() - 1)
            .sum::<usize>()
}

/// One row as drawn.
#[derive(Debug, Clone)]
pub struct RowView {
    pub msg: MessageRow,
    /// Indentation inside an expanded thread.
    pub depth: usize,
    /// A collapsed conversation of more than one message: how many.
    pub collapsed: Option<u64>,
    /// Unread messages in a collapsed conversation.
    pub thread_unread: u64,
}

/// The message list's state.
#[derive(Debug, Clone)]
pub struct MessageList {
    pub folder: Option<i64>,
    mode: Mode,
    /// Threads were on when a search started: back to them after.
    threads_before_search: bool,
    pub selected: usize,
    scroll: usize,
    /// The rows from `loaded_from`, valid until the folder changes or the window moves.
    loaded: Vec<RowView>,
    loaded_from: usize,
    stale: bool,
    /// Rows that fit, as of the last draw.
    pub height: usize,
}

impl Default for MessageList {
    fn default() -> Self {
        MessageList {
            folder: None,
            mode: Mode::Flat { total: 0 },
            threads_before_search: false,
            selected: 0,
            scroll: 0,
            loaded: Vec::new(),
            loaded_from: 0,
            stale: true,
            height: 20,
        }
    }
}

impl MessageList {
    /// Show `folder` (flat or threaded), selection at the top.
    pub fn open(&mut self, cache: &Cache, folder: i64, threads: bool) -> Result<(), CacheError> {
        self.folder = Some(folder);
        self.selected = 0;
        self.scroll = 0;
        self.mode = Mode::Flat { total: 0 };
        self.reload(cache, threads)
    }

    /// Whether the list groups conversations.
    pub fn threaded(&self) -> bool {
        matches!(self.mode, Mode::Threads { .. })
    }

    /// The active search, if any.
    pub fn search_query(&self) -> Option<&str> {
        match &self.mode {
            Mode::Search { query, .. } => Some(query),
            _ => None,
        }
    }

    /// Re-read counts (and the thread index) after the folder changed; keeps the selection.
    pub fn reload(&mut self, cache: &Cache, threads: bool) -> Result<(), CacheError> {
        let Some(folder) = self.folder else {
            return Ok(());
        };
        let expanded = match &mut self.mode {
            Mode::Threads { expanded, .. } => std::mem::take(expanded),
            _ => Vec::new(),
        };
        self.mode = match std::mem::replace(&mut self.mode, Mode::Flat { total: 0 }) {
            Mode::Search { query, .. } => {
                let hits = cache.search(folder, &query, 10_000)?;
                Mode::Search { query, hits }
            }
            _ if threads => {
                // NOTE: mail a download left unthreaded (`Cache::insert_download`; a sync by
                // the command line, say) joins its conversations before they are counted.
                cache.thread_pending()?;
                // NOTE: new mail moves conversations: find the expanded ones again.
                let mut kept = Vec::with_capacity(expanded.len());
                for e in expanded {
                    let Some(position) = cache.thread_position(folder, e.thread)? else {
                        continue;
                    };
                    let members = thread_order(&cache.thread_messages(folder, e.thread)?);
                    if members.len() > 1 {
                        kept.push(Expanded {
                            thread: e.thread,
                            position: position as usize,
                            members,
                        });
                    }
                }
                kept.sort_by_key(|e| e.position);
                Mode::Threads {
                    total: cache.thread_count(folder)? as usize,
                    expanded: kept,
                }
            }
            _ => Mode::Flat {
                total: cache.count(folder)? as usize,
            },
        };
        self.clamp();
        self.stale = true;
        Ok(())
    }

    /// Switch conversations on or off, keeping the selected message in view if possible.
    pub fn set_threads(&mut self, cache: &Cache, on: bool) -> Result<(), CacheError> {
        if self.search_query().is_some() {
            self.threads_before_search = on;
            return Ok(());
        }
        self.selected = 0;
        self.scroll = 0;
        self.mode = Mode::Flat { total: 0 };
        self.reload(cache, on)
    }

    /// Filter the folder to the hits of `query` (an empty query ends the search).
    pub fn search(&mut self, cache: &Cache, query: &str) -> Result<usize, CacheError> {
        let Some(folder) = self.folder else {
            return Ok(0);
        };
        if query.trim().is_empty() {
            self.end_search(cache)?;
            return Ok(0);
        }
        if self.search_query().is_none() {
            self.threads_before_search = self.threaded();
        }
        let hits = cache.search(folder, query, 10_000)?;
        let n = hits.len();
        self.mode = Mode::Search {
            query: query.to_string(),
            hits,
        };
        self.selected = 0;
        self.scroll = 0;
        self.stale = true;
        Ok(n)
    }

    /// Back from a search to the whole folder.
    pub fn end_search(&mut self, cache: &Cache) -> Result<(), CacheError> {
        if self.search_query().is_none() {
            return Ok(());
        }
        self.mode = Mode::Flat { total: 0 };
        self.selected = 0;
        self.scroll = 0;
        self.reload(cache, self.threads_before_search)
    }

    /// How many rows the list has.
    pub fn len(&self) -> usize {
        match &self.mode {
            Mode::Flat { total } => *total,
            Mode::Threads { total, expanded } => {
                total + expanded.iter().map(|e| e.rows() - 1).sum::<usize>()
            }
            Mode::Search { hits, .. } => hits.len(),
        }
    }

    /// Whether the list has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clamp(&mut self) {
        let len = self.len();
        if self.selected >= len {
            self.selected = len.saturating_sub(1);
        }
        self.follow();
    }

    /// Keep the selection on screen.
    fn follow(&mut self) {
        let h = self.height.max(1);
        if self.selected < self.scroll {
            self.scroll = self.selected;
        } else if self.selected >= self.scroll + h {
            self.scroll = self.selected + 1 - h;
        }
        let max_scroll = self.len().saturating_sub(h);
        if self.scroll > max_scroll {
            self.scroll = max_scroll;
        }
    }

    /// Move the selection by `delta` rows (clamped).
    pub fn move_by(&mut self, delta: isize) {
        let len = self.len();
        if len == 0 {
            return;
        }
        let target = (self.selected as isize + delta).clamp(0, len as isize - 1);
        self.selected = target as usize;
        self.follow();
    }

    /// Select row `index` (clamped).
    pub fn select(&mut self, index: usize) {
        self.selected = index.min(self.len().saturating_sub(1));
        self.follow();
    }

    /// Select the row drawn at `y` rows below the list's first row.
    pub fn click(&mut self, y: usize) {
        let index = self.scroll + y;
        if index < self.len() {
            self.select(index);
        }
    }

    /// Scroll the view by `delta` rows, dragging the selection along if it leaves the view.
    pub fn scroll_by(&mut self, delta: isize) {
        let max_scroll = self.len().saturating_sub(self.height.max(1));
        self.scroll = (self.scroll as isize + delta).clamp(0, max_scroll as isize) as usize;
        if self.selected < self.scroll {
            self.selected = self.scroll;
        } else if self.selected >= self.scroll + self.height.max(1) {
            self.selected = self.scroll + self.height.max(1) - 1;
        }
    }

    /// Load the rows on screen if they are not loaded yet.
    pub fn ensure_loaded(&mut self, cache: &Cache) -> Result<(), CacheError> {
        let Some(folder) = self.folder else {
            self.loaded.clear();
            return Ok(());
        };
        let h = self.height.max(1);
        let need_end = (self.scroll + h).min(self.len());
        if !self.stale
            && self.scroll >= self.loaded_from
            && need_end <= self.loaded_from + self.loaded.len()
        {
            return Ok(());
        }
        // NOTE: a page above and a page below come along, so scrolling row by row reads the
        // cache once a page rather than once a row.
        let from = self.scroll.saturating_sub(h);
        let h = h * 3;
        let end = (from + h).min(self.len());
        self.loaded = match &self.mode {
            Mode::Flat { .. } => cache
                .window(folder, from as u64, h as u64)?
                .into_iter()
                .map(|msg| RowView {
                    msg,
                    depth: 0,
                    collapsed: None,
                    thread_unread: 0,
                })
                .collect(),
            Mode::Search { hits, .. } => {
                let ids: Vec<i64> = hits.iter().skip(from).take(h).copied().collect();
                cache
                    .messages(&ids)?
                    .into_iter()
                    .map(|msg| RowView {
                        msg,
                        depth: 0,
                        collapsed: None,
                        thread_unread: 0,
                    })
                    .collect()
            }
            Mode::Threads { expanded, .. } => {
                let slots: Vec<_> = (from..end).map(|row| locate(expanded, row)).collect();
                let first = slots.first().map_or(0, |s| s.0);
                let last = slots.last().map_or(0, |s| s.0);
                let summaries =
                    cache.thread_window(folder, first as u64, (last + 1 - first) as u64)?;
                let summary = |position: usize| summaries.get(position - first);
                let ids: Vec<i64> = slots
                    .iter()
                    .filter_map(|(position, member)| match member {
                        Some((id, _)) => Some(*id),
                        None => summary(*position).map(|s| s.newest),
                    })
                    .collect();
                let mut by_id: HashMap<i64, MessageRow> = cache
                    .messages(&ids)?
                    .into_iter()
                    .map(|m| (m.id, m))
                    .collect();
                slots
                    .iter()
                    .filter_map(|(position, member)| match member {
                        Some((id, depth)) => Some(RowView {
                            msg: by_id.remove(id)?,
                            depth: *depth,
                            collapsed: None,
                            thread_unread: 0,
                        }),
                        None => {
                            let s = summary(*position)?;
                            Some(RowView {
                                msg: by_id.remove(&s.newest)?,
                                depth: 0,
                                collapsed: (s.count > 1).then_some(s.count),
                                thread_unread: s.unread,
                            })
                        }
                    })
                    .collect()
            }
        };
        self.loaded_from = from;
        self.stale = false;
        Ok(())
    }

    /// The selected row, loading it if needed.
    pub fn selected_row(&mut self, cache: &Cache) -> Option<&RowView> {
        self.ensure_loaded(cache).ok()?;
        let i = self.selected.checked_sub(self.loaded_from)?;
        self.loaded.get(i)
    }

    /// Whether the selected row is a collapsed conversation.
    pub fn selected_is_collapsed(&mut self, cache: &Cache) -> bool {
        self.selected_row(cache)
            .is_some_and(|r| r.collapsed.is_some())
    }

    /// Expand or collapse the conversation of the selected row (threaded view only).
    pub fn toggle_expanded(&mut self, cache: &Cache) -> Result<bool, CacheError> {
        let Some(folder) = self.folder else {
            return Ok(false);
        };
        let Mode::Threads { expanded, .. } = &mut self.mode else {
            return Ok(false);
        };
        let (position, _) = locate(expanded, self.selected);
        if let Some(i) = expanded.iter().position(|e| e.position == position) {
            expanded.remove(i);
        } else {
            let Some(summary) = cache
                .thread_window(folder, position as u64, 1)?
                .into_iter()
                .next()
            else {
                return Ok(false);
            };
            if summary.count <= 1 {
                return Ok(false);
            }
            let members = thread_order(&cache.thread_messages(folder, summary.thread_id)?);
            let at = expanded.partition_point(|e| e.position < position);
            expanded.insert(
                at,
                Expanded {
                    thread: summary.thread_id,
                    position,
                    members,
                },
            );
        }
        // Keep the selection on the conversation's first row.
        self.selected = first_row(expanded, position);
        self.stale = true;
        self.follow();
        Ok(true)
    }

    /// Draw the list into `area` (with a border titled `title`).
    pub fn draw(
        &mut self,
        frame: &mut Frame,
        area: Rect,
        cache: &Cache,
        title: &str,
        focused: bool,
    ) {
        let block = Block::default().borders(Borders::ALL).title(Span::styled(
            title.to_string(),
            if focused {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            },
        ));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        self.height = inner.height as usize;
        self.follow();
        if let Err(e) = self.ensure_loaded(cache) {
            frame.render_widget(
                Paragraph::new(Line::from(text::untrusted(
                    &e.to_string(),
                    Style::default(),
                ))),
                inner,
            );
            return;
        }
        if self.is_empty() {
            let msg = if self.search_query().is_some() {
                "no messages match"
            } else {
                "no messages"
            };
            frame.render_widget(
                Paragraph::new(Line::styled(
                    msg,
                    Style::default().add_modifier(Modifier::DIM),
                )),
                inner,
            );
            return;
        }
        let width = inner.width as usize;
        let start = self.scroll.saturating_sub(self.loaded_from);
        let lines: Vec<Line> = self
            .loaded
            .iter()
            .enumerate()
            .skip(start)
            .take(inner.height as usize)
            .map(|(i, row)| {
                let selected = self.loaded_from + i == self.selected;
                row_line(row, width, selected, focused)
            })
            .collect();
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

/// The messages of a conversation as a tree: parents before replies, oldest first, with depth.
fn thread_order(members: &[MessageRow]) -> Vec<(i64, usize)> {
    let by_mid: HashMap<&str, usize> = members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.envelope.message_id.as_deref().map(|mid| (mid, i)))
        .collect();
    // The parent is the nearest ancestor that is here: In-Reply-To, else the last reference.
    let parent: Vec<Option<usize>> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.envelope
                .in_reply_to
                .iter()
                .chain(m.envelope.references.iter().rev())
                .find_map(|r| by_mid.get(r.as_str()).copied())
                .filter(|p| *p != i)
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
    let mut roots = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => {
                if let Some(c) = children.get_mut(*p) {
                    c.push(i);
                }
            }
            None => roots.push(i),
        }
    }
    let mut out = Vec::with_capacity(members.len());
    let mut seen = vec![false; members.len()];
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|r| (*r, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        if let Some(m) = members.get(i) {
            out.push((m.id, depth));
        }
        if let Some(c) = children.get(i) {
            for child in c.iter().rev() {
                stack.push((*child, depth + 1));
            }
        }
    }
    // NOTE: a reference cycle leaves members unvisited; show them flat rather than lose them.
    for (i, m) in members.iter().enumerate() {
        if !seen[i] {
            out.push((m.id, 0));
        }
    }
    out
}

/// The columns of one row for a list `width` columns wide.
fn row_line(row: &RowView, width: usize, selected: bool, focused: bool) -> Line<'static> {
    let m = &row.msg;
    let narrow = width < 70;
    let date_w = if narrow { 5 } else { 10 };
    let from_w = if narrow { 12 } else { 20 };
    let size_w = 5;
    let unread = !m.flags.contains(Flags::SEEN) || row.thread_unread > 0;
    let deleted = m.flags.contains(Flags::DELETED);
    let marks: String = [
        if deleted {
            'D'
        } else if unread {
            'N'
        } else {
            ' '
        },
        if m.flags.contains(Flags::FLAGGED) {
            '!'
        } else if m.flags.contains(Flags::ANSWERED) {
            'r'
        } else {
            ' '
        },
        if m.envelope.has_attachments { '@' } else { ' ' },
    ]
    .iter()
    .collect();
    let date = m
        .envelope
        .date
        .map(|d| {
            let s = crate::render::rfc3339(d);
            if narrow {
                s.get(5..10).unwrap_or_default().to_string()
            } else {
                s.get(..10).unwrap_or_default().to_string()
            }
        })
        .unwrap_or_default();
    let fixed = 3 + 1 + date_w + 1 + from_w + 1 + 1 + size_w;
    let subject_w = width.saturating_sub(fixed);
    let mut subject_prefix = String::new();
    if row.depth > 0 {
        subject_prefix.push_str(&"  ".repeat(row.depth.min(8) - 1));
        subject_prefix.push_str("└ ");
    }
    if let Some(n) = row.collapsed {
        subject_prefix.push_str(&format!("({n}) "));
    }
    let subject = match m.envelope.subject.trim() {
        "" => "(no subject)",
        s => s,
    };
    let from = display_name(&m.envelope.from);
    let mut style = Style::default();
    if unread {
        style = style.add_modifier(Modifier::BOLD);
    }
    if deleted {
        style = style.add_modifier(Modifier::DIM | Modifier::CROSSED_OUT);
    }
    if selected {
        style = style.add_modifier(if focused {
            Modifier::REVERSED
        } else {
            Modifier::UNDERLINED
        });
    }
    let prefix_w = text::width(&subject_prefix).min(subject_w);
    let spans = vec![
        Span::styled(format!("{marks} {}", text::fit(&date, date_w)), style),
        Span::styled(" ", style),
        text::untrusted_fit(from, from_w, style),
        Span::styled(" ", style),
        Span::styled(text::fit(&subject_prefix, prefix_w), style),
        text::untrusted_fit(subject, subject_w - prefix_w, style),
        Span::styled(" ", style),
        Span::styled(format!("{:>size_w$}", text::size(m.envelope.size)), style),
    ];
    Line::from(spans)
}

/// `Ann Example <ann@example.com>` → `Ann Example`; a bare address stays.
fn display_name(from: &str) -> &str {
    let first = from.split(", ").next().unwrap_or(from);
    match first.find(" <") {
        Some(i) if i > 0 => first[..i].trim_matches('"'),
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Envelope;
    use crate::store::cache::BodyLocation;

    fn row(id: i64, mid: &str, reply_to: Option<&str>) -> MessageRow {
        MessageRow {
            id,
            folder_id: 1,
            uid: None,
            uidl: None,
            envelope: Envelope {
                message_id: Some(mid.into()),
                in_reply_to: reply_to.map(str::to_string),
                ..Envelope::default()
            },
            flags: Flags::default(),
            modseq: None,
            thread_id: Some(1),
            body: BodyLocation::None,
        }
    }

    #[test]
    fn thread_order_puts_replies_under_their_parents() {
        let members = vec![
            row(1, "a", None),
            row(2, "b", Some("a")),
            row(3, "c", Some("a")),
            row(4, "d", Some("b")),
            row(5, "e", Some("missing")),
        ];
        assert_eq!(
            thread_order(&members),
            vec![(1, 0), (2, 1), (4, 2), (3, 1), (5, 0)]
        );
        // A cycle does not lose anyone.
        let cycle = vec![row(1, "a", Some("b")), row(2, "b", Some("a"))];
        assert_eq!(thread_order(&cycle).len(), 2);
    }

    #[test]
    fn rows_of_expanded_conversations_map_back_to_their_positions() {
        let expanded = vec![
            Expanded {
                thread: 7,
                position: 1,
                members: vec![(10, 0), (11, 1), (12, 1)],
            },
            Expanded {
                thread: 9,
                position: 3,
                members: vec![(20, 0), (21, 1)],
            },
        ];
        let rows: Vec<_> = (0..8).map(|r| locate(&expanded, r)).collect();
        assert_eq!(
            rows,
            vec![
                (0, None),
                (1, Some((10, 0))),
                (1, Some((11, 1))),
                (1, Some((12, 1))),
                (2, None),
                (3, Some((20, 0))),
                (3, Some((21, 1))),
                (4, None),
            ]
        );
        assert_eq!(
            [0, 1, 2, 3, 4].map(|p| first_row(&expanded, p)),
            [0, 1, 4, 5, 7]
        );
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("Ann Example <ann@example.com>"), "Ann Example");
        assert_eq!(display_name("ann@example.com"), "ann@example.com");
        assert_eq!(display_name("\"Q\" <q@x>, b@x"), "Q");
    }
}
