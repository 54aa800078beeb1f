//! The real `mailbag` binary driven through a pseudo-terminal on the demo account: navigate,
//! open, search, quit; the hostile message; SIGTERM. The output is parsed by a terminal
//! emulator (vt100) whose callbacks record any title, clipboard or bell request.
//!
//! The PTY is opened with libc's `openpty` (a few lines, no PTY crate). Waiting has a generous
//! deadline that only turns a hang into a failure; nothing here measures time.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: u16 = 30;
const COLS: u16 = 110;

/// What the emulated terminal was asked to do besides drawing.
#[derive(Default)]
struct Seen {
    titles: Vec<Vec<u8>>,
    clipboard: Vec<Vec<u8>>,
    bells: usize,
}

impl vt100::Callbacks for Seen {
    fn audible_bell(&mut self, _: &mut vt100::Screen) {
        self.bells += 1;
    }
    fn visual_bell(&mut self, _: &mut vt100::Screen) {
        self.bells += 1;
    }
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.titles.push(title.to_vec());
    }
    fn set_window_icon_name(&mut self, _: &mut vt100::Screen, name: &[u8]) {
        self.titles.push(name.to_vec());
    }
    fn copy_to_clipboard(&mut self, _: &mut vt100::Screen, _ty: &[u8], data: &[u8]) {
        self.clipboard.push(data.to_vec());
    }
}

struct Session {
    child: Child,
    master: std::fs::File,
    parser: Arc<Mutex<vt100::Parser<Seen>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    _home: tempfile::TempDir,
}

fn open_pty() -> (OwnedFd, OwnedFd) {
    let mut master = 0;
    let mut slave = 0;
    let size = libc::winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds into the given ints; the other pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just returned by openpty and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

impl Session {
    fn start(args: &[&str]) -> Session {
        let home = tempfile::tempdir().unwrap();
        let (master, slave) = open_pty();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailbag"));
        cmd.args(args)
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DOWNLOAD_DIR", home.path().join("downloads"))
            .env("HOME", home.path())
            .env("TERM", "xterm-256color")
            .env_remove("MAILBAG_CONFIG")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start mailbag");
        let master = std::fs::File::from(master);
        let parser = Arc::new(Mutex::new(vt100::Parser::new_with_callbacks(
            ROWS,
            COLS,
            0,
            Seen::default(),
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let (p, r) = (parser.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                r.lock().unwrap().extend_from_slice(&buf[..n]);
                p.lock().unwrap().process(&buf[..n]);
            }
        });
        Session {
            child,
            master,
            parser,
            raw,
            _home: home,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Wait until the screen shows `text` (fails after a generous deadline).
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.screen().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the screen never showed {text:?}:\n{}", self.screen());
    }

    /// Wait until the screen no longer shows `text`.
    fn wait_gone(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !self.screen().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the screen still shows {text:?}:\n{}", self.screen());
    }

    /// Wait until mailbag has stopped writing (a frame is complete): no new output for a
    /// moment. Only a wait; nothing is asserted about how long it took.
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.raw.lock().unwrap().len();
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.raw.lock().unwrap().len();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= Duration::from_millis(300) {
                return;
            }
        }
    }

    /// Wait for the process to exit; returns whether it exited successfully.
    fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("mailbag did not exit:\n{}", self.screen());
    }

    fn raw(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

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
fn no_account_shows_how_to_add_one() {
    let mut s = Session::start(&[]);
    s.wait_for("mailbag has no account yet.");
    s.wait_for("mailbag --demo");
    s.send(b"q");
    assert!(s.wait_exit());
    // The master side stays readable until the child is gone.
    let _ = s.master.as_raw_fd();
}
