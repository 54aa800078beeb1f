//! The real `mailbag` TUI on an IMAP account of the real Dovecot, through a pseudo-terminal:
//! reading a message sets \Seen on the server, `s` sets \Flagged there, and mail delivered by
//! another agent appears in the open list without a keypress (IDLE).

mod common;

use std::time::{Duration, Instant};

use common::pty::Session;
use common::{ALICE, Dovecot};

/// Flags the server holds for `uid` in INBOX, as doveadm prints them.
fn server_flags(d: &Dovecot, uid: u32) -> String {
    d.doveadm(&[
        "-f",
        "tab",
        "fetch",
        "-u",
        ALICE.name,
        "flags",
        "mailbox",
        "INBOX",
        "uid",
        &uid.to_string(),
    ])
    .unwrap_or_default()
}

/// Wait (bounded: a hang becomes a failure, nothing is timed) until `check` holds.
fn eventually(what: &str, s: &Session, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; screen:\n{}",
            s.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reading_flagging_and_new_mail_over_imap() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 3).expect("seed");
    let home = tempfile::tempdir().expect("home");
    let config = home.path().join("config/mailbag");
    std::fs::create_dir_all(&config).expect("config dir");
    let pw = home.path().join("password");
    std::fs::write(&pw, ALICE.password).expect("password");
    std::fs::write(
        config.join("config.toml"),
        format!(
            "[accounts.work]\nemail = \"alice@example.com\"\nprotocol = \"imap\"\n\
             host = \"{}\"\nport = {}\nusername = \"{}\"\npassword_command = \"cat {}\"\n\
             tls_ca_file = \"{}\"\n",
            common::TLS_NAME,
            d.imap_tls_port(),
            ALICE.name,
            pw.display(),
            d.ca_path().display()
        ),
    )
    .expect("config");

    let mut s = Session::start_in(home, &[]);
    s.wait_for("Seed message 3");
    s.wait_for("work: online");
    s.settle();
    // Newest first: the cursor is on UID 3. Open it: reading marks it read on the server.
    s.send(b"\r");
    s.wait_for("Subject: Seed message 3");
    eventually("\\Seen on the server", &s, || {
        server_flags(&d, 3).contains("\\Seen")
    });
    // Back to the list; `s` flags the message on the server.
    s.send(b"q");
    s.wait_gone("Subject: Seed message 3");
    s.send(b"s");
    eventually("\\Flagged on the server", &s, || {
        server_flags(&d, 3).contains("\\Flagged")
    });
    // Another agent delivers mail: it shows up with no key pressed.
    d.deliver(
        ALICE.name,
        "INBOX",
        b"From: Pat <pat@example.com>\r\nTo: alice@example.com\r\n\
          Subject: Pushed while idling\r\nMessage-ID: <pushed@example.com>\r\n\
          Date: Thu, 26 Nov 2026 08:00:00 +0000\r\n\r\nhello\r\n",
    )
    .expect("deliver");
    s.wait_for("Pushed while idling");
    s.send(b"q");
    assert!(s.wait_exit(), "mailbag exits cleanly");
}
