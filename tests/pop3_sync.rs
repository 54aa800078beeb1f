//! POP3 accounts against the real Dovecot: download into the mbox, leave on server or not,
//! never a lost or duplicated message (RFC 1939, RFC 2449, RFC 2595).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ALICE, Dovecot};

/// A mailbag profile (config + data) in a temporary directory.
struct Profile {
    dir: tempfile::TempDir,
}

impl Profile {
    fn new(d: &Dovecot, extra: &str) -> Profile {
        Profile::with_account(d, d.pop3_tls_port(), "tls", ALICE.password, extra)
    }

    fn with_account(
        d: &Dovecot,
        port: u16,
        security: &str,
        password: &str,
        extra: &str,
    ) -> Profile {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config/mailbag");
        std::fs::create_dir_all(&config).expect("config dir");
        let pw_file = dir.path().join("password");
        std::fs::write(&pw_file, format!("{password}\n")).expect("password file");
        std::fs::write(
            config.join("config.toml"),
            format!(
                "[accounts.pop]\n\
                 email = \"alice@example.com\"\n\
                 protocol = \"pop3\"\n\
                 host = \"{host}\"\n\
                 port = {port}\n\
                 security = \"{security}\"\n\
                 username = \"{user}\"\n\
                 password_command = \"cat {pw}\"\n\
                 tls_ca_file = \"{ca}\"\n\
                 {extra}\n",
                host = common::TLS_NAME,
                user = ALICE.name,
                pw = pw_file.display(),
                ca = d.ca_path().display(),
            ),
        )
        .expect("config");
        Profile { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mailbag"))
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env_remove("MAILBAG_CONFIG")
            .output()
            .expect("run mailbag")
    }

    fn sync(&self) -> Output {
        self.run(&["sync"])
    }

    fn mbox(&self) -> PathBuf {
        self.dir.path().join("data/mailbag/mail/pop.mbox")
    }

    /// The profile's cache, with every downloaded body indexed as a session would.
    fn indexed_cache(&self) -> (mailbag::store::cache::Cache, i64) {
        let cache = mailbag::store::cache::Cache::open(&self.dir.path().join("data/mailbag"))
            .expect("cache");
        cache.index_pending().expect("index");
        let folder = cache.folders(1).expect("folders")[0].id;
        (cache, folder)
    }

    fn list(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["list", "--json", "--limit", "100000"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The server's messages by Message-ID, read from the maildir Dovecot serves them from.
fn server_messages(d: &Dovecot) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for sub in ["cur", "new"] {
        let dir = d.maildir(ALICE.name, "INBOX").join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read message");
            let id = mailbag::backend::Envelope::from_raw(&bytes)
                .message_id
                .expect("seeded messages have a Message-ID");
            out.insert(id, bytes);
        }
    }
    out
}

/// Every message in an mbox file, by Message-ID, counting repeats.
fn mbox_messages(path: &Path) -> HashMap<String, Vec<Vec<u8>>> {
    let mut out: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    mailbag::store::mbox::scan(path, |m| {
        let id = mailbag::backend::Envelope::from_raw(&m.raw)
            .message_id
            .unwrap_or_default();
        out.entry(id).or_default().push(m.raw);
        Ok(())
    })
    .expect("scan mbox");
    out
}

/// Assert that the mbox holds each of `expected` exactly once, byte for byte.
fn assert_exactly_once(path: &Path, expected: &HashMap<String, Vec<u8>>) {
    let found = mbox_messages(path);
    assert_eq!(found.len(), expected.len(), "distinct messages in the mbox");
    for (id, bytes) in expected {
        let copies = found.get(id).unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!(
            copies.len(),
            1,
            "{id} is in the mbox {} times",
            copies.len()
        );
        assert!(
            copies[0] == *bytes,
            "{id} differs from what the server holds"
        );
    }
}

#[test]
fn leave_on_server_downloads_once_and_bytes_are_identical() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 25).expect("seed");
    let expected = server_messages(&d);
    assert_eq!(expected.len(), 25);
    let p = Profile::new(&d, "");

