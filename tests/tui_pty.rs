//! The real `mailbag` binary driven through a pseudo-terminal on the demo account: navigate,
//! open, search, quit; the hostile message; SIGTERM. The output is parsed by a terminal
//! emulator (vt100) whose callbacks record any title, clipboard or bell request.
//!
//! The PTY is opened with libc's `openpty` (a few lines, no PTY crate). Waiting has a generous
//! deadline that only turns a hang into a failure; nothing here measures time.

mod common;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::pty::{COLS, ROWS, Session, contains};

/// Sidebar and list borders stand in the same columns on every row of the panes, counted in
/// terminal cells (a wide glyph takes two).
fn assert_layout_intact(s: &Session) {
    s.settle();
    let p = s.parser.lock().unwrap();
    let screen = p.screen();
    let cell = |y: u16, x: u16| {
        screen
            .cell(y, x)
            .map(|c| c.contents().to_string())
            .unwrap_or_default()
    };
    let rows: Vec<String> = screen.rows(0, COLS).collect();
    assert!(cell(0, 0) == "┌", "top row: {}", rows[0]);
    let border_cols: Vec<u16> = (0..COLS).filter(|x| cell(0, *x) == "┐").collect();
    assert_eq!(border_cols.len(), 2, "two panes on top: {}", rows[0]);
    for y in 1..ROWS - 1 {
        for &x in &border_cols {
            let c = cell(y, x);
            assert!(
                matches!(c.as_str(), "│" | "┘" | "┤" | "┐"),
                "row {y} column {x} is {c:?}, the layout shifted:\n{}",
                rows.join("\n")
            );
        }
    }
    let status = rows.last().cloned().unwrap_or_default();
    assert!(status.starts_with(" demo: "), "status bar: {status}");
}

#[test]
fn demo_navigate_open_search_quit() {
    let mut s = Session::start(&["--demo"]);
    s.wait_for("demo/INBOX — 40 messages");
    s.wait_for("demo: online");
    // Navigate to the third message and open it.
    s.send(b"jj");
    s.send(b"\r");
    s.wait_for("Subject: Mei Lin shared");
    s.wait_for("Message");
    // Back to the list, then search.
    s.send(b"q");
    s.wait_gone("Subject: Mei Lin shared");
    s.send(b"/lunch");
    s.wait_for("search: lunch (2 hits)");
    s.send(b"\r");
    s.send(b"\r");
    s.wait_for("Subject: Lunch on Thursday?");
    // q closes the reader, q ends the search, q quits.
    s.send(b"q");
    s.wait_gone("Subject: Lunch on Thursday?");
    s.send(b"q");
    s.wait_for("— 40 messages");
    s.send(b"q");
    assert!(s.wait_exit(), "mailbag exits cleanly");
    let raw = s.raw();
    assert!(
        contains(&raw, b"\x1b[?1049h"),
        "entered the alternate screen"
    );
    assert!(
        contains(&raw, b"\x1b[?1049l"),
        "left the alternate screen on quit"
    );
}

#[test]
fn hostile_message_shows_placeholders_and_sends_nothing_to_the_terminal() {
    let mut s = Session::start(&["--demo"]);
    s.wait_for("demo/INBOX — 40 messages");
    // The list row of the hostile message.
    s.wait_for("[terminal safety test] ^[[31mRED^[[0m");
    assert_layout_intact(&s);
    // Open it (second row) and scroll through its whole body.
    s.send(b"j\r");
    s.wait_for("This message tests mailbag's terminal safety.");
    s.send(b"\t");
    for _ in 0..6 {
        s.send(b"\x1b[6~"); // PageDown
    }
    s.wait_for("must not");
    let screen = s.screen();
    assert!(screen.contains("^["), "ESC shown as ^[:\n{screen}");
    assert!(
        screen.contains("^G") || screen.contains("^H"),
        "BEL/BS shown:\n{screen}"
    );
    assert_layout_intact(&s);
    // Attachments overlay shows the hostile file names sanitised too.
    s.send(b"a");
    s.wait_for("Attachments — Enter saves");
    s.wait_for("^[]0;pwned^G");
    s.send(b"\x1b");
    // NOTE: ESC directly followed by a key reads as Alt+key; let the ESC arrive alone.
    s.wait_gone("Attachments — Enter saves");
    s.send(b"q");
    s.wait_gone("This message tests");
    s.send(b"q");
    assert!(s.wait_exit());

    let seen = s.parser.lock().unwrap();
    let cb = seen.callbacks();
    assert!(cb.titles.is_empty(), "title changed: {:?}", cb.titles);
    assert!(
        cb.clipboard.is_empty(),
        "clipboard written: {:?}",
        cb.clipboard
    );
    assert_eq!(cb.bells, 0, "the bell rang");
    drop(seen);
    let raw = s.raw();
    for (what, bytes) in [
        ("OSC 0 (title)", &b"\x1b]0;"[..]),
        ("OSC 2 (title)", b"\x1b]2;"),
        ("OSC 52 (clipboard)", b"\x1b]52;"),
        ("OSC 8 (hyperlink)", b"\x1b]8;"),
        ("BEL", b"\x07"),
        ("backspace", b"\x08"),
        ("C1 CSI", "\u{9b}".as_bytes()),
        ("RLO", "\u{202e}".as_bytes()),
    ] {
        assert!(
            !contains(&raw, bytes),
            "mailbag sent {what} to the terminal"
        );
    }
}

#[test]
fn sigterm_restores_the_terminal() {
    let mut s = Session::start(&["--demo"]);
    s.wait_for("demo/INBOX — 40 messages");
    // SAFETY: sending a signal to our own child by its pid.
    let rc = unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    s.wait_exit();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !contains(&s.raw(), b"\x1b[?1049l") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let raw = s.raw();
    assert!(contains(&raw, b"\x1b[?1049l"), "left the alternate screen");
    assert!(contains(&raw, b"\x1b[?25h"), "cursor shown again");
}

#[test]
fn no_account_opens_the_setup_wizard() {
    let mut s = Session::start(&[]);
    s.wait_for("mailbag has no account yet.");
    s.wait_for("mailbag --demo");
    s.wait_for("1/5 Who you are");
    // Esc on the wizard's first screen leaves.
    s.send(b"\x1b");
    assert!(s.wait_exit());
    // The master side stays readable until the child is gone.
    let _ = s.master.as_raw_fd();
}
