//! IMAP accounts against the real Dovecot: the same mailbox on every device (RFC 3501,
//! RFC 4549, RFC 7162, RFC 2177).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{ALICE, Dovecot};
use mailbag::backend::imap::{ImapBackend, Timeouts};
use mailbag::backend::{Flags, MailBackend};
use mailbag::store::cache::Cache;

/// A mailbag profile (config + data) in a temporary directory.
struct Profile {
    dir: tempfile::TempDir,
}

impl Profile {
    fn new(d: &Dovecot) -> Profile {
        Profile::with(d, d.imap_tls_port(), "tls", ALICE.password, true)
    }

    fn with(d: &Dovecot, port: u16, security: &str, password: &str, trust: bool) -> Profile {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config/mailbag");
        std::fs::create_dir_all(&config).expect("config dir");
        let pw = dir.path().join("password");
        std::fs::write(&pw, password).expect("password");
        let ca = if trust {
            format!("tls_ca_file = \"{}\"\n", d.ca_path().display())
        } else {
            String::new()
        };
        std::fs::write(
            config.join("config.toml"),
            format!(
                "[accounts.work]\nemail = \"alice@example.com\"\nprotocol = \"imap\"\n\
                 host = \"{}\"\nport = {port}\nsecurity = \"{security}\"\nusername = \"{}\"\n\
                 password_command = \"cat {}\"\n{ca}prefetch = 5\n",
                common::TLS_NAME,
                ALICE.name,
                pw.display(),
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

    fn sync(&self) {
        let out = self.run(&["sync"]);
        assert!(out.status.success(), "sync failed: {}", stderr(&out));
    }

    fn list(&self, folder: &str) -> Vec<serde_json::Value> {
        let out = self.run(&["list", "--json", "--folder", folder, "--limit", "100000"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    }

    /// uid → flags as this profile's cache holds them.
    fn cached(&self, folder: &str) -> BTreeMap<u64, Vec<String>> {
        self.list(folder)
            .into_iter()
            .map(|r| {
                let mut flags: Vec<String> = r["flags"]
                    .as_array()
                    .expect("flags")
                    .iter()
                    .map(|f| f.as_str().expect("flag").to_string())
                    .collect();
                flags.sort();
                (r["uid"].as_u64().expect("uid"), flags)
            })
            .collect()
    }

    fn id_of(&self, folder: &str, message_id: &str) -> String {
        self.list(folder)
            .into_iter()
            .find(|r| r["message_id"] == message_id)
            .map(|r| r["id"].to_string())
            .unwrap_or_else(|| panic!("{message_id} not in {folder}"))
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data/mailbag")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// uid → flags as the server holds them (system flags only, as mailbag names them).
fn server(d: &Dovecot, folder: &str) -> BTreeMap<u64, Vec<String>> {
    let out = d
        .doveadm(&[
            "-f",
            "tab",
            "fetch",
            "-u",
            ALICE.name,
            "uid flags",
            "mailbox",
            folder,
        ])
        .expect("doveadm fetch");
    out.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (uid, flags) = l.split_once('\t').unwrap_or((l, ""));
            let mut names: Vec<String> = flags
                .split_whitespace()
                .filter_map(|f| match f {
                    "\\Seen" => Some("seen"),
                    "\\Flagged" => Some("flagged"),
                    "\\Answered" => Some("answered"),
                    "\\Deleted" => Some("deleted"),
                    "\\Draft" => Some("draft"),
                    _ => None,
                })
                .map(str::to_string)
                .collect();
            names.sort();
            (uid.trim().parse().expect("uid"), names)
        })
        .collect()
}

fn message_ids(d: &Dovecot, folder: &str) -> Vec<String> {
    let out = d
        .doveadm(&[
            "-f",
            "tab",
            "fetch",
            "-u",
            ALICE.name,
            "hdr.message-id",
            "mailbox",
            folder,
        ])
        .expect("doveadm fetch");
    out.lines()
        .skip(1)
        .map(|l| l.trim().trim_matches(['<', '>']).to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn two_profiles_converge_on_flags_moves_and_deletes() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 10).expect("seed");
    let a = Profile::new(&d);
    let b = Profile::new(&d);
    a.sync();
    b.sync();
    assert_eq!(a.cached("INBOX"), server(&d, "INBOX"));
    let mids = message_ids(&d, "INBOX");

    // Flags set in A reach the server at once, and B after its sync.
    let x = a.id_of("INBOX", &mids[0]);
    let out = a.run(&["flag", &x, "--seen", "--flagged"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let on_server = server(&d, "INBOX");
    assert_eq!(
        on_server.values().next().expect("first"),
        &vec!["flagged".to_string(), "seen".to_string()]
    );
    // Move and delete.
    let y = a.id_of("INBOX", &mids[1]);
    assert!(a.run(&["move", &y, "Archive"]).status.success());
    let z = a.id_of("INBOX", &mids[2]);
    assert!(a.run(&["delete", &z]).status.success());
    assert!(message_ids(&d, "Archive").contains(&mids[1]));
    assert!(message_ids(&d, "Trash").contains(&mids[2]));
    assert!(!message_ids(&d, "INBOX").contains(&mids[1]));

    b.sync();
    a.sync();
    for p in [&a, &b] {
        for folder in ["INBOX", "Archive", "Trash"] {
            assert_eq!(p.cached(folder), server(&d, folder), "{folder}");
        }
    }
    // Deleting in Trash removes the message for good.
    let z_in_trash = b.id_of("Trash", &mids[2]);
    assert!(b.run(&["delete", &z_in_trash]).status.success());
    assert!(message_ids(&d, "Trash").is_empty());
    a.sync();
    assert!(a.list("Trash").is_empty());
}

/// Capabilities of a server with CONDSTORE but not QRESYNC (as many providers have).
const CONDSTORE_ONLY: &str =
    "imap_capability = IMAP4rev1 LITERAL+ ENABLE IDLE UIDPLUS MOVE CONDSTORE SPECIAL-USE";
/// Capabilities of a bare RFC 3501 server: no CONDSTORE, MOVE, UIDPLUS or IDLE.
const BARE: &str = "imap_capability = IMAP4rev1 LITERAL+";

#[test]
fn changes_by_another_client_and_expunges_arrive_on_sync() {
    let Some(d) = Dovecot::start() else { return };
    another_client_scenario(&d);
}

#[test]
fn without_qresync_condstore_finds_the_changes() {
    let Some(d) = Dovecot::start_with_config(CONDSTORE_ONLY) else {
        return;
    };
    another_client_scenario(&d);
}

#[test]
fn a_bare_imap4rev1_server_syncs_moves_and_polls() {
    let Some(d) = Dovecot::start_with_config(BARE) else {
        return;
    };
    another_client_scenario(&d);
    // MOVE falls back to COPY + \Deleted (no UIDPLUS: the copy stays marked).
    let p = Profile::new(&d);
    p.sync();
    let mids = message_ids(&d, "INBOX");
    let id = p.id_of("INBOX", &mids[0]);
    let out = p.run(&["move", &id, "Archive"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(message_ids(&d, "Archive").contains(&mids[0]));
    let inbox = server(&d, "INBOX");
    assert!(
        inbox
            .values()
            .next()
            .expect("first")
            .contains(&"deleted".to_string())
    );
    // No IDLE: waiting for changes polls with NOOP and still sees them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (_requests, inbox_rx) = std::sync::mpsc::channel();
    let q = Profile::new(&d);
    let timeouts = Timeouts {
        read: Duration::from_secs(5),
        idle: Duration::from_millis(300),
    };
    let worker = idle_loop(&q.data(), account_for(&q), timeouts, stop.clone(), inbox_rx);
    eventually("the first sync", || cached_flags(&q.data(), 2).is_some());
    d.doveadm(&[
        "flags",
        "add",
        "-u",
        ALICE.name,
        "\\Flagged",
        "mailbox",
        "INBOX",
        "uid",
        "2",
    ])
    .expect("flag");
    eventually("the flag change by polling", || {
        cached_flags(&q.data(), 2).is_some_and(|f| f.contains(Flags::FLAGGED))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let errors = worker.join().expect("worker");
    assert!(errors.is_empty(), "{errors:?}");
}

fn another_client_scenario(d: &Dovecot) {
    d.seed(ALICE.name, "INBOX", 8).expect("seed");
    let p = Profile::new(d);
    p.sync();
    d.doveadm(&[
        "flags",
        "add",
        "-u",
        ALICE.name,
        "\\Seen \\Answered",
        "mailbox",
        "INBOX",
        "uid",
        "3",
    ])
    .expect("flag");
    d.doveadm(&["expunge", "-u", ALICE.name, "mailbox", "INBOX", "uid", "5"])
        .expect("expunge");
    d.seed(ALICE.name, "INBOX", 2).expect("more mail");
    p.sync();
    let cached = p.cached("INBOX");
    assert_eq!(cached, server(d, "INBOX"));
    assert!(!cached.contains_key(&5));
    assert_eq!(cached[&3], vec!["answered".to_string(), "seen".to_string()]);
    assert_eq!(cached.len(), 9);
    // Flags removed elsewhere go too, and a resync with no change changes nothing.
    d.doveadm(&[
        "flags", "remove", "-u", ALICE.name, "\\Seen", "mailbox", "INBOX", "uid", "3",
    ])
    .expect("unflag");
    p.sync();
    assert_eq!(p.cached("INBOX"), server(d, "INBOX"));
    let out = p.run(&["sync"]);
    assert!(
        stderr(&out).contains("0 new, 0 removed, 0 flag changes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn special_use_folders_are_recognised() {
    let Some(d) = Dovecot::start() else { return };
    let p = Profile::new(&d);
    p.sync();
    let out = p.run(&["folders", "--json"]);
    let roles: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .map(|v| {
            (
                v["folder"].as_str().unwrap_or("").to_string(),
                v["role"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (folder, role) in [
        ("INBOX", "inbox"),
        ("Sent", "sent"),
        ("Trash", "trash"),
        ("Drafts", "drafts"),
        ("Junk", "junk"),
        ("Archive", "archive"),
    ] {
        assert_eq!(
            roles.get(folder).map(String::as_str),
            Some(role),
            "{roles:?}"
        );
    }
}

#[test]
fn empty_folders_recorded_from_their_status_still_get_new_mail() {
    let Some(d) = Dovecot::start() else { return };
    let p = Profile::new(&d);
    p.sync();
    // The empty folders' states came from LIST-STATUS; mail delivered to one of them later
    // changes its status, so the next sync selects it and fetches the message.
    d.seed(ALICE.name, "Archive", 2).expect("seed");
    let second = p.run(&["sync"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stderr(&second).contains("2 new"), "{}", stderr(&second));
    let out = p.run(&["list", "--folder", "Archive", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let third = p.run(&["sync"]);
    assert!(stderr(&third).contains("0 new"), "{}", stderr(&third));
}

#[test]
fn folders_deleted_or_renamed_on_the_server_follow() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "Projects", 3).expect("seed");
    d.create_mailbox(ALICE.name, "Old").expect("create");
    let p = Profile::new(&d);
    p.sync();
    assert_eq!(p.list("Projects").len(), 3);
    d.doveadm(&["mailbox", "rename", "-u", ALICE.name, "Projects", "Clients"])
        .expect("rename");
    d.doveadm(&["mailbox", "delete", "-u", ALICE.name, "Old"])
        .expect("delete");
    p.sync();
    let out = p.run(&["folders", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("\"Projects\"") && !text.contains("\"Old\""),
        "{text}"
    );
    assert_eq!(p.list("Clients").len(), 3);
}

#[test]
fn a_queued_change_in_a_folder_deleted_on_the_server_does_not_block_the_rest() {
    let Some(mut d) = Dovecot::start() else {
        return;
    };
    d.seed(ALICE.name, "INBOX", 2).expect("seed");
    d.seed(ALICE.name, "Old", 2).expect("seed");
    let p = Profile::new(&d);
    p.sync();
    let old = p.id_of("Old", &message_ids(&d, "Old")[0]);
    let inbox = p.id_of("INBOX", &message_ids(&d, "INBOX")[0]);
    // Both changes wait in the queue, the one in Old first ...
    d.stop();
    assert!(p.run(&["flag", &old, "--flagged"]).status.success());
    assert!(p.run(&["flag", &inbox, "--flagged"]).status.success());
    d.restart().expect("restart");
    // ... and meanwhile Old goes from the server: its change is dropped, the next one pushed.
    d.doveadm(&["mailbox", "delete", "-u", ALICE.name, "Old"])
        .expect("delete");
    p.sync();
    let s = server(&d, "INBOX");
    assert_eq!(
        s.values().next().expect("first"),
        &vec!["flagged".to_string()],
        "{s:?}"
    );
    assert_eq!(p.cached("INBOX"), s);
}

#[test]
fn offline_changes_are_queued_and_pushed_after_restart() {
    let Some(mut d) = Dovecot::start() else {
        return;
    };
    d.seed(ALICE.name, "INBOX", 6).expect("seed");
    let p = Profile::new(&d);
    p.sync();
    let mids = message_ids(&d, "INBOX");
    d.stop();
    let one = p.id_of("INBOX", &mids[0]);
    let two = p.id_of("INBOX", &mids[1]);
    let out = p.run(&["flag", &one, &two, "--flagged"]);
    assert!(
        out.status.success(),
        "offline flagging still succeeds locally"
    );
    assert!(stderr(&out).contains("queued"), "{}", stderr(&out));
    let out = p.run(&["flag", &one, "--seen"]);
    assert!(out.status.success());
    // Locally the change shows at once.
    let cached = p.cached("INBOX");
    assert_eq!(
        cached.values().next().expect("first"),
        &vec!["flagged".to_string(), "seen".to_string()]
    );
    // Syncing offline fails clearly and keeps the queue.
    let out = p.run(&["sync"]);
    assert!(!out.status.success());
    d.restart().expect("restart dovecot");
    p.sync();
    assert_eq!(p.cached("INBOX"), server(&d, "INBOX"));
    let s = server(&d, "INBOX");
    let first = s.values().next().expect("first");
    assert_eq!(first, &vec!["flagged".to_string(), "seen".to_string()]);
}

#[test]
fn uidvalidity_change_retargets_queued_changes_by_message_id() {
    let Some(mut d) = Dovecot::start() else {
        return;
    };
    d.seed(ALICE.name, "Work", 3).expect("seed");
    let p = Profile::new(&d);
    p.sync();
    let mids = message_ids(&d, "Work");
    let target = p.id_of("Work", &mids[0]);
    // Queue a change while the server is away ...
    d.stop();
    let _ = p.run(&["flag", &target, "--flagged"]);
    d.restart().expect("restart");
    // ... and meanwhile the folder is recreated: new UIDVALIDITY, messages in another order,
    // so the old UID 1 now names a different message.
    let raw: Vec<Vec<u8>> = {
        let dir = d.maildir(ALICE.name, "Work").join("cur");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("maildir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read(f).expect("read"))
            .collect()
    };
    d.doveadm(&["mailbox", "delete", "-u", ALICE.name, "Work"])
        .expect("delete");
    d.create_mailbox(ALICE.name, "Work").expect("create");
    for m in raw.iter().rev() {
        d.deliver(ALICE.name, "Work", m).expect("deliver");
    }
    p.sync();
    let s = server(&d, "Work");
    let flagged: Vec<u64> = s
        .iter()
        .filter(|(_, f)| f.contains(&"flagged".to_string()))
        .map(|(u, _)| *u)
        .collect();
    // The flag went to the message it was meant for (now the last UID), not to UID 1.
    assert_eq!(flagged, vec![3], "{s:?}");
    assert_eq!(message_ids(&d, "Work")[2], mids[0]);
    assert_eq!(p.cached("Work"), s);
}

#[test]
fn a_folder_of_ten_thousand_messages_syncs_completely() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 10_000).expect("seed");
    let p = Profile::new(&d);
    p.sync();
    let cached = p.cached("INBOX");
    assert_eq!(cached.len(), 10_000);
    assert_eq!(cached, server(&d, "INBOX"));
    // A resync with nothing changed changes nothing.
    let out = p.run(&["sync"]);
    assert!(
        stderr(&out).contains("0 new, 0 removed, 0 flag changes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn reading_fetches_exact_bytes_without_marking_read() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 3).expect("seed");
    let p = Profile::new(&d);
    p.sync();
    // prefetch = 5 kept every body; reading is offline and exact.
    let rows = p.list("INBOX");
    {
        let cache = Cache::open_read_only(&p.data()).expect("cache");
        for r in &rows {
            let id = r["id"].as_i64().expect("id");
            assert!(
                cache.cached_body(id).expect("cache").is_some(),
                "body of {id} prefetched"
            );
        }
    }
    let dir = d.maildir(ALICE.name, "INBOX").join("cur");
    let files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("maildir")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    for r in rows {
        let out = p.run(&["read", &r["id"].to_string(), "--raw"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            files.contains(&out.stdout),
            "read --raw differs from the server's message"
        );
    }
    assert!(
        server(&d, "INBOX")
            .values()
            .all(|f| !f.contains(&"seen".to_string()))
    );
}

#[test]
fn wrong_password_is_a_clear_error() {
    let Some(d) = Dovecot::start() else { return };
    let p = Profile::with(&d, d.imap_tls_port(), "tls", "wrong-password", true);
    let out = p.run(&["sync"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("wrong user name or password"), "{err}");
    assert!(!err.contains("wrong-password"), "password leaked: {err}");
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let Some(d) = Dovecot::start() else { return };
    let p = Profile::with(&d, d.imap_tls_port(), "tls", ALICE.password, false);
    // The password command leaves a mark when it runs.
    let config = p.dir.path().join("config/mailbag/config.toml");
    let marker = p.dir.path().join("password-command-ran");
    let text = std::fs::read_to_string(&config).expect("config").replace(
        "password_command = \"cat ",
        &format!("password_command = \"touch {}; cat ", marker.display()),
    );
    std::fs::write(&config, text).expect("config");
    let out = p.run(&["sync"]);
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
fn starttls_on_the_plain_port_works() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 2).expect("seed");
    let p = Profile::with(&d, d.imap_plain_port(), "starttls", ALICE.password, true);
    p.sync();
    assert_eq!(p.cached("INBOX").len(), 2);
}

/// A scripted IMAP server on loopback for one connection: it sends `greeting`, then answers
/// each line the client sends with `reply(line)` (nothing when `None`), and returns every line
/// it received once the client has gone (or 10 s passed without a line).
fn scripted_server(
    greeting: &str,
    mut reply: impl FnMut(&str) -> Option<String> + Send + 'static,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let greeting = greeting.to_string();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut out = stream.try_clone().expect("clone");
        let mut lines = BufReader::new(stream);
        out.write_all(greeting.as_bytes()).expect("greet");
        let mut seen = Vec::new();
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            seen.push(line.trim_end().to_string());
            if let Some(r) = reply(&line)
                && out.write_all(r.as_bytes()).is_err()
            {
                break;
            }
            line.clear();
        }
        seen
    });
    (port, server)
}

/// A profile of `d`'s kind for a scripted server on 127.0.0.1:`port`.
fn scripted_profile(d: &Dovecot, port: u16, security: &str) -> Profile {
    let p = Profile::with(d, port, security, ALICE.password, true);
    let config = p.dir.path().join("config/mailbag/config.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("localhost", "127.0.0.1")).expect("config");
    p
}

#[test]
fn a_server_without_starttls_is_refused_before_any_password() {
    // Dovecot always offers STARTTLS when it has a certificate, so a tiny scripted server
    // plays one that does not; it fails the test if a password ever reaches it.
    let (port, server) = scripted_server(
        "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n",
        |line| {
            let tag = line.split_whitespace().next().unwrap_or("*").to_string();
            Some(if line.to_uppercase().contains("CAPABILITY") {
                format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n")
            } else {
                format!("{tag} BAD no\r\n")
            })
        },
    );
    let Some(d) = Dovecot::start() else { return };
    let p = scripted_profile(&d, port, "starttls");
    let out = p.run(&["sync"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not offer STARTTLS"),
        "{}",
        stderr(&out)
    );
    let seen = server.join().expect("server");
    assert!(
        seen.iter().all(|l| !l.contains(ALICE.password)
            && !l.to_uppercase().contains("LOGIN")
            && !l.to_uppercase().contains("AUTHENTICATE")),
        "credentials were sent in clear text: {seen:?}"
    );
    // The greeting listed the capabilities: they are not asked for again.
    assert!(
        seen.iter()
            .all(|l| !l.to_uppercase().contains("CAPABILITY")),
        "CAPABILITY was asked although the greeting had them: {seen:?}"
    );
}

#[test]
fn qresync_is_enabled_only_when_announced_after_login() {
    // Dovecot turns QRESYNC on when asked even where `imap_capability` hides it, and then
    // sends VANISHED where a CONDSTORE-only client expects nothing of the kind; the Dovecot
    // tests pass either way. A scripted server that announces ENABLE and CONDSTORE but not
    // QRESYNC fails this test if mailbag asks for QRESYNC anyway.
    const CAPS: &str = "IMAP4rev1 ENABLE CONDSTORE AUTH=PLAIN";
    let mut authenticating: Option<String> = None;
    let (port, server) = scripted_server(
        &format!("* OK [CAPABILITY {CAPS}] fake ready\r\n"),
        move |line| {
            if let Some(tag) = authenticating.take() {
                return Some(format!("{tag} OK logged in\r\n"));
            }
            let mut words = line.split_whitespace();
            let tag = words.next().unwrap_or("*").to_string();
            Some(
                match words.next().unwrap_or("").to_ascii_uppercase().as_str() {
                    "AUTHENTICATE" => {
                        authenticating = Some(tag);
                        "+ \r\n".to_string()
                    }
                    "CAPABILITY" => format!("* CAPABILITY {CAPS}\r\n{tag} OK done\r\n"),
                    // As Dovecot does: it has QRESYNC, announced or not.
                    "ENABLE" => format!("* ENABLED QRESYNC\r\n{tag} OK enabled\r\n"),
                    "LIST" => format!("* LIST () \"/\" INBOX\r\n{tag} OK done\r\n"),
                    "SELECT" | "EXAMINE" => format!(
                        "* 0 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 1] n\r\n\
                     * OK [HIGHESTMODSEQ 1] m\r\n{tag} OK [READ-WRITE] selected\r\n"
                    ),
                    "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
                    _ => format!("{tag} OK done\r\n"),
                },
            )
        },
    );
    let Some(d) = Dovecot::start() else { return };
    let p = scripted_profile(&d, port, "none");
    let out = p.run(&["sync"]);
    let seen = server.join().expect("server");
    assert!(out.status.success(), "{} {seen:?}", stderr(&out));
    assert!(
        seen.iter().any(|l| l.to_uppercase().contains("SELECT")),
        "the folder was never selected: {seen:?}"
    );
    assert!(
        seen.iter().all(|l| !l.to_uppercase().contains("QRESYNC")),
        "QRESYNC was asked for though not announced: {seen:?}"
    );
}

/// Run an IDLE loop on the library directly, the way the engine does.
fn idle_loop(
    data: &Path,
    account: mailbag::config::Account,
    timeouts: Timeouts,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    flag_requests: std::sync::mpsc::Receiver<u32>,
) -> std::thread::JoinHandle<Vec<String>> {
    let data = data.to_path_buf();
    std::thread::spawn(move || {
        let rt = runtime();
        let mut errors = Vec::new();
        rt.block_on(async {
            let mut cache = Cache::open(&data).expect("cache");
            let mut backend = ImapBackend::new("work", account).with_timeouts(timeouts);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // What the UI would do: change the cache at once and queue it.
                while let Ok(uid) = flag_requests.try_recv() {
                    let id = {
                        let account = cache.account("work").expect("cache").expect("account");
                        let folder = cache
                            .folder_by_name(account.id, "INBOX")
                            .expect("cache")
                            .expect("inbox");
                        cache
                            .window(folder.id, 0, 1000)
                            .expect("window")
                            .into_iter()
                            .find(|m| m.uid.map(|u| u.0) == Some(uid))
                            .expect("message")
                            .id
                    };
                    mailbag::backend::changes::change_locally(
                        &mut cache,
                        &[id],
                        &mailbag::backend::changes::Change::Flags {
                            add: Flags::FLAGGED,
                            remove: Flags::default(),
                        },
                        0,
                    )
                    .expect("local change");
                }
                let step = async {
                    backend.apply_pending(&mut cache).await?;
                    backend
                        .sync_folder(&mut cache, "INBOX", &mut |_| {})
                        .await?;
                    backend.wait_for_changes("INBOX").await
                };
                if let Err(e) = step.await {
                    errors.push(e.to_string());
                    backend.disconnect();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        errors
    })
}

/// A runtime for driving the library directly from a test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn account_for(p: &Profile) -> mailbag::config::Account {
    let config =
        mailbag::config::load(&p.dir.path().join("config/mailbag/config.toml")).expect("config");
    config.account("work").expect("account").clone()
}

/// Wait (bounded, so a broken build fails instead of hanging) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

fn cached_flags(data: &Path, uid: u32) -> Option<Flags> {
    let cache = Cache::open_read_only(data).ok()?;
    let account = cache.account("work").ok()??;
    let folder = cache.folder_by_name(account.id, "INBOX").ok()??;
    cache
        .window(folder.id, 0, 1000)
        .ok()?
        .into_iter()
        .find(|m| m.uid.map(|u| u.0) == Some(uid))
        .map(|m| m.flags)
}

#[test]
fn changes_by_another_client_reach_an_idling_session() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 4).expect("seed");
    let p = Profile::new(&d);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (_requests, inbox) = std::sync::mpsc::channel();
    let worker = idle_loop(
        &p.data(),
        account_for(&p),
        Timeouts::default(),
        stop.clone(),
        inbox,
    );
    eventually("the first sync", || cached_flags(&p.data(), 4).is_some());
    d.doveadm(&[
        "flags",
        "add",
        "-u",
        ALICE.name,
        "\\Flagged",
        "mailbox",
        "INBOX",
        "uid",
        "2",
    ])
    .expect("flag");
    let took = eventually("the flag change", || {
        cached_flags(&p.data(), 2).is_some_and(|f| f.contains(Flags::FLAGGED))
    });
    eprintln!("flag set by doveadm reached the cache in {took:?}");
    d.deliver(
        ALICE.name,
        "INBOX",
        b"From: x@example.com\r\nSubject: pushed\r\nMessage-ID: <pushed@x>\r\n\r\nhi\r\n",
    )
    .expect("deliver");
    let took = eventually("the new message", || cached_flags(&p.data(), 5).is_some());
    eprintln!("new mail reached the cache in {took:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let errors = worker.join().expect("worker");
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_dead_link_is_noticed_and_recovered_from_without_losing_queued_changes() {
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 3).expect("seed");
    let p = Profile::new(&d);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timeouts = Timeouts {
        read: Duration::from_secs(2),
        idle: Duration::from_secs(1),
    };
    let (requests, inbox) = std::sync::mpsc::channel();
    let worker = idle_loop(&p.data(), account_for(&p), timeouts, stop.clone(), inbox);
    eventually("the first sync", || cached_flags(&p.data(), 3).is_some());
    // The server freezes: connections stay open, nothing answers.
    d.pause();
    // The user flags a message meanwhile: it shows at once and waits in the queue.
    requests.send(3).expect("request");
    eventually("the local change", || {
        cached_flags(&p.data(), 3).is_some_and(|f| f.contains(Flags::FLAGGED))
    });
    std::thread::sleep(Duration::from_secs(5));
    d.resume();
    d.doveadm(&[
        "flags", "add", "-u", ALICE.name, "\\Seen", "mailbox", "INBOX", "uid", "1",
    ])
    .expect("flag");
    eventually("recovery after the link came back", || {
        cached_flags(&p.data(), 1).is_some_and(|f| f.contains(Flags::SEEN))
    });
    eventually("the queued change on the server", || {
        server(&d, "INBOX")
            .get(&3)
            .is_some_and(|f| f.contains(&"flagged".to_string()))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let errors = worker.join().expect("worker");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("did not answer") || e.contains("closed")),
        "the dead link was not noticed: {errors:?}"
    );
}

/// The cache row of the message `mid` in `folder`, if the cache holds it there.
fn cached_row(cache: &Cache, folder: &str, mid: &str) -> Option<mailbag::store::cache::MessageRow> {
    let account = cache.account("work").ok()??;
    let folder = cache.folder_by_name(account.id, folder).ok()??;
    cache
        .window(folder.id, 0, 1000)
        .ok()?
        .into_iter()
        .find(|m| m.envelope.message_id.as_deref() == Some(mid))
}

/// `z` after a delete or move, the way the engine does it: the snapshot taken before the
/// change, the local undo, then the queue pushed.
#[test]
fn undo_brings_back_a_delete_or_move_whether_or_not_the_server_saw_it() {
    use mailbag::backend::changes::{Change, change_locally, snapshot, undo_locally};
    let Some(d) = Dovecot::start() else { return };
    d.seed(ALICE.name, "INBOX", 4).expect("seed");
    let p = Profile::new(&d);
    p.sync();
    let mids = message_ids(&d, "INBOX");
    let uid_of = |mid: &str| {
        let uids: Vec<u64> = server(&d, "INBOX").keys().copied().collect();
        let i = message_ids(&d, "INBOX")
            .iter()
            .position(|m| m == mid)
            .expect("on the server");
        uids[i]
    };
    let rt = runtime();
    rt.block_on(async {
        let mut cache = Cache::open(&p.data()).expect("cache");
        let mut backend = ImapBackend::new("work", account_for(&p));

        // 1. Deleted, pushed (it went to Trash), then undone: back in INBOX under a new UID.
        let mid = mids[0].as_str();
        let old_uid = uid_of(mid);
        let id = cached_row(&cache, "INBOX", mid).expect("cached").id;
        let before = snapshot(&cache, &[id]).expect("snapshot");
        change_locally(&mut cache, &[id], &Change::Delete, 0).expect("delete");
        backend
            .apply_pending(&mut cache)
            .await
            .expect("push delete");
        assert_eq!(message_ids(&d, "Trash"), vec![mid.to_string()]);
        assert!(cached_row(&cache, "INBOX", mid).is_none());
        undo_locally(&mut cache, &before, &Change::Delete, 0).expect("undo");
        assert!(
            cached_row(&cache, "INBOX", mid).is_some(),
            "back in the list at once, before the server knows"
        );
        backend.apply_pending(&mut cache).await.expect("push undo");
        assert!(
            message_ids(&d, "Trash").is_empty(),
            "moved back out of Trash"
        );
        assert!(message_ids(&d, "INBOX").contains(&mid.to_string()));
        let row = cached_row(&cache, "INBOX", mid).expect("still listed");
        assert_ne!(
            row.uid.map(|u| u64::from(u.0)),
            Some(old_uid),
            "the old UID is gone"
        );
        assert_eq!(row.uid.map(|u| u64::from(u.0)), Some(uid_of(mid)));
        assert!(backend.take_warnings().is_empty());

        // 2. Moved and undone before any push: nothing reaches the server at all.
        let mid = mids[1].as_str();
        let uid = uid_of(mid);
        let id = cached_row(&cache, "INBOX", mid).expect("cached").id;
        let before = snapshot(&cache, &[id]).expect("snapshot");
        let to = Change::Move {
            to: "Archive".into(),
        };
        change_locally(&mut cache, &[id], &to, 0).expect("move");
        undo_locally(&mut cache, &before, &to, 0).expect("undo");
        backend.apply_pending(&mut cache).await.expect("push");
        assert!(message_ids(&d, "Archive").is_empty(), "never moved");
        assert_eq!(uid_of(mid), uid, "same message, same UID on the server");
        let row = cached_row(&cache, "INBOX", mid).expect("listed");
        assert_eq!(row.uid.map(|u| u64::from(u.0)), Some(uid));
        let account = cache.account("work").expect("cache").expect("account");
        assert!(cache.pending(account.id).expect("queue").is_empty());

        // 3. Deleted for good (from Trash) and pushed: undo says so and leaves no ghost.
        let mid = mids[2].as_str();
        let id = cached_row(&cache, "INBOX", mid).expect("cached").id;
        change_locally(&mut cache, &[id], &Change::Delete, 0).expect("delete");
        backend.apply_pending(&mut cache).await.expect("push");
        backend
            .sync_folder(&mut cache, "Trash", &mut |_| {})
            .await
            .expect("sync Trash");
        let id = cached_row(&cache, "Trash", mid).expect("in Trash").id;
        let before = snapshot(&cache, &[id]).expect("snapshot");
        change_locally(&mut cache, &[id], &Change::Delete, 0).expect("delete from Trash");
        backend
            .apply_pending(&mut cache)
            .await
            .expect("push expunge");
        assert!(message_ids(&d, "Trash").is_empty(), "expunged");
        undo_locally(&mut cache, &before, &Change::Delete, 0).expect("undo");
        backend.apply_pending(&mut cache).await.expect("push undo");
        let warnings = backend.take_warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("removed the message for good")),
            "{warnings:?}"
        );
        assert!(cached_row(&cache, "Trash", mid).is_none(), "no ghost row");
    });
}

/// A resync skips the folders LIST-STATUS shows unchanged; every kind of change in any folder
/// must still be seen: a new message, a flag set elsewhere, an expunge.
#[test]
fn changes_in_every_folder_are_seen_on_resync() {
    let Some(d) = Dovecot::start() else { return };
    for folder in ["INBOX", "Archive", "Sent", "Junk"] {
        d.seed(ALICE.name, folder, 3).expect("seed");
    }
    let p = Profile::new(&d);
    p.sync();
    p.sync();
    for folder in ["INBOX", "Archive", "Sent", "Junk"] {
        assert_eq!(
            p.cached(folder),
            server(&d, folder),
            "{folder} after the first syncs"
        );
    }
    let archive_uid = server(&d, "Archive")
        .keys()
        .next()
        .expect("archive")
        .to_string();
    d.doveadm(&[
        "flags",
        "add",
        "-u",
        ALICE.name,
        "\\Flagged",
        "mailbox",
        "Archive",
        "uid",
        &archive_uid,
    ])
    .expect("flag in Archive");
    d.seed(ALICE.name, "Sent", 1).expect("one more in Sent");
    let junk_uid = server(&d, "Junk").keys().next().expect("junk").to_string();
    d.doveadm(&[
        "expunge", "-u", ALICE.name, "mailbox", "Junk", "uid", &junk_uid,
    ])
    .expect("expunge in Junk");
    p.sync();
    for folder in ["INBOX", "Archive", "Sent", "Junk"] {
        assert_eq!(
            p.cached(folder),
            server(&d, folder),
            "{folder} after the changes"
        );
    }
    assert_eq!(p.cached("Sent").len(), 4);
    assert_eq!(p.cached("Junk").len(), 2);
    assert!(
        p.cached("Archive")
            .values()
            .any(|f| f.contains(&"flagged".to_string()))
    );
}

/// A Dovecot with `inbox` messages in INBOX and one in Projects, a profile synced with it, and
/// the Message-ID of INBOX's first message.
fn synced_with_projects(inbox: usize) -> Option<(Dovecot, Profile, String)> {
    let d = Dovecot::start()?;
    d.seed(ALICE.name, "INBOX", inbox).expect("seed");
    d.seed(ALICE.name, "Projects", 1).expect("seed");
    let p = Profile::new(&d);
    p.sync();
    let mid = message_ids(&d, "INBOX")[0].clone();
    Some((d, p, mid))
}

/// A move the server refuses (its target folder is gone there) leaves the message where it
/// was: the cache shows it there again at once, and once after the next sync.
#[test]
fn a_move_the_server_refuses_brings_the_message_back() {
    use mailbag::backend::changes::{Change, change_locally};
    let Some((d, p, mid)) = synced_with_projects(3) else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let mut cache = Cache::open(&p.data()).expect("cache");
        let mut backend = ImapBackend::new("work", account_for(&p));
        let id = cached_row(&cache, "INBOX", &mid).expect("cached").id;
        let to = Change::Move {
            to: "Projects".into(),
        };
        change_locally(&mut cache, &[id], &to, 0).expect("move");
        assert!(cached_row(&cache, "INBOX", &mid).is_none(), "moved here");
        // The server cannot carry it out: the folder is gone there.
        d.doveadm(&["mailbox", "delete", "-u", ALICE.name, "Projects"])
            .expect("delete Projects");
        backend.apply_pending(&mut cache).await.expect("push");
        let warnings = backend.take_warnings();
        assert!(
            warnings.iter().any(|w| w.contains("refused")),
            "{warnings:?}"
        );
        let account = cache.account("work").expect("cache").expect("account");
        assert!(cache.pending(account.id).expect("queue").is_empty());
        assert!(
            cached_row(&cache, "INBOX", &mid).is_some(),
            "back in the cache at once"
        );
        // The message never left INBOX on the server; the next sync keeps it there, once,
        // beside the others.
        backend
            .sync_folder(&mut cache, "INBOX", &mut |_| {})
            .await
            .expect("sync");
        assert!(
            cached_row(&cache, "INBOX", &mid).is_some(),
            "back in the cache"
        );
        let inbox = cache
            .folder_by_name(account.id, "INBOX")
            .expect("cache")
            .expect("INBOX");
        assert_eq!(inbox.total, 3, "each message once");
    });
}

/// A move that was tried once (so it may have reached the server) and is then refused, because
/// its target folder is gone, leaves the message where it was; undoing it must keep it there,
/// in the cache too, and not go looking for it elsewhere.
#[test]
fn undoing_a_move_the_server_refused_keeps_the_message() {
    use mailbag::backend::changes::{Change, change_locally, snapshot, undo_locally};
    let Some((d, p, mid)) = synced_with_projects(2) else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let mut cache = Cache::open(&p.data()).expect("cache");
        let mut backend = ImapBackend::new("work", account_for(&p));
        let id = cached_row(&cache, "INBOX", &mid).expect("cached").id;
        let before = snapshot(&cache, &[id]).expect("snapshot");
        let to = Change::Move {
            to: "Projects".into(),
        };
        change_locally(&mut cache, &[id], &to, 0).expect("move");
        let account = cache.account("work").expect("cache").expect("account");
        for op in cache.pending(account.id).expect("queue") {
            cache
                .record_attempt(op.id, "the link dropped")
                .expect("attempt");
        }
        d.doveadm(&["mailbox", "delete", "-u", ALICE.name, "Projects"])
            .expect("delete Projects");
        undo_locally(&mut cache, &before, &to, 0).expect("undo");
        backend.apply_pending(&mut cache).await.expect("push");
        assert!(
            message_ids(&d, "INBOX").contains(&mid),
            "still on the server"
        );
        assert!(
            cached_row(&cache, "INBOX", &mid).is_some(),
            "and still in the cache"
        );
        assert!(cache.pending(account.id).expect("queue").is_empty());
    });
}
