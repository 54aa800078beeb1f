//! The full-screen TUI (ratatui + crossterm): sidebar, message list, reader, status bar.
//!
//! The loop ([`run`]) awaits only its `select!`: terminal input (read on a plain thread),
//! engine events, SIGTERM/SIGHUP, and a tick for delayed mark-as-read. Bursts are coalesced
//! into one frame. [`App::draw`] reads only the cache (the rows on screen) and state; network
//! work is asked of the [engine](crate::engine) by [`Command`], and its
//! [`EngineEvent`]s say what to re-read.
//!
//! Components live one per file: [`sidebar`], [`list`], [`reader`], [`status`], [`help`],
//! [`picker`] (move), [`search`]; [`keymap`] maps keys to actions; [`text`] is the one door
//! for untrusted text into a [`ratatui::text::Span`]. [`wizard`] is the account setup wizard,
//! shown at the first start, by `mailbag setup`, and by `A`; it shares the terminal ([`Tty`])
//! with the main screen, so the two can follow each other without leaving full-screen mode.
//!
//! The terminal is restored on quit, on panic (a hook restores it before the message is
//! printed) and on SIGTERM/SIGHUP.

pub mod help;
pub mod keymap;
pub mod list;
pub mod picker;
pub mod reader;
pub mod search;
pub mod sidebar;
pub mod status;
pub mod text;
pub mod wizard;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::backend::Flags;
use crate::config::{ReaderLayout, UiConfig};
use crate::engine::{Command, CommandId, EngineEvent, EngineHandle};
use crate::store::cache::{BodyLocation, Cache, CacheError};
use keymap::{Action, Keymap};
use list::MessageList;
use picker::FolderPicker;
use reader::{Content, Reader};
use search::SearchPrompt;
use sidebar::Sidebar;
use status::{Level, Status};

/// Which pane has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Sidebar,
    List,
    Reader,
}

/// Something drawn over the panes that takes the keyboard while open.
#[derive(Debug, Clone)]
enum Overlay {
    Help { scroll: usize },
    Search(SearchPrompt),
    Move(FolderPicker),
    Attachments { selected: usize },
}

/// What `z` undoes (the engine remembers the messages; this is for the status line).
#[derive(Debug, Clone, Copy)]
enum Undo {
    Delete,
    Move,
}

/// Options the TUI takes from config and the environment.
#[derive(Debug, Clone)]
pub struct Options {
    pub keymap: Keymap,
    pub ui: UiConfig,
    /// Where attachments are saved (the XDG download directory).
    pub download_dir: PathBuf,
    /// Whether `A` may open the setup wizard (not on the demo account).
    pub add_account: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keymap: Keymap::default(),
            ui: UiConfig::default(),
            download_dir: download_dir(),
            add_account: false,
        }
    }
}

