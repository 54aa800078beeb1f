//! Snapshots of the TUI rendered on ratatui's TestBackend, over the demo mailbox and small
//! mailboxes made here. Commands go to a detached engine handle, so nothing changes under the
//! screen; dates come from the messages, so the snapshots are stable.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mailbag::backend::MailBackend;
use mailbag::backend::local::{INBOX, LocalBackend};
use mailbag::engine::EngineHandle;
use mailbag::store::cache::Cache;
use mailbag::ui::{App, Options};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// A cache holding the messages of `mbox` (mboxrd bytes), through the local backend.
fn cache_of(dir: &std::path::Path, mbox: &[u8]) -> Cache {
    let path = dir.join("test.mbox");
    std::fs::write(&path, mbox).unwrap();
    let mut cache = Cache::open_in_memory().unwrap();
    let mut backend = LocalBackend::new("demo", &path);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(backend.sync_folder(&mut cache, INBOX, &mut |_| {}))
        .unwrap();
    cache
}

fn demo_app(dir: &std::path::Path) -> App {
    let cache = cache_of(dir, mailbag::cli::DEMO_MBOX);
    let (engine, _rx) = EngineHandle::detached();
    App::new(cache, engine, Options::default()).unwrap()
}

fn key(app: &mut App, code: KeyCode) {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn keys(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn render(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    terminal
}

/// The screen as lines of text.
fn screen(t: &Terminal<TestBackend>) -> Vec<String> {
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .filter_map(|x| buf.cell((x, y)).map(|c| c.symbol().to_string()))
                .collect()
        })
        .collect()
}

/// Select the first message whose row shows `needle` (moving down from the top).
fn select(app: &mut App, t: &mut Terminal<TestBackend>, needle: &str) {
    key(app, KeyCode::Home);
    for _ in 0..60 {
        t.draw(|f| app.draw(f)).unwrap();
        if app_selected_contains(app, t, needle) {
            return;
        }
        key(app, KeyCode::Char('j'));
    }
    panic!("no row shows {needle}");
}

/// Whether the selected (reversed) row shows `needle`.
fn app_selected_contains(_app: &App, t: &Terminal<TestBackend>, needle: &str) -> bool {
    let buf = t.backend().buffer();
    (0..buf.area.height).any(|y| {
        let line: String = (0..buf.area.width)
            .filter_map(|x| buf.cell((x, y)).map(|c| c.symbol().to_string()))
            .collect();
        let reversed = (0..buf.area.width).any(|x| {
            buf.cell((x, y)).is_some_and(|c| {
                c.modifier.contains(ratatui::style::Modifier::REVERSED) && c.symbol() != " "
            })
        });
        reversed && line.contains(needle)
    })
}

#[test]
fn three_pane_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = demo_app(dir.path());
    let mut t = render(&mut app, 120, 32);
    select(&mut app, &mut t, "Lunch on Thursday?");
    key(&mut app, KeyCode::Enter);
    let t = render(&mut app, 120, 32);
    let lines = screen(&t);
    assert!(lines[0].starts_with("┌Folders"), "{}", lines[0]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("│Subject: Lunch on Thursday?"))
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn reader_with_an_html_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = demo_app(dir.path());
    let mut t = render(&mut app, 100, 40);
    select(&mut app, &mut t, "Your invoice INV-2026-0917");
    key(&mut app, KeyCode::Enter);
    let t = render(&mut app, 100, 40);
    let text = screen(&t).join("\n");
    assert!(
        !text.contains("<td") && !text.contains("<p"),
        "tags must not show:\n{text}"
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn help_overlay_lists_the_live_keymap() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = demo_app(dir.path());
    keys(&mut app, "?");
    let t = render(&mut app, 100, 40);
    let text = screen(&t).join("\n");
    for action in mailbag::ui::keymap::Action::names() {
        assert!(
            text.contains(&format!("[{action}]")),
            "{action} missing from help"
        );
    }
    insta::assert_snapshot!(t.backend());
}

