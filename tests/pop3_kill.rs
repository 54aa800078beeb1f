//! Crash safety of POP3 downloads: `mailbag sync` is killed with SIGKILL at random moments
//! during a 500-message download, 20 times in a row, and restarted each time. At the end every
//! server message must be in the mbox exactly once, byte for byte — with mail left on the
//! server and without.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ALICE, Dovecot};

const MESSAGES: usize = 500;
const KILLS: usize = 20;

/// A small deterministic generator for the kill moments (xorshift64*).
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % max
    }
}

fn write_config(home: &Path, d: &Dovecot, leave: bool) {
    let dir = home.join("config/mailbag");
    std::fs::create_dir_all(&dir).expect("config dir");
    let pw = home.join("password");
    std::fs::write(&pw, ALICE.password).expect("password");
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[accounts.pop]\nemail = \"alice@example.com\"\nprotocol = \"pop3\"\n\
             host = \"{}\"\nport = {}\nusername = \"{}\"\npassword_command = \"cat {}\"\n\
             tls_ca_file = \"{}\"\nleave_on_server = {leave}\n",
            common::TLS_NAME,
            d.pop3_tls_port(),
            ALICE.name,
            pw.display(),
            d.ca_path().display()
        ),
    )
    .expect("config");
}

fn sync_command(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailbag"));
    cmd.arg("sync")
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env_remove("MAILBAG_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn server_messages(d: &Dovecot) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(d.maildir(ALICE.name, "INBOX").join(sub)) else {
            continue;
        };
        for entry in entries {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
            let id = mailbag::backend::Envelope::from_raw(&bytes)
                .message_id
                .expect("message id");
            out.insert(id, bytes);
        }
    }
    out
}

fn kill_and_restart(leave_on_server: bool, seed: u64) {
    let Some(d) = Dovecot::start() else { return };
    // Most of the mail is there at the start; a little more arrives before every restart, so
    // that every run has something left to download when it is killed.
    let wave = 10;
    let first = MESSAGES - wave * KILLS;
    d.seed(ALICE.name, "INBOX", first).expect("seed");
    let mut expected = server_messages(&d);

    // How long one whole sync takes here (a scratch profile that leaves mail on the server),
    // so that the kills are spread over a download rather than landing after it.
    let scratch = tempfile::tempdir().expect("scratch");
    write_config(scratch.path(), &d, true);
    let started = std::time::Instant::now();
    let out = sync_command(scratch.path()).output().expect("scratch sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = (started.elapsed().as_millis() as u64).max(20);

    let home = tempfile::tempdir().expect("home");
    write_config(home.path(), &d, leave_on_server);
    let mbox = home.path().join("data/mailbag/mail/pop.mbox");
    let mut moments = Moments(seed);
    let mut partial = Vec::new();
    for _ in 0..KILLS {
        d.seed(ALICE.name, "INBOX", wave).expect("seed a wave");
        expected.extend(server_messages(&d));
        let mut child = sync_command(home.path()).spawn().expect("spawn mailbag");
        std::thread::sleep(Duration::from_millis(moments.next_ms(whole)));
        let running = child.try_wait().expect("poll").is_none();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let held = std::fs::read(&mbox)
            .map(|b| {
                b.windows(6).filter(|w| *w == b"\nFrom ").count()
                    + usize::from(b.starts_with(b"From "))
            })
            .unwrap_or(0);
        if running && held < expected.len() {
            partial.push(held);
        }
    }
    eprintln!(
        "a whole sync takes {whole} ms; messages in the mbox at kills mid-download: {partial:?}"
    );
    assert!(
        !partial.is_empty(),
        "no kill landed in the middle of a download"
    );
    assert_eq!(expected.len(), MESSAGES);

    let out = sync_command(home.path()).output().expect("final sync");
    assert!(
        out.status.success(),
        "final sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second clean pass settles deletions a kill interrupted, and must find nothing new.
    let out = sync_command(home.path()).output().expect("settling sync");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(" 0 new"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut found: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    mailbag::store::mbox::scan(&mbox, |m| {
        let id = mailbag::backend::Envelope::from_raw(&m.raw)
            .message_id
            .unwrap_or_default();
        found.entry(id).or_default().push(m.raw);
        Ok(())
    })
    .expect("scan");
    assert_eq!(found.len(), MESSAGES, "distinct messages in the mbox");
    for (id, bytes) in &expected {
        let copies = found.get(id).unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!(
            copies.len(),
            1,
            "{id} is in the mbox {} times",
            copies.len()
        );
        assert!(copies[0] == *bytes, "{id} differs from the server's copy");
    }
    let on_server = d.message_count(ALICE.name, "INBOX").expect("count");
    if leave_on_server {
        assert_eq!(on_server, MESSAGES as u64);
    } else {
        assert_eq!(on_server, 0);
    }
}

#[test]
fn killed_downloads_leave_each_message_once_when_mail_stays_on_the_server() {
    kill_and_restart(true, 0x5eed_0001);
}

#[test]
fn killed_downloads_leave_each_message_once_when_mail_is_removed_from_the_server() {
    kill_and_restart(false, 0x5eed_0002);
}
