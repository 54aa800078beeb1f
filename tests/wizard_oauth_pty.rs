//! The setup wizard's OAuth2 sign-in end to end: the real `mailbag` binary in a
//! pseudo-terminal, discovery through a loopback DNS server naming the Dovecot harness (with
//! its `oauth2` passdb), the test authorization server (`tests/common/oauth_server.rs`), and a
//! real OS keyring (gnome-keyring in a private D-Bus session, so the user's keyrings are never
//! touched).
//!
//! The test plays the browser: it reads the authorization URL off the wizard's screen, GETs it
//! (the server "consents" and redirects) and follows the redirect to mailbag's loopback
//! listener. Then the wizard's login test passes, the account is saved with `auth = "oauth2"`
//! and no password, and the first sync in the TUI brings the mail in. A sign-in cancelled with
//! Esc closes its listener.
//!
//! `mailbag setup --non-interactive --auth oauth2` likewise: it prints the URL, the test
//! pastes the address the browser ended on into its stdin, and the saved account syncs.
//!
//! Waiting has a generous deadline that only turns a hang into a failure; nothing is timed.

mod common;

use std::time::{Duration, Instant};

use common::oauth_server::{
    AuthServer, CLIENT_ID, browser_follow, browser_get, finish, mailbag_in, parse_form,
};
use common::pty::Session;
use common::{ALICE, Dovecot};
use mailbag::wizard::dns;

/// Set in the child's environment by [`common::in_keyring_session`].
const CHILD_ENV: &str = "MAILBAG_WIZARD_OAUTH_CHILD";
/// Printed by a child whose checks all passed.
const CHILD_OK: &str = "MAILBAG-WIZARD-OAUTH-CHILD-OK";

const ESC: &[u8] = b"\x1b";
const CTRL_U: &[u8] = b"\x15";

/// Runs the ignored test `child` of this binary in a private D-Bus session with an unlocked
/// gnome-keyring, and fails if it does not report success.
fn in_keyring_session(child: &str) {
    if !common::dovecot_installed(child) {
        return;
    }
    let Some(out) = common::in_keyring_session(child, CHILD_ENV) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(CHILD_OK),
        "{child} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `true` when running as a child; otherwise says why the test does nothing.
fn is_child() -> bool {
    let yes = std::env::var_os(CHILD_ENV).is_some();
    if !yes {
        println!("skipped: only meaningful inside the private keyring session");
    }
    yes
}

#[test]
fn oauth2_sign_in_in_the_wizard_then_the_account_syncs() {
    in_keyring_session("child_oauth2_sign_in_in_the_wizard");
}

#[test]
fn leaving_the_wizard_after_a_sign_in_leaves_no_refresh_token() {
    in_keyring_session("child_wizard_left_after_sign_in");
}

#[test]
#[ignore = "run by leaving_the_wizard_after_a_sign_in_leaves_no_refresh_token in a private keyring"]
fn child_wizard_left_after_sign_in() {
    if !is_child() {
        return;
    }
    let (mut s, auth, _d, path) = wizard_signed_in();
    assert_eq!(auth.valid_refresh_tokens().len(), 1, "signed in");
    // C-c: leave without saving.
    s.send(b"\x03");
    assert!(s.wait_exit(), "mailbag exits cleanly");
    let config_file = path.join("config/mailbag/config.toml");
    assert!(!config_file.exists(), "nothing was to be saved");
    // The keyring entry is named after the user name and host the wizard signed in with.
    let account: mailbag::config::Account = toml::from_str(&format!(
        "email = \"alice@mailbag.test\"\nprotocol = \"imap\"\nhost = \"{}\"\n\
         username = \"alice\"\nauth = \"oauth2\"\n",
        common::TLS_NAME
    ))
    .expect("account");
    let stored =
        mailbag::oauth2::store::load_refresh_token("work", &account).expect("read the keyring");
    assert!(
        stored.is_none(),
        "leaving the wizard left the sign-in's refresh token in the keyring"
    );
    println!("{CHILD_OK}");
}

/// The authorization URL the sign-in screen shows: the wrapped lines after "Open this
/// address", joined.
fn url_on_screen(screen: &str) -> String {
    let mut lines = screen
        .lines()
        .skip_while(|l| !l.contains("Open this address"))
        .skip(1);
    let mut url = String::new();
    for l in lines.by_ref() {
        let inner = l.trim_matches(|c: char| c == '│' || c.is_whitespace());
        if inner.is_empty() {
            break;
        }
        url.push_str(inner);
    }
    url
}

/// The port of the loopback redirect in an authorization URL.
fn redirect_port(url: &str) -> u16 {
    let query = parse_form(url.split_once('?').expect("query").1);
    let redirect = query.get("redirect_uri").expect("redirect_uri");
    redirect
        .trim_start_matches("http://")
        .split(['/', ':'])
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("a port in the redirect URI")
}

/// Waits until nothing listens on 127.0.0.1:`port` any more (a deadline turns a listener left
/// open into a failure).
fn wait_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the loopback listener on port {port} is still open after Esc");
}