#[test]
fn help_follows_a_remapped_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_of(dir.path(), mailbag::cli::DEMO_MBOX);
    let (engine, _rx) = EngineHandle::detached();
    let mut remap = std::collections::BTreeMap::new();
    remap.insert("down".to_string(), "C-n".to_string());
    remap.insert("help".to_string(), "F1".to_string());
    let options = Options {
        keymap: mailbag::ui::keymap::Keymap::from_config(&remap).unwrap(),
        ..Options::default()
    };
    let mut app = App::new(cache, engine, options).unwrap();
    keys(&mut app, "?");
    let t = render(&mut app, 100, 40);
    assert!(
        !screen(&t).join("\n").contains("[help]"),
        "? is no longer help"
    );
    app.handle_key(KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE));
    let t = render(&mut app, 100, 40);
    let text = screen(&t).join("\n");
    assert!(text.contains("C-n") && text.contains("[down]"), "{text}");
    assert!(!text.contains("j/Down"), "{text}");
}

#[test]
fn threaded_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = demo_app(dir.path());
    keys(&mut app, "t");
    let mut t = render(&mut app, 120, 30);
    select(&mut app, &mut t, "(4) Re: Release 0.9 checklist");
    key(&mut app, KeyCode::Enter); // expands the conversation
    let t = render(&mut app, 120, 30);
    let text = screen(&t).join("\n");
    assert!(text.contains("conversations"), "{text}");
    assert!(text.contains("└ Re: Release 0.9 checklist"), "{text}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn narrow_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = demo_app(dir.path());
    let t = render(&mut app, 60, 20);
    let lines = screen(&t);
    assert!(
        lines[0].starts_with("┌ demo/INBOX"),
        "no sidebar when narrow: {}",
        lines[0]
    );
    insta::assert_snapshot!(t.backend());
}

fn message(n: usize, from: &str, subject: &str) -> String {
    format!(
        "From sender@example.com Mon Oct  5 10:00:00 2026\n\
         From: {from}\nTo: me@example.com\nSubject: {subject}\n\
         Date: Mon, {n:02} Oct 2026 10:00:00 +0000\nMessage-ID: <w{n}@example.com>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\nbody {n}\n\n"
    )
}

#[test]
fn wide_and_combining_characters_keep_columns() {
    let dir = tempfile::tempdir().unwrap();
    let subjects = [
        (
            "山田太郎 <y@example.jp>",
            "会議の資料です。確認してください。日本語の長い件名です",
        ),
        (
            "Zoe <z@example.com>",
            "🎉🍉🗺\u{fe0f} party 👨\u{200d}👩\u{200d}👧\u{200d}👦 family 🏳\u{fe0f}\u{200d}🌈 flags",
        ),
        (
            "Nguye\u{302}\u{303}n <n@example.vn>",
            "Tie\u{302}\u{301}ng Vie\u{323}\u{302}t co\u{301} da\u{302}\u{301}u ke\u{301}t ho\u{31b}\u{323}p",
        ),
        (
            "김민준 <k@example.kr>",
            "한국어 제목 😀 mixed 中文 text and more words",
        ),
        (
            "plain <p@example.com>",
            "A plain ASCII subject that is long enough to be cut somewhere",
        ),
    ];
    let mbox: String = subjects
        .iter()
        .enumerate()
        .map(|(i, (f, s))| message(i + 1, f, s))
        .collect();
    let cache = cache_of(dir.path(), mbox.as_bytes());
    let (engine, _rx) = EngineHandle::detached();
    let mut app = App::new(cache, engine, Options::default()).unwrap();
    for width in [100u16, 72, 60] {
        let t = render(&mut app, width, 12);
        let buf = t.backend().buffer();
        // Every list row ends with the size column and the border in the same place: count
        // display columns through the cells ratatui filled (a wide glyph's second cell is
        // empty), so a shifted column would show as a row of another width.
        for y in 1..6u16 {
            let line: String = (0..width)
                .filter_map(|x| buf.cell((x, y)).map(|c| c.symbol().to_string()))
                .collect();
            assert!(line.ends_with('│'), "row {y} at {width}: {line}");
            let size_col = width - 2;
            let digit = buf.cell((size_col, y)).map(|c| c.symbol().to_string());
            assert!(
                digit
                    .as_deref()
                    .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit() || c == 'K')),
                "size column moved in row {y} at {width}: {line}"
            );
        }
        if width == 100 {
            insta::assert_snapshot!(t.backend());
        }
    }
}