    let first = p.sync();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("25 new"), "{}", stderr(&first));
    let second = p.sync();
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stderr(&second).contains("0 new"), "{}", stderr(&second));

    assert_exactly_once(&p.mbox(), &expected);
    assert_eq!(d.message_count(ALICE.name, "INBOX").expect("count"), 25);

    let rows = p.list();
    assert_eq!(rows.len(), 25);
    for row in &rows {
        assert!(row["uidl"].is_string(), "POP3 rows carry a uidl: {row}");
        assert!(row.get("uid").is_none());
        let id = row["id"].as_i64().expect("id").to_string();
        let raw = p.run(&["read", &id, "--raw"]);
        assert!(raw.status.success());
        let mid = row["message_id"].as_str().expect("message id");
        assert!(
            raw.stdout == expected[mid],
            "read --raw of {mid} is not the server's bytes"
        );
    }

    // The bodies' words are read back from the mbox when indexed, and with them what the
    // header could only guess: every fifth seeded message has an attachment.
    let (cache, folder) = p.indexed_cache();
    assert_eq!(
        cache.search(folder, "seeded", 100).expect("search").len(),
        25
    );
    for row in &rows {
        let id = row["id"].as_i64().expect("id");
        let n: u64 = row["message_id"].as_str().expect("message id")["seed-".len()..]
            .split('.')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("seed number");
        let envelope = cache.message(id).expect("read").expect("row").envelope;
        assert_eq!(envelope.has_attachments, n.is_multiple_of(5), "message {n}");
    }
}

#[test]
fn without_leave_on_server_the_server_is_emptied() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 30).expect("seed");
    let expected = server_messages(&d);
    let p = Profile::new(&d, "leave_on_server = false");
    let out = p.sync();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.message_count(ALICE.name, "INBOX").expect("count"), 0);
    assert_exactly_once(&p.mbox(), &expected);
    // New mail after that arrives once as well.
    d.seed(ALICE.name, "INBOX", 3).expect("seed");
    let mut all = expected.clone();
    all.extend(server_messages(&d));
    let out = p.sync();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.message_count(ALICE.name, "INBOX").expect("count"), 0);
    assert_exactly_once(&p.mbox(), &all);
}

#[test]
fn stls_on_the_plain_port_works() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 4).expect("seed");
    let p = Profile::with_account(&d, d.pop3_plain_port(), "starttls", ALICE.password, "");
    let out = p.sync();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_exactly_once(&p.mbox(), &server_messages(&d));
}

#[test]
fn wrong_password_is_a_clear_error_and_loses_nothing() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 3).expect("seed");
    let p = Profile::with_account(&d, d.pop3_tls_port(), "tls", "not-the-password", "");
    let out = p.sync();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("wrong user name or password"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password leaked: {err}"
    );
    assert_eq!(d.message_count(ALICE.name, "INBOX").expect("count"), 3);
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let Some(d) = Dovecot::start() else { return };
    let p = Profile::new(&d, "");
    // Drop the tls_ca_file line: the harness CA is then unknown. The password command leaves
    // a mark when it runs.
    let config = p.dir.path().join("config/mailbag/config.toml");
    let marker = p.dir.path().join("password-command-ran");
    let text = std::fs::read_to_string(&config).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("tls_ca_file"))
        .map(|l| {
            let l = l.replace(
                "password_command = \"cat ",
                &format!("password_command = \"touch {}; cat ", marker.display()),
            );
            format!("{l}\n")
        })
        .collect();
    std::fs::write(&config, text).expect("config");
    let out = p.sync();
    assert!(!out.status.success());
    assert!(
        !marker.exists(),
        "the password command ran for a refused certificate"
    );
    let err = stderr(&out);
    assert!(err.contains("tls with localhost failed"), "{err}");
    assert!(
        err.contains("self-signed") || err.contains("not trusted"),
        "{err}"
    );
}