/// Waits for the sign-in screen's URL and returns it.
fn wait_url(s: &Session, auth: &AuthServer) -> String {
    s.wait_for("Open this address");
    s.wait_for("waiting for the browser");
    let url = url_on_screen(&s.screen());
    assert!(url.starts_with(&auth.url("/authorize?")), "{url}");
    url
}

/// The wizard in a PTY, from the first screen to a completed OAuth2 sign-in whose login test
/// passed ("The login works"), with one sign-in cancelled on the way; the session, the
/// servers, and the profile's directory.
fn wizard_signed_in() -> (Session, AuthServer, Dovecot, std::path::PathBuf) {
    let auth = AuthServer::start().expect("start the authorization server");
    let Some(d) = Dovecot::start_oauth2(&auth.introspection_url()) else {
        panic!("the wizard OAuth2 test needs dovecot");
    };
    d.seed(ALICE.name, "INBOX", 2).expect("seed");
    let dns = common::dns_server(vec![(
        "_imaps._tcp.mailbag.test".to_string(),
        dns::TYPE_SRV,
        dns::srv_rdata(0, 0, d.imap_tls_port(), common::TLS_NAME),
    )])
    .to_string();
    let home = tempfile::tempdir().expect("home");
    let path = home.path().to_path_buf();
    let (dovecot_ca, auth_ca) = (
        d.ca_path().display().to_string(),
        auth.ca_path().display().to_string(),
    );
    let mut s = Session::start_with_env(
        home,
        &[
            "setup",
            "--dns-server",
            &dns,
            "--tls-ca-file",
            &dovecot_ca,
            "--oauth2-ca-file",
            &auth_ca,
            "--no-browser",
        ],
        &[],
    );
    s.wait_for("1/5 Who you are");
    s.send(b"Alice Example\talice@mailbag.test");
    s.wait_for("[mailbag ");
    s.send(b"\r");
    // No password: the sign-in is OAuth2.
    s.wait_for("2/5 Password");
    s.send(b"\r");
    s.wait_for("from DNS SRV _imaps._tcp.mailbag.test");
    // By hand: user name alice, sign-in OAuth2 custom.
    s.send(b"e");
    s.wait_for("3/5 Edit server settings");
    s.send(b"\t\t\t\t");
    s.send(CTRL_U);
    s.send(b"alice\t");
    s.send(b"\x1b[C\x1b[C\x1b[C");
    s.wait_for("‹ OAuth2 custom ›");
    s.send(b"\r");
    s.wait_for("4/5 OAuth2 client");
    s.send(
        format!(
            "{CLIENT_ID}\t\t{}\t{}\t{}\tmail offline_access",
            auth.url("/authorize"),
            auth.url("/token"),
            auth.url("/device")
        )
        .as_bytes(),
    );
    s.wait_for("[mail offline_access");
    s.send(b"\r");

    // Esc cancels the sign-in: back on the client form, the listener is closed.
    let first = wait_url(&s, &auth);
    s.send(ESC);
    s.wait_for("4/5 OAuth2 client");
    wait_closed(redirect_port(&first));

    // Again, and this time the "browser" consents and comes back to mailbag.
    s.send(b"\r");
    s.wait_for("4/5 Sign in");
    let url = wait_url(&s, &auth);
    assert_ne!(url, first, "a fresh state and PKCE challenge");
    let query = parse_form(url.split_once('?').expect("query").1);
    assert_eq!(query.get("login_hint").map(String::as_str), Some("alice"));
    let (status, location) = browser_get(&url, auth.ca_path());
    assert!(status.contains("302"), "{status}");
    let page = browser_follow(&location.expect("a redirect to mailbag"));
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    s.wait_for("The login works");
    (s, auth, d, path)
}

