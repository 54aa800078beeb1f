//! The `mailbag` binary on the built-in demo account, as a script would use it.

use std::path::Path;
use std::process::{Command, Output};

fn mailbag(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailbag"))
        .args(args)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("MAILBAG_CONFIG")
        .output()
        .expect("run mailbag")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn demo_list_json_has_every_message_newest_first() {
    let home = tempfile::tempdir().unwrap();
    let rows = json_lines(&mailbag(
        home.path(),
        &["--demo", "list", "--json", "--limit", "1000"],
    ));
    assert_eq!(rows.len(), 40, "the demo mailbox holds 40 messages");
    for row in &rows {
        for key in [
            "id",
            "account",
            "folder",
            "message_id",
            "date",
            "from",
            "subject",
            "flags",
            "size",
        ] {
            assert!(row.get(key).is_some(), "missing {key} in {row}");
        }
        assert_eq!(row["account"], "demo");
        assert!(row.get("uid").is_none() && row.get("uidl").is_none());
    }
    let dates: Vec<&str> = rows.iter().filter_map(|r| r["date"].as_str()).collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted, "newest first");
    let unread = json_lines(&mailbag(
        home.path(),
        &["--demo", "list", "--json", "--unread"],
    ));
    assert!(!unread.is_empty() && unread.len() < 40);
    assert!(
        unread
            .iter()
            .all(|r| !r["flags"].as_array().unwrap().contains(&"seen".into()))
    );
}

#[test]
fn demo_read_raw_returns_the_exact_bytes() {
    let home = tempfile::tempdir().unwrap();
    let rows = json_lines(&mailbag(
        home.path(),
        &["--demo", "list", "--json", "--limit", "1000"],
    ));
    let mbox = std::fs::read(home.path().join("data/mailbag/demo.mbox")).unwrap();
    for row in rows {
        let id = row["id"].as_i64().unwrap().to_string();
        let out = mailbag(home.path(), &["--demo", "read", &id, "--raw"]);
        assert!(out.status.success());
        let raw = out.stdout;
        // The raw bytes are in the mbox, mboxrd-quoted; the message id header is among them.
        let mid = row["message_id"].as_str().unwrap();
        assert!(
            raw.windows(mid.len()).any(|w| w == mid.as_bytes()),
            "message {id} does not carry its Message-ID"
        );
        let mut quoted = Vec::new();
        mailbag::store::mbox::quote_into(&raw, &mut quoted);
        assert!(
            mbox.windows(quoted.len()).any(|w| w == quoted.as_slice()),
            "message {id} is not byte-identical to the mbox"
        );
    }
}

#[test]
fn demo_read_never_prints_control_sequences() {
    let home = tempfile::tempdir().unwrap();
    let rows = json_lines(&mailbag(
        home.path(),
        &["--demo", "list", "--json", "--limit", "1000"],
    ));
    let hostile = rows
        .iter()
        .find(|r| {
            r["subject"]
                .as_str()
                .unwrap_or("")
                .contains("terminal safety")
        })
        .expect("the demo has a terminal-safety message");
    let id = hostile["id"].as_i64().unwrap().to_string();
    let out = mailbag(home.path(), &["--demo", "read", &id]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("^["), "escape shown visibly");
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t')
                || ('\u{202A}'..='\u{202E}').contains(&c)),
        "no control character reaches the terminal"
    );
    let list = mailbag(home.path(), &["--demo", "list", "--limit", "1000"]);
    let listed = String::from_utf8(list.stdout).unwrap();
    assert_eq!(listed.lines().count(), 40);
    assert!(!listed.chars().any(|c| c.is_control() && c != '\n'));
}

#[test]
fn no_account_explains_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let out = mailbag(home.path(), &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mailbag --demo"), "{text}");
}

#[test]
fn a_bad_config_fails_with_file_line_and_key() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("config/mailbag");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "[accounts.work]\nemail = \"me@example.com\"\nprotocol = \"imap\"\nhost = \"h\"\nport = \"x\"\n",
    )
    .unwrap();
    let out = mailbag(home.path(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.toml:5"), "{err}");
    assert!(err.contains("accounts.work.port"), "{err}");
}

#[test]
fn unknown_message_and_account_are_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let out = mailbag(home.path(), &["--demo", "read", "999999"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no message with id 999999"));
    let out = mailbag(home.path(), &["--demo", "list", "--account", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account named nope"));
}
