//! TUI benchmark: the first frame of a 100,000-message folder and the redraw after a key.
//!
//! Run with `cargo bench --bench tui`. It builds a cache on disk with 100,000 messages in one
//! folder (threaded in conversations of up to five), then renders the real [`App`] on
//! ratatui's `TestBackend` at 200×50 through its own read connection, as the TUI does. The
//! floor, measured in the same run, is drawing the same number of rows of static text with
//! the same borders on the same backend with no cache access: what any ratatui frame of that
//! size costs. Results go into docs/performance.md.

use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mailbag::backend::{Envelope, Flags, FolderInfo, FolderRole, RemoteId, Uid};
use mailbag::engine::EngineHandle;
use mailbag::store::cache::{Cache, NewMessage};
use mailbag::ui::{App, Options};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};

const MESSAGES: u32 = 100_000;
const W: u16 = 200;
const H: u16 = 50;

#[path = "common/timing.rs"]
mod timing;

fn time(repeat: usize, f: impl FnMut()) -> timing::Stats {
    timing::time(3, repeat, f)
}

fn report(name: &str, stats: timing::Stats) {
    timing::report(name, 52, stats);
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut cache = Cache::open(dir.path())?;
    let account = cache.ensure_account("bench", "imap")?;
    let folder = cache.ensure_folder(
        account,
        &FolderInfo {
            name: "INBOX".into(),
            delimiter: Some('/'),
            role: Some(FolderRole::Inbox),
        },
    )?;
    let started = Instant::now();
    let batch: Vec<NewMessage> = (1..=MESSAGES)
        .map(|uid| {
            // Conversations of five: every message replies to the one before, within a group.
            let reply_to = (uid % 5 != 1).then(|| format!("{}@bench.example", uid - 1));
            NewMessage {
                remote: RemoteId::Uid(Uid(uid)),
                envelope: Envelope {
                    message_id: Some(format!("{uid}@bench.example")),
                    in_reply_to: reply_to.clone(),
                    references: reply_to.into_iter().collect(),
                    date: Some(1_700_000_000 + i64::from(uid) * 60),
                    from: format!("Sender {} <s{}@example.com>", uid % 500, uid % 500),
                    to: "me@example.com".into(),
                    subject: format!("Message number {uid} about topic {} — 日本語 🎉", uid % 97),
                    size: 2_000 + u64::from(uid % 5_000),
                    has_attachments: uid % 7 == 0,
                    ..Envelope::default()
                },
                flags: if uid % 3 == 0 {
                    Flags::default()
                } else {
                    Flags::SEEN
                },
                modseq: None,
                mbox: None,
                body_text: mailbag::store::cache::BodyText::Unknown,
            }
        })
        .collect();
    for chunk in batch.chunks(5_000) {
        cache.insert_messages(folder, chunk)?;
    }
    println!(
        "inserted {MESSAGES} messages (threaded) in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let new_app = || -> App {
        let (engine, _rx) = EngineHandle::detached();
        App::new(
            cache.open_another().expect("read connection"),
            engine,
            Options::default(),
        )
        .expect("app")
    };
    let mut terminal = Terminal::new(TestBackend::new(W, H))?;

    report(
        "first frame: open the app, draw 200x50",
        time(30, || {
            let mut app = new_app();
            terminal.draw(|f| app.draw(f)).expect("draw");
        }),
    );

    let mut app = new_app();
    terminal.draw(|f| app.draw(f))?;
    report(
        "key j (next message) + redraw",
        time(1_000, || {
            app.handle_key(key('j'));
            terminal.draw(|f| app.draw(f)).expect("draw");
        }),
    );
    report(
        "key PageDown + redraw",
        time(300, || {
            app.handle_key(KeyEvent::new(KeyCode::PageDown, KeyModifiers::NONE));
            terminal.draw(|f| app.draw(f)).expect("draw");
        }),
    );
    report(
        "keys G then g (bottom, top) + redraw each",
        time(100, || {
            app.handle_key(key('G'));
            terminal.draw(|f| app.draw(f)).expect("draw");
            app.handle_key(key('g'));
            terminal.draw(|f| app.draw(f)).expect("draw");
        }),
    );
    report(
        "key t (conversations on/off) + redraw",
        time(20, || {
            app.handle_key(key('t'));
            terminal.draw(|f| app.draw(f)).expect("draw");
        }),
    );
    app.handle_key(key('t'));
    app.handle_key(key('g'));
    terminal.draw(|f| app.draw(f))?;
    report(
        "conversations: key j + redraw",
        time(1_000, || {
            app.handle_key(key('j'));
            terminal.draw(|f| app.draw(f)).expect("draw");
        }),
    );
    // NOTE: floor: the same frame size with static rows and no cache access.
    let rows: Vec<String> = (0..H)
        .map(|i| {
            format!(
                "N @ 2023-11-14 Sender {i:<13} Message number {i} about topic {} — 日本語 🎉",
                i % 97
            )
        })
        .collect();
    report(
        "floor: draw 200x50 of static rows, no cache",
        time(1_000, || {
            terminal
                .draw(|f| {
                    let area = f.area();
                    let lines: Vec<Line> = rows.iter().map(|r| Line::raw(r.as_str())).collect();
                    f.render_widget(
                        Paragraph::new(lines).block(Block::default().borders(Borders::ALL)),
                        area,
                    );
                })
                .expect("draw");
        }),
    );
    Ok(())
}