#[test]
#[ignore = "run by oauth2_sign_in_in_the_wizard_then_the_account_syncs in a private keyring"]
fn child_oauth2_sign_in_in_the_wizard() {
    if !is_child() {
        return;
    }
    let (mut s, auth, d, path) = wizard_signed_in();
    let screen = s.screen();
    assert!(screen.contains("✓ login"), "{screen}");
    assert!(screen.contains("signed in with OAuth2"), "{screen}");
    s.send(b"\r");
    s.wait_for("added account mailbag (signed in with OAuth2)");
    s.wait_for("Seed message 2");
    s.wait_for("mailbag: online");
    s.send(b"q");
    assert!(s.wait_exit(), "mailbag exits cleanly");

    // The config says OAuth2 and holds no token or password; the keyring holds the one valid
    // refresh token.
    let config_file = path.join("config/mailbag/config.toml");
    let text = std::fs::read_to_string(&config_file).expect("config written");
    assert!(text.contains("auth = \"oauth2\""), "{text}");
    assert!(text.contains("oauth2_provider = \"custom\""), "{text}");
    assert!(
        text.contains(&format!("oauth2_client_id = \"{CLIENT_ID}\"")),
        "{text}"
    );
    assert!(text.contains("oauth2_ca_file = "), "{text}");
    assert!(!text.contains("password"), "{text}");
    let config = mailbag::config::load(&config_file).expect("load");
    let account = config.account("mailbag").expect("account");
    let stored = mailbag::oauth2::store::load_refresh_token("mailbag", account)
        .expect("read the keyring")
        .expect("a refresh token in the keyring");
    assert!(!text.contains(stored.expose()), "token in config");
    assert_eq!(
        auth.valid_refresh_tokens(),
        vec![stored.expose().to_string()]
    );
    assert!(
        d.logs()
            .lines()
            .any(|l| l.contains("Login: user=<alice>") && l.contains("method=OAUTHBEARER")),
        "{}",
        d.logs()
    );
    println!("{CHILD_OK}");
}

/// `mailbag setup --non-interactive ARGS` in the profile `home`.
fn setup_command(home: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = mailbag_in(home, &["setup", "--non-interactive"]);
    c.args(args);
    c
}

/// `mailbag setup --non-interactive` for alice at `host:port` with OAuth2 against `auth`
/// (plus `extra` options), consenting in the "browser" and pasting the address it ends on;
/// whether setup succeeded, and what it said on stderr.
fn sign_in_non_interactive(
    home: &std::path::Path,
    auth: &AuthServer,
    host: &str,
    port: &str,
    extra: &[&str],
) -> (bool, String) {
    use std::io::{BufRead, BufReader};
    let (auth_url, token_url) = (auth.url("/authorize"), auth.url("/token"));
    let auth_ca = auth.ca_path().display().to_string();
    let mut args = vec![
        "--name",
        "work",
        "--email",
        "alice@mailbag.test",
        "--host",
        host,
        "--port",
        port,
        "--username",
        "alice",
        "--auth",
        "oauth2",
        "--oauth2-provider",
        "custom",
        "--oauth2-client-id",
        CLIENT_ID,
        "--oauth2-auth-url",
        &auth_url,
        "--oauth2-token-url",
        &token_url,
        "--oauth2-scopes",
        "mail offline_access",
        "--oauth2-ca-file",
        &auth_ca,
        "--no-browser",
    ];
    args.extend_from_slice(extra);
    let mut child = setup_command(home, &args)
        // NOTE: the secret comes from the environment, where `ps` does not show it.
        .env("MAILBAG_OAUTH2_CLIENT_SECRET", "env-secret-42")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start mailbag setup");
    let stdout = child.stdout.take().expect("stdout");
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .map(|l| l.trim().to_string())
        .find(|l| l.starts_with(&auth.url("/authorize?")))
        .expect("the authorization URL on stdout");
    let (status, location) = browser_get(&url, auth.ca_path());
    assert!(status.contains("302"), "{status}");
    // A headless box: the address the browser ended on is pasted on stdin.
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{}", location.expect("a redirect")).expect("paste");
    }
    finish(child)
}