/// `$XDG_DOWNLOAD_DIR`, else `~/Downloads`, else the current directory.
pub fn download_dir() -> PathBuf {
    directories::UserDirs::new()
        .and_then(|u| {
            u.download_dir()
                .map(|d| d.to_path_buf())
                .or_else(|| Some(u.home_dir().join("Downloads")))
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where panes were drawn last, for mouse clicks.
#[derive(Debug, Clone, Copy, Default)]
struct Areas {
    sidebar: Option<Rect>,
    list: Option<Rect>,
    reader: Option<Rect>,
}

/// The whole TUI state.
pub struct App {
    cache: Cache,
    engine: EngineHandle,
    options: Options,
    sidebar: Sidebar,
    list: MessageList,
    reader: Option<Reader>,
    focus: Pane,
    overlay: Option<Overlay>,
    status: Status,
    undo: Option<Undo>,
    /// An unread message waiting to be marked read: (id, when).
    mark_read: Option<(i64, Instant)>,
    /// The FetchBody we are waiting for (stale replies are ignored).
    fetching: Option<(CommandId, i64)>,
    areas: Areas,
    quit: bool,
    /// The user asked to add an account (`A`): the loop ends and the wizard opens.
    add_account: bool,
}

impl App {
    /// The TUI over `cache` (read through this connection), sending commands to `engine`.
    pub fn new(cache: Cache, engine: EngineHandle, options: Options) -> Result<App, CacheError> {
        let mut app = App {
            cache,
            engine,
            sidebar: Sidebar::default(),
            list: MessageList::default(),
            reader: None,
            focus: Pane::List,
            overlay: None,
            status: Status::default(),
            undo: None,
            mark_read: None,
            fetching: None,
            areas: Areas::default(),
            quit: false,
            add_account: false,
            options,
        };
        app.sidebar.load(&app.cache)?;
        app.open_current_folder()?;
        Ok(app)
    }

    /// Show a notice in the status bar (until the next key).
    pub fn notify(&mut self, text: impl Into<String>) {
        self.status.notify(Level::Info, text);
    }

    /// Whether the user asked to quit.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Whether the user asked to add an account (`A`).
    pub fn wants_add_account(&self) -> bool {
        self.add_account
    }

    /// The message shown in the reader, if any.
    pub fn open_message(&self) -> Option<i64> {
        self.reader.as_ref().map(|r| r.id)
    }

    fn notify_err(&mut self, e: impl std::fmt::Display) {
        self.status.notify(Level::Error, e.to_string());
    }

    fn open_current_folder(&mut self) -> Result<(), CacheError> {
        let Some(folder) = self.sidebar.current().cloned() else {
            return Ok(());
        };
        self.list
            .open(&self.cache, folder.id, self.options.ui.threads)?;
        if let Some(account) = self.sidebar.current_account() {
            self.engine.send(Command::FolderOpened {
                account: account.to_string(),
                folder: folder.name.clone(),
            });
        }
        Ok(())
    }

    /// React to an engine event: re-read what changed.
    pub fn handle_engine(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::AccountStateChanged { account, state } => {
                self.status.accounts.insert(account, state);
            }
            EngineEvent::FolderChanged { folder_id } => {
                if let Err(e) = self.sidebar.load(&self.cache) {
                    self.notify_err(e);
                }
                if self.list.folder == Some(folder_id) || self.list.folder.is_none() {
                    let result = if self.list.folder.is_none() {
                        self.open_current_folder()
                    } else {
                        let threads = self.list.threaded();
                        self.list.reload(&self.cache, threads)
                    };
                    if let Err(e) = result {
                        self.notify_err(e);
                    }
                }
            }
            EngineEvent::BodyFetched { id } => {
                if self.fetching.is_some_and(|(_, m)| m == id) {
                    self.fetching = None;
                    if let Some(r) = self.reader.as_mut().filter(|r| r.id == id) {
                        let content = load_content(&self.cache, id);
                        r.set_content(content);
                    }
                }
            }
            EngineEvent::Warning(w) => self.status.notify(Level::Info, w),
            EngineEvent::CommandFailed { id, error } => {
                if let Some((cmd, msg)) = self.fetching
                    && cmd == id
                {
                    self.fetching = None;
                    if let Some(r) = self.reader.as_mut().filter(|r| r.id == msg) {
                        r.set_content(Content::Failed(error.clone()));
                    }
                }
                self.status.notify(Level::Error, error);
            }
        }
    }

    /// Time-based work (delayed mark-as-read). Returns whether anything changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        match self.mark_read {
            Some((id, at)) if now >= at => {
                self.mark_read = None;
                if self.open_message() == Some(id) {
                    self.engine.send(Command::SetFlags {
                        ids: vec![id],
                        add: Flags::SEEN,
                        remove: Flags::default(),
                    });
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    /// React to a terminal event.
    pub fn handle_event(&mut self, event: Event) {
        match event {
            Event::Key(k) if k.kind != KeyEventKind::Release => self.handle_key(k),
            Event::Mouse(m) if self.options.ui.mouse => self.handle_mouse(m),
            _ => {}
        }
    }

    /// React to a key.
    pub fn handle_key(&mut self, key: KeyEvent) {
        self.status.notice = None;
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if let Some(overlay) = self.overlay.take() {
            self.overlay = self.overlay_key(overlay, key);
            return;
        }
        let Some(action) = self.options.keymap.action(&key) else {
            return;
        };
        self.act(action);
    }

    /// Keys while an overlay is open; returns the overlay if it stays open.
    fn overlay_key(&mut self, overlay: Overlay, key: KeyEvent) -> Option<Overlay> {
        let action = self.options.keymap.action(&key);
        match overlay {
            Overlay::Help { scroll } => match action {
                Some(Action::Down) => Some(Overlay::Help { scroll: scroll + 1 }),
                Some(Action::Up) => Some(Overlay::Help {
                    scroll: scroll.saturating_sub(1),
                }),
                Some(Action::PageDown) => Some(Overlay::Help {
                    scroll: scroll + 10,
                }),
                Some(Action::PageUp) => Some(Overlay::Help {
                    scroll: scroll.saturating_sub(10),
                }),
                _ => None,
            },
            Overlay::Search(mut prompt) => {
                match key.code {
                    KeyCode::Esc => {
                        if let Err(e) = self.list.end_search(&self.cache) {
                            self.notify_err(e);
                        }
                        return None;
                    }
                    KeyCode::Enter => {
                        if prompt.query.trim().is_empty() {
                            let _ = self.list.end_search(&self.cache);
                        }
                        return None;
                    }
                    KeyCode::Backspace => {
                        prompt.query.pop();
                    }
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                        prompt.query.push(c);
                    }
                    _ => return Some(Overlay::Search(prompt)),
                }
                match self.list.search(&self.cache, &prompt.query) {
                    Ok(n) => prompt.hits = n,
                    Err(e) => self.notify_err(e),
                }
                Some(Overlay::Search(prompt))
            }
            Overlay::Move(mut picker) => {
                match key.code {
                    KeyCode::Esc => return None,
                    KeyCode::Enter => {
                        if let Some(folder) = picker.choice() {
                            self.move_selected(folder);
                        }
                        return None;
                    }
                    KeyCode::Up => picker.move_by(-1),
                    KeyCode::Down | KeyCode::Tab => picker.move_by(1),
                    KeyCode::Backspace => picker.edit(None),
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                        picker.edit(Some(c))
                    }
                    _ => {}
                }
                Some(Overlay::Move(picker))
            }
            Overlay::Attachments { selected } => {
                let n = self.reader.as_ref().map_or(0, |r| r.attachments().len());
                match (key.code, action) {
                    (KeyCode::Enter, _) => {
                        self.save_attachment(selected, false);
                        None
                    }
                    (KeyCode::Char('o'), _) => {
                        self.save_attachment(selected, true);
                        None
                    }
                    (_, Some(Action::Down)) => Some(Overlay::Attachments {
                        selected: (selected + 1).min(n.saturating_sub(1)),
                    }),
                    (_, Some(Action::Up)) => Some(Overlay::Attachments {
                        selected: selected.saturating_sub(1),
                    }),
                    _ => None,
                }
            }
        }
    }

    fn save_attachment(&mut self, index: usize, open: bool) {
        let Some(raw) = self.reader.as_ref().and_then(|r| r.raw()) else {
            return;
        };
        let Some((name, bytes)) = crate::render::attachment_bytes(raw, index) else {
            self.status.notify(Level::Error, "no such attachment");
            return;
        };
        let dir = if open {
            std::env::temp_dir().join(format!("mailbag-{}", std::process::id()))
        } else {
            self.options.download_dir.clone()
        };
        match crate::render::save_attachment(&dir, &name, &bytes) {
            Ok(path) if open => {
                // NOTE: the opener is given a path we chose (a safe name in our own directory),
                // never anything taken from the message.
                let spawned = std::process::Command::new("xdg-open")
                    .arg(&path)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                match spawned {
                    Ok(_) => self
                        .status
                        .notify(Level::Info, format!("opening {}", path.display())),
                    Err(e) => self.notify_err(format!("cannot run xdg-open: {e}")),
                }
            }
            Ok(path) => self
                .status
                .notify(Level::Info, format!("saved {}", path.display())),
            Err(e) => self.notify_err(format!("cannot save into {}: {e}", dir.display())),
        }
    }

    fn selected_id(&mut self) -> Option<i64> {
        if self.focus == Pane::Reader {
            return self.open_message();
        }
        self.list.selected_row(&self.cache).map(|r| r.msg.id)
    }

    /// Do what `action` asks, in the pane that has the keyboard.
    pub fn act(&mut self, action: Action) {
        let page = |h: usize| (h.max(2) - 1) as isize;
        match action {
            Action::Quit | Action::Back => self.back(action == Action::Quit),
            Action::Help => self.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::NextPane => self.next_pane(),
            Action::Down
            | Action::Up
            | Action::PageDown
            | Action::PageUp
            | Action::Top
            | Action::Bottom => {
                let delta = match action {
                    Action::Down => 1,
                    Action::Up => -1,
                    Action::PageDown => page(self.list.height),
                    Action::PageUp => -page(self.list.height),
                    Action::Top => isize::MIN / 2,
                    _ => isize::MAX / 2,
                };
                match self.focus {
                    Pane::Sidebar => {
                        if self.sidebar.move_by(delta.clamp(-1_000_000, 1_000_000))
                            && let Err(e) = self.open_current_folder()
                        {
                            self.notify_err(e);
                        }
                    }
                    Pane::List => self.list.move_by(delta),
                    Pane::Reader => {
                        if let Some(r) = self.reader.as_mut() {
                            let delta = match action {
                                Action::PageDown => page(r.height),
                                Action::PageUp => -page(r.height),
                                _ => delta,
                            };
                            r.scroll_by(delta);
                        }
                    }
                }
            }
            Action::Open => match self.focus {
                Pane::Sidebar => self.focus = Pane::List,
                Pane::List => {
                    if self.list.selected_is_collapsed(&self.cache) {
                        if let Err(e) = self.list.toggle_expanded(&self.cache) {
                            self.notify_err(e);
                        }
                    } else if let Some(id) = self.selected_id() {
                        self.open(id);
                    }
                }
                Pane::Reader => {}
            },
            Action::ExpandThread => {
                if !self.list.threaded() {
                    self.status
                        .notify(Level::Info, "conversations are off: t turns them on");
                } else if let Err(e) = self.list.toggle_expanded(&self.cache) {
                    self.notify_err(e);
                }
            }
            Action::Threads => {
                let on = !self.list.threaded();
                self.options.ui.threads = on;
                if let Err(e) = self.list.set_threads(&self.cache, on) {
                    self.notify_err(e);
                }
                self.status.notify(
                    Level::Info,
                    if on {
                        "conversations on"
                    } else {
                        "conversations off"
                    },
                );
            }
            Action::Search => {
                let query = self.list.search_query().unwrap_or_default().to_string();
                let hits = if query.is_empty() { 0 } else { self.list.len() };
                self.overlay = Some(Overlay::Search(SearchPrompt { query, hits }));
            }
            Action::NextMatch | Action::PrevMatch => {
                if self.list.search_query().is_none() {
                    self.status.notify(Level::Info, "no search: / starts one");
                    return;
                }
                self.list
                    .move_by(if action == Action::NextMatch { 1 } else { -1 });
                if self.reader.is_some()
                    && let Some(id) = self.list.selected_row(&self.cache).map(|r| r.msg.id)
                {
                    self.open(id);
                }
            }
            Action::Flag => self.toggle_flag(Flags::FLAGGED),
            Action::ToggleRead => {
                self.mark_read = None;
                self.toggle_flag(Flags::SEEN);
            }
            Action::Delete => {
                let Some(id) = self.selected_id() else { return };
                self.engine.send(Command::Delete { ids: vec![id] });
                self.undo = Some(Undo::Delete);
                self.status.notify(Level::Info, "deleted — z undoes");
                if self.focus != Pane::Reader {
                    self.list.move_by(1);
                }
            }
            Action::Undo => match self.undo.take() {
                Some(what) => {
                    self.engine.send(Command::Undo);
                    self.status.notify(
                        Level::Info,
                        match what {
                            Undo::Delete => "delete undone",
                            Undo::Move => "move undone",
                        },
                    );
                }
                None => self.status.notify(Level::Info, "nothing to undo"),
            },
            Action::Move => {
                let Some(account) = self.sidebar.current_account().map(str::to_string) else {
                    return;
                };
                let current = self.sidebar.current().map(|f| f.name.clone());
                let names: Vec<String> = self
                    .sidebar
                    .folders_of(&account)
                    .map(|f| f.name.clone())
                    .filter(|n| Some(n) != current.as_ref())
                    .collect();
                if names.is_empty() {
                    self.status
                        .notify(Level::Info, "this account has no other folder to move to");
                } else {
                    self.overlay = Some(Overlay::Move(FolderPicker::new(names)));
                }
            }
            Action::Attachments => {
                let n = self.reader.as_ref().map_or(0, |r| r.attachments().len());
                if n == 0 {
                    self.status.notify(
                        Level::Info,
                        if self.reader.is_some() {
                            "this message has no attachments"
                        } else {
                            "open a message first (Enter)"
                        },
                    );
                } else {
                    self.overlay = Some(Overlay::Attachments { selected: 0 });
                }
            }
            Action::Sync => {
                self.engine.send(Command::SyncNow { account: None });
                self.status.notify(Level::Info, "syncing…");
            }
            Action::AddAccount => {
                if self.options.add_account {
                    self.add_account = true;
                    self.quit = true;
                } else {
                    self.status.notify(
                        Level::Info,
                        "the demo cannot add accounts: run mailbag without --demo",
                    );
                }
            }
        }
    }

    fn back(&mut self, may_quit: bool) {
        if self.reader.is_some() {
            self.reader = None;
            self.mark_read = None;
            self.fetching = None;
            self.focus = Pane::List;
        } else if self.list.search_query().is_some() {
            if let Err(e) = self.list.end_search(&self.cache) {
                self.notify_err(e);
            }
        } else if self.focus == Pane::Sidebar {
            self.focus = Pane::List;
        } else if may_quit {
            self.quit = true;
        }
    }

    fn next_pane(&mut self) {
        let full = self.options.ui.reader == ReaderLayout::Full;
        self.focus = match (self.focus, self.reader.is_some()) {
            (Pane::Sidebar, _) => Pane::List,
            (Pane::List, true) => Pane::Reader,
            (Pane::List, false) => Pane::Sidebar,
            (Pane::Reader, _) if full => Pane::Reader,
            (Pane::Reader, _) => Pane::Sidebar,
        };
    }

    fn toggle_flag(&mut self, flag: Flags) {
        let Some(id) = self.selected_id() else { return };
        let Ok(Some(row)) = self.cache.message(id) else {
            return;
        };
        let (add, remove) = if row.flags.contains(flag) {
            (Flags::default(), flag)
        } else {
            (flag, Flags::default())
        };
        self.engine.send(Command::SetFlags {
            ids: vec![id],
            add,
            remove,
        });
    }

    fn move_selected(&mut self, folder: String) {
        let Some(id) = self.selected_id() else { return };
        self.engine.send(Command::Move {
            ids: vec![id],
            folder: folder.clone(),
        });
        self.undo = Some(Undo::Move);
        self.status
            .notify(Level::Info, format!("moving to {folder} — z undoes"));
    }

    /// Open message `id` in the reader.
    pub fn open(&mut self, id: i64) {
        let row = match self.cache.message(id) {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => return self.notify_err(e),
        };
        let content = if row.body == BodyLocation::None {
            let cmd = self.engine.send(Command::FetchBody { id });
            self.fetching = Some((cmd, id));
            Content::Loading
        } else {
            load_content(&self.cache, id)
        };
        self.reader = Some(Reader::new(id, content));
        if self.options.ui.reader == ReaderLayout::Full {
            self.focus = Pane::Reader;
        }
        self.mark_read = None;
        if !row.flags.contains(Flags::SEEN) {
            let delay = self.options.ui.mark_read_delay_ms;
            if delay == 0 {
                self.engine.send(Command::SetFlags {
                    ids: vec![id],
                    add: Flags::SEEN,
                    remove: Flags::default(),
                });
            } else {
                self.mark_read = Some((id, Instant::now() + Duration::from_millis(delay)));
            }
        }
    }

    /// React to the mouse: the wheel scrolls the pane under it, a click selects.
    pub fn handle_mouse(&mut self, m: MouseEvent) {
        let at = Position::new(m.column, m.row);
        let inside = |r: Option<Rect>| r.filter(|r| r.contains(at));
        match m.kind {
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let delta = if m.kind == MouseEventKind::ScrollDown {
                    3
                } else {
                    -3
                };
                if inside(self.areas.reader).is_some() {
                    if let Some(r) = self.reader.as_mut() {
                        r.scroll_by(delta);
                    }
                } else if inside(self.areas.list).is_some() {
                    self.list.scroll_by(delta);
                } else if inside(self.areas.sidebar).is_some()
                    && self.sidebar.move_by(delta.signum())
                    && let Err(e) = self.open_current_folder()
                {
                    self.notify_err(e);
                }
            }
            MouseEventKind::Down(MouseButton::Left) => {
                self.overlay = None;
                if let Some(r) = inside(self.areas.list) {
                    self.focus = Pane::List;
                    if m.row > r.y && m.row < r.y + r.height - 1 {
                        self.list.click((m.row - r.y - 1) as usize);
                    }
                } else if let Some(r) = inside(self.areas.sidebar) {
                    self.focus = Pane::Sidebar;
                    if m.row > r.y
                        && self.sidebar.click((m.row - r.y - 1) as usize)
                        && let Err(e) = self.open_current_folder()
                    {
                        self.notify_err(e);
                    }
                } else if inside(self.areas.reader).is_some() {
                    self.focus = Pane::Reader;
                }
            }
            _ => {}
        }
    }

    fn list_title(&self) -> String {
        let folder = self
            .sidebar
            .current()
            .map(|f| {
                let account = self.sidebar.current_account().unwrap_or_default();
                format!("{account}/{}", crate::render::folder_label(&f.name))
            })
            .unwrap_or_else(|| "no folder".into());
        let mut title = format!(" {} ", crate::sanitize::line(&folder));
        if let Some(q) = self.list.search_query() {
            title.push_str(&format!(
                "— search: {} ({} hits) ",
                crate::sanitize::line(q),
                self.list.len()
            ));
        } else if self.list.threaded() {
            title.push_str(&format!("— {} conversations ", self.list.len()));
        } else {
            title.push_str(&format!("— {} messages ", self.list.len()));
        }
        title
    }

    /// Draw the whole screen. Reads only state and the cache rows on screen.
    pub fn draw(&mut self, frame: &mut Frame) {
        let area = frame.area();
        if area.width < 20 || area.height < 5 {
            frame.render_widget(Paragraph::new("mailbag: terminal too small"), area);
            return;
        }
        let [main, bottom] = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Min(3), Constraint::Length(1)])
            .areas(area);
        self.areas = Areas::default();
        let full = self.options.ui.reader == ReaderLayout::Full && self.reader.is_some();
        let narrow = main.width < 80;
        let show_sidebar = !full && (!narrow || self.focus == Pane::Sidebar);
        let right = if show_sidebar {
            let w = if narrow {
                main.width.min(24)
            } else {
                (main.width / 5).clamp(18, 32)
            };
            let [side, rest] = Layout::default()
                .direction(Direction::Horizontal)
                .constraints([Constraint::Length(w), Constraint::Min(10)])
                .areas(main);
            self.sidebar.draw(frame, side, self.focus == Pane::Sidebar);
            self.areas.sidebar = Some(side);
            rest
        } else {
            main
        };
        let title = self.list_title();
        match self.reader.as_mut() {
            Some(reader) if full => {
                reader.draw(frame, right, true);
                self.areas.reader = Some(right);
            }
            Some(reader) => {
                let list_h = (right.height / 3)
                    .max(5)
                    .min(right.height.saturating_sub(4));
                let [top, rest] = Layout::default()
                    .direction(Direction::Vertical)
                    .constraints([Constraint::Length(list_h), Constraint::Min(3)])
                    .areas(right);
                self.list
                    .draw(frame, top, &self.cache, &title, self.focus == Pane::List);
                reader.draw(frame, rest, self.focus == Pane::Reader);
                self.areas.list = Some(top);
                self.areas.reader = Some(rest);
            }
            None => {
                self.list
                    .draw(frame, right, &self.cache, &title, self.focus == Pane::List);
                self.areas.list = Some(right);
            }
        }
        let hint = format!("{} help", self.options.keymap.keys_text(Action::Help));
        match &mut self.overlay {
            Some(Overlay::Search(prompt)) => prompt.draw(frame, bottom),
            _ => self.status.draw(frame, bottom, &self.sidebar, &hint),
        }
        match &mut self.overlay {
            Some(Overlay::Help { scroll }) => {
                *scroll = help::draw(frame, main, &self.options.keymap, *scroll);
            }
            Some(Overlay::Move(picker)) => picker.draw(frame, main),
            Some(Overlay::Attachments { selected }) => {
                let items = self.reader.as_ref().map_or(&[][..], |r| r.attachments());
                draw_attachments(frame, main, items, *selected);
            }
            _ => {}
        }
    }
}

