//! `mailbag setup` end to end against the Dovecot harness: the non-interactive form for IMAP
//! and POP3 writes an account that then syncs; a wrong password and an untrusted certificate
//! stop with what to do and write nothing; the password goes into a real Secret Service
//! (gnome-keyring-daemon under dbus-run-session) and is read back from there.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ALICE, Dovecot};

/// A mailbag profile (config + data) in a temporary directory, with no account yet.
struct Profile {
    dir: tempfile::TempDir,
}

impl Profile {
    fn new() -> Profile {
        Profile {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn config_file(&self) -> PathBuf {
        self.dir.path().join("config/mailbag/config.toml")
    }

    fn password_file(&self, password: &str) -> PathBuf {
        let pw = self.dir.path().join("password");
        std::fs::write(&pw, format!("{password}\n")).expect("password file");
        pw
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailbag"));
        c.args(args)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env_remove("MAILBAG_CONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mailbag")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mailbag");
        if let Some(mut s) = child.stdin.take() {
            s.write_all(stdin.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("wait")
    }

    /// Syncs and returns the subjects `mailbag list` shows.
    fn sync_and_list(&self) -> Vec<String> {
        let out = self.run(&["sync"]);
        assert!(out.status.success(), "sync failed: {}", text(&out.stderr));
        let out = self.run(&["list", "--json", "--limit", "1000"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                v["subject"].as_str().unwrap_or("").to_string()
            })
            .collect()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// With `MAILBAG_TEST_SHOW=1`, prints what a run wrote to stderr (for docs/setup.md captures).
fn show(out: &Output) {
    if std::env::var_os("MAILBAG_TEST_SHOW").is_some() {
        let _ = writeln!(std::io::stderr(), "----\n{}", text(&out.stderr));
    }
}

/// The setup arguments for alice on the harness.
fn setup_args(d: &Dovecot, protocol: &str, port: u16, security: &str) -> Vec<String> {
    [
        "setup",
        "--non-interactive",
        "--name",
        "work",
        "--email",
        "alice@mailbag.test",
        "--protocol",
        protocol,
        "--host",
        common::TLS_NAME,
        "--port",
        &port.to_string(),
        "--security",
        security,
        "--username",
        ALICE.name,
        "--tls-ca-file",
        &d.ca_path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn imap_setup_writes_an_account_that_syncs() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let seeded = d.seed(ALICE.name, "INBOX", 3).expect("seed");
    let p = Profile::new();
    let pw = p.password_file(ALICE.password);
    let mut args = setup_args(&d, "imap", d.imap_tls_port(), "tls");
    let cmd = format!("cat {}", pw.display());
    args.extend(["--password-command".to_string(), cmd.clone()]);
    let out = p.run(&refs(&args));
    let err = text(&out.stderr);
    assert!(out.status.success(), "setup failed: {err}");
    for step in [
        "resolve",
        "connect",
        "tls",
        "capabilities",
        "login",
        "list folders",
    ] {
        assert!(
            err.contains(&format!("ok      {step}")),
            "step {step} missing: {err}"
        );
    }
    let config = std::fs::read_to_string(p.config_file()).expect("config written");
    assert!(config.contains("[accounts.work]"), "{config}");
    assert!(
        config.contains(&format!("password_command = \"{cmd}\"")),
        "{config}"
    );
    assert!(
        !config.contains(ALICE.password),
        "password in config: {config}"
    );
    let subjects = p.sync_and_list();
    assert_eq!(subjects.len(), seeded.len(), "{subjects:?}");

    // A second setup under the same name is refused before anything is asked.
    let out = p.run(&refs(&args));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pop3_setup_writes_an_account_that_syncs() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let seeded = d.seed(ALICE.name, "INBOX", 2).expect("seed");
    let p = Profile::new();
    let pw = p.password_file(ALICE.password);
    let mut args = setup_args(&d, "pop3", d.pop3_plain_port(), "starttls");
    args.extend([
        "--password-command".to_string(),
        format!("cat {}", pw.display()),
        "--leave-on-server".to_string(),
        "true".to_string(),
    ]);
    let out = p.run(&refs(&args));
    show(&out);
    let err = text(&out.stderr);
    assert!(out.status.success(), "setup failed: {err}");
    assert!(err.contains("ok      stat"), "{err}");
    assert!(err.contains("2 messages"), "{err}");
    let config = std::fs::read_to_string(p.config_file()).expect("config written");
    assert!(config.contains("protocol = \"pop3\""), "{config}");
    assert!(config.contains("security = \"starttls\""), "{config}");
    assert!(config.contains("leave_on_server = true"), "{config}");
    let subjects = p.sync_and_list();
    assert_eq!(subjects.len(), seeded.len(), "{subjects:?}");
    // leave_on_server: the mail is still there.
    assert_eq!(d.message_count(ALICE.name, "INBOX").expect("count"), 2);
}

#[test]
fn wrong_password_exits_non_zero_with_the_hint_and_writes_nothing() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let p = Profile::new();
    let pw = p.password_file("not-the-password");
    let mut args = setup_args(&d, "imap", d.imap_tls_port(), "tls");
    args.extend([
        "--password-command".to_string(),
        format!("cat {}", pw.display()),
    ]);
    let out = p.run(&refs(&args));
    show(&out);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("FAILED  login"), "{err}");
    assert!(
        err.contains("check it, or create an app password for"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "password echoed: {err}");
    assert!(!p.config_file().exists(), "nothing may be written");

    // Corrected, the same command works.
    p.password_file(ALICE.password);
    let out = p.run(&refs(&args));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.config_file().exists());
}

#[test]
fn untrusted_certificate_is_shown_and_can_be_trusted_exactly() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let p = Profile::new();
    let pw = p.password_file(ALICE.password);
    let mut args: Vec<String> = setup_args(&d, "imap", d.imap_plain_port(), "starttls");
    // No CA file: the harness's self-signed certificate is not trusted.
    let at = args
        .iter()
        .position(|a| a == "--tls-ca-file")
        .expect("ca arg");
    args.drain(at..at + 2);
    args.extend([
        "--password-command".to_string(),
        format!("cat {}", pw.display()),
    ]);
    let out = p.run(&refs(&args));
    show(&out);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("FAILED  tls"), "{err}");
    assert!(err.contains("certificate subject: CN=localhost"), "{err}");
    assert!(err.contains("certificate issuer:  CN=localhost"), "{err}");
    let fp_line = err
        .lines()
        .find(|l| l.contains("SHA-256 fingerprint:"))
        .expect("fingerprint shown");
    assert_eq!(
        fp_line.split(": ").nth(1).map(|f| f.split(':').count()),
        Some(32)
    );
    let hex = err
        .split("--tls-cert-sha256 ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("suggested fingerprint")
        .to_string();
    assert_eq!(hex.len(), 64, "{hex}");
    assert!(!p.config_file().exists());

    args.extend(["--tls-cert-sha256".to_string(), hex.clone()]);
    let out = p.run(&refs(&args));
    show(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = std::fs::read_to_string(p.config_file()).expect("config");
    assert!(
        config.contains(&format!("tls_cert_sha256 = \"{hex}\"")),
        "{config}"
    );
    p.sync_and_list();
}

#[test]
fn closed_port_is_reported_as_unreachable() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let p = Profile::new();
    let mut args = setup_args(&d, "imap", port, "tls");
    args.extend(["--password-command".to_string(), "echo x".to_string()]);
    let out = p.run(&refs(&args));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("FAILED  connect"), "{err}");
    assert!(err.contains("nothing answered there"), "{err}");
    assert!(!p.config_file().exists());
}

#[test]
fn discover_prints_candidates_and_writes_nothing() {
    let p = Profile::new();
    let out = p.run(&["setup", "--discover", "jane@posteo.de"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("1. imap  posteo.de:993  security tls  user jane@posteo.de"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2. pop3  posteo.de:995  security tls"),
        "{stdout}"
    );
    assert!(stdout.contains("source: bundled provider list"), "{stdout}");
    assert!(stdout.contains("autoconfig: not asked"), "{stdout}");
    assert!(!p.config_file().exists());

    let out = p.run(&["setup", "--discover", "not-an-address"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not an email address"));
}

#[test]
fn plain_setup_points_to_the_non_interactive_form() {
    let p = Profile::new();
    let out = p.run(&["setup"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("interactive setup wizard comes with the TUI"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mailbag setup --non-interactive"),
        "{stdout}"
    );
}

#[test]
fn no_keyring_service_says_so_and_writes_nothing() {
    let Some(d) = Dovecot::start() else {
        return;
    };
    let p = Profile::new();
    let args = setup_args(&d, "imap", d.imap_tls_port(), "tls");
    let out = p
        .command(&refs(&args))
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/mailbag-test-bus",
        )
        .env_remove("DISPLAY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut s) = c.stdin.take() {
                s.write_all(format!("{}\n", ALICE.password).as_bytes())?;
            }
            c.wait_with_output()
        })
        .expect("run");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("ok      login"),
        "the login test ran first: {err}"
    );
    let last = err.lines().last().unwrap_or("");
    assert!(last.contains("no OS keyring service is reachable"), "{err}");
    assert!(last.contains("--password-command"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!p.config_file().exists());
}

/// The marker the keyring child prints once its assertions have passed.
const CHILD_OK: &str = "MAILBAG-SETUP-KEYRING-CHILD-OK";

/// The keyring path against a real Secret Service: gnome-keyring-daemon in a private D-Bus
/// session, with its own home so the user's keyrings are never touched.
#[test]
fn keyring_setup_with_a_real_secret_service() {
    let Some(out) =
        common::in_private_secret_service("keyring_child", "MAILBAG_SETUP_KEYRING_CHILD")
    else {
        return;
    };
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(CHILD_OK),
        "keyring child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
#[ignore = "run by keyring_setup_with_a_real_secret_service inside a private D-Bus session"]
fn keyring_child() {
    if std::env::var_os("MAILBAG_SETUP_KEYRING_CHILD").is_none() {
        println!("skipped: only meaningful as a child of the test above");
        return;
    }
    let Some(d) = Dovecot::start() else {
        panic!("the keyring test needs dovecot");
    };
    let seeded = d.seed(ALICE.name, "INBOX", 2).expect("seed");
    let p = Profile::new();
    let args = setup_args(&d, "imap", d.imap_tls_port(), "tls");
    let out = p.run_with_stdin(&refs(&args), &format!("{}\n", ALICE.password));
    let err = text(&out.stderr);
    assert!(out.status.success(), "setup failed: {err}");
    assert!(err.contains("the password is in the OS keyring"), "{err}");
    let config_text = std::fs::read_to_string(p.config_file()).expect("config");
    assert!(!config_text.contains("password"), "{config_text}");

    let config = mailbag::config::load(Path::new(&p.config_file())).expect("load");
    let account = config.account("work").expect("account");
    let secret = mailbag::credentials::password("work", account).expect("read back");
    assert_eq!(secret.expose(), ALICE.password);

    let subjects = p.sync_and_list();
    assert_eq!(subjects.len(), seeded.len(), "{subjects:?}");
    let _ = mailbag::credentials::delete_password("work", account);
    println!("{CHILD_OK}");
}

/// Without --host the settings come from DNS SRV; a candidate whose port is closed is passed
/// over for the next one.
#[test]
fn discovered_settings_skip_a_closed_port_and_save_the_one_that_works() {
    use mailbag::wizard::dns;
    let Some(d) = Dovecot::start() else {
        return;
    };
    d.seed(ALICE.name, "INBOX", 1).expect("seed");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let name = "_imaps._tcp.mailbag.test".to_string();
    let server = common::dns_server(vec![
        (
            name.clone(),
            dns::TYPE_SRV,
            dns::srv_rdata(0, 0, closed_port, common::TLS_NAME),
        ),
        (
            name,
            dns::TYPE_SRV,
            dns::srv_rdata(10, 0, d.imap_tls_port(), common::TLS_NAME),
        ),
    ]);
    let p = Profile::new();
    let pw = p.password_file(ALICE.password);
    let out = p.run(&[
        "setup",
        "--non-interactive",
        "--name",
        "found",
        "--email",
        "alice@mailbag.test",
        "--username",
        ALICE.name,
        "--tls-ca-file",
        &d.ca_path().display().to_string(),
        "--password-command",
        &format!("cat {}", pw.display()),
        "--dns-server",
        &server.to_string(),
    ]);
    show(&out);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("localhost:{closed_port} tls")),
        "{err}"
    );
    assert!(err.contains("FAILED  connect"), "{err}");
    assert!(err.contains("DNS SRV _imaps._tcp.mailbag.test"), "{err}");
    let config = std::fs::read_to_string(p.config_file()).expect("config");
    assert!(
        config.contains(&format!("port = {}", d.imap_tls_port())),
        "{config}"
    );
    assert_eq!(p.sync_and_list().len(), 1);
}