#[test]
fn non_interactive_oauth2_needs_a_client_id() {
    let home = tempfile::tempdir().expect("home");
    let out = setup_command(
        home.path(),
        &[
            "--name",
            "work",
            "--email",
            "alice@mailbag.test",
            "--host",
            "localhost",
            "--auth",
            "oauth2",
        ],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .expect("run mailbag");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--oauth2-client-id"), "{err}");
    assert!(err.contains("docs/oauth2.md"), "{err}");
    // OAuth2 options without --auth oauth2 are a mistake, not ignored.
    let out = setup_command(
        home.path(),
        &[
            "--name",
            "work",
            "--email",
            "alice@mailbag.test",
            "--oauth2-client-id",
            "x",
        ],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .expect("run mailbag");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("need --auth oauth2"), "{err}");
}

#[test]
fn a_sign_in_that_is_not_saved_leaves_no_refresh_token() {
    in_keyring_session("child_unsaved_sign_in");
}

#[test]
#[ignore = "run by a_sign_in_that_is_not_saved_leaves_no_refresh_token in a private keyring"]
fn child_unsaved_sign_in() {
    if !is_child() {
        return;
    }
    let auth = AuthServer::start().expect("start the authorization server");
    let home = tempfile::tempdir().expect("home");
    // Nothing listens there: the sign-in succeeds, the login test that follows cannot.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let (ok, err) = sign_in_non_interactive(home.path(), &auth, "127.0.0.1", &port, &[]);
    assert!(!ok, "setup should fail: nothing listens on the port: {err}");
    assert_eq!(
        auth.valid_refresh_tokens().len(),
        1,
        "the sign-in did not complete: {err}"
    );
    let config_file = home.path().join("config/mailbag/config.toml");
    assert!(!config_file.exists(), "nothing was to be saved");
    // The keyring entry is named after the user name and host of the account signed in.
    let account: mailbag::config::Account = toml::from_str(
        r#"
        email = "alice@mailbag.test"
        protocol = "imap"
        host = "127.0.0.1"
        username = "alice"
        auth = "oauth2"
        "#,
    )
    .expect("account");
    let stored =
        mailbag::oauth2::store::load_refresh_token("work", &account).expect("read the keyring");
    assert!(
        stored.is_none(),
        "the unsaved sign-in left its refresh token in the keyring"
    );
    println!("{CHILD_OK}");
}

#[test]
fn non_interactive_oauth2_signs_in_then_saves() {
    in_keyring_session("child_non_interactive_oauth2");
}

#[test]
#[ignore = "run by non_interactive_oauth2_signs_in_then_saves in a private keyring"]
fn child_non_interactive_oauth2() {
    if !is_child() {
        return;
    }
    let auth = AuthServer::start().expect("start the authorization server");
    let Some(d) = Dovecot::start_oauth2(&auth.introspection_url()) else {
        panic!("the non-interactive OAuth2 test needs dovecot");
    };
    d.seed(ALICE.name, "INBOX", 3).expect("seed");
    let home = tempfile::tempdir().expect("home");
    let port = d.imap_tls_port().to_string();
    let dovecot_ca = d.ca_path().display().to_string();
    let (ok, err) = sign_in_non_interactive(
        home.path(),
        &auth,
        common::TLS_NAME,
        &port,
        &["--tls-ca-file", &dovecot_ca],
    );
    assert!(ok, "setup failed: {err}");
    assert!(err.contains("✓") || err.contains("ok      login"), "{err}");
    assert!(err.contains("signed in with OAuth2"), "{err}");
    let config_file = home.path().join("config/mailbag/config.toml");
    let text = std::fs::read_to_string(&config_file).expect("config written");
    assert!(text.contains("auth = \"oauth2\""), "{text}");
    assert!(!text.contains("password"), "{text}");
    assert!(
        text.contains("oauth2_client_secret = \"env-secret-42\""),
        "the client secret from the environment was not saved: {text}"
    );
    let config = mailbag::config::load(&config_file).expect("load");
    let account = config.account("work").expect("account");
    let stored = mailbag::oauth2::store::load_refresh_token("work", account)
        .expect("read the keyring")
        .expect("a refresh token in the keyring");
    assert_eq!(
        auth.valid_refresh_tokens(),
        vec![stored.expose().to_string()]
    );
    // The saved account syncs.
    let out = mailbag_in(home.path(), &["sync"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sync");
    assert!(
        out.status.success(),
        "sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mailbag_in(home.path(), &["list", "--json"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("list");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    println!("{CHILD_OK}");
}