/// Read and render a locally held message.
fn load_content(cache: &Cache, id: i64) -> Content {
    match crate::backend::local::read_local(cache, id) {
        Ok(raw) => Content::Ready {
            rendered: Box::new(crate::render::render(&raw)),
            raw,
        },
        Err(e) => Content::Failed(e.to_string()),
    }
}

fn draw_attachments(
    frame: &mut Frame,
    area: Rect,
    items: &[crate::render::Attachment],
    selected: usize,
) {
    let height = u16::try_from(items.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3);
    let rect = help::centered(area, 70, height);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Attachments — Enter saves, o opens, Esc closes ");
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    let width = inner.width as usize;
    let lines: Vec<Line> = items
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let style = if i == selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            let label = format!(
                "{}  ({}, {})",
                a.name,
                a.content_type,
                text::size(a.size as u64)
            );
            Line::from(text::untrusted_fit(&label, width, style))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

// ---- the terminal ---------------------------------------------------------------------------

/// Puts the terminal into full-screen mode and back (also on drop).
struct TerminalGuard {
    mouse: bool,
}

fn restore_terminal(mouse: bool) {
    use crossterm::{cursor, event, execute, terminal};
    let mut out = std::io::stdout();
    if mouse {
        let _ = execute!(out, event::DisableMouseCapture);
    }
    let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}

impl TerminalGuard {
    fn enter(mouse: bool) -> std::io::Result<TerminalGuard> {
        use crossterm::{event, execute, terminal};
        // NOTE: the hook restores the terminal before the panic message is printed, so the
        // message is readable and the shell is usable afterwards.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal(true);
            previous(info);
        }));
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        // NOTE: cleared here rather than with ratatui's `Terminal::clear`, which asks the
        // terminal where the cursor is and waits for an answer some terminals never send.
        execute!(
            out,
            terminal::EnterAlternateScreen,
            terminal::Clear(terminal::ClearType::All)
        )?;
        if mouse {
            execute!(out, event::EnableMouseCapture)?;
        }
        Ok(TerminalGuard { mouse })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal(self.mouse);
    }
}