#[test]
fn tls_against_a_plain_port_fails_instead_of_downgrading() {
    // Implicit-TLS port spoken to in clear text is a handshake problem, not a silent downgrade;
    // here the plain port with security = "tls" must fail, never fall back to clear text.
    let Some(d) = Dovecot::start() else { return };
    let p = Profile::with_account(&d, d.pop3_plain_port(), "tls", ALICE.password, "");
    let out = p.sync();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tls"), "{}", stderr(&out));
}

#[test]
fn local_delete_is_expunged_and_optionally_deleted_on_the_server() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 6).expect("seed");
    let p = Profile::new(&d, "delete_on_server_when_deleted_locally = true");
    assert!(p.sync().status.success());
    let rows = p.list();
    assert_eq!(rows.len(), 6);
    let victim = rows[2]["id"].as_i64().expect("id").to_string();
    let victim_mid = rows[2]["message_id"].as_str().expect("mid").to_string();
    let out = p.run(&["delete", &victim]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = p.sync();
    assert!(out.status.success(), "{}", stderr(&out));
    let left = mbox_messages(&p.mbox());
    assert_eq!(left.len(), 5);
    assert!(!left.contains_key(&victim_mid));
    assert_eq!(d.message_count(ALICE.name, "INBOX").expect("count"), 5);
    // The rest still read back exactly after the rewrite moved them.
    let expected = server_messages(&d);
    for row in p.list() {
        let id = row["id"].as_i64().expect("id").to_string();
        let raw = p.run(&["read", &id, "--raw"]);
        let mid = row["message_id"].as_str().expect("mid");
        assert!(raw.stdout == expected[mid], "{mid} changed in the rewrite");
    }
    // And nothing comes back on the next sync.
    let out = p.sync();
    assert!(stderr(&out).contains("0 new"), "{}", stderr(&out));
}

#[test]
fn delete_after_days_removes_old_server_copies_only() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 4).expect("seed");
    let keep = Profile::new(&d, "delete_after_days = 30");
    assert!(keep.sync().status.success());
    assert!(keep.sync().status.success());
    assert_eq!(d.message_count(ALICE.name, "INBOX").expect("count"), 4);
    let now = Profile::new(&d, "delete_after_days = 0");
    assert!(now.sync().status.success());
    assert_eq!(d.message_count(ALICE.name, "INBOX").expect("count"), 0);
    assert_eq!(mbox_messages(&now.mbox()).len(), 4);
}

#[test]
fn an_existing_mbox_is_kept_and_indexed() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 2).expect("seed");
    let p = Profile::new(&d, "");
    let mbox = p.mbox();
    std::fs::create_dir_all(mbox.parent().expect("parent")).expect("dir");
    let old = b"From old@example.com Mon Jan  1 00:00:00 2024\nFrom: old@example.com\n\
Subject: kept from before\nMessage-ID: <old@example.com>\n\n>From the archive\n\n";
    std::fs::write(&mbox, old).expect("write mbox");
    assert!(p.sync().status.success());
    let found = mbox_messages(&mbox);
    assert_eq!(found.len(), 3);
    assert_eq!(found["old@example.com"][0], b"From: old@example.com\nSubject: kept from before\nMessage-ID: <old@example.com>\n\nFrom the archive\n".to_vec());
    assert_eq!(p.list().len(), 3);
    let (cache, folder) = p.indexed_cache();
    assert_eq!(
        cache.search(folder, "archive", 10).expect("search").len(),
        1
    );
}

#[test]
fn apop_logs_in_when_configured_and_offered() {
    let Some(d) = Dovecot::start_with_config("auth_mechanisms = plain login apop") else {
        return;
    };
    d.seed(ALICE.name, "INBOX", 2).expect("seed");
    let p = Profile::new(&d, "auth = \"apop\"");
    let out = p.sync();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_exactly_once(&p.mbox(), &server_messages(&d));
}

#[test]
fn apop_is_refused_when_the_server_does_not_offer_it() {
    let Some(d) = Dovecot::start() else { return };
    let p = Profile::new(&d, "auth = \"apop\"");
    let out = p.sync();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not offer APOP"),
        "{}",
        stderr(&out)
    );
}