/// Terminal input, read on a plain thread (crossterm's `read` blocks) and sent to the loop.
fn spawn_input() -> UnboundedReceiver<Event> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(ev) = crossterm::event::read() {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    rx
}

/// The terminal in full-screen mode with its input, shared by the main screen and the wizard
/// (one input thread for the whole run, so no key is lost between them). Restored on drop.
pub struct Tty {
    terminal: ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>,
    input: UnboundedReceiver<Event>,
    _guard: TerminalGuard,
}

impl Tty {
    /// Enter full-screen mode (with mouse capture if `mouse`).
    pub fn enter(mouse: bool) -> std::io::Result<Tty> {
        let guard = TerminalGuard::enter(mouse)?;
        let terminal =
            ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
        Ok(Tty {
            terminal,
            input: spawn_input(),
            _guard: guard,
        })
    }
}

/// Why the main screen's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user quit (or SIGTERM/SIGHUP arrived).
    Quit,
    /// The user pressed `A`: open the setup wizard.
    AddAccount,
}

/// Run the TUI until the user quits, asks to add an account, or SIGTERM/SIGHUP arrives.
pub async fn run(
    tty: &mut Tty,
    mut app: App,
    mut events: UnboundedReceiver<EngineEvent>,
) -> std::io::Result<Exit> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let terminal = &mut tty.terminal;
    let input = &mut tty.input;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut engine_open = true;
    loop {
        if dirty {
            terminal.draw(|f| app.draw(f))?;
            dirty = false;
        }
        tokio::select! {
            ev = input.recv() => match ev {
                Some(ev) => {
                    app.handle_event(ev);
                    // Coalesce a burst (a paste, a held key, wheel spins) into one frame.
                    while let Ok(ev) = input.try_recv() {
                        app.handle_event(ev);
                    }
                    dirty = true;
                }
                None => break,
            },
            ev = events.recv(), if engine_open => match ev {
                Some(ev) => {
                    app.handle_engine(ev);
                    while let Ok(ev) = events.try_recv() {
                        app.handle_engine(ev);
                    }
                    dirty = true;
                }
                None => engine_open = false,
            },
            _ = term.recv() => break,
            _ = hup.recv() => break,
            _ = tick.tick() => {
                if app.tick(Instant::now()) {
                    dirty = true;
                }
            }
        }
        if app.should_quit() {
            break;
        }
    }
    Ok(if app.wants_add_account() {
        Exit::AddAccount
    } else {
        Exit::Quit
    })
}
